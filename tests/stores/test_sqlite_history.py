"""SQLite keeps a session's newest messages in memory between turns: never stale, even beside a writer."""

from __future__ import annotations

from pathlib import Path

from athena.records import Message
from athena.stores.sqlite import SQLiteStore

NOW = 1_000_000.0


def said(*texts: str) -> list[Message]:
    return [Message("user", t, NOW) for t in texts]


async def history(store: SQLiteStore, limit: int) -> list[str]:
    got = await store.acquire("kitchen", NOW, 300, 3600, "unused", history=limit)
    assert not got.created
    return [m.content for m in got.messages]


async def test_history_from_memory_matches_the_file_beside_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "athena.db"
    mine, other = SQLiteStore(path), SQLiteStore(path)  # two connections: as two gateway processes
    await mine.open()
    await other.open()
    try:
        session = (await mine.acquire("kitchen", NOW, 300, 3600, "s1")).session
        await mine.append(session.id, said("a", "b"), NOW, 300, 3600, cap=4)
        assert await history(mine, 3) == ["a", "b"]  # fewer than asked: all of them, now held
        await mine.append(session.id, said("c", "d"), NOW, 300, 3600, cap=4)
        assert await history(mine, 3) == ["b", "c", "d"]  # kept up by its own append
        await other.append(session.id, said("e"), NOW, 300, 3600, cap=4)  # behind its back
        assert await history(mine, 3) == ["c", "d", "e"]
        assert await history(mine, 10) == ["b", "c", "d", "e"]  # more than held: read (cap 4 dropped "a")
        await mine.append(session.id, said("f", "g"), NOW, 300, 3600, cap=4)
        assert await history(mine, 10) == ["d", "e", "f", "g"]  # the cap applies to what is held too
        assert await history(mine, 2) == ["f", "g"]
        assert [m.content for m in await other.history(session.id, 10)] == ["d", "e", "f", "g"]
    finally:
        await mine.close()
        await other.close()
