"""The test harness itself: a real hass answers with our token and the demo lights sit in rooms."""

from tests.support.hass import HassWS


async def test_hass_serves_demo_lights_in_rooms(hass_home):
    proc, home = hass_home
    assert proc.state("light.kitchen_lights")["entity_id"] == "light.kitchen_lights"
    async with HassWS(proc.url, proc.token) as ws:
        entities = {e["entity_id"]: e for e in await ws.call("config/entity_registry/list")}
    assert entities["light.kitchen_lights"]["area_id"] == home["areas"]["Kitchen"]
    assert home["devices"]["light.kitchen_lights"] == entities["light.kitchen_lights"]["device_id"]
