"""Every setting an instance needs, in one typed place, given in code or read from the environment.

`InstanceSettings(...)` and `InstanceSettings.from_env()` refuse unsafe or malformed values with a
`SettingsError` whose message is one line naming the variable, the bad value and the valid ones.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mcp_cluster.shared.redis import SENTINEL_SCHEME, sentinel_address

E = TypeVar("E", bound=enum.Enum)


class Preset(enum.Enum):
    """The four transport configurations of the seed's matrix."""

    STATEFUL_SSE = "stateful-sse"
    STATEFUL_JSON = "stateful-json"
    STATELESS_SSE = "stateless-sse"
    STATELESS_JSON = "stateless-json"

    @property
    def stateless(self) -> bool:
        return self in (Preset.STATELESS_SSE, Preset.STATELESS_JSON)

    @property
    def json_response(self) -> bool:
        return self in (Preset.STATEFUL_JSON, Preset.STATELESS_JSON)


class SessionStore(enum.Enum):
    MEMORY = "memory"
    REDIS = "redis"


class SettingsError(ValueError):
    """A setting is missing, malformed or unsafe; the message is one line."""


DEFAULT_ALLOWED_HOSTS = ("localhost:*", "127.0.0.1:*", "[::1]:*")
LOOPBACK_PEERS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
INSTANCE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_HOST_PATTERN = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:(\*|[0-9]{1,5}))?$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_MIN_KEY_BYTES = 32


class EnvReader:
    """Parses variables one by one, collecting every error instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def get(self, name: str, parse: Callable[[str], Any], default: Any, *, secret: bool = False) -> Any:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            shown = "<hidden>" if secret else repr(_without_password(raw))
            self.errors.append(f"{name}={shown} {exc}")
            return default

    def only_one_of(self, *names: str) -> None:
        given = [name for name in names if (self.env.get(name) or "").strip()]
        if len(given) > 1:
            self.errors.append(f"{' and '.join(given)} are both set; give one")

    def raise_errors(self) -> None:
        if self.errors:
            raise SettingsError("; ".join(self.errors))


def _choice(enum_type: type[E]) -> Callable[[str], E]:
    def parse(raw: str) -> E:
        try:
            return enum_type(raw)
        except ValueError:
            valid = ", ".join(member.value for member in enum_type)
            raise ValueError(f"is not valid; valid values: {valid}") from None

    return parse


def _one_of(values: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.upper() not in values:
            raise ValueError(f"is not valid; valid values: {', '.join(values)}")
        return raw.upper()

    return parse


def _yes(raw: str) -> bool:
    if raw.lower() != "yes":
        raise ValueError("is not valid; valid values: yes (or leave it unset)")
    return True


def _on_off(raw: str) -> bool:
    if raw.lower() not in ("on", "off"):
        raise ValueError("is not valid; valid values: on, off")
    return raw.lower() == "on"


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"is not a whole number; valid values: {low}..{high}") from None
        if not low <= value <= high:
            raise ValueError(f"is out of range; valid values: {low}..{high}")
        return value

    return parse


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("is not a number of seconds; valid values: a number > 0") from None
    if not value > 0:
        raise ValueError("must be > 0 seconds")
    return value


def _instance_id(raw: str) -> str:
    if not INSTANCE_ID.match(raw):
        raise ValueError("is not valid; valid values: 1-32 of a-z, 0-9 and '-', starting with a letter or digit")
    return raw


def _default_instance_id() -> str:
    cleaned = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower()).strip("-")[:32]
    return cleaned or "app"


def _ip_address(raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        raise ValueError("is not an IP address; valid values: e.g. 127.0.0.1 or 0.0.0.0") from None
    return raw


def _host_name(raw: str) -> str:
    if not (_is_ip(raw) or _HOST_NAME.match(raw)):
        raise ValueError("is not an IP address or host name; valid values: e.g. 10.0.1.5 or app1-peer")
    return raw


def _bind_host(raw: str) -> str:
    """An address, a host name, or a network (CIDR): this process's address in it, found when the port is bound."""
    if "/" not in raw:
        return _host_name(raw)
    try:
        ipaddress.ip_network(raw)
    except ValueError:
        raise ValueError(
            "is not an IP address, host name or network; valid values: e.g. 10.0.1.5, app1-peer or 10.0.1.0/24"
        ) from None
    return raw


def is_network(host: str) -> bool:
    """Whether a bind host (`_bind_host`) names a network rather than an address or a name."""
    return "/" in host


def _front_door(raw: str) -> str:
    return _host_name(raw.removeprefix("[").removesuffix("]"))


def _is_ip(raw: str) -> bool:
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        return False
    return True


def _hosts(raw: str) -> tuple[str, ...]:
    hosts = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not hosts:
        raise ValueError("lists no host; valid values: comma-separated Host headers such as 'mcp.example.com:*'")
    for host in hosts:
        if host == "*" or not _HOST_PATTERN.match(host):
            raise ValueError(
                f"has the entry {host!r}; valid values: comma-separated Host headers such as "
                "'mcp.example.com', 'mcp.example.com:*' or 'nginx:8080' (DNS-rebinding protection stays on)"
            )
    return hosts


def _origins_for(hosts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{scheme}://{host}" for host in hosts for scheme in ("http", "https"))


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not origins:
        raise ValueError("lists no origin; valid values: comma-separated origins such as 'https://app.example.com'")
    for origin in origins:
        scheme, _, host = origin.partition("://")
        if scheme not in ("http", "https") or not _HOST_PATTERN.match(host):
            raise ValueError(
                f"has the entry {origin!r}; valid values: comma-separated origins such as 'https://app.example.com'"
            )
    return origins


def _redis_url(raw: str) -> str:
    if raw.startswith(SENTINEL_SCHEME):
        sentinel_address(raw)  # raises ValueError naming the form
        return raw
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(
            "is not a Redis URL; valid values: redis://host:port/db, rediss://host:port/db or "
            "redis+sentinel://[user@]host:port[,host:port...]/service[/db]"
        )
    return raw


def _redis_url_without_password(raw: str) -> str:
    url = _redis_url(raw)
    if _has_password(url):
        raise ValueError(
            "holds a password, which the environment shows to anyone who can inspect the process; "
            "keep the user in the URL (redis://mcp@redis:6379/0) and the password in MCP_REDIS_PASSWORD_FILE"
        )
    return url


def _without_password(raw: str) -> str:
    """`raw` with the password of a URL in it replaced, for error messages."""
    parts = urlsplit(raw) if "://" in raw else None
    if parts is None or not parts.password:
        return raw
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":<hidden>@", 1)).geturl()


def _has_password(url: str) -> bool:
    return not url.startswith(SENTINEL_SCHEME) and urlsplit(url).password is not None


def _redis_hosts(url: str) -> list[str]:
    if url.startswith(SENTINEL_SCHEME):
        return [host for host, _ in sentinel_address(url)[0]]
    return [urlsplit(url).hostname or ""]


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _from_file(parse: Callable[[str], Any], holding: str) -> Callable[[str], Any]:
    """`parse` of what the file at the path given holds (`holding`: what it should hold, for the error)."""

    def read(raw: str) -> Any:
        try:
            content = Path(raw).read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot be read ({exc.strerror}); give the path of a file holding {holding}") from None
        return parse(content)

    return read


def _password(content: str) -> str:
    if not content or "\n" in content:
        raise ValueError("holds no password (or several lines); the file must hold the password alone")
    return content


_secret_file = _from_file(_password, "the password")


def _peer_patterns(raw: str) -> tuple[str, ...]:
    patterns = tuple(item.strip().rstrip("/") for item in raw.split(",") if item.strip())
    for pattern in patterns:
        parts = urlsplit(pattern.replace("*", "x"))
        if parts.scheme != "http" or not parts.hostname or parts.path or parts.query:
            raise ValueError(
                f"has the entry {pattern!r}; valid values: comma-separated base URLs, `*` matching any run of "
                "letters, digits and hyphens (within one name or the port), e.g. http://app1:8000,http://app2:8000 "
                "or http://app-*.app.default.svc:8000"
            )
    if not patterns:
        raise ValueError("lists no URL; valid values: comma-separated base URLs such as http://app1:8000")
    return patterns


@functools.lru_cache(maxsize=64)
def _peer_pattern(pattern: str) -> re.Pattern[str]:
    """An MCP_PEER_URLS entry as a regex: `*` never spans a `.`, `:`, `@` or `/`, so no URL read from Redis
    matches by adding a user, a path or another domain around what the pattern names."""
    return re.compile(re.escape(pattern).replace(r"\*", "[A-Za-z0-9-]*"))


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError("is not a base URL; valid values: http://host:port, e.g. http://app1:8000")
    return raw.rstrip("/")


def _jwks_source(raw: str) -> str:
    """A JWKS file that exists, or a URL fetched over TLS (plain http only from this host)."""
    if "://" not in raw:  # the file may be written after this instance starts (the local issuer's is)
        if not Path(raw).parent.is_dir():
            raise ValueError("is in no existing directory; valid values: the path of a JWKS file, or its https:// URL")
        return raw
    parts = urlsplit(raw)
    if not parts.hostname or parts.scheme not in ("http", "https"):
        raise ValueError("is not a URL; valid values: https://issuer.example.com/.well-known/jwks.json, or a file")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            "is fetched without TLS, so anything on the way could hand this server keys of its own; "
            "valid values: an https:// URL, an http:// URL on this host, or a file"
        )
    return raw


def _public_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("is not a URL; valid values: e.g. https://login.example.com or https://mcp.example.com/mcp")
    return raw


def _scopes(raw: str) -> tuple[str, ...]:
    return tuple(raw.replace(",", " ").split())


def existing_directory(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise ValueError("is not an existing directory")
    return path.resolve()


def _hex_keys(raw: str) -> tuple[bytes, ...]:
    keys = []
    for item in (part.strip() for part in raw.split(",")):
        try:
            key = bytes.fromhex(item)
        except ValueError:
            raise ValueError("is not comma-separated hex keys; make one with: openssl rand -hex 32") from None
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError(f"has a key of {len(key)} bytes; each key needs >= {_MIN_KEY_BYTES} bytes (64 hex digits)")
        if key in keys:
            raise ValueError("has the same key twice; give each key once, newest first")
        keys.append(key)
    return tuple(keys)


def _shown(default: object) -> str:
    """A default as the configuration table shows it."""
    if default is None or default == ():
        return "none"
    if isinstance(default, enum.Enum):
        return f"`{default.value}`"
    if isinstance(default, tuple):
        return f"`{','.join(default)}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


@dataclass(frozen=True)
class Variable:
    """How a setting is read from the environment and what the configuration table says of it."""

    name: str  # MCP_...
    parse: Callable[[str], Any]  # raises ValueError saying what is valid
    doc: str  # the table's line (Markdown)
    shown_default: str | None = None  # the table's default, where the value's own would not say it
    env_default: Callable[[], Any] | None = None  # read from the environment, a default computed then
    secret: bool = False  # an error never shows the variable's value
    file_name: str | None = None  # the same value may come from a file this variable names (not with `name`)


def _setting(default: Any, variable: Variable, *, shown: bool = True) -> Any:
    return field(default=default, repr=shown and not variable.secret, metadata={VARIABLE: variable})


VARIABLE = "variable"
REQUEST_STATE_TTL_SECONDS = 300.0  # a sealed requestState opens this long: a person answering, with room


@dataclass(frozen=True)
class InstanceSettings:
    """Every setting of an instance, each declared once: its type, default, variable, parser and doc line."""

    instance_id: str = field(
        metadata={
            VARIABLE: Variable(
                "MCP_INSTANCE_ID",
                _instance_id,
                "name in `X-Mcp-Instance`, `whoami` and the logs",
                shown_default="the host name",
                env_default=_default_instance_id,
            )
        }
    )
    preset: Preset = _setting(
        Preset.STATEFUL_SSE,
        Variable(
            "MCP_PRESET",
            _choice(Preset),
            "`stateful-sse`, `stateful-json`, `stateless-sse` or `stateless-json`",
        ),
    )
    listen_host: str = _setting("127.0.0.1", Variable("MCP_LISTEN_HOST", _ip_address, "the address uvicorn listens on"))
    listen_port: int = _setting(
        8000, Variable("MCP_LISTEN_PORT", _int_between(1, 65535), "the port uvicorn listens on")
    )
    workers: int = _setting(
        1,
        Variable(
            "MCP_WORKERS",
            _int_between(1, 64),
            "uvicorn workers; more than one is refused for stateful presets with in-memory sessions (each worker "
            "would have its own session table); with the Redis store each worker also takes a forwarding port of its "
            "own ([Forwarding](#forwarding))",
        ),
    )
    allowed_hosts: tuple[str, ...] = _setting(
        DEFAULT_ALLOWED_HOSTS,
        Variable(
            "MCP_ALLOWED_HOSTS",
            _hosts,
            "`Host` headers accepted (DNS-rebinding protection stays on; `*` is refused)",
        ),
    )
    allowed_origins: tuple[str, ...] = _setting(
        (),
        Variable(
            "MCP_ALLOWED_ORIGINS",
            _origins,
            "`Origin` headers accepted",
            shown_default="`http(s)://` + each allowed host",
        ),
    )
    session_store: SessionStore = _setting(
        SessionStore.MEMORY,
        Variable(
            "MCP_SESSION_STORE",
            _choice(SessionStore),
            "`redis` serves any 2025-11-25 session from any instance (stateful presets only; needs `MCP_REDIS_URL`)",
        ),
    )
    redis_url: str | None = _setting(
        None,
        Variable(
            "MCP_REDIS_URL",
            _redis_url_without_password,
            "the Redis the instances share (compose: `redis://mcp@redis:6379/0`, the user `mcp`; through Sentinels: "
            "`redis+sentinel://mcp@host:port,.../service/db`, see [Redis](#redis)): the 2026-07-28 request-state key "
            "ring, counter handles, the published updates and the event bus; without it each instance keeps its own. "
            "A password in it is refused (the environment shows it to whoever can inspect the process), and so is a "
            "Redis beyond this host without a password",
        ),
    )
    redis_password: str | None = _setting(
        None,
        Variable(
            "MCP_REDIS_PASSWORD_FILE",
            _secret_file,
            "a file holding the password of the URL's user alone, who logs in to the Sentinels too; compose's is "
            "`/run/secrets/redis-password`, the `mcp` user's",
        ),
        shown=False,
    )
    redis_wait_replicas: int | None = _setting(
        None,
        Variable(
            "MCP_REDIS_WAIT_REPLICAS",
            _int_between(0, 16),
            "answer a write only once this many replicas have it too (Redis `WAIT`, 0.5 s a try, tried again up to "
            '`MCP_REDIS_RIDE_THROUGH`; then the write is reported as Redis unavailable, "retry")',
            shown_default="`1` through Sentinels (`redis+sentinel://`), else `0`",
        ),
    )
    redis_ride_through: float = _setting(
        10.0,
        Variable(
            "MCP_REDIS_RIDE_THROUGH",
            _seconds,
            "seconds a request waits for a Redis that is away (stopped, restarting, failing over; each try times out "
            "after 1 s and is sent again, every write applied once) before it is answered `503`; what a 2025-11-25 "
            "session sends waits as long for Redis to confirm the session its own once the instance has gone 1.5 s "
            "without an answered heartbeat ([the lease](design/redis-sessions.md#the-lease)). The default covers the "
            "Sentinel failover measured here ([results](results.md#fault-scorecard)). A draining instance (SIGTERM) "
            "waits for no Redis: a session it cannot hand over moves once it has stopped",
        ),
    )
    advertise_url: str | None = _setting(
        None,
        Variable(
            "MCP_ADVERTISE_URL",
            _http_url,
            "where the other instances reach this one to forward a session's requests (compose leaves it to its "
            "default, `http://app1-peer:8001`, ...)",
            shown_default="`http://<forward host, or listen host, or host name>:<forward port, or listen port>`",
        ),
    )
    forward_host: str | None = _setting(
        None,
        Variable(
            "MCP_FORWARD_HOST",
            _bind_host,
            "the address the forwarding port is bound to: an address, a host name, or a network (CIDR), for this "
            "process's address in it (Swarm: the backend network's); compose: `app1-peer`, ...",
            shown_default="the listen host",
        ),
    )
    forward_port: int | None = _setting(
        None,
        Variable(
            "MCP_FORWARD_PORT",
            _int_between(1, 65535),
            "with the Redis store: the port (the first of `MCP_WORKERS` ports) the other instances forward to, which "
            "then takes no client request, while the public port refuses forwarded ones ([Forwarding](#forwarding)); "
            "compose: `8001`",
        ),
    )
    peer_urls: tuple[str, ...] = _setting(
        LOOPBACK_PEERS,
        Variable(
            "MCP_PEER_URLS",
            _peer_patterns,
            "the only URLs a request is ever forwarded to (comma-separated, `*` matches any run of letters, digits "
            "and hyphens, so never a `.`, `:`, `@` or `/`; compose: `http://app1-peer:*,http://app2-peer:*,"
            "http://app3-peer:*`): an owner's URL read from Redis that none matches is refused with a log line, and "
            "the request answered 503. This instance's own URL (`MCP_ADVERTISE_URL`) must match. A `*` in the port "
            "takes any port of that host (the defaults' and compose's, for `MCP_WORKERS`): an owner URL comes from "
            "Redis, which only the instances' user writes, and names no host the patterns do not",
        ),
    )
    request_state_keys: tuple[bytes, ...] = _setting(
        (),
        Variable(
            "MCP_REQUEST_STATE_KEYS",
            _hex_keys,
            "comma-separated hex keys (≥ 32 bytes, newest first) that seal 2026-07-28 `requestState`: the "
            "deployment's own, the same on every instance. Or the same keys read from the file "
            "`MCP_REQUEST_STATE_KEYS_FILE` names (a Docker or Kubernetes secret): kept out of the process's "
            "environment, which `docker inspect` and `/proc/<pid>/environ` show; not both",
            shown_default="none: the key ring in Redis, else a random key per process (with a warning)",
            secret=True,
            file_name="MCP_REQUEST_STATE_KEYS_FILE",
        ),
    )
    request_state_ttl: float = _setting(
        REQUEST_STATE_TTL_SECONDS,
        Variable(
            "MCP_REQUEST_STATE_TTL",
            _seconds,
            "seconds a sealed `requestState` opens (with shared keys: the ring's, or `MCP_REQUEST_STATE_KEYS`); a "
            'retry later gets `-32602` "Invalid or expired requestState"',
        ),
    )
    session_idle_timeout: float = _setting(
        1800.0,
        Variable(
            "MCP_SESSION_IDLE_TIMEOUT",
            _seconds,
            "seconds of silence after which the SDK ends a session; with the Redis store, also how long a session's "
            "record outlives an owner that died",
        ),
    )
    # Sized: 58 KiB each at the largest initialize, and 84 MiB to start, fit 512 MiB.
    max_sessions: int = _setting(
        5_000,
        Variable(
            "MCP_MAX_SESSIONS",
            _int_between(1, 1_000_000),
            "the sessions one instance holds at most (the next gets `503` saying so). Sized for the compose and "
            "Kubernetes apps' 512 MiB: measured here, an instance starts at 84 MiB and an idle session costs 42 KiB, "
            "56 KiB with a 15 KiB clientInfo (a session keeps at most 16 KiB of its initialize), so 5,000 take at "
            "most 290 MiB",
        ),
    )
    auth_jwks: str | None = _setting(
        None,
        Variable(
            "MCP_AUTH_JWKS",
            _jwks_source,
            "turns authentication on: the JWKS (a file, or an `https://` URL; `http://` only on this host) whose "
            "keys sign the bearer tokens ([Authentication](#authentication))",
            shown_default="none: no authentication, and a loud warning at start",
        ),
    )
    auth_issuer: str | None = _setting(
        None,
        Variable(
            "MCP_AUTH_ISSUER",
            _public_url,
            "the tokens' issuer (`iss`), and the authorization server the metadata names",
            shown_default="none (needed with `MCP_AUTH_JWKS`)",
        ),
    )
    auth_resource: str | None = _setting(
        None,
        Variable(
            "MCP_AUTH_RESOURCE",
            _public_url,
            "this server's public MCP URL, which must be the tokens' audience (`aud`, the RFC 8707 resource)",
            shown_default="none (needed with `MCP_AUTH_JWKS`)",
        ),
    )
    auth_scopes: tuple[str, ...] = _setting(
        (),
        Variable(
            "MCP_AUTH_SCOPES",
            _scopes,
            "scopes every token must hold (space- or comma-separated); a token without them gets 403",
        ),
    )
    front_door: str | None = _setting(
        None,
        Variable(
            "MCP_FRONT_DOOR",
            _front_door,
            "the address clients reach the service on (compose: `NGINX_BIND`); beyond loopback, authentication is "
            "required ([Authentication](#authentication))",
            shown_default="the listen host",
        ),
    )
    anyone_may_call_every_tool: bool = _setting(
        False,
        Variable(
            "MCP_ANYONE_MAY_CALL_EVERY_TOOL",
            _yes,
            "`yes`: serve clients beyond loopback without authentication all the same",
            shown_default="none",
        ),
    )
    max_sessions_per_principal: int = _setting(
        100,
        Variable(
            "MCP_MAX_SESSIONS_PER_PRINCIPAL",
            _int_between(1, 1_000_000),
            "with auth on, the sessions one principal may hold: in the whole cluster with the Redis store, on each "
            "instance with the memory store; one more gets `429` saying so, while other principals open theirs",
        ),
    )
    max_sessions_per_address: int = _setting(
        1000,
        Variable(
            "MCP_MAX_SESSIONS_PER_ADDRESS",
            _int_between(1, 1_000_000),
            "with auth off, the same for one client address: the last `X-Forwarded-For` entry (the address nginx "
            "saw), else the connection's; an IPv6 address counts as its /64. A load test whose clients all come from "
            "one address raises it",
        ),
    )
    metrics_port: int | None = _setting(
        None,
        Variable(
            "MCP_METRICS_PORT",
            _int_between(1, 65535),
            "Prometheus metrics on a port of their own (the first of `MCP_WORKERS` ports); compose: `9000` "
            "([metrics](metrics.md))",
            shown_default="none (no metrics served)",
        ),
    )
    metrics_host: str | None = _setting(
        None,
        Variable(
            "MCP_METRICS_HOST",
            _bind_host,
            "the address, host name or network (CIDR, as `MCP_FORWARD_HOST`) the metrics port is bound to; compose: "
            "`app1-peer`, ...",
            shown_default="the listen host",
        ),
    )
    drain_seconds: float = _setting(
        20.0,
        Variable(
            "MCP_DRAIN_SECONDS",
            _seconds,
            "on SIGTERM, how long the calls in flight get to finish before their sessions are handed over anyway "
            "(docker-compose.yml stops an app after 30 s)",
        ),
    )
    retry_horizon: float = _setting(
        600.0,
        Variable(
            "MCP_RETRY_HORIZON",
            _seconds,
            "seconds a 2025-11-25 tool call's outcome is kept: a repeat with the same session and request id within "
            "them gets that answer instead of running again ([exactly once](design/exactly-once.md))",
        ),
    )
    log_level: str = _setting(
        "INFO",
        Variable(
            "MCP_LOG_LEVEL",
            _one_of(LOG_LEVELS),
            "logs are JSON lines with the instance and, for a session, its fingerprint (a hash: a session id is a "
            "credential)",
        ),
    )
    access_log: bool = _setting(
        False,
        Variable(
            "MCP_ACCESS_LOG",
            _on_off,
            "`on`: one line per request with its status, duration, JSON-RPC method and session fingerprint. In the "
            "[benchmark](results.md#performance) it added 0.11 ms of CPU to a 0.51 ms call, and nginx writes a line "
            "per request already",
            shown_default="`off`",
        ),
    )

    def __post_init__(self) -> None:
        # Given in code, the enums may come as their values: InstanceSettings(..., session_store="redis").
        object.__setattr__(self, "preset", Preset(self.preset))
        object.__setattr__(self, "session_store", SessionStore(self.session_store))
        if not self.allowed_origins:  # the allowed hosts' own origins
            object.__setattr__(self, "allowed_origins", _origins_for(self.allowed_hosts))
        if self.redis_wait_replicas is None:  # through Sentinels there is a replica: a write is answered once it has it
            through_sentinels = self.redis_url is not None and self.redis_url.startswith(SENTINEL_SCHEME)
            object.__setattr__(self, "redis_wait_replicas", 1 if through_sentinels else 0)
        self.check_combination()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InstanceSettings:
        """Read `MCP_*` variables; raise `SettingsError` listing every bad one."""
        reader = EnvReader(os.environ if env is None else env)
        values = {}
        for setting in fields(cls):
            variable: Variable = setting.metadata[VARIABLE]
            default = variable.env_default() if variable.env_default is not None else setting.default
            value = reader.get(variable.name, variable.parse, default, secret=variable.secret)
            if variable.file_name is not None:
                reader.only_one_of(variable.name, variable.file_name)
                value = value or reader.get(
                    variable.file_name,
                    _from_file(variable.parse, f"{variable.name}'s value"),
                    default,
                    secret=variable.secret,
                )
            values[setting.name] = value
        reader.raise_errors()
        return cls(**values)

    @classmethod
    def table(cls) -> str:
        """docs/configuration.md's table of the settings, as `mcp-cluster settings` prints it."""
        rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
        for setting in fields(cls):
            variable: Variable = setting.metadata[VARIABLE]
            default = variable.shown_default or _shown(setting.default)
            named = f"`{variable.name}`" + (f", `{variable.file_name}`" if variable.file_name else "")
            rows.append(f"| {named} | {default} | {variable.doc} |")
        return "\n".join(rows) + "\n"

    def check_combination(self) -> None:
        """Refuse combinations of valid values that cannot work."""
        if self.session_store is SessionStore.REDIS and self.redis_url is None:
            raise SettingsError(
                "MCP_SESSION_STORE='redis' needs MCP_REDIS_URL, the Redis every instance shares "
                "(e.g. redis://127.0.0.1:6379/0)"
            )
        if self.session_store is SessionStore.REDIS and self.preset.stateless:
            raise SettingsError(
                f"MCP_SESSION_STORE='redis' stores sessions, and MCP_PRESET='{self.preset.value}' has none; "
                "use MCP_SESSION_STORE=memory or a stateful preset"
            )
        if self.workers > 1 and not self.preset.stateless and self.session_store is SessionStore.MEMORY:
            raise SettingsError(
                f"MCP_WORKERS={self.workers} with MCP_PRESET='{self.preset.value}' and the memory session store "
                "would give each worker its own session table, so requests that reach another worker fail with "
                "404 'Session not found'; use MCP_WORKERS=1, a stateless preset, or MCP_SESSION_STORE=redis"
            )
        if self.redis_url is not None and not self._redis_password_given():
            hosts = _redis_hosts(self.redis_url)
            if not all(_is_loopback(host) for host in hosts):
                raise SettingsError(
                    f"MCP_REDIS_URL names a Redis beyond this host ({hosts[0]}) and no password: anything on that "
                    "network could read and rewrite every session; give the Redis user's password in a file, "
                    "MCP_REDIS_PASSWORD_FILE=/run/secrets/redis-password"
                )
        self._check_forwarding()
        self._check_metrics()
        if self.session_store is SessionStore.REDIS and not self.is_peer(self.internal_url):
            raise SettingsError(
                f"this instance's own URL {self.internal_url} is not in MCP_PEER_URLS ({', '.join(self.peer_urls)}), "
                "so the others would refuse to forward to it; add it, e.g. MCP_PEER_URLS=http://app*:8000"
            )

        self._check_auth()

    def _check_forwarding(self) -> None:
        if (ports := self.forward_ports) is None or ports[0] == 0:
            return
        if ports[-1] > 65535 or self.listen_port in ports:
            raise SettingsError(
                f"MCP_FORWARD_PORT={ports[0]} with MCP_WORKERS={self.workers} takes ports {ports[0]}..{ports[-1]}, "
                f"which must lie below 65536 and leave out MCP_LISTEN_PORT ({self.listen_port}); pick another"
            )
        advertised = urlsplit(self.advertise_url).port if self.advertise_url else None
        if self.workers == 1 and advertised not in (None, ports[0]):
            raise SettingsError(
                f"MCP_ADVERTISE_URL names port {advertised} and MCP_FORWARD_PORT is {ports[0]}: the other instances "
                "forward to the advertised URL, which must name the forwarding port (or leave MCP_ADVERTISE_URL unset)"
            )

    def _check_metrics(self) -> None:
        if (ports := self.metrics_ports) is None:
            return
        taken = {self.listen_port, *(self.forward_ports or ())}
        if ports[-1] > 65535 or taken.intersection(ports):
            raise SettingsError(
                f"MCP_METRICS_PORT={ports[0]} with MCP_WORKERS={self.workers} takes ports {ports[0]}..{ports[-1]}, "
                f"which must lie below 65536 and leave out MCP_LISTEN_PORT and MCP_FORWARD_PORT's ports "
                f"({', '.join(map(str, sorted(taken)))}); pick another"
            )

    @property
    def metrics_ports(self) -> tuple[int, ...] | None:
        """The ports this process may take for its metrics (each worker one of its own), or None: not served."""
        if self.metrics_port is None:
            return None
        return tuple(range(self.metrics_port, self.metrics_port + self.workers))

    def _check_auth(self) -> None:
        given = {"MCP_AUTH_ISSUER": self.auth_issuer, "MCP_AUTH_RESOURCE": self.auth_resource}
        if self.auth_jwks is None:
            stray = [name for name, value in given.items() if value] + (["MCP_AUTH_SCOPES"] if self.auth_scopes else [])
            if stray:
                raise SettingsError(
                    f"{', '.join(stray)} set but not MCP_AUTH_JWKS, so no token would be checked; set MCP_AUTH_JWKS "
                    "to the issuer's JWKS (a file or an https URL) to turn authentication on"
                )
            front_door, setting = (
                (self.front_door, "MCP_FRONT_DOOR") if self.front_door else (self.listen_host, "MCP_LISTEN_HOST")
            )
            if not _is_loopback(front_door) and not self.anyone_may_call_every_tool:
                raise SettingsError(
                    f"no authentication (MCP_AUTH_JWKS is not set) and clients reach this server beyond this host "
                    f"({setting}={front_door}): anyone who reaches it could open sessions and call every tool. Set "
                    "MCP_AUTH_JWKS, MCP_AUTH_ISSUER and MCP_AUTH_RESOURCE (docs/configuration.md, Authentication); "
                    "or, to serve everyone who reaches it all the same, MCP_ANYONE_MAY_CALL_EVERY_TOOL=yes"
                )
            return
        if missing := [name for name, value in given.items() if not value]:
            raise SettingsError(
                f"MCP_AUTH_JWKS turns authentication on, which needs {' and '.join(missing)}: the tokens' issuer "
                "(e.g. https://login.example.com) and this server's public MCP URL (e.g. https://mcp.example.com/mcp)"
            )

    @property
    def auth_enabled(self) -> bool:
        return self.auth_jwks is not None

    def _redis_password_given(self) -> bool:
        return self.redis_password is not None or _has_password(self.redis_url or "")

    def is_peer(self, url: str) -> bool:
        """Whether `url` is one of the instances' own addresses (MCP_PEER_URLS): the only places a request
        is ever forwarded to, whatever Redis says."""
        return any(_peer_pattern(pattern).fullmatch(url) for pattern in self.peer_urls)

    @property
    def forward_ports(self) -> tuple[int, ...] | None:
        """The ports this process may take for the requests other processes forward to it (0: one the kernel
        picks), or None when they come to the public port with the clients'."""
        if self.session_store is not SessionStore.REDIS:
            return None  # nothing is forwarded
        if self.forward_port is not None:
            return tuple(range(self.forward_port, self.forward_port + self.workers))
        return (0,) if self.workers > 1 else None  # workers share the public port: each needs one of its own

    @property
    def forwards_to_public_port(self) -> bool:
        """Whether the other instances forward to the port clients use, on an address beyond this host."""
        stored = self.session_store is SessionStore.REDIS
        return stored and self.forward_ports is None and not _is_loopback(self.listen_host)

    @property
    def forward_address(self) -> str:
        """The host the forwarding port is bound to (MCP_FORWARD_HOST, default the listen host)."""
        return self.forward_host or self.listen_host

    @property
    def internal_url(self) -> str:
        """Where the other instances reach this one to forward a session's requests (MCP_ADVERTISE_URL); with
        several workers, each replaces the port with its own."""
        if self.advertise_url is not None:
            return self.advertise_url
        host = self.forward_host or self.listen_host
        if is_network(host) or (_is_ip(host) and ipaddress.ip_address(host).is_unspecified):
            host = socket.gethostname()  # which each network's DNS answers with this process's address there
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.forward_port or self.listen_port}"
