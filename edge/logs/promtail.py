"""Promtail's positions file, read once so that a migration does not ship every file
again.

Promtail keeps one YAML mapping, ``positions:``, of key → string. Which entries
mean what (Promtail's ``positions`` package and its targets):

- a file: the absolute path (Promtail makes every matched path absolute) → the
  byte offset read up to, as decimal text (``"1234"``; quoted because Promtail
  writes every value as a string, though an unquoted number reads the same);
- the journal: ``cursor-<job_name>`` (Promtail 2.x since the cursor keys;
  ``journal-<job_name>`` before) → the journald cursor of the last entry read;
- other targets: ``cursor-<name>`` → a Unix time (docker, cloudflare, ...),
  which has no counterpart in ferryman.

Only files and journal cursors are kept. Skipped: keys that are not absolute
paths, offsets that are not non-negative integers (Promtail itself could not use
them), compressed files (``.gz``, ``.z``, ``.bz2``: Promtail counts lines read
there, not bytes) and ``cursor-``/``journal-`` values that are not journald
cursors. Promtail recorded no device or inode: what an offset applies to is
whatever file is at that path now.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .journals import CURSOR_PREFIX

__all__ = ["PromtailPositions", "read_promtail_positions"]

#: keys Promtail's journal target saved its cursor under: current, then older releases
_JOURNAL_PREFIXES = ("cursor-", "journal-")
#: sd_journal_get_cursor(3): ``s=<seqnum id>;i=<seqnum>;b=<boot id>;m=<mono>;t=<realtime>;x=<xor>``
_JOURNALD_CURSOR = re.compile(
    r"s=[0-9a-f]+;i=[0-9a-f]+;b=[0-9a-f]+;m=[0-9a-f]+;t=[0-9a-f]+;x=[0-9a-f]+"
)
#: what Go's strconv.ParseInt(s, 10, 64) accepts, minus negative numbers
_OFFSET = re.compile(r"\+?[0-9]+")
_INT64_MAX = (1 << 63) - 1
#: Go's filepath.Ext of the files Promtail decompresses (and counts in lines)
_COMPRESSED = (".gz", ".z", ".bz2")
#: YAML's null, as Go's decoder reads ``positions:`` with nothing after it
_NULL = ("", "~", "null", "Null", "NULL")
_POSITIONS_LINE = re.compile(r"^positions\s*:", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class PromtailPositions:
    """What Promtail had read, in ferryman's terms."""

    #: absolute file path → byte offset Promtail had read up to
    files: dict[str, int] = field(default_factory=dict)
    #: ``journal/<job_name>`` → the journald cursor of the last entry Promtail read
    cursors: dict[str, str] = field(default_factory=dict)


def read_promtail_positions(path: Path) -> PromtailPositions | None:
    """Promtail's positions at ``path``; None when there is no file or it is not
    Promtail's (ferryman's own JSON, for one).

    An empty file reads as no positions, as in Promtail. Raises ValueError, naming
    ``path``, when the file is Promtail's but Promtail could not read it either
    (bad YAML, ``positions`` not a mapping, keys beside it, a value that is not
    text)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        # BaseLoader keeps every scalar as text, as Promtail's map[string]string does.
        data: Any = yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        if _POSITIONS_LINE.search(text):
            raise ValueError(f"Promtail positions file {path} is not valid YAML: {exc}") from None
        return None
    if data is None or data == "":
        return PromtailPositions()
    if not isinstance(data, dict) or "positions" not in data:
        return None
    others = sorted(str(key) for key in data if key != "positions")
    if others:
        raise ValueError(f"Promtail positions file {path} has {', '.join(others)} beside positions")
    entries = data["positions"]
    if entries in _NULL:
        return PromtailPositions()
    if not isinstance(entries, dict):
        raise ValueError(f"Promtail positions file {path}: positions is not a mapping")
    return _entries(path, entries)


def _entries(path: Path, entries: dict[str, Any]) -> PromtailPositions:
    files: dict[str, int] = {}
    cursors: dict[str, str] = {}
    older: dict[str, str] = {}  # journal-<job>: used only when no cursor-<job> exists
    for key, value in entries.items():
        if not isinstance(value, str):
            raise ValueError(f"Promtail positions file {path}: {key} holds no text value")
        if key.startswith("/"):
            offset = _offset(value)
            if offset is not None and not key.endswith(_COMPRESSED):
                files[key] = offset
            continue
        for prefix, found in zip(_JOURNAL_PREFIXES, (cursors, older), strict=True):
            if key.startswith(prefix) and _JOURNALD_CURSOR.fullmatch(value):
                found[CURSOR_PREFIX + key.removeprefix(prefix)] = value
    return PromtailPositions(files, {**older, **cursors})


def _offset(value: str) -> int | None:
    if not _OFFSET.fullmatch(value):
        return None
    offset = int(value)
    return offset if offset <= _INT64_MAX else None
