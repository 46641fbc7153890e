"""The process's own metrics: declared once per name, labels by name, rendered by
prometheus_client with the standard process and Python series."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ferryman.http import serve
from ferryman.telemetry import CONTENT_TYPE, Counter, Gauge, Histogram, Registry


def ours(registry: Registry) -> list[str]:
    """The rendered lines of what the test declared (``ferryman_*`` but the build info),
    HELP and TYPE included."""

    def name(line: str) -> str:
        return line.removeprefix("# HELP ").removeprefix("# TYPE ")

    return [
        line
        for line in registry.render().splitlines()
        if name(line).startswith("ferryman_") and not name(line).startswith("ferryman_build_info")
    ]


def test_counters_and_histograms_render_with_help_type_and_cumulative_buckets() -> None:
    registry = Registry()
    sent = registry.counter("ferryman_records_sent_total", "Sent.", ["function"])
    hist = registry.histogram(
        "ferryman_batch_duration_seconds", "Time.", ["function"], buckets=(1.0, 0.1)
    )
    sent.labels(function="prw").inc(3)
    hist.labels(function="prw").observe(0.05)
    hist.labels(function="prw").observe(5.0)
    assert ours(registry) == [
        "# HELP ferryman_records_sent_total Sent.",
        "# TYPE ferryman_records_sent_total counter",
        'ferryman_records_sent_total{function="prw"} 3.0',
        "# HELP ferryman_batch_duration_seconds Time.",
        "# TYPE ferryman_batch_duration_seconds histogram",
        'ferryman_batch_duration_seconds_bucket{function="prw",le="0.1"} 1.0',
        'ferryman_batch_duration_seconds_bucket{function="prw",le="1.0"} 1.0',
        'ferryman_batch_duration_seconds_bucket{function="prw",le="+Inf"} 2.0',
        'ferryman_batch_duration_seconds_count{function="prw"} 2.0',
        'ferryman_batch_duration_seconds_sum{function="prw"} 5.05',
    ]
    assert registry.value("ferryman_batch_duration_seconds_bucket", function="prw", le="0.1") == 1
    assert registry.value("ferryman_batch_duration_seconds_count", function="prw") == 2
    assert registry.value("ferryman_batch_duration_seconds_sum", function="prw") == 5.05


def test_a_metric_without_labels_shows_zero_from_the_start_and_gauges_go_both_ways() -> None:
    registry = Registry()
    files = registry.gauge("ferryman_files", "Files being tailed.")
    read = registry.counter("ferryman_lines_read_total", "Lines read.")
    assert "ferryman_files 0.0" in ours(registry)
    assert "ferryman_lines_read_total 0.0" in ours(registry)
    files.set(4)
    files.inc(-1)
    read.inc()
    read.inc(2)
    assert (registry.value("ferryman_files"), files.value()) == (3, 3)
    assert (registry.value("ferryman_lines_read_total"), read.value()) == (3, 3)


def test_label_values_and_help_are_escaped_and_the_text_parses_back() -> None:
    registry = Registry()
    lag = registry.gauge("ferryman_file_lag_bytes", "Bytes\\not yet\nshipped.", ["filename"])
    lag.labels(filename='C:\\logs\\"odd"\nname.log').set(7)
    assert ours(registry) == [
        "# HELP ferryman_file_lag_bytes Bytes\\\\not yet\\nshipped.",
        "# TYPE ferryman_file_lag_bytes gauge",
        'ferryman_file_lag_bytes{filename="C:\\\\logs\\\\\\"odd\\"\\nname.log"} 7.0',
    ]
    [family] = [
        f
        for f in text_string_to_metric_families(registry.render())
        if f.name == "ferryman_file_lag_bytes"
    ]
    assert [(s.labels, s.value) for s in family.samples] == [
        ({"filename": 'C:\\logs\\"odd"\nname.log'}, 7.0)
    ]


def test_the_process_exports_process_python_and_build_info_series() -> None:
    text = Registry().render()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_info",
        "python_gc_collections",
        "ferryman_build_info",
    } <= names
    version = importlib.metadata.version("ferryman")
    assert f'ferryman_build_info{{version="{version}"}} 1.0' in text.splitlines()
    assert "_created" not in text  # one series per counter, not two


def test_build_info_says_unknown_without_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert Registry().value("ferryman_build_info", version="unknown") == 1


def test_each_registry_holds_its_own_series() -> None:
    first, second = Registry(), Registry()
    first.counter("ferryman_commits_total", "Commits.").inc(2)
    second.counter("ferryman_commits_total", "Commits.")
    assert (first.value("ferryman_commits_total"), second.value("ferryman_commits_total")) == (2, 0)


def test_a_name_is_declared_once() -> None:
    registry = Registry()
    registry.counter("ferryman_errors_total", "Errors.", ["error_type", "stage"])
    with pytest.raises(ValueError, match="ferryman_errors_total registered twice"):
        registry.counter("ferryman_errors_total", "Errors.", ["error_type", "stage"])
    with pytest.raises(ValueError, match="registered twice"):
        registry.gauge("ferryman_errors_total", "Errors.")
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.gauge("ferryman_errors", "Clashes with the counter's series.")
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.gauge("process_open_fds", "Clashes with the process collector.")
    with pytest.raises(ValueError, match="end in _total"):
        registry.counter("ferryman_errors", "A counter by another name.")


def test_labels_are_taken_by_name_and_all_of_them() -> None:
    registry = Registry()
    errors = registry.counter("ferryman_errors_total", "Errors.", ["error_type", "stage"])
    errors.labels(stage="deliver", error_type="timeout").inc(2)
    assert 'ferryman_errors_total{error_type="timeout",stage="deliver"} 2.0' in ours(registry)
    assert errors.value(error_type="timeout", stage="deliver") == 2
    assert registry.value("ferryman_errors_total", stage="deliver", error_type="timeout") == 2
    with pytest.raises(ValueError):
        errors.labels(error_type="timeout")
    with pytest.raises(ValueError):
        errors.labels(error_type="timeout", stage="deliver", extra="x")
    with pytest.raises(ValueError):
        errors.inc()  # a labelled metric has no series of its own
    with pytest.raises(ValueError):
        errors.value(error_type="timeout")
    with pytest.raises(ValueError):
        errors.labels(error_type="timeout", stage="deliver").inc(-1)


def test_reading_a_child_never_used_gives_zero_and_makes_no_series() -> None:
    registry = Registry()
    dropped = registry.counter("ferryman_lines_dropped_total", "Dropped.", ["reason"])
    assert dropped.value(reason="debug") == 0
    assert registry.value("ferryman_lines_dropped_total", reason="debug") == 0
    assert not [line for line in ours(registry) if not line.startswith("#")]
    with pytest.raises(KeyError):
        registry.value("ferryman_lines_droped_total", reason="debug")


def declare(registry: Registry) -> tuple[Counter, Gauge, Histogram, Counter]:
    return (
        registry.counter("ferryman_errors_total", "Errors.", ["error_type", "stage"]),
        registry.gauge("ferryman_consumer_lag", "Lag.", ["topic", "partition"]),
        registry.histogram("ferryman_batch_duration_seconds", "Time.", ["function"]),
        registry.counter("ferryman_commits_total", "Commits."),
    )


def test_labels_are_taken_by_name_only() -> None:
    registry = Registry()
    errors, lag, _latency, _commits = declare(registry)
    lag.labels(topic="logs", partition="0").set(7)
    assert lag.value(topic="logs", partition="0") == 7
    lag.remove(topic="logs", partition="never-set")  # forgetting what is not there is fine
    with pytest.raises(TypeError):
        errors.inc(1, "timeout", "deliver")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        errors.value(error_type="timeout")  # one label short


@pytest.fixture
def server() -> Iterator[tuple[str, Registry]]:
    registry = Registry()
    registry.counter("ferryman_records_sent_total", "Sent.").inc(5)
    healthy = {"/healthz": lambda: True, "/ready": lambda: False}
    running = serve("127.0.0.1:0", registry, healthy)
    host, port = running.server_address[:2]
    try:
        yield f"http://{host!s}:{port}", registry
    finally:
        running.shutdown()
        running.server_close()


def test_the_server_serves_metrics_and_health(server: tuple[str, Registry]) -> None:
    base, _ = server
    metrics = httpx.get(f"{base}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"] == CONTENT_TYPE
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    assert "ferryman_records_sent_total 5.0" in metrics.text.splitlines()
    assert "process_cpu_seconds_total" in metrics.text
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{base}/ready", timeout=5).status_code == 503
    assert httpx.get(f"{base}/nowhere", timeout=5).status_code == 404
