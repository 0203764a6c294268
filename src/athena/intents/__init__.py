"""The local path tried before the LLM: "start over" and Home Assistant's own intents (hassil).

`LocalPath.start(settings, sessions=manager)` builds the handlers in the order the engine tries them:
1. start over (always; clears the device's session through the SessionManager),
2. HA intents (only with ATHENA_HA_URL and ATHENA_HA_TOKEN): recognized here, executed by HA, remembered in
   the session for follow-ups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import structlog

from athena.config import Settings
from athena.engine.types import LocalHandler
from athena.sessions.manager import SessionManager

if TYPE_CHECKING:
    from athena.homeassistant import HAClient
    from athena.intents.catalog import IntentCatalog

log = structlog.get_logger("athena.intents")

# Languages made ready at start-up besides HA's own configured language.
WARM_LANGUAGES = ("en",)


class LocalPath:
    """Owns the local handlers and what they need (HA client, intent data) for the app's lifetime."""

    def __init__(
        self,
        handlers: list[LocalHandler],
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
    async def start(cls, settings: Settings, *, sessions: SessionManager | None = None) -> LocalPath:
        from athena.intents.reset import StartOverHandler

        start_over = StartOverHandler(sessions)
        if settings.ha_url is None or settings.ha_token is None:
            return cls([start_over], reason="ATHENA_HA_URL and ATHENA_HA_TOKEN are not set")

        from athena.homeassistant import HAClient, HAError
        from athena.intents.catalog import IntentCatalog
        from athena.intents.handler import HAIntentHandler

        client = HAClient(
            settings.ha_url,
            settings.ha_token.get_secret_value(),
            registry_refresh=settings.ha_registry_refresh,
        )
        catalog = IntentCatalog()
        # Parse the templates while HA connects: the first recognition would otherwise cost ~300 ms.
        warming = asyncio.create_task(asyncio.to_thread(_warm, catalog, WARM_LANGUAGES))
        try:
            await client.open()
            ha_language = None
            try:
                ha_language = (await client.rest.config()).get("language")
            except HAError as exc:
                log.warning("intents.ha_unreachable_at_start", url=settings.ha_url, error=str(exc))
            await warming
            if isinstance(ha_language, str):  # a no-op when it is one of WARM_LANGUAGES
                await asyncio.to_thread(catalog.warm, ha_language)
        except BaseException:
            await asyncio.gather(warming, return_exceptions=True)
            await client.close()
            raise
        handler = HAIntentHandler(client, catalog)
        path = cls([start_over, handler], client=client, catalog=catalog)
        log.info("intents.ready", **path.status())
        return path

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

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
