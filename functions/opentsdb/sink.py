"""The ``opentsdb`` handler: decode → datapoints → chunks → put, record by record."""

from __future__ import annotations

import httpx

from functions._chunks import deliver_chunks, delivered
from functions._series import SeriesCounters, encode_records
from workers.function import Context
from workers.records import Batch, Delivered

from .classify import blame, classify, data_at_fault
from .config import OpenTSDBConfig
from .encode import Chunk, DatapointEncoder, chunk
from .send import make_client, post

__all__ = ["OpenTSDBSink"]


class OpenTSDBSink:
    def __init__(self, config: OpenTSDBConfig, context: Context) -> None:
        self.config = config
        self.encoder = DatapointEncoder(config)
        self.client = make_client(config, context)
        self.log = context.log
        self.counters = SeriesCounters(context, tag_limit=True)

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        dead: dict[int, str] = {}
        datapoints, tallies = encode_records(batch, dead, self.encoder.datapoints)
        hand_back = deliver_chunks(
            chunk(datapoints, self.config.max_datapoints),
            self._post,
            classify=classify,
            data_at_fault=data_at_fault,
            blame=blame,
            dead=dead,
            backend="OpenTSDB",
            log=self.log,
        )
        self.counters.count(tallies, hand_back.retry)
        return delivered(batch, dead, hand_back)

    def _post(self, chunk: Chunk) -> httpx.Response:
        return post(self.client, self.config, chunk.body())

    def close(self) -> None:
        self.client.close()
