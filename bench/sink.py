"""A remote-write receiver that accepts and counts requests, so peers have somewhere
to ship; it decodes nothing, to stay cheap next to what is measured."""

from __future__ import annotations

import asyncio
import sys

COUNTS = {"requests": 0, "bytes": 0}


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
                text = f"{COUNTS['requests']} {COUNTS['bytes']}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
            else:
                COUNTS["requests"] += 1
                COUNTS["bytes"] += len(body)
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
    asyncio.run(main(int(sys.argv[1])))
