"""The ``count`` transform: log lines → cumulative counter series (remote write)."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.loki import Entry, Stream, encode_push_request
from ferryman.wire.remote_write import (
    TimeSeries,
    decode_write_request,
    snappy_compress,
    snappy_decompress,
)
from functions.count import SPEC
from functions.count.config import CountConfig
from functions.count.core import LineCounter
from workers.function import Context
from workers.records import Record

TS = 1_700_000_000_000_000_000


def config(**values: Any) -> CountConfig:
    return CountConfig.model_validate({"instance": "w1", **values})


def lines(labels: dict[str, str], *texts: str, meta: tuple[tuple[str, str], ...] = ()) -> Stream:
    return Stream(labels, [Entry(TS + i, text, meta) for i, text in enumerate(texts)])


def totals(series: list[TimeSeries]) -> dict[tuple[tuple[str, str], ...], float]:
    return {s.labels: s.samples[0].value for s in series}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


def test_lines_and_bytes_are_counted_by_labels_cumulatively() -> None:
    counter = LineCounter(config(by=["app"], bytes_metric="log_bytes_total"), Clock())
    series, overflow = counter.add(
        [
            lines({"app": "web", "pod": "p1"}, "ab", "é"),
            lines({"app": "web", "pod": "p2"}, "xyz"),
            lines({"pod": "p3", "cluster": "beta"}, "q"),
        ],
        "alpha",
    )
    assert overflow == 0
    web = (("app", "web"), ("cluster", "alpha"), ("instance", "w1"))
    bare = (("cluster", "beta"), ("instance", "w1"))
    assert totals(series) == {
        (("__name__", "ferryman_log_lines_total"), *web): 3.0,
        (("__name__", "log_bytes_total"), *web): 7.0,
        (("__name__", "ferryman_log_lines_total"), *bare): 1.0,
        (("__name__", "log_bytes_total"), *bare): 1.0,
    }
    again, _ = counter.add([lines({"app": "web"}, "more")], "alpha")
    assert totals(again) == {
        (("__name__", "ferryman_log_lines_total"), *web): 4.0,
        (("__name__", "log_bytes_total"), *web): 11.0,
    }


def test_by_labels_fall_back_to_structured_metadata() -> None:
    stream = lines({"app": "web"}, "a", "b", meta=(("level", "warn"),))
    series, _ = LineCounter(config(by=["app", "level"]), Clock()).add([stream], "c")
    assert [dict(s.labels)["level"] for s in series] == ["warn"]
    series, _ = LineCounter(config(by=["app", "level"], from_metadata=False), Clock()).add(
        [stream], "c"
    )
    assert ["level" in dict(s.labels) for s in series] == [False]


def test_timestamps_move_forward_per_series_even_within_a_millisecond() -> None:
    clock = Clock()
    counter = LineCounter(config(), clock)
    stamps = [counter.add([lines({}, "x")], "a")[0][0].samples[0].timestamp_ms for _ in range(3)]
    assert stamps == [1_000, 1_001, 1_002]
    clock.now = 5_000
    assert counter.add([lines({}, "x")], "a")[0][0].samples[0].timestamp_ms == 5_000


def test_series_over_the_limit_fold_into_an_overflow_series_per_cluster() -> None:
    counter = LineCounter(config(by=["pod"], max_series=2), Clock())
    series, overflow = counter.add([lines({"pod": f"p{i}"}, "x", "y") for i in range(4)], "alpha")
    assert overflow == 4
    assert sorted(totals(series).values()) == [2.0, 2.0, 4.0]
    assert (
        ("__name__", "ferryman_log_lines_total"),
        ("cluster", "alpha"),
        ("instance", "w1"),
        ("overflow", "true"),
    ) in totals(series)
    # Known label sets keep counting; new ones keep folding.
    series, overflow = counter.add([lines({"pod": "p0"}, "x"), lines({"pod": "p9"}, "x")], "alpha")
    assert overflow == 1 and sorted(totals(series).values()) == [3.0, 5.0]


def test_instance_defaults_to_hostname_and_pid() -> None:
    assert CountConfig().instance_value() == f"{socket.gethostname()}:{os.getpid()}"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metric": "bad-name"}, "not a valid metric name"),
        ({"bytes_metric": "ferryman_log_lines_total"}, "must differ"),
        ({"by": ["cluster"]}, "always set"),
        ({"by": ["instance"]}, "always set"),
        ({"by": ["a", "a"]}, "twice"),
        ({"by": ["a-b"]}, "not a valid label name"),
        ({"instance_label": "0x"}, "not a valid label name"),
        ({"max_series": 0}, "greater than or equal"),
    ],
)
def test_bad_config_is_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CountConfig.model_validate(values)


def test_handle_publishes_remote_write_with_headers_and_dead_letters_garbage() -> None:
    registry = Registry()
    handler = SPEC.create(
        config(by=["app"], max_series=1),
        Context("count", httpx.Client, registry, logging.getLogger("t")),
    )
    headers = ((h.SCHEMA, h.SCHEMA_LOKI_PUSH), (h.CLUSTER, b"alpha"), (h.TENANT, b"7"))
    body = snappy_compress(
        encode_push_request([lines({"app": "a"}, "1", "2"), lines({"app": "b"}, "3")])
    )
    result = handler.handle(
        [
            Record("logs", 0, 0, b"k", body, headers),
            Record("logs", 0, 1, b"k", b"junk", headers),
            Record("logs", 0, 2, b"k", snappy_compress(b""), headers),
        ]
    )
    assert [(r.offset, "not a Loki push message" in why) for r, why in result.dead] == [(1, True)]
    [output] = result.outputs  # an empty message touches no series: nothing to publish
    assert output.key == b"w1"
    assert output.headers == (
        (h.SCHEMA, h.SCHEMA_REMOTE_WRITE),
        (h.CLUSTER, b"alpha"),
        (h.TENANT, b"7"),
    )
    assert sorted(
        (dict(s.labels).get("app", ""), s.samples[0].value)
        for s in decode_write_request(snappy_decompress(output.value))
    ) == [("", 1.0), ("a", 2.0)]
    assert 'ferryman_count_overflow_lines_total{function="count"} 1' in registry.render()
