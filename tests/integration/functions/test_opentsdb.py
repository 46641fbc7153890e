"""opentsdb against the real Kafka and VictoriaMetrics' OpenTSDB HTTP listener."""

from __future__ import annotations

import json
import logging
import math
import struct
import time

import httpx

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


SINK = "opentsdb"


def _config(stack, **config):
    return {"url": stack("victoriametrics", "opentsdb"), **config}


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


def _export(base: str, match: str) -> list[dict]:
    httpx.get(f"{base}/internal/force_flush", timeout=10).raise_for_status()
    response = httpx.get(f"{base}/api/v1/export", params={"match[]": match}, timeout=10)
    response.raise_for_status()
    return [json.loads(line) for line in response.text.split("\n") if line]


def _arrived(base: str, metric: str, expected: dict[str, tuple[dict, float]]):
    """A check for wait_for: sid → (labels, last value) once it equals ``expected``."""

    def check():
        got = {}
        for row in _export(base, f'{{__name__="{metric}"}}'):
            labels = {k: v for k, v in row["metric"].items() if k != "__name__"}
            got[labels.get("sid", "-")] = (labels, row["values"][-1])
        return got if got == expected else None

    return check


def test_every_sample_arrives_with_its_tags_for_two_clusters(stack, unique, worker):
    bootstrap, base = stack("kafka", "bootstrap"), stack("victoriametrics", "http")
    create_topics(bootstrap, (unique, 3))
    metric = f"tsdb_{unique}"
    now = int(time.time() * 1000)
    messages, expected = [], {}
    for cluster in ("alpha", "beta"):
        for m in range(12):
            batch = []
            for s in range(5):
                sid = f"{cluster}-{m}-{s}"
                value = m * 10 + s + 0.25
                batch.append(
                    _series(
                        {
                            "__name__": metric,
                            "cluster": cluster,
                            "sid": sid,
                            "path": "/var/log/app.log",
                            "note": 'a b,c=d "q"',
                            "empty": "",
                        },
                        value,
                        now,
                    )
                )
                expected[sid] = (
                    {
                        "cluster": cluster,
                        "sid": sid,
                        "path": "/var/log/app.log",
                        "note": "a_b_c_d__q_",
                    },
                    value,
                )
            messages.append((batch, cluster))
    # skipped samples, and a series whose only tag comes from the message header
    messages.append(
        (
            [
                _series({"__name__": metric, "sid": f"skip-{i}"}, v, now)
                for i, v in enumerate([math.nan, STALE, math.inf])
            ],
            "alpha",
        )
    )
    messages.append(([_series({"__name__": metric}, 7.0, now)], "gamma"))
    expected["-"] = ({"cluster": "gamma"}, 7.0)
    _produce(bootstrap, unique, messages)
    running = worker(SINK, unique, _config(stack, max_datapoints=7))
    wait_for(lambda: running.committed() == len(messages), 60, "every offset committed")
    assert wait_for(_arrived(base, metric, expected), 30, "every series") == expected
    counters = running.metrics()
    for reason, count in (("nan", 1), ("stale_marker", 1), ("inf", 1)):
        assert (
            counters[f'ferryman_samples_skipped_total{{function="opentsdb",reason="{reason}"}}']
            == count
        )
    assert counters['ferryman_names_sanitized_total{function="opentsdb",what="tag_value"}'] == 120
    assert running.terminate() == 0


def test_twelve_labels_arrive_within_the_tag_limit_and_drops_are_counted(stack, unique, worker):
    bootstrap, base = stack("kafka", "bootstrap"), stack("victoriametrics", "http")
    create_topics(bootstrap, (unique, 1))
    metric = f"wide_{unique}"
    now = int(time.time() * 1000)
    wide = {
        "__name__": metric,
        "cluster": "alpha",
        "zone": "z1",
        "sid": "x",
        **{f"l{i:02d}": f"v{i}" for i in range(8)},
    }
    assert len(wide) == 12
    narrow = {"__name__": f"{metric}:ratio", "job": "api", "sid": "y"}
    _produce(
        bootstrap,
        unique,
        [([_series(wide, 1.0, now)], "alpha"), ([_series(narrow, 2.0, now)], "alpha")],
    )
    running = worker(SINK, unique, _config(stack))
    wait_for(lambda: running.committed() == 2, 60, "2 commits")
    kept = {"cluster": "alpha", **{f"l{i:02d}": f"v{i}" for i in range(7)}}
    assert wait_for(_arrived(base, metric, {"-": (kept, 1.0)}), 30, "the wide series")
    assert wait_for(
        _arrived(
            base, f"{metric}_ratio", {"y": ({"cluster": "alpha", "job": "api", "sid": "y"}, 2.0)}
        ),
        30,
        "the narrow series",
    )
    counters = running.metrics()
    assert counters['ferryman_tags_dropped_total{function="opentsdb"}'] == 3
    assert counters['ferryman_names_sanitized_total{function="opentsdb",what="metric"}'] == 1


def test_garbage_goes_to_dead_letter_and_the_rest_flows(stack, unique, worker):
    bootstrap, base = stack("kafka", "bootstrap"), stack("victoriametrics", "http")
    create_topics(bootstrap, (unique, 1))
    metric = f"tsdb_{unique}"
    now = int(time.time() * 1000)
    batches = [
        ([_series({"__name__": metric, "sid": str(i)}, float(i), now)], "alpha") for i in range(6)
    ]
    _produce(bootstrap, unique, batches[:3], extra=[b"\x00\xffnot snappy at all"])
    _produce(bootstrap, unique, batches[3:])
    running = worker(SINK, unique, _config(stack))
    wait_for(lambda: running.committed() == 7, 60, "7 commits")
    expected = {str(i): ({"cluster": "alpha", "sid": str(i)}, float(i)) for i in range(6)}
    assert wait_for(_arrived(base, metric, expected), 30, "the good series")
    dead = dead_letters(bootstrap, running.dead_letter_topic)
    assert [d.value for d in dead] == [b"\x00\xffnot snappy at all"]
    headers = dict(dead[0].headers)
    assert headers["ferryman.error"].startswith(b"not a remote-write message: ")
    assert headers["ferryman.function"] == b"opentsdb"
    assert headers["ferryman.source"] == f"{unique}/0/3".encode()


def test_unreachable_opentsdb_hands_every_record_back():
    spec = registry.load("opentsdb")
    context = Context(
        function="opentsdb",
        http_client=lambda **kw: httpx.Client(**kw),
        registry=Registry(),
        log=logging.getLogger("test.opentsdb"),
    )
    sink = spec.create(
        spec.config_model.model_validate({"url": f"http://127.0.0.1:{free_port()}"}), context
    )
    now = int(time.time() * 1000)
    batch = [
        Record(
            "t",
            0,
            i,
            None,
            snappy_compress(
                encode_write_request([_series({"__name__": "m", "i": str(i)}, 1.0, now)])
            ),
        )
        for i in range(3)
    ]
    result = sink.handle(batch)
    assert (result.retry, result.dead) == (batch, [])
    sink.close()
