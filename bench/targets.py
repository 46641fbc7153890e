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


#: Histogram families of the ``histograms`` kind: name, unit of the buckets' upper bounds.
HISTOGRAMS = (
    # Prometheus client libraries' default buckets.
    ("http_request_duration_seconds", (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
    ("http_response_size_bytes", (100, 1000, 10_000, 100_000, 1e6, 1e7, 1e8)),
    ("rpc_client_handling_seconds", (0.001, 0.004, 0.016, 0.064, 0.256, 1.024, 4.096)),
    ("db_query_duration_seconds", (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5)),
)
KINDS = ("counters", "histograms")


def render(target: int, series: int, tick: int, kind: str = "counters") -> bytes:
    """The body of ``target`` at second ``tick``: about ``series`` samples of ``kind``
    (counters: 10 counter families; histograms: ``_bucket{le}``/``_sum``/``_count``
    families with per-endpoint labels, as an instrumented HTTP service exposes)."""
    if kind == "histograms":
        return _histograms(target, series, tick)
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


def _histograms(target: int, series: int, tick: int) -> bytes:
    """Histograms until the next one would pass ``series`` samples: the families in
    turn, each child labelled by route, method and status code, its buckets cumulative."""
    children: list[list[str]] = [[] for _ in HISTOGRAMS]
    total = 0
    child = 0
    while True:
        family = child % len(HISTOGRAMS)
        name, bounds = HISTOGRAMS[family]
        if total + len(bounds) + 3 > series and total:
            break
        i = child // len(HISTOGRAMS)
        labels = (
            f'target="{target}",route="/api/v{i % 4}/items/{{id}}/part{i}",'
            f'method="{("GET", "POST", "PUT", "DELETE")[i % 4]}",code="{200 + (i % 3) * 100}"'
        )
        count = tick * 100 + i
        out = children[family]
        for n, bound in enumerate(bounds):
            out.append(
                f'{name}_bucket{{{labels},le="{bound:g}"}} {count * (n + 1) // (len(bounds) + 1)}'
            )
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {count}')
        out.append(f"{name}_sum{{{labels}}} {count * 0.0421:.4f}")
        out.append(f"{name}_count{{{labels}}} {count}")
        total += len(bounds) + 3
        child += 1
    lines = []
    for (name, _), out in zip(HISTOGRAMS, children, strict=True):
        if out:
            lines += [f"# HELP {name} Synthetic {name}.", f"# TYPE {name} histogram", *out]
    return ("\n".join(lines) + "\n").encode()


def samples_per_body(series: int, kind: str) -> int:
    """How many samples one body of ``render(_, series, _, kind)`` holds."""
    body = render(0, series, 0, kind)
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


SERVED = {"scrapes": 0}


async def serve(first_port: int, targets: int, series: int, kind: str = "counters") -> None:
    """Targets on first_port..; GET on first_port - 1 answers the scrape count so far."""
    bodies: dict[int, bytes] = {}
    tick = {"value": -1}

    def body(target: int) -> bytes:
        now = int(time.time())
        if now != tick["value"]:
            tick["value"] = now
            bodies.clear()
        if target not in bodies:
            payload = render(target, series, now, kind)
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
        f"serving {targets} targets x {series} series ({kind}) on ports "
        f"{first_port}-{first_port + targets - 1}",
        flush=True,
    )
    await asyncio.Event().wait()


if __name__ == "__main__":
    kind = sys.argv[4] if len(sys.argv) > 4 else "counters"
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), kind))
