# ruff: noqa: ASYNC109  (`timeout` is a session's idle limit here, not an I/O deadline)
"""The one interface every session store implements.

Stores keep records and make each operation atomic (also across processes sharing a file or a Redis). They
hold no policy: the session manager passes in the clock reading and the timeout and max age to apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from athena.records import Message, Session


class StoreError(Exception):
    """The store cannot be reached or failed; the turn cannot be served from it."""


class StoreDegraded(StoreError):
    """Raised by `ping()` only: the store serves some devices but not all (a Redis Cluster node is down).
    Readiness stays ready and reports it; the turns it cannot serve fail with a StoreError of their own."""


class SessionGone(StoreError):
    """The session was replaced or cleared while a turn was running (e.g. "start over" from elsewhere)."""


@dataclass(frozen=True, slots=True)
class Acquired:
    session: Session
    created: bool
    ended: Session | None  # the expired or replaced session this call retired, if any


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise StoreError when the store cannot serve requests."""

    async def acquire(
        self, device: str, now: float, timeout: float, max_age: float, new_id: str, force_new: bool = False
    ) -> Acquired:
        """Atomically: return the device's live session (touched: last_activity=now) or replace it with a new
        one whose id is `new_id`. A session is live while now < expires_at. Deletes the retired one's
        history."""

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
    ) -> Session:
        """Atomically append messages, count one turn, touch the session and keep the `cap` newest messages.
        Raise SessionGone when the session is no longer the device's current one. `device` (the session's)
        saves a store keyed by device (Redis) a look-up."""

    async def history(self, session_id: str, limit: int, *, device: str | None = None) -> list[Message]:
        """The newest `limit` messages, oldest first."""

    async def clear(self, device: str) -> Session | None:
        """Remove the device's session and its history; return what was removed."""

    async def sessions(self) -> list[Session]:
        """Every stored session (for listing; the manager filters out the expired)."""

    async def sweep(self, now: float, limit: int = 1000) -> list[Session]:
        """Remove up to `limit` sessions with expires_at <= now, with their history; return them.
        Cost must follow the number expired, not the number stored."""

    async def count(self, now: float) -> int:
        """How many sessions are live at `now` (for the active-sessions gauge; exact right after a sweep)."""
