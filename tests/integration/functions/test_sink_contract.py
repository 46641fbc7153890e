"""The delivery contract, proved once for every registered sink against its real backend.

For each sink in :mod:`functions.registry` (``kind == "sink"``), a real ``ferryman
worker`` consumes from the real Kafka and writes to the real backend through a
:class:`~tests.integration.faultproxy.FaultProxy`, which forwards everything unchanged
unless a test arms a fault. The contract:

* 2xx: the records are stored (read back from the backend), then their offsets are
  committed; nothing is dead-lettered, no error is counted.
* a permanent refusal (4xx): the refused records are dead-lettered, with the
  ``ferryman.error`` / ``ferryman.function`` / ``ferryman.source`` headers, and
  committed; the rest is stored; ``ferryman_records_dead_lettered_total`` and
  ``ferryman_errors_total{error_type="permanent"}`` count them.
* 5xx, then 429 with ``Retry-After``: retried (429s no faster than Retry-After asks),
  nothing is committed meanwhile and nothing dead-lettered; once the backend answers
  2xx again, every record is stored and committed.

The refusal is the backend's own wherever it has one for data the sink sends:
Prometheus refuses a sample out of its time bounds (400), Elasticsearch a document
whose field clashes with the index mapping (per-item 400 document_parsing_exception),
InfluxDB a point whose field type clashes with the shard's (400 partial write).
VictoriaLogs (the Loki stand-in) and VictoriaMetrics' OpenTSDB listener have no such
refusal: whatever the sink sends they store or drop silently, so for ``loki`` and
``opentsdb`` the proxy answers 400 with a body shaped like Loki's and OpenTSDB's own.
5xx and 429 always come from the proxy. A new sink joins these tests by registering;
until it has a case in ``CASES`` they fail.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2

from ferryman import headers as h
from ferryman.wire.loki import Entry, Stream
from functions import registry
from tests.integration.functions.traces import stored_span_ids, trace
from tests.integration.pipeline import (
    Message,
    create_topics,
    dead_letters,
    loki_push,
    produce,
    remote_write,
    series_ids,
    time_series,
    topic_size,
    wait_for,
)

SINKS = sorted(name for name in registry.names() if registry.load(name).kind == "sink")

#: Small batches and short backoffs keep a retry test to seconds.
FAST = {
    "batch": {"max_records": 20, "max_wait_s": 0.1},
    "retry": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5},
    "shutdown_deadline_s": 5,
}
RETRY_AFTER_S = 1


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---- one case per sink ------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A permanent refusal the proxy stages, shaped like the backend's own."""

    status: int
    body: str | bytes
    content_type: str = "text/plain; charset=utf-8"


class Case:
    """How one sink is configured, fed and read back, and how its backend refuses data."""

    #: (stack service, endpoint) the proxy forwards to
    backend: tuple[str, str]
    #: the path of the write request: faults are armed on it only
    write_path: str
    #: how the ``ferryman.error`` header of a refused record begins
    reason: bytes

    def __init__(self, stack: Any, unique: str) -> None:
        self.stack = stack
        self.unique = unique

    def refusal(self) -> Refusal | None:
        """None: the backend refuses :meth:`bad` records itself; else what the proxy
        answers in its place."""
        return None

    def prepare(self) -> None:
        """Set the backend up before the worker starts (databases, templates)."""

    def config(self, url: str) -> dict[str, Any]:
        raise NotImplementedError

    def spread(self) -> dict[str, Any]:
        """Config that makes a write request hold about one record, so a batch takes
        several requests (default: the sink already sends one request per record)."""
        return {}

    def good(self, start: int, count: int) -> tuple[list[Message], set[str]]:
        """``count`` records the backend stores, and the ids they are read back by."""
        raise NotImplementedError

    def stored(self) -> set[str]:
        """The ids the backend holds for this test."""
        raise NotImplementedError

    def bad(self, count: int) -> list[Message]:
        """Records the backend refuses for good (used where ``refusal`` is None)."""
        raise NotImplementedError

    def check_dead(self, dead: list[Any], refused: list[Message]) -> None:
        """The dead-lettered messages are the refused records, as they were."""
        assert sorted(d.value for d in dead) == sorted(m.value for m in refused)


class _RemoteWriteCase(Case):
    """Remote-write records: each holds two series ``sid`` = ``m-s`` of one metric, with
    one sample at the same time ``at``."""

    def __init__(self, stack: Any, unique: str) -> None:
        super().__init__(stack, unique)
        self.at = _now_ms()

    @property
    def metric(self) -> str:
        return f"ct_{self.unique}"

    def good(self, start: int, count: int) -> tuple[list[Message], set[str]]:
        messages, sent = [], set()
        for m in range(start, start + count):
            sids = [f"{m}-{s}" for s in range(2)]
            sent.update(sids)
            messages.append(
                remote_write(
                    [
                        time_series({"__name__": self.metric, "sid": sid}, (float(m), self.at))
                        for sid in sids
                    ],
                    cluster="alpha",
                    key=f"{m}".encode(),
                )
            )
        return messages, sent


class PrometheusRemoteWrite(_RemoteWriteCase):
    """Prometheus refuses a second, different value for a series at a time it already
    holds: 400 duplicate sample for timestamp. (A sample older than the head block is
    no good here: Prometheus 2.42 answers that one 500 "too old sample".)"""

    backend = ("prometheus", "http")
    write_path = "/api/v1/write"
    reason = b"HTTP 400: duplicate sample for timestamp"

    def config(self, url: str) -> dict[str, Any]:
        return {"url": url + self.write_path}

    def stored(self) -> set[str]:
        return series_ids(self.stack("prometheus", "http"), self.metric)

    def bad(self, count: int) -> list[Message]:
        # Series m-0 of the first records, at the same time, with another value.
        return [
            remote_write(
                [time_series({"__name__": self.metric, "sid": f"{m}-0"}, (-1.0, self.at))],
                cluster="alpha",
            )
            for m in range(count)
        ]


class InfluxDB(_RemoteWriteCase):
    """InfluxDB refuses a float point for a measurement whose ``value`` field holds
    integers: 400 partial write: field type conflict."""

    backend = ("influxdb", "http")
    write_path = "/write"
    reason = b"HTTP 400: partial write: field type conflict"

    @property
    def base(self) -> str:
        return self.stack("influxdb", "http")

    def prepare(self) -> None:
        created = httpx.post(
            f"{self.base}/query", params={"q": f'CREATE DATABASE "{self.unique}"'}, timeout=10
        )
        assert created.status_code == 200, created.text
        written = httpx.post(
            f"{self.base}/write",
            params={"db": self.unique, "precision": "ms"},
            content=f"clash_{self.unique},sid=old value=1i {_now_ms()}",
            timeout=10,
        )
        assert written.status_code == 204, written.text

    def config(self, url: str) -> dict[str, Any]:
        return {"url": url, "database": self.unique}

    def spread(self) -> dict[str, Any]:
        return {"max_lines": 2}

    def stored(self) -> set[str]:
        response = httpx.get(
            f"{self.base}/query",
            timeout=10,
            params={"db": self.unique, "q": f'SELECT "value" FROM "{self.metric}" GROUP BY "sid"'},
        )
        response.raise_for_status()
        return {s["tags"]["sid"] for s in response.json()["results"][0].get("series", [])}

    def bad(self, count: int) -> list[Message]:
        return [
            remote_write(
                [
                    time_series(
                        {"__name__": f"clash_{self.unique}", "sid": f"bad-{m}"}, (2.5, _now_ms())
                    )
                ],
                cluster="alpha",
            )
            for m in range(count)
        ]


class OpenTSDB(_RemoteWriteCase):
    """VictoriaMetrics' OpenTSDB listener refuses nothing the sink sends: the proxy
    answers 400 with OpenTSDB's error object."""

    backend = ("victoriametrics", "opentsdb")
    write_path = "/api/put"
    reason = b"HTTP 400: Unable to parse the given JSON"

    def refusal(self) -> Refusal:
        return Refusal(
            400,
            json.dumps(
                {
                    "error": {
                        "code": 400,
                        "message": "Unable to parse the given JSON",
                        "details": "Unexpected character ('}' (code 125))",
                    }
                }
            ),
            "application/json",
        )

    def config(self, url: str) -> dict[str, Any]:
        return {"url": url}

    def spread(self) -> dict[str, Any]:
        return {"max_datapoints": 2}

    def stored(self) -> set[str]:
        base = self.stack("victoriametrics", "http")
        httpx.get(f"{base}/internal/force_flush", timeout=10).raise_for_status()
        response = httpx.get(
            f"{base}/api/v1/export", timeout=10, params={"match[]": f'{{__name__="{self.metric}"}}'}
        )
        response.raise_for_status()
        return {json.loads(line)["metric"]["sid"] for line in response.text.splitlines() if line}


class _ElasticsearchCase(Case):
    """An operator's component template maps ``labels.code`` as long: a document whose
    code is not a number is refused per item (400 document_parsing_exception)."""

    backend = ("elasticsearch", "http")
    write_path = "/_bulk"
    reason = b"HTTP 400 document_parsing_exception"
    prefix: str

    @property
    def data_stream(self) -> str:
        return f"{self.prefix}-{self.unique}-default"

    def prepare(self) -> None:
        response = httpx.put(
            f"{self.stack('elasticsearch', 'http')}/_component_template/{self.unique}-codes",
            json={
                "template": {
                    "mappings": {
                        "properties": {"labels": {"properties": {"code": {"type": "long"}}}}
                    }
                }
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text

    def config(self, url: str) -> dict[str, Any]:
        return {
            "url": url,
            "data_stream": self.data_stream,
            "template": {"composed_of": [f"{self.unique}-codes"]},
        }

    def spread(self) -> dict[str, Any]:
        return {"max_bulk_bytes": 1024}

    def documents(self) -> list[dict[str, Any]]:
        base = self.stack("elasticsearch", "http")
        if httpx.head(f"{base}/{self.data_stream}", timeout=30).status_code == 404:
            return []  # nothing written yet
        httpx.post(f"{base}/{self.data_stream}/_refresh", timeout=30).raise_for_status()
        response = httpx.post(
            f"{base}/{self.data_stream}/_search",
            timeout=30,
            json={"size": 10_000, "query": {"match_all": {}}},
        )
        response.raise_for_status()
        return [hit["_source"] for hit in response.json()["hits"]["hits"]]

    def check_dead(self, dead: list[Any], refused: list[Message]) -> None:
        # Elasticsearch refuses documents, not records: each dead letter is one document.
        documents = [json.loads(d.value) for d in dead]
        assert len(documents) == self.documents_per_bad_record * len(refused)
        assert all(d["labels"]["code"] == "oops" for d in documents)
        assert all(dict(d.headers)[h.SCHEMA] == b"elasticsearch.doc.v1" for d in dead)

    documents_per_bad_record = 1


class ElasticsearchMetrics(_ElasticsearchCase, _RemoteWriteCase):
    prefix = "metrics"

    def good(self, start: int, count: int) -> tuple[list[Message], set[str]]:
        now, messages, sent = _now_ms(), [], set()
        for m in range(start, start + count):
            sids = [f"{m}-{s}" for s in range(2)]
            sent.update(sids)
            messages.append(
                remote_write(
                    [
                        time_series(
                            {"__name__": self.metric, "sid": sid, "code": "200"}, (float(m), now)
                        )
                        for sid in sids
                    ],
                    cluster="alpha",
                )
            )
        return messages, sent

    def stored(self) -> set[str]:
        return {d["labels"]["sid"] for d in self.documents()}

    def bad(self, count: int) -> list[Message]:
        return [
            remote_write(
                [
                    time_series(
                        {"__name__": self.metric, "sid": f"bad-{m}", "code": "oops"},
                        (1.0, _now_ms()),
                    )
                ],
                cluster="alpha",
            )
            for m in range(count)
        ]


class _LokiPushCase(Case):
    """Loki push records: each holds one stream of ``job`` = the test with two lines of
    some 300 bytes (so that 1 KiB requests hold one record each)."""

    def push(
        self, start: int, count: int, labels: dict[str, str], word: str
    ) -> tuple[list[Message], set[str]]:
        base = time.time_ns() - 10 * 10**9
        messages, sent = [], set()
        for m in range(start, start + count):
            lines = [f"{word} {m}-{i} {'.' * 300}" for i in range(2)]
            sent.update(lines)
            entries = [Entry(base + m * 1000 + i, line) for i, line in enumerate(lines)]
            messages.append(
                loki_push(
                    [Stream({"job": self.unique, **labels}, entries)],
                    cluster="alpha",
                    key=f"{m}".encode(),
                )
            )
        return messages, sent

    def good(self, start: int, count: int) -> tuple[list[Message], set[str]]:
        return self.push(start, count, {"app": "a"}, "line")


class Loki(_LokiPushCase):
    """VictoriaLogs refuses nothing the sink sends: the proxy answers 400 with Loki's
    plain-text reason."""

    backend = ("victorialogs", "http")
    write_path = "/insert/loki/api/v1/push"
    reason = b"HTTP 400: entry for stream"

    def refusal(self) -> Refusal:
        return Refusal(
            400,
            f"entry for stream '{{job=\"{self.unique}\"}}' has timestamp "
            "too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp "
            "is: 2026-01-01T00:00:00Z\n",
        )

    def config(self, url: str) -> dict[str, Any]:
        return {"url": url, "push_path": self.write_path}

    def spread(self) -> dict[str, Any]:
        return {"max_request_bytes": 1024}

    def stored(self) -> set[str]:
        response = httpx.get(
            f"{self.stack('victorialogs', 'http')}/select/logsql/query",
            params={"query": f'job:="{self.unique}"', "limit": "10000"},
            timeout=30,
        )
        response.raise_for_status()
        return {json.loads(line)["_msg"] for line in response.text.splitlines() if line.strip()}


class ElasticsearchLogs(_ElasticsearchCase, _LokiPushCase):
    prefix = "logs"
    documents_per_bad_record = 2

    def good(self, start: int, count: int) -> tuple[list[Message], set[str]]:
        return self.push(start, count, {"code": "200"}, "line")

    def stored(self) -> set[str]:
        return {d["message"] for d in self.documents()}

    def bad(self, count: int) -> list[Message]:
        return self.push(1000, count, {"code": "oops"}, "bad")[0]


class OtlpTraces(Case):
    """Jaeger's OTLP receiver takes every well-formed span the sink sends (the sink
    dead-letters malformed ones before sending): the proxy answers 400 with the
    ``google.rpc.Status`` protobuf body an OTLP/HTTP receiver refuses with. Each record
    is one trace of one span, padded to some 600 bytes so that 1 KiB requests hold one
    record each; records are read back from Jaeger by span id."""

    backend = ("jaeger", "otlp_http")
    write_path = "/v1/traces"
    reason = b"HTTP 400: proto: illegal wireType"

    def refusal(self) -> Refusal:
        body = status_pb2.Status(code=3, message="proto: illegal wireType 7")
        return Refusal(400, body.SerializeToString(), "application/x-protobuf")

    def config(self, url: str) -> dict[str, Any]:
        return {"url": url}

    def spread(self) -> dict[str, Any]:
        return {"max_request_bytes": 1024}

    @property
    def service(self) -> str:
        return f"svc-{self.unique}"

    def good(self, start: int, count: int) -> tuple[list[Message], set[str]]:
        made = [trace(self.service, spans=1, padding=600) for _ in range(count)]
        return [t.message for t in made], set().union(*(t.span_ids for t in made))

    def stored(self) -> set[str]:
        return stored_span_ids(self.stack("jaeger", "query"), self.service)


CASES: dict[str, type[Case]] = {
    "elasticsearch_logs": ElasticsearchLogs,
    "elasticsearch_metrics": ElasticsearchMetrics,
    "influxdb": InfluxDB,
    "loki": Loki,
    "opentsdb": OpenTSDB,
    "otlp_traces": OtlpTraces,
    "prometheus_remote_write": PrometheusRemoteWrite,
}


def _case(sink: str, stack: Any, unique: str) -> Case:
    if sink not in CASES:
        pytest.fail(
            f"sink {sink!r} is registered but has no case in CASES: add one so it "
            f"proves the delivery contract",
            pytrace=False,
        )
    case = CASES[sink](stack, unique)
    case.prepare()
    return case


def test_every_case_is_a_registered_sink():
    assert set(CASES) <= set(SINKS), (
        f"cases for sinks no longer registered: {set(CASES) - set(SINKS)}"
    )
    assert SINKS, "no sink is registered"


# ---- the contract -----------------------------------------------------------------------


@pytest.mark.parametrize("sink", SINKS)
def test_stored_then_committed(sink, stack, unique, fault_proxy, worker):
    """2xx: every record is in the backend and committed; nothing dead, no error."""
    case = _case(sink, stack, unique)
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    proxy = fault_proxy(stack(*case.backend))
    messages, sent = case.good(0, 8)
    produce(bootstrap, unique, messages)
    running = worker(sink, unique, case.config(proxy.url), **FAST)

    wait_for(lambda: running.committed() == len(messages), 60, "every offset committed")
    assert wait_for(lambda: case.stored() == sent, 30, "every record stored")
    assert proxy.forwarded(case.write_path), "the sink wrote around the proxy"
    assert proxy.refused() == []
    assert running.metric("ferryman_records_sent_total") == len(messages)
    assert running.metric("ferryman_records_dead_lettered_total") == 0
    assert running.errors_but_rebalance_quirk() == {}
    assert topic_size(bootstrap, running.dead_letter_topic) == 0


@pytest.mark.parametrize("sink", SINKS)
def test_refused_for_good_is_dead_lettered_and_committed(sink, stack, unique, fault_proxy, worker):
    """A permanent 4xx: the refused records go to the dead-letter topic with the three
    headers and are committed; the others are stored. See the module docstring for
    which backends refuse by themselves and where the proxy stands in."""
    case = _case(sink, stack, unique)
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    proxy = fault_proxy(stack(*case.backend))
    before, sent = case.good(0, 4)
    after, sent_after = case.good(4, 4)
    sent |= sent_after
    refusal = case.refusal()
    if refusal is None:
        refused = case.bad(3)
        produce(bootstrap, unique, [*before, *refused, *after])
        running = worker(sink, unique, case.config(proxy.url), **FAST)
    else:
        # Everything written while the fault is armed is refused; what comes after
        # the fault is healed must flow.
        refused, _ = case.good(100, 3)
        proxy.fail(
            refusal.status,
            body=refusal.body,
            content_type=refusal.content_type,
            path=case.write_path,
        )
        produce(bootstrap, unique, refused)
        running = worker(sink, unique, case.config(proxy.url), **FAST)
        wait_for(lambda: running.committed() == len(refused), 60, "the refused committed")
        proxy.heal()
        produce(bootstrap, unique, [*before, *after])
    total = len(before) + len(refused) + len(after)

    wait_for(lambda: running.committed() == total, 60, "every offset committed")
    assert wait_for(lambda: case.stored() == sent, 30, "the records not refused stored")
    dead = dead_letters(bootstrap, running.dead_letter_topic, timeout_ms=3000)
    case.check_dead(dead, refused)
    for message in dead:
        headers = dict(message.headers)
        assert headers[h.DEAD_LETTER_ERROR].startswith(case.reason), headers
        assert headers[h.DEAD_LETTER_FUNCTION] == sink.encode()
        assert headers[h.DEAD_LETTER_SOURCE].startswith(f"{unique}/0/".encode())
    assert running.metric("ferryman_records_dead_lettered_total") == len(dead)
    assert running.metric("ferryman_errors_total", error_type="permanent", stage="deliver") == len(
        dead
    )


@pytest.mark.parametrize("sink", SINKS)
def test_unavailable_then_throttled_retries_and_commits_only_once_stored(
    sink, stack, unique, fault_proxy, worker
):
    """503s, then 429s with Retry-After: retried, nothing committed or dead-lettered
    meanwhile, 429s retried no sooner than asked; once the backend answers again,
    every record is stored and committed. Both refusals come from the proxy."""
    case = _case(sink, stack, unique)
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    proxy = fault_proxy(stack(*case.backend))
    proxy.fail(503, body="service unavailable\n", path=case.write_path)
    messages, sent = case.good(0, 8)
    produce(bootstrap, unique, messages)
    running = worker(sink, unique, case.config(proxy.url), **FAST)

    wait_for(lambda: len(proxy.refused(503)) >= 3, 60, "three 503s")
    assert running.committed() == 0, "committed while the backend answered 503"
    proxy.fail(
        429,
        retry_after=RETRY_AFTER_S,
        body="too many requests\n",
        path=case.write_path,
        replace=True,
    )
    wait_for(lambda: len(proxy.refused(429)) >= 3, 60, "three 429s")
    assert running.committed() == 0, "committed while the backend answered 429"
    gaps = [b.at - a.at for a, b in itertools.pairwise(proxy.refused(429))]
    assert min(gaps) >= RETRY_AFTER_S * 0.9, f"Retry-After: {RETRY_AFTER_S} ignored: {gaps}"
    assert case.stored() == set()
    proxy.heal()

    wait_for(lambda: running.committed() == len(messages), 60, "every offset committed")
    assert wait_for(lambda: case.stored() == sent, 30, "every record stored")
    assert running.metric("ferryman_errors_total", stage="deliver") >= 5
    assert running.metric("ferryman_errors_total", error_type="permanent") == 0
    assert running.metric("ferryman_records_dead_lettered_total") == 0
    assert topic_size(bootstrap, running.dead_letter_topic) == 0


@pytest.mark.parametrize("sink", SINKS)
def test_an_outage_that_starts_mid_batch_holds_the_partition(
    sink, stack, unique, fault_proxy, worker
):
    """The backend takes the first write of a batch, then answers 503 to every write,
    more often than ``retry.partial_max_attempts``: an outage that began mid-batch, not
    a poison record. Nothing may be dead-lettered or committed meanwhile; once the
    backend is back, every record is stored and committed. The 503s come from the
    proxy; the sink is configured so that a write holds about one record."""
    case = _case(sink, stack, unique)
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    proxy = fault_proxy(stack(*case.backend))
    proxy.pass_through(1, path=case.write_path)
    proxy.fail(503, body="service unavailable\n", path=case.write_path)
    messages, sent = case.good(0, 8)
    produce(bootstrap, unique, messages)
    bound = 3
    # One batch: the runtime waits a second for all eight records before delivering.
    running = worker(
        sink,
        unique,
        {**case.config(proxy.url), **case.spread()},
        **{
            **FAST,
            "batch": {"max_records": 20, "max_wait_s": 1.0},
            "retry": {**FAST["retry"], "partial_max_attempts": bound},
        },
    )

    wait_for(
        lambda: (
            len(proxy.refused(503)) >= 3 * bound
            or running.metric("ferryman_records_dead_lettered_total")
        ),
        60,
        f"{3 * bound} 503s (or a dead letter)",
    )
    assert proxy.forwarded(case.write_path), "the backend took nothing before the outage"
    assert running.metric("ferryman_records_dead_lettered_total") == 0, (
        "records were dead-lettered because the backend was down"
    )
    assert topic_size(bootstrap, running.dead_letter_topic) == 0
    assert running.committed() == 0
    proxy.heal()

    wait_for(lambda: running.committed() == len(messages), 60, "every offset committed")
    assert wait_for(lambda: case.stored() == sent, 30, "every record stored")
