"""The local issuer in-process: it keeps its key and clients across starts, grants client-credentials
tokens for the resources and scopes it knows and nothing else, and its tokens pass the instances' verifier."""

from __future__ import annotations

import pytest

from issuer.server import IssuerSettings, issuer_app
from mcp_cluster.auth.keys import KeySet
from mcp_cluster.auth.verifier import JWTVerifier
from tests.utils.asgi import served

pytestmark = pytest.mark.anyio
URL, RESOURCE = "http://localhost:8090", "http://localhost:8080/mcp"


async def test_a_granted_token_verifies_and_a_bad_request_is_told_why(tmp_path):
    settings = IssuerSettings(URL, (RESOURCE,), tmp_path, jwks_file=tmp_path / "jwks.json")
    async with served(issuer_app(settings)) as client:
        secret = (tmp_path / "clients" / "alice").read_text()
        grant = {"grant_type": "client_credentials", "resource": RESOURCE}
        granted = await client.post("/token", data=grant, auth=("alice", secret))
        wrong_secret = await client.post("/token", data=grant, auth=("alice", "guess"))
        elsewhere = await client.post("/token", data={**grant, "resource": "http://other/mcp"}, auth=("alice", secret))
        too_much = await client.post("/token", data={**grant, "scope": "mcp:tools admin"}, auth=("alice", secret))
        scoped = await client.post("/token", data={**grant, "scope": "mcp:tools"}, auth=("alice", secret))
        metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client")
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (400, "invalid_target")
    assert (too_much.status_code, too_much.json()) == (
        400,
        {"error": "invalid_scope", "error_description": "not granted here: admin; granted: mcp:tools"},
    )
    assert scoped.status_code == 200
    assert metadata["token_endpoint"] == f"{URL}/token" and metadata["issuer"] == URL
    access = await JWTVerifier(KeySet(str(tmp_path / "jwks.json")), URL, RESOURCE).check(granted.json()["access_token"])
    assert (access.subject, access.client_id, access.resource) == ("alice", "alice", RESOURCE)


async def test_the_key_and_secrets_outlive_a_restart_and_only_their_owner_reads_them(tmp_path):
    settings = IssuerSettings(URL, (RESOURCE,), tmp_path)
    async with served(issuer_app(settings)) as client:
        first = (await client.get("/jwks.json")).json()
    secret = (tmp_path / "clients" / "bob").read_text()
    async with served(issuer_app(settings)) as client:
        assert (await client.get("/jwks.json")).json() == first
    assert (tmp_path / "clients" / "bob").read_text() == secret
    assert (tmp_path / "signing-key.json").stat().st_mode & 0o077 == 0
    assert (tmp_path / "clients" / "bob").stat().st_mode & 0o077 == 0
