"""`python -m issuer`: serve the local issuer, configured by ISSUER_* variables."""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn

from issuer.server import IssuerSettings, issuer_app

if __name__ == "__main__":
    jwks_file = os.environ.get("ISSUER_JWKS_FILE")
    settings = IssuerSettings(
        url=os.environ.get("ISSUER_URL", "http://localhost:8090").rstrip("/"),
        resources=tuple(os.environ.get("ISSUER_RESOURCES", "http://localhost:8080/mcp").split(",")),
        state_dir=Path(os.environ.get("ISSUER_STATE_DIR", "/srv/mcp-issuer")),
        jwks_file=Path(jwks_file) if jwks_file else None,
        scopes=tuple(os.environ.get("ISSUER_SCOPES", "mcp:tools").split()),
    )
    uvicorn.run(
        issuer_app(settings),
        host=os.environ.get("ISSUER_LISTEN_HOST", "127.0.0.1"),
        port=int(os.environ.get("ISSUER_LISTEN_PORT", "8000")),
        server_header=False,
    )
