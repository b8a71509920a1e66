"""What every stack has, named once: the presets, policies, stores and instances, and where the project is."""

from __future__ import annotations

from pathlib import Path

from mcp_cluster.settings import Preset, SessionStore

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PRESETS = tuple(preset.value for preset in Preset)
STATEFUL = tuple(preset.value for preset in Preset if not preset.stateless)
STATELESS = tuple(preset.value for preset in Preset if preset.stateless)
SSE = tuple(preset.value for preset in Preset if not preset.json_response)
POLICIES = ("round-robin", "ip-hash", "session")  # nginx/policies/<policy>.conf
STORES = tuple(store.value for store in SessionStore)
INSTANCES = ("app1", "app2", "app3")
