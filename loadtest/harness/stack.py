"""The local stack: redis-server, three app instances and nginx as processes on 127.0.0.1.

The same topology as docker-compose.yml, for machines without Docker and for the tests:

    python -m loadtest stack up --preset stateless-json --lb round-robin [--store memory] [--port 8080]
                                [--server examples.notes] [--redis ha]
    python -m loadtest stack status
    python -m loadtest stack down

`up` returns once every process answers its health check and leaves them running;
`down` stops every process `up` started (each runs in its own process group).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis as redis_client

from loadtest.harness.clock import FakeClock
from loadtest.harness.topology import INSTANCES, POLICIES, PRESETS, PROJECT_ROOT, STORES

DEFAULT_RUN_DIR = PROJECT_ROOT / ".stack"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
_handed_out: collections.deque[int] = collections.deque(maxlen=4096)  # by free_port, newest last
# As nginx/compose/: never mark an instance down. A refused connection moves the request to the next instance
# at once, and an instance that restarts is used again as soon as it listens: in a rolling restart, marking
# left moments where every server of an upstream counted as down, and nginx answered 502.
RETRY = "max_fails=0"
NGINX_COMMAND = ["sh", str(PROJECT_ROOT / "nginx" / "run-nginx.sh")]
# To nginx a load generator is one client address, whose per-client bounds would then cap the load, not the servers.
# A load whose every client comes from 127.0.0.1: nginx's bounds per address, and the instances' (ONE_ADDRESS_APP).
ONE_ADDRESS_LOAD = {"NGINX_REQUESTS_PER_CLIENT": "100000", "NGINX_CONNECTIONS_PER_CLIENT": "10000"}
ONE_ADDRESS_APP = {"MCP_MAX_SESSIONS_PER_ADDRESS": "1000000"}
# As docker-compose.yml runs it: an append-only file Redis writes and syncs before it answers, so a crash of Redis
# or of its host loses no acknowledged write (docs/configuration.md).
REDIS_PERSISTENCE = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")
REDIS_MEMORY = ("--maxmemory", "256mb", "--maxmemory-policy", "noeviction")  # full: writes refused, nothing dropped
SENTINEL_SERVICE = "mcp"
SENTINELS = ("sentinel1", "sentinel2", "sentinel3")
REDIS_SERVERS = ("redis", "redis-replica")  # with redis="ha"; "redis" is the first primary
SENTINEL_DOWN_AFTER_MS = 1000  # a primary silent this long is down: the Sentinels then promote the replica
FAILOVER_TIMEOUT = 30.0
RESTART_GRACE = 30.0  # an instance restarted as by a deploy gets as long to drain as docker-compose.yml gives it
START_ATTEMPTS = 3
RUN_REDIS = PROJECT_ROOT / "redis" / "run-redis.sh"  # as docker-compose.yml runs Redis: ACL users, default user off
APP_USER = "mcp"  # the instances' Redis user (redis/users.acl); the harness logs in as "admin", which only we have
REDIS_USERS = (APP_USER, "replica", "sentinel", "admin")  # each with a secret of its own


class StackError(RuntimeError):
    pass


class PortTaken(StackError):
    """A process lost its port to another process between our probe and its bind."""


@dataclass
class Proc:
    name: str
    pid: int
    port: int
    health_url: str | None  # None: checked with a Redis PING instead
    started: int = 0  # the kernel's start time of `pid`, so a reused pid is never mistaken for ours
    ready_file: str | None = None  # ready once this file exists too (a Redis server's: it has the functions)

    def alive(self) -> bool:
        return process_alive(self.pid) and _start_time(self.pid) == self.started


@dataclass
class Stack:
    """One local stack; use as a context manager so it is stopped even when the body fails."""

    run_dir: Path = DEFAULT_RUN_DIR
    preset: str = "stateful-sse"
    policy: str = "round-robin"
    store: str = "memory"
    port: int = 8080
    server: str = "app"  # the module each instance runs with `python -m`: the demo, or a server of your own
    redis: str = "single"  # or "ha": a primary, a replica and three Sentinels, which the instances follow
    redis_persistence: tuple[str, ...] = REDIS_PERSISTENCE
    redis_links: bool = False  # each instance reaches Redis through a link of its own, which a fault can cut
    app_env: dict[str, str] = field(default_factory=dict)  # extra MCP_* settings for every instance
    launcher: tuple[str, ...] = ()  # what each instance runs under, e.g. ("opentelemetry-instrument",)
    nginx_env: dict[str, str] = field(default_factory=dict)  # e.g. NGINX_REQUESTS_PER_CLIENT (nginx/run-nginx.sh)
    forward_ports: dict[str, int] = field(default_factory=dict)  # each instance's MCP_FORWARD_PORT (Redis store)
    clocks: tuple[str, ...] = ()  # the processes with a wall clock of their own, which `clock(name)` moves
    procs: list[Proc] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def instance_url(self, name: str) -> str:
        """The /mcp URL of one app instance, bypassing nginx."""
        return f"http://127.0.0.1:{self.proc(name).port}/mcp"

    def held_sessions(self) -> dict[str, int]:
        """How many sessions each app instance holds now, as its /readyz says."""
        held = {}
        for name in INSTANCES:
            ready = self.instance_url(name).replace("/mcp", "/readyz")
            with urllib.request.urlopen(ready, timeout=5) as response:
                held[name] = json.load(response)["sessions"]
        return held

    def forwarding_url(self, name: str) -> str:
        """The /mcp URL of an instance's forwarding port, where only the other instances' requests are taken."""
        return f"http://127.0.0.1:{self.forward_ports[name]}/mcp"

    def proc(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    @property
    def redis_url(self) -> str:
        """The harness's URL of the Redis (as the admin user, password included); with redis="ha", the primary
        as it was at start."""
        return f"redis://admin:{self.password('admin')}@127.0.0.1:{self.proc('redis').port}/0"

    def instance_redis_url(self, name: str) -> str:
        """MCP_REDIS_URL of an instance: the app user, its password in MCP_REDIS_PASSWORD_FILE."""
        if self.redis == "ha":
            sentinels = ",".join(f"127.0.0.1:{self.proc(sentinel).port}" for sentinel in SENTINELS)
            return f"redis+sentinel://{APP_USER}@{sentinels}/{SENTINEL_SERVICE}/0"
        return f"redis://{APP_USER}@127.0.0.1:{self.proc(link_of(name) if self.redis_links else 'redis').port}/0"

    def password(self, user: str = APP_USER) -> str:
        """The password of a Redis user (REDIS_USERS), made for this stack at start."""
        return self.password_file(user).read_text()

    def password_file(self, user: str = APP_USER) -> Path:
        return self.run_dir / f"redis-{user}-password"

    @property
    def users_dir(self) -> Path:
        """Each Redis user's SHA-256 (REDIS_USERS_DIR of redis/run-redis.sh): what the servers check logins by."""
        return self.run_dir / "redis-users"

    def redis_client(self, name: str) -> redis_client.Redis:
        """The harness's client of one Redis process: a server as admin, a Sentinel as the Sentinels' user."""
        if name in SENTINELS:
            return redis_client.Redis(
                port=self.proc(name).port, username="sentinel", password=self.password("sentinel"), socket_timeout=1
            )
        return redis_client.Redis(
            port=self.proc(name).port, username="admin", password=self.password("admin"), socket_timeout=1
        )

    def primary(self) -> str:
        """The Redis process the Sentinels name primary now ("redis" without them)."""
        if self.redis != "ha":
            return "redis"
        with self.redis_client(SENTINELS[0]) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(SENTINEL_SERVICE)
        return next(proc.name for proc in self.procs if proc.name in REDIS_SERVERS and proc.port == int(port))

    def fail_over(self) -> None:
        """SIGKILL the Redis primary, wait until the Sentinels have promoted the replica, and start the old primary
        again, as a replica of the new one."""
        old = self.primary()
        _signal_group(self.proc(old).pid, signal.SIGKILL)
        deadline = time.monotonic() + FAILOVER_TIMEOUT
        while self._primary_or_none() in (old, None):
            if time.monotonic() > deadline:
                raise StackError(f"the Sentinels promoted no replica within {FAILOVER_TIMEOUT:.0f} s")
            time.sleep(0.1)
        self.restart(old, signal.SIGKILL)

    def wait_replicated(self) -> None:
        """With redis="ha", wait until the replica is in sync and every Sentinel knows it and the others: until
        then a write waiting for the replica is refused, and a failover could not be agreed on."""
        if self.redis != "ha":
            return
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._replicated():
            if time.monotonic() > deadline:
                raise StackError(f"the replica and the Sentinels did not find each other within {READY_TIMEOUT:.0f} s")
            time.sleep(0.1)

    def _replicated(self) -> bool:
        try:
            with self.redis_client(self.primary()) as primary:
                if primary.info("replication").get("slave0", {}).get("state") != "online":
                    return False
            for name in SENTINELS:
                with self.redis_client(name) as sentinel:
                    others = int(sentinel.sentinel_master(SENTINEL_SERVICE)["num-other-sentinels"])
                    # a replica it could promote: known (from the primary's INFO, every 10 s) and not down
                    promotable = [r for r in sentinel.sentinel_slaves(SENTINEL_SERVICE) if r["flags"] == "slave"]
                    if others < len(SENTINELS) - 1 or not promotable:
                        return False
            return True
        except redis_client.RedisError:
            return False

    def _primary_or_none(self) -> str | None:
        try:
            return self.primary()
        except (redis_client.RedisError, StopIteration):
            return None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.preset not in PRESETS or self.policy not in POLICIES or self.store not in STORES:
            raise StackError(f"unknown preset/policy/store {self.preset}/{self.policy}/{self.store}")
        if self.redis_links and self.redis == "ha":
            raise StackError(
                "redis links stand in front of one Redis; the Sentinels hand out the servers' own addresses"
            )
        if _state_file(self.run_dir).exists():
            raise StackError(f"a stack is already running from {self.run_dir}; run `python -m loadtest stack down`")
        missing = [name for name in ("nginx", "redis-server") if not (shutil.which(name) or _sbin(name))]
        if missing:
            raise StackError(f"{', '.join(missing)} not found; install with: apt-get install nginx-light redis-server")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name in self.clocks:
            self.clock(name).set(0)  # each stack's clocks start right
        for attempt in range(START_ATTEMPTS):
            try:
                self._start_processes()
                self._save()
                self._wait_ready()
                self.wait_replicated()
                return
            except PortTaken:
                self.stop()  # another process took a port between our probe and the bind: new ports
                if attempt == START_ATTEMPTS - 1:
                    raise
            except BaseException:
                self.stop()
                raise

    def _start_processes(self) -> None:
        self.users_dir.mkdir(exist_ok=True)
        for user in REDIS_USERS:  # a secret of its own for each
            password = secrets.token_hex(32)
            self.password_file(user).touch(mode=0o600)
            self.password_file(user).write_text(password)
            (self.users_dir / f"{user}.sha256").write_text(hashlib.sha256(password.encode()).hexdigest())
        self.procs.append(self._spawn_redis("redis", free_port()))
        if self.redis_links:
            link = [sys.executable, "-m", "loadtest.harness.link"]
            for name in INSTANCES:
                port = free_port()
                self.procs.append(
                    self._spawn(link_of(name), port, None, [*link, str(port), str(self.proc("redis").port)])
                )
        if self.redis == "ha":
            primary = self.proc("redis").port
            self.procs.append(self._spawn_redis("redis-replica", free_port(), replica_of=primary))
            replica = self.proc("redis-replica").port
            self.procs += [self._spawn_sentinel(name, free_port(), primary, replica) for name in SENTINELS]
            self._wait_ready()  # an instance asks a Sentinel for the primary at start, and exits if none answers
        if self.store == "redis":  # with MCP_WORKERS=N, worker k takes the k-th port from this one
            workers = int(self.app_env.get("MCP_WORKERS", "1"))
            self.forward_ports = {name: free_ports(workers) for name in INSTANCES}
        for name in INSTANCES:
            self.procs.append(self._spawn_instance(name, free_port()))
        ports = {p.name: p.port for p in self.procs if p.name in INSTANCES}
        env = {**nginx_site_env(self.run_dir, self.port, ports, self.policy), **self.nginx_env}
        self.procs.append(self._spawn("nginx", self.port, f"http://127.0.0.1:{self.port}/healthz", NGINX_COMMAND, env))

    def _spawn_redis(self, name: str, port: int, log_mode: str = "wb", replica_of: int | None = None) -> Proc:
        """redis-server with REDIS_PERSISTENCE, its file in the run directory: kept while the stack runs, and
        new for each stack."""
        data = self.run_dir / name
        if log_mode == "wb":
            shutil.rmtree(data, ignore_errors=True)
        data.mkdir(exist_ok=True)
        cmd = ["sh", str(RUN_REDIS), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
        env = {**self._redis_env(name), **({"REDIS_REPLICA_OF": f"127.0.0.1 {replica_of}"} if replica_of else {})}
        proc = self._spawn(name, port, None, [*cmd, *self.redis_persistence, *REDIS_MEMORY], env, log_mode)
        return dataclasses.replace(proc, ready_file=env["REDIS_RUN_DIR"] + "/functions-loaded")

    def _redis_env(self, name: str) -> dict[str, str]:
        """A Redis process's settings: a server holds the replica user's secret, a Sentinel the sentinel user's."""
        secret = "sentinel" if name in SENTINELS else "replica"
        return {
            "PATH": f"{Path(redis_server_binary()).parent}:{os.environ.get('PATH', '')}",
            "REDIS_USERS_DIR": str(self.users_dir),
            f"REDIS_{secret.upper()}_PASSWORD_FILE": str(self.password_file(secret)),
            "REDIS_RUN_DIR": str(self.run_dir / f"{name}-conf"),
            **({"REDIS_MIN_REPLICAS": "1"} if self.redis == "ha" else {}),  # a primary writes with its replica only
        }

    def _spawn_sentinel(self, name: str, port: int, primary: int, replica: int) -> Proc:
        """A Sentinel (the same redis-server, in Sentinel mode) watching the primary; it rewrites its own file.
        It is told of the replica, which it would otherwise learn of from the primary's INFO within 10 s."""
        env = {
            **self._redis_env(name),
            "REDIS_SENTINEL_MONITOR": f"127.0.0.1 {primary}",
            "REDIS_SENTINEL_KNOWN_REPLICA": f"127.0.0.1 {replica}",
            "REDIS_SENTINEL_PORT": str(port),
            "REDIS_SENTINEL_SERVICE": SENTINEL_SERVICE,
            "REDIS_SENTINEL_DOWN_AFTER_MS": str(SENTINEL_DOWN_AFTER_MS),
            "REDIS_BIND": "127.0.0.1",
        }
        return self._spawn(name, port, None, ["sh", str(RUN_REDIS)], env)

    def _spawn_instance(self, name: str, port: int, log_mode: str = "wb") -> Proc:
        env = {
            "MCP_INSTANCE_ID": name,
            "MCP_PRESET": self.preset,
            "MCP_SESSION_STORE": self.store,
            "MCP_LISTEN_HOST": "127.0.0.1",
            "MCP_LISTEN_PORT": str(port),
            "MCP_REDIS_URL": self.instance_redis_url(name),
            "MCP_REDIS_PASSWORD_FILE": str(self.password_file()),
            **({"MCP_FORWARD_PORT": str(self.forward_ports[name])} if name in self.forward_ports else {}),
            **self.app_env,
        }
        cmd = [*self.launcher, sys.executable, "-m", self.server]
        return self._spawn(name, port, f"http://127.0.0.1:{port}/readyz", cmd, env, log_mode)

    def restart(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop an instance or Redis as a deploy does (SIGTERM, SIGKILL after the grace period), or as a crash
        does (`sig=SIGKILL`), start it again on its port, and wait until it is ready."""
        old = self.proc(name)
        _signal_group(old.pid, sig)
        _end(old.pid, deadline=time.monotonic() + RESTART_GRACE)
        port = old.port  # the new process's log follows the old one's
        if name in REDIS_SERVERS:
            primary = None if self.redis != "ha" else self.proc(self.primary()).port
            new = self._spawn_redis(name, port, "ab", replica_of=None if primary == port else primary)
        else:
            new = self._spawn_instance(name, port, "ab")
        self.procs[self.procs.index(old)] = new
        self._save()
        self._wait_ready([new])

    def pause(self, name: str, seconds: float) -> None:
        """Stop a process (SIGSTOP) for `seconds`, as a stalled host or a debugger would, then resume it."""
        with self.paused(name):
            time.sleep(seconds)  # the fault's length, not a wait for readiness

    @contextlib.contextmanager
    def paused(self, name: str) -> Iterator[None]:
        """A process stopped (SIGSTOP) while the block runs, then resumed."""
        proc = self.proc(name)
        _signal_group(proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            _signal_group(proc.pid, signal.SIGCONT)

    @contextlib.contextmanager
    def full(self, name: str) -> Iterator[None]:
        """A Redis server at its maxmemory while the block runs (filled with keys of no one's, as an operator's
        mistake or an attacker would), then given its room back and emptied of them."""
        with self.redis_client(name) as admin:
            limit = admin.config_get("maxmemory")["maxmemory"]
            admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) + 256 * 1024)
            filled = 0
            try:
                while filled < 10_000:  # 256 KiB of room: reached long before
                    admin.set(f"mcp:filler:{filled}", "x" * 16_384)
                    filled += 1
                raise StackError(f"{name} took 10,000 keys of 16 KiB past its maxmemory")
            except redis_client.exceptions.OutOfMemoryError:
                pass
            # Keep it full: buffers Redis frees would otherwise let the odd small write in again.
            admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) // 2)
            try:
                yield
            finally:
                admin.config_set("maxmemory", limit)
                admin.delete(*(f"mcp:filler:{n}" for n in range(filled + 1)))

    def reload_nginx(self) -> None:
        """What `nginx -s reload` does: new workers with the configuration, the old ones finish their requests."""
        _signal_group(self.proc("nginx").pid, signal.SIGHUP)

    def _spawn(
        self, name: str, port: int, health_url: str | None, cmd: list, env: dict | None = None, log_mode: str = "wb"
    ) -> Proc:
        own = self.clock(name).env() if name in self.clocks else {}
        return spawn(self.run_dir, name, port, health_url, cmd, {**(env or {}), **own}, log_mode)

    def clock(self, name: str) -> FakeClock:
        """The wall clock of one of `clocks` (loadtest/harness/clock.py): `stack.clock("redis").jump(30)`."""
        return FakeClock(self.run_dir / f"{name}.clock")

    def _wait_ready(self, procs: list[Proc] | None = None) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for proc in self.procs if procs is None else procs:
            while not _healthy(proc):
                if not process_alive(proc.pid):
                    log = self.log_tail(proc.name)
                    if proc.name != "nginx" and lost_its_port(log):
                        raise PortTaken(proc.name)
                    raise StackError(f"{proc.name} exited at start:\n{log}")
                if time.monotonic() > deadline:
                    raise StackError(f"{proc.name} not ready after {READY_TIMEOUT:.0f} s:\n{self.log_tail(proc.name)}")
                time.sleep(0.05)

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.run_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after a grace period, forget the stack."""
        stop_processes(self.procs)
        self.procs.clear()
        _state_file(self.run_dir).unlink(missing_ok=True)

    def _save(self) -> None:
        state = {k: v for k, v in asdict(self).items() if k != "run_dir"}
        _state_file(self.run_dir).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> Stack | None:
        path = _state_file(run_dir)
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        procs = [Proc(**p) for p in state.pop("procs")]
        return cls(run_dir=run_dir, procs=procs, **state)

    def describe(self) -> list[str]:
        lines = [f"server={self.server} preset={self.preset} lb={self.policy} store={self.store} redis={self.redis}"]
        lines[0] += f" url={self.url}"
        for proc in self.procs:
            running = "running" if proc.alive() else "stopped"
            health = "healthy" if proc.alive() and _healthy(proc) else "not answering"
            forwarding = f" forwarding port={self.forward_ports[proc.name]}" if proc.name in self.forward_ports else ""
            lines.append(f"  {proc.name:<6} pid={proc.pid:<8} port={proc.port:<6} {running}, {health}{forwarding}")
        return lines


def spawn(
    run_dir: Path, name: str, port: int, health_url: str | None, cmd: list, env: dict | None = None, log_mode="wb"
) -> Proc:
    """Start `cmd` in a process group of its own, its output in `run_dir/<name>.log`."""
    # Only the settings given here reach the app: none of the caller's own MCP_* variables.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MCP_")}
    with open(run_dir / f"{name}.log", log_mode) as log:
        child = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**inherited, **(env or {})},
            start_new_session=True,
        )
    return Proc(name, child.pid, port, health_url, _start_time(child.pid))


def stop_processes(procs: list[Proc], sig: signal.Signals = signal.SIGTERM, grace: float = STOP_TIMEOUT) -> None:
    """Signal every process group (the last started first), and SIGKILL what is left after `grace` seconds."""
    ours = [proc for proc in procs if proc.alive()]  # a stale pid may belong to someone else now
    for proc in reversed(ours):
        _signal_group(proc.pid, sig)
    deadline = time.monotonic() + grace
    for proc in ours:
        _end(proc.pid, deadline)


def nginx_site_env(run_dir: Path, port: int, instance_ports: dict[str, int], policy: str) -> dict[str, str]:
    """What NGINX_COMMAND needs to balance `instance_ports` (name -> port) on `port`: the site files it
    reads, written into `run_dir`, and the variables that name them."""
    site = run_dir / "nginx-site"
    site.mkdir(parents=True, exist_ok=True)
    servers = "".join(f"server 127.0.0.1:{p} {RETRY};\n" for p in instance_ports.values())
    (site / "upstream-servers.conf").write_text(servers)
    (site / "instance-upstreams.conf").write_text(_instance_upstreams(instance_ports))
    (site / "listen.conf").write_text(f"listen 127.0.0.1:{port};\n")
    return {
        "LB_POLICY": policy,
        "NGINX_SITE_DIR": str(site),
        "NGINX_RUN_DIR": str(run_dir / "nginx"),
        **nginx_bodies_env(port),
    }


def nginx_bodies_env(port: int) -> dict[str, str]:
    """Where a root nginx's workers (nobody) write request bodies: nginx makes the folder theirs, but they must
    reach it, and a run directory under a private temp folder (pytest's, $TMPDIR) is out of their reach: 500."""
    if os.geteuid() != 0:
        return {}
    parent = Path("/tmp/mcp-nginx-bodies")  # not $TMPDIR, which may be private (a test's own, 0700)
    parent.mkdir(mode=0o711, exist_ok=True)
    parent.chmod(0o711)
    return {"NGINX_BODY_DIR": str(parent / str(port))}


def _instance_upstreams(ports: dict[str, int]) -> str:
    """One upstream per instance with the others as backups, as nginx/compose/instance-upstreams.conf has."""
    blocks = []
    for name, port in ports.items():
        backups = "".join(f" server 127.0.0.1:{p} {RETRY} backup;" for other, p in ports.items() if other != name)
        blocks.append(f"upstream mcp_{name} {{ server 127.0.0.1:{port} {RETRY};{backups} include keepalive.conf; }}\n")
    return "".join(blocks)


def _state_file(run_dir: Path) -> Path:
    return run_dir / "stack.json"


def link_of(instance: str) -> str:
    """The name of the process that links `instance` to Redis (with redis_links)."""
    return f"{instance}-link"


def redis_server_binary() -> str:
    return shutil.which("redis-server") or _sbin("redis-server") or "redis-server"


def _sbin(name: str) -> str | None:
    path = Path("/usr/sbin") / name
    return str(path) if path.exists() else None


def free_port() -> int:
    """A port free on 127.0.0.1 and not handed out lately by this process: a stack picks all its ports before
    its processes bind them, and two of them given one port would look like one healthy process."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.append(port)
            return port


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports free on 127.0.0.1."""
    while True:
        first = free_port()
        rest = range(first + 1, first + count)
        if first + count <= 65536 and all(_free(port) and port not in _handed_out for port in rest):
            _handed_out.extend(rest)
            return first


def lost_its_port(log: str) -> bool:
    """Whether a process's log says it could not bind its port (another process took it after our probe)."""
    return "ddress already in use" in log


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def process_alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)  # reaps our own children
        if finished == pid:
            return False
    except ChildProcessError:
        pass  # not our child: started by an earlier `up`
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _start_time(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot (0 if gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _end(pid: int, deadline: float) -> None:
    """Wait for a process signalled to stop until `deadline`, then SIGKILL its group and reap it."""
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    _reap(pid)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # each process leads its own group (start_new_session)


def _healthy(proc: Proc) -> bool:
    if proc.ready_file is not None and not Path(proc.ready_file).exists():
        return False
    if proc.health_url is None:
        try:
            with socket.create_connection(("127.0.0.1", proc.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # it answers: up (and locked)
        except OSError:
            return False
    return answers(proc.health_url)


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a GET of `url` gets 200 (any error, refusal or timeout is a no)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest stack", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("MCP_STACK_DIR", DEFAULT_RUN_DIR)),
        help="run directory holding logs and the stack's state (default: .stack/)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack in the background and print the MCP URL")
    up.add_argument("--preset", choices=PRESETS, default="stateful-sse")
    up.add_argument("--lb", choices=POLICIES, default="round-robin", help="nginx balancing policy")
    up.add_argument("--store", choices=STORES, default="memory", help="session store")
    up.add_argument(
        "--redis",
        choices=("single", "ha"),
        default="single",
        help="one Redis, or a primary, a replica and three Sentinels",
    )
    up.add_argument("--port", type=int, default=8080, help="nginx port on 127.0.0.1")
    up.add_argument("--server", default="app", help="module each instance runs with python -m (default: app)")
    commands.add_parser("down", help="stop everything `up` started")
    commands.add_parser("status", help="say what runs")
    args = parser.parse_args(argv)

    if args.command == "up":
        options = {
            "preset": args.preset,
            "policy": args.lb,
            "store": args.store,
            "port": args.port,
            "redis": args.redis,
        }
        stack = Stack(run_dir=args.dir, server=args.server, **options)
        try:
            stack.start()
        except StackError as exc:
            print(f"stack: {exc}", file=sys.stderr)
            return 1
        print(stack.url)
        return 0
    stack = Stack.load(args.dir)
    if stack is None:
        print(f"stack: nothing running from {args.dir}")
        return 0 if args.command == "down" else 3
    if args.command == "down":
        stack.stop()
        print("stack: stopped")
        return 0
    print("\n".join(stack.describe()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
