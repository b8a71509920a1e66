#!/bin/sh
# Loads the layer's Redis Functions (functions.lua beside this script) into a primary: each library it lacks.
#   REDISCLI_AUTH=<password> sh load-functions.sh [redis-cli connection options: -h HOST -p PORT --user USER ...]
# Run it as a user that may load and list functions (FUNCTION LOAD, FUNCTION LIST): the instances' user (mcp)
# may only call them.
# run-redis.sh runs it at every start of a server; run it yourself for a Redis you did not start with it.
# It waits up to REDIS_FUNCTIONS_WAIT seconds (60) for the server to take them, does nothing on a replica (its
# primary's reach it), and exits 1 when Redis refuses a library or never takes it.
set -eu
here=$(dirname "$0")
libraries=$(mktemp -d)
trap 'rm -rf "$libraries"' EXIT
# One file per library: each begins at its `#!lua name=` line.
awk -v dir="$libraries" '/^#!lua name=/ { n++ } n { print > (dir "/" n ".lua") }' "$here/functions.lua"
deadline=$(($(date +%s) + ${REDIS_FUNCTIONS_WAIT:-60}))

while :; do
    role=$(redis-cli --no-auth-warning "$@" ROLE 2>&1 | head -n 1) || true
    case "$role" in
    slave | sentinel) exit 0 ;;
    master)
        # Those it has already are not loaded again: a full Redis, or one short of replicas, refuses any load.
        listed=$(redis-cli --no-auth-warning "$@" FUNCTION LIST LIBRARYNAME 'mcp_*' 2>&1) || true
        case "$listed" in NOPERM*) listed="" ;; esac # a user that may load but not list: each load says
        for library in "$libraries"/*.lua; do
            if printf '%s\n' "$listed" | grep -qx "$(sed -n '1s/^#!lua name=//p' "$library")"; then
                rm "$library"
                continue
            fi
            answer=$(redis-cli --no-auth-warning "$@" -x FUNCTION LOAD <"$library" 2>&1) || true
            case "$answer" in
            mcp_* | *"already exists"*) rm "$library" ;;
            LOADING* | NOREPLICAS* | OOM* | *"onnection refused"* | *"Server closed"*) break ;; # not yet: again
            *)
                echo "load-functions: Redis refused $(head -n 1 "$library"): $answer" >&2
                exit 1
                ;;
            esac
        done
        [ -n "$(ls "$libraries")" ] || exit 0
        ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "load-functions: Redis took none or only some of the functions within ${REDIS_FUNCTIONS_WAIT:-60} s (last: $role)" >&2
        exit 1
    fi
    # run-redis.sh's load stops with its server
    [ -z "${REDIS_FUNCTIONS_FOR_PID:-}" ] || kill -0 "$REDIS_FUNCTIONS_FOR_PID" 2>/dev/null || exit 1
    sleep 0.2
done
