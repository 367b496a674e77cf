//! The onboarding face's inference routes in Ollama's shapes: `POST /v1/llm/generate`, `/v1/llm/chat`
//! and `/v1/llm/embed`, so an agent written against Ollama points at agentd instead. Models are
//! `provider/model` refs or routes; calls go through the same metered gateway as `/v1/chat/completions`.
//! As with Ollama, answers stream by default (`stream: false` for one JSON object), as NDJSON lines
//! whose last has `done: true` and the token counts. Errors are `{"error": "…"}`.

use std::sync::Arc;

use agentd_core::run::ChatMessage;
use agentd_models::{FinishReason, ModelEvent, ModelRequest, ModelStream};
use agentd_runtime::GatewayService;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::Json;
use crate::problem::ApiError;
use crate::routes::chat::{convert_messages, tool_definitions, ChatMessageBody, ChatToolBody};
use crate::routes::openai::text_inputs;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(generate))
        .routes(routes!(chat))
        .routes(routes!(embed))
}

/// Ollama's `options` that agentd passes on.
#[derive(Deserialize, ToSchema, Default)]
pub struct LlmOptions {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    #[serde(default)]
    pub stop: Vec<String>,
    /// The output token limit.
    pub num_predict: Option<u32>,
}

/// `POST /v1/llm/generate`.
#[derive(Deserialize, ToSchema)]
pub struct GenerateRequest {
    pub model: String,
    pub prompt: String,
    pub system: Option<String>,
    /// Defaults to `true`, as in Ollama.
    pub stream: Option<bool>,
    #[serde(default)]
    pub options: LlmOptions,
}

/// `POST /v1/llm/chat`.
#[derive(Deserialize, ToSchema)]
pub struct LlmChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessageBody>,
    #[serde(default)]
    pub tools: Vec<ChatToolBody>,
    /// Defaults to `true`, as in Ollama.
    pub stream: Option<bool>,
    #[serde(default)]
    pub options: LlmOptions,
}

/// `POST /v1/llm/embed`.
#[derive(Deserialize, ToSchema)]
pub struct EmbedRequest {
    pub model: String,
    /// A string or a list of strings.
    #[schema(value_type = Object)]
    pub input: Value,
}

fn request(messages: Vec<ChatMessage>, options: LlmOptions) -> ModelRequest {
    ModelRequest {
        messages,
        max_tokens: options.num_predict,
        temperature: options.temperature,
        top_p: options.top_p,
        stop: options.stop,
        ..Default::default()
    }
}

/// Generates a completion of a prompt.
#[utoipa::path(
    post,
    path = "/v1/llm/generate",
    tag = "llm",
    request_body = GenerateRequest,
    security(("bearer" = ["models:run"])),
    responses((status = 200, description = "NDJSON lines `{model, created_at, response, done}`, the last with `done: true` and the counts; one object with `stream: false`",
        content((Object = "application/x-ndjson"), (Object = "application/json"))))
)]
async fn generate(
    auth: Auth<scopes::ModelsRun>,
    State(gateway): State<Arc<GatewayService>>,
    Json(body): Json<GenerateRequest>,
) -> Result<Response, ApiError> {
    let mut messages = Vec::new();
    if let Some(system) = body.system {
        messages.push(ChatMessage::System { content: system });
    }
    messages.push(ChatMessage::User {
        content: body.prompt,
    });
    let stream = gateway
        .stream(
            &auth.principal,
            &body.model,
            "llm.generate",
            request(messages, body.options),
        )
        .await?;
    Ok(answer(
        stream,
        body.model,
        body.stream.unwrap_or(true),
        Shape::Generate,
    )
    .await)
}

/// Chats with a model.
#[utoipa::path(
    post,
    path = "/v1/llm/chat",
    tag = "llm",
    request_body = LlmChatRequest,
    security(("bearer" = ["models:run"])),
    responses((status = 200, description = "NDJSON lines `{model, created_at, message, done}`, the last with `done: true` and the counts; one object with `stream: false`",
        content((Object = "application/x-ndjson"), (Object = "application/json"))))
)]
async fn chat(
    auth: Auth<scopes::ModelsRun>,
    State(gateway): State<Arc<GatewayService>>,
    Json(body): Json<LlmChatRequest>,
) -> Result<Response, ApiError> {
    let messages = convert_messages(body.messages)?;
    let mut call = request(messages, body.options);
    call.tools = tool_definitions(body.tools)?;
    let stream = gateway
        .stream(&auth.principal, &body.model, "llm.chat", call)
        .await?;
    Ok(answer(stream, body.model, body.stream.unwrap_or(true), Shape::Chat).await)
}

/// Embeds text.
#[utoipa::path(
    post,
    path = "/v1/llm/embed",
    tag = "llm",
    request_body = EmbedRequest,
    security(("bearer" = ["models:run"])),
    responses((status = 200, description = "`{model, embeddings, prompt_eval_count}`", body = Object))
)]
async fn embed(
    auth: Auth<scopes::ModelsRun>,
    State(gateway): State<Arc<GatewayService>>,
    Json(body): Json<EmbedRequest>,
) -> Result<axum::Json<Value>, ApiError> {
    let input = text_inputs(&body.input)?;
    let embeddings = gateway
        .embed(&auth.principal, &body.model, "llm.embed", input, None)
        .await?;
    Ok(axum::Json(json!({
        "model": body.model,
        "embeddings": embeddings.vectors,
        "prompt_eval_count": embeddings.prompt_tokens,
    })))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Generate,
    Chat,
}

/// One NDJSON line (or the whole answer) in Ollama's shape.
fn line(
    shape: Shape,
    model: &str,
    text: &str,
    calls: &[agentd_core::run::ToolCall],
    done: Option<(&str, u64, u64)>,
) -> Value {
    let mut value = json!({ "model": model, "created_at": agentd_core::now().to_rfc3339() });
    match shape {
        Shape::Generate => value["response"] = json!(text),
        Shape::Chat => {
            let mut message = json!({ "role": "assistant", "content": text });
            if !calls.is_empty() {
                message["tool_calls"] = calls
                    .iter()
                    .map(|call| {
                        let arguments: Value =
                            serde_json::from_str(&call.arguments).unwrap_or(json!({}));
                        json!({ "function": { "name": call.name, "arguments": arguments } })
                    })
                    .collect();
            }
            value["message"] = message;
        }
    }
    value["done"] = json!(done.is_some());
    if let Some((reason, prompt, completion)) = done {
        value["done_reason"] = json!(reason);
        value["prompt_eval_count"] = json!(prompt);
        value["eval_count"] = json!(completion);
    }
    value
}

/// Renders a model stream as NDJSON lines, or collects it into one object.
async fn answer(mut stream: ModelStream, model: String, streaming: bool, shape: Shape) -> Response {
    if !streaming {
        let (mut text, mut calls, mut prompt, mut completion) = (String::new(), Vec::new(), 0, 0);
        let mut reason = "stop";
        while let Some(event) = stream.next().await {
            match event {
                Ok(ModelEvent::Text(delta)) => text.push_str(&delta),
                Ok(ModelEvent::ToolCall(call)) => calls.push(call),
                Ok(ModelEvent::Usage(usage)) => {
                    prompt += usage.input_tokens;
                    completion += usage.output_tokens;
                }
                Ok(ModelEvent::Finished(FinishReason::Length)) => reason = "length",
                Ok(ModelEvent::Finished(_)) => {}
                Err(error) => {
                    return ApiError::from(agentd_runtime::Error::Provider(error)).into_response()
                }
            }
        }
        let body = line(
            shape,
            &model,
            &text,
            &calls,
            Some((reason, prompt, completion)),
        );
        return axum::Json(body).into_response();
    }
    struct Lines {
        stream: ModelStream,
        model: String,
        prompt: u64,
        completion: u64,
        reason: &'static str,
        done: bool,
    }
    let start = Lines {
        stream,
        model,
        prompt: 0,
        completion: 0,
        reason: "stop",
        done: false,
    };
    let lines = futures::stream::unfold(start, move |mut state: Lines| async move {
        if state.done {
            return None;
        }
        loop {
            let out = match state.stream.next().await {
                Some(Ok(ModelEvent::Text(text))) => line(shape, &state.model, &text, &[], None),
                Some(Ok(ModelEvent::ToolCall(call))) => {
                    line(shape, &state.model, "", std::slice::from_ref(&call), None)
                }
                Some(Ok(ModelEvent::Usage(usage))) => {
                    state.prompt += usage.input_tokens;
                    state.completion += usage.output_tokens;
                    continue;
                }
                Some(Ok(ModelEvent::Finished(finish))) => {
                    if finish == FinishReason::Length {
                        state.reason = "length";
                    }
                    continue;
                }
                Some(Err(error)) => {
                    state.done = true;
                    json!({ "error": error.to_string() })
                }
                None => {
                    state.done = true;
                    let counts = (state.reason, state.prompt, state.completion);
                    line(shape, &state.model, "", &[], Some(counts))
                }
            };
            return Some((out, state));
        }
    })
    .map(|value| Ok::<_, std::convert::Infallible>(format!("{value}\n")));
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}
