"""A store that cannot serve says so in a StoreError with a clear message, never a raw driver exception."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from athena.records import Message
from athena.sessions.manager import SessionManager
from athena.stores import StoreError, create_store, store_kind
from athena.stores import redis as redis_module
from athena.stores.memory import MemoryStore
from athena.stores.redis import RedisStore
from athena.stores.sqlite import SQLiteStore
from tests.stores.support import delete_prefix, require_redis
from tests.support.gateway import free_port
from tests.support.processes import stop_process
from tests.support.redis_server import start_redis_server


class TcpProxy:
    """A real loopback TCP relay to Redis that a test can cut, to play "Redis went away" mid-run."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self.target_host, self.target_port = target.hostname or "127.0.0.1", target.port or 6379
        self.pipes: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        self.writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self.pipes.add(task)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    async def cut(self) -> None:
        self.server.close()
        for task in self.pipes:
            task.cancel()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*self.pipes, return_exceptions=True)
        await self.server.wait_closed()


async def test_redis_unreachable_at_start() -> None:
    store = create_store(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreError, match=r"cannot reach the Redis store at 127\.0\.0\.1:\d+"):
        await store.open()
    manager = SessionManager(create_store(f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(StoreError, match="cannot reach the Redis store"):
        await manager.start()


async def test_redis_going_away_mid_run_is_a_store_error() -> None:
    proxy = TcpProxy(await require_redis())
    port = await proxy.start()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix="athena-test-down")
    manager = SessionManager(store)
    await store.open()
    try:
        session = await manager.resolve("kitchen")
        await proxy.cut()
        with pytest.raises(StoreError, match=r"Redis at 127\.0\.0\.1:\d+"):
            await manager.resolve("kitchen")
        with pytest.raises(StoreError):
            await manager.history(session)
        with pytest.raises(StoreError):
            await manager.ping()
        with pytest.raises(StoreError):
            await manager.sweep()
    finally:
        await store.close()
        await delete_prefix("athena-test-down")


async def test_redis_that_stops_answering_is_a_store_error_and_its_late_reply_is_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hung Redis (SIGSTOP: the socket stays open, nothing answers) fails the operation at its deadline;
    once Redis answers again the next operation gets its own reply, not the one the hung command was owed."""
    monkeypatch.setattr(redis_module, "OPERATION_TIMEOUT", 0.3)
    url, proc, workdir = start_redis_server("redis-server")
    manager = SessionManager(RedisStore(url, prefix="athena-test-hung"))
    await manager.start()
    try:
        kitchen = await manager.resolve("kitchen")
        os.kill(proc.pid, signal.SIGSTOP)
        with pytest.raises(StoreError, match=r"Redis at 127\.0\.0\.1:\d+ did not answer in 0\.3 s"):
            await manager.resolve("hall")
        os.kill(proc.pid, signal.SIGCONT)
        assert (await manager.resolve("kitchen")).id == kitchen.id
        hall = await manager.resolve("hall")
        assert hall.device == "hall" and hall.id != kitchen.id
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        await manager.stop()
        stop_process(proc, timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_sqlite_unusable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    store = create_store(f"sqlite:///{blocker / 'athena.db'}")
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        await store.open()


async def test_sqlite_creates_parent_dir_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "athena.db"
    store = create_store(f"sqlite:///{path}")
    await store.open()
    try:
        await store.acquire("kitchen", 1000.0, 300, 3600, "01A")
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT device FROM sessions").fetchall() == [("kitchen",)]


async def test_store_not_open_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not open"):
        await SQLiteStore(tmp_path / "x.db").get("kitchen")
    with pytest.raises(StoreError, match="not open"):
        await RedisStore().get("kitchen")


def test_create_store_by_url() -> None:
    assert isinstance(create_store("memory://"), MemoryStore)
    relative = create_store("sqlite:///data/athena.db")
    absolute = create_store("sqlite:////var/lib/athena/athena.db")
    assert isinstance(relative, SQLiteStore) and str(relative.path) == "data/athena.db"
    assert isinstance(absolute, SQLiteStore) and str(absolute.path) == "/var/lib/athena/athena.db"
    redis = create_store("redis://cache:6380/2?prefix=test1")
    assert isinstance(redis, RedisStore) and redis.prefix == "test1" and redis.url == "redis://cache:6380/2"
    assert redis._session_key("kitchen") == "test1:{kitchen}:session"
    assert create_store("redis://cache").prefix == "athena"  # type: ignore[attr-defined]
    kinds = [store_kind(u) for u in ("rediss://h", "sqlite:///x", "memory://")]
    assert kinds == ["redis", "sqlite", "memory"]
    for bad in ("postgres://x", "sqlite://", "sqlite:///"):
        with pytest.raises(ValueError):
            create_store(bad)
    with pytest.raises(ValueError, match="prefix"):
        create_store("redis://h?prefix=a{b}")


async def test_sqlite_waits_for_another_writer_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "athena.db"
    store = SQLiteStore(path, busy_timeout=5.0)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock

        async def release() -> None:
            await asyncio.sleep(0.05)  # runs only if the store's wait leaves the event loop free
            other.execute("COMMIT")

        releaser = asyncio.create_task(release())
        got = await store.acquire("kitchen", 1000.0, 300, 3600, "01A")
        await releaser
        assert got.created and store.waits == 1
        assert (await store.get("kitchen")) == got.session
    finally:
        other.close()
        await store.close()


async def test_sqlite_lock_held_too_long_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "athena.db"
    store = SQLiteStore(path, busy_timeout=0.1)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="database is locked"):
            await store.acquire("kitchen", 1000.0, 300, 3600, "01A")
        other.execute("ROLLBACK")
        assert (await store.acquire("kitchen", 1000.0, 300, 3600, "01A")).created  # the connection is usable
    finally:
        other.close()
        await store.close()


async def test_sqlite_checkpoints_keep_the_wal_small(tmp_path: Path) -> None:
    sizes = {}
    for every in (20, 10**9):
        path = tmp_path / f"every-{every}.db"
        store = SQLiteStore(path, checkpoint_every=every)
        await store.open()
        try:
            got = await store.acquire("kitchen", 1000.0, 300, 3600, "01A")
            for i in range(300):
                await store.append(got.session.id, [Message("user", f"m{i}", 1000.0)], 1000.0, 300, 3600, 50)
            sizes[every] = os.path.getsize(f"{path}-wal")  # noqa: ASYNC240
        finally:
            await store.close()
    assert sizes[20] * 5 < sizes[10**9], sizes
