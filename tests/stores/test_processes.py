"""Two OS processes sharing one SQLite file or one Redis: still one session per device, and no turn lost."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest

from athena.stores import Store
from tests.stores.support import StoreFactory
from tests.support.gateway import REPO

TURNS = 60


# memory:// lives inside one process
@pytest.mark.parametrize("stores", ["sqlite", "redis", "redis-cluster"], indirect=True)
async def test_two_processes_one_device(stores: StoreFactory, store: Store) -> None:
    start_at = time.time() + 1.5  # both interpreters are up by then; they start their turns together
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.stores.hammer", stores.url, "kitchen", str(TURNS), str(start_at),
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    ids = {i for r in results for i in r["ids"]}
    assert len(ids) == 1, f"turns landed in several sessions: {results}"
    session = await store.get("kitchen")
    assert session is not None and session.id in ids and session.turns == 2 * TURNS
    contents = sorted(m.content for m in await store.history(session.id, 10_000))
    expected = sorted(
        f"{r['tag']} {kind} {i}" for r in results for i in range(TURNS) for kind in ("question", "answer")
    )
    assert contents == expected
