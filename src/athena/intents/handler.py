"""The local home-control turn: recognize with HA's sentences, let HA execute, speak HA's answer, remember it.

Anything HA would hand to an LLM (no match, no such target, HA down, an error answer) returns None, so the
engine asks the LLM instead; an executed action always gets a short spoken sentence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from athena.engine.types import LocalAnswer, Target, Turn
from athena.homeassistant import HAClient, HAError, Home
from athena.homeassistant.registry import Area
from athena.intents import followups
from athena.intents.catalog import IntentCatalog, LanguageIntents
from athena.intents.memory import IntentMemory, last_memory
from athena.intents.recognize import Recognizer
from athena.intents.speech import TemplateState, needs_states, render
from athena.sessions.models import Message, Session

log = structlog.get_logger("athena.intents")

DONE = {"en": "Done.", "de": "Erledigt.", "fr": "C'est fait.", "es": "Hecho.", "nl": "Klaar.", "it": "Fatto."}
_STEP = 25  # brightness percentage points per "brighter" / "dimmer"
_MAX_STATES = 25  # states fetched to render one answer
_TARGET_TYPES = {"entity", "area", "device", "floor", "domain", "device_class", "custom"}
# A percentage follow-up means a different intent per kind of thing.
_LEVEL_INTENTS = {
    "light": ("HassLightSet", "brightness"),
    "cover": ("HassSetPosition", "position"),
    "valve": ("HassSetPosition", "position"),
    "media_player": ("HassSetVolume", "volume_level"),
    "fan": ("HassFanSetSpeed", "percentage"),
}


@dataclass(slots=True)
class Plan:
    """An intent to run: from recognition, or from a follow-up applied to the memory."""

    intent: str
    slots: dict[str, Any]
    response_key: str | None
    domain: str | None
    slot_texts: dict[str, str] = field(default_factory=dict)
    follow_up: str | None = None


class HAIntentHandler:
    def __init__(
        self, client: HAClient, catalog: IntentCatalog, recognizer: Recognizer | None = None
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.recognizer = recognizer or Recognizer()

    async def handle(self, turn: Turn, session: Session, history: Sequence[Message]) -> LocalAnswer | None:
        home = self.client.home
        text = turn.text.strip()
        if not text or not home.loaded:
            return None
        # Loaded on first use of a language (off the event loop), kept for the process.
        li = self.catalog.cached(turn.language) or await asyncio.to_thread(self.catalog.warm, turn.language)
        if li is None:
            return None
        started = time.perf_counter()
        area = self.device_area(turn, home)
        try:
            plan = await self._plan(text, li, home, area, history)
        except HAError as exc:  # only a follow-up asks HA anything before the intent runs
            log.warning("intents.ha_failed", step="follow_up", error=str(exc))
            return None
        except Exception:  # a recognizer bug must not cost the user an answer: the LLM still has one
            log.exception("intents.recognize_failed")
            return None
        if plan is None:
            return None  # not a sentence HA knows: the LLM's turn
        recognized = time.perf_counter()
        try:
            return await self._execute(plan, turn, li, area, started, recognized)
        except HAError as exc:
            log.warning("intents.ha_failed", intent=plan.intent, error=str(exc))
            return None

    async def _plan(
        self, text: str, li: LanguageIntents, home: Home, area: Area | None, history: Sequence[Message]
    ) -> Plan | None:
        """A follow-up to the session's last local intent, else one of HA's sentences."""
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

    @staticmethod
    def device_area(turn: Turn, home: Home) -> Area | None:
        """The room the turn was spoken in: what the integration sent, else HA's registry."""
        if turn.area_id and turn.area_id in home.areas:
            return home.areas[turn.area_id]
        if turn.area:
            return home.find_area(turn.area) or Area(id="", name=turn.area)
        for device_id in (turn.ha_device_id, turn.device):
            if area := home.area_of_device(device_id):
                return area
        return home.area_of_entity(turn.satellite_id)

    # -- follow-ups ----------------------------------------------------------------------------------------
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
            intent, slot = _LEVEL_INTENTS.get(mem.domain or "", (None, None))
            if intent is None or slot is None or intent not in li.responses:
                return None
            level = fu.level if fu.level is not None else 0
            return Plan(
                intent,
                {**targets, slot: level},
                "default" if slot != "brightness" else "brightness",
                mem.domain,
                texts,
                "level",
            )
        if fu.kind == "adjust" and mem.domain == "light":
            current = await self._brightness(mem.entity_ids)
            level = max(1, min(100, current + fu.step * _STEP))
            return Plan(
                "HassLightSet", {**targets, "brightness": level}, "brightness", "light", texts, "adjust"
            )
        return None

    def _move(self, place: str, mem: IntentMemory, home: Home) -> Plan | None:
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
            state = await self.client.rest.state(entity_id)
            if state is None:
                continue
            if state.get("state") != "on":
                return 0
            raw = (state.get("attributes") or {}).get("brightness")
            return round(float(raw) * 100 / 255) if isinstance(raw, int | float) else 100
        return 0

    # -- execution -----------------------------------------------------------------------------------------
    async def _execute(
        self,
        plan: Plan,
        turn: Turn,
        li: LanguageIntents,
        area: Area | None,
        started: float,
        recognized: float,
    ) -> LocalAnswer | None:
        data = dict(plan.slots)
        if area is not None and area.id:
            data["preferred_area_id"] = area.id
        result = await self.client.rest.handle_intent(
            plan.intent, data, language=li.language, device_id=turn.ha_device_id
        )
        executed = time.perf_counter()
        response_type = result.get("response_type")
        body = result.get("data") or {}
        if response_type not in ("action_done", "query_answer"):
            log.info("intents.ha_declined", intent=plan.intent, code=body.get("code"))
            return None
        success = _targets(body.get("success"))
        failed = _targets(body.get("failed"))
        entity_ids = [t.id for t in success if t.type == "entity"]
        domain = plan.domain or _common_domain(entity_ids) or _slot_domain(plan.slots)
        speech = await self._speech(plan, li, result, success, entity_ids, domain)
        memory = IntentMemory(
            name=plan.intent,
            slots=plan.slots,
            language=li.language,
            response_key=plan.response_key,
            domain=domain,
            entity_ids=entity_ids,
            slot_texts=plan.slot_texts,
        )
        meta = memory.to_meta()
        meta["local"] = {
            "follow_up": plan.follow_up,
            "recognize_ms": round((recognized - started) * 1000, 2),
            "ha_ms": round((executed - recognized) * 1000, 2),
        }
        log.info("intents.answered", intent=plan.intent, follow_up=plan.follow_up, targets=len(entity_ids))
        return LocalAnswer(
            speech=speech,
            response_type=response_type,
            path="local",
            success=success,
            failed=failed,
            meta=meta,
        )

    async def _speech(
        self,
        plan: Plan,
        li: LanguageIntents,
        result: Mapping[str, Any],
        success: Sequence[Target],
        entity_ids: Sequence[str],
        domain: str | None,
    ) -> str:
        plain = ((result.get("speech") or {}).get("plain") or {}).get("speech")
        if isinstance(plain, str) and plain.strip():
            return plain.strip()
        fallback = DONE.get(li.language.split("-", 1)[0], DONE["en"])
        template = li.response(plan.intent, _response_key(plan, li, domain))
        if not template:
            return fallback
        if needs_states(template):
            fetched = await asyncio.gather(*(self.client.rest.state(e) for e in entity_ids[:_MAX_STATES]))
            states = [TemplateState(s) for s in fetched if s]
        else:
            names = {t.id: t.name for t in success}
            states = [
                TemplateState({"entity_id": e, "attributes": {"friendly_name": names.get(e, e)}})
                for e in entity_ids[:_MAX_STATES]
            ]
            if not states and domain:  # only the domain is read ("Turned on the light")
                states = [TemplateState({"entity_id": f"{domain}.unknown"})]
        matched, unmatched = _split_by_state(states, plan.slots.get("state"))
        slots = {**plan.slots, **plan.slot_texts}
        try:
            speech = render(
                template,
                slots,
                states,
                matched=matched,
                unmatched=unmatched,
                speech_slots=result.get("speech_slots") or {},
            )
        except ValueError as exc:
            log.warning("intents.render_failed", intent=plan.intent, error=str(exc))
            return fallback
        return speech or fallback


def _response_key(plan: Plan, li: LanguageIntents, domain: str | None) -> str | None:
    """Keep the recognized sentence's response; for a follow-up moved onto an area, HA's area wording."""
    key = plan.response_key
    if not plan.follow_up:
        return key
    known = li.responses.get(plan.intent) or {}
    if "name" not in plan.slots and (key in (None, "default") or plan.follow_up == "power"):
        where = "area" if "area" in plan.slots else "floor" if "floor" in plan.slots else None
        kind = {"light": "lights", "fan": "fans"}.get(domain or "")
        if where and kind and f"{kind}_{where}" in known:
            return f"{kind}_{where}"
    if plan.follow_up == "power" and key not in known:
        return "default"
    return key


def _split_by_state(
    states: list[TemplateState], wanted: Any
) -> tuple[list[TemplateState], list[TemplateState]]:
    if wanted is None:
        return states, []
    values = {str(v) for v in wanted} if isinstance(wanted, list | tuple) else {str(wanted)}
    matched = [s for s in states if s.state in values]
    return matched, [s for s in states if s.state not in values]


def _targets(raw: Any) -> tuple[Target, ...]:
    out = []
    for item in raw or ():
        if isinstance(item, Mapping) and item.get("id") is not None:
            kind = item.get("type") if item.get("type") in _TARGET_TYPES else "custom"
            out.append(Target(name=str(item.get("name") or item["id"]), id=str(item["id"]), type=kind))
    return tuple(out)


def _common_domain(entity_ids: Sequence[str]) -> str | None:
    domains = {e.split(".", 1)[0] for e in entity_ids}
    return domains.pop() if len(domains) == 1 else None


def _slot_domain(slots: Mapping[str, Any]) -> str | None:
    value = slots.get("domain")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) else None
