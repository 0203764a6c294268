"""Home Assistant client: REST (states, services, intents) and WebSocket (registries), with a cached home."""

from __future__ import annotations

from athena.homeassistant.client import HAClient
from athena.homeassistant.errors import HAAuthError, HAError, HAResponseError, HAUnavailable
from athena.homeassistant.home import Area, Entity, Floor, Home, build_home
from athena.homeassistant.registry import HomeRegistry

__all__ = [
    "Area",
    "Entity",
    "Floor",
    "HAAuthError",
    "HAClient",
    "HAError",
    "HAResponseError",
    "HAUnavailable",
    "Home",
    "HomeRegistry",
    "build_home",
]
