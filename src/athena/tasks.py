"""Stopping a background task so that it is really stopped.

On Python 3.11 one `task.cancel()` can be lost: a cancel that lands while the task sits in `asyncio.wait_for`
whose inner call finished in the same loop iteration is swallowed, and the task runs on (CPython gh-86296,
fixed in 3.12). redis-py with a `socket_timeout` sends every command through `wait_for`: a session sweep
cancelled at shutdown swept on and the gateway never exited. Athena's own code waits with `asyncio.timeout`
instead; libraries may not, so every background task is stopped through here. Imports nothing of Athena's.
"""

from __future__ import annotations

import asyncio
from typing import Any

_RECANCEL = 0.05  # seconds between cancels: a lost one is noticed within this


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` until it has ended, and collect its outcome (an error it ended with is not raised)."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_RECANCEL)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log "exception was never retrieved"
