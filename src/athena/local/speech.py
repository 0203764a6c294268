"""The spoken answer: HA's own response templates rendered the way its default agent does.

`/api/intent/handle` returns targets but usually no speech (HA's conversation agent renders the intents'
response templates itself). We do the same with a sandboxed Jinja environment and the variables HA provides:
`slots`, `state` (the first target's state) and `query` (matched / unmatched states for questions).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ISO_TIME_OR_DATE = re.compile(r"\d{2}:\d{2}|\d{4}-\d{2}-\d{2}")
_ENV = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
_NEEDS_STATE = re.compile(
    r"\bstate\.(?:state|attributes|last_|state_with_unit)|state_attr|is_state|\bquery\b"
)


class TemplateState:
    """The slice of HA's TemplateState that response templates read."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.entity_id: str = str(raw.get("entity_id", ""))
        self.domain, _, self.object_id = self.entity_id.partition(".")
        self.state: str = str(raw.get("state", ""))
        self.attributes: Mapping[str, Any] = raw.get("attributes") or {}
        self.name: str = str(self.attributes.get("friendly_name") or raw.get("name") or self.object_id)

    @property
    def state_with_unit(self) -> str:
        unit = self.attributes.get("unit_of_measurement")
        return f"{self.state} {unit}" if unit else self.state

    def __str__(self) -> str:
        return self.state


def needs_states(template: str) -> bool:
    """Whether rendering needs fresh states from HA, or the targets' names and domains are enough."""
    return bool(_NEEDS_STATE.search(template))


@lru_cache(maxsize=512)
def _compile(template: str) -> Any:
    return _ENV.from_string(template)


def _speech_slot(value: Any) -> Any:
    """HA sends `time` / `date` speech slots as ISO strings; templates expect objects with .hour / .month."""
    if isinstance(value, str) and _ISO_TIME_OR_DATE.match(value):
        for parse in (dt.time.fromisoformat, dt.date.fromisoformat, dt.datetime.fromisoformat):
            try:
                return parse(value)
            except ValueError:
                continue
    return value


def render(
    template: str,
    slots: Mapping[str, Any],
    states: Sequence[TemplateState] = (),
    *,
    matched: Sequence[TemplateState] | None = None,
    unmatched: Sequence[TemplateState] = (),
    speech_slots: Mapping[str, Any] | None = None,
) -> str:
    """Render one response template; raises ValueError when it cannot be rendered."""
    by_id = {s.entity_id: s for s in states}
    all_slots = dict(slots)
    for key, value in (speech_slots or {}).items():
        all_slots[key] = _speech_slot(value)
    matched = list(states) if matched is None else list(matched)
    first = matched[0] if matched else (unmatched[0] if unmatched else None)

    def state_attr(entity_id: str, attr: str) -> Any:
        s = by_id.get(entity_id)
        return s.attributes.get(attr) if s is not None else None

    def is_state(entity_id: str, value: Any) -> bool:
        s = by_id.get(entity_id)
        return s is not None and (s.state in value if isinstance(value, list | tuple) else s.state == value)

    try:
        text = _compile(template).render(
            slots=all_slots,
            state=first,
            query={"matched": matched, "unmatched": list(unmatched)},
            state_attr=state_attr,
            is_state=is_state,
        )
    except (TemplateError, TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        raise ValueError(f"response template failed: {exc}") from exc
    return " ".join(str(text).split())
