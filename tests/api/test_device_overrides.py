"""Per-device overrides by HA's device name match whatever case HA uses; ids match exactly first."""

from __future__ import annotations

from athena.config import DevicePolicy
from tests.api.conftest import GatewayFactory


async def test_an_override_by_name_applies_whatever_the_case(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(
        session_timeout=300,
        devices={"kitchen display": DevicePolicy(timeout=600), "Office": DevicePolicy(max_age=900)},
    )
    # HA sends its registry id and the name as the user typed it in HA ("Kitchen Display").
    await gw.converse("hello", device_id="0f3a9c1d2e", device_name="Kitchen Display")
    await gw.converse("hello", device_id="office")  # an id, in another case than the key
    await gw.converse("hello", device_id="hall", device_name="Hall")
    kitchen, office, hall = [await gw.session(d) for d in ("0f3a9c1d2e", "office", "hall")]
    assert kitchen is not None and kitchen["timeout"] == 600
    assert office is not None and office["max_age"] == 900 and office["timeout"] == 300
    assert hall is not None and hall["timeout"] == 300
