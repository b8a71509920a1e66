"""Fixtures that start real processes: local stacks (redis, 3 x uvicorn, nginx) shared by the whole run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from loadtest.stack import PRESETS, Stack, free_port

STATEFUL = ("stateful-sse", "stateful-json")
STATELESS = ("stateless-sse", "stateless-json")
SSE = ("stateful-sse", "stateless-sse")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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


@pytest.fixture(params=PRESETS)
def preset(request) -> str:
    return request.param


@pytest.fixture
def url(stack_for, preset) -> str:
    """One instance of the preset's stack, reached directly (no balancer in the way)."""
    return stack_for(preset).instance_url("app1")
