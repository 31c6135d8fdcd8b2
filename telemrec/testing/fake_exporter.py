"""``FakeExporter``: a real HTTP server on 127.0.0.1 that serves Prometheus captures.

Each GET of ``path`` serves the next capture (cycling), so a test or a script can replay a
recorded sequence of scrapes through real sockets::

    with FakeExporter(["tick1.txt contents", "tick2.txt contents"]) as exporter:
        reader.open(ReaderConfig(source=exporter.url))

Misbehaviour for error-path tests is set at construction or later with ``configure()``:
``status`` (e.g. 500), ``delay`` (seconds before the response), ``trickle`` (seconds between
64-byte pieces of the body), ``gzip`` (compress when the client accepts it), ``send_length``
(False: no Content-Length, the body ends when the connection closes).

From a shell: ``python -m telemrec.testing.fake_exporter [--port N] FILE...``.
"""

from __future__ import annotations

import gzip as gzip_module
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable

__all__ = ["FakeExporter", "TEXT_CONTENT_TYPE"]

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _as_bytes(capture: str | bytes) -> bytes:
    return capture.encode("utf-8") if isinstance(capture, str) else bytes(capture)


class FakeExporter:
    """Serve captures over HTTP on 127.0.0.1 (an ephemeral port unless ``port`` is given)."""

    def __init__(self, captures: str | bytes | Iterable[str | bytes] = "", *, path: str = "/metrics",
                 port: int = 0, status: int = 200, delay: float = 0.0, trickle: float = 0.0,
                 gzip: bool = False, send_length: bool = True, content_type: str = TEXT_CONTENT_TYPE) -> None:
        self.path = path
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests = 0
        self.request_headers: list[dict[str, str]] = []
        self.configure(captures, status=status, delay=delay, trickle=trickle, gzip=gzip,
                       send_length=send_length, content_type=content_type)

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], **kwargs) -> "FakeExporter":
        return cls([Path(p).read_bytes() for p in paths], **kwargs)

    def configure(self, captures: str | bytes | Iterable[str | bytes] | None = None, *,
                  status: int | None = None, delay: float | None = None, trickle: float | None = None,
                  gzip: bool | None = None, send_length: bool | None = None,
                  content_type: str | None = None) -> None:
        """Change what the next requests get; arguments left as None keep their value."""
        with self._lock:
            if captures is not None:
                items = [captures] if isinstance(captures, (str, bytes)) else list(captures)
                self._captures = [_as_bytes(c) for c in items] or [b""]
                self._next = 0
            if status is not None:
                self.status = status
            if delay is not None:
                self.delay = delay
            if trickle is not None:
                self.trickle = trickle
            if gzip is not None:
                self.gzip = gzip
            if send_length is not None:
                self.send_length = send_length
            if content_type is not None:
                self.content_type = content_type

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "FakeExporter":
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="FakeExporter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in delay/trickle
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> "FakeExporter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeExporter is not running; use it as a context manager or call start()")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    # -- serving ---------------------------------------------------------------------------
    def _take(self) -> tuple[bytes, int, float, float, bool, bool, str]:
        with self._lock:
            body = self._captures[self._next % len(self._captures)]
            self._next += 1
            self.requests += 1
            return body, self.status, self.delay, self.trickle, self.gzip, self.send_length, self.content_type

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] != exporter.path:
                    self.send_error(404, "only " + exporter.path + " is served")
                    return
                with exporter._lock:
                    exporter.request_headers.append(dict(self.headers.items()))
                body, status, delay, trickle, use_gzip, send_length, content_type = exporter._take()
                if delay and exporter._stopping.wait(delay):
                    return
                if use_gzip and "gzip" in (self.headers.get("Accept-Encoding") or ""):
                    body = gzip_module.compress(body)
                else:
                    use_gzip = False
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type if status == 200 else "text/plain; charset=utf-8")
                    if send_length:
                        self.send_header("Content-Length", str(len(body)))
                    if use_gzip:
                        self.send_header("Content-Encoding", "gzip")
                    self.end_headers()
                    if not trickle:
                        self.wfile.write(body)
                        return
                    for start in range(0, len(body), 64):
                        self.wfile.write(body[start:start + 64])
                        self.wfile.flush()
                        if exporter._stopping.wait(trickle):
                            return
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up (timeout, oversize): expected in error-path tests

            def log_message(self, format: str, *args: object) -> None:
                return  # keep test output clean

        return Handler


def main(argv: list[str] | None = None) -> int:
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Serve Prometheus captures on 127.0.0.1, one per request, cycling.")
    parser.add_argument("files", nargs="+", help="exposition files (e.g. curl -s host:9100/metrics > f.txt)")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--path", default="/metrics")
    args = parser.parse_args(argv)
    with FakeExporter.from_files(args.files, port=args.port, path=args.path) as exporter:
        print(exporter.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
