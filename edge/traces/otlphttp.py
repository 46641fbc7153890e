"""OTLP/HTTP: ``POST /v1/traces`` with a protobuf or JSON body, plain or gzip.

Answers (OTLP specification, "OTLP/HTTP"), in the request's content type and
encoding:

- 200 and an ``ExportTraceServiceResponse`` once Kafka acknowledged every span
  (``partial_success`` names the spans the limits refused);
- 400 for a body that does not decode (never retried by clients), or whose
  ``Content-Length`` or chunks do not add up (then the connection is closed);
- 401 without the configured bearer token;
- 404 for another path, 405 for another method;
- 413 for a body above ``max_request_bytes``, before or after gzip (decompression
  stops at the limit: a small bomb never becomes a large allocation);
- 415 for a content type other than ``application/x-protobuf`` and
  ``application/json``, or an encoding other than gzip;
- 503 with ``Retry-After`` when Kafka is away or slow or too many requests wait.

A thread per connection (keep-alive); TLS handshakes happen on that thread.
"""

from __future__ import annotations

import gzip
import logging
import socket
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge.httpbody import BodyFramingError, BodyTooLargeError, read_body
from ferryman.wire.otlp import OtlpDecodeError, decode_json, decode_protobuf

from .answers import JSON, PROTOBUF, error_body, response_body
from .config import token_matches
from .intake import BusyError, Intake

__all__ = ["HttpListener"]

log = logging.getLogger("ferryman.edge.traces")

PATH = "/v1/traces"
_TRANSPORT = "http"
# gRPC code numbers for the google.rpc.Status of an error body
_INVALID_ARGUMENT = 3
_UNAUTHENTICATED = 16
_UNAVAILABLE = 14
_RESOURCE_EXHAUSTED = 8
_UNIMPLEMENTED = 12
_NOT_FOUND = 5


class _TooLargeError(Exception):
    pass


def gunzip(body: bytes, limit: int) -> bytes:
    """``body`` decompressed; _TooLargeError past ``limit`` bytes, OtlpDecodeError when
    it is not gzip."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise OtlpDecodeError(f"not gzip: {exc}") from None
    if len(out) > limit:
        raise _TooLargeError
    if not inflater.eof:
        raise OtlpDecodeError("gzip body is truncated")
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Clients of a busy receiver connect in bursts.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], listener: HttpListener) -> None:
        self.listener = listener
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        context = self.listener.tls
        if context is not None:
            try:
                request.settimeout(30)
                request = context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                self.listener.intake.metrics.errors.labels(
                    error_type="tls_handshake", stage="http"
                ).inc()
                log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Mostly a client that went away mid-request: counted, not logged with a trace.
        exc = sys.exc_info()[1]
        name = type(exc).__name__ if exc is not None else "unknown"
        self.listener.intake.metrics.errors.labels(error_type=name, stage="http").inc()
        if not isinstance(exc, OSError):
            log.error("OTLP/HTTP request from %s failed: %s: %s", client_address[0], name, exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    server: _Server

    def do_POST(self) -> None:
        started = time.monotonic()
        listener = self.server.listener
        intake = listener.intake
        status = self._post(listener, intake)
        intake.metrics.requests.labels(transport=_TRANSPORT, status=str(status)).inc()
        intake.metrics.latency.labels(transport=_TRANSPORT).observe(time.monotonic() - started)

    def do_GET(self) -> None:
        self._fail(405, _UNIMPLEMENTED, "use POST", PROTOBUF, gzipped=False)

    def _post(self, listener: HttpListener, intake: Intake) -> int:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        answer_type = content_type if content_type in (PROTOBUF, JSON) else PROTOBUF
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        gzipped = encoding == "gzip"
        if self.path.split("?")[0] != PATH:
            return self._fail(
                404,
                _NOT_FOUND,
                f"no {self.path}; OTLP traces go to {PATH}",
                answer_type,
                gzipped=False,
                drain=True,
            )
        limits = intake.config.ferryman.limits
        token = listener.token
        if token is not None and not token_matches(token, self.headers.get("Authorization")):
            intake.metrics.errors.labels(error_type="unauthenticated", stage="http").inc()
            return self._fail(
                401,
                _UNAUTHENTICATED,
                "missing or wrong bearer token",
                answer_type,
                gzipped=False,
                drain=True,
            )
        if content_type not in (PROTOBUF, JSON):
            return self._fail(
                415,
                _INVALID_ARGUMENT,
                f"content type {content_type!r}: use {PROTOBUF} or {JSON}",
                PROTOBUF,
                gzipped=False,
                drain=True,
            )
        if encoding not in ("gzip", "identity"):
            return self._fail(
                415,
                _INVALID_ARGUMENT,
                f"content encoding {encoding!r}: use gzip or none",
                answer_type,
                gzipped=False,
                drain=True,
            )
        try:
            body = read_body(self.rfile, self.headers, limits.max_request_bytes)
        except BodyTooLargeError:
            return self._too_large(limits.max_request_bytes, answer_type, close=True)
        except BodyFramingError as exc:
            return self._fail(400, _INVALID_ARGUMENT, str(exc), answer_type, False, close=True)
        try:
            if gzipped:
                body = gunzip(body, limits.max_request_bytes)
            request = decode_json(body) if content_type == JSON else decode_protobuf(body)
        except _TooLargeError:
            return self._too_large(limits.max_request_bytes, answer_type, close=False)
        except OtlpDecodeError as exc:
            intake.undecodable(_TRANSPORT, self.client_address[0], str(exc)[:200])
            return self._fail(400, _INVALID_ARGUMENT, str(exc)[:500], answer_type, gzipped)
        try:
            accepted = intake.export(
                request, _TRANSPORT, listener.attributes_of(self.client_address[0])
            )
        except BusyError as exc:
            return self._fail(
                503, _UNAVAILABLE, str(exc), answer_type, gzipped, retry_after=exc.retry_after
            )
        self._send(200, response_body(accepted, answer_type), answer_type, gzipped)
        return 200

    def _too_large(self, limit: int, answer_type: str, *, close: bool) -> int:
        self.server.listener.intake.metrics.errors.labels(
            error_type="too_large", stage="http"
        ).inc()
        message = f"request body larger than max_request_bytes ({limit})"
        return self._fail(
            413, _RESOURCE_EXHAUSTED, message, answer_type, gzipped=False, close=close
        )

    def _fail(
        self,
        status: int,
        code: int,
        message: str,
        content_type: str,
        gzipped: bool,
        *,
        retry_after: float | None = None,
        drain: bool = False,
        close: bool = False,
    ) -> int:
        if drain:
            self._drain()
        if close:
            self.close_connection = True
        body = error_body(code, message, content_type, retry_after)
        extra = {}
        if retry_after is not None:
            extra["Retry-After"] = str(max(1, round(retry_after)))
        self._send(status, body, content_type, gzipped, extra)
        return status

    def _drain(self) -> None:
        """Read a refused request's body so the connection can serve the next one; a
        body too large to bother with closes the connection instead."""
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit() or int(length) > 2**20:
            self.close_connection = True
            return
        self.rfile.read(int(length))

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        gzipped: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        if gzipped:
            body = gzip.compress(body, compresslevel=1)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        del format, args  # a line per request would drown the process's own log


class HttpListener:
    """Serves OTLP/HTTP on ``listen`` from daemon threads until :meth:`close`."""

    def __init__(
        self,
        listen: str,
        intake: Intake,
        *,
        tls: ssl.SSLContext | None = None,
        token: bytes | None = None,
        attributes_of: Callable[[str], dict[str, str] | None] | None = None,
    ) -> None:
        self.intake = intake
        self.tls = tls
        self.token = token
        self._attributes_of = attributes_of
        host, _, port = listen.rpartition(":")
        self.server = _Server((host.strip("[]") or "0.0.0.0", int(port)), self)
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="ferryman-otlp-http", daemon=True
        )

    def attributes_of(self, peer: str) -> dict[str, str] | None:
        return self._attributes_of(peer) if self._attributes_of is not None else None

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
