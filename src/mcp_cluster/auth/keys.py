"""The public keys bearer tokens are signed with: a JWKS read from a file or fetched from a URL, and read
again (at most every REFRESH_SECONDS) when a token names a key it does not hold, so an issuer may rotate, and
whenever it is older than KEPT_SECONDS, so a key the issuer withdrew stops verifying tokens within that."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import anyio
import httpx2
from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKError, PyJWKSetError

REFRESH_SECONDS = 30.0
KEPT_SECONDS = 300.0
EMPTY_REFRESH_SECONDS = 1.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 1024 * 1024
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SigningKey:
    key: PyJWK
    algorithm: str | None  # the JWK's own `alg`, when it names one: a token signed otherwise is refused


class KeySet:
    def __init__(self, source: str) -> None:
        self.source = source  # a path, or an http(s) URL
        self._keys: dict[str | None, SigningKey] = {}
        self._loaded_at = -REFRESH_SECONDS
        self._lock = anyio.Lock()

    async def key(self, key_id: str | None) -> SigningKey | None:
        """The key a token's header names (`kid`); with no `kid`, the set's only key."""
        if ((found := self._find(key_id)) is None and self._due()) or self._stale():
            async with self._lock:  # one read however many tokens wait for it
                if self._due() or self._stale():
                    await self.load()
            found = self._find(key_id)
        return found

    def _due(self) -> bool:
        # No key yet (the issuer has not written its JWKS, or could not be reached): every second.
        return time.monotonic() - self._loaded_at >= (REFRESH_SECONDS if self._keys else EMPTY_REFRESH_SECONDS)

    def _stale(self) -> bool:
        return time.monotonic() - self._loaded_at >= KEPT_SECONDS

    def _find(self, key_id: str | None) -> SigningKey | None:
        if key_id is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(key_id) if key_id is not None else None

    async def load(self) -> None:
        """Read the set again; a set that cannot be read or parsed leaves the keys loaded before in place."""
        self._loaded_at = time.monotonic()
        try:
            document = json.loads(await self._read())
            keys = PyJWKSet.from_dict(document).keys
        except (OSError, httpx2.HTTPError, ValueError, PyJWKError, PyJWKSetError, AttributeError) as exc:
            log.error("could not load the token signing keys (MCP_AUTH_JWKS %s): %s", self.source, exc)
            return
        algorithms = {key.get("kid"): key.get("alg") for key in document.get("keys", []) if isinstance(key, dict)}
        self._keys = {key.key_id: SigningKey(key, algorithms.get(key.key_id)) for key in keys}

    async def _read(self) -> bytes:
        if self.source.startswith(("http://", "https://")):
            async with httpx2.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as client:
                response = await client.get(self.source)
                response.raise_for_status()
                content = response.content
        else:
            content = await anyio.Path(self.source).read_bytes()
        if len(content) > MAX_JWKS_BYTES:
            raise ValueError(f"the JWKS holds {len(content)} bytes, more than {MAX_JWKS_BYTES}")
        return content
