"""The procfs collector's per-tick hot path: compiled (``_cprocfs.c``) where built, else the
pure-Python equivalents below, which give the same results (tests hold both to it).

- ``poll(states)``: of the processes known from the last tick, for each that was idle then
  (``Proc.quick`` set: its files kept open, its threads' schedstat known, not running),
  whether its threads' schedstat, then ``stat`` and ``statm`` read back byte for byte as
  last time; if so it has not run, its last fields hold, and the list has them (else None).
  ``stat`` is read only where the parent it names may have exited: nothing else in it
  changes while the process does not run, and an exit re-parents the children, so it holds
  while the parent is init (or none), is itself idle at this tick, or (a known process
  that ran) its own stat, read once for all its children, says it is alive and no zombie.
  A process woken but not yet given a CPU keeps the state it had ("sleeping", not
  "running") until it runs, microseconds on an idle machine. ``statm`` is always
  read: memory may be reclaimed from a process that does not run.
- ``refresh(st, consts)`` (compiled only; the Python path is ``_procfs_process.ProcessFiles``'s
  own): a process that ran since the last tick, its files read and parsed and its fields
  built as that path would, for the common case (the same name, command line, threads and
  start time, every file read without a problem); None sends it to the Python path.
- ``steady(last, quiet, states, memo, tick, cls)``: the collector's steady path (no pid handed
  out since the last tick) for the members that have not run: their readings from the fields the
  poll kept (not copied: the reading's ``proc`` says so), with their last levels; the positions
  of the others, for the Python path.
- ``records(cls, readings, mono, wall, source, version, out)``: one record per reading,
  ``levels`` joined into its fields, appended to ``out``. A reading of kept fields (``proc``)
  gets the fields of the last record made from them where its levels are the same (``Proc.record``),
  else a copy with its levels: records of a process that does not run share one dict, which
  nobody changes (a copy a member a tick, and its freeing, cost more than the rest of its record).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Native", "native"]

GATE_SIZE, STAT_SIZE, STATM_SIZE = 128, 4096, 256


def _same(fd: int, expected: bytes, size: int) -> bool:
    data = os.pread(fd, size, 0)
    return data == expected and len(data) < size


def _idle(gate) -> bool:
    try:
        return all(_same(fd, old, GATE_SIZE) for fd, old in gate)
    except OSError:  # gone or refused: the full read says which
        return False


def _alive(st) -> bool:
    """A process not polled: whether it is alive and no zombie, from its stat read now."""
    fd = st.fds.get("stat")
    if fd is None:
        return False
    try:
        data = os.pread(fd, STAT_SIZE, 0)
    except OSError:
        return False
    rpar = data.rfind(b")")
    return rpar >= 0 and data[rpar + 2:rpar + 3] not in (b"", b"Z", b"X", b"x")


def poll_py(states: list) -> list:
    idle = {st.pid: _idle(st.quick[2]) for st in states if st.quick is not None}
    others = {st.pid: st for st in states if st.quick is None}
    alive: dict[int, bool] = {}

    def parent_holds(ppid: int) -> bool:
        if ppid <= 1 or idle.get(ppid):
            return True
        if ppid not in others:
            return False
        if ppid not in alive:
            alive[ppid] = _alive(others[ppid])
        return alive[ppid]

    out: list[Any] = []
    for st in states:
        fields = None
        if idle.get(st.pid):
            stat_fd, statm_fd, _, ppid = st.quick
            try:
                if ((parent_holds(ppid) or _same(stat_fd, st.stat, STAT_SIZE))
                        and _same(statm_fd, st.statm, STATM_SIZE)):
                    fields = st.fields
                    st.ran = False
            except OSError:
                pass
        out.append(fields)
    return out


def steady_py(last: list, quiet: dict, states: dict, memo: dict, tick: int, cls) -> tuple[list, list]:
    readings: list[Any] = []
    todo: list[int] = []
    for i, (pid, levels) in enumerate(last):
        fields, st = quiet.get(pid), states.get(pid)
        if fields is None or st is None:
            todo.append(i)
            readings.append(None)
            continue
        st.tick = tick
        reading = memo[pid] = cls(pid, fields, list(st.problems), list(levels), st)
        readings.append(reading)
    return readings, todo


def records_py(cls, readings: list, mono: int, wall: int, source: str, version: str, out: list) -> None:
    for r in readings:
        joined, st = " ".join(r.levels), r.proc
        if st is None:
            fields = r.fields
            fields["levels"] = joined
        elif st.record is not None and st.record[0] is r.fields and st.record[1] == joined:
            fields = st.record[2]  # the same as the last record's: shared, not copied
        else:
            fields = dict(r.fields)
            fields["levels"] = joined
            st.record = (r.fields, joined, fields)
        out.append(cls(mono, wall, f"pid:{r.pid}", fields, source, version, r.error() if r.problems else None))


class Native:
    """The implementation in use: ``compiled`` is whether it is the C one."""

    def __init__(self, compiled: bool):
        if compiled:
            from telemrec.readers import _cprocfs

            self.poll, self.records, self.refresh = _cprocfs.poll, _cprocfs.records, _cprocfs.refresh
            self.steady = _cprocfs.steady
        else:
            self.poll, self.records, self.refresh, self.steady = poll_py, records_py, None, steady_py
        self.compiled = compiled


def native(compiled: bool | None = None) -> Native:
    """The C implementation if ``compiled`` is None and it is built (or if True: ImportError
    when it is not), the Python one if False."""
    if compiled is None:
        try:
            from telemrec.readers import _cprocfs  # noqa: F401
        except ImportError:
            compiled = False
        else:
            compiled = True
    return Native(compiled)
