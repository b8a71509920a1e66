"""Who is who to nginx. On the local stack the attacker and the victim connect from different addresses (all of
127.0.0.0/8 is this host's). In compose every connection reaches nginx from the frontend network's gateway (the
published port's proxy), so the harness stands in for a proxy in front of nginx: nginx trusts that gateway
(NGINX_TRUSTED_PROXIES), and each client names its address in X-Forwarded-For, as behind an Ingress."""

from __future__ import annotations

from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter


@dataclass(frozen=True)
class Client:
    source: str  # the address connections leave from
    forwarded_for: str | None = None  # the address the proxy in front names, where there is one
    token: str | None = None  # its bearer token, with authentication on: then the principal is the client

    def headers(self) -> dict[str, str]:
        """The headers that say who the client is, if any."""
        named = {"X-Forwarded-For": self.forwarded_for} if self.forwarded_for else {}
        return {**named, **({"Authorization": f"Bearer {self.token}"} if self.token else {})}

    def header_lines(self) -> bytes:
        """The same, as a raw request's header lines."""
        return "".join(f"{name}: {value}\r\n" for name, value in self.headers().items()).encode()


LOCAL_ATTACKER = Client("127.0.0.1")
LOCAL_VICTIMS = (Client("127.0.0.2"), Client("127.0.0.3"))
PROXIED_ATTACKER = Client("127.0.0.1", "198.51.100.1")
PROXIED_VICTIMS = (Client("127.0.0.1", "198.51.100.2"), Client("127.0.0.1", "198.51.100.3"))


class _FromAddress(HTTPAdapter):
    def __init__(self, source: str, connections: int) -> None:
        self._source = source
        super().__init__(pool_connections=1, pool_maxsize=connections)

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


def session_of(client: Client, connections: int = 4) -> requests.Session:
    """A requests session whose every request comes from `client`."""
    session = requests.Session()
    session.mount("http://", _FromAddress(client.source, connections))
    session.headers.update(client.headers())
    return session
