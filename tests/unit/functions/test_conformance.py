"""Every registered function proves the same contract (see STYLE.md): sinks and
transforms each by what applies to them."""

from __future__ import annotations

import ast
import importlib
import logging
import socket
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.loki import Entry, Stream, encode_push_request
from ferryman.wire.remote_write import Sample, TimeSeries, encode_write_request, snappy_compress
from functions import registry
from functions._records import (
    UnsupportedRecord,
    decode_series,
    decode_stream_columns,
    decode_streams,
)
from functions._traces import decode_traces
from workers.function import Context, FunctionSpec, Handler
from workers.records import Delivered, Record

FUNCTIONS = Path(registry.__file__).parent
NAMES = registry.names()
SINKS = [name for name in NAMES if registry.load(name).kind == "sink"]
TRANSFORMS = [name for name in NAMES if registry.load(name).kind == "transform"]

SINK_FILES = {"__init__.py", "config.py", "encode.py", "send.py", "classify.py", "sink.py"}
TRANSFORM_FILES = {"__init__.py", "config.py", "core.py", "transform.py"}

#: The schema each function reads, and the decoders that define "malformed" for it.
READS: dict[str, bytes] = {
    "count": h.SCHEMA_LOKI_PUSH,
    "elasticsearch_logs": h.SCHEMA_LOKI_PUSH,
    "elasticsearch_metrics": h.SCHEMA_REMOTE_WRITE,
    "filter": h.SCHEMA_LOKI_PUSH,
    "influxdb": h.SCHEMA_REMOTE_WRITE,
    "loki": h.SCHEMA_LOKI_PUSH,
    "opentsdb": h.SCHEMA_REMOTE_WRITE,
    "otlp_traces": h.SCHEMA_OTLP_TRACES,
    "parse": h.SCHEMA_LOKI_PUSH,
    "prometheus_remote_write": h.SCHEMA_REMOTE_WRITE,
    "redact": h.SCHEMA_LOKI_PUSH,
    "relabel": h.SCHEMA_REMOTE_WRITE,
    "sample": h.SCHEMA_OTLP_TRACES,
}
DECODERS: dict[bytes, tuple[Callable[[Record], object], ...]] = {
    h.SCHEMA_REMOTE_WRITE: (decode_series,),
    h.SCHEMA_LOKI_PUSH: (decode_streams, decode_stream_columns),
    h.SCHEMA_OTLP_TRACES: (decode_traces,),
}


# ---- the registry and the layout -------------------------------------------------------


def test_registry_equals_the_packages_under_functions() -> None:
    packages = sorted(
        path.parent.name
        for path in FUNCTIONS.glob("*/__init__.py")
        if not path.parent.name.startswith("_")
    )
    assert packages == NAMES
    for name in NAMES:
        assert registry.load(name).name == name
    assert set(READS) == set(NAMES)


def test_unknown_function_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="prometheus_remote_write"):
        registry.load("nope")


def _files(name: str) -> set[str]:
    return {
        path.name
        for path in (FUNCTIONS / name).iterdir()
        if path.is_file() and path.suffix == ".py"
    }


@pytest.mark.parametrize("name", SINKS)
def test_a_sink_has_the_fixed_file_set(name: str) -> None:
    assert _files(name) == SINK_FILES


@pytest.mark.parametrize("name", TRANSFORMS)
def test_a_transform_has_its_file_set(name: str) -> None:
    assert _files(name) == TRANSFORM_FILES


@pytest.mark.parametrize("name", NAMES)
def test_init_is_a_spec_card(name: str) -> None:
    """A docstring, imports, ``__all__ = ["SPEC"]`` and ``SPEC``: nothing else."""
    tree = ast.parse((FUNCTIONS / name / "__init__.py").read_text())
    assert ast.get_docstring(tree), f"{name} has no docstring"
    assigned = []
    for node in tree.body[1:]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        assert isinstance(node, ast.Assign), f"{name}/__init__.py holds {type(node).__name__}"
        assigned += [target.id for target in node.targets if isinstance(target, ast.Name)]
    assert assigned == ["__all__", "SPEC"]
    assert importlib.import_module(f"functions.{name}").__all__ == ["SPEC"]


@pytest.mark.parametrize("name", NAMES)
def test_the_handler_has_the_lifecycle(name: str) -> None:
    spec = registry.load(name)
    module = "sink" if spec.kind == "sink" else "transform"
    assert spec.create.__module__ == f"functions.{name}.{module}"
    for method in ("start", "handle", "close"):
        assert callable(getattr(spec.create, method, None)), f"{name} has no {method}()"


# ---- configuration ---------------------------------------------------------------------


@pytest.fixture(params=NAMES)
def spec(request: pytest.FixtureRequest) -> FunctionSpec[Any]:
    return registry.load(request.param)


def test_example_config_round_trips(spec: FunctionSpec[Any]) -> None:
    parsed = spec.config_model.model_validate(yaml.safe_load(spec.example))
    dumped = parsed.model_dump(mode="json")
    assert spec.config_model.model_validate(dumped) == parsed


def test_config_is_frozen_and_strict(spec: FunctionSpec[Any]) -> None:
    assert spec.config_model.model_config.get("frozen") is True
    assert spec.config_model.model_config.get("extra") == "forbid"
    with pytest.raises(ValueError, match="Extra inputs"):
        spec.config_model.model_validate({**yaml.safe_load(spec.example), "surprise": 1})


def test_every_config_field_is_described(spec: FunctionSpec[Any]) -> None:
    for name, field in spec.config_model.model_fields.items():
        assert field.description, f"{spec.name}.{name} has no description"


# ---- sinks: classification --------------------------------------------------------------


@pytest.mark.parametrize("name", SINKS)
@pytest.mark.parametrize(
    ("status", "headers", "kind", "delay"),
    [
        (200, {}, "ok", None),
        (204, {}, "ok", None),
        (429, {"retry-after": "7"}, "retry", 7.0),
        (429, {}, "retry", None),
        (500, {}, "retry", None),
        (503, {"retry-after": "2"}, "retry", 2.0),
        (400, {}, "permanent", None),
        (401, {}, "permanent", None),
        (404, {}, "permanent", None),
        (413, {}, "permanent", None),
    ],
)
def test_classify(
    name: str, status: int, headers: dict[str, str], kind: str, delay: float | None
) -> None:
    classify = importlib.import_module(f"functions.{name}.classify").classify
    outcome = classify(status, headers, "body text")
    assert (outcome.kind, outcome.delay) == (kind, delay)
    if kind != "ok":
        assert str(status) in outcome.reason


# ---- handlers against a closed port -----------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


CLOSED = f"http://127.0.0.1:{_closed_port()}"
REQUESTS: list[str] = []


def _remember(request: httpx.Request) -> None:
    REQUESTS.append(f"{request.method} {request.url}")


@cache
def handler(name: str) -> Handler:
    """``name``'s handler built from its example config, its backend a closed port."""
    spec = registry.load(name)
    raw = yaml.safe_load(spec.example)
    if spec.kind == "sink":
        raw["url"] = CLOSED + ("/api/v1/write" if name == "prometheus_remote_write" else "")
    context = Context(
        name,
        lambda **kw: httpx.Client(event_hooks={"request": [_remember]}, **kw),
        Registry(),
        logging.getLogger(f"test.{name}"),
    )
    return spec.create(spec.config_model.model_validate(raw), context)


LABEL_NAME = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
TEXT = st.text(max_size=20)


@st.composite
def remote_write(draw: st.DrawFn) -> bytes:
    series = []
    for labels in draw(
        st.lists(st.dictionaries(LABEL_NAME, TEXT, max_size=4), min_size=1, max_size=3)
    ):
        labels["__name__"] = draw(LABEL_NAME)
        samples = draw(
            st.lists(st.builds(Sample, st.floats(), st.integers(0, 2**62)), min_size=1, max_size=3)
        )
        series.append(TimeSeries(tuple(sorted(labels.items())), tuple(samples)))
    return encode_write_request(series)


@st.composite
def loki_push(draw: st.DrawFn) -> bytes:
    streams = []
    for labels in draw(
        st.lists(st.dictionaries(LABEL_NAME, TEXT, min_size=1, max_size=3), min_size=1, max_size=3)
    ):
        entries = draw(
            st.lists(
                st.builds(
                    Entry,
                    st.integers(0, 2**62),
                    TEXT,
                    st.lists(st.tuples(LABEL_NAME, TEXT), max_size=2).map(tuple),
                ),
                min_size=1,
                max_size=3,
            )
        )
        streams.append(Stream(labels, entries))
    return encode_push_request(streams)


@st.composite
def otlp_traces(draw: st.DrawFn) -> bytes:
    spans = [
        Span(
            trace_id=draw(st.binary(min_size=16, max_size=16)),
            span_id=draw(st.binary(min_size=8, max_size=8)),
            name=draw(TEXT),
            start_time_unix_nano=draw(st.integers(0, 2**62)),
            status=Status(code=draw(st.sampled_from([0, 1, 2]))),
        )
        for _ in range(draw(st.integers(1, 3)))
    ]
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


PAYLOADS = {
    h.SCHEMA_REMOTE_WRITE: remote_write(),
    h.SCHEMA_LOKI_PUSH: loki_push(),
    h.SCHEMA_OTLP_TRACES: otlp_traces(),
}
OTHER = {
    h.SCHEMA_REMOTE_WRITE: h.SCHEMA_LOKI_PUSH,
    h.SCHEMA_LOKI_PUSH: h.SCHEMA_REMOTE_WRITE,
    h.SCHEMA_OTLP_TRACES: h.SCHEMA_LOKI_PUSH,
}
#: How a schema's payload travels: snappy blocks, or OTLP's bare protobuf.
PACK: dict[bytes, Callable[[bytes], bytes]] = {
    h.SCHEMA_REMOTE_WRITE: snappy_compress,
    h.SCHEMA_LOKI_PUSH: snappy_compress,
    h.SCHEMA_OTLP_TRACES: bytes,
}


def _refused(schema: bytes, record: Record) -> bool:
    """Whether every decoder of ``schema`` refuses ``record`` (what malformed means)."""
    for decode in DECODERS[schema]:
        try:
            decode(record)
        except UnsupportedRecord:
            continue
        return False
    return True


def malformed(schema: bytes) -> st.SearchStrategy[Record]:
    """Records of ``schema``'s topic that its decoders refuse."""
    header = st.sampled_from([(), ((h.SCHEMA, schema),)])
    random_bytes = st.tuples(header, st.binary(max_size=200))
    pack = PACK[schema]
    cut_packed = st.tuples(
        header,
        PAYLOADS[schema].flatmap(
            lambda raw: st.integers(0, len(pack(raw)) - 1).map(lambda n: pack(raw)[:n])
        ),
    )
    cut_protobuf = st.tuples(
        header,
        PAYLOADS[schema].flatmap(
            lambda raw: st.integers(1, max(1, len(raw) - 1)).map(lambda n: pack(raw[:n]))
        ),
    )
    garbage = st.tuples(
        st.just(((h.SCHEMA, schema),)), st.binary(min_size=1, max_size=200).map(pack)
    )
    wrong_schema = st.tuples(
        st.sampled_from([OTHER[schema], b"", b"text/plain"]).map(lambda s: ((h.SCHEMA, s),)),
        PAYLOADS[schema].map(pack),
    )
    kinds = st.one_of(random_bytes, cut_packed, cut_protobuf, garbage, wrong_schema)
    return kinds.map(lambda pair: Record("in", 0, 0, b"k", pair[1], pair[0])).filter(
        lambda record: _refused(schema, record)
    )


def _numbered(records: list[Record]) -> list[Record]:
    return [
        Record(r.topic, r.partition, offset, r.key, r.value, r.headers)
        for offset, r in enumerate(records)
    ]


def _check_all_dead(name: str, batch: list[Record]) -> Delivered:
    REQUESTS.clear()
    delivered = handler(name).handle(batch)
    assert sorted(r.offset for r, _ in delivered.dead) == [r.offset for r in batch]
    assert all(reason for _, reason in delivered.dead)
    assert list(delivered.retry) == []
    assert REQUESTS == [], f"{name} sent a request for malformed records"
    return delivered


PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)


@pytest.mark.parametrize("name", SINKS)
@PROPERTY
@given(data=st.data())
def test_a_sink_dead_letters_every_malformed_record(name: str, data: st.DataObject) -> None:
    batch = _numbered(data.draw(st.lists(malformed(READS[name]), min_size=1, max_size=6)))
    _check_all_dead(name, batch)


@pytest.mark.parametrize("name", TRANSFORMS)
@PROPERTY
@given(data=st.data())
def test_a_transform_dead_letters_every_malformed_record(name: str, data: st.DataObject) -> None:
    batch = _numbered(data.draw(st.lists(malformed(READS[name]), min_size=1, max_size=6)))
    assert list(_check_all_dead(name, batch).outputs) == []


def _valid(name: str) -> Record:
    if READS[name] == h.SCHEMA_OTLP_TRACES:
        # An error span: a sampler keeps its trace whatever the ratio.
        span = Span(
            trace_id=bytes(range(1, 17)),
            span_id=bytes(range(1, 9)),
            name="x",
            status=Status(code=Status.STATUS_CODE_ERROR),
        )
        request = ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
        )
        return Record("in", 0, 0, b"k", request.SerializeToString(), ((h.SCHEMA, READS[name]),))
    if READS[name] == h.SCHEMA_REMOTE_WRITE:
        raw = encode_write_request(
            [TimeSeries((("__name__", "up"), ("job", "a")), (Sample(1.0, 1_700_000_000_000),))]
        )
    else:
        raw = encode_push_request([Stream({"app": "a"}, [Entry(1_700_000_000 * 10**9, "x")])])
    return Record("in", 0, 0, b"k", snappy_compress(raw), ((h.SCHEMA, READS[name]),))


@pytest.mark.parametrize("name", SINKS)
def test_a_sink_hands_back_what_an_unreachable_backend_did_not_take(name: str) -> None:
    record = _valid(name)
    delivered = handler(name).handle([record])
    assert (list(delivered.dead), list(delivered.retry)) == ([], [record])
    assert "unreachable" in delivered.retry_reason


@pytest.mark.parametrize("name", TRANSFORMS)
def test_a_transform_turns_a_good_record_into_output(name: str) -> None:
    delivered = handler(name).handle([_valid(name)])
    assert (list(delivered.dead), list(delivered.retry)) == ([], [])
    assert name == "filter" or len(delivered.outputs) == 1
