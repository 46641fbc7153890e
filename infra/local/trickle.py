"""A trickle of requests to HotROD, so ``ferryman up`` shows a real application's
traces: ``python -m infra.local.trickle --frontend URL --every SECONDS --listen H:P``.

Every ``--every`` seconds it asks HotROD's frontend for a ride (``GET /dispatch``),
cycling through the customers HotROD's simulated database knows. ``/healthz`` on
``--listen`` answers 200 with the counts once HotROD answered one request (and 503
before), so the supervisor can tell it runs.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

__all__ = ["main"]

#: The customer ids HotROD's simulated database holds (others answer 500).
CUSTOMERS = (123, 392, 731, 567)


class _Counts:
    def __init__(self) -> None:
        self.answered = 0
        self.failed = 0
        self.last_error = ""


def _serve(listen: str, counts: _Counts) -> ThreadingHTTPServer:
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/healthz" and counts.answered > 0
            body = (
                f"answered {counts.answered}\nfailed {counts.failed}\n"
                f"last error {counts.last_error or '-'}\n"
            ).encode()
            self.send_response(200 if ok else 503 if self.path == "/healthz" else 404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer((host, int(port)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.trickle", description=__doc__)
    parser.add_argument("--frontend", required=True, help="HotROD's frontend, http://H:P")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between rides")
    parser.add_argument("--listen", required=True, help="host:port of /healthz")
    args = parser.parse_args(argv)
    counts = _Counts()
    server = _serve(args.listen, counts)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with httpx.Client(timeout=30) as client:
        for customer in itertools.cycle(CUSTOMERS):
            try:
                response = client.get(
                    f"{args.frontend}/dispatch", params={"customer": str(customer)}
                )
                if response.status_code == 200:
                    counts.answered += 1
                else:
                    counts.failed += 1
                    counts.last_error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                counts.failed += 1
                counts.last_error = type(exc).__name__
            # Quicker while HotROD starts, so the first ride is not a full period late.
            if stop.wait(args.every if counts.answered else 1.0):
                break
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
