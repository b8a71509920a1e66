"""The keys that seal 2026-07-28 `requestState`, the same on every instance, so a retry may land anywhere.

Where they come from, first match wins:
1. `MCP_REQUEST_STATE_KEYS`: the deployment's own keys, newest first (the first seals, all open).
2. `MCP_REDIS_URL`: a key ring kept in Redis under `mcp:request-state-keys`, made by whichever instance
   starts first and re-read every few seconds. `mcp-cluster request-state-keys rotate` adds a key that
   every instance accepts at once and seals with only after `ACTIVATION_SECONDS` (on Redis's clock),
   when all know it. A rotation keeps `RING_SIZE` keys.
3. Neither: a key of this process only (the SDK's default), which the app warns about at start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from mcp.server.mcpserver import MCPServer, RequestStateSecurity
from mcp.server.request_state import AESGCMRequestStateCodec, InvalidRequestState, RequestStateBoundary
from redis.asyncio import Redis

from mcp_cluster.settings import REQUEST_STATE_TTL_SECONDS
from mcp_cluster.shared.functions import RedisFunction
from mcp_cluster.shared.keys import REQUEST_STATE_KEYS as RING_KEY
from mcp_cluster.shared.redis import REPLACE_IF_SAME, RedisUnavailable, call_function, unavailable_on_error

REFRESH_SECONDS = 5.0
MIN_ACTIVATION_SECONDS = 2 * REFRESH_SECONDS  # every instance has re-read the ring by then, with a margin
ACTIVATION_SECONDS = 3 * REFRESH_SECONDS
RING_SIZE = 3  # keys kept by a rotation: a state sealed two rotations ago still opens
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RingKey:
    secret: bytes
    seals_from: float  # Unix time from which this key seals; until then it only opens


def fingerprint(secret: bytes) -> str:
    """A short, non-secret name for a key, for logs and /readyz."""
    return hashlib.sha256(b"mcp-scale-lab/request-state-key:" + secret).hexdigest()[:12]


class KeyRingCodec:
    """The SDK's AES-GCM codec over a ring that may change while serving: the newest key due seals, all open.

    "Due" is judged on Redis's clock (`clock_offset`, kept by `follow`), the clock rotations are stamped with.
    """

    def __init__(self, ring: Sequence[RingKey] = ()) -> None:
        self._ring: tuple[RingKey, ...] = ()
        self._codec: AESGCMRequestStateCodec | None = None
        self._sealer: RingKey | None = None
        self.clock_offset = 0.0  # Redis's clock minus ours, in seconds
        self.replace(ring)

    def replace(self, ring: Sequence[RingKey]) -> None:
        """Use `ring` from now on; a ring the SDK's codec refuses (short or repeated keys) raises ValueError."""
        self._ring = newest_first(ring)
        self._codec, self._sealer = None, None
        if self._ring:
            self._current()  # build it now: a bad key fails here, not in a request

    @property
    def ring(self) -> tuple[RingKey, ...]:
        return self._ring

    def sealing_key(self) -> RingKey | None:
        now = time.time() + self.clock_offset
        return next((key for key in self._ring if key.seals_from <= now), self._ring[-1] if self._ring else None)

    def seal(self, payload: bytes) -> str:
        return self._current().seal(payload)

    def unseal(self, token: str) -> bytes:
        return self._current().unseal(token)

    def _current(self) -> AESGCMRequestStateCodec:
        sealer = self.sealing_key()
        if sealer is None:
            raise InvalidRequestState("no key loaded yet")
        if sealer != self._sealer or self._codec is None:  # rebuilt when a rotation comes due, not per call
            others = [key.secret for key in self._ring if key != sealer]
            self._codec, self._sealer = AESGCMRequestStateCodec([sealer.secret, *others]), sealer
        return self._codec


def newest_first(ring: Sequence[RingKey]) -> tuple[RingKey, ...]:
    return tuple(sorted(ring, key=lambda key: -key.seals_from))


def ring_security(
    keys: Sequence[bytes], ttl: float = REQUEST_STATE_TTL_SECONDS
) -> tuple[RequestStateSecurity, KeyRingCodec]:
    """The SDK policy over a ring; given `keys` (newest first) make a fixed ring, none an empty one for Redis."""
    codec = KeyRingCodec([RingKey(key, -index) for index, key in enumerate(keys)])
    return RequestStateSecurity(codec=codec, ttl=ttl), codec


def seal_with(mcp: MCPServer, security: RequestStateSecurity) -> None:
    """What `MCPServer(request_state_security=security)` does, for a server already built."""
    if mcp.name in ("", "mcp-server"):  # the SDK's placeholder for a server built without a name
        raise ValueError('name the server (MCPServer("my-service")): its name is the requestState audience')
    boundary = RequestStateBoundary(security, default_audience=mcp.name)
    mcp.middleware[:] = [boundary if isinstance(m, RequestStateBoundary) else m for m in mcp.middleware]


def encode(ring: Sequence[RingKey]) -> str:
    return json.dumps([{"key": key.secret.hex(), "seals_from": key.seals_from} for key in ring])


def decode(raw: bytes | str | None) -> list[RingKey]:
    """The ring as Redis holds it; anything else (none, not ours, cut short, a short key) raises ValueError."""
    try:
        if raw is None:
            raise TypeError("no ring")  # as json.loads(None) would: refused as a value that is not a ring
        ring = [RingKey(bytes.fromhex(item["key"]), float(item["seals_from"])) for item in json.loads(raw)]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{RING_KEY} in Redis is not a key ring ({exc.__class__.__name__})") from None
    if not ring or any(len(key.secret) < 32 for key in ring) or len({key.secret for key in ring}) < len(ring):
        raise ValueError(f"{RING_KEY} in Redis holds no key, a key under 32 bytes, or a key twice")
    return ring


# Prepends a key due ARGV[2] seconds from Redis's own clock, keeping ARGV[3] keys.
_ROTATE = RedisFunction("""
local now = redis.call('TIME')
local ring = {}
local current = redis.call('GET', KEYS[1])
if current then ring = cjson.decode(current) end
table.insert(ring, 1, {key = ARGV[1], seals_from = tonumber(now[1]) + tonumber(ARGV[2])})
while #ring > tonumber(ARGV[3]) do table.remove(ring) end
local encoded = cjson.encode(ring)
redis.call('SET', KEYS[1], encoded)
return encoded
""")


async def load_ring(redis: Redis, held: Sequence[RingKey] = ()) -> list[RingKey]:
    """The ring in Redis. If there is none (first start, or Redis lost its data) or it is not a ring (written by
    something else), store `held`, the ring this instance already uses, or else a new key: the first instance
    to write wins and the others read its ring."""
    ours = encode(held or [RingKey(secrets.token_bytes(32), 0.0)])
    with unavailable_on_error():
        raw = await redis.get(RING_KEY)
        if raw is None:
            await redis.set(RING_KEY, ours, nx=True)
            raw = await redis.get(RING_KEY)
        try:
            return decode(raw)
        except ValueError as exc:
            log.error("refused the request-state key ring in Redis, and replaced it: %s", exc)
            raw = await call_function(REPLACE_IF_SAME.bound_to(redis), [RING_KEY], [raw, ours])
    return decode(raw)


async def rotate(redis: Redis, activation_seconds: float = ACTIVATION_SECONDS) -> list[RingKey]:
    """Add a new key to the ring: opened everywhere at once, sealing after `activation_seconds`."""
    raw = await call_function(
        _ROTATE.bound_to(redis), [RING_KEY], [secrets.token_hex(32), activation_seconds, RING_SIZE]
    )
    return decode(raw)


async def refresh(redis: Redis, codec: KeyRingCodec) -> bool:
    """Put `codec` on the ring in Redis and on Redis's clock; True when the ring changed."""
    with unavailable_on_error():
        seconds, microseconds = await redis.time()
    codec.clock_offset = seconds + microseconds / 1e6 - time.time()
    ring = newest_first(await load_ring(redis, codec.ring))
    if ring == codec.ring:
        return False
    codec.replace(ring)
    return True


async def follow(redis: Redis, codec: KeyRingCodec) -> None:
    """Refresh `codec` every few seconds until cancelled."""
    while True:
        await anyio.sleep(REFRESH_SECONDS)
        try:
            if await refresh(redis, codec):
                log.info("request-state key ring changed", extra={"fields": describe(codec)})
        except RedisUnavailable:
            continue  # the event relay and /readyz report Redis being away; the keys we hold still work
        except ValueError as exc:
            log.error("kept the request-state keys this instance holds: %s", exc)


def describe(codec: KeyRingCodec) -> dict[str, object]:
    """Fingerprints of the key that seals now and of every key that opens."""
    sealer = codec.sealing_key()
    return {
        "sealing_key": fingerprint(sealer.secret) if sealer else None,
        "keys": [fingerprint(key.secret) for key in codec.ring],
    }
