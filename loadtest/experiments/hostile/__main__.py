"""`python -m loadtest hostile`: the hostile-input catalogue (its __init__.py says what it does)."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from loadtest.experiments.hostile import report
from loadtest.experiments.hostile.cases import CASES
from loadtest.experiments.hostile.catalogue import BOUNDS, CONFIGURATIONS, QUICK_CONFIGURATIONS, as_json, run
from loadtest.experiments.results import publish, run_header
from loadtest.harness.topology import PROJECT_ROOT

BOUNDS_STATED = (
    f"Bounds lowered so that a case reaches them at once: {BOUNDS['sessions_per_principal']} sessions per "
    "principal (default 100; in the cluster with the Redis store, on each instance with the memory store), "
    f"{BOUNDS['requests_per_second']} requests a second per address (default 2000), "
    f"a requestState TTL of {BOUNDS['state_ttl']:.0f} s (default 300)."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest hostile", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="two configurations: stateful-sse on Redis, stateless-json"
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "hostile", help="where hostile.md goes")
    parser.add_argument(
        "--page",
        type=Path,
        action="append",
        default=[],
        help="a page to copy the results into, at its <!-- hostile: --> or <!-- hostile-summary: --> marker",
    )
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: every stack comes down with its processes
    configurations = QUICK_CONFIGURATIONS if args.quick else CONFIGURATIONS
    with tempfile.TemporaryDirectory(prefix="hostile-") as work:
        rows = run(configurations, Path(work))
    result = {
        **run_header(day_only=True),
        "command": "python -m loadtest hostile" + (" --quick" if args.quick else ""),
        "configurations": [f"{preset}, {store}" for preset, store, _ in configurations],
        "cases": [case.name for case in CASES],
        "bounds": BOUNDS_STATED,
        "rows": as_json(rows),
    }
    markdown = {"hostile.md": report.markdown(result), "summary.md": report.summary(result)}
    shown = {"hostile": "hostile.md", "hostile-summary": "summary.md"}
    publish(args.out, "hostile", result, markdown, shown, args.page, indent=2)
    misses = [f"{row.configuration}, {row.case}: {', '.join(row.misses)}" for row in rows if row.misses]
    print("\n".join(["hostile: missed:", *misses] if misses else ["hostile: no 5xx, hang or crash; others served"]))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
