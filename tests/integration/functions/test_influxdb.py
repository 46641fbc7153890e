"""influxdb against the real Kafka, InfluxDB 1.x and VictoriaMetrics' Influx endpoint."""

from __future__ import annotations

import json
import logging
import math
import re
import struct
import time
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.remote_write import TimeSeries, encode_write_request, snappy_compress
from functions import registry
from tests.integration.pipeline import (
    create_topics,
    dead_letters,
    free_port,
    produce,
    raw,
    remote_write,
    time_series,
    wait_for,
)
from workers.function import Context
from workers.records import Record

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
#: label values that must survive as they are
TRICKY = {
    "note": 'a b,c=d "quoted"',
    "path": "C:\\Program Files\\app",
    "eq": "x=y=z",
    "lead": " spaced ",
    "uni": "é☃",
}


SINK = "influxdb"


def _series(labels: dict[str, str], value: float, ts_ms: int) -> TimeSeries:
    return time_series(labels, (value, ts_ms))


def _produce(
    bootstrap: str,
    topic: str,
    messages: list[tuple[list[TimeSeries], str | None]],
    extra: list[bytes] = (),
) -> None:
    produce(
        bootstrap,
        topic,
        [
            *(remote_write(batch, cluster=cluster or None) for batch, cluster in messages),
            *(raw(value) for value in extra),
        ],
    )


def _two_clusters(metric: str, per_cluster: int = 12, series: int = 5):
    """Messages of clusters alpha and beta; returns them and what InfluxDB must hold."""
    now = int(time.time() * 1000)
    messages, expected = [], {}
    for cluster in ("alpha", "beta"):
        for m in range(per_cluster):
            batch = []
            for s in range(series):
                sid = f"{cluster}-{m}-{s}"
                value = m * 10 + s + 0.25
                batch.append(
                    _series(
                        {"__name__": metric, "cluster": cluster, "sid": sid, "empty": "", **TRICKY},
                        value,
                        now,
                    )
                )
                expected[sid] = ({"cluster": cluster, "sid": sid, **TRICKY}, value)
            messages.append((batch, cluster))
    skipped = [
        _series({"__name__": metric, "sid": f"skip-{i}"}, v, now)
        for i, v in enumerate([math.nan, STALE, math.inf, -math.inf])
    ]
    messages.append((skipped, "alpha"))
    return messages, expected


def _influxql(base: str, db: str, query: str) -> list[dict]:
    response = httpx.get(f"{base}/query", params={"db": db, "q": query}, timeout=10)
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result
    return result.get("series", [])


def _influx_points(base: str, db: str, measurement: str) -> dict[str, tuple[dict, float]]:
    """sid → (non-empty tags, value) of every point of ``measurement``."""
    out = {}
    for s in _influxql(base, db, f'SELECT "value" FROM "{measurement}" GROUP BY *'):
        tags = {k: v for k, v in s["tags"].items() if v}
        for _, value in s["values"]:
            out[tags["sid"]] = (tags, float(value))
    return out


def _create_db(base: str, name: str) -> None:
    response = httpx.post(f"{base}/query", params={"q": f'CREATE DATABASE "{name}"'}, timeout=10)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_every_sample_arrives_in_influxdb_with_its_tags(stack, unique, worker, compress):
    bootstrap, base = stack("kafka", "bootstrap"), stack("influxdb", "http")
    create_topics(bootstrap, (unique, 3))
    _create_db(base, unique)
    metric = f"ifx_{unique}"
    messages, expected = _two_clusters(metric)
    _produce(bootstrap, unique, messages)
    running = worker(
        SINK, unique, {"url": base, "database": unique, "gzip": compress, "max_lines": 7}
    )
    wait_for(lambda: running.committed() == len(messages), 60, "every offset committed")
    assert _influx_points(base, unique, metric) == expected
    counters = running.metrics()
    for reason, count in (("nan", 1), ("stale_marker", 1), ("inf", 2)):
        assert (
            counters[f'ferryman_samples_skipped_total{{function="influxdb",reason="{reason}"}}']
            == count
        )
    assert counters.get('ferryman_records_dead_lettered_total{function="influxdb"}', 0) == 0
    assert running.terminate() == 0


def _vm_series(base: str, name: str) -> list[dict]:
    httpx.get(f"{base}/internal/force_flush", timeout=10).raise_for_status()
    response = httpx.get(
        f"{base}/api/v1/export", params={"match[]": f'{{__name__="{name}"}}'}, timeout=10
    )
    response.raise_for_status()
    return [json.loads(line) for line in response.text.split("\n") if line]


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_every_sample_arrives_in_victoriametrics(stack, unique, worker, api):
    bootstrap, base = stack("kafka", "bootstrap"), stack("victoriametrics", "http")
    create_topics(bootstrap, (unique, 2))
    metric = f"ifx_{unique}"
    messages, expected = _two_clusters(metric, per_cluster=6)
    _produce(bootstrap, unique, messages)
    where = (
        {"database": unique}
        if api == "v1"
        else {"org": "ops", "bucket": unique, "token": "not-checked-by-vm"}
    )
    running = worker(SINK, unique, {"url": base, "api": api, "escape_backslashes": True, **where})
    wait_for(lambda: running.committed() == len(messages), 60, "every offset committed")

    def arrived():
        got = {}
        for row in _vm_series(base, f"{metric}_value"):
            labels = {k: v for k, v in row["metric"].items() if k not in {"__name__", "db"}}
            got[labels["sid"]] = (labels, row["values"][-1])
        return got if got == expected else None

    assert wait_for(arrived, 30, "every series in VictoriaMetrics") == expected


def test_garbage_goes_to_dead_letter_and_the_rest_flows(stack, unique, worker):
    bootstrap, base = stack("kafka", "bootstrap"), stack("influxdb", "http")
    create_topics(bootstrap, (unique, 1))
    _create_db(base, unique)
    metric = f"ifx_{unique}"
    messages, expected = _two_clusters(metric, per_cluster=3, series=2)
    _produce(bootstrap, unique, messages[:3], extra=[b"\x00\xffnot snappy at all"])
    _produce(bootstrap, unique, messages[3:])
    running = worker(SINK, unique, {"url": base, "database": unique})
    wait_for(lambda: running.committed() == len(messages) + 1, 60, "every offset committed")
    assert _influx_points(base, unique, metric) == expected
    dead = dead_letters(bootstrap, running.dead_letter_topic)
    assert [d.value for d in dead] == [b"\x00\xffnot snappy at all"]
    headers = dict(dead[0].headers)
    assert headers["ferryman.error"].startswith(b"not a remote-write message: ")
    assert headers["ferryman.function"] == b"influxdb"
    assert headers["ferryman.source"] == f"{unique}/0/3".encode()


def test_a_field_type_conflict_dead_letters_only_its_record(stack, unique, worker):
    bootstrap, base = stack("kafka", "bootstrap"), stack("influxdb", "http")
    create_topics(bootstrap, (unique, 1))
    _create_db(base, unique)
    good, clash = f"good_{unique}", f"clash_{unique}"
    now = int(time.time() * 1000)
    # The measurement exists with an integer field: a float `value` clashes in this shard.
    written = httpx.post(
        f"{base}/write",
        params={"db": unique, "precision": "ms"},
        content=f"{clash},sid=old value=1i {now}",
        timeout=10,
    )
    assert written.status_code == 204, written.text
    _produce(
        bootstrap,
        unique,
        [
            ([_series({"__name__": good, "sid": "a"}, 1.0, now)], "alpha"),
            (
                [
                    _series({"__name__": good, "sid": "b"}, 2.0, now),
                    _series({"__name__": clash, "sid": "b"}, 2.5, now),
                ],
                "alpha",
            ),
            ([_series({"__name__": good, "sid": "c"}, 3.0, now)], "alpha"),
        ],
    )
    running = worker(SINK, unique, {"url": base, "database": unique})
    wait_for(lambda: running.committed() == 3, 60, "3 commits")
    dead = dead_letters(bootstrap, running.dead_letter_topic)
    assert [dict(d.headers)["ferryman.source"] for d in dead] == [f"{unique}/0/1".encode()]
    reason = dict(dead[0].headers)["ferryman.error"].decode()
    assert reason.startswith("HTTP 400: partial write: field type conflict"), reason
    # InfluxDB stored the good point of the refused record too.
    assert {sid: value for sid, (_, value) in _influx_points(base, unique, good).items()} == {
        "a": 1.0,
        "b": 2.0,
        "c": 3.0,
    }


def test_a_missing_database_dead_letters_with_influxdbs_reason(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    messages, _ = _two_clusters(f"ifx_{unique}", per_cluster=2, series=1)
    messages = messages[:-1]  # the last holds only unwritable samples: nothing to refuse
    _produce(bootstrap, unique, messages)
    running = worker(
        SINK, unique, {"url": stack("influxdb", "http"), "database": f"missing_{unique}"}
    )
    wait_for(lambda: running.committed() == len(messages), 60, "every offset committed")
    dead = dead_letters(bootstrap, running.dead_letter_topic)
    assert len(dead) == len(messages)
    assert {dict(d.headers)["ferryman.error"] for d in dead} == {
        f'HTTP 404: database not found: "missing_{unique}"'.encode()
    }


# ---- the handler alone, against the real servers ---------------------------------------


def _sink(config: dict):
    spec = registry.load("influxdb")
    context = Context(
        function="influxdb",
        http_client=lambda **kw: httpx.Client(**kw),
        registry=Registry(),
        log=logging.getLogger("test.influxdb"),
    )
    return spec.create(spec.config_model.model_validate(config), context)


def _record(offset: int, batch: list[TimeSeries]) -> Record:
    return Record(
        "t",
        0,
        offset,
        None,
        snappy_compress(encode_write_request(batch)),
        ((h.SCHEMA, h.SCHEMA_REMOTE_WRITE),),
    )


def test_unreachable_influxdb_hands_every_record_back():
    sink = _sink({"url": f"http://127.0.0.1:{free_port()}", "database": "d"})
    now = int(time.time() * 1000)
    batch = [_record(i, [_series({"__name__": "m", "i": str(i)}, 1.0, now)]) for i in range(3)]
    garbage = Record("t", 0, 3, None, b"garbage")
    result = sink.handle([*batch, garbage])
    assert result.retry == batch
    assert [record for record, _ in result.dead] == [garbage]
    sink.close()


LABEL_TEXT = st.text(
    st.sampled_from(list('\\ ,="\n\tab')) | st.characters(blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
)


def _stored_by_influxdb1(text: str, specials: str = ",= ") -> str:
    """What the encoder's docstring promises for literal backslashes (InfluxDB 1.x)."""
    return re.sub(rf"\\+(?=[{specials}]|\Z)", "", text.replace("\n", "\\n"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=LABEL_TEXT, value=LABEL_TEXT, other=LABEL_TEXT)
def test_any_text_round_trips_through_influxdb_1(stack, name, value, other):
    base = stack("influxdb", "http")
    db = "p" + uuid.uuid4().hex[:12]
    _create_db(base, db)
    try:
        sink = _sink({"url": base, "database": db})
        metric = f"m{name}"
        result = sink.handle(
            [
                _record(
                    0,
                    [
                        _series(
                            {"__name__": metric, "v": value, "w": other},
                            1.5,
                            int(time.time() * 1000),
                        )
                    ],
                )
            ]
        )
        sink.close()
        assert not result.dead and not result.retry
        [series] = _influxql(base, db, "SELECT * FROM /.*/ GROUP BY *")
        assert series["name"] == _stored_by_influxdb1(metric, ", ")
        expected = {k: _stored_by_influxdb1(v) for k, v in {"v": value, "w": other}.items()}
        assert {k: v for k, v in series["tags"].items() if v} == {
            k: v for k, v in expected.items() if v
        }
        assert series["values"][0][1] == 1.5
    finally:
        httpx.post(f"{base}/query", params={"q": f'DROP DATABASE "{db}"'}, timeout=10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=LABEL_TEXT, value=LABEL_TEXT)
def test_any_text_round_trips_through_victoriametrics(stack, key, value):
    base = stack("victoriametrics", "http")
    metric = "p" + uuid.uuid4().hex[:12]
    key = key if key not in {"__name__", "db", "time"} else "k"
    sink = _sink({"url": base, "database": "prop", "escape_backslashes": True})
    result = sink.handle(
        [_record(0, [_series({"__name__": metric, key: value}, 2.5, int(time.time() * 1000))])]
    )
    sink.close()
    assert not result.dead and not result.retry
    stored = wait_for(lambda: _vm_series(base, f"{metric}_value"), 10, "the series")
    labels = {k: v for k, v in stored[0]["metric"].items() if k not in {"__name__", "db"}}
    assert labels == {key.replace("\n", "\\n"): value.replace("\n", "\\n")}
