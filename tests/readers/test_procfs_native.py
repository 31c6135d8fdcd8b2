"""The procfs collector's hot path, compiled (_cprocfs) and in Python (_procfs_native): the
same answers and the same records on live processes and on fake procfs trees."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from telemrec.readers import _procfs_native
from telemrec.readers._procfs_collector import ProcfsCollector
from telemrec.readers._processes import ProcessReading
from telemrec.record import RawRecord

from test_procfs_collector import IDLE, fake_process, fake_root  # noqa: F401 (fixture)


def test_the_compiled_hot_path_is_built_and_used_by_default():
    from telemrec.readers import _cprocfs  # noqa: F401 (the editable install and the wheel build it)

    collector = ProcfsCollector("/proc")
    try:
        assert collector.compiled
    finally:
        collector.close()
    assert not ProcfsCollector("/proc", compiled=False).compiled


@pytest.fixture
def sleepers():
    procs = [subprocess.Popen([sys.executable, "-c", IDLE]) for _ in range(4)]
    procs += [subprocess.Popen(["sleep", "120"]) for _ in range(4)]
    time.sleep(0.5)
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def test_poll_gives_the_same_answers_compiled_and_in_python_on_live_processes(sleepers):
    collector = ProcfsCollector("/proc")
    c, py = _procfs_native.native(True), _procfs_native.native(False)
    try:
        for _ in range(2):
            collector.collect(os.getpid(), None, b"")
        states = [st for st in collector._states.values() if st.quick is not None]
        idle = {p.pid for p in sleepers}
        assert idle <= {st.pid for st in states}, "idle children are polled"
        mine = [st for st in states if st.pid in idle]
        first, second = c.poll(mine), py.poll(mine)
        assert first == second and all(f is not None for f in first)
        assert all(f is st.fields for f, st in zip(first, mine))
        sleepers[0].kill()
        sleepers[0].wait()
        first, second = c.poll(mine), py.poll(mine)
        assert first == second and first[0] is None and all(f is not None for f in first[1:])
    finally:
        collector.close()


def test_compiled_and_python_collectors_read_live_processes_alike(sleepers):
    collectors = [ProcfsCollector("/proc", compiled=True), ProcfsCollector("/proc", compiled=False)]
    idle = {p.pid for p in sleepers}
    try:
        for _ in range(3):
            c, py = ({r.pid: (r.fields, r.problems, r.levels) for r in col.collect(os.getpid(), 0, b"")[0]
                      if r.pid in idle} for col in collectors)
            assert c.keys() == py.keys() == idle
            assert c == py
            for pid in idle:
                assert list(c[pid][0]) == list(py[pid][0]), "the same keys in the same order"
            time.sleep(0.02)
    finally:
        for col in collectors:
            col.close()


@pytest.mark.parametrize("budget", [None, 0])
def test_compiled_and_python_collectors_read_a_fake_tree_alike(fake_root, budget):  # noqa: F811
    fake_process(fake_root, 100, children=(101, 102))
    fake_process(fake_root, 101, ppid=100, threads=2)
    fake_process(fake_root, 102, ppid=100, state="Z", cmdline=b"")
    (fake_root / "101" / "task" / "1011").mkdir()
    (fake_root / "101" / "task" / "1011" / "schedstat").write_text("5 0 1\n")
    collectors = [ProcfsCollector(str(fake_root), budget, compiled=flag) for flag in (True, False)]

    def both():
        out = [{r.pid: (r.fields, r.error()) for r in col.collect(100, 0, b"")[0]} for col in collectors]
        assert out[0] == out[1]
        return out[0]

    try:
        first = both()
        assert first.keys() == {100, 101, 102} and first[102][1] == "cmdline: ZombieProcess"
        (fake_root / "101" / "statm").write_text("10 5 0 0 0 0 0\n")
        assert both()[101][0]["memory_info.rss"] == 5 * os.sysconf("SC_PAGE_SIZE")
        (fake_root / "101" / "task" / "1011" / "schedstat").write_text("6 0 2\n")  # its second thread ran
        (fake_root / "101" / "status").write_text((fake_root / "101" / "status").read_text().replace("\t7\n", "\t8\n"))
        assert both()[101][0]["num_ctx_switches.voluntary"] == 8
        if budget == 0:  # a kept descriptor of a regular file cannot say ESRCH
            shutil.rmtree(fake_root / "102")
            assert both().keys() == {100, 101}
    finally:
        for col in collectors:
            col.close()


def test_records_are_built_alike_compiled_and_in_python():
    def readings():
        return [ProcessReading(7, {"a": 1, "b": None, "name": "x"}, [], ["process", "user"]),
                ProcessReading(9, {"a": 2, "b": 3.5, "name": "y"}, ["uids: AccessDenied", "cpu_times: Boom"],
                               ["user"])]

    out = {}
    for flag in (True, False):
        records: list = [RawRecord(1, 2, "system", {}, "psutil")]
        _procfs_native.native(flag).records(RawRecord, readings(), 10, 20, "psutil", "7.0", records)
        out[flag] = records
    assert out[True] == out[False]
    rec = out[True][2]
    assert rec == RawRecord(10, 20, "pid:9", {"a": 2, "b": 3.5, "name": "y", "levels": "user"}, "psutil", "7.0",
                            "cpu_times: Boom; uids: AccessDenied")
    assert [list(r.fields) for r in out[True]] == [list(r.fields) for r in out[False]]
    with pytest.raises(AttributeError):  # still a frozen record
        rec.entity = "pid:1"


@pytest.mark.parametrize("compiled", [True, False])
def test_records_of_a_process_that_has_not_run_share_one_dict_until_it_changes(compiled):
    """A member that does not run gives the same fields tick after tick: its records share the
    dict made for the first (no copy a member a tick); new levels or new kept fields (it ran) make
    another; nothing changes a dict a record holds."""
    from telemrec.readers._procfs_process import Proc

    st, kept = Proc(7, "/proc/7/", None), {"a": 1, "name": "x"}

    def tick(levels=("process",), fields=kept) -> RawRecord:
        out: list = []
        reading = ProcessReading(7, fields, [], list(levels), st)
        _procfs_native.native(compiled).records(RawRecord, [reading], 1, 2, "psutil", "7.0", out)
        return out[0]

    first, second = tick(), tick()
    assert second.fields is first.fields == {"a": 1, "name": "x", "levels": "process"}
    assert kept == {"a": 1, "name": "x"}  # what the collector keeps is not changed
    other = tick(("process", "user"))
    assert other.fields is not first.fields and other.fields["levels"] == "process user"
    assert first.fields["levels"] == "process"
    ran = tick(("process", "user"), {"a": 2, "name": "x"})
    assert ran.fields == {"a": 2, "name": "x", "levels": "process user"} and ran.fields is not other.fields
    assert tick(("process", "user"), st.record[0]).fields is ran.fields
    # a reading whose fields are changed (USS read, cmdline dropped) takes its own copy first
    reading = ProcessReading(7, kept, [], ["process"], st)
    reading.own_fields()["memory_full_info.uss"] = 4096
    assert kept == {"a": 1, "name": "x"} and reading.proc is None
    out: list = []
    _procfs_native.native(compiled).records(RawRecord, [reading], 1, 2, "psutil", "7.0", out)
    assert out[0].fields == {"a": 1, "name": "x", "memory_full_info.uss": 4096, "levels": "process"}
    assert first.fields == {"a": 1, "name": "x", "levels": "process"}


def test_the_steady_path_builds_readings_alike_compiled_and_in_python():
    from telemrec.readers._procfs_process import Proc

    def run(flag):
        states = {pid: Proc(pid, f"/proc/{pid}/", None) for pid in (7, 8, 9)}
        states[9].problems = ["create_time: ValueError: x"]
        cached = {7: {"a": 1, "name": "x"}, 9: {"a": 2.5, "name": "z"}}
        memo: dict = {}
        last = [(7, ("process", "user")), (8, ("process",)), (9, ("user",)), (11, ("user",))]
        readings, todo = _procfs_native.native(flag).steady(last, cached, states, memo, 5, ProcessReading)
        # the kept fields themselves, not a copy: who changes them takes a copy
        assert readings[0].fields is cached[7] and readings[0].proc is states[7]
        readings[0].own_fields()["levels"] = "mutated"
        assert readings[0].proc is None and readings[0].fields is not cached[7]
        return readings, todo, memo, cached, {pid: st.tick for pid, st in states.items()}

    compiled, python = run(True), run(False)
    assert compiled == python
    readings, todo, memo, cached, ticks = compiled
    assert todo == [1, 3] and readings[1] is None and readings[3] is None  # 8 ran, 11 is not known
    assert readings[2] == ProcessReading(9, {"a": 2.5, "name": "z"}, ["create_time: ValueError: x"], ["user"])
    assert memo == {7: readings[0], 9: readings[2]} and cached[7] == {"a": 1, "name": "x"}
    assert ticks == {7: 5, 8: 0, 9: 5}
    with pytest.raises(TypeError):
        _procfs_native.native(True).steady([7], {}, {}, {}, 1, ProcessReading)


def _set(d, name, old, new):
    (d / name).write_text((d / name).read_text().replace(old, new))


# what a process that ran may have changed; each applied to the fake tree after a first tick, then
# read by the compiled refresh (or its fall back to the Python path) and by the Python path alone
RAN = {
    "cpu, io and switches": lambda d: (_set(d, "stat", " 150 30 ", " 160 31 "),
                                       _set(d, "io", "rchar: 300", "rchar: 999"), _set(d, "status", "\t7\n", "\t9\n")),
    "only its run time": lambda d: None,
    "running now": lambda d: _set(d, "stat", " S 1 ", " R 1 "),
    "a new command line": lambda d: (d / "cmdline").write_bytes(b"worker\0--renamed\0"),
    "a new name": lambda d: _set(d, "stat", "(worker)", "(renamed)"),
    "a second thread": lambda d: _set(d, "stat", " 20 0 1 0 ", " 20 0 2 0 "),
    "a uid and memory": lambda d: (_set(d, "status", "Uid:\t0\t0", "Uid:\t7\t0"), (d / "statm").write_text("9 8 0\n")),
    "an io file it refuses": lambda d: (d / "io").write_text(""),
    "no switches line": lambda d: _set(d, "status", "nonvoluntary_ctxt_switches:\t3\n", ""),
}
IN_C = {"cpu, io and switches", "only its run time", "running now", "a uid and memory"}  # the rest fall back


@pytest.mark.parametrize("change", list(RAN))
def test_a_process_that_ran_is_read_alike_compiled_and_in_python(fake_root, change):  # noqa: F811
    fake_process(fake_root, 100, ppid=1)
    collectors = [ProcfsCollector(str(fake_root), compiled=flag) for flag in (True, False)]
    try:
        for col in collectors:
            col.collect(100, None, b"")
        RAN[change](fake_root / "100")
        (fake_root / "100" / "task" / "100" / "schedstat").write_text("999999 0 2\n")
        from telemrec.readers import _cprocfs
        from telemrec.readers._procfs_process import _CONSTS

        st = collectors[0]._states[100]
        assert st.full is not None
        handled = _cprocfs.refresh(st, _CONSTS)
        assert (handled is not None) == (change in IN_C)
        assert handled is None or st.ran
        c, py = ({r.pid: (r.fields, r.error()) for r in col.collect(100, None, b"")[0]} for col in collectors)
        assert c == py and list(c[100][0]) == list(py[100][0])
        again = [{r.pid: (r.fields, r.error()) for r in col.collect(100, None, b"")[0]} for col in collectors]
        assert again[0] == again[1] == c, "the next tick: nothing ran, the same"
    finally:
        for col in collectors:
            col.close()
