//! The HTTP plumbing every provider shares: one client per provider with its timeouts, sending a call
//! with retries while nothing has been streamed yet, reading whole JSON answers (embeddings), and
//! turning failed responses into [`ModelError`]s.
//!
//! Timeouts are layered: the client's `connect_timeout` bounds connecting, its `read_timeout` bounds each
//! socket read (so a response that never starts, or a stream that stalls, is cut off), and a tokio
//! timeout around sending and around each stream chunk is the backstop that also covers a server which
//! keeps the socket busy without answering.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::{ModelError, ProviderConfig};

/// The first retry waits this long; each further retry doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Backoff never grows beyond this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A `Retry-After` hint longer than this is shortened to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How much of an error body that is not JSON ends up in an error message.
const MAX_BODY_IN_MESSAGE: usize = 300;

/// A provider's HTTP client with its timeouts and retry budget.
pub(crate) struct Transport {
    client: Client,
    /// The provider's display name, for log lines.
    provider: &'static str,
    connect_timeout: Duration,
    read_timeout: Duration,
    max_retries: u32,
}

impl Transport {
    /// A client for one configured provider. Fails on an unusable `base_url`.
    pub(crate) fn new(provider: &'static str, config: &ProviderConfig) -> Result<Self, ModelError> {
        let url = reqwest::Url::parse(&config.base_url).map_err(|err| {
            ModelError::Config(format!(
                "base_url `{}` is not a valid URL: {err}",
                config.base_url
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ModelError::Config(format!(
                "base_url `{}` must be an http or https URL",
                config.base_url
            )));
        }
        let connect_timeout = Duration::from_secs(config.connect_timeout_secs);
        let read_timeout = Duration::from_secs(config.read_timeout_secs);
        let client = Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .build()
            .map_err(|err| {
                ModelError::Config(format!(
                    "cannot build the HTTP client: {}",
                    error_chain(&err)
                ))
            })?;
        Ok(Self {
            client,
            provider,
            connect_timeout,
            read_timeout,
            max_retries: config.max_retries,
        })
    }

    /// How long to wait for the next chunk of a stream.
    pub(crate) fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Sends the request `build` makes (called once per attempt) and returns the response once its
    /// status says success. Retryable failures ([`ModelError::is_retryable`]) are retried up to
    /// `max_retries` times with exponential backoff, or after the provider's `Retry-After` hint.
    pub(crate) async fn send(
        &self,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, ModelError> {
        let mut attempt = 0;
        loop {
            let error = match self.send_once(build(&self.client)).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            if !error.is_retryable() || attempt >= self.max_retries {
                return Err(error);
            }
            let delay = retry_delay(attempt, &error);
            attempt += 1;
            tracing::warn!(
                provider = self.provider,
                attempt,
                max_retries = self.max_retries,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "model call failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends the request as [`send`](Self::send) does and reads the whole answer as JSON, within the
    /// read timeout. A body that breaks off or is not JSON is [`ModelError::Malformed`] (and, as with
    /// a stream that has started, not retried).
    pub(crate) async fn send_for_json(
        &self,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Value, ModelError> {
        let response = self.send(build).await?;
        let body = match tokio::time::timeout(self.read_timeout, response.bytes()).await {
            Err(_) => return Err(ModelError::Timeout(self.read_timeout)),
            Ok(Err(err)) if err.is_timeout() => return Err(ModelError::Timeout(self.read_timeout)),
            Ok(Err(err)) => {
                return Err(ModelError::Malformed(format!(
                    "the response body broke off: {}",
                    error_chain(&err)
                )))
            }
            Ok(Ok(body)) => body,
        };
        serde_json::from_slice(&body).map_err(|err| {
            let text = String::from_utf8_lossy(&body);
            ModelError::Malformed(format!(
                "the response is not JSON ({err}): {}",
                truncate(text.trim(), MAX_BODY_IN_MESSAGE)
            ))
        })
    }

    /// One attempt: the response, or the failure its status or transport reports.
    async fn send_once(&self, request: RequestBuilder) -> Result<Response, ModelError> {
        // The client's own timeouts normally fire first; this bounds the whole wait regardless.
        let limit = self.connect_timeout + self.read_timeout;
        let response = match tokio::time::timeout(limit, request.send()).await {
            Err(_) => return Err(ModelError::Timeout(self.read_timeout)),
            Ok(Err(err)) => return Err(transport_error(&err, self.read_timeout)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = parse_retry_after(response.headers());
        let body = match tokio::time::timeout(self.read_timeout, response.text()).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) | Err(_) => String::new(),
        };
        Err(status_error(status, retry_after, &body))
    }
}

/// How long to wait before retry number `attempt + 1`.
fn retry_delay(attempt: u32, error: &ModelError) -> Duration {
    if let ModelError::RateLimited {
        retry_after: Some(hint),
        ..
    } = error
    {
        return (*hint).min(MAX_RETRY_AFTER);
    }
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(MAX_BACKOFF)
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// Maps a reqwest failure to connect, timeout or (for anything else on the way) connect errors.
pub(crate) fn transport_error(err: &reqwest::Error, read_timeout: Duration) -> ModelError {
    if err.is_connect() {
        return ModelError::Connect(error_chain(err));
    }
    if err.is_timeout() {
        return ModelError::Timeout(read_timeout);
    }
    ModelError::Connect(error_chain(err))
}

/// An error's message followed by its sources, `: `-separated.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The error a non-success status stands for, with the provider's message when the body has one.
pub(crate) fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> ModelError {
    let message = error_message(body).unwrap_or_else(|| {
        let trimmed = body.trim();
        if trimmed.is_empty() {
            status.canonical_reason().unwrap_or("no message").to_owned()
        } else {
            truncate(trimmed, MAX_BODY_IN_MESSAGE)
        }
    });
    let code = status.as_u16();
    match code {
        401 | 403 => ModelError::Unauthorized(message),
        429 => ModelError::RateLimited {
            retry_after,
            message,
        },
        500..=599 => ModelError::Server {
            status: code,
            message,
        },
        _ => ModelError::Rejected {
            status: code,
            message,
        },
    }
}

/// The message in an error body: OpenAI and Anthropic `{"error": {"message"}}`, Ollama `{"error": ".."}`,
/// and the `message`/`detail` fields other compatible servers use.
pub(crate) fn error_message(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    json_error_message(&value)
}

/// The message of an error object already parsed (see [`error_message`]).
pub(crate) fn json_error_message(value: &Value) -> Option<String> {
    let candidates = [
        value.pointer("/error/message"),
        value.get("error"),
        value.get("message"),
        value.get("detail"),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|candidate| candidate.as_str().map(str::to_owned))
}

/// A sampling option as a JSON number with its shortest decimal form: `0.7`, not the
/// `0.699999988079071` a plain `f32` → `f64` conversion gives. `Null` for NaN and infinities.
pub(crate) fn json_f32(value: f32) -> Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// One embedding vector from a JSON array of numbers; `what` names it in the error.
pub(crate) fn json_vector(value: &Value, what: &str) -> Result<Vec<f32>, ModelError> {
    let Some(items) = value.as_array() else {
        return Err(ModelError::Malformed(format!(
            "{what} is not a list of numbers"
        )));
    };
    items
        .iter()
        .map(|item| {
            item.as_f64()
                .map(|number| number as f32)
                .ok_or_else(|| ModelError::Malformed(format!("{what} holds a non-number: {item}")))
        })
        .collect()
}

/// Checks that an embeddings answer has one vector per input.
pub(crate) fn expect_vectors(vectors: &[Vec<f32>], inputs: usize) -> Result<(), ModelError> {
    if vectors.len() == inputs {
        return Ok(());
    }
    Err(ModelError::Malformed(format!(
        "{} embedding vectors for {inputs} inputs",
        vectors.len()
    )))
}

/// At most `max` bytes of `text`, cut at a char boundary, with `…` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_typed_errors_with_the_providers_message() {
        let openai = r#"{"error":{"message":"bad key","type":"invalid_request_error"}}"#;
        assert_eq!(
            status_error(StatusCode::UNAUTHORIZED, None, openai),
            ModelError::Unauthorized("bad key".into())
        );
        assert_eq!(
            status_error(StatusCode::FORBIDDEN, None, r#"{"error":"nope"}"#),
            ModelError::Unauthorized("nope".into())
        );
        assert_eq!(
            status_error(
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(3)),
                "{}"
            ),
            ModelError::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
                message: "{}".into()
            }
        );
        assert_eq!(
            status_error(StatusCode::BAD_GATEWAY, None, ""),
            ModelError::Server {
                status: 502,
                message: "Bad Gateway".into()
            }
        );
        assert_eq!(
            status_error(StatusCode::NOT_FOUND, None, r#"{"detail":"no such model"}"#),
            ModelError::Rejected {
                status: 404,
                message: "no such model".into()
            }
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_cap_and_honours_retry_after() {
        let server = ModelError::Server {
            status: 500,
            message: String::new(),
        };
        assert_eq!(retry_delay(0, &server), Duration::from_millis(200));
        assert_eq!(retry_delay(1, &server), Duration::from_millis(400));
        assert_eq!(retry_delay(10, &server), MAX_BACKOFF);
        let limited = |seconds| ModelError::RateLimited {
            retry_after: Some(Duration::from_secs(seconds)),
            message: String::new(),
        };
        assert_eq!(retry_delay(0, &limited(2)), Duration::from_secs(2));
        assert_eq!(retry_delay(0, &limited(3600)), MAX_RETRY_AFTER);
    }

    #[test]
    fn sampling_numbers_keep_their_short_decimal_form() {
        assert_eq!(json_f32(0.7).to_string(), "0.7");
        assert_eq!(json_f32(1.0).to_string(), "1.0");
        assert_eq!(json_f32(f32::NAN), Value::Null);
    }

    #[test]
    fn vectors_must_be_number_lists_one_per_input() {
        let vector = serde_json::json!([0.5, -1, 2e-3]);
        assert_eq!(json_vector(&vector, "v").unwrap(), vec![0.5, -1.0, 0.002]);
        assert!(json_vector(&serde_json::json!([1, "x"]), "v").is_err());
        assert!(json_vector(&serde_json::json!({"a": 1}), "v").is_err());
        assert!(expect_vectors(&[vec![1.0]], 1).is_ok());
        assert_eq!(
            expect_vectors(&[vec![1.0]], 2),
            Err(ModelError::Malformed(
                "1 embedding vectors for 2 inputs".into()
            ))
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
