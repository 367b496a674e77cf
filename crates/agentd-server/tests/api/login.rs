//! Users, roles and magic-link login: mail goes through a real SMTP server (aiosmtpd, started by
//! the test) or into the outbox, the link logs in once, and a user's JWT carries their role's
//! scopes, which follow a change of role or a removal at once.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use agentd_runtime::auth_config::SmtpTls;
use agentd_runtime::Config;
use agentd_testkit::{backend_tests, python, spawn_app_with, TestApp, TestDb};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::assert_problem;

/// aiosmtpd, pinned, as the tests install it.
const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// A real SMTP server in a child process, and the mails it received.
struct SmtpSink {
    port: u16,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _child: tokio::process::Child,
}

impl SmtpSink {
    async fn start() -> Option<Self> {
        let python = python::venv(&[AIOSMTPD])?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/smtp_sink.py");
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the SMTP sink starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP sink is ready in time")
            .unwrap();
        assert_eq!(ready.as_deref(), Some("ready"));
        Some(Self {
            port,
            lines,
            _child: child,
        })
    }

    /// The next mail, or `None` if none comes within `wait`.
    async fn next_mail(&mut self, wait: Duration) -> Option<Value> {
        let line = tokio::time::timeout(wait, self.lines.next_line())
            .await
            .ok()?
            .unwrap()?;
        Some(serde_json::from_str(&line).unwrap())
    }
}

/// The login link in a mail's body.
fn link_in(body: &str) -> String {
    body.split_whitespace()
        .find(|word| word.contains("/auth/link/verify?token="))
        .unwrap_or_else(|| panic!("no link in {body}"))
        .to_owned()
}

async fn add_user(app: &TestApp, key: &str, email: &str, role: &str) -> Value {
    let response = app
        .request(Method::POST, "/users", key)
        .json(&json!({"email": email, "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

async fn ask_link(app: &TestApp, email: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth/link"))
        .json(&json!({"email": email}))
        .send()
        .await
        .unwrap()
}

/// The newest mail in the outbox that mentions `email`, waiting for it to be written.
async fn outbox_link(app: &TestApp, email: &str) -> String {
    let dir = app.db.data_dir().join("outbox");
    for _ in 0..100 {
        let mut found = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                if text.contains(email) {
                    found.push((entry.file_name(), text));
                }
            }
        }
        found.sort();
        if let Some((_, text)) = found.pop() {
            // The outbox keeps the mail as sent: undo quoted-printable soft breaks.
            let text = text
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=");
            return link_in(&text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no mail for {email} in {}", dir.display());
}

/// Logs `email` in through the outbox and returns the JWT.
async fn login(app: &TestApp, email: &str) -> String {
    assert_eq!(ask_link(app, email).await.status(), 202);
    let link = outbox_link(app, email).await;
    let path = &link[link.find("/auth/").unwrap()..];
    let body: Value = app
        .client
        .get(app.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn magic_link_mail_logs_in_once_through_a_real_smtp_server(db: TestDb) {
    let Some(mut sink) = SmtpSink::start().await else {
        return;
    };
    let mut config = Config::default();
    config.smtp.host = Some("127.0.0.1".to_owned());
    config.smtp.port = sink.port;
    config.smtp.tls = SmtpTls::None;
    config.smtp.from = "agentd <login@agentd.test>".to_owned();
    let app = spawn_app_with(db, config).await;
    add_user(&app, &app.admin_key, "Ann@Example.com", "member").await;

    // An address with no user gets the very same answer, and no mail.
    let unknown = ask_link(&app, "nobody@example.com").await;
    assert_eq!(unknown.status(), 202);
    let unknown: Value = unknown.json().await.unwrap();
    let known = ask_link(&app, "ann@example.com").await;
    assert_eq!(known.status(), 202);
    assert_eq!(known.json::<Value>().await.unwrap(), unknown);

    let mail = sink
        .next_mail(Duration::from_secs(10))
        .await
        .expect("a mail arrives");
    assert_eq!(mail["to"], json!(["ann@example.com"]), "{mail}");
    assert_eq!(mail["from"], "login@agentd.test");
    let link = link_in(mail["body"].as_str().unwrap());
    let path = &link[link.find("/auth/").unwrap()..];

    let first = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let session: Value = first.json().await.unwrap();
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["user"]["email"], "ann@example.com");
    let token = session["access_token"].as_str().unwrap();
    let tenant = app
        .request(Method::GET, "/tenant", token)
        .send()
        .await
        .unwrap();
    assert_eq!(tenant.status(), 200);
    assert_eq!(tenant.json::<Value>().await.unwrap()["slug"], "default");

    let again = app.client.get(app.url(path)).send().await.unwrap();
    let problem = assert_problem(again, 401, "invalid_credentials").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("used already"),
        "{problem}"
    );
    // No second mail went out for the unknown address.
    assert!(sink.next_mail(Duration::from_millis(500)).await.is_none());

    // The user's refresh token gives new tokens once.
    let refresh = session["refresh_token"].as_str().unwrap();
    let renewed = app
        .client
        .post(app.url("/auth/refresh"))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), 200);
    let reused = app
        .client
        .post(app.url("/auth/refresh"))
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap();
    assert_problem(reused, 401, "invalid_credentials").await;
}

async fn expired_and_unknown_links_are_refused_and_requests_are_limited(db: TestDb) {
    let mut config = Config::default();
    config.auth.magic_link_ttl_secs = 0;
    config.auth.magic_links_per_email = 2;
    let app = spawn_app_with(db, config).await;
    add_user(&app, &app.admin_key, "bob@example.com", "viewer").await;
    assert_eq!(ask_link(&app, "bob@example.com").await.status(), 202);
    let link = outbox_link(&app, "bob@example.com").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let path = &link[link.find("/auth/").unwrap()..];
    let expired = app.client.get(app.url(path)).send().await.unwrap();
    let problem = assert_problem(expired, 401, "invalid_credentials").await;
    assert!(problem["detail"].as_str().unwrap().contains("expired"));

    let forged = app
        .client
        .get(app.url("/auth/link/verify?token=forged"))
        .send()
        .await
        .unwrap();
    assert_problem(forged, 401, "invalid_credentials").await;

    assert_eq!(ask_link(&app, "bob@example.com").await.status(), 202);
    let limited = ask_link(&app, "BOB@example.com").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_problem(limited, 429, "rate_limited").await;

    let malformed = ask_link(&app, "not-an-address").await;
    let problem = assert_problem(malformed, 422, "invalid_field").await;
    assert_eq!(problem["field"], "email", "{problem}");
}

async fn roles_decide_what_a_user_may_do_and_changes_apply_at_once(db: TestDb) {
    let app = spawn_app_with(db, Config::default()).await;
    let owner = add_user(&app, &app.admin_key, "owner@example.com", "owner").await;
    let viewer = add_user(&app, &app.admin_key, "viewer@example.com", "viewer").await;
    add_user(&app, &app.admin_key, "admin@example.com", "admin").await;
    assert_eq!(
        viewer["scopes"],
        json!([
            "agents:read",
            "sessions:read",
            "memories:read",
            "knowledge:read",
            "models:read",
            "usage:read",
            "tenant:read"
        ])
    );

    let viewer_token = login(&app, "viewer@example.com").await;
    let owner_token = login(&app, "owner@example.com").await;
    let admin_token = login(&app, "admin@example.com").await;
    let agent = json!({"name": "by-a-user", "model": "scripted/m"});
    let status = |token: String, method: Method, path: &'static str, body: Option<Value>| {
        let app = &app;
        async move {
            let mut request = app.request(method, path, &token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(
        status(viewer_token.clone(), Method::GET, "/agents", None).await,
        200
    );
    assert_eq!(
        status(
            viewer_token.clone(),
            Method::POST,
            "/agents",
            Some(agent.clone())
        )
        .await,
        403
    );
    assert_eq!(
        status(viewer_token.clone(), Method::GET, "/users", None).await,
        403
    );

    // Promoting the viewer takes effect on their very next request, with the same token.
    let viewer_id = viewer["id"].as_str().unwrap();
    let promoted = app
        .request(Method::PATCH, &format!("/users/{viewer_id}"), &owner_token)
        .json(&json!({"role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(promoted.status(), 200);
    assert_eq!(
        status(viewer_token.clone(), Method::POST, "/agents", Some(agent)).await,
        201
    );

    // An admin cannot make owners; an owner can. A user cannot change their own role.
    let by_admin = app
        .request(Method::PATCH, &format!("/users/{viewer_id}"), &admin_token)
        .json(&json!({"role": "owner"}))
        .send()
        .await
        .unwrap();
    assert_problem(by_admin, 422, "invalid_field").await;
    let owner_id = owner["id"].as_str().unwrap();
    let own = app
        .request(Method::PATCH, &format!("/users/{owner_id}"), &owner_token)
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_problem(own, 422, "invalid_field").await;
    // The last owner stays.
    let last = app
        .request(
            Method::DELETE,
            &format!("/users/{owner_id}"),
            &app.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_problem(last, 409, "conflict").await;

    // A removed user's token stops working at once.
    let removed = app
        .request(Method::DELETE, &format!("/users/{viewer_id}"), &owner_token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let after = app
        .request(Method::GET, "/agents", &viewer_token)
        .send()
        .await
        .unwrap();
    assert_problem(after, 401, "invalid_credentials").await;

    // Duplicates and bad input are named.
    let twice = app
        .request(Method::POST, "/users", &app.admin_key)
        .json(&json!({"email": "OWNER@example.com"}))
        .send()
        .await
        .unwrap();
    assert_problem(twice, 409, "conflict").await;
    let bad = app
        .request(Method::POST, "/users", &app.admin_key)
        .json(&json!({"email": "owner", "role": "boss"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let listed: Value = app
        .request(Method::GET, "/users?limit=1", &app.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(listed["next_cursor"].is_string());
}

async fn only_the_platform_admin_makes_tenants(db: TestDb) {
    let app = spawn_app_with(db, Config::default()).await;
    let created = app
        .request(Method::POST, "/tenants", &app.admin_key)
        .json(&json!({"slug": "acme", "name": "Acme", "owner_email": "boss@acme.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["slug"], "acme");
    assert_eq!(created["owner"]["role"], "owner");
    let acme_key = created["admin_key"].as_str().unwrap();
    let tenant: Value = app
        .request(Method::GET, "/tenant", acme_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tenant["name"], "Acme");
    // The new tenant's key reaches its own tenant only, and cannot make tenants.
    let denied = app
        .request(Method::POST, "/tenants", acme_key)
        .json(&json!({"slug": "other"}))
        .send()
        .await
        .unwrap();
    assert_problem(denied, 403, "missing_scope").await;
    let users: Value = app
        .request(Method::GET, "/users", acme_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users["data"][0]["email"], "boss@acme.example");
    let default_users: Value = app
        .request(Method::GET, "/users", &app.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(default_users["data"], json!([]));
    let taken = app
        .request(Method::POST, "/tenants", &app.admin_key)
        .json(&json!({"slug": "acme"}))
        .send()
        .await
        .unwrap();
    assert_problem(taken, 409, "conflict").await;
    let bad = app
        .request(Method::POST, "/tenants", &app.admin_key)
        .json(&json!({"slug": "Not A Slug"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    // Another tenant's admin key holding the admin scope is still not the platform admin.
    let foreign_admin = app.create_tenant("foreign").await;
    let denied = app
        .request(Method::POST, "/tenants", &foreign_admin)
        .json(&json!({"slug": "sneaky"}))
        .send()
        .await
        .unwrap();
    assert_problem(denied, 403, "missing_scope").await;
}

async fn a_browser_login_over_https_gets_a_secure_cookie(db: TestDb) {
    let mut config = Config::default();
    config.auth.public_url = Some("https://agentd.example".to_owned());
    let app = spawn_app_with(db, config).await;
    add_user(&app, &app.admin_key, "web@example.com", "viewer").await;
    assert_eq!(ask_link(&app, "web@example.com").await.status(), 202);
    let link = outbox_link(&app, "web@example.com").await;
    assert!(
        link.starts_with("https://agentd.example/auth/link/verify?token="),
        "{link}"
    );
    let path = &link[link.find("/auth/").unwrap()..];
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(app.url(path))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/");
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for part in ["agentd_token=", "HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("agentd_token=");
    let tenant = client
        .get(app.url("/tenant"))
        .header("cookie", format!("agentd_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(tenant.status(), 200);
}

backend_tests!(
    a_browser_login_over_https_gets_a_secure_cookie,
    magic_link_mail_logs_in_once_through_a_real_smtp_server,
    expired_and_unknown_links_are_refused_and_requests_are_limited,
    roles_decide_what_a_user_may_do_and_changes_apply_at_once,
    only_the_platform_admin_makes_tenants,
);
