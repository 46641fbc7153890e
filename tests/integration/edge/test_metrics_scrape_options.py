"""Scrape options of the edge against a real HTTP target, read back from Kafka."""

from __future__ import annotations

import base64

from kafka import KafkaConsumer

from ferryman.wire.remote_write import decode_write_request, snappy_decompress
from tests.integration.exporter import TEXT
from tests.integration.pipeline import EdgeMetrics, create_topics, wait_for

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
BODY = (
    b'# TYPE so_requests counter\nso_requests_total{code="200",job="exported"} 5\n'
    b'so_requests_total{code="500",job="exported"} 1\n'
    b'# TYPE so_temp gauge\nso_temp{instance="scraped"} 21.5 1700000000000\n'
)
OM_BODY = (
    b"# TYPE so_om counter\n# HELP so_om An OpenMetrics counter.\n"
    b"so_om_total 3 1700000000.5\nso_om_created 1600000000\n# EOF\n"
)


class Points:
    """Every sample shipped to a topic, by full label set: [(value, timestamp_ms)]."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.by_labels: dict[tuple[tuple[str, str], ...], list[tuple[float, int]]] = {}

    def poll(self) -> Points:
        batches = self.consumer.poll(timeout_ms=500, max_records=10_000)
        for message in (m for records in batches.values() for m in records):
            for series in decode_write_request(snappy_decompress(message.value)):
                self.by_labels.setdefault(series.labels, []).extend(
                    (s.value, s.timestamp_ms) for s in series.samples
                )
        return self

    def find(self, **match: str) -> list[dict[str, str]]:
        return [
            dict(k)
            for k in self.by_labels
            if all(dict(k).get(name) == value for name, value in match.items())
        ]

    def last(self, **match: str) -> list[tuple[float, int]]:
        return [self.by_labels[tuple(sorted(found.items()))][-1] for found in self.find(**match)]


def test_auth_limits_honor_options_and_openmetrics(stack, unique, tmp_path, processes, exporter):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    for path in ("/basic", "/bearer", "/limit", "/labels", "/honor", "/relabel", "/big"):
        exporter.routes[path] = lambda n: (200, TEXT, BODY)
    exporter.routes["/om"] = lambda n: (200, OPENMETRICS, OM_BODY)
    (tmp_path / "token").write_text("s3cret-token\n")
    target = [{"targets": [exporter.address]}]

    def job(name: str, **options: object) -> dict[str, object]:
        return {"job_name": name, "metrics_path": f"/{name}", "static_configs": target, **options}

    settings = {
        "global": {
            "scrape_interval": "500ms",
            "scrape_timeout": "500ms",
            "external_labels": {"cluster": "alpha"},
        },
        "scrape_configs": [
            job("basic", basic_auth={"username": "ops", "password": "pw"}),
            job("bearer", authorization={"credentials_file": str(tmp_path / "token")}),
            job("limit", sample_limit=2),
            job("labels", label_limit=3),
            job("honor", honor_labels=True, honor_timestamps=False),
            job(
                "relabel",
                metric_relabel_configs=[
                    {"source_labels": ["code"], "regex": "500", "action": "drop"},
                    {"target_label": "team", "replacement": "ops"},
                ],
            ),
            job("big", body_size_limit="100B"),
            job("om"),
        ],
        "ferryman": {
            "kafka": {"bootstrap_servers": bootstrap, "topic": unique},
            "buffer": {"directory": str(tmp_path / "buffer")},
            "listen": "127.0.0.1:0",
            "flush_interval": "200ms",
        },
    }
    processes(EdgeMetrics(tmp_path, settings))
    points = Points(bootstrap, unique)
    jobs = [c["job_name"] for c in settings["scrape_configs"]]  # type: ignore[index]

    def ups() -> dict[str, float]:
        points.poll()
        return {labels["job"]: points.last(**labels)[0][0] for labels in points.find(__name__="up")}

    seen = wait_for(lambda: len(ups()) == len(jobs) and ups(), 30, "up of every job")
    assert seen == {
        "basic": 1.0,
        "bearer": 1.0,
        "limit": 0.0,
        "labels": 0.0,
        "honor": 1.0,
        "relabel": 1.0,
        "big": 0.0,
        "om": 1.0,
    }

    basic = base64.b64encode(b"ops:pw").decode()
    assert exporter.headers["/basic"]["Authorization"] == f"Basic {basic}"
    assert exporter.headers["/bearer"]["Authorization"] == "Bearer s3cret-token"
    assert exporter.headers["/om"]["Accept"].startswith("application/openmetrics-text")

    # honor_labels false (default): the target's job wins, the scraped one is exported_job.
    plain = points.find(__name__="so_requests_total", job="basic")
    assert sorted((s["code"], s["exported_job"]) for s in plain) == [
        ("200", "exported"),
        ("500", "exported"),
    ]
    assert all(s["instance"] == exporter.address and s["cluster"] == "alpha" for s in plain)
    # honor_timestamps true (default) keeps the exposed timestamp ...
    assert points.last(__name__="so_temp", job="basic", exported_instance="scraped")[0] == (
        21.5,
        1700000000000,
    )
    # ... honor_labels true keeps the scraped labels; honor_timestamps false uses scrape time.
    honored = points.find(__name__="so_requests_total", job="exported")
    assert sorted(s["code"] for s in honored) == ["200", "500"]
    ((value, stamp),) = points.last(__name__="so_temp", instance="scraped")
    assert value == 21.5 and stamp > 1700000000000 + 10**9
    # metric_relabel_configs: code 500 dropped, team added; the report series untouched.
    assert [s["code"] for s in points.find(__name__="so_requests_total", job="relabel")] == ["200"]
    assert all(s["team"] == "ops" for s in points.find(__name__="so_requests_total", job="relabel"))
    assert "team" not in points.find(__name__="up", job="relabel")[0]
    # sample_limit / label_limit / body_size_limit: the scrape fails, nothing is shipped.
    for failed in ("limit", "labels", "big"):
        assert points.find(__name__="so_requests_total", job=failed) == []
        assert points.last(__name__="scrape_samples_scraped", job=failed)[0][0] == 0.0
    # OpenMetrics: counter and _created, float-second timestamps in milliseconds.
    assert points.last(__name__="so_om_total", job="om")[0] == (3.0, 1700000000500)
    assert points.find(__name__="so_om_created", job="om")
    points.consumer.close()
