"""deploy/swarm/stack.yml on a real Docker Swarm: this engine enters swarm mode (docs/swarm.md's commands, as
written), the stack is deployed, and sessions count through nginx (the careful client: a call that failed in a
way a retry mends is sent again with its request id) while the app service is updated in rolling fashion, one
task is SIGKILLed, and the service is scaled down and back up. No call may fail for good, no session be lost, no
acknowledged increment be lost or applied twice. The engine is left as the test found it: out of swarm mode,
without the stack's secrets, networks and volume. Skipped, with the reason, where the engine cannot enter swarm
mode or is in it already (a swarm this test did not make is not its to change)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime

import pytest
import requests

from loadtest.experiments.faults.load import CountingLoad
from loadtest.harness.stack import free_port
from loadtest.harness.topology import PROJECT_ROOT
from tests.utils.clients import wait_for
from tests.utils.docs import blocks

pytestmark = pytest.mark.compose
STACK = "mcp"  # the name the docs deploy it under
SESSIONS = 6
PAUSE = 0.1  # between a session's calls: about 50 calls a second in all, not the cores' worth beside other tests
UPDATE_TIMEOUT = 300.0


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=UPDATE_TIMEOUT)


def engine_state() -> dict[str, list[str]]:
    """What this test may add to the engine, so that it can check it took it all away."""
    return {
        "swarm": [docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()],
        "networks": sorted(docker("network", "ls", "--format", "{{.Name}}").stdout.split()),
        "volumes": sorted(docker("volume", "ls", "--format", "{{.Name}}").stdout.split()),
    }


def run_block(name: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", blocks()[name][0]],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=UPDATE_TIMEOUT,
    )
    assert done.returncode == 0, f"{name}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def tasks(service: str) -> list[dict]:
    """The service's tasks that should be running, with their container ids (one node: all here)."""
    listed = docker(
        "service",
        "ps",
        f"{STACK}_{service}",
        "--filter",
        "desired-state=running",
        "--no-trunc",
        "--format",
        "{{json .}}",
    ).stdout.splitlines()
    return [json.loads(line) for line in listed]


def containers(service: str) -> dict[str, str]:
    """slot name (app1, ...) -> container id of the service's running containers."""
    ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_{service}").stdout.split()
    found = {}
    for container in ids:
        hostname = docker("inspect", "--format", "{{.Config.Hostname}}", container).stdout.strip()
        found[hostname] = container
    return found


def healthy(url: str, replicas: int) -> bool:
    """Every app task running and healthy, and nginx answering."""
    running = [task for task in tasks("app") if task["CurrentState"].startswith("Running")]
    if len(running) != replicas:
        return False
    states = [
        docker("inspect", "--format", "{{.State.Health.Status}}", c).stdout.strip() for c in containers("app").values()
    ]
    if states.count("healthy") != replicas:
        return False
    try:
        return requests.get(url.replace("/mcp", "/healthz"), timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture(scope="module")
def swarm(compose_images, tmp_path_factory):
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    if state != "inactive":
        pytest.skip(f"this engine is in swarm mode already ({state}): the test makes a swarm of its own")
    before = engine_state()
    port = free_port()
    env = {
        **os.environ,
        **compose_images,  # the Debian stand-in where no registry answers
        "NGINX_PORT": str(port),
        "REDIS_USER": "101:102",  # the stand-in's redis user, who owns its data directory
        "REDIS_DATA_DIR": "/var/lib/redis",
        "MCP_ANYONE_MAY_CALL_EVERY_TOOL": "yes",
    }
    init = subprocess.run(["bash", "-c", blocks()["swarm-init"][0]], capture_output=True, text=True, env=env)
    if init.returncode != 0:
        pytest.skip(f"Docker cannot enter swarm mode here: {init.stderr.strip()}")
    try:
        run_block("swarm-deploy", env)
        url = f"http://127.0.0.1:{port}/mcp"
        wait_for(lambda: healthy(url, 3), timeout=180, interval=1)
        yield url, env
    finally:
        subprocess.run(["bash", "-c", blocks()["swarm-remove"][0]], capture_output=True, text=True, env=env)
        wait_for(
            lambda: (
                docker("network", "rm", "docker_gwbridge", check=False).returncode == 0
                or "docker_gwbridge" not in docker("network", "ls", "--format", "{{.Name}}").stdout
            ),
            timeout=60,
        )
        wait_for(lambda: engine_state() == before, timeout=60, interval=1)


def app_logs() -> list[dict]:
    """The app tasks' JSON log lines, the stopped ones' too."""
    logged = subprocess.run(  # the apps log to stderr, which the service's logs keep apart
        ["docker", "service", "logs", "--raw", f"{STACK}_app"], capture_output=True, text=True, check=True
    )
    return [json.loads(line) for line in logged.stderr.splitlines() if line.startswith("{")]


def drains(logs: list[dict]) -> list[float]:
    """Each drain's length: from its SIGTERM to its process's end."""
    began: dict[str, float] = {}
    lengths = []
    for line in logs:
        when = _logged_at(line)
        if line["msg"] == "SIGTERM: draining":
            began[line["instance"]] = when
        elif line["msg"].startswith("Finished server process") and line["instance"] in began:
            lengths.append(when - began.pop(line["instance"]))
    return sorted(lengths)


def _logged_at(line: dict) -> float:
    return datetime.fromisoformat(line["ts"].replace("Z", "+00:00")).timestamp()


def starts() -> list[float]:
    """Each app container's start to its first healthy check, where its health log still holds its first check
    (it keeps the last five)."""
    lengths = []
    for container in docker("ps", "-aq", "--filter", f"label=com.docker.swarm.service.name={STACK}_app").stdout.split():
        state = json.loads(docker("inspect", "--format", "{{json .State}}", container).stdout)
        checks, started = (state.get("Health") or {}).get("Log", []), _moment(state["StartedAt"])
        healthy = [_moment(check["End"]) for check in checks if check["ExitCode"] == 0]
        if healthy and (_moment(checks[0]["Start"]) - started).total_seconds() < 3:
            lengths.append((healthy[0] - started).total_seconds())
    return sorted(lengths)


def _moment(stamp: str) -> datetime:
    """Docker's RFC 3339 time (nanoseconds) as a datetime (microseconds)."""
    parsed = re.fullmatch(r"(?P<head>[^.]+)(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)", stamp)
    assert parsed is not None, stamp
    zone = "+00:00" if parsed["zone"] == "Z" else parsed["zone"]
    return datetime.fromisoformat(f"{parsed['head']}.{(parsed['fraction'] or '')[:6].ljust(6, '0')}{zone}")


def sessions_held(container: str) -> int:
    """How many sessions an app task holds, as its /readyz says."""
    ask = "import json, urllib.request; print(json.load(urllib.request.urlopen('http://127.0.0.1:8000/readyz'))['sessions'])"
    return int(docker("exec", container, "python3", "-c", ask).stdout)


def reaches(container: str, host: str, port: int) -> bool:
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=2)"
    return docker("exec", container, "python3", "-c", probe, check=False).returncode == 0


def test_only_the_instances_reach_the_forwarding_ports_and_only_they_reach_redis(swarm):
    nginx = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_nginx").stdout.split()[0]
    apps = containers("app")
    assert reaches(nginx, "app1", 8000)  # the name is right: the public port answers there
    assert not reaches(nginx, "app1", 8001) and not reaches(nginx, "app1", 9000)  # the hop's and metrics' are not
    assert not reaches(nginx, "redis", 6379)
    assert reaches(apps["app2"], "app1", 8001) and reaches(apps["app1"], "app3", 8001)
    assert reaches(apps["app1"], "redis", 6379)


@pytest.mark.timeout(900)
def test_a_rolling_update_a_sigkill_and_scaling_lose_and_fail_nothing(swarm):
    url, env = swarm
    measured: dict[str, float] = {}
    begun = time.monotonic()

    def step(what: str) -> None:
        print(f"swarm: {time.monotonic() - begun:6.1f} s {what}", flush=True)

    with CountingLoad(url, SESSIONS, pause=PAUSE) as load:
        load.go_on(10, timeout=60)
        step("counting; the rolling update")
        started = time.monotonic()
        run_block("swarm-update", env)  # returns once the last task is updated
        measured["rolling update s"] = time.monotonic() - started
        load.go_on(10, timeout=60)
        step("updated; SIGKILL")
        held = {name: sessions_held(container) for name, container in containers("app").items()}
        owner = max(held, key=held.__getitem__)  # the task holding the most sessions now (the update moved them)
        victim = containers("app")[owner]
        started = time.monotonic()
        docker("kill", "--signal", "KILL", victim)
        killed = time.time()
        wait_for(lambda: victim not in containers("app").values() and healthy(url, 3), timeout=120, interval=0.5)
        measured["back after SIGKILL s"] = time.monotonic() - started
        load.go_on(10, timeout=60)
        step("back; scale to 2")
        docker("service", "scale", f"{STACK}_app=2")
        wait_for(lambda: healthy(url, 2), timeout=120, interval=0.5)
        load.go_on(10, timeout=60)
        step("scaled; to 3")
        docker("service", "scale", f"{STACK}_app=3")
        wait_for(lambda: healthy(url, 3), timeout=120, interval=0.5)
        load.go_on(10, timeout=60)
    tally = load.tally
    logs = app_logs()
    print(f"swarm: {measured}, drains {drains(logs)} s, starts to healthy {starts()} s; {tally}")
    taken = [line for line in logs if line["msg"] == "took a session over" and _logged_at(line) > killed]
    assert held[owner] > 0 and any(line["previous_owner"].startswith(f"{owner}:") for line in taken), (held, taken)
    exits = docker(
        "ps",
        "-a",
        "--filter",
        f"label=com.docker.swarm.service.name={STACK}_app",
        "--filter",
        "status=exited",
        "--format",
        "{{.ID}} {{.Status}}",
    ).stdout.splitlines()
    killed = [line for line in exits if line.startswith(victim[:12])]
    assert len(killed) == 1 and "Exited (137)" in killed[0], exits
    assert all("Exited (0)" in line for line in exits if line not in killed), exits  # each drain within the grace
    assert (tally.sessions_lost, tally.acknowledged_lost, tally.doubled, tally.crossed) == (0, 0, 0, 0), tally
    assert tally.failed == {}, tally.failed
    assert min(load.counted) >= 50, load.counted
