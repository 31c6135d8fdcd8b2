"""The dcgmi reader: the dmon parser on real-layout fixtures, the live reader through the fake
dcgmi (a wrapper script named ``dcgmi`` found through ``search_path``), a scripted process
injected as ``run``, and saved captures."""

from __future__ import annotations

import io
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from telemrec.errors import ReaderUnavailableError, SourceError, SourceParseError, UsageError
from telemrec.readers._dmon_parser import (
    DEFAULT_FIELD_IDS,
    DmonStream,
    field_table,
    parse_capture,
    parse_header,
    parse_row,
    parse_value,
)
from telemrec.readers.dcgmi import DcgmiReader, _delay_ms
from telemrec.record import ReaderConfig
from telemrec.testing import ReaderConformance, fake_dcgmi

FIXTURES = Path(__file__).parent.parent / "fixtures" / "dcgmi"
FAKE_SCRIPT = Path(fake_dcgmi.__file__)
NON_PROFILING = "100,150,155,156,203,252"


def make_fake_bin(directory: Path, *fake_args: str) -> str:
    """A directory holding an executable ``dcgmi`` that runs the fake with ``fake_args``."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "dcgmi"
    args = " ".join(shlex.quote(a) for a in fake_args)
    # Running the file (not -m) keeps pytest out of the fake's imports: 0.1 s instead of 0.3 s per start.
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_SCRIPT))} {args} "$@"\n')
    script.chmod(0o755)
    return str(directory)


@pytest.fixture(scope="module")
def fake_bin(tmp_path_factory) -> str:
    return make_fake_bin(tmp_path_factory.mktemp("bin"), "--fake-gpus", "4", "--fake-mig", "0:1:1")


def read_until(reader, predicate, timeout=5.0):
    """Records from repeated reads until ``predicate(records)`` holds (or None arrives)."""
    out: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = reader.read()
        if batch is None:
            return out, True
        out.extend(batch)
        if predicate(out):
            return out, False
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s with {len(out)} records")


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# -- the conformance suite through the fake dcgmi ----------------------------------------------
class TestDcgmiConformance(ReaderConformance):
    ticks = 6

    @pytest.fixture(autouse=True)
    def _bin(self, fake_bin):
        self.bin_dir = fake_bin

    def make_reader(self):
        return DcgmiReader(search_path=self.bin_dir)

    def make_config(self):
        return ReaderConfig(interval=0.05, options={"probe_version": False})

    def make_failing_config(self):
        return ReaderConfig(interval=0.05, options={"host": "hostengine.invalid", "probe_version": False})


# -- the layout ---------------------------------------------------------------------------------
def test_header_columns_sit_where_devicemonitor_puts_them():
    header = fixture_text("dmon_8gpu_16ticks.txt").splitlines()[0]
    layout = parse_header(header, DEFAULT_FIELD_IDS)
    expected, pos = [], 16  # 4.6: "#Entity" in 16 characters, then width + 6 + 2 per field
    for fid in DEFAULT_FIELD_IDS:
        expected.append(pos)
        pos += field_table()[fid].width + 8
    assert layout.entity_width == 16
    assert [c.start for c in layout.columns] == expected
    assert [c.key for c in layout.columns][:5] == [
        "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_MEMORY_TEMP_CELSIUS",
        "DCGM_FI_DEV_GPU_TEMP_CELSIUS", "DCGM_FI_DEV_BOARD_POWER_WATTS"]


def test_eight_gpus_23_fields_descending_with_dcgm_types():
    ticks, stream = parse_capture(fixture_text("dmon_8gpu_16ticks.txt"))
    assert [r.entity for r in ticks[3].rows] == [f"gpu{i}" for i in range(7, -1, -1)]
    row = ticks[3].rows[0]
    assert len(row.values) == 23 and not row.problems
    assert type(row.values["DCGM_FI_DEV_SM_CLOCK"]) is int
    assert type(row.values["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]) is int
    assert type(row.values["DCGM_FI_DEV_BOARD_POWER_WATTS"]) is float
    assert type(row.values["DCGM_FI_PROF_SM_UTIL_RATIO"]) is float
    assert 0.0 <= row.values["DCGM_FI_PROF_SM_UTIL_RATIO"] <= 1.0


def test_cold_start_na_is_kept_as_none_not_dropped():
    ticks, _ = parse_capture(fixture_text("dmon_8gpu_16ticks.txt"))
    first = ticks[0].rows[0].values
    assert first["DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO"] is None
    assert "DCGM_FI_PROF_PCIE_RX_BYTES" in first and first["DCGM_FI_PROF_PCIE_RX_BYTES"] is None
    assert isinstance(first["DCGM_FI_DEV_SM_CLOCK"], int)


def test_header_reprinted_after_the_15th_tick_is_not_data():
    text = fixture_text("dmon_8gpu_16ticks.txt")
    lines = text.splitlines()
    assert [i for i, line in enumerate(lines) if line.startswith("#Entity")] == [0, 2 + 15 * 8]
    ticks, stream = parse_capture(text)
    assert len(ticks) == 16 and stream.headers_seen == 2
    assert all(len(t.rows) == 8 for t in ticks)
    assert not stream.messages


def test_trailer_completes_the_last_tick():
    ticks, stream = parse_capture(fixture_text("dmon_8gpu_16ticks.txt"))
    assert stream.stopped
    assert len(ticks[-1].rows) == 8


def test_blank_padding_means_not_returned_and_does_not_shift_columns():
    ticks, _ = parse_capture(fixture_text("dmon_mig_2gpu.txt"))
    rows = {r.entity: r for r in ticks[0].rows}
    gi, ci = rows["mig:0:0"].values, rows["mig:0:0:0"].values
    assert "DCGM_FI_DEV_SM_CLOCK" not in gi and "DCGM_FI_DEV_BOARD_POWER_WATTS" not in gi
    assert "DCGM_FI_PROF_DRAM_UTIL_RATIO" in gi and "DCGM_FI_PROF_DRAM_UTIL_RATIO" not in ci  # GPU-I level field
    levels = {f.name: f.entity_level for f in field_table().values()}
    assert all(levels[k] in ("DCGM_FE_GPU_I", "DCGM_FE_GPU_CI") for k in gi)
    # whitespace splitting (KempnerPulse) would have put the first value under SMCLK
    line = next(line for line in fixture_text("dmon_mig_2gpu.txt").splitlines() if line.startswith("GPU-I 0"))
    assert int(line.split()[2]) == gi["DCGM_FI_DEV_FB_FREE"]
    assert gi["DCGM_FI_DEV_FB_RESERVED"] == 527 and gi["DCGM_FI_PROF_SM_UTIL_RATIO"] is None  # cold start
    later = {r.entity: r.values for r in ticks[1].rows}["mig:0:0:0"]
    assert isinstance(later["DCGM_FI_PROF_SM_UTIL_RATIO"], float)


def test_hand_built_row_with_a_gap():
    ids = (100, 101, 155)
    header = f"{'#Entity':<16}{'SMCLK':<13}{'MMCLK':<13}{'POWER':<18}"
    row = f"{'GPU 3':<16}{'':<13}{'2619':<13}{'N/A':<18}"
    layout = parse_header(header, ids)
    parsed = parse_row(row, layout)
    assert parsed.values == {"DCGM_FI_DEV_MEM_CLOCK": 2619, "DCGM_FI_DEV_BOARD_POWER_WATTS": None}


def test_mig_entities_are_named_after_their_parents():
    ticks, _ = parse_capture(fixture_text("dmon_mig_2gpu.txt"))
    assert [r.entity for r in ticks[0].rows] == [
        "gpu1", "mig:1:8", "mig:1:8:8", "mig:1:8:9", "gpu0", "mig:0:0", "mig:0:0:0", "mig:0:1", "mig:0:1:1"]


def test_mig_parents_when_children_come_first_or_alone():
    header = f"{'#Entity':<16}{'FBUSD':<18}"
    stream = DmonStream((252,))
    stream.feed(header)
    for label in ("GPU-CI 9", "GPU-I 8", "GPU 1", "GPU 1"):
        done = stream.feed(f"{label:<16}{'100':<18}")
    assert [r.entity for r in done[0].rows] == ["mig:1:8:9", "mig:1:8", "gpu1"]
    stream.feed("")
    stream.feed(f"{'GPU-I 8':<16}{'5':<18}")  # parent learned from the earlier tick
    stream.feed(f"{'GPU-I 16':<16}{'5':<18}")  # never seen with its GPU
    stream.feed(f"{'GPU-CI 30':<16}{'5':<18}")
    assert [r.entity for r in stream.finish()[0].rows] == ["mig:1:8", "mig:?:16", "mig:?:16:30"]


def test_other_entity_groups_and_labels_filling_the_column():
    stream = DmonStream((100,))
    stream.feed(f"{'#Entity':<16}{'SMCLK':<13}")
    for label in ("Switch 2", "CPU 0", "GPU 0 LINK 3", "CPU Core 123"):
        stream.feed(f"{label:<16}{'7':<13}")
    rows = stream.finish()[0].rows
    assert [r.entity for r in rows] == ["switch2", "cpu0", "gpu0:link3", "cpucore123"]
    assert all(r.values == {"DCGM_FI_DEV_SM_CLOCK": 7} for r in rows)
    layout = parse_header(f"{'#Entity':<11}{'SMCLK':<13}", (100,))
    # "CPU Core 12349" may be core 1234 with 9 or core 12 with 349: flagged, not silently trusted
    assert parse_row(f"{'CPU Core 1234':<11}{'9':<13}", layout).problems[0].startswith("the entity label fills")
    assert not parse_row(f"{'CPU Core 1':<11}{'9':<13}", layout).problems


def test_truncated_value_is_none_with_an_error_note():
    ticks, _ = parse_capture(fixture_text("dmon_truncated_4gpu.txt"))
    gpu2 = next(r for r in ticks[1].rows if r.entity == "gpu2")
    assert gpu2.values["DCGM_FI_DEV_BOARD_POWER_WATTS"] is None
    assert gpu2.problems == ["DCGM_FI_DEV_BOARD_POWER_WATTS truncated by dcgmi to '1800000000000...'"]
    assert isinstance(gpu2.values["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"], int)  # the next column is intact
    assert all(not r.problems for t in (ticks[0], ticks[2]) for r in t.rows)


def test_early_4x_layout_with_an_11_character_entity_column():
    ticks, stream = parse_capture(fixture_text("dmon_entity11_4gpu.txt"))
    assert stream.layout.entity_width == 11
    assert len(ticks) == 2 and [r.entity for r in ticks[1].rows] == ["gpu3", "gpu2", "gpu1", "gpu0"]
    assert all(len(r.values) == 23 and not r.problems for r in ticks[1].rows)


def test_kempnerpulse_sample_parses_by_field_ids_despite_its_made_up_short_names():
    text = fixture_text("kp_dmon_2tick.v0.5.0.txt")
    ticks, _ = parse_capture(text, DEFAULT_FIELD_IDS)
    assert [len(t.rows) for t in ticks] == [2, 2]
    gpu0 = ticks[1].rows[0].values
    assert gpu0["DCGM_FI_DEV_BOARD_POWER_WATTS"] == 351.0
    assert gpu0["DCGM_FI_DEV_NVLINK_THROUGHPUT_TOTAL"] is None
    assert gpu0["DCGM_FI_PROF_PCIE_RX_BYTES"] == 1200000000
    by_name, _ = parse_capture(text)  # without ids: known short names map, unknown ones stay as printed
    assert "MTMP" in by_name[0].rows[0].values and "DCGM_FI_DEV_SM_CLOCK" in by_name[0].rows[0].values


def test_ids_win_over_short_names_that_changed_between_versions():
    layout = parse_header(f"{'#Entity':<16}{'PWR':<18}{'NEWNM':<13}", (155, 4242))
    assert [(c.key, c.kind) for c in layout.columns] == [
        ("DCGM_FI_DEV_BOARD_POWER_WATTS", "float"), ("dcgm_field_4242", "auto")]


def test_header_with_a_different_number_of_columns_is_a_parse_error():
    with pytest.raises(SourceParseError) as info:
        parse_header(f"{'#Entity':<16}{'SMCLK':<13}", (100, 101))
    assert info.value.remediation


@pytest.mark.parametrize(("text", "kind", "value", "problem"), [
    ("", "int", "ABSENT", False), ("N/A", "int", None, False), ("1980", "int", 1980, False),
    ("-3", "int", -3, False), ("12.500", "float", 12.5, False), ("0.000", "float", 0.0, False),
    ("1e3", "int", 1000.0, False), ("1_000", "int", None, True), ("INF", "float", None, True),
    ("nan", "float", None, True), ("abc", "int", None, True), ("abc", "auto", "abc", False),
    ("7", "float", 7.0, False), ("535.129", "str", "535.129", False), ("12345678901234...", "int", None, True),
])
def test_parse_value(text, kind, value, problem):
    from telemrec.readers._dmon_parser import ABSENT

    got, note = parse_value(text, kind, "F")
    assert (got is ABSENT) if value == "ABSENT" else (got == value and type(got) is type(value))
    assert bool(note) is problem


def test_an_error_line_completes_the_tick_and_is_kept():
    stream = DmonStream((100,))
    stream.feed(f"{'#Entity':<16}{'SMCLK':<13}")
    stream.feed(f"{'GPU 0':<16}{'1980':<13}")
    done = stream.feed("Error getting values information. Return -21: Host engine connection invalid/disconnected")
    assert len(done) == 1 and stream.messages == [
        "Error getting values information. Return -21: Host engine connection invalid/disconnected"]


# -- options ------------------------------------------------------------------------------------
def test_profiling_fields_raise_the_interval_to_100_ms():
    ms, note = _delay_ms(0.02, DEFAULT_FIELD_IDS)
    assert ms == 100 and "100 ms" in note
    assert _delay_ms(0.02, (100, 155)) == (20, "")
    assert _delay_ms(2.0, DEFAULT_FIELD_IDS) == (2000, "")


@pytest.mark.parametrize("options", [{"field_ids": "100,abc"}, {"field_ids": [100, 100]}, {"count": -1},
                                     {"entities": [object()]}, {"probe_version": "maybe"},
                                     {"start_timeout": "0"}])
def test_bad_options_are_usage_errors(fake_bin, options):
    reader = DcgmiReader(search_path=fake_bin)
    with pytest.raises(UsageError):
        reader.open(ReaderConfig(options=options))
    reader.close()


# -- live, through the fake dcgmi -----------------------------------------------------------------
def test_live_records_entities_and_identity(fake_bin):
    reader = DcgmiReader(search_path=fake_bin)
    reader.open(ReaderConfig(interval=0.02))
    try:
        records, _ = read_until(reader, lambda recs: len(recs) >= 12)
        ident = reader.identity()
    finally:
        reader.close()
    assert [r.entity for r in records[:6]] == ["gpu3", "gpu2", "gpu1", "gpu0", "mig:0:0", "mig:0:0:0"]
    assert records[0].fields["DCGM_FI_PROF_SM_UTIL_RATIO"] is None  # first tick, kept
    assert records[6].source_version == "4.6.0" and reader.source_version == "4.6.0"
    assert ident["interval_ms"] == 100 and "profiling" in ident["interval_note"]
    assert ident["argv"][1:5] == ["dmon", "-e", ",".join(map(str, DEFAULT_FIELD_IDS)), "-d"]
    caps = reader.caps
    assert caps.units["DCGM_FI_DEV_BOARD_POWER_WATTS"] == "watts"
    assert caps.descriptions["DCGM_FI_DEV_BOARD_POWER_WATTS"].startswith("[155] Power usage")
    assert caps.counters == {"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_PCIE_REPLAY_TOTAL"}


def test_live_tick_is_stamped_when_its_first_row_arrives(fake_bin):
    reader = DcgmiReader(search_path=fake_bin)
    reader.open(ReaderConfig(interval=0.3, options={"field_ids": NON_PROFILING, "probe_version": "false"}))
    try:
        records, _ = read_until(reader, bool)
        got_ns = time.monotonic_ns()
    finally:
        reader.close()
    assert records[0].source_version == ""  # probe_version=false (a -O string) was honoured
    first_tick = [r for r in records if r.mono_ns == records[0].mono_ns]
    assert len(first_tick) == 6  # 4 GPUs + GPU-I + GPU-CI, one stamp
    # delivered when the next tick arrived, about 0.3 s later, but stamped at its own arrival
    assert got_ns - records[0].mono_ns > 0.15e9


def test_live_count_returns_the_last_tick_then_none(fake_bin):
    reader = DcgmiReader(search_path=fake_bin)
    reader.open(ReaderConfig(interval=0.001, options={"field_ids": NON_PROFILING, "count": 17, "entities": [1, 2]}))
    try:
        records, ended = read_until(reader, lambda recs: False)
        assert ended and reader.read() is None
    finally:
        reader.close()
    assert "-i" in reader.identity()["argv"]
    assert len(records) == 17 * 2  # 17 ticks across the reprinted header, none dropped
    assert len({r.mono_ns for r in records}) == 17


def test_missing_binary_is_reader_unavailable(tmp_path):
    reader = DcgmiReader(search_path=str(tmp_path))
    with pytest.raises(ReaderUnavailableError) as info:
        reader.open(ReaderConfig())
    assert "DCGM" in info.value.remediation
    reader.close()


def test_hostengine_down_is_reader_unavailable(tmp_path):
    bin_dir = make_fake_bin(tmp_path / "down", "--fake-hostengine-down")
    reader = DcgmiReader(search_path=bin_dir)
    with pytest.raises(ReaderUnavailableError) as info:
        reader.open(ReaderConfig(options={"probe_version": False}))
    assert "unable to establish a connection" in info.value.message
    assert "nv-hostengine" in info.value.remediation and info.value.status == 235
    reader.close()


def test_hostengine_lost_mid_run_returns_the_data_then_raises(tmp_path):
    bin_dir = make_fake_bin(tmp_path / "flaky", "--fake-gpus", "2", "--fake-fail-after", "3")
    reader = DcgmiReader(search_path=bin_dir)
    reader.open(ReaderConfig(interval=0.001, options={"field_ids": NON_PROFILING, "probe_version": False}))
    records = []
    try:
        with pytest.raises(SourceError) as info:
            for _ in range(500):
                records.extend(reader.read() or [])
                time.sleep(0.01)
        assert reader.read() is None
    finally:
        reader.close()
    assert len(records) == 3 * 2
    assert "Host engine connection invalid" in info.value.message and info.value.remediation


def test_a_flood_on_stderr_does_not_block_dcgmi(tmp_path):
    bin_dir = make_fake_bin(tmp_path / "noisy", "--fake-gpus", "2", "--fake-stderr-bytes", "1000000")
    reader = DcgmiReader(search_path=bin_dir)
    reader.open(ReaderConfig(interval=0.01, options={"field_ids": NON_PROFILING, "probe_version": False,
                                                     "start_timeout": 10}))
    try:
        records, _ = read_until(reader, lambda recs: len(recs) >= 4)
    finally:
        reader.close()
    assert records[0].entity == "gpu1"


# -- the fake itself ------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_fake_prints_the_stop_trailer_when_signalled(sig):
    proc = subprocess.Popen([sys.executable, str(FAKE_SCRIPT), "--fake-gpus", "2", "dmon", "-e", "100,155", "-d", "50"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("#Entity")
    proc.stdout.readline()
    assert proc.stdout.readline().startswith("GPU 1")
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert rest.endswith("\n\ndmon was stopped due to receiving a signal\n")


def test_fake_runs_as_a_module_and_reports_a_version():
    out = subprocess.run([sys.executable, "-m", "telemrec.testing.fake_dcgmi", "-v"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert out.startswith("Version : 4.6.0")


def test_fake_reprints_the_header_after_tick_15_then_every_14():
    out = io.StringIO()
    assert fake_dcgmi.main(["--fake-gpus", "1", "--fake-time-scale", "0", "dmon", "-e", "100", "-d", "1", "-c", "44"],
                           out) == 0
    lines = out.getvalue().splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("#Entity")]
    assert [i - 2 * n for n, i in enumerate(headers)] == [0, 15, 29, 43]  # rows printed before each header


def test_fake_replays_a_capture(tmp_path):
    bin_dir = make_fake_bin(tmp_path / "replay", "--fake-capture", str(FIXTURES / "dmon_mig_2gpu.txt"))
    reader = DcgmiReader(search_path=bin_dir)
    reader.open(ReaderConfig(interval=0.01, options={"probe_version": False}))
    try:
        records, ended = read_until(reader, lambda recs: False)
    finally:
        reader.close()
    assert ended and len(records) == 3 * 9
    assert records[1].entity == "mig:1:8"


# -- an injected runner -------------------------------------------------------------------------
class ScriptedProcess:
    """A Popen stand-in whose stdout the test writes line by line."""

    def __init__(self) -> None:
        self._lines: queue.Queue = queue.Queue()
        self._ended = threading.Event()
        self.stdout = iter(self._lines.get, None)
        self.stderr = io.StringIO("")
        self.returncode = None
        self.signals: list[int] = []

    def push(self, *lines: str) -> None:
        for line in lines:
            self._lines.put(line + "\n")

    def end(self, status: int) -> None:
        self.returncode = status
        self._lines.put(None)
        self._ended.set()

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired("dcgmi", timeout)
        return self.returncode

    def send_signal(self, sig):
        self.signals.append(sig)
        self.end(0)

    def kill(self):
        self.end(-9)

    def communicate(self, input=None, timeout=None):
        return "", ""


def _scripted_reader(fake_bin, proc, calls):
    def run(argv, env):
        calls.append((list(argv), dict(env)))
        return proc
    return DcgmiReader(run=run, search_path=fake_bin)


def _line(label: str, *values: str) -> str:
    return f"{label:<16}" + "".join(f"{v:<{w}}" for v, w in zip(values, (13, 18)))


def test_injected_runner_gets_argv_and_an_env_without_cuda_visible_devices(fake_bin, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    proc, calls = ScriptedProcess(), []
    proc.push(f"{'#Entity':<16}{'SMCLK':<13}{'POWER':<18}", f"{'ID':<29}{' W':<18}")
    reader = _scripted_reader(fake_bin, proc, calls)
    reader.open(ReaderConfig(interval=2, options={"field_ids": [100, 155], "entities": "gpu:0,gpu:3",
                                                  "host": "node7", "count": 5, "probe_version": False}))
    reader.close()
    argv, env = calls[0]
    assert argv[1:] == ["dmon", "-e", "100,155", "-d", "2000", "-c", "5", "-i", "gpu:0,gpu:3", "--host", "node7"]
    assert "CUDA_VISIBLE_DEVICES" not in env and env.get("PATH")
    assert proc.signals == [signal.SIGINT]


def test_ticks_complete_on_the_next_first_row_and_at_eof(fake_bin):
    proc, calls = ScriptedProcess(), []
    proc.push(f"{'#Entity':<16}{'SMCLK':<13}{'POWER':<18}", "ID")
    reader = _scripted_reader(fake_bin, proc, calls)
    reader.open(ReaderConfig(interval=0.2, options={"field_ids": "100,155", "probe_version": False}))
    try:
        proc.push(_line("GPU 1", "1980", "N/A"), _line("GPU 0", "", "301.250"))
        before = time.monotonic_ns()
        time.sleep(0.2)
        assert reader.read() == []  # the tick is not complete before the next one starts
        proc.push(_line("GPU 1", "1755", "288.000"))
        tick1, _ = read_until(reader, bool)
        assert [(r.entity, dict(r.fields)) for r in tick1] == [
            ("gpu1", {"DCGM_FI_DEV_SM_CLOCK": 1980, "DCGM_FI_DEV_BOARD_POWER_WATTS": None}),
            ("gpu0", {"DCGM_FI_DEV_BOARD_POWER_WATTS": 301.25})]
        assert tick1[0].mono_ns == tick1[1].mono_ns < before + 0.1e9
        proc.push(_line("GPU 0", "1755", "290.000"))
        proc.end(0)
        tick2, ended = read_until(reader, lambda recs: False)
        assert ended and [r.entity for r in tick2] == ["gpu1", "gpu0"]
        assert reader.read() is None
    finally:
        reader.close()


def test_nonzero_exit_after_data_raises_once_after_the_data(fake_bin):
    proc, calls = ScriptedProcess(), []
    proc.push(f"{'#Entity':<16}{'SMCLK':<13}")
    reader = _scripted_reader(fake_bin, proc, calls)
    reader.open(ReaderConfig(options={"field_ids": "100", "probe_version": False}))
    try:
        proc.push(_line("GPU 0", "1980"), "Error getting values information. Return -21: Host engine connection "
                  "invalid/disconnected")
        proc.end(235)
        records, _ = read_until(reader, bool)
        assert records[0].fields == {"DCGM_FI_DEV_SM_CLOCK": 1980}
        with pytest.raises(SourceError) as info:
            read_until(reader, lambda recs: False)
        assert info.value.status == 235 and "nv-hostengine" in info.value.remediation
        assert reader.read() is None
    finally:
        reader.close()


def test_a_header_that_does_not_fit_the_field_ids_fails_open(fake_bin):
    proc, calls = ScriptedProcess(), []
    proc.push(f"{'#Entity':<16}{'SMCLK':<13}")
    reader = _scripted_reader(fake_bin, proc, calls)
    with pytest.raises(SourceParseError):
        reader.open(ReaderConfig(options={"field_ids": "100,155", "probe_version": False}))
    reader.close()


# -- a saved capture ------------------------------------------------------------------------------
def test_capture_gives_one_tick_per_read_spaced_by_the_interval():
    reader = DcgmiReader(run=None, search_path="/nonexistent")
    reader.open(ReaderConfig(source=str(FIXTURES / "dmon_mig_2gpu.txt"), interval=0.5))
    ticks = []
    while (batch := reader.read()) is not None:
        ticks.append(batch)
    reader.close()
    assert [len(t) for t in ticks] == [9, 9, 9]
    starts = [t[0].mono_ns for t in ticks]
    assert [b - a for a, b in zip(starts, starts[1:])] == [500_000_000, 500_000_000]
    assert ticks[1][0].wall_ns - ticks[0][0].wall_ns == 500_000_000
    assert reader.identity()["mode"] == "capture" and reader.identity()["ticks_in_capture"] == 3
    assert len(reader.caps.fields) == 23


def test_capture_errors_are_typed(tmp_path):
    with pytest.raises(SourceError):
        DcgmiReader().open(ReaderConfig(source=str(tmp_path / "missing.txt")))
    no_header = tmp_path / "down.txt"
    no_header.write_text(fake_dcgmi.CONNECT_ERROR.format(host="localhost"))
    with pytest.raises(SourceParseError) as info:
        DcgmiReader().open(ReaderConfig(source=str(no_header)))
    assert info.value.remediation


def test_capture_with_truncation_sets_the_record_error():
    reader = DcgmiReader()
    reader.open(ReaderConfig(source=str(FIXTURES / "dmon_truncated_4gpu.txt")))
    reader.read()
    second = reader.read()
    reader.close()
    errors = {r.entity: r.error for r in second}
    assert errors["gpu2"].startswith("DCGM_FI_DEV_BOARD_POWER_WATTS truncated")
    assert errors["gpu1"] is None


def test_no_header_in_time_is_a_source_error_and_stops_dcgmi(fake_bin):
    proc, calls = ScriptedProcess(), []
    reader = _scripted_reader(fake_bin, proc, calls)
    with pytest.raises(SourceError) as info:
        reader.open(ReaderConfig(options={"start_timeout": 0.2, "probe_version": False}))
    assert "no header within 0.2 s" in info.value.message and proc.signals == [signal.SIGINT]
    reader.close()


def test_a_changed_header_mid_run_raises_once_then_ends(fake_bin):
    proc, calls = ScriptedProcess(), []
    proc.push(f"{'#Entity':<16}{'SMCLK':<13}")
    reader = _scripted_reader(fake_bin, proc, calls)
    reader.open(ReaderConfig(options={"field_ids": "100", "probe_version": False}))
    try:
        proc.push(_line("GPU 0", "1980"), f"{'#Entity':<16}{'SMCLK':<13}{'POWER':<18}", _line("GPU 0", "1755"))
        records, _ = read_until(reader, bool)
        assert [r.fields for r in records] == [{"DCGM_FI_DEV_SM_CLOCK": 1980}]  # the tick before the change
        with pytest.raises(SourceParseError):
            read_until(reader, lambda recs: False)
        assert proc.signals == [signal.SIGINT] and reader.read() is None
    finally:
        reader.close()
