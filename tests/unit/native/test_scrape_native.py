"""The native scrape pass (``ferryman_native.ScrapeCache`` writing into
``SampleBuffers``, what ``ScrapeLoop`` uses when the native module has it) against
the pure-Python path, its oracle: over several consecutive scrapes of one target,
both queue the same remote-write messages (bucket, sample count, compressed bytes),
so the same samples, staleness markers, message cuts and order, and report the same
results and failures.

Generated: text 0.0.4 and OpenMetrics bodies whose series appear, vanish and come
back, repeat within a body (the first sample stands), carry timestamps (honored or
not), escapes and empty label values; every metric_relabel action (through
``SeriesBuilder``), honor_labels both ways, label limits that fail a scrape,
sample_limit, bodies both parsers refuse and bodies the native parser leaves to
Python, small messages (1 to 7 samples) and a final target-gone marking.
"""

from __future__ import annotations

import struct
from typing import cast

import httpx
from ferryman_native import ScrapeCache
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.diskqueue import DiskQueue
from edge.metrics.batcher import Batcher
from edge.metrics.scrape import ScrapeFailed, ScrapeLoop
from edge.metrics.series import SeriesBuilder
from edge.metrics.targets import Target
from ferryman.prom.relabel import RelabelConfig, Relabeler, compile_rules
from ferryman.telemetry import Registry
from ferryman.wire.remote_write import decode_write_request, snappy_decompress

BUCKETS = 3
TARGET = Target("job1", "http://127.0.0.1:1/metrics", (("instance", "h:1"), ("job", "job1")), 5, 4)
OM = "application/openmetrics-text; version=1.0.0"
TEXT = "text/plain; version=0.0.4"

RULES = [
    RelabelConfig(source_labels=("n0",), regex="v.*", action="drop"),
    RelabelConfig(source_labels=("__name__",), regex="a|b|c", action="keep"),
    RelabelConfig(source_labels=("n1",), target_label="n2", regex="(.*)", replacement="x$1"),
    RelabelConfig(regex="n(.)", replacement="m$1", action="labelmap"),
    RelabelConfig(regex="n1", action="labeldrop"),
    RelabelConfig(regex="__name__|job|instance|n0|le|exported_job", action="labelkeep"),
    RelabelConfig(source_labels=("n0",), modulus=2, target_label="h", action="hashmod"),
    RelabelConfig(source_labels=("n0",), target_label="n0", action="lowercase"),
    RelabelConfig(source_labels=("n1",), target_label="n3", action="uppercase"),
    RelabelConfig(source_labels=("n0",), target_label="n1", action="keepequal"),
    RelabelConfig(source_labels=("n0",), target_label="n1", action="dropequal"),
    RelabelConfig(source_labels=("n1",), target_label="__name__", regex="(w)", replacement="z"),
]
LABEL_NAMES = ["n0", "n1", "job", "instance", "le", "exported_job", "cluster"]
LABEL_VALUES = ["", "v", "w", "V2", "with space", 'q\\"uote', "new\\nline", "é", "x" * 200]
VALUES = ["1", "0", "1.5", "+Inf", "NaN", "-7e3", "nan"]
TEXT_STAMPS = ["", "", "", " 1700000000000", " -5", " 9223372036854775807"]
OM_STAMPS = ["", "", "", " 1700000000.123", " -1.5", " 0.0005"]
# Valid bodies the native parser leaves to Python (a timestamp Decimal rounds).
DECLINED_OM = "a 1 0.99999999999999999999999999999\n# EOF\n"
REFUSED = "a{ 1\n"


class RecordingQueue:
    """What the Batcher queues, in order."""

    def __init__(self) -> None:
        self.records: list[tuple[int, int, bytes]] = []

    def append(self, bucket: int, count: int, payload: bytes) -> None:
        self.records.append((bucket, count, payload))


class Pipeline:
    def __init__(self, *, native: bool, options: dict[str, object], max_samples: int) -> None:
        registry = Registry()
        self.queue = RecordingQueue()
        self.batcher = Batcher(
            cast(DiskQueue, self.queue),
            buckets=BUCKETS,
            max_samples=max_samples,
            messages=registry.counter("m_total", "m"),
            samples=registry.counter("s_total", "s"),
            native=native,
        )
        assert (self.batcher.buffers is not None) == native
        builder = SeriesBuilder(
            TARGET.labels,
            honor_labels=bool(options["honor_labels"]),
            metric_relabel=cast("Relabeler | None", options["relabel"]),
            external_labels={"cluster": "c1"},
            buckets=BUCKETS,
            label_limit=cast(int, options["label_limit"]),
            value_length_limit=cast(int, options["value_length_limit"]),
        )
        self.fallbacks = registry.counter("f_total", "f", ["reason"])
        self.loop = ScrapeLoop(
            TARGET,
            cast(httpx.AsyncClient, None),  # ingest() is what is tested: no fetching
            builder,
            self.batcher.add,
            honor_timestamps=bool(options["honor_timestamps"]),
            sample_limit=cast(int, options["sample_limit"]),
            body_size_limit=0,
            batcher=self.batcher,
            fallbacks=self.fallbacks,
        )

    def scrape(self, body: bytes, content_type: str, now_ms: int) -> object:
        try:
            return self.loop.ingest(body, content_type, now_ms)
        except ScrapeFailed as exc:
            self.loop.mark_all_stale(now_ms)
            return str(exc)


@st.composite
def series_pool(draw: st.DrawFn) -> list[str]:
    """name{labels} of the series a target may expose, label names unique per series."""
    pool = []
    for _ in range(draw(st.integers(1, 8))):
        name = draw(st.sampled_from(["a", "b", "c", "d"]))
        names = draw(st.lists(st.sampled_from(LABEL_NAMES), max_size=4, unique=True))
        labels = ",".join(f'{n}="{draw(st.sampled_from(LABEL_VALUES))}"' for n in names)
        pool.append(f"{name}{{{labels}}}" if labels or draw(st.booleans()) else name)
    return pool


@st.composite
def body(draw: st.DrawFn, pool: list[str], openmetrics: bool) -> bytes:
    kind = draw(st.integers(0, 12))
    if kind == 0:
        return REFUSED.encode()
    if kind == 1 and openmetrics:
        return DECLINED_OM.encode()
    picked = draw(st.lists(st.sampled_from(pool), max_size=12))
    stamps = OM_STAMPS if openmetrics else TEXT_STAMPS
    lines = [
        f"{series} {draw(st.sampled_from(VALUES))}{draw(st.sampled_from(stamps))}"
        for series in picked
    ]
    if openmetrics:
        lines.sort(key=lambda line: line[0])  # a family's samples together
        lines.append("# EOF")
    return ("\n".join(lines) + "\n").encode()


@st.composite
def options(draw: st.DrawFn) -> dict[str, object]:
    rules = draw(st.lists(st.sampled_from(RULES), max_size=3))
    return {
        "honor_labels": draw(st.booleans()),
        "honor_timestamps": draw(st.booleans()),
        "relabel": compile_rules(rules) if rules else None,
        "label_limit": draw(st.sampled_from([0, 0, 0, 6])),
        "value_length_limit": draw(st.sampled_from([0, 0, 0, 100])),
        "sample_limit": draw(st.sampled_from([0, 0, 0, 5])),
    }


def run(data: st.DataObject) -> tuple[list[tuple[int, int, bytes]], list[object], int]:
    """Scrape the same bodies through both paths; assert they agree, return what the
    native one queued, its results and its fallback count."""
    opts = data.draw(options())
    max_samples = data.draw(st.integers(1, 7))
    openmetrics = data.draw(st.booleans())
    pool = data.draw(series_pool())
    bodies = [data.draw(body(pool, openmetrics)) for _ in range(data.draw(st.integers(1, 5)))]
    gone = data.draw(st.booleans())
    content_type = OM if openmetrics else TEXT
    outcomes = []
    for native in (False, True):
        pipeline = Pipeline(native=native, options=opts, max_samples=max_samples)
        results = [
            pipeline.scrape(b, content_type, 1_700_000_000_000 + 5000 * i)
            for i, b in enumerate(bodies)
        ]
        if gone:
            pipeline.loop.mark_all_stale(1_700_000_100_000)
        pipeline.batcher.flush()
        fallbacks = sum(
            pipeline.fallbacks.value(reason=r)
            for r in ("invalid_exposition", "unsupported_spelling")
        )
        outcomes.append((pipeline.queue.records, results, int(fallbacks)))
    (python_records, python_results, _), (native_records, native_results, fallbacks) = outcomes
    assert native_results == python_results
    assert native_records == python_records
    return native_records, native_results, fallbacks


@settings(max_examples=300, derandomize=True, database=None)
@given(st.data())
def test_native_scrapes_queue_the_python_messages(data: st.DataObject) -> None:
    run(data)


def test_the_runs_cover_staleness_failures_and_fallbacks() -> None:
    """The property is only as good as what the runs exercised."""
    seen = {"stale": 0, "failed": 0, "fallback": 0, "samples": 0}

    @settings(max_examples=100, derandomize=True, database=None)
    @given(st.data())
    def count(data: st.DataObject) -> None:
        records, results, fallbacks = run(data)
        seen["failed"] += sum(isinstance(r, str) for r in results)
        seen["fallback"] += fallbacks
        for _, _, payload in records:
            for series in decode_write_request(snappy_decompress(payload)):
                for sample in series.samples:
                    seen["samples"] += 1
                    bits = struct.pack("<d", sample.value)
                    seen["stale"] += bits == struct.pack("<Q", 0x7FF0000000000002)

    count()
    assert min(seen.values()) >= 10, seen


def test_cache_state_is_native_and_small() -> None:
    builder = SeriesBuilder(
        TARGET.labels, honor_labels=False, metric_relabel=None, external_labels={}, buckets=4
    )
    cache = ScrapeCache(builder.build, honor_timestamps=True, sample_limit=0)
    pipeline_registry = Registry()
    batcher = Batcher(
        cast(DiskQueue, RecordingQueue()),
        buckets=4,
        max_samples=500,
        messages=pipeline_registry.counter("m_total", "m"),
        samples=pipeline_registry.counter("s_total", "s"),
    )
    assert batcher.buffers is not None
    lines = [f'node_cpu_seconds_total{{cpu="{i}",mode="idle"}} {i}' for i in range(1000)]
    result = cache.scrape(("\n".join(lines) + "\n").encode(), False, 1000, batcher.buffers)
    assert result == (1000, 1000, 1000)
    series, tracked, size = cache.stats()
    assert (series, tracked) == (1000, 1000)
    assert size < 400 * 1000, size


@settings(max_examples=200, derandomize=True, database=None)
@given(
    st.integers(1, 5),
    st.lists(
        st.tuples(st.integers(0, BUCKETS - 1), st.binary(max_size=20)) | st.just(None),
        max_size=60,
    ),
)
def test_native_buffers_cut_messages_as_the_python_batcher(
    max_samples: int, steps: list[tuple[int, bytes] | None]
) -> None:
    """``Batcher.add`` (the report series, the Python path's samples) and ``flush``
    (None here) queue the same messages with the buffers native or not."""
    queued = []
    for native in (False, True):
        registry = Registry()
        queue = RecordingQueue()
        batcher = Batcher(
            cast(DiskQueue, queue),
            buckets=BUCKETS,
            max_samples=max_samples,
            messages=registry.counter("m_total", "m"),
            samples=registry.counter("s_total", "s"),
            native=native,
        )
        for step in steps:
            if step is None:
                batcher.flush()
            else:
                batcher.add(*step)
        batcher.flush()
        queued.append(queue.records)
    assert queued[0] == queued[1]
