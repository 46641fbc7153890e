"""The gateway with plain HTTP clients: who may write, in which formats, into Kafka."""

from __future__ import annotations

import gzip
import json
import time

import httpx

from ferryman import headers as h
from ferryman.wire import loki
from ferryman.wire.remote_write import (
    HEADERS,
    decode_write_request,
    encode_write_request,
    snappy_compress,
    snappy_decompress,
)
from ferryman.wire.remote_write2 import encode_request
from tests.integration.gateway.helpers import PASSWORD_B, TOKEN_A, basic, messages
from tests.integration.pipeline import time_series

BEARER_A = {"Authorization": f"Bearer {TOKEN_A}"}


def _write_body(cluster: str, metric: str = "up", n: int = 1) -> bytes:
    now = int(time.time() * 1000)
    series = [
        time_series({"__name__": metric, "cluster": cluster, "i": str(i)}, (1.0 + i, now))
        for i in range(n)
    ]
    return snappy_compress(encode_write_request(series))


def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=30)


def test_remote_write_goes_to_kafka_as_received_with_tenant_and_cluster(gw):
    body = _write_body("alpha", n=3)
    answer = _post(f"{gw.url}/api/v1/write", body, {**HEADERS, **BEARER_A})
    assert answer.status_code == 204, answer.text
    found = messages(gw.bootstrap, gw.metrics)
    assert len(found) == 1
    assert found[0].value == body  # passed through, not re-encoded
    assert dict(found[0].headers) == {
        h.SCHEMA: h.SCHEMA_REMOTE_WRITE,
        h.CLUSTER: b"alpha",
        h.TENANT: b"team-a",
    }
    assert (
        gw.gateway.metric(
            "ferryman_gateway_accepted_total", endpoint="remote_write", tenant="team-a"
        )
        == 3
    )


def test_two_clusters_in_one_request_become_one_message_each(gw):
    now = int(time.time() * 1000)
    series = [
        time_series({"__name__": "m", "cluster": "alpha"}, (1.0, now)),
        time_series({"__name__": "m", "cluster": "alpha-2"}, (2.0, now)),
    ]
    body = snappy_compress(encode_write_request(series))
    assert _post(f"{gw.url}/api/v1/write", body, {**HEADERS, **BEARER_A}).status_code == 204
    found = {dict(m.headers)[h.CLUSTER]: m for m in messages(gw.bootstrap, gw.metrics)}
    assert set(found) == {b"alpha", b"alpha-2"}
    decoded = decode_write_request(snappy_decompress(found[b"alpha-2"].value))
    assert [s.samples[0].value for s in decoded] == [2.0]


def test_unknown_tenant_and_wrong_credentials_get_401_and_nothing_is_produced(gw):
    url = f"{gw.url}/api/v1/write"
    body = _write_body("alpha")
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {TOKEN_A}x"},
        {"Authorization": basic("bob", "wrong password")},
        {"Authorization": basic("nobody", PASSWORD_B)},
        {"Authorization": "Basic !!!"},
        {**BEARER_A, "X-Scope-OrgID": "team-b"},
    ):
        answer = _post(url, body, {**HEADERS, **headers})
        assert answer.status_code == 401, (headers, answer.text)
    answer = _post(url, body, {**HEADERS, **BEARER_A, "X-Scope-OrgID": "a" * 151})
    assert answer.status_code == 400
    assert messages(gw.bootstrap, gw.metrics) == []
    assert (
        gw.gateway.metric(
            "ferryman_gateway_refused_total", endpoint="remote_write", reason="unauthenticated"
        )
        == 6
    )


def test_basic_auth_and_own_org_id_are_accepted(gw):
    body = _write_body("beta")
    headers = {**HEADERS, "Authorization": basic("bob", PASSWORD_B), "X-Scope-OrgID": "team-b"}
    assert _post(f"{gw.url}/api/v1/write", body, headers).status_code == 204
    assert _post(f"{gw.url}/api/v1/write", body, headers).status_code == 204  # remembered
    found = messages(gw.bootstrap, gw.metrics)
    assert [dict(m.headers)[h.TENANT] for m in found] == [b"team-b", b"team-b"]


def test_a_tenant_cannot_write_as_another_cluster(gw):
    answer = _post(f"{gw.url}/api/v1/write", _write_body("beta"), {**HEADERS, **BEARER_A})
    assert answer.status_code == 403
    assert "beta" in answer.text
    no_cluster = snappy_compress(encode_write_request([time_series({"__name__": "up"}, (1.0, 1))]))
    answer = _post(f"{gw.url}/api/v1/write", no_cluster, {**HEADERS, **BEARER_A})
    assert answer.status_code == 400
    assert "no cluster label" in answer.text
    assert messages(gw.bootstrap, gw.metrics) == []


def test_remote_write_2_is_converted_to_1_and_answers_written_counts(gw):
    now = int(time.time() * 1000)
    series = [
        time_series({"__name__": "v2_metric", "cluster": "alpha", "k": "v"}, (5.0, now)),
        time_series({"__name__": "v2_other", "cluster": "alpha"}, (6.0, now), (7.0, now + 1)),
    ]
    body = snappy_compress(encode_request(series))
    headers = {
        "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "2.0.0",
        **BEARER_A,
    }
    answer = _post(f"{gw.url}/api/v1/write", body, headers)
    assert answer.status_code == 204, answer.text
    assert answer.headers["X-Prometheus-Remote-Write-Samples-Written"] == "3"
    assert answer.headers["X-Prometheus-Remote-Write-Histograms-Written"] == "0"
    assert answer.headers["X-Prometheus-Remote-Write-Exemplars-Written"] == "0"
    (found,) = messages(gw.bootstrap, gw.metrics)
    assert dict(found.headers)[h.SCHEMA] == h.SCHEMA_REMOTE_WRITE
    assert decode_write_request(snappy_decompress(found.value)) == series


def test_unsupported_content_types_get_415(gw):
    url = f"{gw.url}/api/v1/write"
    body = _write_body("alpha")
    for content_type in (
        "application/json",
        "application/x-protobuf;proto=io.prometheus.write.v3.Request",
    ):
        headers = {**HEADERS, **BEARER_A, "Content-Type": content_type}
        assert _post(url, body, headers).status_code == 415
    headers = {**HEADERS, **BEARER_A, "Content-Encoding": "zstd"}
    assert _post(url, body, headers).status_code == 415
    assert messages(gw.bootstrap, gw.metrics) == []


def _stream_of(message) -> loki.Stream:
    (stream,) = loki.decode_push_request(snappy_decompress(message.value))
    return stream


def test_loki_push_protobuf_one_message_per_stream(gw):
    now = time.time_ns()
    streams = [
        loki.Stream(
            {"cluster": "alpha", "app": "web"},
            [loki.Entry(now, "GET /"), loki.Entry(now + 1, "GET /a")],
        ),
        loki.Stream({"cluster": "alpha", "app": "db"}, [loki.Entry(now, "select 1")]),
    ]
    body = snappy_compress(loki.encode_push_request(streams))
    answer = _post(f"{gw.url}/loki/api/v1/push", body, {**loki.HEADERS, **BEARER_A})
    assert answer.status_code == 204, answer.text
    found = {m.key: m for m in messages(gw.bootstrap, gw.logs)}
    assert set(found) == {b'{app="web", cluster="alpha"}', b'{app="db", cluster="alpha"}'}
    web = found[b'{app="web", cluster="alpha"}']
    assert dict(web.headers) == {
        h.SCHEMA: h.SCHEMA_LOKI_PUSH,
        h.CLUSTER: b"alpha",
        h.TENANT: b"team-a",
    }
    assert [e.line for e in _stream_of(web).entries] == ["GET /", "GET /a"]


def test_loki_push_json_plain_and_gzip_as_promtail_users_send_it(gw):
    now = time.time_ns()
    document = {
        "streams": [
            {
                "stream": {"cluster": "beta", "job": "json"},
                "values": [[str(now), "first"], [str(now + 5), "second", {"trace_id": "abc"}]],
            }
        ]
    }
    raw = json.dumps(document).encode()
    auth = {"Authorization": basic("bob", PASSWORD_B)}
    plain = {"Content-Type": "application/json", **auth}
    assert _post(f"{gw.url}/loki/api/v1/push", raw, plain).status_code == 204
    zipped = {**plain, "Content-Encoding": "gzip"}
    assert _post(f"{gw.url}/loki/api/v1/push", gzip.compress(raw), zipped).status_code == 204
    found = messages(gw.bootstrap, gw.logs)
    assert len(found) == 2
    for message in found:
        stream = _stream_of(message)
        assert dict(stream.labels) == {"cluster": "beta", "job": "json"}
        assert [(e.timestamp_ns, e.line) for e in stream.entries] == [
            (now, "first"),
            (now + 5, "second"),
        ]
        assert stream.entries[1].metadata == (("trace_id", "abc"),)
        assert dict(message.headers)[h.TENANT] == b"team-b"
    bad = _post(f"{gw.url}/loki/api/v1/push", b'{"streams": [{"stream": 1}]}', plain)
    assert bad.status_code == 400


def test_health_readiness_and_metrics(gw):
    assert httpx.get(f"{gw.url}/healthz").status_code == 200
    assert httpx.get(f"{gw.url}/readyz").status_code == 200
    text = httpx.get(f"{gw.url}/metrics").text
    assert "ferryman_gateway_requests_in_flight" in text
