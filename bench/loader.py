"""The benchmarks' HTTP load generator: loader processes (not counted for anyone), each
with several keep-alive connections, posting bodies as fast as the receiver answers.

A post answered 429 or 503 is repeated after ``Retry-After``, one on a connection the
receiver closed is repeated at once (both counted as retried); any other answer than
the expected success status stops the run. A post counts as done only once answered
with that status.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException
from multiprocessing import Pool


@dataclass(frozen=True)
class Load:
    """What to post: ``make(i)`` is the i-th body (picklable: a module-level function
    or a partial of one), sent to ``url`` with ``headers``; ``ok`` is the success."""

    url: str
    make: Callable[[int], bytes]
    headers: Mapping[str, str] = field(default_factory=dict)
    ok: int = 200


def _share(job: tuple[Load, int, int, int]) -> tuple[int, int]:
    """One loader process: ``threads`` connections posting ``count`` requests in all."""
    load, count, threads, seed = job
    host, _, rest = load.url.removeprefix("http://").partition("/")
    path = "/" + rest
    headers = dict(load.headers)
    left = [count]
    lock = threading.Lock()
    retried = [0]
    failure: list[str] = []

    def run(offset: int) -> None:
        conn = HTTPConnection(host, timeout=60)
        i = offset
        while not failure:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            body = load.make(i)
            i += threads
            while True:
                try:
                    conn.request("POST", path, body, headers)
                    response = conn.getresponse()
                    text = response.read()
                except (OSError, HTTPException):
                    # The receiver closed a kept-alive connection: reconnect, resend.
                    conn.close()
                    conn = HTTPConnection(host, timeout=60)
                    with lock:
                        retried[0] += 1
                    continue
                if response.status == load.ok:
                    break
                if response.status in (429, 503):
                    with lock:
                        retried[0] += 1
                    time.sleep(float(response.getheader("Retry-After") or 1))
                    continue
                failure.append(f"HTTP {response.status} {text[:200]!r}")
                return
        conn.close()

    workers = [threading.Thread(target=run, args=(seed + t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if failure:
        raise RuntimeError(f"the receiver answered {failure[0]}")
    return count, retried[0]


def post(load: Load, requests: int, processes: int, threads: int) -> int:
    """Post ``requests`` bodies from ``processes`` loader processes of ``threads``
    connections each; returns how many posts were repeated. Returning means every one
    of the ``requests`` was answered ``load.ok``."""
    shares = [requests // processes + (p < requests % processes) for p in range(processes)]
    with Pool(processes) as pool:
        done = pool.map(_share, [(load, s, threads, p * threads) for p, s in enumerate(shares)])
    return sum(r for _, r in done)
