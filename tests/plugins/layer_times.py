"""The run's time by layer, printed at its end: in-process tests (unit), tests that start or use local processes
(stack), the compose stack, the quick matrix; and the image build, with how long the compose tests waited for it."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict

import pytest

LAYERS = ("unit", "stack", "compose", "quick matrix")
LAYER_TIMES = pytest.StashKey[dict[str, list[float]]]()
PROCESS_EVENTS = {"subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec"}
_started_a_process = [False]
_process_fixtures: set[str] = {"stack_for"}  # fixtures seen starting processes (stack_for starts them lazily)


def _audit(event: str, args: tuple) -> None:
    if event in PROCESS_EVENTS and threading.current_thread() is threading.main_thread():  # not the image build
        _started_a_process[0] = True


def pytest_configure(config) -> None:
    sys.addaudithook(_audit)  # for the rest of the process: audit hooks cannot be removed
    config.stash[LAYER_TIMES] = defaultdict(list)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _started_a_process[0] = False
    started = time.monotonic()
    try:
        return (yield)
    finally:
        layer, seconds = _layer(item), time.monotonic() - started
        item.config.stash[LAYER_TIMES][layer].append(seconds)
        if os.environ.get("MCP_LAYER_DETAIL"):  # one line a test, to see where each belongs
            with open(os.environ["MCP_LAYER_DETAIL"], "a") as detail:
                detail.write(f"{layer}\t{seconds:.2f}\t{item.nodeid}\n")


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    before, _started_a_process[0] = _started_a_process[0], False
    try:
        return (yield)
    finally:
        if _started_a_process[0]:
            _process_fixtures.add(fixturedef.argname)
        _started_a_process[0] = _started_a_process[0] or before


def _layer(item) -> str:
    if item.get_closest_marker("matrix"):
        return "quick matrix"
    if item.get_closest_marker("compose"):
        return "compose"
    uses_processes = _started_a_process[0] or not _process_fixtures.isdisjoint(item.fixturenames)
    return "stack" if uses_processes else "unit"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    times = config.stash[LAYER_TIMES]
    parts = [f"{layer} {sum(runs):.0f} s ({len(runs)} tests)" for layer in LAYERS if (runs := times[layer])]
    if times["images"]:
        built, waited = times["images"][0], times["images waited for"][0]
        parts.insert(0, f"images {built:.0f} s (built while the first tests ran; {waited:.0f} s waited for)")
    if parts:  # none under xdist: its workers keep their own
        terminalreporter.write_line("time by layer: " + ", ".join(parts))
