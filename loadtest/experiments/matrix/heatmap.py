"""The matrix as a heatmap: one row per configuration, one column per capability, coloured by failure rate."""

from __future__ import annotations

from pathlib import Path

from loadtest.client import capabilities as cap
from loadtest.experiments.matrix.configs import by_cell, configurations
from loadtest.experiments.matrix.expectations import NEEDS_AFFINITY, NO_SESSIONS, UNSUPPORTED
from loadtest.experiments.results import png_chart


def write(rows: list[dict], path: Path) -> None:
    import matplotlib
    import numpy

    configs = configurations(rows)
    by_key = by_cell(rows)
    capabilities = list(cap.CAPABILITIES)
    # Cells the preset cannot do at all are grey: the colour is for what should work.
    grid = [[_rate(by_key[(*config, c)]) for c in capabilities] for config in configs]
    masked = numpy.ma.masked_where(
        [[by_key[(*cf, c)]["expected"] in (UNSUPPORTED, NO_SESSIONS) for c in capabilities] for cf in configs], grid
    )
    colours = matplotlib.colormaps["RdYlGn_r"].with_extremes(bad="#d9d9d9")
    with png_chart(path, (1.2 * len(capabilities) + 5, 0.45 * len(configs) + 2), dpi=110) as (figure, axes):
        image = axes.imshow(masked, cmap=colours, vmin=0, vmax=100, aspect="auto")
        axes.set_yticks(range(len(configs)), [c.title for c in configs], fontsize=8)
        axes.set_xticks(range(len(capabilities)), [cap.CAPABILITIES[c] for c in capabilities], fontsize=8)
        axes.xaxis.tick_top()
        for y, config in enumerate(configs):
            for x, capability in enumerate(capabilities):
                row = by_key[(*config, capability)]
                label = "n/a" if row["failure_rate"] is None else f"{100 * row['failure_rate']:.0f}%"
                if row["expected"] == NO_SESSIONS:
                    label = "no sessions"
                if row["verdict"] == "unexpected":
                    label += " unexpected"
                elif row["expected"] == UNSUPPORTED:
                    label += " by design"
                elif row["expected"] == NEEDS_AFFINITY:
                    label += " no affinity"
                axes.text(x, y, label, ha="center", va="center", fontsize=7)
        figure.colorbar(image, label="failed operations (%)")
        axes.set_title("MCP capability failure rate per configuration (preset, policy, store, protocol)", pad=30)


def _rate(row: dict) -> float:
    return 0.0 if row["failure_rate"] is None else 100 * row["failure_rate"]
