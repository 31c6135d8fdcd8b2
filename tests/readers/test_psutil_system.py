"""The psutil reader's system level read by the compiled path (_csystem) and by the Python
path (psutil's own calls): the same records on fake procfs roots of every layout psutil
handles, the Python path taking every case psutil has a path of its own for, and on the live
/proc what psutil's calls give around the compiled read."""

from __future__ import annotations

import os
import re
import types

import psutil
import pytest

from telemrec.readers._psutil_system import NET_IO, SystemLevel
from telemrec.readers.psutil_ import DISK_EXCLUDE

from test_psutil import FAKE_PROC

EXCLUDE = re.compile(DISK_EXCLUDE)
DISKSTATS = (
    "   8       0 sda 100 5 2000 30 50 6 4000 40 0 70 70\n"                                # 2.6: 14 fields
    "   8       1 sda1 12 2400 7 560\n"                                                    # 2.6 partition: 7
    " 259       0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n"                           # 4.18+: 18
    " 259       1 nvme0n1p1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n"                   # 5.5+: 20
    "   3     0   8 hda 8 9 10 11 12 13 14 15 16 17 18\n"                                  # 2.4: 15
    "   7       0 loop0 9 0 90 0 0 0 0 0 0 0 0\n"                                          # left out
    "   8      16 sdb 18446744073709551615 0 36028797018963967 0 0 0 0 0 0 0 0\n")         # at 64 bits
NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo"
    " colls carrier compressed\n"
    "    lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
    "enp0s31f6-long.name_1:18446744073709551615 0 0 0 0 0 0 0 7 0 0 0 0 0 0 0\n"   # no space after the colon
    "  br-1a2b:c: 5 5 5 5 5 5 5 5 6 6 6 6 6 6 6 6\n"                               # the last colon ends the name
    "   :x: 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\n"
    "      : 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2 2\n")                                     # a name of spaces: ""


def records_of(root, compiled: bool, per_cpu: bool = True, ps=psutil):
    level = SystemLevel(ps, str(root), per_cpu, EXCLUDE, "psutil", "7.2.2", compiled=compiled)
    try:
        out = []
        level.read(out, 11, 22)
        return [(r.entity, [(k, type(v), v) for k, v in r.fields.items()], r.error, r.mono_ns, r.wall_ns,
                 r.source, r.source_version) for r in out], level.compiled_ticks
    finally:
        level.close()


def both(root, per_cpu: bool = True):
    """Both paths' records; read again where the load average moved in between (every 5 s)."""
    for _ in range(3):
        (ours, ticks), (theirs, _) = records_of(root, True, per_cpu), records_of(root, False, per_cpu)
        if ours == theirs:
            break
    return ours, theirs, ticks


@pytest.fixture
def root(tmp_path):
    for name, text in {**FAKE_PROC, "diskstats": DISKSTATS, "net/dev": NET_DEV}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_compiled_path_is_built_and_used_for_psutil_itself_only(root):
    assert SystemLevel(psutil, "/proc", True, None, "psutil", "", compiled=None).compiled
    assert not SystemLevel(psutil, "/proc", True, None, "psutil", "", compiled=False).compiled
    substitute = types.ModuleType("substitute")
    substitute.__dict__.update({k: v for k, v in vars(psutil).items() if not k.startswith("__")})
    substitute.net_io_counters = lambda **kwargs: {}
    assert not SystemLevel(substitute, "/proc", True, None, "psutil", "", compiled=None).compiled


@pytest.mark.parametrize("per_cpu", [True, False])
def test_every_diskstats_layout_and_odd_nic_names_read_alike(root, per_cpu):
    ours, theirs, ticks = both(root, per_cpu)
    assert ticks == 1, "the compiled path read it"
    assert ours == theirs
    entities = [r[0] for r in ours]
    assert entities == ["system", *(["cpu0", "cpu1", "cpu2"] if per_cpu else []), "disk:sda", "disk:sda1",
                        "disk:nvme0n1", "disk:nvme0n1p1", "disk:hda", "disk:sdb", "net:lo",
                        "net:enp0s31f6-long.name_1", "net:br-1a2b:c", "net::x", "net:"]
    sdb = dict((k, v) for k, _, v in ours[entities.index("disk:sdb")][1])
    assert sdb["disk_io_counters.read_count"] == 2**64 - 1 and sdb["disk_io_counters.read_bytes"] == (2**55 - 1) * 512


CHANGES = {
    "repeated disk": ("diskstats", lambda t: t + "   8       0 sda 1 1 1 1 1 1 1 1 1 1 1\n"),
    "16-field disk line": ("diskstats", lambda t: t + "   8  32 sdc 1 2 3 4 5 6 7 8 9 10 11 12 13\n"),
    "empty diskstats line": ("diskstats", lambda t: t + "\n"),
    "non-ASCII disk name": ("diskstats", lambda t: t + "   8  48 d\u00efsk 1 2 3 4 5 6 7 8 9 10 11\n"),
    "negative disk count": ("diskstats", lambda t: t + "   8  48 sdd -1 2 3 4 5 6 7 8 9 10 11\n"),
    "sectors past 64 bits": ("diskstats", lambda t: t + "   8  48 sde 1 2 36028797018963968 4 5 6 7 8 9 10 11\n"),
    "no diskstats": ("diskstats", None),
    "17 NIC fields": ("net/dev", lambda t: t + "  x0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n"),
    "NIC line without colon": ("net/dev", lambda t: t + "  x0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"),
    "carriage return": ("net/dev", lambda t: t.replace("    lo:", "\r    lo:")),
    "NIC count past 64 bits": ("net/dev", lambda t: t + "  x0: 18446744073709551616 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"),
    "no net/dev": ("net/dev", None),
    "no btime": ("stat", lambda t: t.replace("btime 1700000000\n", "")),
    "fractional btime": ("stat", lambda t: t.replace("btime 1700000000", "btime 17.5")),
    "no intr or ctxt": ("stat", lambda t: t.replace("intr 12345 0 0\n", "").replace("ctxt 67890\n", "")),
    "short cpu line": ("stat", lambda t: t.replace("cpu1 100 1 50 1000 5 0 2 0 0 0", "cpu1 100 1")),
    "no stat": ("stat", None),
    "no MemAvailable": ("meminfo", lambda t: re.sub("MemAvailable:.*\n", "", t)),
    "available above total": ("meminfo", lambda t: t.replace("1536000", "4096000")),
    "free above total": ("meminfo", lambda t: t.replace("1536000", "4096000").replace("1024000", "3000000")),
    "no Slab, SReclaimable": ("meminfo", lambda t: re.sub("(Slab|SReclaimable):.*\n", "", t)),
    "line with one column": ("meminfo", lambda t: t + "Odd:\n"),
    "no meminfo": ("meminfo", None),
    "no pswpout": ("vmstat", lambda t: "nr_free_pages 5\npswpin 10\n"),
    "pswp lines out of order": ("vmstat", lambda t: "pswpout 20\npgfault 3\npswpin 10\npswpinx 99\n"),
    "two spaces": ("vmstat", lambda t: "pswpin  10\npswpout 20\n"),
    "no vmstat": ("vmstat", None),
}
PLAIN = {"repeated disk", "no intr or ctxt", "available above total", "no Slab, SReclaimable",
         "pswp lines out of order"}  # the compiled path reads these; every other case goes to psutil


@pytest.mark.parametrize("case", list(CHANGES))
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # psutil warns of no pswpin/pswpout and gives 0
def test_what_psutil_has_a_path_of_its_own_for_reads_alike(root, case):
    name, change = CHANGES[case]
    path = root / name
    if change is None:
        path.unlink()
    else:
        path.write_text(change(path.read_text()), newline="")
    ours, theirs, ticks = both(root)
    assert ticks == (1 if case in PLAIN else 0)
    assert ours == theirs


def test_on_the_live_proc_it_reads_what_psutil_reads_around_it():
    level = SystemLevel(psutil, "/proc", True, EXCLUDE, "psutil", psutil.__version__)
    assert level.compiled

    def psutil_now():
        return (psutil.cpu_times(), psutil.cpu_times(percpu=True), psutil.cpu_stats(), psutil.virtual_memory(),
                psutil.swap_memory(), psutil.disk_io_counters(perdisk=True, nowrap=False),
                psutil.net_io_counters(pernic=True, nowrap=False), os.getloadavg())

    before, out, after = psutil_now(), [], None
    level.read(out, 1, 2)
    after = psutil_now()
    level.close()
    assert level.compiled_ticks == 1
    records = {r.entity: r for r in out}
    system = records["system"].fields
    assert records["system"].error is None and out[0].entity == "system"

    def between(prefix, old, new, fields):
        for attr in old._fields:
            key = f"{prefix}.{attr}"
            if key in fields:
                assert type(fields[key]) is type(getattr(old, attr)), key
                assert getattr(old, attr) <= fields[key] <= getattr(new, attr), key

    between("cpu_times", before[0], after[0], system)
    for i, (old, new) in enumerate(zip(before[1], after[1])):
        between("cpu_times", old, new, records[f"cpu{i}"].fields)
    assert len([e for e in records if re.fullmatch(r"cpu\d+", e)]) == len(before[1])
    between("cpu_stats", before[2], after[2], {k: v for k, v in system.items() if k != "cpu_stats.syscalls"})
    assert system["cpu_stats.syscalls"] == 0
    for prefix, old, new in (("virtual_memory", before[3], after[3]), ("swap_memory", before[4], after[4])):
        total = old.total
        assert system[f"{prefix}.total"] == total
        for attr in ("used", "free") + (("available", "cached") if prefix == "virtual_memory" else ("sin", "sout")):
            value = system[f"{prefix}.{attr}"]
            assert type(value) is int and 0 <= value
            if attr not in ("sin", "sout", "cached"):
                assert value <= total
            assert min(getattr(old, attr), getattr(new, attr)) - total // 20 <= value \
                <= max(getattr(old, attr), getattr(new, attr)) + total // 20, (prefix, attr)
    assert system["swap_memory.sin"] >= before[4].sin and system["swap_memory.sout"] <= after[4].sout
    load = (system["getloadavg.1m"], system["getloadavg.5m"], system["getloadavg.15m"])
    assert load in (before[7], after[7])
    assert system["cpu_count.logical"] == psutil.cpu_count(logical=True)
    assert system["cpu_count.affinity"] == len(os.sched_getaffinity(0))
    assert system["boot_time"] == psutil.boot_time() and type(system["boot_time"]) is float
    disks = [d for d in before[5] if not EXCLUDE.search(d)]
    assert [e for e in records if e.startswith("disk:")] == [f"disk:{d}" for d in disks]
    for d in disks:
        between("disk_io_counters", before[5][d], after[5][d], records[f"disk:{d}"].fields)
    assert [e for e in records if e.startswith("net:")] == [f"net:{n}" for n in before[6]]
    for nic in before[6]:
        between("net_io_counters", before[6][nic], after[6][nic], records[f"net:{nic}"].fields)
        assert list(records[f"net:{nic}"].fields) == [f"net_io_counters.{a}" for a in NET_IO]
