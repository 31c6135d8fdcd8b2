"""The procfs process collector against psutil, field by field, on the same live processes
(idle, busy, threaded, stopped, zombie, kernel threads, oddly named and argv'd, refused);
against fake procfs trees (psutil pointed at the same tree); and under process churn."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import psutil
import pytest

from telemrec.readers._procfs_collector import ProcfsCollector
from telemrec.readers._procfs_process import GATE_THREADS
from telemrec.readers._psutil_collector import PsutilCollector
from telemrec.readers.psutil_ import PsutilReader
from telemrec.record import ReaderConfig

IDLE = "import time; time.sleep(120)"
COMPILED = [pytest.param(True, id="C"), pytest.param(False, id="Python")]
BUSY = textwrap.dedent("""
    import os, time
    with open(os.devnull, "wb") as sink:
        while True:
            sum(range(30000)); sink.write(b"x" * 512); sink.flush(); time.sleep(0.002)
""")
THREADS = "import threading, time\n[threading.Thread(target=time.sleep, args=(120,), daemon=True).start() for _ in range({n})]\ntime.sleep(120)"
BUSY_THREAD = textwrap.dedent("""
    import threading, time
    def spin():
        while True:
            sum(range(30000)); time.sleep(0.003)
    threading.Thread(target=spin, daemon=True).start()
    threading.Thread(target=time.sleep, args=(120,), daemon=True).start()
    time.sleep(120)
""")


def opened(**options) -> PsutilReader:
    reader = PsutilReader()
    reader.open(ReaderConfig(interval=0.05, options=options))
    return reader


def by_entity(reader) -> dict:
    return {rec.entity: rec for rec in reader.read() if rec.entity.startswith("pid:")}


def between(new, a, b) -> bool:
    """``new`` is what was there when either of two reads around it was taken, or in between."""
    if new == a or new == b:
        return True
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (new, a, b)):
        return min(a, b) <= new <= max(a, b)
    return False


# what a running process changes back and forth: a third read may see it other than both around it
GAUGES = {"status", "memory_info.rss", "memory_info.vms", "memory_full_info.uss", "num_threads"}
# ... and USS of any process: a page is private until another process maps it (the fake trees
# check USS exactly)
ANYONE_MOVES = {"memory_full_info.uss"}


def assert_agree(before: dict, procfs: dict, after: dict, pids=None, busy=()) -> int:
    """Every record of the procfs tick has psutil's fields, names and types, and each value is
    psutil's at the read before or after it, or between the two (for the gauges of ``busy``
    processes: of psutil's type). Returns the records compared."""
    compared = 0
    for entity, rec in procfs.items():
        if pids is not None and int(entity[4:]) not in pids:
            continue
        if entity not in before or entity not in after:
            continue  # appeared or vanished around the reads
        a, b = before[entity], after[entity]
        assert rec.fields.keys() == a.fields.keys(), entity
        for key, value in rec.fields.items():
            if key in ANYONE_MOVES or (key in GAUGES and int(entity[4:]) in busy):
                assert type(value) is type(a.fields[key]), (entity, key)
                continue
            assert between(value, a.fields[key], b.fields[key]), (entity, key, a.fields[key], value, b.fields[key])
            if value is not None and a.fields[key] is not None:
                assert type(value) is type(a.fields[key]), (entity, key)
        assert between(rec.error, a.error, b.error), (entity, a.error, rec.error, b.error)
        compared += 1
    return compared


@pytest.fixture
def zoo(tmp_path):
    """Children of the test process, each a case psutil has to get right."""
    long_exe = tmp_path / "telemrec-a-very-long-process-name"
    os.symlink(sys.executable, long_exe)
    argvs = {
        "idle": [sys.executable, "-c", IDLE],
        "busy": [sys.executable, "-c", BUSY],
        "few threads": [sys.executable, "-c", THREADS.format(n=3)],
        "many threads": [sys.executable, "-c", THREADS.format(n=GATE_THREADS + 4)],
        "busy thread": [sys.executable, "-c", BUSY_THREAD],
        "long name": [str(long_exe), "-c", IDLE],
        "odd argv": [sys.executable, "-c", IDLE, b"\xff\xfe not utf-8", "a\rb\r\nc", "with  spaces", ""],
        "stopped": [sys.executable, "-c", IDLE],
        "zombie": ["true"],
    }
    procs = {name: subprocess.Popen(argv) for name, argv in argvs.items()}
    time.sleep(0.5)
    procs["stopped"].send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while psutil.Process(procs["zombie"].pid).status() != "zombie" and time.monotonic() < deadline:
        time.sleep(0.01)
    yield procs
    for proc in procs.values():
        proc.kill()
        proc.wait()


# -- live processes ------------------------------------------------------------------------------------

def test_procfs_agrees_with_psutil_field_by_field_on_the_same_processes(zoo):
    me = os.getpid()
    options = {"levels": "process", "pid": me, "uss": "every-tick"}
    reference = opened(**options, processes="psutil")
    procfs = opened(**options, processes="procfs")
    try:
        for _ in range(4):  # later ticks take the collector's cached path for what cannot have changed
            before, new, after = by_entity(reference), by_entity(procfs), by_entity(reference)
            pids = {p.pid for p in zoo.values()}  # the test process itself changes while read
            busy = {zoo["busy"].pid, zoo["busy thread"].pid}
            assert assert_agree(before, new, after, pids, busy) == len(pids)
            time.sleep(0.05)
    finally:
        reference.close()
        procfs.close()
    zombie = new[f"pid:{zoo['zombie'].pid}"]
    assert zombie.fields["status"] == "zombie" and zombie.error == "cmdline: ZombieProcess"
    assert new[f"pid:{zoo['stopped'].pid}"].fields["status"] == "stopped"
    assert new[f"pid:{zoo['long name'].pid}"].fields["name"] == "telemrec-a-very-long-process-name"
    assert "\udcff\udcfe not utf-8 a\nb\nc with  spaces " in new[f"pid:{zoo['odd argv'].pid}"].fields["cmdline"]
    assert new[f"pid:{zoo['many threads'].pid}"].fields["num_threads"] == GATE_THREADS + 5


def test_kernel_threads_as_psutil_reports_them():
    try:
        if psutil.Process(2).name() != "kthreadd":
            pytest.skip("pid 2 is not kthreadd here (a pid namespace)")
    except psutil.NoSuchProcess:
        pytest.skip("no pid 2 here (a pid namespace)")
    options = {"levels": "process", "pid": 2, "uss": "every-tick"}
    reference, procfs = opened(**options, processes="psutil"), opened(**options, processes="procfs")
    try:
        before, new, after = by_entity(reference), by_entity(procfs), by_entity(reference)
    finally:
        reference.close()
        procfs.close()
    assert assert_agree(before, new, after, busy={int(e[4:]) for e in new}) >= 1  # kworkers come and go
    assert new["pid:2"].fields["cmdline"] == "" and new["pid:2"].fields["memory_info.rss"] == 0


def test_user_level_members_agree_with_psutil():
    options = {"levels": "user", "uss": "false"}
    reference, procfs = opened(**options, processes="psutil"), opened(**options, processes="procfs")
    try:
        for _ in range(2):
            before, new, after = by_entity(reference), by_entity(procfs), by_entity(reference)
            steady = before.keys() & after.keys()
            assert steady <= new.keys() <= before.keys() | after.keys()
            # other users of this machine run things: every process may be busy
            busy = {int(e[4:]) for e in new}
            assert assert_agree(before, new, after, busy=busy) >= len(steady) - 2  # a few may churn right there
    finally:
        reference.close()
        procfs.close()
    assert f"pid:{os.getpid()}" in new


def read_as_nobody(target: int) -> dict:
    """Both collectors' records of ``target``, read by a forked child that became nobody."""
    rd, wr = os.pipe()
    with warnings.catch_warnings():  # the child only reads /proc and exits: no lock it could inherit matters
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        try:
            os.close(rd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out = {}
            for processes in ("psutil", "procfs", "psutil"):
                reader = opened(levels="process", pid=target, uss="every-tick", processes=processes)
                out.setdefault(processes, []).append({e: [r.fields, r.error] for e, r in by_entity(reader).items()})
                reader.close()
            os.write(wr, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(wr)
    with os.fdopen(rd, "rb") as f:
        data = f.read()
    os.waitpid(child, 0)
    return json.loads(data)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to read as another user")
def test_refused_reads_are_reported_as_psutil_reports_them(zoo):
    """io and USS of another user's process are refused (AccessDenied); the rest is read."""
    target = zoo["idle"].pid
    out = read_as_nobody(target)
    (before, after), (new,) = out["psutil"], out["procfs"]
    entity = f"pid:{target}"
    assert new[entity][1] == before[entity][1] == "io_counters: AccessDenied; memory_full_info: AccessDenied"
    for key, value in new[entity][0].items():
        assert between(value, before[entity][0][key], after[entity][0][key]), key
    assert new[entity][0]["io_counters.read_bytes"] is None and new[entity][0]["cpu_times.user"] is not None


# -- vanishing and churn --------------------------------------------------------------------------------

def test_processes_that_come_and_go_at_any_rate_are_never_an_error():
    churn = subprocess.Popen(["sh", "-c", "while true; do /bin/true; sleep 0.05 & sleep 0.004; done"],
                             start_new_session=True)
    reader = opened(levels="process,user", pid=churn.pid)
    collector = reader._collector
    fds_before = len(os.listdir("/proc/self/fd"))
    try:
        seen = set()
        for _ in range(150):
            records = by_entity(reader)
            seen |= records.keys()
            for rec in records.values():
                assert rec.fields["create_time"] is not None and rec.fields["ppid"] is not None
        assert len(seen) > 20, "short-lived processes were recorded"
        assert collector.open_files < 400, "descriptors of vanished processes are closed"
    finally:
        os.killpg(churn.pid, signal.SIGKILL)
        churn.wait()
        reader.close()
    assert collector.open_files == 0
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_a_member_that_dies_between_reads_is_a_vanished_entity(zoo):
    me = os.getpid()
    reader = opened(levels="process", pid=me)
    try:
        victim = zoo["idle"]
        assert f"pid:{victim.pid}" in by_entity(reader)
        victim.kill()
        victim.wait()
        records = by_entity(reader)
        assert f"pid:{victim.pid}" not in records
        assert reader.read()[-1].fields["tick.processes"] == len(records)
    finally:
        reader.close()


def test_kept_descriptors_or_none_give_the_same_readings(zoo):
    collectors = [ProcfsCollector("/proc"), ProcfsCollector("/proc", fd_budget=0)]
    try:
        idle = zoo["idle"].pid
        for _ in range(3):
            kept, opened_each_time = ({r.pid: r.fields for r in c.collect(os.getpid(), None, b"")[0]}
                                      for c in collectors)
            assert kept[idle] == opened_each_time[idle]
        assert collectors[0].open_files > 0 and collectors[1].open_files == 0
    finally:
        for c in collectors:
            c.close()
    assert collectors[0].open_files == 0


# -- fake procfs trees ---------------------------------------------------------------------------------

BTIME = 1700000000
PAGE = os.sysconf("SC_PAGE_SIZE")


def fake_process(root, pid, *, ppid=1, uid=0, state="S", comm="worker", cmdline=b"worker\0", threads=1,
                 starttime=5000, utime=150, rss=100, ctx=(7, 3), io=(10, 20, 4096, 8192, 300, 400),
                 runtime=123456, children=(), environ=b"HOME=/root\0", private_kb=(64, 32)):
    d = root / str(pid)
    (d / "task" / str(pid)).mkdir(parents=True, exist_ok=True)
    rest = ([state, ppid, pid, pid, 0, -1, 4194304, 100, 0, 0, 0, utime, 30, 5, 2, 20, 0, threads, 0, starttime,
             rss * 2 * PAGE, rss] + [0] * 17 + [9, 0, 0, 0])
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(map(str, rest)) + "\n")
    (d / "status").write_text(f"Name:\t{comm}\nState:\t{state}\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
                              f"Threads:\t{threads}\nvoluntary_ctxt_switches:\t{ctx[0]}\n"
                              f"nonvoluntary_ctxt_switches:\t{ctx[1]}\n")
    (d / "io").write_text("rchar: {4}\nwchar: {5}\nsyscr: {0}\nsyscw: {1}\nread_bytes: {2}\nwrite_bytes: {3}\n"
                          "cancelled_write_bytes: 0\n".format(*io))
    (d / "cmdline").write_bytes(cmdline)
    (d / "environ").write_bytes(environ)
    (d / "statm").write_text(f"{rss * 2} {rss} 0 0 0 0 0\n")
    (d / "schedstat").write_text(f"{runtime} 0 1\n")
    (d / "task" / str(pid) / "schedstat").write_text(f"{runtime} 0 1\n")
    (d / "task" / str(pid) / "children").write_text("".join(f"{c} " for c in children))
    (d / "smaps_rollup").write_text(f"Rss: 400 kB\nPrivate_Clean: {private_kb[0]} kB\n"
                                    f"Private_Dirty: {private_kb[1]} kB\n")
    return d


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "proc"
    root.mkdir()
    (root / "stat").write_text(f"cpu  1 2 3 4 5 6 7 8 9 10\nbtime {BTIME}\n")
    return root


def read_both(root, target=None, uid=None, needle=b"", redact=True):
    """The two collectors on the same fake tree (psutil told to read it), readings (with USS) by pid."""
    saved = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(root)
    out = []
    try:
        for collector in (PsutilCollector(psutil, str(root), redact=redact), ProcfsCollector(str(root), redact=redact)):
            readings = collector.collect(target, uid, needle)[0]
            for r in readings:
                value, problem = collector.uss(r)
                r.fields["memory_full_info.uss"] = value
                r.problems += [problem] if problem else []
            out.append({r.pid: r for r in readings})
            collector.close()
        return out
    finally:
        psutil.PROCFS_PATH = saved


@pytest.mark.parametrize("case", [
    dict(comm="a (b) c", cmdline=b"a (b) c\0"),
    dict(comm="abcdefghijklmno", cmdline=b"/opt/abcdefghijklmnopqrstuvwxyz\0--flag\0"),
    dict(comm="abcdefghijklmno", cmdline=b"/opt/other-name\0"),
    dict(cmdline=b"nginx: worker process   "),          # setproctitle: spaces, no NULs
    dict(cmdline=b"one arg with spaces\0"),
    dict(cmdline=b"a\rb\r\nc\0\xff\0"),
    dict(state="Z", cmdline=b""),
    dict(state="D"), dict(state="I"), dict(state="t"), dict(state="P"), dict(state="?"),
], ids=lambda c: repr(c)[:40])
def test_fake_tree_edge_cases_read_as_psutil_reads_them(fake_root, case):
    fake_process(fake_root, 100, children=(101,))
    fake_process(fake_root, 101, ppid=100, **case)
    ref, new = read_both(fake_root, target=100)
    assert ref.keys() == new.keys() == {100, 101}
    for pid in ref:
        assert new[pid].fields == ref[pid].fields, pid
        assert new[pid].error() == ref[pid].error()


SECRET_ARGV = b"python3\0app.py\0--password\0hunter2\0--data\0s3://me:pw@bucket/x\0HF_TOKEN=abc\0"


@pytest.mark.parametrize("redact", [True, False])
def test_both_collectors_redact_secrets_in_command_lines_alike(fake_root, redact):
    fake_process(fake_root, 100, cmdline=SECRET_ARGV)
    ref, new = read_both(fake_root, target=100, redact=redact)
    assert new[100].fields["cmdline"] == ref[100].fields["cmdline"]
    if redact:
        assert new[100].fields["cmdline"] == "python3 app.py --password *** --data s3://me:***@bucket/x HF_TOKEN=***"
    else:
        assert new[100].fields["cmdline"] == SECRET_ARGV.replace(b"\0", b" ").decode().strip()


@pytest.mark.parametrize("option,expected", [
    (None, "python3 app.py --password *** --data s3://me:***@bucket/x HF_TOKEN=***"),
    ("true", "python3 app.py --password *** --data s3://me:***@bucket/x HF_TOKEN=***"),
    ("unredacted", "python3 app.py --password hunter2 --data s3://me:pw@bucket/x HF_TOKEN=abc"),
    ("false", None),
])
@pytest.mark.parametrize("processes", ["procfs", "psutil"])
def test_the_cmdline_option_masks_keeps_or_drops_command_lines(fake_root, option, expected, processes):
    fake_process(fake_root, 100, cmdline=SECRET_ARGV)
    fake_process(fake_root, 101, state="Z", cmdline=b"")  # its cmdline call fails: ZombieProcess
    reader = PsutilReader(procfs_root=str(fake_root))
    options = {"levels": "user", "uid": 0, "uss": "false", "processes": processes,
               **({} if option is None else {"cmdline": option})}
    reader.open(ReaderConfig(options=options))
    try:
        records = {r.entity: r for r in reader.read()}
    finally:
        reader.close()
    assert records["pid:100"].fields.get("cmdline") == expected
    assert ("cmdline" in reader.caps.fields) == (expected is not None)
    assert reader.identity()["cmdline"] == {"false": "dropped", "unredacted": "unredacted"}.get(option, "redacted")
    if expected is None:
        assert "cmdline" not in records["pid:101"].fields and not records["pid:101"].error
    else:
        assert records["pid:101"].error == "cmdline: ZombieProcess"


def test_a_bad_cmdline_option_is_a_usage_error(fake_root):
    from telemrec.errors import UsageError

    with pytest.raises(UsageError, match="cmdline='masked' is not true, false or unredacted"):
        PsutilReader(procfs_root=str(fake_root)).open(ReaderConfig(options={"cmdline": "masked"}))


def test_fake_tree_stat_without_blkio_ticks_and_missing_io(fake_root):
    d = fake_process(fake_root, 100)
    text = (d / "stat").read_text().split()
    (d / "stat").write_text(" ".join(text[:40]) + "\n")  # an old kernel's stat: 38 fields after the name
    (d / "io").unlink()
    ref, new = read_both(fake_root, target=100)
    assert new[100].fields["cpu_times.iowait"] == ref[100].fields["cpu_times.iowait"] == 0.0
    assert new[100].fields == ref[100].fields and new[100].fields["io_counters.read_bytes"] is None
    assert new[100].error() == ref[100].error()
    assert new[100].error().startswith("io_counters: FileNotFoundError")


@pytest.mark.parametrize("compiled", COMPILED)
def test_status_io_and_cmdline_are_read_only_when_the_process_ran(fake_root, compiled):
    # its parent is no member: its stat is read every tick (the parent may have exited)
    d = fake_process(fake_root, 100, ctx=(7, 3), ppid=50)
    collector = ProcfsCollector(str(fake_root), compiled=compiled)
    try:
        first = collector.collect(100, None, b"")[0][0].fields
        (d / "status").write_text((d / "status").read_text().replace("\t7\n", "\t8\n"))
        second = collector.collect(100, None, b"")[0][0].fields
        assert second == first, "schedstat unchanged: the process has not run, status was not read again"
        (d / "task" / "100" / "schedstat").write_text("123999 0 2\n")
        third = collector.collect(100, None, b"")[0][0].fields
        assert third["num_ctx_switches.voluntary"] == 8
        (d / "stat").write_text((d / "stat").read_text().replace(" S 50 ", " R 50 "))
        (d / "status").write_text((d / "status").read_text().replace("\t8\n", "\t9\n"))
        assert collector.collect(100, None, b"")[0][0].fields["num_ctx_switches.voluntary"] == 9, "R: always read"
    finally:
        collector.close()


@pytest.mark.parametrize("compiled", COMPILED)
def test_an_idle_process_whose_parent_is_idle_or_init_is_read_from_statm_and_schedstat(fake_root, compiled):
    """stat changes only while the process runs, but for its parent, which an exit changes."""
    parent = fake_process(fake_root, 100, children=(101,))
    child = fake_process(fake_root, 101, ppid=100, rss=100)
    collector = ProcfsCollector(str(fake_root), compiled=compiled)

    def fields():
        return {r.pid: r.fields for r in collector.collect(None, 0, b"")[0]}

    def rewrite(d, old, new):
        (d / "stat").write_text((d / "stat").read_text().replace(old, new))

    try:
        first = fields()
        assert first[101]["ppid"] == 100
        for d in (parent, child):  # what no idle process's stat does: a lie that shows what is read
            rewrite(d, " 150 30 ", " 151 30 ")
        assert fields() == first, "neither ran, their parents are idle or init: stat not read again"
        (child / "statm").write_text("200 120 0 0 0 0 0\n")  # pages reclaimed while it sleeps
        assert fields()[101]["memory_info.rss"] == 120 * PAGE
        (parent / "task" / "100" / "schedstat").write_text("999999 0 2\n")  # the parent ran ...
        rewrite(parent, " S 1 ", " Z 1 ")  # ... and exited, re-parenting its child
        rewrite(child, " S 100 ", " S 1 ")
        now = fields()
        assert now[100]["status"] == "zombie"
        assert now[101]["ppid"] == 1 and now[101]["cpu_times.user"] == 151 / os.sysconf("SC_CLK_TCK")
    finally:
        collector.close()


def test_fake_tree_user_level_new_vanished_reused_and_kernel_threads(fake_root):
    fake_process(fake_root, 2, ppid=0, comm="kthreadd", cmdline=b"")
    fake_process(fake_root, 3, ppid=2, comm="kworker/0:1", cmdline=b"")
    fake_process(fake_root, 10, uid=1000)
    fake_process(fake_root, 11, uid=1001)
    collector = ProcfsCollector(str(fake_root), fd_budget=0)  # regular files cannot say ESRCH
    try:
        def members():
            readings, found = collector.collect(None, 1000, b"")
            return {r.pid: r for r in readings}

        assert members().keys() == {10}
        fake_process(fake_root, 12, uid=1000)
        assert members().keys() == {10, 12}
        shutil.rmtree(fake_root / "12")
        assert members().keys() == {10}
        os.rename(fake_root / "10", fake_root / "old-10")  # pid 10 reused by a newer process
        fake_process(fake_root, 10, uid=1000, starttime=9000, utime=1)
        reading = members()[10]
        assert reading.fields["create_time"] == 9000 / os.sysconf("SC_CLK_TCK") + BTIME
        assert reading.fields["cpu_times.user"] == 1 / os.sysconf("SC_CLK_TCK")
        ref, new = read_both(fake_root, uid=0)
        assert ref.keys() == new.keys() == set(), "kernel threads are nobody's workload"
    finally:
        collector.close()


@pytest.mark.skipif(os.getuid() != 0, reason="changing a directory's owner needs root")
def test_a_process_that_becomes_the_user_joins_the_user_level(fake_root):
    d = fake_process(fake_root, 20, uid=0)
    collector = ProcfsCollector(str(fake_root), fd_budget=0)
    try:
        assert collector.collect(None, 1000, b"")[0] == []
        (d / "status").write_text((d / "status").read_text().replace("Uid:\t0\t0\t0\t0", "Uid:\t1000\t1000\t1000\t1000"))
        assert collector.collect(None, 1000, b"")[0] == [], "the owner did not change: not looked at again"
        os.chown(d, 1000, 1000)  # what setuid() does to /proc/<pid>
        assert [r.pid for r in collector.collect(None, 1000, b"")[0]] == [20]
    finally:
        collector.close()


def test_slurm_environment_is_read_once_per_process(fake_root):
    needle = b"\0SLURM_JOB_ID=42\0"
    d = fake_process(fake_root, 30, environ=b"SLURM_JOB_ID=42\0")
    fake_process(fake_root, 31, environ=b"SLURM_JOB_ID=421\0")
    collector = ProcfsCollector(str(fake_root))
    try:
        assert [(r.pid, r.levels) for r in collector.collect(None, None, needle)[0]] == [(30, ["slurm"])]
        (d / "environ").write_bytes(b"")
        assert [r.pid for r in collector.collect(None, None, needle)[0]] == [30]
    finally:
        collector.close()


def test_fake_tree_process_level_follows_parents_named_in_stat(fake_root):
    fake_process(fake_root, 100, children=(101, 102), runtime=1)
    fake_process(fake_root, 101, ppid=100, children=(103,))
    fake_process(fake_root, 102, ppid=100)
    fake_process(fake_root, 103, ppid=101)
    collector = ProcfsCollector(str(fake_root), fd_budget=0)
    try:
        assert {r.pid for r in collector.collect(100, None, b"")[0]} == {100, 101, 102, 103}
        # 101 exits; its child 103 is re-parented to init, outside the tree
        shutil.rmtree(fake_root / "101")
        fake_process(fake_root, 103, ppid=1)
        (fake_root / "100" / "task" / "100" / "children").write_text("102 ")
        assert {r.pid for r in collector.collect(100, None, b"")[0]} == {100, 102}
        # a child whose pid was taken by an unrelated process is not a member
        fake_process(fake_root, 102, ppid=7, starttime=9999)
        assert {r.pid for r in collector.collect(100, None, b"")[0]} == {100}
    finally:
        collector.close()


def test_a_broken_stat_is_an_error_on_the_record_not_a_crash(fake_root):
    d = fake_process(fake_root, 100)
    (d / "stat").write_text("100 (worker) S\n")
    collector = ProcfsCollector(str(fake_root))
    readings, found = collector.collect(100, None, b"")
    collector.close()
    assert found == 1 and readings[0].problems == ["stat: IndexError: list index out of range"]
    assert readings[0].fields["cpu_times.user"] is None
    (d / "stat").unlink()
    (d / "stat").mkdir()  # an I/O error of any kind
    collector = ProcfsCollector(str(fake_root))
    readings, found = collector.collect(100, None, b"")
    collector.close()
    assert readings[0].problems[0].startswith("stat: IsADirectoryError")


def test_no_new_pid_no_new_process(fake_root):
    """Where the root is the reader's own procfs, the pid namespace's last pid tells whether any
    process can have appeared: if not, neither the directory nor the children files are read again."""
    os.symlink(str(os.getpid()), fake_root / "self")
    last_pid = fake_root / "sys" / "kernel" / "ns_last_pid"
    last_pid.parent.mkdir(parents=True)
    last_pid.write_text("500\n")
    fake_process(fake_root, 100, uid=1000, children=(101,))
    fake_process(fake_root, 101, ppid=100, uid=1000)
    collector = ProcfsCollector(str(fake_root), fd_budget=0)
    try:
        def members(target=None):
            return sorted(r.pid for r in collector.collect(target, 1000, b"")[0])

        assert members(100) == [100, 101]
        fake_process(fake_root, 102, ppid=100, uid=1000)
        (fake_root / "100" / "task" / "100" / "children").write_text("101 102 ")
        (fake_root / "100" / "task" / "100" / "schedstat").write_text("999 0 9\n")  # 100 ran
        assert members(100) == [100, 101], "no pid handed out: 102 cannot exist (a fake tree can lie)"
        shutil.rmtree(fake_root / "101")
        assert members(100) == [100], "an exited member leaves without a scan"
        last_pid.write_text("502\n")
        (fake_root / "100" / "task" / "100" / "schedstat").write_text("1999 0 10\n")
        assert members(100) == [100, 102]
    finally:
        collector.close()


@pytest.mark.parametrize("compiled", COMPILED)
def test_without_new_pids_the_last_members_stand_until_one_changes(fake_root, compiled):
    """No pid handed out since the last tick: the last members and levels are read again, until
    one exits, changes its real uid, or another process changes its owner; then the walk and the
    scan decide, as they would have."""
    os.symlink(str(os.getpid()), fake_root / "self")
    last_pid = fake_root / "sys" / "kernel" / "ns_last_pid"
    last_pid.parent.mkdir(parents=True)
    last_pid.write_text("500\n")
    fake_process(fake_root, 100, uid=1000, children=(101,))
    fake_process(fake_root, 101, ppid=100, uid=1000, children=(102,))
    fake_process(fake_root, 102, ppid=101, uid=1000)
    other = fake_process(fake_root, 200, uid=0)
    collector = ProcfsCollector(str(fake_root), fd_budget=0, compiled=compiled)  # regular files cannot say ESRCH
    try:
        def members():
            return {r.pid: r.levels for r in collector.collect(100, 1000, b"")[0]}

        tree = {100: ["process", "user"], 101: ["process", "user"], 102: ["process", "user"]}
        assert members() == tree
        assert members() == tree
        d = fake_root / "101"  # 101 runs and gives up the user's uid (setresuid keeps the owner here)
        (d / "status").write_text((d / "status").read_text().replace("Uid:\t1000\t1000\t1000\t1000",
                                                                     "Uid:\t1001\t1001\t1001\t1001"))
        (d / "task" / "101" / "schedstat").write_text("999 0 9\n")
        assert members() == {**tree, 101: ["process"]}
        assert members() == {**tree, 101: ["process"]}
        shutil.rmtree(fake_root / "102")
        assert members() == {100: ["process", "user"], 101: ["process"]}
        if os.getuid() == 0:
            os.chown(other, 1000, 1000)  # 200 becomes the user
            (other / "status").write_text((other / "status").read_text().replace("Uid:\t0\t0\t0\t0",
                                                                                 "Uid:\t1000\t1000\t1000\t1000"))
            assert members() == {100: ["process", "user"], 101: ["process"], 200: ["user"]}
    finally:
        collector.close()
