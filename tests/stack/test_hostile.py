"""The hostile-input catalogue's short run (docs/load-tests.md), as written, against real processes
(redis-server, three uvicorn instances, nginx; authentication on): no case is answered 5xx, hangs, or
stops another client, and the answers that matter are the ones the docs promise."""

from __future__ import annotations

import json

import pytest

from loadtest.experiments.hostile import report
from loadtest.experiments.hostile.cases import CASES
from tests.utils.docs import run_block_in

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("hostile")
    done = run_block_in("hostile-quick", tmp)
    out = tmp / "hostile-quick"
    return {"done": done, "run": json.loads((out / "hostile.json").read_text()), "out": out}


def answer(quick: dict, configuration: str, case: str) -> tuple[int | None, str]:
    (row,) = [r for r in quick["run"]["rows"] if r["configuration"] == configuration and r["case"] == case]
    return row["status"], row["error"]


def test_no_case_is_answered_5xx_hangs_or_stops_another_client(quick):
    assert quick["done"].returncode == 0, quick["done"].stdout + quick["done"].stderr
    assert quick["done"].stdout.endswith("hostile: no 5xx, hang or crash; others served\n")
    rows = quick["run"]["rows"]
    assert len(rows) == 2 * len(CASES) and all(not row["misses"] for row in rows)


def test_the_answers_are_the_ones_the_docs_promise(quick):
    redis = "stateful-sse, redis"
    assert answer(quick, redis, "another principal's session id") == (404, "-32600: Session not found")
    assert answer(quick, redis, "JSON nested 100,000 deep")[0] == 400
    assert answer(quick, redis, "body of 5 MiB")[0] == 413
    assert answer(quick, redis, "no bearer token")[0] == 401
    assert answer(quick, redis, "Mcp-Name disagrees with the body")[1].startswith("-32020: ")
    assert answer(quick, redis, "replayed requestState (a side effect)") == (
        400,
        "-32602: Invalid or expired requestState",
    )
    assert answer(quick, "stateless-json, memory", "a second GET stream on a session")[0] == 405
    refusals = {
        answer(quick, redis, case)[1] for case in ("path traversal (../../etc/passwd)", "absolute path (/etc/shadow)")
    }
    assert all("in the data directory; give a path" in refusal for refusal in refusals)
    slow = [r for r in quick["run"]["rows"] if r["case"] == "slow client (body never finished)"]
    assert all(r["seconds"] < 15 for r in slow), slow  # nginx's 10 s, not the client's patience


def test_the_table_and_the_summary_show_every_case(quick):
    table = (quick["out"] / "hostile.md").read_text()
    assert all(f"| {case.name} |" in table for case in CASES)
    assert "No case was answered 5xx, hung, or stopped another client." in table
    assert (quick["out"] / "summary.md").read_text() == report.summary(quick["run"])
