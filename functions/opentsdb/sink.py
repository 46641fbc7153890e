"""The ``opentsdb`` handler: decode → datapoints → chunks → put, record by record."""

from __future__ import annotations

import httpx

from ferryman import headers as h
from functions._chunks import deliver_chunks, delivered
from functions._records import UnsupportedRecord, decode_series
from workers.function import Context
from workers.records import Batch, Delivered

from .classify import blame, classify, data_at_fault
from .config import OpenTSDBConfig
from .encode import Chunk, DatapointEncoder, Tally, chunk
from .send import make_client, post

__all__ = ["OpenTSDBSink"]


class OpenTSDBSink:
    def __init__(self, config: OpenTSDBConfig, context: Context) -> None:
        self.config = config
        self.encoder = DatapointEncoder(config)
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
        self.m_tags_dropped = context.registry.counter(
            "ferryman_tags_dropped_total",
            "Tags left out of series over the backend's tag limit.", ["function"])

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        tallies = [Tally() for _ in batch]
        dead: dict[int, str] = {}
        datapoints: list[tuple[int, bytes]] = []
        for index, record in enumerate(batch):
            try:
                series = decode_series(record)
            except UnsupportedRecord as exc:
                dead[index] = str(exc)
                continue
            raw = record.header(h.CLUSTER)
            cluster = raw.decode("utf-8", "replace") if raw else None
            for one in series:
                datapoints.extend((index, unit) for unit in
                                  self.encoder.datapoints(one, cluster, tallies[index]))
        hand_back = deliver_chunks(
            chunk(datapoints, self.config.max_datapoints), self._post, classify=classify,
            data_at_fault=data_at_fault, blame=blame, dead=dead, backend="OpenTSDB",
            log=self.log)
        self._count(tallies, hand_back.retry)
        return delivered(batch, dead, hand_back)

    def _post(self, chunk: Chunk) -> httpx.Response:
        return post(self.client, self.config, chunk.body())

    def _count(self, tallies: list[Tally], retry: frozenset[int]) -> None:
        for index, tally in enumerate(tallies):
            if index in retry:
                continue
            for reason, count in tally.skipped.items():
                self.m_skipped.labels(function=self.function, reason=reason).inc(count)
            for what, count in tally.sanitized.items():
                self.m_sanitized.labels(function=self.function, what=what).inc(count)
            if tally.tags_dropped:
                self.m_tags_dropped.labels(function=self.function).inc(tally.tags_dropped)

    def close(self) -> None:
        self.client.close()
