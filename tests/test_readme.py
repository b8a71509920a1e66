"""Every shell block in the README runs here as written, so the README cannot drift from what works."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
README = (PROJECT_ROOT / "README.md").read_text()
TAGGED = re.compile(r"<!-- (?P<kind>tested|ci): (?P<name>[^>]*?) -->\n```bash\n(?P<code>.*?)```", re.S)
SESSION_NOT_FOUND = '{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}'

# What each block must print; a block that prints something else fails.
EXPECTED = {
    "quickstart": ["http://127.0.0.1:8080/mcp"],
    "round-robin-problem": ["HTTP/1.1 404 Not Found", "x-mcp-instance: app2", SESSION_NOT_FOUND, "stack: stopped"],
    "sticky-session": [
        'tools: "name":"analyze_with_ai" "name":"confirm_action" "name":"increment" "name":"process_file" '
        '"name":"publish_update" "name":"slow_task" "name":"whoami"',
        '"structuredContent":{"result":1}',
        '"structuredContent":{"result":2}',
        "DELETE: 200",
    ],
    "stateless-session": ['"instance":"app1"\n"instance":"app2"\n"instance":"app3"'],
    "local-stack": [
        "http://127.0.0.1:8080/mcp",
        "preset=stateless-json lb=round-robin store=memory",
        *(f"  {name:<6} pid=" for name in ("redis", "app1", "app2", "app3", "nginx")),
        "stack: stopped",
    ],
}


def tagged_blocks() -> dict[str, str]:
    return {m["name"]: m["code"] for m in TAGGED.finditer(README) if m["kind"] == "tested"}


def test_every_shell_block_in_the_readme_is_run_somewhere():
    assert README.count("```bash") == len(TAGGED.findall(README)), "a ```bash block has no tested/ci tag"
    assert set(tagged_blocks()) == set(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_readme_block_runs_as_written(name, tmp_path):
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.fail("port 8080 is in use: the README's commands need it (python -m loadtest.stack down?)")
    # The README says to activate .venv; putting this interpreter first on PATH is the same thing.
    env = {**os.environ, "MCP_STACK_DIR": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", tagged_blocks()[name]],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        subprocess.run([sys.executable, "-m", "loadtest.stack", "down"], cwd=PROJECT_ROOT, env=env, capture_output=True)
    assert result.returncode == 0, result.stderr
    for expected in EXPECTED[name]:
        assert expected in result.stdout, f"{expected!r} not in:\n{result.stdout}"
    if name == "local-stack":
        assert result.stdout.count("running, healthy") == 5, result.stdout
