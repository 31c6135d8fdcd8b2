#!/usr/bin/env bash
# Install telemrec into .venv, record 10 s of this machine and show what was recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -e ".[plot]"
OUT=${1:-quickstart.h5}
rm -f "$OUT"
.venv/bin/telemrec record --reader psutil --interval 0.5 --duration 10 -o "$OUT"
.venv/bin/telemrec info "$OUT"
if .venv/bin/telemrec summary --help >/dev/null 2>&1; then
    .venv/bin/telemrec summary "$OUT"
fi
