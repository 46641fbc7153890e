"""The ``ferryman.lines`` header: where each entry of a Loki push message was read.

A shipper that reads files attaches it to a message so that a sink can name a line by
the file it came from and where it ends there. That name survives what timestamps and
the ``filename`` label do not: a file renamed by rotation, read again after the
positions file was lost.

The value, byte for byte (integers are protobuf varints)::

    value  = 0x01 stream*                        one per stream of the message, in order
    stream = run_count:uvarint run*
    run    = source:16 bytes  count:uvarint  delta:zigzag varint * count

A run is ``count`` (at least one) consecutive entries of its stream, in entry order,
read from one source; the counts of a stream's runs add up to its entries. The deltas
are those of the entries' end offsets, the first one from 0 (so it is the offset
itself), zigzag-encoded as protobuf's ``sint64``. An end offset is where the entry's
bytes end in its source, its newline included: no two lines of a source share one.
Offsets are ``0 ≤ offset < 2**63``.

A source is :func:`source_id` of the file, or :data:`NO_SOURCE` (16 zero bytes) for
entries that were not read from a file (a journal, a pipe): those are named as if the
message had no header. A value that does not match its message (another version,
truncated, trailing bytes, too many or too few streams or entries, a run of none) is
refused as a whole with :class:`~ferryman.wire.protobuf.DecodeError`, the only
exception decoding raises, and readers then ignore the header.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import cache
from itertools import repeat
from operator import sub

from .protobuf import DecodeError, varint, varint_at

__all__ = [
    "NO_SOURCE",
    "VERSION",
    "Runs",
    "decode_lines",
    "decode_runs",
    "encode_lines",
    "source_id",
]

#: The first byte of every value.
VERSION = 0x01
#: The source of entries not read from a file.
NO_SOURCE = bytes(16)

_SOURCE_LEN = 16
_OFFSET_END = 1 << 63

#: Per stream, its runs: (source, end offsets of the run's entries).
Runs = list[list[tuple[bytes, list[int]]]]


def source_id(host: str, device: int, inode: int, fingerprint: int) -> bytes:
    """The 16-byte source of a file: BLAKE2b-128 (personalisation ``ferryman.source``) of
    ``varint(len(host)) host varint(device) varint(inode) varint(fingerprint)``, the host
    in UTF-8 (lone surrogates passed through). Length prefix and varints make the
    encoding unambiguous.

    ``fingerprint`` tells apart files that reuse a device and inode (a file deleted and
    another created, a file truncated and rewritten); it must not change while the file
    grows, e.g. a checksum of a fixed number of first bytes. Raises ValueError when a
    number is negative."""
    if min(device, inode, fingerprint) < 0:
        raise ValueError("device, inode and fingerprint are non-negative")
    name = host.encode("utf-8", "surrogatepass")
    data = varint(len(name)) + name + varint(device) + varint(inode) + varint(fingerprint)
    return hashlib.blake2b(data, digest_size=_SOURCE_LEN, person=b"ferryman.source").digest()


def encode_lines(
    streams: Sequence[Sequence[tuple[bytes, Sequence[int]]]],
    deltas: Callable[[list[int]], bytes | None] | None = None,
) -> bytes:
    """The header value of a message: for each of its streams, in order, that stream's
    runs as ``(source, end offsets)`` in entry order. Runs without offsets are left
    out. Raises ValueError when a source is not 16 bytes or an offset is outside
    ``0 ≤ offset < 2**63``. ``deltas`` (the shipper passes the native one) encodes a
    run's offsets faster; None from it, or no ``deltas``, means the Python way."""
    out = bytearray((VERSION,))
    for runs in streams:
        kept = [(source, offsets) for source, offsets in runs if len(offsets)]
        out += varint(len(kept))
        for source, offsets in kept:
            if len(source) != _SOURCE_LEN:
                raise ValueError(f"a source is {_SOURCE_LEN} bytes, not {len(source)}")
            if min(offsets) < 0 or max(offsets) >= _OFFSET_END:
                raise ValueError("end offsets are 0 <= offset < 2**63")
            out += source
            out += varint(len(offsets))
            fast = deltas(list(offsets)) if deltas is not None else None
            if fast is not None:
                out += fast
                continue
            steps = list(map(sub, offsets, [0, *offsets[:-1]]))
            if min(steps) >= 0 and max(steps) < 1 << 13:
                # The usual case (rising offsets, lines under 8 KiB): by table, in C.
                out += b"".join(map(_small_varints().__getitem__, map((2).__mul__, steps)))
            else:
                out += b"".join(map(_zigzag_varint, offsets, [0, *offsets[:-1]]))
    return bytes(out)


def _zigzag_varint(offset: int, previous: int) -> bytes:
    delta = offset - previous
    zigzag = delta << 1 if delta >= 0 else (-delta << 1) - 1
    return _small_varints()[zigzag] if zigzag < 1 << 14 else varint(zigzag)


@cache
def _small_varints() -> list[bytes]:
    """Varints of 0 … 2**14 - 1: the deltas of lines up to 8 KiB."""
    return [varint(value) for value in range(1 << 14)]


def decode_runs(value: bytes, entry_counts: Sequence[int]) -> Runs:
    """Per stream of a message whose streams hold ``entry_counts`` entries, its runs as
    ``(source, end offsets)``, :data:`NO_SOURCE` runs included. Raises DecodeError when
    ``value`` is not a header of that message."""
    data = bytes(value)
    if not data or data[0] != VERSION:
        raise DecodeError(f"not a version {VERSION} ferryman.lines header")
    try:
        runs, pos = _runs(data, entry_counts)
    except IndexError:
        raise DecodeError("truncated ferryman.lines header") from None
    if pos != len(data):
        raise DecodeError("ferryman.lines header longer than its message's streams")
    return runs


def _runs(data: bytes, entry_counts: Sequence[int]) -> tuple[Runs, int]:
    out: Runs = []
    pos = 1
    for entries in entry_counts:
        run_count, pos = varint_at(data, pos)
        if run_count > entries:
            raise DecodeError(f"{run_count} runs for {entries} entries")
        runs: list[tuple[bytes, list[int]]] = []
        left = entries
        for _ in range(run_count):
            source = data[pos : pos + _SOURCE_LEN]
            count, pos = varint_at(data, pos + _SOURCE_LEN)
            if not 0 < count <= left:
                raise DecodeError(f"a run of {count} entries where {left} are left")
            offsets, pos = _offsets(data, pos, count)
            runs.append((source, offsets))
            left -= count
        if left:
            raise DecodeError(f"runs for {entries - left} of {entries} entries")
        out.append(runs)
    return out, pos


def _offsets(data: bytes, pos: int, count: int) -> tuple[list[int], int]:
    """``count`` end offsets from their zigzag deltas at ``pos``; IndexError when the
    data end first."""
    offsets: list[int] = []
    add = offsets.append
    offset = 0
    for _ in range(count):
        byte = data[pos]
        if byte < 0x80:
            value = byte
            pos += 1
        else:
            second = data[pos + 1]
            if second < 0x80:  # lines up to 8 KiB: two bytes
                value = (byte & 0x7F) | second << 7
                pos += 2
            else:
                value, pos = varint_at(data, pos)
        offset += (value >> 1) ^ -(value & 1)
        add(offset)
    if min(offsets) < 0 or max(offsets) >= _OFFSET_END:
        raise DecodeError("an end offset outside 0 <= offset < 2**63")
    return offsets, pos


def decode_lines(value: bytes, entry_counts: Sequence[int]) -> list[list[tuple[bytes, int] | None]]:
    """Per stream of a message whose streams hold ``entry_counts`` entries, per entry its
    ``(source, end offset)``, or None when it has no source. Raises DecodeError when
    ``value`` is not a header of that message."""
    out: list[list[tuple[bytes, int] | None]] = []
    for runs in decode_runs(value, entry_counts):
        entries: list[tuple[bytes, int] | None] = []
        for source, offsets in runs:
            if source == NO_SOURCE:
                entries += repeat(None, len(offsets))
            else:
                entries += zip(repeat(source), offsets)
        out.append(entries)
    return out
