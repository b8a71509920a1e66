"""Bearer tokens for the tests, signed with a key made at run time and published in a JWKS file."""

from __future__ import annotations

import json
from pathlib import Path

from issuer.signing import SigningKey

ISSUER = "https://issuer.test"
RESOURCE = "http://mcp.test/mcp"


class TestIssuer:
    """A key of this run, its JWKS in `folder`, and the MCP_AUTH_* settings that trust it."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, folder: Path, key: SigningKey | None = None) -> None:
        self.jwks_file = folder / "jwks.json"
        self.key = key or SigningKey.generate()
        self.publish(self.key)

    def publish(self, *keys: SigningKey) -> None:
        """Write the JWKS with `keys` (a rotation publishes the new key beside the old)."""
        self.jwks_file.write_text(json.dumps({"keys": [k for key in keys for k in key.jwks()["keys"]]}))

    def token(self, subject: str = "alice", *, audience: str = RESOURCE, issuer: str = ISSUER, **claims) -> str:
        return self.key.mint(issuer, subject, audience, **{"client_id": subject, **claims})

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "MCP_AUTH_JWKS": str(self.jwks_file),
            "MCP_AUTH_ISSUER": ISSUER,
            "MCP_AUTH_RESOURCE": RESOURCE,
            **extra,
        }

    def bearer(self, subject: str = "alice", **claims) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject, **claims)}"}
