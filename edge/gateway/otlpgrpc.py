"""OTLP/gRPC in the gateway: ``TraceService/Export`` with the tenant's credential in
the ``authorization`` metadata, through the same checks and Intake as OTLP/HTTP.

With ``tls:`` set, the listener serves TLS with the same certificate as HTTPS; it does
not ask for client certificates (grpcio either requires one of every client or asks
none), so a tenant known only by ``client_subject`` writes OTLP over HTTPS, not gRPC.

Codes (the OTLP specification's): UNAUTHENTICATED (unknown tenant, wrong credential),
PERMISSION_DENIED (a cluster the tenant may not claim), INVALID_ARGUMENT (bad body,
label limits), RESOURCE_EXHAUSTED (message size), UNAVAILABLE with ``RetryInfo``
(rate limit, Kafka away or slow: the exporter retries).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from edge.traces.answers import response, retry_info, status
from ferryman.wire.otlp import OtlpDecodeError, decode_protobuf

from . import protocols as p

if TYPE_CHECKING:
    from .server import Gateway

__all__ = ["GrpcListener"]

SERVICE: str = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
}


@dataclass(frozen=True)
class _Raw:
    body: bytes


class GrpcListener:
    """Serves OTLP/gRPC on ``listen`` until :meth:`close`."""

    def __init__(
        self,
        listen: str,
        gateway: Gateway,
        max_request_bytes: int,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.gateway = gateway
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=gateway.config.max_in_flight_requests + 8),
            options=[
                ("grpc.max_receive_message_length", max_request_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        handler = grpc.unary_unary_rpc_method_handler(
            self.export,
            request_deserializer=_Raw,
            response_serializer=ExportTraceServiceResponse.SerializeToString,
        )
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),)
        )
        try:
            if credentials is None:
                self.port = self.server.add_insecure_port(listen)
            else:
                self.port = self.server.add_secure_port(listen, credentials)
        except RuntimeError:  # grpcio's word for a bind that failed
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {listen} for OTLP/gRPC (address in use?)")

    def start(self) -> None:
        self.server.start()

    def close(self, grace: float = 5.0) -> None:
        self.server.stop(grace).wait()

    def export(self, request: _Raw, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        gateway = self.gateway
        tenant_name = ""
        try:
            given = dict(context.invocation_metadata()).get("authorization")
            tenant = gateway.auth.tenant(given if isinstance(given, str) else None)
            if tenant is None:
                raise p.Refusal(401, "unknown tenant or wrong credential", "unauthenticated")
            tenant_name = tenant.name
            if len(request.body) > tenant.limits.max_body_bytes:
                raise p.Refusal(413, "request larger than max_body_bytes", "body_size")
            try:
                decoded = decode_protobuf(request.body)
            except OtlpDecodeError as exc:
                raise p.Refusal(400, str(exc)[:500], "decode") from None
            accepted = gateway.export_spans(tenant, decoded, "grpc")
        except p.Refusal as refusal:
            gateway.metrics.refused.labels(endpoint="otlp_traces_grpc", reason=refusal.reason).inc()
            code = _CODES.get(refusal.status, grpc.StatusCode.INVALID_ARGUMENT)
            gateway.metrics.requests.labels(
                endpoint="otlp_traces_grpc", tenant=tenant_name, status=code.name
            ).inc()
            number: int = code.value[0]
            trailers: list[tuple[str, str | bytes]] = [
                (
                    "grpc-status-details-bin",
                    status(number, str(refusal), refusal.retry_after).SerializeToString(),
                )
            ]
            context.set_trailing_metadata(tuple(trailers))
            if refusal.retry_after is not None:
                trailers.append(
                    (
                        "google.rpc.retryinfo-bin",
                        retry_info(refusal.retry_after).SerializeToString(),
                    )
                )
                context.set_trailing_metadata(tuple(trailers))
            context.abort(code, str(refusal))
        gateway.metrics.requests.labels(
            endpoint="otlp_traces_grpc", tenant=tenant_name, status="OK"
        ).inc()
        return response(accepted)
