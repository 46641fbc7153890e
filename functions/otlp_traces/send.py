"""Thin I/O: one OTLP/HTTP POST, or one OTLP/gRPC ``Export`` call.

The gRPC call sends the request's bytes as they are and returns the response's bytes
(no serializer either way): the sink never encodes a span again.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import httpx

from functions._http import make_client as _make_client
from workers.function import Context

from .config import OtlpTracesConfig
from .encode import CONTENT_TYPE

__all__ = ["GrpcExporter", "GrpcResult", "make_client", "post"]

_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#: The receiver's answer is small; a large one is not an OTLP answer.
_MAX_ANSWER_BYTES = 4 << 20
#: gRPC backs off reconnecting up to 120 s by default; after an outage of a minute the
#: next attempt could be half a minute away while the receiver is back. The runtime
#: already retries with its own backoff, so the channel tries again within 5 s.
_MAX_RECONNECT_BACKOFF_MS = 5000


def make_client(config: OtlpTracesConfig, context: Context) -> httpx.Client:
    return _make_client(config, context, {"Content-Type": CONTENT_TYPE})


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST ``body``; raises httpx.TransportError when the receiver cannot be reached."""
    return client.post(url, content=body, headers=headers)


GrpcResult = tuple[str, str, Sequence[tuple[str, str | bytes]], bytes | None]
"""(status code name, details, trailing metadata, response bytes on OK)."""


class GrpcExporter:
    """One channel to the receiver; :meth:`export` never raises for an RPC error."""

    def __init__(self, config: OtlpTracesConfig) -> None:
        options = [
            ("grpc.max_receive_message_length", _MAX_ANSWER_BYTES),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
            ("grpc.initial_reconnect_backoff_ms", 200),
        ]
        if config.grpc_tls:
            tls = config.tls
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls.ca_file.read_bytes() if tls.ca_file else None,
                private_key=tls.key_file.read_bytes() if tls.key_file else None,
                certificate_chain=tls.cert_file.read_bytes() if tls.cert_file else None,
            )
            self.channel = grpc.secure_channel(config.grpc_target, credentials, options)
        else:
            self.channel = grpc.insecure_channel(config.grpc_target, options)
        self.call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(_EXPORT)
        self.timeout = config.timeout_s
        gzip = config.compression == "gzip"
        self.compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression

    def export(self, request: bytes, metadata: Sequence[tuple[str, str]]) -> GrpcResult:
        try:
            response, call = self.call.with_call(
                request,
                timeout=self.timeout,
                metadata=tuple(metadata),
                compression=self.compression,
            )
        except grpc.RpcError as error:
            assert isinstance(error, grpc.Call)
            return (
                error.code().name,
                error.details() or "",
                tuple(error.trailing_metadata() or ()),
                None,
            )
        return "OK", "", tuple(call.trailing_metadata() or ()), response

    def close(self) -> None:
        self.channel.close()
