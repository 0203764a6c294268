# ruff: noqa: ASYNC109  (`timeout` is a session's idle limit here, not an I/O deadline)
"""The one interface every session store implements.

Stores keep records and make each operation atomic (also across processes sharing a file or a Redis). They
hold no policy: the session manager passes in the clock reading and the timeout and max age to apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from athena.records import DeviceRecord, Message, PastSession, Session, UsageRow, Visit

# Every turn reads its session's newest messages again and a message never changes once written, so each
# store memoises the records it makes from stored messages (immutable, so sharing them is safe): this many.
PARSED_CACHE = 8192


class StoreError(Exception):
    """The store cannot be reached or failed; the turn cannot be served from it."""


class StoreDegraded(StoreError):
    """Raised by `ping()` only: the store serves some devices but not all (a Redis Cluster node is down).
    Readiness stays ready and reports it; the turns it cannot serve fail with a StoreError of their own."""


class SessionGone(StoreError):
    """The session was replaced or cleared while a turn was running (e.g. "start over" from elsewhere)."""


class DeviceChanged(Exception):
    """The device's stored settings are not the version the caller applied (another gateway changed them):
    nothing was written; `record` is the current one, so the caller can apply it and try again."""

    def __init__(self, record: DeviceRecord) -> None:
        super().__init__(f"the settings of device {record.id!r} changed (version {record.version})")
        self.record = record


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a store keeps what outlives a session: ended sessions with their messages (transcripts),
    usage rows, and device records without settings since the device was last seen (usage's span)."""

    transcripts: float = 7 * 86_400.0
    usage: float = 90 * 86_400.0


DAY = 86_400.0


def day_of(ts: float) -> int:
    """The UTC day number a usage row is filed under (the stats regroup rows by the local day)."""
    return int(ts // DAY)


@dataclass(frozen=True, slots=True)
class Acquired:
    session: Session
    created: bool
    ended: Session | None  # the expired or replaced session this call retired, if any
    messages: list[Message] = field(default_factory=list)  # its newest `history` messages, when found


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise StoreError when the store cannot serve requests."""

    async def acquire(
        self,
        device: str,
        now: float,
        timeout: float,
        max_age: float,
        new_id: str,
        force_new: bool = False,
        *,
        visit: Visit | None = None,
        usage: UsageRow | None = None,
        history: int = 0,
    ) -> Acquired:
        """Atomically: return the device's live session (touched: last_activity=now) and, with `history`,
        its newest `history` messages (a turn's one read), or replace it with a new one whose id is `new_id`.
        A session is live while now < expires_at. The retired one is kept as a past session (see
        Retention). With `visit` (a device's turn): first raise DeviceChanged if the device's settings
        version is not `visit.version`, then record the visit (first/last seen, name, area, one more turn)
        in the same atomic step. `usage`: a row to keep for this turn (a "start over")."""

    async def get(self, device: str) -> Session | None:
        """The device's stored session, live or not (the manager decides)."""

    async def get_by_id(self, session_id: str) -> Session | None: ...

    async def append(
        self,
        session_id: str,
        messages: Sequence[Message],
        now: float,
        timeout: float,
        max_age: float,
        cap: int,
        *,
        device: str | None = None,
        usage: UsageRow | None = None,
    ) -> Session:
        """Atomically append messages, count one turn, touch the session and keep the `cap` newest messages.
        Raise SessionGone when the session is no longer the device's current one. `device` (the session's)
        saves a store keyed by device (Redis) a look-up. `usage`: this turn's row, kept even when the
        session is gone (the turn was answered)."""

    async def history(self, session_id: str, limit: int, *, device: str | None = None) -> list[Message]:
        """The newest `limit` messages, oldest first."""

    async def clear(self, device: str, now: float | None = None) -> Session | None:
        """End the device's session (kept as a past session, ended at `now`, default the wall clock);
        return what was removed."""

    async def sessions(self) -> list[Session]:
        """Every stored session (for listing; the manager filters out the expired)."""

    async def sweep(self, now: float, limit: int = 1000) -> list[Session]:
        """End up to `limit` sessions with expires_at <= now (kept as past sessions); return them.
        Cost must follow the number expired, not the number stored."""

    async def count(self, now: float) -> int:
        """How many sessions are live at `now` (for the active-sessions gauge; exact right after a sweep)."""

    async def purge(self, now: float) -> int:
        """Drop what is past its retention (stores whose keys expire by themselves do nothing); return how
        many records went."""

    # Devices.

    async def device(self, device: str) -> DeviceRecord | None: ...

    async def devices(self) -> list[DeviceRecord]:
        """Every device seen or configured and not yet past its retention."""

    async def configure(self, device: str, changes: Mapping[str, Any], now: float) -> DeviceRecord:
        """Atomically merge settings into the device's (a value sets one, None clears it; see
        DeviceSettings.merged) and count a new version; creates the record if there was none."""

    async def refuse(self, device: str, now: float, visit: Visit, usage: UsageRow) -> DeviceRecord:
        """Record a turn the device policy refused (seen, one more refused turn, its usage row); return the
        device's record as it is now."""

    async def forget(self, device: str) -> bool:
        """Delete everything kept about a device: record, settings, live and past sessions, usage rows.
        False when there was nothing."""

    # What outlives a session.

    async def past(self, device: str, now: float) -> list[PastSession]:
        """The device's ended sessions still within retention, newest first."""

    async def past_history(self, device: str, session_id: str, limit: int) -> list[Message]:
        """A past session's newest `limit` messages, oldest first ([] when it is gone)."""

    async def usage(self, since: float, until: float) -> list[UsageRow]:
        """Every usage row with since <= ts < until, of every device."""
