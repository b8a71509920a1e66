"""Drives the real docker-compose.yml (for the matrix and the end-to-end tests): up, health, kill, down."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from loadtest.harness.stack import answers
from loadtest.harness.topology import PRESETS, PROJECT_ROOT

PROJECT = "mcpscale-e2e"  # never the project a user's own `docker compose up` creates
READY_TIMEOUT = 180.0
V1 = ("docker-compose",)  # Debian 12's docker-compose 1.29, kept working for the users who have only it
V2 = ("docker", "compose")
BUILD_TIMEOUT = 900.0  # a fresh machine: the stand-in (Debian and pip from scratch), then the app and Locust images


@functools.cache
def installed(command: tuple[str, ...]) -> bool:
    """Whether compose `command` (V1 or V2) is there and runs."""
    found = shutil.which(command[0]) is not None
    return found and subprocess.run([*command, "version"], capture_output=True).returncode == 0


def compose_command() -> tuple[str, ...] | None:
    """`docker compose` (v2) when installed, else Debian's `docker-compose` 1.29."""
    return next((command for command in (V2, V1) if installed(command)), None)


def docker_unavailable(command: tuple[str, ...] | None = None) -> str | None:
    """Why compose (`command`, or whichever is installed) cannot run here, or None."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "the Docker Engine is not reachable"
    if command is None and compose_command() is None:
        return "neither `docker compose` nor `docker-compose` is installed (scripts/install-compose installs v2)"
    if command is not None and not installed(command):
        hint = " (scripts/install-compose installs it)" if command == V2 else ""
        return f"`{' '.join(command)}` is not installed{hint}"
    return None


def build_images(say: Callable[[str], None], niceness: int = 0) -> dict[str, str]:
    """Build what every profile runs on, passing each line of progress to `say`: the stand-in where no
    registry answers (scripts/compose-images), then the app, Locust and issuer images. Returns the image variables.
    `niceness` lowers the priority of the local build steps (the stand-in), for a build beside other work."""
    deadline = time.monotonic() + BUILD_TIMEOUT
    nice = ["nice", "-n", str(niceness)] if niceness else []
    printed = _streamed([*nice, "scripts/compose-images"], say, deadline, os.environ)
    exports = [line.removeprefix("export ") for line in printed if line.startswith("export ")]
    env = dict(word.split("=", 1) for line in exports for word in line.split())
    profiles = [arg for profile in ("stateful-sse", "loadtest", "auth") for arg in ("--profile", profile)]
    build = [*compose_command(), "-p", PROJECT, *profiles, "build", "app1-stateful-sse", "locust", "issuer"]
    _streamed(build, say, deadline, {**os.environ, **env})
    return env


def _streamed(cmd: list[str], say: Callable[[str], None], deadline: float, env: Mapping[str, str]) -> list[str]:
    """Run `cmd` until `deadline`, passing every line it prints to `say` as it comes; return the lines."""
    started = time.monotonic()
    say(f"running {' '.join(cmd)}")
    lines = []
    with subprocess.Popen(
        cmd,
        cwd=PROJECT_ROOT,
        env={**env, "BUILDKIT_PROGRESS": "plain"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # on the deadline, its children go too (mmdebstrap, pip, docker build)
    ) as proc:
        watchdog = threading.Timer(deadline - started, os.killpg, (proc.pid, signal.SIGKILL))
        watchdog.start()
        try:
            for line in proc.stdout:
                lines.append(line.rstrip())
                say(lines[-1])
        finally:
            watchdog.cancel()
    if time.monotonic() >= deadline:
        raise RuntimeError(f"{' '.join(cmd)} did not finish within the {BUILD_TIMEOUT:.0f} s for building images")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n" + "\n".join(lines[-30:]))
    say(f"done in {time.monotonic() - started:.0f} s: {' '.join(cmd)}")
    return lines


@dataclass
class ComposeStack:
    profile: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    policy: str = "round-robin"
    extra_profiles: tuple[str, ...] = ()  # e.g. ("loadtest",) for the Locust web UI
    locust_port: int = 8089
    command: tuple[str, ...] = field(default_factory=compose_command)  # V2 or V1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            **self.env,
            "NGINX_PORT": str(self.port),
            "LB_POLICY": self.policy,
            "LOCUST_PORT": str(self.locust_port),
        }
        profiles = [arg for profile in (self.profile, *self.extra_profiles) for arg in ("--profile", profile)]
        cmd = [*self.command, "-p", PROJECT, *profiles, *args]
        result = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def up(self, policy: str = "round-robin", fresh: bool = False) -> None:
        """Start (with another policy, recreate nginx; with `fresh`, every container) and wait until healthy."""
        self.policy = policy
        self.compose("up", "-d", "--no-build", *(["--force-recreate"] if fresh else []))
        self.wait_healthy()

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not (
            answers(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
            and all(c["health"] == "healthy" for c in self.containers().values())
        ):
            if time.monotonic() > deadline:
                logs = self.compose("logs", "--tail=20", check=False).stdout
                raise RuntimeError(f"{self.profile} not healthy after {READY_TIMEOUT:.0f} s:\n{logs}")
            time.sleep(0.5)

    def containers(self) -> dict[str, dict]:
        """Running containers of the project by service: id, host pid, health and published ports."""
        ids = docker_cli("ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}").split()
        found = {}
        for info in json.loads(docker_cli("inspect", *ids)) if ids else []:
            service = info["Config"]["Labels"]["com.docker.compose.service"]
            found[service] = {
                "id": info["Id"],
                "pid": info["State"]["Pid"],
                "health": info["State"].get("Health", {}).get("Status"),
                "published": [
                    f"{b['HostIp']}:{b['HostPort']}"
                    for bindings in info["HostConfig"]["PortBindings"].values()
                    for b in bindings or []
                ],
            }
        return found

    def kill(self, service: str) -> None:
        docker_cli("kill", self.containers()[service]["id"])

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "3")

    @staticmethod
    def remove_everything() -> None:
        """Take down whatever of this project still runs, in any profile (after an interrupted run)."""
        profiles = (*PRESETS, "loadtest", "redis-ha", "auth", "monitoring")
        stack = ComposeStack(profile=profiles[0], port=0, extra_profiles=profiles[1:])
        stack.compose("down", "-v", "--remove-orphans", "-t", "3", check=False)

    @staticmethod
    def leftovers() -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={PROJECT}"
        return {
            "containers": docker_cli("ps", "-aq", "--filter", label).split(),
            "networks": docker_cli("network", "ls", "-q", "--filter", label).split(),
            "volumes": docker_cli("volume", "ls", "-q", "--filter", label).split(),
        }


def docker_cli(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout
