"""prometheus_remote_write sink: the label check before sending, pass-through and relabel."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.protobuf import bytes_field
from ferryman.wire.remote_write import (
    Sample,
    TimeSeries,
    decode_write_request,
    encode_write_request,
    snappy_compress,
    snappy_decompress,
)
from functions._records import UnsupportedRecord
from functions.prometheus_remote_write import SPEC
from functions.prometheus_remote_write.config import RemoteWriteConfig
from functions.prometheus_remote_write.encode import LabelCheck, label_problem
from workers.function import Context
from workers.records import Record

TS = 1_700_000_000_000


def series(*labels: tuple[str, str], value: float = 1.0) -> TimeSeries:
    return TimeSeries(tuple(labels), (Sample(value, TS),))


def payload(*many: TimeSeries) -> bytes:
    return encode_write_request(many)


def record(raw: bytes, offset: int = 0, **headers: bytes) -> Record:
    return Record(
        "metrics",
        0,
        offset,
        b"k",
        snappy_compress(raw),
        ((h.SCHEMA, h.SCHEMA_REMOTE_WRITE), *headers.items()),
    )


GOOD = series(("__name__", "up"), ("job", "api"))


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ((("__name__", "up"), ("job", "a")), None),
        ((("__name__", "up"), ("job", "a"), ("job", "b")), "label 'job' twice"),
        ((("job", "a"), ("__name__", "up")), "label '__name__' out of order"),
        ((("__name__", "up"), ("bad-name", "x")), "invalid label name 'bad-name'"),
        ((("__name__", "up"), ("1st", "x")), "invalid label name '1st'"),
        ((("__name__", "up"), ("", "x")), "invalid label name ''"),
        ((("job", "a"),), "no __name__ label"),
        ((), "no __name__ label"),
    ],
)
def test_label_problem(labels: tuple[tuple[str, str], ...], problem: str | None) -> None:
    assert label_problem(labels) == problem


def test_check_names_the_first_bad_series_and_remembers_verdicts() -> None:
    check = LabelCheck()
    bad = series(("__name__", "up"), ("job", "a"), ("job", "b"))
    assert check.problem(payload(GOOD, GOOD)) is None
    assert check.problem(payload(GOOD, bad, GOOD)) == (
        "series 1: label 'job' twice in {__name__='up', job='a', job='b'}"
    )
    assert len(check._verdicts) == 2


def test_check_refuses_labels_that_are_not_utf8() -> None:
    label = bytes_field(1, b"__name__") + bytes_field(2, b"\xff\xfe")
    raw = bytes_field(1, bytes_field(1, label))
    with pytest.raises(UnsupportedRecord, match="UTF-8"):
        LabelCheck().problem(raw)


def test_check_reads_unusual_shapes_with_the_full_decoder() -> None:
    metadata = bytes_field(3, bytes_field(2, b"up"))
    assert LabelCheck().problem(payload(GOOD) + metadata) is None
    bad = payload(series(("job", "a"))) + metadata
    assert LabelCheck().problem(bad) == "series 0: no __name__ label in {job='a'}"
    with pytest.raises(UnsupportedRecord, match="not a remote-write message"):
        LabelCheck().problem(payload(GOOD)[:-3])


@given(
    st.lists(
        st.lists(st.tuples(st.text(max_size=6), st.text(max_size=4)), max_size=4),
        min_size=1,
        max_size=4,
    )
)
def test_check_agrees_with_decoding_then_checking(label_sets: list[list[tuple[str, str]]]) -> None:
    raw = payload(*(series(*labels) for labels in label_sets))
    expected = next(
        (
            f"series {i}"
            for i, one in enumerate(decode_write_request(raw))
            if label_problem(one.labels) is not None
        ),
        None,
    )
    problem = LabelCheck().problem(raw)
    assert (problem if problem is None else problem.split(":")[0]) == expected


class Receiver:
    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.bodies: list[bytes] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        self.headers.append(request.headers)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 204, text="nope")


def sink(receiver: Receiver, **overrides: Any) -> Any:
    transport = httpx.MockTransport(receiver)
    context = Context(
        "prometheus_remote_write",
        lambda **kw: httpx.Client(transport=transport, **kw),
        Registry(),
        logging.getLogger("test"),
    )
    config = RemoteWriteConfig.model_validate({"url": "http://prom:9090/api/v1/write", **overrides})
    return SPEC.create(config, context)


def test_pass_through_sends_the_value_as_is_and_dead_letters_bad_labels() -> None:
    receiver = Receiver()
    good = record(payload(GOOD), 0, tenant=b"team-a")
    duplicate = record(payload(series(("__name__", "up"), ("a", "1"), ("a", "2"))), 1)
    handler = sink(receiver)
    result = handler.handle([good, duplicate, record(b"", 2)])
    assert receiver.bodies == [good.value]
    assert receiver.headers[0]["X-Scope-OrgID"] == "team-a"
    assert [(r.offset, why) for r, why in result.dead] == [
        (1, "refused before sending: series 0: label 'a' twice in {__name__='up', a='1', a='2'}")
    ]
    assert list(result.retry) == []


def test_relabeled_payloads_are_checked_too() -> None:
    receiver = Receiver()
    rules = [{"target_label": "tenant", "replacement": "team-a"}]
    handler = sink(receiver, metric_relabel_configs=rules)
    result = handler.handle([record(payload(GOOD)), record(payload(series(("job", "a"))), 1)])
    assert [r.offset for r, _ in result.dead] == [1]
    [sent] = decode_write_request(snappy_decompress(receiver.bodies[0]))
    assert dict(sent.labels)["tenant"] == "team-a"


def test_backpressure_hands_back_the_rest_unsent_and_pins_nothing() -> None:
    receiver = Receiver(204, 503)
    batch = [record(payload(GOOD), i) for i in range(3)]
    result = sink(receiver).handle(batch)
    assert [r.offset for r in result.retry] == [1, 2]
    assert result.retry_reason == "HTTP 503: nope"
    assert list(result.refused) == []
    assert list(result.dead) == []
    assert len(receiver.bodies) == 2


def test_a_500_is_pinned_on_its_record_and_the_rest_is_sent() -> None:
    receiver = Receiver(204, 500)
    batch = [record(payload(GOOD), i) for i in range(3)]
    result = sink(receiver).handle(batch)
    assert [r.offset for r in result.retry] == [1]
    assert [(r.offset, why) for r, why in result.refused] == [(1, "HTTP 500: nope")]
    assert result.retry_reason == "HTTP 500: nope"
    assert list(result.dead) == []
    assert len(receiver.bodies) == 3
