"""`python -m tests.stores.hammer URL DEVICE TURNS START_AT`: one OS process sending concurrent turns.

Waits until the wall clock reaches START_AT so that several processes start together, sends TURNS concurrent
turns for DEVICE through a SessionManager, and prints one JSON line: the session ids its turns landed in.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from athena.records import Message
from athena.sessions.manager import SessionManager, SessionPolicy
from athena.stores import create_store


async def main(url: str, device: str, turns: int, start_at: float) -> None:
    manager = SessionManager(create_store(url), SessionPolicy(history_max_messages=10_000))
    await manager.store.open()  # no sweep loop: only the turns
    tag = f"p{time.monotonic_ns()}"
    await asyncio.sleep(max(0.0, start_at - time.time()))

    async def one(i: int) -> str:
        session = await manager.resolve(device)
        now = time.time()
        await manager.append_turn(
            session,
            Message("user", f"{tag} question {i}", now),
            Message("assistant", f"{tag} answer {i}", now),
        )
        return session.id

    ids = await asyncio.gather(*(one(i) for i in range(turns)))
    await manager.store.close()
    print(json.dumps({"tag": tag, "ids": sorted(set(ids))}))


if __name__ == "__main__":
    import structlog

    # Quiet: stdout carries the result.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
