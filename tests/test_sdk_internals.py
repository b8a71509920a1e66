"""Fails loudly when an SDK upgrade moves a private name that app/sdk_internals.py relies on."""

from __future__ import annotations

from importlib.metadata import version

from mcp.server.lowlevel import Server

from app import sdk_internals
from app.legacy_subscriptions import LegacySubscriptions
from app.server import UPDATES_URI_PATTERN, ServerState, build_server
from app.settings import Settings
from app.state import MemoryBulletinStore, MemoryCounterStore


def test_sdk_version_is_the_pinned_one():
    assert version("mcp") == "2.3.0", "app/sdk_internals.py was checked against mcp 2.3.0; re-check it"


def test_private_names_still_exist():
    settings = Settings.from_env({})
    state = ServerState(settings, MemoryCounterStore(limit=10), MemoryBulletinStore())
    mcp = build_server(state, LegacySubscriptions(UPDATES_URI_PATTERN))
    assert isinstance(sdk_internals.lowlevel_server(mcp), Server)
    assert hasattr(Server, "add_request_handler")
    mcp.streamable_http_app()  # creates the session manager
    assert sdk_internals.live_session_ids(mcp) == set()
    assert sdk_internals.lowlevel_server(mcp).get_request_handler("resources/subscribe") is not None
