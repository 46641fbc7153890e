"""``loki``: Kafka → Grafana Loki (or VictoriaLogs, or any Loki push API receiver).

A batch is decoded record by record; each stream is held to Loki's limits (see
:mod:`.encode`), then the entries of the whole batch are grouped by tenant and label set and
pushed (protobuf, snappy) in requests of at most ``max_request_bytes``; a request may hold
entries of several records. What the handler guarantees when it returns:

* a record not listed as dead or retry had every entry it still holds after the limits
  pushed and acknowledged (2xx);
* a record that is not a Loki push message is dead-lettered with the decode error;
* a 400/413 answer to a multi-record request is narrowed down by pushing that request's
  records one by one; only the records still refused are dead-lettered, each with Loki's
  reason (out of order, too old, invalid labels...); other permanent answers (401, 403,
  404) dead-letter the request's records;
* on 429/5xx or when Loki is unreachable, the records of the failed request and of every
  request not sent yet are handed back for retry (with Retry-After, if any). Entries of
  those records that were pushed already are pushed again: Loki drops an entry equal in
  stream, time and line to a stored one, so the replay is idempotent there (VictoriaLogs
  stores it twice).

Counters, counted once a record is finished (delivered or dead-lettered) so retries do not
count twice: ``ferryman_lines_truncated_total{function,reason}``,
``ferryman_lines_dropped_total{function,reason}`` and
``ferryman_labels_truncated_total{function,reason}`` (streams whose labels were cut).
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from pydantic import BaseModel

from ferryman.wire.loki import Entry
from functions.common import deliver_chunks
from workers.function import Context, FunctionSpec
from workers.records import Batch, Delivered

from .classify import classify, data_at_fault
from .config import LokiConfig
from .encode import (
    Chunk,
    Labels,
    Limiter,
    Tally,
    UnsupportedRecord,
    chunk_streams,
    decode_record_columns,
    record_cluster,
    record_tenant,
    request_body,
    request_headers,
)
from .send import make_client, post

__all__ = ["SPEC"]

class LokiSink:
    def __init__(self, config: LokiConfig, context: Context) -> None:
        self.config = config
        self.limiter = Limiter(config)
        self.client = make_client(config, context)
        self.log = context.log
        self.function = context.function
        self.m_truncated = context.registry.counter(
            "ferryman_lines_truncated_total",
            "Log lines cut to fit the backend's limits, by reason.", ["function", "reason"])
        self.m_dropped = context.registry.counter(
            "ferryman_lines_dropped_total",
            "Log lines not sent because they break the backend's limits, by reason.",
            ["function", "reason"])
        self.m_labels = context.registry.counter(
            "ferryman_labels_truncated_total",
            "Streams whose labels were cut to fit the backend's limits, by reason.",
            ["function", "reason"])

    def handle(self, batch: Batch) -> Delivered:
        tallies = [Tally() for _ in batch]
        dead: dict[int, str] = {}
        items: list[tuple[int, str, Labels, Sequence[Entry]]] = []
        limiter = self.limiter
        for index, record in enumerate(batch):
            try:
                streams = decode_record_columns(record)
            except UnsupportedRecord as exc:
                dead[index] = str(exc)
                continue
            tenant = record_tenant(self.config, record)
            cluster = record_cluster(self.config, record)
            tally = tallies[index]
            for stream in streams:
                labels = limiter.labels(stream.labels, cluster, len(stream.entries), tally)
                if labels is None:
                    continue
                items.append((index, tenant, labels, limiter.entries(stream.entries, tally)))
        retry, delay = self._deliver(chunk_streams(items, self.config.max_request_bytes), dead)
        self._count(tallies, retry)
        return Delivered(dead=[(batch[i], reason) for i, reason in sorted(dead.items())],
                         retry=[batch[i] for i in sorted(retry)], retry_delay=delay)

    def _deliver(self, chunks: list[Chunk],
                 dead: dict[int, str]) -> tuple[set[int], float | None]:
        """Push ``chunks`` in order; fills ``dead``; returns the records to retry."""
        return deliver_chunks(
            chunks, self._post,
            classify=classify, data_at_fault=data_at_fault, dead=dead, backend="Loki",
            log=self.log)

    def _post(self, chunk: Chunk) -> httpx.Response:
        return post(self.client, self.config.push_url, request_body(chunk),
                    request_headers(self.config, chunk.tenant))

    def _count(self, tallies: list[Tally], retry: set[int]) -> None:
        for index, tally in enumerate(tallies):
            if index in retry:
                continue
            for reason, count in tally.lines_truncated.items():
                self.m_truncated.inc(count, self.function, reason)
            for reason, count in tally.lines_dropped.items():
                self.m_dropped.inc(count, self.function, reason)
            for reason, count in tally.labels_truncated.items():
                self.m_labels.inc(count, self.function, reason)

    def close(self) -> None:
        self.client.close()


def _create(config: BaseModel, context: Context) -> LokiSink:
    assert isinstance(config, LokiConfig)
    return LokiSink(config, context)


SPEC = FunctionSpec(
    name="loki",
    kind="sink",
    summary="Push logs to Grafana Loki or VictoriaLogs (Loki push API, protobuf + snappy).",
    config_model=LokiConfig,
    create=_create,
    example="""\
url: http://127.0.0.1:3100
push_path: /loki/api/v1/push
tenant: null
tenant_from_header: true
max_request_bytes: 1048576
max_line_bytes: 262144
on_long_line: truncate
max_label_names_per_series: 15
on_label_limit: truncate
timeout_s: 30
""",
)
