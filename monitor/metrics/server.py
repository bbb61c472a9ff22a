"""The HTTP side of the metrics endpoint: `/metrics` (Prometheus or OpenMetrics text, as the scraper
asks) and `/healthz`, served from a thread so a slow scrape never holds up the hub's loop."""

from __future__ import annotations

import errno
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from monitor.errors import RunwatchError
from monitor.metrics.exporter import SnapshotCollector, make_registry

DEFAULT_ADDR = "127.0.0.1:9464"
"""Where `--metrics-addr` listens when given without a value (OpenTelemetry's Prometheus port)."""


def parse_addr(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[::1]:PORT` or `:PORT` (all interfaces) as (host, port); RunwatchError if not."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise RunwatchError(f"not HOST:PORT: {text!r}", title="Bad --metrics-addr")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    collector: SnapshotCollector


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._reply(200, encoder(self.server.registry), content_type)
        elif path == "/healthz":
            ok = self.server.collector.ready
            self._reply(200 if ok else 503, b"ok\n" if ok else b"starting\n", "text/plain; charset=utf-8")
        else:
            self._reply(404, b"runwatch: /metrics and /healthz\n", "text/plain; charset=utf-8")

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not news: no line per request."""


class MetricsServer:
    """Serves a collector's metrics on (host, port); binds in the constructor so a port in use
    fails before anything else starts."""

    def __init__(self, addr: str, collector: SnapshotCollector | None = None) -> None:
        host, port = parse_addr(addr)
        self.collector = collector or SnapshotCollector()
        try:
            server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
        except OSError as e:
            why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise RunwatchError(f"cannot listen on {addr}: {why}", title="Metrics endpoint") from None
        server.registry = make_registry(self.collector)
        server.collector = self.collector
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="runwatch-metrics", daemon=True)

    @property
    def address(self) -> str:
        """`host:port` actually bound (the port chosen when 0 was asked for)."""
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
