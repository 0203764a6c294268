"""Tool servers from ATHENA_MCP_SERVERS: real MCP servers (the official SDK's, over Streamable HTTP and SSE,
in their own processes) listed, called, timed out, refused, cut short, lost and found again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from athena.observability import TOOL_SERVER_DOWN
from athena.tools import MCPToolbox, Tool, ToolPolicy, ToolServer
from tests.api.conftest import make_settings, serve
from tests.support.fake_llm import FakeLLM
from tests.support.hass import wait_for
from tests.support.mcp_server import LONG_NAME, MCPTestServer

AUTH = {"Authorization": "Bearer tool-token"}


@contextlib.asynccontextmanager
async def toolbox(*servers: ToolServer, **options: Any) -> AsyncIterator[MCPToolbox]:
    box = MCPToolbox(list(servers), **options)
    await box.open(wait=10.0)
    try:
        yield box
    finally:
        await box.close()


def server_for(mcp: MCPTestServer, name: str = "tools", **options: Any) -> ToolServer:
    headers = {"Authorization": f"Bearer {mcp.token}"} if mcp.token else {}
    options.setdefault("policy", ToolPolicy())
    return ToolServer(name, mcp.url, mcp.transport, headers=headers, **options)  # type: ignore[arg-type]


async def offered(box: MCPToolbox) -> dict[str, Tool]:
    return {t.name: t for t in await box.tools()}


@pytest.fixture(params=["streamable_http", "sse"])
def mcp(
    request: pytest.FixtureRequest, streamable_server: MCPTestServer, sse_server: MCPTestServer
) -> MCPTestServer:
    return streamable_server if request.param == "streamable_http" else sse_server


async def test_tools_are_listed_named_and_called(mcp: MCPTestServer) -> None:
    async with toolbox(server_for(mcp)) as box:
        tools = await offered(box)
        assert {"tools__echo", "tools__add", "tools__status", "tools__hang"} <= tools.keys()
        long = next(t for t in tools.values() if t.remote == LONG_NAME)
        assert len(long.name) == 64 and long.name.startswith("tools__a_tool_with")  # cut, with a hash suffix
        assert all(t.server == "tools" and not t.home for t in tools.values())
        assert tools["tools__add"].spec()["function"]["parameters"]["required"] == ["a", "b"]

        echo = await box.call(tools["tools__echo"], {"text": "hello there"})
        assert echo.ok and echo.text == "hello there" and echo.error is None
        assert echo.meta == {"server": "tools", "remote": "echo"}
        added = await box.call(tools["tools__add"], {"a": 2, "b": 3})
        assert added.ok and added.text == "5"
        status = await box.call(tools["tools__status"], {})
        assert status.ok and status.data == {"ok": True, "items": [1, 2, 3]}  # JSON results come parsed
        assert box.status()["servers"]["tools"]["state"] == "up"
        assert box.status()["servers"]["tools"]["transport"] == mcp.transport


async def test_invalid_arguments_are_refused_before_the_server_with_a_message_the_model_can_use(
    mcp: MCPTestServer,
) -> None:
    async with toolbox(server_for(mcp)) as box:
        tools = await offered(box)
        wrong_type = await box.call(tools["tools__add"], {"a": "two", "b": 3})
        assert not wrong_type.ok and wrong_type.error == "invalid_arguments"
        assert wrong_type.text == "invalid arguments for tools__add: a: 'two' is not of type 'integer'"
        missing = await box.call(tools["tools__add"], {"a": 2})
        assert missing.error == "invalid_arguments" and "'b' is a required property" in missing.text
        required_null = await box.call(tools["tools__echo"], {"text": None})
        assert required_null.error == "invalid_arguments"
        not_an_object = await box.call(tools["tools__echo"], ["hello"])  # type: ignore[arg-type]
        assert not_an_object.error == "invalid_arguments"
        # An optional parameter sent as null is left out rather than refused.
        optional_null = await box.call(tools["tools__hang"], {"seconds": 0.01, "extra": None})
        assert optional_null.ok and optional_null.text == "woke up"


async def test_a_tool_that_hangs_times_out_and_the_session_goes_on(mcp: MCPTestServer) -> None:
    async with toolbox(server_for(mcp), timeout=0.5) as box:
        tools = await offered(box)
        started = time.perf_counter()
        outcome = await box.call(tools["tools__hang"], {"seconds": 120})
        elapsed = time.perf_counter() - started
        assert not outcome.ok and outcome.error == "timeout"
        assert outcome.text == "tools__hang did not answer within 0.5 s"
        assert 0.5 <= elapsed < 60  # given up on at its timeout, not when the tool would have answered
        assert (await box.call(tools["tools__echo"], {"text": "still here"})).text == "still here"
        assert box.status()["servers"]["tools"]["state"] == "up"


async def test_a_server_timeout_of_its_own_wins(streamable_server: MCPTestServer) -> None:
    async with toolbox(server_for(streamable_server, timeout=0.2), timeout=30) as box:
        outcome = await box.call((await offered(box))["tools__hang"], {"seconds": 120})
        assert outcome.error == "timeout" and "0.2 s" in outcome.text


async def test_a_large_result_is_cut_with_a_marker(mcp: MCPTestServer) -> None:
    async with toolbox(server_for(mcp), result_chars=1000) as box:
        outcome = await box.call((await offered(box))["tools__big"], {"size": 20_000})
        assert outcome.ok
        assert outcome.text.startswith("x" * 1000)
        assert outcome.text.endswith("[… cut: 19000 more characters]")
        assert len(outcome.text) < 1100
        assert outcome.meta["cut"] == 19_000


async def test_a_failing_tool_is_an_outcome_not_an_exception(mcp: MCPTestServer) -> None:
    async with toolbox(server_for(mcp)) as box:
        outcome = await box.call((await offered(box))["tools__boom"], {})
        assert not outcome.ok and outcome.error == "tool_error"
        assert outcome.text.startswith("tools__boom failed:")


async def test_denied_tools_are_neither_offered_nor_callable(streamable_server: MCPTestServer) -> None:
    policy = ToolPolicy(allow=("*",), deny=("admin_*", "grow"))
    async with toolbox(server_for(streamable_server, policy=policy)) as box:
        tools = await offered(box)
        assert "tools__admin_reset" not in tools and "tools__grow" not in tools
        assert "tools__echo" in tools
        forged = Tool("tools__admin_reset", "", {"type": "object"}, "tools", "admin_reset")
        outcome = await box.call(forged, {})
        assert outcome.error == "unknown_tool" and not outcome.ok
        assert box.status()["servers"]["tools"]["offered"] == len(tools)


async def test_a_refused_token_means_no_tools_and_no_exception(streamable_server: MCPTestServer) -> None:
    wrong = ToolServer(
        "tools", streamable_server.url, headers={"Authorization": "Bearer nope"}, policy=ToolPolicy()
    )
    async with toolbox(wrong) as box:
        assert await box.tools() == ()
        status = box.status()["servers"]["tools"]
        assert status["state"] == "down" and status["error"]
        outcome = await box.call(Tool("tools__echo", "", {}, "tools", "echo"), {"text": "hi"})
        assert outcome.error == "unknown_tool"


async def test_a_server_going_away_takes_its_tools_and_they_come_back(tmp_path: Path) -> None:
    with MCPTestServer("streamable_http") as mcp:
        server = server_for(mcp, backoff=(0.05, 0.2))
        async with toolbox(server) as box:
            tools = await offered(box)
            assert "tools__echo" in tools
            downs = TOOL_SERVER_DOWN.labels(server="tools")._value.get()
            mcp.stop()
            outcome = await box.call(tools["tools__echo"], {"text": "anyone?"})
            assert not outcome.ok and outcome.error == "server_down"
            assert await box.tools() == ()  # gone for the rest of this turn
            assert box.status()["servers"]["tools"]["state"] == "down"
            await asyncio.sleep(1.0)  # it retries meanwhile (every 0.05-0.2 s), failing each time
            assert TOOL_SERVER_DOWN.labels(server="tools")._value.get() == downs + 1  # counted once
            mcp.start()
            assert await wait_for(lambda: server.up, 15), box.status()
            again = await offered(box)
            assert again.keys() == tools.keys()  # the same names
            assert (await box.call(again["tools__echo"], {"text": "back"})).text == "back"


async def test_the_list_is_refreshed_on_the_timer(tmp_path: Path) -> None:
    with MCPTestServer("streamable_http") as mcp:
        async with toolbox(server_for(mcp, refresh=0.3)) as box:
            tools = await offered(box)
            assert (await box.call(tools["tools__grow"], {"name": "sprout"})).ok
            assert await wait_for(lambda: "tools__sprout" in {t.name for t in box._current()}, 10)
            sprout = (await offered(box))["tools__sprout"]
            assert (await box.call(sprout, {})).text == "grown"


async def test_the_gateway_offers_an_extra_server_to_the_model(
    tmp_path: Path, fake_llm: FakeLLM, streamable_server: MCPTestServer
) -> None:
    spec = {"name": "calc", "url": streamable_server.url, "token": "tool-token", "deny": ["admin_*"]}
    settings = make_settings(tmp_path, llm_url=fake_llm.url + "/v1", mcp_servers=[spec])
    async with serve(settings) as gw:
        assert gw.core.toolbox is not None
        health = (await gw.client.get("/health")).json()
        assert health["tools"]["servers"]["calc"]["state"] == "up"
        assert health["tools"]["offered"] >= 5
        call = {"name": "calc__add", "arguments": {"a": 20, "b": 22}}
        fake_llm.configure(replies=[{"tool_calls": [call]}, "42."])
        calls = await gw.metric("athena_tool_calls_total", tool="calc__add", outcome="ok")
        reply = await gw.converse("what is twenty plus twenty-two", device_id="office")
        assert reply["response"]["speech"]["plain"]["speech"] == "42."
        chats = [r["body"] for r in fake_llm.requests if r["path"].endswith("/chat/completions")]
        offered_names = {t["function"]["name"] for t in chats[0]["tools"]}
        assert "calc__add" in offered_names and "calc__admin_reset" not in offered_names
        result = chats[1]["messages"][-1]
        assert result["role"] == "tool" and result["content"] == "42"
        assert await gw.metric("athena_tool_calls_total", tool="calc__add", outcome="ok") == calls + 1
        assert await gw.metric("athena_tool_server_up", server="calc") == 1


async def test_without_tool_servers_there_is_no_toolbox(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with serve(make_settings(tmp_path, llm_url=fake_llm.url + "/v1")) as gw:
        assert gw.core.toolbox is None
        assert (await gw.client.get("/health")).json()["tools"] == {"enabled": False}


async def test_a_dropped_sse_stream_is_noticed_without_a_call() -> None:
    """HA 2025.x restarting drops its SSE stream: the tools go before any turn trips over them."""
    with MCPTestServer("sse") as mcp:
        server = server_for(mcp, backoff=(0.05, 0.2))
        async with toolbox(server) as box:
            assert server.up
            mcp.stop()
            assert await wait_for(lambda: not server.up, 10)
            assert await box.tools() == ()
            mcp.start()
            assert await wait_for(lambda: server.up, 15), box.status()
            assert "tools__echo" in await offered(box)
