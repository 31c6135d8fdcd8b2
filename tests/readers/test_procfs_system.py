"""<root>/stat read once a tick gives what psutil's four reads of it give."""

from __future__ import annotations

import psutil
import pytest

from telemrec.readers._procfs_system import Memory, ProcStat


def psutil_at(root: str):
    saved = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = root
    try:
        out = []
        for call in (psutil.cpu_times, lambda: psutil.cpu_times(percpu=True), psutil.cpu_stats, psutil.boot_time):
            try:
                out.append(call())
            except Exception as exc:
                out.append(f"{type(exc).__name__}: {exc}")
        return out
    finally:
        psutil.PROCFS_PATH = saved


def ours_at(root: str):
    stat = ProcStat(root, type(psutil.cpu_times()))
    stat.load()
    out = []
    for call in (stat.cpu_times, stat.per_cpu_times, stat.cpu_stats, stat.boot_time):
        try:
            out.append(call())
        except Exception as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    return out


@pytest.mark.parametrize("text", [
    "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpu1 3 2 1 4 5 6 7 8 9 10\nintr 12345 1 2\n"
    "ctxt 67890\nbtime 1700000000\nprocesses 9\nsoftirq 4242 0 0\n",
    "cpu  1 2 3 4 5 6 7 8 9 10\nctxt 5\n",                        # no btime, intr or softirq
    "cpu  1 2 3 4 5 6 7 8 9 10 11 12\ncpu0 1 2 3 4 5 6 7 8 9 10 11 12\nbtime 17.5\n",  # a newer kernel's columns
    None,                                                          # no stat at all
], ids=["full", "partial", "more columns", "missing"])
def test_one_read_gives_what_psutil_gives(tmp_path, text):
    if text is not None:
        (tmp_path / "stat").write_text(text)
    ours, theirs = ours_at(str(tmp_path)), psutil_at(str(tmp_path))
    assert [tuple(x) if hasattr(x, "_fields") else x for x in ours] == \
           [tuple(x) if hasattr(x, "_fields") else x for x in theirs]
    assert [type(x) for x in ours[0:2]] == [type(x) for x in theirs[0:2]]


def test_the_live_stat_reads_as_psutil_reads_it():
    theirs = psutil_at("/proc")
    ours = ours_at("/proc")
    assert ours[3] == theirs[3] and len(ours[1]) == len(theirs[1])
    assert [a <= b for a, b in zip(theirs[0], ours[0])] == [True] * len(ours[0])  # counters read a moment later
    assert ours[2].ctx_switches >= theirs[2].ctx_switches and ours[2].syscalls == 0


MEMINFO = ("MemTotal:        2048000 kB\nMemFree:         1024000 kB\nMemAvailable:    1536000 kB\n"
           "Buffers:           10000 kB\nCached:           200000 kB\nSwapCached:            0 kB\n"
           "Active:           300000 kB\nInactive:         200000 kB\nShmem:              5000 kB\n"
           "Slab:              40000 kB\nSReclaimable:      20000 kB\nSwapTotal:        512000 kB\n"
           "SwapFree:         256000 kB\n")


def memory_both(root: str):
    saved = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = root  # as the reader sets it for the tick: the unusual cases are psutil's
    try:
        out = []
        for source in ("psutil", "ours"):
            memory = Memory(root, psutil)
            memory.load()
            calls = ((psutil.virtual_memory, psutil.swap_memory) if source == "psutil"
                     else (memory.virtual_memory, memory.swap_memory))
            got = []
            for call in calls:
                try:
                    got.append(tuple(call()))
                except Exception as exc:
                    got.append(f"{type(exc).__name__}: {exc}")
            out.append(got)
        return out
    finally:
        psutil.PROCFS_PATH = saved


@pytest.mark.parametrize("meminfo,vmstat", [
    (MEMINFO, "nr_free_pages 5\npswpin 10\npswpout 20\n"),
    (MEMINFO.replace("1536000", "4096000"), "pswpout 20\npswpin 10\n"),  # available above total: free
    (MEMINFO.replace("MemAvailable:    1536000 kB\n", ""), "pswpin 1\npswpout 2\n"),  # an old kernel: psutil's estimate
    (MEMINFO.replace("Shmem:", "MemShared:"), "pswpin 1\npswpout 2\n"),
    (MEMINFO, "nr_free_pages 5\n"),                                      # no swap counters: psutil warns, 0
    (MEMINFO, None),
    (None, "pswpin 1\npswpout 2\n"),
], ids=["usual", "available above total", "no MemAvailable", "MemShared", "no pswp", "no vmstat", "no meminfo"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_memory_read_once_gives_what_psutil_gives(tmp_path, meminfo, vmstat):
    for name, text in (("meminfo", meminfo), ("vmstat", vmstat)):
        if text is not None:
            (tmp_path / name).write_text(text)
    theirs, ours = memory_both(str(tmp_path))
    assert ours == theirs


def test_live_memory_reads_as_psutil_reads_it():
    theirs, ours = memory_both("/proc")
    assert ours[0][0] == theirs[0][0] and ours[1][0] == theirs[1][0]  # the totals; the rest moves
    assert [type(v) for v in ours[0]] == [type(v) for v in theirs[0]]
