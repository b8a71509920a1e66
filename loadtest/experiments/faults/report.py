"""The scorecard as a Markdown page: one row per configuration and fault, then why calls failed."""

from __future__ import annotations

from loadtest.experiments.faults.catalogue import FAULTS
from loadtest.experiments.faults.scorecard import PRESET
from loadtest.experiments.results import table

COLUMNS = (
    "Store",
    "Policy",
    "Fault",
    "Calls",
    "Retried",
    "Failed",
    "Sessions lost",
    "Acknowledged writes lost",
    "Doubled",
    "Crossed",
    "Most takeovers of a session",
    "Recovered after",
    "Slowest call",
    "Goals",
)


SUMMED = ("calls", "retried", "failed", "sessions_lost", "acknowledged_lost", "doubled", "crossed")
SUMMED_COLUMNS = ("Calls", "Retried", "Failed", "Sessions lost", "Acknowledged writes lost", "Doubled", "Crossed")


def markdown(run: dict) -> str:
    lines = [
        f"`{run['command']}`, {run['date']}, {run['machine']}. The local stack (`{PRESET}`, three instances,",
        f"nginx, redis-server); {run['sessions']} sessions count through nginx (and sample every 5th increment) from",
        "before each fault until every session has counted 10 more times after it, as careful clients: a call that",
        "failed in a way a retry may mend is sent again with the same request id (Retried: such calls; Failed: calls",
        "that failed for good). Doubled: increments applied more than once for one request, with no allowance.",
        "Crossed: answers that resolved another request. Goals are set for the Redis store; the memory store's rows",
        "say what it loses.",
        "",
        table(COLUMNS, map(_row, run["rows"])),
    ]
    for title, field in (("Why calls were sent again", "retry_reasons"), ("Why calls failed for good", "reasons")):
        listed = [row for row in run["rows"] if row.get(field)]
        if listed:
            lines += ["", f"{title}:", ""]
            for row in listed:
                reasons = ", ".join(f"{count} × {reason}" for reason, count in row[field].items())
                lines.append(f"- {row['store']}/{row['policy']}, {row['fault']}: {reasons}")
    started = [row for row in run["rows"] if row.get("unstarted") or row.get("started")]
    if started:
        lines += [
            "",
            "Calls whose first try failed, before and after their answer began (nginx re-sends the first):",
            "",
        ]
        for row in started:
            lines.append(
                f"- {row['store']}/{row['policy']}, {row['fault']}: {row['unstarted']} before, {row['started']} after"
            )
    return "\n".join(lines) + "\n"


def summary(run: dict) -> str:
    """The Redis store's rows (one Redis or redis-ha, either policy) added up: one line per fault, for the README."""
    lines = [
        f"Faults under load with the Redis store, sessions counting as careful clients do (a failed call sent again "
        f"with its request id), every configuration added up ({run['date']}, {run['machine'].split(', Python')[0]}; "
        "every row: [docs/results.md](docs/results.md#fault-scorecard)):",
    ]
    summarised = {fault.name: fault.summary or fault.name for fault in FAULTS}
    faults = {
        summarised.get(row["fault"], row["fault"]): []
        for row in run["rows"]
        if row["store"] != "memory" and not row["not_run"]
    }
    for row in run["rows"]:
        line = summarised.get(row["fault"], row["fault"])
        if line in faults and row["store"] != "memory" and not row["not_run"]:
            faults[line].append(row)
    sums = [[fault, *(f"{sum(row[column] for row in rows):,}" for column in SUMMED)] for fault, rows in faults.items()]
    lines += ["", table(("Fault", *SUMMED_COLUMNS), sums)]
    return "\n".join(lines) + "\n"


def _row(row: dict) -> list[str]:
    head = [row["store"], row["policy"], row["fault"]]
    if row["not_run"]:
        return [*head, f"not run: {row['not_run']}", *[""] * (len(COLUMNS) - 4)]
    recovered = f"{row['recovery_seconds']} s" if row["recovery_seconds"] is not None else "not recovered"
    recovered = recovered if row["failed"] or row["retried"] else "no call failed"
    goals = "; ".join(row["misses"]) if row["misses"] else ("(none set)" if row["store"] == "memory" else "met")
    return [
        *head,
        *(f"{row[column]:,}" for column in SUMMED),
        "" if row.get("most_takeovers") is None else str(row["most_takeovers"]),
        recovered,
        f"{row['longest_seconds']} s",
        goals,
    ]
