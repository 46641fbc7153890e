"""prometheus_remote_write: the label check before sending and the request headers (pure
steps; the handler against the real Prometheus is in tests/integration/functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman import headers as h
from ferryman.wire.protobuf import bytes_field
from ferryman.wire.remote_write import (
    Sample,
    TimeSeries,
    decode_write_request,
    encode_write_request,
    snappy_compress,
)
from functions._records import UnsupportedRecord
from functions.prometheus_remote_write.config import RemoteWriteConfig
from functions.prometheus_remote_write.encode import LabelCheck, label_problem, request_headers
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


def test_the_tenant_header_comes_from_the_config_or_the_record() -> None:
    """A pure encode check; the handler's delivery is proven against the real
    Prometheus in tests/integration/functions/test_prometheus_remote_write_handler.py."""
    config = RemoteWriteConfig.model_validate({"url": "http://prom:9090/api/v1/write"})
    assert request_headers(config, record(payload(GOOD), tenant=b"team-a"))["X-Scope-OrgID"] == (
        "team-a"
    )
    assert "X-Scope-OrgID" not in request_headers(config, record(payload(GOOD)))
    fixed = config.model_copy(update={"tenant": "ops"})
    assert request_headers(fixed, record(payload(GOOD), tenant=b"team-a"))["X-Scope-OrgID"] == "ops"
