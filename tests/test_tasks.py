"""Stopping a background task: a cancel Python 3.11 loses in `asyncio.wait_for` is sent again."""

from __future__ import annotations

import asyncio
import sys

from athena.tasks import cancel_and_wait


def stubborn(gates: list[asyncio.Future[None]]) -> asyncio.Task[None]:
    """A loop like the session sweep: each round waits on a gate through `wait_for`, as redis-py does
    with a socket timeout."""

    async def round_(gate: asyncio.Future[None]) -> None:
        await gate

    async def forever() -> None:
        while True:
            gates.append(asyncio.get_running_loop().create_future())
            await asyncio.wait_for(round_(gates[-1]), 60)

    return asyncio.create_task(forever())


async def test_a_cancel_that_wait_for_swallows_is_sent_again() -> None:
    gates: list[asyncio.Future[None]] = []
    task = stubborn(gates)
    await asyncio.sleep(0.01)
    gates[-1].set_result(None)  # the round ends in the very loop iteration the cancel lands in
    task.cancel()
    await asyncio.sleep(0.01)
    if sys.version_info < (3, 12):  # CPython gh-86296: the cancel is gone, the loop runs on
        assert not task.done() and len(gates) == 2
    gates[-1].set_result(None)
    await cancel_and_wait(task)  # the same race again, then a cancel that lands
    assert task.cancelled()


async def test_an_ended_task_and_none_are_fine_and_its_error_is_collected() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    await cancel_and_wait(task)
    await cancel_and_wait(None)
    assert isinstance(task.exception(), RuntimeError)
