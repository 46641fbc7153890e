"""The files, the topic and the line checks of the file-identity walk
(``test_logs_identity.py``).

:class:`Disk` writes, rotates (rename and copytruncate), compresses and deletes files
the way applications and logrotate do, and remembers what each file holds. Every
line is ``<generation> <seq>``: a generation is one lifetime of a file's content,
begun when a file is created or truncated, and its id is unique in the test, so a
line read back from Kafka says where it was written whatever labels it came with.

:class:`Topic` reads a one-partition topic from its start: every Loki entry line,
with the offset and timestamp of its message. :func:`unwritten` and :func:`disorder`
check what it holds; :func:`by_generation` and :func:`ranges` say it briefly.
"""

from __future__ import annotations

import gzip
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from ferryman.wire.loki import decode_push_request
from ferryman.wire.remote_write import snappy_decompress

__all__ = [
    "Content",
    "Disk",
    "Shipped",
    "Topic",
    "by_generation",
    "disorder",
    "line",
    "ranges",
    "unwritten",
    "was_written",
]

_ROTATED = re.compile(r"\.(\d+)(\.gz)?$")


def _index(rotated: str) -> int:
    """1 for ``app.log.1`` and ``app.log.1.gz``."""
    match = _ROTATED.search(rotated)
    assert match is not None, rotated
    return int(match.group(1))


def line(generation: str, seq: int) -> str:
    return f"{generation} {seq}"


@dataclass
class Content:
    """What a file holds: lines ``0 … lines-1`` of one generation."""

    generation: str
    lines: int = 0
    #: when its generation began (monotonic), under a base file's name
    born: float = field(default_factory=time.monotonic)

    def texts(self) -> list[str]:
        return [line(self.generation, seq) for seq in range(self.lines)]


class Disk:
    """The files of one directory, each a base file (``app0.log``) or one of its
    rotated names (``app0.log.1``, ``app0.log.2.gz``; 1 is the newest)."""

    def __init__(self, directory: Path, staging: Path, token: str) -> None:
        self.directory = directory
        # Same file system, matched by no glob: gzip output is renamed in from here,
        # so a compressed file appears whole (the shipper reads it with no delay).
        self.staging = staging
        self.token = token
        self.files: dict[str, Content] = {}
        #: every generation → lines written to it (a generation never shrinks)
        self.written: dict[str, int] = {}
        self.inodes_reused = 0
        self._freed: set[int] = set()  # inodes of files deleted so far

    def path(self, name: str) -> Path:
        return self.directory / name

    def inode(self, name: str) -> int:
        return os.stat(self.path(name)).st_ino

    def rotated(self, base: str) -> list[str]:
        """``base``'s rotated names, newest first."""
        return sorted((n for n in self.files if n.startswith(base + ".")), key=_index)

    def _generation(self, base: str) -> str:
        generation = f"{self.token}-{base.removesuffix('.log')}-g{len(self.written)}"
        self.written[generation] = 0
        return generation

    # ---- what an application does ----------------------------------------------------

    def create(self, base: str) -> str:
        """A new empty file (a new generation); says whether it took a freed inode."""
        generation = self._generation(base)
        fd = os.open(self.path(base), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        inode = os.fstat(fd).st_ino
        os.close(fd)
        self.files[base] = Content(generation)
        reused = inode in self._freed
        self.inodes_reused += reused
        return f"created {base} ino {inode}{' (reused)' if reused else ''} as {generation}"

    def write(self, base: str, count: int) -> str:
        """``count`` lines appended to ``base`` (created first if it is missing), in one
        write."""
        said = self.create(base) + "; " if base not in self.files else ""
        content = self.files[base]
        first = content.lines
        text = "".join(line(content.generation, s) + "\n" for s in range(first, first + count))
        with self.path(base).open("ab") as f:
            f.write(text.encode())
        content.lines += count
        self.written[content.generation] = content.lines
        return f"{said}+{count} to {base} ({content.generation} {first}..{content.lines - 1})"

    # ---- what logrotate does ---------------------------------------------------------

    def _shift(self, base: str) -> list[tuple[str, str]]:
        """Every rotated name one older (``.2`` → ``.3`` before ``.1`` → ``.2``)."""
        moves = []
        for name in reversed(self.rotated(base)):
            gz = ".gz" if name.endswith(".gz") else ""
            moves.append((name, f"{base}.{_index(name) + 1}{gz}"))
        for old, new in moves:
            self._rename(old, new)
        return moves

    def _rename(self, old: str, new: str) -> None:
        os.rename(self.path(old), self.path(new))
        self.files[new] = self.files.pop(old)

    def rotate(self, base: str) -> list[tuple[str, str]]:
        """logrotate ``create``: shift, ``base`` → ``base.1``, a new empty ``base``.
        Returns the renames, in the order they were made."""
        moves = self._shift(base)
        self._rename(base, f"{base}.1")
        self.create(base)
        return [*moves, (base, f"{base}.1")]

    def copytruncate(self, base: str) -> tuple[list[tuple[str, str]], Content]:
        """logrotate ``copytruncate``: shift, copy ``base`` to ``base.1``, empty ``base``
        (no line is written in between). Returns the renames and what was truncated
        away (the copy holds it)."""
        moves = self._shift(base)
        data = self.path(base).read_bytes()
        with self.path(f"{base}.1").open("xb") as f:
            f.write(data)
        os.truncate(self.path(base), 0)
        old = self.files[base]
        self.files[f"{base}.1"] = Content(old.generation, old.lines, old.born)
        self.files[base] = Content(self._generation(base))
        return moves, old

    def compress(self, name: str) -> Content:
        """logrotate ``compress``: ``name`` gzipped to ``name.gz``, then ``name`` deleted."""
        staged = self.staging / (name + ".gz")
        staged.write_bytes(gzip.compress(self.path(name).read_bytes()))
        os.rename(staged, self.path(name + ".gz"))
        self._freed.add(self.inode(name))
        os.unlink(self.path(name))
        content = self.files.pop(name)
        self.files[name + ".gz"] = content
        return content

    def delete(self, name: str) -> Content:
        self._freed.add(self.inode(name))
        os.unlink(self.path(name))
        return self.files.pop(name)

    def mismatches(self) -> list[str]:
        """Files whose bytes are not what the model says they hold (a harness bug)."""
        out = []
        on_disk = sorted(p.name for p in self.directory.iterdir())
        if on_disk != sorted(self.files):
            out.append(f"files on disk {on_disk}, model {sorted(self.files)}")
        for name, content in self.files.items():
            try:
                data = self.path(name).read_bytes()
            except FileNotFoundError:
                continue
            if name.endswith(".gz"):
                data = gzip.decompress(data)
            if data != "".join(t + "\n" for t in content.texts()).encode():
                out.append(f"{name} does not hold {content.generation} 0..{content.lines - 1}")
        return out


@dataclass(frozen=True, slots=True)
class Shipped:
    """One Loki entry line as Kafka holds it."""

    offset: int
    timestamp_ms: int
    line: str


class Topic:
    """Every line of a one-partition topic, in the order Kafka holds them."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.partition = TopicPartition(topic, 0)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.consumer.assign([self.partition])
        self.consumer.seek_to_beginning(self.partition)
        self.entries: list[Shipped] = []
        self.count: Counter[str] = Counter()
        self.first: dict[str, int] = {}  # line → offset of its first copy

    def end(self) -> int:
        """The partition's end offset: acks=all, so every message Kafka acknowledged
        so far lies below it."""
        end: int = self.consumer.end_offsets([self.partition])[self.partition]
        return end

    def catch_up(self) -> Topic:
        """Read up to :meth:`end` as it is now."""
        end = self.end()
        deadline = time.monotonic() + 30
        while self.consumer.position(self.partition) < end:
            assert time.monotonic() < deadline, f"could not read {self.partition} up to {end}"
            for records in self.consumer.poll(timeout_ms=200).values():
                for message in records:
                    for stream in decode_push_request(snappy_decompress(message.value)):
                        for entry in stream.entries:
                            self.entries.append(
                                Shipped(message.offset, message.timestamp, entry.line)
                            )
                            self.count[entry.line] += 1
                            self.first.setdefault(entry.line, message.offset)
        return self

    def close(self) -> None:
        self.consumer.close()


# ---- checks --------------------------------------------------------------------------


def was_written(text: str, written: dict[str, int]) -> bool:
    """Whether ``text`` is exactly a line written (``written``: generation → lines)."""
    generation, _, seq = text.rpartition(" ")
    return seq.isdigit() and str(int(seq)) == seq and int(seq) < written.get(generation, 0)


def unwritten(topic: Topic, written: dict[str, int]) -> list[Shipped]:
    """Lines in Kafka that were never written: pieces of lines, bytes of a compressed
    file read as text."""
    return [e for e in topic.entries if not was_written(e.line, written)]


def disorder(topic: Topic, written: dict[str, int]) -> list[str]:
    """Per generation, the first line that first arrived after a later one of it."""
    out = []
    highest: dict[str, tuple[int, int]] = {}  # generation → (seq, offset) highest so far
    seen: set[str] = set()
    for entry in topic.entries:
        if entry.line in seen or not was_written(entry.line, written):
            continue
        seen.add(entry.line)
        generation, _, seq_text = entry.line.rpartition(" ")
        seq = int(seq_text)
        before = highest.get(generation)
        if before is None or before[0] < seq:
            highest[generation] = (seq, entry.offset)
        elif generation not in {g for g, *_ in out}:
            out.append((generation, seq, entry.offset, *before))
    return [
        f"{g}: seq {s} first arrived at offset {o}, after seq {bs} (offset {bo})"
        for g, s, o, bs, bo in out
    ]


def by_generation(texts: Iterable[str]) -> dict[str, list[int]]:
    """Lines as generation → sorted seqs."""
    out: dict[str, list[int]] = defaultdict(list)
    for text in texts:
        generation, _, seq = text.rpartition(" ")
        out[generation].append(int(seq))
    return {g: sorted(s) for g, s in sorted(out.items())}


def ranges(numbers: Iterable[int]) -> str:
    """``1..3, 5, 7..8``"""
    runs: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    parts = [f"{a}" if a == b else f"{a}..{b}" for a, b in runs]
    return ", ".join(parts[:12]) + (f", … ({len(parts)} runs)" if len(parts) > 12 else "")
