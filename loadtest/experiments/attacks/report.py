"""The hostile-load scorecard as Markdown, and its one line for the README."""

from __future__ import annotations

from collections import Counter

from loadtest.experiments.results import table

MIB_LIMITS = {"nginx": 128, "instance": 512, "redis": 384}  # the containers' memory limits in compose
COLUMNS: tuple[str, ...] = ("Attack", "Attacker's traffic", "What it got", "Victim calls", "Victim failures")
COLUMNS += ("Peak MiB: nginx, instance, Redis", "Died")


def markdown(run: dict) -> str:
    where = (
        "compose's containers (new for each attack, with their memory limits: nginx "
        f"{MIB_LIMITS['nginx']} MiB, an instance {MIB_LIMITS['instance']} MiB, Redis {MIB_LIMITS['redis']} MiB); "
        "the harness stands in for a proxy in front of nginx, which trusts it (NGINX_TRUSTED_PROXIES), and names "
        "each client in X-Forwarded-For: the attacker 198.51.100.1, the victim 198.51.100.2 and .3"
        if run["where"] == "compose"
        else "a local stack of its own with authentication on, each client with a token of its own: the instances' "
        "bounds count principals (the attacker mallory, the victim alice and bob), nginx's count addresses"
        if run["where"] == "local-auth"
        else "a local stack of its own (processes; compose's limits would be nginx "
        f"{MIB_LIMITS['nginx']} MiB, an instance {MIB_LIMITS['instance']} MiB, Redis {MIB_LIMITS['redis']} MiB); "
        "the attacker connects from 127.0.0.1, the victim from 127.0.0.2 and 127.0.0.3"
    )
    settings = "" if run["where"] == "local-auth" else ", authentication off: every bound is per address"
    lines = [
        f"Each attack from one client address through nginx for {run['seconds']:.0f} s, against {where}. "
        f"Stateful-sse, the session policy, the Redis store{settings}. The "
        f"victim uses every capability before, during and after the attack ({run['date']}, {run['machine']}; "
        f"`{run['command']}`). Peak memory is resident: of all of a process's workers, or a container's.",
        "",
        table(COLUMNS, map(_row, run["rows"])),
    ]
    failures = sum((Counter(row["victim_failures"]) for row in run["rows"]), Counter())
    if failures:
        lines += ["", "Victim failures: " + "; ".join(f"{why} ({n})" for why, n in failures.items())]
    return "\n".join(lines) + "\n"


def _row(row: dict) -> list[object]:
    got = ", ".join(f"{what}: {count}" for what, count in row["traffic"].items()) or "-"
    failures = str(row["victim_failed"]) if not row["victim_failed"] else f"**{row['victim_failed']}**"
    peak = row["peak_mib"]
    memory = ", ".join(f"{peak.get(kind, 0):.0f}" for kind in ("nginx", "instance", "redis"))
    gone = ", ".join(row["died"]) or "none"
    return [row["attack"], row["what"], got, row["victim_calls"], failures, memory, gone]


def summary(run: dict) -> str:
    rows = run["rows"]
    calls = sum(row["victim_calls"] for row in rows)
    failed = sum(row["victim_failed"] for row in rows)
    died = sorted({name for row in rows for name in row["died"]})
    attacks = len([row for row in rows if row["attack"] != "none"])
    verdict = "every goal met" if not failed and not died else "goals missed"
    where = "compose" if run["where"] == "compose" else "the local stack"
    return (
        f"**Hostile load** ({run['date']}, {run['machine']}, {where}): {attacks} attacks from one address; "
        f"a victim on other addresses made {calls:,} calls, {failed} failed; "
        f"{'no process died' if not died else 'died: ' + ', '.join(died)} ({verdict}; "
        f"[docs/results.md](docs/results.md#hostile-load))."  # the README's end marker follows on this line
    )
