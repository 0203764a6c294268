"""Running a plan: HA executes the intent (`/api/intent/handle`), its own response template is spoken.

HA resolves names, areas and exposure itself; anything it declines (no match, no such target, an error answer)
returns None so the engine asks the LLM instead. An executed action always gets a short sentence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from athena.homeassistant import HAClient
from athena.homeassistant.home import Area
from athena.homeassistant.rest import response_targets
from athena.local.catalog import LanguageIntents
from athena.local.planner import Plan
from athena.local.speech import TemplateState, needs_states, render
from athena.records import IntentMemory
from athena.turns import LocalAnswer, Target

log = structlog.get_logger("athena.local")

DONE = {"en": "Done.", "de": "Erledigt.", "fr": "C'est fait.", "es": "Hecho.", "nl": "Klaar.", "it": "Fatto."}
_MAX_STATES = 25  # states fetched to render one answer


class Executor:
    def __init__(self, client: HAClient) -> None:
        self.client = client

    async def run(
        self, plan: Plan, li: LanguageIntents, area: Area | None, device_id: str | None, recognize_ms: float
    ) -> LocalAnswer | None:
        """Execute the plan in HA; raises HAError when HA cannot be reached."""
        data = dict(plan.slots)
        if area is not None and area.id:
            data["preferred_area_id"] = area.id
        started = time.perf_counter()
        result = await self.client.rest.handle_intent(
            plan.intent, data, language=li.language, device_id=device_id
        )
        ha_ms = round((time.perf_counter() - started) * 1000, 2)
        response_type = result.get("response_type")
        if response_type not in ("action_done", "query_answer"):
            log.info("intents.ha_declined", intent=plan.intent, code=(result.get("data") or {}).get("code"))
            return None
        success, failed = response_targets(result)
        entity_ids = [t.id for t in success if t.type == "entity"]
        domain = plan.domain or _common_domain(entity_ids) or _slot_domain(plan.slots)
        speech = await self._speech(plan, li, result, success, entity_ids, domain)
        log.info("intents.answered", intent=plan.intent, follow_up=plan.follow_up, targets=len(entity_ids))
        return LocalAnswer(
            speech=speech,
            response_type=response_type,
            success=success,
            failed=failed,
            memory=IntentMemory(
                name=plan.intent,
                slots=plan.slots,
                language=li.language,
                response_key=plan.response_key,
                domain=domain,
                entity_ids=entity_ids,
                slot_texts=plan.slot_texts,
            ),
            follow_up=plan.follow_up,
            recognize_ms=recognize_ms,
            ha_ms=ha_ms,
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


def _common_domain(entity_ids: Sequence[str]) -> str | None:
    domains = {e.split(".", 1)[0] for e in entity_ids}
    return domains.pop() if len(domains) == 1 else None


def _slot_domain(slots: Mapping[str, Any]) -> str | None:
    value = slots.get("domain")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) else None
