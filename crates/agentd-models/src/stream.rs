//! Turning a streamed HTTP body into [`ModelEvent`]s: split the bytes into frames (server-sent events
//! or newline-delimited JSON), hand each frame to the protocol's [`Decoder`], and enforce the rules
//! every protocol shares: a per-chunk timeout, and a body that ends before the protocol's terminator is
//! [`ModelError::Malformed`]. After the first error or the terminator the stream ends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use reqwest::Response;

use crate::http::{error_chain, truncate};
use crate::{ModelError, ModelEvent, ModelStream};

/// How a body is split into frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Server-sent events: `event:`/`data:` lines, frames separated by a blank line.
    Sse,
    /// One JSON document per line.
    Ndjson,
}

/// One frame: an SSE event (its `event:` name, if any, and its `data:` lines joined), or one NDJSON line
/// as `data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub event: Option<String>,
    pub data: String,
}

/// A protocol's state machine over frames.
pub(crate) trait Decoder: Send + 'static {
    /// Handles one frame, pushing the events it completes; `Ok(true)` once the protocol's terminator
    /// arrived (the decoder has then pushed its final `Usage` and `Finished`).
    fn frame(&mut self, frame: Frame, out: &mut Vec<ModelEvent>) -> Result<bool, ModelError>;

    /// What the stream must end with, for the error when it ends without it (e.g. `data: [DONE]`).
    fn terminator(&self) -> &'static str;
}

/// The events of a streamed response body.
pub(crate) fn decode(
    response: Response,
    framing: Framing,
    decoder: impl Decoder,
    read_timeout: Duration,
) -> ModelStream {
    decode_body(
        response.bytes_stream().boxed(),
        framing,
        decoder,
        read_timeout,
    )
}

/// The events of a body given as a stream of byte chunks.
fn decode_body<S, B>(
    body: S,
    framing: Framing,
    decoder: impl Decoder,
    read_timeout: Duration,
) -> ModelStream
where
    S: Stream<Item = reqwest::Result<B>> + Unpin + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
{
    let state = State {
        body,
        buffer: Vec::new(),
        pending: VecDeque::new(),
        decoder,
        framing,
        read_timeout,
        ended: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
    .boxed()
}

struct State<D, S> {
    /// The response body's chunks.
    body: S,
    /// Bytes received but not yet split into frames (`\r` removed).
    buffer: Vec<u8>,
    /// Decoded items not yet yielded.
    pending: VecDeque<Result<ModelEvent, ModelError>>,
    decoder: D,
    framing: Framing,
    read_timeout: Duration,
    /// The terminator arrived or an error was queued: read no more.
    ended: bool,
}

impl<D, S, B> State<D, S>
where
    D: Decoder,
    S: Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    async fn next(&mut self) -> Option<Result<ModelEvent, ModelError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout(self.read_timeout, self.body.next()).await {
                Err(_) => self.fail(ModelError::Timeout(self.read_timeout)),
                Ok(Some(Ok(chunk))) => {
                    self.buffer
                        .extend(chunk.as_ref().iter().copied().filter(|byte| *byte != b'\r'));
                    self.drain_frames(false);
                }
                Ok(Some(Err(err))) if err.is_timeout() => {
                    self.fail(ModelError::Timeout(self.read_timeout))
                }
                Ok(Some(Err(err))) => self.fail(ModelError::Malformed(format!(
                    "the stream broke off: {}",
                    error_chain(&err)
                ))),
                Ok(None) => {
                    self.drain_frames(true);
                    if !self.ended {
                        let rest = String::from_utf8_lossy(&self.buffer).trim().to_owned();
                        let mut message =
                            format!("the stream ended without {}", self.decoder.terminator());
                        if !rest.is_empty() {
                            message.push_str(&format!(" (left over: {})", truncate(&rest, 200)));
                        }
                        self.fail(ModelError::Malformed(message));
                    }
                }
            }
        }
    }

    fn fail(&mut self, error: ModelError) {
        self.pending.push_back(Err(error));
        self.ended = true;
    }

    /// Decodes every complete frame in the buffer; at the end of the body, also a last unterminated one.
    fn drain_frames(&mut self, at_end: bool) {
        while !self.ended {
            let Some(raw) = split_frame(&mut self.buffer, self.framing, at_end) else {
                return;
            };
            let text = match String::from_utf8(raw) {
                Ok(text) => text,
                Err(_) => {
                    self.fail(ModelError::Malformed(
                        "the stream is not valid UTF-8".into(),
                    ));
                    return;
                }
            };
            let Some(frame) = parse_frame(&text, self.framing) else {
                continue;
            };
            let mut events = Vec::new();
            let result = self.decoder.frame(frame, &mut events);
            self.pending.extend(events.into_iter().map(Ok));
            match result {
                Ok(true) => self.ended = true,
                Ok(false) => {}
                Err(error) => self.fail(error),
            }
        }
    }
}

/// Takes the next raw frame off the front of the buffer, if a complete one is there.
fn split_frame(buffer: &mut Vec<u8>, framing: Framing, at_end: bool) -> Option<Vec<u8>> {
    let separator: &[u8] = match framing {
        Framing::Sse => b"\n\n",
        Framing::Ndjson => b"\n",
    };
    if let Some(position) = buffer
        .windows(separator.len())
        .position(|window| window == separator)
    {
        let frame = buffer[..position].to_vec();
        buffer.drain(..position + separator.len());
        return Some(frame);
    }
    if at_end && !buffer.iter().all(u8::is_ascii_whitespace) {
        return Some(std::mem::take(buffer));
    }
    None
}

/// Parses a raw frame; `None` for one that carries nothing (blank lines, SSE comments).
fn parse_frame(text: &str, framing: Framing) -> Option<Frame> {
    match framing {
        Framing::Ndjson => {
            let line = text.trim();
            (!line.is_empty()).then(|| Frame {
                event: None,
                data: line.to_owned(),
            })
        }
        Framing::Sse => {
            let mut event = None;
            let mut data: Option<String> = None;
            for line in text.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event = Some(value.to_owned()),
                    "data" => match &mut data {
                        Some(joined) => {
                            joined.push('\n');
                            joined.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    },
                    // Comments (`: keep-alive`), `id:` and `retry:` carry nothing for us.
                    _ => {}
                }
            }
            data.map(|data| Frame { event, data })
        }
    }
}

/// A tool call id for providers that send none (Ollama): unique in this process, and unlikely to
/// repeat across restarts.
pub(crate) fn fresh_tool_call_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    format!("call_{millis:x}{sequence:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_split_on_blank_lines_and_join_data_lines() {
        let mut buffer =
            b"event: a\ndata: {\"x\":1}\n\n: comment\n\ndata: one\ndata: two\n\ndata: par".to_vec();
        let mut frames = Vec::new();
        while let Some(raw) = split_frame(&mut buffer, Framing::Sse, false) {
            if let Some(frame) = parse_frame(&String::from_utf8(raw).unwrap(), Framing::Sse) {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            vec![
                Frame {
                    event: Some("a".into()),
                    data: "{\"x\":1}".into()
                },
                Frame {
                    event: None,
                    data: "one\ntwo".into()
                },
            ]
        );
        assert_eq!(buffer, b"data: par");
        let last = split_frame(&mut buffer, Framing::Sse, true).unwrap();
        assert_eq!(last, b"data: par");
    }

    #[test]
    fn ndjson_frames_are_lines() {
        let mut buffer = b"{\"a\":1}\n\n{\"b\":2}".to_vec();
        let first = split_frame(&mut buffer, Framing::Ndjson, false).unwrap();
        assert_eq!(first, b"{\"a\":1}");
        let blank = split_frame(&mut buffer, Framing::Ndjson, false).unwrap();
        assert!(parse_frame(&String::from_utf8(blank).unwrap(), Framing::Ndjson).is_none());
        assert!(split_frame(&mut buffer, Framing::Ndjson, false).is_none());
        assert_eq!(
            split_frame(&mut buffer, Framing::Ndjson, true).unwrap(),
            b"{\"b\":2}"
        );
    }

    /// The events of a body cut into the given chunks, decoded as OpenAI chat completion chunks.
    async fn openai_events(chunks: Vec<&[u8]>) -> Vec<Result<ModelEvent, ModelError>> {
        let owned: Vec<Vec<u8>> = chunks.into_iter().map(<[u8]>::to_vec).collect();
        let body = futures::stream::iter(owned.into_iter().map(Ok::<_, reqwest::Error>));
        decode_body(
            body,
            Framing::Sse,
            crate::openai::ChunkDecoder::default(),
            Duration::from_secs(1),
        )
        .collect()
        .await
    }

    #[tokio::test]
    async fn chunk_boundaries_inside_frames_and_characters_do_not_matter() {
        let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"bl\u{e5}b\u{e6}r \u{1f353}\"}}]}\r\n\r\ndata: [DONE]\r\n\r\n";
        // Cut every 3 bytes: inside `data:`, inside the JSON, inside the multi-byte characters.
        let events = openai_events(body.as_bytes().chunks(3).collect()).await;
        assert_eq!(
            events,
            vec![
                Ok(ModelEvent::Text("bl\u{e5}b\u{e6}r \u{1f353}".into())),
                Ok(ModelEvent::Finished(crate::FinishReason::Stop)),
            ]
        );
    }

    #[tokio::test]
    async fn a_body_ending_without_the_terminator_is_malformed() {
        let events = openai_events(vec![
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        ])
        .await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0], Ok(ModelEvent::Text("Hi".into())));
        let Err(ModelError::Malformed(message)) = &events[1] else {
            panic!("expected Malformed, got {events:?}");
        };
        assert!(message.contains("[DONE]"), "{message}");
    }

    #[tokio::test]
    async fn nothing_is_read_after_the_terminator() {
        let events = openai_events(vec![b"data: [DONE]\n\n", b"data: {not json\n\n"]).await;
        assert_eq!(
            events,
            vec![Ok(ModelEvent::Finished(crate::FinishReason::Stop))]
        );
    }

    #[test]
    fn fresh_ids_differ() {
        assert_ne!(fresh_tool_call_id(), fresh_tool_call_id());
    }
}
