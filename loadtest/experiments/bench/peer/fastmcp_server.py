"""FastMCP 4 serving `whoami` as the demo's does, stateless with plain-JSON answers (`stateless-json`), for the
benchmark's peer group; run by the peer's own venv (bench/peer/venv.py), so it imports only fastmcp.

    .venv-peer/bin/python -m uvicorn --factory loadtest.experiments.bench.peer.fastmcp_server:create_app
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fastmcp import FastMCP

LOOPBACK_HOSTS = ["localhost:*", "127.0.0.1:*", "[::1]:*"]  # as ours allows by default


@dataclass
class Identity:
    instance: str
    preset: str
    session_id: str | None
    protocol_version: str
    pid: int


def create_app():
    mcp = FastMCP("peer")

    @mcp.tool
    def whoami() -> Identity:
        """Which instance answered, under which preset, for which session."""
        return Identity("fastmcp", "stateless-json", None, "2025-11-25", os.getpid())

    return mcp.http_app(
        path="/mcp",
        json_response=True,
        stateless_http=True,
        host_origin_protection=True,
        allowed_hosts=LOOPBACK_HOSTS,
    )
