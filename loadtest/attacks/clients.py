"""HTTP from a chosen source address: the attacker and the victim are different clients to nginx because they
connect from different addresses (all of 127.0.0.0/8 is this host's)."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter

ATTACKER = "127.0.0.1"
VICTIMS = ("127.0.0.2", "127.0.0.3")


class _FromAddress(HTTPAdapter):
    def __init__(self, source: str, connections: int) -> None:
        self._source = source
        super().__init__(pool_connections=1, pool_maxsize=connections)

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(source: str, connections: int = 4) -> requests.Session:
    """A requests session whose every connection leaves from `source`."""
    session = requests.Session()
    session.mount("http://", _FromAddress(source, connections))
    return session
