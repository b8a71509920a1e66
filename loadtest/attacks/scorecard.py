"""One row per attack: a local stack of its own (stateful-sse, the session policy, the Redis store, auth off, so
every bound is per address), the victim running before, during and after the attack, memory sampled."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from loadtest.attacks.catalogue import Attack
from loadtest.attacks.probes import PeakMemory, died
from loadtest.attacks.victim import Victim
from loadtest.stack import Stack, free_port

WARM_CALLS = 20  # the victim's calls before the attack starts: it is served, then attacked


def score(attacks: tuple[Attack, ...], seconds: float, work: Path) -> list[dict]:
    return [_row(attack, seconds, work / attack.name.replace(" ", "-")) for attack in attacks]


def _row(attack: Attack, seconds: float, run_dir: Path) -> dict:
    print(f"attacks: {attack.name} ...", flush=True)
    traffic: Counter[str] = Counter()
    with Stack(run_dir=run_dir, preset="stateful-sse", policy="session", store="redis", port=free_port()) as stack:
        with PeakMemory(stack) as memory, Victim(stack.url) as victim:
            deadline = time.monotonic() + 60
            while victim.tally.calls < WARM_CALLS and time.monotonic() < deadline:
                time.sleep(0.1)
            stop = threading.Event()
            attacker = threading.Thread(target=lambda: traffic.update(attack.run(stack.url, stop)), daemon=True)
            attacker.start()
            stop.wait(seconds)
            stop.set()
            attacker.join(timeout=60)
            calls_before_end = victim.tally.calls
            while victim.tally.calls < calls_before_end + WARM_CALLS and time.monotonic() < deadline + seconds + 60:
                time.sleep(0.1)  # and served after it
        gone = died(stack)
    tally = victim.tally
    row = {
        "attack": attack.name,
        "what": attack.what,
        "traffic": dict(traffic.most_common()),
        "victim_calls": tally.calls,
        "victim_failed": tally.failed,
        "victim_failures": dict(tally.failures.most_common()),
        "victim_slowest_seconds": round(tally.slowest_seconds, 2),
        "peak_mib": {kind: round(mib, 1) for kind, mib in memory.peak_mib.items()},
        "died": gone,
    }
    row["misses"] = [
        *([f"{tally.failed} victim calls failed"] if tally.failed else []),
        *([f"{', '.join(gone)} died"] if gone else []),
    ]
    return row
