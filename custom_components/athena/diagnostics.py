"""Diagnostics for a bug report: settings and what the gateway says about itself, never the token."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_TOKEN
from homeassistant.core import HomeAssistant

from . import AthenaConfigEntry
from .api import AthenaError

TO_REDACT = {CONF_TOKEN, "api_key", "llm_api_key", "authorization"}


async def async_get_config_entry_diagnostics(hass: HomeAssistant, entry: AthenaConfigEntry) -> dict[str, Any]:
    try:
        gateway: dict[str, Any] = await entry.runtime_data.info()
    except AthenaError as err:
        gateway = {"error": f"{type(err).__name__}: {err}"}
    return {
        "entry": async_redact_data(
            {"title": entry.title, "data": dict(entry.data), "options": dict(entry.options)}, TO_REDACT
        ),
        "gateway": async_redact_data(gateway, TO_REDACT),
    }
