"""Athena: a Home Assistant conversation agent that hands each turn to an Athena gateway.

The gateway keeps one conversation session per voice device; this integration only adds what Home Assistant
knows and the gateway cannot see (device, area, satellite, user, turns HA answered itself) to each turn.
"""

from __future__ import annotations

from typing import TypeAlias

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_TOKEN, CONF_URL, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .api import AthenaClient
from .const import DOMAIN

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)
PLATFORMS: list[Platform] = [Platform.CONVERSATION]

# A loaded entry holds its client, on Home Assistant's shared HTTP session.
AthenaConfigEntry: TypeAlias = ConfigEntry[AthenaClient]


async def async_setup_entry(hass: HomeAssistant, entry: AthenaConfigEntry) -> bool:
    """Set up without contacting the gateway.

    A gateway that is down at start-up must not leave Assist without its agent: the agent then tells the
    user, turn by turn, that Athena cannot be reached, and works again as soon as the gateway is back.
    Options (timeout, conversation id) are read on every turn, so changing them needs no reload.
    """
    entry.runtime_data = AthenaClient(
        async_get_clientsession(hass), entry.data[CONF_URL], entry.data[CONF_TOKEN]
    )
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: AthenaConfigEntry) -> bool:
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
