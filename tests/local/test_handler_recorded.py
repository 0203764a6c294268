"""The HA intent handler against the recorded HA stand-in: HA-side failures fall through to the LLM (None)."""

import asyncio

import pytest

from athena.config import Settings
from athena.gateway import Gateway
from athena.homeassistant import HAClient
from athena.local.catalog import IntentCatalog
from athena.local.handler import HAIntentHandler
from athena.records import Message, MessageMeta
from athena.turns import Turn
from tests.support.gateway import free_port
from tests.support.recorded_ha import TOKEN, RecordedHA, make_home


@pytest.fixture(scope="module")
def catalog():
    c = IntentCatalog()
    c.warm("en")
    return c


async def open_handler(ha, catalog):
    client = HAClient(ha.url, TOKEN, registry_refresh=3600)
    await client.open(wait=5)
    return client, HAIntentHandler(client, catalog)


@pytest.mark.parametrize("modern", [False, True])
async def test_no_valid_targets_falls_through(modern, catalog):
    async with RecordedHA(make_home(20), modern=modern) as ha:
        client, handler = await open_handler(ha, catalog)
        try:
            turn = Turn(text="turn on the fans", device_id="satellite-kitchen")
            assert await handler.handle(turn, []) is None  # no fan in the kitchen: HA errors
            ok = await handler.handle(
                Turn(
                    text="turn off the lights", device_id="satellite-kitchen"
                ),
                [],
            )
            assert ok is not None and ok.speech == "Turned off the lights"
            body = [b for m, p, b in ha.requests if p == "/api/intent/handle"][-1]
            assert body["data"]["preferred_area_id"] == "kitchen"
        finally:
            await client.close()


async def test_ha_gone_mid_session_falls_through(catalog):
    ha = await RecordedHA(make_home(20)).start()
    client, handler = await open_handler(ha, catalog)
    try:
        await ha.stop()
        turn = Turn(text="turn on the kitchen lights", device_id="satellite-kitchen")
        assert await handler.handle(turn, []) is None
    finally:
        await client.close()


async def test_memory_only_from_the_latest_assistant_turn(catalog):
    async with RecordedHA(make_home(20)) as ha:
        client, handler = await open_handler(ha, catalog)
        try:
            turn = Turn(text="turn on the kitchen lights", device_id="satellite-kitchen")
            answer = await handler.handle(turn, [])
            assert answer is not None
            local = Message("assistant", answer.speech, 1.0, MessageMeta(path="local", intent=answer.memory))
            llm = Message("assistant", "Owls are great.", 2.0, MessageMeta(path="llm"))
            follow = Turn(text="now turn them off", device_id="satellite-kitchen")
            assert await handler.handle(follow, [Message("user", "x", 1.0), local]) is not None
            assert ha.states["light.kitchen_lights"]["state"] == "off"
            # After an LLM answer, "them" is the LLM's business.
            assert await handler.handle(follow, [local, Message("user", "owls?", 2.0), llm]) is None
        finally:
            await client.close()


async def test_local_path_with_ha_down_still_starts_and_serves_start_over(tmp_path, fake_llm):
    settings = Settings(
        data_dir=tmp_path, store_url="memory://", llm_url=fake_llm.url + "/v1",
        ha_url=f"http://127.0.0.1:{free_port()}", ha_token="t",
    )
    async with Gateway(settings) as gateway:
        local = gateway.local
        assert local is not None
        status = local.status()
        assert status["enabled"] is True and status["ha_reachable"] is False
        assert "cannot connect" in status["ha"]["error"]
        [ha_intents] = local.handlers
        turn = Turn(text="turn on the kitchen lights", device_id="d1")
        assert await ha_intents.handle(turn, []) is None
        answer = await gateway.engine.handle(Turn(text="start over", device_id="d1"))
        assert answer.path == "reset"


async def test_concurrent_turns_from_many_rooms(catalog):
    rooms = ["kitchen", "living_room", "bedroom", "office", "hallway", "bathroom", "garage", "study"]
    async with RecordedHA(make_home(200)) as ha:
        client, handler = await open_handler(ha, catalog)
        try:

            async def one(i: int):
                room = rooms[i % len(rooms)]
                turn = Turn(
                    text="turn off the lights", device_id=f"satellite-{room}"
                )
                return room, await handler.handle(turn, [])

            results = await asyncio.gather(*(one(i) for i in range(40)))
            for room, answer in results:
                assert answer is not None and answer.speech == "Turned off the lights"
                assert answer.memory is not None
                assert answer.memory.slots["area"].lower().replace(" ", "_") == room
                assert all(ha.entity_area[e] == room for e in answer.memory.entity_ids)
        finally:
            await client.close()
