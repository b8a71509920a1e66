"""Results committed under results/ and copied into a docs page between markers, so the two never differ; and
what every experiment's results are made of: when and where they were measured, their tables, their files."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

# A committed result shown in a page: `<!-- matrix: results/full/matrix.md -->` ... `<!-- end matrix -->`.
# A kind that another begins with comes first: the pattern tries them in order.
KINDS = ("matrix", "ways", "bench-summary", "bench", "scale-reference", "soak", "faults", "scorecard", "durability")
KINDS += (
    "hostile-summary",
    "hostile",
    "attacks-summary",
    "attacks-compose",
    "attacks-local-auth",
    "attacks",
    "scale",
    "pod-routing",
)
README_EMBED = re.compile(
    rf"(<!-- (?P<kind>{'|'.join(KINDS)}): (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end (?P=kind) -->)", re.S
)


def embed(page: Path, kind: str, source: Path) -> None:
    """Replace the page's copy of a `kind` result with the file `source`."""
    content = source.read_text()
    text = README_EMBED.sub(
        lambda m: m.group(1) + content + m.group(5) if m["kind"] == kind else m.group(0), page.read_text()
    )
    if f"<!-- {kind}: " not in text:
        raise SystemExit(f"no <!-- {kind}: ... --> marker in {page}")
    page.write_text(text)


def publish(
    out: Path,
    name: str,
    record: dict,
    markdown: dict[str, str],
    shown: dict[str, str],
    pages: Sequence[Path],
    *,
    indent: int = 1,
    end: str = "\n",
) -> None:
    """Write a command's results into `out`: `record` as `<name>.json` (indented by `indent`, then `end`: each
    experiment keeps the format of its committed file) and each `markdown` file (name -> text). Then copy each
    `shown` file (marker kind -> file name) into every page of `pages` (`--page`) that has its marker; a page
    with none of them is named on stderr."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=indent) + end)
    for file, text in markdown.items():
        (out / file).write_text(text)
    for page in pages:
        kinds = [kind for kind in shown if f"<!-- {kind}: " in page.read_text()]
        for kind in kinds:
            embed(page, kind, out / shown[kind])
        if not kinds:
            print(f"no {' or '.join(f'<!-- {kind}: ... -->' for kind in shown)} marker in {page}", file=sys.stderr)


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: the header, the rule `|---|---|` and a `| a | b |` line per row, each cell as str() gives
    it; one string without a final newline, a block among a page's lines."""
    return "\n".join([_line(header), "|" + "---|" * len(header), *map(_line, rows)])


def _line(cells: Sequence[object]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def stamp(day_only: bool = False) -> str:
    """Now, as a result states when it was measured: `2026-12-07 10:00 UTC`, or `2026-12-07` with `day_only`."""
    return datetime.now(UTC).strftime("%Y-%m-%d" if day_only else "%Y-%m-%d %H:%M UTC")


def run_header(day_only: bool = False) -> dict[str, str]:
    """The head of a result's `run`: when (`stamp`) and on what (`machine`) it was measured."""
    return {"date": stamp(day_only), "machine": machine()}


def machine() -> str:
    """The machine a result was measured on, as every result states it."""
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@contextmanager
def png_chart(path: Path, size: tuple[float, float], dpi: int = 130) -> Iterator[tuple]:
    """A matplotlib figure with one set of axes, for the block to draw on; written to `path` as a PNG after it."""
    import matplotlib  # a dev dependency: the Locust image runs the load tests without it

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=size)
    try:
        yield figure, axes
        figure.tight_layout()
        figure.savefig(path, dpi=dpi)
    finally:
        plt.close(figure)
