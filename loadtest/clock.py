"""A wall clock of a process's own that a test moves, as an NTP step would (libfaketime, Debian's `faketime`):

    clock = FakeClock(run_dir / "app2-clock")
    Stack(..., process_env={"app2": clock.env()})    # app2 reads its time through it
    clock.jump(30)                                  # its wall clock is 30 s ahead from now on (within 1 s)

Only the wall clock moves: the monotonic clocks a process times intervals with are left alone, as a step of
the system clock leaves them. Not for Debian's redis-server: libfaketime cannot start under the jemalloc it is
linked with (wolfcw/libfaketime#130).
"""

from __future__ import annotations

from pathlib import Path

LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


class FakeClock:
    """The clock whose offset `path` holds (created at +0 s when missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            self._write(0)

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(LIBRARY),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_CACHE_DURATION": "1",  # the file is read again at most every second
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    @property
    def offset(self) -> int:
        return int(self.path.read_text())

    def jump(self, seconds: int) -> None:
        """Move the clock by `seconds` (back if negative), from where it is."""
        self._write(self.offset + seconds)

    def _write(self, offset: int) -> None:
        self.path.write_text(f"{offset:+d}\n")
