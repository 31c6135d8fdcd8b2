"""``telemrec export TRACE --format openmetrics -o FILE``: every value with its own timestamp.

The file is OpenMetrics 1.0 text, as ``promtool tsdb create-blocks-from openmetrics``
backfills it into a Prometheus TSDB (docs/replay/openmetrics.md):

- one series per (source, entity, field); each sample carries the record's wall time
  (``seconds.nanoseconds``; Prometheus keeps milliseconds, so a later sample in the same
  millisecond of a series, or one stamped before its predecessor after a clock step,
  is left out and counted);
- names: a prometheus-reader field keeps its sample name; a dcgmi field its DCGM name;
  any other field is ``<source>_<field>``; all sanitised to ``[a-zA-Z_:][a-zA-Z0-9_:]*``;
- labels split out of the names: a prometheus key's labels and its entity's labels (plus
  the identity labels the reader set aside); other entities by their parts: ``gpu3`` is
  ``gpu="3"``, ``mig:3:1:0`` adds ``GPU_I_ID``/``GPU_CI_ID``, ``disk:vda`` is
  ``disk="vda"``, ``gpu0/pid:42`` is ``gpu="0",pid="42"``, another name ``entity="..."``;
- TYPE: the fields the recording readers' caps list as counters are counters (the family
  drops a ``_total`` suffix and its samples gain one, as OpenMetrics requires); histogram
  and summary parts of a scrape keep their names as ``unknown``; the rest are gauges;
- HELP: the caps' description and unit;
- None (no value) is no sample; strings are not numbers and are left out; ``# EOF`` ends it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Iterator, TextIO

from telemrec.emulate._exposition import (
    Family,
    Labels,
    label_name,
    metric_name,
    om_header,
    om_series,
    om_timestamp,
    om_value,
    split_series,
)
from telemrec.emulate._gpus import gpu_entity
from telemrec.emulate.prometheus import ScrapeMeta, family_resolver, scraped_series
from telemrec.errors import TelemrecWarning

__all__ = ["ExportStats", "export_openmetrics"]

_KIND_ID = re.compile(r"([a-zA-Z_]+)(\d+)")


@dataclass
class ExportStats:
    series: int = 0
    samples: int = 0
    dropped: int = 0   # same millisecond as, or earlier than, the series' previous sample


@dataclass(frozen=True)
class _Series:
    source: str
    entity: str
    key: str
    name: str          # sample name
    labels: Labels


def entity_labels(source: str, entity: str) -> Labels:
    """Labels for a non-prometheus entity name (see the module docstring)."""
    out: list[tuple[str, str]] = []
    for part in entity.split("/"):
        gpu = gpu_entity(part)
        if gpu is not None:
            for name, value in (("gpu", gpu.gpu), ("GPU_I_ID", gpu.instance), ("GPU_CI_ID", gpu.compute)):
                if value is not None:
                    out.append((name, str(value)))
            continue
        kind, sep, rest = part.partition(":")
        if sep and kind and rest:
            out.append((label_name(kind), rest))
        elif m := _KIND_ID.fullmatch(part):
            out.append((label_name(m.group(1)), m.group(2)))
        else:
            out.append(("entity", part))
    return tuple(out)


def _families(trace, sources, entities, fields) -> list[tuple[Family, list[_Series]]]:
    """The families and their series, from the trace's entity and field lists (no values read)."""
    from telemrec.readers.replay import Replay

    replay = Replay(trace, sources=sources, entities=entities, fields=fields)
    selected = replay.selected_entities()
    wanted = set(replay.fields) if replay.fields is not None else None
    caps = trace.caps()
    meta = ScrapeMeta.of(trace.manifest)
    raw: list[tuple[str, str, str, str, Labels]] = []
    for source, entity in selected:
        for key in trace.fields(source, entity):
            if wanted is not None and key not in wanted:
                continue
            if source == "prometheus":
                if not scraped_series(source, entity, key):
                    continue
                name, labels = split_series(key)
                raw.append((source, entity, key, name, meta.entity_labels(entity) + labels))
            else:
                name = key if source == "dcgmi" else f"{source}_{key}"
                raw.append((source, entity, key, name, entity_labels(source, entity)))
    prom_family = family_resolver([(n, lab, None, k) for s, _, k, n, lab in raw if s == "prometheus"], meta)
    families: dict[str, tuple[Family, list[_Series]]] = {}
    seen: set[tuple[str, Labels]] = set()
    for source, entity, key, name, labels in raw:
        source_caps = caps.get(source) or {}
        if source == "prometheus":
            family, typ = prom_family(name, key)
            if typ in ("histogram", "summary"):
                family, typ = name, "unknown"   # parts keep their names; a partial histogram is no histogram
            help_text = meta.helps.get(key)
        else:
            family = name
            typ = "counter" if key in source_caps.get("counters", ()) else "gauge"
            help_text = _help(source_caps, key)
        family = metric_name(family)
        if typ == "counter" and family.endswith("_total"):
            family = family[: -len("_total")]
        sample = family + "_total" if typ == "counter" else metric_name(name) if source == "prometheus" else family
        labels = tuple((label_name(k), v) for k, v in labels)
        if (sample, labels) in seen:  # two fields sanitised to one series: tell them apart
            labels += (("telemrec_field", key),)
        seen.add((sample, labels))
        fam, members = families.setdefault(family, (Family(family, typ, help_text), []))
        members.append(_Series(source, entity, key, sample, labels))
    return list(families.values())


def _help(caps: dict, key: str) -> str | None:
    text = (caps.get("descriptions") or {}).get(key)
    unit = (caps.get("units") or {}).get(key)
    if unit:
        text = f"{text} ({unit})" if text else f"in {unit}"
    return text


def _lines(trace, series: _Series, start, end, stats: ExportStats) -> Iterator[str]:
    """The series' sample lines in time order (see the module docstring for what is left out)."""
    prefix = om_series(series.name, series.labels)
    key = series.key
    last_ms = None
    for rec in trace.records(start_wall_ns=start, end_wall_ns=end, sources=[series.source], entities=[series.entity],
                             fields=[key]):
        value = rec.fields.get(key)
        if value is None or isinstance(value, str):
            continue
        ms = rec.wall_ns // 1_000_000
        if last_ms is not None and ms <= last_ms:
            stats.dropped += 1
            continue
        last_ms = ms
        yield f"{prefix}{om_value(value)} {om_timestamp(rec.wall_ns)}\n"


def write_openmetrics(trace, out: TextIO, *, sources=None, entities=None, fields=None, start=None,
                      end=None) -> ExportStats:
    """Write the trace (selection as ``telemrec.load`` takes it, window in wall ns) as OpenMetrics,
    one series at a time (memory: one decoded chunk, whatever the trace's length)."""
    stats = ExportStats()
    for fam, members in _families(trace, sources, entities, fields):
        header = om_header(fam)
        for series in members:
            count = 0
            for line in _lines(trace, series, start, end, stats):
                if header:
                    out.write(header)
                    header = ""
                out.write(line)
                count += 1
            stats.series += count > 0
            stats.samples += count
    out.write("# EOF\n")
    return stats


def export_openmetrics(path: str, out: str, *, sources=None, entities=None, fields=None, start=None,
                       end=None) -> ExportStats:
    """``telemrec export --format openmetrics``: write ``out`` all or nothing."""
    from telemrec.emulate._export import atomic_text, source_names, wall_window
    from telemrec.trace import open_trace

    with open_trace(path) as trace:
        start_ns, end_ns = wall_window(trace, start, end)
        sources = source_names(trace, sources)
        with atomic_text(out) as fh:
            stats = write_openmetrics(trace, fh, sources=sources, entities=entities, fields=fields, start=start_ns,
                                      end=end_ns)
    if stats.dropped:
        warnings.warn(f"{stats.dropped} of {stats.samples + stats.dropped} samples left out of {out}: Prometheus keeps "
                      "one sample per series and millisecond, in time order (the trace has samples in the same "
                      "millisecond, or its wall clock stepped back)", TelemrecWarning, stacklevel=2)
    return stats
