"""The hostile-load scorecard's short run (docs/load-tests.md), as written, against real processes: slow uploads
from one address are refused past their bound, and the victim on other addresses is served throughout."""

from __future__ import annotations

import json

import pytest

from tests.utils.docs import run_block_in

pytestmark = pytest.mark.timeout(300)


def test_slow_uploads_from_one_address_leave_the_victim_served(tmp_path):
    done = run_block_in("attacks-quick", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((tmp_path / "attacks-quick" / "attacks.json").read_text())
    (row,) = run["rows"]
    assert row["attack"] == "slow uploads" and row["misses"] == [] and row["victim_calls"] > 0
    # NGINX_UPLOADS_PER_CLIENT: 8 uploads held (on disk, where nginx's workers may write), the rest refused at once
    assert row["traffic"] == {"uploads": 40, "answered 429": 32, "held to the end": 8}, row["traffic"]
    assert (tmp_path / "attacks-quick" / "attacks.md").read_text().count("| slow uploads |") == 1
