"""Per-tenant limits, each answered the way agents handle it, while a valid writer
keeps writing and loses nothing."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from ferryman.wire import loki
from ferryman.wire.protobuf import varint
from ferryman.wire.remote_write import (
    HEADERS,
    decode_write_request,
    encode_write_request,
    snappy_compress,
    snappy_decompress,
)
from tests.integration.gateway.helpers import PASSWORD_B, TOKEN_A, basic, messages, start_gateway
from tests.integration.pipeline import free_port, time_series, wait_for

BEARER_A = {**HEADERS, "Authorization": f"Bearer {TOKEN_A}"}
BASIC_B = {**HEADERS, "Authorization": basic("bob", PASSWORD_B)}


def _series(n: int, cluster: str = "alpha", labels: int = 0):
    now = int(time.time() * 1000)
    extra = {f"l{i}": "x" for i in range(labels)}
    return [
        time_series({"__name__": "lim", "cluster": cluster, "i": str(i), **extra}, (1.0, now))
        for i in range(n)
    ]


def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=30)


def test_size_limits_and_bombs_get_413(gw):
    url = f"{gw.url}/api/v1/write"
    # team-a: max_body_bytes 64KiB, max_decompressed_bytes 256KiB
    big = bytes(range(256)) * 300  # 76.8 KB that snappy cannot shrink
    assert _post(url, big, BEARER_A).status_code == 413
    bomb = snappy_compress(b"\0" * 1_000_000)  # ~47 KB: snappy shrinks at most ~21x
    assert len(bomb) < 65536
    answer = _post(url, bomb, BEARER_A)
    assert answer.status_code == 413
    assert "decompresses" in answer.text
    claim = varint(2**32) + b"\0" * 100  # a header claiming 4 GiB
    assert _post(url, claim, BEARER_A).status_code == 413
    gz_bomb = gzip.compress(b"{" + b" " * 10_000_000 + b"}")
    assert len(gz_bomb) < 65536
    json_headers = {
        "Authorization": f"Bearer {TOKEN_A}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    assert _post(f"{gw.url}/loki/api/v1/push", gz_bomb, json_headers).status_code == 413
    assert messages(gw.bootstrap, gw.metrics) == []
    assert messages(gw.bootstrap, gw.logs) == []
    assert gw.gateway.metric("ferryman_gateway_refused_total", reason="body_size") == 1
    assert gw.gateway.metric("ferryman_gateway_refused_total", reason="decompressed_size") == 3


def test_label_limits_get_400_naming_the_offender(gw):
    url = f"{gw.url}/api/v1/write"
    body = snappy_compress(encode_write_request(_series(1, labels=45)))
    answer = _post(url, body, BEARER_A)
    assert answer.status_code == 400
    assert "series lim" in answer.text and "labels, more than 40" in answer.text
    long_value = [time_series({"__name__": "lim", "cluster": "alpha", "v": "x" * 3000}, (1, 1))]
    answer = _post(url, snappy_compress(encode_write_request(long_value)), BEARER_A)
    assert answer.status_code == 400
    assert "'v'" in answer.text
    assert messages(gw.bootstrap, gw.metrics) == []


def test_rate_limit_answers_429_with_retry_after(stack, tmp_path, processes, unique):
    setup = start_gateway(
        tmp_path,
        processes,
        stack("kafka", "bootstrap"),
        unique,
        limits_a={"samples_per_second": 100, "burst_seconds": 1},
    )
    setup.gateway.wait_ready()
    url = f"{setup.url}/api/v1/write"
    body = snappy_compress(encode_write_request(_series(60)))
    assert _post(url, body, BEARER_A).status_code == 204
    answer = _post(url, body, BEARER_A)
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) >= 1
    assert len(messages(setup.bootstrap, setup.metrics)) == 1


def test_loki_line_size_refused_or_truncated_as_configured(stack, tmp_path, processes, unique):
    setup = start_gateway(
        tmp_path,
        processes,
        stack("kafka", "bootstrap"),
        unique,
        limits_a={"max_line_bytes": 10, "line_too_long": "truncate"},
    )
    setup.gateway.wait_ready()
    document = {
        "streams": [{"stream": {"cluster": "alpha"}, "values": [["1", "0123456789abcdef"]]}]
    }
    headers = {"Authorization": f"Bearer {TOKEN_A}", "Content-Type": "application/json"}
    answer = _post(f"{setup.url}/loki/api/v1/push", json.dumps(document).encode(), headers)
    assert answer.status_code == 204
    (found,) = messages(setup.bootstrap, setup.logs)
    (stream,) = loki.decode_push_request(snappy_decompress(found.value))
    assert [e.line for e in stream.entries] == ["0123456789"]
    assert setup.gateway.metric("ferryman_gateway_lines_truncated_total") == 1
    # team-b keeps the default: refuse
    document["streams"][0]["stream"] = {"cluster": "beta"}
    document["streams"][0]["values"] = [["1", "x" * 300_000]]
    headers = {"Authorization": basic("bob", PASSWORD_B), "Content-Type": "application/json"}
    answer = _post(f"{setup.url}/loki/api/v1/push", json.dumps(document).encode(), headers)
    assert answer.status_code == 400
    assert "longer than" in answer.text


def test_bad_requests_do_not_disturb_a_valid_writer(gw):
    url = f"{gw.url}/api/v1/write"
    stop = threading.Event()
    sent: list[float] = []

    def valid_writer() -> None:
        n = 0
        with httpx.Client(timeout=30) as client:
            while not stop.is_set() or n < 20:
                n += 1
                series = [time_series({"__name__": "ok", "cluster": "beta"}, (float(n), n))]
                body = snappy_compress(encode_write_request(series))
                answer = client.post(url, content=body, headers=BASIC_B)
                assert answer.status_code == 204, answer.text
                sent.append(float(n))

    good = snappy_compress(encode_write_request(_series(1)))
    bad = [
        (good, {**HEADERS, "Authorization": "Bearer wrong"}, 401),
        (good, {**HEADERS}, 401),
        (snappy_compress(encode_write_request(_series(1, "beta"))), BEARER_A, 403),
        (bytes(range(256)) * 300, BEARER_A, 413),
        (snappy_compress(b"\0" * 1_000_000), BEARER_A, 413),
        (snappy_compress(encode_write_request(_series(1, labels=45))), BEARER_A, 400),
    ]
    with ThreadPoolExecutor(8) as pool:
        writer = pool.submit(valid_writer)
        results = list(pool.map(lambda case: _post(url, case[0], case[1]).status_code, bad * 5))
        stop.set()
        writer.result()
    assert results == [status for _, _, status in bad] * 5
    values = [
        s.samples[0].value
        for m in messages(gw.bootstrap, gw.metrics)
        for s in decode_write_request(snappy_decompress(m.value))
    ]
    assert sorted(values) == sent


def test_tokens_of_a_request_kafka_did_not_take_are_given_back(tmp_path, processes, unique):
    """A request answered 503 (Kafka away) gives its rate-limit tokens back: the
    client's retries keep getting 503, not 429 for data that was never written."""
    setup = start_gateway(
        tmp_path,
        processes,
        f"127.0.0.1:{free_port()}",  # nothing listens: Kafka is away from the start
        unique,
        create=False,
        limits_a={"samples_per_second": 10, "burst_seconds": 10},
    )
    wait_for(lambda: _healthy(setup.url), 60, "the gateway to serve")
    body = snappy_compress(encode_write_request(_series(100)))  # the whole burst
    statuses = [_post(f"{setup.url}/api/v1/write", body, BEARER_A).status_code for _ in range(5)]
    assert statuses == [503] * 5
    assert setup.gateway.metric("ferryman_gateway_refused_total", reason="rate_limited") == 0


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_chunked_bodies_are_read_within_the_limit(gw):
    """Loki and OTLP clients may send chunked bodies: read up to max_body_bytes, 413
    past it, 400 when the chunks end early; a request with neither gets 411."""
    push = json.dumps(
        {
            "streams": [
                {
                    "stream": {"cluster": "alpha", "job": "chunked"},
                    "values": [[str(time.time_ns()), "one"], [str(time.time_ns()), "two"]],
                }
            ]
        }
    ).encode()
    headers = {"Authorization": f"Bearer {TOKEN_A}", "Content-Type": "application/json"}
    url = f"{gw.url}/loki/api/v1/push"

    def chunks(body: bytes, size: int):
        for i in range(0, len(body), size):
            yield body[i : i + size]

    answer = httpx.post(url, content=chunks(push, 7), headers=headers, timeout=30)
    assert answer.status_code == 204, answer.text
    lines = [
        entry.line
        for record in messages(gw.bootstrap, gw.logs)
        for stream in loki.decode_push_request(snappy_decompress(record.value))
        for entry in stream.entries
    ]
    assert lines == ["one", "two"]
    # team-a's max_body_bytes is 64 KiB
    big = b"x" * 70_000
    assert (
        httpx.post(url, content=chunks(big, 8192), headers=headers, timeout=30).status_code == 413
    )
    raw = (
        f"POST /loki/api/v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN_A}\r\n"
        "Content-Type: application/json\r\n"
    )
    assert _raw(gw.url, raw + "Transfer-Encoding: chunked\r\n\r\n10\r\nshort") == 400
    assert _raw(gw.url, raw + "\r\n") == 411
    assert gw.gateway.metric("ferryman_gateway_refused_total", reason="no_length") == 1


def _raw(url: str, request: str) -> int:
    """The status of ``request`` sent as bytes (the sender then stops writing)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request.encode())
        sock.shutdown(socket.SHUT_WR)
        answer = sock.makefile("rb").readline()
    return int(answer.split()[1])


def test_connections_are_capped_and_idle_ones_closed(stack, tmp_path, processes, unique):
    """Past max_connections a new connection gets 503 with Retry-After and is closed; a
    connection silent for idle_timeout is closed, which frees its place."""
    setup = start_gateway(
        tmp_path,
        processes,
        stack("kafka", "bootstrap"),
        unique,
        max_connections=2,
        idle_timeout="6s",
    )
    setup.gateway.wait_ready()
    host, port = setup.gateway.settings["listen"].rsplit(":", 1)
    idle = [socket.create_connection((host, int(port)), timeout=30) for _ in range(2)]
    try:
        wait_for(
            lambda: (
                setup.gateway.metric("ferryman_gateway_refused_total", reason="connections") > 0
                or _over_the_cap(host, int(port))
            ),
            30,
            "a third connection refused",
        )
        third = socket.create_connection((host, int(port)), timeout=30)
        with third, third.makefile("rb") as answer:
            status = answer.readline()
            rest = answer.read()
        assert status.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 1" in rest
        # The silent ones are closed by the gateway (recv returns b"" at their end).
        assert [s.recv(1) for s in idle] == [b"", b""]
    finally:
        for s in idle:
            s.close()
    body = snappy_compress(encode_write_request(_series(3)))
    answer = wait_for(
        lambda: _post(f"{setup.url}/api/v1/write", body, BEARER_A).status_code == 204,
        30,
        "a request once the idle connections are gone",
    )
    assert answer


def _over_the_cap(host: str, port: int) -> bool:
    """Whether a new connection is answered 503 at once (it then counts as refused)."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.settimeout(0.5)
        try:
            return sock.recv(12).startswith(b"HTTP/1.1 503")
        except TimeoutError:
            return False
