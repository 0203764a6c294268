"""Everything the gateway needs from one Home Assistant: REST, one WebSocket, and the cached home."""

from __future__ import annotations

import asyncio
from typing import Any

from athena.homeassistant.home import Home
from athena.homeassistant.registry import HomeRegistry
from athena.homeassistant.rest import HARest
from athena.homeassistant.websocket import HAWebSocket


class HAClient:
    """Everything the gateway needs from one Home Assistant, opened and closed by the app's lifespan."""

    def __init__(
        self, url: str, token: str, *, registry_refresh: float = 300.0, timeout: float = 10.0
    ) -> None:
        self.url = url.rstrip("/")
        self.rest = HARest(self.url, token, timeout=timeout)
        self.ws = HAWebSocket(self.url, token, timeout=timeout)
        self.registry = HomeRegistry(self.rest, self.ws, refresh_interval=registry_refresh)

    @property
    def home(self) -> Home:
        return self.registry.home

    async def open(self, wait: float = 5.0) -> None:
        """Connect and load the registries, waiting up to `wait` s; if HA is down, keep retrying in the
        background and start anyway (turns fall through to the LLM until it is back)."""
        await self.registry.start()
        await self.ws.start()  # the first connect loads the registries (on_connect)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        # Done when loaded, or as soon as a first connect has failed (HA down must not hold up start-up).
        while not self.home.loaded and self.ws.failed_attempts == 0:
            left = deadline - loop.time()
            if left <= 0 or await self.registry.wait_loaded(min(left, 0.05)):
                break

    async def close(self) -> None:
        await self.registry.close()
        await self.ws.close()
        await self.rest.close()

    def status(self) -> dict[str, Any]:
        home = self.home
        return {
            "url": self.url,
            "reachable": self.ws.connected,
            "ha_version": self.ws.ha_version,
            "error": self.ws.last_error or self.registry.last_error,
            "entities": len(home.entities),
            "areas": len(home.areas),
            "floors": len(home.floors),
            "registry_version": home.version,
            "registry_loaded_at": home.loaded_at or None,
        }
