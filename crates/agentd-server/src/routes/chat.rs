//! `POST /agents/{agent_id}/chat`: the Open Agent API's face of a run. The caller keeps the
//! conversation and sends it whole; the answer is `{message, finish_reason, usage}` or, with
//! `Accept: text/event-stream`, the same run's events as `RunStarted`, `RunResponse`, `ToolRequest` and
//! `RunCompleted` frames.
//!
//! A client-side tool (declared on the agent, or sent in `tools`) pauses the run with a `ToolRequest`.
//! The client continues it by posting the conversation again with the tool results as `tool` messages
//! and the run's `run_id` (or its `session_id`). For a tool that needs confirmation, the `tool` message
//! carries the decision: `{"confirmed": true|false, "note": "…"}`.

use std::sync::Arc;

use agentd_core::agent::ToolSpec;
use agentd_core::run::{
    ChatMessage, Run, RunEvent, RunEventData, RunStatus, ToolCall, ToolExecution,
};
use agentd_core::{ErrorCode, RunId};
use agentd_runtime::{RunHandle, RunInput, RunRequest, RunService};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{scopes, Auth};
use crate::extract::{Json, Path};
use crate::problem::ApiError;
use crate::routes::runs::AgentRunsPath;
use crate::routes::sessions::optional_session_id;
use crate::sse::{self, Frame};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(chat))
}

/// One message of the conversation, in OpenAI's chat shape.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct ChatMessageBody {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: ChatRole,
    /// Text, or OpenAI's content parts (`[{"type": "text", "text": …}]`), whose texts are joined.
    #[serde(default, deserialize_with = "text_or_parts")]
    #[schema(value_type = Option<String>)]
    pub content: Option<String>,
    /// An assistant message's tool calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallBody>,
    /// A tool message's call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// Who speaks.
#[derive(Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Also accepted as `developer` (OpenAI's newer name).
    #[serde(alias = "developer")]
    System,
    User,
    Assistant,
    Tool,
}

/// A tool call, in OpenAI's shape.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct ToolCallBody {
    pub id: String,
    #[serde(default = "function", rename = "type")]
    pub kind: String,
    pub function: FunctionCallBody,
}

fn function() -> String {
    "function".to_owned()
}

/// The function a tool call names, with its arguments as JSON text.
#[derive(Deserialize, Serialize, ToSchema)]
pub struct FunctionCallBody {
    pub name: String,
    pub arguments: String,
}

/// A tool offered for this request only; the client executes it. Either flat (`name`,
/// `description`, `parameters`) or OpenAI's `{"type": "function", "function": {…}}`.
#[derive(Deserialize, ToSchema)]
pub struct ChatToolBody {
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    pub function: Option<ChatFunctionBody>,
}

/// OpenAI's function definition.
#[derive(Deserialize, ToSchema)]
pub struct ChatFunctionBody {
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
}

/// A chat request.
#[derive(Deserialize, ToSchema)]
pub struct ChatRequest {
    /// The conversation so far, ending with the new user message (or with tool results).
    pub messages: Vec<ChatMessageBody>,
    /// Client-side tools for this request.
    #[serde(default)]
    pub tools: Vec<ChatToolBody>,
    /// The session to record the run in (and, with tool results, whose paused run to continue).
    pub session_id: Option<String>,
    /// The paused run that tool results answer.
    #[schema(value_type = Option<uuid::Uuid>)]
    pub run_id: Option<RunId>,
    /// Stream even without `Accept: text/event-stream`.
    #[serde(default)]
    pub stream: bool,
    pub user_id: Option<String>,
    pub max_iterations: Option<u32>,
}

/// Token counts, in OpenAI's names.
#[derive(Serialize, ToSchema)]
pub struct ChatUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// The agent's answer.
#[derive(Serialize, ToSchema)]
pub struct ChatResponse {
    pub run_id: String,
    pub session_id: String,
    pub message: ChatMessageBody,
    /// `stop`, `tool_calls` (the run waits for tool results), `error` or `cancelled`.
    pub finish_reason: String,
    pub usage: ChatUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `data` of one chat SSE frame: `type` is `RunStarted`, `RunResponse` (a content delta, or another
/// run event named by `event`), `ToolRequest`, `RunCompleted`, `RunError` or `RunCancelled`.
#[derive(Serialize, ToSchema)]
pub struct ChatFrame {
    #[serde(rename = "type")]
    pub kind: String,
    pub run_id: String,
    pub content: Option<String>,
    /// `ToolRequest`: the tool's name, its `input` and `tool_call_id`.
    pub tool: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    pub tool_call_id: Option<String>,
    /// `RunCompleted`: the answer, `finish_reason` and `usage`.
    pub message: Option<ChatMessageBody>,
    pub finish_reason: Option<String>,
    pub usage: Option<ChatUsage>,
}

/// Chats with the agent: JSON by default, SSE with `Accept: text/event-stream`.
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/chat",
    tag = "chat",
    params(AgentRunsPath),
    request_body = ChatRequest,
    security(("bearer" = ["agents:run"])),
    responses((status = 200, description = "The answer, or an event stream of `RunStarted`, `RunResponse`, `ToolRequest` and `RunCompleted` frames",
        content((ChatResponse = "application/json"), (ChatFrame = "text/event-stream"))))
)]
async fn chat(
    auth: Auth<scopes::AgentsRun>,
    State(runs): State<Arc<RunService>>,
    Path(path): Path<AgentRunsPath>,
    headers: HeaderMap,
    Json(request): Json<ChatRequest>,
) -> Result<Response, ApiError> {
    let stream = request.stream || sse::wants_stream(&headers);
    let turn = ChatTurn {
        messages: convert_messages(request.messages)?,
        tools: convert_tools(request.tools)?,
        session_id: optional_session_id(request.session_id.as_deref())?,
        run_id: request.run_id,
        user_id: request.user_id,
        limits: agentd_core::run::RunLimits {
            max_iterations: request.max_iterations,
            ..Default::default()
        },
    };
    let handle = start_or_continue(&runs, &auth.principal, path.agent_id, turn).await?;
    if stream {
        let frames = chat_frames(&handle.run);
        return Ok(sse::stream(handle.events, frames));
    }
    let finished = runs.finish(handle).await?;
    Ok(axum::Json(ChatResponse::from(finished)).into_response())
}

/// One turn of a conversation the caller keeps: what the chat faces (this one and OpenAI's) send.
pub(crate) struct ChatTurn {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub session_id: Option<agentd_core::run::SessionId>,
    pub run_id: Option<RunId>,
    pub user_id: Option<String>,
    pub limits: agentd_core::run::RunLimits,
}

/// Continues the paused run that trailing tool results answer (the one named, else the session's),
/// or starts a run with the conversation.
pub(crate) async fn start_or_continue(
    runs: &RunService,
    principal: &agentd_runtime::Principal,
    agent_id: agentd_core::AgentId,
    turn: ChatTurn,
) -> Result<RunHandle, ApiError> {
    let results = trailing_tool_results(&turn.messages);
    let paused = if results.is_empty() {
        None
    } else {
        runs.paused_run(
            principal.tenant_id,
            agent_id,
            turn.run_id,
            turn.session_id.as_ref(),
        )
        .await?
    };
    if let Some(run) = paused {
        let answers = answers(&run, &results)?;
        return Ok(runs
            .continue_run(principal, agent_id, run.id, answers)
            .await?);
    }
    if turn.messages.is_empty() {
        return Err(ApiError::field(
            ErrorCode::InvalidField,
            "messages",
            "must hold at least one message",
        ));
    }
    let request = RunRequest {
        input: RunInput::Conversation(turn.messages),
        session_id: turn.session_id,
        user_id: turn.user_id,
        tools: turn.tools,
        limits: turn.limits,
    };
    Ok(runs.start(principal, agent_id, request).await?)
}

/// Message content as text: a string, or OpenAI's content parts, whose `text` parts are joined.
fn text_or_parts<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    use serde::de::Error as _;
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(piece))) => text.push_str(piece),
                    (kind, _) => {
                        return Err(D::Error::custom(format!(
                            "content part of type {} is not supported: send text parts",
                            kind.unwrap_or("(none)")
                        )))
                    }
                }
            }
            Ok(Some(text))
        }
        Some(_) => Err(D::Error::custom(
            "content must be a string or an array of text parts",
        )),
    }
}

pub(crate) fn convert_messages(
    messages: Vec<ChatMessageBody>,
) -> Result<Vec<ChatMessage>, ApiError> {
    messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| {
            let content = message.content.unwrap_or_default();
            Ok(match message.role {
                ChatRole::System => ChatMessage::System { content },
                ChatRole::User => ChatMessage::User { content },
                ChatRole::Assistant => ChatMessage::Assistant {
                    content: (!content.is_empty()).then_some(content),
                    tool_calls: message
                        .tool_calls
                        .into_iter()
                        .map(|call| ToolCall {
                            id: call.id,
                            name: call.function.name,
                            arguments: call.function.arguments,
                        })
                        .collect(),
                },
                ChatRole::Tool => ChatMessage::Tool {
                    tool_call_id: message.tool_call_id.ok_or_else(|| {
                        ApiError::field(
                            ErrorCode::InvalidField,
                            format!("messages[{index}].tool_call_id"),
                            "a tool message needs the `tool_call_id` it answers",
                        )
                    })?,
                    content,
                },
            })
        })
        .collect()
}

pub(crate) fn convert_tools(tools: Vec<ChatToolBody>) -> Result<Vec<ToolSpec>, ApiError> {
    tools
        .into_iter()
        .enumerate()
        .map(|(index, tool)| {
            let (name, description, parameters) = match (tool.function, tool.name) {
                (Some(function), _) => (function.name, function.description, function.parameters),
                (None, Some(name)) => (name, tool.description, tool.parameters),
                (None, None) => {
                    return Err(ApiError::field(
                        ErrorCode::InvalidField,
                        format!("tools[{index}].name"),
                        "a tool needs a `name` (or a `function` with one)",
                    ))
                }
            };
            let valid = (1..=64).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(ApiError::field(
                    ErrorCode::InvalidField,
                    format!("tools[{index}].name"),
                    "must be 1 to 64 letters, digits, `_` or `-`",
                ));
            }
            Ok(ToolSpec {
                name,
                description,
                parameters,
                client_side: true,
                requires_confirmation: false,
            })
        })
        .collect()
}

/// Client tools as the model sees them, for the gateway faces that pass tools straight to a model.
pub(crate) fn tool_definitions(
    tools: Vec<ChatToolBody>,
) -> Result<Vec<agentd_models::ToolDefinition>, ApiError> {
    Ok(convert_tools(tools)?
        .into_iter()
        .map(|tool| agentd_models::ToolDefinition {
            description: tool.description.unwrap_or_default(),
            parameters: tool
                .parameters
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            name: tool.name,
        })
        .collect())
}

/// The tool results after the conversation's last assistant message.
fn trailing_tool_results(messages: &[ChatMessage]) -> Vec<(String, String)> {
    messages
        .iter()
        .rev()
        .map_while(|m| match m {
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => Some((tool_call_id.clone(), content.clone())),
            _ => None,
        })
        .collect()
}

/// Reads the tool messages as answers to the run's pending tools.
fn answers(run: &Run, results: &[(String, String)]) -> Result<Vec<ToolExecution>, ApiError> {
    let mut answers = Vec::new();
    for pending in &run.pending_tools {
        let Some((_, content)) = results.iter().find(|(id, _)| *id == pending.tool_call_id) else {
            continue;
        };
        let mut answer = pending.clone();
        if pending.requires_confirmation {
            let (confirmed, note) = decision(content).ok_or_else(|| {
                ApiError::field(
                    ErrorCode::InvalidField,
                    "messages",
                    format!(
                        "tool call `{}` awaits a confirmation: send `{{\"confirmed\": true}}` or `{{\"confirmed\": false}}` as its content",
                        pending.tool_call_id
                    ),
                )
            })?;
            answer.confirmed = Some(confirmed);
            answer.confirmation_note = note;
        } else {
            answer.result = Some(content.clone());
        }
        answers.push(answer);
    }
    Ok(answers)
}

fn decision(content: &str) -> Option<(bool, Option<String>)> {
    if let Ok(value) = serde_json::from_str::<Value>(content) {
        let confirmed = value.get("confirmed").and_then(Value::as_bool)?;
        let note = value.get("note").and_then(Value::as_str).map(str::to_owned);
        return Some((confirmed, note));
    }
    match content.trim().to_ascii_lowercase().as_str() {
        "confirm" | "confirmed" | "yes" | "approve" | "approved" => Some((true, None)),
        "reject" | "rejected" | "no" | "deny" | "denied" => Some((false, None)),
        _ => None,
    }
}

impl From<Run> for ChatResponse {
    fn from(run: Run) -> Self {
        let finish_reason = match run.status {
            RunStatus::Paused => "tool_calls",
            RunStatus::Error => "error",
            RunStatus::Cancelled => "cancelled",
            _ => "stop",
        };
        let tool_calls = run
            .pending_tools
            .iter()
            .map(|tool| ToolCallBody {
                id: tool.tool_call_id.clone(),
                kind: function(),
                function: FunctionCallBody {
                    name: tool.tool_name.clone(),
                    arguments: tool.tool_args.to_string(),
                },
            })
            .collect();
        Self {
            run_id: run.id.to_string(),
            session_id: run.session_id.to_string(),
            message: ChatMessageBody {
                role: ChatRole::Assistant,
                content: run.content,
                tool_calls,
                tool_call_id: None,
            },
            finish_reason: finish_reason.to_owned(),
            usage: ChatUsage {
                prompt_tokens: run.metrics.input_tokens,
                completion_tokens: run.metrics.output_tokens,
                total_tokens: run.metrics.total_tokens,
            },
            error: run.error,
        }
    }
}

/// Renders run events as Open Agent API frames (`data:` only, `type` names the frame).
fn chat_frames(run: &Run) -> impl Fn(&RunEvent) -> Vec<Frame> {
    let run_id = run.id.to_string();
    let session_id = run.session_id.to_string();
    let agent_id = run.agent_id.to_string();
    move |event| {
        let data = match &event.data {
            RunEventData::RunStarted { model, .. } => vec![json!({
                "type": "RunStarted", "run_id": run_id, "session_id": session_id,
                "agent_id": agent_id, "model": model,
            })],
            RunEventData::RunContent { content } => {
                vec![json!({ "type": "RunResponse", "run_id": run_id, "content": content })]
            }
            RunEventData::RunPaused { tools, .. } => tools
                .iter()
                .map(|tool| {
                    json!({
                        "type": "ToolRequest", "run_id": run_id, "session_id": session_id,
                        "tool_call_id": tool.tool_call_id, "tool": tool.tool_name,
                        "input": tool.tool_args,
                        "requires_confirmation": tool.requires_confirmation,
                    })
                })
                .collect(),
            RunEventData::RunCompleted {
                content, metrics, ..
            } => vec![json!({
                "type": "RunCompleted", "run_id": run_id, "session_id": session_id,
                "message": { "role": "assistant", "content": content },
                "finish_reason": "stop",
                "usage": {
                    "prompt_tokens": metrics.input_tokens,
                    "completion_tokens": metrics.output_tokens,
                    "total_tokens": metrics.total_tokens,
                },
            })],
            RunEventData::RunError {
                content,
                error_type,
            } => vec![json!({
                "type": "RunError", "run_id": run_id,
                "error": { "message": content, "type": error_type },
            })],
            RunEventData::RunCancelled { reason, content } => vec![json!({
                "type": "RunCancelled", "run_id": run_id, "reason": reason, "content": content,
            })],
            other => {
                let mut value = serde_json::to_value(other).unwrap_or_default();
                if let Value::Object(map) = &mut value {
                    map.insert("type".into(), json!("RunResponse"));
                    map.insert("run_id".into(), json!(run_id));
                }
                vec![value]
            }
        };
        data.into_iter()
            .map(|data| Frame { name: None, data })
            .collect()
    }
}
