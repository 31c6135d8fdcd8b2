"""<root>/stat read once a tick gives what psutil's four reads of it give."""

from __future__ import annotations

import psutil
import pytest

from telemrec.readers._procfs_system import ProcStat


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
