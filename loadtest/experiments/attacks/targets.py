"""Where an attack lands: the local stack (processes on 127.0.0.1) or compose (containers with their memory
limits and restart policies). Each stack is new for each attack, and says how much memory its processes hold
and which of them died."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from issuer.signing import SigningKey
from loadtest.experiments.attacks.clients import (
    LOCAL_ATTACKER,
    LOCAL_VICTIMS,
    PROXIED_ATTACKER,
    PROXIED_VICTIMS,
    Client,
)
from loadtest.harness.compose import ComposeStack, docker_cli
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import INSTANCES

ISSUER, RESOURCE = "https://issuer.attacks.test", "http://127.0.0.1/mcp"
PRESET = "stateful-sse"
# What every attack runs against: the session policy and the Redis store, authentication off (every bound is then
# per address).
SETTINGS = {"preset": PRESET, "policy": "session", "store": "redis"}


class Target(Protocol):
    url: str
    attacker: Client
    victims: tuple[Client, ...]

    def memory_mib(self) -> dict[str, float]: ...  # resident now: "nginx", "instance" (the largest), "redis"

    def died(self) -> list[str]: ...  # what is no longer the process or container that was started


def _kind(name: str) -> str | None:
    if name in INSTANCES or name.removesuffix(f"-{PRESET}") in INSTANCES:
        return "instance"
    if name.startswith("nginx"):
        return "nginx"
    return "redis" if name == "redis" else None


@dataclass
class LocalTarget:
    stack: Stack
    attacker: Client = LOCAL_ATTACKER
    victims: tuple[Client, ...] = LOCAL_VICTIMS

    @property
    def url(self) -> str:
        return self.stack.url

    def memory_mib(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for proc in self.stack.procs:
            if (kind := _kind(proc.name)) is not None:
                found[kind] = max(found.get(kind, 0.0), tree_rss_kib(proc.pid) / 1024)
        return found

    def died(self) -> list[str]:
        return [proc.name for proc in self.stack.procs if not proc.alive()]


def tree_rss_kib(pid: int) -> int:
    """The resident memory of a process and its descendants (nginx's workers, uvicorn's), as the soak reads it."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in tree:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total // 1024


@dataclass
class ComposeTarget:
    stack: ComposeStack
    attacker: Client = PROXIED_ATTACKER
    victims: tuple[Client, ...] = PROXIED_VICTIMS
    started: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # service -> its identity at start

    def __post_init__(self) -> None:
        self.started = {service: _identity(info) for service, info in self.stack.containers().items()}

    @property
    def url(self) -> str:
        return self.stack.url

    def memory_mib(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for service, info in self.stack.containers().items():
            if (kind := _kind(service)) is not None and info["pid"]:
                found[kind] = max(found.get(kind, 0.0), _cgroup_rss_kib(info["pid"]) / 1024)
        return found

    def died(self) -> list[str]:
        now = {service: _identity(info) for service, info in self.stack.containers().items()}
        return sorted(service for service, identity in self.started.items() if now.get(service) != identity)


def _identity(info: dict) -> tuple[str, int, int]:
    """A container, how often it restarted, and how many of its processes the kernel killed for memory (a worker
    its PID 1 replaces, say): any of them changing means something in it died."""
    (inspected,) = json.loads(docker_cli("inspect", info["id"]))
    return info["id"], inspected["RestartCount"], _cgroup_counts(info["pid"]).get("oom_kill", 0)


def _cgroup_rss_kib(pid: int) -> int:
    """The resident (anonymous) memory of the container whose process is `pid`, as its memory cgroup counts it."""
    stat = _cgroup_counts(pid, "memory.stat")
    return (stat.get("total_rss", stat.get("anon", 0))) // 1024


def _cgroup_counts(pid: int, name: str = "") -> dict[str, int]:
    """A memory cgroup file of the container whose process is `pid`, as name -> number: `name`, or the one with
    its OOM kills (cgroup v1 memory.oom_control, v2 memory.events)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "memory":  # cgroup v1
                found = Path(f"/sys/fs/cgroup/memory{path}/{name or 'memory.oom_control'}")
            elif controllers == "":  # cgroup v2
                found = Path(f"/sys/fs/cgroup{path}/{name or 'memory.events'}")
            else:
                continue
            return {key: int(value) for key, value in (line.split() for line in found.read_text().splitlines())}
    return {}


@contextlib.contextmanager
def local(run_dir: Path, auth: bool = False) -> Iterator[LocalTarget]:
    """A new local stack; with `auth`, tokens required, and each client a principal of its own (the attacker's
    one token, whatever address it comes from, is what its bounds count)."""
    if not auth:
        with Stack(run_dir=run_dir, port=free_port(), **SETTINGS) as stack:
            yield LocalTarget(stack)
        return
    key = SigningKey.generate()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "jwks.json").write_text(json.dumps(key.jwks()))
    auth_env = {"MCP_AUTH_JWKS": str(run_dir / "jwks.json"), "MCP_AUTH_ISSUER": ISSUER, "MCP_AUTH_RESOURCE": RESOURCE}

    def token(name: str) -> str:
        return key.mint(ISSUER, name, RESOURCE, seconds=3600, client_id=name)

    attacker = Client(LOCAL_ATTACKER.source, token=token("mallory"))
    victims = tuple(
        Client(v.source, token=token(name)) for v, name in zip(LOCAL_VICTIMS, ("alice", "bob"), strict=True)
    )
    with Stack(run_dir=run_dir, port=free_port(), app_env=auth_env, **SETTINGS) as stack:
        yield LocalTarget(stack, attacker, victims)


@contextlib.contextmanager
def compose(images: dict[str, str]) -> Iterator[ComposeTarget]:
    """A fresh compose stack (volumes too), nginx trusting the published port's gateway to name clients."""
    env = {**images, "SESSION_STORE": SETTINGS["store"], "NGINX_TRUSTED_PROXIES": "172.16.0.0/12 192.168.0.0/16"}
    stack = ComposeStack(PRESET, free_port(), env, policy=SETTINGS["policy"])
    stack.down()
    try:
        stack.up(policy=SETTINGS["policy"], fresh=True)
        yield ComposeTarget(stack)
    finally:
        stack.down()
