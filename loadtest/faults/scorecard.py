"""Run the faults against each configuration of the local stack and judge every row against the goals."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loadtest.faults.catalogue import Fault
from loadtest.faults.load import CountingLoad
from loadtest.stack import Stack, free_port

PRESET = "stateful-sse"  # every capability, sessions and all
CONFIGURATIONS = (
    ("memory", "session"),
    ("memory", "round-robin"),
    ("redis", "session"),
    ("redis", "round-robin"),
    ("redis-ha", "round-robin"),
)
QUICK_CONFIGURATIONS = (("redis", "round-robin"),)  # every request may need another instance: the hardest
# redis-ha: the Redis store on a primary, a replica and three Sentinels, each write answered once on the replica.
HA = {"redis": "ha"}
NO_LINKS = "the Sentinels hand out the Redis servers' own addresses: no link of one instance's to cut"
NOT_RUN = {("memory", "round-robin"): "needs session affinity: every call after initialize misses its session"}
LOSSES = {
    "failed": "calls failed for good",
    "sessions_lost": "sessions lost",
    "acknowledged_lost": "acknowledged writes lost",
    "doubled": "doubled",
    "crossed": "answers crossed",
}
CALLS_AROUND = 10  # per session, before the fault (all counting) and after it (all counting again)


@dataclass
class Row:
    store: str
    policy: str
    fault: str
    calls: int = 0
    retried: int = 0  # calls sent more than once (the first try failed in a way a retry mends)
    retry_reasons: dict[str, int] = field(default_factory=dict)  # why each try was sent again
    unstarted: int = 0  # calls whose first try failed before its answer began
    started: int = 0  # ... after it began
    failed: int = 0  # calls that failed for good, retries and all
    reasons: dict[str, int] = field(default_factory=dict)
    sessions_lost: int = 0
    acknowledged_lost: int = 0
    doubled: int = 0
    crossed: int = 0
    recovery_seconds: float | None = None  # from the fault to the first try answered after the last that failed
    longest_seconds: float | None = None  # the slowest call, retries included
    not_run: str | None = None
    misses: list[str] = field(default_factory=list)  # the goals this row missed

    def judge(self, fault: Fault) -> None:
        if self.not_run is not None:
            return
        if self.store == "memory":
            return  # the memory store loses what its instance held, by design: the row says how much
        if (self.retried or self.failed) and self.recovery_seconds is None:
            self.misses.append("not recovered: no call answered after the last failure")
        for what, label in LOSSES.items():
            if getattr(self, what):
                self.misses.append(f"{label}: {getattr(self, what)}")
        if fault.retried_at_most is not None and self.retried > fault.retried_at_most:
            self.misses.append(f"{self.retried} of {self.calls} calls needed a retry (goal: {fault.retried_at_most})")
        if fault.unstarted_at_most is not None and self.unstarted > fault.unstarted_at_most:
            self.misses.append(
                f"{self.unstarted} calls failed before their answer began (goal: {fault.unstarted_at_most}; "
                "nginx sends those to the next instance)"
            )


def score(faults: tuple[Fault, ...], configurations: tuple, sessions: int, work: Path) -> list[Row]:
    rows = []
    for store, policy in configurations:
        if (store, policy) in NOT_RUN:
            rows.append(Row(store, policy, "every fault", not_run=NOT_RUN[store, policy]))
        else:
            rows += _configuration(store, policy, faults, sessions, work / f"{store}-{policy}")
    return rows


def _configuration(store: str, policy: str, faults: tuple[Fault, ...], sessions: int, work: Path) -> list[Row]:
    rows = []
    ha = store == "redis-ha"
    options = HA if ha else {"redis_links": True}
    store_of_stack = store.removesuffix("-ha")
    with Stack(run_dir=work, preset=PRESET, policy=policy, store=store_of_stack, port=free_port(), **options) as stack:
        for fault in (fault for fault in faults if ha or not fault.ha_only):
            row = Row(store, policy, fault.name, not_run=NO_LINKS if ha and fault.cuts_links else None)
            if row.not_run is None:
                _strike(stack, fault, sessions, row)
            row.judge(fault)
            rows.append(row)
            print(f"faults: {store}/{policy}: {fault.name}: {_summary(row)}", flush=True)
    return rows


def _strike(stack: Stack, fault: Fault, sessions: int, row: Row) -> None:
    stack.wait_replicated()  # with redis-ha, after the last fault: one primary, its replica in sync
    struck = time.monotonic()
    if fault.scenario is not None:
        tally = fault.scenario(stack, sessions)
    else:
        with CountingLoad(stack.url, sessions) as load:
            load.go_on(CALLS_AROUND)
            struck = time.monotonic()
            fault.strike(stack)
            load.go_on(CALLS_AROUND, timeout=90)
        tally = load.tally
    row.calls, row.failed, row.reasons = tally.calls, sum(tally.failed.values()), dict(tally.failed.most_common())
    row.retried, row.retry_reasons = tally.calls_retried, dict(tally.retried.most_common())
    row.unstarted, row.started = tally.first_failed_unstarted, tally.first_failed_started
    row.sessions_lost, row.acknowledged_lost, row.doubled = tally.sessions_lost, tally.acknowledged_lost, tally.doubled
    row.crossed = tally.crossed
    row.longest_seconds = round(tally.longest_seconds, 2)
    if tally.recovered is not None:
        row.recovery_seconds = round(max(0.0, tally.recovered - struck), 2)


def _summary(row: Row) -> str:
    if row.not_run:
        return f"not run: {row.not_run}"
    verdict = "; ".join(row.misses) or "goals met"
    return f"{row.calls} calls, {row.failed} failed, {row.sessions_lost} sessions lost ({verdict})"


def as_json(rows: list[Row]) -> list[dict]:
    return [asdict(row) for row in rows]
