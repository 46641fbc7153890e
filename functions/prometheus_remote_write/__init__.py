"""``prometheus_remote_write``: Kafka → Prometheus / Cortex / Mimir / Thanos / VictoriaMetrics."""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from ferryman.prom.relabel import compile_rules
from ferryman.prom.rewrite import Rewriter
from ferryman.wire.protobuf import DecodeError
from ferryman.wire.remote_write import snappy_compress, snappy_decompress
from workers.function import Context, FunctionSpec
from workers.records import Batch, Delivered, Record

from .classify import classify
from .config import RemoteWriteConfig
from .encode import UnsupportedRecord, request_headers
from .send import make_client

__all__ = ["SPEC"]


class RemoteWriteSink:
    def __init__(self, config: RemoteWriteConfig, context: Context) -> None:
        self.config = config
        self.client = make_client(config, context)
        self.rewriter = (Rewriter(compile_rules(config.metric_relabel_configs))
                         if config.metric_relabel_configs else None)

    def _body(self, record: Record) -> bytes | None:
        """The request body: the payload as is, or relabeled (None: nothing left)."""
        if self.rewriter is None:
            return record.value
        result = self.rewriter.rewrite(snappy_decompress(record.value))
        return snappy_compress(result.payload) if result.payload else None

    def handle(self, batch: Batch) -> Delivered:
        dead: list[tuple[Record, str]] = []
        retry: list[Record] = []
        delay: float | None = None
        for index, record in enumerate(batch):
            try:
                headers = request_headers(self.config, record)
                body = self._body(record)
            except (UnsupportedRecord, DecodeError) as exc:
                dead.append((record, str(exc)))
                continue
            if body is None:
                continue  # every series relabeled away
            try:
                response = self.client.post(self.config.url, content=body, headers=headers)
            except httpx.TransportError:
                # The receiver is unreachable: everything from here on waits for it.
                retry.extend(batch[index:])
                break
            outcome = classify(response.status_code, response.headers, response.text)
            if outcome.kind == "permanent":
                dead.append((record, outcome.reason))
            elif outcome.kind == "retry":
                retry.extend(batch[index:])
                delay = outcome.delay
                break
        return Delivered(dead=dead, retry=retry, retry_delay=delay)

    def close(self) -> None:
        self.client.close()


def _create(config: BaseModel, context: Context) -> RemoteWriteSink:
    assert isinstance(config, RemoteWriteConfig)
    return RemoteWriteSink(config, context)


SPEC = FunctionSpec(
    name="prometheus_remote_write",
    kind="sink",
    summary="Remote-write metrics to Prometheus, Cortex, Mimir, Thanos or VictoriaMetrics.",
    config_model=RemoteWriteConfig,
    create=_create,
    example="""\
url: http://127.0.0.1:9090/api/v1/write
tenant: null
tenant_from_header: true
timeout_s: 30
""",
)
