"""A journal entry too big to read whole: keep it, with its MESSAGE cut.

journalctl writes an entry as one JSON line. When the line passes
``max_entry_bytes`` the reader has only its head in memory; what is big is almost
always ``MESSAGE``. :func:`cut_oversized` then keeps the head up to MESSAGE, the
start of MESSAGE with the truncation marker, and every field after MESSAGE (the
unit, the PID... often come after it), streaming past the middle of the line
without holding it. When something else is what is big (a binary MESSAGE, another
field) it gives up, having read the line to its end, and the entry is skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from .tailer import TRUNCATION_MARKER

__all__ = ["cut_oversized"]

_KEY = re.compile(rb'"MESSAGE"\s*:\s*"')
_MARKER = json.dumps(TRUNCATION_MARKER).encode()[1:-1]


def cut_oversized(head: bytes, more: Callable[[], bytes], limit: int) -> bytes | None:
    """The JSON line of an entry whose line is longer than ``limit`` bytes, with
    MESSAGE cut so that it fits; None when MESSAGE is not what is long. ``head`` is
    the first ``limit + 1`` bytes (no newline among them); ``more()`` returns the next
    bytes of the line (ending at its newline; b"" at the end of input). Always reads
    the line to its end."""
    key = _KEY.search(head)
    if key is None or _string_end(head, key.end(), 0)[0] >= 0:
        _skip_rest(head, more)
        return None
    start = key.end()
    value = head[start:]
    carry = _trailing_backslashes(value, 0)
    tail = b""
    while True:
        chunk = more()
        if not chunk:
            return None  # the line ended inside MESSAGE: not an entry
        end, carry = _string_end(chunk, 0, carry)
        if end >= 0:
            tail = chunk[end:]
            break
    while not tail.endswith(b"\n"):  # the fields after MESSAGE
        chunk = more()
        if not chunk:
            break
        tail += chunk
        if len(tail) > limit:
            _skip_rest(tail, more)
            return None
    room = max(0, limit - start - len(_MARKER) - len(tail))
    return head[:start] + _json_prefix(value[:room]) + _MARKER + tail


def _string_end(data: bytes, pos: int, carry: int) -> tuple[int, int]:
    """Index in ``data`` of the quote that ends a JSON string begun before ``pos``
    (``carry`` backslashes just before ``pos``), or -1, and then the count of
    backslashes at the end of ``data``."""
    while (quote := data.find(b'"', pos)) >= 0:
        backslashes = _trailing_backslashes(data[pos:quote], carry)
        if backslashes % 2 == 0:
            return quote, 0
        pos, carry = quote + 1, 0
    return -1, _trailing_backslashes(data[pos:], carry)


def _trailing_backslashes(data: bytes, carry: int) -> int:
    stripped = len(data) - len(data.rstrip(b"\\"))
    return stripped + carry if stripped == len(data) else stripped


def _json_prefix(raw: bytes) -> bytes:
    """The longest prefix of ``raw`` (the inside of a JSON string cut anywhere) that
    is whole: no escape or UTF-8 character broken at its end."""
    for cut in range(len(raw), max(-1, len(raw) - 12), -1):
        try:
            json.loads(b'"' + raw[:cut] + b'"')
        except ValueError:
            continue
        return raw[:cut]
    return b""


def _skip_rest(data: bytes, more: Callable[[], bytes]) -> None:
    while data and not data.endswith(b"\n"):
        data = more()
