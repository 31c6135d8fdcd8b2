"""Make the sample traces (run once per format version; the outputs are frozen afterwards).

    python sample_traces/scripts/make_samples.py [psutil|nvml|dcgmi|node_exporter|corrupt|upgrade ...]

Each function documents what it records and on what. Recordings go to the folder of the current
format version (sample_traces/v<N>/), negative cases to sample_traces/corrupt/ (made once, from
v1); update SHA256SUMS with `sha256sum v*/*.h5 corrupt/* > SHA256SUMS`. The v1 files were
recorded by telemrec 0.1.0; the v2 and v3 files are those recordings upgraded (``upgrade``, run with
the telemrec of each version), so every folder holds the same records. v3 adds a real recording of
a process tree that comes and goes (``process_tree``); ``corrupt3`` the negative cases of format 3.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
V1 = os.path.join(ROOT, "v1")


def _current() -> str:
    from telemrec.trace import CURRENT_FORMAT_VERSION

    return os.path.join(ROOT, f"v{CURRENT_FORMAT_VERSION}")
CORRUPT = os.path.join(ROOT, "corrupt")

WORKLOAD = """
import hashlib, os, tempfile, time
end = time.time() + 20
with tempfile.TemporaryFile() as f:
    while time.time() < end:
        data = os.urandom(1 << 20)
        for _ in range(20):
            data = hashlib.sha256(data).digest() * 32768
        f.write(data)
        f.flush(); os.fsync(f.fileno())
        time.sleep(0.2)
"""


def _record_cli(out: str, *args: str) -> None:
    if os.path.exists(out):
        os.unlink(out)
    subprocess.run([sys.executable, "-m", "telemrec", "record", "-o", out, *args], check=True)


def psutil_sample() -> None:
    """A real psutil recording of a 2-core CI-class VM: system, process and user levels at 0.5 s while a
    20 s workload (sha256 + fsynced writes) runs; the workload's exit status is kept."""
    _record_cli(os.path.join(_current(), "psutil_workload.h5"), "-r", "psutil", "-i", "0.5", "--flush-every", "2",
                "-O", "levels=system,process", "-O", "uss=false", "--tag", "sample=psutil_workload",
                "--", sys.executable, "-c", WORKLOAD)


def nvml_sample() -> None:
    """SYNTHETIC: the nvml reader over telemrec.testing.fake_nvml (2 A100-like GPUs running the scripted
    idle -> loading -> training job, one training process per GPU, no fan), 0.5 s for 30 s."""
    from telemrec.readers.nvml import NvmlReader
    from telemrec.testing.fake_nvml import FakeNvml, training_job

    _record_python(os.path.join(_current(), "nvml_synthetic.h5"), NvmlReader(nvml=FakeNvml(training_job(2), seed=7), environ={}),
                   None, 0.5, 30.0, {"sample": "nvml_synthetic", "synthetic": "fake_nvml training_job(2) seed=7"})


def dcgmi_sample() -> None:
    """SYNTHETIC: the dcgmi reader running telemrec.testing.fake_dcgmi (a fake `dcgmi` executable that
    prints the DCGM 4.x dmon layout with real timing), 23 default fields, 0.5 s for 30 s."""
    from telemrec.readers.dcgmi import DcgmiReader

    tmp = tempfile.mkdtemp()
    try:
        shim = os.path.join(tmp, "dcgmi")
        with open(shim, "w") as f:
            f.write(f"#!/bin/sh\nexec {sys.executable} -m telemrec.testing.fake_dcgmi \"$@\"\n")
        os.chmod(shim, 0o755)
        os.environ["PATH"] = tmp + os.pathsep + os.environ["PATH"]
        _record_python(os.path.join(_current(), "dcgmi_synthetic.h5"), DcgmiReader(), None, 0.5, 30.0,
                       {"sample": "dcgmi_synthetic", "synthetic": "telemrec.testing.fake_dcgmi"})
    finally:
        shutil.rmtree(tmp)


def node_exporter_sample() -> None:
    """A real prometheus-node-exporter (Debian package) on 127.0.0.1, scraped every 1 s for 20 s."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        _record_cli(os.path.join(_current(), "node_exporter.h5"), "-r", "prometheus", "-s",
                    f"http://127.0.0.1:{port}/metrics", "-i", "1", "-d", "20", "--tag", "sample=node_exporter")
    finally:
        proc.terminate()
        proc.wait()


def _record_python(out, reader, source, interval, duration, tags) -> None:
    from telemrec.recorder.session import RecordRequest, build_manifest
    from telemrec.recorder.recorder import Recorder, ReaderSlot
    from telemrec.record import ReaderConfig
    from telemrec.trace import TraceWriter

    if os.path.exists(out):
        os.unlink(out)
    config = ReaderConfig(source=source, interval=interval)
    reader.open(config)
    slot = ReaderSlot(reader.name, reader, config)
    req = RecordRequest(output=out, readers=[reader.name], interval=interval, duration=duration, tags=tags)
    start_wall, start_mono = time.time_ns(), time.monotonic_ns()
    writer = TraceWriter(out, build_manifest(req, [slot], start_wall, start_mono, None))
    rec = Recorder([slot], writer, interval=interval, flush_every=2.0)
    rec.start()
    rec.wait(duration)
    rec.join()
    reader.close()
    writer.close(stop={"wall_ns": time.time_ns(), "mono_ns": time.monotonic_ns(), "reason": "duration reached"},
                 stats=rec.stats.to_dict())


def corrupt_samples() -> None:
    """Negative cases, derived from v1/psutil_workload.h5: truncated.h5 (first half of the file),
    not_hdf5.h5 (text), future_version.h5 (format_version 99), crashed.h5.journal (a journal whose last
    frame is torn; opening it must recover the flushed records)."""
    import h5py

    from telemrec.record import RawRecord
    from telemrec.trace import TraceWriter
    from telemrec.trace.importer import import_manifest

    src = os.path.join(V1, "psutil_workload.h5")
    data = open(src, "rb").read()
    with open(os.path.join(CORRUPT, "truncated.h5"), "wb") as f:
        f.write(data[: len(data) // 2])
    with open(os.path.join(CORRUPT, "not_hdf5.h5"), "w") as f:
        f.write("time,cpu\n0,1\n")
    future = os.path.join(CORRUPT, "future_version.h5")
    shutil.copy(src, future)
    with h5py.File(future, "r+") as h5:
        h5.attrs["format_version"] = 99
    crashed = os.path.join(CORRUPT, "crashed.h5")
    for p in (crashed, crashed + ".journal"):
        if os.path.exists(p):
            os.unlink(p)
    w = TraceWriter(crashed, import_manifest("sample_traces/scripts/make_samples.py"))
    w.write([RawRecord(i, 1_790_000_000_000_000_000 + i * 10**9, "system", {"n": i, "load": i / 4}, "synthetic")
             for i in range(100)])
    w.flush()
    w.write([RawRecord(i, 1_790_000_000_000_000_000 + i * 10**9, "system", {"n": i}, "synthetic") for i in range(100, 150)])
    w.abandon()
    jpath = crashed + ".journal"
    with open(jpath, "rb") as f:
        blob = f.read()
    with open(jpath, "wb") as f:
        f.write(blob[:-5])  # tear the final frame, as a kill in the middle of a write does


TREE = """
import subprocess, sys, time
end = time.time() + 12
while time.time() < end:  # short-lived children, a few at a time, each hashing for a while
    kids = [subprocess.Popen([sys.executable, "-c", "import hashlib,os,time;t=time.time()+%.1f\\n"
                              "while time.time()<t: hashlib.sha256(os.urandom(65536)).digest()" % (0.3 + 0.2 * k)])
            for k in range(3)]
    for kid in kids:
        kid.wait()
"""


def process_tree_sample() -> None:
    """A real format 3 recording: psutil's system and process levels at 0.2 s while a command starts
    three short-lived Python children at a time for 12 s (many process entities coming and going)."""
    _record_cli(os.path.join(_current(), "psutil_process_tree.h5"), "-r", "psutil", "-i", "0.2", "--flush-every",
                "1", "-O", "levels=system,process", "-O", "uss=false", "--tag", "sample=psutil_process_tree",
                "--", sys.executable, "-c", TREE)


def corrupt3_samples() -> None:
    """Negative cases of format 3, from v3/psutil_process_tree.h5: truncated_v3.h5 (its first half),
    crashed_v3.h5.journal (a version 2 journal whose last frame is torn: opening crashed_v3.h5 must
    recover the flushed records: 100 of them, in 2 provisional segments)."""
    data = open(os.path.join(_current(), "psutil_process_tree.h5"), "rb").read()
    with open(os.path.join(CORRUPT, "truncated_v3.h5"), "wb") as f:
        f.write(data[: len(data) // 2])
    _crashed_journal(os.path.join(CORRUPT, "crashed_v3.h5"))  # with the telemrec of its day: journal version 2


def journal3_sample() -> None:
    """crashed_j3.h5.journal: the same recording as crashed_v3.h5.journal in a version 3 journal
    (numbered frames), its last frame torn: opening crashed_j3.h5 must recover the 100 flushed records."""
    _crashed_journal(os.path.join(CORRUPT, "crashed_j3.h5"))


def _crashed_journal(crashed: str) -> None:
    from telemrec.record import RawRecord
    from telemrec.trace import TraceWriter
    from telemrec.trace.importer import import_manifest

    for p in (crashed, crashed + ".journal"):
        if os.path.exists(p):
            os.unlink(p)
    w = TraceWriter(crashed, import_manifest("sample_traces/scripts/make_samples.py"))
    for part in range(2):
        w.write([RawRecord(i, 1_790_000_000_000_000_000 + i * 10**9, "system", {"n": i, "load": i / 4}, "synthetic")
                 for i in range(50 * part, 50 * part + 50)])
        w.flush()
    w.write([RawRecord(i, 1_790_000_000_000_000_000 + i * 10**9, "system", {"n": i}, "synthetic") for i in range(100, 150)])
    w.abandon()
    jpath = crashed + ".journal"
    with open(jpath, "rb") as f:
        blob = f.read()
    with open(jpath, "wb") as f:
        f.write(blob[:-5])  # tear the final frame, as a kill in the middle of a write does


def upgraded_samples() -> None:
    """The v1 recordings rewritten in the current format by `telemrec.trace.upgrade.upgrade` (records,
    ticks, annotations and manifest copied exactly; only format_version changes)."""
    from telemrec.trace.upgrade import upgrade

    os.makedirs(_current(), exist_ok=True)
    for name in sorted(os.listdir(V1)):
        out = os.path.join(_current(), name)
        if os.path.exists(out):
            os.unlink(out)
        upgrade(os.path.join(V1, name), out)


if __name__ == "__main__":
    todo = sys.argv[1:] or ["psutil", "nvml", "dcgmi", "node_exporter"]
    funcs = {"psutil": psutil_sample, "nvml": nvml_sample, "dcgmi": dcgmi_sample,
             "node_exporter": node_exporter_sample, "corrupt": corrupt_samples, "upgrade": upgraded_samples,
             "process_tree": process_tree_sample, "corrupt3": corrupt3_samples,
             "journal3": journal3_sample}
    for name in todo:
        funcs[name]()
        print("made", name)
