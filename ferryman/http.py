"""A tiny HTTP server for a process's own ``/metrics`` and health endpoints."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import generate_latest

from .telemetry import CONTENT_TYPE, Registry

__all__ = ["Check", "serve"]

#: A health check: True when healthy.
Check = Callable[[], bool]


def serve(listen: str, registry: Registry, checks: Mapping[str, Check]) -> ThreadingHTTPServer:
    """Serve ``/metrics`` and each ``checks`` path (200 when it passes, else 503) from a
    daemon thread; returns the server (``server_address`` tells a port chosen as 0)."""
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(registry.collector_registry), CONTENT_TYPE)
            elif self.path in checks:
                ok = checks[self.path]()
                self._send(200 if ok else 503, "OK\n" if ok else "not OK\n")
            else:
                self._send(404, "not found\n")

        def _send(self, status: int, body: str | bytes, ctype: str = "text/plain") -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            del format, args  # one line per request would drown the process's own log

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port or 0)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ferryman-http", daemon=True).start()
    return server
