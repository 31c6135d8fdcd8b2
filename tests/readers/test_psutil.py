"""PsutilReader against the live /proc of the test machine, a fake procfs root, and
a psutil wrapper that refuses or loses processes on purpose."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import types

import psutil
import pytest

from telemrec.errors import ReaderError, ReaderUnavailableError, UsageError
from telemrec.readers.psutil_ import DISK_EXCLUDE, PsutilReader
from telemrec.record import ReaderConfig
from telemrec.testing.conformance import ReaderConformance

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def tick(reader) -> dict:
    return {rec.entity: rec for rec in reader.read()}


def opened(source=None, **options) -> PsutilReader:
    reader = PsutilReader()
    reader.open(ReaderConfig(source=source, interval=0.05, options=options))
    return reader


def proc_stat_value(key: str) -> int:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(key + " "):
                return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/stat")


# the process levels are read by either collector, with the same results
both_collectors = pytest.mark.parametrize("processes", ["procfs", "psutil"])


def pid_entities(records: dict) -> set[str]:
    return {entity for entity in records if entity.startswith("pid:")}


@pytest.fixture
def sleeper():
    procs = []

    def spawn(env=None):
        proc = subprocess.Popen(SLEEPER, env=env)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        proc.kill()
        proc.wait()


class TestPsutilConformance(ReaderConformance):
    def make_reader(self):
        return PsutilReader()

    def make_config(self):
        return ReaderConfig(interval=0.05, options={"levels": ["system", "process"], "pid": os.getpid()})

    def make_failing_config(self):
        return ReaderConfig(source="/proc/no-such-procfs-root", interval=0.05)


# -- system level against /proc ------------------------------------------------------------
def test_system_level_agrees_with_proc():
    reader = opened(levels="system")
    try:
        ctxt_before = proc_stat_value("ctxt")
        first = tick(reader)
        ctxt_after = proc_stat_value("ctxt")
        second = tick(reader)
    finally:
        reader.close()
    system = first["system"].fields
    assert first["system"].error is None
    with open("/proc/meminfo") as f:
        mem_total_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    assert system["virtual_memory.total"] == mem_total_kb * 1024
    assert ctxt_before <= system["cpu_stats.ctx_switches"] <= ctxt_after
    assert second["system"].fields["cpu_stats.ctx_switches"] >= system["cpu_stats.ctx_switches"]
    assert second["system"].fields["cpu_times.idle"] >= system["cpu_times.idle"]
    assert system["boot_time"] == float(proc_stat_value("btime"))
    assert system["cpu_count.affinity"] == len(os.sched_getaffinity(0))
    assert system["cpu_count.logical"] == os.cpu_count()

    with open("/proc/stat") as f:
        cores = [line.split()[0] for line in f if line.startswith("cpu") and line[3].isdigit()]
    assert sorted(e for e in first if e.startswith("cpu")) == sorted(f"cpu{i}" for i in range(len(cores)))
    with open("/proc/diskstats") as f:
        disks = {line.split()[2] for line in f if line.strip()}
    virtual = re.compile(DISK_EXCLUDE)
    assert {e for e in first if e.startswith("disk:")} == {f"disk:{d}" for d in disks if not virtual.search(d)}
    with open("/proc/net/dev") as f:
        nics = {line.split(":")[0].strip() for line in f.readlines()[2:]}
    assert {e for e in first if e.startswith("net:")} == {f"net:{n}" for n in nics}

    for key in ("cpu_stats.ctx_switches", "virtual_memory.total", "swap_memory.sin"):
        assert type(system[key]) is int, key
    for entity, rec in first.items():
        if entity.startswith(("disk:", "net:")):
            assert all(type(v) is int for v in rec.fields.values()), entity
        if entity.startswith("cpu"):
            assert all(type(v) is float for v in rec.fields.values()), entity


def test_one_timestamp_pair_per_tick_taken_at_its_start():
    reader = opened(levels="system,process", pid=os.getpid())
    try:
        before = time.monotonic_ns()
        records = reader.read()
        after = time.monotonic_ns()
    finally:
        reader.close()
    assert len({(rec.mono_ns, rec.wall_ns) for rec in records}) == 1
    assert before <= records[0].mono_ns <= after
    collector = records[-1]
    assert collector.entity == "collector"
    assert collector.fields["tick.processes"] == len(pid_entities({r.entity: r for r in records}))
    assert 0 < collector.fields["tick.cpu_seconds"] < 1
    assert 0 < collector.fields["tick.wall_seconds"] <= (after - before) / 1e9


def test_per_cpu_and_uss_can_be_turned_off_with_cli_strings():
    reader = opened(levels="system, process", pid=str(os.getpid()), uss="false", per_cpu="off")
    try:
        records = tick(reader)
        caps = reader.caps
    finally:
        reader.close()
    assert not [e for e in records if e.startswith("cpu")]
    assert "memory_full_info.uss" not in records[f"pid:{os.getpid()}"].fields
    assert "memory_full_info.uss" not in caps.fields
    assert reader.identity()["uss"] is False


# -- process level ---------------------------------------------------------------------------
@both_collectors
def test_own_process_agrees_with_proc(processes):
    me = os.getpid()
    reader = opened(levels="process", pid=me, processes=processes)
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/statm") as f:
            rss_before = int(f.read().split()[1]) * page
        record = tick(reader)[f"pid:{me}"]
        with open("/proc/self/statm") as f:
            rss_after = int(f.read().split()[1]) * page
    finally:
        reader.close()
    fields = record.fields
    assert record.error is None
    slack = 8 * 2**20
    assert min(rss_before, rss_after) - slack <= fields["memory_info.rss"] <= max(rss_before, rss_after) + slack
    assert 0 < fields["memory_full_info.uss"] <= fields["memory_info.rss"]
    assert fields["ppid"] == os.getppid()
    assert fields["uids.real"] == os.getuid()
    assert fields["levels"] == "process"
    with open("/proc/self/cmdline", "rb") as f:
        assert fields["cmdline"] == " ".join(a.decode() for a in f.read().split(b"\0") if a)
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    expected = start_ticks / os.sysconf("SC_CLK_TCK") + proc_stat_value("btime")
    assert abs(fields["create_time"] - expected) < 0.02
    for key in ("memory_info.rss", "io_counters.read_bytes", "num_ctx_switches.voluntary", "num_threads"):
        assert type(fields[key]) is int, key
    assert type(fields["cpu_times.user"]) is float


@both_collectors
def test_descendants_join_and_leave_the_process_level(processes):
    me = os.getpid()
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
         " print(g.pid, flush=True); g.wait()"],
        stdout=subprocess.PIPE, text=True)
    grandchild = int(child.stdout.readline())
    try:
        reader = opened(levels="process", pid=me, processes=processes)
        try:
            records = tick(reader)
            assert records[f"pid:{child.pid}"].fields["ppid"] == me
            assert records[f"pid:{grandchild}"].fields["ppid"] == child.pid
            assert records[f"pid:{grandchild}"].fields["levels"] == "process"

            os.kill(grandchild, signal.SIGKILL)  # the child reaps it and exits; we do not reap the child yet
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with open(f"/proc/{child.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        break
                time.sleep(0.01)
            records = tick(reader)
            assert f"pid:{grandchild}" not in records
            zombie = records[f"pid:{child.pid}"]
            assert zombie.fields["status"] == "zombie"
            assert zombie.fields["cmdline"] is None and "cmdline: ZombieProcess" in zombie.error

            child.wait()
            records = tick(reader)
            assert pid_entities(records) == {f"pid:{me}"}
        finally:
            reader.close()
    finally:
        if child.poll() is None:  # the grandchild is then unreaped and its pid still ours to signal
            try:
                os.kill(grandchild, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.kill()
        child.wait()
        child.stdout.close()


@both_collectors
def test_target_that_exits_leaves_an_empty_process_level(sleeper, processes):
    target = sleeper()
    reader = opened(levels="process", pid=target.pid, processes=processes)
    try:
        assert pid_entities(tick(reader)) == {f"pid:{target.pid}"}
        target.kill()
        target.wait()
        records = tick(reader)
    finally:
        reader.close()
    assert pid_entities(records) == set()
    assert records["collector"].fields["tick.processes"] == 0


# -- user and slurm levels ---------------------------------------------------------------------
@both_collectors
def test_user_level_holds_this_process_and_no_kernel_thread(processes):
    reader = opened(levels="user", processes=processes)
    try:
        records = tick(reader)
    finally:
        reader.close()
    assert f"pid:{os.getpid()}" in records
    assert records[f"pid:{os.getpid()}"].fields["levels"] == "user"
    for entity in pid_entities(records):
        fields = records[entity].fields
        assert fields["uids.real"] in (os.getuid(), None), entity
        assert fields["ppid"] != 2 and entity != "pid:2", f"kernel thread {entity} in the user level"


@both_collectors
def test_slurm_level_finds_only_the_jobs_processes(sleeper, processes):
    job = f"telemrec-test-{os.getpid()}"
    inside = sleeper(env={**os.environ, "SLURM_JOB_ID": job})
    sleeper(env={**os.environ, "SLURM_JOB_ID": job + "-other"})
    sleeper(env={k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"})
    time.sleep(0.2)  # let exec finish so the environment is the child's own
    reader = opened(levels="process,slurm", pid=os.getpid(), slurm_job=job, processes=processes)
    try:
        records = tick(reader)
    finally:
        reader.close()
    slurm = {e for e in pid_entities(records) if "slurm" in records[e].fields["levels"].split()}
    assert slurm == {f"pid:{inside.pid}"}
    assert records[f"pid:{inside.pid}"].fields["levels"] == "process slurm"


def test_slurm_level_without_job_id_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(UsageError) as info:
        opened(levels="slurm")
    assert "slurm_job" in info.value.remediation


@pytest.mark.parametrize("options", [
    {"levels": "system,bogus"},
    {"levels": ""},
    {"levels": "process"},
    {"levels": "process", "pid": "abc"},
    {"levels": "process", "pid": -1},
    {"levels": "system", "pid": os.getpid()},
    {"levels": "system", "uid": 0},
    {"levels": "user", "uid": "no-such-user-telemrec"},
    {"uss": "maybe"},
    {"uss": "false", "uss_budget": 0.01},
    {"uss": "every-tick", "uss_budget": 0.01},
    {"uss_budget": 0},
    {"uss_budget": 2},
    {"uss_budget": "lots"},
    {"processes": "bogus"},
    {"level": "system"},
])
def test_bad_options_are_usage_errors(options):
    reader = PsutilReader()
    with pytest.raises(UsageError) as info:
        reader.open(ReaderConfig(options=options))
    assert info.value.remediation
    reader.close()


def test_process_level_on_a_pid_that_does_not_exist_is_a_usage_error():
    with open("/proc/sys/kernel/pid_max") as f:
        missing = int(f.read()) + 1
    with pytest.raises(UsageError, match=f"no process with pid {missing}"):
        opened(levels="process", pid=missing)


# -- procfs root ------------------------------------------------------------------------------
FAKE_PROC = {
    "stat": "cpu  300 3 150 3000 15 0 6 0 0 0\ncpu0 100 1 50 1000 5 0 2 0 0 0\ncpu1 100 1 50 1000 5 0 2 0 0 0\n"
            "cpu2 100 1 50 1000 5 0 2 0 0 0\nintr 12345 0 0\nctxt 67890\nbtime 1700000000\nprocesses 100\n"
            "procs_running 1\nprocs_blocked 0\nsoftirq 4242 0 0\n",
    "meminfo": "MemTotal:        2048000 kB\nMemFree:         1024000 kB\nMemAvailable:    1536000 kB\n"
               "Buffers:           10000 kB\nCached:           200000 kB\nSwapCached:            0 kB\n"
               "Active:           300000 kB\nInactive:         200000 kB\nShmem:              5000 kB\n"
               "Slab:              40000 kB\nSReclaimable:      20000 kB\nSwapTotal:        512000 kB\n"
               "SwapFree:         256000 kB\n",
    "vmstat": "pswpin 10\npswpout 20\n",
    "diskstats": "   8       0 fakedisk0 100 5 2000 30 50 6 4000 40 0 70 70\n"
                 "   8       1 fakedisk0p1 100 5 2000 30 50 6 4000 40 0 70 70\n"
                 "   7       0 loop0 9 0 90 0 0 0 0 0 0 0 0\n   7       1 loop1 9 0 90 0 0 0 0 0 0 0 0\n"
                 "   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0\n 252       0 zram0 4 0 32 0 8 0 64 0 0 0 0\n",
    "net/dev": "Inter-|   Receive                                                |  Transmit\n"
               " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo"
               " colls carrier compressed\n  fake0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n",
    "cpuinfo": "processor\t: 0\nmodel name\t: Fake CPU 9000\n",
}


@pytest.fixture
def fake_proc(tmp_path):
    for name, text in FAKE_PROC.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_fake_procfs_root_is_what_gets_read(fake_proc):
    reader = opened(source=str(fake_proc), levels="system")
    try:
        records = tick(reader)
        identity = reader.identity()
    finally:
        reader.close()
    assert psutil.PROCFS_PATH == "/proc", "the reader must restore psutil's procfs path after a tick"
    system = records["system"]
    assert system.error is None
    assert system.fields["virtual_memory.total"] == 2048000 * 1024
    assert system.fields["swap_memory.used"] == 256000 * 1024
    assert system.fields["swap_memory.sin"] == 10 * 4096
    assert system.fields["cpu_stats.ctx_switches"] == 67890
    assert system.fields["cpu_stats.interrupts"] == 12345
    assert system.fields["boot_time"] == 1700000000.0
    assert sorted(e for e in records if e.startswith("cpu")) == ["cpu0", "cpu1", "cpu2"]
    assert records["cpu0"].fields["cpu_times.user"] == 1.0
    disk = records["disk:fakedisk0"].fields
    assert (disk["disk_io_counters.read_count"], disk["disk_io_counters.read_bytes"],
            disk["disk_io_counters.busy_time"]) == (100, 2000 * 512, 70)
    net = records["net:fake0"].fields
    assert (net["net_io_counters.bytes_recv"], net["net_io_counters.dropout"]) == (1000, 4)
    assert all(type(v) is int for v in (*disk.values(), *net.values()))
    assert identity["cpu_model"] == "Fake CPU 9000"
    assert identity["memory_total"] == 2048000 * 1024
    assert identity["procfs_root"] == str(fake_proc)


@pytest.mark.parametrize("option,expected", [
    (None, ["fakedisk0", "fakedisk0p1"]),                                   # loop, ram, zram left out
    ("", ["fakedisk0", "fakedisk0p1", "loop0", "loop1", "ram0", "zram0"]),  # every device, as before
    ("^loop", ["fakedisk0", "fakedisk0p1", "ram0", "zram0"]),                 # the user's own choice
])
def test_virtual_block_devices_are_left_out_unless_asked_for(fake_proc, option, expected):
    options = {"levels": "system"} if option is None else {"levels": "system", "disk_exclude": option}
    reader = opened(source=str(fake_proc), **options)
    try:
        records = tick(reader)
    finally:
        reader.close()
    assert sorted(e[5:] for e in records if e.startswith("disk:")) == sorted(expected)
    assert "net:fake0" in records


def test_a_bad_disk_exclude_is_a_usage_error(fake_proc):
    with pytest.raises(UsageError, match="disk_exclude"):
        opened(source=str(fake_proc), levels="system", disk_exclude="(")


def test_a_missing_procfs_file_is_an_error_on_system_not_a_crash(fake_proc):
    (fake_proc / "net" / "dev").unlink()
    reader = opened(source=str(fake_proc), levels="system")
    try:
        records = tick(reader)
    finally:
        reader.close()
    assert "net_io_counters: FileNotFoundError" in records["system"].error
    assert not [e for e in records if e.startswith("net:")]
    assert records["system"].fields["virtual_memory.total"] == 2048000 * 1024
    assert "disk:fakedisk0" in records


def test_procfs_root_from_the_constructor_and_a_pid_outside_it(fake_proc):
    reader = PsutilReader(procfs_root=str(fake_proc))
    reader.open(ReaderConfig())
    try:
        assert tick(reader)["system"].fields["cpu_stats.ctx_switches"] == 67890
    finally:
        reader.close()
    with pytest.raises(UsageError, match="no process with pid"):
        opened(source=str(fake_proc), levels="process", pid=os.getpid())


def test_a_procfs_root_that_does_not_exist_is_a_typed_error(tmp_path):
    reader = PsutilReader()
    with pytest.raises(ReaderUnavailableError) as info:
        reader.open(ReaderConfig(source=str(tmp_path / "missing")))
    assert isinstance(info.value, ReaderError) and "--source" in info.value.remediation
    reader.close()


# -- processes that refuse or vanish ------------------------------------------------------------
def psutil_refusing(denied_io: set[int], vanishing: set[int]) -> types.ModuleType:
    """psutil, except that io_counters() is denied for ``denied_io`` and processes in
    ``vanishing`` disappear after cpu_times() and memory_info(), at cmdline()."""
    fake = types.ModuleType("psutil_refusing")
    fake.__dict__.update({k: v for k, v in vars(psutil).items() if not k.startswith("__")})
    fake.__version__ = psutil.__version__

    class Process(psutil.Process):
        def io_counters(self):
            if self.pid in denied_io:
                raise psutil.AccessDenied(self.pid)
            return super().io_counters()

        def cmdline(self):
            if self.pid in vanishing:
                raise psutil.NoSuchProcess(self.pid)
            return super().cmdline()

    fake.Process = Process
    return fake


def test_access_denied_blanks_one_call_and_vanished_processes_are_dropped(sleeper):
    me, gone = os.getpid(), sleeper().pid
    reader = PsutilReader(psutil_module=psutil_refusing(denied_io={me}, vanishing={gone}))
    reader.open(ReaderConfig(options={"levels": "process", "pid": me, "processes": "psutil"}))
    try:
        records = tick(reader)
    finally:
        reader.close()
    mine = records[f"pid:{me}"]
    assert mine.error == "io_counters: AccessDenied"
    assert all(v is None for k, v in mine.fields.items() if k.startswith("io_counters."))
    assert mine.fields["memory_info.rss"] > 0 and mine.fields["name"]
    assert f"pid:{gone}" not in records
    assert records["collector"].fields["tick.processes"] == 2


# -- metadata and cost ----------------------------------------------------------------------------
def test_caps_and_identity_describe_what_is_recorded():
    reader = opened(levels="system,process", pid=os.getpid())
    try:
        caps, identity, records = reader.caps, reader.identity(), reader.read()
    finally:
        reader.close()
    emitted = {key for rec in records for key in rec.fields}
    assert emitted <= caps.fields
    assert caps.kind == "psutil"
    assert caps.units["virtual_memory.total"] == "bytes"
    assert caps.units["disk_io_counters.read_time"] == "milliseconds"
    assert caps.units["cpu_times.user"] == "seconds"
    assert {"cpu_stats.ctx_switches", "disk_io_counters.read_bytes", "net_io_counters.bytes_recv",
            "io_counters.write_bytes", "cpu_times.idle", "swap_memory.sin"} <= caps.counters
    assert not {"virtual_memory.used", "memory_info.rss", "getloadavg.1m"} & caps.counters
    assert set(caps.descriptions) == caps.fields
    for key in caps.fields:
        if key.startswith("cpu_times."):
            assert caps.units[key] == "seconds" and key in caps.counters, key
    assert identity["psutil_version"] == reader.source_version == psutil.__version__
    assert identity["memory_total"] == psutil.virtual_memory().total
    assert identity["cpu_affinity"] == sorted(os.sched_getaffinity(0))
    assert {rec.source_version for rec in records} == {psutil.__version__}


def test_each_tick_reports_its_own_cost():
    # the cost itself is measured by benchmarks/bench_format.py, not asserted here (shared, noisy machines)
    reader = opened(levels="system,process", pid=os.getpid())
    try:
        ticks = [reader.read()[-1] for _ in range(5)]
    finally:
        reader.close()
    for rec in ticks:
        assert rec.entity == "collector"
        assert 0 < rec.fields["tick.cpu_seconds"] and 0 < rec.fields["tick.wall_seconds"]
        assert rec.fields["tick.processes"] >= 1


# -- USS, paced -------------------------------------------------------------------------------------
def test_uss_is_read_in_turn_within_its_budget_and_absent_otherwise(sleeper):
    kids = [sleeper() for _ in range(3)]
    reader = opened(levels="process", pid=os.getpid(), uss_budget="0.0000001")  # 0.1 us per second
    try:
        first = tick(reader)
        second = tick(reader)
    finally:
        reader.close()
    with_uss = [e for e in pid_entities(first) if "memory_full_info.uss" in first[e].fields]
    assert with_uss == [f"pid:{os.getpid()}"], "the budget pays for one read, the job's own process first"
    assert all("memory_full_info.uss" not in second[e].fields for e in pid_entities(second)), \
        "overdrawn: no USS until it is earned back; the field is absent, not None"
    assert {f"pid:{k.pid}" for k in kids} <= pid_entities(second)
    assert reader.identity()["uss_budget"] == 1e-7


def test_uss_every_tick_reads_every_process_every_tick(sleeper):
    kids = [sleeper() for _ in range(3)]
    reader = opened(levels="process", pid=os.getpid(), uss="every-tick")
    try:
        ticks = [tick(reader) for _ in range(2)]
    finally:
        reader.close()
    for records in ticks:
        assert {f"pid:{k.pid}" for k in kids} <= pid_entities(records)
        assert all(records[e].fields["memory_full_info.uss"] > 0 for e in pid_entities(records))
    assert reader.identity()["uss_budget"] is None


def test_uss_budget_orders_the_longest_unread_first():
    from telemrec.readers._processes import ProcessReading, UssBudget

    def reading(pid, levels=("user",)):
        return ProcessReading(pid, {"create_time": 1.0}, [], list(levels))

    budget = UssBudget(0.01)  # 10 ms a second; saves at most 20 ms
    readings = [reading(3), reading(1), reading(2, ("process", "user"))]
    assert [r.pid for r in budget.plan(readings, 0)] == [2, 3, 1]
    budget.charge(readings[2], 5_000_000, 0)
    budget.charge(readings[0], 5_000_000, 0)
    assert budget.affordable()
    budget.charge(readings[1], 15_000_000, 0)
    assert not budget.affordable()
    assert budget.plan(readings, 500_000_000) == [], "5 ms earned back of a 5 ms debt: still nothing"
    order = budget.plan(readings, 2_000_000_000)
    assert [r.pid for r in order] == [2, 3, 1], "read at the same time: the job's first"
    assert [r.pid for r in UssBudget(None).plan(readings, 0)] == [3, 1, 2], "every tick: all, as they come"
