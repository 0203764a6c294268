"""The local home-control turn: plan (follow-up or HA's sentences), let HA execute, speak HA's answer.

Anything HA would hand to an LLM (no match, no such target, HA down, an error answer) returns None, so the
engine asks the LLM instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import structlog

from athena.homeassistant import HAClient, HAError
from athena.local.catalog import IntentCatalog
from athena.local.execute import Executor
from athena.local.planner import Planner
from athena.local.recognize import Recognizer
from athena.records import Message
from athena.turns import LocalAnswer, Turn

log = structlog.get_logger("athena.local")


class HAIntentHandler:
    def __init__(
        self, client: HAClient, catalog: IntentCatalog, recognizer: Recognizer | None = None
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.recognizer = recognizer or Recognizer()
        self.planner = Planner(self.recognizer, client.rest.state)
        self.executor = Executor(client)

    async def handle(self, turn: Turn, history: Sequence[Message]) -> LocalAnswer | None:
        home = self.client.home
        text = turn.text.strip()
        if not text or not home.loaded:
            return None
        # Loaded on first use of a language (off the event loop), kept for the process.
        li = self.catalog.cached(turn.language) or await asyncio.to_thread(self.catalog.warm, turn.language)
        if li is None:
            return None
        started = time.perf_counter()
        area = home.area_of(turn.area_id, turn.area, turn.device_id, turn.satellite_id)
        try:
            plan = await self.planner.plan(text, li, home, area, history)
        except HAError as exc:  # only a follow-up asks HA anything before the intent runs
            log.warning("intents.ha_failed", step="follow_up", error=str(exc))
            return None
        except Exception:  # a recognizer bug must not cost the user an answer: the LLM still has one
            log.exception("intents.recognize_failed")
            return None
        if plan is None:
            return None  # not a sentence HA knows: the LLM's turn
        recognize_ms = round((time.perf_counter() - started) * 1000, 2)
        try:
            return await self.executor.run(plan, li, area, turn.device_id, recognize_ms)
        except HAError as exc:
            log.warning("intents.ha_failed", intent=plan.intent, error=str(exc))
            return None
