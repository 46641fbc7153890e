"""opentsdb sink: datapoints, name rules, tag limit, chunking and classification (pure)."""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.wire.remote_write import Sample, TimeSeries
from functions.opentsdb.classify import blame, classify, data_at_fault, item_status, transient
from functions.opentsdb.config import OpenTSDBConfig
from functions.opentsdb.encode import Chunk, DatapointEncoder, Tally, chunk
from functions.opentsdb.send import put_params

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
TS = 1_700_000_000_123
ALLOWED = re.compile(r"[A-Za-z0-9\-_./]+")


def config(**overrides: object) -> OpenTSDBConfig:
    return OpenTSDBConfig.model_validate({"url": "http://tsdb:4242", **overrides})


def series(labels: dict[str, str], *values: float, ts: int = TS) -> TimeSeries:
    return TimeSeries(
        tuple(sorted(labels.items())), tuple(Sample(v, ts + i) for i, v in enumerate(values))
    )


def encode(
    s: TimeSeries, cluster: str | None = None, tally: Tally | None = None, **overrides: object
) -> list[dict[str, Any]]:
    units = DatapointEncoder(config(**overrides)).datapoints(s, cluster, tally or Tally())
    return [json.loads(unit) for unit in units]


# ---- mapping ---------------------------------------------------------------------------


def test_a_sample_becomes_a_put_datapoint_in_milliseconds() -> None:
    assert encode(series({"__name__": "node_load1", "cluster": "a", "job": "node"}, 0.5)) == [
        {
            "metric": "node_load1",
            "timestamp": TS,
            "value": 0.5,
            "tags": {"cluster": "a", "job": "node"},
        }
    ]


def test_cluster_comes_from_the_header_only_when_the_series_lacks_it() -> None:
    assert encode(series({"__name__": "m", "x": "1"}, 1), "beta")[0]["tags"] == {
        "cluster": "beta",
        "x": "1",
    }
    assert encode(series({"__name__": "m", "cluster": "a"}, 1), "beta")[0]["tags"] == {
        "cluster": "a"
    }


def test_a_series_without_tags_gets_the_placeholder() -> None:
    assert encode(series({"__name__": "m"}, 1))[0]["tags"] == {"cluster": "unknown"}
    assert encode(
        series({"__name__": "m", "empty": ""}, 1),
        placeholder_tag={"key": "source", "value": "ferryman"},
    )[0]["tags"] == {"source": "ferryman"}
    assert encode(series({"__name__": "m"}, 1), "beta")[0]["tags"] == {"cluster": "beta"}


def test_names_and_values_are_sanitized_and_counted() -> None:
    tally = Tally()
    [dp] = encode(
        series(
            {
                "__name__": "http:requests total",
                "path": "/api/v1 x,y=z",
                "ok-label.x/y": "a_b-c.d/e",
            },
            1,
        ),
        tally=tally,
    )
    assert dp["metric"] == "http_requests_total"
    assert dp["tags"] == {"path": "/api/v1_x_y_z", "ok-label.x/y": "a_b-c.d/e"}
    assert tally.sanitized == {"metric": 1, "tag_value": 1}
    assert encode(series({"__name__": "a:b"}, 1), replacement=".")[0]["metric"] == "a.b"


def test_unicode_letters_are_replaced_too() -> None:
    assert encode(series({"__name__": "m", "city": "Zürich"}, 1))[0]["tags"] == {"city": "Z_rich"}


def test_labels_that_collide_after_sanitizing_keep_the_first_by_name() -> None:
    tally = Tally()
    [dp] = encode(series({"__name__": "m", "a b": "1", "a:b": "2", "a_b": "3"}, 1), tally=tally)
    assert dp["tags"] == {"a_b": "1"}
    assert tally.tags_dropped == 2


# ---- the tag limit ---------------------------------------------------------------------


def test_twelve_labels_keep_cluster_then_the_first_names() -> None:
    labels = {"__name__": "m", "cluster": "alpha", **{f"l{i:02d}": str(i) for i in range(10)}}
    assert len(labels) == 12
    tally = Tally()
    [dp] = encode(series(labels, 1), tally=tally)
    assert dp["tags"] == {"cluster": "alpha", **{f"l{i:02d}": str(i) for i in range(7)}}
    assert tally.tags_dropped == 3


def test_keep_tags_order_and_a_smaller_limit() -> None:
    labels = {"__name__": "m", "a": "1", "b": "2", "cluster": "c", "zone": "z", "job": "j"}
    [dp] = encode(series(labels, 1), max_tags=3, keep_tags=["zone", "cluster", "absent"])
    assert dp["tags"] == {"zone": "z", "cluster": "c", "a": "1"}


def test_dropped_tags_are_counted_per_series_not_per_sample() -> None:
    tally = Tally()
    labels = {"__name__": "m", **{f"k{i}": "v" for i in range(10)}}
    assert len(encode(series(labels, 1, 2, 3), tally=tally)) == 3
    assert tally.tags_dropped == 2


NAMES = st.text(alphabet=st.sampled_from(list("abcxyz_:. -é/")), min_size=1, max_size=8)


@given(labels=st.dictionaries(NAMES, NAMES, max_size=14), max_tags=st.integers(1, 10))
def test_limit_and_names_hold_for_any_labels(labels: dict[str, str], max_tags: int) -> None:
    labels.pop("__name__", None)
    tally = Tally()
    [dp] = encode(series({"__name__": "m", **labels}, 1), tally=tally, max_tags=max_tags)
    tags: dict[str, str] = dp["tags"]
    assert 1 <= len(tags) <= max_tags
    assert all(ALLOWED.fullmatch(k) and ALLOWED.fullmatch(v) for k, v in tags.items())
    distinct = {re.sub(r"[^A-Za-z0-9\-_./]", "_", k) for k in labels}
    # every label is kept or counted as dropped (over the limit, or a name collision)
    assert len(tags) + tally.tags_dropped == max(len(labels), 1)
    if "cluster" in distinct:
        assert "cluster" in tags
    others = sorted(distinct - {"cluster"})
    kept = [k for k in others if k in tags]
    assert kept == others[: len(kept)], "tags are dropped from the end of the name order"


# ---- samples ---------------------------------------------------------------------------


def test_nan_inf_stale_and_too_early_samples_are_skipped_and_counted() -> None:
    tally = Tally()
    s = TimeSeries(
        (("__name__", "m"),),
        (
            Sample(1.0, TS),
            Sample(math.nan, TS),
            Sample(STALE, TS),
            Sample(-math.inf, TS),
            Sample(2.0, 1000),
            Sample(3.0, TS + 1),
        ),
    )
    assert [dp["value"] for dp in encode(s, tally=tally)] == [1.0, 3.0]
    assert tally.skipped == {"nan": 1, "stale_marker": 1, "inf": 1, "timestamp": 1}


def test_series_without_a_name_is_skipped() -> None:
    tally = Tally()
    assert encode(series({"job": "x"}, 1), tally=tally) == []
    assert tally.skipped == {"no_name": 1}


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, 1e16, 5e-324, 1.7976931348623157e308])
def test_values_are_json_numbers(value: float) -> None:
    assert encode(series({"__name__": "m"}, value))[0]["value"] == value


# ---- chunks ----------------------------------------------------------------------------


def test_chunks_hold_at_most_max_datapoints_and_form_a_json_array() -> None:
    units = [(i // 4, json.dumps({"i": i}).encode()) for i in range(120)]
    chunks = chunk(units, 50)
    assert [len(c.units) for c in chunks] == [50, 50, 20]
    assert [d["i"] for c in chunks for d in json.loads(c.body())] == list(range(120))
    assert chunks[2].owners == {25, 26, 27, 28, 29}
    assert chunk([], 50) == []


def test_by_owner_splits_a_chunk_per_record() -> None:
    c = Chunk(((1, b"{}"), (0, b"[]"), (1, b"1")))
    assert [x.body() for x in c.by_owner()] == [b"[[]]", b"[{},1]"]


def test_put_parameters() -> None:
    assert put_params(config()) == {"details": "", "sync": "", "sync_timeout": "20000"}
    assert put_params(config(sync=False)) == {"details": ""}
    assert put_params(config(sync_timeout_s=0)) == {"details": "", "sync": ""}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sync_timeout_s": 30}, "below timeout_s"),
        ({"replacement": " "}, "one of"),
        ({"replacement": "__"}, "one of"),
        ({"placeholder_tag": {"key": "a b"}}, "only A-Z"),
        ({"max_tags": 0}, "greater than or equal to 1"),
    ],
)
def test_config_errors(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(**settings)


# ---- classification of what OpenTSDB answers ------------------------------------------


def _dp(metric: str, ts: int, tags: dict[str, str], value: str = "1.0") -> dict[str, Any]:
    return {"metric": metric, "timestamp": ts, "value": value, "tags": tags}


def _details(errors: list[tuple[dict[str, Any], str]], success: int, **extra: int) -> str:
    return json.dumps(
        {
            "errors": [{"datapoint": d, "error": e} for d, e in errors],
            "failed": len(errors),
            "success": success,
            **extra,
        }
    )


CHUNK = Chunk(
    (
        (0, json.dumps(_dp("m", TS, {"cluster": "a"})).encode()),
        (1, json.dumps(_dp("m", TS, {"cluster": "b"})).encode()),
        (2, json.dumps(_dp("n", TS, {"cluster": "a"})).encode()),
        (2, json.dumps(_dp("n", TS + 1, {"cluster": "a"})).encode()),
    )
)


def test_stored_answers_are_ok() -> None:
    assert classify(204, {}, "").kind == "ok"
    assert classify(200, {}, '{"success":50,"failed":0,"errors":[]}').kind == "ok"
    assert classify(200, {}, '{"timeouts":0,"success":50,"failed":0,"errors":[]}').kind == "ok"


def test_a_refused_datapoint_dead_letters_its_record_only() -> None:
    body = _details(
        [(_dp("n", TS + 1, {"cluster": "a"}, "x"), "Unable to parse value to a number")], success=3
    )
    outcome = classify(400, {}, body)
    assert outcome.kind == "permanent"
    assert outcome.reason.startswith(
        "HTTP 400: OpenTSDB refused 1 datapoints; first: Unable to parse value to a number (n "
    )
    verdicts = blame(400, body, CHUNK)
    assert verdicts is not None and list(verdicts) == [2]
    assert verdicts[2].kind == "permanent"
    assert "Unable to parse value to a number" in verdicts[2].reason


def test_storage_trouble_is_retried_per_record() -> None:
    body = _details(
        [(_dp("m", TS, {"cluster": "b"}), "Storage exception: region offline")], success=3
    )
    assert classify(200, {}, body).kind == "retry"
    verdicts = blame(200, body, CHUNK)
    assert verdicts is not None
    assert {k: v.kind for k, v in verdicts.items()} == {1: "retry"}


def test_sync_timeouts_are_retried() -> None:
    body = json.dumps(
        {
            "errors": [{"datapoint": _dp("m", TS, {"cluster": "a"}), "error": "Write timedout"}],
            "failed": 0,
            "success": 3,
            "timeouts": 1,
        }
    )
    outcome = classify(400, {}, body)
    assert outcome.kind == "retry"
    verdicts = blame(400, body, CHUNK)
    assert verdicts is not None and verdicts[0].kind == "retry"


def test_permanent_wins_over_retry_for_one_record() -> None:
    body = _details(
        [
            (_dp("n", TS, {"cluster": "a"}), "Please throttle"),
            (_dp("n", TS + 1, {"cluster": "a"}), 'Invalid tag value ("a b")'),
        ],
        success=2,
    )
    verdicts = blame(400, body, CHUNK)
    assert verdicts is not None and verdicts[2].kind == "permanent"


def test_blame_gives_up_when_the_answer_cannot_be_pinned() -> None:
    unknown = _details([(_dp("zzz", TS, {"cluster": "a"}), "Missing tags")], success=3)
    assert blame(400, unknown, CHUNK) is None
    uncounted = json.dumps({"errors": [], "failed": 2, "success": 2})
    assert blame(400, uncounted, CHUNK) is None
    assert blame(400, "One or more data points had errors", CHUNK) is None


def test_unparsable_body_is_permanent_and_the_datas_fault() -> None:
    body = json.dumps(
        {
            "error": {
                "code": 400,
                "message": "Unable to parse the given JSON",
                "details": "Unexpected character ('g')",
                "trace": "...",
            }
        }
    )
    outcome = classify(400, {}, body)
    assert (outcome.kind, outcome.reason) == (
        "permanent",
        "HTTP 400: Unable to parse the given JSON: Unexpected character ('g')",
    )
    assert data_at_fault(400)


@pytest.mark.parametrize(
    ("status", "headers", "kind", "delay"),
    [
        (503, {"retry-after": "3"}, "retry", 3.0),
        (500, {}, "retry", None),
        (429, {}, "retry", None),
        (404, {}, "permanent", None),
        (401, {}, "permanent", None),
    ],
)
def test_http_rules_for_everything_else(
    status: int, headers: dict[str, str], kind: str, delay: float | None
) -> None:
    body = json.dumps({"error": {"code": status, "message": "Endpoint not found"}})
    outcome = classify(status, headers, body)
    assert (outcome.kind, outcome.delay) == (kind, delay)
    assert outcome.reason == f"HTTP {status}: Endpoint not found"
    assert not data_at_fault(status)


def test_transient_messages() -> None:
    assert transient("Storage exception: org.hbase.async.RegionOfflineException")
    assert transient("Please throttle")
    assert not transient("Too many tags: 9 maximum allowed: 8")


def test_which_datapoint_errors_are_evidence_against_their_record() -> None:
    assert [
        item_status(m)
        for m in (
            "Storage exception: region offline",
            "Unexpected exception",
            "Please throttle",
            "Timeout exception",
            "Write timedout",
            "Invalid tag value",
        )
    ] == [500, 500, 429, 504, 504, 400]
    body = _details(
        [(_dp("m", TS, {"cluster": "b"}), "Storage exception: region offline")], success=3
    )
    verdicts = blame(200, body, CHUNK)
    assert verdicts is not None and verdicts[1].status == 500
