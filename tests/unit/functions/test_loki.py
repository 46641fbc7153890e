"""loki sink: decoding, limits, grouping into requests and classification (pure), and how
the handler narrows down a refused request."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.loki import (
    Entry,
    Stream,
    decode_push_request,
    encode_push_request,
)
from ferryman.wire.remote_write import snappy_compress, snappy_decompress
from functions._records import UnsupportedRecord
from functions._records import decode_streams as decode_record
from functions.loki import SPEC
from functions.loki.classify import classify, data_at_fault
from functions.loki.config import LokiConfig
from functions.loki.encode import (
    Chunk,
    Limiter,
    Tally,
    chunk,
    cut_utf8,
    record_tenant,
    request_body,
    request_headers,
)
from workers.function import Context
from workers.records import Record

TS = 1_700_000_000_000_000_000
MARKER = "…[truncated]"


def config(**overrides: object) -> LokiConfig:
    return LokiConfig.model_validate({"url": "http://loki:3100", **overrides})


def record(
    *streams: Stream, offset: int = 0, tenant: bytes | None = None, cluster: bytes | None = b"alpha"
) -> Record:
    headers: list[tuple[str, bytes]] = [(h.SCHEMA, h.SCHEMA_LOKI_PUSH)]
    if cluster is not None:
        headers.append((h.CLUSTER, cluster))
    if tenant is not None:
        headers.append((h.TENANT, tenant))
    return Record(
        "logs", 0, offset, None, snappy_compress(encode_push_request(streams)), tuple(headers)
    )


def stream(labels: dict[str, str], *lines: str, ts: int = TS) -> Stream:
    return Stream(labels, [Entry(ts + i, line) for i, line in enumerate(lines)])


# ---- config ----------------------------------------------------------------------------


def test_config_defaults_follow_loki_limits() -> None:
    c = config(url="http://loki:3100/")
    assert c.push_url == "http://loki:3100/loki/api/v1/push"
    assert (
        c.max_line_bytes,
        c.max_label_names_per_series,
        c.max_label_name_length,
        c.max_label_value_length,
    ) == (256 * 1024, 15, 1024, 2048)


@pytest.mark.parametrize(
    "overrides",
    [
        {"url": "loki:3100"},
        {"push_path": "insert"},
        {"basic_auth": {"username": "u", "password": "p"}, "bearer_token": "t"},
        {"max_line_bytes": 10, "truncation_marker": "x" * 10},
        {"on_long_line": "cut"},
    ],
)
def test_bad_configs_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        config(**overrides)


# ---- decoding --------------------------------------------------------------------------


def test_decode_record_reads_streams() -> None:
    [s] = decode_record(record(stream({"app": "api"}, "hello", "world")))
    assert dict(s.labels) == {"app": "api"}
    assert [e.line for e in s.entries] == ["hello", "world"]


@pytest.mark.parametrize("value", [b"\x00\xffnot snappy", snappy_compress(b"\x0a\x05{a=b")])
def test_undecodable_records_are_refused(value: bytes) -> None:
    with pytest.raises(UnsupportedRecord):
        decode_record(Record("logs", 0, 0, None, value))


def test_a_record_of_another_schema_is_refused() -> None:
    r = Record("logs", 0, 0, None, snappy_compress(b""), ((h.SCHEMA, h.SCHEMA_REMOTE_WRITE),))
    with pytest.raises(UnsupportedRecord, match="schema"):
        decode_record(r)


def test_tenant_from_config_else_header_else_none() -> None:
    r = record(tenant=b"42")
    assert record_tenant(config(), r) == "42"
    assert record_tenant(config(tenant="7"), r) == "7"
    assert record_tenant(config(tenant_from_header=False), r) == ""
    assert request_headers(config(), "") == {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
    }
    assert request_headers(config(headers={"X-A": "b"}), "42")["X-Scope-OrgID"] == "42"


# ---- limits ----------------------------------------------------------------------------


def test_long_lines_are_truncated_with_the_marker_and_counted() -> None:
    limiter, tally = Limiter(config(max_line_bytes=40)), Tally()
    short = "x" * 10
    assert limiter.line(short, tally) is short
    cut = limiter.line("é" * 40, tally)
    assert cut is not None and cut.endswith(MARKER)
    assert len(cut.encode()) <= 40 and set(cut[: -len(MARKER)]) == {"é"}
    assert tally.lines_truncated == {"line_too_long": 1}


def test_long_lines_can_be_dropped_instead() -> None:
    limiter, tally = Limiter(config(max_line_bytes=40, on_long_line="drop")), Tally()
    assert limiter.line("y" * 41, tally) is None
    assert limiter.line("y" * 40, tally) == "y" * 40
    assert tally.lines_dropped == {"line_too_long": 1}


def test_no_line_limit_when_zero() -> None:
    assert Limiter(config(max_line_bytes=0)).line("z" * 10**6, Tally()) == "z" * 10**6


@given(st.text(max_size=60), st.integers(min_value=0, max_value=80))
def test_cut_utf8_is_the_longest_whole_character_prefix(text: str, limit: int) -> None:
    cut = cut_utf8(text, limit)
    assert text.startswith(cut) and len(cut.encode()) <= limit
    assert cut == text or len(text[: len(cut) + 1].encode()) > limit


def test_cluster_header_is_added_unless_the_stream_has_one() -> None:
    limiter = Limiter(config())
    assert limiter.labels({"app": "a"}, "beta", 1, Tally()) == (("app", "a"), ("cluster", "beta"))
    assert limiter.labels({"cluster": "x"}, "beta", 1, Tally()) == (("cluster", "x"),)
    assert limiter.labels({"app": "a"}, "", 1, Tally()) == (("app", "a"),)


def test_label_limits_truncate_and_count() -> None:
    limiter = Limiter(
        config(max_label_names_per_series=3, max_label_name_length=4, max_label_value_length=5)
    )
    tally = Tally()
    labels = {"a": "1", "b": "123456789", "longname": "v", "z": "2"}
    assert limiter.labels(labels, "", 3, tally) == (("a", "1"), ("b", "12345"), ("long", "v"))
    assert tally.labels_truncated == {
        "too_many_labels": 1,
        "label_name_too_long": 1,
        "label_value_too_long": 1,
    }
    limiter.labels(labels, "", 3, tally)  # cached, still counted
    assert tally.labels_truncated["too_many_labels"] == 2


def test_label_limits_drop_every_line_of_the_stream() -> None:
    limiter = Limiter(config(max_label_value_length=3, on_label_limit="drop"))
    tally = Tally()
    assert limiter.labels({"app": "toolong"}, "", 7, tally) is None
    assert tally.lines_dropped == {"label_value_too_long": 7}
    assert limiter.labels({"app": "ok"}, "", 7, tally) == (("app", "ok"),)


# ---- grouping and chunking -------------------------------------------------------------


def _streams(chunk_: Chunk) -> list[Stream]:
    return decode_push_request(snappy_decompress(request_body(chunk_)))


def test_same_labels_across_records_merge_into_one_stream_sorted_by_time() -> None:
    a, b = (("app", "a"),), (("app", "b"),)
    items = [
        (0, "", a, Entry(TS + 5, "a5")),
        (0, "", b, Entry(TS, "b0")),
        (1, "", a, Entry(TS + 1, "a1")),
        (1, "", a, Entry(TS + 9, "a9")),
    ]
    [one] = chunk(items, 1 << 20)
    assert one.owners == {0, 1}
    assert [(dict(s.labels), [e.line for e in s.entries]) for s in _streams(one)] == [
        ({"app": "a"}, ["a1", "a5", "a9"]),
        ({"app": "b"}, ["b0"]),
    ]


def test_tenants_never_share_a_request() -> None:
    a = (("app", "a"),)
    items = [(0, "1", a, Entry(TS, "x")), (1, "2", a, Entry(TS, "y")), (2, "1", a, Entry(TS, "z"))]
    chunks = chunk(items, 1 << 20)
    assert [(c.tenant, set(c.owners)) for c in chunks] == [("1", {0, 2}), ("2", {1})]


def test_requests_stay_under_max_bytes_and_keep_every_entry() -> None:
    labels = [(("app", f"a{i % 3}"),) for i in range(300)]
    items = [(i // 10, "", labels[i], Entry(TS + i, f"line {i} " + "p" * 50)) for i in range(300)]
    chunks = chunk(items, 2048)
    assert len(chunks) > 5
    for c in chunks:
        assert len(c.push_request()) <= 2048
    got = sorted(e.line for c in chunks for s in _streams(c) for e in s.entries)
    assert got == sorted(e.line for *_, e in items)


def test_an_entry_over_max_bytes_gets_a_request_of_its_own() -> None:
    a = (("app", "a"),)
    items = [
        (0, "", a, Entry(TS, "s")),
        (1, "", a, Entry(TS + 1, "L" * 5000)),
        (2, "", a, Entry(TS + 2, "t")),
    ]
    assert [c.owners for c in chunk(items, 1024)] == [{0}, {1}, {2}]


def test_by_owner_splits_a_chunk_per_record() -> None:
    a, b = (("app", "a"),), (("app", "b"),)
    items = [
        (0, "t", a, Entry(TS, "0a")),
        (1, "t", a, Entry(TS + 1, "1a")),
        (0, "t", b, Entry(TS + 2, "0b")),
    ]
    [whole] = chunk(items, 1 << 20)
    parts = whole.by_owner()
    assert [(p.tenant, set(p.owners)) for p in parts] == [("t", {0}), ("t", {1})]
    assert [[e.line for s in _streams(p) for e in s.entries] for p in parts] == [
        ["0a", "0b"],
        ["1a"],
    ]


# ---- classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (204, "ok"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (408, "retry"),
        (400, "permanent"),
        (401, "permanent"),
        (404, "permanent"),
        (413, "permanent"),
    ],
)
def test_classify(status: int, kind: str) -> None:
    body = "entry for stream '{app=\"a\"}' has timestamp too old\n total ignored: 1 out of 1"
    outcome = classify(status, {"retry-after": "4"}, body)
    assert outcome.kind == kind
    if kind != "ok":
        assert outcome.reason.startswith(f"HTTP {status}: entry for stream")
        assert "\n" not in outcome.reason
    if kind == "retry" and status != 408:
        assert outcome.delay == 4.0


def test_only_data_refusals_are_narrowed_down() -> None:
    assert data_at_fault(400) and data_at_fault(413)
    assert not (data_at_fault(401) or data_at_fault(404))


# ---- the handler, against a scripted Loki ----------------------------------------------


class Script:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.requests: list[tuple[str | None, list[Stream]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        streams = decode_push_request(snappy_decompress(request.content))
        self.requests.append((request.headers.get("x-scope-orgid"), streams))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(streams)  # type: ignore[no-any-return]
        return httpx.Response(answer, headers={"retry-after": "3"}, text="busy")


def sink(script: Script, **overrides: Any) -> tuple[Any, Registry]:
    transport = httpx.MockTransport(script)
    registry = Registry()
    context = Context(
        "loki",
        lambda **kw: httpx.Client(transport=transport, **kw),
        registry,
        logging.getLogger("test"),
    )
    return SPEC.create(config(**overrides), context), registry


def _refuse_bad(streams: list[Stream]) -> httpx.Response:
    if any(e.line == "bad" for s in streams for e in s.entries):
        return httpx.Response(
            400, text="entry with timestamp ... ignored, reason: 'entry too far behind'"
        )
    return httpx.Response(204)


def test_a_refused_request_is_narrowed_down_to_its_bad_record() -> None:
    batch = [
        record(stream({"app": "a"}, "ok0"), offset=0),
        record(stream({"app": "a"}, "bad"), offset=1),
        record(stream({"app": "b"}, "ok2"), offset=2),
    ]
    script = Script([_refuse_bad] * 4)
    handler, _ = sink(script)
    result = handler.handle(batch)
    assert [(r.offset, reason) for r, reason in result.dead] == [
        (1, "HTTP 400: entry with timestamp ... ignored, reason: 'entry too far behind'")
    ]
    assert list(result.retry) == []
    assert len(script.requests) == 4  # one merged, then one per record


def test_garbage_is_dead_lettered_and_the_rest_pushed() -> None:
    garbage = Record("logs", 0, 1, None, b"\x00\xffjunk")
    script = Script([204])
    handler, _ = sink(script)
    result = handler.handle([record(stream({"app": "a"}, "x")), garbage])
    assert [r.offset for r, _ in result.dead] == [1]
    assert "not a Loki push message" in result.dead[0][1]
    [(tenant, streams)] = script.requests
    assert tenant is None
    assert dict(streams[0].labels) == {"app": "a", "cluster": "alpha"}


def test_throttled_or_unreachable_hands_back_what_is_not_pushed() -> None:
    batch = [record(stream({"app": "a"}, "x" * 800), offset=i) for i in range(3)]
    script = Script([204, 429])
    handler, _ = sink(script, max_request_bytes=1024)
    result = handler.handle(batch)
    assert ([r.offset for r in result.retry], result.retry_delay) == ([1, 2], 3.0)
    script.answers = [httpx.ConnectError("refused")]
    result = handler.handle(batch[1:])
    assert ([r.offset for r in result.retry], result.retry_delay) == ([1, 2], None)


def test_tenants_from_headers_are_pushed_separately() -> None:
    script = Script([204, 204])
    handler, _ = sink(script)
    handler.handle(
        [
            record(stream({"app": "a"}, "1"), tenant=b"1"),
            record(stream({"app": "a"}, "2"), offset=1, tenant=b"2"),
        ]
    )
    assert [t for t, _ in script.requests] == ["1", "2"]


def test_counters_count_finished_records_only() -> None:
    batch = [record(stream({"app": "a"}, "x" * 100, "y"), offset=0)]
    script = Script([503, 204])
    handler, _ = sink(script, max_line_bytes=50)
    assert handler.handle(batch).retry
    assert handler.m_truncated.value(function="loki", reason="line_too_long") == 0
    assert not handler.handle(batch).retry
    [(_, [s])] = script.requests[1:]
    assert s.entries[0].line == "x" * (50 - len(MARKER.encode())) + MARKER
    assert s.entries[1].line == "y"
    assert handler.m_truncated.value(function="loki", reason="line_too_long") == 1


def test_structured_metadata_are_forwarded_even_on_truncated_lines() -> None:
    meta = (("trace_id", "abc"), ("user", "bob"))
    batch = [
        record(Stream({"app": "a"}, [Entry(TS, "short", meta), Entry(TS + 1, "L" * 2000, meta)]))
    ]
    script = Script([204])
    handler, _ = sink(script, max_line_bytes=1000)
    assert not handler.handle(batch).dead
    [(_, [pushed])] = script.requests
    assert [e.metadata for e in pushed.entries] == [meta, meta]
    assert pushed.entries[1].line.endswith(MARKER)
