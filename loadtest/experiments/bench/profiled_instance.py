"""`python -m loadtest.experiments.bench.profiled_instance`: the demo instance, as `python -m app` runs it, profiled by
pyinstrument from the moment it gets SIGUSR1 until it stops; the session is saved to
`$BENCH_PROFILE_DIR/<MCP_INSTANCE_ID>.pyisession`. The local stack runs it as its instances' module
(`Stack(server=...)`), so a profile can follow a request across instances (the relay and the owner).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from pyinstrument import Profiler

from app.settings import ServerSettings
from mcp_cluster.serving import run_from_env


def main() -> int:
    profiler = Profiler(interval=0.001, async_mode="disabled")  # as `python -m pyinstrument` samples (profiles.py)
    signal.signal(signal.SIGUSR1, lambda *_: profiler.is_running or profiler.start())
    signal.signal(signal.SIGTERM, _exit)  # uvicorn raises SIGTERM again once it has shut down: save first
    try:
        return run_from_env("app.asgi:create_app", "mcp-scale-lab", ServerSettings.from_env)
    finally:
        if profiler.is_running:
            session = profiler.stop()
            session.save(Path(os.environ["BENCH_PROFILE_DIR"]) / f"{os.environ['MCP_INSTANCE_ID']}.pyisession")


def _exit(*_: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
