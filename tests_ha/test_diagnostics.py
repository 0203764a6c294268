"""Diagnostics: what a bug report needs, with the gateway token never in it."""

from __future__ import annotations

import json

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

import custom_components.athena  # noqa: F401 - module-level import: HA's loader must find our integration
from custom_components.athena.const import CONF_TIMEOUT
from custom_components.athena.diagnostics import async_get_config_entry_diagnostics
from tests.support.gateway import GatewayProcess
from tests_ha.support import closed_port_url, setup_athena


async def test_token_redacted_and_gateway_described(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, gateway: GatewayProcess
) -> None:
    entry = await setup_athena(hass, gateway.url, gateway.token, options={CONF_TIMEOUT: 12})
    # Through HA's own diagnostics HTTP endpoint, as the "Download diagnostics" button does.
    diag = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert gateway.token not in json.dumps(diag)
    assert diag["entry"]["data"] == {"url": gateway.url, "token": "**REDACTED**"}
    assert diag["entry"]["options"] == {CONF_TIMEOUT: 12}
    assert diag["gateway"]["service"] == "athena"
    assert diag["gateway"]["version"]


async def test_unreachable_gateway_still_gives_diagnostics(hass: HomeAssistant) -> None:
    entry = await setup_athena(hass, closed_port_url(), "secret-token-value")
    diag = await async_get_config_entry_diagnostics(hass, entry)
    assert "secret-token-value" not in json.dumps(diag)
    assert diag["gateway"]["error"].startswith("CannotConnect")
