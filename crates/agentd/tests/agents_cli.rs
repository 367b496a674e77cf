//! `agentd agents …` against a running server.

use std::process::Command;

use agentd_testkit::{spawn_app, TestApp, TestDb};

fn agentd(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agentd"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AGENTD_")) {
        command.env_remove(name);
    }
    let output = command
        .env("AGENTD_URL", &app.base_url)
        .env("AGENTD_KEY", &app.admin_key)
        .env("RUST_LOG", "warn")
        .current_dir(app.db.data_dir())
        .arg("agents")
        .args(args)
        .output()
        .expect("agentd runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_commands_drive_the_registry() {
    let app = spawn_app(TestDb::sqlite()).await;
    let app = &app;
    let run = |args: Vec<&'static str>| {
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            tokio::task::block_in_place(|| agentd(app, &refs))
        }
    };

    let (ok, out, err) = run(vec![
        "create",
        "--name",
        "cli-agent",
        "--model",
        "openai/gpt-4o-mini",
        "--tags",
        "a,b",
    ])
    .await;
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["status"], "idle");
    assert_eq!(created["tags"], serde_json::json!(["a", "b"]));
    let id = created["id"].as_str().unwrap().to_owned();

    let (ok, out, _) = run(vec!["list", "--tag", "b"]).await;
    assert!(
        ok && out.contains(&id) && out.contains("cli-agent"),
        "{out}"
    );

    let id_arg: &'static str = Box::leak(id.clone().into_boxed_str());
    let (ok, out, _) = run(vec!["pause", id_arg]).await;
    assert!(ok && out.contains("paused"), "{out}");
    let (ok, _, err) = run(vec!["pause", id_arg]).await;
    assert!(
        !ok && err.contains("409") && err.contains("allowed from"),
        "{err}"
    );
    let (ok, out, _) = run(vec!["resume", id_arg]).await;
    assert!(ok && out.contains("idle"), "{out}");
    let (ok, out, _) = run(vec!["get", id_arg]).await;
    assert!(ok && out.contains("\"version\": 1"), "{out}");
    let (ok, out, _) = run(vec!["terminate", id_arg]).await;
    assert!(ok && out.contains("terminated"), "{out}");
    let (ok, out, _) = run(vec!["list", "--all", "--json", "--status", "terminated"]).await;
    assert!(ok && out.contains(&id), "{out}");

    let (ok, _, err) = run(vec!["create", "--name", "x", "--model", "openai/"]).await;
    assert!(!ok && err.contains("422") && err.contains("model"), "{err}");
}
