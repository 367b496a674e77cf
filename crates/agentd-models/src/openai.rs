//! OpenAI chat completions (`POST {base_url}/chat/completions`), as spoken by OpenAI and the
//! compatible servers (vLLM, llama.cpp, LM Studio, Ollama's `/v1`, OpenRouter…).
//!
//! The call always streams with `stream_options.include_usage`. Chunks are accumulated by the SDK's
//! rules: text deltas are passed on as they come; a tool call's `id` and `name` arrive in its first
//! delta, its arguments as string fragments, entries matched by `index`. The calls are yielded whole,
//! in index order, when a choice reports its `finish_reason`; the usage-only chunk (`choices: []`) is
//! kept, and `Usage` then `Finished` are yielded at `data: [DONE]`. A chunk with an `error` key ends
//! the stream with [`ModelError::Malformed`].
//!
//! Embeddings are `POST {base_url}/embeddings` with the inputs as a list; the vectors come back in
//! `data[]`, each with its `index`, and the input tokens in `usage.prompt_tokens`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::http::{expect_vectors, json_error_message, json_f32, json_vector, Transport};
use crate::stream::{decode, Decoder, Frame, Framing};
use crate::{
    ChatMessage, EmbedRequest, Embeddings, FinishReason, ModelError, ModelEvent, ModelProvider,
    ModelRequest, ModelStream, ProviderConfig, ToolCall, Usage,
};

/// A provider speaking OpenAI chat completions.
pub struct OpenAiProvider {
    transport: Transport,
    /// The base URL without a trailing `/`, e.g. `https://api.openai.com/v1`.
    base_url: String,
    api_key: Option<String>,
}

impl OpenAiProvider {
    /// A provider for `config` (whose `base_url` includes the `/v1`), sending `api_key` as a bearer
    /// token when there is one.
    pub fn new(config: &ProviderConfig, api_key: Option<String>) -> Result<Self, ModelError> {
        Ok(Self {
            transport: Transport::new("OpenAI", config)?,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            api_key,
        })
    }
}

#[async_trait]
impl ModelProvider for OpenAiProvider {
    fn display_name(&self) -> &str {
        "OpenAI"
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let url = format!("{}/chat/completions", self.base_url);
        let body = request_body(&request);
        let response = self
            .transport
            .send(|client| {
                let builder = client.post(&url).json(&body);
                match &self.api_key {
                    Some(key) => builder.bearer_auth(key),
                    None => builder,
                }
            })
            .await?;
        Ok(decode(
            response,
            Framing::Sse,
            ChunkDecoder::default(),
            self.transport.read_timeout(),
        ))
    }

    async fn embed(&self, request: EmbedRequest) -> Result<Embeddings, ModelError> {
        let url = format!("{}/embeddings", self.base_url);
        let body = embed_body(&request);
        let answer = self
            .transport
            .send_for_json(|client| {
                let builder = client.post(&url).json(&body);
                match &self.api_key {
                    Some(key) => builder.bearer_auth(key),
                    None => builder,
                }
            })
            .await?;
        embeddings(&answer, request.input.len())
    }
}

/// The streaming request body for a model call.
pub fn request_body(request: &ModelRequest) -> Value {
    let mut body = json!({
        "model": request.model,
        "messages": request.messages.iter().map(message).collect::<Vec<_>>(),
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                })
            })
            .collect();
    }
    if let Some(max_tokens) = request.max_tokens {
        // `max_tokens` rather than `max_completion_tokens`: every compatible server knows it.
        body["max_tokens"] = json!(max_tokens);
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = json_f32(temperature);
    }
    if let Some(top_p) = request.top_p {
        body["top_p"] = json_f32(top_p);
    }
    if !request.stop.is_empty() {
        body["stop"] = json!(request.stop);
    }
    body
}

/// The request body for an embeddings call.
pub fn embed_body(request: &EmbedRequest) -> Value {
    let mut body = json!({
        "model": request.model,
        "input": request.input,
    });
    if let Some(dimensions) = request.dimensions {
        body["dimensions"] = json!(dimensions);
    }
    body
}

/// The vectors of an embeddings answer, put in input order by their `index`.
fn embeddings(answer: &Value, inputs: usize) -> Result<Embeddings, ModelError> {
    let Some(data) = answer.get("data").and_then(Value::as_array) else {
        return Err(ModelError::Malformed(
            "an embeddings answer without a `data` list".into(),
        ));
    };
    let mut indexed = Vec::with_capacity(data.len());
    for (position, item) in data.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let vector = json_vector(
            item.get("embedding").unwrap_or(&Value::Null),
            &format!("embedding {index}"),
        )?;
        indexed.push((index, vector));
    }
    indexed.sort_by_key(|(index, _)| *index);
    let in_order = indexed
        .iter()
        .enumerate()
        .all(|(position, (index, _))| *index == position as u64);
    if !in_order {
        let indices: Vec<u64> = indexed.iter().map(|(index, _)| *index).collect();
        return Err(ModelError::Malformed(format!(
            "embedding indices {indices:?} are not one per input"
        )));
    }
    let vectors: Vec<Vec<f32>> = indexed.into_iter().map(|(_, vector)| vector).collect();
    expect_vectors(&vectors, inputs)?;
    let prompt_tokens = answer
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(Embeddings {
        vectors,
        prompt_tokens,
    })
}

fn message(message: &ChatMessage) -> Value {
    match message {
        ChatMessage::System { content } => json!({"role": "system", "content": content}),
        ChatMessage::User { content } => json!({"role": "user", "content": content}),
        ChatMessage::Assistant {
            content,
            tool_calls,
        } => {
            let mut value = json!({"role": "assistant", "content": content});
            if !tool_calls.is_empty() {
                value["tool_calls"] = tool_calls
                    .iter()
                    .map(|call| {
                        json!({
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments},
                        })
                    })
                    .collect();
            }
            value
        }
        ChatMessage::Tool {
            tool_call_id,
            content,
        } => json!({"role": "tool", "tool_call_id": tool_call_id, "content": content}),
    }
}

/// A tool call being assembled from deltas.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// The chat completion chunk state machine.
#[derive(Default)]
pub(crate) struct ChunkDecoder {
    /// Tool calls by their `index`, until the choice finishes.
    calls: BTreeMap<u64, PartialCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    saw_tool_calls: bool,
}

impl ChunkDecoder {
    fn flush_calls(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), ModelError> {
        for (index, call) in std::mem::take(&mut self.calls) {
            if call.name.is_empty() {
                return Err(ModelError::Malformed(format!(
                    "tool call {index} has no function name"
                )));
            }
            let id = if call.id.is_empty() {
                crate::stream::fresh_tool_call_id()
            } else {
                call.id
            };
            let arguments = if call.arguments.trim().is_empty() {
                "{}".to_owned()
            } else {
                call.arguments
            };
            out.push(ModelEvent::ToolCall(ToolCall {
                id,
                name: call.name,
                arguments,
            }));
        }
        Ok(())
    }

    fn delta(&mut self, delta: &Value, out: &mut Vec<ModelEvent>) -> Result<(), ModelError> {
        for field in ["content", "refusal"] {
            if let Some(text) = delta.get(field).and_then(Value::as_str) {
                if !text.is_empty() {
                    out.push(ModelEvent::Text(text.to_owned()));
                }
            }
        }
        let Some(tool_calls) = delta.get("tool_calls") else {
            return Ok(());
        };
        let Some(tool_calls) = tool_calls.as_array() else {
            return Err(ModelError::Malformed(
                "`tool_calls` in a delta is not a list".into(),
            ));
        };
        for (position, entry) in tool_calls.iter().enumerate() {
            self.saw_tool_calls = true;
            let index = entry
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            let call = self.calls.entry(index).or_default();
            // `id` and `name` come once, in the first delta of the call; some servers repeat them, so
            // a repeat does not concatenate.
            if let Some(id) = entry.get("id").and_then(Value::as_str) {
                if call.id.is_empty() {
                    id.clone_into(&mut call.id);
                }
            }
            let function = entry.get("function");
            if let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) {
                if call.name.is_empty() {
                    name.clone_into(&mut call.name);
                }
            }
            if let Some(fragment) = function
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
            {
                call.arguments.push_str(fragment);
            }
        }
        Ok(())
    }
}

impl Decoder for ChunkDecoder {
    fn frame(&mut self, frame: Frame, out: &mut Vec<ModelEvent>) -> Result<bool, ModelError> {
        if frame.data.trim().starts_with("[DONE]") {
            self.flush_calls(out)?;
            if let Some(usage) = self.usage.take() {
                out.push(ModelEvent::Usage(usage));
            }
            let finish = self.finish.take().unwrap_or(if self.saw_tool_calls {
                FinishReason::ToolCalls
            } else {
                FinishReason::Stop
            });
            out.push(ModelEvent::Finished(finish));
            return Ok(true);
        }
        let chunk: Value = serde_json::from_str(&frame.data)
            .map_err(|err| ModelError::Malformed(format!("a stream chunk is not JSON: {err}")))?;
        if let Some(error) = chunk.get("error").filter(|error| is_truthy(error)) {
            let message =
                json_error_message(&json!({ "error": error })).unwrap_or_else(|| error.to_string());
            return Err(ModelError::Malformed(format!(
                "the provider reported an error mid-stream: {message}"
            )));
        }
        if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
            // One choice is asked for (`n` is never set); others would be alternatives, not parts.
            for choice in choices
                .iter()
                .filter(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            {
                if let Some(delta) = choice.get("delta") {
                    self.delta(delta, out)?;
                }
                if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                    self.flush_calls(out)?;
                    self.finish = Some(finish_reason(reason));
                }
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
            let input = usage
                .get("prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let output = usage
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let total = usage
                .get("total_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(input + output);
            self.usage = Some(Usage {
                input_tokens: input,
                output_tokens: output,
                total_tokens: total,
            });
        }
        Ok(false)
    }

    fn terminator(&self) -> &'static str {
        "`data: [DONE]`"
    }
}

fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::String(text) => !text.is_empty(),
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Number(_) => true,
    }
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        other => FinishReason::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(decoder: &mut ChunkDecoder, data: &str) -> (Vec<ModelEvent>, Result<bool, ModelError>) {
        let mut out = Vec::new();
        let result = decoder.frame(
            Frame {
                event: None,
                data: data.to_owned(),
            },
            &mut out,
        );
        (out, result)
    }

    #[test]
    fn repeated_ids_and_names_do_not_concatenate_and_missing_indices_use_positions() {
        let mut decoder = ChunkDecoder::default();
        let first = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{\"x\""}}]}}]}"#;
        let second = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":":1}"}}]},"finish_reason":"tool_calls"}]}"#;
        assert_eq!(feed(&mut decoder, first).0, vec![]);
        let (events, _) = feed(&mut decoder, second);
        assert_eq!(
            events,
            vec![ModelEvent::ToolCall(ToolCall {
                id: "a".into(),
                name: "f".into(),
                arguments: "{\"x\":1}".into()
            })]
        );
        let (events, done) = feed(&mut decoder, "[DONE]");
        assert_eq!(events, vec![ModelEvent::Finished(FinishReason::ToolCalls)]);
        assert_eq!(done, Ok(true));
    }

    #[test]
    fn error_chunks_and_bad_json_are_malformed() {
        let mut decoder = ChunkDecoder::default();
        let (_, result) = feed(&mut decoder, r#"{"error":{"message":"overloaded"}}"#);
        assert_eq!(
            result,
            Err(ModelError::Malformed(
                "the provider reported an error mid-stream: overloaded".into()
            ))
        );
        let (_, result) = feed(&mut decoder, "{not json");
        assert!(matches!(result, Err(ModelError::Malformed(_))));
        // A null error key is not an error.
        let (_, result) = feed(&mut decoder, r#"{"error":null,"choices":[]}"#);
        assert_eq!(result, Ok(false));
    }

    #[test]
    fn embeddings_are_put_in_index_order_and_must_match_the_inputs() {
        let answer = json!({
            "data": [
                {"index": 1, "embedding": [0.0, 1.0]},
                {"index": 0, "embedding": [1.0, 0.0]},
            ],
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
        });
        assert_eq!(
            embeddings(&answer, 2),
            Ok(Embeddings {
                vectors: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
                prompt_tokens: 4
            })
        );
        assert!(matches!(
            embeddings(&answer, 3),
            Err(ModelError::Malformed(_))
        ));
        let repeated = json!({"data": [
            {"index": 0, "embedding": [1.0]},
            {"index": 0, "embedding": [2.0]},
        ]});
        assert!(matches!(
            embeddings(&repeated, 2),
            Err(ModelError::Malformed(_))
        ));
        assert!(matches!(
            embeddings(&json!({}), 0),
            Err(ModelError::Malformed(_))
        ));
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(finish_reason("length"), FinishReason::Length);
        assert_eq!(
            finish_reason("content_filter"),
            FinishReason::Other("content_filter".into())
        );
    }
}
