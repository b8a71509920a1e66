"""The peer's venv (.venv-peer), made from its pinned requirements on first use and remade when they change:
FastMCP 4 brings pins of its own, which must not move ours."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from loadtest.harness.topology import PROJECT_ROOT

VENV = PROJECT_ROOT / ".venv-peer"
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
FACTORY = "loadtest.experiments.bench.peer.fastmcp_server:create_app"  # imports nothing of ours, only fastmcp


def python() -> str:
    """The venv's interpreter, after installing the pinned requirements where they are not installed yet."""
    interpreter, installed = VENV / "bin" / "python", VENV / "installed-requirements.txt"
    if not interpreter.exists() or not installed.exists() or installed.read_text() != REQUIREMENTS.read_text():
        print(f"bench: installing the peer's requirements into {VENV}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(interpreter), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
        shutil.copyfile(REQUIREMENTS, installed)
    return str(interpreter)
