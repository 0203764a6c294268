"""End to end: a real `hass` process (demo home) with the integration installed the way a user installs it,
driven like a voice satellite over HA's WebSocket API, talking to a real gateway and the fake LLM.

Set-up goes through HA's public APIs only: the REST config-flow API adds the integration, the WebSocket API
creates the Assist pipeline and runs its intent stage with real device ids from HA's device registry.

Runs once per HA version (`ha-2025.4`: HA 2025.4.4; `ha-current`: HA 2026.11, in its own venv or the sid
chroot; see tests/support/hass.py). Only HTTP and WebSocket cross to that hass, so this file runs from
`.venv-ha` for both. HA's log lines about athena at WARNING and above are written to
.test-logs/hass-e2e-<version>.log.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_socket

import custom_components.athena  # noqa: F401 - module-level import: HA's loader must find our integration
from tests.support.fake_llm import said
from tests.support.gateway import GatewayProcess
from tests.support.hass import HassProcess, HassWS, furnish, hass_version_params, require_version
from tests_ha.support import REPO, FakeLLMProcess

AGENT = "conversation.athena"
LOG_DIR = Path(os.environ.get("ATHENA_TEST_LOG_DIR", REPO / ".test-logs"))


@pytest.fixture(scope="module", **hass_version_params())
def athena_hass(request: pytest.FixtureRequest) -> Iterator[HassProcess]:
    """`hass -c DIR` with custom_components/athena copied in before start, as a manual install does."""
    require_version(request.param)
    pytest_socket.enable_socket()
    # Assist pipelines come with `default_config:` in a real install; the shared demo config lacks them.
    proc = HassProcess(
        version=request.param,
        extra_yaml="assist_pipeline:\n",
        custom_components=[REPO / "custom_components" / "athena"],
    ).start()
    try:
        yield proc
    finally:
        _keep_log(proc, request.param)
        proc.stop()


def _keep_log(proc: HassProcess, version: str) -> None:
    """HA's whole log, and its warnings and errors about athena, kept after the run for the reader."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / f"hass-e2e-{version}-full.log").write_text(proc.log_text())
    lines = proc.log_lines("athena")
    (LOG_DIR / f"hass-e2e-{version}.log").write_text(
        f"# HA {proc.version}: {len(lines)} warning/error records mentioning athena\n{chr(10).join(lines)}\n"
    )


@pytest.fixture
async def http(athena_hass: HassProcess) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {athena_hass.token}"}
    async with aiohttp.ClientSession(base_url=athena_hass.url, headers=headers) as session:
        yield session


async def _post(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(path, json=body) as resp:
        data = await resp.json()
        assert resp.status == 200, data
        return data


async def _run_intent(
    hass: HassProcess, pipeline_id: str, text: str, device_id: str | None, conversation_id: str | None = None
) -> dict[str, Any]:
    """`assist_pipeline/run`, intent stage only: the text half of a satellite's turn. Returns the events."""
    return {kind: data for kind, data, _ in await _run_intent_timed(hass, pipeline_id, text, device_id,
                                                                      conversation_id)}


async def _run_intent_timed(
    hass: HassProcess, pipeline_id: str, text: str, device_id: str | None, conversation_id: str | None = None
) -> list[tuple[str, Any, float]]:
    """The same run, every event with the wall-clock time it arrived (intent-progress comes many times)."""
    async with aiohttp.ClientSession() as session, session.ws_connect(hass.url + "/api/websocket") as ws:
        assert (await ws.receive_json())["type"] == "auth_required"
        await ws.send_json({"type": "auth", "access_token": hass.token})
        assert (await ws.receive_json())["type"] == "auth_ok"
        await ws.send_json(
            {
                "id": 1,
                "type": "assist_pipeline/run",
                "start_stage": "intent",
                "end_stage": "intent",
                "input": {"text": text},
                "pipeline": pipeline_id,
                "device_id": device_id,
                "conversation_id": conversation_id,
            }
        )
        events: list[tuple[str, Any, float]] = []
        while not events or events[-1][0] != "run-end":
            msg = await ws.receive_json(timeout=30)
            if msg["type"] == "result":
                assert msg["success"], msg
            elif msg["type"] == "event":
                event = msg["event"]
                assert event["type"] != "error", event
                events.append((event["type"], event.get("data"), time.time()))
        return events


def _pairs(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["role"], said(m)) for m in messages if m["role"] != "system"]


async def test_satellite_turns_through_real_home_assistant(
    athena_hass: HassProcess, http: aiohttp.ClientSession, gateway: GatewayProcess, llm: FakeLLMProcess
) -> None:
    assert athena_hass.version  # what HA reports (e.g. 2025.4.4 / 2026.11.0)
    # 1. Add the integration through HA's config-flow REST API, as the UI does.
    flow = await _post(http, "/api/config/config_entries/flow", {"handler": "athena"})
    assert flow["type"] == "form" and flow["step_id"] == "user"
    bad = await _post(
        http, f"/api/config/config_entries/flow/{flow['flow_id']}", {"url": gateway.url, "token": "wrong"}
    )
    assert bad["errors"] == {"base": "invalid_auth"}
    done = await _post(
        http,
        f"/api/config/config_entries/flow/{flow['flow_id']}",
        {"url": gateway.url, "token": gateway.token},
    )
    assert done["type"] == "create_entry", done

    # 2. Demo devices in rooms stand in for satellites; a pipeline with Athena as agent, local commands first.
    home = await furnish(athena_hass.url, athena_hass.token)
    kitchen = home["devices"]["light.kitchen_lights"]
    office = home["devices"]["light.office_rgbw_lights"]
    async with HassWS(athena_hass.url, athena_hass.token) as ws:
        entities = {e["entity_id"]: e for e in await ws.call("config/entity_registry/list")}
        assert AGENT in entities and entities[AGENT]["platform"] == "athena"
        pipeline = await ws.call(
            "assist_pipeline/pipeline/create",
            conversation_engine=AGENT,
            conversation_language="en",
            language="en",
            name="Athena",
            stt_engine=None,
            stt_language=None,
            tts_engine=None,
            tts_language=None,
            tts_voice=None,
            wake_word_entity=None,
            wake_word_id=None,
            prefer_local_intents=True,
        )

    # 3. Kitchen satellite, first turn: to Athena, with the device's name and area in the system prompt.
    first = await _run_intent(athena_hass, pipeline["id"], "what is the capital of France", kitchen)
    output = first["intent-end"]["intent_output"]
    assert output["response"]["speech"]["plain"]["speech"] == "Reply to: what is the capital of France"
    assert first["intent-end"]["processed_locally"] is False
    conv_id = output["conversation_id"]
    (messages,) = await llm.chat_requests()
    assert '"Kitchen"' in messages[-1]["content"]

    # A home command HA answers itself (prefer local intents): Athena and its LLM are not called...
    local = await _run_intent(athena_hass, pipeline["id"], "turn on the kitchen lights", kitchen, conv_id)
    assert local["intent-end"]["processed_locally"] is True
    assert len(await llm.chat_requests()) == 1

    # ...but the next turn brings it along, after the first one, in the kitchen device's session.
    third = await _run_intent(athena_hass, pipeline["id"], "and of Germany", kitchen, conv_id)
    assert third["intent-end"]["intent_output"]["conversation_id"] == conv_id
    messages = (await llm.chat_requests())[-1]
    assert '"Kitchen"' in messages[-1]["content"]
    local_speech = local["intent-end"]["intent_output"]["response"]["speech"]["plain"]["speech"]
    expected = [
        ("user", "what is the capital of France"),
        ("assistant", "Reply to: what is the capital of France"),
        ("user", "turn on the kitchen lights"),
        ("assistant", local_speech),
        ("user", "and of Germany"),
    ]
    # (HA 2026.x records that command in the chat log as a text-less tool call under Athena's agent id: not
    # Athena's answer, so the user's turn before it is still forwarded.)
    assert _pairs(messages) == expected

    # Minutes later, a new wake word: HA starts a new conversation, Athena still has the device's session.
    fourth = await _run_intent(athena_hass, pipeline["id"], "and of Spain", kitchen)
    assert fourth["intent-end"]["intent_output"]["conversation_id"] != conv_id
    messages = (await llm.chat_requests())[-1]
    assert _pairs(messages)[0] == ("user", "what is the capital of France")
    assert _pairs(messages)[-1] == ("user", "and of Spain")

    # 4. Another device: its own session, its own area.
    office_turn = await _run_intent(athena_hass, pipeline["id"], "hello from here", office)
    assert office_turn["intent-end"]["intent_output"]["response"]["response_type"] != "error"
    messages = (await llm.chat_requests())[-1]
    assert '"Office"' in messages[-1]["content"] and '"Kitchen"' not in messages[-1]["content"]
    assert _pairs(messages) == [("user", "hello from here")]

    # 5. HA's REST conversation API (no device) with Athena as agent.
    answer = await _post(
        http, "/api/conversation/process", {"text": "ping over rest", "agent_id": AGENT, "language": "en"}
    )
    assert answer["response"]["speech"]["plain"]["speech"] == "Reply to: ping over rest"
    assert answer["conversation_id"]
    assert _pairs((await llm.chat_requests())[-1]) == [("user", "ping over rest")]

    # 6. HA logged no error about the integration (its warnings are kept in .test-logs/ for the reader).
    assert athena_hass.log_lines("athena", levels=("ERROR", "CRITICAL")) == []



async def _athena_pipeline(
    athena_hass: HassProcess, http: aiohttp.ClientSession, gateway: GatewayProcess
) -> str:
    """The integration added (once per hass) and an Assist pipeline with Athena as its agent."""
    async with HassWS(athena_hass.url, athena_hass.token) as ws:
        if AGENT not in {e["entity_id"] for e in await ws.call("config/entity_registry/list")}:
            flow = await _post(http, "/api/config/config_entries/flow", {"handler": "athena"})
            await _post(
                http,
                f"/api/config/config_entries/flow/{flow['flow_id']}",
                {"url": gateway.url, "token": gateway.token},
            )
        pipeline = await ws.call(
            "assist_pipeline/pipeline/create",
            conversation_engine=AGENT, conversation_language="en", language="en", name="Athena streaming",
            stt_engine=None, stt_language=None, tts_engine=None, tts_language=None, tts_voice=None,
            wake_word_entity=None, wake_word_id=None,
        )
    return str(pipeline["id"])


def _deltas(events: list[tuple[str, Any, float]]) -> list[tuple[dict[str, Any], float]]:
    return [
        (data["chat_log_delta"], at)
        for kind, data, at in events
        if kind == "intent-progress" and data and "chat_log_delta" in data
    ]


async def test_the_answer_streams_into_the_pipeline_as_the_model_writes(
    athena_hass: HassProcess, http: aiohttp.ClientSession, gateway: GatewayProcess, llm: FakeLLMProcess
) -> None:
    """A model writing a word every 0.15 s: HA's pipeline gets the first words within half a second of the
    model's first token, seconds before the answer is complete; the deltas add up to the spoken answer."""
    pipeline = await _athena_pipeline(athena_hass, http, gateway)
    answer = " ".join(f"word{i}" for i in range(24)) + "."
    await llm.configure(reply=answer, chunk_delay=0.15)
    events = await _run_intent_timed(athena_hass, pipeline, "tell me something long", None)
    deltas = _deltas(events)
    assert deltas and deltas[0][0].get("role") == "assistant"
    texts = [(d["content"], at) for d, at in deltas if d.get("content")]
    [request] = [r for r in await llm.requests() if r["path"].endswith("/chat/completions")][-1:]
    first_token = request["sent_at"][1]  # line 0 is the role-only event, line 1 the first word
    end = next(at for kind, _, at in events if kind == "intent-end")
    assert texts[0][1] - first_token < 0.5, (texts[0][1] - first_token)
    assert end - texts[0][1] > 2.0  # the first words were out long before the answer was complete
    spoken = next(data for kind, data, _ in events if kind == "intent-end")["intent_output"]
    assert "".join(t for t, _ in texts) == spoken["response"]["speech"]["plain"]["speech"] == answer


async def test_a_model_failing_mid_answer_ends_in_a_spoken_error(
    athena_hass: HassProcess, http: aiohttp.ClientSession, gateway: GatewayProcess, llm: FakeLLMProcess
) -> None:
    pipeline = await _athena_pipeline(athena_hass, http, gateway)
    await llm.configure(reply=" ".join(f"word{i}" for i in range(24)), chunk_delay=0.05, drop_after=6)
    events = await _run_intent_timed(athena_hass, pipeline, "tell me something long", None)
    output = next(data for kind, data, _ in events if kind == "intent-end")["intent_output"]
    sorry = "Sorry, I can't reach my language model right now."
    assert output["response"]["response_type"] == "error"
    assert output["response"]["speech"]["plain"]["speech"] == sorry
    deltas = [d for d, _ in _deltas(events)]
    assert deltas[-1] == {"content": sorry} and deltas[-2] == {"role": "assistant"}  # said after the words
    assert any(d.get("content", "").startswith("word") for d in deltas)
