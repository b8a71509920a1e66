"""The layer's Lua as Redis Functions (mcp_cluster/shared/functions.py): the file Redis loads them from is current."""

from __future__ import annotations

import re

from loadtest.harness.topology import PROJECT_ROOT
from mcp_cluster.shared.functions import LOADED_BY, NO_WRITES, every_function, library_file

WRITES = ("'SET'", "'DEL'", "'HSET'", "'HINCRBY'", "'INCR'", "'EXPIRE'", "'PEXPIRE'", "'ZADD'", "'ZREM", "'XADD'")


def test_the_file_redis_loads_holds_every_function_the_layer_defines():
    assert (PROJECT_ROOT / LOADED_BY).read_text() == library_file("app"), (
        f"mcp-cluster redis-functions app > {LOADED_BY}"
    )
    assert len(every_function("app")) >= 20


def test_the_instances_redis_user_may_send_every_command_the_functions_send():
    """Redis checks each command a function sends against its caller's ACL: one missing fails the function."""
    acl = (PROJECT_ROOT / "redis" / "users.acl").read_text()
    allowed = set(re.findall(r"\+([a-z|]+)", next(line for line in acl.splitlines() if line.startswith("user mcp "))))
    sent = {
        name.lower()
        for function in every_function("app")
        for name in re.findall(r"redis\.call\('(\w+)'", function.code)
    }
    assert sent and sent - allowed == set()


def test_a_function_that_may_run_on_a_full_or_cut_off_redis_writes_nothing():
    """Redis runs a no-writes function where it refuses writes: one that wrote would fail halfway."""
    readers = [function for function in every_function("app") if NO_WRITES in function.flags]
    assert readers and [f.name for f in readers if any(command in f.code for command in WRITES)] == []
