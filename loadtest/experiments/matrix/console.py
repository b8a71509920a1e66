"""The matrix's one status line: configuration k of n, elapsed time, failures so far."""

from __future__ import annotations

import contextlib
import csv
import sys
import time
from pathlib import Path
from typing import Protocol


class Named(Protocol):
    name: str


class Progress:
    """One status line: configuration k of n, elapsed time, failures so far (live from Locust's CSV)."""

    def __init__(self, total: int) -> None:
        self.total, self.index, self.name, self.failures = total, 0, "", 0
        self.started = time.monotonic()
        self.tty = sys.stdout.isatty()

    def begin(self, index: int, config: Named) -> None:
        self.index, self.name = index, config.name
        self.show()

    def show(self, live_failures: int = 0) -> None:
        if self.tty:  # redrawn in place; logs get one line per configuration from finish()
            print(f"\r{self._line(self.failures + live_failures)}", end="", flush=True)

    def finish(self, failures: int) -> None:
        self.failures += failures
        print(f"\r{self._line(self.failures)}", flush=True)

    def _line(self, failures: int) -> str:
        elapsed = int(time.monotonic() - self.started)
        return (
            f"[{self.index}/{self.total}] {self.name:<36} elapsed {elapsed // 60}m{elapsed % 60:02d}s  "
            f"failures so far: {failures}"
        )


def live_failures(stats_csv: Path) -> int:
    """Failures of the running configuration, from the CSV Locust rewrites every second."""
    with contextlib.suppress(OSError, ValueError, KeyError), open(stats_csv) as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                return int(row["Failure Count"])
    return 0
