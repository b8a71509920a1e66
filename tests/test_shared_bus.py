"""The event bus's wire format, in-process: every event the SDK publishes survives the trip, and anything
else on the channel is ignored instead of ending the relay."""

from __future__ import annotations

import pytest
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ResourceUpdated, ToolsListChanged

from app.shared.bus import decode, encode


@pytest.mark.parametrize(
    "event", [ResourceUpdated(uri="updates://news"), ToolsListChanged(), PromptsListChanged(), ResourcesListChanged()]
)
def test_every_event_kind_round_trips_with_its_origin(event):
    assert decode(encode(event, "app1:ab12")) == ("app1:ab12", event)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"kind":"updated"}', b'{"origin":"a","kind":"nope"}'])
def test_what_this_version_does_not_know_decodes_to_nothing(raw):
    assert decode(raw) is None
