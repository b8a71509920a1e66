"""The matrix as a person reads it: a Markdown table, the same data as CSV, a heatmap, and the seed's
claims next to the measurements with every disagreement listed."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from loadtest.client import capabilities as cap
from loadtest.client.capabilities import LEGACY, MODERN
from loadtest.experiments.matrix import heatmap
from loadtest.experiments.matrix.configs import Config, by_cell, configurations
from loadtest.experiments.matrix.expectations import (
    NEEDS_AFFINITY,
    NO_SESSIONS,
    SEED_CLAIMS,
    SEED_SCALES_WITHOUT_AFFINITY,
    UNSUPPORTED,
    VICTIM,
)
from loadtest.experiments.results import publish, table
from loadtest.harness.topology import PRESETS

CSV_FIELDS = [
    "protocol",
    "preset",
    "policy",
    "store",
    "loss",
    "capability",
    "label",
    "requests",
    "failures",
    "failure_rate",
]
CSV_FIELDS += ["expected"]
CSV_FIELDS += ["verdict", "top_failure", "reasons", "instances", "p50_ms", "cpu", "saturated"]


def write_all(rows: list[dict], run_info: dict, out: Path, pages: Sequence[Path] = ()) -> None:
    """rows.json, matrix.md, ways.md (a full run's), results.csv and heatmap.png into `out`; the tables into `pages`."""
    files, shown = {"matrix.md": markdown(rows, run_info)}, {"matrix": "matrix.md"}
    ways = comparison_section(rows)
    if ways:  # a partial run (--only) has nothing to compare
        files["ways.md"] = f"Measured {run_info['date']} ({run_info['mode']} run). " + "\n".join(ways) + "\n"
        shown["ways"] = "ways.md"
    else:
        (out / "ways.md").unlink(missing_ok=True)  # never leave an earlier run's comparison beside this run
    publish(out, "rows", {"run": run_info, "rows": rows}, files, shown, pages, end="")
    write_csv(rows, out / "results.csv")
    heatmap.write(rows, out / "heatmap.png")


def main(argv: list[str] | None = None) -> int:
    """`python -m loadtest.experiments.matrix.report DIR [--page docs/results.md]`: rewrite the tables, CSV and
    heatmap from DIR/rows.json, and optionally a page's copies of the tables (between its matrix and ways markers)."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.experiments.matrix.report")
    parser.add_argument("out", type=Path)
    parser.add_argument("--page", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    saved = json.loads((args.out / "rows.json").read_text())
    write_all(saved["rows"], saved["run"], args.out, args.page)
    return 0


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "instances": json.dumps(row["instances"], sort_keys=True),
                    "cpu": json.dumps(row["cpu"]),
                    "reasons": json.dumps(row.get("reasons", {})),
                }
            )


def cell(row: dict) -> str:
    if row["expected"] == NO_SESSIONS:
        return NO_SESSIONS if row["verdict"] == "ok" else f"**{row['requests']} requests unexpected**"
    if not row["requests"]:
        return "no requests"
    percent = 100 * row["failure_rate"]
    shown = f"{percent:.1f}" if 0 < percent < 1 else f"{percent:.0f}"  # 1 failure in 400 is not "0%"
    text = f"{shown}% ({row['failures']}/{row['requests']})"
    if row["verdict"] == "unexpected":
        return f"**{text} unexpected**"
    if row["expected"] in (UNSUPPORTED, NEEDS_AFFINITY):
        return f"{text} {row['expected']}"
    return text


def markdown(rows: list[dict], run_info: dict) -> str:
    by_key = by_cell(rows)
    lines = [
        f"Measured {run_info['date']} on {run_info['machine']}, against the {run_info['target']} stack: "
        f"{run_info['users']} Locust users (an equal share per scenario), {run_info['duration_s']} s per "
        f"configuration ({run_info['mode']} run). Cells: failed operations / operations.",
        "",
        _capability_table(configurations(rows, loss=False), by_key),
    ]
    lost = configurations(rows, loss=True)
    if lost:
        lines += [
            "",
            f"**Instance loss:** `{lost[0].preset}`, with `{VICTIM}` killed (SIGKILL, or `docker kill`) halfway through"
            " the load. Every failure is listed with its reason below the table.",
            "",
            _capability_table(lost, by_key),
            "",
            *loss_reasons(rows),
        ]
    load = [_load(config, [r for r in rows if Config.of(r) == config]) for config in configurations(rows)]
    lines += [
        "",
        "Which instance answered (share of all operations) and the busiest process:",
        "",
        table(("Configuration", "Instances", "Busiest process (average % of one core)"), load),
        "",
        *seed_section(rows),
    ]
    return "\n".join(lines) + "\n"


def _capability_table(configs: list[Config], by_key: dict) -> str:
    """A row per configuration (its protocol, preset, policy and store), a cell per capability."""
    rows = []
    for config in configs:
        cells = [cell(by_key[(*config, capability)]) for capability in cap.CAPABILITIES]
        rows.append([config.protocol, config.preset, config.policy, config.store, *cells])
    return table(("Protocol", "Preset", "Policy", "Store", *cap.CAPABILITIES.values()), rows)


def _load(config: Config, config_rows: list[dict]) -> list[str]:
    """Which instance answered, and the busiest process."""
    cpu = config_rows[0]["cpu"]
    busiest = max(cpu, key=cpu.get)
    return [
        config.title,
        _shares(config_rows),
        f"{busiest} {cpu[busiest]:.0f}%, {config_rows[0]['saturated'] or 'not saturated'}",
    ]


# The three ways to scale, on the same preset and load: (title, policy, store, protocol).
WAYS = (
    ("sticky sessions: `session` policy, memory store", "session", "memory", LEGACY),
    ("Redis session store, round-robin", "round-robin", "redis", LEGACY),
    ("2026-07-28 clients, round-robin", "round-robin", "memory", MODERN),
)
WAYS_PRESET = "stateful-sse"


def comparison_section(rows: list[dict]) -> list[str]:
    """The three ways to scale side by side: failure rate and median latency per capability."""
    by_key = by_cell(rows)
    ways = [(title, Config(WAYS_PRESET, policy, store, False, protocol)) for title, policy, store, protocol in WAYS]
    if any((*config, cap.BASIC) not in by_key for _, config in ways):
        return []  # a partial run (--only): nothing to compare
    lines = [
        f"Three ways to scale `{WAYS_PRESET}` over three instances, under the same load (failed operations,"
        " then the median latency of one operation as Locust measured it):",
    ]
    compared = []
    for capability, label in cap.CAPABILITIES.items():
        cells = []
        for _, config in ways:
            row = by_key[(*config, capability)]
            if row["expected"] == NO_SESSIONS:
                cells.append(NO_SESSIONS)
            elif not row["requests"]:
                cells.append("no requests")
            else:
                median = f"{row['p50_ms']:.0f} ms" if row["p50_ms"] is not None else "–"
                cells.append(f"{100 * row['failure_rate']:.0f}% · {median}")
        compared.append([label, *cells])
    return [*lines, "", table(("Capability", *(title for title, _ in ways)), compared)]


def loss_reasons(rows: list[dict]) -> list[str]:
    """Every failure of the instance-loss runs, by reason: what a user would see when an instance dies."""
    lines = []
    for row in rows:
        if row.get("loss") and row["failures"]:
            reasons = ", ".join(f"{n} × {reason}" for reason, n in row.get("reasons", {}).items())
            lines.append(f"- {Config.of(row).title}, {row['label']}: {reasons or row['top_failure']}")
    return lines or ["- no failures"]


def seed_section(rows: list[dict]) -> list[str]:
    """The seed's claims beside what was measured under ip_hash (sticky) and round-robin."""
    sticky = {
        (r["preset"], r["capability"]): r
        for r in rows
        if r["policy"] == "ip-hash" and r["store"] == "memory" and not r.get("loss") and Config.of(r).protocol == LEGACY
    }
    lines = [
        "The seed's claims (✓ works, ✗ does not, – it says nothing) against the measurements under `ip_hash`"
        " (✓ no failure, ✗ every operation failed, otherwise the failure rate):",
    ]
    claims, disagreements = [], []
    for capability, label in cap.CAPABILITIES.items():
        cells = []
        for preset in PRESETS:
            claim, row = SEED_CLAIMS[capability][preset], sticky.get((preset, capability))
            measured = _measured(row)
            cells.append(f"seed {_mark(claim)}, measured {measured}")
            if claim is not None and measured != "–" and measured != _mark(claim):
                disagreements.append(
                    f"{label} on `{preset}`: the seed says it {'works' if claim else 'does not work'}; "
                    f"measured {100 * row['failure_rate']:.0f}% failures ({row['top_failure'] or 'no failures'})"
                )
        claims.append([label, *cells])
    lines += ["", table(("Capability", *PRESETS), claims)]
    for preset, claim in SEED_SCALES_WITHOUT_AFFINITY.items():
        basic = rows_where(rows, preset=preset, policy="round-robin", store="memory", capability=cap.BASIC)
        basic = [row for row in basic if Config.of(row).protocol == LEGACY]
        if basic and basic[0]["requests"] and (basic[0]["failures"] == 0) != claim:
            measured = _mark(basic[0]["failures"] == 0)
            disagreements.append(f"scaling under round-robin on `{preset}`: seed {_mark(claim)}, measured {measured}")
    lines += ["", "Disagreements with the seed:", ""]
    lines += [f"- {d}" for d in disagreements] or ["- none"]
    return lines


def rows_where(rows: list[dict], **match: str) -> list[dict]:
    return [r for r in rows if all(r[key] == value for key, value in match.items())]


def _shares(config_rows: list[dict]) -> str:
    totals: dict[str, int] = {}
    for row in config_rows:
        for instance, count in row["instances"].items():
            totals[instance] = totals.get(instance, 0) + count
    everything = sum(totals.values()) or 1
    return ", ".join(f"{instance} {100 * n / everything:.0f}%" for instance, n in sorted(totals.items()))


def _measured(row: dict | None) -> str:
    if row is None or not row["requests"]:
        return "–"
    if row["failures"] in (0, row["requests"]):
        return _mark(row["failures"] == 0)
    return f"{100 * row['failure_rate']:.0f}% failed"


def _mark(value: bool | None) -> str:
    return "–" if value is None else "✓" if value else "✗"


if __name__ == "__main__":
    sys.exit(main())
