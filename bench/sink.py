"""A remote-write receiver that accepts and counts requests, so peers have somewhere
to ship; it decodes nothing, to stay cheap next to what is measured. With
``--samples`` it also counts the samples of bodies whose values are all
``bench.gateway.VALUES`` (snappy decompression and a byte count per value).

``GET /count`` answers ``REQUESTS BYTES SAMPLES``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

COUNTS = {"requests": 0, "bytes": 0, "samples": 0}
#: counts the samples of a request body, with ``--samples``
SAMPLES: list[Callable[[bytes], int]] = []


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            if head.startswith(b"GET /count"):
                text = f"{COUNTS['requests']} {COUNTS['bytes']} {COUNTS['samples']}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
            else:
                COUNTS["requests"] += 1
                COUNTS["bytes"] += len(body)
                for count in SAMPLES:
                    COUNTS["samples"] += count(body)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    await asyncio.start_server(handle, "127.0.0.1", port)
    print(f"remote-write sink on {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if "--samples" in sys.argv[2:]:
        from bench.gateway import count_samples
        from ferryman.wire.remote_write import snappy_decompress

        SAMPLES.append(lambda body: count_samples(snappy_decompress(body)))
    asyncio.run(main(int(sys.argv[1])))
