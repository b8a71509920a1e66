"""CPU used by each process of a run (with its children), sampled once a second in a thread.

A failure under load means something about the architecture only if no process was saturated;
the matrix marks a run whose busiest process or whole machine ran near its limit.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import psutil

SATURATED_PERCENT = 85.0  # of one core for a process (each is single-threaded), of all cores for the sum


@dataclass(frozen=True)
class CpuUse:
    average: float  # percent of one core over the run
    peak: float  # the busiest one-second sample


class CpuSampler:
    def __init__(self, processes: dict[str, int], interval: float = 1.0) -> None:
        self.processes = processes
        self.interval = interval
        self.samples: dict[str, list[float]] = {name: [] for name in processes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._last = {name: _tree_seconds(pid) for name, pid in self.processes.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, pid in self.processes.items():
                now = _tree_seconds(pid)
                self.samples[name].append(100 * (now - self._last[name]) / self.interval)
                self._last[name] = now

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


def _tree_seconds(pid: int) -> float:
    """CPU seconds of a process and its live descendants (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total
