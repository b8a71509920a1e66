"""What each configuration should do, and what the seed document claims, for every capability.

The design expectations come from the SDK's own documentation of the 2025-11-25 transport
(run/legacy-clients.md) and are asserted on one instance by tests/test_presets.py. The seed's
claims are transcribed from its feature matrix and configuration matrix, cell by cell.
"""

from __future__ import annotations

from loadtest import capabilities as cap
from loadtest.stack import PRESETS

WORKS = "works"
UNSUPPORTED = "unsupported by design"
NEEDS_AFFINITY = "needs session affinity"


def expected(preset: str, policy: str, store: str, capability: str) -> str:
    stateful, sse = preset.startswith("stateful"), preset.endswith("-sse")
    by_design = {
        cap.BASIC: True,
        cap.COUNTER: stateful,
        cap.LOGS: sse,
        cap.PROGRESS: sse,
        cap.SAMPLING: stateful and sse,
        cap.ELICITATION: stateful and sse,
        cap.RESOURCE_UPDATES: stateful,
        cap.SESSION_CHURN: True,
    }[capability]
    if not by_design:
        return UNSUPPORTED
    if stateful and policy == "round-robin" and store == "memory":
        return NEEDS_AFFINITY  # every request after initialize must reach the process that holds the session
    return WORKS


def verdict(expectation: str, requests: int, failures: int) -> str:
    """'ok' when the cell did what the design says, else 'unexpected'.

    What works must never fail, what the preset cannot do must always fail, and a session that
    needs affinity fails whenever a request misses its instance (some of the time, not always).
    """
    if requests == 0:
        return "no requests"
    ok = {WORKS: failures == 0, UNSUPPORTED: failures == requests, NEEDS_AFFINITY: failures > 0}[expectation]
    return "ok" if ok else "unexpected"


# The seed document's claims per preset, in PRESETS order (stateful-sse, stateful-json, stateless-sse,
# stateless-json): True (works), False (does not), None (the seed does not say). stateful-json comes
# from its configuration matrix ("JSON responses, but still supports sampling/progress") and its
# json_response section ("no log statements during execution").
_SEED = {
    cap.BASIC: (True, True, True, True),
    cap.COUNTER: (True, True, False, False),
    cap.LOGS: (True, False, True, False),
    cap.PROGRESS: (True, True, False, False),
    cap.SAMPLING: (True, True, False, False),
    cap.ELICITATION: (None, None, None, None),
    cap.RESOURCE_UPDATES: (True, None, False, False),
    cap.SESSION_CHURN: (None, None, None, None),
}
SEED_CLAIMS: dict[str, dict[str, bool | None]] = {c: dict(zip(PRESETS, row, strict=True)) for c, row in _SEED.items()}
# Its "Horizontal scaling" row: stateful needs sticky sessions, stateless scales "trivially".
SEED_SCALES_WITHOUT_AFFINITY = dict(zip(PRESETS, (False, False, True, True), strict=True))
