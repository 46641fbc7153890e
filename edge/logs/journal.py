"""journald as a log source: ``journalctl --output=json --follow`` in a subprocess.

A :class:`JournalSource` runs journalctl and a reader thread that parses its JSON
lines into :class:`JournalEntry` values and puts them in a buffer bounded by entries
and by bytes. When the buffer is full the thread stops reading the pipe, journalctl
blocks on its write, and memory stays bounded whatever the backlog: the journal is
the buffer. The shipper takes entries with the non-blocking :meth:`JournalSource.read`
and saves ``entry.cursor`` of the last entry Kafka acknowledged; a restart with that
cursor re-reads nothing acknowledged and loses nothing.

What an entry carries, as Promtail's journal target does:

- ``line``: ``MESSAGE`` as text (a binary message, which journalctl writes as an
  array of bytes, is decoded as UTF-8 with invalid bytes replaced), or with
  ``json: true`` the whole entry as a JSON object; cut at ``max_line_bytes``;
- ``timestamp_ns``: ``__REALTIME_TIMESTAMP`` (µs) in nanoseconds;
- ``labels``: the config's ``labels`` plus one ``__journal_<field, lowercased>``
  meta label per field (``__journal__systemd_unit``, ``__journal_priority``,
  ``__journal_syslog_identifier``, ``__journal__hostname``, ...) and
  ``__journal_priority_keyword`` (``emerg`` … ``debug``), for relabeling. Not
  labels: ``MESSAGE`` (it is the line) and the ``__`` address fields (cursor,
  timestamps). A field present several times gives its first value.

An entry without ``MESSAGE`` is skipped (counted as ``skipped``), as Promtail does,
unless ``json: true``. A line that is not a journal entry (:func:`parse_entry` says
what that is) is counted as ``malformed_entry`` and skipped; a line above
``max_entry_bytes`` counts as ``oversized_entry`` and is kept with its MESSAGE cut
(:mod:`edge.logs.journalcut`), or skipped when something else in it is what is big.
When journalctl exits it is started again, after the last entry read, with an
exponential backoff (0.5 s doubling to 30 s); each exit counts as
``journalctl_exit``. Nothing here raises after start.

journalctl runs with ``--merge``: without it, ``--follow`` (systemd 252) shows the
current boot only. On the system journal that also takes in journals of other
machines stored under /var/log/journal (remote/, containers); ``matches`` on
``_MACHINE_ID`` or ``path`` narrow it when that is not wanted.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import random
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ferryman.units import Duration, Size

from .journalcut import cut_oversized
from .tailer import TRUNCATION_MARKER

__all__ = [
    "PRIORITY_KEYWORDS",
    "JournalConfig",
    "JournalEntry",
    "JournalSource",
    "MalformedEntry",
    "journalctl_command",
    "parse_entry",
]

log = logging.getLogger("ferryman.edge.logs")

PRIORITY_KEYWORDS = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug")
META_PREFIX = "__journal_"
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 30.0
# journalctl gets SIGTERM when the thread that started it ends, the shipper's kill -9
# included (PR_SET_PDEATHSIG, kept across exec); without it journalctl would live on
# until its next write failed. util-linux's setpriv sets it (absent: no guard).
_SETPRIV = shutil.which("setpriv")
_ORPHAN_GUARD: tuple[str, ...] = (_SETPRIV, "--pdeathsig", "TERM", "--") if _SETPRIV else ()

# A run of journalctl that lasted this long resets the backoff even if it read nothing.
HEALTHY_RUN = 10.0
_CURSOR_FIELDS = frozenset("sibmtx")
_HEX = re.compile(r"[0-9a-fA-F]+")
_MATCH_TERM = re.compile(r"[A-Z0-9_]+=.*|\+")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JournalConfig(_Strict):
    """Promtail's ``journal:`` scrape config, plus ferryman's ``files``, ``units``,
    ``journalctl`` and the buffer bounds."""

    max_age: Duration = Field(
        7 * 3600.0,
        description="Without a saved cursor, or when the saved cursor is "
        "older than this, start this far back (default 7h, as Promtail); 0: from the "
        "start of the journal.",
    )
    path: Path | None = Field(
        None,
        description="Journal directory (journalctl --directory); default: the "
        "system journal (/var/log/journal and /run/log/journal).",
    )
    files: tuple[Path, ...] = Field(
        (), description="Journal files to read (journalctl --file), instead of path."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels of every entry, before relabeling."
    )
    json_: bool = Field(
        False,
        alias="json",
        description="Ship the whole entry as a JSON object instead of its MESSAGE (default false).",
    )
    matches: str = Field(
        "",
        description="journalctl matches, space-separated FIELD=value terms, '+' "
        "between alternatives (e.g. '_TRANSPORT=kernel PRIORITY=3'); default: all.",
    )
    units: tuple[str, ...] = Field(
        (), description="Only these systemd units (journalctl --unit, each)."
    )
    journalctl: str = Field("journalctl", description="The journalctl binary.")
    buffer_entries: int = Field(
        1000, ge=1, description="Entries read ahead of the shipper at most (default 1000)."
    )
    buffer_bytes: Size = Field(
        8 << 20,
        description="Size of the lines read ahead of the shipper at most, "
        "counted in characters (default 8MiB).",
    )
    max_entry_bytes: Size = Field(
        4 << 20,
        description="An entry whose JSON is longer has its MESSAGE cut, with "
        "the truncation marker, and is counted (skipped when something else in it is "
        "what is long); default 4MiB.",
    )

    @model_validator(mode="after")
    def _one_location(self) -> JournalConfig:
        if self.path is not None and self.files:
            raise ValueError("set either path or files, not both")
        return self

    @field_validator("matches")
    @classmethod
    def _valid_matches(cls, matches: str) -> str:
        bad = [t for t in matches.split() if not _MATCH_TERM.fullmatch(t)]
        if bad:
            raise ValueError(
                f"not a FIELD=value match: {', '.join(bad)} (field names "
                "are upper case letters, digits and _)"
            )
        return matches


@dataclass(frozen=True, slots=True)
class JournalEntry:
    timestamp_ns: int
    line: str
    cursor: str  # save this once the entry is acknowledged; resume after it
    labels: Mapping[str, str]  # config labels + __journal_* meta labels, before relabeling
    truncated: bool = False


class MalformedEntry(ValueError):
    """Raised when a line of journalctl's output is not a journal entry."""


_PRIORITY_KEYWORD = {str(level): keyword for level, keyword in enumerate(PRIORITY_KEYWORDS)}
# Microseconds whose nanoseconds fit in an int64, as every encoder downstream needs.
_REALTIME_MAX = (2**63 - 1) // 1000
# journalctl escapes control characters as \u00XX; an escaped UTF-16 surrogate leaves
# json.loads a lone one in the string, which no UTF-8 encoder downstream takes.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _scrub(text: str) -> str:
    """Lone surrogates replaced (U+FFFD), as invalid UTF-8 in a byte array is."""
    return _SURROGATE.sub("\ufffd", text)


# --- pure parts ----------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A field's value as text: strings as they are, byte arrays decoded (invalid
    UTF-8 replaced), a repeated field's first value; None for null; ``str()`` of
    anything else (numbers, objects: journalctl writes none)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        if value and all(isinstance(b, int) for b in value):
            try:
                return bytes(value).decode("utf-8", "replace")
            except ValueError:
                raise MalformedEntry("a byte array holds values beyond 0-255") from None
        for item in value:
            text = _text(item)
            if text is not None:
                return text
        return "" if not value else None
    return str(value)


def _cut(line: str, limit: int) -> tuple[str, bool]:
    if len(line) * 4 <= limit:  # fast path: even four bytes per character fit
        return line, False
    raw = line.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return line, False
    return raw[:limit].decode("utf-8", "ignore") + TRUNCATION_MARKER, True


def parse_entry(
    raw: bytes | str, config: JournalConfig, max_line_bytes: int = 256 * 1024
) -> JournalEntry | None:
    """One line of ``journalctl --output=json`` → an entry; None for an entry without
    MESSAGE (unless ``json: true``).

    Raises MalformedEntry, and nothing else, for anything else: bytes that are not
    UTF-8, text that is not a JSON object (or nests too deeply to read), no
    ``__CURSOR`` string, a ``__REALTIME_TIMESTAMP`` that is not an integer of
    0 … 2**63 - 1 ns, or a byte array holding values beyond 0-255. Escaped lone
    UTF-16 surrogates (``\\ud800``) in names and values are replaced (U+FFFD), like
    invalid UTF-8 in a byte array.
    """
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        fields = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MalformedEntry(f"not JSON: {exc}") from None
    except RecursionError:
        raise MalformedEntry("not JSON: nested too deeply") from None
    if not isinstance(fields, dict):
        raise MalformedEntry("not a JSON object")
    cursor = fields.get("__CURSOR")
    if not isinstance(cursor, str) or not cursor:
        raise MalformedEntry("no __CURSOR")
    try:
        realtime_us = int(fields["__REALTIME_TIMESTAMP"])
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: 1e999
        raise MalformedEntry("no valid __REALTIME_TIMESTAMP") from None
    if not 0 <= realtime_us <= _REALTIME_MAX:
        raise MalformedEntry(f"__REALTIME_TIMESTAMP out of range: {str(realtime_us)[:30]}")
    timestamp_ns = realtime_us * 1000
    scrub = _SURROGATE_ESCAPE.search(text) is not None
    if scrub:
        cursor = _scrub(cursor)

    labels = dict(config.labels)
    texts: dict[str, str] = {}
    try:
        for name, value in fields.items():
            if name.startswith("__"):
                continue
            field_text = _text(value)
            if field_text is None:
                continue
            if scrub:
                name, field_text = _scrub(name), _scrub(field_text)
            texts[name] = field_text
            if name != "MESSAGE" and field_text:
                labels[META_PREFIX + name.lower()] = field_text
    except RecursionError:  # _text and str() recurse as deep as json.loads did: a guard
        raise MalformedEntry("a field nests too deeply") from None
    keyword = _PRIORITY_KEYWORD.get(texts.get("PRIORITY", ""))
    if keyword is not None:
        labels[META_PREFIX + "priority_keyword"] = keyword

    if config.json_:
        line = json.dumps(texts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    elif "MESSAGE" in texts:
        line = texts["MESSAGE"]
    else:
        return None
    line, truncated = _cut(line, max_line_bytes)
    return JournalEntry(timestamp_ns, line, cursor, labels, truncated)


def cursor_time(cursor: str) -> float | None:
    """The realtime (seconds) a journald cursor points at, or None when the text is
    not a cursor (``s=…;i=…;b=…;m=…;t=…;x=…``, each in hex, ``t`` in µs: 64 bits).

    Only such a cursor goes on journalctl's command line: anything else in an entry's
    ``__CURSOR`` (a NUL, a lone surrogate) would make starting journalctl fail."""
    parts = cursor.split(";")
    fields = dict(p.split("=", 1) for p in parts if "=" in p)
    if (
        len(fields) != len(parts)
        or not set(fields) <= _CURSOR_FIELDS
        or "t" not in fields
        or not all(map(_HEX.fullmatch, fields.values()))
        or len(fields["t"]) > 16
    ):
        return None
    return int(fields["t"], 16) / 1e6


def journalctl_command(
    config: JournalConfig, cursor: str | None, now: float | None = None, *, resuming: bool = False
) -> list[str]:
    """The journalctl command line: follow from after ``cursor``, or from
    ``max_age`` ago when there is no usable cursor or it is older than that, unless
    ``resuming`` (a restart of this run's journalctl: nothing is skipped then)."""
    now = time.time() if now is None else now
    command = [
        config.journalctl,
        "--output=json",
        "--follow",
        "--no-tail",
        "--no-pager",
        # Without --all, fields above 4096 bytes (long messages) come as null.
        "--all",
        # journalctl (252) --follow implies --boot=0 unless --merge: entries of an
        # earlier boot would be skipped, and --after-cursor a cursor of an earlier
        # boot would show nothing at all.
        "--merge",
    ]
    since = now - config.max_age if config.max_age > 0 else None
    at = None if cursor is None else cursor_time(cursor)
    if cursor is not None and at is None:
        log.error("journal: %r is not a journald cursor; ignoring it", cursor)
    if cursor is not None and at is not None and (resuming or since is None or at >= since):
        command.append(f"--after-cursor={cursor}")
    elif since is not None:
        if at is not None:
            log.warning(
                "journal: the saved cursor is older than max_age (%.0fs); "
                "starting from max_age ago",
                config.max_age,
            )
        command.append(f"--since=@{int(since)}")
    if config.path is not None:
        command.append(f"--directory={config.path}")
    command += [f"--file={f}" for f in config.files]
    command += [f"--unit={u}" for u in config.units]
    command += config.matches.split()
    return command


# --- the bounded buffer --------------------------------------------------------------


class _Buffer:
    """Entries between the reader thread and the shipper, bounded by count and by
    bytes of lines (one entry is always admitted, whatever its size)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._entries: collections.deque[JournalEntry] = collections.deque()
        self._bytes = 0
        self._max_entries, self._max_bytes = max_entries, max_bytes
        self._cond = threading.Condition()

    def put(self, entry: JournalEntry, stop: threading.Event) -> bool:
        """Blocks while full; False when ``stop`` was set before there was room."""
        size = len(entry.line)
        with self._cond:
            while self._entries and (
                len(self._entries) >= self._max_entries or self._bytes + size > self._max_bytes
            ):
                if stop.is_set():
                    return False
                self._cond.wait(0.2)
            self._entries.append(entry)
            self._bytes += size
            return True

    def take(self, count: int) -> list[JournalEntry]:
        with self._cond:
            taken = [self._entries.popleft() for _ in range(min(count, len(self._entries)))]
            self._bytes -= sum(len(e.line) for e in taken)
            if taken:
                self._cond.notify_all()
            return taken

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)


# --- the source ----------------------------------------------------------------------


class JournalSource:
    """Follows the journal with journalctl; see the module's docstring.

    ``cursor`` is where the last run's acknowledged entries ended (None: no saved
    cursor, read from ``max_age`` ago). Call :meth:`start` once, :meth:`read` from
    the shipper's loop, :meth:`close` at the end.
    """

    def __init__(
        self,
        config: JournalConfig,
        cursor: str | None = None,
        *,
        max_line_bytes: int = 256 * 1024,
        name: str = "journal",
    ) -> None:
        self.config = config
        self.name = name
        self.max_line_bytes = max_line_bytes
        self._resume = cursor  # after the last entry read from journalctl (reader thread)
        self._resuming = False  # _resume was read by this run, not given: never skip it
        self._handed_out = cursor
        self._buffer = _Buffer(config.buffer_entries, config.buffer_bytes)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._errors: collections.Counter[str] = collections.Counter()
        self._undrained: collections.Counter[str] = collections.Counter()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"journal-{name}")
        self._last_warning = 0.0

    # --- the shipper's side ----------------------------------------------------------

    def start(self) -> JournalSource:
        self._thread.start()
        return self

    def read(self, max_entries: int = 1000) -> list[JournalEntry]:
        """Up to ``max_entries`` entries in journal order, without waiting."""
        entries = self._buffer.take(max_entries)
        if entries:
            self._handed_out = entries[-1].cursor
        return entries

    @property
    def last_cursor(self) -> str | None:
        """The cursor of the last entry handed out by :meth:`read` (or the starting
        cursor): save it once Kafka acknowledged every entry up to it."""
        return self._handed_out

    @property
    def pid(self) -> int | None:
        """journalctl's process id while it runs."""
        with self._lock:
            return None if self._process is None else self._process.pid

    @property
    def errors(self) -> dict[str, int]:
        """Counts since start by type: malformed_entry, oversized_entry, skipped
        (no MESSAGE), journalctl_exit, journalctl_start."""
        with self._lock:
            return dict(self._errors)

    def drain_errors(self) -> dict[str, int]:
        """The counts of :attr:`errors` since the previous call (for a counter)."""
        with self._lock:
            drained, self._undrained = dict(self._undrained), collections.Counter()
            return drained

    def buffered(self) -> int:
        """Entries read from journalctl and not handed out yet."""
        return len(self._buffer)

    def close(self, timeout: float = 5.0) -> None:
        """Stops journalctl and the reader thread; entries not read are dropped (they
        come again after the saved cursor)."""
        self._stop.set()
        self._terminate()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- the reader thread -----------------------------------------------------------

    def _count(self, kind: str, amount: int = 1) -> None:
        with self._lock:
            self._errors[kind] += amount
            self._undrained[kind] += amount

    def _terminate(self) -> None:
        with self._lock:
            process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(2)
        except subprocess.TimeoutExpired:
            process.kill()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            command = journalctl_command(self.config, self._resume, resuming=self._resuming)
            try:
                if _ORPHAN_GUARD and shutil.which(command[0]) is None:  # setpriv would start
                    raise FileNotFoundError(f"No such file or directory: {command[0]!r}")
                process = subprocess.Popen(
                    [*_ORPHAN_GUARD, *command],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            except OSError as exc:
                self._count("journalctl_start")
                read, stderr, started = 0, [f"{type(exc).__name__}: {exc}"], time.monotonic()
            else:
                with self._lock:
                    self._process = process
                if self._stop.is_set():  # closed while starting
                    self._terminate()
                started = time.monotonic()
                stderr_lines: collections.deque[str] = collections.deque(maxlen=10)
                drain = threading.Thread(
                    target=_drain,
                    args=(process.stderr, stderr_lines),
                    daemon=True,
                    name=f"journal-{self.name}-stderr",
                )
                drain.start()
                assert process.stdout is not None
                read = self._pump(process.stdout)
                if self._stop.is_set():
                    self._terminate()
                process.wait()
                drain.join(2)
                process.stdout.close()
                with self._lock:
                    self._process = None
                stderr = list(stderr_lines)
                if self._stop.is_set():
                    break
                self._count("journalctl_exit")
                if (
                    read == 0
                    and self._resume is not None
                    and any("cursor" in line.lower() for line in stderr)
                ):
                    log.error(
                        "journal %s: journalctl refused the cursor %s; reading from "
                        "max_age ago instead",
                        self.name,
                        self._resume,
                    )
                    self._resume = None
            if read or time.monotonic() - started >= HEALTHY_RUN:
                failures = 0
            delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2**failures) * random.uniform(1, 1.5)
            failures += 1
            log.warning(
                "journal %s: journalctl ended after %d entries (%s); restarting in %.1fs",
                self.name,
                read,
                " | ".join(stderr) or "no message",
                delay,
            )
            self._stop.wait(delay)

    def _pump(self, stdout: IO[bytes]) -> int:
        """Reads entries until EOF or stop; returns how many were buffered."""
        limit = self.config.max_entry_bytes
        buffered = 0
        while not self._stop.is_set():
            raw = stdout.readline(limit + 1)
            if not raw:
                break
            oversized = not raw.endswith(b"\n") and len(raw) > limit
            if oversized:
                cut = cut_oversized(raw, lambda: stdout.readline(1 << 16), limit)
                self._problem(
                    "oversized_entry",
                    f"an entry above {limit} bytes"
                    + (", its MESSAGE cut" if cut is not None else ", skipped"),
                )
                if cut is None:
                    continue
                raw = cut
            if not raw.strip():
                continue
            try:
                entry = parse_entry(raw, self.config, self.max_line_bytes)
            except MalformedEntry as exc:
                self._problem("malformed_entry", f"{exc}, skipped")
                continue
            if oversized and entry is not None:
                entry = dataclasses.replace(entry, truncated=True)
            cursor = _cursor_of(raw) if entry is None else entry.cursor
            if entry is None:
                self._count("skipped")
            elif not self._buffer.put(entry, self._stop):
                break
            else:
                buffered += 1
            if cursor is not None:
                self._resume, self._resuming = cursor, True
        return buffered

    def _problem(self, kind: str, detail: str) -> None:
        """Counts; logs at most once a minute so bad input never floods the log."""
        self._count(kind)
        now = time.monotonic()
        if now - self._last_warning >= 60:
            self._last_warning = now
            log.warning(
                "journal %s: %s (%s); %d so far",
                self.name,
                kind.replace("_", " "),
                detail,
                self.errors.get(kind, 0),
            )


def _cursor_of(raw: bytes) -> str | None:
    try:
        cursor = json.loads(raw).get("__CURSOR")
    except (ValueError, AttributeError, RecursionError):
        return None
    return cursor if isinstance(cursor, str) else None


def _drain(stream: IO[bytes] | None, tail: collections.deque[str]) -> None:
    """Keeps the last lines journalctl wrote to stderr (and never lets it block)."""
    if stream is None:
        return
    with stream:
        for line in stream:
            text = line.decode("utf-8", "replace").strip()
            if text:
                tail.append(text)
