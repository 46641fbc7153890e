"""What makes a file the same file: its device and inode, and the fingerprint of its
first line.

A path is only where a file is found now; logrotate renames it, kubelet compresses
it, copytruncate copies it and empties it in place. The shipper therefore knows a
file by ``(device, inode)`` *and* a fingerprint of its head, and decides what it is
by both (see :mod:`edge.logs.tracker`):

- same inode, same fingerprint: the same file, wherever it is now (a rename);
- same inode, another fingerprint (or shorter than what was read of it): the content
  was replaced (copytruncate, truncate and rewrite, an inode reused after a delete);
  it is read from its start;
- another inode, same fingerprint, and the bytes just before the known position
  agree (:data:`~edge.logs.tailer.MARK_BYTES` of them, the *mark*): a copy of content
  already read (copytruncate's copy, a compressed rotation); it continues where that
  content was read up to, and only once no live file carries that content any more.

The fingerprint is the crc32 of the file's first line (its newline included), or of
its first :data:`~edge.logs.tailer.MARK_BYTES` bytes when the first line is longer,
together with that length. A file with neither a complete first line nor that many
bytes has no fingerprint yet, and no line to read either.
"""

from __future__ import annotations

import os
import zlib

from .tailer import MARK_BYTES

__all__ = ["COMPRESSED_SUFFIXES", "compression", "fingerprint", "prefix_crc"]

#: suffixes of compressed rotations (kubelet and logrotate leave ``.gz``)
COMPRESSED_SUFFIXES = {
    ".gz": "gz",
    ".tgz": "gz",
    ".z": "gz",
    ".bz2": "bz2",
    ".xz": "xz",
    ".zst": "zst",
    ".lz4": "lz4",
    ".zip": "zip",
}
_MAGIC = (
    (b"\x1f\x8b\x08", "gz"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zst"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"PK\x03\x04", "zip"),
)


def fingerprint(head: bytes) -> int | None:
    """The fingerprint of a file whose first bytes are ``head`` (at least
    :data:`MARK_BYTES` of them when the file has that many), or None."""
    newline = head.find(b"\n", 0, MARK_BYTES)
    if newline >= 0:
        length = newline + 1
    elif len(head) >= MARK_BYTES:
        length = MARK_BYTES
    else:
        return None
    return (length << 32) | zlib.crc32(head[:length])


def compression(path: str, head: bytes) -> str | None:
    """The compression format of a file, by its magic bytes or its suffix, or None
    for a file to read as text."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "bz2"
    return COMPRESSED_SUFFIXES.get(os.path.splitext(path)[1].lower())


def prefix_crc(fd: int, length: int) -> int | None:
    """crc32 of the first ``length`` bytes of an open file, or None if it is shorter."""
    crc, done = 0, 0
    while done < length:
        chunk = os.pread(fd, min(1 << 20, length - done), done)
        if not chunk:
            return None
        crc = zlib.crc32(chunk, crc)
        done += len(chunk)
    return crc
