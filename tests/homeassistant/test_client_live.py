"""The HA client against a real `hass`: registries loaded, device areas known, and kept fresh on change."""

import pytest

from athena.homeassistant import HAClient
from tests.support.hass import HassWS, wait_for


@pytest.fixture
async def client(hass_home):
    proc, _ = hass_home
    c = HAClient(proc.url, proc.token, registry_refresh=3600)
    await c.open(wait=10)
    yield c
    await c.close()


async def test_loads_areas_devices_and_exposed_entities(client, hass_home):
    _, home_ids = hass_home
    home = client.home
    assert home.loaded
    kitchen = home.find_area("kitchen")
    assert kitchen is not None and kitchen.id == home_ids["areas"]["Kitchen"]
    light = home.entities["light.kitchen_lights"]
    assert light.name == "Kitchen Lights" and light.domain == "light" and light.area_id == kitchen.id
    assert home.area_of_device(home_ids["devices"]["light.kitchen_lights"]) == kitchen
    assert home.find_entities("KITCHEN lights") == [light]
    status = client.status()
    assert status["reachable"] is True and status["entities"] == len(home.entities) > 0
    assert status["ha_version"]


async def test_registry_change_refreshes_the_cache(client, hass_process):
    version = client.home.version
    async with HassWS(hass_process.url, hass_process.token) as ws:
        area = await ws.call("config/area_registry/create", name="Greenhouse", aliases=["glasshouse"])
        try:
            assert await wait_for(lambda: client.home.find_area("glasshouse") is not None)
            assert client.home.version > version
            await ws.call("config/area_registry/delete", area_id=area["area_id"])
            assert await wait_for(lambda: client.home.find_area("Greenhouse") is None)
        finally:
            areas = await ws.call("config/area_registry/list")
            if any(a["area_id"] == area["area_id"] for a in areas):
                await ws.call("config/area_registry/delete", area_id=area["area_id"])


async def test_exposure_change_removes_the_entity(client, hass_process):
    assert "switch.ac" in client.home.entities
    async with HassWS(hass_process.url, hass_process.token) as ws:
        try:
            await ws.call(
                "homeassistant/expose_entity",
                assistants=["conversation"],
                entity_ids=["switch.ac"],
                should_expose=False,
            )
            assert await wait_for(lambda: "switch.ac" not in client.home.entities)
        finally:
            await ws.call(
                "homeassistant/expose_entity",
                assistants=["conversation"],
                entity_ids=["switch.ac"],
                should_expose=True,
            )
    assert await wait_for(lambda: "switch.ac" in client.home.entities)


async def test_entity_alias_is_picked_up(client, hass_process):
    async with HassWS(hass_process.url, hass_process.token) as ws:
        try:
            await ws.call(
                "config/entity_registry/update", entity_id="light.office_rgbw_lights", aliases=["desk lamp"]
            )
            assert await wait_for(lambda: bool(client.home.find_entities("desk lamp")))
            assert client.home.find_entities("desk lamp")[0].entity_id == "light.office_rgbw_lights"
        finally:
            await ws.call("config/entity_registry/update", entity_id="light.office_rgbw_lights", aliases=[])


async def test_a_token_of_a_user_who_is_not_an_administrator_is_enough(client, hass_home):
    """HA's exposure list is for administrators only: without it the registry's own options decide, so the
    entities in HA's entity registry are found the same, those outside it (no unique id; HA keeps their
    exposure only in that list) are left to the LLM's tools — never taken as exposed — and HA runs the
    intent for that user too."""
    proc, _ = hass_home
    plain = HAClient(proc.url, proc.user_token, registry_refresh=3600)
    await plain.open(wait=10)
    try:
        assert plain.home.loaded and plain.home.areas.keys() == client.home.areas.keys()
        async with HassWS(proc.url, proc.token) as ws:
            registered = {e["entity_id"] for e in await ws.call("config/entity_registry/list")}
        found, found_by_admin = plain.home.entities.keys(), client.home.entities.keys()
        assert found <= found_by_admin and found == found_by_admin & registered
        assert "light.kitchen_lights" in found
        response = await plain.rest.handle_intent("HassTurnOn", {"area": "Kitchen", "domain": "light"})
        assert response["response_type"] == "action_done", response
        assert proc.state("light.kitchen_lights")["state"] == "on"
    finally:
        await plain.close()
        proc.call_service("light", "turn_off", "all")
