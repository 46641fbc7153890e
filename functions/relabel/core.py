"""Pure: one metrics record → the record relabeled."""

from __future__ import annotations

from ferryman.prom.rewrite import Rewriter
from ferryman.wire.remote_write import snappy_compress
from functions._records import remote_write_payload, unreadable
from workers.records import Output, Record

__all__ = ["relabel"]


def relabel(rewriter: Rewriter, record: Record) -> tuple[Output | None, int]:
    """``record`` with ``rewriter``'s rules applied to every series (None when every
    series was dropped; same key and headers), and how many series were dropped.
    Raises UnsupportedRecord when the record is not a remote-write message."""
    payload = remote_write_payload(record)
    with unreadable("remote-write message"):
        result = rewriter.rewrite(payload)
    dropped = result.series_in - result.series_out
    if not result.payload:
        return None, dropped
    return Output(snappy_compress(result.payload), record.key, record.headers), dropped
