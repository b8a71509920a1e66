"""Where a call's CPU goes: pyinstrument profiles of the bare SDK and ours under the same wrk load.

Each server runs under `python -m pyinstrument` (which slows it, alike for both) while wrk saturates it,
then stops on SIGINT and saves its session; each is rendered as text twice, as a call tree (`NAME.txt`)
and as a flat list of where time was spent (`NAME-flat.txt`).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from loadtest.bench import wrk
from loadtest.bench.servers import Subject, UvicornServer

STOP_SECONDS = 60.0  # pyinstrument renders its profile after the server stops


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
        for path, options in ((out / f"{name}.txt", []), (out / f"{name}-flat.txt", ["-p", "flat=true"])):
            render = [sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", "text", *options]
            subprocess.run([*render, "-p", "color=false", "-p", "unicode=false", "-o", str(path)], check=True)
            written.append(path)
    return written
