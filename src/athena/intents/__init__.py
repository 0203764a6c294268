"""The local path tried before the LLM: "start over" and Home Assistant's own intents (hassil)."""

from __future__ import annotations

from typing import Any

from athena.config import Settings
from athena.engine.types import LocalHandler


class LocalPath:
    """Owns the local handlers and what they need (HA client, intent data) for the app's lifetime."""

    def __init__(self, handlers: list[LocalHandler]) -> None:
        self.handlers = handlers

    @classmethod
    async def start(cls, settings: Settings) -> LocalPath:
        # Being built out: reset phrases and hassil intents executed by Home Assistant.
        return cls([])

    async def close(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"enabled": False}
