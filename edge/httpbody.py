"""Reading a request body off an HTTP/1.1 connection, within a limit: by
``Content-Length`` or ``Transfer-Encoding: chunked`` (Loki and OTLP clients send
either), for the receivers built on :mod:`http.server`."""

from __future__ import annotations

from typing import Protocol

__all__ = ["BodyFramingError", "BodyTooLargeError", "read_body"]


class _Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def readline(self, size: int, /) -> bytes: ...


class _Headers(Protocol):
    def get(self, name: str, /) -> str | None: ...


class BodyTooLargeError(Exception):
    """The body is longer than the limit; nothing past it was read (close the
    connection after answering)."""


class BodyFramingError(Exception):
    """The body's length or chunks do not add up (answer 400 and close the
    connection)."""


def read_body(rfile: _Reader, headers: _Headers, limit: int) -> bytes:
    """The body of the request whose ``headers`` were read from ``rfile``.

    Raises BodyTooLargeError past ``limit`` bytes (checked against Content-Length
    before reading, and chunk by chunk), BodyFramingError when neither a length nor
    chunks are given or they end early. Trailers of a chunked body are read and
    ignored."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        return _read_chunks(rfile, limit)
    header = (headers.get("Content-Length") or "").strip()
    if not header.isdigit():
        raise BodyFramingError("a Content-Length or chunked body is required")
    length = int(header)
    if length > limit:
        raise BodyTooLargeError(f"a body of {length} bytes, above {limit}")
    body = rfile.read(length)
    if len(body) < length:
        raise BodyFramingError("the body ended early")
    return body


def _read_chunks(rfile: _Reader, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(1024)
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise BodyFramingError("a chunk size is not hex") from None
        if size < 0:
            raise BodyFramingError("a chunk size is negative")
        if size == 0:
            while rfile.readline(1024).strip():  # trailers, ignored
                pass
            return b"".join(parts)
        total += size
        if total > limit:
            raise BodyTooLargeError(f"a chunked body above {limit} bytes")
        chunk = rfile.read(size)
        if len(chunk) < size or rfile.readline(4) != b"\r\n":
            raise BodyFramingError("a chunk ended early")
        parts.append(chunk)
