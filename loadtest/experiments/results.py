"""Results committed under results/ and copied into a docs page between markers, so the two never differ."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# A committed result shown in a page: `<!-- matrix: results/full/matrix.md -->` ... `<!-- end matrix -->`.
# A kind that another begins with comes first: the pattern tries them in order.
KINDS = ("matrix", "ways", "bench-summary", "bench", "soak", "faults", "scorecard", "durability")
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


def write_results(out: Path, files: dict[str, str], pages: list[Path], kinds: dict[str, str]) -> None:
    """Write a command's result files (name -> text) into `out`, then copy each `kinds` file (kind -> file
    name) into every page of `pages` (`--page`) that has its marker."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)
    for page in pages:
        for kind, source in kinds.items():
            if f"<!-- {kind}: " in page.read_text():
                embed(page, kind, out / source)


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
