//! `agentd knowledge add …` against a running server: folders are walked, uploads are processed and
//! waited for, duplicates are recognised, and a broken file makes the command fail naming it.

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
        .arg("knowledge")
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
async fn knowledge_add_uploads_folders_and_waits_for_processing() {
    let app = spawn_app(TestDb::sqlite()).await;
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("nested")).unwrap();
    std::fs::write(
        docs.join("vault.md"),
        "# Vault\n\nThe password is tangerine.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("nested/mill.txt"),
        "The mill grinds wheat at dawn.",
    )
    .unwrap();
    std::fs::write(docs.join("rows.csv"), "name,age\nann,31\nbob,42\n").unwrap();
    std::fs::write(docs.join(".hidden.txt"), "never uploaded").unwrap();
    let docs_arg = docs.to_str().unwrap().to_owned();

    let (ok, out, err) = tokio::task::block_in_place(|| {
        agentd(
            &app,
            &[
                "add",
                docs_arg.as_str(),
                "--metadata",
                r#"{"source": "cli"}"#,
            ],
        )
    });
    assert!(ok, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines.iter().all(|l| l.contains("completed")), "{out}");
    assert!(out.contains("vault.md") && out.contains("mill.txt") && out.contains("rows.csv"));
    assert!(!out.contains("hidden"), "{out}");
    assert!(err.contains("3/3"), "a progress bar on stderr: {err}");

    let listed = app.get_json("/knowledge/content").await;
    let items = listed["data"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{listed}");
    assert!(
        items.iter().all(|c| c["metadata"]["source"] == "cli"),
        "{listed}"
    );

    // Again: the same bytes are recognised.
    let vault = docs.join("vault.md");
    let (ok, out, _) =
        tokio::task::block_in_place(|| agentd(&app, &["add", vault.to_str().unwrap()]));
    assert!(ok && out.contains("already there"), "{out}");

    // An empty file fails the command, which names it; the others still go in.
    std::fs::write(dir.path().join("empty.txt"), "").unwrap();
    std::fs::write(dir.path().join("fine.txt"), "Fine content.").unwrap();
    let empty = dir.path().join("empty.txt");
    let fine = dir.path().join("fine.txt");
    let (ok, out, err) = tokio::task::block_in_place(|| {
        agentd(
            &app,
            &["add", empty.to_str().unwrap(), fine.to_str().unwrap()],
        )
    });
    assert!(!ok, "{out}\n{err}");
    assert!(
        err.contains("empty.txt") && err.contains("1 of 2 files failed"),
        "{err}"
    );
    assert!(
        out.contains("fine.txt") && out.contains("completed"),
        "{out}"
    );
}
