"""Turns through the whole gateway with Home Assistant's own tools: a real `hass` of each version with `demo:`
and its MCP server added through the config flow, the fake LLM calling the tools it is offered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import LiveGateway, make_settings, serve
from tests.support.fake_llm import FakeLLM
from tests.support.gateway import free_port
from tests.support.hass import HassProcess

KITCHEN, LIVING = "light.kitchen_lights", "light.living_room_rgbww_lights"
ADMIN = ("config__", "render_template", "call_action", "search_actions", "system_log", "system_health")


@pytest.fixture
async def athena(
    mcp_hass: tuple[HassProcess, dict[str, Any]], fake_llm: FakeLLM, tmp_path: Path
) -> AsyncIterator[tuple[LiveGateway, HassProcess, dict[str, Any]]]:
    proc, home = mcp_hass
    settings = make_settings(
        tmp_path, llm_url=fake_llm.url + "/v1", ha_url=proc.url, ha_token=proc.token, llm_timeout=20.0
    )
    async with serve(settings) as gw:
        for _ in range(200):  # the toolbox connects in the background
            if await gw.core.toolbox.tools():  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
        yield gw, proc, home


def offered(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request["body"].get("tools") or ()]


def tool_results(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["body"]["messages"] if m["role"] == "tool"]


async def test_the_llm_acts_in_the_devices_room_and_a_follow_up_is_local(
    athena: tuple[LiveGateway, HassProcess, dict[str, Any]], fake_llm: FakeLLM
) -> None:
    gw, proc, home = athena
    kitchen_device = home["devices"][KITCHEN]
    for light in (KITCHEN, LIVING):
        proc.call_service("light", "turn_off", light)
    fake_llm.configure(replies=[
        {"tool_calls": [{"name": "HassTurnOn", "arguments": {"domain": ["light"]}}]},
        "There, the kitchen light is on.",
    ])
    reply = await gw.converse("it's far too dark to read in here", device_id=kitchen_device)
    assert reply["response"]["speech"]["plain"]["speech"] == "There, the kitchen light is on."
    assert reply["response"]["response_type"] == "action_done"
    assert proc.state(KITCHEN)["state"] == "on" and proc.state(LIVING)["state"] == "off"
    first, second = fake_llm.requests[-2:]
    names = offered(first)
    assert "HassTurnOn" in names and "GetLiveContext" in names
    assert not [n for n in names if n.startswith(ADMIN) or any(a in n for a in ADMIN)]  # admin: never
    assert "Kitchen" in tool_results(second)[0]  # HA's result went back to the model

    # "Now turn them off": the local path, from what the LLM's tool call did; the LLM is not asked.
    calls = len(fake_llm.requests)
    off = await gw.converse("now turn them off", device_id=kitchen_device)
    assert len(fake_llm.requests) == calls
    assert off["response"]["response_type"] == "action_done"
    assert proc.state(KITCHEN)["state"] == "off" and proc.state(LIVING)["state"] == "off"

    # The home's live state reaches the model; a later turn's history shows what was done, compactly.
    fake_llm.configure(replies=[{"tool_calls": [{"name": "GetLiveContext"}]}, "Everything is off."])
    await gw.converse("is anything still on?", device_id=kitchen_device)
    live = tool_results(fake_llm.requests[-1])[-1]
    assert "Kitchen" in live and len(live) > 200
    fake_llm.configure(replies=["Fine."])
    await gw.converse("thanks", device_id=kitchen_device)
    history = fake_llm.requests[-1]["body"]["messages"]
    called = [c["function"]["name"] for m in history for c in m.get("tool_calls") or ()]
    assert called == ["HassTurnOn", "GetLiveContext"]
    assert all(len(m["content"]) < 500 for m in history if m["role"] == "tool")


async def test_an_invalid_tool_call_gets_an_error_result(
    athena: tuple[LiveGateway, HassProcess, dict[str, Any]], fake_llm: FakeLLM
) -> None:
    gw, proc, home = athena
    fake_llm.configure(replies=[
        {"tool_calls": [{"name": "HassTurnOn", "arguments": {"area": 42}}]}, "I could not do that.",
    ])
    reply = await gw.converse("switch something on", device_id=home["devices"][LIVING])
    assert reply["response"]["speech"]["plain"]["speech"] == "I could not do that."
    [result] = tool_results(fake_llm.requests[-1])
    assert "area" in result and proc.state(LIVING)["state"] == "off"


async def test_without_a_reachable_tool_server_the_model_answers_without_tools(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path, llm_url=fake_llm.url + "/v1", ha_url=f"http://127.0.0.1:{free_port()}", ha_token="t"
    )
    async with serve(settings) as gw:
        reply = await gw.converse("tell me a joke", device_id="hall")
    assert reply["response"]["response_type"] == "query_answer"
    assert "tools" not in fake_llm.requests[-1]["body"]
