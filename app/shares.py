"""What the demo's in-memory stores hold, by key, and for which client: a least-recently-used table of at most
`limit` entries, of which one client keeps `per_client`. Past its share, a client's own least recently used
entry goes, never another client's; past `limit`, the least recently used of all."""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Generic, TypeVar

V = TypeVar("V")


class ClientShares(Generic[V]):
    def __init__(self, limit: int, per_client: int) -> None:
        self._limit = limit
        self._per_client = per_client
        self._values: OrderedDict[str, V] = OrderedDict()
        self._owner: dict[str, str] = {}  # key -> the key of the client whose entry it is (who put it first)
        self._owned: defaultdict[str, OrderedDict[str, None]] = defaultdict(OrderedDict)  # client key -> its keys

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def get(self, key: str, default: V) -> V:
        return self._values.get(key, default)

    def put(self, key: str, value: V, client: str) -> None:
        """Set `key` (a new one is `client`'s) and make it the most recently used, in the table and in its owner's
        share."""
        if key not in self._values:
            if len(self._owned[client]) >= self._per_client:
                self._forget(next(iter(self._owned[client])))
            self._owner[key] = client
        self._values[key] = value
        self._values.move_to_end(key)
        self._owned[self._owner[key]][key] = None
        self._owned[self._owner[key]].move_to_end(key)
        while len(self._values) > self._limit:
            self._forget(next(iter(self._values)))

    def _forget(self, key: str) -> None:
        del self._values[key]
        owner = self._owner.pop(key)
        del self._owned[owner][key]
        if not self._owned[owner]:
            del self._owned[owner]
