//! Anthropic Messages (`POST {base_url}/v1/messages`, `x-api-key`, `anthropic-version: 2023-06-01`).
//!
//! Requests: system messages go to the top-level `system`; tool results become `tool_result` blocks of
//! a user message, and consecutive messages of one role are merged into one message (so parallel tool
//! results form a single user turn); `max_tokens` is required and defaults to 4096; stop sequences are
//! `stop_sequences`.
//!
//! Streams: `message_start` carries the input tokens; each content block is `content_block_start` →
//! `content_block_delta`* → `content_block_stop`, text deltas are passed on as they come and a
//! `tool_use` block is yielded whole at its stop; `message_delta` carries the stop reason and output
//! tokens; `Usage` and `Finished` are yielded at `message_stop`. `ping` is skipped, `event: error` ends
//! the stream with [`ModelError::Malformed`].
//!
//! The Messages API has no embeddings: `embed()` keeps the trait's default, [`ModelError::Unsupported`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use serde_json::{json, Value};

use crate::http::{json_error_message, json_f32, Transport};
use crate::stream::{decode, Decoder, Frame, Framing};
use crate::{
    ChatMessage, FinishReason, ModelError, ModelEvent, ModelProvider, ModelRequest, ModelStream,
    ProviderConfig, ToolCall, Usage,
};

/// The API version header sent with every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` when the request sets none (the API requires it).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A provider speaking the Anthropic Messages API.
pub struct AnthropicProvider {
    transport: Transport,
    /// The base URL without a trailing `/`, e.g. `https://api.anthropic.com`.
    base_url: String,
    api_key: Option<HeaderValue>,
}

impl AnthropicProvider {
    /// A provider for `config`, sending `api_key` as `x-api-key` when there is one.
    pub fn new(config: &ProviderConfig, api_key: Option<String>) -> Result<Self, ModelError> {
        let api_key = api_key
            .map(|key| {
                let mut value = HeaderValue::from_str(&key).map_err(|_| {
                    ModelError::Config("the API key is not a valid header value".into())
                })?;
                value.set_sensitive(true);
                Ok::<_, ModelError>(value)
            })
            .transpose()?;
        Ok(Self {
            transport: Transport::new("Anthropic", config)?,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            api_key,
        })
    }
}

#[async_trait]
impl ModelProvider for AnthropicProvider {
    fn display_name(&self) -> &str {
        "Anthropic"
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let url = format!("{}/v1/messages", self.base_url);
        let body = request_body(&request);
        let response = self
            .transport
            .send(|client| {
                let builder = client
                    .post(&url)
                    .header("anthropic-version", ANTHROPIC_VERSION)
                    .json(&body);
                match &self.api_key {
                    Some(key) => builder.header("x-api-key", key.clone()),
                    None => builder,
                }
            })
            .await?;
        Ok(decode(
            response,
            Framing::Sse,
            EventDecoder::default(),
            self.transport.read_timeout(),
        ))
    }
}

/// The streaming request body for a model call.
pub fn request_body(request: &ModelRequest) -> Value {
    let mut system = Vec::new();
    // (role, content blocks), consecutive messages of one role merged.
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    let mut push = |role: &'static str, blocks: Vec<Value>| match turns.last_mut() {
        Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
        _ => turns.push((role, blocks)),
    };
    for message in &request.messages {
        match message {
            ChatMessage::System { content } => system.push(content.as_str()),
            ChatMessage::User { content } => {
                push("user", vec![json!({"type": "text", "text": content})]);
            }
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut blocks = Vec::new();
                if let Some(text) = content.as_deref().filter(|text| !text.is_empty()) {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in tool_calls {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": arguments_object(&call.arguments),
                    }));
                }
                if !blocks.is_empty() {
                    push("assistant", blocks);
                }
            }
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => push(
                "user",
                vec![
                    json!({"type": "tool_result", "tool_use_id": tool_call_id, "content": content}),
                ],
            ),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, blocks)| json!({"role": role, "content": content_value(blocks)}))
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
        "stream": true,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters,
                })
            })
            .collect();
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = json_f32(temperature);
    }
    if let Some(top_p) = request.top_p {
        body["top_p"] = json_f32(top_p);
    }
    if !request.stop.is_empty() {
        body["stop_sequences"] = json!(request.stop);
    }
    body
}

/// A lone text block is sent as a plain string, anything else as the block list.
fn content_value(mut blocks: Vec<Value>) -> Value {
    let lone_text = blocks.len() == 1 && blocks[0]["type"] == "text";
    if lone_text {
        return blocks.remove(0)["text"].take();
    }
    Value::Array(blocks)
}

/// Tool input must be a JSON object; arguments that are not one (the model's mistake, already
/// reported to it as a tool error) are sent as `{}`.
pub(crate) fn arguments_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => json!({}),
    }
}

/// A content block being streamed.
enum Block {
    Text,
    ToolUse {
        id: String,
        name: String,
        input: String,
    },
    /// Thinking and other block types, skipped.
    Other,
}

/// The Messages event state machine.
#[derive(Default)]
struct EventDecoder {
    blocks: BTreeMap<u64, Block>,
    input_tokens: u64,
    output_tokens: u64,
    saw_usage: bool,
    stop_reason: Option<String>,
    saw_tool_use: bool,
}

impl Decoder for EventDecoder {
    fn frame(&mut self, frame: Frame, out: &mut Vec<ModelEvent>) -> Result<bool, ModelError> {
        let data: Value = serde_json::from_str(&frame.data)
            .map_err(|err| ModelError::Malformed(format!("a stream event is not JSON: {err}")))?;
        let kind = frame
            .event
            .clone()
            .or_else(|| data.get("type").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        match kind.as_str() {
            "message_start" => {
                if let Some(usage) = data.pointer("/message/usage") {
                    self.read_usage(usage);
                }
            }
            "content_block_start" => {
                let index = block_index(&data)?;
                let block = data.get("content_block").unwrap_or(&Value::Null);
                let started = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(text) = block.get("text").and_then(Value::as_str) {
                            if !text.is_empty() {
                                out.push(ModelEvent::Text(text.to_owned()));
                            }
                        }
                        Block::Text
                    }
                    Some("tool_use") => Block::ToolUse {
                        id: string_field(block, "id")?,
                        name: string_field(block, "name")?,
                        input: String::new(),
                    },
                    _ => Block::Other,
                };
                self.blocks.insert(index, started);
            }
            "content_block_delta" => {
                let index = block_index(&data)?;
                let delta = data.get("delta").unwrap_or(&Value::Null);
                match (
                    self.blocks.get_mut(&index),
                    delta.get("type").and_then(Value::as_str),
                ) {
                    (Some(Block::Text), Some("text_delta")) => {
                        let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            out.push(ModelEvent::Text(text.to_owned()));
                        }
                    }
                    (Some(Block::ToolUse { input, .. }), Some("input_json_delta")) => {
                        input.push_str(
                            delta
                                .get("partial_json")
                                .and_then(Value::as_str)
                                .unwrap_or(""),
                        );
                    }
                    (None, _) => {
                        return Err(ModelError::Malformed(format!(
                            "a delta for content block {index}, which never started"
                        )))
                    }
                    // Thinking, signatures, citations: not part of the answer.
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = block_index(&data)?;
                if let Some(Block::ToolUse { id, name, input }) = self.blocks.remove(&index) {
                    self.saw_tool_use = true;
                    let arguments = if input.trim().is_empty() {
                        "{}".to_owned()
                    } else {
                        input
                    };
                    out.push(ModelEvent::ToolCall(ToolCall {
                        id,
                        name,
                        arguments,
                    }));
                }
            }
            "message_delta" => {
                if let Some(reason) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(usage) = data.get("usage") {
                    self.read_usage(usage);
                }
            }
            "message_stop" => {
                if self.saw_usage {
                    out.push(ModelEvent::Usage(Usage {
                        input_tokens: self.input_tokens,
                        output_tokens: self.output_tokens,
                        total_tokens: self.input_tokens + self.output_tokens,
                    }));
                }
                let finish = match self.stop_reason.as_deref() {
                    Some(reason) => stop_reason(reason),
                    None if self.saw_tool_use => FinishReason::ToolCalls,
                    None => FinishReason::Stop,
                };
                out.push(ModelEvent::Finished(finish));
                return Ok(true);
            }
            "error" => {
                let message = json_error_message(&data).unwrap_or_else(|| data.to_string());
                return Err(ModelError::Malformed(format!(
                    "the provider reported an error mid-stream: {message}"
                )));
            }
            // `ping` and event types newer than this code.
            _ => {}
        }
        Ok(false)
    }

    fn terminator(&self) -> &'static str {
        "`message_stop`"
    }
}

impl EventDecoder {
    /// Usage fields are cumulative: a later value replaces an earlier one.
    fn read_usage(&mut self, usage: &Value) {
        if let Some(input) = usage.get("input_tokens").and_then(Value::as_u64) {
            self.input_tokens = input;
            self.saw_usage = true;
        }
        if let Some(output) = usage.get("output_tokens").and_then(Value::as_u64) {
            self.output_tokens = output;
            self.saw_usage = true;
        }
    }
}

fn block_index(data: &Value) -> Result<u64, ModelError> {
    data.get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| ModelError::Malformed("a content block event without an index".into()))
}

fn string_field(block: &Value, field: &str) -> Result<String, ModelError> {
    block
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ModelError::Malformed(format!("a tool_use block without `{field}`")))
}

fn stop_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        other => FinishReason::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_text_is_a_string_and_mixed_content_is_blocks() {
        assert_eq!(
            content_value(vec![json!({"type": "text", "text": "hi"})]),
            json!("hi")
        );
        let blocks = vec![
            json!({"type": "tool_result", "tool_use_id": "a", "content": "1"}),
            json!({"type": "text", "text": "go on"}),
        ];
        assert_eq!(content_value(blocks.clone()), Value::Array(blocks));
    }

    #[test]
    fn arguments_that_are_not_an_object_become_empty_input() {
        assert_eq!(arguments_object(r#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(arguments_object("[1]"), json!({}));
        assert_eq!(arguments_object("{broken"), json!({}));
    }

    #[test]
    fn stop_reasons_map() {
        assert_eq!(stop_reason("max_tokens"), FinishReason::Length);
        assert_eq!(stop_reason("stop_sequence"), FinishReason::Stop);
        assert_eq!(
            stop_reason("refusal"),
            FinishReason::Other("refusal".into())
        );
    }
}
