"""Fixtures that start real processes: local stacks (redis, 3 x uvicorn, nginx), each shared by the tests of
one module and stopped when the module ends. The plugins build the compose images while the first tests run
(the compose tests run last), and end the run with its time by layer."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator

import pytest

from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import PRESETS
from tests.utils.clients import wait_for

pytest_plugins = ["tests.plugins.layer_times", "tests.plugins.compose_images"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def stack_for(tmp_path_factory) -> Iterator[Callable[..., Stack]]:
    """`stack_for(preset, policy, store)`: a running local stack, started on first use in a module and stopped
    when the module ends (two cores do not hold a dozen idle stacks well)."""
    stacks: dict[tuple[str, str, str], Stack] = {}
    with contextlib.ExitStack() as cleanup:

        def get(preset: str, policy: str = "round-robin", store: str = "memory") -> Stack:
            if (preset, policy, store) not in stacks:
                run_dir = tmp_path_factory.mktemp(f"{preset}-{policy}-{store}")
                logged = {"MCP_ACCESS_LOG": "on"}  # tests read which instance served what
                stack = Stack(
                    run_dir=run_dir, preset=preset, policy=policy, store=store, port=free_port(), app_env=logged
                )
                stacks[preset, policy, store] = cleanup.enter_context(stack)
            return stacks[preset, policy, store]

        yield get


@pytest.fixture(params=PRESETS)
def preset(request) -> str:
    return request.param


@pytest.fixture
def url(stack_for, preset) -> str:
    """One instance of the preset's stack, reached directly (no balancer in the way)."""
    return stack_for(preset).instance_url("app1")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A redis-server of the module's own on 127.0.0.1: (its URL, its process)."""
    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    workdir = str(tmp_path_factory.mktemp("redis"))
    server = subprocess.Popen([binary, *options, "--dir", workdir], stdout=subprocess.DEVNULL)
    wait_for(lambda: server.poll() is not None or _accepts(port), timeout=10, interval=0.02)
    assert server.poll() is None, "redis-server did not start"
    yield f"redis://127.0.0.1:{port}/0", server
    os.kill(server.pid, signal.SIGCONT)
    server.terminate()
    server.wait(timeout=5)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def redis_url(redis_server) -> str:
    return redis_server[0]
