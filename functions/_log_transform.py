"""What the log transforms (``parse``, ``redact``, ``filter``, ``count``) share: one
Loki push message in, at most one message out (for the first three, a Loki push with
the same key and headers).

A record that is not a Loki push message (wrong ``schema`` header, not snappy, bad
protobuf: whatever :func:`functions._records.decode_streams` refuses) is dead-lettered
with the reason; the runtime counts it in
``ferryman_records_dead_lettered_total``. A message whose entries were all removed
produces nothing. Streams without entries are left out of the output.

The ``ferryman.lines`` header (:mod:`ferryman.wire.lines`) says where each entry of
the message was read, by position; a sink names lines by it, so a header that no
longer lines up with its entries would give a line another line's name (and
Elasticsearch would take it for stored). :func:`rewrite_batch` therefore passes it on
only while it still describes the output (see :func:`follow_lines`), and drops it
otherwise: the sink then names those lines by their content.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ferryman import headers as h
from ferryman.wire.lines import decode_runs, encode_lines
from ferryman.wire.loki import Stream, encode_push_request
from ferryman.wire.protobuf import DecodeError
from ferryman.wire.remote_write import snappy_compress
from functions._records import UnsupportedRecord, decode_streams
from workers.records import Batch, Delivered, Output, Record

__all__ = ["each_push", "follow_lines", "rewrite_batch"]

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
    """Apply ``rewrite`` to the streams of every record of ``batch``; the output keeps
    the record's key and headers, but for ``ferryman.lines`` (see :func:`follow_lines`).

    ``rewrite`` does not change its input. Where its output has the input's shape (as
    many streams, as many entries each, streams without entries aside), entry ``i`` of
    each output stream is entry ``i`` of the input's, changed or not. Where it drops or
    moves entries, the entries it keeps are the input's
    :class:`~ferryman.wire.loki.Entry` objects themselves; new ones there cost the
    message its header."""

    def make(record: Record, streams: list[Stream]) -> Output | None:
        counts = [len(stream.entries) for stream in streams]
        kept = [stream for stream in rewrite(streams) if stream.entries]
        if not kept:
            return None
        headers = record.headers
        lines = record.header(h.LINES)
        if lines is not None:
            followed = follow_lines(lines, streams, counts, kept)
            if followed is not lines:
                headers = tuple((k, v) for k, v in headers if k != h.LINES)
                if followed is not None:
                    headers += ((h.LINES, followed),)
        return Output(snappy_compress(encode_push_request(kept)), record.key, headers)

    return each_push(batch, make)


#: Where an entry was read: its source and end offset (any offset for no source).
_Place = tuple[bytes, int]


def follow_lines(
    value: bytes, before: Sequence[Stream], counts: Sequence[int], after: Sequence[Stream]
) -> bytes | None:
    """The ``ferryman.lines`` header ``value`` of streams ``before`` (holding ``counts``
    entries, as they did when the header came) made to describe ``after``, what a
    rewrite of them returned; None when it cannot be told.

    * ``after`` has the shape of ``before`` (as many streams, as many entries each):
      ``value`` itself, the entries kept their places;
    * it has that shape once the streams without entries are left out: ``value``
      without them;
    * every entry of ``after`` is an entry object of ``before``: each takes its
      source and offset along (entries dropped, streams split);
    * otherwise (new entries in new places, or a header that does not match
      ``before``): None.
    """
    shape = [len(stream.entries) for stream in after]
    if shape == list(counts):
        return value
    try:
        runs = decode_runs(value, counts)
    except DecodeError:
        return None
    if shape == [count for count in counts if count]:
        return encode_lines([stream_runs for stream_runs in runs if stream_runs])
    # Entries are followed by identity: ``before`` holds them all alive meanwhile, so
    # no other object can have the id of one.
    places: dict[int, _Place] = {}
    for stream, stream_runs in zip(before, runs, strict=True):
        stream_places = [(source, offset) for source, offsets in stream_runs for offset in offsets]
        if len(stream.entries) != len(stream_places):
            return None  # not the streams the header came with
        places.update(zip(map(id, stream.entries), stream_places, strict=True))
    out: list[list[tuple[bytes, list[int]]]] = []
    for stream in after:
        followed: list[tuple[bytes, list[int]]] = []
        for entry in stream.entries:
            place = places.get(id(entry))
            if place is None:
                return None
            source, offset = place
            if followed and followed[-1][0] == source:
                followed[-1][1].append(offset)
            else:
                followed.append((source, [offset]))
        out.append(followed)
    return encode_lines(out)
