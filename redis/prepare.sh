#!/bin/sh
# Compose's one-shot redis-init: before Redis and the apps start, make the Redis password once (kept in the
# `secrets` volume, the same for every container, never in the repository), readable by the Redis and app
# users' group alone, and give Redis its data directories.
set -eu
secret=/run/secrets/redis-password
if [ ! -s "$secret" ]; then
    umask 077
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret.new"
    mv "$secret.new" "$secret"
fi
chown "0:$SECRET_GROUP" "$secret"
chmod 0440 "$secret"
# Not -R: what Redis writes inside is its own already (and closed to a root without capabilities).
for data in "$@"; do chown "$REDIS_UID:$SECRET_GROUP" "$data"; done
