"""Where a request of a 2025-11-25 session goes: pure functions of the request, the session's record and this
process, tested as tables (tests/unit/cluster/test_routes.py). `SessionRouter` does the I/O around them: it
reads the record, confirms the lease, forwards, takes over, and asks again when the answer changes."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mcp_cluster.sessions.records import Owner
from mcp_cluster.settings import INSTANCE_ID  # an owner read from Redis may name anything


class Route(enum.Enum):
    SERVE = "serve it here: the session is held here and still this process's"
    SERVE_OR_END = "the record names this process, or none: serve a session claimed here, or let the SDK say 404"
    FORWARD = "forward it to the owner"
    REDIRECT = "answer 421: nginx re-sends it to the owner's instance"
    TAKE_OVER = "take the session over from its silent owner, then serve it"
    HAND_TO_PEER = "hand it to a peer: this process is draining"
    ENDED = "answer 200: the owner ended the session before it died, as the client's DELETE asked"
    OPEN = "open a session here"
    LOOK_UP = "read the record, then route by it"
    CUT_OFF = "answer 503: this process's lease lapsed, the relay asks again"
    DRAINING = "answer 503: this process is draining, the relay tries another"
    LOOK_AGAIN = "answer 503: the session moved on, the relay looks it up again"


@dataclass(frozen=True)
class Here:
    """This process, as a route sees it."""

    owner_id: str  # `<instance>:<hex>`
    draining: bool  # SIGTERM: it starts nothing new

    @property
    def instance(self) -> str:
        return instance_of(self.owner_id)


@dataclass(frozen=True)
class Decision:
    route: Route
    instance: str | None = None  # REDIRECT: the owner's instance, for nginx


def by_record(
    record: Owner | None, here: Here, *, method: str, redirect_asked: bool, owner_gone: bool, owner_lost: bool
) -> Decision:
    """A request for a session this process does not hold, once its record is read. `owner_gone`: forwarding to
    that owner failed and it has gone silent; `owner_lost`: an owner died while a forward of this request ran."""
    if record is None or record.owner_id == here.owner_id:
        return Decision(Route.ENDED if owner_lost and method == "DELETE" else Route.SERVE_OR_END)
    if record.url is not None and not owner_gone:
        instance = instance_of(record.owner_id)
        if redirect_asked and INSTANCE_ID.match(instance) and instance != here.instance:
            return Decision(Route.REDIRECT, instance)  # a sibling worker of this instance is reached by forwarding
        return Decision(Route.FORWARD)
    return Decision(Route.HAND_TO_PEER if here.draining else Route.TAKE_OVER)


def held(here: Here, *, confirmed: bool) -> Route:
    """A request for a session held here, arriving from a client: `confirmed`, Redis says it is still ours."""
    return Route.SERVE if here.draining or confirmed else Route.LOOK_UP


def forwarded(here: Here, *, held: bool, lease_held: bool, confirmed: bool, has_session: bool) -> Route:
    """A hop another process sent here, its signature checked: `held`, the session is held here; `confirmed`,
    Redis says it is still ours (asked only for a held session, while the lease holds and no drain runs)."""
    if held and not here.draining and not lease_held:
        return Route.CUT_OFF
    if held and (here.draining or confirmed):
        return Route.SERVE  # never forwarded again: no loops
    if here.draining:
        return Route.DRAINING
    return Route.LOOK_UP if has_session else Route.OPEN


def forwarded_by_record(record: Owner | None, here: Here) -> Route:
    """A hop for a session not held here, once its record is read: the sender could not take it over itself."""
    if record is not None and record.owner_id != here.owner_id:
        return Route.TAKE_OVER if record.url is None else Route.LOOK_AGAIN
    return Route.SERVE_OR_END


def instance_of(owner_id: str) -> str:
    """The instance (MCP_INSTANCE_ID) of an owner: its process's owner id is `<instance>:<hex>`."""
    return owner_id.partition(":")[0]
