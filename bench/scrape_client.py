"""CPU per scrape of the HTTP clients the metrics shipper could use (not a test).

``python -m bench.scrape_client [--series 1000] [--scrapes 2000] [--targets 1]``

One synthetic target (``bench.targets.render``: ``--series`` counter series) is
served from a separate process, gzip-compressed when the request accepts it, over
keep-alive. In this process each client fetches the body the way the shipper's
``ScrapeLoop._fetch`` does: a streamed GET with the scrape headers and an
``Accept-Encoding: gzip``, the body read in chunks against a size limit, decoded, and
joined, under ``asyncio.timeout``. Only this process's CPU (``time.process_time``)
is counted, after a warm-up; the server's is not. ``--targets N`` runs N loops at once,
each with its own client and connection, as the shipper does per target.

Clients: ``httpx`` (httpx.AsyncClient, its own transport), ``aiohttp``
(aiohttp.ClientSession), and ``httpx+aiohttp`` (httpx with the aiohttp transport of
the ``httpx-aiohttp`` package) when that package is importable.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.targets import render

LIMIT = 64 << 20
HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    "Accept-Encoding": "gzip",  # "identity" with --plain
    "User-Agent": "ferryman-edge/0.1",
    "X-Prometheus-Scrape-Timeout-Seconds": "4",
}


# ---- the target ---------------------------------------------------------------------


async def _serve(port: int, series: int) -> None:
    plain = render(0, series, 1)
    packed = gzip.compress(plain, 6)

    def response(body: bytes, encoding: bytes) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            + encoding
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )

    gz = response(packed, b"Content-Encoding: gzip\r\n")
    raw = response(plain, b"")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                writer.write(gz if b"gzip" in request.lower() else raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print(f"serving {series} series ({len(plain)} bytes, {len(packed)} gzipped)", flush=True)
    async with server:
        await server.serve_forever()


# ---- the clients, each fetching as ScrapeLoop._fetch does ----------------------------

Fetch = Callable[[], Awaitable[tuple[bytes, str]]]


async def _httpx(url: str, transport: Any = None) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    import httpx

    client = httpx.AsyncClient(
        follow_redirects=True,
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
        transport=transport,
    )

    async def fetch() -> tuple[bytes, str]:
        async with asyncio.timeout(4):
            async with client.stream("GET", url, headers=HEADERS) as response:
                if response.status_code != 200:
                    raise RuntimeError(response.status_code)
                chunks = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > LIMIT:
                        raise RuntimeError("too large")
                    chunks.append(chunk)
                return b"".join(chunks), response.headers.get("content-type", "")

    return fetch, client.aclose


async def _httpx_aiohttp(url: str) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    from httpx_aiohttp import AiohttpTransport

    return await _httpx(url, AiohttpTransport())


async def _aiohttp(url: str) -> tuple[Fetch, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), auto_decompress=True)

    async def fetch() -> tuple[bytes, str]:
        async with asyncio.timeout(4):
            async with session.get(url, headers=HEADERS) as response:
                if response.status != 200:
                    raise RuntimeError(response.status)
                chunks = []
                size = 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > LIMIT:
                        raise RuntimeError("too large")
                    chunks.append(chunk)
                return b"".join(chunks), response.headers.get("content-type", "")

    return fetch, session.close


CLIENTS: dict[str, Callable[[str], Awaitable[tuple[Fetch, Callable[[], Awaitable[None]]]]]] = {
    "httpx": _httpx,
    "aiohttp": _aiohttp,
    "httpx+aiohttp": _httpx_aiohttp,
}


async def _measure(name: str, url: str, scrapes: int, targets: int, size: int) -> dict[str, Any]:
    pairs = [await CLIENTS[name](url) for _ in range(targets)]

    async def loop(fetch: Fetch, n: int) -> None:
        for _ in range(n):
            body, _ = await fetch()
            assert len(body) == size, (len(body), size)

    try:
        await asyncio.gather(*(loop(f, max(5, scrapes // 10 // targets)) for f, _ in pairs))
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(loop(f, scrapes // targets) for f, _ in pairs))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        for _, close in pairs:
            await close()
    done = scrapes // targets * targets
    return {
        "client": name,
        "scrapes": done,
        "cpu_us_per_scrape": cpu / done * 1e6,
        "wall_us_per_scrape": wall / done * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=2000)
    parser.add_argument("--targets", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds per client")
    parser.add_argument("--port", type=int, default=20990)
    parser.add_argument("--plain", action="store_true", help="ask for an uncompressed body")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        HEADERS["Accept-Encoding"] = "identity"
    if args.serve:
        asyncio.run(_serve(args.port, args.series))
        return
    serve_args = ["--port", str(args.port), "--series", str(args.series)]
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.scrape_client", "--serve", *serve_args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        print(server.stdout.readline().strip())
        url = f"http://127.0.0.1:{args.port}/metrics"
        size = len(render(0, args.series, 1))
        names = ["httpx", "aiohttp"]
        try:
            import httpx_aiohttp  # noqa: F401

            names.append("httpx+aiohttp")
        except ImportError:
            print("httpx-aiohttp not importable: its row is left out")
        rows: dict[str, dict[str, Any]] = {}
        for _ in range(args.rounds):  # interleaved rounds: a busy spell hits every client
            for name in names:
                row = asyncio.run(_measure(name, url, args.scrapes, args.targets, size))
                best = rows.get(name)
                if best is None or row["cpu_us_per_scrape"] < best["cpu_us_per_scrape"]:
                    rows[name] = row
    finally:
        server.terminate()
        server.wait(10)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{platform.node()}, Python {platform.python_version()}, load average {load}; "
        f"{args.series} series per body, {'plain' if args.plain else 'gzip'}, keep-alive, "
        f"{args.targets} concurrent target(s), best of {args.rounds} rounds of "
        f"{args.scrapes} scrapes"
    )
    print("| client | CPU µs per scrape | vs httpx | wall µs per scrape |")
    print("|---|---|---|---|")
    base = rows["httpx"]["cpu_us_per_scrape"]
    for row in rows.values():
        print(
            f"| {row['client']} | {row['cpu_us_per_scrape']:,.0f} | "
            f"{row['cpu_us_per_scrape'] / base:.2f}x | {row['wall_us_per_scrape']:,.0f} |"
        )
    print(json.dumps({"load_average": load, "rows": list(rows.values())}))


if __name__ == "__main__":
    main()
