"""The fault scorecard's short run (docs/load-tests.md), as written, against real processes (redis-server,
uvicorn, nginx), round-robin, sessions counting as careful clients (a failed call sent again with its id): with the
Redis store no call fails for good and no session, acknowledged write or answer is lost, doubled or crossed whatever the
fault, a rolling restart needs no retry, and nginx re-sends every call a killed instance had not begun to answer. The
pieces of the scorecard are checked on their own too."""

from __future__ import annotations

import json

import pytest

from loadtest.experiments.faults.catalogue import CLOCKS_SUMMARY, FAULTS
from loadtest.experiments.faults.scorecard import Row
from tests.utils.docs import run_block_in

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("faults")
    done = run_block_in("faults-quick", tmp)
    out = tmp / "faults-quick"
    return {"done": done, "run": json.loads((out / "faults.json").read_text()), "out": out}


def test_every_goal_is_met_and_said(quick):
    assert quick["done"].returncode == 0, quick["done"].stdout + quick["done"].stderr
    assert quick["done"].stdout.endswith("faults: every goal met\n")


def test_the_redis_store_loses_and_doubles_nothing_under_every_fault(quick):
    run = [row for row in quick["run"]["rows"] if not row["not_run"]]
    assert {(row["store"], row["policy"]) for row in run} == {("redis", "round-robin")}
    quick = {fault.name for fault in FAULTS if fault.quick and not fault.ha_only}
    assert {row["fault"] for row in run} == quick  # the failover: tests/stack/test_redis_ha.py
    for row in run:
        assert row["calls"] > 0 and (row["retried"] == 0 or row["recovery_seconds"] is not None), row
        losses = ("failed", "sessions_lost", "acknowledged_lost", "doubled", "crossed")
        assert [row[column] for column in losses] == [0] * len(losses), row
    rolling = [row for row in run if row["fault"].startswith("rolling restart")]
    assert len(rolling) == 1 and rolling[0]["retried"] == 0, rolling
    killed = [row for row in run if row["fault"] == "instance SIGKILL, started again"]
    assert len(killed) == 1 and killed[0]["unstarted"] == 0, killed  # nginx sent those to the next instance
    late = [row for row in run if "elicitation" in row["fault"]]
    assert len(late) == 1 and late[0]["calls"] >= 12, late  # two calls a session, none crossed or failed


def test_the_scorecard_and_its_summary_show_every_row(quick):
    page = (quick["out"] / "faults.md").read_text()
    for row in quick["run"]["rows"]:
        assert f"| {row['store']} | {row['policy']} | {row['fault']} |" in page
    summary = (quick["out"] / "summary.md").read_text()
    lines = {fault.name: fault.summary or fault.name for fault in FAULTS}
    assert summary.count("\n| ") == 1 + len({lines[row["fault"]] for row in quick["run"]["rows"] if not row["not_run"]})
    assert f"| {CLOCKS_SUMMARY} |" in summary  # the three clock rows added up in one


def test_a_row_misses_its_goals_when_the_redis_store_loses_doubles_crosses_or_fails_a_deploy():
    rolling = next(fault for fault in FAULTS if fault.retried_at_most == 0)
    row = Row("redis", "session", rolling.name, calls=100, retried=1, failed=2, sessions_lost=1, acknowledged_lost=2)
    row.doubled, row.crossed, row.recovery_seconds = 3, 1, 0.5
    row.judge(rolling)
    assert row.misses == [
        "calls failed for good: 2",
        "sessions lost: 1",
        "acknowledged writes lost: 2",
        "doubled: 3",
        "answers crossed: 1",
        "1 of 100 calls needed a retry (goal: 0)",
    ]
    memory = Row("memory", "session", rolling.name, calls=100, failed=9, sessions_lost=2, acknowledged_lost=20)
    memory.recovery_seconds = 1.0
    memory.judge(rolling)
    assert memory.misses == []  # no goal: the memory store's rows say what it loses


def test_a_redis_row_whose_calls_fail_and_never_succeed_again_misses_recovery():
    """The memory store's row says so in its Recovered column only: it sets no goal (a late answer to a lost
    session's question can never be answered)."""
    restart = next(fault for fault in FAULTS if fault.name.startswith("Redis SIGKILL"))
    rows = {store: Row(store, "session", restart.name, calls=100, retried=40) for store in ("memory", "redis")}
    for row in rows.values():
        row.judge(restart)
    assert rows["redis"].misses == ["not recovered: no call answered after the last failure"]
    assert rows["memory"].misses == []


def test_a_kill_misses_its_goal_when_a_call_failed_before_its_answer_began():
    """Such a call nginx sends to the next instance: a client that saw it fail found nginx did not."""
    series = next(fault for fault in FAULTS if not fault.quick)
    row = Row("redis", "round-robin", series.name, calls=10_000, retried=3, unstarted=1, started=2)
    row.recovery_seconds = 0.1
    row.judge(series)
    assert row.misses == ["1 calls failed before their answer began (goal: 0; nginx sends those to the next instance)"]


def test_a_clock_row_misses_its_goal_when_a_session_is_taken_over_twice_and_runs_with_one_redis_only():
    from loadtest.experiments.faults.scorecard import NO_REDIS, ONE_REDIS, _not_run

    redis_clock = next(fault for fault in FAULTS if fault.name.startswith("Redis clock"))
    row = Row("redis", "round-robin", redis_clock.name, calls=100, most_takeovers=2)
    row.judge(redis_clock)
    assert row.misses == ["a session taken over 2 times (goal: 1)"]
    assert [_not_run(store, redis_clock) for store in ("redis", "redis-ha", "memory")] == [None, ONE_REDIS, NO_REDIS]
