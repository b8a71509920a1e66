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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mcp_cluster.shared.redis import SENTINEL_SCHEME, sentinel_address


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


@dataclass(frozen=True)
class InstanceSettings:
    instance_id: str
    preset: Preset = Preset.STATEFUL_SSE
    listen_host: str = "127.0.0.1"
    listen_port: int = 8000
    workers: int = 1
    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS
    allowed_origins: tuple[str, ...] = ()
    session_store: SessionStore = SessionStore.MEMORY
    redis_url: str | None = None  # set: the instances share state through this Redis
    redis_password: str | None = field(default=None, repr=False)  # read from MCP_REDIS_PASSWORD_FILE
    redis_wait_replicas: int | None = None  # replicas a write must reach before it is answered (Redis WAIT)
    redis_ride_through: float = 10.0  # how long what a session sends waits for Redis to come back (a stall, a failover)
    advertise_url: str | None = None  # where the other instances reach this one; default from the listen address
    forward_host: str | None = None  # the address forwarded requests arrive on (default: the listen host)
    forward_port: int | None = None  # set: they arrive on this port only (the first of MCP_WORKERS ports)
    peer_urls: tuple[str, ...] = LOOPBACK_PEERS  # the only URLs a request is forwarded to (`*` matches any run)
    request_state_keys: tuple[bytes, ...] = field(default=(), repr=False)
    request_state_ttl: float = 300.0  # how long a sealed requestState opens: a person answering, with room
    session_idle_timeout: float = 1800.0
    max_sessions: int = 5_000  # sized: 58 KiB each at the largest initialize, and 84 MiB to start, fit 512 MiB
    auth_jwks: str | None = None  # set: every /mcp request needs a bearer JWT signed by a key in this JWKS
    auth_issuer: str | None = None  # the tokens' `iss`, and the authorization server the metadata names
    auth_resource: str | None = None  # this server's public /mcp URL: the tokens' audience (RFC 8707)
    auth_scopes: tuple[str, ...] = ()  # scopes every token must hold
    front_door: str | None = None  # where clients reach the service (the balancer's address); default the listen host
    anyone_may_call_every_tool: bool = False  # beyond loopback, no authentication only when this says so
    max_sessions_per_principal: int = 100  # with auth on, the sessions one principal may hold (Redis store: in all)
    max_sessions_per_address: int = 1000  # with auth off, the sessions one client address may hold (idem)
    metrics_port: int | None = None  # set: Prometheus metrics on this port (the first of MCP_WORKERS ports)
    metrics_host: str | None = None  # the address the metrics port is bound to (default: the listen host)
    drain_seconds: float = 20.0  # on SIGTERM, how long the calls in flight get before their sessions move anyway
    retry_horizon: float = 600.0  # how long a tool call's outcome answers a repeat of it (the same request id)
    log_level: str = "INFO"
    access_log: bool = False  # a JSON line per request: 0.11 ms of CPU a call (docs/results.md), and nginx logs it too

    def __post_init__(self) -> None:
        # Given in code, the enums may come as their values: InstanceSettings(..., session_store="redis").
        object.__setattr__(self, "preset", Preset(self.preset))
        object.__setattr__(self, "session_store", SessionStore(self.session_store))
        if self.redis_wait_replicas is None:  # through Sentinels there is a replica: a write is answered once it has it
            through_sentinels = self.redis_url is not None and self.redis_url.startswith(SENTINEL_SCHEME)
            object.__setattr__(self, "redis_wait_replicas", 1 if through_sentinels else 0)
        self.check_combination()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InstanceSettings:
        """Read `MCP_*` variables; raise `SettingsError` listing every bad one."""
        reader = EnvReader(os.environ if env is None else env)
        allowed_hosts = reader.get("MCP_ALLOWED_HOSTS", _hosts, DEFAULT_ALLOWED_HOSTS)
        values = {
            "instance_id": reader.get("MCP_INSTANCE_ID", _instance_id, _default_instance_id()),
            "preset": reader.get("MCP_PRESET", _choice(Preset), Preset.STATEFUL_SSE),
            "listen_host": reader.get("MCP_LISTEN_HOST", _ip_address, "127.0.0.1"),
            "listen_port": reader.get("MCP_LISTEN_PORT", _int_between(1, 65535), 8000),
            "workers": reader.get("MCP_WORKERS", _int_between(1, 64), 1),
            "allowed_hosts": allowed_hosts,
            "allowed_origins": reader.get(
                "MCP_ALLOWED_ORIGINS", _origins, _origins_for(allowed_hosts or DEFAULT_ALLOWED_HOSTS)
            ),
            "session_store": reader.get("MCP_SESSION_STORE", _choice(SessionStore), SessionStore.MEMORY),
            "redis_url": reader.get("MCP_REDIS_URL", _redis_url_without_password, None),
            "redis_password": reader.get("MCP_REDIS_PASSWORD_FILE", _secret_file, None),
            "redis_wait_replicas": reader.get("MCP_REDIS_WAIT_REPLICAS", _int_between(0, 16), None),
            "redis_ride_through": reader.get("MCP_REDIS_RIDE_THROUGH", _seconds, 10.0),
            "advertise_url": reader.get("MCP_ADVERTISE_URL", _http_url, None),
            "forward_host": reader.get("MCP_FORWARD_HOST", _host_name, None),
            "forward_port": reader.get("MCP_FORWARD_PORT", _int_between(1, 65535), None),
            "peer_urls": reader.get("MCP_PEER_URLS", _peer_patterns, LOOPBACK_PEERS),
            "request_state_keys": reader.get("MCP_REQUEST_STATE_KEYS", _hex_keys, (), secret=True)
            or reader.get("MCP_REQUEST_STATE_KEYS_FILE", _hex_keys_file, (), secret=True),
            "request_state_ttl": reader.get("MCP_REQUEST_STATE_TTL", _seconds, 300.0),
            "session_idle_timeout": reader.get("MCP_SESSION_IDLE_TIMEOUT", _seconds, 1800.0),
            "max_sessions": reader.get("MCP_MAX_SESSIONS", _int_between(1, 1_000_000), 5_000),
            "auth_jwks": reader.get("MCP_AUTH_JWKS", _jwks_source, None),
            "auth_issuer": reader.get("MCP_AUTH_ISSUER", _public_url, None),
            "auth_resource": reader.get("MCP_AUTH_RESOURCE", _public_url, None),
            "auth_scopes": reader.get("MCP_AUTH_SCOPES", _scopes, ()),
            "front_door": reader.get(
                "MCP_FRONT_DOOR", lambda raw: _host_name(raw.removeprefix("[").removesuffix("]")), None
            ),
            "anyone_may_call_every_tool": reader.get("MCP_ANYONE_MAY_CALL_EVERY_TOOL", _yes, False),
            "max_sessions_per_principal": reader.get("MCP_MAX_SESSIONS_PER_PRINCIPAL", _int_between(1, 1_000_000), 100),
            "max_sessions_per_address": reader.get("MCP_MAX_SESSIONS_PER_ADDRESS", _int_between(1, 1_000_000), 1000),
            "metrics_port": reader.get("MCP_METRICS_PORT", _int_between(1, 65535), None),
            "metrics_host": reader.get("MCP_METRICS_HOST", _host_name, None),
            "drain_seconds": reader.get("MCP_DRAIN_SECONDS", _seconds, 20.0),
            "retry_horizon": reader.get("MCP_RETRY_HORIZON", _seconds, 600.0),
            "log_level": reader.get("MCP_LOG_LEVEL", _one_of(LOG_LEVELS), "INFO"),
            "access_log": reader.get("MCP_ACCESS_LOG", _on_off, False),
        }
        reader.only_one_of("MCP_REQUEST_STATE_KEYS", "MCP_REQUEST_STATE_KEYS_FILE")
        reader.raise_errors()
        return cls(**values)

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
        if _is_ip(host) and ipaddress.ip_address(host).is_unspecified:
            host = socket.gethostname()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.forward_port or self.listen_port}"


class EnvReader:
    """Parses variables one by one, collecting every error instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def get(self, name, parse, default, *, secret=False):
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


def _choice(enum_type):
    def parse(raw: str):
        try:
            return enum_type(raw)
        except ValueError:
            valid = ", ".join(member.value for member in enum_type)
            raise ValueError(f"is not valid; valid values: {valid}") from None

    return parse


def _one_of(values: tuple[str, ...]):
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


def _int_between(low: int, high: int):
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


def _secret_file(raw: str) -> str:
    try:
        value = Path(raw).read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror}); give the path of a file holding the password") from None
    if not value or "\n" in value:
        raise ValueError("holds no password (or several lines); the file must hold the password alone")
    return value


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


def _hex_keys_file(raw: str) -> tuple[bytes, ...]:
    try:
        return _hex_keys(Path(raw).read_text().strip())
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror}); give the path of a file holding the keys") from None


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
