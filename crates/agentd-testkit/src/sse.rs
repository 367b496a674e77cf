//! Reading server-sent event streams in tests, and turning them into redacted snapshots.

use serde_json::Value;

/// One frame of an event stream.
#[derive(Clone, Debug, PartialEq)]
pub struct SseFrame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Value,
}

/// Parses a complete `text/event-stream` body (comments and keep-alives skipped).
pub fn parse(body: &str) -> Vec<SseFrame> {
    let mut frames = Vec::new();
    for block in body.split("\n\n") {
        if let Some(frame) = parse_block(block) {
            frames.push(frame);
        }
    }
    frames
}

fn parse_block(block: &str) -> Option<SseFrame> {
    let mut id = None;
    let mut event = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("event:") {
            event = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    if data.is_empty() {
        return None;
    }
    let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
    Some(SseFrame { id, event, data })
}

/// Reads frames from a streaming response until `count` frames have arrived (or the stream ends),
/// then drops the connection, as a client that disconnects would.
pub async fn read_frames(mut response: reqwest::Response, count: usize) -> Vec<SseFrame> {
    let mut buffer = String::new();
    let mut frames = Vec::new();
    while frames.len() < count {
        let Ok(Some(chunk)) = response.chunk().await else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(frame) = parse_block(&block) {
                frames.push(frame);
            }
        }
    }
    frames.truncate(count);
    frames
}

/// Keys whose values change from run to run (ids, times, durations); snapshots show `[..]` instead.
const VOLATILE: &[&str] = &[
    "created_at",
    "run_id",
    "session_id",
    "agent_id",
    "duration",
    "time_to_first_token",
    "start_time",
    "end_time",
    "updated_at",
];

/// Replaces volatile values with `"[..]"`, recursively, and durations inside tool summaries.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let redacted = if VOLATILE.contains(&key.as_str()) && !value.is_null() {
                        Value::String("[..]".into())
                    } else {
                        redact(value)
                    };
                    (key.clone(), redacted)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(text) => match text.rsplit_once(" completed in ") {
            Some((head, _)) => Value::String(format!("{head} completed in [..]s.")),
            None => value.clone(),
        },
        other => other.clone(),
    }
}

/// One line per frame: `<id> <event or type> <redacted data>`, for comparing whole streams.
pub fn snapshot(frames: &[SseFrame]) -> String {
    frames
        .iter()
        .map(|frame| {
            let name = frame
                .event
                .clone()
                .or_else(|| frame.data["type"].as_str().map(str::to_owned))
                .unwrap_or_default();
            format!(
                "{} {} {}",
                frame.id.as_deref().unwrap_or("-"),
                name,
                redact(&frame.data)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line per frame, `<id> <name>`: the `event:` name, or for `data:`-only frames their `type`
/// followed by `/<event>` when the data names a run event. For checking a stream's order.
pub fn names(frames: &[SseFrame]) -> Vec<String> {
    frames
        .iter()
        .map(|frame| {
            let name = frame.event.clone().unwrap_or_else(|| {
                let kind = frame.data["type"].as_str().unwrap_or_default();
                match frame.data["event"].as_str() {
                    Some(event) => format!("{kind}/{event}"),
                    None => kind.to_owned(),
                }
            });
            format!("{} {name}", frame.id.as_deref().unwrap_or("-"))
        })
        .collect()
}

/// An expected multi-line snapshot written indented in a test, as [`snapshot`] prints it: each
/// line trimmed, blank lines dropped.
pub fn trim_lines(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}
