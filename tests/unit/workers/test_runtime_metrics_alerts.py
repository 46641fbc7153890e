"""The worker series the alert rules (infra/alerts/ferryman.rules.yml) read:
``ferryman_ready`` follows what /readyz answers, a cluster header stamps
``ferryman_cluster_last_received_timestamp_seconds{cluster}``, and the record counters
exist at 0 before the first record (so that ``increase()`` sees the first dead letter).
"""

from __future__ import annotations

from kafka import TopicPartition

from ferryman import headers as h
from ferryman.telemetry import Registry
from tests.unit.workers.fakes import FakeClock, FakeConsumer, FakeKafka, FakeProducer
from workers.records import Batch, Delivered, Record
from workers.retry_worker import RetryWorker
from workers.runtime import Runtime
from workers.runtime_metrics import MAX_CLUSTERS, RuntimeMetrics
from workers.settings import WorkerSettings

TP0 = TopicPartition("t", 0)


def _record(offset: int, cluster: bytes | None) -> Record:
    headers = ((h.CLUSTER, cluster),) if cluster is not None else ()
    return Record("t", 0, offset, None, b"x", headers)


def test_counters_and_readiness_exist_at_zero_before_any_record() -> None:
    registry = Registry()
    RuntimeMetrics(registry, "loki", FakeClock())
    lines = registry.render().splitlines()
    for series in (
        'ferryman_records_received_total{function="loki"} 0.0',
        'ferryman_records_sent_total{function="loki"} 0.0',
        'ferryman_records_dead_lettered_total{function="loki"} 0.0',
        'ferryman_records_handed_to_lane_total{function="loki"} 0.0',
        'ferryman_ready{function="loki"} 0.0',
    ):
        assert series in lines, series


def test_each_cluster_header_is_stamped_with_the_wall_clock() -> None:
    registry = Registry()
    wall = [1_700_000_000.0]
    metrics = RuntimeMetrics(registry, "loki", FakeClock(), wall_clock=lambda: wall[0])
    metrics.mark_clusters([_record(0, b"alpha"), _record(1, None), _record(2, b"beta")])
    wall[0] += 60
    metrics.mark_clusters([_record(3, b"beta")])
    value = registry.value
    name = "ferryman_cluster_last_received_timestamp_seconds"
    assert value(name, function="loki", cluster="alpha") == 1_700_000_000.0
    assert value(name, function="loki", cluster="beta") == 1_700_000_060.0


def test_clusters_past_the_bound_get_no_series() -> None:
    registry = Registry()
    metrics = RuntimeMetrics(registry, "f", FakeClock(), wall_clock=lambda: 5.0)
    metrics.mark_clusters(_record(i, f"c{i}".encode()) for i in range(MAX_CLUSTERS + 5))
    name = "ferryman_cluster_last_received_timestamp_seconds"
    assert registry.value(name, function="f", cluster="c0") == 5.0
    stamped = [line for line in registry.render().splitlines() if line.startswith(name + "{")]
    assert len(stamped) == MAX_CLUSTERS


class _TakesAll:
    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        return Delivered()

    def close(self) -> None:
        pass


def test_a_running_worker_is_ready_and_stamps_its_clusters() -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"a", b"b"]}, headers={(TP0, 1): [(h.CLUSTER, b"alpha")]})
    consumer = FakeConsumer(kafka, clock)
    registry = Registry()
    runtime = Runtime(
        WorkerSettings(function="prw", kafka={"input_topic": "t"}),
        _TakesAll(),
        registry,
        clock=clock,
        consumer=lambda _: consumer,
        producer=lambda _: FakeProducer(),
    )
    assert registry.value("ferryman_ready", function="prw") == 0.0
    seen: list[float] = []

    def watch(_: FakeConsumer) -> None:
        seen.append(registry.value("ferryman_ready", function="prw"))
        if kafka.committed_total() == 2:
            runtime.stop()

    consumer.on_poll(watch)
    runtime.run()
    assert runtime.ready and 1.0 in seen
    assert registry.value("ferryman_ready", function="prw") == 1.0
    stamp = registry.value(
        "ferryman_cluster_last_received_timestamp_seconds", function="prw", cluster="alpha"
    )
    assert stamp > 1_600_000_000  # Unix seconds, not the monotonic test clock


def test_the_retry_worker_counts_from_zero_too() -> None:
    registry = Registry()
    RetryWorker(
        WorkerSettings(
            function="loki",
            kafka={"input_topic": "t"},
            retry_lane={"redis_url": "redis://127.0.0.1:1/0"},  # never connected here
        ),
        _TakesAll(),
        registry,
    )
    lines = registry.render().splitlines()
    for name in (
        "ferryman_records_retried_total",
        "ferryman_records_sent_total",
        "ferryman_records_dead_lettered_total",
    ):
        assert f'{name}{{function="loki"}} 0.0' in lines, name
