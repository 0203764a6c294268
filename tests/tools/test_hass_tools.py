"""Home Assistant's own tools through its `mcp_server` integration, on a real hass of each version (2025.4.4:
SSE; 2026.11: Streamable HTTP at /api/mcp/assist): found, named the same on both, acting on the demo home,
never offering HA's admin tools, and absent — not failing — while the integration is not added or HA is down.

The first test adds the integration through its config flow, as a user does; the others need it added
(the `mcp_hass` fixture adds it when the first test was not selected).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from athena.observability import TOOL_SERVER_DOWN
from athena.tools import HA_POLICY, HOME_ASSISTANT, HomeAssistantTools, MCPToolbox, Tool, ToolPolicy
from athena.tools.names import VALID
from tests.api.conftest import make_settings, serve
from tests.support.fake_llm import FakeLLM
from tests.support.gateway import free_port
from tests.support.hass import HassProcess, wait_for
from tests.tools.conftest import add_mcp_server, mcp_entries
from tests.tools.test_names_policy import HA_2026_ADMIN

Home = tuple[HassProcess, dict[str, Any]]
# Offered under these names by both versions (2026.x lists more: GetDateTime, HassStopMoving, ...).
BOTH = {
    "HassTurnOn", "HassTurnOff", "HassSetPosition", "HassCancelAllTimers", "HassClimateSetTemperature",
    "HassHumidifierSetpoint", "HassHumidifierMode", "HassLightSet", "HassMediaUnpause", "HassMediaPause",
    "HassMediaNext", "HassMediaPrevious", "HassSetVolume", "HassVacuumStart", "HassVacuumReturnToBase",
    "GetLiveContext",
}


@contextlib.asynccontextmanager
async def ha_tools(
    proc: HassProcess, token: str = "", wait: float = 20.0, **options: Any
) -> AsyncIterator[tuple[MCPToolbox, HomeAssistantTools]]:
    """HA's tools through the owner's token, or `token`."""
    options.setdefault("policy", HA_POLICY)
    server = HomeAssistantTools(proc.url, token or proc.token, **options)
    box = MCPToolbox([server])
    await box.open(wait=wait)
    try:
        yield box, server
    finally:
        await box.close()


async def offered(box: MCPToolbox) -> dict[str, Tool]:
    return {t.name: t for t in await box.tools()}


def is_current(proc: HassProcess) -> bool:
    return not proc.version.startswith("2025.")


async def state(proc: HassProcess, entity_id: str) -> str:
    return str((await asyncio.to_thread(proc.state, entity_id))["state"])


async def test_no_tools_until_the_integration_is_added_then_they_appear_without_a_restart(
    tools_hass: Home, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    proc, home = tools_hass
    if await mcp_entries(proc.url, proc.token):
        pytest.fail("this test must run before HA's MCP server is added (keep it first in the module)")
    settings = make_settings(
        tmp_path, llm_url=fake_llm.url + "/v1", ha_url=proc.url, ha_token=proc.token, mcp_refresh=300
    )
    async with serve(settings) as gw:
        box = gw.core.toolbox
        assert box is not None
        tools = (await gw.client.get("/health")).json()["tools"]
        ha = tools["servers"][HOME_ASSISTANT]
        assert ha["state"] == "not_configured" and tools["offered"] == 0
        assert "Model Context Protocol Server" in ha["error"]
        assert await box.tools() == ()
        downs = TOOL_SERVER_DOWN.labels(server=HOME_ASSISTANT)._value.get()
        for _ in range(3):  # retried (here: at once, as HA's events ask), said and counted once
            box.refresh_soon(HOME_ASSISTANT)
            await asyncio.sleep(1.5)
        assert box.status()["servers"][HOME_ASSISTANT]["state"] == "not_configured"
        assert TOOL_SERVER_DOWN.labels(server=HOME_ASSISTANT)._value.get() == downs

        await add_mcp_server(proc.url, proc.token)  # HA's component_loaded event: listed again, no restart
        assert await wait_for(lambda: box.status()["servers"][HOME_ASSISTANT]["state"] == "up", 30)
        status = (await gw.client.get("/health")).json()["tools"]["servers"][HOME_ASSISTANT]
        expected = "/api/mcp/assist" if is_current(proc) else "/mcp_server/sse"
        assert status["url"] == proc.url + expected
        assert (await offered(box)).keys() >= BOTH

        # The model's call through the gateway: "too dark in here" from a device in the kitchen turns on the
        # kitchen's lights (the engine names the device's room; HA's MCP context has no device).
        await asyncio.to_thread(proc.call_service, "light", "turn_off", "all")
        kitchen_device = home["devices"]["light.kitchen_lights"]
        call = {"name": "HassTurnOn", "arguments": {"domain": ["light"]}}
        fake_llm.configure(replies=[{"tool_calls": [call]}, "The kitchen lights are on."])
        calls = await gw.metric("athena_tool_calls_total", tool="HassTurnOn", outcome="ok")
        reply = await gw.converse("it is far too dark to read in here", device_id=kitchen_device)
        assert reply["response"]["speech"]["plain"]["speech"] == "The kitchen lights are on."
        assert await state(proc, "light.kitchen_lights") == "on"
        assert await state(proc, "light.living_room_rgbww_lights") == "off"
        assert await gw.metric("athena_tool_calls_total", tool="HassTurnOn", outcome="ok") == calls + 1
        await asyncio.to_thread(proc.call_service, "light", "turn_off", "all")


async def test_the_same_names_on_every_version(mcp_hass: Home) -> None:
    proc, _ = mcp_hass
    async with ha_tools(proc) as (box, _):
        tools = await offered(box)
        assert tools.keys() >= BOTH
        assert all(VALID.match(name) and "__" not in name for name in tools)
        turn_on = tools["HassTurnOn"]
        assert turn_on.remote == ("intent__HassTurnOn" if is_current(proc) else "HassTurnOn")
        assert turn_on.home and turn_on.server == HOME_ASSISTANT
        assert {"name", "area", "floor", "domain"} <= turn_on.parameters["properties"].keys()
        assert not tools["GetLiveContext"].home  # not an intent: the engine adds no room to it
        if is_current(proc):
            assert tools["GetDateTime"].remote == "llm__GetDateTime"
            assert tools["HassLightSet"].remote == "light__HassLightSet"


async def test_turning_on_the_kitchen_by_area_leaves_the_living_room_alone(mcp_hass: Home) -> None:
    proc, _ = mcp_hass
    await asyncio.to_thread(proc.call_service, "light", "turn_off", "all")
    async with ha_tools(proc) as (box, _):
        tools = await offered(box)
        outcome = await box.call(tools["HassTurnOn"], {"area": "Kitchen", "domain": ["light"]})
        assert outcome.ok, outcome.text
        assert outcome.data["response_type"] == "action_done"
        assert {"type": "entity", "id": "light.kitchen_lights", "name": "Kitchen Lights"} in (
            outcome.data["data"]["success"]
        )
        assert outcome.data["data"]["failed"] == []
        assert await state(proc, "light.kitchen_lights") == "on"
        assert await state(proc, "light.living_room_rgbww_lights") == "off"

        # HA's schema, checked before HA sees the call: domain is a list.
        wrong = await box.call(tools["HassTurnOff"], {"area": "Kitchen", "domain": "light"})
        assert wrong.error == "invalid_arguments" and "domain" in wrong.text
        assert await state(proc, "light.kitchen_lights") == "on"
    await asyncio.to_thread(proc.call_service, "light", "turn_off", "all")


async def test_the_live_context_reads_the_homes_states(mcp_hass: Home) -> None:
    proc, _ = mcp_hass
    async with ha_tools(proc) as (box, _):
        outcome = await box.call((await offered(box))["GetLiveContext"], {})
        assert outcome.ok
        assert outcome.text.startswith("Live Context:")  # the text itself, not its JSON wrapper
        assert "Kitchen Lights" in outcome.text and "state:" in outcome.text
        assert isinstance(outcome.data, dict) and "result" in outcome.data


async def test_a_token_of_a_user_who_is_not_an_administrator_acts_on_the_home(mcp_hass: Home) -> None:
    """What an operator should give Athena: a plain user's token. HA serves it the Assist tools (2026.x: at
    /api/mcp/assist; its /api/mcp refuses non-administrators) and they act as the owner's do."""
    proc, _ = mcp_hass
    async with aiohttp.ClientSession() as http:  # the token is truly not an administrator's
        for token, status in ((proc.token, 200), (proc.user_token, 401)):
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{proc.url}/api/error_log", headers=headers) as r:  # admin only
                assert r.status == status
    if is_current(proc):
        admin_only = [("/api/mcp", "streamable_http")]
        async with ha_tools(proc, endpoints=admin_only) as (_, server):
            assert server.up
        async with ha_tools(proc, proc.user_token, wait=10.0, endpoints=admin_only) as (box, server):
            assert not server.up and await box.tools() == ()
    await asyncio.to_thread(proc.call_service, "light", "turn_off", "all")
    async with ha_tools(proc, proc.user_token) as (box, server):
        tools = await offered(box)
        assert server.up and tools.keys() >= BOTH, box.status()
        outcome = await box.call(tools["HassTurnOn"], {"area": "Kitchen", "domain": ["light"]})
        assert outcome.ok, outcome.text
        assert await state(proc, "light.kitchen_lights") == "on"
        assert "Kitchen Lights" in (await box.call(tools["GetLiveContext"], {})).text
    await asyncio.to_thread(proc.call_service, "light", "turn_off", "all")


@pytest.mark.parametrize("allow", [None, ["*"]], ids=["default", "allow-all"])
async def test_no_admin_tool_is_ever_offered_even_with_an_admin_token(
    mcp_hass: Home, allow: list[str] | None
) -> None:
    """2026.11's default /api/mcp and its SSE endpoint list HA's admin API to an admin token (the tests' token
    is the owner's): none of it reaches the model, even when the allow list is opened to everything."""
    proc, _ = mcp_hass
    endpoints: list[list[tuple[str, Any]]] = [[("/mcp_server/sse", "sse")]]
    if is_current(proc):
        endpoints.insert(0, [("/api/mcp", "streamable_http")])
    policy = ToolPolicy.of(allow, None, default=HA_POLICY)
    for only in endpoints:
        async with ha_tools(proc, endpoints=only, policy=policy) as (box, server):
            assert server.up, box.status()
            listed = {t.name for t in server.listing}
            if is_current(proc):
                assert {"config__get_config_entries", "homeassistant__render_template"} <= listed
            tools = await box.tools()
            assert {t.name for t in tools} >= BOTH
            assert not {t.remote for t in tools} & set(HA_2026_ADMIN)
            assert not any(t.remote.split("__", 1)[0] in ("config", "system_log", "search") for t in tools)
            forged = Tool("render_template", "", {"type": "object"}, HOME_ASSISTANT,
                          "homeassistant__render_template")
            outcome = await box.call(forged, {"template": "{{ states | count }}"})
            assert outcome.error == "unknown_tool" and not outcome.ok
    # Probing the endpoints and dropping SSE sessions leaves nothing in HA's log beyond warnings.
    assert not proc.log_lines("mcp", ("ERROR", "CRITICAL")), proc.log_lines("mcp", ("ERROR", "CRITICAL"))


async def test_home_assistant_unreachable_means_no_tools_and_no_exception() -> None:
    server = HomeAssistantTools(f"http://127.0.0.1:{free_port()}", "token", policy=HA_POLICY)
    box = MCPToolbox([server])
    await box.open(wait=5.0)
    try:
        assert await box.tools() == ()
        status = box.status()["servers"][HOME_ASSISTANT]
        assert status["state"] == "down" and "cannot reach Home Assistant" in status["error"]
        turn_on = Tool("HassTurnOn", "", {}, HOME_ASSISTANT, "HassTurnOn")
        outcome = await box.call(turn_on, {"area": "Kitchen"})
        assert not outcome.ok and outcome.error == "unknown_tool"
    finally:
        await box.close()
