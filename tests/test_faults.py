"""The fault scorecard's short run (docs/load-tests.md), as written, against real processes (redis-server,
uvicorn, nginx), round-robin: with the Redis store no session and no acknowledged write is lost or doubled whatever the
fault, and a rolling restart fails no call. The pieces of the scorecard are checked on their own too."""

from __future__ import annotations

import json

import pytest

from loadtest.faults.catalogue import FAULTS
from loadtest.faults.scorecard import Row
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
    assert {row["fault"] for row in run} == quick  # the failover: tests/test_redis_ha.py
    for row in run:
        assert row["failed"] == 0 or row["recovery_seconds"] is not None, row  # answered again after failing
        assert (row["sessions_lost"], row["acknowledged_lost"], row["doubled"]) == (0, 0, 0), row
    rolling = [row for row in run if row["fault"].startswith("rolling restart")]
    assert len(rolling) == 1 and rolling[0]["failed"] == 0, rolling


def test_the_scorecard_and_its_summary_show_every_row(quick):
    page = (quick["out"] / "faults.md").read_text()
    for row in quick["run"]["rows"]:
        assert f"| {row['store']} | {row['policy']} | {row['fault']} |" in page
    summary = (quick["out"] / "summary.md").read_text()
    assert summary.count("\n| ") == 1 + len({row["fault"] for row in quick["run"]["rows"] if not row["not_run"]})


def test_a_row_misses_its_goals_when_the_redis_store_loses_doubles_or_fails_a_deploy():
    rolling = next(fault for fault in FAULTS if fault.failed_at_most == 0.0)
    row = Row("redis", "session", rolling.name, calls=100, failed=1, sessions_lost=1, acknowledged_lost=2, doubled=3)
    row.recovery_seconds = 0.5
    row.judge(rolling)
    assert row.misses == [
        "sessions lost: 1",
        "acknowledged writes lost: 2",
        "doubled: 3",
        "1 of 100 calls failed (goal: at most 0.0%)",
    ]
    memory = Row("memory", "session", rolling.name, calls=100, failed=9, sessions_lost=2, acknowledged_lost=20)
    memory.recovery_seconds = 1.0
    memory.judge(rolling)
    assert memory.misses == []  # no goal: the memory store's rows say what it loses


def test_a_row_whose_calls_fail_and_never_succeed_again_is_not_recovered_whatever_the_store():
    restart = next(fault for fault in FAULTS if fault.name.startswith("Redis SIGKILL"))
    for store in ("memory", "redis"):
        row = Row(store, "session", restart.name, calls=100, failed=40)
        row.judge(restart)
        assert row.misses == ["not recovered: no call answered after the last failure"]


def test_a_kill_misses_its_goal_when_a_call_fails_for_another_reason():
    series = next(fault for fault in FAULTS if not fault.quick)
    row = Row("redis", "round-robin", series.name, calls=10_000, failed=3, recovery_seconds=0.1)
    row.reasons = {"HTTP 502: No MCP instance answered": 2, "tool error: counter restarted": 1}
    row.judge(series)
    assert row.misses == ["failed calls not in flight on the killed instance: tool error: counter restarted"]
