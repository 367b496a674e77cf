"""Drives agentd's OpenAI-compatible face with the official `openai` SDK.

Run by `tests/api/openai_sdk.rs` with the interpreter of a virtual environment holding the pinned SDK.
The environment names the server and the scenario parameters:

- BASE_URL: agentd's OpenAI base URL, `http://127.0.0.1:PORT/v1`.
- API_KEY: the key the scenarios use, unless PARAMS["keys"] names another for a scenario.
- PARAMS: a JSON object of scenario parameters (model names, the agent's id, expected texts, keys).

The arguments name the scenarios to run, in order. Each one checks what only the SDK can tell (which
exception type it raised, how it assembled a stream) and reports what it saw; the results are printed
as one JSON object on one line of stdout, `{"<scenario>": {...}, "usages": [...]}`, where `usages` lists
every `usage` the SDK returned, for the Rust test to add up. A failed check exits with status 1 and
names the scenario on stderr.
"""

import base64
import json
import os
import struct
import sys
import traceback

import openai
from openai import OpenAI
from openai.lib.streaming.chat import ChatCompletionStreamState

BASE_URL = os.environ["BASE_URL"]
API_KEY = os.environ["API_KEY"]
PARAMS = json.loads(os.environ.get("PARAMS") or "{}")



def make_client(api_key):
    # No retries: every error must reach the scenario as the SDK first raised it.
    return OpenAI(base_url=BASE_URL, api_key=api_key, max_retries=0, timeout=20.0)


# The client of the running scenario (`main` sets it).
client = make_client(API_KEY)

usages = []

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def note_usage(scenario, usage):
    """Keeps a usage the SDK returned, as plain numbers."""
    check(usage is not None, f"{scenario}: the SDK returned no usage")
    usages.append(
        {
            "scenario": scenario,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": getattr(usage, "completion_tokens", 0) or 0,
            "total_tokens": usage.total_tokens,
        }
    )
    return usage.model_dump(exclude_none=True)


def tool_calls_of(message):
    return [
        {"id": call.id, "type": call.type, "name": call.function.name, "arguments": call.function.arguments}
        for call in (message.tool_calls or [])
    ]


def assistant_turn(message):
    """The assistant message to send back in the history, as a client would."""
    return {
        "role": "assistant",
        "content": message.content,
        "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}
            for call in message.tool_calls or []
        ],
    }


def error_report(error):
    """What an SDK exception tells: its class, status, the error body and the Retry-After header."""
    response = getattr(error, "response", None)
    return {
        "exception": type(error).__name__,
        "is_api_error": isinstance(error, openai.APIError),
        "status": getattr(error, "status_code", None),
        "code": getattr(error, "code", None),
        "type": getattr(error, "type", None),
        "param": getattr(error, "param", None),
        "message": getattr(error, "message", str(error)),
        "body": error.body if isinstance(getattr(error, "body", None), (dict, list, str)) else None,
        "retry_after": response.headers.get("retry-after") if response is not None else None,
    }


def expect_error(scenario, exception_type, call):
    """Runs `call`, which must raise `exception_type` (and nothing more general), and reports it."""
    try:
        call()
    except exception_type as error:
        check(
            type(error) is exception_type,
            f"{scenario}: the SDK raised {type(error).__name__}, a subclass of {exception_type.__name__}",
        )
        return error_report(error)
    except Exception as error:  # noqa: BLE001 - any other exception is the failure to report
        raise AssertionError(
            f"{scenario}: expected {exception_type.__name__}, the SDK raised {type(error).__name__}: {error}"
        ) from error
    raise AssertionError(f"{scenario}: expected {exception_type.__name__}, the call succeeded")


# --- Scenarios -----------------------------------------------------------------------------------


def models():
    page = client.models.list()
    listed = [model.id for model in page.data]
    check(all(model.object == "model" for model in page.data), f"models: objects {page.data}")
    for wanted in PARAMS["listed"]:
        check(wanted in listed, f"models: {wanted} is not in {listed}")
    agent = next(model for model in page.data if model.id == f"agent/{PARAMS['agent']}")
    return {"ids": listed, "agent_owned_by": agent.owned_by, "agent_name": getattr(agent, "name", None)}


def chat():
    completion = client.chat.completions.create(
        model=PARAMS["model"],
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}],
    )
    choice = completion.choices[0]
    return {
        "object": completion.object,
        "role": choice.message.role,
        "content": choice.message.content,
        "finish_reason": choice.finish_reason,
        "usage": note_usage("chat", completion.usage),
    }


def stream():
    deltas = []
    with client.chat.completions.stream(
        model=PARAMS["model"],
        messages=[{"role": "user", "content": "Tell a story"}],
        stream_options={"include_usage": True},
    ) as events:
        for event in events:
            if event.type == "content.delta":
                deltas.append(event.delta)
        final = events.get_final_completion()
    choice = final.choices[0]
    return {
        "role": choice.message.role,
        "content": choice.message.content,
        "deltas": deltas,
        "finish_reason": choice.finish_reason,
        "tool_calls": tool_calls_of(choice.message),
        "usage": note_usage("stream", final.usage),
    }


def tool_round_trip():
    """The model asks for the client's tool (streamed, assembled by the SDK); the client answers it."""
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    with client.chat.completions.stream(
        model=PARAMS["model"],
        messages=messages,
        tools=[WEATHER_TOOL],
        stream_options={"include_usage": True},
    ) as events:
        for _ in events:
            pass
        first = events.get_final_completion()
    asked = first.choices[0]
    calls = tool_calls_of(asked.message)
    check(len(calls) == 1, f"tool_round_trip: one tool call expected, got {calls}")
    messages.append(assistant_turn(asked.message))
    messages.append({"role": "tool", "tool_call_id": calls[0]["id"], "content": PARAMS["tool_result"]})
    answer = client.chat.completions.create(model=PARAMS["model"], messages=messages, tools=[WEATHER_TOOL])
    return {
        "role": asked.message.role,
        "content": asked.message.content,
        "finish_reason": asked.finish_reason,
        "tool_calls": calls,
        "first_usage": note_usage("tool_round_trip", first.usage),
        "answer": answer.choices[0].message.content,
        "answer_finish_reason": answer.choices[0].finish_reason,
        "answer_usage": note_usage("tool_round_trip", answer.usage),
    }


def completion():
    """The legacy text completions, whole and streamed."""
    whole = client.completions.create(model=PARAMS["model"], prompt="Say hi")
    pieces = []
    streamed_usage = None
    for chunk in client.completions.create(
        model=PARAMS["model"], prompt="Count", stream=True, stream_options={"include_usage": True}
    ):
        pieces.extend(choice.text for choice in chunk.choices)
        if chunk.usage is not None:
            check(streamed_usage is None, "completion: two usage chunks")
            streamed_usage = chunk.usage
    return {
        "object": whole.object,
        "text": whole.choices[0].text,
        "finish_reason": whole.choices[0].finish_reason,
        "usage": note_usage("completion", whole.usage),
        "streamed_text": "".join(pieces),
        "streamed_usage": note_usage("completion", streamed_usage),
    }


def as_f32(values):
    return [struct.unpack("<f", struct.pack("<f", value))[0] for value in values]


def embeddings():
    texts = PARAMS["texts"]
    # The SDK asks for base64 unless told otherwise, and decodes it to floats.
    raw = client.embeddings.with_raw_response.create(model=PARAMS["model"], input=texts)
    sent = json.loads(raw.http_request.content)
    check(sent.get("encoding_format") == "base64", f"embeddings: the SDK asked for {sent}")
    wire = json.loads(raw.text)
    base64_wire = [item["embedding"] for item in wire["data"]]
    check(all(isinstance(item, str) for item in base64_wire), f"embeddings: base64 answer was {wire}")
    decoded_by_hand = [as_f32(struct.unpack(f"<{len(base64.b64decode(item)) // 4}f", base64.b64decode(item))) for item in base64_wire]
    by_default = raw.parse()
    as_floats = client.embeddings.create(model=PARAMS["model"], input=texts, encoding_format="float")
    default_vectors = [list(item.embedding) for item in by_default.data]
    float_vectors = [as_f32(item.embedding) for item in as_floats.data]
    check(
        [as_f32(vector) for vector in default_vectors] == float_vectors,
        f"embeddings: base64 {default_vectors} and float {float_vectors} differ",
    )
    check(decoded_by_hand == float_vectors, "embeddings: the SDK decoded base64 differently from by hand")
    check([item.index for item in as_floats.data] == list(range(len(texts))), "embeddings: indices")
    return {
        "vectors": float_vectors,
        "model": as_floats.model,
        "usage": note_usage("embeddings", by_default.usage),
        "float_usage": note_usage("embeddings", as_floats.usage),
    }


def agent_text():
    """An agent addressed as a model answers a streamed conversation."""
    with client.chat.completions.stream(
        model=f"agent/{PARAMS['agent']}",
        messages=[{"role": "user", "content": "Hello agent"}],
        stream_options={"include_usage": True},
    ) as events:
        for _ in events:
            pass
        final = events.get_final_completion()
    choice = final.choices[0]
    return {
        "model": final.model,
        "role": choice.message.role,
        "content": choice.message.content,
        "finish_reason": choice.finish_reason,
        "usage": note_usage("agent_text", final.usage),
    }


def agent_tool():
    """The agent's client-side tool pauses the run; the result, sent in the same session, continues it."""
    model = f"agent/{PARAMS['agent']}"
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    session = raw.headers.get("x-session-id")
    check(session, f"agent_tool: no x-session-id header in {dict(raw.headers)}")
    state = ChatCompletionStreamState()
    paused_usage = None
    for chunk in raw.parse():
        state.handle_chunk(chunk)
        if chunk.usage is not None:
            paused_usage = chunk.usage
    paused = state.get_final_completion().choices[0]
    calls = tool_calls_of(paused.message)
    check(len(calls) == 1, f"agent_tool: one tool call expected, got {calls}")
    if paused_usage is not None:
        note_usage("agent_tool", paused_usage)
    messages.append(assistant_turn(paused.message))
    messages.append({"role": "tool", "tool_call_id": calls[0]["id"], "content": PARAMS["tool_result"]})
    with client.chat.completions.stream(
        model=model,
        messages=messages,
        stream_options={"include_usage": True},
        extra_headers={"x-session-id": session},
    ) as events:
        for _ in events:
            pass
        final = events.get_final_completion()
        continued_session = events._response.headers.get("x-session-id")
    choice = final.choices[0]
    return {
        "session": session,
        "continued_session": continued_session,
        "paused_role": paused.message.role,
        "paused_finish_reason": paused.finish_reason,
        "paused_usage": paused_usage.model_dump() if paused_usage is not None else None,
        "tool_calls": calls,
        "role": choice.message.role,
        "content": choice.message.content,
        "finish_reason": choice.finish_reason,
        "usage": note_usage("agent_tool", final.usage),
    }


def unknown_model():
    reports = {}
    for model in PARAMS["unknown_models"]:
        reports[model] = expect_error(
            "unknown_model",
            openai.NotFoundError,
            lambda: client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}]),
        )
    return reports


def bad_key():
    stranger = make_client("agentd_not_a_real_key")
    return expect_error("bad_key", openai.AuthenticationError, lambda: stranger.models.list())


def bad_input():
    return expect_error(
        "bad_input",
        openai.BadRequestError,
        lambda: client.chat.completions.create(
            model=PARAMS["model"], messages=[{"role": "user", "content": "hi"}], temperature=5
        ),
    )


def provider_down():
    reports = {}
    for model in PARAMS["failing_models"]:
        reports[model] = expect_error(
            "provider_down",
            openai.InternalServerError,
            lambda: client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}]),
        )
    return reports


def mid_stream_error():
    seen = []

    def read():
        with client.chat.completions.stream(
            model=PARAMS["model"], messages=[{"role": "user", "content": "hi"}]
        ) as events:
            for event in events:
                if event.type == "content.delta":
                    seen.append(event.delta)

    report = expect_error("mid_stream_error", openai.APIError, read)
    report["content_before"] = "".join(seen)
    return report


def rate_limit():
    """Lists models until the plan's requests per minute run out."""
    allowed = 0
    for _ in range(PARAMS["requests_per_minute"]):
        client.models.list()
        allowed += 1
    report = expect_error("rate_limit", openai.RateLimitError, lambda: client.models.list())
    report["allowed"] = allowed
    return report


def monthly_tokens():
    """One completion uses up the month's tokens; the next is refused."""
    completion = client.chat.completions.create(model=PARAMS["model"], messages=[{"role": "user", "content": "hi"}])
    note_usage("monthly_tokens", completion.usage)
    report = expect_error(
        "monthly_tokens",
        openai.RateLimitError,
        lambda: client.chat.completions.create(model=PARAMS["model"], messages=[{"role": "user", "content": "again"}]),
    )
    report["first_total_tokens"] = completion.usage.total_tokens
    return report


SCENARIOS = {
    "models": models,
    "chat": chat,
    "stream": stream,
    "tool_round_trip": tool_round_trip,
    "completion": completion,
    "embeddings": embeddings,
    "agent_text": agent_text,
    "agent_tool": agent_tool,
    "unknown_model": unknown_model,
    "bad_key": bad_key,
    "bad_input": bad_input,
    "provider_down": provider_down,
    "mid_stream_error": mid_stream_error,
    "rate_limit": rate_limit,
    "monthly_tokens": monthly_tokens,
}


def main(names):
    global client
    results = {"sdk_version": openai.__version__}
    keys = PARAMS.get("keys", {})
    for name in names:
        scenario = SCENARIOS.get(name)
        if scenario is None:
            print(f"no scenario {name!r}; known: {sorted(SCENARIOS)}", file=sys.stderr)
            return 2
        client = make_client(keys.get(name, API_KEY))
        try:
            results[name] = scenario()
        except AssertionError as error:
            print(f"scenario {name} failed: {error}", file=sys.stderr)
            return 1
        except Exception:  # noqa: BLE001 - reported with its traceback
            print(f"scenario {name} raised:", file=sys.stderr)
            traceback.print_exc()
            return 1
    results["usages"] = usages
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
