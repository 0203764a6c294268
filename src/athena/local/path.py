"""The local path's life cycle: intent data loaded and warmed at start-up, the handlers the engine tries.

With Home Assistant configured, the HA intent handler (recognized here, executed by HA, remembered in the
session for follow-ups); without it, none ("start over" needs no HA and is the engine's own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog

from athena.homeassistant import HAClient, HAError
from athena.local.catalog import IntentCatalog
from athena.local.handler import HAIntentHandler

log = structlog.get_logger("athena.local")

# Languages made ready at start-up besides HA's own configured language.
WARM_LANGUAGES = ("en",)


class LocalPath:
    def __init__(
        self,
        handlers: list[HAIntentHandler],
        *,
        client: HAClient | None = None,
        catalog: IntentCatalog | None = None,
        reason: str | None = None,
    ) -> None:
        self.handlers = handlers
        self.client = client
        self.catalog = catalog
        self._reason = reason

    @classmethod
    def off(cls, reason: str) -> LocalPath:
        return cls([], reason=reason)

    @staticmethod
    async def warm_catalog() -> IntentCatalog:
        """Intent data with WARM_LANGUAGES parsed (off the event loop, ~300 ms for English)."""
        catalog = IntentCatalog()
        await asyncio.to_thread(_warm, catalog, WARM_LANGUAGES)
        return catalog

    @classmethod
    async def start(cls, client: HAClient, catalog: IntentCatalog) -> LocalPath:
        """The local path over an open client; HA's own language is warmed too."""
        try:
            ha_language = (await client.rest.config()).get("language")
        except HAError as exc:
            log.warning("intents.ha_unreachable_at_start", url=client.url, error=str(exc))
        else:
            if isinstance(ha_language, str):  # a no-op when it is one of WARM_LANGUAGES
                await asyncio.to_thread(catalog.warm, ha_language)
        path = cls([HAIntentHandler(client, catalog)], client=client, catalog=catalog)
        log.info("intents.ready", **path.status())
        return path

    def status(self) -> dict[str, Any]:
        if self.client is None:
            return {"enabled": False, "start_over": True, "reason": self._reason or "local intents are off"}
        ha = self.client.status()
        return {
            "enabled": True,
            "start_over": True,
            "ha_reachable": ha["reachable"],
            "ha": ha,
            "entities": ha["entities"],
            "areas": ha["areas"],
            "floors": ha["floors"],
            "languages": self.catalog.languages if self.catalog is not None else [],
        }


def _warm(catalog: IntentCatalog, languages: Iterable[str]) -> None:
    for language in languages:
        catalog.warm(language)
