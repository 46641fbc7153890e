"""``prometheus_remote_write``: Kafka → Prometheus / Cortex / Mimir / Thanos / VictoriaMetrics."""

from __future__ import annotations

import httpx
from pydantic import BaseModel

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

    def handle(self, batch: Batch) -> Delivered:
        dead: list[tuple[Record, str]] = []
        retry: list[Record] = []
        delay: float | None = None
        for index, record in enumerate(batch):
            try:
                headers = request_headers(self.config, record)
            except UnsupportedRecord as exc:
                dead.append((record, str(exc)))
                continue
            try:
                response = self.client.post(self.config.url, content=record.value,
                                            headers=headers)
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
