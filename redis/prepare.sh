#!/bin/sh
# Compose's one-shot redis-init: before Redis and the apps start, make each Redis user's secret once (kept in the
# `secrets` volume, never in the repository), each readable by the group of the one service that acts as that
# user alone, with every user's SHA-256 beside them for the servers' ACLs; and give Redis its data directories.
#   APP_GROUP, REDIS_UID, SENTINEL_UID   the apps' group, the Redis servers' and the Sentinels' users
set -eu
dir=/run/secrets
mkdir -p "$dir/redis-users"
umask 077
for pair in "redis-password:mcp:$APP_GROUP" "redis-replica-password:replica:$REDIS_UID" \
    "redis-sentinel-password:sentinel:$SENTINEL_UID"; do
    file=$dir/${pair%%:*} rest=${pair#*:}
    user=${rest%%:*} group=${rest#*:}
    if [ ! -s "$file" ]; then
        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file.new"
        mv "$file.new" "$file"
    fi
    chown "0:$group" "$file"
    chmod 0440 "$file"
    hash=$dir/redis-users/$user.sha256  # made anew: a root without capabilities may not write the old one
    rm -f "$hash.new" # left by a run stopped before its mv: read-only, and root here may not overwrite it
    printf %s "$(cat "$file")" | sha256sum | cut -d' ' -f1 >"$hash.new"
    chmod 0444 "$hash.new"
    mv "$hash.new" "$hash"
done
chmod 0755 "$dir/redis-users"
# Not -R: what Redis writes inside is its own already (and closed to a root without capabilities).
for data in "$@"; do chown "$REDIS_UID:$REDIS_UID" "$data"; done
