"""The ``influxdb`` handler: decode → lines → chunks → write, record by record."""

from __future__ import annotations

import httpx

from functions._chunks import deliver_chunks, delivered
from functions._series import SeriesCounters, encode_records
from workers.function import Context
from workers.records import Batch, Delivered

from .classify import classify, data_at_fault
from .config import InfluxDBConfig
from .encode import Chunk, LineEncoder, chunk, request_body, write_target
from .send import make_client, post

__all__ = ["InfluxDBSink"]


class InfluxDBSink:
    def __init__(self, config: InfluxDBConfig, context: Context) -> None:
        self.config = config
        self.encoder = LineEncoder(config)
        self.target = write_target(config)
        self.client = make_client(config, context)
        self.log = context.log
        self.counters = SeriesCounters(context)

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        dead: dict[int, str] = {}
        lines, tallies = encode_records(batch, dead, self.encoder.lines)
        chunks = chunk(lines, self.config.max_lines, self.config.max_bytes)
        hand_back = deliver_chunks(
            chunks,
            self._post,
            classify=classify,
            data_at_fault=data_at_fault,
            dead=dead,
            backend="InfluxDB",
            log=self.log,
        )
        self.counters.count(tallies, hand_back.retry)
        return delivered(batch, dead, hand_back)

    def _post(self, chunk: Chunk) -> httpx.Response:
        return post(self.client, self.target, request_body(chunk, self.config.gzip))

    def close(self) -> None:
        self.client.close()
