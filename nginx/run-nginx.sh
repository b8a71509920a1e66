#!/bin/sh
# Assemble nginx's run directory from the shared config, one policy and one site, then run nginx in the foreground.
#   LB_POLICY       round-robin (default), ip-hash, session, or session-dns (Kubernetes: pods found by DNS)
#   NGINX_SITE_DIR  directory holding listen.conf, and upstream-servers.conf and instance-upstreams.conf
#                   (every policy but session-dns balances the upstreams they name)
#   NGINX_RUN_DIR   where the assembled config, pid and temp files go (default /tmp/nginx-mcp)
#   NGINX_FOLLOW_HOSTS  the instances' host names (compose): nginx resolves them once, so it reloads when they change
#   NGINX_CONNECTIONS_PER_CLIENT  open connections one client address may hold to /mcp (default 512)
#   NGINX_REQUESTS_PER_CLIENT     requests per second one client address may send to /mcp (default 2000)
#   NGINX_UPLOADS_PER_CLIENT      bodies above 16 KiB one client address may be sending or have sent at once (default 8)
#   NGINX_UPLOADS                 such bodies from all clients at once (default 200): at most 4 MiB each in NGINX_BODY_DIR
#   NGINX_TRUSTED_PROXIES  the addresses (or CIDR blocks) of the proxies in front of nginx, e.g. an Ingress
#                   controller's pods: a request from one of them counts as from the client its X-Forwarded-For
#                   names (default: none; every client is the address it connects from)
#   NGINX_BODY_DIR  where a body past its first 16 KiB waits until it is whole: on disk, not a tmpfs, whose pages
#                   count as the container's memory (default: client_body_temp in the run directory)
#   NGINX_STATUS_LISTEN   where nginx serves its connection counts (stub_status) at /stub_status, e.g. 8081 (default: nowhere)
# session-dns only (policies/session-dns.conf):
#   NGINX_DNS_STATEFULSET   the app StatefulSet's name: its pods are <name>-0, <name>-1, ... (default mcp)
#   NGINX_DNS_PODS_DOMAIN   the headless Service's domain, under which each pod has its name (e.g. mcp.mcp.svc.cluster.local)
#   NGINX_DNS_READY_NAME    a name that resolves to every ready pod (e.g. mcp-ready.mcp.svc.cluster.local)
#   NGINX_DNS_APP_PORT      the pods' MCP port (default 8000)
#   NGINX_DNS_RESOLVER      the DNS server(s) nginx asks (default: the nameservers of /etc/resolv.conf)
#   NGINX_DNS_VALID         how long nginx keeps an answer (default 5s)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
policy=${LB_POLICY:-round-robin}
case "$policy" in
    round-robin|ip-hash|session|session-dns) ;;
    *) echo "run-nginx: LB_POLICY='$policy' is not valid; valid values: round-robin, ip-hash, session, session-dns" >&2
       exit 2 ;;
esac
# policies/session-dns.conf with its names filled in; a value that is not a DNS name (or port, or duration) stops here.
dns_policy() {
    statefulset=${NGINX_DNS_STATEFULSET:-mcp}
    domain=${NGINX_DNS_PODS_DOMAIN:?run-nginx: session-dns needs NGINX_DNS_PODS_DOMAIN, the domain of the headless Service}
    ready=${NGINX_DNS_READY_NAME:?run-nginx: session-dns needs NGINX_DNS_READY_NAME, a name of every ready pod}
    port=${NGINX_DNS_APP_PORT:-8000}
    resolver=${NGINX_DNS_RESOLVER:-}
    [ -n "$resolver" ] || resolver=$(nameservers)
    valid=${NGINX_DNS_VALID:-5s}
    check "NGINX_DNS_STATEFULSET=$statefulset" '^[a-z0-9]([a-z0-9-]{0,24}[a-z0-9])?$' 'a StatefulSet name'
    check "NGINX_DNS_PODS_DOMAIN=$domain" '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$' 'a DNS name'
    check "NGINX_DNS_READY_NAME=$ready" '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$' 'a DNS name'
    check "NGINX_DNS_APP_PORT=$port" '^[1-9][0-9]{0,4}$' 'a port'
    check "NGINX_DNS_RESOLVER=$resolver" '^[][0-9a-fA-F.:]+( [][0-9a-fA-F.:]+)* ?$' 'DNS server addresses (address[:port] ...)'
    check "NGINX_DNS_VALID=$valid" '^[1-9][0-9]*s$' 'seconds, e.g. 5s'
    sed -e "s/@STATEFULSET@/$statefulset/g" -e "s/@PODS_DOMAIN@/$domain/g" -e "s/@READY_NAME@/$ready/g" \
        -e "s/@APP_PORT@/$port/g" -e "s/@RESOLVER@/$resolver/g" -e "s/@RESOLVER_VALID@/$valid/g" "$1"
}
nameservers() { awk '$1 == "nameserver" { printf "%s ", ($2 ~ /:/ ? "[" $2 "]" : $2) }' /etc/resolv.conf; }
check() { # check NAME=VALUE REGEX WHAT   (grep reads lines: a value with a line break is refused first)
    case "${1#*=}" in
        *"$newline"*) ;;
        *) printf '%s' "${1#*=}" | grep -Eq "$2" && return 0 ;;
    esac
    echo "run-nginx: ${1} is not valid; valid values: $3" >&2
    exit 2
}
newline='
'
site=${NGINX_SITE_DIR:?run-nginx: set NGINX_SITE_DIR to the directory with the site files (see nginx.conf)}
run=${NGINX_RUN_DIR:-/tmp/nginx-mcp}
mkdir -p "$run"
cp "$here/nginx.conf" "$here/keepalive.conf" "$here/proxy-to-instance.conf" "$here/error-pages.conf" "$run/"
cp "$site/listen.conf" "$run/"
if [ "$policy" = session-dns ]; then
    dns_policy "$here/policies/session-dns.conf" >"$run/policy.conf"
else
    cp "$here/policies/$policy.conf" "$run/policy.conf"
    cp "$site/upstream-servers.conf" "$site/instance-upstreams.conf" "$run/"
fi
connections=${NGINX_CONNECTIONS_PER_CLIENT:-512}
requests=${NGINX_REQUESTS_PER_CLIENT:-2000}
uploads=${NGINX_UPLOADS_PER_CLIENT:-8}
all_uploads=${NGINX_UPLOADS:-200}
for bound in "NGINX_CONNECTIONS_PER_CLIENT=$connections" "NGINX_REQUESTS_PER_CLIENT=$requests" \
    "NGINX_UPLOADS_PER_CLIENT=$uploads" "NGINX_UPLOADS=$all_uploads"; do
    case "${bound#*=}" in
        '' | *[!0-9]* | 0*) echo "run-nginx: $bound is not valid; valid values: a whole number above 0" >&2; exit 2 ;;
    esac
done
status_listen=${NGINX_STATUS_LISTEN:-}
if [ -n "$status_listen" ]; then
    check "NGINX_STATUS_LISTEN=$status_listen" '^([0-9.]+:)?[1-9][0-9]{0,4}$' 'a port, or address:port'
    front=$(sed -n 's/^ *listen \([0-9.]*:\)\{0,1\}\([0-9]*\).*/\2/p' "$site/listen.conf")
    if [ "${status_listen##*:}" = "$front" ]; then
        echo "run-nginx: NGINX_STATUS_LISTEN=$status_listen is not valid; valid values: a port other than MCP's ($front)" >&2
        exit 2
    fi
    printf 'server {\n    listen %s;\n    access_log off;\n    location = /stub_status { stub_status; }\n    location / { return 404; }\n}\n' \
        "$status_listen" >"$run/status.conf"
else
    : >"$run/status.conf"
fi
proxies=${NGINX_TRUSTED_PROXIES:-}
: >"$run/real-ip.conf"
if [ -n "$proxies" ]; then
    check "NGINX_TRUSTED_PROXIES=$proxies" '^[0-9a-fA-F.:/]+( [0-9a-fA-F.:/]+)*$' 'addresses or CIDR blocks, space-separated'
    for proxy in $proxies; do printf 'set_real_ip_from %s;\n' "$proxy" >>"$run/real-ip.conf"; done
    printf 'real_ip_header X-Forwarded-For;\nreal_ip_recursive on;\n' >>"$run/real-ip.conf"
fi
bodies=${NGINX_BODY_DIR:-$run/client_body_temp}
check "NGINX_BODY_DIR=$bodies" '^/[A-Za-z0-9._/-]+$' 'an absolute path'
printf 'client_body_temp_path %s;\n' "$bodies" >"$run/bodies.conf"
# A client past any bound gets 429 with a JSON-RPC error (nginx.conf); the others go on being served.
sed "s/@REQUESTS@/$requests/" "$here/client-zones.conf" >"$run/client-zones.conf"
printf 'limit_conn per_client_connections %s;\nlimit_conn per_client_uploads %s;\nlimit_conn all_uploads %s;\n' \
    "$connections" "$uploads" "$all_uploads" >"$run/client-limits.conf"
printf 'limit_req zone=per_client_requests burst=%s nodelay;\n' "$requests" >>"$run/client-limits.conf"
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
