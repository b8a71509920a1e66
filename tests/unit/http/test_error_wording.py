"""Every error of the layer and of nginx says whether the request ran: "did not run" (then "retry", or what to
change first), or "may have run: retry with the same request id, which is safe" (a request of a session, keyed by
its id), or, for a request with no session, that a retry may run it again. Each path is pinned here, in-process,
or where it needs real processes, by the test named beside it; nginx's pages are read from its config."""

from __future__ import annotations

import re

import pytest
from mcp.server.mcpserver import MCPServer

from loadtest.client import careful
from loadtest.harness.topology import PROJECT_ROOT
from mcp_cluster import InstanceSettings, instance_app
from mcp_cluster.shared.redis import RedisUnavailable
from mcp_cluster.shared.runs import DID_NOT_RUN, MAY_HAVE_RUN, MAY_HAVE_RUN_UNKEYED, NOT_RUN, Run, current_run
from tests.utils.asgi import INITIALIZE, JSON_RPC, served

pytestmark = pytest.mark.anyio
CLASSES = (NOT_RUN, MAY_HAVE_RUN, MAY_HAVE_RUN_UNKEYED)
# Paths pinned by the tests that run them (real processes, or the SDK's session), by the words each asserts.
ELSEWHERE = {
    "the relay's owner is busy (503)": ("tests/unit/cluster/test_router.py", "busy; did not run: retry"),
    "a hop for a replaced process (503)": ("tests/stack/test_redis_sessions.py", '"replaced"'),
    "a forged hop (403)": (
        "tests/stack/test_redis_sessions.py",
        "only cluster instances may send it, once; did not run",
    ),
    "a retry whose first run goes on (409)": ("tests/unit/sessions/test_once.py", "still running"),
    "the same id for another request (422)": ("tests/unit/sessions/test_once.py", '"did not run" in message'),
    "an answer the session does not wait for (400)": ("tests/unit/sessions/test_once.py", "not waiting for an answer"),
    "a tool's write Redis may have applied": ("tests/stack/test_exactly_once.py", "endswith(MAY_HAVE_RUN)"),
    "nginx: no instance got the request (502)": ("tests/stack/test_balancing.py", "did not run: retry"),
    "nginx: neither the pod nor any other (502)": ("tests/stack/test_kubernetes_nginx.py", "did not run: retry"),
    "nginx: body too large (413)": ("tests/stack/test_balancing.py", "4 MiB; did not run"),
    "a token refused (401, 403)": ("tests/unit/auth/test_auth.py", "; did not run"),
    "a principal's sessions (429)": ("tests/unit/auth/test_auth.py", "did not run: end one (DELETE)"),
    "a subscription refused": ("tests/stack/test_presets.py", "did not run: unsubscribe from one first"),
}


def said(message: str) -> str | None:
    """Which class an error's message says (the last it names, which ends it), or None."""
    found = [(message.rfind(phrase), phrase) for phrase in CLASSES if phrase in message]
    return max(found)[1] if found else None


def test_the_careful_client_retries_on_the_servers_own_words():
    assert careful.RETRY_ADVICE[0] == DID_NOT_RUN and careful.RETRY_ADVICE[1] in MAY_HAVE_RUN
    assert "retry with the same request id" not in MAY_HAVE_RUN_UNKEYED  # no retry it would take for a safe one


def test_every_page_nginx_answers_itself_says_whether_the_request_ran():
    config = (PROJECT_ROOT / "nginx" / "nginx.conf").read_text()
    pages = re.findall(r"return (\d{3}) '(\{.*?\})';", config)
    assert len(pages) >= 8
    for status, body in pages:
        if int(status) >= 400:
            assert NOT_RUN in body or "$mcp_retry_advice" in body, body
    advice = re.search(
        r"map \"\$mcp_session_request:\$upstream_bytes_sent\" \$mcp_retry_advice \{(.*?)\}", config, re.S
    )
    assert [said(line) for line in advice.group(1).splitlines() if '"' in line] == [
        NOT_RUN,  # nothing reached an instance
        MAY_HAVE_RUN,  # a session's request: keyed
        MAY_HAVE_RUN_UNKEYED,
    ]


@pytest.mark.parametrize(
    ("run", "may_have_run", "expected"),
    [
        (None, False, DID_NOT_RUN),  # routing, a lookup: no tool ran
        (None, True, MAY_HAVE_RUN_UNKEYED),  # a write outside any call
        (Run("s:k"), False, MAY_HAVE_RUN),  # inside a keyed call: it may have acted before, and is safe to retry
        (Run(None), False, MAY_HAVE_RUN_UNKEYED),  # inside a call with no key (2026-07-28, stateless)
    ],
)
def test_redis_being_away_says_what_the_request_it_ends_may_have_done(run, may_have_run, expected):
    token = current_run.set(run)
    try:
        message = str(RedisUnavailable(ConnectionError("down"), may_have_run=may_have_run))
    finally:
        current_run.reset(token)
    assert message == f"the shared store (Redis) is unavailable (ConnectionError); {expected}"


async def test_every_refusal_of_an_instance_says_it_did_not_run():
    stateful = instance_app(MCPServer("stateful"), InstanceSettings("app1", preset="stateful-json", max_sessions=1))
    stateless = instance_app(MCPServer("stateless"), InstanceSettings("app2", preset="stateless-json"))
    async with served(stateful) as client:
        opened = await client.post("/mcp", json=INITIALIZE, headers=JSON_RPC)
        session = {**JSON_RPC, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        post = client.post
        refusals = {
            "a body over 4 MiB (413)": await post("/mcp", content=b"x" * (4 * 1024 * 1024 + 1), headers=session),
            "a Host not allowed (421)": await post("/mcp", json=INITIALIZE, headers={**JSON_RPC, "host": "x.test"}),
            "an Origin not allowed (403)": await post(
                "/mcp", json=INITIALIZE, headers={**JSON_RPC, "origin": "http://x"}
            ),
            "not JSON (400)": await post("/mcp", json=INITIALIZE, headers={**JSON_RPC, "content-type": "text/plain"}),
            "MCP_MAX_SESSIONS (503)": await post("/mcp", json=INITIALIZE, headers=JSON_RPC),
        }
    async with served(stateless) as client:
        refusals["a GET of a stateless server (405)"] = await client.get("/mcp", headers=JSON_RPC)
    for path, response in refusals.items():
        assert response.status_code >= 400, path
        message = response.json()["error"]["message"]
        assert said(message) == NOT_RUN, (path, message)


def test_the_paths_of_real_processes_are_pinned_where_they_run():
    for path, (test, words) in ELSEWHERE.items():
        assert words in (PROJECT_ROOT / test).read_text(), (path, test, words)
