"""The usage figures on a scripted set of turns, checked against figures this test computes itself from the
turns' replies and their saved transcripts. A real engine: SessionManager on the memory store, a local
handler, the fake LLM (answers, tool calls, failures), the device policy."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from athena.config import Settings
from athena.engine import Engine, PromptSettings
from athena.gateway import llm_backend, session_policy
from athena.records import Message
from athena.sessions.manager import SessionManager
from athena.stores import create_store
from athena.turns import LocalAnswer, Turn
from tests.stores.support import FakeClock
from tests.support.fake_llm import FakeLLM

TOOL = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]


class Lights:
    async def handle(self, turn: Turn, history: Sequence[Message]) -> LocalAnswer | None:
        return LocalAnswer("Turned on the lights") if turn.text == "lights on" else None


@pytest.fixture
async def engine(tmp_path: Path, fake_llm: FakeLLM) -> AsyncIterator[tuple[Engine, FakeClock]]:
    settings = Settings(
        data_dir=tmp_path,
        store_url="memory://",
        llm_url=fake_llm.url + "/v1",
        llm_model="fake-model",
        api_token="t",
        llm_timeout=2.0,
        device_policy="known",
        devices={d: {"status": "allowed"} for d in ("kitchen", "office")},
    )
    clock = FakeClock()
    clock.now = float(int(clock.now // 86_400) * 86_400 + 3600)  # 01:00 UTC: a day's turns stay in that day
    manager = SessionManager(create_store(settings.store_url), session_policy(settings), clock=clock)
    await manager.start()
    llm = llm_backend(settings)
    await llm.open()
    yield Engine(manager, llm, handlers=[Lights()], prompt=PromptSettings(time_zone="UTC")), clock
    await llm.close()
    await manager.stop()


def nearest_rank(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return min(v for v in values if sum(x <= v for x in values) >= p / 100 * len(values))


async def test_usage_figures_match_the_scripted_turns(
    engine: tuple[Engine, FakeClock], fake_llm: FakeLLM
) -> None:
    eng, clock = engine
    start = clock.now
    # (day, device, what is said, the path the test expects); each day is a fresh set of sessions.
    script: list[tuple[int, str, str, str]] = [
        (0, "kitchen", "hello", "llm"),
        (0, "kitchen", "lights on", "local"),
        (0, "kitchen", "what time is it", "tools"),
        (0, "kitchen", "llm fails", "error"),
        (0, "kitchen", "start over", "reset"),
        (0, "kitchen", "lights on", "local"),
        (0, "office", "hi", "llm"),
        (0, "porch", "let me in", "refused"),
        (1, "kitchen", "good morning", "llm"),
        (1, "office", "lights on", "local"),
        (1, "office", "and the weather", "llm"),
        (1, "office", "and tomorrow", "llm"),
    ]
    sessions: dict[tuple[int, str], set[str]] = {}
    day_now = 0
    for day, device, text, path in script:
        if day != day_now:
            clock.advance(86_400)  # sessions time out overnight
            day_now = day
        clock.advance(5)
        if path == "tools":
            fake_llm.configure(replies=[{"tool_calls": [{"name": "get_time", "arguments": {}}]}])
        fake_llm.configure(status=500 if path == "error" else None)
        reply = await eng.handle(Turn(text=text, device_id=device, tools=TOOL if path == "tools" else ()))
        assert reply.path == ("llm" if path == "tools" else path), (text, reply)
        if reply.session_id:
            sessions.setdefault((day, device), set()).add(reply.session_id)

    figures = await eng.operator.stats(start - 1, clock.now + 1)

    # The test's own figures: paths from the script, latencies from the saved transcripts.
    latencies: dict[str, list[float]] = {"llm": [], "local": [], "tools": [], "error": []}
    for device in ("kitchen", "office"):
        found = await eng.operator.device(device)
        ids = [p["id"] for p in found["past"]] + ([found["session"]["id"]] if found["session"] else [])
        for sid in ids:
            exported = await eng.operator.export(device, sid)
            assert exported is not None
            for m in exported["messages"]:
                meta = m["meta"]
                if m["role"] == "assistant" and meta.get("path"):
                    kind = "tools" if meta.get("tool_calls") else meta["path"]
                    latencies[kind].append(meta["latency_ms"])
    counted = Counter(path for _, _, _, path in script)
    totals = figures["totals"]
    assert totals["turns"] == len(script)
    assert totals["paths"] == {
        p: counted.get(p, 0) for p in ("llm", "local", "tools", "reset", "error", "refused")
    }
    assert totals["share"]["local"] == round(counted["local"] / len(script), 4)
    assert totals["tool_calls"] == 1
    for path, values in latencies.items():
        assert len(values) == counted[path]
        got = totals["latency_ms"][path]
        assert (got["n"], got["p50"], got["p95"]) == (
            len(values),
            nearest_rank(values, 50),
            nearest_rank(values, 95),
        ), path
    # Sessions: kitchen day 0 had two (start over began the second), everything else one each.
    in_session = Counter((d, dev) for d, dev, _, p in script if p not in ("reset", "refused"))
    assert totals["sessions"] == 5
    lengths = [3 + 1, 1, 1, 1, 3]  # kitchen day 0: llm, local, tools, error | local; office; kitchen; office
    assert sum(in_session.values()) == sum(lengths)
    expected_buckets = Counter("1" if n == 1 else "2" if n == 2 else "3-5" for n in lengths)
    assert {k: v for k, v in totals["session_turns"].items() if v} == dict(expected_buckets)
    day0 = datetime.fromtimestamp(start, UTC).date().isoformat()
    assert figures["days"][0]["day"] == day0
    assert [d["turns"] for d in figures["days"]] == [8, 4]
    by_device = {d["device"]: d for d in figures["devices"]}
    assert {k: v["turns"] for k, v in by_device.items()} == {"kitchen": 7, "office": 4, "porch": 1}
    assert by_device["office"]["days"][1]["paths"]["llm"] == 2
    # One device, one window.
    office = await eng.operator.stats(start - 1, clock.now + 1, "office")
    assert office["totals"]["turns"] == 4 and [d["device"] for d in office["devices"]] == ["office"]
    assert (await eng.operator.stats(clock.now + 10, clock.now + 20))["totals"]["turns"] == 0
    assert math.isclose(sum(totals["share"].values()), 1.0, abs_tol=1e-3)


def test_percentiles_are_nearest_rank() -> None:
    from athena.sessions.usage import percentile

    values = [5.0, 1.0, 4.0, 2.0, 3.0, 100.0, 6.0, 7.0, 8.0, 9.0]
    assert percentile(values, 50) == nearest_rank(values, 50) == 5.0
    assert percentile(values, 95) == nearest_rank(values, 95) == 100.0
    assert percentile([], 50) is None
