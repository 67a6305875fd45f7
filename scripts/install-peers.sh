#!/usr/bin/env bash
# Install the real SIP peers the interop tests talk to: sipp (sip-tester),
# Kamailio (with the extra modules) and rtpengine, all from Debian.
#
# Runs as root (or through sudo). Idempotent: when sipp, kamailio and
# rtpengine are already on PATH it does nothing. It never leaves a system
# service running: the tests start each peer themselves, in the foreground,
# with a runtime directory they own.
set -euo pipefail

packages=(sip-tester kamailio kamailio-extra-modules rtpengine-daemon)
binaries=(sipp kamailio rtpengine)
daemons=(kamailio rtpengine)

# kamailio lives in /usr/sbin, which a non-login shell may not have on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
for bin in "${binaries[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-peers: sipp, kamailio and rtpengine already installed"
    exit 0
fi
echo "install-peers: missing ${missing[*]}; installing ${packages[*]}"

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo --preserve-env=PATH "$0" "$@"
    fi
    echo "install-peers: must run as root (no sudo found)" >&2
    exit 1
fi

# Daemons already running before we start belong to someone else: remember
# them so that only the ones the package scripts start get stopped.
pids_of() {
    local name
    for name in "${daemons[@]}"; do
        pgrep -x "$name" 2>/dev/null || true
    done | sort -n
}
before="$(pids_of)"

# policy-rc.d exiting 101 tells invoke-rc.d (used by the maintainer scripts)
# that starting services is forbidden. Keep any existing policy and put it
# back afterwards.
policy=/usr/sbin/policy-rc.d
backup=""
if [ -e "$policy" ]; then
    backup="$(mktemp)"
    cp -p "$policy" "$backup"
fi
restore_policy() {
    if [ -n "$backup" ]; then
        cp -p "$backup" "$policy"
        rm -f "$backup"
    else
        rm -f "$policy"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# written by sipcore scripts/install-peers.sh\nexit 101\n' >"$policy"
chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
apt-get update
apt-get install -y --no-install-recommends "${apt_opts[@]}" "${packages[@]}"

# Belt and braces: if a package script started a daemon anyway, stop it by
# PID. Only PIDs that appeared during this install are touched.
after="$(pids_of)"
started="$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d')"
if [ -n "$started" ]; then
    echo "install-peers: stopping daemons started by the install: $(echo "$started" | tr '\n' ' ')"
    for pid in $started; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 1 50); do
        alive=""
        for pid in $started; do
            kill -0 "$pid" 2>/dev/null && alive="$alive $pid"
        done
        [ -z "$alive" ] && break
        sleep 0.2
    done
    for pid in $alive; do
        kill -KILL "$pid" 2>/dev/null || true
    done
fi

for bin in "${binaries[@]}"; do
    if ! command -v "$bin" >/dev/null 2>&1; then
        echo "install-peers: $bin still not on PATH after install" >&2
        exit 1
    fi
done
echo "install-peers: installed $(sipp -v 2>&1 | grep -o 'v[0-9][0-9.]*' | head -n1 || true)" \
    "$(kamailio -v 2>&1 | head -n1)" "$(rtpengine --version 2>&1 | head -n1)"
