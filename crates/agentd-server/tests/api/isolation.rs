//! Tenant isolation, as a matrix derived from the server's own route table (`/openapi.json`, generated
//! from the router): with two tenants populated, every operation whose path names something, called
//! by tenant B with tenant A's ids, answers 404 and changes nothing A can read. Ids in bodies and
//! queries are covered beside it, and B's lists must show nothing of A's.
//!
//! Tenant B calls with its admin key: it holds every scope of its tenant, so no 401 or 403 can hide
//! a lookup, and any answer but a 404 is a leak.

use std::collections::BTreeMap;
use std::time::Duration;

use agentd_runtime::Config;
use agentd_testkit::{
    backend_tests, spawn_app_with_model_and, Reply, ScriptedModel, TestApp, TestDb,
};
use reqwest::Method;
use serde_json::{json, Value};

backend_tests!(another_tenants_ids_are_not_found_and_nothing_changes);

/// How the matrix gets the values of a path parameter.
enum Values {
    /// Something a tenant owns: every one tenant A has (and, for the mixed calls, tenant B's own).
    Owned(fn(&Tenant) -> Vec<String>),
    /// Not an id (the call still names A's resources through its other parameters): every value
    /// the parameter's schema enumerates.
    Enumerated,
}

/// Every path parameter the matrix knows. A route with a parameter not listed here fails the test:
/// add the parameter (and populate tenant A with one in [`populate_a`]), or, if it names nothing a
/// tenant owns, the route to [`EXCLUDED`] with the reason.
const PARAMETERS: &[(&str, Values)] = &[
    ("agent_id", Values::Owned(|t| t.agents.clone())),
    ("run_id", Values::Owned(|t| t.runs.clone())),
    ("session_id", Values::Owned(|t| t.sessions.clone())),
    // Tenant keys and agent keys alike: `/keys/{key_id}` must not reach an agent key of A either.
    ("key_id", Values::Owned(|t| t.keys.clone())),
    ("user_id", Values::Owned(|t| t.users.clone())),
    // A capability is named within its agent.
    ("capability", Values::Owned(|t| t.capabilities.clone())),
    ("memory_id", Values::Owned(|t| t.memories.clone())),
    ("content_id", Values::Owned(|t| t.contents.clone())),
    // `spawn`, `pause`, `resume`, `restart`, `terminate` of `/agents/{agent_id}/{action}`.
    ("action", Values::Enumerated),
];

/// Routes with path parameters that are not in the matrix, and why.
const EXCLUDED: &[(&str, &str, &str)] = &[
    (
        "get",
        "/auth/oauth/{provider}/authorize",
        "public (no tenant is known yet); `provider` names an OAuth provider of the server's \
         configuration, not tenant data (oauth.rs covers it)",
    ),
    (
        "get",
        "/auth/oauth/{provider}/callback",
        "public; `provider` is configuration, and the state a callback carries is checked by \
         oauth.rs",
    ),
];

/// Makes a request body from what tenant A owns.
type MakeBody = fn(&Tenant) -> Value;

/// A valid body for each matrix operation that takes one. Extractors run before the handler, so a
/// body the route cannot parse answers 422 before the id is ever looked up, which would prove
/// nothing; each body here is one the route would accept for A's own ids. An operation with a
/// request body that is not listed fails the test.
const BODIES: &[(&str, &str, MakeBody)] = &[
    (
        "patch",
        "/agents/{agent_id}",
        |_| json!({"description": "changed by tenant b"}),
    ),
    (
        "put",
        "/agents/{agent_id}/status",
        |_| json!({"status": "paused"}),
    ),
    (
        "post",
        "/agents/{agent_id}/heartbeat",
        |_| json!({"usage": {"cpu_millicores": 999}}),
    ),
    (
        "post",
        "/agents/{agent_id}/capabilities",
        |_| json!({"name": "added-by-b", "proficiency": 0.9}),
    ),
    (
        "patch",
        "/agents/{agent_id}/capabilities/{capability}",
        |_| json!({"proficiency": 0.9}),
    ),
    (
        "post",
        "/agents/{agent_id}/capabilities/{capability}/endorse",
        |_| json!({"comment": "endorsed by b"}),
    ),
    (
        "patch",
        "/agents/{agent_id}/resources",
        |_| json!({"api_quota": 1}),
    ),
    (
        "post",
        "/agents/{agent_id}/resources/usage",
        |_| json!({"api_calls": 1}),
    ),
    (
        "post",
        "/agents/{agent_id}/runs",
        |_| json!({"message": "run by b", "stream": false}),
    ),
    (
        "post",
        "/agents/{agent_id}/runs/{run_id}/continue",
        |a| json!({"tools": a.answered_tools, "stream": false}),
    ),
    (
        "post",
        "/agents/{agent_id}/runs/{run_id}/resume",
        |_| json!({"last_event_index": 0}),
    ),
    (
        "post",
        "/agents/{agent_id}/chat",
        |_| json!({"messages": [{"role": "user", "content": "chat by b"}]}),
    ),
    (
        "post",
        "/agents/{agent_id}/keys",
        |_| json!({"name": "made by b"}),
    ),
    // Without `key_id` only an agent key may rotate itself; name A's agent key, which is valid.
    (
        "post",
        "/api/agents/{agent_id}/rotate-key",
        |a| json!({"key_id": a.agent_keys[0]}),
    ),
    (
        "post",
        "/agents/{agent_id}/sign",
        |_| json!({"payload": "hello"}),
    ),
    (
        "patch",
        "/sessions/{session_id}",
        |_| json!({"session_name": "renamed by b", "metadata": {"by": "b"}}),
    ),
    (
        "post",
        "/sessions/{session_id}/rename",
        |_| json!({"session_name": "renamed by b"}),
    ),
    (
        "patch",
        "/users/{user_id}",
        |_| json!({"name": "renamed by b", "role": "viewer"}),
    ),
    (
        "patch",
        "/memories/{memory_id}",
        |_| json!({"memory": "changed by tenant b", "topics": ["b"], "feedback": "b"}),
    ),
    (
        "patch",
        "/knowledge/content/{content_id}",
        |_| json!({"name": "renamed by b", "description": null, "metadata": {"by": "b"}}),
    ),
];

/// Tenant-wide lists A reads for its snapshot, besides every GET of the matrix on its own ids.
const A_LISTS: &[&str] = &[
    "/agents",
    "/agents?status=terminated",
    "/sessions",
    "/memories",
    "/memory_topics",
    "/user_memory_stats",
    "/knowledge/content",
    "/knowledge/config",
    "/keys",
    "/users",
    "/audit?limit=500",
    "/usage",
    "/account/usage",
    "/v1/models",
    "/models",
    "/tenant",
];

/// Every string tenant A writes carries this, so any answer to B that contains it shows A's data.
const A_MARK: &str = "tenant-a";

/// The text of A's knowledge content.
const A_KNOWLEDGE: &str = "tenant-a knowledge: the zebra migration secret";

/// What a tenant owns, under the path parameter names that address it. Tenant B fills only its key,
/// agents, runs and sessions (what the mixed calls and the body checks use).
#[derive(Default)]
struct Tenant {
    /// The tenant's admin key.
    key: String,
    agents: Vec<String>,
    runs: Vec<String>,
    sessions: Vec<String>,
    /// Every key of the tenant: the admin key, a tenant key and an agent key.
    keys: Vec<String>,
    agent_keys: Vec<String>,
    users: Vec<String>,
    capabilities: Vec<String>,
    memories: Vec<String>,
    /// Knowledge contents, completed (so with chunks to search).
    contents: Vec<String>,
    /// A's tenant key and agent key, `(id, secret)`: they must still work at the end.
    secrets: Vec<(String, String)>,
    /// The pending tool calls of A's paused run with results filled in: a valid `continue` body.
    answered_tools: Value,
    /// A's agent's signature of `"hello"`, and its public key.
    signature: String,
    public_key: String,
}

impl Tenant {
    /// The ids that must never appear in an answer to the other tenant (besides [`A_MARK`]).
    fn ids(&self) -> Vec<&String> {
        [
            &self.agents,
            &self.runs,
            &self.sessions,
            &self.keys,
            &self.users,
            &self.memories,
            &self.contents,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// One documented operation.
struct Operation {
    method: String,
    path: String,
    spec: Value,
}

/// One request of the matrix.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
}

/// An answer, kept whole for the failure report.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| Value::String(self.body.clone()))
    }

    fn describe(&self) -> String {
        format!(
            "{} {}",
            self.status,
            shorten(&self.body.replace('\n', " "), 400)
        )
    }

    /// Whether this is the 404 of `path`'s face: problem+json `not_found` (not `route_not_found`,
    /// which would mean the matrix built a path the server does not have), OpenAI's error shape
    /// under `/v1/`, Ollama's under `/v1/llm/`.
    fn is_not_found(&self, path: &str) -> bool {
        if self.status != 404 {
            return false;
        }
        let body = self.json();
        if path.starts_with("/v1/llm/") {
            return body["error"].is_string();
        }
        if path.starts_with("/v1/") {
            return matches!(
                body["error"]["code"].as_str(),
                Some("not_found" | "model_not_found")
            );
        }
        self.content_type == "application/problem+json" && body["code"] == "not_found"
    }
}

async fn call(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    // A leaked run or event stream must fail the test, not hang it.
    let mut request = app
        .request(method.clone(), path, key)
        .timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .text()
        .await
        .unwrap_or_else(|error| format!("(body unreadable: {error})"));
    Answer {
        status,
        content_type,
        body,
    }
}

/// A call made while populating, which must answer `status`; returns the JSON body.
async fn expect(
    app: &TestApp,
    key: &str,
    method: Method,
    path: impl AsRef<str>,
    body: Option<Value>,
    status: u16,
) -> Value {
    let path = path.as_ref();
    let answer = call(app, key, method.clone(), path, body.as_ref()).await;
    assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
    answer.json()
}

/// `text` cut to `max` characters, for failure reports.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a string, not {value}"))
        .to_owned()
}

/// The status of a knowledge content once it is no longer `processing` (waiting up to 30 s: the
/// processing shares the machine with the other tests, the local embedder's among them).
async fn processed(app: &TestApp, key: &str, content_id: &str) -> Value {
    let mut status = Value::Null;
    for _ in 0..1200 {
        status = expect(
            app,
            key,
            Method::GET,
            format!("/knowledge/content/{content_id}/status"),
            None,
            200,
        )
        .await;
        if status["status"] != "processing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    status
}

/// Tenant A, the default tenant: an agent at version 2 with a skill, a capability (endorsed),
/// resources, a heartbeat, an identity and a signature, a completed and a paused run, three sessions,
/// a tenant key, an agent key, a user, two memories and a knowledge content (completed, embedded).
async fn populate_a(app: &TestApp, model: &ScriptedModel) -> Tenant {
    let key = app.admin_key.clone();
    let agent = app
        .create_agent(&json!({
            "name": "tenant-a-agent",
            "instructions": "tenant-a instructions",
            "model": "scripted/tenant-a-model",
            "skills": ["tenant-a-research"],
            "tags": ["tenant-a-tag"],
            "tools": [{"name": "ask_user", "client_side": true, "parameters": {"type": "object"}}],
        }))
        .await;
    let agent_id = text(&agent["id"]);
    let at = |suffix: &str| format!("/agents/{agent_id}{suffix}");
    let post = |path: String, body: Value| expect(app, &key, Method::POST, path, Some(body), 200);

    expect(
        app,
        &key,
        Method::PATCH,
        &at(""),
        Some(json!({"description": "tenant-a second version"})),
        200,
    )
    .await;
    expect(
        app,
        &key,
        Method::POST,
        &at("/capabilities"),
        Some(json!({"name": "tenant-a-summarizing", "proficiency": 0.4})),
        201,
    )
    .await;
    expect(
        app,
        &key,
        Method::POST,
        &at("/capabilities/tenant-a-summarizing/endorse"),
        Some(json!({"comment": "tenant-a endorsement"})),
        201,
    )
    .await;
    expect(
        app,
        &key,
        Method::PATCH,
        &at("/resources"),
        Some(json!({"api_quota": 100})),
        200,
    )
    .await;
    post(at("/resources/usage"), json!({"api_calls": 2})).await;
    post(at("/heartbeat"), json!({"usage": {"cpu_millicores": 250}})).await;
    let signed = post(at("/sign"), json!({"payload": "hello"})).await;

    model.push(Reply::text("tenant-a answer").usage(5, 3));
    let completed = post(
        at("/runs"),
        json!({"message": "tenant-a secret message", "stream": false}),
    )
    .await;
    assert_eq!(completed["status"], "COMPLETED", "{completed}");
    model.push(Reply::tool_call(
        "call_a",
        "ask_user",
        r#"{"question":"tenant-a question"}"#,
    ));
    let paused = post(
        at("/runs"),
        json!({"message": "tenant-a asks", "stream": false}),
    )
    .await;
    assert_eq!(paused["status"], "PAUSED", "{paused}");
    let answered_tools: Vec<Value> = paused["tools"]
        .as_array()
        .expect("the paused run's tools")
        .iter()
        .map(|tool| {
            let mut tool = tool.clone();
            tool["result"] = json!("tenant-a tool result");
            tool
        })
        .collect();
    let session = expect(
        app,
        &key,
        Method::POST,
        "/sessions",
        Some(json!({
            "agent_id": agent_id,
            "session_name": "tenant-a-session",
            "session_state": {"step": "tenant-a"},
        })),
        201,
    )
    .await;

    let tenant_key = expect(
        app,
        &key,
        Method::POST,
        "/keys",
        Some(json!({"name": "tenant-a-key", "scopes": ["agents:read"]})),
        201,
    )
    .await;
    let agent_key = expect(
        app,
        &key,
        Method::POST,
        &at("/keys"),
        Some(json!({"name": "tenant-a-agent-key"})),
        201,
    )
    .await;
    let user = expect(
        app,
        &key,
        Method::POST,
        "/users",
        Some(json!({"email": "ann@tenant-a.example", "name": "tenant-a Ann"})),
        201,
    )
    .await;

    let mut memories = Vec::new();
    for (user, topic) in [
        ("tenant-a-user", "tenant-a-topic"),
        ("tenant-a-other", "tenant-a-more"),
    ] {
        let memory = expect(
            app,
            &key,
            Method::POST,
            "/memories",
            Some(json!({
                "memory": format!("tenant-a fact about {user}"),
                "user_id": user,
                "topics": [topic],
                "agent_id": agent_id,
                "input": "tenant-a input",
            })),
            201,
        )
        .await;
        memories.push(text(&memory["memory_id"]));
    }

    let content = expect(
        app,
        &key,
        Method::POST,
        "/knowledge/content",
        Some(json!({
            "text": A_KNOWLEDGE,
            "name": "tenant-a-content",
            "metadata": {"owner": "tenant-a-owner"},
        })),
        202,
    )
    .await;
    let content_id = text(&content["id"]);
    let status = processed(app, &key, &content_id).await;
    assert_eq!(status["status"], "completed", "{status}");

    let keys = expect(app, &key, Method::GET, "/keys", None, 200).await;
    let capabilities = expect(app, &key, Method::GET, &at("/capabilities"), None, 200).await;
    let names = |list: &Value, field: &str| -> Vec<String> {
        list["data"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|item| text(&item[field]))
            .collect()
    };
    let tenant = Tenant {
        agents: vec![agent_id.clone()],
        runs: vec![text(&completed["run_id"]), text(&paused["run_id"])],
        sessions: vec![
            text(&completed["session_id"]),
            text(&paused["session_id"]),
            text(&session["session_id"]),
        ],
        keys: names(&keys, "id"),
        agent_keys: vec![text(&agent_key["id"])],
        users: vec![text(&user["id"])],
        capabilities: names(&capabilities, "name"),
        memories,
        contents: vec![content_id],
        secrets: [tenant_key, agent_key.clone()]
            .iter()
            .map(|key| (text(&key["id"]), text(&key["key"])))
            .collect(),
        answered_tools: Value::Array(answered_tools),
        signature: text(&signed["signature"]),
        public_key: text(&agent["public_key"]),
        key,
    };
    assert_eq!(tenant.keys.len(), 3, "{keys}");
    assert_eq!(tenant.capabilities.len(), 2, "{capabilities}");
    tenant
}

/// Tenant B: its admin key, an agent and a completed run (so a session), for the mixed calls.
async fn populate_b(app: &TestApp) -> Tenant {
    let key = app.create_tenant("b").await;
    let agent = expect(
        app,
        &key,
        Method::POST,
        "/agents",
        Some(json!({"name": "tenant-b-agent", "model": "scripted/gpt-test"})),
        201,
    )
    .await;
    let agent_id = text(&agent["id"]);
    let run = expect(
        app,
        &key,
        Method::POST,
        &format!("/agents/{agent_id}/runs"),
        Some(json!({"message": "tenant-b hello", "stream": false})),
        200,
    )
    .await;
    Tenant {
        key,
        agents: vec![agent_id],
        runs: vec![text(&run["run_id"])],
        sessions: vec![text(&run["session_id"])],
        ..Tenant::default()
    }
}

async fn operations(app: &TestApp) -> Vec<Operation> {
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, spec) in item.as_object().unwrap() {
            operations.push(Operation {
                method: method.clone(),
                path: path.clone(),
                spec: spec.clone(),
            });
        }
    }
    operations
}

/// The `{name}`s of a path template, in order.
fn path_parameters(template: &str) -> Vec<String> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

fn excluded(operation: &Operation) -> bool {
    EXCLUDED
        .iter()
        .any(|(method, path, _)| *method == operation.method && *path == operation.path)
}

/// Every path `template` gives with each parameter set to each of its values.
fn expand(template: &str, choices: &[(String, Vec<String>)]) -> Vec<String> {
    let mut paths = vec![template.to_owned()];
    for (name, values) in choices {
        let placeholder = format!("{{{name}}}");
        paths = paths
            .iter()
            .flat_map(|path| values.iter().map(|v| path.replace(&placeholder, v)))
            .collect();
    }
    paths
}

/// The values of parameter `name` of `operation`, from `tenant` when it is owned, and whether it is.
fn parameter_values(
    operation: &Operation,
    name: &str,
    tenant: &Tenant,
) -> Result<(bool, Vec<String>), String> {
    let route = format!("{} {}", operation.method.to_uppercase(), operation.path);
    let Some((_, values)) = PARAMETERS.iter().find(|(known, _)| *known == name) else {
        return Err(format!(
            "{route}: path parameter `{name}` is unknown to the isolation matrix; add it to \
             PARAMETERS in tests/api/isolation.rs (and give tenant A one), or the route to EXCLUDED \
             with the reason"
        ));
    };
    match values {
        Values::Owned(of) => {
            let values = of(tenant);
            if values.is_empty() {
                return Err(format!("{route}: the tenant has no `{name}`: populate one"));
            }
            Ok((true, values))
        }
        Values::Enumerated => {
            let listed = operation.spec["parameters"]
                .as_array()
                .and_then(|all| all.iter().find(|p| p["name"] == name))
                .and_then(|p| p["schema"]["enum"].as_array())
                .map(|values| values.iter().map(text).collect::<Vec<_>>())
                .unwrap_or_default();
            if listed.is_empty() {
                return Err(format!(
                    "{route}: `{name}` is marked Enumerated but its schema lists no values"
                ));
            }
            Ok((false, listed))
        }
    }
}

/// The matrix: every operation with path parameters (less [`EXCLUDED`]) on A's values, and, where
/// a path names two owned things, once more with B's own first one (B's agent with A's run, B's
/// session with A's run…), so a nested lookup that trusts its parent is caught too. Unknown
/// parameters, missing bodies and stale exclusions fail here, all listed at once.
fn matrix(operations: &[Operation], a: &Tenant, b: &Tenant) -> Vec<Call> {
    let mut problems = Vec::new();
    let mut calls = Vec::new();
    for operation in operations.iter().filter(|op| !excluded(op)) {
        let names = path_parameters(&operation.path);
        if names.is_empty() {
            continue;
        }
        let method = Method::from_bytes(operation.method.to_uppercase().as_bytes()).unwrap();
        let body = match operation.spec.get("requestBody") {
            None => None,
            Some(_) => match BODIES
                .iter()
                .find(|(m, p, _)| *m == operation.method && *p == operation.path)
            {
                Some((_, _, make)) => Some(make(a)),
                None => {
                    problems.push(format!(
                        "{method} {}: takes a body; add a valid one to BODIES",
                        operation.path
                    ));
                    continue;
                }
            },
        };
        let mut all_a = Vec::new();
        let mut owned = Vec::new();
        for name in names {
            match parameter_values(operation, &name, a) {
                Ok((is_owned, values)) => {
                    if is_owned {
                        owned.push(all_a.len());
                    }
                    all_a.push((name, values));
                }
                Err(problem) => problems.push(problem),
            }
        }
        let mut paths = expand(&operation.path, &all_a);
        if owned.len() >= 2 {
            let mut mixed = all_a.clone();
            let first = &mut mixed[owned[0]];
            match parameter_values(operation, &first.0, b) {
                Ok((_, own)) => first.1 = own,
                Err(problem) => problems.push(format!("tenant B: {problem}")),
            }
            paths.extend(expand(&operation.path, &mixed));
        }
        for path in paths {
            calls.push(Call {
                method: method.clone(),
                path,
                body: body.clone(),
            });
        }
    }
    for (method, path, _) in EXCLUDED {
        if !operations
            .iter()
            .any(|op| op.method == *method && op.path == *path)
        {
            problems.push(format!(
                "EXCLUDED names {method} {path}, which the server does not have"
            ));
        }
    }
    for (method, path, _) in BODIES {
        if !operations
            .iter()
            .any(|op| op.method == *method && op.path == *path)
        {
            problems.push(format!(
                "BODIES names {method} {path}, which the server does not have"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the isolation matrix cannot cover every route:\n{}",
        problems.join("\n")
    );
    assert!(calls.len() >= 40, "only {} calls", calls.len());
    // Reads first and deletions last, so a leaking write cannot hide a later read's answer.
    let rank = |method: &Method| match *method {
        Method::GET => 0,
        Method::DELETE => 2,
        _ => 1,
    };
    calls.sort_by_key(|call| rank(&call.method));
    calls
}

/// What A reads for its snapshot: its tenant-wide lists and every GET of the matrix on its own ids.
fn snapshot_reads(operations: &[Operation], a: &Tenant) -> Vec<String> {
    let mut reads: Vec<String> = A_LISTS.iter().map(|path| (*path).to_owned()).collect();
    for operation in operations
        .iter()
        .filter(|op| op.method == "get" && !excluded(op))
    {
        let choices: Vec<(String, Vec<String>)> = path_parameters(&operation.path)
            .into_iter()
            .map(|name| {
                let (_, values) = parameter_values(operation, &name, a).unwrap();
                (name, values)
            })
            .collect();
        if !choices.is_empty() {
            reads.extend(expand(&operation.path, &choices));
        }
    }
    reads
}

/// Drops what legitimately moves between two reads of unchanged data:
/// - `last_used_at` of A's admin key: A's own snapshot reads authenticate with it, and a use is
///   recorded (at most once a minute), so it may move between the snapshots;
/// - `silence_seconds` and `reason` of `/agents/{agent_id}/health`: the time since the last
///   heartbeat, computed from the clock at each read (the stored `last_heartbeat_at` and `health`
///   are kept and compared).
fn normalize(path: &str, mut body: Value, admin_key: &str) -> Value {
    fn walk(value: &mut Value, admin_key: &str) {
        match value {
            Value::Object(map) => {
                let is_admin = map
                    .get("prefix")
                    .and_then(Value::as_str)
                    .is_some_and(|prefix| admin_key.starts_with(prefix));
                if is_admin {
                    map.remove("last_used_at");
                }
                map.values_mut().for_each(|v| walk(v, admin_key));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, admin_key)),
            _ => {}
        }
    }
    walk(&mut body, admin_key);
    if path.ends_with("/health") {
        if let Value::Object(map) = &mut body {
            map.remove("silence_seconds");
            map.remove("reason");
        }
    }
    body
}

/// Where `now` first differs from `was` (a JSON pointer), with both values; `None` when equal.
fn difference(pointer: &str, was: &Value, now: &Value) -> Option<String> {
    match (was, now) {
        _ if was == now => None,
        (Value::Object(before), Value::Object(after)) => {
            before.keys().chain(after.keys()).find_map(|key| {
                let field = |map: &serde_json::Map<String, Value>| {
                    map.get(key).cloned().unwrap_or(Value::Null)
                };
                difference(&format!("{pointer}/{key}"), &field(before), &field(after))
            })
        }
        (Value::Array(before), Value::Array(after)) if before.len() == after.len() => before
            .iter()
            .zip(after)
            .enumerate()
            .find_map(|(i, (was, now))| difference(&format!("{pointer}/{i}"), was, now)),
        _ => Some(format!(
            "`{pointer}`: {} → {}",
            shorten(&was.to_string(), 300),
            shorten(&now.to_string(), 300)
        )),
    }
}

async fn snapshot(app: &TestApp, a: &Tenant, reads: &[String]) -> BTreeMap<String, Value> {
    // The audit log is appended in the background; what was queued must be in the snapshot.
    app.runtime.audit.flush().await;
    let mut snapshot = BTreeMap::new();
    for path in reads {
        let answer = call(app, &a.key, Method::GET, path, None).await;
        let body = normalize(path, answer.json(), &a.key);
        snapshot.insert(path.clone(), json!({"status": answer.status, "body": body}));
    }
    snapshot
}

/// B's own reads without path parameters, and B's lists filtered by A's ids and names, answer
/// nothing of A's.
async fn b_sees_nothing_of_a(
    app: &TestApp,
    operations: &[Operation],
    a: &Tenant,
    b: &Tenant,
    failures: &mut Vec<String>,
) {
    let a_agent = &a.agents[0];
    let mut reads: Vec<String> = operations
        .iter()
        .filter(|op| op.method == "get" && path_parameters(&op.path).is_empty())
        .map(|op| op.path.clone())
        .collect();
    reads.extend([
        format!("/agents?capability={A_MARK}-research"),
        format!("/agents?name_prefix={A_MARK}"),
        format!("/agents?tag={A_MARK}-tag"),
        "/agents?status=terminated".to_owned(),
        format!("/sessions?component_id={a_agent}"),
        format!("/sessions?session_name={A_MARK}"),
        format!("/audit?agent_id={a_agent}"),
        format!("/audit?target=/agents/{a_agent}"),
        "/audit?limit=500".to_owned(),
        format!("/memories?agent_id={a_agent}"),
        format!("/memories?user_id={A_MARK}-user"),
        format!("/memories?topics={A_MARK}-topic"),
        format!("/memories?search_content={A_MARK}"),
        "/knowledge/content?limit=500".to_owned(),
        format!("/memory_topics?user_id={A_MARK}-user"),
        format!("/user_memory_stats?user_id={A_MARK}-user"),
    ]);
    for session in &a.sessions {
        reads.push(format!("/agents/{}/runs?session_id={session}", b.agents[0]));
    }
    for key in &a.keys {
        reads.push(format!("/audit?actor=key:{key}"));
    }
    for path in reads {
        let answer = call(app, &b.key, Method::GET, &path, None).await;
        if answer.status >= 500 {
            failures.push(format!("B: GET {path} → {}", answer.describe()));
        }
        if let Some(found) = a_data_in(&answer.body, a) {
            failures.push(format!(
                "B: GET {path} shows A's `{found}` → {}",
                answer.describe()
            ));
        }
    }
}

/// The first of A's ids or marked strings that `body` contains.
fn a_data_in(body: &str, a: &Tenant) -> Option<String> {
    if body.contains(A_MARK) {
        return Some(A_MARK.to_owned());
    }
    a.ids()
        .into_iter()
        .find(|id| body.contains(id.as_str()))
        .cloned()
}

/// Ids in bodies, headers and queries: each names A's resource, or runs B's own in a session whose id
/// is one of A's, and must neither find A's resource nor read anything of A's.
async fn ids_in_bodies(
    app: &TestApp,
    model: &ScriptedModel,
    a: &Tenant,
    b: &Tenant,
    failures: &mut Vec<String>,
) {
    let a_agent = &a.agents[0];
    let b_agent = &b.agents[0];
    let a_model = format!("agent/{a_agent}");
    let hello = json!([{"role": "user", "content": "hello from b"}]);
    let not_found = [
        ("/v1/chat/completions", json!({"model": a_model, "messages": hello})),
        (
            "/v1/chat/completions",
            json!({"model": a_model, "messages": hello, "stream": true}),
        ),
        // A would get 400 here ("agents answer chat"): B must not learn that the agent exists.
        ("/v1/completions", json!({"model": a_model, "prompt": "hello"})),
        ("/v1/embeddings", json!({"model": a_model, "input": "hello"})),
        ("/v1/llm/chat", json!({"model": a_model, "messages": hello})),
        ("/v1/llm/generate", json!({"model": a_model, "prompt": "hello"})),
        ("/v1/llm/embed", json!({"model": a_model, "input": "hello"})),
        ("/sessions", json!({"agent_id": a_agent, "session_name": "b"})),
        (
            "/identity/verify",
            json!({"agent_id": a_agent, "payload": "hello", "signature": a.signature}),
        ),
    ]
    .into_iter()
    .map(|(path, body)| (path.to_owned(), body))
    .chain([
        (
            format!("/api/agents/{b_agent}/rotate-key"),
            json!({"key_id": a.agent_keys[0]}),
        ),
        (
            format!("/agents/{b_agent}/chat"),
            json!({
                "run_id": a.runs[1],
                "messages": [
                    {"role": "user", "content": "hello from b"},
                    {"role": "assistant", "tool_calls": [
                        {"id": "call_a", "type": "function", "function": {"name": "ask_user", "arguments": "{}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_a", "content": "answered by b"},
                ],
            }),
        ),
    ]);
    for (path, body) in not_found {
        let answer = call(app, &b.key, Method::POST, &path, Some(&body)).await;
        // OpenAI's face names the model: `model_not_found`, as for a model that does not exist.
        let openai = path.starts_with("/v1/") && !path.starts_with("/v1/llm/");
        let model_not_found = !openai || answer.json()["error"]["code"] == "model_not_found";
        if !answer.is_not_found(&path) || !model_not_found {
            failures.push(format!("B: POST {path} {body} → {}", answer.describe()));
        }
    }

    // Deleting A's sessions by id skips them, as for any id the tenant does not have.
    let answer = call(
        app,
        &b.key,
        Method::DELETE,
        "/sessions",
        Some(&json!({"session_ids": a.sessions})),
    )
    .await;
    if answer.status != 200 || answer.json()["deleted"] != 0 {
        failures.push(format!(
            "B: DELETE /sessions {:?} → {}",
            a.sessions,
            answer.describe()
        ));
    }

    // Deleting A's memories by id skips them too, with or without A's user.
    for body in [
        json!({"memory_ids": a.memories}),
        json!({"memory_ids": a.memories, "user_id": format!("{A_MARK}-user")}),
    ] {
        let answer = call(app, &b.key, Method::DELETE, "/memories", Some(&body)).await;
        if answer.status != 200 || answer.json()["deleted"] != 0 {
            failures.push(format!(
                "B: DELETE /memories {body} → {}",
                answer.describe()
            ));
        }
    }

    // B's knowledge searches, of every type, for A's words and filtered by A's metadata, find
    // nothing of A's; deleting all of B's knowledge deletes none of A's (the snapshot checks).
    for search_type in ["keyword", "vector", "hybrid"] {
        for filters in [json!({}), json!({"owner": format!("{A_MARK}-owner")})] {
            let body = json!({
                "query": A_KNOWLEDGE,
                "search_type": search_type,
                "filters": filters,
                "max_results": 100,
            });
            let answer = call(app, &b.key, Method::POST, "/knowledge/search", Some(&body)).await;
            let leaked = a_data_in(&answer.body, a);
            if answer.status != 200 || leaked.is_some() {
                failures.push(format!(
                    "B: POST /knowledge/search {body} → {}",
                    answer.describe()
                ));
            }
        }
    }
    let answer = call(app, &b.key, Method::DELETE, "/knowledge/content", None).await;
    if answer.status != 200 {
        failures.push(format!(
            "B: DELETE /knowledge/content → {}",
            answer.describe()
        ));
    }
    // The same bytes as A's are B's own upload, not a duplicate of A's content.
    let answer = call(
        app,
        &b.key,
        Method::POST,
        "/knowledge/content",
        Some(&json!({"text": A_KNOWLEDGE})),
    )
    .await;
    let upload = answer.json();
    if answer.status != 202
        || upload["duplicate"] != false
        || a.contents.contains(&text(&upload["id"]))
    {
        failures.push(format!(
            "B: POST /knowledge/content with A's bytes → {}",
            answer.describe()
        ));
    } else {
        // Processed now: its embedding request (A's words, B's own upload) must reach the model
        // before the session checks below start counting what B's runs send it, and no background
        // write may overlap A's second snapshot. (It once came late and was taken for a leak.)
        let status = processed(app, &b.key, &text(&upload["id"])).await;
        if status["status"] != "completed" {
            failures.push(format!(
                "B's upload of A's bytes did not complete: {status}"
            ));
        }
    }

    // A signature is public: B may check one against A's public key, but not learn whose it is.
    let answer = call(
        app,
        &b.key,
        Method::POST,
        "/identity/verify",
        Some(&json!({"public_key": a.public_key, "payload": "hello", "signature": a.signature})),
    )
    .await;
    if answer.status != 200 || answer.json().get("agent_id").is_some() {
        failures.push(format!(
            "B: POST /identity/verify with A's public key → {}",
            answer.describe()
        ));
    }

    // B may name a session with the id of one of A's: that is B's own session (sessions are per
    // tenant), so A's history must not reach B's model or B's answer.
    let seen = model.requests().len();
    let session = &a.sessions[0];
    let runs_in_a_session = [
        (
            format!("/agents/{b_agent}/runs"),
            json!({"message": "hello from b", "stream": false, "session_id": session}),
        ),
        (
            format!("/agents/{b_agent}/chat"),
            json!({"messages": hello, "session_id": session}),
        ),
        (
            "/v1/chat/completions".to_owned(),
            json!({"model": format!("agent/{b_agent}"), "messages": hello, "session_id": session}),
        ),
    ];
    for (path, body) in runs_in_a_session {
        let answer = call(app, &b.key, Method::POST, &path, Some(&body)).await;
        if answer.status != 200 || answer.body.contains(A_MARK) {
            failures.push(format!("B: POST {path} {body} → {}", answer.describe()));
        }
    }
    let answer = app
        .request(Method::POST, "/v1/chat/completions", &b.key)
        .header("x-session-id", session.as_str())
        .json(&json!({"model": format!("agent/{b_agent}"), "messages": hello}))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let body = answer.text().await.unwrap();
    if status != 200 || body.contains(A_MARK) {
        failures.push(format!(
            "B: POST /v1/chat/completions with X-Session-Id {session} → {status} {body}"
        ));
    }
    // Only the chat calls of B's runs count: B's own searches and uploads embed A's words on purpose.
    let chats = model.requests().into_iter().skip(seen);
    for request in chats.filter(|request| request.path == "/v1/chat/completions") {
        if request.body.to_string().contains(A_MARK) {
            failures.push(format!(
                "B's run in a session named like A's sent A's data to the model: {}",
                request.body
            ));
        }
    }
}

async fn another_tenants_ids_are_not_found_and_nothing_changes(db: TestDb) {
    let mut config = Config::default();
    // A's agent has sent a heartbeat, so the sweeper watches it; at the default 30 s interval a slow
    // run of this test could see it turn `degraded` between the snapshots.
    config.health.heartbeat_interval_ms = 3_600_000;
    // Knowledge is embedded, so B's vector and hybrid searches run for real.
    config.knowledge.embedder = Some("scripted/embedder".to_owned());
    let (app, model) = spawn_app_with_model_and(db, config).await;
    // A run that leaked onto A's agent must end rather than wait for a reply.
    model.set_default(Reply::text("scripted answer"));
    let a = populate_a(&app, &model).await;
    let b = populate_b(&app).await;
    let operations = operations(&app).await;
    let matrix = matrix(&operations, &a, &b);
    let reads = snapshot_reads(&operations, &a);
    let before = snapshot(&app, &a, &reads).await;
    assert!(
        before.values().filter(|read| read["status"] == 200).count() >= 20,
        "A's own reads mostly work: {before:#?}"
    );

    let mut failures = Vec::new();
    b_sees_nothing_of_a(&app, &operations, &a, &b, &mut failures).await;
    for request in &matrix {
        let (method, path) = (&request.method, &request.path);
        let answer = call(&app, &b.key, method.clone(), path, request.body.as_ref()).await;
        if !answer.is_not_found(path) {
            failures.push(format!("B: {method} {path} → {}", answer.describe()));
        }
    }
    ids_in_bodies(&app, &model, &a, &b, &mut failures).await;

    let after = snapshot(&app, &a, &reads).await;
    for (path, was) in &before {
        let now = &after[path];
        if let Some(difference) = difference("", was, now) {
            failures.push(format!("A: GET {path} changed at {difference}"));
        }
    }
    for (id, secret) in &a.secrets {
        let answer = call(
            &app,
            secret,
            Method::GET,
            &format!("/agents/{}", a.agents[0]),
            None,
        )
        .await;
        if answer.status != 200 {
            failures.push(format!(
                "A's key {id} no longer works: {}",
                answer.describe()
            ));
        }
    }
    // Also on stderr, on lines of their own, so a CI log that keeps only some lines still names them.
    for failure in &failures {
        eprintln!("isolation failure: {failure}");
    }
    assert!(
        failures.is_empty(),
        "{} isolation failures over {} matrix calls:\n{}",
        failures.len(),
        matrix.len(),
        failures.join("\n")
    );
}
