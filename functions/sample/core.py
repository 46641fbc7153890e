"""Pure: which traces stay, and the requests cut down to them.

The probabilistic decision follows OpenTelemetry's consistent probability sampling: the
randomness of a trace is the lower 56 bits of its id (W3C trace context level 2 makes
them random), the rejection threshold of a ratio ``r`` is ``round((1 - r) * 2**56)``, and
a trace is kept when its randomness is at least the threshold. It is a pure function of
the id and the ratio: every replica and every retry agree, so does a sampler following
that specification (tracestate ``ot=th``) at the same ratio, and a trace kept at ratio
``r`` is kept at every larger ratio. (The older ``TraceIdRatioBased`` of the SDKs reads
other bits, so its decisions differ.)

The rules look at the whole batch: a trace with an error span (status ERROR) or a span
longer than the limit in any record of the batch is kept in every record of the batch.
Spans of one trace arriving in another batch are decided by their id alone, unless a rule
matches there too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ferryman.wire.otlp import is_error

from .config import SampleConfig

__all__ = ["RANDOMNESS_BITS", "Decision", "Sampler", "keep_spans", "randomness", "threshold"]

RANDOMNESS_BITS = 56
_RANGE = 1 << RANDOMNESS_BITS


def threshold(ratio: float) -> int:
    """The rejection threshold of ``ratio``: 0 keeps every trace, 2**56 none."""
    return min(_RANGE, max(0, round((1.0 - ratio) * _RANGE)))


def randomness(trace_id: bytes) -> int:
    """The lower 56 bits of a 16-byte trace id."""
    return int.from_bytes(trace_id[9:16], "big")


@dataclass(slots=True)
class Decision:
    """The fate of one request's spans: the trace ids kept, and the spans kept by reason
    (see :meth:`Sampler.reason`) and dropped."""

    keep: set[bytes] = field(default_factory=set)
    kept: Counter[str] = field(default_factory=Counter)
    dropped: int = 0

    @property
    def everything(self) -> bool:
        return self.dropped == 0

    @property
    def nothing(self) -> bool:
        return not self.keep


class Sampler:
    def __init__(self, config: SampleConfig) -> None:
        self.threshold = threshold(config.ratio)
        self.keep_errors = config.keep_errors
        self.slow_ns = (
            None if config.keep_slower_than_s is None else int(config.keep_slower_than_s * 1e9)
        )

    def sampled(self, trace_id: bytes) -> bool:
        """The probabilistic decision for ``trace_id``."""
        return randomness(trace_id) >= self.threshold

    def flagged(self, requests: Iterable[ExportTraceServiceRequest]) -> dict[bytes, str]:
        """Trace ids a rule keeps, with the rule (``error`` before ``slow``)."""
        found: dict[bytes, str] = {}
        if not self.keep_errors and self.slow_ns is None:
            return found
        slow = self.slow_ns
        for request in requests:
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        if self.keep_errors and is_error(span):
                            found[span.trace_id] = "error"
                        elif (
                            slow is not None
                            and span.end_time_unix_nano - span.start_time_unix_nano > slow
                            and span.trace_id not in found
                        ):
                            found[span.trace_id] = "slow"
        return found

    def reason(self, trace_id: bytes, flagged: dict[bytes, str]) -> str | None:
        """Why ``trace_id`` is kept (``ratio``, ``error``, ``slow``), None: dropped."""
        if self.sampled(trace_id):
            return "ratio"
        return flagged.get(trace_id)

    def decide(self, request: ExportTraceServiceRequest, flagged: dict[bytes, str]) -> Decision:
        """What becomes of each span of ``request``."""
        decision = Decision()
        reasons: dict[bytes, str | None] = {}
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    trace_id = span.trace_id
                    if trace_id in reasons:
                        reason = reasons[trace_id]
                    else:
                        reason = reasons[trace_id] = self.reason(trace_id, flagged)
                    if reason is None:
                        decision.dropped += 1
                    else:
                        decision.kept[reason] += 1
                        decision.keep.add(trace_id)
        return decision


def keep_spans(
    request: ExportTraceServiceRequest, kept: Container[bytes]
) -> ExportTraceServiceRequest:
    """``request`` with only the spans of the ``kept`` trace ids; scopes and resources
    left without spans are removed. ``request`` is changed in place and returned."""
    for rs_index in range(len(request.resource_spans) - 1, -1, -1):
        rs = request.resource_spans[rs_index]
        for ss_index in range(len(rs.scope_spans) - 1, -1, -1):
            ss = rs.scope_spans[ss_index]
            for span_index in range(len(ss.spans) - 1, -1, -1):
                if ss.spans[span_index].trace_id not in kept:
                    del ss.spans[span_index]
            if not ss.spans:
                del rs.scope_spans[ss_index]
        if not rs.scope_spans:
            del request.resource_spans[rs_index]
    return request
