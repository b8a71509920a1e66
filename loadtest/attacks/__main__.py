"""`python -m loadtest.attacks`: the hostile-load scorecard (loadtest/attacks/__init__.py says what it does)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from loadtest.attacks import report
from loadtest.attacks.catalogue import ATTACKS, Attack
from loadtest.attacks.scorecard import score
from loadtest.results import machine, write_results
from loadtest.topology import PROJECT_ROOT


def _nothing(url: str, stop: threading.Event) -> Counter[str]:
    stop.wait()
    return Counter()


NO_ATTACK = Attack("none", "nothing (the reference)", _nothing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.attacks", description=__doc__)
    parser.add_argument("--only", default="", help="run only the attacks whose name contains TEXT", metavar="TEXT")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each attack lasts (default: 20)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "attacks", help="where attacks.md goes")
    parser.add_argument("--page", type=Path, action="append", default=[], help="also copy the table into this page")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: every stack comes down with its processes
    attacks = tuple(a for a in (NO_ATTACK, *ATTACKS) if args.only in a.name)
    with tempfile.TemporaryDirectory(prefix="attacks-") as work:
        rows = score(attacks, args.seconds, Path(work))
    run = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": "python -m loadtest.attacks" + (f" --seconds {args.seconds:g}" if args.seconds != 20 else ""),
        "seconds": args.seconds,
        "rows": rows,
    }
    files = {
        "attacks.json": json.dumps(run, indent=2) + "\n",
        "attacks.md": report.markdown(run),
        "summary.md": report.summary(run),
    }
    write_results(args.out, files, args.page, {"attacks": "attacks.md", "attacks-summary": "summary.md"})
    misses = [f"{row['attack']}: {'; '.join(row['misses'])}" for row in rows if row["misses"]]
    print("\n".join(["attacks: goals missed:", *misses] if misses else ["attacks: every goal met"]))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
