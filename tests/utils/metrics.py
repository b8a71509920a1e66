"""Reading an instance's metrics port as Prometheus would."""

from __future__ import annotations

import httpx2
from prometheus_client.parser import text_string_to_metric_families


async def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of the metrics port on 127.0.0.1 (served on this event loop), by (name, sorted labels)."""
    async with httpx2.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
