"""Prometheus exposition reader: scrape dcgm-exporter, node_exporter or any text-format endpoint.

``config.source`` is an ``http(s)://`` URL (scraped every tick) or a file path (re-read every
tick, e.g. a node_exporter textfile-collector file). The whole text format 0.0.4 is parsed:
HELP/TYPE, label escapes, optional millisecond timestamps, NaN and +/-Inf, UTF-8 quoted names.

Mapping (docs/readers/prometheus.md):

- entity: the values of ``entity_labels`` present on a sample, in that order
  (``gpu=0,UUID=GPU-abc,GPU_I_ID=1``); samples with none of them belong to ``system``.
- field key: the sample name plus its remaining labels in canonical Prometheus syntax,
  sorted by label name (``node_cpu_seconds_total{mode="idle"}``); the value is the exact float.
- a sample timestamp becomes the int field ``<key>@timestamp_ms``.
- ``identity_labels`` (modelName, Hostname, ...) that are constant per entity go to
  ``identity()`` instead of the keys; once one varies for an entity it stays in that entity's keys.
- every tick also yields entity ``scrape`` (``up``, duration, bytes, samples); a failed scrape is
  that record with ``error`` set and ``up`` = 0, and the reader keeps going.

The parser is hand-written rather than prometheus-client's because that one renames counters
declared without ``_total`` (``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` becomes ``..._total``),
turns integral values into int (``-0`` loses its sign) and timestamps into float seconds, and
takes ``foo 1 2 3`` as valid; its parse alone also takes 3-5x as long as a whole steady-state
``read()`` here (figures in docs/readers/prometheus.md). Tests cross-check both on the fixtures.
"""

from __future__ import annotations

import base64
import math
import os
import re
import time
import zlib
from typing import Any, Callable, Iterable, NamedTuple
from urllib.parse import unquote, urlsplit

from telemrec._version import __version__
from telemrec.errors import SourceError, SourceParseError, UsageError
from telemrec.readers._options import bool_option, int_option, list_option, positive_float_option, reject_unknown
from telemrec.readers.base import BaseReader
from telemrec.record import INT64_MAX, INT64_MIN, RawRecord, ReaderCaps, ReaderConfig
from telemrec.redaction import redact_url

__all__ = ["Exposition", "PrometheusReader", "format_series", "http_fetch", "parse_exposition", "parse_labels"]

DEFAULT_ENTITY_LABELS = ("gpu", "UUID", "GPU_I_ID", "device", "cpu")
# dcgm-exporter's per-device constants (its label template); pod/namespace/container are
# deliberately absent: they change with the job and are real dimensions.
DEFAULT_IDENTITY_LABELS = ("modelName", "Hostname", "pci_bus_id", "DCGM_FI_DRIVER_VERSION", "GPU_I_PROFILE")
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BYTES = 16 * 2**20
SCRAPE_ENTITY = "scrape"
SYSTEM_ENTITY = "system"
TIMESTAMP_SUFFIX = "@timestamp_ms"
ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
METRIC_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
# Prometheus base-unit suffixes (naming convention); anything else gets no unit.
_UNIT_SUFFIXES = ("seconds", "bytes", "celsius", "joules", "watts", "volts", "amperes", "hertz",
                  "meters", "grams", "ratio", "percent")

_SCRAPE_FIELDS = {
    "up": ("", "1 if this tick's scrape succeeded, 0 if not (Prometheus convention)"),
    "scrape.duration_seconds": ("seconds", "time from the start of the scrape until its records were built"),
    "scrape.bytes": ("bytes", "size of the exposition body (after gzip decoding)"),
    "scrape.samples": ("", "sample lines in the exposition"),
    "scrape.duplicate_series": ("", "sample lines dropped because their series appeared earlier in the scrape"),
}

# -- the text format ---------------------------------------------------------------------
_MNAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LNAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_QSTR_BODY = r'(?:[^"\\\n]|\\[\\"n])*'
_QSTR = rf'"{_QSTR_BODY}"'
_LABEL = rf"(?:{_LNAME}|{_QSTR})[ \t]*=[ \t]*{_QSTR}"
_LABELS = rf"[ \t]*(?:{_LABEL}[ \t]*,[ \t]*)*(?:{_LABEL}[ \t]*)?"
_TAIL = r"[ \t]*([^ \t]+)(?:[ \t]+([+-]?[0-9]+))?"
_SAMPLE_RE = re.compile(rf"({_MNAME})(?:[ \t]*\{{({_LABELS})\}}|(?=[ \t])){_TAIL}")
_QUOTED_SAMPLE_RE = re.compile(rf"\{{[ \t]*({_QSTR})[ \t]*(?:,({_LABELS}))?\}}{_TAIL}")
_LABEL_ITEM_RE = re.compile(rf'[ \t]*({_LNAME}|{_QSTR})[ \t]*=[ \t]*"({_QSTR_BODY})"[ \t]*,?')
_META_RE = re.compile(rf"#[ \t]*(HELP|TYPE)[ \t]+({_MNAME}|{_QSTR})(?:[ \t]+(.*))?")
_LEGACY_MNAME_RE = re.compile(_MNAME)
_LEGACY_LNAME_RE = re.compile(_LNAME)
_ESCAPE_RE = re.compile(r"\\(.)")
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}
_BARE_ENTITY_VALUE_RE = re.compile(r'[^,="\\\n]+')


class Exposition(NamedTuple):
    """One parsed exposition. ``samples`` holds ``(name, labels_text, value, timestamp_ms)``
    with the label text still raw (decoded lazily by ``parse_labels``, once per new series)."""

    samples: list[tuple[str, str | None, float, int | None]]
    types: dict[str, str]
    helps: dict[str, str]


def _unescape(text: str) -> str:
    return _ESCAPE_RE.sub(lambda m: _UNESCAPE.get(m[1], m[0]), text) if "\\" in text else text


def _unquote(token: str) -> str:
    return _unescape(token[1:-1]) if token[:1] == '"' else token


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _parse_float(token: str) -> float:
    # Go's ParseFloat rules: Python's float() also takes "1_0", Go does not; Go takes hex floats.
    if "_" in token:
        raise ValueError(token)
    try:
        return float(token)
    except ValueError:
        if token.lstrip("+-")[:2].lower() == "0x":
            return float.fromhex(token)
        raise


def _malformed(lineno: int, line: str, why: str) -> SourceParseError:
    shown = line if len(line) <= 120 else line[:117] + "..."
    return SourceParseError(f"line {lineno}: {why}: {shown!r}",
                            "The body is not Prometheus text format 0.0.4; check the URL points at "
                            "a /metrics endpoint (curl it) or that the file is an exposition.",
                            line=lineno)


def parse_exposition(text: str) -> Exposition:
    """Parse exposition text; raise ``SourceParseError`` naming the first bad line."""
    samples: list[tuple[str, str | None, float, int | None]] = []
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    sample_match = _SAMPLE_RE.fullmatch
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.strip(" \t\r")
        if not line:
            continue
        if line[0] == "#":
            meta = _META_RE.fullmatch(line)
            if meta is None:
                continue  # a plain comment
            kind, name, rest = meta[1], _unquote(meta[2]), meta[3] or ""
            if kind == "HELP":
                helps.setdefault(name, _unescape(rest))
            elif rest not in METRIC_TYPES:
                raise _malformed(lineno, line, f"unknown metric type {rest!r}")
            elif name in types:
                raise _malformed(lineno, line, f"second TYPE line for {name}")
            else:
                types[name] = rest
            continue
        m = sample_match(line)
        if m is not None:
            name, labels, value_token, ts_token = m.groups()
        else:
            m = _QUOTED_SAMPLE_RE.fullmatch(line)
            if m is None:
                raise _malformed(lineno, line, "not a sample line")
            name, labels, value_token, ts_token = _unquote(m[1]), m[2], m[3], m[4]
        try:
            value = _parse_float(value_token)
        except ValueError:
            raise _malformed(lineno, line, f"bad value {value_token!r}") from None
        if value != value:
            value = math.nan  # one NaN bit pattern ("-NaN" too), as the text format cannot carry payloads
        timestamp = None
        if ts_token is not None:
            timestamp = int(ts_token)
            if not INT64_MIN <= timestamp <= INT64_MAX:
                raise _malformed(lineno, line, "timestamp outside int64")
        samples.append((name, labels or None, value, timestamp))
    return Exposition(samples, types, helps)


def parse_labels(labels_text: str | None) -> list[tuple[str, str]]:
    """Decode a label block (without braces) already validated by ``parse_exposition``.

    Labels with an empty value are dropped: Prometheus treats them as absent.
    """
    if not labels_text:
        return []
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for m in _LABEL_ITEM_RE.finditer(labels_text):
        name = _unquote(m[1])
        if name in seen:
            raise SourceParseError(f"duplicate label {name!r} in {{{labels_text}}}",
                                   "The exporter emitted an invalid series; report it upstream.")
        seen.add(name)
        if m[2]:
            out.append((name, _unescape(m[2])))
    return out


def format_series(name: str, labels: Iterable[tuple[str, str]]) -> str:
    """Canonical text of a series: ``name{a="1",b="x"}`` with labels sorted by name and
    values escaped; UTF-8 names that are not legacy-valid are quoted (``{"my.metric",a="1"}``)."""
    parts = [f'{k if _LEGACY_LNAME_RE.fullmatch(k) else chr(34) + _escape(k) + chr(34)}="{_escape(v)}"'
             for k, v in sorted(labels)]
    if _LEGACY_MNAME_RE.fullmatch(name):
        return f"{name}{{{','.join(parts)}}}" if parts else name
    return "{" + ",".join([f'"{_escape(name)}"', *parts]) + "}"


def _entity_name(pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return SYSTEM_ENTITY
    return ",".join(f"{k}={v}" if _BARE_ENTITY_VALUE_RE.fullmatch(v) else f'{k}="{_escape(v)}"'
                    for k, v in pairs)


def _family(name: str, types: dict[str, str]) -> tuple[str, str]:
    """(family name, type) of a sample name: histogram/summary samples carry a suffix."""
    typ = types.get(name)
    if typ is not None:
        return name, typ
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            typ = types.get(base)
            if typ == "histogram" or (typ == "summary" and suffix != "_bucket"):
                return base, typ
    return name, "untyped"


def _unit(name: str, family: str, typ: str) -> str:
    if typ in ("histogram", "summary") and name != family and not name.endswith("_sum"):
        return ""  # _bucket and _count are counts of observations
    stem = family[:-6] if family.endswith("_total") else family
    for unit in _UNIT_SUFFIXES:
        if stem.endswith("_" + unit):
            return unit
    return ""


# -- fetching ----------------------------------------------------------------------------
def _read_limited(read: Callable[[int], bytes], max_bytes: int, gzipped: bool,
                  before_chunk: Callable[[], None]) -> bytes:
    """Read until EOF; at most ``max_bytes`` on the wire and after gzip decoding."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    out = bytearray()
    wire = 0
    while True:
        before_chunk()
        chunk = read(65536)
        if not chunk:
            break
        wire += len(chunk)
        if wire > max_bytes:
            raise SourceError(f"oversize: response exceeds max_bytes={max_bytes}",
                              "Raise the reader option max_bytes, or scrape a smaller endpoint.")
        if inflate is not None:
            try:
                chunk = inflate.decompress(chunk, max_bytes + 1 - len(out))
            except zlib.error as exc:
                raise SourceError(f"http: bad gzip body ({exc})", "The server's gzip encoding is broken.") from exc
        out += chunk
        if len(out) > max_bytes:
            raise SourceError(f"oversize: body exceeds max_bytes={max_bytes} after decoding",
                              "Raise the reader option max_bytes, or scrape a smaller endpoint.")
    return bytes(out)


def http_fetch(url: str, timeout: float, max_bytes: int) -> bytes:
    """GET ``url``; the whole exchange must finish within ``timeout`` seconds.

    Raises ``SourceError`` (timeout, connection, HTTP status, oversize). Environment proxies
    are not used (exporters are local, as with Prometheus); redirects are not followed.
    """
    import http.client
    import socket

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline")
        return left

    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout)
    headers = {"Accept": ACCEPT, "Accept-Encoding": "gzip", "User-Agent": f"telemrec/{__version__}"}
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown = redact_url(url)
    try:
        conn.request("GET", target, headers=headers)
        sock = conn.sock  # kept: getresponse() drops conn.sock when the server closes after the reply
        sock.settimeout(remaining())
        resp = conn.getresponse()
        if resp.status != 200:
            snippet = resp.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
            raise SourceError(f"http: HTTP {resp.status} {resp.reason} from {shown}"
                              + (f": {snippet}" if snippet else ""),
                              "Check the exporter's log; a 5xx usually means its backend (DCGM) failed.",
                              status=resp.status)
        length = resp.getheader("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise SourceError(f"oversize: Content-Length {length} exceeds max_bytes={max_bytes}",
                              "Raise the reader option max_bytes, or scrape a smaller endpoint.")
        gzipped = (resp.getheader("Content-Encoding") or "").strip().lower() == "gzip"
        return _read_limited(resp.read1, max_bytes, gzipped, lambda: sock.settimeout(remaining()))
    except socket.timeout as exc:
        raise SourceError(f"timeout: no complete response from {shown} within {timeout:g} s",
                          "Raise the reader option timeout, or check that the exporter is not overloaded.") from exc
    except ConnectionRefusedError as exc:
        raise SourceError(f"connect: connection refused by {shown}",
                          "Start the exporter, or fix the host/port in --source.") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise SourceError(f"connect: {type(exc).__name__}: {exc} ({shown})",
                          "Check that the exporter is running and reachable from this host.") from exc
    finally:
        conn.close()


class _Rebuild(Exception):
    """An identity label turned out to vary: redo the scrape's records with it in the keys."""


class PrometheusReader(BaseReader):
    """Scrape a Prometheus text-format endpoint (or read a file) once per tick."""

    name = "prometheus"
    description = "Prometheus exposition format from an exporter URL (dcgm-exporter, node_exporter) or a file"
    source_help = "http(s) URL of a /metrics endpoint (e.g. http://localhost:9400/metrics) or a file path"
    options = {
        "entity_labels": f"comma-separated labels that name the entity (default {','.join(DEFAULT_ENTITY_LABELS)})",
        "identity_labels": f"comma-separated labels kept as identity while constant "
                           f"(default {','.join(DEFAULT_IDENTITY_LABELS)})",
        "timeout": f"seconds a scrape may take (default {DEFAULT_TIMEOUT:g})",
        "max_bytes": f"largest response read (default {DEFAULT_MAX_BYTES})",
        "once": "true: one scrape, then the reader ends (default false: a scrape every tick)",
    }
    OPTIONS = tuple(options)

    def __init__(self, fetch: Callable[[str, float, int], bytes] | None = None) -> None:
        super().__init__()
        self._fetch = fetch or http_fetch
        self._is_url = False
        self._source = ""
        self._done = False
        self._series: dict[tuple[str, str | None], tuple[str, str, str]] = {}
        self._identity: dict[str, dict[str, str]] = {}
        self._demoted: dict[str, set[str]] = {}
        self._fields = set(_SCRAPE_FIELDS)
        self._counters: set[str] = set()
        self._types: dict[str, str] = {}  # family -> declared TYPE, so the scrape can be served again as it was
        self._units = {k: u for k, (u, _) in _SCRAPE_FIELDS.items() if u}
        self._descriptions = {k: d for k, (_, d) in _SCRAPE_FIELDS.items()}
        self._caps: ReaderCaps | None = None
        self._version = ""

    # -- open ------------------------------------------------------------------------
    def _open(self, config: ReaderConfig) -> None:
        reject_unknown(config.options, self.OPTIONS, "prometheus")
        source = config.source
        if not source or not isinstance(source, str):
            raise UsageError("the prometheus reader needs a source",
                             "Pass --source http://HOST:PORT/metrics (dcgm-exporter: port 9400, "
                             "node_exporter: 9100) or the path of an exposition file.")
        self._entity_labels = list_option("entity_labels", config.option("entity_labels", DEFAULT_ENTITY_LABELS),
                                          example="gpu,UUID,GPU_I_ID")
        self._identity_labels = frozenset(list_option(
            "identity_labels", config.option("identity_labels", DEFAULT_IDENTITY_LABELS),
            example="modelName,Hostname")) - set(self._entity_labels)
        self._timeout = positive_float_option("timeout", config.option("timeout", DEFAULT_TIMEOUT),
                                              example=DEFAULT_TIMEOUT)
        self._max_bytes = int_option("max_bytes", config.option("max_bytes", DEFAULT_MAX_BYTES), minimum=1,
                                     example=DEFAULT_MAX_BYTES)
        self._once = bool_option("once", config.option("once", False))
        parts = urlsplit(source)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            try:
                parts.port  # noqa: B018 - property access validates the port
            except ValueError:
                raise UsageError(f"URL {redact_url(source)!r} has a bad port",
                                 "Use e.g. http://localhost:9400/metrics.") from None
            if not parts.hostname:
                raise UsageError(f"URL {redact_url(source)!r} has no host", "Use e.g. http://localhost:9400/metrics.")
            self._is_url = True
        elif "://" in source:
            raise UsageError(f"unsupported URL scheme {scheme!r} in {redact_url(source)!r}",
                             "Use an http:// or https:// URL, or a plain file path.")
        elif not os.path.isfile(source):
            raise SourceError(f"{source!r} is neither an http(s) URL nor an existing file",
                              "Pass http://HOST:PORT/metrics, or the path of a saved exposition "
                              "(e.g. curl -s http://localhost:9100/metrics > scrape.txt).", path=source)
        self._source = source

    # -- read --------------------------------------------------------------------------
    def _read(self) -> list[RawRecord] | None:
        if self._done:
            return None
        self._done = self._once
        mono, wall = time.monotonic_ns(), time.time_ns()
        t0 = time.perf_counter()
        body: bytes | None = None
        try:
            body = bytes(self._fetch(self._source, self._timeout, self._max_bytes) if self._is_url
                         else self._read_file())
        except SourceError as exc:
            return [self._failed(mono, wall, t0, body, exc.message)]
        except Exception as exc:  # an injected fetch may raise anything; the recorder must survive
            return [self._failed(mono, wall, t0, body, f"fetch: {type(exc).__name__}: {exc}")]
        try:
            exposition = parse_exposition(body.decode("utf-8"))
            while True:
                try:
                    records, duplicates = self._records(exposition, mono, wall)
                    break
                except _Rebuild:  # terminates: every rebuild follows a new demotion
                    self._series.clear()
        except UnicodeDecodeError as exc:
            return [self._failed(mono, wall, t0, body, f"parse: body is not UTF-8 ({exc.reason} at byte {exc.start})")]
        except SourceParseError as exc:
            return [self._failed(mono, wall, t0, body, f"parse: {exc.message}")]
        if len(self._series) > 4 * len(exposition.samples) + 1024:
            self._series.clear()  # bound the cache when series churn (pod labels, ...)
        records.append(self._scrape_record(mono, wall, {
            "up": 1, "scrape.duration_seconds": time.perf_counter() - t0, "scrape.bytes": len(body),
            "scrape.samples": len(exposition.samples), "scrape.duplicate_series": duplicates}, None))
        return records

    def _read_file(self) -> bytes:
        try:
            with open(self._source, "rb") as fh:
                data = fh.read(self._max_bytes + 1)
        except OSError as exc:
            raise SourceError(f"file: cannot read {self._source}: {exc.strerror or exc}",
                              "Check that the file still exists and is readable.") from exc
        if len(data) > self._max_bytes:
            raise SourceError(f"oversize: file exceeds max_bytes={self._max_bytes}",
                              "Raise the reader option max_bytes.")
        return data

    def _records(self, exposition: Exposition, mono: int, wall: int) -> tuple[list[RawRecord], int]:
        series = self._series
        per_entity: dict[str, dict[str, float | int]] = {}
        duplicates = 0
        for name, labels, value, timestamp in exposition.samples:
            resolved = series.get((name, labels))
            if resolved is None:
                resolved = series[(name, labels)] = self._resolve(name, labels, exposition)
            entity, key, ts_key = resolved
            fields = per_entity.get(entity)
            if fields is None:
                fields = per_entity[entity] = {}
            if key in fields:
                if self._demote(entity, self._colliding_identity_labels(entity, key, name, labels)):
                    raise _Rebuild
                duplicates += 1  # the same series twice: keep the first, as Prometheus does
                continue
            fields[key] = value
            if timestamp is not None:
                fields[ts_key] = timestamp
                if ts_key not in self._fields:
                    self._add_timestamp_field(ts_key)
        version = self._version
        return [RawRecord(mono, wall, entity, fields, self.name, version)
                for entity, fields in per_entity.items()], duplicates

    def _resolve(self, name: str, labels_text: str | None, exposition: Exposition) -> tuple[str, str, str]:
        """Entity, field key and timestamp key of a series seen for the first time."""
        labels = parse_labels(labels_text)
        by_name = dict(labels)
        entity = _entity_name([(k, by_name[k]) for k in self._entity_labels if k in by_name])
        known = self._identity.setdefault(entity, {})
        demoted = self._demoted.get(entity, ())
        rest = []
        for k, v in labels:
            if k in self._entity_labels:
                continue
            if k in self._identity_labels and k not in demoted:
                if known.setdefault(k, v) == v:
                    continue
                self._demote(entity, [k])
                raise _Rebuild
            rest.append((k, v))
        if not known:
            del self._identity[entity]
        key = format_series(name, rest)
        family, typ = _family(name, exposition.types)
        if family in exposition.types:
            self._types.setdefault(family, typ)
        if key not in self._fields:
            self._caps = None
            self._fields.add(key)
            if typ == "counter" or (typ in ("histogram", "summary") and name != family):
                self._counters.add(key)
            unit = _unit(name, family, typ)
            if unit:
                self._units[key] = unit
            help_text = exposition.helps.get(family, exposition.helps.get(name))
            if help_text:
                self._descriptions[key] = help_text
        if name.endswith("_build_info") and name != "go_build_info" and not self._version and "version" in by_name:
            self._version = f"{name[:-len('_build_info')]} {by_name['version']}"
        return entity, key, key + TIMESTAMP_SUFFIX

    def _add_timestamp_field(self, ts_key: str) -> None:
        self._caps = None
        self._fields.add(ts_key)
        self._units[ts_key] = "milliseconds"
        self._descriptions[ts_key] = "the exporter's timestamp of the sample, ms since the Unix epoch"

    def _colliding_identity_labels(self, entity: str, key: str, name: str, labels_text: str | None) -> set[str]:
        """Identity labels whose removal made two different series share ``key`` (one carries
        the label, the other does not). Empty for a true duplicate. Rare path: scans the cache."""
        mine = dict(parse_labels(labels_text))
        found: set[str] = set()
        for (other_name, other_text), (other_entity, other_key, _) in self._series.items():
            if other_entity == entity and other_key == key and other_name == name:
                found |= set(mine).symmetric_difference(dict(parse_labels(other_text)))
        return found & self._identity_labels

    def _demote(self, entity: str, labels: Iterable[str]) -> bool:
        """Put identity labels back into ``entity``'s keys for good; False if none was left."""
        demoted = self._demoted.setdefault(entity, set())
        new = set(labels) - demoted
        demoted |= new
        return bool(new)

    def _failed(self, mono: int, wall: int, t0: float, body: bytes | None, error: str) -> RawRecord:
        return self._scrape_record(mono, wall, {
            "up": 0, "scrape.duration_seconds": time.perf_counter() - t0,
            "scrape.bytes": None if body is None else len(body), "scrape.samples": None,
            "scrape.duplicate_series": None}, error)

    def _scrape_record(self, mono: int, wall: int, fields: dict[str, Any], error: str | None) -> RawRecord:
        return RawRecord(mono, wall, SCRAPE_ENTITY, fields, self.name, self._version, error)

    # -- metadata ----------------------------------------------------------------------
    @property
    def caps(self) -> ReaderCaps:
        if self._caps is None:
            self._caps = ReaderCaps(
                kind="prometheus",
                fields=frozenset(self._fields),
                units=dict(self._units),
                descriptions=dict(self._descriptions),
                counters=frozenset(self._counters),
                dynamic_fields=True,
            )
        return self._caps

    @property
    def source_version(self) -> str:
        return self._version

    def identity(self) -> dict[str, Any]:
        if not self._source:
            return {}
        varying = {e: sorted(ls) for e, ls in sorted(self._demoted.items()) if ls}
        target = {
            "kind": "http" if self._is_url else "file",
            "exporter": self._version,
            "entity_labels": list(self._entity_labels),
            "identity_labels": sorted(self._identity_labels),
            "varying_identity_labels": varying,
        }
        return {"targets": {redact_url(self._source): target},
                "entities": {e: dict(sorted(ls.items())) for e, ls in sorted(self._identity.items())},
                "types": dict(sorted(self._types.items()))}
