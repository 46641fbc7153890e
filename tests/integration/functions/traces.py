"""Traces for the function tests: OTLP requests built with the published messages, read
back from the stack's real Jaeger, and a TCP forwarder that stages an outage of a gRPC
receiver."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from ferryman import headers as h
from infra.local.paths import default_layout
from tests.integration.pipeline import Message, free_port, message_headers, wait_for


@dataclass(frozen=True)
class Trace:
    """One trace as a Kafka message: its id and span ids (hex, as Jaeger names them)."""

    trace_id: bytes
    span_ids: frozenset[str]
    message: Message

    @property
    def hex(self) -> str:
        return self.trace_id.hex()


def trace(
    service: str,
    spans: int = 3,
    *,
    error: bool = False,
    slow_s: float = 0.0,
    trace_id: bytes | None = None,
    cluster: str = "alpha",
    tenant: str | None = None,
    padding: int = 0,
) -> Trace:
    """A trace of ``spans`` spans of ``service`` (a root and its children) in one
    ``ExportTraceServiceRequest``, as the edge produces it: keyed by the trace id, with
    the schema, cluster (header and resource attribute) and tenant. ``error`` makes the
    last span's status ERROR; ``slow_s`` the root's duration; ``padding`` adds an
    attribute of that many bytes to each span."""
    trace_id = trace_id if trace_id is not None else os.urandom(16)
    now = time.time_ns() - 5 * 10**9
    root = os.urandom(8)
    made = []
    for n in range(spans):
        span_id = root if n == 0 else os.urandom(8)
        made.append(
            Span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=b"" if n == 0 else root,
                name=f"op-{n}",
                kind=Span.SPAN_KIND_SERVER if n == 0 else Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=now + n * 1000,
                end_time_unix_nano=now
                + (int(max(slow_s, 0.001) * 1e9) if n == 0 else 500_000)
                + n * 1000,
                attributes=[
                    KeyValue(key="n", value=AnyValue(int_value=n)),
                    KeyValue(key="pad", value=AnyValue(string_value="." * padding)),
                ],
                status=Status(code=Status.STATUS_CODE_ERROR if error and n == spans - 1 else 0),
            )
        )
    resource = Resource(
        attributes=[
            KeyValue(key="service.name", value=AnyValue(string_value=service)),
            KeyValue(key="k8s.cluster.name", value=AnyValue(string_value=cluster)),
        ]
    )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=resource,
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name="test"), spans=made)],
            )
        ]
    )
    headers = message_headers(h.SCHEMA_OTLP_TRACES, cluster=cluster, tenant=tenant)
    # The batch's own context, as the edge receiver gives each request one: never the
    # application's trace id (a worker writes its lineage spans into a sampled batch's
    # trace), and not sampled, so the application's traces hold its spans alone.
    batch = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"
    headers += ((h.TRACEPARENT, batch.encode()),)
    return Trace(
        trace_id,
        frozenset(s.span_id.hex() for s in made),
        Message(request.SerializeToString(), trace_id, headers),
    )


def jaeger_spans(query: str, service: str) -> dict[str, list[str]]:
    """Span ids by trace id (hex) of ``service`` in Jaeger, every copy listed."""
    response = httpx.get(
        f"{query}/api/traces",
        params={"service": service, "limit": "10000"},
        timeout=30,
    )
    if response.status_code == 404:
        return {}
    response.raise_for_status()
    found: dict[str, list[str]] = {}
    for data in response.json()["data"] or []:
        found.setdefault(data["traceID"], []).extend(s["spanID"] for s in data["spans"])
    return found


def jaeger_trace(query: str, trace_id: str) -> list[dict[str, object]]:
    """The spans Jaeger answers for one trace id ([] when it has none)."""
    response = httpx.get(f"{query}/api/traces/{trace_id}", timeout=30)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return [span for data in response.json()["data"] for span in data["spans"]]


def stored_span_ids(query: str, service: str) -> set[str]:
    return {span for spans in jaeger_spans(query, service).values() for span in spans}


@dataclass
class TcpForwarder:
    """Forwards connections from a local port to ``target`` (``host:port``); ``close``
    refuses new connections and cuts the open ones (the receiver is gone), ``open``
    listens again on the same port."""

    target: str
    port: int = 0
    _server: socket.socket | None = None
    _connections: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.open()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def close(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            connections, self._connections = self._connections, []
        if server is not None:
            server.close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self, server: socket.socket) -> None:
        host, port = self.target.rsplit(":", 1)
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((host, int(port)), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._server is not server:
                    client.close()
                    upstream.close()
                    return
                self._connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class PrivateJaeger:
    """A Jaeger v2 of the test's own (the stack's binary), its OTLP receivers on free
    ports, with TLS when ``cert``/``key`` are given; traces in memory."""

    def __init__(self, tmp: Path, *, cert: Path | None = None, key: Path | None = None) -> None:
        self.tmp = tmp
        self.grpc_port, self.http_port = free_port(), free_port()
        self.query_port, self.query_grpc_port, self.health_port = (
            free_port(),
            free_port(),
            free_port(),
        )
        tls = {} if cert is None else {"tls": {"cert_file": str(cert), "key_file": str(key)}}
        self.config = {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["batch"],
                        "exporters": ["jaeger_storage_exporter"],
                    }
                },
                # The stack's Jaeger serves its own metrics on 8888: none here.
                "telemetry": {"metrics": {"level": "none"}},
            },
            "extensions": {
                "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 10000}}}},
                "jaeger_query": {
                    "storage": {"traces": "memstore"},
                    "enable_tracing": False,
                    "http": {"endpoint": f"127.0.0.1:{self.query_port}"},
                    "grpc": {"endpoint": f"127.0.0.1:{self.query_grpc_port}"},
                },
                "healthcheckv2": {
                    "use_v2": True,
                    "http": {
                        "endpoint": f"127.0.0.1:{self.health_port}",
                        "status": {"enabled": True, "path": "/status"},
                    },
                },
            },
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}", **tls},
                        "http": {"endpoint": f"127.0.0.1:{self.http_port}", **tls},
                    }
                }
            },
            "processors": {"batch": {}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def query(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def start(self) -> PrivateJaeger:
        path = self.tmp / f"jaeger-{self.grpc_port}.yaml"
        path.write_text(yaml.safe_dump(self.config))
        self.log = path.with_suffix(".log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(default_layout().bin / "jaeger"), f"--config={path}"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, 30, "private Jaeger ready", interval=0.2)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"private Jaeger exited:\n{self.log.read_text()[-3000:]}")
        try:
            url = f"http://127.0.0.1:{self.health_port}/status"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the certificate is its own CA)."""
    cert, key = tmp / "server.crt", tmp / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
