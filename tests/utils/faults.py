"""Faults the tests inject into real processes: Redis stalls (SIGSTOP) under a load of concurrent writers."""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable

import anyio

STALL_SECONDS = 1.5  # longer than the layer's 1 s socket timeout: its one retry re-sends every write in flight
STALLS = 3
WRITERS = 4


async def increments_through_stalls(
    redis_pid: int, increment: Callable[[], Awaitable[int]], refusal: type[Exception]
) -> tuple[list[int], list[str]]:
    """Run WRITERS concurrent loops of `increment` while the Redis process is stalled STALLS times; return
    every answer and every refusal (an exception of type `refusal`)."""
    answered: list[int] = []
    failed: list[str] = []
    done = anyio.Event()

    async def write_until_done() -> None:
        while not done.is_set():
            try:
                answered.append(await increment())
            except refusal as exc:
                failed.append(str(exc))

    try:
        async with anyio.create_task_group() as writers:
            for _ in range(WRITERS):
                writers.start_soon(write_until_done)
            for _ in range(STALLS):
                await anyio.sleep(0.3)  # the fault's timing, not a wait for readiness
                os.kill(redis_pid, signal.SIGSTOP)
                await anyio.sleep(STALL_SECONDS)
                os.kill(redis_pid, signal.SIGCONT)
            await anyio.sleep(0.3)
            done.set()
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    return answered, failed
