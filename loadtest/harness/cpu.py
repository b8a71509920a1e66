"""CPU used by each process of a run (with its children), sampled once a second in a thread.

A failure under load means something about the architecture only if no process was saturated;
the matrix marks a run whose busiest process or whole machine ran near its limit.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import psutil

SATURATED_PERCENT = 85.0  # of one core for a process (each is single-threaded), of all cores for the sum


@dataclass(frozen=True)
class CpuUse:
    average: float  # percent of one core over the run
    peak: float  # the busiest one-second sample


class CpuSampler:
    """Samples from `__enter__` to `__exit__`; each process's CPU includes its children's."""

    def __init__(self, processes: dict[str, int], interval: float = 1.0) -> None:
        self.processes = processes
        self.interval = interval
        self.samples: dict[str, list[float]] = {name: [] for name in processes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._last = {name: tree_times(pid) for name, pid in self.processes.items()}
        self._at = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            elapsed, self._at = now - self._at, now
            for name, pid in self.processes.items():
                times = tree_times(pid)
                # Per process: one that exited since the last sample adds nothing, a new one starts at 0.
                used = sum(max(0.0, t - self._last[name].get(p, 0.0)) for p, t in times.items())
                self.samples[name].append(100 * used / elapsed)
                self._last[name] = times

    def result(self) -> dict[str, CpuUse]:
        return {name: CpuUse(sum(s) / len(s), max(s)) if s else CpuUse(0.0, 0.0) for name, s in self.samples.items()}


def saturation(use: dict[str, CpuUse]) -> str | None:
    """Why a run counts as saturated, or None."""
    busiest = max(use.items(), key=lambda item: item[1].average, default=None)
    if busiest and busiest[1].average >= SATURATED_PERCENT:
        return f"{busiest[0]} averaged {busiest[1].average:.0f}% of a core"
    total = sum(u.average for u in use.values())
    if total >= SATURATED_PERCENT * (os.cpu_count() or 1):
        return f"all processes together averaged {total:.0f}% ({os.cpu_count()} cores)"
    return None


def tree_times(pid: int) -> dict[int, float]:
    """CPU seconds of a process and each live descendant, by pid (empty once it is gone)."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    times = {}
    for process in tree:
        try:
            used = process.cpu_times()
        except psutil.Error:
            continue
        times[process.pid] = used.user + used.system
    return times
