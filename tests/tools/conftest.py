"""Fixtures: a real `hass` of each version for the tool tests (its own process: adding HA's MCP server
integration must not change what the other suites' shared hass offers), and real MCP tool servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.hass import HassProcess, furnish, hass_version_params, require_version
from tests.support.mcp_server import MCPTestServer


@pytest.fixture(scope="module", **hass_version_params())
def tools_hass(request: pytest.FixtureRequest) -> Iterator[tuple[HassProcess, dict[str, Any]]]:
    """A fresh hass with the demo lights in rooms, and HA's MCP server NOT yet added (the first test of
    test_hass_tools.py adds it through the config flow, as a user does)."""
    require_version(request.param)
    proc = HassProcess(version=request.param).start()
    try:
        home = asyncio.run(furnish(proc.url, proc.token))
        yield proc, home
    finally:
        proc.stop()


async def mcp_entries(url: str, token: str) -> list[dict[str, Any]]:
    entries_url = f"{url}/api/config/config_entries/entry"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(entries_url, params={"domain": "mcp_server"}) as r,
    ):
        r.raise_for_status()
        entries: list[dict[str, Any]] = await r.json()
    return [e for e in entries if e.get("domain") == "mcp_server"]


async def add_mcp_server(url: str, token: str) -> dict[str, Any]:
    """Add the "Model Context Protocol Server" integration through its config flow, taking the form's
    defaults (2025.4: `llm_hass_api` = "assist"; 2026.11: no field, all LLM APIs, admin required)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.post(f"{url}/api/config/config_entries/flow", json={"handler": "mcp_server"}) as r:
            r.raise_for_status()
            form = await r.json()
        defaults = {f["name"]: f["default"] for f in form.get("data_schema") or [] if "default" in f}
        async with http.post(f"{url}/api/config/config_entries/flow/{form['flow_id']}", json=defaults) as r:
            r.raise_for_status()
            done: dict[str, Any] = await r.json()
    assert done["type"] == "create_entry", done
    return done


@pytest.fixture(scope="module")
def mcp_hass(tools_hass: tuple[HassProcess, dict[str, Any]]) -> tuple[HassProcess, dict[str, Any]]:
    """`tools_hass` with HA's MCP server added (once)."""
    proc, _ = tools_hass

    async def ensure() -> None:
        if not await mcp_entries(proc.url, proc.token):
            await add_mcp_server(proc.url, proc.token)

    asyncio.run(ensure())
    return tools_hass


@pytest.fixture(scope="module")
def streamable_server() -> Iterator[MCPTestServer]:
    with MCPTestServer("streamable_http", token="tool-token") as server:
        yield server


@pytest.fixture(scope="module")
def sse_server() -> Iterator[MCPTestServer]:
    with MCPTestServer("sse") as server:
        yield server
