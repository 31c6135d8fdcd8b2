#!/usr/bin/env bash
# Install the Debian packages listed in .ci/debian-packages.txt that are missing. Their system
# services are NOT started: policy-rc.d (exit 101) stops each postinst from starting a unit, and
# the tests run the binaries themselves on 127.0.0.1 and stop them.
set -euo pipefail
cd "$(dirname "$0")"

mapfile -t WANTED < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^[[:space:]]*$/d' debian-packages.txt)
MISSING=()
for pkg in "${WANTED[@]}"; do
    pkg=$(echo "$pkg" | tr -d '[:space:]')
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        MISSING+=("$pkg")
    fi
done
if [ ${#MISSING[@]} -eq 0 ]; then
    echo "debian_packages.sh: all ${#WANTED[@]} packages present"
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
$SUDO apt-get install -y -q --no-install-recommends "${MISSING[@]}"
echo "debian_packages.sh: installed ${MISSING[*]}"
