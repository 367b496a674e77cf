//! Ollama's native chat API (`POST {base_url}/api/chat`), streamed as one JSON object per line.
//!
//! Tool call arguments travel as JSON objects, not text, both ways; tool results are `role: "tool"`
//! messages naming the tool (`tool_name`, found from the assistant message that made the call). Ollama
//! sends each tool call whole and, in older versions, without an id, so calls without one get a fresh
//! id. Calls are yielded, with `Usage` (`prompt_eval_count`, `eval_count`) and `Finished`, at the
//! `"done": true` line; a line with an `error` key ends the stream with [`ModelError::Malformed`].
//! Sampling options and the output limit go in `options` (`temperature`, `top_p`, `stop`,
//! `num_predict`).
//!
//! Embeddings are `POST {base_url}/api/embed` with the inputs as a list; the vectors come back as
//! `embeddings`, in input order, and the input tokens as `prompt_eval_count`.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::anthropic::arguments_object;
use crate::http::{expect_vectors, json_error_message, json_f32, json_vector, Transport};
use crate::stream::{decode, fresh_tool_call_id, Decoder, Frame, Framing};
use crate::{
    ChatMessage, EmbedRequest, Embeddings, FinishReason, ModelError, ModelEvent, ModelProvider,
    ModelRequest, ModelStream, ProviderConfig, ToolCall, Usage,
};

/// A provider speaking Ollama's `/api/chat`.
pub struct OllamaProvider {
    transport: Transport,
    /// The base URL without a trailing `/`, e.g. `http://127.0.0.1:11434`.
    base_url: String,
    /// Sent as a bearer token, for an Ollama behind an authenticating proxy.
    api_key: Option<String>,
}

impl OllamaProvider {
    /// A provider for `config`.
    pub fn new(config: &ProviderConfig, api_key: Option<String>) -> Result<Self, ModelError> {
        Ok(Self {
            transport: Transport::new("Ollama", config)?,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            api_key,
        })
    }
}

#[async_trait]
impl ModelProvider for OllamaProvider {
    fn display_name(&self) -> &str {
        "Ollama"
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let url = format!("{}/api/chat", self.base_url);
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
            Framing::Ndjson,
            LineDecoder::default(),
            self.transport.read_timeout(),
        ))
    }

    async fn embed(&self, request: EmbedRequest) -> Result<Embeddings, ModelError> {
        let url = format!("{}/api/embed", self.base_url);
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
    let messages: Vec<Value> = request
        .messages
        .iter()
        .enumerate()
        .map(|(position, message)| match message {
            ChatMessage::System { content } => json!({"role": "system", "content": content}),
            ChatMessage::User { content } => json!({"role": "user", "content": content}),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut value =
                    json!({"role": "assistant", "content": content.as_deref().unwrap_or("")});
                if !tool_calls.is_empty() {
                    value["tool_calls"] = tool_calls
                        .iter()
                        .map(|call| {
                            json!({
                                "id": call.id,
                                "function": {
                                    "name": call.name,
                                    "arguments": arguments_object(&call.arguments),
                                },
                            })
                        })
                        .collect();
                }
                value
            }
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => {
                let mut value = json!({
                    "role": "tool",
                    "content": content,
                    "tool_call_id": tool_call_id,
                });
                if let Some(name) = tool_name(&request.messages[..position], tool_call_id) {
                    value["tool_name"] = json!(name);
                }
                value
            }
        })
        .collect();
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
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
    let mut options = serde_json::Map::new();
    if let Some(max_tokens) = request.max_tokens {
        options.insert("num_predict".into(), json!(max_tokens));
    }
    if let Some(temperature) = request.temperature {
        options.insert("temperature".into(), json_f32(temperature));
    }
    if let Some(top_p) = request.top_p {
        options.insert("top_p".into(), json_f32(top_p));
    }
    if !request.stop.is_empty() {
        options.insert("stop".into(), json!(request.stop));
    }
    if !options.is_empty() {
        body["options"] = Value::Object(options);
    }
    body
}

/// The request body for an embeddings call. `dimensions` is sent when set; Ollama versions that
/// predate it ignore it.
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

/// The vectors of an `/api/embed` answer.
fn embeddings(answer: &Value, inputs: usize) -> Result<Embeddings, ModelError> {
    let Some(list) = answer.get("embeddings").and_then(Value::as_array) else {
        return Err(ModelError::Malformed(
            "an embeddings answer without an `embeddings` list".into(),
        ));
    };
    let vectors = list
        .iter()
        .enumerate()
        .map(|(index, vector)| json_vector(vector, &format!("embedding {index}")))
        .collect::<Result<Vec<_>, _>>()?;
    expect_vectors(&vectors, inputs)?;
    let prompt_tokens = answer
        .get("prompt_eval_count")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(Embeddings {
        vectors,
        prompt_tokens,
    })
}

/// The name of the tool the nearest earlier assistant message called under `id`.
fn tool_name<'a>(earlier: &'a [ChatMessage], id: &str) -> Option<&'a str> {
    earlier.iter().rev().find_map(|message| match message {
        ChatMessage::Assistant { tool_calls, .. } => tool_calls
            .iter()
            .find(|call| call.id == id)
            .map(|call| call.name.as_str()),
        _ => None,
    })
}

/// The NDJSON line state machine.
#[derive(Default)]
struct LineDecoder {
    calls: Vec<ToolCall>,
}

impl Decoder for LineDecoder {
    fn frame(&mut self, frame: Frame, out: &mut Vec<ModelEvent>) -> Result<bool, ModelError> {
        let line: Value = serde_json::from_str(&frame.data)
            .map_err(|err| ModelError::Malformed(format!("a stream line is not JSON: {err}")))?;
        if line.get("error").is_some_and(|error| !error.is_null()) {
            let message = json_error_message(&line).unwrap_or_else(|| line.to_string());
            return Err(ModelError::Malformed(format!(
                "the provider reported an error mid-stream: {message}"
            )));
        }
        let message = line.get("message").unwrap_or(&Value::Null);
        if let Some(text) = message.get("content").and_then(Value::as_str) {
            if !text.is_empty() {
                out.push(ModelEvent::Text(text.to_owned()));
            }
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                self.calls.push(tool_call(call)?);
            }
        }
        if line.get("done").and_then(Value::as_bool) != Some(true) {
            return Ok(false);
        }
        out.extend(self.calls.drain(..).map(ModelEvent::ToolCall));
        let input = line.get("prompt_eval_count").and_then(Value::as_u64);
        let output = line.get("eval_count").and_then(Value::as_u64);
        if input.is_some() || output.is_some() {
            let (input, output) = (input.unwrap_or(0), output.unwrap_or(0));
            out.push(ModelEvent::Usage(Usage {
                input_tokens: input,
                output_tokens: output,
                total_tokens: input + output,
            }));
        }
        let called_tools = out
            .iter()
            .any(|event| matches!(event, ModelEvent::ToolCall(_)));
        let finish = match line.get("done_reason").and_then(Value::as_str) {
            // Ollama says `stop` when the model stopped to call tools, too.
            Some("stop") | None if called_tools => FinishReason::ToolCalls,
            Some("stop") | None => FinishReason::Stop,
            Some("length") => FinishReason::Length,
            Some(other) => FinishReason::Other(other.to_owned()),
        };
        out.push(ModelEvent::Finished(finish));
        Ok(true)
    }

    fn terminator(&self) -> &'static str {
        "a `\"done\": true` line"
    }
}

fn tool_call(call: &Value) -> Result<ToolCall, ModelError> {
    let function = call.get("function").unwrap_or(&Value::Null);
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ModelError::Malformed("a tool call without a function name".into()))?;
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => "{}".to_owned(),
        // Some servers send the arguments as JSON text, as OpenAI does.
        Some(Value::String(text)) => text.clone(),
        Some(object) => object.to_string(),
    };
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or_else(fresh_tool_call_id, str::to_owned);
    Ok(ToolCall {
        id,
        name: name.to_owned(),
        arguments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_take_their_id_when_sent_and_get_one_otherwise() {
        let with_id = json!({"id": "call_9", "function": {"name": "f", "arguments": {"a": 1}}});
        assert_eq!(
            tool_call(&with_id).unwrap(),
            ToolCall {
                id: "call_9".into(),
                name: "f".into(),
                arguments: r#"{"a":1}"#.into()
            }
        );
        let without = json!({"function": {"name": "f"}});
        let call = tool_call(&without).unwrap();
        assert!(call.id.starts_with("call_"));
        assert_eq!(call.arguments, "{}");
        assert!(tool_call(&json!({"function": {}})).is_err());
    }

    #[test]
    fn tool_results_name_the_nearest_call_with_their_id() {
        let call = |name: &str| ChatMessage::Assistant {
            content: None,
            tool_calls: vec![ToolCall {
                id: "call_0".into(),
                name: name.into(),
                arguments: "{}".into(),
            }],
        };
        let messages = vec![call("old"), call("new")];
        assert_eq!(tool_name(&messages, "call_0"), Some("new"));
        assert_eq!(tool_name(&messages, "other"), None);
    }
}
