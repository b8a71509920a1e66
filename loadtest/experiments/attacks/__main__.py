"""`python -m loadtest attacks`: the hostile-load scorecard (its __init__.py says what it does)."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from loadtest.experiments.attacks import report, targets
from loadtest.experiments.attacks.catalogue import ATTACKS, Attack
from loadtest.experiments.attacks.clients import Client
from loadtest.experiments.attacks.scorecard import score
from loadtest.experiments.results import publish, run_header
from loadtest.harness.compose import build_images
from loadtest.harness.topology import PROJECT_ROOT


def _nothing(url: str, attacker: Client, stop: threading.Event) -> Counter[str]:
    stop.wait()
    return Counter()


NO_ATTACK = Attack("none", "nothing (the reference)", _nothing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest attacks", description=__doc__)
    parser.add_argument("--only", default="", help="run only the attacks whose name contains TEXT", metavar="TEXT")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--compose", action="store_true", help="against docker compose's containers, not the local stack"
    )
    where.add_argument("--auth", action="store_true", help="the local stack with tokens: each client a principal")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each attack lasts (default: 20)")
    parser.add_argument("--out", type=Path, help="where attacks.md goes (default: results/attacks/<where>)")
    parser.add_argument("--page", type=Path, action="append", default=[], help="also copy the table into this page")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: every stack comes down with its processes
    attacks = tuple(a for a in (NO_ATTACK, *ATTACKS) if args.only in a.name)
    with tempfile.TemporaryDirectory(prefix="attacks-") as work:
        if args.compose:
            images = build_images(lambda line: None)
            rows = score(attacks, args.seconds, lambda name: targets.compose(images))
        else:
            rows = score(attacks, args.seconds, lambda name: targets.local(Path(work) / name, auth=args.auth))
    run = {
        **run_header(day_only=True),
        "command": "python -m loadtest attacks"
        + (" --compose" if args.compose else " --auth" if args.auth else "")
        + (f" --seconds {args.seconds:g}" if args.seconds != 20 else ""),
        "where": "compose" if args.compose else "local-auth" if args.auth else "local",
        "seconds": args.seconds,
        "rows": rows,
    }
    markdown = {"attacks.md": report.markdown(run), "summary.md": report.summary(run)}
    out = args.out or PROJECT_ROOT / "results" / "attacks" / run["where"]
    shown = {"attacks": "attacks.md", "attacks-summary": "summary.md"}
    if run["where"] != "local":  # its table alone, at its own marker
        shown = {f"attacks-{run['where']}": "attacks.md"}
    publish(out, "attacks", run, markdown, shown, args.page, indent=2)
    misses = [f"{row['attack']}: {'; '.join(row['misses'])}" for row in rows if row["misses"]]
    print("\n".join(["attacks: goals missed:", *misses] if misses else ["attacks: every goal met"]))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
