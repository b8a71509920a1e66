"""Where a call's CPU goes: pyinstrument profiles of the bare SDK and ours under the same wrk load, of ours
with the Redis store serving its own sessions, and of a relay and the owner it forwards to (the Redis store on
the local stack).

Each server runs under `python -m pyinstrument` (which slows it, alike for both) while wrk saturates it,
then stops on SIGINT and saves its session; each is rendered as text twice, as a call tree (`NAME.txt`)
and as a flat list of where time was spent (`NAME-flat.txt`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtest.experiments.bench import wrk
from loadtest.experiments.bench.servers import Subject, UvicornServer, open_session
from loadtest.harness.stack import Stack, free_port

STOP_SECONDS = 60.0  # pyinstrument renders its profile after the server stops
PROFILED_INSTANCE = "loadtest.experiments.bench.profiled_instance"


class ProfiledServer(UvicornServer):
    """A UvicornServer whose process is pyinstrument running uvicorn, saving its `session` when it stops."""

    def __init__(self, subject: Subject, log: Path, session: Path) -> None:
        super().__init__(subject, log)
        self.session = session

    def command(self) -> list[str]:
        saved = ["-r", "session", "-o", str(self.session)]
        return [sys.executable, "-m", "pyinstrument", *saved, "-m", "uvicorn", *self.uvicorn_args()]

    def __exit__(self, *exc_info: object) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def profile(subjects: list[Subject], seconds: int, out: Path, work: Path) -> list[Path]:
    """Two text profiles per subject (call tree, flat), each under `seconds` of saturating load."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for subject in subjects:
        name = subject.label.replace(", ", "-").replace(" ", "-").lower()
        session = work / f"{name}.pyisession"
        with ProfiledServer(subject, work / f"profile-{name}.log", session) as server:
            server.open_sessions(subject.kind != "floor")
            wrk.run(server.url, wrk.Call(sessions=server.sessions), 16, seconds)
        written += _render(session, out, name)
    return written


def redis_store(seconds: int, out: Path, work: Path) -> list[Path]:
    """Two text profiles of ours with the Redis store (app1 of a local stack, stateful-json) under `seconds`
    of wrk's load on its own sessions: the same calls as the `ours` profile, with the store's path added."""
    return _on_stack("stateful-json", "app1", seconds, work / "redis-store-profile", out, {"app1": "ours-redis-store"})


def relay(seconds: int, out: Path, work: Path) -> list[Path]:
    """Two text profiles each of a relay (app2) and of the owner it forwards to (app1), under `seconds` of
    wrk's load sent to the relay for sessions the owner holds, on the local stack with the Redis store."""
    names = {"app2": "relay", "app1": "owner-of-relayed-calls"}
    return _on_stack("stateful-sse", "app2", seconds, work / "relay-profile", out, names)


def _on_stack(preset: str, called: str, seconds: int, run_dir: Path, out: Path, names: dict[str, str]) -> list[Path]:
    """Profiles of the instances in `names` (instance: profile name) while wrk calls `called` with sessions
    app1 holds, on a local stack with the Redis store whose instances run under the profiler."""
    sessions_dir = run_dir / "sessions"
    for folder in (sessions_dir, out):
        folder.mkdir(parents=True, exist_ok=True)
    profiled = {
        "BENCH_PROFILE_DIR": str(sessions_dir)
    }  # read by each instance (loadtest/experiments/bench/profiled_instance.py)
    stack = Stack(run_dir=run_dir, preset=preset, store="redis", port=free_port(), server=PROFILED_INSTANCE)
    with _environment(profiled), stack:
        sessions = tuple(open_session(stack.instance_url("app1")) for _ in range(8))
        for instance in names:
            os.kill(stack.proc(instance).pid, signal.SIGUSR1)  # from now on, not the start
        wrk.run(stack.instance_url(called), wrk.Call(sessions=sessions), 16, seconds)
    written = []
    for instance, name in names.items():
        written += _render(sessions_dir / f"{instance}.pyisession", out, name)
    return written


def _render(session: Path, out: Path, name: str) -> list[Path]:
    """`session` as a call tree (`NAME.txt`) and as a flat list of where time was spent (`NAME-flat.txt`)."""
    written = []
    for path, options in ((out / f"{name}.txt", []), (out / f"{name}-flat.txt", ["-p", "flat=true"])):
        render = [sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", "text", *options]
        subprocess.run([*render, "-p", "color=false", "-p", "unicode=false", "-o", str(path)], check=True)
        written.append(path)
    return written


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the processes started meanwhile (the stack's children inherit them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
