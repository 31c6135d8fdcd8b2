"""``telemrec serve TRACE --listen HOST:PORT``: the trace as a Prometheus exposition endpoint.

Every scrape of ``/metrics`` answers what the recorded node's exporters would have
answered at trace time ``start + elapsed x speed`` (with speed ``max``: the next
recorded tick per scrape), in text format 0.0.4 (docs/replay/prometheus.md):

- records of the ``prometheus`` reader as they were scraped: the sample names, the labels
  (entity labels, the identity labels the reader set aside, the rest of the key), TYPE
  (recorded by the reader; older traces: counters from the caps, histograms and summaries
  from their series, gauge otherwise) and HELP;
- nvml and dcgmi records as dcgm-exporter renders them (``_dcgm_exporter``);
- psutil records under node_exporter's names where they correspond (``_node_exporter``).

The server stops once the replay is over (after ``--loop`` passes), having served the
final state for one more sampling interval.
"""

from __future__ import annotations

import gzip
import re
import signal
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Mapping, TextIO

from telemrec.emulate._dcgm_exporter import dcgm_exporter_families
from telemrec.emulate._exposition import Family, Labels, entity_label_pairs, split_series, text_004
from telemrec.emulate._node_exporter import node_exporter_families
from telemrec.emulate._timeline import TracePlayer
from telemrec.errors import UsageError
from telemrec.record import RawRecord

__all__ = ["Endpoint", "ScrapeMeta", "exposition", "family_resolver", "parse_listen", "prometheus_families",
           "scraped_series", "serve"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SKIP_ENTITIES = ("scrape",)   # the prometheus reader's own bookkeeping, not a scraped series
_TIMESTAMP_SUFFIX = "@timestamp_ms"


# -- prometheus traces, as scraped ---------------------------------------------------------------

def _reader_entries(manifest: Mapping) -> list[Mapping]:
    return [r for r in manifest.get("readers") or [] if r.get("name") == "prometheus"]


@dataclass
class ScrapeMeta:
    """What the manifest kept of a prometheus-reader trace's scrapes besides the values."""

    identity: dict[str, dict] = field(default_factory=dict)   # entity -> identity labels
    types: dict[str, str] | None = None                        # family -> TYPE (None: not recorded)
    counters: set[str] = field(default_factory=set)            # field keys
    helps: dict[str, str] = field(default_factory=dict)        # field key -> HELP

    @classmethod
    def of(cls, manifest: Mapping) -> "ScrapeMeta":
        meta = cls()
        for reader in _reader_entries(manifest):
            ident = reader.get("identity") or {}
            for entity, labels in (ident.get("entities") or {}).items():
                meta.identity.setdefault(entity, {}).update(labels)
            if "types" in ident:
                meta.types = {**(meta.types or {}), **ident["types"]}
            caps = reader.get("caps") or {}
            meta.counters.update(caps.get("counters") or [])
            meta.helps.update(caps.get("descriptions") or {})
        return meta

    def entity_labels(self, entity: str) -> Labels:
        """The labels a sample of ``entity`` carried: entity labels, then the identity labels."""
        base = () if entity == "system" else (entity_label_pairs(entity) or (("entity", entity),))
        return base + tuple(sorted((self.identity.get(entity) or {}).items()))


def scraped_series(source: str, entity: str, key: str) -> bool:
    """Whether a field of a record is a scraped sample (not the reader's bookkeeping)."""
    return source == "prometheus" and entity not in _SKIP_ENTITIES and not key.endswith(_TIMESTAMP_SUFFIX)


def prometheus_families(records: Iterable[RawRecord], manifest: Mapping) -> list[Family]:
    """The families a prometheus-reader trace scraped, rebuilt from the records and the manifest."""
    meta = ScrapeMeta.of(manifest)
    series = []
    for rec in records:
        base = meta.entity_labels(rec.entity)
        for key, value in rec.fields.items():
            if not scraped_series(rec.source, rec.entity, key) or value is None or isinstance(value, str):
                continue
            name, labels = split_series(key)
            series.append((name, base + labels, value, key))
    family_of = family_resolver(series, meta)
    families: dict[str, Family] = {}
    for name, labels, value, key in series:
        fam_name, typ = family_of(name, key)
        fam = families.get(fam_name)
        if fam is None:
            fam = families[fam_name] = Family(fam_name, typ, meta.helps.get(key))
        fam.add(labels, value, name=name)
    return list(families.values())


def family_resolver(series, meta: ScrapeMeta):
    """(family, TYPE) of a sample name: from the recorded types, else inferred for older traces.
    ``series``: (name, labels, value, key) of every sample in question."""
    types, counters = meta.types, meta.counters
    histograms = {n[:-7] for n, labels, _, _ in series if n.endswith("_bucket") and any(k == "le" for k, _ in labels)}
    summaries = {n for n, labels, _, _ in series if any(k == "quantile" for k, _ in labels)}

    def family_of(name: str, key: str) -> tuple[str, str]:
        known = types or {}
        if name in known:
            return name, known[name]
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                typ = known.get(base) or ("histogram" if base in histograms else
                                          "summary" if base in summaries and suffix != "_bucket" else None)
                if typ in ("histogram", "summary"):
                    return base, typ
        if types is not None:
            return name, "untyped"  # the reader recorded every declared TYPE: this one had none
        if name in summaries:
            return name, "summary"
        return name, "counter" if key in counters else "gauge"

    return family_of


# -- all of a trace ---------------------------------------------------------------------------------

def exposition(records: list[RawRecord], manifest: Mapping) -> str:
    """One scrape's text for the given state: every exporter the trace can stand in for."""
    merged: dict[str, Family] = {}
    for fam in (*prometheus_families(records, manifest), *dcgm_exporter_families(records, manifest),
                *node_exporter_families(records)):
        if fam.name in merged:  # two sources exposing one name: one family, first TYPE wins
            seen = {(n, labels) for n, labels, _, _ in merged[fam.name].samples}
            merged[fam.name].samples.extend(s for s in fam.samples if (s[0], s[1]) not in seen)
        else:
            merged[fam.name] = fam
    return text_004(merged.values())


def servable(keys: Iterable[tuple[str, str]]) -> bool:
    from telemrec.emulate._gpus import GPU_SOURCES, gpu_entity
    from telemrec.emulate._node_exporter import psutil_entity

    return any((s == "prometheus" and e not in _SKIP_ENTITIES) or (s in GPU_SOURCES and gpu_entity(e) is not None)
               or (s == "psutil" and psutil_entity(e) is not None) for s, e in keys)


# -- the endpoint ---------------------------------------------------------------------------------

class Endpoint:
    """The state behind ``/metrics``: a player, advanced by the serve loop (paced) or by each scrape (max)."""

    def __init__(self, player: TracePlayer):
        self.player = player
        self.manifest = player.trace.manifest
        self.lock = threading.Lock()
        self.scrapes = 0
        self.final_served = threading.Event()

    def scrape(self) -> bytes:
        with self.lock:
            if self.player.speed is None:
                self.player.advance()
            text = exposition(self.player.records(), self.manifest)
            self.scrapes += 1
            if self.player.finished:
                self.final_served.set()
        return text.encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    server_version = "telemrec-serve"
    endpoint: Endpoint

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, ctype = self.endpoint.scrape(), CONTENT_TYPE
        elif path == "/":
            body, ctype = (b"<html><head><title>telemrec serve</title></head><body><h1>telemrec serve</h1>"
                           b"<p><a href=\"/metrics\">Metrics</a></p></body></html>"), "text/html; charset=utf-8"
        else:
            self.send_error(404, "not found: the exposition is at /metrics")
            return
        gzipped = "gzip" in (self.headers.get("Accept-Encoding") or "")
        if gzipped:
            body = gzip.compress(body, 5)
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - a scrape a second is no news
        pass


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1); port 0 picks a free one."""
    m = re.fullmatch(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d+)|(?P<bare>\d+)", text.strip())
    if m is None:
        raise UsageError(f"--listen {text!r} is not HOST:PORT",
                         "Write e.g. --listen 127.0.0.1:9400 (port 0: any free one).")
    port = int(m.group("port") or m.group("bare"))
    if port > 65535:
        raise UsageError(f"port {port} is out of range", "Ports run from 0 to 65535.")
    return m.group("v6") or m.group("host") or "127.0.0.1", port


def serve(trace_path: str, listen: str, *, speed: Any = "1", start: Any = None, end: Any = None, loop: Any = 1,
          entities: Any = None, fields: Any = None, sources: Any = None, log: TextIO | None = None) -> int:
    """Serve until the replay is over or SIGINT/SIGTERM; return the number of scrapes answered."""
    import socket
    import sys

    from telemrec.trace import open_trace

    log = log or sys.stderr
    host, port = parse_listen(listen)
    with open_trace(trace_path) as trace:
        player = TracePlayer(trace, speed=speed, start=start, end=end, entities=entities, fields=fields,
                             sources=sources, loop=loop)
        if not servable(player.replay.selected_entities()):
            raise UsageError(f"nothing in {trace_path} (within the selection) has an exporter to stand in for",
                             "serve shows prometheus-reader, nvml, dcgmi and psutil records.")
        endpoint = Endpoint(player)
        handler = type("Handler", (_Handler,), {"endpoint": endpoint})
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
        try:
            server = server_class((host, port), handler)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                             "Pick a free port (--listen 127.0.0.1:0 picks one) or stop what holds it.") from exc
        bound = server.server_address[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        log.write(f"telemrec: serving {trace_path} on http://{shown}:{bound}/metrics\n")
        log.flush()
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        try:
            _run(endpoint, stop)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            server.shutdown()
            server.server_close()
        return endpoint.scrapes


def _run(endpoint: Endpoint, stop: threading.Event) -> None:
    player = endpoint.player
    if player.speed is None:  # scrapes advance the replay
        while not stop.is_set() and not endpoint.final_served.is_set():
            stop.wait(0.05)
        return
    while not stop.is_set():
        with endpoint.lock:
            player.advance()
            wait = player.seconds_until_next()
        if wait is None:
            break
        stop.wait(min(wait, 0.25))
    if not stop.is_set():  # the final state stays up for one sampling interval, as on the node
        stop.wait(player.replay.sampling_interval_ns() / 1e9 / player.speed)
