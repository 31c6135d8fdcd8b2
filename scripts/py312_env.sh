#!/usr/bin/env bash
# Build .venv-py312 once: a Python >= 3.12 environment with telemrec (editable) and its `cjm`
# extra, where cjm's PluginManager runs in the integration tests (cjm needs Python >= 3.12,
# telemrec's own .venv may be older). Rebuilt only when pyproject.toml, setup.py or this script
# change. Prints the environment's python on stdout; prints nothing (and exits 0) when this
# machine has no Python >= 3.12, so the tests can say why they skip.
# Interpreter search: $TELEMREC_PY312, python3.13/python3.12 on PATH, then pyenv's versions.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."
VENV=.venv-py312

find_python() {
    local candidates=()
    [ -n "${TELEMREC_PY312:-}" ] && candidates+=("$TELEMREC_PY312")
    for name in python3.14 python3.13 python3.12; do
        command -v "$name" >/dev/null 2>&1 && candidates+=("$(command -v "$name")")
    done
    local roots=("${PYENV_ROOT:-$HOME/.pyenv}")
    command -v pyenv >/dev/null 2>&1 && roots+=("$(pyenv root)")
    for root in "${roots[@]}"; do
        for py in "$root"/versions/3.1[2-9]*/bin/python3; do
            [ -x "$py" ] && candidates+=("$py")
        done
    done
    for py in "${candidates[@]}"; do
        if "$py" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

stamp=$(cat pyproject.toml setup.py "$SELF" | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.telemrec-stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$PWD/$VENV/bin/python"
    exit 0
fi
PY=$(find_python) || { echo "no Python >= 3.12 found (looked at \$TELEMREC_PY312, PATH, pyenv)" >&2; exit 0; }
echo "building $VENV with $PY (telemrec[cjm], once)" >&2
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >&2
# no compiled decoder here: the NumPy kernels give the same bits, and the build would cost a minute
TELEMREC_NO_EXTENSIONS=1 "$VENV/bin/python" -m pip install -q -e ".[cjm]" >&2
echo "$stamp" > "$VENV/.telemrec-stamp"
echo "$PWD/$VENV/bin/python"
