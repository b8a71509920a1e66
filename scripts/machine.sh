# Sourced by the scripts that install on the host (test, compose-images, install-compose). Each install
# is recorded in $INSTALLED, so scripts/reset-machine can take the machine back to what it had before.
# CI may start without HOME; pip and docker's plugin directory need it.
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
export HOME
INSTALLED=${XDG_STATE_HOME:-$HOME/.local/state}/mcp-scale-lab/installed

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

record_install() { # record_install KIND NAME...   (KIND: apt or file)
    kind=$1
    shift
    mkdir -p "$(dirname "$INSTALLED")"
    for name in "$@"; do echo "$kind $name" >>"$INSTALLED"; done
}

installed_packages() { dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" { print $2 }' | sort; }

apt_install() { # apt_install PACKAGE...   (records every package it adds, dependencies included)
    echo "setup: installing from apt: $*" >&2
    before=$(mktemp)
    installed_packages >"$before"
    # Keep Debian's packages from starting their own nginx/redis services on install.
    blocker=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        blocker=/usr/sbin/policy-rc.d
        trap 'as_root rm -f "$blocker"' EXIT INT TERM # an interrupted install must not leave it behind
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$blocker" >/dev/null
        as_root chmod +x "$blocker"
    fi
    status=0
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null || status=$?
    if [ -n "$blocker" ]; then
        as_root rm -f "$blocker"
        trap - EXIT INT TERM
    fi
    # shellcheck disable=SC2046
    record_install apt $(installed_packages | comm -13 "$before" -)
    rm -f "$before"
    return "$status"
}
