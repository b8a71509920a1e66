#!/bin/sh
# Starts redis-server locked down, for compose, Kubernetes and the local stack alike (loadtest/harness/stack.py):
#   sh run-redis.sh [redis-server options...]             a primary (options as redis-server's)
#   REDIS_REPLICA_OF="host port" sh run-redis.sh [...]     a replica of that primary
#   REDIS_SENTINEL_MONITOR="host port" sh run-redis.sh     a Sentinel watching that primary
#   REDIS_MIN_REPLICAS=1 (or REDIS_APPS_URL=redis+sentinel://...)  a primary writes only with a replica in sync
# Each ACL user (users.acl, sentinel-users.acl beside this script) has a secret of its own, and a process reads
# only what it needs:
#   REDIS_USERS_DIR               each user's SHA-256 as <user>.sha256, no secret (a user without one is off)
#   REDIS_REPLICA_PASSWORD_FILE   a server's: the replica user's password, to follow a primary (unset: it cannot)
#   REDIS_SENTINEL_PASSWORD_FILE  a Sentinel's: the sentinel user's password
# The generated files, which hold the passwords, go to $REDIS_RUN_DIR, never to the command line.
# The default user is off: a client must log in as one of the users.
# A server loads the layer's Redis Functions (load-functions.sh) once it answers, as the `loader` user, whose
# password is made at each start and kept by no file; $REDIS_RUN_DIR/functions-loaded then says it has them. It
# reaches itself on 127.0.0.1 and its --port (a server bound elsewhere, or on TLS alone, needs them loaded by you).
set -eu
here=$(dirname "$0")
run=${REDIS_RUN_DIR:-/tmp/redis}
users=${REDIS_USERS_DIR:?run-redis: set REDIS_USERS_DIR to the folder of the users\' <user>.sha256 files}
mkdir -p "$run"
umask 077
loader_password=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
loader_hash=$(printf %s "$loader_password" | sha256sum | cut -d ' ' -f 1)

secret() { # secret FILE: its content, which must not be empty
    value=$(cat "$1")
    [ -n "$value" ] || { echo "run-redis: $1 is empty" >&2; exit 1; }
    printf %s "$value"
}
acl() { # acl FILE: its users, each with its hash filled in, or off without one
    edits=" s/#@LOADER_SHA256@/#$loader_hash/;"
    for user in mcp replica sentinel admin; do
        tag=$(printf %s "$user" | tr a-z A-Z)
        if [ -s "$users/$user.sha256" ]; then
            hash=$(tr -d ' \n' <"$users/$user.sha256")
            printf %s "$hash" | grep -Eqx '[0-9a-f]{64}' ||
                { echo "run-redis: $users/$user.sha256 is not a SHA-256 in hex" >&2; exit 1; }
            edits="$edits s/#@${tag}_SHA256@/#$hash/;"
        else
            edits="$edits s/ on #@${tag}_SHA256@/ off/;"
        fi
    done
    grep -v '^#' "$1" | sed "$edits"
}

# Every server and Sentinel lets the instances in: without their user's hash, Redis would look healthy to no use.
[ -s "$users/mcp.sha256" ] || { echo "run-redis: $users/mcp.sha256 is missing: the instances' user, mcp" >&2; exit 2; }

if [ -n "${REDIS_SENTINEL_MONITOR:-}" ]; then
    service=${REDIS_SENTINEL_SERVICE:-mcp}
    password=$(secret "${REDIS_SENTINEL_PASSWORD_FILE:?a Sentinel needs REDIS_SENTINEL_PASSWORD_FILE}")
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
        echo "sentinel sentinel-user sentinel"
        echo "sentinel sentinel-pass $password"
        echo "user default off"
        acl "$here/sentinel-users.acl"
        [ -z "${REDIS_SENTINEL_KNOWN_REPLICA:-}" ] || echo "sentinel known-replica $service $REDIS_SENTINEL_KNOWN_REPLICA"
    } >"$run/sentinel.conf"
    exec redis-server "$run/sentinel.conf" --sentinel
fi

{
    # Off: no client can log in as default. Its permissions are those Redis's AOF replay runs with (it
    # re-checks a MULTI/EXEC against them, redis/redis#14541): without them a restart drops script writes.
    echo "user default off ~* &* +@all"
    acl "$here/users.acl"
} >"$run/users.acl"
# With Sentinels (the apps' URL names them, or REDIS_MIN_REPLICAS says), a primary takes a write only while a
# replica is in sync: cut off from it, the primary refuses writes its demotion would throw away.
min_replicas=${REDIS_MIN_REPLICAS:-0}
case "${REDIS_APPS_URL:-}" in redis+sentinel://*) min_replicas=${REDIS_MIN_REPLICAS:-1} ;; esac
{
    echo "aclfile $run/users.acl"
    if [ -n "${REDIS_REPLICA_PASSWORD_FILE:-}" ]; then
        replica_password=$(secret "$REDIS_REPLICA_PASSWORD_FILE") # assigned first: an empty file stops the script
        echo "masteruser replica" # used once this server follows a primary (REDIS_REPLICA_OF, or a Sentinel's say)
        echo "masterauth $replica_password"
    elif [ -n "${REDIS_REPLICA_OF:-}" ]; then
        echo "run-redis: a replica needs REDIS_REPLICA_PASSWORD_FILE, the replica user's password" >&2
        exit 2
    fi
    [ -z "${REDIS_REPLICA_OF:-}" ] || echo "replicaof $REDIS_REPLICA_OF"
    if [ "$min_replicas" -gt 0 ]; then
        echo "min-replicas-to-write $min_replicas"
        echo "min-replicas-max-lag ${REDIS_MIN_REPLICAS_MAX_LAG:-5}"
    fi
} >"$run/redis.conf"
port=6379 previous=""
for option in "$@"; do
    [ "$previous" != --port ] || port=$option
    previous=$option
done
rm -f "$run/functions-loaded"
(
    export REDISCLI_AUTH="$loader_password" REDIS_FUNCTIONS_WAIT=3600 REDIS_FUNCTIONS_FOR_PID=$$
    sh "$here/load-functions.sh" -h 127.0.0.1 -p "$port" --user loader && touch "$run/functions-loaded"
    # Again while the server runs, when one is missing: a replica promoted since, or functions.lua changed (an
    # upgrade). The check every 5 s starts three short processes; a load, a few dozen.
    export REDIS_FUNCTIONS_WAIT=5
    while kill -0 $$ 2>/dev/null; do
        sleep 5 || true
        names=$(sed -n 's/^#!lua name=//p' "$here/functions.lua") || continue
        if redis-cli --no-auth-warning -h 127.0.0.1 -p "$port" --user loader FUNCTION LIST LIBRARYNAME 'mcp_*' |
            names=$names awk 'BEGIN { split(ENVIRON["names"], n, "\n"); for (i in n) missing[n[i]] }
                { delete missing[$0] } END { for (name in missing) exit 1 }' ||
            sh "$here/load-functions.sh" -h 127.0.0.1 -p "$port" --user loader; then
            touch "$run/functions-loaded" # a first load that failed (a Redis full or short of replicas) may succeed later
        fi
    done
) &
exec redis-server "$run/redis.conf" "$@"
