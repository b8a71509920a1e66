"""`python -m loadtest faults`: the fault scorecard (its __init__.py says what it does)."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from loadtest.experiments.faults import report
from loadtest.experiments.faults.catalogue import FAULTS
from loadtest.experiments.faults.scorecard import CONFIGURATIONS, QUICK_CONFIGURATIONS, as_json, score
from loadtest.experiments.results import publish, run_header
from loadtest.harness.topology import PROJECT_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest faults", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short run: Redis store, faults of a few seconds")
    parser.add_argument("--only", default="", help="run only the faults whose name contains TEXT", metavar="TEXT")
    parser.add_argument("--sessions", type=int, default=6, help="sessions counting through nginx (default: 6)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "faults", help="where faults.md goes")
    parser.add_argument(
        "--page",
        type=Path,
        action="append",
        default=[],
        help="a page to copy the results into, at its <!-- faults: --> or <!-- scorecard: --> marker (repeatable)",
    )
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: every stack comes down with its processes
    faults = tuple(fault for fault in FAULTS if (fault.quick or not args.quick) and args.only in fault.name)
    configurations = QUICK_CONFIGURATIONS if args.quick else CONFIGURATIONS
    with tempfile.TemporaryDirectory(prefix="faults-") as work:
        rows = score(faults, configurations, args.sessions, Path(work))
    run = {
        **run_header(day_only=True),
        "command": "python -m loadtest faults" + (" --quick" if args.quick else ""),
        "sessions": args.sessions,
        "rows": as_json(rows),
    }
    markdown = {"faults.md": report.markdown(run), "summary.md": report.summary(run)}
    shown = {"faults": "faults.md", "scorecard": "summary.md"}
    publish(args.out, "faults", run, markdown, shown, args.page, indent=2)
    misses = [f"{row.store}/{row.policy}, {row.fault}: {'; '.join(row.misses)}" for row in rows if row.misses]
    print("\n".join(["faults: goals missed:", *misses] if misses else ["faults: every goal met"]))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
