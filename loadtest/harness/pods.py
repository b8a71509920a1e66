"""The Kubernetes nginx config (LB_POLICY=session-dns, deploy/kubernetes/) on this host, with no cluster:
app instances named like the StatefulSet's pods, each on a loopback address of its own, and dnsmasq
answering the headless Services' names as the cluster DNS does.

    with PodStack(run_dir, redis_url) as pods:   # mcp-0, mcp-1, mcp-2 and nginx
        pods.add("mcp-3")                        # a pod scaled up: its names resolve, nginx is not touched
        pods.remove("mcp-1", signal.SIGKILL)     # a pod lost: its names stop resolving
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from loadtest.harness.stack import (
    START_ATTEMPTS,
    PortTaken,
    Proc,
    StackError,
    answers,
    free_port,
    free_ports,
    lost_its_port,
    nginx_bodies_env,
    spawn,
    stop_processes,
)
from loadtest.harness.topology import PROJECT_ROOT

STATEFULSET = "mcp"
PODS_DOMAIN = "mcp.mcp.svc.cluster.local"  # the StatefulSet's headless Service `mcp` in namespace `mcp`
READY_NAME = "mcp-ready.mcp.svc.cluster.local"  # the Service of the ready pods only
CLUSTER_DOMAIN = "cluster.local"  # dnsmasq answers every name under it itself: what it does not know is NXDOMAIN
DNS_VALID = "1s"  # how long nginx keeps an answer here (5 s in deploy/kubernetes/): the tests wait less


class PodStack:
    """Redis (given), pods named `mcp-N` on 127.0.0.(10+N), dnsmasq and nginx; a context manager."""

    def __init__(
        self,
        run_dir: Path,
        redis_url: str,
        pods: int = 3,
        preset: str = "stateful-json",
        redis_password_file: Path | None = None,
        metrics: bool = True,
        nginx_env: dict[str, str] | None = None,
    ) -> None:
        self.run_dir, self.redis_url, self.preset = run_dir, redis_url, preset
        self.redis_password_file, self.metrics, self.nginx_env = redis_password_file, metrics, nginx_env or {}
        self.initial = [f"{STATEFULSET}-{n}" for n in range(pods)]
        self.app_port = free_ports(3)  # every pod's MCP port; the next two: its forwarding and metrics ports
        self.dns_port, self.port = free_port(), free_port()
        self.pods: dict[str, Proc] = {}
        self.ready: set[str] = set()  # the pods whose names resolve
        self.extra_names: dict[str, str] = {}  # more DNS names under the domain (name -> address)
        self.dns: Proc | None = None
        self.nginx: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def __enter__(self) -> PodStack:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1
        while True:
            try:
                self._start()
                return self
            except PortTaken:
                self.__exit__()  # a process of another test run bound a pod's port after our probe: new ports
                if attempts == START_ATTEMPTS:
                    raise
                attempts += 1
                self.app_port, self.port = free_ports(3), free_port()
            except BaseException:
                self.__exit__()
                raise

    def _start(self) -> None:
        self._write_hosts()
        self.dns = self._start_dns()
        for name in self.initial:
            self.add(name)
        self.nginx = self._start_nginx()
        self._wait_healthy(self.nginx)

    def __exit__(self, *exc_info: object) -> None:
        stop_processes([proc for proc in (self.dns, *self.pods.values(), self.nginx) if proc is not None])
        self.pods.clear()
        self.ready.clear()
        self.dns = self.nginx = None

    def address(self, name: str) -> str:
        """The loopback address of pod `mcp-N`: 127.0.0.(10+N)."""
        return f"127.0.0.{10 + int(name.rpartition('-')[2])}"

    def add(self, name: str) -> None:
        """Start pod `name` and, once it is ready, make its names resolve (as the endpoints controller does)."""
        address = self.address(name)
        env = {
            "MCP_INSTANCE_ID": name,
            "MCP_PRESET": self.preset,
            "MCP_SESSION_STORE": "redis",
            "MCP_REDIS_URL": self.redis_url,
            "MCP_LISTEN_HOST": address,
            "MCP_LISTEN_PORT": str(self.app_port),
            "MCP_FORWARD_HOST": address,
            "MCP_FORWARD_PORT": str(self.app_port + 1),
            "MCP_PEER_URLS": f"http://127.0.0.*:{self.app_port + 1}",
            "MCP_DRAIN_SECONDS": "2",
        }
        if self.metrics:
            env["MCP_METRICS_PORT"] = str(self.app_port + 2)
        if self.redis_password_file is not None:
            env["MCP_REDIS_PASSWORD_FILE"] = str(self.redis_password_file)
        health = f"http://{address}:{self.app_port}/readyz"
        pod = spawn(self.run_dir, name, self.app_port, health, [sys.executable, "-m", "app"], env)
        self.pods[name] = pod
        self._wait_healthy(pod)
        self.ready.add(name)
        self._write_hosts()

    def remove(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop pod `name` (SIGKILL: as a node lost) and take its names out of DNS."""
        stop_processes([self.pods.pop(name)], sig)
        self.ready.discard(name)
        self._write_hosts()

    def metric(self, name: str, **labels: str) -> float:
        """A metric's samples with these labels, summed over the pods running now (their metrics ports)."""
        total = 0.0
        for pod in self.pods:
            text = requests.get(f"http://{self.address(pod)}:{self.app_port + 2}/metrics", timeout=5).text
            for family in text_string_to_metric_families(text):
                total += sum(s.value for s in family.samples if s.name == name and labels.items() <= s.labels.items())
        return total

    def stall(self, name: str, blackhole: Blackhole) -> None:
        """As a node that stops answering: pod `name` is gone, not ready, and its own name now leads to an
        address where every connection times out."""
        stop_processes([self.pods.pop(name)], signal.SIGKILL)
        self.ready.discard(name)
        self.add_name(f"{name}.{PODS_DOMAIN}", blackhole.address)

    def kill_only(self, name: str) -> None:
        """SIGKILL pod `name` and leave its names in DNS, as before Kubernetes notices."""
        stop_processes([self.pods[name]], signal.SIGKILL)

    def add_name(self, name: str, address: str) -> None:
        """Another name under the headless Service's domain (one that names no pod)."""
        self.extra_names[name] = address
        self._write_hosts()

    def remove_name(self, name: str) -> None:
        self.extra_names.pop(name)
        self._write_hosts()

    def _write_hosts(self) -> None:
        """The names the cluster DNS would answer, then SIGHUP: dnsmasq reads its hosts file again."""
        lines = [f"{self.address(name)} {name}.{PODS_DOMAIN} {READY_NAME}" for name in sorted(self.ready)]
        lines += [f"{address} {name}" for name, address in self.extra_names.items()]
        hosts = self.run_dir / "hosts"
        hosts.write_text("".join(f"{line}\n" for line in lines))
        if self.dns is not None and self.dns.alive():
            os.kill(self.dns.pid, signal.SIGHUP)

    def _start_dns(self) -> Proc:
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not Path(binary).exists():
            raise StackError("dnsmasq not found; install with: apt-get install dnsmasq-base")
        cmd = [
            binary,
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--no-dhcp-interface=lo",
            f"--addn-hosts={self.run_dir / 'hosts'}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            f"--port={self.dns_port}",
            f"--local=/{CLUSTER_DOMAIN}/",
            "--local-ttl=0",
            "--log-facility=-",
            "--pid-file=",
            f"--user={pwd.getpwuid(os.getuid()).pw_name}",  # as us: the run directory may be ours alone
            f"--group={grp.getgrgid(os.getgid()).gr_name}",
        ]
        return spawn(self.run_dir, "dnsmasq", self.dns_port, None, cmd)

    def _start_nginx(self) -> Proc:
        site = self.run_dir / "nginx-site"
        site.mkdir(exist_ok=True)
        (site / "listen.conf").write_text(f"listen 127.0.0.1:{self.port};\n")
        env = {
            "LB_POLICY": "session-dns",
            "NGINX_SITE_DIR": str(site),
            "NGINX_RUN_DIR": str(self.run_dir / "nginx"),
            "NGINX_DNS_STATEFULSET": STATEFULSET,
            "NGINX_DNS_PODS_DOMAIN": PODS_DOMAIN,
            "NGINX_DNS_READY_NAME": READY_NAME,
            "NGINX_DNS_APP_PORT": str(self.app_port),
            "NGINX_DNS_RESOLVER": f"127.0.0.1:{self.dns_port}",
            "NGINX_DNS_VALID": DNS_VALID,
            **nginx_bodies_env(self.port),
            **self.nginx_env,
        }
        cmd = ["sh", str(PROJECT_ROOT / "nginx" / "run-nginx.sh")]
        return spawn(self.run_dir, "nginx", self.port, f"http://127.0.0.1:{self.port}/healthz", cmd, env)

    def _wait_healthy(self, proc: Proc, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not answers(proc.health_url):
            if not proc.alive() or time.monotonic() > deadline:
                log = (self.run_dir / f"{proc.name}.log").read_text(errors="replace")[-2000:]
                if not proc.alive() and proc is not self.nginx and lost_its_port(log):
                    raise PortTaken(proc.name)
                raise StackError(f"{proc.name} did not become ready within {timeout:.0f} s:\n{log}")
            time.sleep(0.05)


class Blackhole:
    """A listener that never accepts, its queue full: a connection to it waits until the client times out
    (Linux drops the SYN of a connection its accept queue has no room for)."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.listener = socket.create_server((address, port), backlog=0)
        self.fillers = [socket.create_connection((address, port), timeout=2)]  # a queue of 0 takes one

    def close(self) -> None:
        for sock in (*self.fillers, self.listener):
            sock.close()
