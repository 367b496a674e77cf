//! `/memories…`, `/memory_topics` and `/user_memory_stats`: create, read, change and delete
//! memories; every list filter, page numbers and cursors, sorting; topics and per-user figures;
//! bulk deletion; bad input naming its field; another tenant's memories out of reach; and signed-in
//! users of one tenant out of each other's.

use agentd_testkit::{backend_tests, spawn_app, TestApp, TestDb};
use reqwest::Method;
use serde_json::{json, Value};

use crate::{assert_all_not_found, assert_problem};

backend_tests!(
    memories_are_created_read_changed_and_deleted,
    memory_lists_filter_sort_and_page,
    topics_and_user_stats_sum_up_memories,
    bulk_deletion_skips_what_it_may_not_delete,
    bad_input_is_refused_naming_the_field,
    another_tenants_memories_are_out_of_reach,
    signed_in_users_reach_only_their_own_memories,
);

/// Creates a memory with the admin key (asserting 201). Waits 2 ms first, so memories created one
/// after another have distinct times and their order is the order of creation.
async fn create(app: &TestApp, body: Value) -> Value {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let response = app.post_json("/memories", &body).send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "POST /memories {body}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap()
}

fn id(memory: &Value) -> String {
    memory["memory_id"].as_str().unwrap().to_owned()
}

/// The texts of a list's memories, in order.
fn texts(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|m| m["memory"].as_str().unwrap().to_owned())
        .collect()
}

async fn patch(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.request(Method::PATCH, path, &app.admin_key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn delete(app: &TestApp, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app.request(Method::DELETE, path, &app.admin_key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn memories_are_created_read_changed_and_deleted(db: TestDb) {
    let app = spawn_app(db).await;
    let created = create(
        &app,
        json!({
            "memory": "Prefers email",
            "user_id": "ann",
            "topics": [" contact ", "preferences", "contact"],
            "agent_id": "support-bot",
            "input": "Please email me",
        }),
    )
    .await;
    let memory_id = id(&created);
    assert!(uuid::Uuid::parse_str(&memory_id).is_ok(), "{created}");
    assert_eq!(created["memory"], "Prefers email");
    assert_eq!(created["user_id"], "ann");
    assert_eq!(created["topics"], json!(["contact", "preferences"]));
    assert_eq!(created["agent_id"], "support-bot");
    assert_eq!(created["team_id"], Value::Null);
    assert_eq!(created["input"], "Please email me");
    assert_eq!(created["feedback"], Value::Null);
    assert_eq!(created["created_at"], created["updated_at"]);

    let path = format!("/memories/{memory_id}");
    assert_eq!(app.get_json(&path).await, created);

    // AgentOS clients send the whole memory with its user; the user stays.
    let response = patch(
        &app,
        &path,
        json!({"memory": "Prefers phone calls", "topics": ["contact"], "user_id": "someone-else"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let changed: Value = response.json().await.unwrap();
    assert_eq!(changed["memory"], "Prefers phone calls");
    assert_eq!(changed["topics"], json!(["contact"]));
    assert_eq!(changed["user_id"], "ann");
    assert_eq!(changed["agent_id"], "support-bot", "absent fields are kept");
    assert_eq!(changed["created_at"], created["created_at"]);
    assert!(
        time(&changed["updated_at"]) >= time(&created["updated_at"]),
        "{changed}"
    );
    // `null` clears; feedback and team can be set.
    let response = patch(
        &app,
        &path,
        json!({"agent_id": null, "team_id": "care-team", "feedback": "correct", "input": null}),
    )
    .await;
    let changed: Value = response.json().await.unwrap();
    assert_eq!(changed["agent_id"], Value::Null);
    assert_eq!(changed["team_id"], "care-team");
    assert_eq!(changed["feedback"], "correct");
    assert_eq!(changed["input"], Value::Null);
    assert_eq!(changed["memory"], "Prefers phone calls");
    assert_eq!(app.get_json(&path).await, changed);

    let response = delete(&app, &path, None).await;
    assert_eq!(response.status(), 204);
    let again = delete(&app, &path, None).await;
    assert_problem(again, 404, "not_found").await;
    let gone = app.get(&path).send().await.unwrap();
    assert_problem(gone, 404, "not_found").await;
    let response = patch(&app, &path, json!({"memory": "back"})).await;
    assert_problem(response, 404, "not_found").await;
    let list: Value = app.get_json("/memories").await;
    assert_eq!(list["meta"]["total_count"], 0);
}

async fn memory_lists_filter_sort_and_page(db: TestDb) {
    let app = spawn_app(db).await;
    // Created in this order, so each is newer than the one before.
    let tea = create(
        &app,
        json!({"memory": "Likes green TEA", "user_id": "ann", "topics": ["food", "tea"], "agent_id": "agent-x"}),
    )
    .await;
    let work = create(
        &app,
        json!({"memory": "Works at ACME, 100%_done", "user_id": "ann", "topics": ["work"], "team_id": "team-1"}),
    )
    .await;
    let coffee = create(
        &app,
        json!({"memory": "Hates coffee", "user_id": "bob", "topics": ["food"], "agent_id": "agent-x"}),
    )
    .await;
    let texts_of = |memories: &[&Value]| -> Vec<String> {
        memories
            .iter()
            .map(|m| m["memory"].as_str().unwrap().to_owned())
            .collect()
    };

    // Most recently updated first, in AgentOS's envelope.
    let all: Value = app.get_json("/memories").await;
    assert_eq!(texts(&all), texts_of(&[&coffee, &work, &tea]));
    assert_eq!(
        all["meta"],
        json!({"page": 1, "limit": 50, "total_pages": 1, "total_count": 3, "next_cursor": null})
    );

    for (query, expected) in [
        ("user_id=ann", vec![&work, &tea]),
        ("user_id=bob", vec![&coffee]),
        ("user_id=nobody", vec![]),
        ("agent_id=agent-x", vec![&coffee, &tea]),
        ("team_id=team-1", vec![&work]),
        ("topics=food", vec![&coffee, &tea]),
        ("topics=food,tea", vec![&tea]),
        ("topics=%20food%20,%20tea%20", vec![&tea]),
        ("topics=food,work", vec![]),
        ("search_content=tea", vec![&tea]),
        ("search_content=ACME", vec![&work]),
        ("search_content=acme", vec![&work]),
        ("search_content=100%25_", vec![&work]),
        ("search_content=_", vec![&work]),
        (
            "user_id=ann&topics=food&search_content=green&agent_id=agent-x",
            vec![&tea],
        ),
        // Empty values do not filter.
        (
            "user_id=&topics=&search_content=",
            vec![&coffee, &work, &tea],
        ),
    ] {
        let list: Value = app.get_json(&format!("/memories?{query}")).await;
        assert_eq!(texts(&list), texts_of(&expected), "{query}: {list}");
        assert_eq!(list["meta"]["total_count"], expected.len(), "{query}");
    }

    // Sorting.
    let list: Value = app
        .get_json("/memories?sort_by=created_at&sort_order=asc")
        .await;
    assert_eq!(texts(&list), texts_of(&[&tea, &work, &coffee]));
    let list: Value = app.get_json("/memories?sort_order=asc").await;
    assert_eq!(texts(&list), texts_of(&[&tea, &work, &coffee]));
    // Updating a memory moves it to the front of the default order, not of the creation order.
    let response = patch(
        &app,
        &format!("/memories/{}", id(&tea)),
        json!({"memory": "Likes green tea a lot"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let list: Value = app.get_json("/memories").await;
    assert_eq!(
        texts(&list),
        [
            "Likes green tea a lot",
            "Hates coffee",
            "Works at ACME, 100%_done"
        ]
    );
    let list: Value = app.get_json("/memories?sort_by=created_at").await;
    assert_eq!(
        texts(&list),
        [
            "Hates coffee",
            "Works at ACME, 100%_done",
            "Likes green tea a lot"
        ]
    );

    // Page numbers, as AgentOS clients ask.
    let first: Value = app
        .get_json("/memories?limit=2&page=1&sort_by=created_at&sort_order=asc")
        .await;
    assert_eq!(
        texts(&first),
        ["Likes green tea a lot", "Works at ACME, 100%_done"]
    );
    assert_eq!(first["meta"]["page"], 1);
    assert_eq!(first["meta"]["limit"], 2);
    assert_eq!(first["meta"]["total_pages"], 2);
    assert_eq!(first["meta"]["total_count"], 3);
    let second: Value = app
        .get_json("/memories?limit=2&page=2&sort_by=created_at&sort_order=asc")
        .await;
    assert_eq!(texts(&second), ["Hates coffee"]);
    assert_eq!(second["meta"]["page"], 2);
    assert_eq!(second["meta"]["next_cursor"], Value::Null);
    let beyond: Value = app.get_json("/memories?limit=2&page=5").await;
    assert!(texts(&beyond).is_empty());
    assert_eq!(beyond["meta"]["total_count"], 3);

    // Cursors, which do not shift when memories are added.
    let cursor = first["meta"]["next_cursor"].as_str().unwrap().to_owned();
    create(&app, json!({"memory": "Newest", "user_id": "cat"})).await;
    let next: Value = app
        .get_json(&format!(
            "/memories?limit=2&cursor={cursor}&sort_by=created_at&sort_order=asc"
        ))
        .await;
    assert_eq!(texts(&next), ["Hates coffee", "Newest"]);
    assert_eq!(next["meta"]["page"], Value::Null);
    assert_eq!(next["meta"]["total_count"], 4);
    assert_eq!(next["meta"]["next_cursor"], Value::Null);
    // A cursor belongs to its order.
    let response = app
        .get(&format!("/memories?limit=2&cursor={cursor}"))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 422, "invalid_field").await;
    assert_eq!(problem["field"], "cursor");
    // Newest first, by cursor, across every memory.
    let mut seen = Vec::new();
    let mut path = "/memories?limit=1".to_owned();
    loop {
        let page: Value = app.get_json(&path).await;
        seen.extend(texts(&page));
        match page["meta"]["next_cursor"].as_str() {
            Some(cursor) => path = format!("/memories?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "Newest",
            "Likes green tea a lot",
            "Hates coffee",
            "Works at ACME, 100%_done"
        ]
    );
}

async fn topics_and_user_stats_sum_up_memories(db: TestDb) {
    let app = spawn_app(db).await;
    let empty: Value = app.get_json("/memory_topics").await;
    assert_eq!(empty, json!([]));
    let stats: Value = app.get_json("/user_memory_stats").await;
    assert_eq!(
        stats,
        json!({"data": [], "meta": {"page": 1, "limit": 50, "total_pages": 0, "total_count": 0}})
    );

    create(
        &app,
        json!({"memory": "a1", "user_id": "ann", "topics": ["work", "food"]}),
    )
    .await;
    create(
        &app,
        json!({"memory": "b1", "user_id": "bob", "topics": ["pets"]}),
    )
    .await;
    let a2 = create(
        &app,
        json!({"memory": "a2", "user_id": "ann", "topics": ["food"]}),
    )
    .await;
    create(&app, json!({"memory": "c1", "user_id": "cat"})).await;

    assert_eq!(
        app.get_json("/memory_topics").await,
        json!(["food", "pets", "work"])
    );
    assert_eq!(
        app.get_json("/memory_topics?user_id=ann").await,
        json!(["food", "work"])
    );
    assert_eq!(app.get_json("/memory_topics?user_id=cat").await, json!([]));

    // Most recently updated user first.
    let stats: Value = app.get_json("/user_memory_stats").await;
    let users: Vec<(&str, u64)> = stats["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["user_id"].as_str().unwrap(),
                s["total_memories"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(users, [("cat", 1), ("ann", 2), ("bob", 1)]);
    assert_eq!(stats["meta"]["total_count"], 3);
    let ann = &stats["data"][1];
    assert_eq!(ann["last_memory_updated_at"], a2["updated_at"]);

    let page: Value = app.get_json("/user_memory_stats?limit=2&page=2").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["user_id"], "bob");
    assert_eq!(
        page["meta"],
        json!({"page": 2, "limit": 2, "total_pages": 2, "total_count": 3})
    );
    let one: Value = app.get_json("/user_memory_stats?user_id=ann").await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    assert_eq!(one["data"][0]["total_memories"], 2);
    assert_eq!(one["meta"]["total_count"], 1);

    // Changing topics changes the topic list.
    let response = patch(
        &app,
        &format!("/memories/{}", id(&a2)),
        json!({"topics": ["travel"]}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.get_json("/memory_topics").await,
        json!(["food", "pets", "travel", "work"])
    );
}

async fn bulk_deletion_skips_what_it_may_not_delete(db: TestDb) {
    let app = spawn_app(db).await;
    let a1 = create(
        &app,
        json!({"memory": "a1", "user_id": "ann", "topics": ["x"]}),
    )
    .await;
    let a2 = create(&app, json!({"memory": "a2", "user_id": "ann"})).await;
    let b1 = create(
        &app,
        json!({"memory": "b1", "user_id": "bob", "topics": ["y"]}),
    )
    .await;
    let unknown = uuid::Uuid::now_v7().to_string();

    // With `user_id`, another user's memories are left alone.
    let response = delete(
        &app,
        "/memories",
        Some(json!({"memory_ids": [id(&a1), id(&b1)], "user_id": "bob"})),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"deleted": 1})
    );
    assert_eq!(app.get_json("/memory_topics").await, json!(["x"]));

    // Unknown ids are skipped; the body is read without a content type too.
    let response = app
        .request(Method::DELETE, "/memories", &app.admin_key)
        .body(json!({"memory_ids": [id(&a1), id(&a2), unknown]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"deleted": 2})
    );
    let list: Value = app.get_json("/memories").await;
    assert_eq!(list["meta"]["total_count"], 0);
    assert_eq!(app.get_json("/memory_topics").await, json!([]));
}

async fn bad_input_is_refused_naming_the_field(db: TestDb) {
    let app = spawn_app(db).await;
    let memory = create(&app, json!({"memory": "kept", "user_id": "ann"})).await;
    let path = format!("/memories/{}", id(&memory));
    let long = "x".repeat(5_001);
    let many: Vec<String> = (0..51).map(|n| format!("t{n}")).collect();

    for (body, field) in [
        (json!({"user_id": "ann"}), "memory"),
        (json!({"memory": "  ", "user_id": "ann"}), "memory"),
        (json!({"memory": long, "user_id": "ann"}), "memory"),
        (json!({"memory": "nul \u{0}", "user_id": "ann"}), "memory"),
        (json!({"memory": 7, "user_id": "ann"}), "memory"),
        (json!({"memory": "no user"}), "user_id"),
        (json!({"memory": "m", "user_id": ""}), "user_id"),
        (json!({"memory": "m", "user_id": "a\nb"}), "user_id"),
        (
            json!({"memory": "m", "user_id": "ann", "topics": "food"}),
            "topics",
        ),
        (
            json!({"memory": "m", "user_id": "ann", "topics": [""]}),
            "topics",
        ),
        (
            json!({"memory": "m", "user_id": "ann", "topics": many}),
            "topics",
        ),
        (
            json!({"memory": "m", "user_id": "ann", "agent_id": " "}),
            "agent_id",
        ),
        (
            json!({"memory": "m", "user_id": "ann", "team_id": "x".repeat(257)}),
            "team_id",
        ),
    ] {
        let response = app.post_json("/memories", &body).send().await.unwrap();
        let problem = assert_problem(response, 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let response = app
        .request(Method::POST, "/memories", &app.admin_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(response, 400, "invalid_json").await;
    let response = app
        .request(Method::POST, "/memories", &app.admin_key)
        .body(r#"{"memory": "m", "user_id": "ann"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(response, 415, "unsupported_media_type").await;

    for (body, field) in [
        (json!({"memory": ""}), "memory"),
        (json!({"topics": ["ok", "bad\u{7}"]}), "topics"),
        (json!({"feedback": "x".repeat(5_001)}), "feedback"),
        (json!({"input": "x".repeat(20_001)}), "input"),
        (json!({"team_id": ""}), "team_id"),
    ] {
        let response = patch(&app, &path, body.clone()).await;
        let problem = assert_problem(response, 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    assert_eq!(app.get_json(&path).await, memory, "nothing was changed");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("sort_by=memory", "sort_by"),
        ("sort_order=up", "sort_order"),
        ("cursor=nonsense", "cursor"),
        ("cursor=ud.1.x&page=2", "cursor"),
    ] {
        let response = app.get(&format!("/memories?{query}")).send().await.unwrap();
        let problem = assert_problem(response, 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "{query}: {problem}");
    }
    for (query, field) in [("limit=0", "limit"), ("page=0", "page")] {
        let response = app
            .get(&format!("/user_memory_stats?{query}"))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "{query}: {problem}");
    }

    let response = app.get("/memories/not-a-uuid").send().await.unwrap();
    let problem = assert_problem(response, 422, "invalid_field").await;
    assert_eq!(problem["field"], "memory_id");

    for (body, field) in [
        (json!({"memory_ids": []}), "memory_ids"),
        (json!({"memory_ids": ["nope"]}), "memory_ids[0]"),
        (json!({}), "memory_ids"),
        (
            json!({"memory_ids": [id(&memory)], "user_id": "\u{1}"}),
            "user_id",
        ),
    ] {
        let response = delete(&app, "/memories", Some(body.clone())).await;
        let problem = assert_problem(response, 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    assert_eq!(app.get_json(&path).await, memory, "nothing was deleted");
}

async fn another_tenants_memories_are_out_of_reach(db: TestDb) {
    let app = spawn_app(db).await;
    let mine = create(
        &app,
        json!({"memory": "tenant-a fact", "user_id": "ann", "topics": ["tenant-a-topic"], "agent_id": "agent-a"}),
    )
    .await;
    let path = format!("/memories/{}", id(&mine));
    let other = app.create_tenant("other").await;
    // The same user id in another tenant is another user.
    let response = app
        .request(Method::POST, "/memories", &other)
        .json(&json!({"memory": "other fact", "user_id": "ann", "topics": ["other-topic"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    assert_all_not_found(
        &app,
        &other,
        vec![
            (Method::GET, path.clone(), None),
            (
                Method::PATCH,
                path.clone(),
                Some(json!({"memory": "changed"})),
            ),
            (Method::DELETE, path.clone(), None),
        ],
    )
    .await;
    let response = app
        .request(Method::DELETE, "/memories", &other)
        .json(&json!({"memory_ids": [id(&mine)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"deleted": 0})
    );

    for read in [
        "/memories",
        "/memories?user_id=ann",
        "/memories?agent_id=agent-a",
        "/memories?topics=tenant-a-topic",
        "/memories?search_content=tenant-a",
        "/memory_topics",
        "/memory_topics?user_id=ann",
        "/user_memory_stats",
        "/user_memory_stats?user_id=ann",
    ] {
        let body = app
            .request(Method::GET, read, &other)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !body.contains("tenant-a") && !body.contains(&id(&mine)),
            "{read}: {body}"
        );
    }
    let theirs: Value = app
        .request(Method::GET, "/user_memory_stats", &other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["data"][0]["total_memories"], 1);

    // Mine is untouched.
    assert_eq!(app.get_json(&path).await, mine);
    assert_eq!(
        app.get_json("/memory_topics").await,
        json!(["tenant-a-topic"])
    );
}

/// People signed in to the same tenant never see each other's memories (AgentOS's user isolation):
/// a user's requests are about that user whatever `user_id` says, while an API key, acting for an
/// application's many users, names the user.
async fn signed_in_users_reach_only_their_own_memories(db: TestDb) {
    let app = spawn_app(db).await;
    let (ann, ann_token) = app.signed_in_user("ann@example.com", "member").await;
    let (bob, bob_token) = app.signed_in_user("bob@example.com", "member").await;

    // Ann stores a memory without naming herself: it is hers.
    let response = app
        .request(Method::POST, "/memories", &ann_token)
        .json(&json!({"memory": "Ann prefers window seats", "topics": ["travel"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let anns: Value = response.json().await.unwrap();
    assert_eq!(anns["user_id"], ann.as_str());
    // Naming Bob is refused, naming herself is fine.
    let response = app
        .request(Method::POST, "/memories", &ann_token)
        .json(&json!({"memory": "Bob is afraid of flying", "user_id": bob}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "invalid_field").await;
    let response = app
        .request(Method::POST, "/memories", &ann_token)
        .json(&json!({"memory": "Ann speaks Norwegian", "user_id": ann}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // The application's key stores one about Bob.
    let bobs = create(
        &app,
        json!({"memory": "Bob likes aisle seats", "user_id": bob, "topics": ["seats"]}),
    )
    .await;

    // Bob sees only his own, in every read.
    let read = |path: &str| app.request(Method::GET, path, &bob_token).send();
    let list: Value = read("/memories").await.unwrap().json().await.unwrap();
    assert_eq!(texts(&list), ["Bob likes aisle seats"]);
    let response = read(&format!("/memories?user_id={ann}")).await.unwrap();
    assert_problem(response, 422, "invalid_field").await;
    let topics: Value = read("/memory_topics").await.unwrap().json().await.unwrap();
    assert_eq!(topics, json!(["seats"]));
    let stats: Value = read("/user_memory_stats")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["meta"]["total_count"], 1, "{stats}");
    assert_eq!(stats["data"][0]["user_id"], bob.as_str());
    let ann_memory = format!("/memories/{}", id(&anns));
    assert_eq!(read(&ann_memory).await.unwrap().status(), 404);
    // Nor can he change or delete hers, one by one or in bulk.
    let response = app
        .request(Method::PATCH, &ann_memory, &bob_token)
        .json(&json!({"memory": "Ann hates window seats"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = app
        .request(Method::DELETE, &ann_memory, &bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = app
        .request(Method::DELETE, "/memories", &bob_token)
        .json(&json!({"memory_ids": [id(&anns), id(&bobs)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"deleted": 1})
    );
    assert_eq!(
        app.get_json(&ann_memory).await["memory"],
        "Ann prefers window seats",
        "Ann's memory is untouched"
    );

    // The key still reaches every user's memories.
    let all: Value = app.get_json("/memories").await;
    assert_eq!(all["meta"]["total_count"], 2, "{all}");
    let anns_only: Value = app.get_json(&format!("/memories?user_id={ann}")).await;
    assert_eq!(anns_only["meta"]["total_count"], 2, "{anns_only}");
}
