//! Server-sent event streams of a run's event log. Every frame carries `id: <seq>` so a client can
//! reconnect with `Last-Event-ID`; idle streams get a keep-alive comment every 15 s. The faces choose
//! how an event is rendered; this module only frames it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use agentd_core::run::RunEvent;
use agentd_runtime::RunEvents;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;

use agentd_core::ErrorCode;

use crate::problem::ApiError;

/// How often an idle stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One rendered frame: an optional `event:` name and the JSON `data`.
pub struct Frame {
    pub name: Option<&'static str>,
    pub data: Value,
}

/// Streams `events` as SSE, rendering each with `render` (which may drop an event by returning no
/// frames, or turn one event into several, all under the event's `seq`).
pub fn stream<F>(events: RunEvents, render: F) -> Response
where
    F: Fn(&RunEvent) -> Vec<Frame> + Send + Sync + 'static,
{
    let render = Arc::new(render);
    let frames = events.into_stream().flat_map(move |event| {
        let frames = render(&event);
        let seq = event.seq.to_string();
        futures::stream::iter(frames.into_iter().map(move |frame| {
            let mut sse = Event::default().id(seq.clone());
            if let Some(name) = frame.name {
                sse = sse.event(name);
            }
            Ok::<_, Infallible>(sse.data(frame.data.to_string()))
        }))
    });
    let mut response = Sse::new(frames)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    // Proxies (nginx) must not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", "no".parse().expect("static header"));
    response
}

/// The position a reconnecting client gives in `Last-Event-ID` (the `seq` of the last event it has).
pub fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(raw) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = raw.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        ApiError::field(
            ErrorCode::InvalidField,
            "Last-Event-ID",
            "must be the `id` of an event of this stream (a non-negative integer)",
        )
    })
}

/// Whether the client asked for an event stream.
pub fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
}
