#!/usr/bin/env bash
# Install the Debian packages the test suite uses:
# - prometheus-node-exporter, for tests/readers/test_node_exporter.py. The package's system
#   service is NOT started: the test runs the binary itself on a free 127.0.0.1 port and
#   stops it. policy-rc.d (exit 101) stops the postinst from starting the unit where
#   invoke-rc.d is used; with no systemd running nothing starts anyway.
# - libdeflate-dev, so that `pip install` builds telemrec's compiled decoder with libdeflate
#   (twice zlib's inflate speed; setup.py falls back to zlib without it).
set -euo pipefail

BIN=/usr/bin/prometheus-node-exporter
HEADER=/usr/include/libdeflate.h
if [ -x "$BIN" ] && [ -e "$HEADER" ]; then
    echo "debian_packages.sh: $("$BIN" --version 2>&1 | head -n1); libdeflate-dev present"
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
$SUDO apt-get install -y -q --no-install-recommends prometheus-node-exporter libdeflate-dev

for need in "$BIN" "$HEADER"; do
    if [ ! -e "$need" ]; then
        echo "debian_packages.sh: $need missing after install" >&2
        exit 1
    fi
done
echo "debian_packages.sh: $("$BIN" --version 2>&1 | head -n1); libdeflate-dev installed"
