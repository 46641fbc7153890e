"""What the log transforms (``parse``, ``redact``, ``filter``, ``count``) share: one
Loki push message in, at most one message out (for the first three, a Loki push with
the same key and headers).

A record that is not a Loki push message (wrong ``schema`` header, not snappy, bad
protobuf: whatever :func:`functions._records.decode_streams` refuses) is dead-lettered
with the reason; the runtime counts it in
``ferryman_records_dead_lettered_total``. A message whose entries were all removed
produces nothing. Streams without entries are left out of the output.
"""

from __future__ import annotations

from collections.abc import Callable

from ferryman.wire.loki import Stream, encode_push_request
from ferryman.wire.remote_write import snappy_compress
from functions._records import UnsupportedRecord, decode_streams
from workers.records import Batch, Delivered, Output, Record

__all__ = ["each_push", "rewrite_batch"]

Rewrite = Callable[[list[Stream]], list[Stream]]
Make = Callable[[Record, list[Stream]], Output | None]


def each_push(batch: Batch, make: Make) -> Delivered:
    """``make`` (at most one output) for each record's decoded streams; records that
    are not Loki push messages are dead-lettered with the reason."""
    outputs: list[Output] = []
    dead: list[tuple[Record, str]] = []
    for record in batch:
        try:
            streams = decode_streams(record)
        except UnsupportedRecord as exc:
            dead.append((record, str(exc)))
            continue
        output = make(record, streams)
        if output is not None:
            outputs.append(output)
    return Delivered(dead=dead, outputs=outputs)


def rewrite_batch(batch: Batch, rewrite: Rewrite) -> Delivered:
    """Apply ``rewrite`` to the streams of every record of ``batch``."""

    def make(record: Record, streams: list[Stream]) -> Output | None:
        kept = [stream for stream in rewrite(streams) if stream.entries]
        if not kept:
            return None
        return Output(snappy_compress(encode_push_request(kept)), record.key, record.headers)

    return each_push(batch, make)
