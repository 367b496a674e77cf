//! Agent identities: public keys on agents, signatures checked here and independently, agent keys
//! confined to their agent, rotation and revocation taking effect at once, tenants kept apart, and
//! identities given lazily to agents made before them.

use agentd_core::agent::{Agent, AgentHealth, AgentSpec, AgentStatus};
use agentd_core::{AgentId, TenantId};
use agentd_store::Store;
use agentd_testkit::{backend_tests, spawn_app, TestApp, TestDb};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::{assert_all_not_found, assert_problem};

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Response {
    let mut request = app.request(method.clone(), path, key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Sends and expects `status`, returning the body text.
async fn expect(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
    status: u16,
) -> String {
    let response = send(app, method.clone(), path, key, body).await;
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{method} {path}: {text}");
    text
}

async fn expect_json(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    serde_json::from_str(&expect(app, method, path, key, body, status).await).unwrap()
}

/// Makes a key for `agent` with the admin key; returns `(id, secret, view)`.
async fn agent_key(app: &TestApp, agent: &str, body: Value) -> (String, String, Value) {
    let created = expect_json(
        app,
        Method::POST,
        &format!("/agents/{agent}/keys"),
        &app.admin_key,
        Some(body),
        201,
    )
    .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
        created,
    )
}

async fn tenant_of(app: &TestApp, key: &str) -> TenantId {
    app.runtime
        .access
        .authenticate(key)
        .await
        .unwrap()
        .tenant_id
}

fn decode(text: &Value) -> Vec<u8> {
    STANDARD
        .decode(text.as_str().expect("base64 text"))
        .unwrap()
}

/// The independent check: ring's Ed25519 verification, not the server's.
fn ring_verifies(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use ring::signature::{UnparsedPublicKey, ED25519};
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

async fn a_new_agent_signs_and_its_signatures_verify(db: TestDb) {
    let app = spawn_app(db).await;
    let mut answers = Vec::new();
    let created = app.create_agent(&json!({"name": "notary"})).await;
    answers.push(created.to_string());
    let id = created["id"].as_str().unwrap().to_owned();
    let public_key = decode(&created["public_key"]);
    assert_eq!(public_key.len(), 32, "{created}");

    // A string payload is signed as its bytes.
    let signed = expect_json(
        &app,
        Method::POST,
        &format!("/agents/{id}/sign"),
        &app.admin_key,
        Some(json!({"payload": "hello"})),
        200,
    )
    .await;
    answers.push(signed.to_string());
    assert_eq!(signed["agent_id"], id.as_str());
    assert_eq!(signed["algorithm"], "Ed25519");
    assert_eq!(signed["public_key"], created["public_key"]);
    let signature = decode(&signed["signature"]);
    assert_eq!(signature.len(), 64);
    assert!(ring_verifies(&public_key, b"hello", &signature));
    assert!(!ring_verifies(&public_key, b"hellO", &signature));

    for signer in [
        json!({"agent_id": id}),
        json!({"public_key": created["public_key"]}),
        json!({"agent_id": id, "public_key": created["public_key"]}),
    ] {
        let mut body = signer.clone();
        body["payload"] = json!("hello");
        body["signature"] = signed["signature"].clone();
        let verified = expect_json(
            &app,
            Method::POST,
            "/identity/verify",
            &app.admin_key,
            Some(body.clone()),
            200,
        )
        .await;
        answers.push(verified.to_string());
        assert_eq!(verified["valid"], true, "{signer}: {verified}");
        assert_eq!(verified["agent_id"], id.as_str(), "{signer}");
        assert_eq!(verified["public_key"], created["public_key"]);
        assert_eq!(verified["algorithm"], "Ed25519");

        body["payload"] = json!("hellO");
        let changed = expect_json(
            &app,
            Method::POST,
            "/identity/verify",
            &app.admin_key,
            Some(body),
            200,
        )
        .await;
        assert_eq!(
            changed["valid"], false,
            "a changed payload fails: {changed}"
        );
    }

    // Any other JSON value is signed as its canonical text: members sorted, no whitespace.
    let signed = expect_json(
        &app,
        Method::POST,
        &format!("/agents/{id}/sign"),
        &app.admin_key,
        Some(json!({"payload": {"b": 1, "a": [true, null, "x"]}})),
        200,
    )
    .await;
    let signature = decode(&signed["signature"]);
    assert!(ring_verifies(
        &public_key,
        br#"{"a":[true,null,"x"],"b":1}"#,
        &signature
    ));
    let verified = expect_json(
        &app,
        Method::POST,
        "/identity/verify",
        &app.admin_key,
        Some(json!({"agent_id": id, "payload": {"a": [true, null, "x"], "b": 1}, "signature": signed["signature"]})),
        200,
    )
    .await;
    assert_eq!(verified["valid"], true, "member order does not matter");

    // Another agent's key, or another agent named, does not verify the signature.
    let other = app.create_agent(&json!({"name": "other"})).await;
    let verified = expect_json(
        &app,
        Method::POST,
        "/identity/verify",
        &app.admin_key,
        Some(json!({"agent_id": other["id"], "payload": "hello", "signature": STANDARD.encode([0u8; 64])})),
        200,
    )
    .await;
    assert_eq!(verified["valid"], false);
    let mismatched = expect_json(
        &app,
        Method::POST,
        "/identity/verify",
        &app.admin_key,
        Some(json!({"agent_id": id, "public_key": other["public_key"], "payload": {"b": 1, "a": [true, null, "x"]}, "signature": signed["signature"]})),
        200,
    )
    .await;
    assert_eq!(
        mismatched["valid"], false,
        "a public key that is not the agent's: {mismatched}"
    );

    // The private key appears in no answer, and the stored column is sealed, not the PKCS#8.
    let tenant = tenant_of(&app, &app.admin_key).await;
    let agent_id: AgentId = id.parse().unwrap();
    answers.push(
        expect(
            &app,
            Method::GET,
            &format!("/agents/{id}"),
            &app.admin_key,
            None,
            200,
        )
        .await,
    );
    answers.push(expect(&app, Method::GET, "/agents", &app.admin_key, None, 200).await);
    let stored = app
        .runtime
        .store
        .get_agent_identity(tenant, agent_id)
        .await
        .unwrap()
        .expect("an identity is stored");
    let pkcs8 = app
        .runtime
        .master_key
        .open(&format!("agent:{id}"), &stored.sealed_private_key)
        .expect("sealed with the master key, for this agent");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap();
    use ring::signature::KeyPair;
    assert_eq!(pair.public_key().as_ref(), public_key.as_slice());
    let plain = STANDARD.encode(&pkcs8);
    assert!(stored.sealed_private_key.starts_with("v1:"));
    assert!(!stored.sealed_private_key.contains(&plain));
    assert!(
        app.runtime
            .master_key
            .open(
                &format!("agent:{}", other["id"].as_str().unwrap()),
                &stored.sealed_private_key
            )
            .is_err(),
        "a sealed key does not open for another agent"
    );
    for answer in &answers {
        assert!(!answer.contains(&plain), "the private key leaked: {answer}");
        assert!(!answer.contains(&stored.sealed_private_key), "{answer}");
        assert!(!answer.contains("sealed"), "{answer}");
    }
}

async fn bad_verification_input_names_the_field(db: TestDb) {
    let app = spawn_app(db).await;
    let agent = app.create_agent(&json!({"name": "notary"})).await;
    let good_signature = STANDARD.encode([0u8; 64]);
    for (body, field) in [
        (
            json!({"agent_id": agent["id"], "payload": "x", "signature": "not base64!"}),
            "signature",
        ),
        (
            json!({"agent_id": agent["id"], "payload": "x", "signature": STANDARD.encode([0u8; 10])}),
            "signature",
        ),
        (
            json!({"public_key": "%%%", "payload": "x", "signature": good_signature}),
            "public_key",
        ),
        (
            json!({"public_key": STANDARD.encode([1u8; 31]), "payload": "x", "signature": good_signature}),
            "public_key",
        ),
        (
            json!({"payload": "x", "signature": good_signature}),
            "agent_id",
        ),
        (
            json!({"agent_id": "nope", "payload": "x", "signature": good_signature}),
            "agent_id",
        ),
        (
            json!({"agent_id": agent["id"], "signature": good_signature}),
            "payload",
        ),
    ] {
        let response = send(
            &app,
            Method::POST,
            "/identity/verify",
            &app.admin_key,
            Some(body.clone()),
        )
        .await;
        let problem = assert_problem(response, 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let response = send(
        &app,
        Method::POST,
        &format!("/agents/{}/sign", agent["id"].as_str().unwrap()),
        &app.admin_key,
        Some(json!({})),
    )
    .await;
    let problem = assert_problem(response, 422, "invalid_field").await;
    assert_eq!(problem["field"], "payload");

    // An unknown agent is 404, whether signing or verifying.
    let unknown = AgentId::new();
    assert_all_not_found(
        &app,
        &app.admin_key,
        vec![
            (
                Method::POST,
                format!("/agents/{unknown}/sign"),
                Some(json!({"payload": "x"})),
            ),
            (
                Method::POST,
                "/identity/verify".to_owned(),
                Some(json!({"agent_id": unknown, "payload": "x", "signature": good_signature})),
            ),
        ],
    )
    .await;

    // A terminated agent signs nothing more; its old signatures still verify.
    let id = agent["id"].as_str().unwrap();
    let signed = expect_json(
        &app,
        Method::POST,
        &format!("/agents/{id}/sign"),
        &app.admin_key,
        Some(json!({"payload": "last"})),
        200,
    )
    .await;
    expect(
        &app,
        Method::DELETE,
        &format!("/agents/{id}"),
        &app.admin_key,
        None,
        204,
    )
    .await;
    let response = send(
        &app,
        Method::POST,
        &format!("/agents/{id}/sign"),
        &app.admin_key,
        Some(json!({"payload": "x"})),
    )
    .await;
    assert_problem(response, 409, "conflict").await;
    let verified = expect_json(
        &app,
        Method::POST,
        "/identity/verify",
        &app.admin_key,
        Some(json!({"agent_id": id, "payload": "last", "signature": signed["signature"]})),
        200,
    )
    .await;
    assert_eq!(verified["valid"], true);
}

async fn a_rotated_agent_key_fails_at_once_and_the_new_one_works(db: TestDb) {
    let app = spawn_app(db).await;
    let id = app.create_agent_id(&json!({"name": "rotator"})).await;
    let expires = "2999-01-01T00:00:00Z";
    let (key_id, old, created) =
        agent_key(&app, &id, json!({"name": "bot", "expires_at": expires})).await;
    assert_eq!(created["agent_id"], id.as_str());
    let defaults: Vec<String> = ["read", "run", "sign", "keys"]
        .iter()
        .map(|action| format!("agents:{id}:{action}"))
        .collect();
    assert_eq!(created["scopes"], json!(defaults));
    let agent_path = format!("/agents/{id}");
    // Used once, so a verified copy sits in the key cache.
    expect(&app, Method::GET, &agent_path, &old, None, 200).await;

    // The agent key rotates itself: no body.
    let rotate = format!("/api/agents/{id}/rotate-key");
    let rotated = expect_json(&app, Method::POST, &rotate, &old, None, 200).await;
    let new = rotated["new_api_key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["key"], new.as_str());
    assert_ne!(new, old);
    assert_eq!(rotated["id"], key_id.as_str(), "the key keeps its id");
    assert_eq!(rotated["name"], "bot");
    assert_eq!(rotated["scopes"], created["scopes"]);
    assert_eq!(rotated["expires_at"], created["expires_at"]);
    assert_eq!(rotated["agent_id"], id.as_str());
    assert!(new.starts_with(rotated["prefix"].as_str().unwrap()));

    let response = send(&app, Method::GET, &agent_path, &old, None).await;
    assert_problem(response, 401, "invalid_credentials").await;
    expect(&app, Method::GET, &agent_path, &new, None, 200).await;
    let response = send(&app, Method::POST, &rotate, &old, None).await;
    assert_problem(response, 401, "invalid_credentials").await;

    // Someone managing the agent's keys names the key; the caller's own key is not touched.
    let by_admin = expect_json(
        &app,
        Method::POST,
        &rotate,
        &app.admin_key,
        Some(json!({"key_id": key_id})),
        200,
    )
    .await;
    let newest = by_admin["key"].as_str().unwrap().to_owned();
    assert_problem(
        send(&app, Method::GET, &agent_path, &new, None).await,
        401,
        "invalid_credentials",
    )
    .await;
    expect(&app, Method::GET, &agent_path, &newest, None, 200).await;
    expect(&app, Method::GET, &agent_path, &app.admin_key, None, 200).await;

    // A caller that is not one of the agent's keys must say which key.
    let problem = assert_problem(
        send(&app, Method::POST, &rotate, &app.admin_key, None).await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(problem["field"], "key_id");
    // A key that is not the agent's is not found through it.
    let (tenant_key_id, _) = app.create_key(&["keys:read"]).await;
    assert_all_not_found(
        &app,
        &app.admin_key,
        vec![(
            Method::POST,
            rotate.clone(),
            Some(json!({"key_id": tenant_key_id})),
        )],
    )
    .await;

    // The agent's keys are listed without secrets; the tenant's list shows the binding.
    let listed = expect(
        &app,
        Method::GET,
        &format!("/agents/{id}/keys"),
        &newest,
        None,
        200,
    )
    .await;
    assert!(!listed.contains(&newest) && !listed.contains(&old));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [key_id.as_str()]);
    let all = expect_json(&app, Method::GET, "/keys", &app.admin_key, None, 200).await;
    let bound: Vec<&Value> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["agent_id"].is_string())
        .collect();
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0]["id"], key_id.as_str());

    // A key whose scopes go beyond the caller's cannot be rotated by it.
    let (limited_id, limited, _) =
        agent_key(&app, &id, json!({"scopes": [format!("agents:{id}:keys")]})).await;
    let problem = assert_problem(
        send(
            &app,
            Method::POST,
            &rotate,
            &limited,
            Some(json!({"key_id": key_id})),
        )
        .await,
        403,
        "missing_scope",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("agents:{id}:read")),
        "{problem}"
    );
    // …but it can rotate itself.
    let itself = expect_json(&app, Method::POST, &rotate, &limited, None, 200).await;
    assert_eq!(itself["id"], limited_id.as_str());
}

async fn an_agent_key_reaches_only_its_agent(db: TestDb) {
    let app = spawn_app(db).await;
    let mine = app.create_agent_id(&json!({"name": "mine"})).await;
    let theirs = app.create_agent_id(&json!({"name": "theirs"})).await;
    let (_, key, _) = agent_key(&app, &mine, json!({})).await;

    // Its own agent: read, events, sign, its own keys.
    expect(
        &app,
        Method::GET,
        &format!("/agents/{mine}"),
        &key,
        None,
        200,
    )
    .await;
    expect(
        &app,
        Method::GET,
        &format!("/agents/{mine}/events"),
        &key,
        None,
        200,
    )
    .await;
    expect(
        &app,
        Method::GET,
        &format!("/agents/{mine}/runs"),
        &key,
        None,
        200,
    )
    .await;
    expect(
        &app,
        Method::POST,
        &format!("/agents/{mine}/sign"),
        &key,
        Some(json!({"payload": "x"})),
        200,
    )
    .await;
    expect(
        &app,
        Method::GET,
        &format!("/agents/{mine}/keys"),
        &key,
        None,
        200,
    )
    .await;
    let listed = expect_json(&app, Method::GET, "/agents", &key, None, 200).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine.as_str()], "it lists only its own agent");

    // Another agent: 403 naming the per-agent scope, like every per-agent scope.
    for (method, path, body) in [
        (Method::GET, format!("/agents/{theirs}"), None),
        (Method::GET, format!("/agents/{theirs}/events"), None),
        (Method::GET, format!("/agents/{theirs}/runs"), None),
        (
            Method::POST,
            format!("/agents/{theirs}/runs"),
            Some(json!({"message": "hi"})),
        ),
        (
            Method::POST,
            format!("/agents/{theirs}/sign"),
            Some(json!({"payload": "x"})),
        ),
        (Method::GET, format!("/agents/{theirs}/keys"), None),
        (
            Method::POST,
            format!("/agents/{theirs}/keys"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/agents/{theirs}/rotate-key"),
            None,
        ),
        (
            Method::PATCH,
            format!("/agents/{mine}"),
            Some(json!({"name": "renamed"})),
        ),
        // Tenant-wide routes.
        (Method::GET, "/keys".to_owned(), None),
        (
            Method::POST,
            "/keys".to_owned(),
            Some(json!({"name": "x", "scopes": ["agents:read"]})),
        ),
        (
            Method::POST,
            "/agents".to_owned(),
            Some(json!({"name": "x"})),
        ),
        (Method::GET, "/sessions".to_owned(), None),
        (
            Method::POST,
            "/identity/verify".to_owned(),
            Some(json!({"agent_id": mine, "payload": "x", "signature": ""})),
        ),
    ] {
        let response = send(&app, method.clone(), &path, &key, body).await;
        assert_eq!(response.status(), 403, "{method} {path}");
        assert_problem(response, 403, "missing_scope").await;
    }

    // It may make sibling keys within its own scopes, never beyond them or beyond the agent.
    let path = format!("/agents/{mine}/keys");
    let sibling = expect_json(
        &app,
        Method::POST,
        &path,
        &key,
        Some(json!({"scopes": [format!("agents:{mine}:read")]})),
        201,
    )
    .await;
    let sibling_key = sibling["key"].as_str().unwrap().to_owned();
    expect(
        &app,
        Method::GET,
        &format!("/agents/{mine}"),
        &sibling_key,
        None,
        200,
    )
    .await;
    let problem = assert_problem(
        send(
            &app,
            Method::POST,
            &path,
            &key,
            Some(json!({"scopes": [format!("agents:{mine}:write")]})),
        )
        .await,
        403,
        "missing_scope",
    )
    .await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("agents:{mine}:write")));
    for scopes in [
        json!(["agents:read"]),
        json!([format!("agents:{theirs}:read")]),
        json!(["keys:read"]),
        json!([]),
    ] {
        let problem = assert_problem(
            send(
                &app,
                Method::POST,
                &path,
                &app.admin_key,
                Some(json!({"scopes": scopes})),
            )
            .await,
            422,
            "invalid_field",
        )
        .await;
        assert!(
            problem["field"].as_str().unwrap().starts_with("scopes"),
            "{problem}"
        );
    }
    // `identity:verify` is the one scope beyond the agent it may hold.
    let verifier = expect_json(
        &app,
        Method::POST,
        &path,
        &app.admin_key,
        Some(json!({"scopes": ["identity:verify"]})),
        201,
    )
    .await;
    let verifier_key = verifier["key"].as_str().unwrap();
    expect(
        &app,
        Method::POST,
        "/identity/verify",
        verifier_key,
        Some(json!({"agent_id": theirs, "payload": "x", "signature": STANDARD.encode([0u8; 64])})),
        200,
    )
    .await;

    // A creator holding only some of the agent's scopes cannot mint the defaults.
    let (_, manager) = app
        .create_key(&["agents:keys", &format!("agents:{mine}:read")])
        .await;
    let problem = assert_problem(
        send(&app, Method::POST, &path, &manager, Some(json!({}))).await,
        403,
        "missing_scope",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("agents:{mine}:run")),
        "{problem}"
    );
    expect(
        &app,
        Method::POST,
        &path,
        &manager,
        Some(json!({"scopes": [format!("agents:{mine}:read")]})),
        201,
    )
    .await;

    // Revoked: fails at once (the key had just been verified and cached).
    let sibling_id = sibling["id"].as_str().unwrap();
    expect(
        &app,
        Method::DELETE,
        &format!("/agents/{mine}/keys/{sibling_id}"),
        &key,
        None,
        204,
    )
    .await;
    assert_problem(
        send(
            &app,
            Method::GET,
            &format!("/agents/{mine}"),
            &sibling_key,
            None,
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    // A key is revoked through its own agent only.
    let (their_key_id, their_key, _) = agent_key(&app, &theirs, json!({})).await;
    assert_all_not_found(
        &app,
        &app.admin_key,
        vec![
            (
                Method::DELETE,
                format!("/agents/{mine}/keys/{their_key_id}"),
                None,
            ),
            (
                Method::DELETE,
                format!("/agents/{mine}/keys/{sibling_id}"),
                None,
            ),
        ],
    )
    .await;
    expect(
        &app,
        Method::GET,
        &format!("/agents/{theirs}"),
        &their_key,
        None,
        200,
    )
    .await;
}

async fn other_tenants_get_404_on_identity_routes(db: TestDb) {
    let app = spawn_app(db).await;
    let id = app.create_agent_id(&json!({"name": "private"})).await;
    let (key_id, key, _) = agent_key(&app, &id, json!({})).await;
    let signed = expect_json(
        &app,
        Method::POST,
        &format!("/agents/{id}/sign"),
        &key,
        Some(json!({"payload": "x"})),
        200,
    )
    .await;
    let foreign_admin = app.create_tenant("b").await;
    assert_all_not_found(
        &app,
        &foreign_admin,
        vec![
            (Method::GET, format!("/agents/{id}/keys"), None),
            (Method::POST, format!("/agents/{id}/keys"), Some(json!({}))),
            (Method::DELETE, format!("/agents/{id}/keys/{key_id}"), None),
            (
                Method::POST,
                format!("/api/agents/{id}/rotate-key"),
                Some(json!({"key_id": key_id})),
            ),
            (
                Method::POST,
                format!("/agents/{id}/sign"),
                Some(json!({"payload": "x"})),
            ),
            (
                Method::POST,
                "/identity/verify".to_owned(),
                Some(json!({"agent_id": id, "payload": "x", "signature": signed["signature"]})),
            ),
        ],
    )
    .await;
    // Checking against the public key is plain arithmetic, but does not name the other tenant's agent.
    let verified = expect_json(
        &app,
        Method::POST,
        "/identity/verify",
        &foreign_admin,
        Some(json!({"public_key": signed["public_key"], "payload": "x", "signature": signed["signature"]})),
        200,
    )
    .await;
    assert_eq!(verified["valid"], true);
    assert!(verified.get("agent_id").is_none(), "{verified}");
    // Nothing changed: the key still works.
    expect(&app, Method::GET, &format!("/agents/{id}"), &key, None, 200).await;
}

async fn agents_made_before_identities_get_one_when_first_needed(db: TestDb) {
    let app = spawn_app(db).await;
    let tenant = tenant_of(&app, &app.admin_key).await;
    let now = agentd_core::now();
    let legacy = Agent {
        id: AgentId::new(),
        tenant_id: tenant,
        version: 1,
        spec: serde_json::from_value::<AgentSpec>(json!({"name": "old", "kind": "local"})).unwrap(),
        status: AgentStatus::Idle,
        health: AgentHealth::Unknown,
        created_at: now,
        updated_at: now,
        last_heartbeat_at: None,
        public_key: None,
    };
    let store: &dyn Store = app.runtime.store.as_ref();
    store.create_agent(&legacy, None, &[]).await.unwrap();
    let id = legacy.id.to_string();
    let before = expect_json(
        &app,
        Method::GET,
        &format!("/agents/{id}"),
        &app.admin_key,
        None,
        200,
    )
    .await;
    assert_eq!(before["public_key"], Value::Null);

    // The first signature makes the identity; later ones use it.
    let first = expect_json(
        &app,
        Method::POST,
        &format!("/agents/{id}/sign"),
        &app.admin_key,
        Some(json!({"payload": "a"})),
        200,
    )
    .await;
    let second = expect_json(
        &app,
        Method::POST,
        &format!("/agents/{id}/sign"),
        &app.admin_key,
        Some(json!({"payload": "b"})),
        200,
    )
    .await;
    assert_eq!(first["public_key"], second["public_key"]);
    let after = expect_json(
        &app,
        Method::GET,
        &format!("/agents/{id}"),
        &app.admin_key,
        None,
        200,
    )
    .await;
    assert_eq!(after["public_key"], first["public_key"]);
    assert!(ring_verifies(
        &decode(&first["public_key"]),
        b"b",
        &decode(&second["signature"])
    ));

    // Verifying by agent also gives one to an agent that has none.
    let mut other = legacy.clone();
    other.id = AgentId::new();
    store.create_agent(&other, None, &[]).await.unwrap();
    let verified = expect_json(
        &app,
        Method::POST,
        "/identity/verify",
        &app.admin_key,
        Some(json!({"agent_id": other.id, "payload": "a", "signature": first["signature"]})),
        200,
    )
    .await;
    assert_eq!(verified["valid"], false);
    let other_view = expect_json(
        &app,
        Method::GET,
        &format!("/agents/{}", other.id),
        &app.admin_key,
        None,
        200,
    )
    .await;
    assert_eq!(other_view["public_key"], verified["public_key"]);
    assert_ne!(other_view["public_key"], first["public_key"]);
}

backend_tests!(
    a_new_agent_signs_and_its_signatures_verify,
    bad_verification_input_names_the_field,
    a_rotated_agent_key_fails_at_once_and_the_new_one_works,
    an_agent_key_reaches_only_its_agent,
    other_tenants_get_404_on_identity_routes,
    agents_made_before_identities_get_one_when_first_needed,
);
