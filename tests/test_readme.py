"""Every shell block in the README runs here as written, so the README cannot drift from what works.

The curl examples run twice: against the local stack, and inside the README's own Docker Compose
walk-through (which runs when a Docker Engine answers).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.compose import V2, installed
from loadtest.results import README_EMBED
from loadtest.stack import Stack
from loadtest.topology import PRESETS, PROJECT_ROOT
from tests.utils.clients import port_free
from tests.utils.docs import README, TAGGED, blocks, run_blocks, shell_env

SESSION_NOT_FOUND = '{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}'
NGINX_HEALTHY = '{"status":"ok","instance":"nginx"}'

# What each block must print; a block that prints something else fails.
EXPECTED = {
    "compose-v2": [],
    "compose-images": [],
    "compose-quickstart": [],
    "compose-round-robin": [NGINX_HEALTHY],
    "round-robin-problem": ["HTTP/1.1 404 Not Found", "x-mcp-instance: app2", SESSION_NOT_FOUND],
    "compose-ip-hash": [NGINX_HEALTHY],
    "sticky-session": [
        'tools: "name":"analyze_with_ai" "name":"confirm_action" "name":"increment" "name":"open_counter" '
        '"name":"process_file" "name":"publish_update" "name":"slow_task" "name":"whoami"',
        '"structuredContent":{"result":1}',
        '"structuredContent":{"result":2}',
        "DELETE: 200",
    ],
    "compose-session": [NGINX_HEALTHY],
    "session-routing": ["mcp-session-id: app1.\nmcp-session-id: app2.\nmcp-session-id: app3."],
    "compose-redis": [NGINX_HEALTHY],
    "redis-round-robin": ['"result":1', '"result":2', '"result":3', "x-mcp-served-by: app"],
    "compose-redis-failover": ['"result":4', '"result":5'],
    "compose-stateless": [NGINX_HEALTHY],
    "stateless-session": ['"instance":"app1"\n"instance":"app2"\n"instance":"app3"'],
    "modern-round-robin": [
        '"resultType":"input_required"',
        '"message":"Confirm the action: scale out"',
        '"text":"confirmed: scale out"',
        '"result":1\n',
        '"result":2\n',
        '"result":3\n',
    ],
    "compose-rotate-keys": ["  seals from ", "  seals\n"],
    "compose-loadtest": ["Locust: http://127.0.0.1:8089"],
    "compose-down": [],
    "local-stack": [
        "http://127.0.0.1:8080/mcp",
        "preset=stateless-json lb=round-robin store=memory",
        *(f"  {name:<6} pid=" for name in ("redis", "app1", "app2", "app3", "nginx")),
        "stack: stopped",
    ],
}


EXAMPLES = [name for name, (_, stack) in blocks().items() if stack]
RUN_ELSEWHERE = {"locust-web-ui": "tests/test_locust.py", "matrix-quick": "tests/test_matrix.py"}
# Compose v2, then the stand-in images (the README's order for a machine without them), then the rest.
SETUP = ["compose-v2", "compose-images"]
WALK_THROUGH = SETUP + [
    name for name in blocks() if name not in SETUP and (name.startswith("compose-") or name in EXAMPLES)
]


def test_every_shell_block_in_the_readme_is_run_somewhere():
    assert README.count("```bash") == len(TAGGED.findall(README)), "a ```bash block has no tested/ci tag"
    assert set(blocks()) == set(EXPECTED) | set(RUN_ELSEWHERE)
    assert set(WALK_THROUGH) | {"local-stack"} == set(EXPECTED)


def test_ci_runs_the_readme_commands_it_claims():
    ci_lines = (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
    claimed = [m["code"].split("#")[0].strip() for m in TAGGED.finditer(README) if m["kind"] == "ci"]
    assert claimed == ["scripts/test", "scripts/reset-machine"]
    for command in claimed:
        assert any(line.split()[-1:] == [command] for line in ci_lines), f".ci/run does not run {command}"


@pytest.fixture
def port_8080_free():
    port_free(8080)


def check(name: str, output: str) -> None:
    for expected in EXPECTED[name]:
        assert expected in output, f"{name}: {expected!r} not in:\n{output}"
    if name == "modern-round-robin":  # the README says: the retry, and each count, from another instance
        answered = re.findall(r"^x-mcp-instance: (app\d)$", output, re.M)
        assert len(answered) == 5 and len(set(answered[2:])) == 3, output
        assert all(first != then for first, then in itertools.pairwise(answered)), output


@pytest.mark.parametrize("name", EXAMPLES)
def test_curl_examples_against_the_local_stack(name, tmp_path, port_8080_free):
    preset, policy, *store = blocks()[name][1]
    with Stack(
        run_dir=tmp_path / "stack", preset=preset, policy=policy, store=store[0] if store else "memory", port=8080
    ):
        output = run_blocks([name], shell_env(tmp_path))[name]
    check(name, output)


def test_local_stack_commands(tmp_path, port_8080_free):
    env = shell_env(tmp_path)
    try:
        output = run_blocks(["local-stack"], env)["local-stack"]
    finally:
        subprocess.run([sys.executable, "-m", "loadtest.stack", "down"], cwd=PROJECT_ROOT, env=env, check=False)
    check("local-stack", output)
    assert output.count("running, healthy") == 5, output


@pytest.mark.compose
@pytest.mark.timeout(900)
def test_docker_compose_walk_through(tmp_path, port_8080_free, compose_images):
    port_free(8089)
    env = shell_env(tmp_path)
    if not installed(V2):
        env["PATH"] = f"{compose_v1_shim(tmp_path)}:{env['PATH']}"  # the README's note: type docker-compose
    try:
        outputs = run_blocks(WALK_THROUGH, env)
    finally:
        profiles = [arg for preset in (*PRESETS, "loadtest") for arg in ("--profile", preset)]
        cleanup = ["docker", "compose", *profiles, "down", "-v", "--remove-orphans", "-t", "3"]
        subprocess.run(cleanup, cwd=PROJECT_ROOT, env=env, capture_output=True, check=False)
    for name in WALK_THROUGH:
        check(name, outputs[name])


def compose_v1_shim(tmp_path: Path) -> Path:
    """A `docker` that hands `docker compose ...` to Debian's docker-compose 1.29 and the rest to docker."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "docker").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = compose ]; then shift; exec docker-compose "$@"; fi\n'
        f'exec {shutil.which("docker")} "$@"\n'
    )
    (shim / "docker").chmod(0o755)
    return shim


def test_the_readme_shows_the_committed_results():
    """The README's copies of results/full/matrix.md and ways.md, results/bench/bench.md and results/soak/soak.md
    are the committed files (each command's --readme option writes them)."""
    shown = {m["kind"]: m for m in README_EMBED.finditer(README)}
    assert {kind: m["path"] for kind, m in shown.items()} == {
        "matrix": "results/full/matrix.md",
        "ways": "results/full/ways.md",
        "bench": "results/bench/bench.md",
        "soak": "results/soak/soak.md",
    }
    for match in shown.values():
        assert match["body"] == (PROJECT_ROOT / match["path"]).read_text(), match["path"]
    run = json.loads((PROJECT_ROOT / "results" / "full" / "rows.json").read_text())["run"]
    assert run["mode"] == "full" and run["date"] in shown["matrix"]["body"]
