"""The faults the scorecard injects into the local stack, each a row of it."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from loadtest.client.legacy import McpClient
from loadtest.experiments.faults.late_answers import late_answers_after_takeover
from loadtest.experiments.faults.load import Tally
from loadtest.experiments.matrix.expectations import VICTIM
from loadtest.harness.stack import Stack, link_of
from loadtest.harness.topology import INSTANCES

INSTANCE_PAUSE_SECONDS = 5.0  # past the owner's heartbeat expiry: its sessions are taken over meanwhile (or cut off)
# Past every owner's lease (1.5 s) and heartbeat (2 s), and, with redis-ha, past the Sentinels' 1 s: the primary
# may be failed over while it is stopped, and resume as a primary nobody should write to.
REDIS_PAUSE_SECONDS = 5.0
REDIS_FULL_SECONDS = 5.0
# Past the hops' window (10 s) and every heartbeat's expiry (2 s); well within a session's idle timeout (300 s).
CLOCK_JUMP_SECONDS = 30
CLOCK_OFF_SECONDS = 5.0
CLOCKS_SUMMARY = (
    f"a clock {CLOCK_JUMP_SECONDS} s off for {CLOCK_OFF_SECONDS:.0f} s (Redis's ahead, behind; an instance's)"
)
KILL_EVERY_SECONDS = 60.0
KILLS = 10
KILLS_SUMMARY = f"instance SIGKILL, started again (once; every {KILL_EVERY_SECONDS:.0f} s, {KILLS} times)"


@dataclass(frozen=True)
class Fault:
    name: str
    strike: Callable[[Stack], None] | None  # returns once the fault is over (a killed process started again)
    quick: bool = True  # in the short run (CI) as well as the full one
    retried_at_most: int | None = None  # the goal for calls that needed a retry (None: no goal)
    unstarted_at_most: int | None = None  # ... for first tries that failed before their answer began
    ha_only: bool = False  # needs Sentinels: run only with the redis-ha variant
    cuts_links: bool = False  # needs a link of its own between each instance and Redis (one Redis only)
    scenario: Callable[[Stack, int], Tally] | None = None  # a load and fault of its own, instead of `strike`
    clocks: tuple[str, ...] = ()  # the processes whose wall clock it moves: run on a stack of its own (one Redis)
    takeovers_at_most: int | None = None  # ... for the takeovers of any one session
    summary: str | None = None  # the README summary's row this fault is added to (default: its own, by name)


def _kill_every_minute(stack: Stack) -> None:
    for kill in range(KILLS):
        started = time.monotonic()
        stack.restart(INSTANCES[kill % len(INSTANCES)], signal.SIGKILL)
        time.sleep(max(0.0, KILL_EVERY_SECONDS - (time.monotonic() - started)))  # the fault's rhythm


def _redis_full(stack: Stack) -> None:
    """Fill the primary up to its maxmemory (`Stack.full`), keep it full a while, then give it room again. A new
    session meanwhile gets 503 "full" with the Redis store, and opens with the memory store (it needs no Redis)."""
    with stack.full(stack.primary()):
        opened = McpClient(requests.Session(), stack.url, timeout=(5, 30)).initialize()
        message = (opened.error or {}).get("message", "")
        refused = opened.status == 503 and "is full and refuses writes" in message
        if refused != (stack.store == "redis"):
            raise AssertionError(f"a new session while Redis was full got {opened.status} {message!r}")
        time.sleep(REDIS_FULL_SECONDS)  # the fault's length


def _clock_off(name: str, seconds: int) -> Callable[[Stack], None]:
    """Step a process's wall clock by `seconds`, and back after CLOCK_OFF_SECONDS, as NTP would fix it."""

    def strike(stack: Stack) -> None:
        stack.clock(name).jump(seconds)
        time.sleep(CLOCK_OFF_SECONDS)  # the fault's length
        stack.clock(name).jump(-seconds)

    return strike


def _rolling_restart(stack: Stack) -> None:
    for name in INSTANCES:
        stack.restart(name)


FAULTS = (
    # nginx sends a call the killed instance never began to answer to the next one: a client sees those succeed.
    Fault(
        "instance SIGKILL, started again",
        lambda stack: stack.restart(VICTIM, signal.SIGKILL),
        unstarted_at_most=0,
        summary=KILLS_SUMMARY,
    ),
    Fault(
        f"a SIGKILL every {KILL_EVERY_SECONDS:.0f} s, {KILLS} times",
        _kill_every_minute,
        quick=False,
        unstarted_at_most=0,
        summary=KILLS_SUMMARY,
    ),
    Fault("rolling restart (SIGTERM, one at a time)", _rolling_restart, retried_at_most=0),
    Fault(
        f"instance SIGSTOP {INSTANCE_PAUSE_SECONDS:.0f} s", lambda stack: stack.pause(VICTIM, INSTANCE_PAUSE_SECONDS)
    ),
    Fault(
        f"Redis SIGSTOP {REDIS_PAUSE_SECONDS:.0f} s", lambda stack: stack.pause(stack.primary(), REDIS_PAUSE_SECONDS)
    ),
    Fault("Redis SIGKILL, started again", lambda stack: stack.restart(stack.primary(), signal.SIGKILL)),
    Fault("nginx reload", lambda stack: stack.reload_nginx()),
    Fault("Redis primary SIGKILL, failed over", lambda stack: stack.fail_over(), ha_only=True),
    Fault(
        f"instance cut off from Redis {INSTANCE_PAUSE_SECONDS:.0f} s",
        lambda stack: stack.pause(link_of(VICTIM), INSTANCE_PAUSE_SECONDS),
        cuts_links=True,
    ),
    # With the Redis store a new session gets 503 "full" (the row stops if not); writes are refused, and retried.
    Fault(f"Redis full (maxmemory) for {REDIS_FULL_SECONDS:.0f} s", _redis_full),
    # Redis expires keys by its wall clock: ahead, every owner's heartbeat lapses at once (and back, lives longer).
    *(
        Fault(
            f"Redis clock {abs(step)} s {'ahead' if step > 0 else 'behind'} for {CLOCK_OFF_SECONDS:.0f} s",
            _clock_off("redis", step),
            clocks=("redis",),
            takeovers_at_most=1,
            summary=CLOCKS_SUMMARY,
        )
        for step in (CLOCK_JUMP_SECONDS, -CLOCK_JUMP_SECONDS)
    ),
    # Hops carry the sender's wall clock: the victim's are refused, "did not run", until the clocks agree again.
    Fault(
        f"instance clock {CLOCK_JUMP_SECONDS} s ahead for {CLOCK_OFF_SECONDS:.0f} s",
        _clock_off(VICTIM, CLOCK_JUMP_SECONDS),
        clocks=(VICTIM,),
        takeovers_at_most=0,
        summary=CLOCKS_SUMMARY,
    ),
    Fault(
        "owner SIGKILL while an elicitation waits, answered after the takeover",
        None,
        scenario=late_answers_after_takeover,
    ),
)
