"""HA down or going away: clear errors, no crash, and a reconnect with backoff once it is back."""

import pytest

from athena.homeassistant import HAClient, HAUnavailable
from tests.support.gateway import free_port
from tests.support.hass import wait_for
from tests.support.recorded_ha import TOKEN, RecordedHA, make_home


async def test_down_at_start_then_back():
    port = free_port()
    client = HAClient(f"http://127.0.0.1:{port}", TOKEN)
    await client.open(wait=0.3)
    try:
        status = client.status()
        assert status["reachable"] is False and "cannot connect" in status["error"]
        assert not client.home.loaded
        with pytest.raises(HAUnavailable, match="unreachable"):
            await client.rest.handle_intent("HassTurnOn", {"name": "x"})

        async with RecordedHA(make_home(10), port=port):
            assert await wait_for(lambda: client.home.loaded)
            assert client.status()["reachable"] is True
            assert len(client.home.entities) == 10
        # Gone again: the snapshot stays (turns still recognize), calls fail clearly.
        assert await wait_for(lambda: not client.status()["reachable"])
        assert client.home.loaded
        with pytest.raises(HAUnavailable):
            await client.rest.states()
    finally:
        await client.close()


async def test_bad_token_is_reported():
    async with RecordedHA(make_home(3)) as ha:
        client = HAClient(ha.url, "wrong-token")
        await client.open(wait=1)
        try:
            assert await wait_for(lambda: "refused the token" in (client.status()["error"] or ""))
            assert not client.home.loaded
        finally:
            await client.close()


@pytest.mark.parametrize("modern", [False, True])
async def test_intent_body_fits_the_ha_version(modern):
    async with RecordedHA(make_home(10), modern=modern) as ha:
        client = HAClient(ha.url, TOKEN)
        try:
            for _ in range(2):
                result = await client.rest.handle_intent(
                    "HassTurnOff", {"area": "Kitchen", "domain": "light"}, language="en", device_id="sat1"
                )
                assert result["response_type"] == "action_done"
            bodies = [b for m, p, b in ha.requests if p == "/api/intent/handle"]
            if modern:
                assert len(bodies) == 2
                assert bodies[0]["assistant"] == "conversation" and bodies[0]["device_id"] == "sat1"
            else:  # one rejected try, then name + data only, remembered
                assert len(bodies) == 3 and "language" in bodies[0]
                assert (
                    bodies[1]
                    == bodies[2]
                    == {"name": "HassTurnOff", "data": {"area": "Kitchen", "domain": "light"}}
                )
        finally:
            await client.close()


async def test_registry_event_triggers_refresh():
    async with RecordedHA(make_home(5)) as ha:
        client = HAClient(ha.url, TOKEN, registry_refresh=3600)
        await client.open(wait=5)
        try:
            assert client.home.find_area("Attic") is None
            ha.home["areas"].append(
                {"area_id": "attic", "name": "Attic", "aliases": ["loft"], "floor_id": None}
            )
            await ha.registry_updated()
            assert await wait_for(lambda: client.home.find_area("loft") is not None)
        finally:
            await client.close()
