# ruff: noqa: ASYNC109  (`timeout` is a session's idle limit here, not an I/O deadline)
"""`memory://`: a store in this process's memory, for tests and single-process trials. Lost on restart.

Every operation runs without an `await` between its reads and writes, so on one event loop each is atomic.
Expiry is indexed by a heap with lazy deletion: a touched session leaves a stale entry that is dropped when it
comes due, so a sweep costs what is due (expired or touched since), not what is stored.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from athena.records import (
    DeviceRecord,
    EndedBy,
    Message,
    PastSession,
    Session,
    UsageRow,
    Visit,
    ended_by,
)
from athena.stores.base import Acquired, DeviceChanged, Retention, SessionGone, StoreError


class MemoryStore:
    def __init__(self, retention: Retention | None = None) -> None:
        self.retention = retention or Retention()
        self._by_device: dict[str, Session] = {}
        self._by_id: dict[str, Session] = {}
        self._history: dict[str, deque[Message]] = {}
        self._due: list[tuple[float, str]] = []  # (expires_at when pushed, session id)
        self._devices: dict[str, DeviceRecord] = {}
        self._past: dict[str, dict[str, tuple[PastSession, list[Message]]]] = {}  # device -> id -> ...
        self._usage: list[UsageRow] = []  # in arrival order (ts ascending but for concurrent turns)
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

    def _drop(self, session: Session, now: float, forced: EndedBy) -> None:
        del self._by_device[session.device]
        del self._by_id[session.id]
        history = self._history.pop(session.id, None)
        if self.retention.transcripts > 0:
            past = PastSession(session, now, ended_by(session, now, forced))
            self._past.setdefault(session.device, {})[session.id] = (past, list(history or ()))

    def _visit(self, device: str, now: float, visit: Visit, *, refused: bool = False) -> DeviceRecord:
        r = self._devices.get(device) or DeviceRecord(device)
        record = DeviceRecord(
            device, visit.name or r.name, visit.area or r.area, now if r.first_seen is None else r.first_seen,
            now, r.turns + (not refused), r.refused + refused, r.version, r.settings,
        )
        self._devices[device] = record
        return record

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
        if visit is not None:
            record = self._devices.get(device)
            if (record.version if record else 0) != visit.version:
                assert record is not None
                raise DeviceChanged(record)
            self._visit(device, now, visit)
        if usage is not None:
            self._usage.append(usage)
        current = self._by_device.get(device)
        if current is not None and not force_new and now < current.expires_at:
            touched = self._touch(current, current.touched(now, timeout, max_age))
            kept = list(self._history[current.id])[-history:] if history > 0 else []
            return Acquired(touched, created=False, ended=None, messages=kept)
        if current is not None:
            self._drop(current, now, "start_over")
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
        usage: UsageRow | None = None,
    ) -> Session:
        if usage is not None:
            self._usage.append(usage)
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

    async def clear(self, device: str, now: float | None = None) -> Session | None:
        current = self._by_device.get(device)
        if current is not None:
            self._drop(current, time.time() if now is None else now, "cleared")
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
                self._drop(current, now, "cleared")
                removed.append(current)
            else:  # touched since it was indexed: index its real deadline
                heapq.heappush(self._due, (current.expires_at, session_id))
        return removed

    async def count(self, now: float) -> int:
        # Exact right after a sweep (what the manager needs), and O(1) instead of a scan of every session.
        return len(self._by_device)

    async def purge(self, now: float) -> int:
        gone = 0
        cutoff = now - self.retention.transcripts
        for device, pasts in list(self._past.items()):
            for sid, (past, _) in list(pasts.items()):
                if past.ended_at < cutoff:
                    del pasts[sid]
                    gone += 1
            if not pasts:
                del self._past[device]
        usage_cutoff = now - self.retention.usage
        kept = [r for r in self._usage if r.ts >= usage_cutoff]
        gone += len(self._usage) - len(kept)
        self._usage = kept
        for device, record in list(self._devices.items()):
            if (
                record.version == 0 and record.last_seen is not None and record.last_seen < usage_cutoff
                and device not in self._by_device
            ):
                del self._devices[device]
                gone += 1
        return gone

    # Devices.

    async def device(self, device: str) -> DeviceRecord | None:
        return self._devices.get(device)

    async def devices(self) -> list[DeviceRecord]:
        return list(self._devices.values())

    async def configure(self, device: str, changes: Mapping[str, Any], now: float) -> DeviceRecord:
        record = self._devices.get(device) or DeviceRecord(device)
        record = dataclasses.replace(
            record, settings=record.settings.merged(changes), version=record.version + 1
        )
        self._devices[device] = record
        return record

    async def refuse(self, device: str, now: float, visit: Visit, usage: UsageRow) -> DeviceRecord:
        self._usage.append(usage)
        return self._visit(device, now, visit, refused=True)

    async def forget(self, device: str) -> bool:
        found = device in self._devices or device in self._by_device or device in self._past
        current = self._by_device.pop(device, None)
        if current is not None:
            del self._by_id[current.id]
            self._history.pop(current.id, None)
        self._devices.pop(device, None)
        self._past.pop(device, None)
        before = len(self._usage)
        self._usage = [r for r in self._usage if r.device != device]
        return found or len(self._usage) != before

    # What outlives a session.

    async def past(self, device: str, now: float) -> list[PastSession]:
        cutoff = now - self.retention.transcripts
        kept = [p for p, _ in self._past.get(device, {}).values() if p.ended_at >= cutoff]
        return sorted(kept, key=lambda p: p.ended_at, reverse=True)

    async def past_history(self, device: str, session_id: str, limit: int) -> list[Message]:
        found = self._past.get(device, {}).get(session_id)
        if found is None or limit <= 0:
            return []
        return found[1][-limit:]

    async def usage(self, since: float, until: float) -> list[UsageRow]:
        return [r for r in self._usage if since <= r.ts < until]
