"""The test harness itself: a real hass answers with our token and the demo lights sit in rooms."""

from tests.support.hass import HassWS


async def test_hass_serves_demo_lights_in_rooms(hass_home):
    proc, home = hass_home
    assert proc.version  # what HA reports: 2025.4.4, 2026.11.0 …
    assert proc.state("light.kitchen_lights")["entity_id"] == "light.kitchen_lights"
    async with HassWS(proc.url, proc.token) as ws:
        entities = {e["entity_id"]: e for e in await ws.call("config/entity_registry/list")}
        devices = {d["id"]: d for d in await ws.call("config/device_registry/list")}
    kitchen = entities["light.kitchen_lights"]
    assert home["devices"]["light.kitchen_lights"] == kitchen["device_id"]
    # The entity's own area on 2025.4; on 2026.x an entity without a name of its own takes its device's.
    assert devices[kitchen["device_id"]]["area_id"] == home["areas"]["Kitchen"]
    assert kitchen["area_id"] in (home["areas"]["Kitchen"], None)
