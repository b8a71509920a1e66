"""`python -m app`: check the settings, then serve the app with uvicorn.

A bad setting stops the process with one line naming it and the valid values.
"""

from __future__ import annotations

import sys

import uvicorn

from app.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"mcp-scale-lab: configuration error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        "app.asgi:create_app",
        factory=True,
        host=settings.listen_host,
        port=settings.listen_port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        # Above nginx's upstream keepalive_timeout (60 s): an idle connection is always closed by nginx
        # first, never by uvicorn while nginx reuses it (that race answers a POST with 502).
        timeout_keep_alive=75,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
