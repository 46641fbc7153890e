"""The worker's own HTTP endpoints: ``/metrics``, ``/healthz``, ``/readyz``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .telemetry import Registry

__all__ = ["serve"]


def serve(listen: str, registry: Registry, healthy: Callable[[], bool],
          ready: Callable[[], bool]) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; returns the server (its port may be chosen)."""
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, registry.render(), "text/plain; version=0.0.4")
            elif self.path == "/healthz":
                ok = healthy()
                self._send(200 if ok else 503, "ok\n" if ok else "stuck\n")
            elif self.path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, "ready\n" if ok else "not ready\n")
            else:
                self._send(404, "not found\n")

        def _send(self, status: int, body: str, ctype: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            del format, args  # one line per request would drown the worker's own log

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port or 0)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ferryman-http", daemon=True).start()
    return server
