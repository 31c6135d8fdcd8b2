"""psutil records under node_exporter's names, where the two read the same kernel counter.

Both read /proc: psutil's ``cpu_times`` of ``cpu<N>`` are node_exporter's
``node_cpu_seconds_total{cpu="N",mode=...}`` (guest time in
``node_cpu_guest_seconds_total``), ``virtual_memory``/``swap_memory`` of ``system`` are
``node_memory_*_bytes`` (/proc/meminfo), ``disk:<dev>`` and ``net:<nic>`` are
``node_disk_*{device}`` and ``node_network_*{device}`` (milliseconds become seconds),
load averages, context switches, interrupts and boot time likewise. HELP and TYPE are
node_exporter 1.5.0's. psutil fields without a node_exporter counterpart (per-process
entities, ``cpu_times`` of ``system``, computed ``virtual_memory.used``) are not served.
"""

from __future__ import annotations

from typing import Iterable

from telemrec.emulate._exposition import Family
from telemrec.record import RawRecord

__all__ = ["node_exporter_families", "psutil_entity"]

_MEMINFO = "Memory information field {}."
# (entity kind, psutil field) -> (metric, extra labels, factor)
_SERIES: dict[tuple[str, str], tuple[str, tuple[tuple[str, str], ...], float]] = {}
# metric -> (TYPE, HELP)
_META: dict[str, tuple[str, str]] = {
    "node_boot_time_seconds": ("gauge", "Node boot time, in unixtime."),
    "node_context_switches_total": ("counter", "Total number of context switches."),
    "node_cpu_guest_seconds_total": ("counter", "Seconds the CPUs spent in guests (VMs) for each mode."),
    "node_cpu_seconds_total": ("counter", "Seconds the CPUs spent in each mode."),
    "node_disk_io_time_seconds_total": ("counter", "Total seconds spent doing I/Os."),
    "node_disk_read_bytes_total": ("counter", "The total number of bytes read successfully."),
    "node_disk_read_time_seconds_total": ("counter", "The total number of seconds spent by all reads."),
    "node_disk_reads_completed_total": ("counter", "The total number of reads completed successfully."),
    "node_disk_reads_merged_total": ("counter", "The total number of reads merged."),
    "node_disk_write_time_seconds_total": ("counter", "This is the total number of seconds spent by all writes."),
    "node_disk_writes_completed_total": ("counter", "The total number of writes completed successfully."),
    "node_disk_writes_merged_total": ("counter", "The number of writes merged."),
    "node_disk_written_bytes_total": ("counter", "The total number of bytes written successfully."),
    "node_intr_total": ("counter", "Total number of interrupts serviced."),
    "node_load1": ("gauge", "1m load average."),
    "node_load15": ("gauge", "15m load average."),
    "node_load5": ("gauge", "5m load average."),
}


def _series(kind: str, field: str, metric: str, labels=(), factor: float = 1.0, typ: str | None = None,
            help_text: str | None = None) -> None:
    _SERIES[(kind, field)] = (metric, tuple(labels), factor)
    if typ is not None:
        _META[metric] = (typ, help_text or "")


for _mode in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"):
    _series("cpu", f"cpu_times.{_mode}", "node_cpu_seconds_total", [("mode", _mode)])
_series("cpu", "cpu_times.guest", "node_cpu_guest_seconds_total", [("mode", "user")])
_series("cpu", "cpu_times.guest_nice", "node_cpu_guest_seconds_total", [("mode", "nice")])
for _field, _meminfo in (("virtual_memory.total", "MemTotal"), ("virtual_memory.free", "MemFree"),
                         ("virtual_memory.available", "MemAvailable"), ("virtual_memory.buffers", "Buffers"),
                         ("virtual_memory.cached", "Cached"), ("virtual_memory.shared", "Shmem"),
                         ("virtual_memory.active", "Active"), ("virtual_memory.inactive", "Inactive"),
                         ("virtual_memory.slab", "Slab"), ("swap_memory.total", "SwapTotal"),
                         ("swap_memory.free", "SwapFree")):
    _series("system", _field, f"node_memory_{_meminfo}_bytes", typ="gauge",
            help_text=_MEMINFO.format(f"{_meminfo}_bytes"))
_series("system", "getloadavg.1m", "node_load1")
_series("system", "getloadavg.5m", "node_load5")
_series("system", "getloadavg.15m", "node_load15")
_series("system", "cpu_stats.ctx_switches", "node_context_switches_total")
_series("system", "cpu_stats.interrupts", "node_intr_total")
_series("system", "boot_time", "node_boot_time_seconds")
for _field, _metric, _factor in (
        ("read_count", "node_disk_reads_completed_total", 1.0),
        ("write_count", "node_disk_writes_completed_total", 1.0),
        ("read_bytes", "node_disk_read_bytes_total", 1.0), ("write_bytes", "node_disk_written_bytes_total", 1.0),
        ("read_time", "node_disk_read_time_seconds_total", 1e-3),
        ("write_time", "node_disk_write_time_seconds_total", 1e-3),
        ("busy_time", "node_disk_io_time_seconds_total", 1e-3),
        ("read_merged_count", "node_disk_reads_merged_total", 1.0),
        ("write_merged_count", "node_disk_writes_merged_total", 1.0)):
    _series("disk", f"disk_io_counters.{_field}", _metric, factor=_factor)
for _field, _stat in (("bytes_recv", "receive_bytes"), ("bytes_sent", "transmit_bytes"),
                      ("packets_recv", "receive_packets"), ("packets_sent", "transmit_packets"),
                      ("errin", "receive_errs"), ("errout", "transmit_errs"),
                      ("dropin", "receive_drop"), ("dropout", "transmit_drop")):
    _series("net", f"net_io_counters.{_field}", f"node_network_{_stat}_total", typ="counter",
            help_text=f"Network device statistic {_stat}.")


def psutil_entity(name: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    if name == "system":
        return "system", ()
    if name.startswith("cpu") and name[3:].isdigit():
        return "cpu", (("cpu", name[3:]),)
    kind, sep, rest = name.partition(":")
    if sep and kind in ("disk", "net") and rest:
        return kind, (("device", rest),)
    return None


def node_exporter_families(records: Iterable[RawRecord]) -> list[Family]:
    """node_exporter's families for the psutil records, sorted by name as node_exporter serves them."""
    families: dict[str, Family] = {}
    for rec in records:
        where = psutil_entity(rec.entity) if rec.source == "psutil" else None
        if where is None:
            continue
        kind, entity_labels = where
        for field, value in rec.fields.items():
            series = _SERIES.get((kind, field))
            if series is None or value is None or isinstance(value, (str, bool)):
                continue
            metric, labels, factor = series
            fam = families.get(metric)
            if fam is None:
                typ, help_text = _META[metric]
                fam = families[metric] = Family(metric, typ, help_text)
            fam.add(entity_labels + labels, float(value) * factor)  # Go exporters hold float64s
    for fam in families.values():
        fam.samples.sort(key=lambda s: s[1])
    return [families[name] for name in sorted(families)]
