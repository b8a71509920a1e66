"""The benchmark's tables (Markdown) and chart (PNG) from its rows."""

from __future__ import annotations

from pathlib import Path

from loadtest.experiments.results import png_chart, table

COLOURS = {
    "floor": "#9e9e9e",
    "bare SDK": "#4c72b0",
    "ours": "#dd8452",
    "ours, Redis store": "#c44e52",
    "ours, access log on": "#55a868",
    "FastMCP 4": "#937860",
}
COLUMNS: tuple[str, ...] = ("Preset, protocol", "Server", "calls/s", "CPU per call (min-max)", "vs bare SDK")
COLUMNS += ("vs floor", "p50", "p99", "wrk")


def instances_markdown(rows: list[dict], seconds: int, rounds: int) -> str:
    groups = list(dict.fromkeys(row["group"] for row in rows))
    lines = [
        "One instance called by wrk, directly (the last group: through nginx): `whoami`, over 8 sessions where the",
        "preset and protocol have sessions. Calls/s and CPU per call with 16 connections (saturated); p50/p99 with 4",
        f"connections each waiting 20 ms between calls (moderate load). Medians of {rounds} rounds of {seconds:g} s,",
        "taken in turn; CPU per call is the serving process's CPU (and Redis's, where one serves) over the",
        "saturated run divided by its calls (nginx's apart, where nginx is in front). wrk's CPU is its own, in %",
        "of one core.",
        "",
        table(COLUMNS, (_cells(row) for group in groups for row in rows if row["group"] == group)),
    ]
    return "\n".join(lines) + "\n"


def _cells(row: dict) -> list[str]:
    low, high = row["cpu_ms_per_call_spread"]
    redis = f" + Redis {row['redis_cpu_ms_per_call']:.3f}" if row["redis_cpu_ms_per_call"] is not None else ""
    if row.get("nginx_cpu_ms_per_call") is not None:
        redis += f" + nginx {row['nginx_cpu_ms_per_call']:.3f}"
    return [
        row["group"],
        row["subject"],
        f"{row['calls_per_s']:.0f}",
        f"{row['cpu_ms_per_call']:.3f} ms{redis} ({low:.3f}-{high:.3f})",
        f"{row['cpu_vs_sdk']:.2f}x CPU, {row['calls_vs_sdk']:.2f}x calls/s",
        f"{row['cpu_vs_floor']:.1f}x CPU",
        f"{row['p50_ms']:.2f} ms",
        f"{row['p99_ms']:.2f} ms",
        f"{100 * row['wrk_cpu_share']:.0f}%",
    ]


def instances_chart(rows: list[dict], path: Path) -> None:
    """CPU per call of each server, one cluster of bars per preset and protocol (the event-loop group too)."""
    groups = list(dict.fromkeys(row["group"] for row in rows))
    with png_chart(path, (max(8, 1.6 * len(groups)), 4.5)) as (_, axes):
        width = 0.8 / max(sum(1 for row in rows if row["group"] == group) for group in groups)
        for index, group in enumerate(groups):
            members = [row for row in rows if row["group"] == group]
            for offset, row in enumerate(members):
                x = index + (offset - (len(members) - 1) / 2) * width
                name, _, variant = row["subject"].partition(", asyncio")
                name, _, fast = name.partition(", uvloop")
                name = name.removesuffix(", behind nginx")
                axes.bar(x, row["cpu_ms_per_call"], width * 0.95, color=COLOURS.get(name, "#8172b2"), label=name)
                if variant or fast:  # the event-loop group: say which loop each bar ran on
                    axes.text(x, row["cpu_ms_per_call"], "asyncio" if variant else "uvloop", ha="center", fontsize=5)
        handles, names = axes.get_legend_handles_labels()
        unique = dict(zip(names, handles, strict=True))
        axes.legend(unique.values(), unique.keys(), fontsize=7)
        labels = [group.replace(", ", "\n", 1).replace(" (", "\n(") for group in groups]
        axes.set_xticks(range(len(groups)), labels, fontsize=7)
        axes.set_ylabel("server CPU per call (ms)")
        axes.set_title("CPU per whoami call: floor, bare SDK, ours and FastMCP 4, one instance")


def summary_markdown(rows: list[dict], layer: dict | None, date: str, machine: str) -> str:
    """The README's lines: the chart, what our layer adds to a stateful-json call (`layer`, measured in one
    process: loadtest/experiments/bench/layer_cost.py; else the one-instance figures), and what uvloop saves the SDK."""
    machine = machine.split(", Python")[0]
    by = {(row["group"], row["subject"]): row for row in rows}
    group = "stateful-json, 2025-11-25"
    sdk, ours = by.get((group, "bare SDK")), by.get((group, "ours"))
    if sdk is None or ours is None:
        return f"Benchmark ({date}): see [every figure](docs/results.md#performance).\n"
    redis = by.get((group, "ours, Redis store"))
    loops = "event loop and HTTP parser (stateful-json)"
    slow, fast = by.get((loops, "bare SDK, asyncio+h11")), by.get((loops, "bare SDK, uvloop+httptools"))
    text = (
        f"![CPU per call of the floor, the bare SDK and ours](results/bench/bench.png) "
        f"One `whoami` call on stateful-json ({date}, {machine}) costs the bare SDK {sdk['cpu_ms_per_call']:.2f} ms "
        "of CPU on one instance"
    )
    if layer is not None:
        ratios = {row["subject"]: row["vs_sdk"] for row in layer["rows"]}
        when = f" on {layer['date'][:10]}" if layer.get("date", date)[:10] != date else ""
        text += (
            f"; our layer makes that {ratios['ours']:.2f}x, {ratios['ours, Redis store']:.2f}x with the Redis "
            f"store (measured{when} in one process, where this shared machine's swings move both alike)"
        )
    else:
        text += f"; ours {ours['cpu_ms_per_call']:.2f} ms ({ours['cpu_vs_sdk']:.2f}x)"
        if redis is not None:
            text += f", {redis['cpu_ms_per_call']:.2f} ms with the Redis store ({redis['cpu_vs_sdk']:.2f}x)"
    if slow is not None and fast is not None:
        text += f"; uvloop and httptools take the SDK's from {slow['cpu_ms_per_call']:.2f} ms"
        text += f" to {fast['cpu_ms_per_call']:.2f} ms"
    return text + " ([every figure](docs/results.md#performance)).\n"
