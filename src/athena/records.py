"""What a session is made of: small frozen records every store reads and writes. Imports nothing of Athena's.

A message's metadata (`MessageMeta`) says how it came about — which path answered, how fast, which tools it
called, what a home command did (the follow-up memory) — as typed fields, stored as a compact JSON object.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]

# Device keys come from the network (HA device ids, satellite entity ids, names typed by a person): bound
# them before they become store keys.
DEVICE_ID_MAX = 128
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]*")


class InvalidDeviceId(ValueError):
    """A device id that is empty, too long or has characters outside [A-Za-z0-9._:@/-]."""


def is_device_id(value: str) -> bool:
    return 0 < len(value) <= DEVICE_ID_MAX and _DEVICE_ID.fullmatch(value) is not None


def validate_device_id(value: str) -> str:
    if not is_device_id(value):
        raise InvalidDeviceId(
            f"device id must be 1-{DEVICE_ID_MAX} characters of letters, digits and . _ : @ / - "
            "(starting with a letter or digit)"
        )
    return value


def expiry(created_at: float, last_activity: float, timeout: float, max_age: float) -> float:
    """When a session ends: after `timeout` idle seconds or at `max_age`, whichever comes first."""
    return min(last_activity + timeout, created_at + max_age)


@dataclass(frozen=True, slots=True)
class Session:
    """One device's conversation. `expires_at` = min(last_activity + timeout, created_at + max_age)."""

    id: str
    device: str
    created_at: float
    last_activity: float
    expires_at: float
    timeout: float
    max_age: float
    turns: int = 0

    @classmethod
    def begin(cls, session_id: str, device: str, now: float, timeout: float, max_age: float) -> Session:
        return cls(session_id, device, now, now, expiry(now, now, timeout, max_age), timeout, max_age)

    def touched(self, now: float, timeout: float, max_age: float, *, turns: int = 0) -> Session:
        """This session after activity at `now` and `turns` more turns, under the caller's policy (which may
        differ from the one it began with, e.g. an override matched by device name on a later turn)."""
        return Session(
            self.id, self.device, self.created_at, now, expiry(self.created_at, now, timeout, max_age),
            timeout, max_age, self.turns + turns,
        )

    @property
    def ended_by_age(self) -> bool:
        """Whether the maximum age, rather than inactivity, sets the expiry."""
        return self.created_at + self.max_age <= self.last_activity + self.timeout

    @property
    def end_reason(self) -> Literal["timeout", "max_age"]:
        """Why it ends (or ended) on its own."""
        return "max_age" if self.ended_by_age else "timeout"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call a model asked for; `arguments` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str = "{}"

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


# Slots that say *which* things an intent acts on (kept by follow-ups); the others say what to do.
TARGET_SLOTS = ("name", "area", "floor", "domain", "device_class")


@dataclass(frozen=True, slots=True)
class IntentMemory:
    """What the last home command did, so "now turn them off" can act on the same things."""

    name: str  # the HA intent, e.g. HassTurnOn
    slots: dict[str, Any]
    language: str
    response_key: str | None = None
    domain: str | None = None  # of the targets, e.g. "light"
    entity_ids: list[str] = field(default_factory=list)
    slot_texts: dict[str, str] = field(default_factory=dict)

    def targets(self) -> dict[str, Any]:
        return {k: v for k, v in self.slots.items() if k in TARGET_SLOTS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "slots": self.slots, "language": self.language,
            "response_key": self.response_key, "domain": self.domain, "entity_ids": self.entity_ids,
            "slot_texts": self.slot_texts,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> IntentMemory | None:
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


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """How a message came about. Every field is optional; only the set ones are stored."""

    device: str | None = None
    path: str | None = None  # assistant messages: how the turn was answered (see turns.AnswerPath)
    latency_ms: float | None = None
    backend: str | None = None
    model: str | None = None
    finish_reason: str | None = None  # "length": the model was cut off by its token limit
    source: str | None = None  # "home_assistant": a turn HA answered itself, added as history
    intent: IntentMemory | None = None  # the follow-up memory of a home command
    follow_up: str | None = None  # which follow-up form produced the command, if any
    recognize_ms: float | None = None
    ha_ms: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant message that called tools
    tool_call_id: str | None = None  # a tool message: the call it answers
    tool_name: str | None = None
    error: str | None = None  # a failed turn: "<failure>: <what went wrong>" (path "error")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _META_FIELDS:
            value = getattr(self, name)
            if value is None or value == ():
                continue
            if name == "intent":
                value = value.to_dict()
            elif name == "tool_calls":
                value = [c.to_dict() for c in value]
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> MessageMeta:
        """Tolerant: unknown keys and values of the wrong type are ignored, so records written by another
        version still load. Walks the keys present (a turn reads its whole history through here)."""
        if not raw:
            return EMPTY_META
        if isinstance(local := raw.get("local"), Mapping):  # the 0.1 layout kept three fields in "local"
            raw = {k: v for k, v in local.items() if k in _LEGACY_LOCAL} | dict(raw)
        kw: dict[str, Any] = {}
        for key, value in raw.items():
            kind = _META_KINDS.get(key)
            if kind is str:
                if isinstance(value, str):
                    kw[key] = value
            elif kind is float:
                if (number := _num(value)) is not None:
                    kw[key] = number
            elif key == "intent":
                kw[key] = IntentMemory.from_dict(value)
            elif key == "tool_calls" and isinstance(value, list):
                kw[key] = tuple(
                    ToolCall(str(c.get("id", "")), str(c.get("name", "")), str(c.get("arguments") or "{}"))
                    for c in value if isinstance(c, Mapping)
                )
        return cls(**kw)


EMPTY_META = MessageMeta()
_META_FIELDS = tuple(f.name for f in fields(MessageMeta))
_LEGACY_LOCAL = ("follow_up", "recognize_ms", "ha_ms")
_META_KINDS: dict[str, type] = {  # MessageMeta's plain fields by the type of their value
    f.name: str if f.type == "str | None" else float
    for f in fields(MessageMeta) if f.type in ("str | None", "float | None")
}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    ts: float
    meta: MessageMeta = EMPTY_META


# -- devices: what the operator's console shows and changes at run time ---------------------------------
DeviceStatus = Literal["allowed", "blocked"]
DEVICE_STATUSES: tuple[DeviceStatus, ...] = ("allowed", "blocked")
SETTING_NAMES = ("timeout", "max_age", "history", "system_prompt", "language", "status")


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """A device's stored settings; None falls back to ATHENA_DEVICES, then to the global value."""

    timeout: float | None = None
    max_age: float | None = None
    history: int | None = None  # messages of history sent to the LLM
    system_prompt: str | None = None  # added to the system prompt
    language: str | None = None  # replaces the language a turn arrives with
    status: DeviceStatus | None = None  # None: as ATHENA_DEVICE_POLICY says (open: allowed; known: pending)

    def to_dict(self) -> dict[str, Any]:
        return {f: v for f in SETTING_NAMES if (v := getattr(self, f)) is not None}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> DeviceSettings:
        """Tolerant, like MessageMeta: a value of the wrong type reads as unset."""
        if not raw:
            return NO_SETTINGS
        status = raw.get("status")
        history = _num(raw.get("history"))
        return cls(
            timeout=_num(raw.get("timeout")),
            max_age=_num(raw.get("max_age")),
            history=int(history) if history is not None else None,
            system_prompt=_str(raw.get("system_prompt")),
            language=_str(raw.get("language")),
            status=status if status in DEVICE_STATUSES else None,
        )

    def merged(self, changes: Mapping[str, Any]) -> DeviceSettings:
        """These settings with `changes` applied: a value sets a field, None clears it, absent keeps it."""
        return DeviceSettings.from_dict({**self.to_dict(), **changes})


NO_SETTINGS = DeviceSettings()


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """What the store knows about a device. `version` counts settings changes (0: never set), so a gateway
    holding cached settings learns from the turn's own store operation that they changed."""

    id: str
    name: str | None = None  # HA's device name, as the last turn named it
    area: str | None = None
    first_seen: float | None = None  # None: configured before its first turn
    last_seen: float | None = None
    turns: int = 0
    refused: int = 0  # turns the device policy refused
    version: int = 0
    settings: DeviceSettings = NO_SETTINGS


@dataclass(frozen=True, slots=True)
class Visit:
    """What a turn tells the store about its device: HA's name and area, and the settings version the
    caller applied (the store refuses the turn with DeviceChanged when the stored one differs)."""

    name: str | None = None
    area: str | None = None
    version: int = 0


EndedBy = Literal["timeout", "max_age", "start_over", "cleared"]


@dataclass(frozen=True, slots=True)
class PastSession:
    """A session that ended, kept with its messages for the retention period."""

    session: Session
    ended_at: float
    reason: str  # EndedBy


def ended_by(session: Session, now: float, forced: EndedBy) -> EndedBy:
    """Why a session a store removes at `now` ended: on its own if past its deadline, else `forced`."""
    return session.end_reason if now >= session.expires_at else forced


# How a turn was answered, for usage: turns.AnswerPath, with "tools" for LLM answers that called tools.
UsagePath = Literal["llm", "local", "tools", "reset", "error", "refused"]
USAGE_PATHS: tuple[UsagePath, ...] = ("llm", "local", "tools", "reset", "error", "refused")


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One answered (or refused) turn, without what was said: kept longer than transcripts."""

    ts: float
    device: str  # the session key (a device, or conversation:/oneoff: for turns without one)
    session_id: str
    path: str  # UsagePath
    latency_ms: float
    tools: int = 0  # tool calls the turn's answers made

    def encode(self) -> str:
        return f"{self.ts!r}|{self.session_id}|{self.path}|{self.latency_ms!r}|{self.tools}"

    @classmethod
    def decode(cls, device: str, raw: str) -> UsageRow:
        ts, session_id, path, latency, tools = raw.split("|")
        return cls(float(ts), device, session_id, path, float(latency), int(tools))
