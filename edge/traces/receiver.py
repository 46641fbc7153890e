"""``ferryman edge traces --config F``: the OTLP receiver (gRPC and HTTP) into Kafka.

Runs until SIGTERM or SIGINT (listeners stop taking requests, those in flight finish
within a few seconds). SIGHUP reloads the configuration: external labels, the
tenant, the bearer token (and a rotated token file), limits other than the gRPC
message size, and ``max_message_bytes`` apply at once; listener addresses, TLS,
the gRPC message size limit and Kafka's connection settings need a restart (a
reload that changes them says so in the log). A file that does not load keeps the
running configuration.
"""

from __future__ import annotations

import logging
import signal
import ssl
import threading
import time
from pathlib import Path
from types import FrameType

import grpc

from ferryman.errors import ConfigError
from ferryman.http import serve
from ferryman.kafkacheck import check_kafka
from ferryman.lineage import LineageExporter
from ferryman.telemetry import Registry
from ferryman.wire.otlp import CLUSTER_ATTRIBUTE, NATIVE

from .config import EdgeTracesConfig, ServerTLS, load_config
from .intake import Intake, Metrics
from .otlpgrpc import GrpcListener
from .otlphttp import HttpListener
from .pods import PodAttributes
from .produce import KafkaLink

__all__ = ["TracesReceiver"]

log = logging.getLogger("ferryman.edge.traces")


class TracesReceiver:
    def __init__(self, config_path: Path) -> None:
        """Load and validate the configuration (ConfigError); nothing is opened yet."""
        self.config_path = config_path
        self.config: EdgeTracesConfig = load_config(config_path)
        self.registry = Registry()
        self.metrics = Metrics(self.registry)
        kafka = self.config.ferryman.kafka
        #: Read once at start; a reload keeps them (restart to change Kafka settings).
        self.kafka_credentials = kafka.credentials("ferryman.kafka")
        self.link = KafkaLink(
            bootstrap_servers=kafka.bootstrap_servers,
            topic=kafka.topic,
            credentials=self.kafka_credentials,
            max_message_bytes=kafka.max_message_bytes,
            ack_timeout=self.config.ferryman.limits.ack_timeout,
            errors=self.metrics.errors,
        )
        cluster = self.config.external_labels.get("cluster")
        self.lineage = (
            LineageExporter(
                self.config.ferryman.lineage,
                bootstrap_servers=kafka.bootstrap_servers,
                registry=self.registry,
                resource={
                    "service.name": "ferryman-edge-traces",
                    **({CLUSTER_ATTRIBUTE: cluster} if cluster else {}),
                },
                credentials=self.kafka_credentials,
                cluster=cluster,
            )
            if self.config.ferryman.lineage.enabled
            else None
        )
        self.intake = Intake(self.config, self.link, self.metrics, self.lineage)
        settings = self.config.ferryman
        tls = settings.tls
        self._http_tls = _ssl_context(tls) if tls else None
        self._grpc_credentials = _grpc_credentials(tls) if tls else None
        self.pods: PodAttributes | None = None
        self._stop = threading.Event()
        self._reload = threading.Event()

    def run(self) -> None:
        """Serve until SIGTERM; raises KafkaStartError first when Kafka refuses the
        configured certificate or login (see :mod:`ferryman.kafkacheck`)."""
        settings = self.config.ferryman
        check_kafka(settings.kafka.bootstrap_servers, self.kafka_credentials)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        token = settings.auth.token() if settings.auth else None
        tls = settings.tls
        if settings.kubernetes is not None:
            self.pods = PodAttributes(settings.kubernetes)
        lookup = self.pods.lookup if self.pods is not None else None
        grpc_listener = GrpcListener(
            settings.grpc.listen,
            self.intake,
            credentials=self._grpc_credentials,
            token=token,
            attributes_of=lookup,
        )
        http_listener = HttpListener(
            settings.http.listen,
            self.intake,
            tls=self._http_tls,
            token=token,
            attributes_of=lookup,
        )
        self.listeners = (grpc_listener, http_listener)
        status = serve(
            settings.listen,
            self.registry,
            {"/healthz": lambda: True, "/readyz": lambda: self.link.ready},
        )
        self.link.start()
        if self.lineage is not None:
            self.lineage.start()
        grpc_listener.start()
        http_listener.start()
        if not NATIVE:
            log.warning(
                "the native module has no OTLP splitter (an older build?): requests are "
                "cut by trace in Python, at several times the CPU per span"
            )
        log.info(
            "edge traces receiver running: OTLP/gRPC on port %d, OTLP/HTTP on port %d%s%s, "
            "Kafka %s topic %s, metrics on %s:%d",
            grpc_listener.port,
            http_listener.port,
            " with TLS" if tls else "",
            " and a bearer token" if token else "",
            settings.kafka.bootstrap_servers,
            settings.kafka.topic,
            *status.server_address[:2],
        )
        try:
            while not self._stop.is_set():
                self._stop.wait(0.5)
                if self._reload.is_set():
                    self._reload.clear()
                    self._reload_config()
        finally:
            http_listener.close()
            grpc_listener.close()  # waits up to 5 s for gRPC requests in flight
            deadline = time.monotonic() + 5
            while self.intake.in_flight and time.monotonic() < deadline:
                time.sleep(0.05)  # HTTP requests still waiting for Kafka
            self.link.close()
            if self.lineage is not None:
                self.lineage.close()
            if self.pods is not None:
                self.pods.close()
            status.shutdown()
            log.info("edge traces receiver stopped")

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self._stop.set()

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self._reload.set()

    def _reload_config(self) -> None:
        try:
            config = load_config(self.config_path)
            token = config.ferryman.auth.token() if config.ferryman.auth else None
        except ConfigError as exc:
            self.metrics.reloads.labels(result="failure").inc()
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        old = self.config.ferryman
        new = config.ferryman
        fixed = [
            name
            for name, before, after in (
                ("ferryman.grpc", old.grpc, new.grpc),
                ("ferryman.http", old.http, new.http),
                ("ferryman.listen", old.listen, new.listen),
                ("ferryman.tls", old.tls, new.tls),
                ("ferryman.kubernetes", old.kubernetes, new.kubernetes),
                (
                    "ferryman.limits.max_request_bytes (gRPC)",
                    old.limits.max_request_bytes,
                    new.limits.max_request_bytes,
                ),
                (
                    "ferryman.kafka (connection)",
                    old.kafka.model_dump(exclude={"tenant", "max_message_bytes"}),
                    new.kafka.model_dump(exclude={"tenant", "max_message_bytes"}),
                ),
            )
            if before != after
        ]
        if fixed:
            log.warning("reload: restart the receiver to apply %s", ", ".join(fixed))
        self.config = config
        self.intake.config = config
        for listener in self.listeners:
            listener.token = token
        self.metrics.reloads.labels(result="success").inc()
        log.info("configuration reloaded from %s", self.config_path)


def _ssl_context(tls: ServerTLS) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        if tls.client_ca_file is not None:
            context.load_verify_locations(cafile=str(tls.client_ca_file))
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"ferryman.tls: cannot load the certificate or key: {exc}"]) from None
    return context


def _grpc_credentials(tls: ServerTLS) -> grpc.ServerCredentials:
    try:
        pair = (tls.key_file.read_bytes(), tls.cert_file.read_bytes())
        ca = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
    except OSError as exc:
        raise ConfigError([f"ferryman.tls: cannot read a file: {exc}"]) from None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=bool(ca))
