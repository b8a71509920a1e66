#!/bin/sh
# Starts redis-server locked down, for compose and the local stack alike (loadtest/stack.py):
#   sh run-redis.sh [redis-server options...]             a primary (options as redis-server's)
#   REDIS_REPLICA_OF="host port" sh run-redis.sh [...]     a replica of that primary
#   REDIS_SENTINEL_MONITOR="host port" sh run-redis.sh     a Sentinel watching that primary
#   REDIS_MIN_REPLICAS=1 (or REDIS_APPS_URL=redis+sentinel://...)  a primary writes only with a replica in sync
# Every password is the one in $REDIS_PASSWORD_FILE; the ACL (users.acl beside this script) gets only its
# SHA-256, and the generated files, which hold it, go to $REDIS_RUN_DIR, never to the command line.
# The default user is off: a client must log in as one of the users in users.acl.
set -eu
here=$(dirname "$0")
run=${REDIS_RUN_DIR:-/tmp/redis}
mkdir -p "$run"
umask 077
password=$(cat "${REDIS_PASSWORD_FILE:?the file holding the Redis password}")
[ -n "$password" ] || { echo "run-redis: $REDIS_PASSWORD_FILE is empty" >&2; exit 1; }
hash=$(printf %s "$password" | sha256sum | cut -d' ' -f1)

if [ -n "${REDIS_SENTINEL_MONITOR:-}" ]; then
    service=${REDIS_SENTINEL_SERVICE:-mcp}
    {
        echo "port ${REDIS_SENTINEL_PORT:-26379}"
        [ -z "${REDIS_BIND:-}" ] || echo "bind $REDIS_BIND"
        echo "dir $run"
        echo "sentinel resolve-hostnames yes"
        echo "sentinel monitor $service $REDIS_SENTINEL_MONITOR 2"
        echo "sentinel down-after-milliseconds $service ${REDIS_SENTINEL_DOWN_AFTER_MS:-1000}"
        echo "sentinel failover-timeout $service 10000"
        echo "sentinel auth-user $service sentinel"
        echo "sentinel auth-pass $service $password"
        echo "sentinel sentinel-pass $password"
        echo "requirepass $password"
        [ -z "${REDIS_SENTINEL_KNOWN_REPLICA:-}" ] || echo "sentinel known-replica $service $REDIS_SENTINEL_KNOWN_REPLICA"
    } >"$run/sentinel.conf"
    exec redis-server "$run/sentinel.conf" --sentinel
fi

{
    # Off: no client can log in as default. Its permissions are those Redis's AOF replay runs with (it
    # re-checks a MULTI/EXEC against them, redis/redis#14541): without them a restart drops script writes.
    echo "user default off ~* &* +@all"
    grep -v '^#' "$here/users.acl" | sed "s/@PASSWORD_SHA256@/$hash/"
    if [ -n "${REDIS_ADMIN_PASSWORD_FILE:-}" ]; then # the local stack's test harness only
        admin=$(cat "$REDIS_ADMIN_PASSWORD_FILE")
        echo "user admin on #$(printf %s "$admin" | sha256sum | cut -d" " -f1) ~* &* +@all"
    fi
} >"$run/users.acl"
# With Sentinels (the apps' URL names them, or REDIS_MIN_REPLICAS says), a primary takes a write only while a
# replica is in sync: cut off from it, the primary refuses writes its demotion would throw away.
min_replicas=${REDIS_MIN_REPLICAS:-0}
case "${REDIS_APPS_URL:-}" in redis+sentinel://*) min_replicas=${REDIS_MIN_REPLICAS:-1} ;; esac
{
    echo "aclfile $run/users.acl"
    echo "masteruser replica" # used once a Sentinel makes this server a replica
    echo "masterauth $password"
    [ -z "${REDIS_REPLICA_OF:-}" ] || echo "replicaof $REDIS_REPLICA_OF"
    if [ "$min_replicas" -gt 0 ]; then
        echo "min-replicas-to-write $min_replicas"
        echo "min-replicas-max-lag ${REDIS_MIN_REPLICAS_MAX_LAG:-5}"
    fi
} >"$run/redis.conf"
exec redis-server "$run/redis.conf" "$@"
