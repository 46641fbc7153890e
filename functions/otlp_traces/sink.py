"""The ``otlp_traces`` handler: decode (to check) → merge and cut → export, record by
record."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ferryman.wire.otlp import span_count
from functions._chunks import deliver_chunks, delivered
from functions._records import UnsupportedRecord
from functions._traces import decode_traces
from workers.function import Context
from workers.records import Batch, Delivered

from .classify import Answer, classify, data_at_fault, grpc_answer, http_answer, retry_after_header
from .config import OtlpTracesConfig
from .encode import Chunk, chunk, grpc_metadata, http_headers, record_tenant, request_body
from .send import GrpcExporter, make_client, post

__all__ = ["OtlpTracesSink"]

_BACKEND = "OTLP receiver"


@dataclass(slots=True)
class _Rejected:
    """What ``partial_success`` answers rejected during one batch."""

    spans: int = 0
    message: str = ""


class OtlpTracesSink:
    def __init__(self, config: OtlpTracesConfig, context: Context) -> None:
        self.config = config
        self.log = context.log
        self.function = context.function
        self.client = make_client(config, context) if config.protocol == "http" else None
        self.grpc = GrpcExporter(config) if config.protocol == "grpc" else None
        self.m_sent = context.registry.counter(
            "ferryman_spans_sent_total",
            "Spans the backend acknowledged (partial rejections included).",
            ["function"],
        )
        self.m_rejected = context.registry.counter(
            "ferryman_spans_rejected_total",
            "Spans an OTLP receiver acknowledged but rejected (partial_success); not retryable.",
            ["function"],
        )
        self.rejected = _Rejected()

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        dead: dict[int, str] = {}
        spans = [0] * len(batch)
        items: list[tuple[int, str, bytes]] = []
        for index, record in enumerate(batch):
            try:
                spans[index] = span_count(decode_traces(record))
            except UnsupportedRecord as exc:
                dead[index] = str(exc)
                continue
            if spans[index]:
                items.append((index, record_tenant(self.config, record), record.value))
        self.rejected = _Rejected()
        hand_back = deliver_chunks(
            chunk(items, self.config.max_request_bytes),
            self._export,
            classify=classify,
            data_at_fault=data_at_fault,
            dead=dead,
            backend=_BACKEND,
            log=self.log,
        )
        sent = sum(
            count
            for index, count in enumerate(spans)
            if index not in dead and index not in hand_back.retry
        )
        self.m_sent.labels(function=self.function).inc(sent)
        if self.rejected.spans:
            self.m_rejected.labels(function=self.function).inc(self.rejected.spans)
            self.log.warning(
                "the OTLP receiver rejected %d spans of this batch (partial success, "
                "not retryable): %s",
                self.rejected.spans,
                self.rejected.message or "no reason given",
            )
        return delivered(batch, dead, hand_back)

    def _export(self, chunk: Chunk) -> httpx.Response:
        """One export, its answer as an HTTP response for the delivery loop; raises
        httpx.TransportError when the OTLP/HTTP receiver cannot be reached."""
        if self.grpc is not None:
            answer = grpc_answer(
                *self.grpc.export(chunk.request(), grpc_metadata(self.config, chunk.tenant))
            )
        else:
            assert self.client is not None
            response = post(
                self.client,
                self.config.export_url,
                request_body(self.config, chunk),
                http_headers(self.config, chunk.tenant),
            )
            answer = http_answer(response.status_code, response.headers, response.content)
        return self._response(answer)

    def _response(self, answer: Answer) -> httpx.Response:
        if answer.rejected_spans:
            self.rejected.spans += answer.rejected_spans
            self.rejected.message = self.rejected.message or answer.rejected_message
        return httpx.Response(
            answer.status, headers=retry_after_header(answer.delay), text=answer.message
        )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.grpc is not None:
            self.grpc.close()
