"""Where a request of a session goes (mcp_cluster/cluster/routes.py), as tables: every input that changes the
answer, and the answer."""

from __future__ import annotations

import pytest

from mcp_cluster.cluster import routes
from mcp_cluster.cluster.routes import Decision, Here, Route
from mcp_cluster.sessions.records import Owner

ME = "app1:aaaa"
HERE, DRAINING = Here(ME, draining=False), Here(ME, draining=True)
SIBLING = Owner("app1:bbbb", "http://app1-peer:8002")  # another worker of this instance
OTHER = Owner("app2:cccc", "http://app2-peer:8001")
SILENT = Owner("app2:cccc", None)  # its heartbeat is gone: the record names no URL
MINE = Owner(ME, "http://app1-peer:8001")
ODD = Owner("not an instance!:dddd", "http://app2-peer:8001")  # an owner id no instance could have


@pytest.mark.parametrize(
    ("record", "here", "method", "redirect_asked", "owner_gone", "owner_lost", "decision"),
    [
        (None, HERE, "POST", False, False, False, Decision(Route.SERVE_OR_END)),
        (MINE, HERE, "POST", False, False, False, Decision(Route.SERVE_OR_END)),
        (None, HERE, "DELETE", False, False, True, Decision(Route.ENDED)),
        (None, HERE, "POST", False, False, True, Decision(Route.SERVE_OR_END)),
        (MINE, HERE, "DELETE", False, False, True, Decision(Route.ENDED)),
        (OTHER, HERE, "POST", False, False, False, Decision(Route.FORWARD)),
        (OTHER, HERE, "POST", True, False, False, Decision(Route.REDIRECT, "app2")),
        (SIBLING, HERE, "POST", True, False, False, Decision(Route.FORWARD)),
        (ODD, HERE, "POST", True, False, False, Decision(Route.FORWARD)),
        (OTHER, DRAINING, "POST", False, False, False, Decision(Route.FORWARD)),
        (OTHER, HERE, "POST", False, True, False, Decision(Route.TAKE_OVER)),
        (OTHER, HERE, "DELETE", True, True, True, Decision(Route.TAKE_OVER)),
        (OTHER, DRAINING, "POST", False, True, False, Decision(Route.HAND_TO_PEER)),
        (SILENT, HERE, "POST", True, False, False, Decision(Route.TAKE_OVER)),
        (SILENT, DRAINING, "POST", False, False, False, Decision(Route.HAND_TO_PEER)),
    ],
)
def test_a_session_not_held_here_goes_by_its_record(
    record, here, method, redirect_asked, owner_gone, owner_lost, decision
):
    kwargs = {"method": method, "redirect_asked": redirect_asked, "owner_gone": owner_gone, "owner_lost": owner_lost}
    assert routes.by_record(record, here, **kwargs) == decision


@pytest.mark.parametrize(
    ("here", "confirmed", "route"),
    [(HERE, True, Route.SERVE), (HERE, False, Route.LOOK_UP), (DRAINING, False, Route.SERVE)],
)
def test_a_session_held_here_is_served_while_redis_says_it_is_ours(here, confirmed, route):
    assert routes.held(here, confirmed=confirmed) is route


@pytest.mark.parametrize(
    ("here", "held", "lease_held", "confirmed", "has_session", "route"),
    [
        (HERE, True, False, False, True, Route.CUT_OFF),
        (HERE, True, True, True, True, Route.SERVE),
        (HERE, True, True, False, True, Route.LOOK_UP),
        (DRAINING, True, False, False, True, Route.SERVE),
        (DRAINING, False, True, False, True, Route.DRAINING),
        (DRAINING, False, True, False, False, Route.DRAINING),
        (HERE, False, True, False, False, Route.OPEN),
        (HERE, False, False, False, True, Route.LOOK_UP),
    ],
)
def test_a_hop_is_served_here_refused_or_routed_by_the_record(here, held, lease_held, confirmed, has_session, route):
    facts = {"held": held, "lease_held": lease_held, "confirmed": confirmed, "has_session": has_session}
    assert routes.forwarded(here, **facts) is route


@pytest.mark.parametrize(
    ("record", "route"),
    [(None, Route.SERVE_OR_END), (MINE, Route.SERVE_OR_END), (SILENT, Route.TAKE_OVER), (OTHER, Route.LOOK_AGAIN)],
)
def test_a_hop_for_a_session_not_held_here_goes_by_its_record(record, route):
    assert routes.forwarded_by_record(record, HERE) is route
