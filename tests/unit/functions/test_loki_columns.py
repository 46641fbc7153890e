"""The loki sink's by-column path gives the requests the entry-by-entry path gave.

``_reference_chunk`` and ``_reference_requests`` are the grouping and limiting as they
were before streams travelled by column: the requests (tenant, records, bytes) and the
counters the fast path must give, whatever the records hold (metadata, lines over the
limit, streams shared by records, timestamps out of order).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman import headers as h
from ferryman.wire.loki import Entries, Entry, Stream, encode_push_request
from ferryman.wire.remote_write import snappy_compress
from functions._records import decode_stream_columns as decode_record_columns
from functions._records import decode_streams as decode_record
from functions.loki.config import LokiConfig
from functions.loki.encode import (
    Labels,
    Limiter,
    Tally,
    chunk_streams,
    utf8_length,
)
from workers.records import Record

TS = 1_700_000_000_000_000_000
_ENTRY_OVERHEAD, _STREAM_OVERHEAD = 24, 16
Request = tuple[str, frozenset[int], bytes]


def _reference_chunk(items: list[tuple[int, str, Labels, Entry]], max_bytes: int) -> list[Request]:
    def label_size(labels: Labels) -> int:
        return _STREAM_OVERHEAD + sum(utf8_length(n) + utf8_length(v) + 6 for n, v in labels)

    def entry_size(entry: Entry) -> int:
        return (
            utf8_length(entry.line)
            + _ENTRY_OVERHEAD
            + sum(utf8_length(n) + utf8_length(v) + 6 for n, v in entry.metadata)
        )

    def request(
        tenant: str, streams: list[tuple[Labels, tuple[tuple[int, Entry], ...]]]
    ) -> Request:
        return (
            tenant,
            frozenset(o for _, owned in streams for o, _ in owned),
            encode_push_request(
                Stream(dict(labels), [e for _, e in owned]) for labels, owned in streams
            ),
        )

    grouped: dict[str, dict[Labels, list[tuple[int, Entry]]]] = {}
    for owner, tenant, labels, entry in items:
        grouped.setdefault(tenant, {}).setdefault(labels, []).append((owner, entry))
    out: list[Request] = []
    for tenant, streams in grouped.items():
        current: list[tuple[Labels, tuple[tuple[int, Entry], ...]]] = []
        size = 0
        for labels, entries in streams.items():
            entries.sort(key=lambda owned: owned[1].timestamp_ns)
            head = label_size(labels)
            run: list[tuple[int, Entry]] = []
            for owned in entries:
                length = entry_size(owned[1])
                if (current or run) and size + length + (0 if run else head) > max_bytes:
                    if run:
                        current.append((labels, tuple(run)))
                    out.append(request(tenant, current))
                    current, run, size = [], [], 0
                if not run:
                    size += head
                run.append(owned)
                size += length
            if run:
                current.append((labels, tuple(run)))
        if current:
            out.append(request(tenant, current))
    return out


def _reference_requests(
    config: LokiConfig, records: list[Record]
) -> tuple[list[Request], list[Tally]]:
    limiter, tallies = Limiter(config), [Tally() for _ in records]
    items: list[tuple[int, str, Labels, Entry]] = []
    for index, record in enumerate(records):
        tenant = (record.header(h.TENANT) or b"").decode()
        for stream in decode_record(record):
            labels = limiter.labels(stream.labels, "", len(stream.entries), tallies[index])
            if labels is None:
                continue
            for entry in stream.entries:
                line = limiter.line(entry.line, tallies[index])
                if line is None:
                    continue
                if line is not entry.line:
                    entry = Entry(entry.timestamp_ns, line, entry.metadata)
                items.append((index, tenant, labels, entry))
    return _reference_chunk(items, config.max_request_bytes), tallies


def _requests(config: LokiConfig, records: list[Record]) -> tuple[list[Request], list[Tally]]:
    limiter, tallies = Limiter(config), [Tally() for _ in records]
    items = []
    for index, record in enumerate(records):
        tenant = (record.header(h.TENANT) or b"").decode()
        for stream in decode_record_columns(record):
            labels = limiter.labels(stream.labels, "", len(stream.entries), tallies[index])
            if labels is not None:
                items.append(
                    (index, tenant, labels, limiter.entries(stream.entries, tallies[index]))
                )
    return [
        (c.tenant, c.owners, c.push_request())
        for c in chunk_streams(items, config.max_request_bytes)
    ], tallies


lines = st.one_of(st.text("ab é", max_size=30), st.sampled_from(["", "x" * 70, "é" * 20]))
entries = st.lists(
    st.tuples(st.integers(0, 40), lines, st.sampled_from([(), (("k", "v"),)])), max_size=30
)
streams = st.lists(
    st.tuples(st.sampled_from([{"app": "a"}, {"app": "b"}, {"app": "a" * 9}]), entries), max_size=3
)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(streams, st.sampled_from([None, b"t1", b"t2"])), max_size=5),
    st.sampled_from([0, 40, 80]),
    st.sampled_from(["truncate", "drop"]),
    st.sampled_from([1024, 1500, 4096]),
    st.booleans(),
)
def test_requests_and_counters_are_those_entry_by_entry(
    spec: list[
        tuple[
            list[tuple[dict[str, str], list[tuple[int, str, tuple[tuple[str, str], ...]]]]],
            bytes | None,
        ]
    ],
    max_line: int,
    on_long_line: str,
    max_request: int,
    by_column: bool,
) -> None:
    config = LokiConfig.model_validate(
        {
            "url": "http://loki:3100",
            "max_line_bytes": max_line,
            "on_long_line": on_long_line,
            "truncation_marker": "…",
            "max_request_bytes": max_request,
            "max_label_value_length": 5,
        }
    )
    records = []
    for offset, (record_streams, tenant) in enumerate(spec):
        encoded = []
        for labels, ents in record_streams:
            if by_column and not any(meta for *_, meta in ents):
                encoded.append(
                    Stream(
                        labels, Entries([TS + ts for ts, *_ in ents], [line for _, line, _ in ents])
                    )
                )
            else:
                encoded.append(
                    Stream(labels, [Entry(TS + ts, line, meta) for ts, line, meta in ents])
                )
        headers = ((h.SCHEMA, h.SCHEMA_LOKI_PUSH),) + (((h.TENANT, tenant),) if tenant else ())
        records.append(
            Record("logs", 0, offset, None, snappy_compress(encode_push_request(encoded)), headers)
        )
    assert _requests(config, records) == _reference_requests(config, records)
