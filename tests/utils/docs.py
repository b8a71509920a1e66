"""The shell blocks of the README and the docs pages: found by their tag, and run as a reader pasting them
would, page after page in reading order."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from loadtest.harness.topology import PROJECT_ROOT

# The reading order: the README, then the walk-through that its first command starts, then the rest.
PAGES = (
    "README.md",
    "docs/walk-through.md",
    "docs/protocol-2026.md",
    "docs/results.md",
    "docs/load-tests.md",
    "docs/configuration.md",
    "docs/metrics.md",
    "docs/tracing.md",
    "docs/kubernetes.md",
    "docs/swarm.md",
    "docs/layer.md",
    "docs/tests.md",
    "docs/design/glossary.md",
    "docs/design/redis-sessions.md",
    "docs/design/exactly-once.md",
)
TAGGED = re.compile(r"<!-- (?P<kind>tested|ci): (?P<tag>[^>]*?) -->\n```bash\n(?P<code>.*?)```", re.S)


def page(name: str) -> str:
    return (PROJECT_ROOT / name).read_text()


def blocks() -> dict[str, tuple[str, list[str]]]:
    """name -> (code, [preset, policy, store?]) for every `tested` block, in reading order."""
    found = {}
    for name in PAGES:
        for match in TAGGED.finditer(page(name)):
            if match["kind"] == "tested":
                block, *stack = match["tag"].split()
                found[block] = (match["code"], stack)
    return found


def shell_env(tmp_path: Path) -> dict[str, str]:
    """The user's shell after `. .venv/bin/activate`, with none of the stack's variables preset."""
    unset = ("LB_POLICY", "SESSION_STORE", "NGINX_PORT", "NGINX_BIND", "PYTHON_IMAGE", "NGINX_IMAGE", "REDIS_IMAGE")
    env = {k: v for k, v in os.environ.items() if k not in unset and not k.startswith("MCP_")}
    return {**env, "MCP_STACK_DIR": str(tmp_path / "stack"), "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}


def run_block_in(
    name: str, tmp: Path, timeout: float = 540, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run one block as a reader would, with its temporary files (`TMPDIR`) in `tmp` and the variables it
    names (`env`) set."""
    return subprocess.run(
        ["bash", "-c", f"exec {blocks()[name][0]}"],
        cwd=PROJECT_ROOT,
        env={**shell_env(tmp), "TMPDIR": str(tmp), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_blocks(names: list[str], env: dict[str, str]) -> dict[str, str]:
    """Run blocks in one bash, as a reader pasting them in order would; return each block's output."""
    script = "".join(f"printf '\\n=== {name}\\n'\n{blocks()[name][0]}" for name in names)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    outputs = dict(re.findall(r"^=== (\S+)\n(.*?)(?=^=== |\Z)", result.stdout, re.S | re.M))
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return outputs
