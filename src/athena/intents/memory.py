"""The follow-up memory: what the last local turn did, kept in its assistant message's meta.

The engine saves `LocalAnswer.meta` on the assistant message, so the memory lives in the session's history
(in whichever store) and ends with the session: no second store, nothing to expire separately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from athena.sessions.models import Message

META_KEY = "intent"
# Slots that say *which* things an intent acts on (kept by follow-ups); the others say what to do.
TARGET_SLOTS = ("name", "area", "floor", "domain", "device_class")


@dataclass(frozen=True, slots=True)
class IntentMemory:
    name: str  # the HA intent, e.g. HassTurnOn
    slots: dict[str, Any]
    language: str
    response_key: str | None = None
    domain: str | None = None  # of the targets, e.g. "light"
    entity_ids: list[str] = field(default_factory=list)
    slot_texts: dict[str, str] = field(default_factory=dict)

    def targets(self) -> dict[str, Any]:
        return {k: v for k, v in self.slots.items() if k in TARGET_SLOTS}

    def to_meta(self) -> dict[str, Any]:
        return {META_KEY: asdict(self)}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> IntentMemory | None:
        raw = meta.get(META_KEY)
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            return None
        try:
            return cls(
                name=raw["name"],
                slots=dict(raw.get("slots") or {}),
                language=str(raw.get("language") or "en"),
                response_key=raw.get("response_key"),
                domain=raw.get("domain"),
                entity_ids=[str(e) for e in raw.get("entity_ids") or ()],
                slot_texts={str(k): str(v) for k, v in (raw.get("slot_texts") or {}).items()},
            )
        except (TypeError, ValueError):
            return None


def last_memory(history: Sequence[Message]) -> IntentMemory | None:
    """The memory of the latest assistant turn, if that turn was a local intent.

    Only the latest: after an LLM answer, "turn it off" may well mean what the LLM just talked about.
    """
    for message in reversed(history):
        if message.role == "assistant":
            return IntentMemory.from_meta(message.meta or {})
    return None
