"""What to run for a sentence: a follow-up to the session's last home command, else one of HA's sentences.

A follow-up ("now turn them off", "what about the kitchen?") only says what changes; the memory of the last
local command (kept on its assistant message) supplies the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from athena.homeassistant import Home
from athena.homeassistant.home import Area
from athena.local import followups
from athena.local.catalog import LanguageIntents
from athena.local.recognize import Recognizer
from athena.records import IntentMemory, Message

_STEP = 25  # brightness percentage points per "brighter" / "dimmer"
# A percentage follow-up means a different intent per kind of thing.
_LEVEL_INTENTS = {
    "light": ("HassLightSet", "brightness"),
    "cover": ("HassSetPosition", "position"),
    "valve": ("HassSetPosition", "position"),
    "media_player": ("HassSetVolume", "volume_level"),
    "fan": ("HassFanSetSpeed", "percentage"),
}

StateReader = Callable[[str], Awaitable[dict[str, Any] | None]]  # entity id -> HA state (None: unknown)


@dataclass(slots=True)
class Plan:
    """An intent to run: from recognition, or from a follow-up applied to the memory."""

    intent: str
    slots: dict[str, Any]
    response_key: str | None
    domain: str | None
    slot_texts: dict[str, str] = field(default_factory=dict)
    follow_up: str | None = None


def last_memory(history: Sequence[Message]) -> IntentMemory | None:
    """The memory of the latest assistant turn, if that turn was a home command.

    Only the latest: after an LLM answer, "turn it off" may well mean what the LLM just talked about.
    """
    for message in reversed(history):
        if message.role == "assistant":
            return message.meta.intent
    return None


class Planner:
    def __init__(self, recognizer: Recognizer, state: StateReader) -> None:
        self.recognizer = recognizer
        self._state = state

    async def plan(
        self, text: str, li: LanguageIntents, home: Home, area: Area | None, history: Sequence[Message]
    ) -> Plan | None:
        """A follow-up to the session's last home command, else one of HA's sentences, else None."""
        memory = last_memory(history)
        if (
            memory is not None
            and (fu := followups.parse(text, li.language)) is not None
            and (plan := await self._follow_up(fu, memory, home, li)) is not None
        ):
            return plan
        area_name = area.name if area is not None else None
        found = await asyncio.to_thread(self.recognizer.recognize, text, li, home, area_name)
        if found is None:
            return None
        # Copies: the recognition may be a cached one, shared with later turns.
        return Plan(found.intent, dict(found.slots), found.response_key, found.domain, dict(found.slot_texts))

    async def _follow_up(
        self, fu: followups.FollowUp, mem: IntentMemory, home: Home, li: LanguageIntents
    ) -> Plan | None:
        if fu.kind == "place":
            return self._move(fu.place or "", mem, home)
        targets = mem.targets()
        if not targets:
            return None
        texts = {k: v for k, v in mem.slot_texts.items() if k in targets}
        if fu.kind == "power":
            intent = "HassTurnOn" if fu.on else "HassTurnOff"
            return Plan(intent, targets, mem.response_key, mem.domain, texts, "power")
        if fu.kind == "level":
            found = _LEVEL_INTENTS.get(mem.domain or "")
            if found is None or found[0] not in li.responses:
                return None
            intent, slot = found
            level = fu.level if fu.level is not None else 0
            key = "default" if slot != "brightness" else "brightness"
            return Plan(intent, {**targets, slot: level}, key, mem.domain, texts, "level")
        if fu.kind == "adjust" and mem.domain == "light":
            current = await self._brightness(mem.entity_ids)
            level = max(1, min(100, current + fu.step * _STEP))
            return Plan(
                "HassLightSet", {**targets, "brightness": level}, "brightness", "light", texts, "adjust"
            )
        return None

    @staticmethod
    def _move(place: str, mem: IntentMemory, home: Home) -> Plan | None:
        """The last intent, aimed at another area, floor or named thing."""
        keep = {k: v for k, v in mem.slots.items() if k not in ("name", "area", "floor")}
        texts = {k: v for k, v in mem.slot_texts.items() if k not in ("name", "area", "floor")}
        if (area := home.find_area(place)) is not None:
            slots, texts["area"] = {**keep, "area": area.name}, place
        elif (floor := home.find_floor(place)) is not None:
            slots, texts["floor"] = {**keep, "floor": floor.name}, place
        elif entities := home.find_entities(place):
            domains = {e.domain for e in entities}
            slots = {k: v for k, v in keep.items() if k != "domain" or v in domains}
            slots["name"], texts["name"] = entities[0].name, place
            key = mem.response_key
            if not key or key.endswith(("_area", "_floor", "_all")):
                key = "default"  # e.g. "Turned on the lights" (area) → "Turned on the light"
            return Plan(mem.name, slots, key, entities[0].domain, texts, "place")
        else:
            return None
        if "domain" not in slots and mem.domain and "name" in mem.slots:
            slots["domain"] = mem.domain
        return Plan(mem.name, slots, mem.response_key, mem.domain, texts, "place")

    async def _brightness(self, entity_ids: Sequence[str]) -> int:
        for entity_id in entity_ids:
            state = await self._state(entity_id)
            if state is None:
                continue
            if state.get("state") != "on":
                return 0
            raw = (state.get("attributes") or {}).get("brightness")
            return round(float(raw) * 100 / 255) if isinstance(raw, int | float) else 100
        return 0
