"""Authentication in-process, over the ASGI transport: bearer JWTs checked against a JWKS made at run time
(signature, issuer, audience, expiry, algorithm, scopes), the 401 that tells a client where to get a token,
the protected-resource metadata, sessions and requestState bound to their principal, and the loud warning
when auth is off."""

from __future__ import annotations

import functools
import http.server
import logging
import threading
import time

import jwt
import pytest
from mcp.server.mcpserver import MCPServer

from app.asgi import create_app
from issuer.signing import SigningKey
from loadtest.client.legacy import ACCEPT_BOTH, LEGACY_VERSION
from loadtest.client.modern import MODERN_VERSION
from loadtest.experiments.hostile import wire
from loadtest.harness.stack import free_port
from mcp_cluster import InstanceSettings, instance_app
from mcp_cluster.auth import keys as auth_keys
from mcp_cluster.settings import SettingsError
from tests.utils.asgi import served
from tests.utils.metrics import scrape
from tests.utils.tokens import ISSUER, RESOURCE, TestIssuer

pytestmark = pytest.mark.anyio
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": LEGACY_VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
METADATA_URL = "http://mcp.test/.well-known/oauth-protected-resource/mcp"


@pytest.fixture
def issuer(tmp_path) -> TestIssuer:
    return TestIssuer(tmp_path)


def settings(issuer: TestIssuer, **env: str) -> InstanceSettings:
    return InstanceSettings.from_env({"MCP_INSTANCE_ID": "auth1", "MCP_PRESET": "stateful-json", **issuer.env(**env)})


def modern(tool: str, arguments: dict, **params) -> tuple[dict, dict]:
    """A 2026-07-28 tools/call's body and headers, without a token (each test adds its own)."""
    names = {"Mcp-Method": "tools/call", "Mcp-Name": tool}
    return wire.call_body(tool, arguments, MODERN_VERSION, **params), wire.headers(None, None, MODERN_VERSION, **names)


async def test_a_request_without_a_token_is_told_where_to_get_one(issuer):
    async with served(create_app(settings(issuer))) as client:
        response = await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH})
        metadata = await client.get("/.well-known/oauth-protected-resource/mcp")
        health = await client.get("/healthz")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'Bearer resource_metadata="{METADATA_URL}"'
    assert response.json()["error"] == {
        "code": -32600,
        "message": "Unauthorized: this server needs a bearer token (Authorization: Bearer ...); did not run",
    }
    assert metadata.json()["resource"] == RESOURCE
    assert metadata.json()["authorization_servers"] == [ISSUER]
    assert health.status_code == 200  # probes need no token


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (
            {"audience": "http://other.test/mcp"},
            f"the token is not for this server: ask the issuer for audience {RESOURCE}",
        ),
        ({"issuer": "https://elsewhere.test"}, f"the token was not issued by {ISSUER}"),
        ({"seconds": -120}, "the token has expired"),  # past the 30 s leeway
    ],
)
async def test_a_token_for_another_audience_issuer_or_time_is_refused_with_the_reason(issuer, claims, reason):
    async with served(create_app(settings(issuer))) as client:
        refused = await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, **issuer.bearer(**claims)})
        accepted = await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, **issuer.bearer()})
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == f"Unauthorized: {reason}; did not run"
    assert f'error="invalid_token", error_description="{reason}"' in refused.headers["www-authenticate"]
    assert accepted.status_code == 200 and accepted.headers["mcp-session-id"]


async def test_unsigned_shared_secret_and_foreign_key_tokens_are_refused(issuer):
    claims = {"iss": ISSUER, "sub": "mallory", "aud": RESOURCE, "exp": 2**40}
    unsigned = jwt.encode(claims, None, "none")
    shared_secret = jwt.encode(claims, "a-guessable-secret-of-32-bytes-!!", "HS256")
    foreign = SigningKey.generate().mint(ISSUER, "mallory", RESOURCE)  # a key the JWKS does not hold
    async with served(create_app(settings(issuer))) as client:
        answers = [
            await client.post(
                "/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, "authorization": f"Bearer {token}"}
            )
            for token in (unsigned, shared_secret, foreign, "not-a-jwt")
        ]
    assert [a.status_code for a in answers] == [401] * 4
    messages = [a.json()["error"]["message"] for a in answers]
    assert messages[0].startswith("Unauthorized: the token is signed with 'none'; accepted: RS256")
    assert messages[1].startswith("Unauthorized: the token is signed with 'HS256'")
    assert "is not in the issuer's JWKS" in messages[2]
    assert messages[3] == "Unauthorized: the bearer token is not a JWT; did not run"


async def test_a_rotated_key_is_fetched_when_a_token_names_it(issuer, monkeypatch):
    monkeypatch.setattr(auth_keys, "REFRESH_SECONDS", 0.0)
    async with served(create_app(settings(issuer))) as client:
        old = await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, **issuer.bearer()})
        new_key = SigningKey.generate()
        issuer.publish(new_key, issuer.key)
        issuer.key = new_key
        new = await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, **issuer.bearer()})
    assert (old.status_code, new.status_code) == (200, 200)


async def test_a_token_of_another_type_is_refused_saying_so(issuer):
    """RFC 9068: an access token is `at+jwt` (or a plain `JWT` from issuers that predate it); an ID token is not."""
    key, now = issuer.key, int(time.time())
    claims = {"iss": ISSUER, "sub": "alice", "aud": RESOURCE, "exp": now + 600, "client_id": "alice"}
    id_token = jwt.encode(claims, key.private_key, "ES256", headers={"kid": key.key_id, "typ": "id_token+jwt"})
    plain = jwt.encode(claims, key.private_key, "ES256", headers={"kid": key.key_id})  # typ: JWT
    async with served(create_app(settings(issuer))) as client:
        refused, accepted = [
            await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, "authorization": f"Bearer {t}"})
            for t in (id_token, plain)
        ]
    assert refused.status_code == 401 and accepted.status_code == 200
    message = "the token is of type 'id_token+jwt', not an access token (at+jwt, RFC 9068)"
    assert refused.json()["error"]["message"] == f"Unauthorized: {message}; did not run"


async def test_a_key_the_issuer_withdraws_stops_verifying_the_tokens_it_signed_already_verified_too(
    issuer, monkeypatch
):
    monkeypatch.setattr(auth_keys, "KEPT_SECONDS", 0.0)  # the JWKS read again at each check
    headers = {"accept": ACCEPT_BOTH, **issuer.bearer()}
    async with served(create_app(settings(issuer))) as client:
        before = await client.post("/mcp", json=INITIALIZE, headers=headers)  # verified, and remembered
        issuer.publish(SigningKey.generate())  # the old key withdrawn (compromised, say)
        after = await client.post("/mcp", json=INITIALIZE, headers=headers)
    assert before.status_code == 200
    assert after.status_code == 401 and "is not in the issuer's JWKS" in after.json()["error"]["message"]


@pytest.fixture
def jwks_url(issuer):
    """The JWKS served over HTTP on 127.0.0.1, as an issuer's jwks_uri is."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(issuer.jwks_file.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


async def test_a_jwks_fetched_from_a_url_verifies_and_one_that_fails_verifies_nothing(issuer, jwks_url):
    served_keys = settings(issuer, MCP_AUTH_JWKS=f"{jwks_url}/jwks.json")
    missing_keys = settings(issuer, MCP_AUTH_JWKS=f"{jwks_url}/missing.json")
    async with served(create_app(served_keys)) as client:
        accepted = await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, **issuer.bearer()})
    async with served(create_app(missing_keys)) as client:
        refused = await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, **issuer.bearer()})
        health = await client.get("/healthz")
    assert accepted.status_code == 200
    assert refused.status_code == 401 and "is not in the issuer's JWKS" in refused.json()["error"]["message"]
    assert health.status_code == 200  # the instance keeps serving, and tries the URL again


async def test_a_required_scope_is_checked(issuer):
    async with served(create_app(settings(issuer, MCP_AUTH_SCOPES="mcp:tools"))) as client:
        lacking = await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, **issuer.bearer()})
        holding = await client.post(
            "/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, **issuer.bearer(scope="openid mcp:tools")}
        )
    assert lacking.status_code == 403
    assert 'error="insufficient_scope"' in lacking.headers["www-authenticate"]
    assert lacking.json()["error"]["message"] == "Unauthorized: the token lacks the scope mcp:tools; did not run"
    assert holding.status_code == 200


async def test_a_session_is_refused_to_another_principal_as_if_unknown(issuer):
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "increment", "arguments": {}}}
    async with served(create_app(settings(issuer))) as client:
        opened = await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, **issuer.bearer("alice")})
        session = {
            "accept": ACCEPT_BOTH,
            "mcp-session-id": opened.headers["mcp-session-id"],
            "mcp-protocol-version": LEGACY_VERSION,
        }
        by_bob = await client.post("/mcp", json=call, headers={**session, **issuer.bearer("bob")})
        by_alice = await client.post("/mcp", json=call, headers={**session, **issuer.bearer("alice")})
    assert by_bob.status_code == 404
    assert by_bob.json()["error"] == {"code": -32600, "message": "Session not found"}
    assert by_alice.status_code == 200
    assert by_alice.json()["result"]["structuredContent"] == {"result": 1}  # bob's attempt ran nothing


async def test_a_principal_holding_its_share_of_sessions_opens_no_more_while_others_do(issuer):
    initialize = {"json": INITIALIZE, "headers": {"accept": ACCEPT_BOTH, **issuer.bearer("alice")}}
    port = free_port()
    limited = settings(issuer, MCP_MAX_SESSIONS_PER_PRINCIPAL="2", MCP_METRICS_PORT=str(port))
    async with served(create_app(limited)) as client:
        held = [(await client.post("/mcp", **initialize)).headers["mcp-session-id"] for _ in range(2)]
        refused = await client.post("/mcp", **initialize)
        counted = (await scrape(port))[("mcp_refused_total", (("bound", "sessions_per_client"),))]
        by_bob = await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT_BOTH, **issuer.bearer("bob")})
        ended = await client.delete(
            "/mcp",
            headers={"mcp-session-id": held[0], "mcp-protocol-version": LEGACY_VERSION, **issuer.bearer("alice")},
        )
        again = await client.post("/mcp", **initialize)
    assert refused.status_code == 429
    assert refused.json()["error"] == {
        "code": -32000,
        "message": "this principal holds 2 sessions on this instance, the most it may "
        "(MCP_MAX_SESSIONS_PER_PRINCIPAL); did not run: end one (DELETE) or let one idle out, then open another",
    }
    assert by_bob.status_code == 200 and ended.status_code == 200 and again.status_code == 200
    assert counted == 1


async def test_request_state_is_refused_to_another_principal(issuer):
    body, headers = modern("confirm_action", {"action": "deploy"})
    async with served(create_app(settings(issuer))) as client:
        asked = (await client.post("/mcp", json=body, headers={**headers, **issuer.bearer("alice")})).json()["result"]
        answers = {key: {"action": "accept", "content": {"confirm": True}} for key in asked["inputRequests"]}
        retry, _ = modern(
            "confirm_action", {"action": "deploy"}, inputResponses=answers, requestState=asked["requestState"]
        )
        by_bob = await client.post("/mcp", json=retry, headers={**headers, **issuer.bearer("bob")})
        by_alice = await client.post("/mcp", json=retry, headers={**headers, **issuer.bearer("alice")})
    refused = by_bob.json()["error"]
    assert (refused["code"], refused["message"]) == (-32602, "Invalid or expired requestState")
    assert by_alice.json()["result"]["content"][0]["text"] == "confirmed: deploy"


def test_without_auth_the_instance_warns_loudly_at_start(caplog):
    with caplog.at_level(logging.WARNING, logger="mcp_cluster"):
        instance_app(MCPServer("open"), InstanceSettings("open1"))
    assert any(
        record.getMessage().startswith("NO AUTHENTICATION: MCP_AUTH_JWKS is not set") for record in caplog.records
    )


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"MCP_AUTH_ISSUER": ISSUER}, "MCP_AUTH_ISSUER set but not MCP_AUTH_JWKS, so no token would be checked"),
        (
            {"MCP_AUTH_JWKS": "/", "MCP_AUTH_RESOURCE": RESOURCE},
            "MCP_AUTH_JWKS turns authentication on, which needs MCP_AUTH_ISSUER",
        ),
        (
            {"MCP_AUTH_JWKS": "http://keys.example.com/jwks.json"},
            "MCP_AUTH_JWKS='http://keys.example.com/jwks.json' is fetched without TLS",
        ),
        ({"MCP_AUTH_JWKS": "/no/such/dir/jwks.json"}, "is in no existing directory"),
    ],
)
def test_incomplete_or_unsafe_auth_settings_are_refused(env, error):
    with pytest.raises(SettingsError, match=error.replace("(", r"\(")):
        InstanceSettings.from_env({"MCP_INSTANCE_ID": "bad1", **env})
