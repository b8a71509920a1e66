#!/bin/sh
# Assemble nginx's run directory from the shared config, one policy and one site, then run nginx in the foreground.
#   LB_POLICY       round-robin (default), ip-hash or session
#   NGINX_SITE_DIR  directory holding upstream-servers.conf, instance-upstreams.conf and listen.conf
#   NGINX_RUN_DIR   where the assembled config, pid and temp files go (default /tmp/nginx-mcp)
#   NGINX_FOLLOW_HOSTS  the instances' host names (compose): nginx resolves them once, so it reloads when they change
#   NGINX_CONNECTIONS_PER_CLIENT  open connections one client address may hold to /mcp (default 512)
#   NGINX_REQUESTS_PER_CLIENT     requests per second one client address may send to /mcp (default 2000)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
policy=${LB_POLICY:-round-robin}
case "$policy" in
    round-robin|ip-hash|session) ;;
    *) echo "run-nginx: LB_POLICY='$policy' is not valid; valid values: round-robin, ip-hash, session" >&2; exit 2 ;;
esac
site=${NGINX_SITE_DIR:?run-nginx: set NGINX_SITE_DIR to the directory with the site files (see nginx.conf)}
run=${NGINX_RUN_DIR:-/tmp/nginx-mcp}
mkdir -p "$run"
cp "$here/nginx.conf" "$here/keepalive.conf" "$here/proxy-to-instance.conf" "$run/"
cp "$here/policies/$policy.conf" "$run/policy.conf"
cp "$site/upstream-servers.conf" "$site/instance-upstreams.conf" "$site/listen.conf" "$run/"
connections=${NGINX_CONNECTIONS_PER_CLIENT:-512}
requests=${NGINX_REQUESTS_PER_CLIENT:-2000}
for bound in "NGINX_CONNECTIONS_PER_CLIENT=$connections" "NGINX_REQUESTS_PER_CLIENT=$requests"; do
    case "${bound#*=}" in
        '' | *[!0-9]* | 0*) echo "run-nginx: $bound is not valid; valid values: a whole number above 0" >&2; exit 2 ;;
    esac
done
# A client past either bound gets 429 with a JSON-RPC error (nginx.conf); the others go on being served.
printf 'limit_conn_zone $binary_remote_addr zone=per_client_connections:10m;\n' >"$run/client-zones.conf"
printf 'limit_req_zone $binary_remote_addr zone=per_client_requests:10m rate=%sr/s;\n' "$requests" >>"$run/client-zones.conf"
printf 'limit_conn per_client_connections %s;\nlimit_req zone=per_client_requests burst=%s nodelay;\n' \
    "$connections" "$requests" >"$run/client-limits.conf"
follow=${NGINX_FOLLOW_HOSTS:-}
if [ -n "$follow" ] && ! command -v getent >/dev/null 2>&1; then
    echo "run-nginx: no getent here, so nginx will not follow an instance recreated at another address" >&2
    follow=""
fi
[ -n "$follow" ] || exec nginx -e stderr -p "$run" -c "$run/nginx.conf" -g 'daemon off;'

addresses() { for host in $follow; do getent hosts "$host" | awk '{ printf "%s ", $1 }'; done; }
nginx -e stderr -p "$run" -c "$run/nginx.conf" -g 'daemon off;' &
nginx=$!
trap 'kill -TERM "$nginx" 2>/dev/null || :' TERM INT
trap 'kill -QUIT "$nginx" 2>/dev/null || :' QUIT
seen=$(addresses)
while kill -0 "$nginx" 2>/dev/null; do
    sleep 1 &
    wait $! || :
    now=$(addresses)
    if [ "$now" != "$seen" ]; then
        # A reload while a name does not resolve fails, and nginx keeps its config until the next change.
        echo "run-nginx: $follow now at $now; reloading" >&2
        kill -HUP "$nginx" 2>/dev/null || :
        seen=$now
    fi
done
wait "$nginx"
