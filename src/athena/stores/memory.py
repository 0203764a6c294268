# ruff: noqa: ASYNC109  (`timeout` is a session's idle limit here, not an I/O deadline)
"""`memory://`: a store in this process's memory, for tests and single-process trials. Lost on restart.

Every operation runs without an `await` between its reads and writes, so on one event loop each is atomic.
Expiry is indexed by a heap with lazy deletion: a touched session leaves a stale entry that is dropped when it
comes due, so a sweep costs what is due (expired or touched since), not what is stored.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence

from athena.records import Message, Session
from athena.stores.base import Acquired, SessionGone, StoreError


class MemoryStore:
    def __init__(self) -> None:
        self._by_device: dict[str, Session] = {}
        self._by_id: dict[str, Session] = {}
        self._history: dict[str, deque[Message]] = {}
        self._due: list[tuple[float, str]] = []  # (expires_at when pushed, session id)
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def ping(self) -> None:
        if not self._open:  # as the other stores: a closed store cannot serve
            raise StoreError("the memory store is not open")

    def _put(self, session: Session) -> None:
        self._by_device[session.device] = session
        self._by_id[session.id] = session

    def _touch(self, current: Session, touched: Session) -> Session:
        self._put(touched)
        if touched.expires_at < current.expires_at:  # a shorter policy: index the earlier deadline
            heapq.heappush(self._due, (touched.expires_at, touched.id))
        return touched

    def _drop(self, session: Session) -> None:
        del self._by_device[session.device]
        del self._by_id[session.id]
        self._history.pop(session.id, None)

    async def acquire(
        self, device: str, now: float, timeout: float, max_age: float, new_id: str, force_new: bool = False
    ) -> Acquired:
        current = self._by_device.get(device)
        if current is not None and not force_new and now < current.expires_at:
            touched = self._touch(current, current.touched(now, timeout, max_age))
            return Acquired(touched, created=False, ended=None)
        if current is not None:
            self._drop(current)
        session = Session.begin(new_id, device, now, timeout, max_age)
        self._put(session)
        self._history[session.id] = deque()
        heapq.heappush(self._due, (session.expires_at, session.id))
        return Acquired(session, created=True, ended=current)

    async def get(self, device: str) -> Session | None:
        return self._by_device.get(device)

    async def get_by_id(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

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
        current = self._by_id.get(session_id)
        if current is None:
            raise SessionGone(f"session {session_id} was replaced or cleared")
        history = self._history[session_id]
        history.extend(messages)  # frozen records: safe to share
        while len(history) > cap:
            history.popleft()
        return self._touch(current, current.touched(now, timeout, max_age, turns=1))

    async def history(self, session_id: str, limit: int, *, device: str | None = None) -> list[Message]:
        history = self._history.get(session_id)
        if not history or limit <= 0:
            return []
        return list(history)[-limit:]

    async def clear(self, device: str) -> Session | None:
        current = self._by_device.get(device)
        if current is not None:
            self._drop(current)
        return current

    async def sessions(self) -> list[Session]:
        return list(self._by_device.values())

    async def sweep(self, now: float, limit: int = 1000) -> list[Session]:
        removed: list[Session] = []
        while self._due and self._due[0][0] <= now and len(removed) < limit:
            _, session_id = heapq.heappop(self._due)
            current = self._by_id.get(session_id)
            if current is None:
                continue  # cleared or replaced already
            if current.expires_at <= now:
                self._drop(current)
                removed.append(current)
            else:  # touched since it was indexed: index its real deadline
                heapq.heappush(self._due, (current.expires_at, session_id))
        return removed

    async def count(self, now: float) -> int:
        # Exact right after a sweep (what the manager needs), and O(1) instead of a scan of every session.
        return len(self._by_device)
