"""What the operator's console, the operator API and the CLI do: devices and their run-time settings, live and
past transcripts, export, usage figures. Over the session manager, which owns every decision here; this only
shapes the answers and resolves what an operator typed (a device id or an HA name) to a device."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from athena.records import Message, is_device_id
from athena.sessions.manager import SessionManager
from athena.sessions.usage import report


class UnknownDevice(LookupError):
    """No device has this id or HA name."""


class AmbiguousDevice(LookupError):
    """Several devices have this HA name; `matches` are their ids."""

    def __init__(self, ref: str, matches: list[str]) -> None:
        super().__init__(f"{len(matches)} devices are named {ref!r}: {', '.join(matches)}; use an id")
        self.matches = matches


def message_dict(m: Message) -> dict[str, Any]:
    return {"role": m.role, "content": m.content, "ts": m.ts, "meta": m.meta.to_dict()}


class Operator:
    def __init__(self, sessions: SessionManager, time_zone: str | None = None) -> None:
        self.sessions = sessions
        self.zone: tzinfo | None = ZoneInfo(time_zone) if time_zone else None

    @property
    def policy(self) -> str:
        return self.sessions.policy.device_policy

    async def resolve(self, ref: str, *, new_ok: bool = False) -> str:
        """The device `ref` names (its id, or its HA name ignoring case). `new_ok`: a valid id nobody has seen
        yet is fine (to configure a device before its first turn)."""
        matches = await self.sessions.find_device(ref)
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise AmbiguousDevice(ref, matches)
        if new_ok and is_device_id(ref):
            return ref
        raise UnknownDevice(f"no device has the id or name {ref!r}")

    async def devices(self) -> list[dict[str, Any]]:
        return await self.sessions.devices()

    async def device(self, ref: str) -> dict[str, Any]:
        device = await self.resolve(ref)
        found = await self.sessions.device(device)
        if found is None:  # forgotten between the two reads
            raise UnknownDevice(f"no device has the id or name {ref!r}")
        return found

    async def configure(self, ref: str, changes: dict[str, Any]) -> dict[str, Any]:
        return await self.sessions.configure(await self.resolve(ref, new_ok=True), changes)

    async def forget(self, ref: str) -> bool:
        return await self.sessions.forget(await self.resolve(ref))

    async def export(self, device: str, session_id: str | None = None) -> dict[str, Any] | None:
        """A session with every message, as JSON for debugging: the live one, or a past one by id."""
        record = await self.sessions.device(device)
        live = await self.sessions.describe(device)
        if live is not None and session_id in (None, live["id"]):
            session = {**live, "live": True}
            messages = await self.sessions.messages(live["id"], device)
        elif session_id is not None and (past := await self.sessions.past_session(device, session_id)):
            session, messages = {**past[0], "live": False}, past[1]
        else:
            return None
        if record is not None:
            record.pop("past", None)
            record.pop("session", None)
        return {
            "device": record or {"id": device},
            "session": session,
            "messages": [message_dict(m) for m in messages],
        }

    async def stats(self, since: float, until: float, device: str | None = None) -> dict[str, Any]:
        rows = await self.sessions.usage(since, until)
        if device is not None:
            rows = [r for r in rows if r.device == device]
        zone = self.zone.key if isinstance(self.zone, ZoneInfo) else None
        return {"since": since, "until": until, "time_zone": zone, **report(rows, self.zone)}
