"""Run every scenario against every configuration and write the failure-rate matrix.

    python -m loadtest matrix [--quick] [--out DIR] [--target auto|compose|local] [--only TEXT]

Configurations: 4 presets x 3 balancing policies with the memory store, the 2 stateful presets x
3 policies with the Redis store, instance-loss runs (app1 killed halfway through the load), and the
4 presets under round-robin with 2026-07-28 clients (which open no session); --quick leaves out ten
configurations that repeat what others show (see `configurations`).
Each runs the same Locust users (one subprocess per configuration) against freshly started
servers: the compose stack when a Docker Engine answers (CPU read from the containers' host pids:
a local Linux engine), else the local stack. DIR gets matrix.md, results.csv, heatmap.png and,
under runs/, Locust's own reports and the CPU of every process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from loadtest.client import capabilities as cap
from loadtest.client.capabilities import MODERN
from loadtest.experiments.matrix import report
from loadtest.experiments.matrix.configs import Config
from loadtest.experiments.matrix.console import Progress, live_failures
from loadtest.experiments.matrix.expectations import VICTIM, expected, verdict
from loadtest.experiments.results import run_header
from loadtest.harness.compose import ComposeStack, build_images, docker_unavailable
from loadtest.harness.cpu import CpuSampler, saturation
from loadtest.harness.stack import Stack, free_port
from loadtest.harness.topology import POLICIES, PRESETS, PROJECT_ROOT

STOP = threading.Event()  # set by SIGTERM
# Instance loss: the Redis store under both policies it serves, and the sticky policy without it for contrast.
LOCUSTFILE = PROJECT_ROOT / "loadtest" / "locustfile.py"
LOSS_RUNS = (("round-robin", "redis"), ("session", "redis"), ("session", "memory"))


@dataclass(frozen=True)
class Settings:
    target: str
    users: int
    duration: int  # seconds of load per configuration

    @classmethod
    def for_run(cls, quick: bool, target: str) -> Settings:
        # One user per scenario class in quick mode, two in full: well below saturation on 2 cores.
        return cls(target=target, users=8 if quick else 16, duration=5 if quick else 30)


class LocalTarget:
    """The local process stack, one per configuration."""

    name = "local"

    def __init__(self, out: Path) -> None:
        self.out = out

    @contextlib.contextmanager
    def serve(self, config: Config) -> Iterator[tuple[str, dict[str, int], Callable[[], None]]]:
        run_dir = self.out / "stacks" / config.slug
        with Stack(
            run_dir=run_dir, preset=config.preset, policy=config.policy, store=config.store, port=free_port()
        ) as stack:
            processes = {proc.name: proc.pid for proc in stack.procs}
            yield stack.url.removesuffix("/mcp"), processes, lambda: os.kill(processes[VICTIM], signal.SIGKILL)

    def close(self) -> None:
        pass


class ComposeTarget:
    """The compose stack, every container recreated for each configuration."""

    name = "compose"

    def __init__(self) -> None:
        self.env = build_images(lambda line: print(f"images: {line}", file=sys.stderr, flush=True))
        self.stack: ComposeStack | None = None

    @contextlib.contextmanager
    def serve(self, config: Config) -> Iterator[tuple[str, dict[str, int], Callable[[], None]]]:
        if self.stack is None or self.stack.profile != config.preset:
            self.close()
            self.stack = ComposeStack(profile=config.preset, port=free_port(), env=self.env)
        self.stack.env = {**self.env, "SESSION_STORE": config.store}
        self.stack.up(policy=config.policy, fresh=True)  # no session or call left over from the last run
        containers = self.stack.containers()
        yield (
            self.stack.url.removesuffix("/mcp"),
            {s.removesuffix(f"-{config.preset}"): c["pid"] for s, c in containers.items()},
            lambda: self.stack.kill(f"{VICTIM}-{config.preset}"),
        )

    def close(self) -> None:
        if self.stack is not None:
            self.stack.down()
            self.stack = None


def configurations(quick: bool) -> list[Config]:
    """Every configuration of a run. `quick` (CI) leaves out ten that repeat what others show: `session` for
    all but stateful-sse (the others behave there as under round-robin or ip-hash), the Redis store but for
    stateful-sse under round-robin and `session`, the loss of an instance with the memory store, and
    2026-07-28 clients on stateful-json and stateless-sse (that path ignores stateful/stateless: one SSE
    and one JSON preset show it)."""
    configs = [
        Config(p, lb, "memory")
        for p in PRESETS
        for lb in POLICIES
        if not (quick and lb == "session" and p != "stateful-sse")
    ]
    redis = [(p, lb) for p in PRESETS if p.startswith("stateful") for lb in POLICIES]
    loss = LOSS_RUNS
    if quick:
        redis = [("stateful-sse", "round-robin"), ("stateful-sse", "session")]
        loss = tuple(run for run in LOSS_RUNS if run[1] == "redis")
    configs += [Config(p, lb, "redis") for p, lb in redis]
    configs += [Config("stateful-sse", lb, store, loss=True) for lb, store in loss]
    modern = ("stateful-sse", "stateless-json") if quick else PRESETS
    return configs + [Config(p, "round-robin", "memory", protocol=MODERN) for p in modern]


def locust_command(
    host: str, users: int, seconds: int, locustfile: Path = LOCUSTFILE, spawn_rate: int | None = None
) -> list[str]:
    """A headless Locust run of our users against `host` that stops by itself; callers add outputs and users.
    Every user starts at once unless `spawn_rate` (users per second) says otherwise."""
    rate = str(spawn_rate or users)
    run = ["--headless", "--only-summary", "-u", str(users), "-r", rate, "--run-time", f"{seconds}s"]
    return [sys.executable, "-m", "locust", "-f", str(locustfile), "--host", host, *run, "--stop-timeout", "5"]


def run_locust(
    config: Config,
    target: tuple[str, dict[str, int], Callable[[], None]],
    settings: Settings,
    out: Path,
    progress: Progress,
) -> dict:
    """One configuration under load; returns Locust's stats, our report and the CPU of every process."""
    host, processes, kill = target
    run = out / "runs" / config.slug
    shutil.rmtree(run, ignore_errors=True)  # never read an earlier run's files
    run.mkdir(parents=True)
    cmd = [
        *locust_command(host, settings.users, settings.duration),
        "--csv",
        str(run / "locust"),
        "--html",
        str(run / "locust.html"),
        "--json-file",
        str(run / "locust"),
        "--mcp-report",
        str(run / "mcp-report.json"),
        "--mcp-protocol",
        config.protocol,
    ]
    with open(run / "locust.log", "wb") as log:
        locust = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            # Measure CPU from the moment the load starts (Locust writes its CSV then), not its start-up.
            while locust.poll() is None and not (run / "locust_stats.csv").exists():
                time.sleep(0.1)
            kill_at = time.monotonic() + settings.duration / 2 if config.loss else None
            with CpuSampler({**processes, "locust": locust.pid}) as sampler:
                while locust.poll() is None:
                    if kill_at is not None and time.monotonic() >= kill_at:
                        kill()
                        kill_at = None
                    progress.show(live_failures=live_failures(run / "locust_stats.csv"))
                    if STOP.wait(1):
                        raise SystemExit(143)
        finally:
            if locust.poll() is None:  # interrupted: do not leave the load running
                locust.terminate()
                locust.wait(timeout=30)
    if locust.returncode not in (0, 1):  # 1 only says some requests failed
        log_tail = (run / "locust.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"locust exited with {locust.returncode} for {config.name}:\n{log_tail}")
    cpu = sampler.result()
    (run / "cpu.json").write_text(json.dumps({name: asdict(use) for name, use in cpu.items()}, indent=2))
    stats = {entry["name"]: entry for entry in json.loads((run / "locust.json").read_text())}
    return {"stats": stats, "report": json.loads((run / "mcp-report.json").read_text()), "cpu": cpu}


def rows_for(config: Config, result: dict) -> list[dict]:
    """One row per capability: counts, failure rate, what was expected, and the verdict."""
    saturated = saturation(result["cpu"])
    rows = []
    for capability, label in cap.CAPABILITIES.items():
        entry = result["stats"].get(capability, {})
        ours = result["report"].get(capability, {"instances": {}, "failures": {}})
        requests, failures = entry.get("num_requests", 0), entry.get("num_failures", 0)
        expectation = expected(
            config.preset, config.policy, config.store, capability, loss=config.loss, protocol=config.protocol
        )
        reasons = sorted(ours["failures"].items(), key=lambda item: -item[1])
        rows.append(
            {
                "preset": config.preset,
                "policy": config.policy,
                "store": config.store,
                "loss": config.loss,
                "protocol": config.protocol,
                "capability": capability,
                "label": label,
                "requests": requests,
                "failures": failures,
                "failure_rate": failures / requests if requests else None,
                "expected": expectation,
                "verdict": verdict(expectation, requests, failures, dict(reasons)),
                "top_failure": reasons[0][0] if reasons else "",
                "reasons": dict(reasons),
                "instances": ours["instances"],
                "p50_ms": locust_percentile(entry),
                "cpu": {name: round(use.average, 1) for name, use in result["cpu"].items()},
                "saturated": saturated or "",
            }
        )
    return rows


def locust_percentile(entry: dict, share: float = 0.5) -> float | None:
    """A percentile (0.5: the median) of one Locust stats entry, by Locust's own rule on its response-time
    histogram (importing locust here would monkey-patch this process with gevent)."""
    histogram = {float(k): v for k, v in entry.get("response_times", {}).items()}
    total = sum(histogram.values())
    below, counted = int(total * share), 0
    for bucket in sorted(histogram, reverse=True):
        counted += histogram[bucket]
        if total - counted <= below:
            return bucket
    return None


def choose_target(name: str, out: Path) -> LocalTarget | ComposeTarget:
    if name == "local" or (name == "auto" and docker_unavailable() is not None):
        return LocalTarget(out)
    reason = docker_unavailable()
    if reason is not None:
        raise SystemExit(f"matrix: --target compose, but {reason}")
    try:
        return ComposeTarget()
    except RuntimeError as error:  # an image build that failed or ran out of time
        raise SystemExit(f"matrix: {error}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest matrix", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per configuration (CI)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "latest", help="results folder")
    parser.add_argument(
        "--target",
        choices=("auto", "compose", "local"),
        default="auto",
        help="auto: compose when a Docker Engine answers, else the local stack",
    )
    parser.add_argument(
        "--only", metavar="TEXT", help="run only the configurations whose name contains TEXT, e.g. /redis"
    )
    args = parser.parse_args(argv)
    # SIGTERM is acted on between steps, never inside a compose command, so the stacks come down whole.
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    args.out.mkdir(parents=True, exist_ok=True)
    target = choose_target(args.target, args.out)
    settings = Settings.for_run(args.quick, target.name)
    configs = [config for config in configurations(args.quick) if args.only is None or args.only in config.name]
    progress = Progress(len(configs))
    rows: list[dict] = []
    try:
        for index, config in enumerate(configs, 1):
            if STOP.is_set():
                raise SystemExit(143)
            progress.begin(index, config)
            with target.serve(config) as served:
                result = run_locust(config, served, settings, args.out, progress)
            config_rows = rows_for(config, result)
            rows += config_rows
            progress.finish(sum(row["failures"] for row in config_rows))
    finally:
        target.close()
    run_info = {
        **run_header(),
        "target": settings.target,
        "users": settings.users,
        "duration_s": settings.duration,
        "mode": "quick" if args.quick else "full",
    }
    report.write_all(rows, run_info, args.out)
    print(f"matrix: wrote {args.out / 'matrix.md'}, results.csv and heatmap.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
