"""``influxdb``: Kafka → InfluxDB 1.x / 2.x (or VictoriaMetrics) in line protocol.

A batch is decoded record by record, turned into lines (see :mod:`.encode` for the
mapping and escaping rules) and written in chunks of ``max_lines`` / ``max_bytes``; a
chunk may hold lines of several records. What the handler guarantees when it returns:

* a record not listed as dead or retry had every line written and acknowledged (2xx);
* a record that is not a remote-write message is dead-lettered with the decode error;
* a refusal of the data (400 partial write, 413, 422) of a multi-record chunk is narrowed
  down by sending that chunk's records one by one; only the records still refused are
  dead-lettered, each with InfluxDB's reason (see :mod:`.classify`); other permanent
  answers (401, 403, 404 database not found) dead-letter the chunk's records;
* on 429/5xx or when InfluxDB is unreachable, the records of the failed chunk and of every
  chunk not sent yet are handed back for retry (with Retry-After, if any). Lines of those
  records that were written already are written again: InfluxDB overwrites a point with
  the same measurement, tags and timestamp, so the replay is idempotent.

Counters: ``ferryman_samples_skipped_total{function,reason}`` and
``ferryman_names_sanitized_total{function,what}``, counted once a record is finished
(delivered or dead-lettered), so retries do not count twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from pydantic import BaseModel

from ferryman import headers as h
from functions.common import deliver_chunks
from workers.function import Context, FunctionSpec
from workers.records import Batch, Delivered

from .classify import classify, data_at_fault
from .config import InfluxDBConfig
from .encode import (
    Chunk,
    LineEncoder,
    Tally,
    UnsupportedRecord,
    chunk,
    decode_record,
    request_body,
    write_target,
)
from .send import make_client, post

__all__ = ["SPEC"]


class InfluxDBSink:
    def __init__(self, config: InfluxDBConfig, context: Context) -> None:
        self.config = config
        self.encoder = LineEncoder(config)
        self.target = write_target(config)
        self.client = make_client(config, context)
        self.log = context.log
        self.function = context.function
        self.m_skipped = context.registry.counter(
            "ferryman_samples_skipped_total",
            "Samples not written because the backend cannot store them, by reason.",
            ["function", "reason"])
        self.m_sanitized = context.registry.counter(
            "ferryman_names_sanitized_total",
            "Names and tag values rewritten to fit the backend, by what.",
            ["function", "what"])

    def handle(self, batch: Batch) -> Delivered:
        tallies = [Tally() for _ in batch]
        dead: dict[int, str] = {}
        lines: list[tuple[int, bytes]] = []
        for index, record in enumerate(batch):
            try:
                series = decode_record(record)
            except UnsupportedRecord as exc:
                dead[index] = str(exc)
                continue
            raw = record.header(h.CLUSTER)
            cluster = raw.decode("utf-8", "replace") if raw else None
            for one in series:
                lines.extend((index, line)
                             for line in self.encoder.lines(one, cluster, tallies[index]))
        chunks = chunk(lines, self.config.max_lines, self.config.max_bytes)
        retry, delay = self._deliver(chunks, dead)
        self._count(tallies, retry)
        return Delivered(dead=[(batch[i], reason) for i, reason in sorted(dead.items())],
                         retry=[batch[i] for i in sorted(retry)], retry_delay=delay)

    def _deliver(self, chunks: Sequence[Chunk],
                 dead: dict[int, str]) -> tuple[set[int], float | None]:
        """Send ``chunks`` in order; fills ``dead``; returns the records to retry."""
        return deliver_chunks(
            chunks, self._post,
            classify=classify, data_at_fault=data_at_fault, dead=dead, backend="InfluxDB",
            log=self.log)

    def _post(self, chunk: Chunk) -> httpx.Response:
        return post(self.client, self.target, request_body(chunk, self.config.gzip))

    def _count(self, tallies: list[Tally], retry: set[int]) -> None:
        for index, tally in enumerate(tallies):
            if index in retry:
                continue
            for reason, count in tally.skipped.items():
                self.m_skipped.inc(count, self.function, reason)
            for what, count in tally.sanitized.items():
                self.m_sanitized.inc(count, self.function, what)

    def close(self) -> None:
        self.client.close()


def _create(config: BaseModel, context: Context) -> InfluxDBSink:
    assert isinstance(config, InfluxDBConfig)
    return InfluxDBSink(config, context)


SPEC = FunctionSpec(
    name="influxdb",
    kind="sink",
    summary="Write metrics to InfluxDB 1.x (/write) or 2.x (/api/v2/write) in line protocol.",
    config_model=InfluxDBConfig,
    create=_create,
    example="""\
url: http://127.0.0.1:8086
api: v1
database: metrics
retention_policy: null
precision: ns
measurement: null
field: value
max_lines: 5000
gzip: false
timeout_s: 30
""",
)
