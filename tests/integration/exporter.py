"""A real HTTP exporter for tests: serves exposition text the test controls."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Body = Callable[[int], tuple[int, str, bytes]]  # scrape count -> status, content type, body

TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Exporter:
    """Serves each path from a function of the number of scrapes of that path so far."""

    def __init__(self) -> None:
        self.routes: dict[str, Body] = {}
        self.counts: dict[str, int] = {}
        self.headers: dict[str, dict[str, str]] = {}  # the last request's, by path
        self._lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with exporter._lock:
                    n = exporter.counts.get(path, 0) + 1
                    exporter.counts[path] = n
                    exporter.headers[path] = dict(self.headers.items())
                route = exporter.routes.get(path)
                status, ctype, body = route(n) if route else (404, "text/plain", b"no route\n")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
