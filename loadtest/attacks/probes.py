"""What the scorecard reads off the stack's processes while an attack runs: resident memory of each process
group (nginx's master and workers, an instance's workers), and whether any process died or was replaced."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import defaultdict
from pathlib import Path

from loadtest.stack import Stack
from loadtest.topology import INSTANCES

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
GROUPS = ("nginx", "instance", "redis")


def group_rss_kib(pgid: int) -> int:
    """The resident memory of every process in the process group `pgid` (the stack starts each in its own)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid:  # field 5 of /proc/<pid>/stat: the process group
                total += int(fields[21]) * PAGE_KIB  # field 24: resident pages
    return total


class PeakMemory:
    """Samples the stack's process groups every `every` seconds, keeping each kind's peak (MiB): nginx, the
    largest instance, Redis."""

    def __init__(self, stack: Stack, every: float = 0.25) -> None:
        self._stack, self._every = stack, every
        self.peak_mib: dict[str, float] = defaultdict(float)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            for proc in self._stack.procs:
                kind = "instance" if proc.name in INSTANCES else proc.name
                if kind in GROUPS:
                    self.peak_mib[kind] = max(self.peak_mib[kind], group_rss_kib(proc.pid) / 1024)
            if self._stop.wait(self._every):
                return


def died(stack: Stack) -> list[str]:
    """The stack's processes that are no longer the ones it started (killed, crashed, restarted)."""
    return [proc.name for proc in stack.procs if not proc.alive()]
