"""Who a request comes from, as every per-client bound counts it: the principal its token stands for
(authentication on), else the address nginx saw (an IPv6 address as its /64, which one client usually has whole)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import Scope

from mcp_cluster.auth.principal import principal_hash, principal_of
from mcp_cluster.http.messages import header

FORWARDED_FOR_HEADER = b"x-forwarded-for"


@dataclass(frozen=True)
class ClientId:
    key: str  # "principal:<hash>" or "address:<address>"
    words: str  # how a refusal names it: "this principal", "this client address"

    @property
    def is_principal(self) -> bool:
        return self.key.startswith("principal:")


def client_of(scope: Scope) -> ClientId:
    principal = principal_of(scope)
    if principal is not None:
        return ClientId(f"principal:{principal_hash(principal)}", "this principal")
    return ClientId(f"address:{client_address(scope)}", "this client address")


def client_of_request(request: object) -> ClientId:
    """The client of an MCP request's transport request (the SDK's `ctx.request`): its HTTP request's, or, on a
    transport without one, the one client "unknown"."""
    return client_of(request.scope if isinstance(request, Request) else {})


def client_address(scope: Scope) -> str:
    """The address the request came from: the last `X-Forwarded-For` entry (the one nginx adds: the address it
    saw), else the connection's own; an IPv6 address counts as its /64."""
    forwarded = header(scope.get("headers", []), FORWARDED_FOR_HEADER)
    seen = forwarded.rpartition(",")[2].strip() if forwarded else (scope.get("client") or ("unknown",))[0]
    try:
        address = ipaddress.ip_address(seen)
    except ValueError:
        return seen[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
