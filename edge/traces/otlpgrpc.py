"""OTLP/gRPC: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

The servicer is the published package's ``TraceServiceServicer``; its handler is
registered here with a request deserializer that keeps the raw bytes, because
grpcio answers INTERNAL for a body its deserializer refuses, and the OTLP
specification asks for INVALID_ARGUMENT (never retried). Answers:

- OK and an ``ExportTraceServiceResponse`` once Kafka acknowledged every span;
- INVALID_ARGUMENT for a body that does not decode;
- UNAUTHENTICATED without the configured bearer token (``authorization`` metadata);
- RESOURCE_EXHAUSTED from grpcio itself for a message above ``max_request_bytes``
  (``grpc.max_receive_message_length``): no RetryInfo, so clients do not retry it;
- UNAVAILABLE with a ``google.rpc.RetryInfo`` when Kafka is away or slow or too many
  requests wait: in the ``grpc-status-details-bin`` trailer (a ``google.rpc.Status``)
  and in ``google.rpc.retryinfo-bin``, which OpenTelemetry's SDK exporters read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from ferryman.wire.otlp import OtlpDecodeError, decode_protobuf

from .answers import response, retry_info, status
from .config import token_matches
from .intake import BusyError, Intake

__all__ = ["SERVICE", "GrpcListener"]

#: the full name of the OTLP trace service, from the published descriptor
SERVICE: str = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
_TRANSPORT = "grpc"


@dataclass(frozen=True)
class _Raw:
    body: bytes


class _Aborted(Exception):
    pass


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, listener: GrpcListener) -> None:
        self.listener = listener

    def Export(self, request: _Raw, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        started = time.monotonic()
        intake = self.listener.intake
        code = grpc.StatusCode.OK
        try:
            return self._export(request, context)
        except _Aborted as aborted:
            code = aborted.args[0]
            raise
        except Exception:
            code = grpc.StatusCode.UNKNOWN
            intake.metrics.errors.labels(error_type="unexpected", stage="grpc").inc()
            raise
        finally:
            intake.metrics.requests.labels(transport=_TRANSPORT, status=code.name).inc()
            intake.metrics.latency.labels(transport=_TRANSPORT).observe(time.monotonic() - started)

    def _export(self, request: _Raw, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        listener = self.listener
        intake = listener.intake
        token = listener.token
        if token is not None:
            given = dict(context.invocation_metadata()).get("authorization")
            if not token_matches(token, given if isinstance(given, str) else None):
                intake.metrics.errors.labels(error_type="unauthenticated", stage="grpc").inc()
                _abort(context, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            decoded = decode_protobuf(request.body)
        except OtlpDecodeError as exc:
            intake.undecodable(_TRANSPORT, _peer_ip(context), str(exc)[:200])
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc)[:500])
        try:
            accepted = intake.export(decoded, _TRANSPORT, listener.attributes_of(_peer_ip(context)))
        except BusyError as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc), exc.retry_after)
        return response(accepted)


def _abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    retry_after: float | None = None,
) -> None:
    number: int = code.value[0]
    trailers: list[tuple[str, str | bytes]] = [
        ("grpc-status-details-bin", status(number, message, retry_after).SerializeToString())
    ]
    if retry_after is not None:
        trailers.append(("google.rpc.retryinfo-bin", retry_info(retry_after).SerializeToString()))
    context.set_trailing_metadata(tuple(trailers))
    try:
        context.abort(code, message)
    except Exception:
        raise _Aborted(code) from None


def _peer_ip(context: grpc.ServicerContext) -> str:
    """``ipv4:10.0.0.7:51234`` → ``10.0.0.7``; ``ipv6:[::1]:5`` → ``::1``."""
    peer: str = context.peer()
    _, _, address = peer.partition(":")
    host = address.rpartition(":")[0]
    return host.strip("[]")


class GrpcListener:
    """Serves OTLP/gRPC on ``listen`` until :meth:`close`."""

    def __init__(
        self,
        listen: str,
        intake: Intake,
        *,
        credentials: grpc.ServerCredentials | None = None,
        token: bytes | None = None,
        attributes_of: Callable[[str], dict[str, str] | None] | None = None,
    ) -> None:
        self.intake = intake
        self.token = token
        self._attributes_of = attributes_of
        limits = intake.config.ferryman.limits
        self.server = grpc.server(
            # One thread per request waiting for Kafka, and a few to answer 503s fast.
            ThreadPoolExecutor(max_workers=limits.max_in_flight_requests + 8),
            options=[
                ("grpc.max_receive_message_length", limits.max_request_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        handler = grpc.unary_unary_rpc_method_handler(
            _Servicer(self).Export,
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

    def attributes_of(self, peer: str) -> dict[str, str] | None:
        return self._attributes_of(peer) if self._attributes_of is not None else None

    def start(self) -> None:
        self.server.start()

    def close(self, grace: float = 5.0) -> None:
        self.server.stop(grace).wait()
