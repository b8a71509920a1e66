"""`python -m app`: check the settings, then serve the demo server with uvicorn."""

from __future__ import annotations

import sys

from app.settings import ServerSettings
from mcp_cluster.serving import run_from_env

if __name__ == "__main__":
    sys.exit(run_from_env("app.asgi:create_app", "mcp-scale-lab", ServerSettings.from_env))
