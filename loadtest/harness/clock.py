"""A wall clock of a process's own that a test moves, as an NTP step would (libfaketime, Debian's `faketime`):

    clock = FakeClock(run_dir / "app2.clock")
    env = clock.env()                # a process started with it reads its wall clock through it
    clock.jump(30)                   # which is 30 s ahead from now on (within 1 s)

The local stack gives the processes it is told of one each: `Stack(clocks=("redis", "app2"))`, `stack.clock("redis")`.

Only the wall clock moves: the monotonic clocks a process times intervals with are left alone, as a step of
the system clock leaves them. libfaketime cannot start under jemalloc (wolfcw/libfaketime#130), which Debian's
redis-server links: a process under a FakeClock gets glibc's malloc in its place (loadtest/harness/libc_malloc.c, built
with gcc on first use).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
LIBC_MALLOC_SOURCE = Path(__file__).with_name("libc_malloc.c")


class FakeClock:
    """The clock whose offset `path` holds (created at +0 s when missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            self.set(0)

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(LIBRARY),
            "LD_LIBRARY_PATH": str(libc_malloc_dir()),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_CACHE_DURATION": "1",  # the file is read again at most every second
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    @property
    def offset(self) -> int:
        return int(self.path.read_text())

    def jump(self, seconds: int) -> None:
        """Move the clock by `seconds` (back if negative), from where it is."""
        self.set(self.offset + seconds)

    def set(self, offset: int) -> None:
        """Put the clock `offset` seconds off the system's (0: right)."""
        self.path.write_text(f"{offset:+d}\n")


def libc_malloc_dir() -> Path:
    """The directory holding loadtest/harness/libc_malloc.c built as libjemalloc.so.2 (built now if it is not yet)."""
    built = Path(tempfile.gettempdir()) / f"mcp-scale-lab-libc-malloc-{os.getuid()}"
    library = built / "libjemalloc.so.2"
    if not library.exists() or library.stat().st_mtime < LIBC_MALLOC_SOURCE.stat().st_mtime:
        built.mkdir(mode=0o700, exist_ok=True)
        partial = built / f"libjemalloc.so.2.{os.getpid()}"
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", partial, LIBC_MALLOC_SOURCE], check=True)
        partial.replace(library)  # whole or not at all, for processes starting meanwhile
    return built
