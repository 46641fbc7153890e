"""Synthetic scrape targets for the benchmarks: N ports, each serving S series.

Each target's body is rendered once (values change every second so nothing can
cache a whole scrape); serving costs the same for every peer scraping it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from functools import partial

HEADER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %d\r\n\r\n"


def render(target: int, series: int, tick: int) -> bytes:
    lines = ["# HELP bench_requests_total Requests.", "# TYPE bench_requests_total counter"]
    per_family = max(1, series // 10)
    for family in range(10):
        name = f"bench_metric_{family}_total"
        lines.append(f"# TYPE {name} counter")
        for i in range(per_family):
            lines.append(
                f'{name}{{target="{target}",shard="{i % 16}",path="/api/v{family}/'
                f'item/{i}",method="GET"}} {tick * 1000 + i}'
            )
    return ("\n".join(lines) + "\n").encode()


SERVED = {"scrapes": 0}


async def serve(first_port: int, targets: int, series: int) -> None:
    """Targets on first_port..; GET on first_port - 1 answers the scrape count so far."""
    bodies: dict[int, bytes] = {}
    tick = {"value": -1}

    def body(target: int) -> bytes:
        now = int(time.time())
        if now != tick["value"]:
            tick["value"] = now
            bodies.clear()
        if target not in bodies:
            payload = render(target, series, now)
            bodies[target] = HEADER % len(payload) + payload
        return bodies[target]

    async def handle(
        target: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                if not request:
                    break
                if target < 0:
                    text = str(SERVED["scrapes"]).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text)
                    )
                else:
                    SERVED["scrapes"] += 1
                    writer.write(body(target))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    servers = [
        await asyncio.start_server(lambda r, w: handle(-1, r, w), "127.0.0.1", first_port - 1)
    ]
    for t in range(targets):
        servers.append(await asyncio.start_server(partial(handle, t), "127.0.0.1", first_port + t))
    print(
        f"serving {targets} targets x {series} series on ports "
        f"{first_port}-{first_port + targets - 1}",
        flush=True,
    )
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
