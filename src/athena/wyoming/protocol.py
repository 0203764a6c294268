"""Wyoming's wire format, bounded: reading events off a socket, and the events Athena answers with.

An event is a JSON header line, then `data_length` bytes of JSON merged into its `data`, then `payload_length`
bytes of payload. The `wyoming` library's own reader trusts both lengths (a peer announcing 4 GB makes it
buffer 4 GB), so events are read here with one limit on their whole size, into the library's `Event`; the
answers are the library's own event classes, whose JSON both HA 2025.4 (wyoming 1.5.4) and HA 2026.x
(wyoming 1.10.x) parse — unknown fields are skipped by both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wyoming.event import Event
from wyoming.info import Attribution, HandleModel, HandleProgram, Info

from athena import __version__
from athena.records import is_device_id
from athena.turns import MAX_CONVERSATION_ID, clean_spoken

ATTRIBUTION = Attribution(name="Athena", url="https://pypi.org/project/athena-gateway/")
DESCRIPTION = "Athena: a conversation session per device, Home Assistant's sentences, your LLM"

# What a voice user hears when a transcript cannot become a turn (sent as `not-handled`).
NOTHING_SAID = "Sorry, I didn't catch that."
TOO_LONG = "Sorry, that was too long for me. Please say it in fewer words."
UNKNOWN_DEVICE = "Sorry, I can't tell which device this is."


class BadEvent(Exception):
    """The peer sent something that is not a Wyoming event (or one too big): its connection is closed."""


def _length(header: Mapping[str, Any], key: str) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadEvent(f"{key} is not a byte count")
    return value


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadEvent(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise BadEvent(f"{what} is not a JSON object")
    return value


async def read_event(reader: asyncio.StreamReader, max_bytes: int) -> Event | None:
    """The next event, or None when the peer closed the connection between events.

    The reader's own limit (`asyncio.start_server(limit=max_bytes)`) bounds the header line; the lengths
    it announces are checked against `max_bytes` before a byte of them is read.
    """
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadEvent("the connection ended inside an event header") from None
    except asyncio.LimitOverrunError:
        raise BadEvent(f"an event header longer than {max_bytes} bytes") from None
    header = _json_object(line, "the event header")
    kind, data = header.get("type"), header.get("data") or {}
    if not isinstance(kind, str) or not kind:
        raise BadEvent("the event header has no type")
    if not isinstance(data, dict):
        raise BadEvent("the event's data is not a JSON object")
    data_length, payload_length = _length(header, "data_length"), _length(header, "payload_length")
    size = len(line) + data_length + payload_length
    if size > max_bytes:
        raise BadEvent(f"a {kind} event of {size} bytes; the limit is {max_bytes}")
    try:
        if data_length:
            data.update(_json_object(await reader.readexactly(data_length), "the event's data"))
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        raise BadEvent(f"the connection ended inside a {kind} event") from None
    return Event(type=kind, data=data, payload=payload)


# -- a transcript → what the engine needs ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Said:
    """A transcript's parts: the text, the session's keys and language from its context, and the context
    itself, which every answer echoes. `problem` is set (a sentence to speak) when it cannot be a turn."""

    text: str = ""
    language: str | None = None
    device_id: str | None = None
    satellite_id: str | None = None
    conversation_id: str | None = None
    context: dict[str, Any] | None = None
    problem: str | None = None
    reason: str | None = None  # for the log: why `problem`


def read_transcript(data: Mapping[str, Any], max_text_chars: int) -> Said:
    """HA 2026.x sends `context` {conversation_id, device_id?, satellite_id?} and `language`; HA 2025.4
    (wyoming 1.5.4) sends the text alone. Ids that cannot key a session are refused, never guessed."""
    raw_context = data.get("context")
    context = raw_context if isinstance(raw_context, dict) else None
    text = data.get("text")
    if not isinstance(text, str) or not (text := clean_spoken(text)):
        return Said(context=context, problem=NOTHING_SAID, reason="no text")
    if len(text) > max_text_chars:
        return Said(context=context, problem=TOO_LONG, reason=f"{len(text)} characters")
    ids: dict[str, str | None] = {}
    for key in ("device_id", "satellite_id", "conversation_id"):
        value = (context or {}).get(key)
        if value is None or value == "":
            ids[key] = None
        elif not isinstance(value, str):
            return Said(context=context, problem=UNKNOWN_DEVICE, reason=f"{key} is not a string")
        elif key != "conversation_id" and not is_device_id(value):
            return Said(context=context, problem=UNKNOWN_DEVICE, reason=f"{key} is not a device id")
        elif len(value) > MAX_CONVERSATION_ID:
            return Said(context=context, problem=UNKNOWN_DEVICE, reason=f"{key} is too long")
        else:
            ids[key] = value
    language = data.get("language")
    if not isinstance(language, str) or not 2 <= len(language) <= 35:
        language = None
    return Said(text=text, language=language, context=context, **ids)


# -- what Athena says about itself ------------------------------------------------------------------------
def info_event(languages: list[str], *, home_control: bool, name: str = "Athena") -> Event:
    """The `info` answer to `describe`: one handle program. HA names its conversation agent after it and
    offers it for these languages; `supports_home_control` when the local path (HA's sentences) is on."""
    model = HandleModel(
        name="athena",
        attribution=ATTRIBUTION,
        installed=True,
        description=DESCRIPTION,
        version=__version__,
        languages=languages,
    )
    program = HandleProgram(
        name=name,
        attribution=ATTRIBUTION,
        installed=True,
        description=DESCRIPTION,
        version=__version__,
        models=[model],
        supports_handled_streaming=True,
        supports_home_control=home_control,
    )
    return Info(handle=[program]).event()


def announces_streaming(data: Mapping[str, Any]) -> bool:
    """A peer's own `info` saying it reads `handled-start` / `-chunk` / `-stop` (the flag Wyoming defines
    for handle programs). Neither HA 2025.4 nor 2026.x sends one: they get the whole `handled`."""
    handle = data.get("handle")
    return isinstance(handle, list) and any(
        isinstance(p, dict) and p.get("supports_handled_streaming") is True for p in handle
    )
