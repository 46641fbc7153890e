"""The ``loki`` handler: decode → limit → group and cut → push, record by record."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from ferryman.wire.loki import Entry
from functions._chunks import HandBack, deliver_chunks, delivered
from functions._records import UnsupportedRecord, decode_stream_columns
from workers.function import Context
from workers.records import Batch, Delivered

from .classify import classify, data_at_fault
from .config import LokiConfig
from .encode import (
    Chunk,
    Labels,
    Limiter,
    Tally,
    chunk_streams,
    record_cluster,
    record_tenant,
    request_body,
    request_headers,
)
from .send import make_client, post

__all__ = ["LokiSink"]


class LokiSink:
    def __init__(self, config: LokiConfig, context: Context) -> None:
        self.config = config
        self.limiter = Limiter(config)
        self.client = make_client(config, context)
        self.log = context.log
        self.function = context.function
        self.m_truncated = context.registry.counter(
            "ferryman_lines_truncated_total",
            "Log lines cut to fit the backend's limits, by reason.",
            ["function", "reason"],
        )
        self.m_dropped = context.registry.counter(
            "ferryman_lines_dropped_total",
            "Log lines not sent because they break the backend's limits, by reason.",
            ["function", "reason"],
        )
        self.m_labels = context.registry.counter(
            "ferryman_labels_truncated_total",
            "Streams whose labels were cut to fit the backend's limits, by reason.",
            ["function", "reason"],
        )

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        tallies = [Tally() for _ in batch]
        dead: dict[int, str] = {}
        items: list[tuple[int, str, Labels, Sequence[Entry]]] = []
        limiter = self.limiter
        for index, record in enumerate(batch):
            try:
                streams = decode_stream_columns(record)
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
        hand_back = self._deliver(chunk_streams(items, self.config.max_request_bytes), dead)
        self._count(tallies, hand_back.retry)
        return delivered(batch, dead, hand_back)

    def _deliver(self, chunks: list[Chunk], dead: dict[int, str]) -> HandBack:
        """Push ``chunks`` in order; fills ``dead``; returns the records to retry."""
        return deliver_chunks(
            chunks,
            self._post,
            classify=classify,
            data_at_fault=data_at_fault,
            dead=dead,
            backend="Loki",
            log=self.log,
        )

    def _post(self, chunk: Chunk) -> httpx.Response:
        return post(
            self.client,
            self.config.push_url,
            request_body(chunk),
            request_headers(self.config, chunk.tenant),
        )

    def _count(self, tallies: list[Tally], retry: frozenset[int]) -> None:
        for index, tally in enumerate(tallies):
            if index in retry:
                continue
            for reason, count in tally.lines_truncated.items():
                self.m_truncated.labels(function=self.function, reason=reason).inc(count)
            for reason, count in tally.lines_dropped.items():
                self.m_dropped.labels(function=self.function, reason=reason).inc(count)
            for reason, count in tally.labels_truncated.items():
                self.m_labels.labels(function=self.function, reason=reason).inc(count)

    def close(self) -> None:
        self.client.close()
