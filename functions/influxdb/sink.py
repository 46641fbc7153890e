"""The ``influxdb`` handler: decode → lines → chunks → write, record by record."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from ferryman import headers as h
from functions._chunks import HandBack, deliver_chunks, delivered
from functions._records import UnsupportedRecord, decode_series
from workers.function import Context
from workers.records import Batch, Delivered

from .classify import classify, data_at_fault
from .config import InfluxDBConfig
from .encode import Chunk, LineEncoder, Tally, chunk, request_body, write_target
from .send import make_client, post

__all__ = ["InfluxDBSink"]


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

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        tallies = [Tally() for _ in batch]
        dead: dict[int, str] = {}
        lines: list[tuple[int, bytes]] = []
        for index, record in enumerate(batch):
            try:
                series = decode_series(record)
            except UnsupportedRecord as exc:
                dead[index] = str(exc)
                continue
            raw = record.header(h.CLUSTER)
            cluster = raw.decode("utf-8", "replace") if raw else None
            for one in series:
                lines.extend((index, line)
                             for line in self.encoder.lines(one, cluster, tallies[index]))
        chunks = chunk(lines, self.config.max_lines, self.config.max_bytes)
        hand_back = self._deliver(chunks, dead)
        self._count(tallies, hand_back.retry)
        return delivered(batch, dead, hand_back)

    def _deliver(self, chunks: Sequence[Chunk], dead: dict[int, str]) -> HandBack:
        """Send ``chunks`` in order; fills ``dead``; returns the records to retry."""
        return deliver_chunks(chunks, self._post, classify=classify,
                              data_at_fault=data_at_fault, dead=dead, backend="InfluxDB",
                              log=self.log)

    def _post(self, chunk: Chunk) -> httpx.Response:
        return post(self.client, self.target, request_body(chunk, self.config.gzip))

    def _count(self, tallies: list[Tally], retry: frozenset[int]) -> None:
        for index, tally in enumerate(tallies):
            if index in retry:
                continue
            for reason, count in tally.skipped.items():
                self.m_skipped.labels(function=self.function, reason=reason).inc(count)
            for what, count in tally.sanitized.items():
                self.m_sanitized.labels(function=self.function, what=what).inc(count)

    def close(self) -> None:
        self.client.close()
