"""The Prometheus project's own remote-write client against the gateway.

``rw2client`` (tests/integration/rw2client.py) sends with
``github.com/prometheus/client_golang/exp/api/remote``: a 2.0 Request built with that
module's generated types and symbols table, snappy-compressed by it, and the
``WriteResponseStats`` it parses from the answer. The Kafka messages are read back
with the protobuf runtime and a 1.0 ``prometheus.WriteRequest`` schema declared here
(independent of ferryman's own decoder), and with ferryman's decoder as the workers
use it.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from ferryman import headers as h
from ferryman.wire.remote_write import decode_write_request, snappy_decompress
from tests.integration.gateway.helpers import TOKEN_A, messages
from tests.integration.rw2client import Series, send


def _write_request_class() -> type[Message]:
    """``prometheus.WriteRequest`` (remote write 1.0, with native histograms and
    metadata) as a protobuf message class, declared from the 1.0 field numbers."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="ferryman_test_rw1.proto", package="ferryman_test_rw1", syntax="proto3"
    )

    def message(name: str, *spec: tuple[str, int, int, int, str | None, int | None]) -> None:
        m = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name, oneof in spec:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = f".ferryman_test_rw1.{type_name}"
            if oneof is not None:
                f.oneof_index = oneof
        if name == "Histogram":
            m.oneof_decl.add(name="count")
            m.oneof_decl.add(name="zero_count")

    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg = F.TYPE_MESSAGE
    message("Label", ("name", 1, F.TYPE_STRING, one, None, None),
            ("value", 2, F.TYPE_STRING, one, None, None))  # fmt: skip
    message("Sample", ("value", 1, F.TYPE_DOUBLE, one, None, None),
            ("timestamp", 2, F.TYPE_INT64, one, None, None))  # fmt: skip
    message(
        "Exemplar",
        ("labels", 1, msg, many, "Label", None),
        ("value", 2, F.TYPE_DOUBLE, one, None, None),
        ("timestamp", 3, F.TYPE_INT64, one, None, None),
    )
    message("BucketSpan", ("offset", 1, F.TYPE_SINT32, one, None, None),
            ("length", 2, F.TYPE_UINT32, one, None, None))  # fmt: skip
    message(
        "Histogram",
        ("count_int", 1, F.TYPE_UINT64, one, None, 0),
        ("count_float", 2, F.TYPE_DOUBLE, one, None, 0),
        ("sum", 3, F.TYPE_DOUBLE, one, None, None),
        ("schema", 4, F.TYPE_SINT32, one, None, None),
        ("zero_threshold", 5, F.TYPE_DOUBLE, one, None, None),
        ("zero_count_int", 6, F.TYPE_UINT64, one, None, 1),
        ("zero_count_float", 7, F.TYPE_DOUBLE, one, None, 1),
        ("negative_spans", 8, msg, many, "BucketSpan", None),
        ("negative_deltas", 9, F.TYPE_SINT64, many, None, None),
        ("negative_counts", 10, F.TYPE_DOUBLE, many, None, None),
        ("positive_spans", 11, msg, many, "BucketSpan", None),
        ("positive_deltas", 12, F.TYPE_SINT64, many, None, None),
        ("positive_counts", 13, F.TYPE_DOUBLE, many, None, None),
        ("reset_hint", 14, F.TYPE_INT32, one, None, None),
        ("timestamp", 15, F.TYPE_INT64, one, None, None),
    )
    message(
        "TimeSeries",
        ("labels", 1, msg, many, "Label", None),
        ("samples", 2, msg, many, "Sample", None),
        ("exemplars", 3, msg, many, "Exemplar", None),
        ("histograms", 4, msg, many, "Histogram", None),
    )
    message(
        "MetricMetadata",
        ("type", 1, F.TYPE_INT32, one, None, None),
        ("metric_family_name", 2, F.TYPE_STRING, one, None, None),
        ("help", 4, F.TYPE_STRING, one, None, None),
        ("unit", 5, F.TYPE_STRING, one, None, None),
    )
    message(
        "WriteRequest",
        ("timeseries", 1, msg, many, "TimeSeries", None),
        ("metadata", 3, msg, many, "MetricMetadata", None),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("ferryman_test_rw1.WriteRequest")
    )


WriteRequest = _write_request_class()
METRIC_TYPES = {"counter": 1, "gauge": 2, "histogram": 3, "gaugehistogram": 4}


def _series(unique: str, now: int) -> list[Series]:
    """Float series, integer and float native histograms, exemplars and metadata, over
    two clusters of team-a."""
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    return [
        {
            "labels": {"__name__": "rw2c_requests_total", "cluster": "alpha", "run": unique,
                       "code": "200", "path": "/ä/ü"},
            "samples": [{"value": 41.5, "timestamp": now - 1000},
                        {"value": 42.5, "timestamp": now}],
            "exemplars": [{"labels": {"trace_id": trace}, "value": 1.0, "timestamp": now}],
            "metadata": {"type": "counter", "help": "Requests served.", "unit": ""},
            "created_timestamp": now - 60_000,
        },
        {
            "labels": {"__name__": "rw2c_requests_total", "cluster": "alpha", "run": unique,
                       "code": "500", "path": "/ä/ü"},
            "samples": [{"value": 0.0, "timestamp": now}],
            "metadata": {"type": "counter", "help": "Requests served.", "unit": ""},
        },
        {
            "labels": {"__name__": "rw2c_temperature", "cluster": "alpha-2", "run": unique},
            "samples": [{"value": -3.25, "timestamp": now}],
            "metadata": {"type": "gauge", "help": "Room temperature.", "unit": "celsius"},
        },
        {
            "labels": {"__name__": "rw2c_latency_seconds", "cluster": "alpha", "run": unique},
            "histograms": [
                {"count": 9, "sum": 4.75, "schema": 1, "zero_threshold": 0.001, "zero_count": 1,
                 "positive_spans": [{"offset": 0, "length": 3}, {"offset": 2, "length": 1}],
                 "positive_deltas": [2, 1, -1, 0],
                 "negative_spans": [{"offset": -1, "length": 1}], "negative_deltas": [1],
                 "reset_hint": 2, "timestamp": now - 1000},
                {"count": 11, "sum": 5.5, "schema": 1, "zero_threshold": 0.001, "zero_count": 1,
                 "positive_spans": [{"offset": 0, "length": 3}, {"offset": 2, "length": 1}],
                 "positive_deltas": [3, 1, -1, 0],
                 "negative_spans": [{"offset": -1, "length": 1}], "negative_deltas": [2],
                 "reset_hint": 2, "timestamp": now},
            ],
            "exemplars": [
                {"labels": {"trace_id": trace, "span_id": "00f067aa0ba902b7"}, "value": 0.25,
                 "timestamp": now - 500},
                {"labels": {"trace_id": trace}, "value": 0.5, "timestamp": now},
            ],
            "metadata": {"type": "histogram", "help": "Latency.", "unit": "seconds"},
        },
        {
            "labels": {"__name__": "rw2c_queue_bytes", "cluster": "alpha-2", "run": unique},
            "histograms": [
                {"float": True, "count": 2.5, "sum": 40.0, "schema": 0, "zero_threshold": 0.001,
                 "zero_count": 0.5, "positive_spans": [{"offset": 4, "length": 2}],
                 "positive_counts": [1.5, 0.5], "reset_hint": 3, "timestamp": now},
            ],
        },
    ]  # fmt: skip


def _expected_1(series: Series) -> Any:
    """The 1.0 TimeSeries ``series`` must become (labels sorted, as 1.0 requires)."""
    request: Any = WriteRequest()
    out = request.timeseries.add()
    for name, value in sorted(series["labels"].items()):
        out.labels.add(name=name, value=value)
    for sample in series.get("samples", []):
        out.samples.add(value=sample["value"], timestamp=sample["timestamp"])
    for ex in series.get("exemplars", []):
        one = out.exemplars.add(value=ex["value"], timestamp=ex["timestamp"])
        for name, value in sorted(ex["labels"].items()):
            one.labels.add(name=name, value=value)
    for hist in series.get("histograms", []):
        one = out.histograms.add(
            sum=hist["sum"],
            schema=hist["schema"],
            zero_threshold=hist["zero_threshold"],
            reset_hint=hist.get("reset_hint", 0),
            timestamp=hist["timestamp"],
        )
        if hist.get("float"):
            one.count_float = hist["count"]
            one.zero_count_float = hist["zero_count"]
            one.positive_counts.extend(hist.get("positive_counts", []))
            one.negative_counts.extend(hist.get("negative_counts", []))
        else:
            one.count_int = hist["count"]
            one.zero_count_int = hist["zero_count"]
            one.positive_deltas.extend(hist.get("positive_deltas", []))
            one.negative_deltas.extend(hist.get("negative_deltas", []))
        for side in ("positive", "negative"):
            for span in hist.get(f"{side}_spans", []):
                getattr(one, f"{side}_spans").add(offset=span["offset"], length=span["length"])
    return out


def _metadata_1(series: Series) -> tuple[str, int, str, str]:
    meta = series["metadata"]
    return (series["labels"]["__name__"], METRIC_TYPES[meta["type"]], meta["help"], meta["unit"])


def _by_cluster(found: list[Any]) -> dict[str, Any]:
    """The Kafka messages by cluster header; each one's headers are exactly schema,
    cluster and tenant."""
    out = {}
    for message in found:
        headers = dict(message.headers)
        assert set(headers) == {h.SCHEMA, h.CLUSTER, h.TENANT}, headers
        assert headers[h.SCHEMA] == h.SCHEMA_REMOTE_WRITE
        assert headers[h.TENANT] == b"team-a"
        cluster = headers[h.CLUSTER].decode()
        assert cluster not in out, f"two messages for {cluster}"
        out[cluster] = message
    return out


def _key(series: Any) -> str:
    return "|".join(f"{label.name}={label.value}" for label in series.labels)


def _check_kafka(gw: Any, sent: list[Series], *, metadata: bool) -> None:
    """Kafka holds one 1.0 message per cluster with exactly the series of ``sent``
    (and, with ``metadata``, one MetricMetadata per family and cluster)."""
    found = _by_cluster(messages(gw.bootstrap, gw.metrics))
    assert set(found) == {"alpha", "alpha-2"}
    for cluster, message in found.items():
        raw = snappy_decompress(message.value)
        mine = [s for s in sent if s["labels"]["cluster"] == cluster]
        request: Any = WriteRequest.FromString(raw)
        got = sorted(request.timeseries, key=_key)
        want = sorted((_expected_1(s) for s in mine), key=_key)
        assert got == want, (cluster, got, want)
        families = {_metadata_1(s) for s in mine if "metadata" in s} if metadata else set()
        got_metadata = [(m.metric_family_name, m.type, m.help, m.unit) for m in request.metadata]
        assert sorted(got_metadata) == sorted(families)  # once each
        # What the workers read: ferryman's decoder gives the float samples.
        floats = {
            tuple(sorted(s["labels"].items())): [
                (x["value"], x["timestamp"]) for x in s.get("samples", [])
            ]
            for s in mine
        }
        decoded = {
            one.labels: [(x.value, x.timestamp_ms) for x in one.samples]
            for one in decode_write_request(raw)
        }
        assert decoded == floats


def _counts(sent: list[Series]) -> tuple[int, int, int]:
    return (
        sum(len(s.get("samples", [])) for s in sent),
        sum(len(s.get("histograms", [])) for s in sent),
        sum(len(s.get("exemplars", [])) for s in sent),
    )


def test_the_prometheus_client_writes_2_0_and_reads_the_written_counts(gw, unique):
    sent = _series(unique, int(time.time() * 1000))
    samples, histograms, exemplars = _counts(sent)
    assert (samples, histograms, exemplars) == (4, 3, 3)
    result = send(gw.url, sent, token=TOKEN_A)
    assert result.error == ""
    assert result.status == 204
    assert (result.samples, result.histograms, result.exemplars) == (4, 3, 3)
    assert result.written_headers == {
        "X-Prometheus-Remote-Write-Samples-Written": "4",
        "X-Prometheus-Remote-Write-Histograms-Written": "3",
        "X-Prometheus-Remote-Write-Exemplars-Written": "3",
    }
    _check_kafka(gw, sent, metadata=True)
    accepted = gw.gateway.metric(
        "ferryman_gateway_accepted_total", endpoint="remote_write", tenant="team-a"
    )
    assert accepted == samples + histograms


def test_the_prometheus_client_writes_1_0_too(gw, unique):
    sent = _series(unique, int(time.time() * 1000))
    result = send(gw.url, sent, token=TOKEN_A, proto=1)
    assert result.error == ""
    assert result.status == 204
    # A 1.0 answer carries no written counts, and the client reads none for 1.0.
    assert (result.samples, result.histograms, result.exemplars) == (0, 0, 0)
    assert result.written_headers == {}
    _check_kafka(gw, sent, metadata=False)


def test_a_wrong_token_is_a_401_error_for_the_client_and_nothing_reaches_kafka(gw, unique):
    sent = _series(unique, int(time.time() * 1000))
    for proto in (2, 1):
        result = send(gw.url, sent, token=TOKEN_A + "x", proto=proto)
        assert result.status == 401
        assert "401" in result.error
        assert (result.samples, result.histograms, result.exemplars) == (0, 0, 0)
    result = send(gw.url, sent, proto=2)  # no token at all
    assert result.status == 401
    assert "401" in result.error
    assert messages(gw.bootstrap, gw.metrics) == []


def test_a_cluster_of_another_tenant_is_a_403_error_and_nothing_reaches_kafka(gw, unique):
    sent = _series(unique, int(time.time() * 1000))
    sent[2]["labels"]["cluster"] = "beta"  # team-b's
    result = send(gw.url, sent, token=TOKEN_A)
    assert result.status == 403
    assert "beta" in result.error
    assert messages(gw.bootstrap, gw.metrics) == []


class _Bare204(http.server.BaseHTTPRequestHandler):
    """Answers every POST 204 with no written-count headers (a 1.0-only receiver)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def bare_receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bare204)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_client_counts_a_2xx_without_written_headers_as_a_failure(bare_receiver, unique):
    """So its success against the gateway (above) rests on the gateway's headers."""
    result = send(bare_receiver, _series(unique, int(time.time() * 1000)), token=TOKEN_A)
    assert result.status == 204
    assert result.written_headers == {}
    assert "assuming failure" in result.error
