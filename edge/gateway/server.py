"""``ferryman gateway --config F``: remote write, Loki push and OTLP/HTTP into Kafka.

One HTTP/1.1 listener (a thread per connection, keep-alive) serves:

- ``POST /api/v1/write``: Prometheus remote write 1.0 and 2.0 (204);
- ``POST /loki/api/v1/push``: Loki push, protobuf + snappy or JSON (gzip or not) (204);
- ``POST /v1/traces``: OTLP/HTTP, protobuf or JSON (gzip or not) (200), through the
  traces receiver's :class:`edge.traces.intake.Intake`;
- ``GET /healthz``, ``/readyz`` (every Kafka topic's metadata seen), ``/metrics``.

A request is answered 2xx only after Kafka acknowledged (acks=all) every message made
of it; when Kafka is away or slow, or ``max_in_flight_requests`` requests already wait,
it gets 503 with ``Retry-After``. 401 (unknown tenant, wrong credential,
``X-Scope-OrgID`` naming another tenant) produces nothing. SIGTERM stops it.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from prometheus_client import generate_latest

from edge.httpbody import BodyFramingError, BodyTooLargeError, read_body
from edge.traces.answers import JSON, PROTOBUF, error_body, response_body
from edge.traces.config import EdgeTracesConfig
from edge.traces.intake import Accepted, BusyError, Intake
from edge.traces.intake import Metrics as TraceMetrics
from edge.traces.produce import KafkaLink, KafkaUnavailableError
from ferryman.errors import ConfigError
from ferryman.kafkacheck import check_kafka
from ferryman.telemetry import CONTENT_TYPE, Registry
from ferryman.wire import remote_write2
from ferryman.wire.otlp import CLUSTER_ATTRIBUTE, OtlpDecodeError, decode_json, decode_protobuf

from . import protocols as p
from .auth import Authenticator, subject_of
from .config import GatewayConfig, GatewayTLS, Tenant, load_config, load_tenants, valid_tenant_id
from .limits import TokenBucket
from .otlpgrpc import GrpcListener

__all__ = ["Gateway"]

log = logging.getLogger("ferryman.gateway")

WRITE = "/api/v1/write"
LOKI = "/loki/api/v1/push"
TRACES = "/v1/traces"
_ENDPOINTS = {WRITE: "remote_write", LOKI: "loki_push", TRACES: "otlp_traces"}
_UNAVAILABLE = 14
_V1 = "prometheus.WriteRequest"
_V2 = "io.prometheus.write.v2.Request"


class Metrics:
    def __init__(self, registry: Registry) -> None:
        r = registry
        self.requests = r.counter(
            "ferryman_gateway_requests_total",
            "Requests by endpoint, tenant (empty: not authenticated) and status.",
            ["endpoint", "tenant", "status"],
        )
        self.refused = r.counter(
            "ferryman_gateway_refused_total",
            "Requests refused, by endpoint and reason.",
            ["endpoint", "reason"],
        )
        self.accepted = r.counter(
            "ferryman_gateway_accepted_total",
            "Samples, lines or spans Kafka acknowledged, by endpoint and tenant.",
            ["endpoint", "tenant"],
        )
        self.truncated = r.counter(
            "ferryman_gateway_lines_truncated_total", "Loki lines cut to max_line_bytes."
        )
        self.reloads = r.counter(
            "ferryman_gateway_reloads_total", "Tenant reloads (SIGHUP) by result.", ["result"]
        )
        self.relabel_dropped = r.counter(
            "ferryman_gateway_relabel_dropped_total",
            "Remote-write series a tenant's write_relabel_configs dropped (or left without "
            "labels, or with an invalid label name), in requests Kafka acknowledged.",
            ["tenant"],
        )
        self.in_flight = r.gauge(
            "ferryman_gateway_requests_in_flight", "Requests waiting for Kafka."
        )
        self.connections = r.gauge(
            "ferryman_gateway_connections", "Open HTTP connections (max_connections caps them)."
        )
        self.traces = TraceMetrics(registry)


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.tenants = load_tenants(config)
        self.auth = Authenticator(self.tenants)
        self.registry = Registry()
        self.metrics = Metrics(self.registry)
        kafka = config.kafka
        self.credentials = kafka.credentials("kafka")
        self.links = {
            name: KafkaLink(
                bootstrap_servers=kafka.bootstrap_servers,
                topic=topic,
                credentials=self.credentials,
                max_message_bytes=kafka.max_message_bytes,
                ack_timeout=config.ack_timeout,
                errors=self.metrics.traces.errors,
                client_id=f"ferryman-gateway-{name}",
                # Remote-write and Loki messages are snappy'd already.
                compression="snappy" if name == "traces" else None,
            )
            for name, topic in kafka.topics.model_dump().items()
        }
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        #: The bucket and count the current request thread took last: given back when
        #: Kafka then refuses the request (503), since the client sends it again.
        self._taken = threading.local()
        self._intakes: dict[tuple[str, str], Intake] = {}
        self._lock = threading.Lock()
        self._in_flight = 0
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.config_path: Path | None = None
        host, _, port = config.listen.rpartition(":")
        self.server = _Server((host.strip("[]") or "0.0.0.0", int(port)), self)
        self.port: int = self.server.server_address[1]
        self.grpc: GrpcListener | None = None
        if config.grpc_listen is not None:
            largest = max((t.limits.max_body_bytes for t in self.tenants), default=4 * 2**20)
            self.grpc = GrpcListener(
                config.grpc_listen,
                self,
                largest,
                _grpc_credentials(config.tls) if config.tls is not None else None,
            )

    @classmethod
    def from_file(cls, path: Path) -> Gateway:
        gateway = cls(load_config(path))
        gateway.config_path = path
        return gateway

    def reload_tenants(self) -> bool:
        """Read the configuration's tenants again (SIGHUP): new credentials, clusters and
        limits apply to the next request; a file that does not load keeps the running
        tenants. Other settings need a restart."""
        if self.config_path is None:
            return False
        try:
            config = load_config(self.config_path)
            tenants = load_tenants(config)
        except ConfigError as exc:
            self.metrics.reloads.labels(result="failure").inc()
            log.error("reload failed, keeping the running tenants: %s", exc)
            return False
        if config.model_dump(exclude={"tenants"}) != self.config.model_dump(exclude={"tenants"}):
            log.warning("reload: only tenants apply now; restart the gateway for the rest")
        with self._lock:
            self.tenants = tenants
            self.auth = Authenticator(tenants)
            self._buckets.clear()
        self.metrics.reloads.labels(result="success").inc()
        log.info("tenants reloaded from %s: %d tenants", self.config_path, len(tenants))
        return True

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        for link in self.links.values():
            link.start()
        threading.Thread(
            target=self.server.serve_forever, name="ferryman-gateway", daemon=True
        ).start()
        if self.grpc is not None:
            self.grpc.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.grpc is not None:
            self.grpc.close()
        deadline = time.monotonic() + 5
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        for link in self.links.values():
            link.close()

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT."""
        check_kafka(self.config.kafka.bootstrap_servers, self.credentials)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        self.start()
        log.info(
            "gateway running on port %d with %d tenants, Kafka %s",
            self.port,
            len(self.tenants),
            self.config.kafka.bootstrap_servers,
        )
        try:
            while not self._stop.is_set():
                self._stop.wait(0.5)
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload_tenants()
        finally:
            self.close()
            log.info("gateway stopped")

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self._stop.set()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self._reload.set()

    @property
    def ready(self) -> bool:
        return all(link.ready for link in self.links.values())

    # -- shared steps --------------------------------------------------------------

    def take(self, tenant: Tenant, signal_name: str, count: int) -> None:
        """Take ``count`` from the tenant's bucket for ``signal_name``, else 429."""
        limits = tenant.limits
        rate = {
            "samples": limits.samples_per_second,
            "lines": limits.lines_per_second,
            "spans": limits.spans_per_second,
        }[signal_name]
        with self._lock:
            bucket = self._buckets.get((tenant.name, signal_name))
            if bucket is None:
                bucket = TokenBucket(rate, rate * limits.burst_seconds)
                self._buckets[(tenant.name, signal_name)] = bucket
        wait = bucket.take(count)
        self._taken.last = None if wait else (bucket, count)
        if wait:
            raise p.Refusal(
                429,
                f"tenant {tenant.name}: {signal_name} above {rate:g} per second",
                "rate_limited",
                retry_after=wait,
            )

    def refund(self) -> None:
        """Give back what this thread's request took from its bucket (see take)."""
        taken = getattr(self._taken, "last", None)
        self._taken.last = None
        if taken is not None:
            taken[0].give(taken[1])

    def produce(self, link_name: str, batch: p.Batch) -> None:
        """Produce ``batch`` and wait for Kafka's acknowledgement, else 503 (and the
        request's rate-limit tokens are given back)."""
        if not batch.messages:
            return
        with self._lock:
            if self._in_flight >= self.config.max_in_flight_requests:
                self.refund()
                raise p.Refusal(
                    503,
                    f"{self._in_flight} requests already wait for Kafka",
                    "busy",
                    retry_after=self.config.retry_after,
                )
            self._in_flight += 1
            self.metrics.in_flight.set(self._in_flight)
        try:
            self.links[link_name].produce(batch.messages, self.config.ack_timeout)
        except KafkaUnavailableError as exc:
            self.refund()
            raise p.Refusal(
                503, str(exc), "kafka_unavailable", retry_after=self.config.retry_after
            ) from None
        finally:
            with self._lock:
                self._in_flight -= 1
                self.metrics.in_flight.set(self._in_flight)

    def intake(self, tenant: Tenant, cluster: str) -> Intake:
        """The traces receiver's intake writing as ``tenant`` and ``cluster``."""
        with self._lock:
            found = self._intakes.get((tenant.name, cluster))
            if found is None:
                kafka = self.config.kafka
                config = EdgeTracesConfig.model_validate(
                    {
                        "external_labels": {"cluster": cluster},
                        "ferryman": {
                            "kafka": {
                                "bootstrap_servers": kafka.bootstrap_servers,
                                "topic": kafka.topics.traces,
                                "tenant": tenant.name,
                                "max_message_bytes": kafka.max_message_bytes,
                            },
                            "limits": {
                                "max_in_flight_requests": self.config.max_in_flight_requests,
                                "ack_timeout": self.config.ack_timeout,
                                "retry_after": self.config.retry_after,
                            },
                        },
                    }
                )
                found = Intake(config, self.links["traces"], self.metrics.traces)
                self._intakes[(tenant.name, cluster)] = found
            return found

    # -- endpoints -----------------------------------------------------------------

    def remote_write(self, tenant: Tenant, body: bytes, headers: Any) -> dict[str, str]:
        content_type = headers.get("Content-Type", "application/x-protobuf")
        media, _, params = content_type.partition(";")
        proto = _V1
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "proto":
                proto = value.strip().strip('"')
        if media.strip() != "application/x-protobuf" or proto not in {_V1, _V2}:
            raise p.Refusal(
                415,
                f"unsupported content type {content_type!r}: remote write takes "
                f"application/x-protobuf;proto={_V1} or {_V2}",
                "content_type",
            )
        encoding = headers.get("Content-Encoding", "snappy").strip().lower()
        if encoding != "snappy":
            raise p.Refusal(415, f"unsupported Content-Encoding {encoding!r}", "encoding")
        max_message = self.config.kafka.max_message_bytes
        relabeler = tenant.relabeler
        dropped = 0
        if proto == _V1:
            if relabeler is None:  # as received: no decode/re-encode of the body
                batch, _ = p.remote_write_messages(body, tenant, max_message)
            else:
                batch, kept = p.relabelled_write_messages(body, tenant, relabeler, max_message)
                dropped = kept.dropped
            self.take(tenant, "samples", batch.items)
            self.produce("metrics", batch)
            self.metrics.accepted.labels(endpoint="remote_write", tenant=tenant.name).inc(
                batch.items
            )
            if dropped:
                self.metrics.relabel_dropped.labels(tenant=tenant.name).inc(dropped)
            return {}
        raw = p.unsnappy(body, tenant.limits.max_decompressed_bytes)
        try:
            request = remote_write2.decode_request(raw)
        except remote_write2.DecodeError as exc:
            raise p.Refusal(400, f"not a remote write 2.0 Request: {exc}", "decode") from None
        series, encoded = request.series, request.with_metadata()
        histograms, exemplars = request.histograms, request.exemplars
        if relabeler is not None:
            # Metadata is left out here: a rule may rename the series it described.
            kept = p.relabel_request2(request, relabeler)
            series, encoded, dropped = kept.series, kept.encoded, kept.dropped
            histograms, exemplars = kept.histograms, kept.exemplars
        batch = p.series_messages(series, tenant, max_message, encoded=encoded)
        self.take(tenant, "samples", batch.items + histograms)
        self.produce("metrics", batch)
        self.metrics.accepted.labels(endpoint="remote_write", tenant=tenant.name).inc(
            batch.items + histograms
        )
        if dropped:
            self.metrics.relabel_dropped.labels(tenant=tenant.name).inc(dropped)
        return {
            "X-Prometheus-Remote-Write-Samples-Written": str(batch.items),
            "X-Prometheus-Remote-Write-Histograms-Written": str(histograms),
            "X-Prometheus-Remote-Write-Exemplars-Written": str(exemplars),
        }

    def loki_push(self, tenant: Tenant, body: bytes, headers: Any) -> None:
        media = headers.get("Content-Type", "application/x-protobuf").split(";")[0].strip()
        limit = tenant.limits.max_decompressed_bytes
        encoding = headers.get("Content-Encoding", "").strip().lower()
        if media == "application/json":
            if encoding == "gzip":
                body = p.gunzip(body, limit)
            elif encoding not in {"", "identity"}:
                raise p.Refusal(415, f"unsupported Content-Encoding {encoding!r}", "encoding")
            elif len(body) > limit:
                raise p.Refusal(413, f"body larger than {limit} bytes", "decompressed_size")
            streams = p.decode_loki_json(body)
        elif media == "application/x-protobuf":
            if encoding not in {"", "snappy"}:
                raise p.Refusal(415, f"unsupported Content-Encoding {encoding!r}", "encoding")
            streams = p.decode_loki_protobuf(body, limit)
        else:
            raise p.Refusal(
                415,
                f"unsupported content type {media!r}: application/x-protobuf or application/json",
                "content_type",
            )
        batch, truncated = p.loki_messages(streams, tenant, self.config.kafka.max_message_bytes)
        self.take(tenant, "lines", batch.items)
        self.produce("logs", batch)
        if truncated:
            self.metrics.truncated.inc(truncated)
        self.metrics.accepted.labels(endpoint="loki_push", tenant=tenant.name).inc(batch.items)

    def otlp_traces(self, tenant: Tenant, body: bytes, headers: Any) -> bytes:
        media = headers.get("Content-Type", "").split(";")[0].strip()
        if media not in {PROTOBUF, JSON}:
            raise p.Refusal(415, f"unsupported content type {media!r}", "content_type")
        encoding = headers.get("Content-Encoding", "").strip().lower()
        if encoding == "gzip":
            body = p.gunzip(body, tenant.limits.max_decompressed_bytes)
        elif encoding not in {"", "identity"}:
            raise p.Refusal(415, f"unsupported Content-Encoding {encoding!r}", "encoding")
        try:
            request = decode_protobuf(body) if media == PROTOBUF else decode_json(body)
        except OtlpDecodeError as exc:
            raise p.Refusal(400, str(exc), "decode") from None
        return response_body(self.export_spans(tenant, request, "http"), media)

    def export_spans(
        self, tenant: Tenant, request: ExportTraceServiceRequest, transport: str
    ) -> Accepted:
        """Check ``request``'s resources and produce its spans as ``tenant``, one Intake
        per cluster; Refusal when a check or Kafka says no."""
        by_cluster: dict[str, ExportTraceServiceRequest] = {}
        spans = 0
        for rs in request.resource_spans:
            attributes = {
                kv.key: kv.value.string_value
                for kv in rs.resource.attributes
                if kv.value.HasField("string_value")
            }
            what = f"resource with service.name {attributes.get('service.name', '')!r}"
            p.check_labels(sorted(attributes.items()), tenant.limits, what)
            cluster = p.check_cluster(attributes.get(CLUSTER_ATTRIBUTE), tenant, what)
            by_cluster.setdefault(cluster, ExportTraceServiceRequest()).resource_spans.append(rs)
            spans += sum(len(ss.spans) for ss in rs.scope_spans)
        self.take(tenant, "spans", spans)
        rejected = 0
        message = ""
        for cluster, part in by_cluster.items():
            try:
                accepted = self.intake(tenant, cluster).export(part, transport)
            except BusyError as exc:
                self.refund()
                raise p.Refusal(503, str(exc), "kafka_unavailable", exc.retry_after) from None
            rejected += accepted.rejected_spans
            message = message or accepted.error_message
        self.metrics.accepted.labels(endpoint="otlp_traces", tenant=tenant.name).inc(
            spans - rejected
        )
        return Accepted(rejected, message)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], gateway: Gateway) -> None:
        self.gateway = gateway
        self.tls = _ssl_context(gateway.config.tls) if gateway.config.tls else None
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.connections = 0
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection, unless ``max_connections`` are open already:
        then a 503 and the connection closed, so idle or slow clients cannot take every
        thread of the process."""
        gateway = self.gateway
        with gateway._lock:
            full = self.connections >= gateway.config.max_connections
            if not full:
                self.connections += 1
                gateway.metrics.connections.set(self.connections)
        if full:
            gateway.metrics.refused.labels(endpoint="", reason="connections").inc()
            retry = max(1, round(gateway.config.retry_after + 0.49))
            try:
                request.settimeout(1)
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n" % retry
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.gateway._lock:
                self.connections -= 1
                self.gateway.metrics.connections.set(self.connections)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            try:
                request.settimeout(min(30.0, self.gateway.config.idle_timeout))
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                self.gateway.metrics.refused.labels(endpoint="", reason="tls_handshake").inc()
                log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                return
        super().finish_request(request, client_address)


def _grpc_credentials(tls: GatewayTLS) -> grpc.ServerCredentials:
    """The HTTPS certificate for the gRPC listener (no client certificate asked)."""
    try:
        pair = (tls.key_file.read_bytes(), tls.cert_file.read_bytes())
    except OSError as exc:
        raise ConfigError([f"tls: cannot read the certificate or key: {exc}"]) from None
    return grpc.ssl_server_credentials([pair])


def _ssl_context(tls: GatewayTLS) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        if tls.client_ca_file is not None:
            context.load_verify_locations(cafile=str(tls.client_ca_file))
            context.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"tls: cannot load the certificate or key: {exc}"]) from None
    return context


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # A read that waits longer than idle_timeout ends the connection.
        self.connection.settimeout(self.server.gateway.config.idle_timeout)

    def do_GET(self) -> None:
        gateway = self.server.gateway
        path = self.path.split("?")[0]
        if path == "/metrics":
            self._send(200, generate_latest(gateway.registry.collector_registry), CONTENT_TYPE)
        elif path == "/healthz":
            self._send(200, b"OK\n")
        elif path == "/readyz":
            ok = gateway.ready
            self._send(200 if ok else 503, b"OK\n" if ok else b"Kafka not reachable\n")
        else:
            self._send(404, b"not found\n")

    def do_POST(self) -> None:
        gateway = self.server.gateway
        path = self.path.split("?")[0]
        endpoint = _ENDPOINTS.get(path)
        if endpoint is None:
            self._drain()
            self._send(404, b"not found\n")
            return
        tenant_name = ""
        self._read = False
        try:
            peer = (
                self.connection.getpeercert()
                if isinstance(self.connection, ssl.SSLSocket)
                else None
            )
            tenant = gateway.auth.tenant(self.headers.get("Authorization"), subject_of(peer))
            if tenant is None:
                raise p.Refusal(401, "unknown tenant or wrong credential", "unauthenticated")
            tenant_name = tenant.name
            org = self.headers.get("X-Scope-OrgID")
            if org is not None:
                if not valid_tenant_id(org):
                    raise p.Refusal(400, "X-Scope-OrgID is not a valid tenant id", "org_id")
                if org != tenant.name:
                    raise p.Refusal(
                        401, "X-Scope-OrgID names another tenant than the credential", "org_id"
                    )
            body = self._body(tenant)
            extra: dict[str, str] = {}
            if endpoint == "remote_write":
                extra = gateway.remote_write(tenant, body, self.headers)
                self._answer(endpoint, tenant_name, 204, b"", extra=extra)
            elif endpoint == "loki_push":
                gateway.loki_push(tenant, body, self.headers)
                self._answer(endpoint, tenant_name, 204, b"")
            else:
                answer = gateway.otlp_traces(tenant, body, self.headers)
                media = self.headers.get("Content-Type", PROTOBUF).split(";")[0].strip()
                self._answer(endpoint, tenant_name, 200, answer, media)
        except p.Refusal as refusal:
            if refusal.status in {401, 403, 413, 415} or refusal.status == 400:
                self._drain()
            gateway.metrics.refused.labels(endpoint=endpoint, reason=refusal.reason).inc()
            extra = {}
            if refusal.retry_after is not None:
                extra["Retry-After"] = str(max(1, round(refusal.retry_after + 0.49)))
            if endpoint == "otlp_traces":
                media = self.headers.get("Content-Type", PROTOBUF).split(";")[0].strip()
                media = media if media in {PROTOBUF, JSON} else PROTOBUF
                code = _UNAVAILABLE if refusal.status in {429, 503} else 3
                body = error_body(code, str(refusal), media, refusal.retry_after)
                self._answer(endpoint, tenant_name, refusal.status, body, media, extra=extra)
            else:
                self._answer(
                    endpoint, tenant_name, refusal.status, f"{refusal}\n".encode(), extra=extra
                )
        except Exception:  # a bug must not look like success: 500 is retried by agents
            log.exception("unexpected error on %s", endpoint)
            gateway.metrics.refused.labels(endpoint=endpoint, reason="internal").inc()
            self.close_connection = True
            self._answer(endpoint, tenant_name, 500, b"internal error\n")

    def _body(self, tenant: Tenant) -> bytes:
        """The body, by Content-Length or chunked (Loki and OTLP clients send either),
        at most the tenant's ``max_body_bytes``: 411 without either, 413 above it, 400
        when it ends early."""
        limit = tenant.limits.max_body_bytes
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length = (self.headers.get("Content-Length") or "").strip()
        if not chunked and not length.isdigit():
            self.close_connection = True
            raise p.Refusal(411, "Content-Length or chunked body required", "no_length")
        try:
            body = read_body(self.rfile, self.headers, limit)
        except BodyTooLargeError as exc:
            self.close_connection = True
            raise p.Refusal(413, str(exc), "body_size") from None
        except BodyFramingError as exc:
            self.close_connection = True
            raise p.Refusal(400, str(exc), "decode") from None
        finally:
            self._read = True
        return body

    def _drain(self) -> None:
        if getattr(self, "_read", False):
            return
        self._read = True
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit() or int(length) > 2**20:
            self.close_connection = True
            return
        self.rfile.read(int(length))

    def _answer(
        self,
        endpoint: str,
        tenant: str,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        *,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.server.gateway.metrics.requests.labels(
            endpoint=endpoint, tenant=tenant, status=str(status)
        ).inc()
        self._send(status, body, content_type, extra)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if body or status != 204:
            self.send_header("Content-Type", content_type)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        del format, args  # a line per request would drown the process's own log
