"""A consumed batch's lineage: what the runtime did with it, as spans (see
:mod:`ferryman.lineage` for the header, sampling and export).

The runtime notes, per batch, each delivery attempt (the function's ``handle``, which
decodes and sends: decoding is not timed apart), the dead-letter and retry-lane
hand-offs and the commit. When the batch is finished (or handed back), it is recorded
if one of its records' ``traceparent`` is sampled or if the batch hit an error (an
attempt failed or handed records back, records were dead-lettered or handed to the
lane, the batch was handed back uncommitted). Records carrying the ``ferryman.lineage``
header do not count, and a batch made only of them is never recorded.

The span tree (OpenTelemetry messaging conventions: a batch's consumer span *links* to
the producers' spans, it is not their child)::

    process <topic>   CONSUMER, linked to the producer span(s) of its trace
    ├── deliver       one per attempt: records taken, refused, dead; ERROR when it failed
    ├── dead-letter   the hand-off to the dead-letter topic (ERROR: records lost to it)
    ├── retry-lane    the hand-off to the retry lane
    └── commit

It is written once in the trace of each sampled producer batch it contains (at most
:data:`MAX_TREES`), so a search for that batch's trace id shows the edge's span and
the worker's together; each such root links to the producer spans of its own trace.
A batch recorded for an error alone gets one tree in a new trace, whose root links to
its records' contexts (at most :data:`MAX_LINKS`). A batch whose records carry no
``traceparent`` at all (produced by something other than the edge) is recorded so too,
with the worker's own ``lineage.sample_ratio``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ferryman import headers as h
from ferryman.lineage import (
    Attribute,
    Kind,
    LineageExporter,
    Link,
    Span,
    SpanContext,
    flagged_sampled,
    is_lineage,
    new_context,
    new_span_id,
    parse_traceparent,
)
from ferryman.wire.otlp import CLUSTER_ATTRIBUTE

from .records import Delivered, Record

__all__ = ["MAX_LINKS", "MAX_STEPS", "MAX_TREES", "BatchTrace"]

#: Trees written per batch at most (one per sampled producer trace).
MAX_TREES = 64
#: Links of one root span at most.
MAX_LINKS = 128
#: Children of one root at most: past it, the latest step replaces the one before (a
#: batch retried through a long outage keeps its first attempts and its last step).
MAX_STEPS = 100


@dataclass(slots=True)
class _Step:
    name: str
    start_ns: int
    end_ns: int
    kind: Kind = "internal"
    attributes: dict[str, Attribute] = field(default_factory=dict)
    error: str | None = None


class BatchTrace:
    """The steps of one batch, recorded to ``exporter`` by :meth:`finish`."""

    def __init__(
        self,
        exporter: LineageExporter,
        *,
        topic: str,
        group: str,
        function: str,
        dead_letter_topic: str,
    ) -> None:
        self.exporter = exporter
        self.topic = topic
        self.group = group
        self.function = function
        self.dead_letter_topic = dead_letter_topic
        self.started_ns = time.time_ns()
        self.steps: list[_Step] = []
        self.error: str | None = None
        self.attempts = 0
        self.omitted = 0

    def _add(self, step: _Step) -> None:
        if len(self.steps) < MAX_STEPS:
            self.steps.append(step)
        else:
            self.steps[-1] = step
            self.omitted += 1

    # ---- what the runtime tells -------------------------------------------------------

    def delivered(
        self,
        start_ns: int,
        pending: int,
        result: Delivered | None = None,
        exc: BaseException | None = None,
    ) -> None:
        """One call of the function on ``pending`` records: its result or exception."""
        self.attempts += 1
        attributes: dict[str, Attribute] = {
            "ferryman.attempt": self.attempts,
            "ferryman.records": pending,
        }
        error = None
        if exc is not None:
            error = f"{type(exc).__name__}: {exc}"
        elif result is not None:
            taken = pending - len(result.retry) - len(result.dead)
            attributes["ferryman.records.delivered"] = taken
            attributes["ferryman.records.retry"] = len(result.retry)
            attributes["ferryman.records.dead"] = len(result.dead)
            if result.retry:
                error = result.retry_reason or f"{len(result.retry)} records refused for now"
            elif result.dead:
                error = result.dead[0][1]
        self._add(_Step("deliver", start_ns, time.time_ns(), "client", attributes, error))

    def dead_lettered(self, start_ns: int, dead: Sequence[tuple[Record, str]]) -> None:
        reason = dead[0][1] if dead else ""
        self.error = self.error or f"{len(dead)} records dead-lettered: {reason}"
        self._add(
            _Step(
                f"dead-letter {self.dead_letter_topic}",
                start_ns,
                time.time_ns(),
                "producer",
                {
                    "messaging.destination.name": self.dead_letter_topic,
                    "ferryman.records": len(dead),
                },
                reason or "dead-lettered",
            )
        )

    def handed_to_lane(self, start_ns: int, offered: int, left: int) -> None:
        self.error = self.error or f"{offered - left} records handed to the retry lane"
        self._add(
            _Step(
                "retry-lane",
                start_ns,
                time.time_ns(),
                "producer",
                {"ferryman.records": offered - left, "ferryman.records.kept": left},
            )
        )

    def committed(self, start_ns: int, error: str | None = None) -> None:
        self._add(_Step("commit", start_ns, time.time_ns(), error=error))

    def handed_back(self, reason: str) -> None:
        self.error = f"handed back uncommitted after {reason}"

    # ---- the spans --------------------------------------------------------------------

    def finish(self, batch: Sequence[Record]) -> list[Span]:
        """Record the batch's spans (when it is to be recorded) and return them."""
        records = [(r, r.header(h.TRACEPARENT)) for r in batch if not is_lineage(r.headers)]
        if not records:
            return []
        failed = self.error is not None or any(s.error is not None for s in self.steps)
        by_trace: dict[bytes, list[tuple[Record, SpanContext]]] = {}
        for record, value in records:
            if flagged_sampled(value) and (context := parse_traceparent(value)) is not None:
                by_trace.setdefault(context.trace_id, []).append((record, context))
        spans: list[Span] = []
        for trace_id, linked in list(by_trace.items())[:MAX_TREES]:
            spans += self._tree(trace_id, linked, len(records))
        if not by_trace:
            untraced = all(value is None for _, value in records)
            if failed or (untraced and random.random() < self.exporter.ratio):
                linked = [
                    (r, c)
                    for r, v in records[: MAX_LINKS * 2]
                    if (c := parse_traceparent(v)) is not None
                ]
                spans += self._tree(new_context(1.0).trace_id, linked, len(records))
        if spans:
            self.exporter.record(spans)
        return spans

    def _tree(
        self, trace_id: bytes, linked: list[tuple[Record, SpanContext]], count: int
    ) -> list[Span]:
        end_ns = time.time_ns()
        root_id = new_span_id()
        attributes: dict[str, Attribute] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": self.topic,
            "messaging.consumer.group.name": self.group,
            "messaging.batch.message_count": count,
            "ferryman.function": self.function,
            "ferryman.attempts": self.attempts,
        }
        if self.omitted:
            attributes["ferryman.steps.omitted"] = self.omitted
        if linked:
            first = linked[0][0]
            attributes["messaging.destination.partition.id"] = str(first.partition)
            attributes["messaging.kafka.offset"] = first.offset
            cluster = first.header(h.CLUSTER)
            if cluster:  # the worker runs centrally: the cluster is the batch's
                attributes[CLUSTER_ATTRIBUTE] = cluster.decode("utf-8", "replace")
        root = Span(
            name=f"process {self.topic}",
            trace_id=trace_id,
            span_id=root_id,
            start_ns=self.started_ns,
            end_ns=end_ns,
            kind="consumer",
            attributes=attributes,
            links=[
                Link(
                    context,
                    {
                        "messaging.destination.partition.id": str(record.partition),
                        "messaging.kafka.offset": record.offset,
                    },
                )
                for record, context in linked[:MAX_LINKS]
            ],
            error=self.error,
        )
        children = [
            Span(
                name=step.name,
                trace_id=trace_id,
                span_id=new_span_id(),
                parent_span_id=root_id,
                start_ns=step.start_ns,
                end_ns=step.end_ns,
                kind=step.kind,
                attributes=dict(step.attributes),
                error=step.error,
            )
            for step in self.steps
        ]
        return [root, *children]
