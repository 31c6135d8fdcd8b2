#!/usr/bin/env bash
# Install telemrec with its test extras into .venv (plus the Debian node_exporter the
# integration test needs) and run the whole test suite. `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/node_exporter.sh
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
export MPLBACKEND=Agg
exec .venv/bin/python -m pytest "$@"
