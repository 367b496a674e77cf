//! `/knowledge…`: uploads of every readable type (JSON bodies, multipart files, AgentOS's form, URLs)
//! processed to `completed`; list, get, change and delete; identical uploads found by hash; bad
//! uploads refused at once or `failed` with a reason and no chunks; keyword, vector and hybrid search
//! in both request shapes, with metadata filters and the keyword fallback without an embedder; and
//! one tenant's knowledge out of another's reach.

use std::time::Duration;

use agentd_runtime::Config;
use agentd_testkit::model_server::scripted_embedding;
use agentd_testkit::{
    backend_tests, spawn_app, spawn_app_with, spawn_app_with_model_and, TestApp, TestDb,
};
use reqwest::Method;
use serde_json::{json, Value};

use crate::{assert_all_not_found, assert_problem};

backend_tests!(
    contents_of_every_type_are_processed_listed_changed_and_deleted,
    identical_uploads_are_found_by_their_hash,
    bad_uploads_are_refused_or_fail_with_a_reason_and_no_chunks,
    keyword_search_ranks_filters_and_stands_in_without_an_embedder,
    vector_and_hybrid_search_use_the_embedder,
    vector_search_from_memory_follows_changes_made_on_any_node,
    contents_left_processing_fail_when_the_node_restarts,
    another_tenants_knowledge_is_out_of_reach,
);

/// The embedder the tests configure: the scripted model's deterministic embeddings.
const EMBEDDER: &str = "scripted/embedder";

/// An app whose knowledge base embeds with the scripted model.
async fn app_with_embedder(db: TestDb) -> (TestApp, agentd_testkit::ScriptedModel) {
    let mut config = Config::default();
    config.knowledge.embedder = Some(EMBEDDER.to_owned());
    spawn_app_with_model_and(db, config).await
}

/// POSTs a JSON upload with `key`.
async fn upload_as(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.request(Method::POST, "/knowledge/content", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Uploads with the admin key, asserting 202; returns the content.
async fn upload(app: &TestApp, body: Value) -> Value {
    let response = upload_as(app, &app.admin_key, body.clone()).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 202, "upload {body}: {text}");
    let content: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(content["status"], "processing", "{content}");
    assert_eq!(content["duplicate"], false, "{content}");
    content
}

/// A part of a multipart form: name, file name, content type, bytes.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart form; returns its content type and body.
fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "agentd-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, file_name, content_type, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(file_name) = file_name {
            disposition.push_str(&format!("; filename=\"{file_name}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(content_type) = content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_multipart(app: &TestApp, key: &str, parts: &[Part<'_>]) -> reqwest::Response {
    let (content_type, body) = multipart(parts);
    app.request(Method::POST, "/knowledge/content", key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Uploads one file with the admin key; returns the response.
async fn upload_file(
    app: &TestApp,
    file_name: &str,
    content_type: &str,
    bytes: &[u8],
) -> reqwest::Response {
    post_multipart(
        app,
        &app.admin_key,
        &[("file", Some(file_name), Some(content_type), bytes)],
    )
    .await
}

fn id(content: &Value) -> String {
    content["id"].as_str().unwrap().to_owned()
}

/// Waits until the content is no longer `processing`; returns it.
async fn settled(app: &TestApp, key: &str, content_id: &str) -> Value {
    let path = format!("/knowledge/content/{content_id}");
    for _ in 0..200 {
        let status: Value = app
            .request(Method::GET, &format!("{path}/status"), key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["status"] != "processing" {
            let content: Value = app
                .request(Method::GET, &path, key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(content["status"], status["status"], "{content} {status}");
            assert_eq!(content["chunk_count"], status["chunk_count"]);
            return content;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("content {content_id} is still processing");
}

/// Uploads and waits for `completed`.
pub(crate) async fn completed(app: &TestApp, body: Value) -> Value {
    let content = upload(app, body).await;
    let content = settled(app, &app.admin_key, &id(&content)).await;
    assert_eq!(content["status"], "completed", "{content}");
    assert!(content["chunk_count"].as_u64().unwrap() > 0, "{content}");
    content
}

/// Waits for `failed` and checks that no chunk was written; returns the reason.
async fn failed(app: &TestApp, content_id: &str) -> String {
    let content = settled(app, &app.admin_key, content_id).await;
    assert_eq!(content["status"], "failed", "{content}");
    assert_eq!(content["chunk_count"], 0, "{content}");
    let tenant = app.runtime.store.list_tenant_ids().await.unwrap()[0];
    let chunks = app
        .runtime
        .store
        .list_chunks(tenant, content_id.parse().unwrap())
        .await
        .unwrap();
    assert!(
        chunks.is_empty(),
        "a failed content has no chunks: {chunks:?}"
    );
    content["status_message"].as_str().unwrap().to_owned()
}

/// The chunk texts of a content, straight from the store.
async fn chunk_texts(app: &TestApp, content_id: &str) -> Vec<String> {
    let tenant = app.runtime.store.list_tenant_ids().await.unwrap()[0];
    app.runtime
        .store
        .list_chunks(tenant, content_id.parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|chunk| chunk.text)
        .collect()
}

async fn search_as(app: &TestApp, key: &str, body: Value) -> Value {
    let response = app
        .request(Method::POST, "/knowledge/search", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "search {body}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn search(app: &TestApp, body: Value) -> Value {
    search_as(app, &app.admin_key, body).await
}

/// The content ids of a search's results, in order (checking `data` mirrors `results`).
fn found(answer: &Value) -> Vec<String> {
    assert_eq!(answer["results"], answer["data"], "{answer}");
    answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("results in {answer}"))
        .iter()
        .map(|result| result["content_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A tiny web server for URL uploads: `/guide.html`, `/plain` (text without an extension),
/// `/photo.png` and a 404 for anything else.
async fn serve_pages() -> String {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    let pages = axum::Router::new()
        .route(
            "/guide.html",
            get(|| async {
                (
                    [(CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html><head><title>x</title><script>secret()</script></head><body>\
                     <h1>Gardening guide</h1><p>Water the tomatoes every morning.</p>\
                     <h2>Pests</h2><p>Aphids dislike garlic.</p></body></html>",
                )
            }),
        )
        .route(
            "/plain",
            get(|| async { ([(CONTENT_TYPE, "text/plain")], "Plain words about kites.") }),
        )
        .route(
            "/photo.png",
            get(|| async {
                (
                    [(CONTENT_TYPE, "image/png")],
                    vec![0x89u8, b'P', b'N', b'G', 0, 1],
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, pages).await;
    });
    format!("http://{address}")
}

async fn contents_of_every_type_are_processed_listed_changed_and_deleted(db: TestDb) {
    let (app, _model) = app_with_embedder(db).await;

    // Text, with everything a JSON upload can say.
    let text = completed(
        &app,
        json!({
            "text": "The quick brown fox jumps over the lazy dog.\n\nFoxes are quick.",
            "name": "Fox facts",
            "description": "About foxes",
            "metadata": {"topic": "animals", "year": 2024},
            "chunking": {"strategy": "fixed", "chunk_size": 50, "overlap": 10},
        }),
    )
    .await;
    assert_eq!(text["name"], "Fox facts");
    assert_eq!(text["description"], "About foxes");
    assert_eq!(text["type"], "text");
    assert_eq!(text["source"], "text");
    assert_eq!(text["metadata"], json!({"topic": "animals", "year": 2024}));
    assert_eq!(
        text["chunking"],
        json!({"strategy": "fixed", "chunk_size": 50, "overlap": 10})
    );
    assert_eq!(text["embedder"], EMBEDDER);
    assert!(text["content_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(text["size"], "62", "a string, as AgentOS has it");
    assert_eq!(text["chunk_count"], 2);

    // Markdown as a named reader: chunked by heading, each chunk headed.
    let markdown = completed(
        &app,
        json!({
            "text": "# Setup\nInstall the tool.\n\n# Usage\nRun it daily.\n",
            "reader": "MarkdownReader",
        }),
    )
    .await;
    assert_eq!(markdown["type"], "markdown");
    assert_eq!(markdown["name"], "# Setup", "the first line names a text");
    assert_eq!(markdown["chunking"]["strategy"], "markdown");
    assert_eq!(
        chunk_texts(&app, &id(&markdown)).await,
        ["# Setup\nInstall the tool.", "# Usage\nRun it daily."]
    );

    // JSON: flattened to `path: value` lines.
    let records = completed(
        &app,
        json!({
            "text": r#"[{"city": "Oslo", "tags": ["cold"]}, {"city": "Lima"}]"#,
            "reader": "json",
        }),
    )
    .await;
    assert_eq!(records["type"], "json");
    assert_eq!(
        chunk_texts(&app, &id(&records)).await,
        ["city: Oslo\ntags[0]: cold\n\ncity: Lima"]
    );

    // A CSV file, by multipart upload: rows chunked whole.
    let response = upload_file(
        &app,
        "people.csv",
        "text/csv",
        b"name,role\nAnn,pilot\nBob,\"chef, pastry\"\n",
    )
    .await;
    assert_eq!(response.status(), 202);
    let csv: Value = response.json().await.unwrap();
    assert_eq!(csv["type"], "csv");
    assert_eq!(csv["source"], "file");
    assert_eq!(csv["file_name"], "people.csv");
    assert_eq!(csv["name"], "people.csv");
    assert_eq!(csv["chunking"]["strategy"], "rows");
    let csv = settled(&app, &app.admin_key, &id(&csv)).await;
    assert_eq!(csv["status"], "completed", "{csv}");
    assert_eq!(
        chunk_texts(&app, &id(&csv)).await,
        ["name: Ann; role: pilot\nname: Bob; role: chef, pastry"]
    );

    // A PDF: the text of its pages, in order, searchable.
    let pdf = agentd_testkit::pdf::pdf(&[
        "Travel policy\nTrains are booked in second class.",
        "Flights over six hours may be booked in premium economy.",
    ]);
    let response = upload_file(&app, "policy.pdf", "application/pdf", &pdf).await;
    assert_eq!(response.status(), 202);
    let policy: Value = response.json().await.unwrap();
    assert_eq!(policy["type"], "pdf");
    let policy = settled(&app, &app.admin_key, &id(&policy)).await;
    assert_eq!(policy["status"], "completed", "{policy}");
    let pages = chunk_texts(&app, &id(&policy)).await.join("\n");
    assert!(
        pages.contains("Trains are booked in second class.")
            && pages.find("Travel policy") < pages.find("premium economy"),
        "{pages}"
    );
    let answer = search(&app, json!({"query": "premium economy flights"})).await;
    assert_eq!(found(&answer).first(), Some(&id(&policy)), "{answer}");

    // An HTML file whose name says nothing: its media type picks the reader.
    let response = upload_file(
        &app,
        "page",
        "text/html",
        b"<html><body><h1>Title</h1><p>Some &amp; more.</p><script>x()</script></body></html>",
    )
    .await;
    assert_eq!(response.status(), 202);
    let html: Value = response.json().await.unwrap();
    assert_eq!(html["type"], "html");
    settled(&app, &app.admin_key, &id(&html)).await;
    assert_eq!(
        chunk_texts(&app, &id(&html)).await,
        ["# Title\nSome & more."]
    );

    // AgentOS's form: `text_content`, metadata as JSON text, the chunker by its AgentOS name.
    let response = post_multipart(
        &app,
        &app.admin_key,
        &[
            ("text_content", None, None, b"Form text about owls."),
            ("name", None, None, b"Owls"),
            ("metadata", None, None, br#"{"topic": "birds"}"#),
            ("chunker", None, None, b"RecursiveChunker"),
            ("chunk_size", None, None, b"200"),
        ],
    )
    .await;
    assert_eq!(response.status(), 202);
    let form: Value = response.json().await.unwrap();
    assert_eq!(form["name"], "Owls");
    assert_eq!(form["metadata"], json!({"topic": "birds"}));
    assert_eq!(
        form["chunking"],
        json!({"strategy": "recursive", "chunk_size": 200, "overlap": 100})
    );
    settled(&app, &app.admin_key, &id(&form)).await;

    // A URL, fetched at once and read by its type.
    let site = serve_pages().await;
    let page = completed(&app, json!({"url": format!("{site}/guide.html")})).await;
    assert_eq!(page["type"], "html");
    assert_eq!(page["source"], "url");
    assert_eq!(page["url"], format!("{site}/guide.html"));
    assert_eq!(page["name"], "guide.html");
    let chunks = chunk_texts(&app, &id(&page)).await;
    assert_eq!(
        chunks,
        [
            "# Gardening guide\nWater the tomatoes every morning.",
            "## Pests\nAphids dislike garlic."
        ]
    );
    let plain = completed(&app, json!({"url": format!("{site}/plain")})).await;
    assert_eq!(plain["type"], "text");

    // The list: newest first, by page or by cursor.
    let list: Value = app.get_json("/knowledge/content?limit=3").await;
    assert_eq!(list["meta"]["total_count"], 9, "{list}");
    assert_eq!(list["meta"]["total_pages"], 3);
    assert_eq!(list["meta"]["page"], 1);
    let first: Vec<String> = list["data"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(first[0], id(&plain));
    assert_eq!(first[1], id(&page));
    let cursor = list["meta"]["next_cursor"].as_str().unwrap();
    let next: Value = app
        .get_json(&format!("/knowledge/content?limit=3&cursor={cursor}"))
        .await;
    let by_page: Value = app.get_json("/knowledge/content?limit=3&page=2").await;
    assert_eq!(next["data"], by_page["data"]);
    assert_eq!(next["meta"]["page"], Value::Null);
    let last: Value = app.get_json("/knowledge/content?limit=3&page=3").await;
    assert_eq!(last["data"].as_array().unwrap().len(), 3);
    assert_eq!(last["meta"]["next_cursor"], Value::Null);
    let response = app
        .get("/knowledge/content?page=1&cursor=x")
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "invalid_field").await;

    // Get, status, change, delete.
    let path = format!("/knowledge/content/{}", id(&text));
    assert_eq!(app.get_json(&path).await, text);
    let status: Value = app.get_json(&format!("{path}/status")).await;
    assert_eq!(
        status,
        json!({"id": id(&text), "status": "completed", "status_message": "", "chunk_count": 2})
    );
    let response = app
        .request(Method::PATCH, &path, &app.admin_key)
        .json(&json!({"name": "Renamed", "metadata": {"topic": "foxes"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let changed: Value = response.json().await.unwrap();
    assert_eq!(changed["name"], "Renamed");
    assert_eq!(
        changed["description"], "About foxes",
        "absent fields are kept"
    );
    assert_eq!(changed["metadata"], json!({"topic": "foxes"}));
    assert_eq!(changed["chunk_count"], 2);
    // AgentOS's form works too; `null` (or an empty form value) clears the description.
    let response = app
        .request(Method::PATCH, &path, &app.admin_key)
        .form(&[("description", ""), ("metadata", r#"{"topic": "vulpes"}"#)])
        .send()
        .await
        .unwrap();
    let changed: Value = response.json().await.unwrap();
    assert_eq!(changed["description"], Value::Null, "{changed}");
    assert_eq!(changed["metadata"], json!({"topic": "vulpes"}));
    assert_eq!(app.get_json(&path).await, changed);
    let response = app
        .request(Method::PATCH, &path, &app.admin_key)
        .json(&json!({"name": " "}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_problem(response, 422, "invalid_field").await["field"],
        "name"
    );

    let response = app
        .request(Method::DELETE, &path, &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(chunk_texts(&app, &id(&text)).await.is_empty());
    assert_all_not_found(
        &app,
        &app.admin_key,
        vec![
            (Method::GET, path.clone(), None),
            (Method::GET, format!("{path}/status"), None),
            (Method::PATCH, path.clone(), Some(json!({"name": "back"}))),
            (Method::DELETE, path.clone(), None),
        ],
    )
    .await;

    // Deleting everything takes the chunks along: nothing is found any more.
    let response = app
        .request(Method::DELETE, "/knowledge/content", &app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"deleted": 8})
    );
    assert_eq!(
        app.get_json("/knowledge/content").await["meta"]["total_count"],
        0
    );
    assert!(chunk_texts(&app, &id(&page)).await.is_empty());
    let answer = search(
        &app,
        json!({"query": "tomatoes garlic owls", "search_type": "hybrid"}),
    )
    .await;
    assert!(found(&answer).is_empty(), "{answer}");
}

async fn identical_uploads_are_found_by_their_hash(db: TestDb) {
    let app = spawn_app(db).await;
    let original = completed(
        &app,
        json!({"text": "Exactly these bytes.", "name": "first"}),
    )
    .await;

    // The same text again, under another name: the first content, unchanged, with 200.
    let response = upload_as(
        &app,
        &app.admin_key,
        json!({"text": "Exactly these bytes.", "name": "second", "metadata": {"x": 1}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let duplicate: Value = response.json().await.unwrap();
    assert_eq!(duplicate["duplicate"], true);
    assert_eq!(id(&duplicate), id(&original));
    assert_eq!(duplicate["name"], "first");
    assert_eq!(duplicate["content_hash"], original["content_hash"]);
    // The same bytes as a file are the same content too.
    let response = upload_file(&app, "copy.txt", "text/plain", b"Exactly these bytes.").await;
    assert_eq!(response.status(), 200);
    assert_eq!(id(&response.json::<Value>().await.unwrap()), id(&original));
    // One byte more is another content.
    let other = upload(&app, json!({"text": "Exactly these bytes!"})).await;
    assert_ne!(id(&other), id(&original));
    assert_eq!(
        app.get_json("/knowledge/content").await["meta"]["total_count"],
        2
    );

    // Another tenant uploading the same bytes gets its own content.
    let tenant_b = app.create_tenant("b").await;
    let response = upload_as(&app, &tenant_b, json!({"text": "Exactly these bytes."})).await;
    assert_eq!(response.status(), 202);
    assert_ne!(id(&response.json::<Value>().await.unwrap()), id(&original));

    // A failed upload does not block a retry of the same bytes: the retry replaces it.
    let broken = upload(&app, json!({"text": "{\"unclosed\": ", "reader": "json"})).await;
    failed(&app, &id(&broken)).await;
    let retry = upload(&app, json!({"text": "{\"unclosed\": ", "reader": "json"})).await;
    assert_ne!(id(&retry), id(&broken));
    failed(&app, &id(&retry)).await;
    let response = app
        .get(&format!("/knowledge/content/{}", id(&broken)))
        .send()
        .await
        .unwrap();
    assert_problem(response, 404, "not_found").await;

    // Once deleted, the bytes can be uploaded afresh.
    let path = format!("/knowledge/content/{}", id(&original));
    app.request(Method::DELETE, &path, &app.admin_key)
        .send()
        .await
        .unwrap();
    let again = upload(&app, json!({"text": "Exactly these bytes."})).await;
    assert_ne!(id(&again), id(&original));
}

async fn bad_uploads_are_refused_or_fail_with_a_reason_and_no_chunks(db: TestDb) {
    let mut config = Config::default();
    config.knowledge.max_upload_bytes = 4096;
    config.knowledge.embedder = Some(EMBEDDER.to_owned());
    let (app, model) = spawn_app_with_model_and(db, config).await;
    let key = app.admin_key.clone();

    // Refused at once, naming the field.
    for (body, field) in [
        (json!({"text": "   "}), "text"),
        (json!({}), "text"),
        (json!({"name": "nothing to add"}), "text"),
        (json!({"text": "a", "url": "http://127.0.0.1/"}), "text"),
        (json!({"text": 5}), "text"),
        (json!({"text": "a", "reader": "docx"}), "reader"),
        (
            json!({"text": "a", "chunking": {"strategy": "SemanticChunker"}}),
            "chunking.strategy",
        ),
        (
            json!({"text": "a", "chunking": {"chunk_size": 10}}),
            "chunk_size",
        ),
        (
            json!({"text": "a", "chunking": {"chunk_size": 100, "overlap": 80}}),
            "overlap",
        ),
        (json!({"text": "a", "metadata": [1]}), "metadata"),
        (json!({"text": "a", "name": "x".repeat(300)}), "name"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "http://127.0.0.1:1/gone"}), "url"),
    ] {
        let response = upload_as(&app, &key, body.clone()).await;
        let problem = assert_problem(response, 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let site = serve_pages().await;
    let response = upload_as(&app, &key, json!({"url": format!("{site}/missing")})).await;
    let problem = assert_problem(response, 422, "invalid_field").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("HTTP 404"),
        "{problem}"
    );

    // Empty files.
    for bytes in [&b""[..], b"  \n\t "] {
        let response = upload_file(&app, "empty.txt", "text/plain", bytes).await;
        let problem = assert_problem(response, 422, "invalid_field").await;
        assert_eq!(problem["field"], "file");
        assert!(problem["detail"].as_str().unwrap().contains("empty"));
    }
    // Unsupported types: 415, saying what is supported.
    for (name, media_type, bytes) in [
        ("photo.png", "image/png", &b"\x89PNG\r\n\x1a\n\0\0"[..]),
        (
            "report.docx",
            "application/octet-stream",
            b"PK\x03\x04\0\0\x14\0",
        ),
    ] {
        let response = upload_file(&app, name, media_type, bytes).await;
        let problem = assert_problem(response, 415, "unsupported_media_type").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(name) && detail.contains(".md"), "{detail}");
    }
    let response = upload_as(&app, &key, json!({"url": format!("{site}/photo.png")})).await;
    assert_problem(response, 415, "unsupported_media_type").await;
    let response = app
        .request(Method::POST, "/knowledge/content", &key)
        .header("content-type", "application/xml")
        .body("<a/>")
        .send()
        .await
        .unwrap();
    assert_problem(response, 415, "unsupported_media_type").await;

    // Too large: a text, a file, and a body past the limit, all 413 before anything is stored.
    let big = "word ".repeat(1000);
    let response = upload_as(&app, &key, json!({"text": big})).await;
    assert_problem(response, 413, "payload_too_large").await;
    let response = upload_file(&app, "big.txt", "text/plain", big.as_bytes()).await;
    let problem = assert_problem(response, 413, "payload_too_large").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("knowledge.max_upload_bytes"),
        "{problem}"
    );
    let huge = vec![b'a'; 100 * 1024];
    let response = upload_file(&app, "huge.txt", "text/plain", &huge).await;
    assert_problem(response, 413, "payload_too_large").await;
    // (The limit is the knowledge one, not the server's body limit: see
    // `the_upload_limit_is_the_knowledge_one`.)
    assert_eq!(
        app.get_json("/knowledge/content").await["meta"]["total_count"],
        0,
        "nothing refused was stored"
    );

    // Accepted, then failed in processing with the reader's reason, and no chunks.
    let scanned = agentd_testkit::pdf::pdf(&[""]);
    let cases: [(&str, &str, &[u8], &str); 6] = [
        (
            "broken.json",
            "application/json",
            b"{\"a\": [1, 2",
            "invalid JSON",
        ),
        (
            "ragged.csv",
            "text/csv",
            b"a,b\n1,2\n3,4,5\n",
            "line 3 has 3 fields",
        ),
        ("binary.txt", "text/plain", b"caf\xe9 \xff\xfe", "not UTF-8"),
        (
            "broken.pdf",
            "application/pdf",
            b"%PDF-1.4 not really",
            "the PDF cannot be read",
        ),
        (
            "scanned.pdf",
            "application/pdf",
            &scanned,
            "no text found in this PDF",
        ),
        (
            "blank.html",
            "text/html",
            b"<html><script>x</script></html>",
            "no text",
        ),
    ];
    for (name, media_type, bytes, reason) in cases {
        let response = upload_file(&app, name, media_type, bytes).await;
        assert_eq!(response.status(), 202, "{name}");
        let content: Value = response.json().await.unwrap();
        let message = failed(&app, &id(&content)).await;
        assert!(message.contains(reason), "{name}: {message}");
    }

    // The embedder failing fails the content, without chunks.
    model.fail_embeddings(Some((500, "embedder down")));
    let content = upload(&app, json!({"text": "Text that cannot be embedded now."})).await;
    let message = failed(&app, &id(&content)).await;
    assert!(
        message.contains("embedding") && message.contains(EMBEDDER),
        "{message}"
    );
    // With the embedder back, the same bytes upload again (the failed content made way).
    model.fail_embeddings(None);
    let retried = completed(&app, json!({"text": "Text that cannot be embedded now."})).await;
    assert_ne!(id(&retried), id(&content));

    // A search needs a query, a known type, sane numbers and scalar filters.
    for (body, field) in [
        (json!({"query": " "}), "query"),
        (json!({}), "query"),
        (
            json!({"query": "x", "search_type": "semantic"}),
            "search_type",
        ),
        (json!({"query": "x", "max_results": 0}), "max_results"),
        (json!({"query": "x", "max_results": 101}), "max_results"),
        (json!({"query": "x", "meta": {"page": 0}}), "page"),
        (json!({"query": "x", "filters": [{"op": "eq"}]}), "filters"),
        (
            json!({"query": "x", "filters": {"tags": ["a"]}}),
            "filters.tags",
        ),
    ] {
        let response = app
            .post_json("/knowledge/search", &body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 422, "invalid_field").await;
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
}

async fn keyword_search_ranks_filters_and_stands_in_without_an_embedder(db: TestDb) {
    let app = spawn_app(db).await;
    let config: Value = app.get_json("/knowledge/config").await;
    assert_eq!(config["embedder"], Value::Null);
    assert_eq!(config["keyword_only"], true);
    assert_eq!(config["search_types"], json!(["keyword"]));
    assert_eq!(config["default_search_type"], "keyword");
    assert!(config["note"].as_str().unwrap().contains("keyword-only"));
    let index = config["keyword_index"].as_str().unwrap();
    assert!(
        ["sqlite-fts5", "postgres-tsvector"].contains(&index),
        "{index}"
    );
    assert!(config["readers"].as_object().unwrap().len() >= 6);
    assert_eq!(config["readers"]["pdf"]["id"], "pdf");
    assert!(config["chunkers"].as_object().unwrap().len() >= 4);
    assert_eq!(config["chunkers"]["rows"]["key"], "rows");
    assert_eq!(
        config["vector_dbs"][0]["search_types"],
        config["search_types"]
    );

    let running = completed(
        &app,
        json!({
            "text": "Running shoes for marathon runners. The runner runs every morning.",
            "metadata": {"lang": "en", "shelf": 1},
        }),
    )
    .await;
    let swimming = completed(
        &app,
        json!({
            "text": "Swimming goggles keep water out while you swim laps.",
            "metadata": {"lang": "en", "shelf": 2},
        }),
    )
    .await;
    let french = completed(
        &app,
        json!({
            "text": "Chaussures de course pour le marathon.",
            "metadata": {"lang": "fr", "shelf": 1},
        }),
    )
    .await;
    let config: Value = app.get_json("/knowledge/config").await;
    assert_eq!(config["filters"], json!(["lang", "shelf"]));

    // Stemmed words match ("run" finds running, runners, runs); punctuation is not syntax.
    let answer = search(&app, json!({"query": "run!", "search_type": "keyword"})).await;
    assert_eq!(found(&answer), [id(&running)], "{answer}");
    assert_eq!(answer["search_type"], "keyword");
    assert_eq!(answer["note"], Value::Null);
    let result = &answer["results"][0];
    assert_eq!(result["text"], result["content"]);
    assert!(result["text"]
        .as_str()
        .unwrap()
        .starts_with("Running shoes"));
    assert!(result["score"].as_f64().unwrap() > 0.0);
    assert_eq!(result["metadata"], json!({"lang": "en", "shelf": 1}));
    assert_eq!(result["chunk"], 0);
    assert!(result["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert_eq!(result["name"], running["name"]);

    // Any word may match; more matching words rank higher.
    let answer = search(
        &app,
        json!({"query": "marathon shoes", "search_type": "keyword"}),
    )
    .await;
    assert_eq!(found(&answer), [id(&running), id(&french)], "{answer}");

    // The Open Agent API's shape: just a query (and `limit`), hybrid by default, which runs as
    // keyword without an embedder and says so.
    let answer = search(&app, json!({"query": "marathon", "limit": 1})).await;
    assert_eq!(answer["search_type"], "keyword");
    assert_eq!(answer["requested_search_type"], "hybrid");
    assert!(answer["note"].as_str().unwrap().contains("no embedder"));
    assert_eq!(found(&answer).len(), 1);
    assert_eq!(answer["meta"]["total_count"], 2);
    assert_eq!(answer["meta"]["total_pages"], 2);
    let answer = search(&app, json!({"query": "swim", "search_type": "vector"})).await;
    assert_eq!(answer["search_type"], "keyword");
    assert_eq!(answer["requested_search_type"], "vector");
    assert_eq!(found(&answer), [id(&swimming)]);

    // AgentOS's shape: `meta` pages, `filters` compare metadata, extra ids are ignored.
    let agentos = json!({
        "query": "marathon",
        "search_type": "keyword",
        "filters": {"lang": "fr"},
        "meta": {"limit": 5, "page": 1},
        "knowledge_id": "ignored",
        "db_id": "ignored",
    });
    let answer = search(&app, agentos).await;
    assert_eq!(found(&answer), [id(&french)]);
    assert_eq!(
        answer["meta"],
        json!({"page": 1, "limit": 5, "total_pages": 1, "total_count": 1})
    );
    let second_page = search(
        &app,
        json!({"query": "marathon", "search_type": "keyword", "meta": {"limit": 1, "page": 2}}),
    )
    .await;
    assert_eq!(found(&second_page).len(), 1);
    let both = [id(&running), id(&french)];
    assert!(both.contains(&found(&second_page)[0]));
    // Filters: all must hold; numbers compare as numbers written the same way.
    let answer = search(
        &app,
        json!({"query": "marathon swim", "search_type": "keyword", "filters": {"lang": "en", "shelf": 2}}),
    )
    .await;
    assert_eq!(found(&answer), [id(&swimming)]);
    let answer = search(
        &app,
        json!({"query": "marathon", "search_type": "keyword", "filters": {"shelf": "1"}}),
    )
    .await;
    assert!(found(&answer).is_empty(), "\"1\" is not 1: {answer}");
    // A changed metadata is what filters see.
    app.request(
        Method::PATCH,
        &format!("/knowledge/content/{}", id(&french)),
        &app.admin_key,
    )
    .json(&json!({"metadata": {"lang": "fr-FR"}}))
    .send()
    .await
    .unwrap();
    let answer = search(
        &app,
        json!({"query": "marathon", "filters": {"lang": "fr-FR"}}),
    )
    .await;
    assert_eq!(found(&answer), [id(&french)]);

    // Nothing to look for, or nothing matching: no results, no error.
    for query in ["?!", "zeppelin"] {
        let answer = search(&app, json!({"query": query})).await;
        assert!(found(&answer).is_empty(), "{query}: {answer}");
        assert_eq!(answer["meta"]["total_count"], 0);
    }
}

async fn vector_and_hybrid_search_use_the_embedder(db: TestDb) {
    let (app, model) = app_with_embedder(db).await;
    let config: Value = app.get_json("/knowledge/config").await;
    assert_eq!(config["embedder"], EMBEDDER);
    assert_eq!(config["keyword_only"], false);
    assert_eq!(
        config["search_types"],
        json!(["vector", "keyword", "hybrid"])
    );
    assert_eq!(config["default_search_type"], "hybrid");
    assert_eq!(config["note"], Value::Null);

    // The scripted embedder gives texts that share words similar vectors.
    let texts = [
        "alpha beta gamma delta",
        "alpha beta epsilon zeta",
        "eta theta iota kappa",
        "lambda mu nu xi",
    ];
    let mut ids = Vec::new();
    for text in texts {
        ids.push(id(&completed(&app, json!({"text": text})).await));
    }
    let embedded = model
        .requests()
        .iter()
        .filter(|request| request.path.ends_with("/embeddings"))
        .count();
    assert_eq!(embedded, 4, "one embeddings call per content here");

    let query = "alpha beta gamma delta";
    let vector = search(
        &app,
        json!({"query": query, "search_type": "vector", "max_results": 10}),
    )
    .await;
    assert_eq!(vector["search_type"], "vector");
    assert_eq!(found(&vector)[0], ids[0], "{vector}");
    // Each score is the cosine of the scripted embeddings; best first; unrelated texts left out.
    let mut previous = f64::INFINITY;
    for result in vector["results"].as_array().unwrap() {
        let text = result["text"].as_str().unwrap();
        let expected = cosine(query, text);
        let score = result["score"].as_f64().unwrap();
        assert!(
            (score - expected).abs() < 1e-4,
            "{text}: {score} vs {expected}"
        );
        assert!(score > 0.0 && score <= previous, "{vector}");
        previous = score;
    }
    assert!((vector["results"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-4);
    let related = texts
        .iter()
        .filter(|text| cosine(query, text) > 1e-6)
        .count();
    assert_eq!(found(&vector).len(), related, "{vector}");
    // The query was embedded too: metered with the chunks' embeddings.
    let usage: Value = app.get_json("/account/usage").await;
    assert_eq!(usage["requests"], 5, "{usage}");
    assert!(usage.to_string().contains(EMBEDDER), "{usage}");

    // Hybrid fuses the keyword and vector ranks: each result scores the sum of 1/(60 + rank).
    let keyword = search(
        &app,
        json!({"query": "gamma epsilon", "search_type": "keyword", "max_results": 10}),
    )
    .await;
    let vector = search(
        &app,
        json!({"query": "gamma epsilon", "search_type": "vector", "max_results": 10}),
    )
    .await;
    let hybrid = search(
        &app,
        json!({"query": "gamma epsilon", "search_type": "hybrid", "max_results": 10}),
    )
    .await;
    assert_eq!(hybrid["search_type"], "hybrid");
    let ranks = |answer: &Value| -> Vec<String> {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (keyword_ranks, vector_ranks) = (ranks(&keyword), ranks(&vector));
    assert!(!keyword_ranks.is_empty() && !vector_ranks.is_empty());
    for result in hybrid["results"].as_array().unwrap() {
        let chunk = result["id"].as_str().unwrap();
        let expected: f64 = [&keyword_ranks, &vector_ranks]
            .iter()
            .filter_map(|list| list.iter().position(|id| id == chunk))
            .map(|index| 1.0 / (60.0 + index as f64 + 1.0))
            .sum();
        let score = result["score"].as_f64().unwrap();
        assert!(
            (score - expected).abs() < 1e-9,
            "{chunk}: {score} vs {expected}"
        );
    }
    let mut all: Vec<String> = keyword_ranks.clone();
    all.extend(vector_ranks.iter().cloned());
    all.sort();
    all.dedup();
    assert_eq!(
        ranks(&hybrid).len(),
        all.len(),
        "every chunk of either list"
    );
    // The chunks both lists found rank first.
    let top = found(&hybrid);
    assert!(
        top[..2].contains(&ids[0]) && top[..2].contains(&ids[1]),
        "{hybrid}"
    );

    // Filters apply to vector search too.
    let tagged = completed(
        &app,
        json!({"text": "alpha beta gamma delta omega", "metadata": {"tag": "x"}}),
    )
    .await;
    let answer = search(
        &app,
        json!({"query": "alpha beta gamma delta", "search_type": "vector", "filters": {"tag": "x"}}),
    )
    .await;
    assert_eq!(found(&answer), [id(&tagged)]);

    // An embedder failure during a search is the provider's: 502, not a silent fallback.
    model.fail_embeddings(Some((500, "embedder down")));
    let response = app
        .post_json(
            "/knowledge/search",
            &json!({"query": "alpha", "search_type": "hybrid"}),
        )
        .send()
        .await
        .unwrap();
    assert_problem(response, 502, "provider_failed").await;
    // Keyword search needs no embedder.
    let answer = search(&app, json!({"query": "alpha", "search_type": "keyword"})).await;
    assert!(!found(&answer).is_empty());
}

/// Each node answers vector searches from its in-memory copy of the tenant's embeddings; a
/// content completed or deleted on one node shows in the very next search on the other.
async fn vector_search_from_memory_follows_changes_made_on_any_node(db: TestDb) {
    let (first, _model) = app_with_embedder(db).await;
    let second = first.another_node().await;
    let vector = |query: &str| json!({"query": query, "search_type": "vector", "max_results": 10});
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };

    let a = id(&completed(&first, json!({"text": "alpha beta"})).await);
    assert_eq!(
        found(&search(&first, vector("alpha beta")).await),
        std::slice::from_ref(&a)
    );
    assert_eq!(
        found(&search(&second, vector("alpha beta")).await),
        std::slice::from_ref(&a)
    );

    let b = id(&completed(&first, json!({"text": "alpha beta gamma"})).await);
    assert_eq!(
        sorted(found(&search(&second, vector("alpha beta")).await)),
        sorted(vec![a.clone(), b.clone()]),
        "the second node sees the first node's new content"
    );

    let response = second
        .request(
            Method::DELETE,
            &format!("/knowledge/content/{a}"),
            &second.admin_key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        found(&search(&first, vector("alpha beta")).await),
        [b],
        "the first node sees the second node's deletion"
    );
}

/// The cosine similarity of the scripted embeddings of two texts.
fn cosine(a: &str, b: &str) -> f64 {
    let (a, b) = (scripted_embedding(a), scripted_embedding(b));
    let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    f64::from(dot / (norm(&a) * norm(&b)))
}

async fn contents_left_processing_fail_when_the_node_restarts(db: TestDb) {
    use agentd_core::knowledge::{
        ChunkStrategy, Chunking, Content, ContentKind, ContentSource, ContentStatus,
    };
    let app = spawn_app(db).await;
    let tenant = app.runtime.store.list_tenant_ids().await.unwrap()[0];
    let now = agentd_core::now();
    // As a node would leave it when it stopped mid-way.
    let content = Content {
        tenant_id: tenant,
        id: agentd_core::ContentId::new(),
        name: "interrupted".into(),
        description: None,
        metadata: Default::default(),
        kind: ContentKind::Text,
        source: ContentSource::Text,
        size_bytes: 5,
        content_hash: agentd_core::knowledge::content_hash(b"hello"),
        status: ContentStatus::Processing,
        status_message: None,
        chunk_count: 0,
        chunking: Chunking {
            strategy: ChunkStrategy::Recursive,
            chunk_size: 1000,
            overlap: 100,
        },
        embedder: None,
        node_id: app.runtime.config.node_id.clone(),
        created_at: now,
        updated_at: now,
    };
    app.runtime.store.insert_content(&content).await.unwrap();
    let other_node = Content {
        id: agentd_core::ContentId::new(),
        content_hash: agentd_core::knowledge::content_hash(b"other node"),
        node_id: "another-node".into(),
        ..content.clone()
    };
    app.runtime.store.insert_content(&other_node).await.unwrap();

    let app = app.restart().await;
    let status: Value = app
        .get_json(&format!("/knowledge/content/{}/status", content.id))
        .await;
    assert_eq!(status["status"], "failed", "{status}");
    assert!(
        status["status_message"]
            .as_str()
            .unwrap()
            .contains("restarted"),
        "{status}"
    );
    let status: Value = app
        .get_json(&format!("/knowledge/content/{}/status", other_node.id))
        .await;
    assert_eq!(
        status["status"], "processing",
        "another node's content is its own"
    );
    // The bytes upload again.
    let retry = upload(&app, json!({"text": "hello"})).await;
    assert_ne!(id(&retry), content.id.to_string());
}

async fn another_tenants_knowledge_is_out_of_reach(db: TestDb) {
    let (app, _model) = app_with_embedder(db).await;
    let mine = completed(
        &app,
        json!({"text": "tenant-a zebra secrets", "metadata": {"owner": "tenant-a"}}),
    )
    .await;
    let other = app.create_tenant("other").await;
    let theirs = upload_as(&app, &other, json!({"text": "other zebra notes"})).await;
    assert_eq!(theirs.status(), 202);
    let theirs: Value = theirs.json().await.unwrap();
    let theirs = settled(&app, &other, &id(&theirs)).await;
    assert_eq!(theirs["status"], "completed");

    let path = format!("/knowledge/content/{}", id(&mine));
    assert_all_not_found(
        &app,
        &other,
        vec![
            (Method::GET, path.clone(), None),
            (Method::GET, format!("{path}/status"), None),
            (
                Method::PATCH,
                path.clone(),
                Some(json!({"name": "mine now"})),
            ),
            (Method::DELETE, path.clone(), None),
        ],
    )
    .await;
    // Every search type, with and without the owner's metadata, finds only the other's own chunk.
    for search_type in ["keyword", "vector", "hybrid"] {
        for filters in [json!({}), json!({"owner": "tenant-a"})] {
            let answer = search_as(
                &app,
                &other,
                json!({"query": "tenant-a zebra secrets", "search_type": search_type, "filters": filters, "max_results": 100}),
            )
            .await;
            let ids = found(&answer);
            assert!(!ids.contains(&id(&mine)), "{search_type}: {answer}");
            assert!(!answer.to_string().contains("tenant-a zebra"), "{answer}");
            if filters == json!({}) {
                assert_eq!(ids, [id(&theirs)], "{search_type}: {answer}");
            }
        }
    }
    for read in ["/knowledge/content", "/knowledge/config"] {
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
    // Deleting all of one's own leaves the other tenant's.
    let response = app
        .request(Method::DELETE, "/knowledge/content", &other)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"deleted": 1})
    );
    assert_eq!(app.get_json(&path).await["status"], "completed");
    let answer = search(&app, json!({"query": "zebra"})).await;
    assert_eq!(found(&answer), [id(&mine)]);
}

/// Uploads larger than the server's `max_body_bytes` pass when `knowledge.max_upload_bytes` allows:
/// the upload route has its own limit.
#[tokio::test]
async fn the_upload_limit_is_the_knowledge_one() {
    let config = Config {
        max_body_bytes: 1024,
        knowledge: agentd_runtime::knowledge::KnowledgeConfig {
            max_upload_bytes: 64 * 1024,
            ..Default::default()
        },
        ..Config::default()
    };
    let app = spawn_app_with(TestDb::sqlite(), config).await;
    let text = "many words here ".repeat(2000);
    let response = upload_file(&app, "long.txt", "text/plain", text.as_bytes()).await;
    assert_eq!(response.status(), 202);
    let content: Value = response.json().await.unwrap();
    assert_eq!(
        settled(&app, &app.admin_key, &id(&content)).await["status"],
        "completed"
    );
    // Other routes keep the server's limit.
    let response = app
        .post_json("/knowledge/search", &json!({"query": "x".repeat(2000)}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 413, "payload_too_large").await;
}
