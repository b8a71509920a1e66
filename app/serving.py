"""Serve an app factory with uvicorn, as every instance should be served behind nginx."""

from __future__ import annotations

import sys

import uvicorn

from app.settings import InstanceSettings, SettingsError


def serve(factory: str, settings: InstanceSettings) -> None:
    """Run `factory` ("module:function", returning the ASGI app) on the settings' address and workers."""
    uvicorn.run(
        factory,
        factory=True,
        host=settings.listen_host,
        port=settings.listen_port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        # Above nginx's upstream keepalive_timeout (2 s): an idle connection is always closed by nginx
        # first, never by uvicorn while nginx reuses it (that race answers a POST with 502).
        timeout_keep_alive=75,
    )


def run_from_env(factory: str, name: str, *checks) -> int:
    """A `python -m` entry point: check the settings (and `checks`, more `from_env` readers), then serve.
    A bad setting stops the process with one line naming it and the valid values."""
    try:
        settings = InstanceSettings.from_env()
        for check in checks:
            check()
    except SettingsError as exc:
        print(f"{name}: configuration error: {exc}", file=sys.stderr)
        return 2
    serve(factory, settings)
    return 0
