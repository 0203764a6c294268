# ruff: noqa: ASYNC109  (`timeout` is a session's idle limit here, not an I/O deadline)
"""`sqlite:///path`: the default store, one file that survives restarts and may be shared by processes.

Every write is one `BEGIN IMMEDIATE` transaction: the write lock is taken up front, so two processes on one
file queue for it instead of failing halfway. WAL lets readers run beside a writer.

An operation first runs inline on the event loop with busy_timeout 0: in WAL mode with synchronous=NORMAL
and automatic checkpoints off, a commit only writes to the page cache, so this takes tens of microseconds and
never waits. Only when another process holds the file's lock does the operation move to the store's own
thread, which waits there (busy_timeout) without holding up the loop; checkpoints (which fsync) also run on
that thread. A thread hop per operation would cost more than the operation itself.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from athena.records import (
    EMPTY_META,
    DeviceRecord,
    DeviceSettings,
    EndedBy,
    Message,
    MessageMeta,
    PastSession,
    Role,
    Session,
    UsageRow,
    Visit,
    ended_by,
)
from athena.stores.base import PARSED_CACHE, Acquired, DeviceChanged, Retention, SessionGone, StoreError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    device TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    last_activity REAL NOT NULL,
    expires_at REAL NOT NULL,
    timeout REAL NOT NULL,
    max_age REAL NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    next_seq INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    ts REAL NOT NULL,
    meta BLOB,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    name TEXT,
    area TEXT,
    first_seen REAL,
    last_seen REAL,
    turns INTEGER NOT NULL DEFAULT 0,
    refused INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0,
    settings BLOB
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS past_sessions (
    id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_activity REAL NOT NULL,
    expires_at REAL NOT NULL,
    timeout REAL NOT NULL,
    max_age REAL NOT NULL,
    turns INTEGER NOT NULL,
    ended_at REAL NOT NULL,
    reason TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS past_by_device ON past_sessions (device, ended_at);
CREATE INDEX IF NOT EXISTS past_by_end ON past_sessions (ended_at);
CREATE TABLE IF NOT EXISTS usage (
    ts REAL NOT NULL,
    device TEXT NOT NULL,
    session_id TEXT NOT NULL,
    path TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    tools INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS usage_by_ts ON usage (ts);
"""

_COLUMNS = "id, device, created_at, last_activity, expires_at, timeout, max_age, turns"
_DEVICE_COLUMNS = "id, name, area, first_seen, last_seen, turns, refused, version, settings"


def _session(row: tuple[Any, ...]) -> Session:
    return Session(
        id=row[0], device=row[1], created_at=row[2], last_activity=row[3], expires_at=row[4],
        timeout=row[5], max_age=row[6], turns=row[7],
    )


def _device(row: tuple[Any, ...]) -> DeviceRecord:
    return DeviceRecord(
        id=row[0], name=row[1], area=row[2], first_seen=row[3], last_seen=row[4], turns=row[5],
        refused=row[6], version=row[7],
        settings=DeviceSettings.from_dict(orjson.loads(row[8]) if row[8] else None),
    )


class SQLiteStore:
    def __init__(
        self,
        path: str | Path,
        busy_timeout: float = 10.0,
        checkpoint_every: int = 1000,
        retention: Retention | None = None,
    ) -> None:
        self.path = Path(path)
        self.retention = retention or Retention()
        self.busy_timeout = busy_timeout
        self.checkpoint_every = checkpoint_every
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()  # one connection: one operation at a time
        self._writes = 0
        self._recent = _RecentHistory()
        self.waits = 0  # operations that found the file locked and waited on the thread

    @classmethod
    def from_url(cls, url: str, retention: Retention | None = None) -> SQLiteStore:
        """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (the SQLAlchemy convention)."""
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise ValueError(f"SQLite store URL must look like sqlite:///path/to/file.db, not {url!r}")
        return cls(url[len("sqlite:///"):], retention=retention)

    # Plumbing.

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        if self._db is None or self._thread is None:
            raise StoreError("SQLite store is not open")
        db, thread = self._db, self._thread
        op: Callable[[sqlite3.Connection], T] = (lambda d: self._write(d, fn)) if write else fn
        loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                try:
                    result = op(db)
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                        raise
                    self.waits += 1
                    result = await loop.run_in_executor(thread, self._patiently, db, op)
                if write:
                    self._writes += 1
                    if self._writes >= self.checkpoint_every:
                        self._writes = 0
                        await loop.run_in_executor(thread, _checkpoint, db)
                return result
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path} failed: {exc}") from exc

    def _patiently(self, db: sqlite3.Connection, op: Callable[[sqlite3.Connection], T]) -> T:
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        try:
            return op(db)
        finally:
            db.execute("PRAGMA busy_timeout = 0")

    @staticmethod
    def _write(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across crashes of the process
        self._write(db, _create_schema)
        db.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run on the thread (see _run)
        db.execute("PRAGMA busy_timeout = 0")  # inline operations never wait (see _run)
        return db

    async def open(self) -> None:
        if self._db is not None:
            return
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="athena-sqlite")
        try:
            self._db = await asyncio.get_running_loop().run_in_executor(self._thread, self._connect)
        except (sqlite3.Error, OSError) as exc:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is None or self._thread is None:
            return
        db, thread = self._db, self._thread
        self._db, self._thread = None, None
        await asyncio.get_running_loop().run_in_executor(thread, db.close)
        thread.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    # Operations.

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
        def tx(db: sqlite3.Connection) -> Acquired:
            if visit is not None:
                _visit(db, device, now, visit)
            if usage is not None:
                _insert_usage(db, usage)
            row = db.execute(
                f"SELECT {_COLUMNS}, next_seq FROM sessions WHERE device = ?", (device,)
            ).fetchone()
            current = _session(row) if row else None
            if current is not None and not force_new and now < current.expires_at:
                touched = current.touched(now, timeout, max_age)
                db.execute(
                    "UPDATE sessions SET last_activity = ?, expires_at = ?, timeout = ?, max_age = ?"
                    " WHERE id = ?",
                    (now, touched.expires_at, timeout, max_age, current.id),
                )
                kept = self._recent.read(db, current.id, row[8], history) if history > 0 else []
                return Acquired(touched, created=False, ended=None, messages=kept)
            if current is not None:
                self._end(db, [current], now, "start_over")
            session = Session.begin(new_id, device, now, timeout, max_age)
            db.execute(
                f"INSERT INTO sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                (session.id, device, now, now, session.expires_at, timeout, max_age),
            )
            return Acquired(session, created=True, ended=current)

        return await self._run(tx, write=True)

    async def get(self, device: str) -> Session | None:
        return await self._run(lambda db: _select(db, "device", device))

    async def get_by_id(self, session_id: str) -> Session | None:
        return await self._run(lambda db: _select(db, "id", session_id))

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
        rows_in = [(m.role, m.content, m.ts, orjson.dumps(meta) if (meta := m.meta.to_dict()) else None)
                   for m in messages]

        def tx(db: sqlite3.Connection) -> tuple[Session, int] | None:
            if usage is not None:  # kept even when the session is gone: the turn was answered
                _insert_usage(db, usage)
            row = db.execute(
                f"SELECT {_COLUMNS}, next_seq FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is None:
                return None
            seq = row[8]
            db.executemany(
                "INSERT INTO messages (session_id, seq, role, content, ts, meta) VALUES (?, ?, ?, ?, ?, ?)",
                [(session_id, seq + i, *r) for i, r in enumerate(rows_in)],
            )
            next_seq = seq + len(rows_in)
            db.execute("DELETE FROM messages WHERE session_id = ? AND seq < ?", (session_id, next_seq - cap))
            touched = _session(row).touched(now, timeout, max_age, turns=1)
            db.execute(
                "UPDATE sessions SET last_activity = ?, expires_at = ?, timeout = ?, max_age = ?,"
                " turns = turns + 1, next_seq = ? WHERE id = ?",
                (now, touched.expires_at, timeout, max_age, next_seq, session_id),
            )
            return touched, seq

        done = await self._run(tx, write=True)
        if done is None:
            raise SessionGone(f"session {session_id} was replaced or cleared")
        updated, seq = done
        self._recent.appended(session_id, seq, messages, cap)  # committed: now the new version
        return updated

    async def history(self, session_id: str, limit: int, *, device: str | None = None) -> list[Message]:
        if limit <= 0:
            return []

        def read(db: sqlite3.Connection) -> list[Message]:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
                return []  # ended: its messages are a past session's now
            return _messages(db, session_id, limit)

        return await self._run(read)

    async def clear(self, device: str, now: float | None = None) -> Session | None:
        at = time.time() if now is None else now

        def tx(db: sqlite3.Connection) -> Session | None:
            current = _select(db, "device", device)
            if current is not None:
                self._end(db, [current], at, "cleared")
            return current

        return await self._run(tx, write=True)

    async def sessions(self) -> list[Session]:
        return await self._run(
            lambda db: [_session(r) for r in db.execute(f"SELECT {_COLUMNS} FROM sessions").fetchall()]
        )

    async def sweep(self, now: float, limit: int = 1000) -> list[Session]:
        def tx(db: sqlite3.Connection) -> list[Session]:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM sessions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
                (now, limit),
            ).fetchall()
            ended = [_session(r) for r in rows]
            self._end(db, ended, now, "cleared")
            return ended

        return await self._run(tx, write=True)

    async def count(self, now: float) -> int:
        return await self._run(
            lambda db: db.execute("SELECT COUNT(*) FROM sessions WHERE expires_at > ?", (now,)).fetchone()[0]
        )


    def _end(self, db: sqlite3.Connection, ended: Sequence[Session], now: float, forced: EndedBy) -> None:
        """Sessions that ended: kept as past sessions (their messages stay where they are) or deleted."""
        if self.retention.transcripts <= 0:
            _delete(db, [s.id for s in ended])
            return
        db.executemany(
            f"INSERT OR REPLACE INTO past_sessions ({_COLUMNS}, ended_at, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (s.id, s.device, s.created_at, s.last_activity, s.expires_at, s.timeout, s.max_age, s.turns,
                 now, ended_by(s, now, forced))
                for s in ended
            ],
        )
        db.executemany("DELETE FROM sessions WHERE id = ?", [(s.id,) for s in ended])

    async def purge(self, now: float) -> int:
        transcripts, usage = now - self.retention.transcripts, now - self.retention.usage

        def tx(db: sqlite3.Connection) -> int:
            db.execute(
                "DELETE FROM messages WHERE session_id IN (SELECT id FROM past_sessions WHERE ended_at < ?)",
                (transcripts,),
            )
            gone = db.execute("DELETE FROM past_sessions WHERE ended_at < ?", (transcripts,)).rowcount
            gone += db.execute("DELETE FROM usage WHERE ts < ?", (usage,)).rowcount
            gone += db.execute(
                "DELETE FROM devices WHERE version = 0 AND last_seen < ?"
                " AND id NOT IN (SELECT device FROM sessions)",
                (usage,),
            ).rowcount
            return int(gone)

        return await self._run(tx, write=True)

    # Devices.

    async def device(self, device: str) -> DeviceRecord | None:
        return await self._run(lambda db: _select_device(db, device))

    async def devices(self) -> list[DeviceRecord]:
        return await self._run(
            lambda db: [_device(r) for r in db.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices").fetchall()]
        )

    async def configure(self, device: str, changes: Mapping[str, Any], now: float) -> DeviceRecord:
        def tx(db: sqlite3.Connection) -> DeviceRecord:
            current = _select_device(db, device) or DeviceRecord(device)
            settings = current.settings.merged(changes).to_dict()
            db.execute(
                "INSERT INTO devices (id, version, settings) VALUES (?, 1, ?)"
                " ON CONFLICT(id) DO UPDATE SET version = version + 1, settings = excluded.settings",
                (device, orjson.dumps(settings) if settings else None),
            )
            record = _select_device(db, device)
            assert record is not None
            return record

        return await self._run(tx, write=True)

    async def refuse(self, device: str, now: float, visit: Visit, usage: UsageRow) -> DeviceRecord:
        def tx(db: sqlite3.Connection) -> DeviceRecord:
            _upsert_visit(db, device, now, visit, turns=0, refused=1)
            _insert_usage(db, usage)
            record = _select_device(db, device)
            assert record is not None
            return record

        return await self._run(tx, write=True)

    async def forget(self, device: str) -> bool:
        def tx(db: sqlite3.Connection) -> bool:
            ids = [r[0] for r in db.execute("SELECT id FROM sessions WHERE device = ?", (device,))]
            ids += [r[0] for r in db.execute("SELECT id FROM past_sessions WHERE device = ?", (device,))]
            db.executemany("DELETE FROM messages WHERE session_id = ?", [(i,) for i in ids])
            found = db.execute("DELETE FROM sessions WHERE device = ?", (device,)).rowcount
            found += db.execute("DELETE FROM past_sessions WHERE device = ?", (device,)).rowcount
            found += db.execute("DELETE FROM devices WHERE id = ?", (device,)).rowcount
            found += db.execute("DELETE FROM usage WHERE device = ?", (device,)).rowcount
            return found > 0

        return await self._run(tx, write=True)

    # What outlives a session.

    async def past(self, device: str, now: float) -> list[PastSession]:
        def read(db: sqlite3.Connection) -> list[PastSession]:
            rows = db.execute(
                f"SELECT {_COLUMNS}, ended_at, reason FROM past_sessions WHERE device = ? AND ended_at >= ?"
                " ORDER BY ended_at DESC",
                (device, now - self.retention.transcripts),
            ).fetchall()
            return [PastSession(_session(r), r[8], r[9]) for r in rows]

        return await self._run(read)

    async def past_history(self, device: str, session_id: str, limit: int) -> list[Message]:
        def read(db: sqlite3.Connection) -> list[Message]:
            known = db.execute(
                "SELECT 1 FROM past_sessions WHERE id = ? AND device = ?", (session_id, device)
            ).fetchone()
            return _messages(db, session_id, limit) if known and limit > 0 else []

        return await self._run(read)

    async def usage(self, since: float, until: float) -> list[UsageRow]:
        def read(db: sqlite3.Connection) -> list[UsageRow]:
            rows = db.execute(
                "SELECT ts, device, session_id, path, latency_ms, tools FROM usage WHERE ts >= ? AND ts < ?"
                " ORDER BY ts",
                (since, until),
            ).fetchall()
            return [UsageRow(*r) for r in rows]

        return await self._run(read)


class _RecentHistory:
    """The newest messages of recently active sessions, each as of a `next_seq` (the count of messages ever
    appended). A turn's acquire reads its session's row anyway: when nobody has appended since this process
    last read or wrote that session, its history comes from here instead of a query (0.08 ms of a turn's CPU,
    measured). The version is compared inside the acquire's transaction, so appends by other processes on the
    same file count; messages never change once written, and old ones go only by an append."""

    SESSIONS = 1024

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, int, tuple[Message, ...]]] = {}  # id: (next_seq, limit, newest)

    def read(self, db: sqlite3.Connection, session_id: str, seq: int, limit: int) -> list[Message]:
        entry = self._entries.get(session_id)
        # An entry holds the newest `limit` messages it was read with, or all there are when it holds fewer.
        if entry is not None and entry[0] == seq and (limit <= entry[1] or len(entry[2]) < entry[1]):
            return list(entry[2][-limit:])
        kept = _messages(db, session_id, limit)
        self._put(session_id, seq, limit, tuple(kept))
        return kept

    def appended(self, session_id: str, seq: int, added: Sequence[Message], cap: int) -> None:
        """`added` was appended at `seq` (and the oldest beyond `cap` dropped), committed."""
        entry = self._entries.pop(session_id, None)
        if entry is not None and entry[0] == seq:
            limit = entry[1]
            self._put(session_id, seq + len(added), limit, (*entry[2], *added)[-min(limit, cap):])

    def _put(self, session_id: str, seq: int, limit: int, newest: tuple[Message, ...]) -> None:
        self._entries.pop(session_id, None)
        self._entries[session_id] = (seq, limit, newest)
        if len(self._entries) > self.SESSIONS:
            del self._entries[next(iter(self._entries))]  # the least recently used


def _messages(db: sqlite3.Connection, session_id: str, limit: int) -> list[Message]:
    rows = db.execute(
        "SELECT role, content, ts, meta FROM messages WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
        (session_id, limit),
    ).fetchall()
    return [_message(*r) for r in reversed(rows)]


@functools.lru_cache(maxsize=PARSED_CACHE)
def _message(role: Role, content: str, ts: float, meta: bytes | None) -> Message:
    return Message(role, content, ts, MessageMeta.from_dict(orjson.loads(meta)) if meta else EMPTY_META)


def _select_device(db: sqlite3.Connection, device: str) -> DeviceRecord | None:
    row = db.execute(f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE id = ?", (device,)).fetchone()
    return _device(row) if row else None


def _visit(db: sqlite3.Connection, device: str, now: float, visit: Visit) -> None:
    """The version check and the visit, inside the acquire's transaction: one UPDATE for a known device
    whose settings are the version the caller holds (every turn but a device's first and those after a
    change)."""
    updated = db.execute(
        "UPDATE devices SET name = coalesce(?, name), area = coalesce(?, area), last_seen = ?,"
        " first_seen = coalesce(first_seen, ?), turns = turns + 1 WHERE id = ? AND version = ?",
        (visit.name or None, visit.area or None, now, now, device, visit.version),
    ).rowcount
    if updated:
        return
    record = _select_device(db, device)
    if record is None and visit.version == 0:
        _upsert_visit(db, device, now, visit, turns=1, refused=0)
        return
    raise DeviceChanged(record or DeviceRecord(device))  # rolls the transaction back: nothing written


def _upsert_visit(
    db: sqlite3.Connection, device: str, now: float, visit: Visit, *, turns: int, refused: int
) -> None:
    db.execute(
        "INSERT INTO devices (id, name, area, first_seen, last_seen, turns, refused)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
        " name = coalesce(excluded.name, name), area = coalesce(excluded.area, area),"
        " first_seen = coalesce(first_seen, excluded.first_seen), last_seen = excluded.last_seen,"
        " turns = turns + excluded.turns, refused = refused + excluded.refused",
        (device, visit.name or None, visit.area or None, now, now, turns, refused),
    )


def _insert_usage(db: sqlite3.Connection, u: UsageRow) -> None:
    db.execute(
        "INSERT INTO usage (ts, device, session_id, path, latency_ms, tools) VALUES (?, ?, ?, ?, ?, ?)",
        (u.ts, u.device, u.session_id, u.path, u.latency_ms, u.tools),
    )


def _select(db: sqlite3.Connection, column: str, value: str) -> Session | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM sessions WHERE {column} = ?", (value,)).fetchone()
    return _session(row) if row else None


def _delete(db: sqlite3.Connection, ids: Sequence[str]) -> None:
    db.executemany("DELETE FROM messages WHERE session_id = ?", [(i,) for i in ids])
    db.executemany("DELETE FROM sessions WHERE id = ?", [(i,) for i in ids])


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _checkpoint(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # fetched: an open statement would block COMMIT
