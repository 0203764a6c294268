"""Sentence → intent with hassil, against the home's exposed names, areas and floors.

Slot lists are built once per registry snapshot (names carry their domain as context, so "turn on the kitchen
window" cannot pick a light). The device's area goes in as `intent_context`, which lets "turn off the lights"
mean this room. Hassil's unmatched-entities mode stays off: it is ~20x slower and an unknown name belongs to
the LLM anyway.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from hassil import TextSlotList, recognize_best
from hassil.intents import SlotList

from athena.homeassistant.home import Home
from athena.local.catalog import LanguageIntents

# HA's default agent ranks user-defined sentences first and prefers a match that names an entity.
_CUSTOM_SENTENCE = "hass_custom_sentence"


@dataclass(frozen=True, slots=True)
class Recognition:
    intent: str
    slots: dict[str, Any]  # slot name -> value, as /api/intent/handle takes them
    slot_texts: dict[str, str]  # slot name -> the words said (for response templates)
    response_key: str | None
    domain: str | None = None  # of the named entity, from the name list's context


def build_slot_lists(home: Home) -> dict[str, SlotList]:
    names: list[tuple[str, str, dict[str, Any]]] = []
    for entity in home.entities.values():
        context: dict[str, Any] = {"domain": entity.domain}
        if entity.device_class:
            context["device_class"] = entity.device_class
        for name in (*entity.aliases, entity.name):
            if name:
                names.append((name, name, context))
    areas = [(n, a.name) for a in home.areas.values() for n in (a.name, *a.aliases) if n]
    floors = [(n, f.name) for f in home.floors.values() for n in (f.name, *f.aliases) if n]
    return {
        "name": TextSlotList.from_tuples(names, allow_template=False),
        "area": TextSlotList.from_tuples(areas, allow_template=False),
        "floor": TextSlotList.from_tuples(floors, allow_template=False),
    }


class Recognizer:
    """Thread-safe: recognition runs in a worker thread so a 10 ms parse never stalls the event loop.

    Like HA's default agent, results are cached per (sentence, language, room, registry snapshot): voice
    commands repeat ("turn off the lights"), and a new snapshot invalidates every entry by its version.
    """

    def __init__(self, cache_size: int = 512) -> None:
        self._lists: tuple[int, dict[str, SlotList]] | None = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, str | None, int], Recognition | None] = OrderedDict()
        self._cache_size = cache_size

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def slot_lists(self, home: Home) -> dict[str, SlotList]:
        cached = self._lists
        if cached is not None and cached[0] == home.version:
            return cached[1]
        with self._lock:
            if self._lists is None or self._lists[0] != home.version:
                self._lists = (home.version, build_slot_lists(home))
            return self._lists[1]

    def recognize(
        self, text: str, li: LanguageIntents, home: Home, area_name: str | None = None
    ) -> Recognition | None:
        key = (text.strip(), li.language, area_name, home.version)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        found = self._recognize(text, li, home, area_name)
        if self._cache_size:
            with self._lock:
                self._cache[key] = found
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return found

    def _recognize(
        self, text: str, li: LanguageIntents, home: Home, area_name: str | None
    ) -> Recognition | None:
        intent_context = {"area": {"value": area_name, "text": area_name}} if area_name else None
        result = recognize_best(
            text,
            li.intents,
            slot_lists=self.slot_lists(home),
            intent_context=intent_context,
            language=li.language,
            best_metadata_key=_CUSTOM_SENTENCE,
            best_slot_name="name",
        )
        if result is None:
            return None
        slots: dict[str, Any] = {}
        texts: dict[str, str] = {}
        for entity in result.entities_list:
            if entity.is_wildcard and not str(entity.value).strip():
                return None
            slots[entity.name] = entity.value
            texts[entity.name] = str(entity.text or entity.value).strip()
        domain = result.context.get("domain")
        return Recognition(
            intent=result.intent.name,
            slots=slots,
            slot_texts=texts,
            response_key=result.response,
            domain=domain if isinstance(domain, str) else None,
        )
