"""loki against the real Kafka and VictoriaLogs (which speaks Loki's push API)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import datetime

import httpx

from ferryman.wire.loki import Entry, Stream
from tests.integration.pipeline import (
    create_topics,
    dead_letters,
    free_port,
    loki_push,
    produce,
    raw,
    wait_for,
)

MARKER = "…[truncated]"

Line = tuple[str, str, str, int]
"""cluster, app, line, timestamp in ns."""


def _config(url, **config):
    return {"url": url, "push_path": "/insert/loki/api/v1/push", **config}


def _base(stack) -> str:
    return stack("victorialogs", "http")


def produce_logs(
    bootstrap: str,
    topic: str,
    job: str,
    messages: int,
    lines: int,
    *,
    cluster: str = "alpha",
    start: int = 0,
    tenant: bytes | None = None,
    long_line: str | None = None,
    extra: tuple[bytes, ...] = (),
) -> set[Line]:
    """Produce Loki push messages the way the edge does: two streams a message (apps
    a0/a1 of ``job``), their entries written newest first; returns the lines sent."""
    base = time.time_ns() - 60 * 10**9
    sent: set[Line] = set()
    out = []
    for m in range(start, start + messages):
        streams = []
        for app in ("a0", "a1"):
            entries = []
            for i in reversed(range(lines)):
                line = f"{cluster} {app} message {m} line {i}"
                ts = base + m * 1000 + i
                entries.append(Entry(ts, line))
                sent.add((cluster, app, line, ts))
            streams.append(Stream({"job": job, "app": app}, entries))
        if long_line is not None and m == start:
            streams.append(Stream({"job": job, "app": "long"}, [Entry(base, long_line)]))
        out.append(loki_push(streams, cluster=cluster, tenant=tenant, key=f"{job}-{m}".encode()))
    out += [raw(value) for value in extra]
    produce(bootstrap, topic, out)
    return sent


def _ns(stamp: str) -> int:
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(whole + "+00:00").timestamp())
    return seconds * 10**9 + int(fraction.ljust(9, "0"))


def query(base: str, job: str, account: str | None = None) -> list[dict[str, str]]:
    response = httpx.get(
        f"{base}/select/logsql/query",
        params={"query": f'job:="{job}" | sort by (_time)', "limit": "100000"},
        headers={"AccountID": account} if account else {},
        timeout=30,
    )
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def stored(base: str, job: str, account: str | None = None) -> set[Line]:
    return {
        (row.get("cluster", ""), row["app"], row["_msg"], _ns(row["_time"]))
        for row in query(base, job, account)
    }


def test_lines_from_two_clusters_arrive_with_their_labels_in_time_order(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 3))
    sent = produce_logs(bootstrap, unique, unique, messages=40, lines=25)
    sent |= produce_logs(bootstrap, unique, unique, messages=40, lines=25, cluster="beta", start=40)
    tenant_sent = produce_logs(
        bootstrap, unique, unique, messages=5, lines=3, start=80, cluster="gamma", tenant=b"7"
    )
    running = worker("loki", unique, _config(_base(stack)))
    wait_for(lambda: running.committed() == 85, 60, "all 85 offsets committed")
    assert wait_for(lambda: stored(_base(stack), unique) == sent, 30, "every line stored")
    assert stored(_base(stack), unique, account="7") == tenant_sent  # X-Scope-OrgID: 7
    by_stream: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in query(_base(stack), unique):
        assert set(row) >= {"_msg", "_time", "_stream", "job", "app", "cluster"}
        assert row["job"] == unique
        assert row["_stream"] == (
            f'{{app="{row["app"]}",cluster="{row["cluster"]}",job="{unique}"}}'
        )
        by_stream[row["_stream"]].append((_ns(row["_time"]), row["_msg"]))
    assert len(by_stream) == 4
    for rows in by_stream.values():
        assert [t for t, _ in rows] == sorted(t for t, _ in rows)
        # message m, line i was stamped base + m*1000 + i: time order is write order.
        numbers = [tuple(int(word) for word in msg.split()[3::2]) for _, msg in rows]
        assert numbers == sorted(numbers)
    assert running.terminate() == 0
    assert "worker stopped" in running.output()


def test_garbage_goes_to_dead_letter_and_the_rest_flows(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    sent = produce_logs(
        bootstrap, unique, unique, messages=5, lines=3, extra=(b"\x00\xffnot snappy at all",)
    )
    sent |= produce_logs(bootstrap, unique, unique, messages=5, lines=3, start=5)
    running = worker("loki", unique, _config(_base(stack)))
    wait_for(lambda: running.committed() == 11, 60, "all 11 offsets committed")
    assert wait_for(lambda: stored(_base(stack), unique) == sent, 30, "the good lines")
    dead = dead_letters(bootstrap, running.dead_letter_topic)
    assert [d.value for d in dead] == [b"\x00\xffnot snappy at all"]
    headers = dict(dead[0].headers)
    assert headers["ferryman.error"].startswith(b"not a Loki push message")
    assert headers["ferryman.function"] == b"loki"
    assert headers["ferryman.source"] == f"{unique}/0/5".encode()


def test_a_line_over_the_limit_is_truncated_with_the_marker_and_counted(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    long_line = "start " + "é" * 2000
    sent = produce_logs(bootstrap, unique, unique, messages=3, lines=2, long_line=long_line)
    running = worker("loki", unique, _config(_base(stack), max_line_bytes=1000))
    wait_for(lambda: running.committed() == 3, 60, "commits")

    def all_rows() -> list[dict[str, str]] | None:
        rows = query(_base(stack), unique)
        return rows if len(rows) == len(sent) + 1 else None

    rows = wait_for(all_rows, 30, "every line stored")
    [cut] = [r["_msg"] for r in rows if r["app"] == "long"]
    assert cut.endswith(MARKER) and cut.startswith("start éé")
    assert len(cut.encode()) <= 1000 and long_line.startswith(cut[: -len(MARKER)])
    assert {
        (r["cluster"], r["app"], r["_msg"], _ns(r["_time"])) for r in rows if r["app"] != "long"
    } == sent
    assert (
        running.metric("ferryman_lines_truncated_total", function="loki", reason="line_too_long")
        == 1
    )
    assert running.metric("ferryman_lines_dropped_total") == 0


def test_unreachable_backend_commits_nothing_then_everything_arrives(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sent = produce_logs(bootstrap, unique, unique, messages=20, lines=5)
    first = worker("loki", unique, _config(closed))
    wait_for(lambda: first.metric("ferryman_errors_total") >= 3, 60, "failed attempts")
    end = time.monotonic() + 5
    while time.monotonic() < end:
        assert first.committed() == 0, "an offset was committed while the backend was unreachable"
        time.sleep(1)
    assert first.metric("ferryman_records_dead_lettered_total") == 0
    assert httpx.get(f"{first.api}/healthz", timeout=5).status_code == 200
    assert first.terminate() == 0
    assert first.committed() == 0
    assert stored(_base(stack), unique) == set()

    sent |= produce_logs(bootstrap, unique, unique, messages=10, lines=5, start=20)
    second = worker("loki", unique, _config(_base(stack)))
    wait_for(lambda: second.committed() == 30, 60, "all 30 committed with the right URL")
    assert wait_for(lambda: stored(_base(stack), unique) == sent, 30, "every line")
