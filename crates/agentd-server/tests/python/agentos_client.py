"""Drives agentd's AgentOS face with agno's own AgentOSClient and prints what it saw as one JSON line.

Environment: BASE_URL (the server), API_KEY (a bearer key), PARAMS (JSON: agent_id, user_id).
Arguments: the scenarios to run, in order. Each scenario records what the client parsed; a client
exception (a pydantic validation error on a field agentd shapes differently, an HTTP error) fails the
script, so the Rust side sees it with its traceback.
"""

import asyncio
import json
import os
import sys

from agno.client import AgentOSClient

BASE_URL = os.environ["BASE_URL"]
HEADERS = {"Authorization": f"Bearer {os.environ['API_KEY']}"}
PARAMS = json.loads(os.environ.get("PARAMS", "{}"))


def model_of(model):
    return None if model is None else model.model_dump(exclude_none=True)


async def list_agents(client, report):
    agents = await client.list_agents(headers=HEADERS)
    report["agents"] = [
        {"id": a.id, "name": a.name, "description": a.description, "model": model_of(a.model)}
        for a in agents
    ]


async def get_agent(client, report):
    agent = await client.aget_agent(PARAMS["agent_id"], headers=HEADERS)
    report["agent"] = {
        "id": agent.id,
        "name": agent.name,
        "description": agent.description,
        "model": model_of(agent.model),
        "tools": agent.tools,
    }


async def run(client, report):
    output = await client.run_agent(
        PARAMS["agent_id"], "Say hello.", user_id=PARAMS.get("user_id"), headers=HEADERS
    )
    report["run"] = {
        "run_id": output.run_id,
        "session_id": output.session_id,
        "agent_id": output.agent_id,
        "content": output.content,
        "status": str(getattr(output.status, "value", output.status)),
        "input_tokens": output.metrics.input_tokens if output.metrics else None,
        "output_tokens": output.metrics.output_tokens if output.metrics else None,
    }


async def stream(client, report):
    events = []
    content = ""
    run_id = session_id = None
    async for event in client.run_agent_stream(
        PARAMS["agent_id"],
        "Stream a greeting.",
        session_id=report.get("run", {}).get("session_id"),
        user_id=PARAMS.get("user_id"),
        headers=HEADERS,
    ):
        events.append(type(event).__name__)
        if type(event).__name__ == "RunContentEvent" and event.content:
            content += event.content
        run_id = run_id or getattr(event, "run_id", None)
        session_id = session_id or getattr(event, "session_id", None)
    report["stream"] = {
        "events": events,
        "content": content,
        "run_id": run_id,
        "session_id": session_id,
    }


async def sessions(client, report):
    page = await client.get_sessions(user_id=PARAMS.get("user_id"), headers=HEADERS)
    report["sessions"] = [
        {"session_id": s.session_id, "agent_id": s.agent_id, "user_id": s.user_id}
        for s in page.data
    ]
    report["sessions_meta"] = page.meta.model_dump()
    session_id = report["run"]["session_id"]
    runs = await client.get_session_runs(session_id, headers=HEADERS)
    report["session_runs"] = [
        {"run_id": r.run_id, "content": r.content} for r in runs
    ]
    detail = await client.get_session(session_id, headers=HEADERS)
    report["session_detail"] = {
        "type": type(detail).__name__,
        "session_id": detail.session_id,
        "agent_session_id": detail.agent_session_id,
        "session_name": detail.session_name,
        "agent_id": detail.agent_id,
    }


async def pause_continue(client, report):
    paused = await client.run_agent(
        PARAMS["agent_id"], "Look it up.", user_id=PARAMS.get("user_id"), headers=HEADERS
    )
    tools = paused.tools or []
    for tool in tools:
        tool.result = "42"
    done = await client.continue_agent_run(
        PARAMS["agent_id"],
        paused.run_id,
        tools=tools,
        session_id=paused.session_id,
        user_id=PARAMS.get("user_id"),
        headers=HEADERS,
    )
    report["pause_continue"] = {
        "paused_status": str(getattr(paused.status, "value", paused.status)),
        "paused_tools": [t.tool_name for t in tools],
        "run_id": paused.run_id,
        "continued_run_id": done.run_id,
        "status": str(getattr(done.status, "value", done.status)),
        "content": done.content,
    }


async def memories(client, report):
    created = await client.create_memory(
        "Ada drinks green tea.", user_id=PARAMS["user_id"], topics=["food"], headers=HEADERS
    )
    page = await client.list_memories(user_id=PARAMS["user_id"], headers=HEADERS)
    topics = await client.get_memory_topics(headers=HEADERS)
    report["memories"] = {
        "created": {"memory_id": created.memory_id, "memory": created.memory, "topics": created.topics},
        "listed": [m.memory for m in page.data],
        "total_count": page.meta.total_count,
        "topics": topics,
    }


async def knowledge(client, report):
    uploaded = await client.upload_knowledge_content(
        name="tea notes", text_content="Green tea is brewed at 80 degrees.", headers=HEADERS
    )
    status = None
    for _ in range(100):
        status = await client.get_knowledge_content_status(uploaded.id, headers=HEADERS)
        if str(getattr(status.status, "value", status.status)) != "processing":
            break
        await asyncio.sleep(0.05)
    config = await client.get_knowledge_config(headers=HEADERS)
    found = await client.search_knowledge("tea", search_type="keyword", headers=HEADERS)
    report["knowledge"] = {
        "status": str(getattr(status.status, "value", status.status)),
        "config_fields": sorted(config.model_dump(exclude_none=True).keys()),
        "results": [{"content": r.content, "content_id": r.content_id} for r in found.data],
        "content_id": uploaded.id,
    }


async def cancel(client, report):
    started = await client.run_agent(
        PARAMS["agent_id"], "Talk for a long time.", headers=HEADERS, background="true"
    )
    await client.cancel_agent_run(PARAMS["agent_id"], started.run_id, headers=HEADERS)
    status = None
    for _ in range(100):
        run = await client.get_session_run(started.session_id, started.run_id, headers=HEADERS)
        status = str(getattr(run.status, "value", run.status))
        if status not in ("PENDING", "RUNNING"):
            break
        await asyncio.sleep(0.05)
    report["cancel"] = {"started_status": str(getattr(started.status, "value", started.status)), "status": status}


SCENARIOS = {
    "cancel": cancel,
    "pause_continue": pause_continue,
    "memories": memories,
    "knowledge": knowledge,
    "list_agents": list_agents,
    "get_agent": get_agent,
    "run": run,
    "stream": stream,
    "sessions": sessions,
}


async def main():
    client = AgentOSClient(base_url=BASE_URL, timeout=20.0)
    report = {}
    for name in sys.argv[1:]:
        await SCENARIOS[name](client, report)
    print(json.dumps(report, default=str))


asyncio.run(main())
