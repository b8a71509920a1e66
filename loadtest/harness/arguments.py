"""Command-line argument types the load and benchmark commands share."""

from __future__ import annotations

import argparse


def increasing_counts(raw: str) -> tuple[int, ...]:
    """`1000,10000`: increasing whole numbers (a 0 stands for none and is dropped)."""
    try:
        counts = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        counts = (-1,)
    if any(count < 0 for count in counts) or list(counts) != sorted(counts):
        raise argparse.ArgumentTypeError("give increasing whole numbers, e.g. 1000,10000 (or 0 for none)")
    return tuple(count for count in counts if count > 0)
