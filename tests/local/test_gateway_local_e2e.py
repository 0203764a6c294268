"""Through the real gateway process: HA's `/ha/conversation` in, local turns out, later seen by the LLM."""

import asyncio

import aiohttp
import pytest

from tests.support.fake_llm import said
from tests.support.gateway import GatewayProcess


@pytest.fixture
async def gateway(hass_home, fake_llm):
    proc, ids = hass_home
    gw = GatewayProcess(
        {
            "ATHENA_HA_URL": proc.url,
            "ATHENA_HA_TOKEN": proc.token,
            "ATHENA_LLM_API": "openai",
            "ATHENA_LLM_URL": fake_llm.url + "/v1",
        },
        startup_timeout=60,
    )
    # Blocking start/stop in a thread: the fake LLM is served by this test's event loop.
    await asyncio.to_thread(gw.start)
    try:
        yield gw, proc, ids
    finally:
        await asyncio.to_thread(gw.stop)


async def test_local_turns_then_llm_with_them_in_history(gateway, fake_llm):
    gw, proc, ids = gateway
    kitchen_device = ids["devices"]["light.kitchen_lights"]
    proc.call_service("light", "turn_off", "light.kitchen_lights")
    headers = {"Authorization": f"Bearer {gw.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def say(text: str) -> dict:
            body = {"text": text, "language": "en", "device_id": kitchen_device}
            async with http.post(gw.url + "/ha/conversation", json=body) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

        first = await say("turn on the kitchen lights")
        assert first["response"]["response_type"] == "action_done"
        assert first["response"]["speech"]["plain"]["speech"] == "Turned on the light"
        assert {"name": "Kitchen Lights", "type": "entity", "id": "light.kitchen_lights"} in (
            first["response"]["data"]["success"]
        )
        assert proc.state("light.kitchen_lights")["state"] == "on"

        second = await say("now turn them off")
        assert second["conversation_id"] == first["conversation_id"]
        assert proc.state("light.kitchen_lights")["state"] == "off"
        assert fake_llm.requests == []

        third = await say("why do cats purr?")
        assert third["conversation_id"] == first["conversation_id"]
        sent = [(m["role"], said(m)) for m in fake_llm.requests[-1]["body"]["messages"]]
        assert sent[-5:] == [
            ("user", "turn on the kitchen lights"),
            ("assistant", "Turned on the light"),
            ("user", "now turn them off"),
            ("assistant", "Turned off the light"),
            ("user", "why do cats purr?"),
        ]

        reset = await say("start over")
        assert reset["response"]["speech"]["plain"]["speech"] == "Okay, let's start over."
        assert reset["conversation_id"] != first["conversation_id"]

        async with http.get(gw.url + "/health") as resp:
            health = await resp.json()
        local = health["local_path"]
        assert local["enabled"] is True and local["ha_reachable"] is True and local["entities"] > 0
