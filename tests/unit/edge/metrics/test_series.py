from __future__ import annotations

import pytest

from edge.metrics.series import (
    STALE_NAN,
    LimitExceeded,
    SeriesBuilder,
    encode_sample,
    timestamp_field,
)
from ferryman.prom.relabel import RelabelConfig, compile_rules
from ferryman.wire.remote_write import Sample, TimeSeries, decode_write_request

TARGET = (("instance", "h:9100"), ("job", "node"))


def _builder(**options: object) -> SeriesBuilder:
    defaults: dict[str, object] = {
        "honor_labels": False,
        "metric_relabel": None,
        "external_labels": {"cluster": "alpha"},
        "buckets": 16,
    }
    return SeriesBuilder(TARGET, **{**defaults, **options})  # type: ignore[arg-type]


def test_target_labels_win_and_scraped_become_exported() -> None:
    labels = _builder().final_labels("m", (("job", "x"), ("exported_job", "y"), ("a", "1")))
    assert labels == {
        "__name__": "m",
        "job": "node",
        "exported_exported_job": "x",
        "exported_job": "y",
        "a": "1",
        "instance": "h:9100",
        "cluster": "alpha",
    }


def test_honor_labels_keeps_scraped_and_external_labels_do_not_override() -> None:
    labels = _builder(honor_labels=True).final_labels("m", (("job", "x"), ("cluster", "z")))
    assert labels == {"__name__": "m", "job": "x", "instance": "h:9100", "cluster": "z"}


def test_metric_relabel_runs_before_external_labels() -> None:
    relabel = compile_rules([RelabelConfig(source_labels=("cluster",), regex=".+", action="drop")])
    assert _builder(metric_relabel=relabel).final_labels("m", ()) is not None


def test_limits_fail_the_series() -> None:
    with pytest.raises(LimitExceeded, match="label_limit"):
        _builder(label_limit=3).final_labels("m", (("a", "1"),))
    with pytest.raises(LimitExceeded, match="label_value_length_limit"):
        _builder(value_length_limit=3).final_labels("m", (("a", "long"),))


@pytest.mark.parametrize("timestamp", [1_700_000_000_000, 5, 2**62])
def test_encoded_sample_is_a_valid_time_series(timestamp: int) -> None:
    series = _builder().build("m", (("a", "1"),))
    assert series is not None
    for value in (1.5, STALE_NAN):
        raw = encode_sample(series, value, timestamp, timestamp_field(timestamp))
        decoded = decode_write_request(raw)
        assert decoded[0].labels == (
            ("__name__", "m"),
            ("a", "1"),
            ("cluster", "alpha"),
            ("instance", "h:9100"),
            ("job", "node"),
        )
        got = decoded[0].samples[0]
        assert got.timestamp_ms == timestamp
        assert got.value == value or (value != value and got.value != got.value)
    assert decode_write_request(encode_sample(series, 2.0, timestamp)) == [
        TimeSeries(decoded[0].labels, (Sample(2.0, timestamp),))
    ]
