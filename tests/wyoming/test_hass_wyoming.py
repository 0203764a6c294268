"""Against a real `hass` (HA 2025.4.4 and the current HA): no custom integration, only HA's own Wyoming
integration, added through its config flow with Athena's host and port; an Assist pipeline with the Wyoming
agent; `assist_pipeline/run` turns with real device ids reach Athena and come back as the spoken answer.

What each version sends decides what keeps a session: HA 2026.x puts `device_id` in the transcript's
context (two devices, two sessions; a new wake word keeps the device's session); HA 2025.4 (wyoming 1.5.4)
sends the text alone, so each turn is a one-off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from athena.config import Settings
from tests.api.conftest import LiveGateway, make_settings, serve
from tests.support.fake_llm import FakeLLM, said
from tests.support.gateway import free_port
from tests.support.hass import HassProcess, HassWS, furnish, hass_version_params, require_version


@pytest.fixture(scope="module", **hass_version_params())
def wyoming_hass(request: pytest.FixtureRequest) -> Iterator[HassProcess]:
    require_version(request.param)
    proc = HassProcess(version=request.param, extra_yaml="assist_pipeline:\n").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def athena(tmp_path: Path, fake_llm: FakeLLM) -> AsyncIterator[LiveGateway]:
    port = free_port()
    settings: Settings = make_settings(
        tmp_path,
        llm_url=fake_llm.url + "/v1",
        wyoming_port=f"tcp://127.0.0.1:{port}",
        wyoming_zeroconf=False,
    )
    async with serve(settings) as gw:
        yield gw


async def _post(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(path, json=body) as resp:
        data = await resp.json()
        assert resp.status == 200, data
        return data


async def add_wyoming(hass: HassProcess, host: str, port: int) -> tuple[str, str]:
    """HA's own config flow (the UI's "Add integration → Wyoming Protocol"); returns (entry id, agent id)."""
    headers = {"Authorization": f"Bearer {hass.token}"}
    async with aiohttp.ClientSession(base_url=hass.url, headers=headers) as http:
        flow = await _post(http, "/api/config/config_entries/flow", {"handler": "wyoming"})
        assert flow["type"] == "form" and flow["step_id"] == "user", flow
        step = f"/api/config/config_entries/flow/{flow['flow_id']}"
        done = await _post(http, step, {"host": host, "port": port})
        assert done["type"] == "create_entry", done
        assert done["title"] == "Athena"
        entry_id = done["result"]["entry_id"]
    return entry_id, await agent_of(hass, entry_id)


async def agent_of(hass: HassProcess, entry_id: str) -> str:
    async with HassWS(hass.url, hass.token) as ws:
        for _ in range(100):  # the entry's platforms load a moment after the flow ends
            entities = await ws.call("config/entity_registry/list")
            agents = [
                e["entity_id"]
                for e in entities
                if e.get("config_entry_id") == entry_id and e["entity_id"].startswith("conversation.")
            ]
            if agents:
                return agents[0]
            await asyncio.sleep(0.1)
    raise AssertionError("the Wyoming entry made no conversation agent")


async def remove_entry(hass: HassProcess, entry_id: str) -> None:
    headers = {"Authorization": f"Bearer {hass.token}"}
    async with (
        aiohttp.ClientSession(base_url=hass.url, headers=headers) as http,
        http.delete(f"/api/config/config_entries/entry/{entry_id}") as resp,
    ):
        assert resp.status == 200, await resp.text()


async def create_pipeline(hass: HassProcess, agent: str) -> str:
    async with HassWS(hass.url, hass.token) as ws:
        pipeline = await ws.call(
            "assist_pipeline/pipeline/create",
            conversation_engine=agent,
            conversation_language="en",
            language="en",
            name="Athena over Wyoming",
            stt_engine=None,
            stt_language=None,
            tts_engine=None,
            tts_language=None,
            tts_voice=None,
            wake_word_entity=None,
            wake_word_id=None,
        )
    return str(pipeline["id"])


async def run_intent(hass: HassProcess, pipeline: str, text: str, device_id: str | None) -> dict[str, Any]:
    """`assist_pipeline/run`, intent stage: what a satellite's turn does after speech to text. Returns
    intent-end's `intent_output` (HA's ConversationResult)."""
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
                "pipeline": pipeline,
                "device_id": device_id,
            }
        )
        events: dict[str, Any] = {}
        while "run-end" not in events:
            msg = await ws.receive_json(timeout=30)
            if msg["type"] == "result":
                assert msg["success"], msg
            elif msg["type"] == "event":
                event = msg["event"]
                assert event["type"] != "error", event
                events[event["type"]] = event.get("data")
        return events["intent-end"]["intent_output"]


def speech(output: dict[str, Any]) -> str:
    return output["response"]["speech"]["plain"]["speech"]


def user_turns(fake: FakeLLM) -> list[list[str]]:
    """Per chat request to the LLM, the user messages it carried (the session's history and the turn)."""
    chats = [r["body"]["messages"] for r in fake.requests if r["path"].endswith("/chat/completions")]
    return [[said(m) for m in msgs if m["role"] == "user"] for msgs in chats]


async def test_home_assistant_adds_athena_over_wyoming(
    wyoming_hass: HassProcess, athena: LiveGateway, fake_llm: FakeLLM
) -> None:
    port = int(athena.settings.wyoming_address[1])  # type: ignore[index]
    entry_id, agent = await add_wyoming(wyoming_hass, "127.0.0.1", port)
    try:
        pipeline = await create_pipeline(wyoming_hass, agent)
        home = await furnish(wyoming_hass.url, wyoming_hass.token)
        kitchen = home["devices"]["light.kitchen_lights"]
        office = home["devices"]["light.office_rgbw_lights"]

        first = await run_intent(wyoming_hass, pipeline, "what is the capital of France", kitchen)
        assert speech(first) == "Reply to: what is the capital of France"
        assert first["response"]["response_type"] == "action_done"  # HA's reading of `handled`
        await run_intent(wyoming_hass, pipeline, "hello from the office", office)
        follow_up = await run_intent(wyoming_hass, pipeline, "and how many people live there", kitchen)
        assert speech(follow_up) == "Reply to: and how many people live there"
        sessions = {s["device"] for s in await athena.core.engine.sessions_live()}

        if wyoming_hass.version >= "2026":
            # The device id in the transcript's context keeps each device's session, across the new
            # conversation id HA makes for every run (every wake word).
            assert follow_up["conversation_id"] != first["conversation_id"]
            assert user_turns(fake_llm) == [
                ["what is the capital of France"],
                ["hello from the office"],
                ["what is the capital of France", "and how many people live there"],
            ]
            assert {kitchen, office} <= sessions
            kitchen_session = await athena.session(kitchen)
            office_session = await athena.session(office)
            assert kitchen_session is not None and office_session is not None
            assert kitchen_session["id"] != office_session["id"]
        else:
            # HA 2025.4: the text alone reaches Athena, so every turn is a one-off — never one session
            # shared by every device.
            assert user_turns(fake_llm) == [
                ["what is the capital of France"],
                ["hello from the office"],
                ["and how many people live there"],
            ]
            assert kitchen not in sessions and all(s.startswith("oneoff:") for s in sessions)

        # A failing LLM: HA speaks Athena's sentence (Wyoming `not-handled` → HA's error failed_to_handle).
        fake_llm.configure(status=500)
        failed = await run_intent(wyoming_hass, pipeline, "anything", kitchen)
        assert failed["response"]["response_type"] == "error"
        assert failed["response"]["data"]["code"] == "failed_to_handle"
        assert speech(failed) == "Sorry, I can't reach my language model right now."
    finally:
        fake_llm.configure(status=None)
        await remove_entry(wyoming_hass, entry_id)

