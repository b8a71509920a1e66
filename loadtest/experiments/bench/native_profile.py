"""Where a relay's CPU goes, system calls included: py-spy's native samples of the relay (app2 of the local
stack with the Redis store, stateful-sse) while wrk sends it the calls of sessions app1 holds, as in the
relay's pyinstrument profile (which sees Python frames only, and none of the kernel's work on a socket).

The samples are summed into `relay-native.txt`: the share of the relay's busy samples spent in each kind of
system call and in everything else, then the frames most often on top.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from loadtest.experiments.bench import wrk
from loadtest.experiments.bench.servers import open_session
from loadtest.harness.stack import Stack, free_port

SAMPLES_PER_SECOND = 200
TOP_FRAMES = 25
# The top frame's function, as py-spy names a libc call: what the process was doing in the kernel.
SYSTEM_CALLS = {
    "writing to sockets": ("write", "writev", "send", "sendto", "sendmsg"),
    "reading from sockets": ("read", "readv", "recv", "recvfrom", "recvmsg"),
    "waiting for sockets (epoll)": ("epoll_wait", "epoll_pwait"),
    "getpid (CPython 3.11's asyncio.get_running_loop)": ("getpid",),
}
# Frames whose samples include everything they called: where the system calls above come from.
WITHIN = {
    "SessionRouter.__call__": "our layer's routing of the request, the hop within it",
    "HopClient.send": "the hop: writing the request to the owner, reading the head of its answer",
    "RequestResponseCycle.send": "uvicorn writing the answer to the client",
}
_LOCATION = re.compile(r" \(.*\)$")


def relay(seconds: int, out: Path, work: Path) -> Path:
    """Sample the relay for `seconds` of wrk's saturating load; write and return `relay-native.txt`."""
    raw = work / "relay-native.collapsed"
    stack = Stack(run_dir=work / "relay-native", preset="stateful-sse", store="redis", port=free_port())
    with stack:
        sessions = tuple(open_session(stack.instance_url("app1")) for _ in range(8))
        call = wrk.Call(sessions=sessions)
        wrk.run(stack.instance_url("app2"), call, 16, 1)  # warm: the hop's connections are open
        spy = [_py_spy(), "record", "--native", "-r", str(SAMPLES_PER_SECOND), "-f", "raw", "-o", str(raw)]
        sampling = subprocess.Popen(
            [*spy, "-d", str(seconds), "-p", str(stack.proc("app2").pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wrk.run(stack.instance_url("app2"), call, 16, seconds + 1)  # outlasts the sampling
        _, errors = sampling.communicate(timeout=seconds + 60)
    if sampling.returncode != 0 or not raw.exists():
        raise RuntimeError(f"py-spy could not sample the relay: {errors.decode(errors='replace').strip()[-300:]}")
    out.mkdir(parents=True, exist_ok=True)
    written = out / "relay-native.txt"
    written.write_text(summary(raw.read_text(), seconds))
    return written


def summary(collapsed: str, seconds: int) -> str:
    """Shares of each kind of system call and of the rest, then the most frequent top frames."""
    tops: Counter[str] = Counter()
    within: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, samples = line.rpartition(" ")
        count = int(samples)
        tops[_LOCATION.sub("", stack.rsplit(";", 1)[-1])] += count
        within.update({frame: count for frame in WITHIN if f"{frame} (" in stack})
    total = sum(tops.values())
    kinds: Counter[str] = Counter()
    for frame, count in tops.items():
        name = frame.split(" ", 1)[0]
        kind = next((kind for kind, calls in SYSTEM_CALLS.items() if name in calls), "everything else")
        kinds[kind] += count
    lines = [
        f"py-spy --native, {SAMPLES_PER_SECOND} samples/s for {seconds} s of the relay (app2) under wrk's 16 "
        f"connections; {total} samples in which py-spy found the relay's thread active.",
        "",
        "Share of samples by what was on top:",
        *(f"  {100 * count / total:5.1f}%  {kind}" for kind, count in kinds.most_common()),
        "",
        "Share of samples within:",
        *(f"  {100 * within[frame] / total:5.1f}%  {frame}: {what}" for frame, what in WITHIN.items()),
        "",
        f"The {TOP_FRAMES} frames most often on top:",
        *(f"  {100 * count / total:5.1f}%  {frame[:120]}" for frame, count in tops.most_common(TOP_FRAMES)),
    ]
    return "\n".join(lines) + "\n"


def _py_spy() -> str:
    """py-spy of this venv (requirements-dev.txt), else one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"
