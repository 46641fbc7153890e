"""elasticsearch_logs names a line by its source file and end offset when the record's
``ferryman.lines`` header says where it was read, and by its content otherwise."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from ferryman import headers as h
from ferryman.wire.lines import NO_SOURCE, encode_lines, source_id
from ferryman.wire.loki import Entry, Stream, encode_push_request
from ferryman.wire.remote_write import snappy_compress
from functions.elasticsearch_logs.config import ElasticsearchLogsConfig
from functions.elasticsearch_logs.encode import BulkEncoder, Encoded
from workers.records import Record

TS = 1_700_000_000_000_000_001
APP = source_id("node-1", 2049, 131_074, 0x5EED)
OTHER = source_id("node-1", 2049, 131_075, 0x5EED)
LABELS = {"filename": "/var/log/app.log", "host": "node-1", "job": "app"}


def stream(labels: dict[str, str], *entries: tuple[int, str]) -> Stream:
    return Stream(labels, [Entry(ts, line) for ts, line in entries])


def record(
    *streams: Stream,
    lines: bytes | None = None,
    cluster: str | None = "alpha",
    offset: int = 0,
) -> Record:
    headers: tuple[tuple[str, bytes], ...] = ((h.SCHEMA, h.SCHEMA_LOKI_PUSH),)
    if cluster is not None:
        headers += ((h.CLUSTER, cluster.encode()),)
    if lines is not None:
        headers += ((h.LINES, lines),)
    body = snappy_compress(encode_push_request(streams))
    return Record("logs", 0, offset, b"k", body, headers)


def encode(*records: Record) -> Encoded:
    config = ElasticsearchLogsConfig.model_validate({"url": "http://es:9200"})
    return BulkEncoder(config).encode(records)


def ids(*records: Record) -> list[str]:
    return [
        json.loads(chunk.lines[i])["create"]["_id"]
        for chunk in encode(*records).chunks
        for i in range(0, len(chunk.lines), 2)
    ]


def by_source(cluster: str | None, source: bytes, offset: int, rank: int = 0) -> str:
    """The documented ``_id`` of a line by source, written out again."""
    named = b"\x00" if cluster is None else b"\x01" + cluster.encode()
    digest = hashlib.blake2b(named + source, digest_size=12, person=b"ferryman.es.line")
    prefix = base64.urlsafe_b64encode(digest.digest()).decode()
    return f"{prefix}.{offset:x}" + (f".{rank:x}" if rank else "")


def test_a_line_with_a_source_is_named_by_cluster_source_and_offset() -> None:
    lines = encode_lines([[(APP, [120, 240])]])
    got = ids(record(stream(LABELS, (TS, "a"), (TS + 1, "b")), lines=lines))
    assert got == [by_source("alpha", APP, 120), by_source("alpha", APP, 240)]
    assert len(got[0]) == 16 + 1 + 2  # shorter than a content id (36 here)


def test_a_re_read_under_another_name_with_new_timestamps_gets_the_same_ids() -> None:
    lines = encode_lines([[(APP, [120, 240])]])
    first = ids(record(stream(LABELS, (TS, "a"), (TS + 1, "b")), lines=lines))
    renamed = {**LABELS, "filename": "/var/log/app.log.1"}
    again = ids(record(stream(renamed, (TS + 10**12, "a"), (TS + 10**12 + 5, "b")), lines=lines))
    assert again == first
    # Without the header, the same re-read is two new lines.
    assert set(ids(record(stream(LABELS, (TS, "a"), (TS + 1, "b"))))).isdisjoint(
        ids(record(stream(renamed, (TS + 10**12, "a"), (TS + 10**12 + 5, "b"))))
    )


def test_cluster_source_and_offset_each_tell_lines_apart() -> None:
    one = stream(LABELS, (TS, "same"))
    base = ids(record(one, lines=encode_lines([[(APP, [9])]])))
    assert ids(record(one, lines=encode_lines([[(OTHER, [9])]]))) != base
    assert ids(record(one, lines=encode_lines([[(APP, [10])]]))) != base
    assert ids(record(one, lines=encode_lines([[(APP, [9])]]), cluster="beta")) != base
    none = ids(record(one, lines=encode_lines([[(APP, [9])]]), cluster=None))
    assert none == [by_source(None, APP, 9)] != base
    # The cluster is the one the document is written with: a label wins over the header.
    labelled = stream({**LABELS, "cluster": "beta"}, (TS, "same"))
    assert ids(record(labelled, lines=encode_lines([[(APP, [9])]]))) == [by_source("beta", APP, 9)]


def test_entries_without_a_source_keep_their_content_id() -> None:
    entries = stream(LABELS, (TS, "journal"), (TS + 1, "file"), (TS + 2, "journal too"))
    content = ids(record(entries))
    lines = encode_lines([[(NO_SOURCE, [0]), (APP, [77]), (NO_SOURCE, [0])]])
    assert ids(record(entries, lines=lines)) == [
        content[0],
        by_source("alpha", APP, 77),
        content[2],
    ]
    assert "." not in "".join(content)  # content ids never look like source ids


def test_the_same_source_and_offset_twice_in_a_record_are_two_documents() -> None:
    lines = encode_lines([[(APP, [5, 5])], [(APP, [5]), (OTHER, [5])]])
    two = stream(LABELS, (TS, "x"), (TS, "x"))
    got = ids(record(two, stream({"job": "other"}, (TS, "y"), (TS, "z")), lines=lines))
    assert got == [
        by_source("alpha", APP, 5),
        by_source("alpha", APP, 5, 1),
        by_source("alpha", APP, 5, 2),
        by_source("alpha", OTHER, 5),
    ]
    # Offsets that go back within a run are ranked too, and stable.
    back = encode_lines([[(APP, [7, 3, 7])]])
    three = stream(LABELS, (TS, "a"), (TS + 1, "b"), (TS + 2, "c"))
    assert ids(record(three, lines=back)) == [
        by_source("alpha", APP, 7),
        by_source("alpha", APP, 3),
        by_source("alpha", APP, 7, 1),
    ]
    assert ids(record(three, lines=back, offset=3)) == ids(record(three, lines=back))


@pytest.mark.parametrize(
    "lines",
    [
        encode_lines([[(APP, [1, 2])]]),  # one entry short
        encode_lines([[(APP, [1, 2, 3])], [(APP, [4])]]),  # a stream more
        b"\x02" + encode_lines([[(APP, [1, 2, 3])]])[1:],  # another version
        encode_lines([[(APP, [1, 2, 3])]])[:-1],  # truncated
        b"",
    ],
)
def test_a_header_that_does_not_match_is_ignored_and_reported(lines: bytes) -> None:
    entries = stream(LABELS, (TS, "a"), (TS + 1, "b"), (TS + 2, "c"))
    good = encode_lines([[(APP, [1, 2, 3])]])
    encoded = encode(
        record(entries, lines=good),
        record(entries, lines=lines, offset=1),
        record(entries, offset=2),
    )
    got = [
        json.loads(chunk.lines[i])["create"]["_id"]
        for chunk in encoded.chunks
        for i in range(0, len(chunk.lines), 2)
    ]
    assert got[3:6] == got[6:9] == ids(record(entries))  # by content
    assert got[:3] == [by_source("alpha", APP, o) for o in (1, 2, 3)]
    assert [position for position, _ in encoded.invalid_lines_headers] == [1]
