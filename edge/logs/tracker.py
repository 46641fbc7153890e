"""Which file a path holds now, and where to read it from: the identity rule of
:mod:`edge.logs.identity` applied to one newly found file.

:func:`place` decides, for a file no reader has open, one of:

- read it from an offset (a known file under any name; a new file from 0; a copy of
  content emptied in place from where that content was read up to), with the labels
  and job it was first shipped with when it is known;
- not yet (``None``): its content is also in a file being read (a copy made before
  copytruncate emptied the original, a plain ``cp``), or it has no first line.

It reads the file's head and, where a decision needs it, its bytes before a position
or its whole content (a copy smaller than the original, compared byte for byte by
crc32); it never reads a file that a decision does not need.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass

from .identity import fingerprint, prefix_crc
from .positions import Identity, Position, Positions
from .tailer import Tailer

__all__ = ["Identity", "Live", "Placement", "live_by_fingerprint", "place", "retire"]

log = logging.getLogger("ferryman.edge.logs")


@dataclass(frozen=True, slots=True)
class Placement:
    start: int
    fingerprint: int
    #: why: "known" (its own position), "new", "replaced" (new content under a known
    #: inode), "copy" (continues content emptied in place)
    reason: str
    #: the position it continues (its own, or the content it is a copy of)
    continues: Position | None = None


#: the open files with a fingerprint (a new file may be a copy of one of them)
Live = Callable[[int], Iterable[Tailer]]


def place(
    tailer: Tailer,
    positions: Positions,
    live: Live,
    now: float,
    alive: Container[Identity] = (),
) -> Placement | None:
    """Where to read ``tailer``'s file from (see the module docstring), or None.
    ``live(fingerprint)`` gives the open files with that fingerprint; ``alive`` the
    identities found or open now (their entries are not gone)."""
    fp = fingerprint(tailer.head())
    identity = tailer.identity
    known = positions.get(*identity)
    reason = "new"
    if known is not None and not known.compressed:
        if fp is None and tailer.size() >= known.offset:
            return None  # no first line yet, and nothing read of it either
        if fp is not None and _same(tailer, known, fp):
            return Placement(known.offset, fp, "known", known)
        retire(positions, known, now)
        reason = "replaced"
    if fp is None:
        return None  # no first line yet
    size = tailer.size()
    for other in live(fp):
        if other.identity != identity and _is_prefix(tailer, other, size):
            return None  # a copy of a file being read: its lines come from there
    for orphan in positions.orphans():
        if orphan.fingerprint != fp or orphan.identity == identity:
            continue
        if size >= orphan.offset and tailer.mark_at(orphan.offset) != orphan.mark:
            continue  # same first line, other content
        positions.adopt(orphan)
        return Placement(min(orphan.offset, size), fp, "copy", orphan)
    for gone in positions.with_fingerprint(fp):
        # The file it was is gone (emptied and deleted while we were away): a copy
        # only if the bytes before its position agree too.
        if gone.identity == identity or gone.identity in alive or gone.compressed:
            continue
        if gone.mark and size >= gone.offset and tailer.mark_at(gone.offset) == gone.mark:
            positions.adopt(gone)
            return Placement(gone.offset, fp, "copy", gone)
    return Placement(0, fp, reason)


def retire(positions: Positions, known: Position, now: float) -> None:
    """``known``'s file holds other content now (copytruncate, rewrite, its inode reused
    by another file while we were away): the old content may live on in a copy."""
    if known.fingerprint and known.offset and known.mark and not known.done:
        positions.add_orphan(dataclasses.replace(known, seen=now, stamps=()))
    positions.forget(*known.identity)


def _same(tailer: Tailer, known: Position, fp: int) -> bool:
    """Whether the open file is the content ``known`` describes."""
    if tailer.size() < known.offset:
        return False
    if known.fingerprint:
        if known.fingerprint != fp:
            return False
    elif known.head_len:  # version 1
        assert tailer._file is not None
        if prefix_crc(tailer._file.fileno(), known.head_len) != known.head_crc:
            return False
    else:
        return False  # nothing to tell it by (it had no first line when saved)
    return not known.mark or tailer.mark_at(known.offset) == known.mark


def _is_prefix(copy: Tailer, original: Tailer, size: int) -> bool:
    if copy._file is None or original._file is None or original.size() < size:
        return False
    return prefix_crc(copy._file.fileno(), size) == prefix_crc(original._file.fileno(), size)


def live_by_fingerprint(tailers: Iterable[tuple[int | None, Tailer]]) -> Live:
    index: dict[int, list[Tailer]] = {}
    for fp, tailer in tailers:
        if fp is not None:
            index.setdefault(fp, []).append(tailer)
    return lambda fp: index.get(fp, ())
