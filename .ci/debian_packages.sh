#!/usr/bin/env bash
# Install the Debian packages listed in .ci/debian-packages.txt that are missing, and change the
# machine no further than the tests need:
# - no service they ship is started: policy-rc.d (exit 101) stops each postinst from starting a
#   unit (the tests run the binaries themselves on 127.0.0.1 and stop them);
# - no service they ship stays enabled at boot: whatever the install enabled (systemd "wants"
#   links, SysV rc links) is disabled again, through deb-systemd-helper / update-rc.d so that
#   later upgrades keep it disabled. Units that were enabled before are left as they were.
# The list is the only input: a package added there is handled the same way.
#
# For its own test (tests/test_ci_scripts.py) the paths can be moved: TELEMREC_CI_ROOT prefixes
# /etc and /usr/sbin, TELEMREC_CI_PACKAGES names the list.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=${TELEMREC_CI_ROOT:-}
LIST=${TELEMREC_CI_PACKAGES:-debian-packages.txt}

mapfile -t WANTED < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^[[:space:]]*$/d' "$LIST")
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

# what starts at boot: systemd's wants/requires links and SysV start links
boot_links() {
    find "$ROOT/etc/systemd/system" -mindepth 2 -maxdepth 2 -type l \
        \( -path '*.wants/*' -o -path '*.requires/*' \) 2>/dev/null || true
    find "$ROOT"/etc/rc[0-6S].d -maxdepth 1 -type l -name 'S*' 2>/dev/null || true
}

POLICY=$ROOT/usr/sbin/policy-rc.d
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

BEFORE=$(boot_links | sort)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${MISSING[@]}"
echo "debian_packages.sh: installed ${MISSING[*]}"

DISABLED=()
while IFS= read -r link; do
    [ -n "$link" ] || continue
    name=$(basename "$link")
    case "$link" in
        */etc/systemd/system/*)
            if command -v deb-systemd-helper >/dev/null; then
                $SUDO deb-systemd-helper disable "$name" || true
            fi
            $SUDO rm -f "$link"   # deb-systemd-helper removed it already, unless it is not there
            ;;
        *)
            service=${name#S[0-9][0-9]}
            if command -v update-rc.d >/dev/null; then
                $SUDO update-rc.d "$service" disable >/dev/null 2>&1 || true
            fi
            if [ -L "$link" ]; then
                $SUDO rm -f "$link"
            fi
            ;;
    esac
    DISABLED+=("$name")
done < <(comm -13 <(printf '%s\n' "$BEFORE") <(boot_links | sort))
if [ ${#DISABLED[@]} -gt 0 ]; then
    echo "debian_packages.sh: disabled at boot what the install enabled: ${DISABLED[*]}"
fi
