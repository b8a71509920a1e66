"""The layer's Lua, run in Redis as Redis Functions, so that the instances' Redis user needs no EVAL.

Each script is a library of its own, named from its code and flags (`mcp_<digest>`): loading one again changes
nothing, and the instances of two versions running side by side (a rolling upgrade) each find their own. A
locked-down Redis loads them at start (redis/run-redis.sh, from redis/functions.lua, which `mcp-cluster
redis-functions` writes); the instances' user may call them (FCALL), but may load none and run no other
Lua. A Redis whose user may load functions (one without ACL users) gets each from the instance that first
calls it.

Flags say what Redis lets a function do before it runs: without any, it is refused while Redis is full
(maxmemory) or lacks the replicas a write needs, as every write is."""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
from dataclasses import dataclass
from functools import cached_property

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, RedisError, ResponseError

NO_WRITES = "no-writes"  # reads only: runs while Redis is full, or refuses writes
ALLOW_OOM = "allow-oom"  # writes that take no memory (PEXPIRE, DEL, a member moved): runs while Redis is full
LOADED_BY = "redis/functions.lua"


@dataclass(frozen=True)
class RedisFunction:
    """One Lua script (it reads KEYS and ARGV, as an EVAL script does) as a Redis Function."""

    code: str
    flags: tuple[str, ...] = ()

    @cached_property  # read at every call: hashed once
    def name(self) -> str:
        return "mcp_" + hashlib.sha256(f"{self.flags}\n{self.code}".encode()).hexdigest()[:20]

    @property
    def library(self) -> str:
        """What FUNCTION LOAD takes: a library of this one function."""
        flags = ", ".join(f"'{flag}'" for flag in self.flags)
        return (
            f"#!lua name={self.name}\n"
            f"redis.register_function{{function_name='{self.name}', flags={{{flags}}}, "
            f"callback=function(KEYS, ARGV)\n{self.code.strip()}\nend}}\n"
        )

    def bound_to(self, redis: Redis) -> BoundFunction:
        return BoundFunction(self, redis)


class FunctionNotLoaded(RedisError):
    """Redis lacks one of the layer's functions, and the instances' user may not load it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Redis lacks the function {name} and this user may not load it: load {LOADED_BY}")


@dataclass(frozen=True)
class BoundFunction:
    """A function as called on one Redis client (`run_function` or `call_function` in mcp_cluster/shared/redis.py)."""

    function: RedisFunction
    redis: Redis

    @property
    def name(self) -> str:
        return self.function.name

    async def load(self) -> None:
        """Load the function into Redis (after another instance did, nothing changes), or FunctionNotLoaded."""
        try:
            await self.redis.function_load(self.function.library)
        except NoPermissionError:
            raise FunctionNotLoaded(self.name) from None
        except ResponseError as exc:
            if "already exists" not in str(exc):
                raise


def is_missing(exc: BaseException) -> bool:
    """Whether Redis answered that it has no such function (a new or emptied Redis, before the load)."""
    # Alone, or as a pipeline's error (redis-py ends its message with the error's args)
    return isinstance(exc, ResponseError) and str(exc).endswith(("Function not found", "Function not found',)"))


def every_function(*packages: str) -> list[RedisFunction]:
    """Every function the library, and each package named (a server's own), defines at the top of a module, in
    the order of their names."""
    found: dict[str, RedisFunction] = {}
    for package in ("mcp_cluster", *packages):
        root = importlib.import_module(package)
        modules = [root.__name__] + [
            module.name
            for module in pkgutil.walk_packages(getattr(root, "__path__", []), f"{package}.")
            if module.name.rsplit(".", 1)[-1] != "__main__"
        ]
        for name in modules:
            for value in vars(importlib.import_module(name)).values():
                if isinstance(value, RedisFunction):
                    found[value.name] = value
    return [found[name] for name in sorted(found)]


def library_file(*packages: str) -> str:
    """redis/functions.lua: every function's library, one after another (each begins at its `#!lua` line)."""
    command = " ".join(("mcp-cluster redis-functions", *packages))
    head = f"-- Redis Functions, one library each; written by `{command} > {LOADED_BY}`.\n"
    return head + "\n".join(function.library for function in every_function(*packages))
