#!/bin/sh
# Assemble nginx's run directory from the shared config, one policy and one site, then run nginx in the foreground.
#   LB_POLICY       round-robin (default), ip-hash or session
#   NGINX_SITE_DIR  directory holding upstream-servers.conf, instance-upstreams.conf and listen.conf
#   NGINX_RUN_DIR   where the assembled config, pid and temp files go (default /tmp/nginx-mcp)
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
cp "$here/nginx.conf" "$here/keepalive.conf" "$run/"
cp "$here/policies/$policy.conf" "$run/policy.conf"
cp "$site/upstream-servers.conf" "$site/instance-upstreams.conf" "$site/listen.conf" "$run/"
exec nginx -e stderr -p "$run" -c "$run/nginx.conf" -g 'daemon off;'
