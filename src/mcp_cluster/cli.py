"""`mcp-cluster`: serve a server as one instance of several, rotate the request-state keys, print the Redis
functions. Every command reads the `MCP_*` variables (docs/configuration.md) and stops on a bad one, naming it.

    mcp-cluster serve notes.server:mcp          # an MCPServer (or a factory returning an ASGI app)
    mcp-cluster request-state-keys rotate       # a new key on the ring every instance reads from Redis
    mcp-cluster redis-functions > functions.lua # what Redis loads (redis/load-functions.sh)
    mcp-cluster settings                        # every MCP_* variable, its default and meaning
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeGuard

import anyio
from redis.exceptions import RedisError
from starlette.types import ASGIApp

from mcp_cluster.serving import run_from_env
from mcp_cluster.settings import InstanceSettings, SettingsError
from mcp_cluster.shared import request_state_keys as keys
from mcp_cluster.shared.redis import RedisUnavailable, connect

PROG = "mcp-cluster"
SERVED = "MCP_CLUSTER_SERVED"  # the served server's "module:name", for uvicorn's workers, each a new process


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a server as one instance of several, with uvicorn")
    serve.add_argument(
        "target",
        metavar="MODULE:NAME",
        help="an MCPServer or a fastmcp.FastMCP, or a function taking no arguments that returns one or an ASGI app",
    )
    ring = commands.add_parser("request-state-keys", help="show or rotate the key ring kept in Redis (MCP_REDIS_URL)")
    ring.add_argument("action", choices=("show", "rotate"))
    ring.add_argument(
        "--activate-in",
        type=float,
        default=keys.ACTIVATION_SECONDS,
        metavar="SECONDS",
        help=f"rotate: seal with the new key after this long (default {keys.ACTIVATION_SECONDS:.0f}; at least "
        f"{keys.MIN_ACTIVATION_SECONDS:.0f}, two of the instances' {keys.REFRESH_SECONDS:.0f} s refresh periods)",
    )
    commands.add_parser("settings", help="print every MCP_* setting, its default and meaning (Markdown)")
    functions = commands.add_parser("redis-functions", help="print the Redis functions the instances call")
    functions.add_argument(
        "packages", nargs="*", metavar="PACKAGE", help="a server's own package whose functions to add"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, os.getcwd())  # a server's modules, found in the current folder as `python -m` finds them

    if args.command == "serve":
        return serve_target(args.target, parser)
    if args.command == "request-state-keys":
        if args.activate_in < keys.MIN_ACTIVATION_SECONDS:
            parser.error(f"--activate-in must be at least {keys.MIN_ACTIVATION_SECONDS:.0f} seconds")
        return request_state_keys(args.action, args.activate_in)
    if args.command == "settings":
        sys.stdout.write(InstanceSettings.table())
        return 0
    from mcp_cluster.shared.functions import library_file

    sys.stdout.write(library_file(*args.packages))
    return 0


def serve_target(target: str, parser: argparse.ArgumentParser) -> int:
    try:
        served = _load(target)
    except (ImportError, AttributeError, ValueError) as exc:
        parser.error(f"cannot load {target}: {exc}")
    if _is_factory(served):
        return run_from_env(target, PROG)  # a factory of the user's own: uvicorn calls it in each worker
    os.environ[SERVED] = target
    return run_from_env(f"{__name__}:served_app", PROG)


def served_app() -> ASGIApp:
    """uvicorn's factory for `serve MODULE:NAME` of a server: it, as one instance of several."""
    from mcp_cluster.instance import instance_app
    from mcp_cluster.logs import configure_logging

    settings = InstanceSettings.from_env()
    configure_logging(settings.instance_id, settings.log_level)
    served = _load(os.environ[SERVED])
    return instance_app(served() if _is_factory(served) else served, settings)


def request_state_keys(action: str, activate_in: float) -> int:
    name = f"{PROG} request-state-keys"
    try:
        settings = InstanceSettings.from_env()  # MCP_REDIS_URL and MCP_REDIS_PASSWORD_FILE, checked as the instances do
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    if settings.redis_url is None:
        print(f"{name}: set MCP_REDIS_URL to the Redis the instances share", file=sys.stderr)
        return 2
    redis_url = settings.redis_url

    async def run() -> list[keys.RingKey]:
        redis = connect(redis_url, password=settings.redis_password)
        try:
            return await (keys.rotate(redis, activate_in) if action == "rotate" else keys.load_ring(redis))
        finally:
            await redis.aclose()

    try:
        ring = anyio.run(run)
    except (RedisUnavailable, RedisError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    codec, now = keys.KeyRingCodec(ring), time.time()
    for key in codec.ring:
        due = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(key.seals_from))
        role = "seals" if key == codec.sealing_key() else f"seals from {due}" if key.seals_from > now else "opens"
        print(f"{keys.fingerprint(key.secret)}  {role}")
    return 0


def _load(target: str) -> object:
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise ValueError("expected MODULE:NAME, e.g. notes.server:mcp")
    value: object = importlib.import_module(module)
    for part in name.split("."):
        value = getattr(value, part)
    return value


def _is_factory(value: object) -> TypeGuard[Callable[[], object]]:
    """A function of the user's own (it makes the server or the app), not a server (a FastMCP may be callable)."""
    from mcp_cluster.servers import is_server

    return callable(value) and not is_server(value)
