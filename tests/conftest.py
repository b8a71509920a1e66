"""Fixtures that start real processes: local stacks (redis, 3 x uvicorn, nginx) shared by the whole run."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator

import pytest
import requests

from loadtest.mcp_client import McpClient
from loadtest.stack import Stack

PRESETS = ("stateful-sse", "stateful-json", "stateless-sse", "stateless-json")
STATEFUL = ("stateful-sse", "stateful-json")
STATELESS = ("stateless-sse", "stateless-json")
SSE = ("stateful-sse", "stateless-sse")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def stack_for(tmp_path_factory) -> Iterator[Callable[..., Stack]]:
    """`stack_for(preset, policy)`: a running local stack, started on first use and stopped at the end."""
    stacks: dict[tuple[str, str], Stack] = {}
    with contextlib.ExitStack() as cleanup:

        def get(preset: str, policy: str = "round-robin") -> Stack:
            if (preset, policy) not in stacks:
                run_dir = tmp_path_factory.mktemp(f"{preset}-{policy}")
                stack = Stack(run_dir=run_dir, preset=preset, policy=policy, port=free_port())
                stacks[preset, policy] = cleanup.enter_context(stack)
            return stacks[preset, policy]

        yield get


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def raw_client(http: requests.Session) -> Callable[[str], McpClient]:
    return lambda url: McpClient(http, url)
