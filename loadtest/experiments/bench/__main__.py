"""`python -m loadtest bench`: what each configuration costs, against the floor and the bare SDK.

    python -m loadtest bench [--presets stateful-json,...] [--seconds 5] [--rounds 5] [--calls 1000]
                             [--clients 4] [--skip-redis-store] [--skip-loops] [--skip-peer]
                             [--idle-sessions 1000,10000]
                             [--layer-seconds 20] [--profile-seconds 10]
                             [--out results/bench] [--page README.md ...]
    python -m loadtest bench --render results/bench/bench.json [--page ...]   # the tables again, no measuring
    python -m loadtest bench --render results/bench/bench.json --remeasure-layer [--page ...]  # and our layer's

1. One instance called directly (bench/instances.py): calls/s, CPU per call and latency of the
   floor, the bare SDK and ours, per preset and protocol; asyncio+h11 against uvloop+httptools; and FastMCP 4
   (its own venv, .venv-peer) against ours, each behind nginx.
2. The Redis store on the local stack (bench/redis_store.py): a forwarded call against a local
   one, nginx's hop after a takeover against a call nginx sends to the owner, and each balancing policy.
3. Idle sessions (bench/idle_sessions.py): memory per session in the server, and in Redis; and where
   the server's goes, by source file (tracemalloc, loadtest/experiments/bench/traced.py).
4. Our layer in one process (bench/layer_cost.py): the bare SDK's app and ours (both stores)
   driven through ASGI in alternating blocks of calls, the precise figure of what the layer adds.
5. With --profile-seconds: pyinstrument profiles of the bare SDK, ours and ours with the Redis store on
   stateful-json under the same load, and of a relay and its owner (bench/profiles.py), in the
   output folder's profiles/; and py-spy's native samples of the relay, system calls included
   (bench/native_profile.py).

Writes bench.md, bench.json and bench.png to the output folder, and the tables into each `--page`.
A benchmark, not a test: it asserts nothing about speed; compare rows of one run, on one machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from loadtest.experiments.bench import (
    idle_sessions,
    instances,
    layer_cost,
    native_profile,
    profiles,
    redis_store,
    report,
)
from loadtest.experiments.bench.wrk import WrkError
from loadtest.experiments.results import publish, run_header
from loadtest.harness.arguments import increasing_counts
from loadtest.harness.topology import PRESETS, PROJECT_ROOT


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render is not None:
        result = json.loads(args.render.read_text())
        if args.remeasure_layer:  # the rest stays as measured then; the layer's figures say when they were
            result["layer_cost"] = layer_cost.run(args.layer_seconds)
    else:
        try:
            result = _measure(args)
        except (WrkError, RuntimeError) as exc:  # a failing call, not a number: say so
            print(f"bench: could not measure: {exc}", file=sys.stderr)
            return 1
    _write(result, args.out, args.page)
    return 0


def _measure(args: argparse.Namespace) -> dict:
    run = run_header()
    settings = {"presets": args.presets, "seconds": args.seconds, "rounds": args.rounds, "calls": args.calls}
    settings["idle_sessions"] = args.idle_sessions
    result: dict = {"run": run, "settings": settings | {"clients": args.clients}}
    one_instance = instances.Settings(
        tuple(args.presets.split(",")), args.seconds, args.rounds, not args.skip_loops, not args.skip_peer
    )
    with tempfile.TemporaryDirectory() as work:
        result["instances"] = instances.measure(one_instance, Path(work))
        if not args.skip_redis_store:
            result["forwarding"] = redis_store.forwarding(args.calls, args.seconds, Path(work))
            result["nginx_hop"] = redis_store.nginx_hop(args.calls, Path(work))
            result["policies"] = redis_store.policies(args.calls, args.clients, Path(work))
        if args.idle_sessions:
            result["idle_sessions"] = idle_sessions.measure(args.idle_sessions, Path(work))
            traced = min(args.idle_sessions[-1], idle_sessions.BREAKDOWN_SESSIONS)
            result["idle_breakdown"] = idle_sessions.breakdown(traced, Path(work))
        if args.layer_seconds:
            result["layer_cost"] = layer_cost.run(args.layer_seconds)
        if args.profile_seconds:
            written = profiles.profile(instances.profiled(), args.profile_seconds, args.out / "profiles", Path(work))
            if not args.skip_redis_store:
                written += profiles.redis_store(args.profile_seconds, args.out / "profiles", Path(work))
                written += profiles.relay(args.profile_seconds, args.out / "profiles", Path(work))
                written.append(native_profile.relay(args.profile_seconds, args.out / "profiles", Path(work)))
            result["profiles"] = [str(path.relative_to(args.out)) for path in written]
    return result


def _write(result: dict, out: Path, pages: list[Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report.instances_chart(result["instances"], out / "bench.png")
    page = _markdown(result)
    summary = report.summary_markdown(
        result["instances"], result.get("layer_cost"), result["run"]["date"][:10], result["run"]["machine"]
    )
    shown = {"bench": "bench.md", "bench-summary": "summary.md"}
    publish(out, "bench", result, {"bench.md": page, "summary.md": summary}, shown, pages, end="")
    print(page, end="")
    print(f"bench: wrote {out}/bench.md, summary.md, bench.json and bench.png")


def _markdown(result: dict) -> str:
    run, settings = result["run"], result["settings"]
    one_instance = report.instances_markdown(result["instances"], settings["seconds"], settings["rounds"])
    parts = [f"Measured {run['date']} on {run['machine']}.", "", one_instance]
    if "forwarding" in result:
        parts += [
            "",
            redis_store.markdown(
                result["forwarding"], result.get("nginx_hop", []), result["policies"], settings["clients"]
            ),
        ]
    if result.get("idle_sessions"):
        parts += ["", idle_sessions.markdown(result["idle_sessions"])]
    if result.get("idle_breakdown"):
        parts += ["", idle_sessions.breakdown_markdown(result["idle_breakdown"])]
    if result.get("layer_cost"):
        parts += ["", layer_cost.markdown(result["layer_cost"])]
    if result.get("profiles"):
        listed = ", ".join(f"[{Path(path).name}](../results/bench/{path})" for path in result["profiles"])  # docs/
        what = "pyinstrument, saturating load; stateful-json (both stores), and a relay with its owner on stateful-sse"
        what += "; the relay's again by py-spy, system calls included"
        parts += ["", f"Profiles ({what}): {listed}.", ""]
    return "\n".join(parts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest bench", description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets of the one-instance runs")
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run (whole seconds)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the one-instance runs (medians)")
    parser.add_argument("--calls", type=int, default=1000, help="calls per Redis-store measurement")
    parser.add_argument("--clients", type=int, default=4, help="concurrent sessions in the policy runs")
    parser.add_argument("--skip-redis-store", action="store_true", help="only the one-instance runs")
    parser.add_argument("--skip-loops", action="store_true", help="no asyncio+h11 against uvloop+httptools")
    parser.add_argument("--skip-peer", action="store_true", help="no FastMCP 4 (which needs a venv of its own)")
    parser.add_argument(
        "--idle-sessions",
        type=increasing_counts,
        default=(1000, 10_000),
        help="comma-separated numbers of idle sessions to measure memory at (0: none)",
    )
    parser.add_argument(
        "--layer-seconds", type=float, default=20.0, help="our layer against the SDK in one process this long (0: no)"
    )
    parser.add_argument("--profile-seconds", type=int, default=0, help="also profile the SDK and ours this long")
    parser.add_argument("--render", type=Path, help="measure nothing: write the tables again from this bench.json")
    parser.add_argument(
        "--remeasure-layer", action="store_true", help="with --render: measure our layer in one process again"
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "bench")
    parser.add_argument(
        "--page", type=Path, action="append", default=[], help="a Markdown page to copy the tables into"
    )
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
