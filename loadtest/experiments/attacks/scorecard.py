"""One row per attack: a stack of its own (targets.py), the victim running before, during and after the attack,
and the memory of nginx, the instances and Redis sampled throughout."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator

from loadtest.experiments.attacks.catalogue import Attack
from loadtest.experiments.attacks.targets import Target
from loadtest.experiments.attacks.victim import Victim

WARM_CALLS = 20  # the victim's calls before the attack starts (it is served), and again after it ends
SAMPLE_EVERY = 0.25


def score(
    attacks: tuple[Attack, ...], seconds: float, target_for: Callable[[str], contextlib.AbstractContextManager[Target]]
) -> list[dict]:
    """`target_for(name)`: a new stack for the attack `name`."""
    rows = []
    for attack in attacks:
        print(f"attacks: {attack.name} ...", flush=True)
        with target_for(attack.name.replace(" ", "-")) as target:
            rows.append(_row(attack, seconds, target))
    return rows


def _row(attack: Attack, seconds: float, target: Target) -> dict:
    traffic: Counter[str] = Counter()
    with _peaks(target) as peak_mib, Victim(target.url, target.victims) as victim:
        _until(lambda: victim.tally.calls >= WARM_CALLS, 60)
        stop = threading.Event()
        attacker = threading.Thread(
            target=lambda: traffic.update(attack.run(target.url, target.attacker, stop)), daemon=True
        )
        attacker.start()
        stop.wait(seconds)
        stop.set()
        attacker.join(timeout=60)
        stopped = not attacker.is_alive()  # its counts come when it ends
        calls = victim.tally.calls
        _until(lambda: victim.tally.calls >= calls + WARM_CALLS, 60)
    died = target.died()
    tally = victim.tally
    misses = [f"{tally.failed} victim calls failed"] if tally.failed else []
    return {
        "attack": attack.name,
        "what": attack.what,
        "traffic": dict(traffic.most_common()),
        "victim_calls": tally.calls,
        "victim_failed": tally.failed,
        "victim_failures": dict(tally.failures.most_common()),
        "victim_slowest_seconds": round(tally.slowest_seconds, 2),
        "peak_mib": {kind: round(mib, 1) for kind, mib in peak_mib.items()},
        "died": died,
        "misses": misses
        + ([f"{', '.join(died)} died"] if died else [])
        + ([] if stopped else ["attacker never stopped"]),
    }


@contextlib.contextmanager
def _peaks(target: Target) -> Iterator[dict[str, float]]:
    """The highest memory of each kind of process while the block runs, sampled every SAMPLE_EVERY seconds."""
    peak: defaultdict[str, float] = defaultdict(float)
    stop = threading.Event()

    def sample() -> None:
        while True:
            for kind, mib in target.memory_mib().items():
                peak[kind] = max(peak[kind], mib)
            if stop.wait(SAMPLE_EVERY):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()


def _until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
