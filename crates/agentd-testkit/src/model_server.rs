//! A scripted model server for tests: a real HTTP server on `127.0.0.1:0` that answers the OpenAI chat
//! completions (`POST /v1/chat/completions`), Anthropic Messages (`POST /v1/messages`) and Ollama
//! (`POST /api/chat`) protocols from a script of [`Reply`]s, and the OpenAI (`POST /v1/embeddings`) and
//! Ollama (`POST /api/embed`) embeddings APIs with deterministic vectors ([`scripted_embedding`]).
//!
//! Each incoming chat request takes the next queued reply (FIFO); when the queue is empty the default
//! reply answers, or, without one, a 500 "script exhausted". Embeddings requests leave the queue alone:
//! they always answer, unless [`ScriptedModel::fail_embeddings`] makes them fail. Every request is
//! recorded (path, headers, JSON body) so tests can check what a client sent. Replies can stream
//! slowly, break off, report an error mid-stream, fail with a status (and `Retry-After`) or hang, so
//! the failure paths of a provider adapter can be exercised over real HTTP.
//!
//! The streams follow the wire rules of `shared/reference/protocols.md` §5: OpenAI chunks carry `role`
//! only in the first delta and a tool call's `id`/`type`/`name` only in its first delta, arguments
//! arrive as string fragments (parallel calls interleaved, by index), and the usage-only chunk with
//! `choices: []` comes last when `stream_options.include_usage` is set; Anthropic streams
//! `message_start`, one `content_block_*` sequence per block, `message_delta` and `message_stop`; Ollama
//! streams NDJSON lines ending with a `"done": true` line.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The model name reported when a request names none.
const DEFAULT_MODEL: &str = "scripted-model";
/// Input tokens reported when a reply does not set its usage.
const DEFAULT_INPUT_TOKENS: u64 = 10;
/// How many dimensions a [`scripted_embedding`] has.
pub const EMBEDDING_DIMENSIONS: usize = 16;

/// A handle on a running scripted model server. Cloning it shares the same server and script.
#[derive(Clone)]
pub struct ScriptedModel {
    addr: SocketAddr,
    state: Arc<Mutex<Script>>,
}

/// A request the server received.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// The request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names (lower case) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Value::String` of the raw text when it was not JSON, `Null` when empty).
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct Script {
    queue: VecDeque<Reply>,
    default: Option<Reply>,
    requests: Vec<RecordedRequest>,
    /// The status and message every embeddings request fails with, while set.
    embeddings_failure: Option<(u16, String)>,
    /// The size of the vectors, when not [`EMBEDDING_DIMENSIONS`].
    embedding_dimensions: Option<usize>,
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    kind: ReplyKind,
    usage: Option<(u64, u64)>,
    token_delay: Option<Duration>,
    break_after: Option<usize>,
    error_after: Option<(usize, String)>,
    stall_after: Option<usize>,
}

#[derive(Clone, Debug)]
enum ReplyKind {
    Text(String),
    ToolCalls(Vec<ScriptedCall>),
    Status {
        code: u16,
        message: String,
        retry_after: Option<u64>,
    },
    Hang,
}

#[derive(Clone, Debug)]
struct ScriptedCall {
    id: String,
    name: String,
    arguments: String,
}

impl Reply {
    fn new(kind: ReplyKind) -> Self {
        Self {
            kind,
            usage: None,
            token_delay: None,
            break_after: None,
            error_after: None,
            stall_after: None,
        }
    }

    /// A text answer, streamed as chunks split at word boundaries that keep the spaces (`"Hello"`,
    /// `" world"`).
    pub fn text(content: &str) -> Reply {
        Self::new(ReplyKind::Text(content.to_owned()))
    }

    /// One tool call; the arguments are streamed in at least two fragments (when they have two
    /// characters or more).
    pub fn tool_call(id: &str, name: &str, arguments_json: &str) -> Reply {
        Self::tool_calls(&[(id, name, arguments_json)])
    }

    /// Parallel tool calls `(id, name, arguments_json)`, with distinct indices in the stream.
    pub fn tool_calls(calls: &[(&str, &str, &str)]) -> Reply {
        let calls = calls
            .iter()
            .map(|(id, name, arguments)| ScriptedCall {
                id: (*id).to_owned(),
                name: (*name).to_owned(),
                arguments: (*arguments).to_owned(),
            })
            .collect();
        Self::new(ReplyKind::ToolCalls(calls))
    }

    /// An HTTP error with the protocol's error body shape.
    pub fn status(code: u16, message: &str) -> Reply {
        Self::new(ReplyKind::Status {
            code,
            message: message.to_owned(),
            retry_after: None,
        })
    }

    /// Adds a `Retry-After: <seconds>` header to a [`Reply::status`] reply (no effect on others).
    pub fn retry_after(mut self, seconds: u64) -> Reply {
        if let ReplyKind::Status { retry_after, .. } = &mut self.kind {
            *retry_after = Some(seconds);
        }
        self
    }

    /// Accepts the request and never answers, until the client gives up.
    pub fn hang() -> Reply {
        Self::new(ReplyKind::Hang)
    }

    /// The token counts to report (default: 10 input tokens, one output token per streamed chunk).
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Reply {
        self.usage = Some((input_tokens, output_tokens));
        self
    }

    /// Sleeps this long before each streamed chunk.
    pub fn token_delay(mut self, delay: Duration) -> Reply {
        self.token_delay = Some(delay);
        self
    }

    /// Streams `chunks` content chunks, then drops the connection abruptly (no `[DONE]`, no
    /// `message_stop`, no `done` line).
    pub fn break_after(mut self, chunks: usize) -> Reply {
        self.break_after = Some(chunks);
        self
    }

    /// Streams `chunks` content chunks, then a protocol error (OpenAI: a chunk `{"error":{..}}`;
    /// Anthropic: `event: error`; Ollama: a line `{"error": ..}`) and ends the stream.
    pub fn error_after(mut self, chunks: usize, message: &str) -> Reply {
        self.error_after = Some((chunks, message.to_owned()));
        self
    }

    /// Streams `chunks` content chunks, then sends nothing more and keeps the connection open, until
    /// the client gives up: a stream stopped in the middle for as long as a test needs.
    pub fn stall_after(mut self, chunks: usize) -> Reply {
        self.stall_after = Some(chunks);
        self
    }

    /// The content pieces of a text reply.
    fn text_pieces(content: &str) -> Vec<String> {
        let mut pieces = Vec::new();
        let mut current = String::new();
        let mut previous_was_space = false;
        for c in content.chars() {
            let is_space = c == ' ';
            if is_space && !previous_was_space && !current.is_empty() {
                pieces.push(std::mem::take(&mut current));
            }
            current.push(c);
            previous_was_space = is_space;
        }
        if !current.is_empty() {
            pieces.push(current);
        }
        pieces
    }

    /// The usage to report given how many content chunks were streamed.
    fn usage_for(&self, chunks: usize) -> (u64, u64) {
        self.usage
            .unwrap_or((DEFAULT_INPUT_TOKENS, chunks.max(1) as u64))
    }

    /// After how many content chunks the stream stops early, and how (the earliest cut; a break
    /// wins a tie).
    fn cut(&self) -> Option<(usize, Cut)> {
        let cuts = [
            self.break_after.map(|n| (n, Cut::Break)),
            self.error_after
                .clone()
                .map(|(n, message)| (n, Cut::Error(message))),
            self.stall_after.map(|n| (n, Cut::Stall)),
        ];
        cuts.into_iter().flatten().min_by_key(|(n, _)| *n)
    }
}

/// How a stream stops early.
enum Cut {
    Break,
    Error(String),
    Stall,
}

/// Splits tool arguments into at least two fragments (when there are at least two characters), at char
/// boundaries.
fn argument_fragments(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    if chars.len() < 2 {
        return vec![arguments.to_owned()];
    }
    let size = chars.len().div_ceil(3);
    chars
        .chunks(size)
        .map(|chunk| chunk.iter().collect())
        .collect()
}

impl ScriptedModel {
    /// Starts a server on `127.0.0.1:0` on a tokio task of the current runtime.
    pub async fn start() -> ScriptedModel {
        let state = Arc::new(Mutex::new(Script::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the scripted model server");
        let addr = listener.local_addr().expect("local address");
        let app_state = state.clone();
        let app = Router::new().fallback(move |method, uri, headers, body| {
            let state = app_state.clone();
            async move { handle(state, method, uri, headers, body).await }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptedModel { addr, state }
    }

    /// The server's base URL, `http://127.0.0.1:PORT` (the OpenAI base URL is this plus `/v1`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a reply; each incoming request takes the next one.
    pub fn push(&self, reply: Reply) {
        self.lock().queue.push_back(reply);
    }

    /// The reply used when the queue is empty.
    pub fn set_default(&self, reply: Reply) {
        self.lock().default = Some(reply);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// How many queued replies are left.
    pub fn pending(&self) -> usize {
        self.lock().queue.len()
    }

    /// While `failure` is set, every embeddings request answers its status with the API's error body
    /// (OpenAI `{"error": {"message", "type"}}`, Ollama `{"error": ".."}`); `None` heals the server.
    pub fn fail_embeddings(&self, failure: Option<(u16, &str)>) {
        self.lock().embeddings_failure = failure.map(|(code, message)| (code, message.to_owned()));
    }

    /// Makes the embeddings `dimensions` long from now on (a realistic 384 or 1536 for benchmarks;
    /// the tests' default is [`EMBEDDING_DIMENSIONS`]).
    pub fn set_embedding_dimensions(&self, dimensions: usize) {
        self.lock().embedding_dimensions = Some(dimensions.max(1));
    }

    fn lock(&self) -> MutexGuard<'_, Script> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<Script>) -> MutexGuard<'_, Script> {
    // A panicking test thread must not turn every later call into a second panic.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The protocol a request speaks, by path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    OpenAi,
    Anthropic,
    Ollama,
}

impl Protocol {
    fn from_path(path: &str) -> Option<Self> {
        match path {
            "/v1/chat/completions" | "/chat/completions" => Some(Self::OpenAi),
            "/v1/messages" => Some(Self::Anthropic),
            "/api/chat" => Some(Self::Ollama),
            _ => None,
        }
    }

    /// The protocol of an embeddings path (OpenAI or Ollama).
    fn from_embeddings_path(path: &str) -> Option<Self> {
        match path {
            "/v1/embeddings" | "/embeddings" => Some(Self::OpenAi),
            "/api/embed" => Some(Self::Ollama),
            _ => None,
        }
    }
}

async fn handle(
    state: Arc<Mutex<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let body = parse_body(&body);
    let recorded = RecordedRequest {
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    };
    let (protocol, reply) = {
        let mut script = lock(&state);
        script.requests.push(recorded);
        let embeddings = Protocol::from_embeddings_path(&path).filter(|_| method == Method::POST);
        if let Some(protocol) = embeddings {
            return match &script.embeddings_failure {
                Some((code, message)) => error_response(protocol, *code, message, None),
                None => embeddings_response(
                    protocol,
                    &body,
                    script.embedding_dimensions.unwrap_or(EMBEDDING_DIMENSIONS),
                ),
            };
        }
        let Some(protocol) = Protocol::from_path(&path).filter(|_| method == Method::POST) else {
            return plain(
                StatusCode::NOT_FOUND,
                &format!("no scripted route {method} {path}"),
            );
        };
        let reply = script.queue.pop_front().or_else(|| script.default.clone());
        (protocol, reply)
    };
    let Some(reply) = reply else {
        return error_response(protocol, 500, "script exhausted", None);
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_MODEL)
        .to_owned();
    let streaming = match protocol {
        Protocol::OpenAi | Protocol::Anthropic => body.get("stream") == Some(&Value::Bool(true)),
        Protocol::Ollama => body.get("stream") != Some(&Value::Bool(false)),
    };
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let content = match &reply.kind {
        ReplyKind::Status {
            code,
            message,
            retry_after,
        } => return error_response(protocol, *code, message, *retry_after),
        ReplyKind::Hang => {
            // Long enough for any test; the client gives up first and the task ends with the runtime.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return plain(StatusCode::GATEWAY_TIMEOUT, "hung");
        }
        ReplyKind::Text(text) => Content::Text(text.clone()),
        ReplyKind::ToolCalls(calls) => Content::Calls(calls.clone()),
    };
    if !streaming {
        return whole_response(protocol, &model, &content, &reply);
    }
    let frames = match protocol {
        Protocol::OpenAi => openai_frames(&model, &content, &reply, include_usage),
        Protocol::Anthropic => anthropic_frames(&model, &content, &reply),
        Protocol::Ollama => ollama_frames(&model, &content, &reply),
    };
    stream_response(protocol, frames, reply.token_delay)
}

/// A deterministic unit vector of [`EMBEDDING_DIMENSIONS`] dimensions for `text`: each lower-cased
/// whitespace-separated word adds 1.0 to the dimension its FNV-1a hash picks, then the vector is
/// L2-normalised (a text without words stays all zero). Texts sharing words are similar.
pub fn scripted_embedding(text: &str) -> Vec<f32> {
    scripted_embedding_of(text, EMBEDDING_DIMENSIONS)
}

/// [`scripted_embedding`] with `dimensions` dimensions.
pub fn scripted_embedding_of(text: &str, dimensions: usize) -> Vec<f32> {
    let mut vector = vec![0.0f32; dimensions];
    for word in text.split_whitespace() {
        let hash = fnv1a(word.to_lowercase().as_bytes());
        vector[(hash % dimensions as u64) as usize] += 1.0;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut vector {
            *x /= norm;
        }
    }
    vector
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The answer to an embeddings request: a [`scripted_embedding`] per input, and one prompt token per
/// word of all inputs.
fn embeddings_response(protocol: Protocol, body: &Value, dimensions: usize) -> Response {
    let inputs: Vec<&str> = match body.get("input") {
        Some(Value::String(text)) => vec![text.as_str()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect()
        }
        _ => {
            return error_response(
                protocol,
                400,
                "`input` must be a string or a list of strings",
                None,
            )
        }
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_MODEL);
    let vectors: Vec<Vec<f32>> = inputs
        .iter()
        .map(|text| scripted_embedding_of(text, dimensions))
        .collect();
    let tokens: usize = inputs
        .iter()
        .map(|text| text.split_whitespace().count())
        .sum();
    let answer = match protocol {
        Protocol::Ollama => json!({
            "model": model,
            "embeddings": vectors,
            "prompt_eval_count": tokens,
        }),
        Protocol::OpenAi | Protocol::Anthropic => json!({
            "object": "list",
            "data": vectors
                .iter()
                .enumerate()
                .map(|(index, vector)| json!({
                    "object": "embedding",
                    "index": index,
                    "embedding": vector,
                }))
                .collect::<Vec<_>>(),
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }),
    };
    json_response(StatusCode::OK, &answer)
}

fn parse_body(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(text.to_owned()));
    *response.status_mut() = status;
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

/// An HTTP error in the protocol's error body shape.
fn error_response(
    protocol: Protocol,
    code: u16,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match protocol {
        Protocol::OpenAi => json!({"error": {
            "message": message,
            "type": openai_error_type(code),
            "param": null,
            "code": null,
        }}),
        Protocol::Anthropic => json!({
            "type": "error",
            "error": {"type": anthropic_error_type(code), "message": message},
        }),
        Protocol::Ollama => json!({"error": message}),
    };
    let mut response = json_response(status, &body);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(seconds));
    }
    response
}

fn openai_error_type(code: u16) -> &'static str {
    match code {
        401 | 403 => "invalid_request_error",
        429 => "rate_limit_exceeded",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

fn anthropic_error_type(code: u16) -> &'static str {
    match code {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// What a successful reply says.
enum Content {
    Text(String),
    Calls(Vec<ScriptedCall>),
}

impl Content {
    fn is_calls(&self) -> bool {
        matches!(self, Self::Calls(_))
    }
}

/// One frame of a stream: a content chunk (counted for `break_after`/`error_after`, delayed by
/// `token_delay`) or protocol framing around the content.
struct Frame {
    content: bool,
    bytes: String,
}

impl Frame {
    fn content(bytes: String) -> Self {
        Self {
            content: true,
            bytes,
        }
    }

    fn framing(bytes: String) -> Self {
        Self {
            content: false,
            bytes,
        }
    }
}

/// The frames of a stream, and how it ends.
struct Frames {
    frames: Vec<Frame>,
    /// Replaces everything after the n-th content frame.
    cut: Option<(usize, Cut)>,
    /// The protocol's error frame, used for `Cut::Error`.
    error_frame: fn(&str) -> String,
}

fn sse_data(data: &Value) -> String {
    format!("data: {data}\n\n")
}

fn sse_event(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

fn openai_frames(model: &str, content: &Content, reply: &Reply, include_usage: bool) -> Frames {
    let chunk = |choices: Value| {
        json!({
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": choices,
        })
    };
    let delta_chunk = |delta: Value| {
        sse_data(&chunk(json!([{
            "index": 0,
            "delta": delta,
            "finish_reason": null,
        }])))
    };
    let mut frames = Vec::new();
    match content {
        Content::Text(text) => {
            let pieces = Reply::text_pieces(text);
            if pieces.is_empty() {
                frames.push(Frame::content(delta_chunk(
                    json!({"role": "assistant", "content": ""}),
                )));
            }
            for (i, piece) in pieces.iter().enumerate() {
                let delta = if i == 0 {
                    json!({"role": "assistant", "content": piece})
                } else {
                    json!({"content": piece})
                };
                frames.push(Frame::content(delta_chunk(delta)));
            }
        }
        Content::Calls(calls) => {
            // First each call's opening delta (id, type, name, empty arguments), then the argument
            // fragments interleaved across calls, so a client must match entries by index.
            let fragments: Vec<Vec<String>> = calls
                .iter()
                .map(|call| argument_fragments(&call.arguments))
                .collect();
            for (index, call) in calls.iter().enumerate() {
                let tool_call = json!({
                    "index": index,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                });
                let delta = if index == 0 {
                    json!({"role": "assistant", "content": null, "tool_calls": [tool_call]})
                } else {
                    json!({"tool_calls": [tool_call]})
                };
                frames.push(Frame::content(delta_chunk(delta)));
            }
            let rounds = fragments.iter().map(Vec::len).max().unwrap_or(0);
            for round in 0..rounds {
                for (index, call_fragments) in fragments.iter().enumerate() {
                    if let Some(fragment) = call_fragments.get(round) {
                        let delta = json!({"tool_calls": [{
                            "index": index,
                            "function": {"arguments": fragment},
                        }]});
                        frames.push(Frame::content(delta_chunk(delta)));
                    }
                }
            }
        }
    }
    let chunks = frames.len();
    let finish_reason = if content.is_calls() {
        "tool_calls"
    } else {
        "stop"
    };
    frames.push(Frame::framing(sse_data(&chunk(json!([{
        "index": 0,
        "delta": {},
        "finish_reason": finish_reason,
    }])))));
    if include_usage {
        let (input, output) = reply.usage_for(chunks);
        let mut usage_chunk = chunk(json!([]));
        usage_chunk["usage"] = json!({
            "prompt_tokens": input,
            "completion_tokens": output,
            "total_tokens": input + output,
        });
        frames.push(Frame::framing(sse_data(&usage_chunk)));
    }
    frames.push(Frame::framing("data: [DONE]\n\n".to_owned()));
    Frames {
        frames,
        cut: reply.cut(),
        error_frame: |message| {
            sse_data(&json!({"error": {
                "message": message,
                "type": "server_error",
                "param": null,
                "code": null,
            }}))
        },
    }
}

fn anthropic_frames(model: &str, content: &Content, reply: &Reply) -> Frames {
    let mut body = Vec::new();
    let mut block_frames = |index: usize, start: Value, deltas: Vec<Value>| {
        body.push(Frame::framing(sse_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        )));
        for delta in deltas {
            body.push(Frame::content(sse_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            )));
        }
        body.push(Frame::framing(sse_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        )));
    };
    match content {
        Content::Text(text) => {
            let deltas = Reply::text_pieces(text)
                .into_iter()
                .map(|piece| json!({"type": "text_delta", "text": piece}))
                .collect();
            block_frames(0, json!({"type": "text", "text": ""}), deltas);
        }
        Content::Calls(calls) => {
            for (index, call) in calls.iter().enumerate() {
                let deltas = argument_fragments(&call.arguments)
                    .into_iter()
                    .map(|fragment| json!({"type": "input_json_delta", "partial_json": fragment}))
                    .collect();
                block_frames(
                    index,
                    json!({"type": "tool_use", "id": call.id, "name": call.name, "input": {}}),
                    deltas,
                );
            }
        }
    }
    let chunks = body.iter().filter(|frame| frame.content).count();
    let (input, output) = reply.usage_for(chunks);
    let stop_reason = if content.is_calls() {
        "tool_use"
    } else {
        "end_turn"
    };
    let mut frames = vec![
        Frame::framing(sse_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": "msg_scripted",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": 1},
            }}),
        )),
        Frame::framing(sse_event("ping", &json!({"type": "ping"}))),
    ];
    frames.extend(body);
    frames.push(Frame::framing(sse_event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": output},
        }),
    )));
    frames.push(Frame::framing(sse_event(
        "message_stop",
        &json!({"type": "message_stop"}),
    )));
    Frames {
        frames,
        cut: reply.cut(),
        error_frame: |message| {
            sse_event(
                "error",
                &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
            )
        },
    }
}

fn ollama_line(model: &str, message: Value) -> String {
    let mut line = json!({
        "model": model,
        "created_at": "2026-01-01T00:00:00Z",
        "message": message,
        "done": false,
    })
    .to_string();
    line.push('\n');
    line
}

/// Tool call arguments as a JSON object (Ollama and Anthropic send objects, not text).
fn arguments_object(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| json!({}))
}

fn ollama_frames(model: &str, content: &Content, reply: &Reply) -> Frames {
    let mut frames = Vec::new();
    match content {
        Content::Text(text) => {
            for piece in Reply::text_pieces(text) {
                frames.push(Frame::content(ollama_line(
                    model,
                    json!({"role": "assistant", "content": piece}),
                )));
            }
        }
        Content::Calls(calls) => {
            for call in calls {
                frames.push(Frame::content(ollama_line(
                    model,
                    json!({"role": "assistant", "content": "", "tool_calls": [{
                        "function": {"name": call.name, "arguments": arguments_object(&call.arguments)},
                    }]}),
                )));
            }
        }
    }
    let (input, output) = reply.usage_for(frames.len());
    let mut last = json!({
        "model": model,
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""},
        "done": true,
        "done_reason": "stop",
        "total_duration": 1_000_000,
        "prompt_eval_count": input,
        "eval_count": output,
    })
    .to_string();
    last.push('\n');
    frames.push(Frame::framing(last));
    Frames {
        frames,
        cut: reply.cut(),
        error_frame: |message| format!("{}\n", json!({"error": message})),
    }
}

/// The non-streaming answer.
fn whole_response(protocol: Protocol, model: &str, content: &Content, reply: &Reply) -> Response {
    let chunks = match content {
        Content::Text(text) => Reply::text_pieces(text).len(),
        Content::Calls(calls) => calls.len(),
    };
    let (input, output) = reply.usage_for(chunks);
    let body = match protocol {
        Protocol::OpenAi => {
            let message = match content {
                Content::Text(text) => json!({"role": "assistant", "content": text}),
                Content::Calls(calls) => json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": calls.iter().map(|call| json!({
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    })).collect::<Vec<_>>(),
                }),
            };
            json!({
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": message,
                    "finish_reason": if content.is_calls() { "tool_calls" } else { "stop" },
                }],
                "usage": {
                    "prompt_tokens": input,
                    "completion_tokens": output,
                    "total_tokens": input + output,
                },
            })
        }
        Protocol::Anthropic => {
            let blocks: Vec<Value> = match content {
                Content::Text(text) => vec![json!({"type": "text", "text": text})],
                Content::Calls(calls) => calls
                    .iter()
                    .map(|call| {
                        json!({
                            "type": "tool_use",
                            "id": call.id,
                            "name": call.name,
                            "input": arguments_object(&call.arguments),
                        })
                    })
                    .collect(),
            };
            json!({
                "id": "msg_scripted",
                "type": "message",
                "role": "assistant",
                "content": blocks,
                "model": model,
                "stop_reason": if content.is_calls() { "tool_use" } else { "end_turn" },
                "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": output},
            })
        }
        Protocol::Ollama => {
            let message = match content {
                Content::Text(text) => json!({"role": "assistant", "content": text}),
                Content::Calls(calls) => json!({
                    "role": "assistant",
                    "content": "",
                    "tool_calls": calls.iter().map(|call| json!({
                        "function": {"name": call.name, "arguments": arguments_object(&call.arguments)},
                    })).collect::<Vec<_>>(),
                }),
            };
            json!({
                "model": model,
                "created_at": "2026-01-01T00:00:00Z",
                "message": message,
                "done": true,
                "done_reason": "stop",
                "prompt_eval_count": input,
                "eval_count": output,
            })
        }
    };
    json_response(StatusCode::OK, &body)
}

/// Streams the frames from a task, honouring `token_delay` and the reply's cut.
fn stream_response(protocol: Protocol, frames: Frames, delay: Option<Duration>) -> Response {
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let Frames {
            frames,
            cut,
            error_frame,
        } = frames;
        let mut sent_content = 0;
        for frame in frames {
            // The cut replaces everything after the n-th content chunk, terminator included.
            if let Some((limit, how)) = &cut {
                if sent_content >= *limit {
                    let last = match how {
                        Cut::Break => {
                            // Let the server flush what was sent: hyper drops buffered data when
                            // the body fails.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionAborted,
                                "scripted break",
                            ))
                        }
                        Cut::Error(message) => Ok(Bytes::from(error_frame(message))),
                        Cut::Stall => {
                            // Until the client goes away (the channel closes) or the hour is up.
                            tokio::select! {
                                _ = sender.closed() => {}
                                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                            }
                            return;
                        }
                    };
                    let _ = sender.send(last).await;
                    return;
                }
            }
            if frame.content {
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                sent_content += 1;
            }
            if sender.send(Ok(Bytes::from(frame.bytes))).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(futures::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ));
    let content_type = match protocol {
        Protocol::OpenAi | Protocol::Anthropic => "text/event-stream",
        Protocol::Ollama => "application/x-ndjson",
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}
