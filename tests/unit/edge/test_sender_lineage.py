"""The metrics sender's lineage context is derived from a message's bytes, so a batch
read again from the disk buffer (after an outage or a restart) keeps it."""

from __future__ import annotations

import os

from edge.sender import entry_context
from ferryman.lineage import make_traceparent, parse_traceparent, sampled


def test_the_context_is_the_messages_own() -> None:
    payload = os.urandom(1024)
    first, again = entry_context(payload, 0.0), entry_context(bytes(payload), 0.0)
    assert first == again
    assert entry_context(payload + b"\0", 0.0).trace_id != first.trace_id
    assert len(first.trace_id) == 16 and len(first.span_id) == 8
    assert parse_traceparent(make_traceparent(first)) == first


def test_sampling_is_by_the_ratio_unless_producing_failed() -> None:
    payloads = [os.urandom(64) for _ in range(2000)]
    contexts = [entry_context(p, 0.25) for p in payloads]
    assert all(c.sampled == sampled(c.trace_id, 0.25) for c in contexts)
    assert 300 < sum(c.sampled for c in contexts) < 700
    assert all(entry_context(p, 0.0, errored=True).sampled for p in payloads[:10])
    assert not any(entry_context(p, 0.0).sampled for p in payloads)
