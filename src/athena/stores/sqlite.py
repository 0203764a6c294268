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
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from athena.records import Message, MessageMeta, Session
from athena.stores.base import Acquired, SessionGone, StoreError

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
"""

_COLUMNS = "id, device, created_at, last_activity, expires_at, timeout, max_age, turns"


def _session(row: tuple[Any, ...]) -> Session:
    return Session(
        id=row[0], device=row[1], created_at=row[2], last_activity=row[3], expires_at=row[4],
        timeout=row[5], max_age=row[6], turns=row[7],
    )


class SQLiteStore:
    def __init__(self, path: str | Path, busy_timeout: float = 10.0, checkpoint_every: int = 1000) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.checkpoint_every = checkpoint_every
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()  # one connection: one operation at a time
        self._writes = 0
        self.waits = 0  # operations that found the file locked and waited on the thread

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (the SQLAlchemy convention)."""
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            raise ValueError(f"SQLite store URL must look like sqlite:///path/to/file.db, not {url!r}")
        return cls(url[len("sqlite:///"):])

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
        self, device: str, now: float, timeout: float, max_age: float, new_id: str, force_new: bool = False
    ) -> Acquired:
        def tx(db: sqlite3.Connection) -> Acquired:
            current = _select(db, "device", device)
            if current is not None and not force_new and now < current.expires_at:
                touched = current.touched(now, timeout, max_age)
                db.execute(
                    "UPDATE sessions SET last_activity = ?, expires_at = ?, timeout = ?, max_age = ?"
                    " WHERE id = ?",
                    (now, touched.expires_at, timeout, max_age, current.id),
                )
                return Acquired(touched, created=False, ended=None)
            if current is not None:
                _delete(db, [current.id])
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
    ) -> Session:
        rows_in = [(m.role, m.content, m.ts, orjson.dumps(meta) if (meta := m.meta.to_dict()) else None)
                   for m in messages]

        def tx(db: sqlite3.Connection) -> Session | None:
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
            return touched

        updated = await self._run(tx, write=True)
        if updated is None:
            raise SessionGone(f"session {session_id} was replaced or cleared")
        return updated

    async def history(self, session_id: str, limit: int, *, device: str | None = None) -> list[Message]:
        if limit <= 0:
            return []

        def read(db: sqlite3.Connection) -> list[Message]:
            rows = db.execute(
                "SELECT role, content, ts, meta FROM messages WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
            return [
                Message(r[0], r[1], r[2], MessageMeta.from_dict(orjson.loads(r[3]) if r[3] else None))
                for r in reversed(rows)
            ]

        return await self._run(read)

    async def clear(self, device: str) -> Session | None:
        def tx(db: sqlite3.Connection) -> Session | None:
            current = _select(db, "device", device)
            if current is not None:
                _delete(db, [current.id])
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
            _delete(db, [r[0] for r in rows])
            return [_session(r) for r in rows]

        return await self._run(tx, write=True)

    async def count(self, now: float) -> int:
        return await self._run(
            lambda db: db.execute("SELECT COUNT(*) FROM sessions WHERE expires_at > ?", (now,)).fetchone()[0]
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
