"""The bulk bodies of elasticsearch_logs are those the entry-by-entry encoder wrote.

``_reference`` is the encoder as it was before streams travelled by column; replays
rely on the ``_id``, so every byte of every body must stay, whatever the records hold
(identical lines in one nanosecond, streams repeated in a record, metadata, timestamps
out of order or no calendar can name, lines that are not ASCII).
"""

from __future__ import annotations

import base64
import hashlib
import json.encoder
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman import headers as h
from ferryman.wire.loki import Entries, Entry, Stream, decode_push_request, encode_push_request
from ferryman.wire.remote_write import snappy_compress, snappy_decompress
from functions.elasticsearch_logs.config import ElasticsearchLogsConfig
from functions.elasticsearch_logs.encode import BulkEncoder, _object, _tail
from workers.records import Record

_SEP, _NS = "\udcff", 1_000_000_000
_quote = json.encoder.encode_basestring_ascii


def _stamp(ts: int) -> str:
    seconds, nanos = divmod(ts, _NS)
    try:
        when = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return str(ts // 1_000_000)
    return f'"{when:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"'


def _documents(
    config: ElasticsearchLogsConfig, streams: list[Stream], header_cluster: str | None
) -> list[tuple[str, str]]:
    out = []
    seen: dict[tuple[str, int, str], int] = {}
    for stream in streams:
        identity = dict(stream.labels)
        if config.cluster_label not in identity and header_cluster is not None:
            identity[config.cluster_label] = header_cluster
        series_key = _SEP.join(f"{k}{_SEP}{v}" for k, v in sorted(identity.items()))
        series_hash = hashlib.blake2b(
            series_key.encode("utf-8", "surrogateescape") + b"\xfe", digest_size=15
        )
        tail = _tail(identity, config.cluster_label)
        for entry in stream.entries:
            ts, line = entry.timestamp_ns, entry.line
            rank = seen.get((series_key, ts, line), 0)
            seen[series_key, ts, line] = rank + 1
            digest = series_hash.copy()
            digest.update(f"{ts}{_SEP}{line}{_SEP}{rank}".encode("utf-8", "surrogatepass"))
            entry_id = base64.urlsafe_b64encode(digest.digest()).decode()
            document = f'{{"@timestamp":{_stamp(ts)},"message":{_quote(line)}'
            if entry.metadata:
                document += (
                    tail[:-2]
                    + f",{_quote(config.metadata_field)}:"
                    + _object(entry.metadata)
                    + "}\n"
                )
            else:
                document += tail
            out.append((f'{{"create":{{"_id":"{ts:x}{entry_id}"}}}}\n', document))
    return out


def _reference(
    config: ElasticsearchLogsConfig, records: list[Record]
) -> list[tuple[list[str], list[int], int]]:
    chunks: list[tuple[list[str], list[int], int]] = [([], [], 0)]
    for position, record in enumerate(records):
        raw_cluster = record.header(h.CLUSTER)
        cluster = raw_cluster.decode() if raw_cluster else None
        streams = decode_push_request(snappy_decompress(record.value))
        for action, document in _documents(config, streams, cluster):
            lines, owners, size = chunks[-1]
            if size + len(action) + len(document) > config.max_bulk_bytes and owners:
                chunks.append(([], [], 0))
                lines, owners, size = chunks[-1]
            lines += action, document
            owners.append(position)
            chunks[-1] = (lines, owners, size + len(action) + len(document))
    return [c for c in chunks if c[1]]


stamps = st.one_of(
    st.integers(0, 5), st.sampled_from([-3 * _NS, 10**19, _NS - 1, -2 * 1_700_000_000 * _NS - 7])
)
lines = st.one_of(st.sampled_from(["a", "b", "", 'é"\\', "日本\n"]), st.text(max_size=20))
entries = st.lists(st.tuples(stamps, lines, st.sampled_from([(), (("trace", "1"),)])), max_size=12)
labels = st.sampled_from(
    [{"app": "a"}, {"app": "a", "cluster": "c"}, {"host": "h", "pod": "p", "job": "j"}]
)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(labels, entries), max_size=3),
            st.sampled_from([None, "alpha"]),
            st.booleans(),
        ),
        max_size=4,
    ),
    st.sampled_from([1 << 20, 1024]),
)
def test_bodies_are_byte_for_byte_those_of_the_reference(
    spec: list[
        tuple[
            list[tuple[dict[str, str], list[tuple[int, str, tuple[tuple[str, str], ...]]]]],
            str | None,
            bool,
        ]
    ],
    max_bulk: int,
) -> None:
    config = ElasticsearchLogsConfig.model_validate(
        {"url": "http://es:9200", "max_bulk_bytes": max_bulk}
    )
    records = []
    for offset, (record_streams, cluster, by_column) in enumerate(spec):
        streams = []
        for stream_labels, ents in record_streams:
            base = 1_700_000_000 * _NS
            if by_column and not any(meta for *_, meta in ents):
                streams.append(
                    Stream(
                        stream_labels,
                        Entries([base + ts for ts, *_ in ents], [x for _, x, _ in ents]),
                    )
                )
            else:
                streams.append(
                    Stream(stream_labels, [Entry(base + ts, x, meta) for ts, x, meta in ents])
                )
        headers = ((h.SCHEMA, h.SCHEMA_LOKI_PUSH),)
        if cluster:
            headers += ((h.CLUSTER, cluster.encode()),)
        records.append(
            Record("logs", 0, offset, None, snappy_compress(encode_push_request(streams)), headers)
        )
    encoded = BulkEncoder(config).encode(records)
    assert [(c.lines, c.owners, c.size) for c in encoded.chunks] == _reference(config, records)
