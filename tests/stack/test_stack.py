"""The local stack harness: every process it starts is gone afterwards, whatever happened."""

from __future__ import annotations

import socket

import pytest

from loadtest.harness.stack import Stack, StackError, free_port
from loadtest.harness.stack import process_alive as alive


def test_a_failing_body_still_stops_every_process(tmp_path):
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="test body failed"), Stack(run_dir=tmp_path, port=free_port()) as stack:
        pids = [proc.pid for proc in stack.procs]
        assert [proc.name for proc in stack.procs] == ["redis", "app1", "app2", "app3", "nginx"]
        assert all(alive(pid) for pid in pids)
        raise RuntimeError("test body failed")
    assert pids and not any(alive(pid) for pid in pids)
    assert not (tmp_path / "stack.json").exists()


class RecordingStack(Stack):
    """Remembers every pid it started, since a failed start forgets its processes."""

    spawned: list[int]

    def _spawn(self, *args, **kwargs):
        proc = super()._spawn(*args, **kwargs)
        self.__dict__.setdefault("spawned", []).append(proc.pid)
        return proc


def test_a_start_that_fails_leaves_nothing_running(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack = RecordingStack(run_dir=tmp_path, port=taken.getsockname()[1])
        with pytest.raises(StackError, match="nginx exited at start"):
            stack.start()
    assert len(stack.spawned) == 5
    assert not any(alive(pid) for pid in stack.spawned)
    assert not (tmp_path / "stack.json").exists()


def test_a_second_stack_in_the_same_directory_is_refused(tmp_path):
    with Stack(run_dir=tmp_path, port=free_port()), pytest.raises(StackError, match="already running"):
        Stack(run_dir=tmp_path, port=free_port()).start()


def test_down_leaves_alone_a_process_that_reused_a_recorded_pid(tmp_path):
    with Stack(run_dir=tmp_path, port=free_port()) as stack:
        stale = Stack.load(tmp_path)
        stale.procs[0].started += 1  # as if the pid now belonged to a process started later
        assert not stale.procs[0].alive()
        stale.stop()
        assert alive(stack.procs[0].pid), "stop() signalled a process that is not the one it started"


def test_free_ports_are_never_handed_out_twice():
    # The kernel's choice for port 0 repeats well within a thousand binds; a stack picks its ports before
    # binding them, and two processes given one port would pass for one healthy process.
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
