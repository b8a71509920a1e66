"""Drives the real docker-compose.yml (for the matrix and the end-to-end tests): up, health, kill, down."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.stack import answers

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROJECT = "mcpscale-e2e"  # never the project a user's own `docker compose up` creates
READY_TIMEOUT = 180.0


@functools.cache
def compose_command() -> tuple[str, ...] | None:
    """`docker compose` (v2) when installed, else Debian's `docker-compose` 1.29."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ("docker", "compose")
    return ("docker-compose",) if shutil.which("docker-compose") else None


def docker_unavailable() -> str | None:
    """Why the compose tests cannot run here, or None."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "the Docker Engine is not reachable"
    if compose_command() is None:
        return "neither `docker compose` nor `docker-compose` is installed"
    return None


def image_env() -> dict[str, str]:
    """The variables scripts/compose-images prints: none with a registry, the stand-in's without."""
    out = subprocess.run(["scripts/compose-images"], cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)
    words = out.stdout.split()
    return dict(word.split("=", 1) for word in words if "=" in word)


@dataclass
class ComposeStack:
    profile: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    policy: str = "round-robin"
    extra_profiles: tuple[str, ...] = ()  # e.g. ("loadtest",) for the Locust web UI
    locust_port: int = 8089

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
        cmd = [*compose_command(), "-p", PROJECT, *profiles, *args]
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
        ids = _docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}").split()
        found = {}
        for info in json.loads(_docker("inspect", *ids)) if ids else []:
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
        _docker("kill", self.containers()[service]["id"])

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "3")

    @staticmethod
    def remove_everything() -> None:
        """Take down whatever of this project still runs, in any profile (after an interrupted run)."""
        profiles = ("stateful-sse", "stateful-json", "stateless-sse", "stateless-json", "loadtest")
        stack = ComposeStack(profile=profiles[0], port=0, extra_profiles=profiles[1:])
        stack.compose("down", "-v", "--remove-orphans", "-t", "3", check=False)

    @staticmethod
    def leftovers() -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={PROJECT}"
        return {
            "containers": _docker("ps", "-aq", "--filter", label).split(),
            "networks": _docker("network", "ls", "-q", "--filter", label).split(),
            "volumes": _docker("volume", "ls", "-q", "--filter", label).split(),
        }


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout
