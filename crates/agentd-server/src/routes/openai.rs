//! The OpenAI-compatible face: `GET /v1/models`, `POST /v1/chat/completions`, `/v1/completions` and
//! `/v1/embeddings`, so any OpenAI client can use agentd's providers and agents.
//!
//! A `model` is a `provider/model` ref, a route (`[routes]`), or an agent as `agent/<id>`. Provider
//! models are called straight through (tools the client sends are passed to the model and its tool
//! calls come back to the client). An agent runs with its own instructions and tools; client tools
//! pause the run, and sending the tool results in the same session (`X-Session-Id`, answered on every
//! agent response) continues it. Streams follow OpenAI's chunk rules: `role` only in the first delta,
//! tool calls whole under their `index`, a final chunk with `finish_reason`, the usage chunk when
//! `stream_options.include_usage` is set, then `data: [DONE]`.
//!
//! Errors are rendered in OpenAI's shape by `middleware::face_errors_and_rates`; a failure after the
//! stream started is an `{"error": …}` chunk, which OpenAI's SDKs raise as `APIError`.

use std::convert::Infallible;
use std::sync::Arc;

use agentd_core::run::{Run, RunEvent, RunEventData, RunStatus, ToolCall};
use agentd_core::ErrorCode;
use agentd_models::{FinishReason, ModelEvent, ModelRequest, ModelStream};
use agentd_runtime::{GatewayService, RunService, Target};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::Json;
use crate::problem::ApiError;
use crate::routes::chat::{
    convert_messages, convert_tools, start_or_continue, tool_definitions, ChatMessageBody,
    ChatToolBody, ChatTurn,
};
use crate::routes::sessions::optional_session_id;
use crate::sse::KEEP_ALIVE;
use crate::state::AppState;

/// The header naming the session an agent addressed as a model runs in.
pub const SESSION_HEADER: &str = "x-session-id";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(chat_completions))
        .routes(routes!(completions))
        .routes(routes!(embeddings))
}

/// The model list.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

/// One model: a provider's model, a route, or an agent (`agent/<id>`).
#[derive(Serialize, ToSchema)]
pub struct ModelObject {
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: i64,
    pub owned_by: String,
    /// The agent's name, for agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Lists the configured models and routes, and the tenant's agents as `agent/<id>`.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    security(("bearer" = ["models:read"])),
    responses((status = 200, body = ModelList))
)]
async fn list_models(
    auth: Auth<scopes::ModelsRead>,
    State(gateway): State<Arc<GatewayService>>,
) -> Result<axum::Json<ModelList>, ApiError> {
    let data = gateway
        .models(auth.principal.tenant_id)
        .await?
        .into_iter()
        .map(|model| ModelObject {
            id: model.id,
            object: "model",
            created: model.created.timestamp(),
            owned_by: model.owned_by,
            name: model.name,
        })
        .collect();
    Ok(axum::Json(ModelList {
        object: "list",
        data,
    }))
}

/// `stream_options`.
#[derive(Deserialize, ToSchema, Default, Clone, Copy)]
pub struct StreamOptions {
    /// Send a last chunk with the usage (and empty `choices`).
    #[serde(default)]
    pub include_usage: bool,
}

/// `stop`: one sequence or several.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopSequences {
    One(String),
    Many(Vec<String>),
}

impl StopSequences {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(stop) => vec![stop],
            Self::Many(stops) => stops,
        }
    }
}

/// The sampling fields both completion requests share.
#[derive(Deserialize, ToSchema)]
pub struct Sampling {
    pub max_tokens: Option<u32>,
    /// OpenAI's newer name for `max_tokens`.
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Option<StopSequences>,
    /// Only 1 is supported.
    pub n: Option<u32>,
}

impl Sampling {
    fn check(&self) -> Result<(), ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::field(
                ErrorCode::InvalidField,
                "n",
                "only one choice (`n`: 1) is supported",
            ));
        }
        if let Some(t) = self.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            return Err(ApiError::field(
                ErrorCode::InvalidField,
                "temperature",
                format!("{t} is outside 0 to 2"),
            ));
        }
        if let Some(p) = self.top_p.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(ApiError::field(
                ErrorCode::InvalidField,
                "top_p",
                format!("{p} is outside 0 to 1"),
            ));
        }
        Ok(())
    }

    fn request(self, messages: Vec<agentd_core::run::ChatMessage>) -> ModelRequest {
        ModelRequest {
            messages,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature,
            top_p: self.top_p,
            stop: self.stop.map(StopSequences::into_vec).unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// A chat completion request (fields OpenAI defines and agentd does not use are ignored).
#[derive(Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// `provider/model`, a route, or `agent/<id>`.
    pub model: String,
    pub messages: Vec<ChatMessageBody>,
    /// Tools the client executes.
    #[serde(default)]
    pub tools: Vec<ChatToolBody>,
    /// `none` withholds the tools from the model; other values are accepted and leave the choice to it.
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// The end user; for agents, the run's `user_id`.
    pub user: Option<String>,
    /// For agents: the session to run in (also `X-Session-Id`).
    pub session_id: Option<String>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// A chat completion.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// Always `chat.completion`.
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: CompletionUsage,
}

/// The one choice of a completion.
#[derive(Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: String,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
}

/// The assistant's message.
#[derive(Serialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub tool_calls: Vec<Value>,
}

/// Token counts.
#[derive(Serialize, ToSchema, Clone, Copy, Default)]
pub struct CompletionUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl CompletionUsage {
    fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// Creates a chat completion: JSON, or with `stream: true` a stream of `chat.completion.chunk`s.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "openai",
    request_body = ChatCompletionRequest,
    params(("X-Session-Id" = Option<String>, Header, description = "For agents: the session to run in")),
    security(("bearer" = ["models:run"])),
    responses((status = 200, description = "The completion, or its chunks as server-sent events ending with `data: [DONE]`",
        content((ChatCompletion = "application/json"), (Object = "text/event-stream"))))
)]
async fn chat_completions(
    auth: Auth<scopes::ModelsRun>,
    State(gateway): State<Arc<GatewayService>>,
    State(runs): State<Arc<RunService>>,
    headers: HeaderMap,
    Json(request): Json<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    request.sampling.check()?;
    let include_usage = request.stream_options.unwrap_or_default().include_usage;
    let model = request.model.clone();
    let tools_off = request
        .tool_choice
        .as_ref()
        .is_some_and(|choice| choice.as_str() == Some("none"));
    let messages = convert_messages(request.messages)?;
    let tools = if tools_off { Vec::new() } else { request.tools };
    match gateway.target(auth.principal.tenant_id, &model).await? {
        Target::Agent(agent_id) => {
            let scope = format!("agents:{agent_id}:run");
            if let Ok(scope) = agentd_core::Scope::parse(&scope) {
                auth.principal.require(&scope)?;
            }
            let header = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok());
            let session = request.session_id.as_deref().or(header);
            let turn = ChatTurn {
                messages,
                tools: convert_tools(tools)?,
                session_id: optional_session_id(session)?,
                run_id: None,
                user_id: request.user,
                limits: Default::default(),
            };
            let handle = start_or_continue(&runs, &auth.principal, agent_id, turn).await?;
            let session = handle.run.session_id.to_string();
            let mut response = if request.stream {
                let completion = Completion::new(&model, &handle.run.id.to_string());
                let events = handle.events.into_stream();
                sse(agent_chunks(events, completion, include_usage))
            } else {
                let run = runs.finish(handle).await?;
                axum::Json(agent_completion(&model, run)?).into_response()
            };
            if let Ok(value) = HeaderValue::from_str(&session) {
                response.headers_mut().insert(SESSION_HEADER, value);
            }
            Ok(response)
        }
        Target::Model(_) => {
            let mut call = request.sampling.request(messages);
            call.tools = tool_definitions(tools)?;
            let stream = gateway
                .stream(&auth.principal, &model, "chat.completions", call)
                .await?;
            let completion = Completion::new(&model, &uuid::Uuid::now_v7().simple().to_string());
            if request.stream {
                return Ok(sse(model_chunks(stream, completion, include_usage)));
            }
            let answer = collect(stream).await?;
            Ok(axum::Json(answer.chat_completion(&completion)).into_response())
        }
    }
}

/// What every chunk of one completion repeats.
#[derive(Clone)]
struct Completion {
    id: String,
    model: String,
    created: i64,
}

impl Completion {
    fn new(model: &str, id: &str) -> Self {
        Self {
            id: format!("chatcmpl-{id}"),
            model: model.to_owned(),
            created: agentd_core::now().timestamp(),
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null }],
        })
    }

    fn usage_chunk(&self, usage: CompletionUsage) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [], "usage": usage,
        })
    }
}

/// A model's whole answer.
#[derive(Default)]
struct Answer {
    text: String,
    calls: Vec<ToolCall>,
    prompt_tokens: u64,
    completion_tokens: u64,
    finish: Option<FinishReason>,
}

impl Answer {
    fn finish_reason(&self) -> &'static str {
        finish_reason(self.finish.as_ref(), !self.calls.is_empty())
    }

    fn chat_completion(&self, completion: &Completion) -> ChatCompletion {
        ChatCompletion {
            id: completion.id.clone(),
            object: "chat.completion",
            created: completion.created,
            model: completion.model.clone(),
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: (!self.text.is_empty() || self.calls.is_empty())
                        .then(|| self.text.clone()),
                    tool_calls: self.calls.iter().map(tool_call_json).collect(),
                },
                finish_reason: self.finish_reason().to_owned(),
                logprobs: None,
            }],
            usage: CompletionUsage::new(self.prompt_tokens, self.completion_tokens),
        }
    }
}

fn finish_reason(reason: Option<&FinishReason>, called_tools: bool) -> &'static str {
    match reason {
        _ if called_tools => "tool_calls",
        Some(FinishReason::Length) => "length",
        Some(FinishReason::ToolCalls) => "tool_calls",
        _ => "stop",
    }
}

fn tool_call_json(call: &ToolCall) -> Value {
    json!({
        "id": call.id, "type": "function",
        "function": { "name": call.name, "arguments": call.arguments },
    })
}

/// A tool call a paused run waits on, in OpenAI's shape.
fn pending_call_json(tool: &agentd_core::run::ToolExecution) -> Value {
    tool_call_json(&ToolCall {
        id: tool.tool_call_id.clone(),
        name: tool.tool_name.clone(),
        arguments: tool.tool_args.to_string(),
    })
}

/// Reads a model stream to its end; a failure mid-way is the request's error.
async fn collect(mut stream: ModelStream) -> Result<Answer, ApiError> {
    let mut answer = Answer::default();
    while let Some(event) = stream.next().await {
        match event.map_err(agentd_runtime::Error::Provider)? {
            ModelEvent::Text(text) => answer.text.push_str(&text),
            ModelEvent::ToolCall(call) => answer.calls.push(call),
            ModelEvent::Usage(usage) => {
                answer.prompt_tokens += usage.input_tokens;
                answer.completion_tokens += usage.output_tokens;
            }
            ModelEvent::Finished(reason) => answer.finish = Some(reason),
        }
    }
    Ok(answer)
}

/// The `{"error": …}` chunk of a stream that failed after it started.
fn error_chunk(message: &str, kind: &str) -> Value {
    json!({ "error": { "message": message, "type": "server_error", "param": null, "code": kind } })
}

/// Frames JSON chunks as SSE data, then `[DONE]`.
fn sse(chunks: impl Stream<Item = Value> + Send + 'static) -> Response {
    let events = chunks
        .map(|chunk| Ok::<_, Infallible>(Event::default().data(chunk.to_string())))
        .chain(futures::stream::once(async {
            Ok(Event::default().data("[DONE]"))
        }));
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// A provider's stream as chat chunks.
fn model_chunks(
    stream: ModelStream,
    completion: Completion,
    include_usage: bool,
) -> impl Stream<Item = Value> + Send + 'static {
    struct State {
        stream: ModelStream,
        completion: Completion,
        include_usage: bool,
        answer: Answer,
        tool_index: usize,
        started: bool,
        done: bool,
    }
    let state = State {
        stream,
        completion,
        include_usage,
        answer: Answer::default(),
        tool_index: 0,
        started: false,
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let mut out = Vec::new();
        match state.stream.next().await {
            Some(Ok(ModelEvent::Text(text))) => {
                let delta = first_delta(&mut state.started, json!({ "content": text }));
                out.push(state.completion.chunk(delta, None));
            }
            Some(Ok(ModelEvent::ToolCall(call))) => {
                let mut call_delta = tool_call_json(&call);
                call_delta["index"] = json!(state.tool_index);
                state.tool_index += 1;
                state.answer.calls.push(call);
                let delta = first_delta(&mut state.started, json!({ "tool_calls": [call_delta] }));
                out.push(state.completion.chunk(delta, None));
            }
            Some(Ok(ModelEvent::Usage(usage))) => {
                state.answer.prompt_tokens += usage.input_tokens;
                state.answer.completion_tokens += usage.output_tokens;
            }
            Some(Ok(ModelEvent::Finished(reason))) => state.answer.finish = Some(reason),
            Some(Err(error)) => {
                state.done = true;
                out.push(error_chunk(&error.to_string(), error.error_type()));
            }
            None => {
                state.done = true;
                let reason = state.answer.finish_reason();
                if !state.started {
                    let delta = first_delta(&mut state.started, json!({ "content": "" }));
                    out.push(state.completion.chunk(delta, None));
                }
                out.push(state.completion.chunk(json!({}), Some(reason)));
                if state.include_usage {
                    out.push(state.completion.usage_chunk(CompletionUsage::new(
                        state.answer.prompt_tokens,
                        state.answer.completion_tokens,
                    )));
                }
            }
        }
        Some((futures::stream::iter(out), state))
    })
    .flatten()
}

/// The delta of a stream's first content or tool chunk also names the role (and, for tool calls,
/// `content: null`), as OpenAI sends it; later deltas do not repeat it.
fn first_delta(started: &mut bool, mut delta: Value) -> Value {
    if !std::mem::replace(started, true) {
        delta["role"] = json!("assistant");
        if delta.get("content").is_none() {
            delta["content"] = Value::Null;
        }
    }
    delta
}

/// An agent run's events as chat chunks: its answer's deltas, the client tools it waits on, the end.
fn agent_chunks(
    events: impl Stream<Item = Arc<RunEvent>> + Send + 'static,
    completion: Completion,
    include_usage: bool,
) -> impl Stream<Item = Value> + Send + 'static {
    let mut started = false;
    events.flat_map(move |event| {
        let c = &completion;
        let usage = |metrics: &agentd_core::run::RunMetrics| {
            CompletionUsage::new(metrics.input_tokens, metrics.output_tokens)
        };
        let mut out = Vec::new();
        match &event.data {
            RunEventData::RunContent { content } if !content.is_empty() => {
                let delta = first_delta(&mut started, json!({ "content": content }));
                out.push(c.chunk(delta, None));
            }
            RunEventData::RunPaused { tools, .. } => {
                let calls: Vec<Value> = tools
                    .iter()
                    .enumerate()
                    .map(|(index, tool)| {
                        let mut call = pending_call_json(tool);
                        call["index"] = json!(index);
                        call
                    })
                    .collect();
                let delta = first_delta(&mut started, json!({ "tool_calls": calls }));
                out.push(c.chunk(delta, None));
                out.push(c.chunk(json!({}), Some("tool_calls")));
            }
            RunEventData::RunCompleted { metrics, .. } => {
                if !started {
                    let delta = first_delta(&mut started, json!({ "content": "" }));
                    out.push(c.chunk(delta, None));
                }
                out.push(c.chunk(json!({}), Some("stop")));
                if include_usage {
                    out.push(c.usage_chunk(usage(metrics)));
                }
            }
            RunEventData::RunCancelled { .. } => out.push(c.chunk(json!({}), Some("stop"))),
            RunEventData::RunError {
                content,
                error_type,
            } => out.push(error_chunk(content, error_type)),
            _ => {}
        }
        futures::stream::iter(out)
    })
}

/// A finished (or paused) agent run as a chat completion; a failed run is the request's error.
fn agent_completion(model: &str, run: Run) -> Result<ChatCompletion, ApiError> {
    if run.status == RunStatus::Error {
        return Err(ApiError::new(
            ErrorCode::ProviderFailed,
            format!(
                "the agent's run failed: {}",
                run.error.as_deref().unwrap_or("unknown error")
            ),
        ));
    }
    let completion = Completion::new(model, &run.id.to_string());
    let tool_calls: Vec<Value> = run.pending_tools.iter().map(pending_call_json).collect();
    let finish_reason = if run.status == RunStatus::Paused {
        "tool_calls"
    } else {
        "stop"
    };
    Ok(ChatCompletion {
        id: completion.id,
        object: "chat.completion",
        created: completion.created,
        model: completion.model,
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: run
                    .content
                    .filter(|c| !c.is_empty() || tool_calls.is_empty()),
                tool_calls,
            },
            finish_reason: finish_reason.to_owned(),
            logprobs: None,
        }],
        usage: CompletionUsage::new(run.metrics.input_tokens, run.metrics.output_tokens),
    })
}

/// A legacy text completion request.
#[derive(Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// `provider/model` or a route.
    pub model: String,
    /// The prompt: a string (or a list holding one).
    #[schema(value_type = Object)]
    pub prompt: Value,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub user: Option<String>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// A text completion (`object`: `text_completion`).
#[derive(Serialize, ToSchema)]
pub struct TextCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    pub choices: Vec<Value>,
    pub usage: CompletionUsage,
}

/// Completes a prompt (the model is called with the prompt as one user message).
#[utoipa::path(
    post,
    path = "/v1/completions",
    tag = "openai",
    request_body = CompletionRequest,
    security(("bearer" = ["models:run"])),
    responses((status = 200, description = "The completion, or its chunks as server-sent events ending with `data: [DONE]`",
        content((TextCompletion = "application/json"), (Object = "text/event-stream"))))
)]
async fn completions(
    auth: Auth<scopes::ModelsRun>,
    State(gateway): State<Arc<GatewayService>>,
    Json(request): Json<CompletionRequest>,
) -> Result<Response, ApiError> {
    request.sampling.check()?;
    let prompt = match &request.prompt {
        Value::String(prompt) => prompt.clone(),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_owned()
        }
        _ => {
            return Err(ApiError::field(
                ErrorCode::InvalidField,
                "prompt",
                "must be a string (or a list of one string); token arrays are not supported",
            ))
        }
    };
    if let Target::Agent(_) = gateway
        .target(auth.principal.tenant_id, &request.model)
        .await?
    {
        return Err(ApiError::field(
            ErrorCode::InvalidField,
            "model",
            "agents answer chat: use /v1/chat/completions",
        ));
    }
    let include_usage = request.stream_options.unwrap_or_default().include_usage;
    let call = request
        .sampling
        .request(vec![agentd_core::run::ChatMessage::User {
            content: prompt,
        }]);
    let stream = gateway
        .stream(&auth.principal, &request.model, "completions", call)
        .await?;
    let id = format!("cmpl-{}", uuid::Uuid::now_v7().simple());
    let created = agentd_core::now().timestamp();
    let model = request.model;
    let choice = |text: &str, finish: Option<&str>| json!({ "text": text, "index": 0, "logprobs": null, "finish_reason": finish });
    let chat = Completion::new(&model, &id);
    let object = move |choices: Vec<Value>, usage: Option<CompletionUsage>| {
        let mut value = json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            value["usage"] = json!(usage);
        }
        value
    };
    if !request.stream {
        let answer = collect(stream).await?;
        let usage = CompletionUsage::new(answer.prompt_tokens, answer.completion_tokens);
        return Ok(axum::Json(object(
            vec![choice(&answer.text, Some(answer.finish_reason()))],
            Some(usage),
        ))
        .into_response());
    }
    // The chat chunks carry everything; they are re-shaped as text completion chunks.
    let chunks = model_chunks(stream, chat, include_usage).filter_map(move |chunk| {
        let out = if chunk.get("error").is_some() {
            Some(chunk)
        } else if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            let usage = serde_json::from_value(usage.clone()).ok();
            Some(object(Vec::new(), usage.map(|u: UsageIn| u.into())))
        } else {
            let first = &chunk["choices"][0];
            let text = first["delta"]["content"].as_str().unwrap_or_default();
            let finish = first["finish_reason"].as_str();
            (finish.is_some() || !text.is_empty()).then(|| object(vec![choice(text, finish)], None))
        };
        futures::future::ready(out)
    });
    Ok(sse(chunks))
}

#[derive(Deserialize)]
struct UsageIn {
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl From<UsageIn> for CompletionUsage {
    fn from(usage: UsageIn) -> Self {
        CompletionUsage::new(usage.prompt_tokens, usage.completion_tokens)
    }
}

/// An embeddings request.
#[derive(Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    /// `provider/model` or a route.
    pub model: String,
    /// A string or a list of strings (token arrays are not supported).
    #[schema(value_type = Object)]
    pub input: Value,
    pub dimensions: Option<u32>,
    /// `float` (default) or `base64` (little-endian f32s, as OpenAI's SDKs ask by default).
    pub encoding_format: Option<String>,
    pub user: Option<String>,
}

/// The embeddings, in input order.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingList {
    pub object: &'static str,
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
    pub model: String,
    #[schema(value_type = Object)]
    pub usage: Value,
}

/// Embeds text.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "openai",
    request_body = EmbeddingsRequest,
    security(("bearer" = ["models:run"])),
    responses((status = 200, body = EmbeddingList))
)]
async fn embeddings(
    auth: Auth<scopes::ModelsRun>,
    State(gateway): State<Arc<GatewayService>>,
    Json(request): Json<EmbeddingsRequest>,
) -> Result<axum::Json<EmbeddingList>, ApiError> {
    let input = text_inputs(&request.input)?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::field(
                ErrorCode::InvalidField,
                "encoding_format",
                format!("`{other}` is not `float` or `base64`"),
            ))
        }
    };
    if let Target::Agent(_) = gateway
        .target(auth.principal.tenant_id, &request.model)
        .await?
    {
        return Err(ApiError::field(
            ErrorCode::InvalidField,
            "model",
            "an agent has no embeddings: name a provider's embedding model",
        ));
    }
    let embeddings = gateway
        .embed(
            &auth.principal,
            &request.model,
            "embeddings",
            input,
            request.dimensions,
        )
        .await?;
    let data = embeddings
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(axum::Json(EmbeddingList {
        object: "list",
        data,
        model: request.model,
        usage: json!({
            "prompt_tokens": embeddings.prompt_tokens,
            "total_tokens": embeddings.prompt_tokens,
        }),
    }))
}

/// The texts of an `input`: a string or a non-empty list of strings.
pub(crate) fn text_inputs(input: &Value) -> Result<Vec<String>, ApiError> {
    let bad = |detail: &str| ApiError::field(ErrorCode::InvalidField, "input", detail);
    match input {
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("must be text: token arrays are not supported"))
            })
            .collect(),
        Value::Array(_) => Err(bad("must hold at least one text")),
        _ => Err(bad("must be a string or a list of strings")),
    }
}
