#!/usr/bin/env bash
# Install the Debian packages the test suite uses: prometheus-node-exporter, for
# tests/readers/test_node_exporter.py. The package's system service is NOT started: the test
# runs the binary itself on a free 127.0.0.1 port and stops it. policy-rc.d (exit 101) stops
# the postinst from starting the unit where invoke-rc.d is used; with no systemd running
# nothing starts anyway.
set -euo pipefail

BIN=/usr/bin/prometheus-node-exporter
if [ -x "$BIN" ]; then
    echo "debian_packages.sh: $("$BIN" --version 2>&1 | head -n1)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    CREATED_POLICY=1
fi
cleanup() {
    if [ "$CREATED_POLICY" = 1 ]; then
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends prometheus-node-exporter

if [ ! -x "$BIN" ]; then
    echo "debian_packages.sh: $BIN missing after install" >&2
    exit 1
fi
echo "debian_packages.sh: $("$BIN" --version 2>&1 | head -n1)"
