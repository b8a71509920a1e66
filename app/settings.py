"""The demo server's own setting: where `process_file` reads (`MCP_DATA_DIR`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mcp_cluster.settings import EnvReader, existing_directory

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path = DEFAULT_DATA_DIR

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        reader = EnvReader(os.environ if env is None else env)
        data_dir = reader.get("MCP_DATA_DIR", existing_directory, DEFAULT_DATA_DIR)
        reader.raise_errors()
        return cls(data_dir=data_dir)
