#!/usr/bin/env bash
# Build telemrec's wheel, install it into a throwaway virtual environment (not editable, no
# checkout on sys.path) and run every reader and every command from it, as a user who ran
# `pip install telemrec` would. scripts/test.sh runs it before the test suite.
#
# Usage: bash scripts/wheel_smoke.sh [PYTHON]   (default: .venv/bin/python)
#
# The dependencies (numpy, pandas, h5py, matplotlib, ...) are those PYTHON's environment has
# (scripts/test.sh installed them there from the same pyproject.toml moments before), reached
# through a .pth line: unpacking them again would take a minute. TELEMREC_WHEEL_SMOKE_DEPS=install
# installs them into the throwaway venv instead. Either way only the wheel provides telemrec.
# SMOKE_TIMES=1 prints the seconds each command took.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${1:-$REPO/.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/telemrec-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SAMPLES=$REPO/sample_traces
FIXTURES=$REPO/tests/fixtures
start=$(date +%s)

step() { printf 'wheel smoke: [%3d s] %s\n' "$(( $(date +%s) - start ))" "$*"; }
fail() { printf 'wheel smoke: FAILED: %s\n' "$*" >&2; exit 1; }

step "building the wheel"
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$REPO" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; fail "pip wheel"; }
WHEEL=$(ls "$WORK"/dist/telemrec-*.whl)
"$PY" - "$WHEEL" telemrec/readers/dcgm_fields.tsv telemrec/schemas/manifest/v2/manifest.schema.json telemrec/schemas/manifest/v3/manifest.schema.json <<'PY' \
    || fail "package data missing from $(basename "$WHEEL")"
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = [m for m in sys.argv[2:] if m not in names]
sys.exit(f"not in the wheel: {missing}" if missing else 0)
PY

step "installing $(basename "$WHEEL") into a clean venv"
"$PY" -m venv --without-pip "$WORK/venv"   # PYTHON's pip installs into it (--python): no pip to unpack
PIP=("$PY" -m pip --python "$WORK/venv/bin/python" install -q --disable-pip-version-check)
if [ "${TELEMREC_WHEEL_SMOKE_DEPS:-share}" = install ]; then
    "${PIP[@]}" "$WHEEL[plot]" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; fail "pip install"; }
else
    "${PIP[@]}" --no-deps "$WHEEL" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; fail "pip install"; }
    # after the venv's own site-packages, so the wheel's telemrec comes first; the .pth files
    # there (the editable install's finder among them) are not run
    "$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
        >"$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/telemrec-smoke-deps.pth"
fi

# from here on nothing of the checkout is importable: an empty directory, no PYTHONPATH
mkdir "$WORK/run" "$WORK/bin"
cd "$WORK/run"
unset PYTHONPATH
export MPLBACKEND=Agg
T=$WORK/venv/bin/telemrec
VPY=$WORK/venv/bin/python
# telemrec's fake dcgmi (DCGM 4.x `dcgmi dmon` output) on PATH as `dcgmi`, at 20x speed
printf '#!/bin/sh\nFAKE_DCGMI_TIME_SCALE=0.05 exec %s -m telemrec.testing.fake_dcgmi "$@"\n' "$VPY" >"$WORK/bin/dcgmi"
chmod +x "$WORK/bin/dcgmi"
export PATH=$WORK/bin:$WORK/venv/bin:$PATH

run() {  # run a command; it must succeed and print no traceback
    local t0=$SECONDS
    if ! "$@" >"$WORK/out" 2>"$WORK/err"; then
        cat "$WORK/out" "$WORK/err" >&2; fail "$*"
    fi
    if grep -q Traceback "$WORK/err"; then cat "$WORK/err" >&2; fail "traceback from $*"; fi
    [ -z "${SMOKE_TIMES:-}" ] || echo "  $(( SECONDS - t0 )) s: ${*:2:3}"
}
lines() {  # the last command printed at least N lines on stdout
    [ "$(wc -l <"$WORK/out")" -ge "$1" ] || { cat "$WORK/out" "$WORK/err" >&2; fail "expected $1+ lines: $2"; }
}

step "the installed package"
run "$VPY" - "$WORK/venv" <<'PY'
import importlib.util, os, sys
import telemrec
from telemrec.readers._dmon_parser import field_table
from telemrec.trace.manifest import load_schema
venv = os.path.realpath(sys.argv[1])
assert os.path.realpath(telemrec.__file__).startswith(venv), telemrec.__file__
assert importlib.util.find_spec("telemrec.trace._ccodec"), "no compiled codec in the wheel"
assert importlib.util.find_spec("telemrec.readers._cprocfs"), "no compiled procfs collector in the wheel"
assert importlib.util.find_spec("telemrec.readers._csystem"), "no compiled system level in the wheel"
assert field_table()[100].name == "DCGM_FI_DEV_SM_CLOCK"  # the field table is package data
assert load_schema()["properties"]
print("telemrec", telemrec.__version__, "from", os.path.dirname(telemrec.__file__))
PY
cat "$WORK/out"
run "$T" --version
run "$T" --help
run "$T" readers; lines 5 "telemrec readers"
run "$T" readers --json
"$VPY" - "$WORK/out" <<'PY' || fail "telemrec readers --json"
import json, sys
infos = json.load(open(sys.argv[1]))
assert {i["name"] for i in infos} >= {"psutil", "nvml", "dcgmi", "prometheus", "replay"}, infos
assert all(i["implemented"] and i["options"] for i in infos), infos
PY

step "every reader"
run "$T" read -r psutil -n 2 -i 0.1; lines 4 "read psutil"
run "$T" read -r prometheus -s "$FIXTURES/prometheus/node_exporter_1.5.0_debian.txt" -n 1; lines 2 "read prometheus"
run "$T" read -r dcgmi -n 2 -i 0.1; lines 8 "read dcgmi (fake dcgmi dmon)"
run "$T" read -r dcgmi -s "$FIXTURES/dcgmi/dmon_8gpu_16ticks.txt" -n 1; lines 8 "read dcgmi capture"
run "$T" read -r replay -s "$SAMPLES/v2/nvml_synthetic.h5" -n 1; lines 2 "read replay"
# nvml: records on a GPU node, else one clear error line (exit 2) and no traceback
if "$T" read -r nvml -n 1 >"$WORK/out" 2>"$WORK/err"; then
    lines 1 "read nvml"
else
    grep -q "telemrec: error: NVML is unavailable" "$WORK/err" && ! grep -q Traceback "$WORK/err" \
        || { cat "$WORK/err" >&2; fail "read nvml"; }
fi

step "every command"
run "$T" record -i 0.2 -o rec.h5 -- "$VPY" -c "import time; time.sleep(1)"
grep -q "^wrote rec.h5: " "$WORK/err" || fail "record printed no summary line"
run "$T" record -r prometheus -s "$FIXTURES/prometheus/node_exporter_1.5.0_debian.txt" -r dcgmi -i 0.2 -d 1 -o multi.h5
run "$T" info rec.h5; grep -q "closed cleanly" "$WORK/out" || fail "info"
run "$T" check rec.h5; grep -q "valid" "$WORK/out" || fail "check"
run "$T" upgrade "$SAMPLES/v1/psutil_workload.h5" -o upgraded.h5
run "$T" summary --json rec.h5 multi.h5
run "$T" plot rec.h5 -o rec.png
run "$T" export rec.h5 --format csv -o rec.csv
if "$VPY" -c "import pyarrow" 2>/dev/null; then
    run "$T" export rec.h5 --format parquet -o rec.parquet
else  # without the [parquet] extra: one clear error line
    "$T" export rec.h5 --format parquet -o rec.parquet 2>"$WORK/err" && fail "parquet export without pyarrow"
    grep -q "telemrec: error: Parquet export needs pyarrow" "$WORK/err" && ! grep -q Traceback "$WORK/err" \
        || { cat "$WORK/err" >&2; fail "parquet export without pyarrow"; }
fi
run "$T" export rec.h5 --format hdf5 -o plain.h5
run "$T" export rec.h5 --format jumper -o session.zip
run "$T" export "$SAMPLES/v2/dcgmi_synthetic.h5" --format dmon -o dmon.txt
run "$T" export "$SAMPLES/v2/dcgmi_synthetic.h5" --format openmetrics -o metrics.om
run "$T" replay "$SAMPLES/v2/dcgmi_synthetic.h5" --speed max --as dcgmi -- dcgmi discovery -l
grep -q "GPU" "$WORK/out" || fail "replay --as dcgmi"
run "$T" serve "$SAMPLES/v2/nvml_synthetic.h5" --listen 127.0.0.1:0 --speed 200
run "$T" integrations cjm-manifest --help
run "$T" replay rec.h5 --speed max -o rec.jsonl
run "$T" import rec.jsonl -o copy.h5
run "$T" info copy.h5; grep -q "ticks [1-9]" "$WORK/out" || fail "replay | import lost the manifest"
run "$VPY" -c "import telemrec; df = telemrec.load('rec.h5', rates=True); assert len(df) > 2, df"

step "passed in $(( $(date +%s) - start )) s"
