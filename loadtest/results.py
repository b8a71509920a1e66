"""Results committed under results/ and copied into a docs page between markers, so the two never differ."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

# A committed result shown in a page: `<!-- matrix: results/full/matrix.md -->` ... `<!-- end matrix -->`.
KINDS = ("matrix", "ways", "bench", "soak", "faults", "scorecard", "durability")
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


def machine() -> str:
    """The machine a result was measured on, as every result states it."""
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
