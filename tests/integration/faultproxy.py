"""A fault-injecting HTTP proxy between a worker and a real backend.

The proxy is a real HTTP/1.1 server on 127.0.0.1, served from a thread. Every request
is forwarded unchanged (method, path, query, headers, body) to the backend, and the
backend's answer is passed back unchanged (status, headers, raw body, so a gzip answer
stays gzip). A test may instead tell it to answer the next N requests (or every request
until :meth:`FaultProxy.heal`) with a status of its choosing, a ``Retry-After`` and a
body shaped like that backend's own error.

It stands in for the backend's own failure modes that a test cannot bring about on
demand (an overloaded node answering 503, a rate limit answering 429, a refusal whose
cause is hard to stage). It never stores, rewrites or invents data: what a sink
delivers always lands in the real backend, and a refused request reaches nothing.

Usage::

    with FaultProxy(stack("prometheus", "http")) as proxy:
        proxy.fail(503, path="/api/v1/write")          # until healed
        proxy.fail(429, times=2, retry_after=1)         # then two 429s
        proxy.heal()                                    # forward everything again
        proxy.pass_through(1); proxy.fail(503)          # one request in, then 503s
        proxy.refused(429)                              # the 429s answered so far
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx

__all__ = ["Exchange", "Fault", "FaultProxy"]

#: Headers that describe one connection, not the message: never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass(frozen=True, slots=True)
class Fault:
    """Answer matching requests with ``status`` instead of forwarding them (a status of
    None forwards them: a pass that lets ``times`` requests through before the faults
    armed after it).

    ``times``: how many requests to answer so (None: every one until healed);
    ``path``: only requests whose path (without the query) contains it (None: all).
    """

    status: int | None
    times: int | None = None
    retry_after: str | None = None
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    path: str | None = None

    def matches(self, path: str) -> bool:
        return self.path is None or self.path in path


@dataclass(slots=True)
class _Armed:
    """A fault and how many more requests it answers (None: until healed)."""

    fault: Fault
    left: int | None


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request the proxy answered: ``injected`` when a fault answered it."""

    method: str
    path: str
    status: int
    injected: bool
    at: float


class FaultProxy:
    """Forwards to ``backend`` (``scheme://host:port``; any path in it is ignored)."""

    def __init__(self, backend: str, *, timeout_s: float = 60.0) -> None:
        parts = urlsplit(backend)
        self.backend = f"{parts.scheme}://{parts.netloc}"
        self._client = httpx.Client(base_url=self.backend, timeout=timeout_s)
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._exchanges: list[Exchange] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"faultproxy-{self.port}", daemon=True
        )
        self._thread.start()

    # ---- what a test tells it ------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        times: int | None = None,
        retry_after: int | None = None,
        body: bytes | str = b"",
        content_type: str = "text/plain; charset=utf-8",
        path: str | None = None,
        replace: bool = False,
    ) -> Fault:
        """Answer the next ``times`` matching requests (None: all until :meth:`heal`)
        with ``status``; faults added earlier are used up first, unless ``replace``
        drops them (in the same step, so no request slips through in between)."""
        fault = Fault(
            status,
            times,
            None if retry_after is None else str(retry_after),
            body.encode() if isinstance(body, str) else body,
            content_type,
            path,
        )
        with self._lock:
            if replace:
                self._armed.clear()
            self._armed.append(_Armed(fault, times))
        return fault

    def pass_through(self, times: int, *, path: str | None = None) -> Fault:
        """Forward the next ``times`` matching requests before the faults armed after
        this call: ``pass_through(1); fail(503)`` lets one write in, then fails."""
        fault = Fault(None, times, path=path)
        with self._lock:
            self._armed.append(_Armed(fault, times))
        return fault

    def heal(self) -> None:
        """Forward every request again."""
        with self._lock:
            self._armed.clear()

    # ---- what it saw ---------------------------------------------------------------------

    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    def refused(self, status: int | None = None) -> list[Exchange]:
        """The requests a fault answered (with ``status``, if given), oldest first."""
        return [
            e for e in self.exchanges() if e.injected and (status is None or e.status == status)
        ]

    def forwarded(self, path: str | None = None) -> list[Exchange]:
        """The requests the backend answered (whose path contains ``path``, if given)."""
        return [e for e in self.exchanges() if not e.injected and (path is None or path in e.path)]

    # ---- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- serving -------------------------------------------------------------------------

    def _take(self, path: str) -> Fault | None:
        """The fault that answers a request for ``path``, counting it used."""
        with self._lock:
            for armed in self._armed:
                if not armed.fault.matches(path):
                    continue
                if armed.left is not None:
                    armed.left -= 1
                    if armed.left <= 0:
                        self._armed.remove(armed)
                return armed.fault
        return None

    def _note(self, method: str, path: str, status: int, injected: bool) -> None:
        with self._lock:
            self._exchanges.append(Exchange(method, path, status, injected, time.monotonic()))

    def _forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        request = self._client.build_request(
            method,
            target,
            content=body,
            headers=[(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP],
        )
        # build_request adds Accept-Encoding and friends when the caller did not send
        # them; take them out again so the backend sees the caller's headers only.
        sent = {k.lower() for k, _ in headers}
        for name in ("accept", "accept-encoding", "user-agent", "connection"):
            if name not in sent and name in request.headers:
                del request.headers[name]
        response = self._client.send(request, stream=True)
        try:
            raw = b"".join(_raw(response))
        finally:
            response.close()
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _HOP_BY_HOP]
        return response.status_code, kept, raw

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                body = self._body()
                path = urlsplit(self.path).path
                fault = proxy._take(path)
                if fault is not None and fault.status is not None:
                    proxy._note(self.command, path, fault.status, True)
                    headers = [("Content-Type", fault.content_type)]
                    if fault.retry_after is not None:
                        headers.append(("Retry-After", fault.retry_after))
                    self._answer(fault.status, headers, fault.body)
                    return
                try:
                    status, headers, raw = proxy._forward(
                        self.command, self.path, list(self.headers.items()), body
                    )
                except httpx.TransportError as exc:
                    # The backend itself is unreachable: say so the way a gateway does.
                    status, headers, raw = 502, [], f"faultproxy: {exc!r}".encode()
                proxy._note(self.command, path, status, False)
                self._answer(status, headers, raw)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline().strip():  # trailers
                                pass
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        return Handler


def _raw(response: httpx.Response) -> Iterator[bytes]:
    """The body as the backend sent it (still compressed, if it was)."""
    yield from response.iter_raw()
