#!/usr/bin/env bash
# Install telemrec with its test extras into .venv (plus the Debian packages the integration
# tests need), build .venv-py312 for the cjm integration, smoke-test the wheel (scripts/wheel_smoke.sh)
# and run the whole test suite.
# `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/debian_packages.sh
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -c "from telemrec.trace.columnar import DECODER; print('load() decodes with:', DECODER)"
# cjm needs Python >= 3.12: its integration tests run cjm in .venv-py312 (built once, then reused)
bash scripts/py312_env.sh >/dev/null
# what `pip install telemrec` gives a user: the wheel, in a throwaway venv, every reader and command
bash scripts/wheel_smoke.sh .venv/bin/python
export MPLBACKEND=Agg
# the suite checks the compiled decoder against the NumPy kernels: it must have been built
export TELEMREC_REQUIRE_COMPILED=1
exec .venv/bin/python -m pytest "$@"
