//! What every provider makes of a well-formed answer.

use agentd_models::{FinishReason, ModelEvent, ProviderKind, ToolCall, Usage};
use agentd_testkit::Reply;

use crate::{ask, events, setup};

crate::per_provider!(
    text_streams_as_deltas_then_usage_then_finished,
    one_tool_call_is_assembled_from_fragments,
    parallel_tool_calls_come_whole_in_index_order,
    usage_is_reported,
    non_ascii_text_survives,
);

async fn text_streams_as_deltas_then_usage_then_finished(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    server.push(Reply::text("Hello brave new world"));

    let events = events(&provider, ask("Hi")).await;

    assert_eq!(
        events,
        vec![
            ModelEvent::Text("Hello".into()),
            ModelEvent::Text(" brave".into()),
            ModelEvent::Text(" new".into()),
            ModelEvent::Text(" world".into()),
            ModelEvent::Usage(Usage {
                input_tokens: 10,
                output_tokens: 4,
                total_tokens: 14
            }),
            ModelEvent::Finished(FinishReason::Stop),
        ]
    );
    assert_eq!(server.requests().len(), 1);
}

/// The tool calls among the events, and the finish reason, checked against `(id, name, arguments)`.
/// Ollama sends no ids, so there the provider's own must be distinct and well-formed.
fn assert_calls(kind: ProviderKind, events: &[ModelEvent], expected: &[(&str, &str, &str)]) {
    let calls: Vec<&ToolCall> = events
        .iter()
        .filter_map(|event| match event {
            ModelEvent::ToolCall(call) => Some(call),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), expected.len(), "{events:?}");
    for (call, (id, name, arguments)) in calls.iter().zip(expected) {
        assert_eq!(call.name, *name);
        let arguments: serde_json::Value = serde_json::from_str(arguments).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&call.arguments).unwrap(),
            arguments
        );
        match kind {
            ProviderKind::Ollama => assert!(call.id.starts_with("call_"), "{}", call.id),
            _ => assert_eq!(call.id, *id),
        }
    }
    if kind == ProviderKind::Ollama && calls.len() > 1 {
        assert_ne!(calls[0].id, calls[1].id);
    }
    // No text, the calls, then usage and exactly one Finished, last.
    assert!(!events.iter().any(|e| matches!(e, ModelEvent::Text(_))));
    assert!(
        matches!(events[calls.len()], ModelEvent::Usage(_)),
        "{events:?}"
    );
    assert_eq!(
        events.last(),
        Some(&ModelEvent::Finished(FinishReason::ToolCalls))
    );
    assert_eq!(events.len(), calls.len() + 2, "{events:?}");
}

async fn one_tool_call_is_assembled_from_fragments(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    let arguments = r#"{"city":"Oslo","units":"metric"}"#;
    server.push(Reply::tool_call("call_1", "get_weather", arguments));

    let events = events(&provider, ask("Weather?")).await;

    assert_calls(kind, &events, &[("call_1", "get_weather", arguments)]);
    if kind != ProviderKind::Ollama {
        // Verbatim text, not re-serialized JSON.
        assert_eq!(
            events[0],
            ModelEvent::ToolCall(ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: arguments.into(),
            })
        );
    }
}

async fn parallel_tool_calls_come_whole_in_index_order(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    let calls = [
        ("call_1", "get_weather", r#"{"city":"Oslo"}"#),
        (
            "call_2",
            "get_time",
            r#"{"zone":"Europe/Oslo","format":"24h"}"#,
        ),
    ];
    server.push(Reply::tool_calls(&calls));

    let events = events(&provider, ask("Weather and time?")).await;

    assert_calls(kind, &events, &calls);
}

async fn usage_is_reported(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    server.push(Reply::text("Fine.").usage(1234, 56));

    let events = events(&provider, ask("How are you?")).await;

    assert_eq!(
        events[events.len() - 2..],
        [
            ModelEvent::Usage(Usage {
                input_tokens: 1234,
                output_tokens: 56,
                total_tokens: 1290
            }),
            ModelEvent::Finished(FinishReason::Stop),
        ]
    );
}

async fn non_ascii_text_survives(kind: ProviderKind) {
    let (server, provider) = setup(kind).await;
    let text = "Blåbærsyltetøy på brødskiva 🍓 smaker godt";
    server.push(Reply::text(text));

    let events = events(&provider, ask("Breakfast?")).await;

    let joined: String = events
        .iter()
        .filter_map(|event| match event {
            ModelEvent::Text(delta) => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(joined, text);
}
