"""Every shell block of the README and the docs pages runs here as written, so the pages cannot drift from
what works; every Python block is a verbatim excerpt of the file it names, or runs.

The curl examples run twice: against the local stack, and inside the Docker Compose walk-through
(docs/walk-through.md, then the pages after it), which runs when a Docker Engine answers.
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

from loadtest.experiments.results import README_EMBED
from loadtest.harness.compose import V2, installed
from loadtest.harness.stack import Stack
from loadtest.harness.topology import PRESETS, PROJECT_ROOT
from tests.utils.clients import docs_ports
from tests.utils.docs import PAGES, TAGGED, blocks, page, run_blocks, shell_env

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
    "compose-auth": [
        "alice: 200, bob: 404, no token: 401",
        '"resource":"http://localhost:8080/mcp","authorization_servers":["http://localhost:8090"]',
    ],
    "local-stack": [
        "http://127.0.0.1:8080/mcp",
        "server=app preset=stateless-json lb=round-robin store=memory",
        *(f"  {name:<6} pid=" for name in ("redis", "app1", "app2", "app3", "nginx")),
        "stack: stopped",
    ],
    "notes-stack": [
        "http://127.0.0.1:8080/mcp",
        "server=examples.notes preset=stateful-sse lb=round-robin store=redis",
        *(f"  {name:<6} pid=" for name in ("redis", "app1", "app2", "app3", "nginx")),
        "stack: stopped",
    ],
    "fastmcp-stack": [
        "http://127.0.0.1:8080/mcp",
        "server=examples.fastmcp_notes preset=stateful-sse lb=round-robin store=redis",
        *(f"  {name:<6} pid=" for name in ("redis", "app1", "app2", "app3", "nginx")),
        "stack: stopped",
    ],
}
LOCAL_STACKS = ["local-stack", "notes-stack", "fastmcp-stack"]
README_LINES = 60  # one screen of a terminal
PYTHON_BLOCK = re.compile(r"(?:<!-- (?P<tag>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)
LINK = re.compile(r"\]\((?!https?://|#)(?P<target>[^)#]+)(?:#[^)]*)?\)")


EXAMPLES = [name for name, (_, stack) in blocks().items() if stack]
RUN_ELSEWHERE = {
    "locust-web-ui": "tests/stack/test_locust.py",
    "redis-ha-compose": "tests/compose/test_compose_redis_ha.py",
    "monitoring-compose": "tests/compose/test_compose_rolling.py",
    "kubernetes-deploy": "tests/stack/test_kubernetes_manifests.py",
    "kubernetes-render": "tests/stack/test_kubernetes_manifests.py",
    "faults-quick": "tests/stack/test_faults.py",
    "hostile-quick": "tests/stack/test_hostile.py",
    "attacks-quick": "tests/stack/test_attacks.py",
    "matrix-quick": "tests/stack/test_matrix.py",
    "pip-install": "tests/stack/test_package.py",
    "load-functions": "tests/stack/test_redis_lockdown.py",
    "tracing-export": "tests/stack/test_tracing.py",
    "swarm-init": "tests/compose/test_swarm.py",
    "swarm-deploy": "tests/compose/test_swarm.py",
    "swarm-update": "tests/compose/test_swarm.py",
    "swarm-remove": "tests/compose/test_swarm.py",
}
# Compose v2, then the stand-in images (the walk-through's order for a machine without them), then the rest.
SETUP = ["compose-v2", "compose-images"]
WALK_THROUGH = SETUP + [
    name for name in blocks() if name not in SETUP and (name.startswith("compose-") or name in EXAMPLES)
]


@pytest.mark.parametrize("name", PAGES)
def test_every_shell_block_is_run_somewhere(name):
    text = page(name)
    assert text.count("```bash") == len(TAGGED.findall(text)), f"a ```bash block of {name} has no tested/ci tag"


def test_every_tested_block_has_its_test():
    assert set(blocks()) == set(EXPECTED) | set(RUN_ELSEWHERE)
    assert set(WALK_THROUGH) | set(LOCAL_STACKS) == set(EXPECTED)
    assert all(name in (PROJECT_ROOT / test).read_text() for name, test in RUN_ELSEWHERE.items())


def test_the_readme_fits_one_screen_and_every_page_is_linked():
    readme = page("README.md")
    assert readme.count("\n") <= README_LINES
    assert all(f"]({name})" in readme for name in PAGES[1:]), "the README links every page"


@pytest.mark.parametrize("name", PAGES)
def test_every_link_leads_to_a_file(name):
    folder = (PROJECT_ROOT / name).parent
    missing = [m["target"] for m in LINK.finditer(page(name)) if not (folder / m["target"]).exists()]
    assert missing == []


@pytest.mark.parametrize("name", PAGES)
def test_python_blocks_are_excerpts_of_the_code_or_run(name, monkeypatch):
    for match in PYTHON_BLOCK.finditer(page(name)):
        tag, code = match["tag"] or "", match["code"]
        if tag.startswith("excerpt: "):
            assert code in (PROJECT_ROOT / tag.removeprefix("excerpt: ")).read_text(), f"{name}: {code[:60]!r}"
        else:
            assert tag == "run: with an MCPServer named mcp", f"{name}: a python block with no excerpt/run tag"
            from mcp.server.mcpserver import MCPServer

            monkeypatch.setenv("MCP_INSTANCE_ID", "docs")
            scope = {"mcp": MCPServer("docs")}
            exec(code, scope)
            assert callable(scope["asgi_app"])


def test_ci_runs_the_commands_the_pages_say_it_runs():
    ci_lines = (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()
    claimed = [
        m["code"].split("#")[0].strip() for name in PAGES for m in TAGGED.finditer(page(name)) if m["kind"] == "ci"
    ]
    assert claimed == ["scripts/test", "scripts/reset-machine"]
    for command in claimed:
        assert any(line.split()[-1:] == [command] for line in ci_lines), f".ci/run does not run {command}"


@pytest.fixture
def port_8080_free():
    with docs_ports():
        yield


def check(name: str, output: str) -> None:
    for expected in EXPECTED[name]:
        assert expected in output, f"{name}: {expected!r} not in:\n{output}"
    if name == "modern-round-robin":  # the page says: the retry, and each count, from another instance
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


@pytest.mark.parametrize("name", LOCAL_STACKS)
def test_local_stack_commands(name, tmp_path, port_8080_free):
    env = shell_env(tmp_path)
    try:
        output = run_blocks([name], env)[name]
    finally:
        subprocess.run([sys.executable, "-m", "loadtest.harness.stack", "down"], cwd=PROJECT_ROOT, env=env, check=False)
    check(name, output)
    assert output.count("running, healthy") == 5, output


@pytest.mark.compose
@pytest.mark.timeout(900)
def test_docker_compose_walk_through(tmp_path, port_8080_free, compose_images):
    env = shell_env(tmp_path)
    if not installed(V2):
        env["PATH"] = f"{compose_v1_shim(tmp_path)}:{env['PATH']}"  # the walk-through's note: type docker-compose
    try:
        outputs = run_blocks(WALK_THROUGH, env)
    finally:
        profiles = [arg for preset in (*PRESETS, "loadtest", "auth") for arg in ("--profile", preset)]
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


def test_the_results_page_shows_the_committed_results():
    """docs/results.md's copies of results/full/matrix.md and ways.md, results/bench/bench.md,
    results/scale/scale.md, results/scale-reference/scale.md, results/soak/soak.md, results/faults/faults.md,
    results/durability/durability.md,
    results/hostile/hostile.md and results/attacks/*/attacks.md, and the README's of results/faults/summary.md,
    results/hostile/summary.md, results/attacks/local/summary.md and results/bench/summary.md, are the committed
    files (each command's --page option writes them)."""
    shown = {m["kind"]: m for m in README_EMBED.finditer(page("docs/results.md"))}
    assert {kind: m["path"] for kind, m in shown.items()} == {
        "matrix": "results/full/matrix.md",
        "ways": "results/full/ways.md",
        "bench": "results/bench/bench.md",
        "scale": "results/scale/scale.md",
        "scale-reference": "results/scale-reference/scale.md",
        "soak": "results/soak/soak.md",
        "faults": "results/faults/faults.md",
        "durability": "results/durability/durability.md",
        "hostile": "results/hostile/hostile.md",
        "attacks": "results/attacks/local/attacks.md",
        "attacks-compose": "results/attacks/compose/attacks.md",
        "attacks-local-auth": "results/attacks/local-auth/attacks.md",
    }
    for match in shown.values():
        assert match["body"] == (PROJECT_ROOT / match["path"]).read_text(), match["path"]
    for kind in ("scorecard", "hostile-summary", "attacks-summary", "bench-summary"):
        (summary,) = [m for m in README_EMBED.finditer(page("README.md")) if m["kind"] == kind]
        assert summary["path"].endswith("summary.md")
        assert summary["body"] == (PROJECT_ROOT / summary["path"]).read_text()
    faults = json.loads((PROJECT_ROOT / "results" / "faults" / "faults.json").read_text())
    assert faults["command"] == "python -m loadtest faults" and faults["date"] in shown["faults"]["body"]
    run = json.loads((PROJECT_ROOT / "results" / "full" / "rows.json").read_text())["run"]
    assert run["mode"] == "full" and run["date"] in shown["matrix"]["body"]
