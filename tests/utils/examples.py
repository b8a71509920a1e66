"""What the example servers' stack tests read of a local stack: which instance served what, who owns a session."""

from __future__ import annotations

import json

import redis

from loadtest.harness.stack import Stack
from loadtest.harness.topology import INSTANCES
from mcp_cluster.shared import keys


def sessions_served(stack: Stack) -> dict[str, set[str]]:
    """Per instance, the sessions (as the logs fingerprint them) whose tool calls it served."""
    served: dict[str, set[str]] = {}
    for name in INSTANCES:
        for line in (stack.run_dir / f"{name}.log").read_text().splitlines():
            entry = json.loads(line)
            if entry.get("rpc_method") == "tools/call" and entry.get("status") == 200:
                served.setdefault(name, set()).add(entry["session"])
    return served


def only_session_owner(stack: Stack) -> str:
    """The instance owning the one session open in the stack's Redis."""
    store = redis.Redis.from_url(stack.redis_url)
    (record,) = list(store.scan_iter(keys.SESSION.format("*")))
    return store.hget(record, "owner").decode().partition(":")[0]
