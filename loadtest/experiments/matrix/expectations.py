"""What each configuration should do, and what the seed document claims, for every capability.

The design expectations come from the SDK's own documentation of the 2025-11-25 transport
(run/legacy-clients.md) and are asserted on one instance by tests/stack/test_presets.py. The seed's
claims are transcribed from its feature matrix and configuration matrix, cell by cell.
"""

from __future__ import annotations

from loadtest.client import capabilities as cap
from loadtest.client.capabilities import LEGACY, MODERN
from loadtest.harness.topology import PRESETS

VICTIM = "app1"  # the instance an instance-loss run kills halfway through
WORKS = "works"
UNSUPPORTED = "unsupported by design"
NO_SESSIONS = "not applicable: no sessions"
NEEDS_AFFINITY = "needs session affinity"
IN_FLIGHT_ONLY = "only requests in flight on the lost instance fail"
SESSIONS_LOST = "the lost instance's sessions end"
# Failure reasons of a request caught on an instance as it died (or relayed through it), and of a
# session that died with its instance; anything else in an instance-loss run is unexpected.
IN_FLIGHT_REASONS = (
    "stopped answering",
    "HTTP 502",
    "connection failed",
    "stream broken mid-response",
    "stream ended without a response",
    "timeout",
    "no session: initialize failed",
    "not waiting for an answer to server request",  # the user's answer, after the instance that asked died
)
SESSION_LOSS_REASONS = ("Session not found", "GET stream: HTTP 404")


def expected(
    preset: str, policy: str, store: str, capability: str, *, loss: bool = False, protocol: str = LEGACY
) -> str:
    stateful, sse = preset.startswith("stateful"), preset.endswith("-sse")
    if protocol == MODERN:
        # No session to lose, any instance serves any request; notifications need an SSE response.
        if capability in cap.SESSIONS_ONLY:
            return NO_SESSIONS
        return WORKS if sse or capability not in (cap.LOGS, cap.PROGRESS) else UNSUPPORTED
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
    if loss:
        return IN_FLIGHT_ONLY if store == "redis" or not stateful else SESSIONS_LOST
    if stateful and policy == "round-robin" and store == "memory":
        return NEEDS_AFFINITY  # every request after initialize must reach the process that holds the session
    return WORKS


def verdict(expectation: str, requests: int, failures: int, reasons: dict[str, int] | None = None) -> str:
    """'ok' when the cell did what the design says, else 'unexpected'.

    What works must never fail, what the preset cannot do must always fail, and a session that
    needs affinity fails whenever a request misses its instance (some of the time, not always).
    When an instance is lost, every failure must be one its loss explains.
    """
    if expectation == NO_SESSIONS:
        return "ok" if requests == 0 else "unexpected"
    if requests == 0:
        return "no requests"
    lost_or_in_flight = SESSION_LOSS_REASONS + IN_FLIGHT_REASONS
    ok = {
        WORKS: failures == 0,
        UNSUPPORTED: failures == requests,
        NEEDS_AFFINITY: failures > 0,
        IN_FLIGHT_ONLY: failures < requests and all(explained(r, IN_FLIGHT_REASONS) for r in reasons or {}),
        SESSIONS_LOST: failures < requests and all(explained(r, lost_or_in_flight) for r in reasons or {}),
    }[expectation]
    return "ok" if ok else "unexpected"


def explained(reason: str, kinds: tuple[str, ...]) -> bool:
    """Whether a failure reason is one of `kinds` (each a part of the reason)."""
    return any(kind in reason for kind in kinds)


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
