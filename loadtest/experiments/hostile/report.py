"""The catalogue as Markdown: one row per case, the answer every configuration gave (or each group's, where
they differ), and whether another client was served after it; and the one-line summary for the README."""

from __future__ import annotations

from collections import defaultdict

from loadtest.experiments.results import table

ERROR_SHOWN = 110  # characters of an error message in the table


def markdown(run: dict) -> str:
    rows, configurations = run["rows"], run["configurations"]
    answers = []
    for case in run["cases"]:
        of_case = [row for row in rows if row["case"] == case]
        served = all(row["others_served"] and row["processes_alive"] for row in of_case)
        answers.append([case, _answers(of_case, configurations), "yes" if served else "**no**"])
    misses = [f"{row['configuration']}, {row['case']}: {', '.join(row['misses'])}" for row in rows if row["misses"]]
    lines = [
        f"{len(run['cases'])} cases through nginx against {len(configurations)} configurations "
        f"({'; '.join(configurations)}), authentication on ({run['date']}, {run['machine']}; "
        f"`{run['command']}`). {run['bounds']}",
        "",
        table(("Case", "Answer", "Another client served, no process died"), answers),
        "",
        "Misses: " + "; ".join(misses) if misses else "No case was answered 5xx, hung, or stopped another client.",
    ]
    return "\n".join(lines) + "\n"


def summary(run: dict) -> str:
    rows = run["rows"]
    missed = sum(1 for row in rows if row["misses"])
    verdict = (
        "none was answered 5xx, hung or stopped another client"
        if not missed
        else f"{missed} missed ({', '.join(sorted({m for row in rows for m in row['misses']}))})"
    )
    return (
        f"Hostile input ({run['date']}): {len(run['cases'])} cases (malformed, oversized, forged, replayed, "
        f"slow, flooding) through nginx against {len(run['configurations'])} configurations: {verdict} "
        "([every answer](docs/results.md#hostile-input)).\n"
    )


def _answers(rows: list[dict], configurations: list[str]) -> str:
    """The answer, once when every configuration gave it, else each with the configurations that gave it."""
    groups: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        groups[_answer(row)].append(row["configuration"])
    if len(groups) == 1:
        return next(iter(groups))
    return "<br>".join(f"{answer} ({'; '.join(where)})" for answer, where in groups.items())


def _answer(row: dict) -> str:
    status = row["status"] if row["status"] is not None else "no HTTP answer"
    error = row["error"] if len(row["error"]) <= ERROR_SHOWN else row["error"][: ERROR_SHOWN - 1] + "…"
    return f"{status} `{error.replace('|', '/')}`"
