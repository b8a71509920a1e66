"""What a run adds to Locust's own stats: which MCP instance answered each operation (a web UI
tab), and why operations failed; both written as JSON at the end with --mcp-report.

A failure rate says nothing about load balancing when every request reached one instance;
this says where the requests went.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from locust import events

COUNTS: defaultdict[str, Counter] = defaultdict(Counter)
FAILURES: defaultdict[str, Counter] = defaultdict(Counter)
TAB = "mcp-instances"


def install() -> None:
    events.init_command_line_parser.add_listener(_add_arguments)
    events.request.add_listener(_count)
    events.reset_stats.add_listener(_reset)
    events.init.add_listener(_add_web_ui_tab)
    events.quitting.add_listener(_write_report)


def rows() -> list[dict]:
    table = []
    for name, counts in sorted(COUNTS.items()):
        total = sum(counts.values())
        shares = ", ".join(f"{instance} {100 * n / total:.0f}%" for instance, n in sorted(counts.items()))
        answered = [instance for instance in counts if instance != "none"]
        table.append({"name": name, "requests": total, "instances": len(answered), "shares": shares})
    return table


def _add_arguments(parser) -> None:
    parser.add_argument("--mcp-report", default="", help="write per-instance counts and failure reasons here")


def _count(name: str, context: dict | None = None, exception: BaseException | None = None, **_: object) -> None:
    COUNTS[name][(context or {}).get("instance") or "none"] += 1
    if exception is not None:
        FAILURES[name][str(exception)] += 1


def _reset() -> None:
    COUNTS.clear()
    FAILURES.clear()


def _add_web_ui_tab(environment, **_: object) -> None:
    web_ui = environment.web_ui
    if web_ui is None:
        return
    web_ui.template_args["extended_tabs"] = [{"title": "MCP instances", "key": TAB}]
    web_ui.template_args["extended_tables"] = [
        {
            "key": TAB,
            "structure": [
                {"key": "name", "title": "Operation"},
                {"key": "requests", "title": "Requests"},
                {"key": "instances", "title": "Instances that answered"},
                {"key": "shares", "title": "Share per instance ('none': no response header)"},
            ],
        }
    ]

    @web_ui.app.after_request
    def add_instance_stats(response):
        from flask import request

        if request.path == "/stats/requests" and response.is_json:
            data = response.get_json()
            data["extended_stats"] = [{"key": TAB, "data": rows()}]
            response.set_data(json.dumps(data))
        return response


def _write_report(environment, **_: object) -> None:
    path = getattr(environment.parsed_options, "mcp_report", "")
    if path:
        report = {
            name: {"instances": dict(counts), "failures": dict(FAILURES.get(name, {}))}
            for name, counts in COUNTS.items()
        }
        Path(path).write_text(json.dumps(report, indent=2))
