"""The engine's tool loop: a real engine, the fake LLM calling the tools it is offered, and a small toolbox
that acts on an in-memory home (a real implementation of the Toolbox protocol, shaped like HA's intent
tools' results; the MCP side is tested against real servers in tests/tools/)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from athena.config import Settings
from athena.engine import Engine
from athena.gateway import llm_backend, prompt_settings, session_policy
from athena.local.planner import last_memory
from athena.sessions.manager import SessionManager
from athena.stores import create_store
from athena.tools import Tool, ToolOutcome
from athena.turns import Turn
from tests.support.fake_llm import FakeLLM

LIGHTS = {"light.kitchen": "Kitchen", "light.living_room": "Living Room"}
SCHEMA = {
    "type": "object",
    "properties": {"area": {"type": "string"}, "name": {"type": "string"}, "domain": {"type": "array"}},
}


class HomeToolbox:
    """Lights by area, answered the way HA's intent tools answer (an IntentResponse dict)."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.on: set[str] = set()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.delay = delay
        self.offer = True

    async def tools(self) -> Sequence[Tool]:
        if not self.offer:
            return []
        return [
            Tool("HassTurnOn", "Turns on", SCHEMA, "home_assistant", "intent__HassTurnOn", home=True),
            Tool("GetLiveContext", "The home's state", {"type": "object"}, "home_assistant",
                 "homeassistant__GetLiveContext"),
        ]

    async def call(self, tool: Tool, arguments: Mapping[str, Any]) -> ToolOutcome:
        self.calls.append((tool.name, dict(arguments)))
        await asyncio.sleep(self.delay)
        if tool.name == "GetLiveContext":
            states = "\n".join(f"{e}: {'on' if e in self.on else 'off'}" for e in LIGHTS) + "\n" + "x" * 2000
            return ToolOutcome(states)
        hit = [e for e, area in LIGHTS.items() if area == arguments.get("area")]
        self.on.update(hit)
        data = {
            "speech": {},
            "response_type": "action_done",
            "data": {
                "success": [{"name": e, "type": "entity", "id": e} for e in hit],
                "failed": [],
            },
        }
        return ToolOutcome(orjson.dumps(data).decode(), data=data)


@pytest.fixture
def settings(tmp_path: Path, fake_llm: FakeLLM) -> Settings:
    return Settings(
        data_dir=tmp_path, store_url="memory://", llm_url=fake_llm.url + "/v1", llm_model="fake-model",
        api_token="t", llm_timeout=5.0, llm_first_token_timeout=5.0,
    )


@pytest.fixture
async def manager(settings: Settings) -> AsyncIterator[SessionManager]:
    manager = SessionManager(create_store(settings.store_url), session_policy(settings))
    await manager.start()
    yield manager
    await manager.stop()


@pytest.fixture
async def toolbox() -> HomeToolbox:
    return HomeToolbox()


@pytest.fixture
async def engine(settings: Settings, manager: SessionManager, toolbox: HomeToolbox) -> AsyncIterator[Engine]:
    llm = llm_backend(settings)
    await llm.open()
    yield Engine(
        manager, llm, prompt=prompt_settings(settings), toolbox=toolbox, tool_rounds=3,
        area_of=lambda turn: "Kitchen" if turn.device_id == "kitchen-sat" else None,
    )
    await llm.close()


def turn_on(**arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": "HassTurnOn", "arguments": arguments}]}


async def test_a_home_call_without_a_place_acts_in_the_devices_room_and_is_remembered(
    engine: Engine, manager: SessionManager, toolbox: HomeToolbox, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(replies=[turn_on(domain=["light"]), "The kitchen light is on now."])
    reply = await engine.handle(Turn("it's far too dark to read in here", device_id="kitchen-sat"))
    assert reply.speech == "The kitchen light is on now."
    assert toolbox.calls == [("HassTurnOn", {"domain": ["light"], "area": "Kitchen"})]
    assert toolbox.on == {"light.kitchen"}  # not the living room's
    assert reply.response_type == "action_done" and [t.id for t in reply.success] == ["light.kitchen"]

    first, second = (r["body"] for r in fake_llm.requests)
    assert {t["function"]["name"] for t in first["tools"]} == {"HassTurnOn", "GetLiveContext"}
    assert '"Kitchen"' in first["messages"][-1]["content"]  # the model is told where the user is
    result = second["messages"][-1]
    assert result["role"] == "tool" and "light.kitchen" in result["content"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "HassTurnOn"

    session = await manager.active("kitchen-sat")
    assert session is not None
    saved = await manager.messages(session.id, session.device)
    assert [m.role for m in saved] == ["user", "assistant", "tool", "assistant"]
    assert saved[1].meta.tool_calls[0].name == "HassTurnOn"
    assert orjson.loads(saved[1].meta.tool_calls[0].arguments)["area"] == "Kitchen"
    assert orjson.loads(saved[2].content) == {
        "response_type": "action_done", "success": ["light.kitchen"], "failed": [],
    }
    memory = last_memory(saved)  # "now turn them off" works from here, locally
    assert memory is not None and memory.name == "HassTurnOn"
    assert memory.entity_ids == ["light.kitchen"] and memory.domain == "light"
    assert memory.targets() == {"domain": ["light"], "area": "Kitchen"}


async def test_a_later_turn_sees_what_was_done_compactly(
    engine: Engine, toolbox: HomeToolbox, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(replies=[{"tool_calls": [{"name": "GetLiveContext"}]}, "Both lights are off."])
    await engine.handle(Turn("is anything still on?", device_id="hall"))
    live = fake_llm.requests[-1]["body"]["messages"][-1]["content"]
    assert len(live) > 2000  # the model read the whole live context when it asked...
    fake_llm.configure(replies=["Nothing changed."])
    await engine.handle(Turn("and now?", device_id="hall"))
    kept = [m for m in fake_llm.requests[-1]["body"]["messages"] if m["role"] == "tool"]
    assert len(kept) == 1 and len(kept[0]["content"]) < 500 and kept[0]["content"].endswith("…(cut)")


async def test_parallel_calls_in_one_round(engine: Engine, toolbox: HomeToolbox, fake_llm: FakeLLM) -> None:
    toolbox.delay = 0.3
    both = {"tool_calls": [
        {"name": "HassTurnOn", "arguments": {"area": "Kitchen"}},
        {"name": "HassTurnOn", "arguments": {"area": "Living Room"}},
    ]}
    fake_llm.configure(replies=[both, "Done, both rooms."])
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await engine.handle(Turn("lights on everywhere", device_id="hall"))
    assert reply.speech == "Done, both rooms." and toolbox.on == set(LIGHTS)
    assert loop.time() - started < 0.55  # two 0.3 s calls side by side, not one after the other


async def test_unknown_tools_and_bad_arguments_are_told_to_the_model(
    engine: Engine, toolbox: HomeToolbox, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(replies=[
        {"tool_calls": [{"name": "UnlockFrontDoor", "arguments": {}}]},
        {"tool_calls": [{"name": "HassTurnOn", "arguments": ["kitchen"]}]},
        "I could not do that.",
    ])
    reply = await engine.handle(Turn("open up", device_id="hall"))
    assert reply.speech == "I could not do that."
    results = [m["content"] for r in fake_llm.requests for m in r["body"]["messages"] if m["role"] == "tool"]
    assert "no tool named 'UnlockFrontDoor'" in results[0]
    assert "JSON object" in results[-1]
    assert toolbox.calls == []


async def test_a_model_that_keeps_calling_tools_gets_an_apology(
    engine: Engine, manager: SessionManager, toolbox: HomeToolbox, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(replies=[turn_on(area="Kitchen")] * 10)
    reply = await engine.handle(Turn("do it again and again", device_id="hall"))
    assert reply.speech == "Sorry, I couldn't finish that. Please try again in simpler steps."
    assert len(toolbox.calls) == 3  # ATHENA_TOOL_ROUNDS=3 here
    assert len(fake_llm.requests) == 4  # the fourth answer asked for tools again: not run
    session = await manager.active("hall")
    assert session is not None
    saved = await manager.messages(session.id, session.device)
    assert saved[-1].meta.finish_reason == "tool_rounds"


async def test_past_the_deadline_no_new_round_is_started(
    engine: Engine, toolbox: HomeToolbox, fake_llm: FakeLLM
) -> None:
    engine.answer_deadline = 0.2
    toolbox.delay = 0.3
    fake_llm.configure(replies=[turn_on(area="Kitchen"), turn_on(area="Living Room"), "never"])
    reply = await engine.handle(Turn("slowly", device_id="hall"))
    assert reply.speech.startswith("Sorry, I couldn't finish that.")
    assert len(toolbox.calls) == 1


async def test_no_tools_are_offered_when_none_answer_or_the_client_brings_its_own(
    engine: Engine, toolbox: HomeToolbox, fake_llm: FakeLLM
) -> None:
    toolbox.offer = False
    await engine.handle(Turn("hello", device_id="hall"))
    assert "tools" not in fake_llm.requests[-1]["body"]
    toolbox.offer = True
    own = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    fake_llm.configure(replies=[{"tool_calls": [{"name": "get_weather", "arguments": {}}]}])
    reply = await engine.handle(Turn("weather?", device_id="hall", tools=own))
    assert [t["function"]["name"] for t in fake_llm.requests[-1]["body"]["tools"]] == ["get_weather"]
    assert [c.name for c in reply.tool_calls] == ["get_weather"] and toolbox.calls == []


async def test_streamed_rounds_keep_their_words_apart(
    engine: Engine, toolbox: HomeToolbox, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(replies=[
        {"content": "Let me check.", "tool_calls": [{"name": "GetLiveContext"}]}, "All lights are off.",
    ])
    run = await engine.open(Turn("anything on?", device_id="hall"))
    heard = "".join([d async for d in run.deltas()])
    assert heard.strip() == "Let me check. All lights are off."
    assert run.reply is not None and run.reply.speech == "Let me check. All lights are off."
