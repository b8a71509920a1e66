"""One configuration of the matrix (preset, policy, store, instance loss, protocol), and the rows by it."""

from __future__ import annotations

from typing import NamedTuple

from loadtest.client.capabilities import LEGACY


class Config(NamedTuple):
    preset: str
    policy: str
    store: str
    loss: bool = False  # the victim instance is killed halfway through the load
    protocol: str = LEGACY  # what the Locust users speak

    @classmethod
    def of(cls, row: dict) -> Config:
        return cls(row["preset"], row["policy"], row["store"], row.get("loss", False), row.get("protocol", LEGACY))

    @property
    def name(self) -> str:
        """`preset/policy/store[/instance-loss][/protocol]`: the run's name on the console and on disk."""
        suffix = ("/instance-loss" if self.loss else "") + (f"/{self.protocol}" if self.protocol != LEGACY else "")
        return f"{self.preset}/{self.policy}/{self.store}{suffix}"

    @property
    def slug(self) -> str:
        return self.name.replace("/", "_")

    @property
    def title(self) -> str:
        """The name a table or the heatmap shows."""
        name = " ".join(self[:3]) + (" (instance loss)" if self.loss else "")
        return name if self.protocol == LEGACY else f"{name} ({self.protocol})"


def by_cell(rows: list[dict]) -> dict[tuple[str, str, str, bool, str, str], dict]:
    """Rows by (preset, policy, store, instance loss, protocol, capability)."""
    return {(*Config.of(r), r["capability"]): r for r in rows}


def configurations(rows: list[dict], *, loss: bool | None = None) -> list[Config]:
    configs = dict.fromkeys(Config.of(r) for r in rows)
    return [c for c in configs if loss is None or c.loss == loss]
