"""Run the faults against each configuration of the local stack and judge every row against the goals."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loadtest.experiments.faults.catalogue import Fault
from loadtest.experiments.faults.load import CountingLoad
from loadtest.harness.stack import Stack, free_port
from mcp_cluster.shared import keys

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
ONE_REDIS = "clocks are moved on a stack with one Redis"
NO_REDIS = "the memory store keeps no session in Redis and relays nothing between instances"
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
    most_takeovers: int | None = None  # the most times one session was taken over (Redis store: its generation)
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
        if fault.takeovers_at_most is not None and (self.most_takeovers or 0) > fault.takeovers_at_most:
            self.misses.append(f"a session taken over {self.most_takeovers} times (goal: {fault.takeovers_at_most})")
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
    options = {"preset": PRESET, "policy": policy, "store": store.removesuffix("-ha"), **(HA if ha else {})}
    with Stack(run_dir=work, port=free_port(), **options, redis_links=not ha) as stack:
        for fault in (fault for fault in faults if ha or not fault.ha_only):
            row = Row(store, policy, fault.name, not_run=_not_run(store, fault))
            if row.not_run is None and fault.clocks:
                clocked = {"run_dir": work.with_name(f"{work.name}-clocks"), "clocks": fault.clocks}
                with Stack(port=free_port(), **options, **clocked) as clocked_stack:
                    _strike(clocked_stack, fault, sessions, row)
            elif row.not_run is None:
                _strike(stack, fault, sessions, row)
            row.judge(fault)
            rows.append(row)
            print(f"faults: {store}/{policy}: {fault.name}: {_summary(row)}", flush=True)
    return rows


def _not_run(store: str, fault: Fault) -> str | None:
    if fault.clocks and store != "redis":
        return ONE_REDIS if store == "redis-ha" else NO_REDIS
    return NO_LINKS if store == "redis-ha" and fault.cuts_links else None


def _strike(stack: Stack, fault: Fault, sessions: int, row: Row) -> None:
    stack.wait_replicated()  # with redis-ha, after the last fault: one primary, its replica in sync
    before = generations(stack)
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
    if stack.store == "redis":
        after = generations(stack)
        row.most_takeovers = max((gen - before.get(session, 1) for session, gen in after.items()), default=0)
    if tally.recovered is not None:
        row.recovery_seconds = round(max(0.0, tally.recovered - struck), 2)


def generations(stack: Stack) -> dict[bytes, int]:
    """Each session's generation in Redis (1, and one more for each takeover); empty with the memory store."""
    if stack.store != "redis":
        return {}
    with stack.redis_client(stack.primary()) as admin:
        records = list(admin.scan_iter(match=keys.SESSION.format("*"), count=1000))
        return {record: int(gen) for record, gen in zip(records, _field(admin, records, "gen"), strict=True) if gen}


def _field(admin, records: list[bytes], name: str) -> list[bytes | None]:
    pipeline = admin.pipeline(transaction=False)
    for record in records:
        pipeline.hget(record, name)
    return pipeline.execute()


def _summary(row: Row) -> str:
    if row.not_run:
        return f"not run: {row.not_run}"
    verdict = "; ".join(row.misses) or "goals met"
    return f"{row.calls} calls, {row.failed} failed, {row.sessions_lost} sessions lost ({verdict})"


def as_json(rows: list[Row]) -> list[dict]:
    return [asdict(row) for row in rows]
