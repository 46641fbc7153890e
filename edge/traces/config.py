"""The traces receiver's configuration: ``external_labels`` and a ``ferryman:`` section.

::

    external_labels: {cluster: prod-eu-1}     # cluster -> k8s.cluster.name, the rest as is
    ferryman:
      kafka: {bootstrap_servers: kafka:9092, topic: ferryman.traces, tenant: team-a}
      grpc: {listen: 0.0.0.0:4317}
      http: {listen: 0.0.0.0:4318}
      listen: 127.0.0.1:9903                  # /metrics, /healthz, /readyz
      limits: {max_request_bytes: 4MiB, max_in_flight_requests: 64, ack_timeout: 10s}
      auth: {bearer_token_file: /run/secrets/otlp-token}
      tls: {cert_file: /etc/ferryman/tls.crt, key_file: /etc/ferryman/tls.key}
      kubernetes: {}                          # the sending pod's attributes, by its IP

Kafka's security fields (TLS, SASL) are those of :mod:`ferryman.kafkaconfig`, and the
``FERRYMAN_KAFKA__*`` environment variables lay over them as in the other shippers.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ferryman.errors import ConfigError, format_errors
from ferryman.kafkaconfig import KafkaSecurity, with_security_env
from ferryman.lineage import LineageSettings
from ferryman.units import Duration, Size
from ferryman.wire.otlp import CLUSTER_ATTRIBUTE

from .pods import PodAttributesConfig

__all__ = [
    "Auth",
    "EdgeTracesConfig",
    "KafkaOut",
    "Limits",
    "Listener",
    "ReceiverSettings",
    "ServerTLS",
    "load_config",
]

#: What a Kafka record batch and its headers may add around a value (bytes).
MESSAGE_HEADROOM = 16 * 2**10


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaOut(KafkaSecurity):
    """Where spans go."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    topic: str = Field("ferryman.traces", description="Topic for OTLP trace messages.")
    tenant: str | None = Field(None, description="Tenant header on every message (default none).")
    max_message_bytes: Size = Field(
        2**20 - MESSAGE_HEADROOM,
        ge=4096,
        description="Largest message value (default 1MiB minus 16KiB of headroom for the "
        "record batch and headers): keep it below the topic's max.message.bytes.",
    )


class Listener(_Strict):
    listen: str = Field(description="host:port to listen on.")


class Limits(_Strict):
    max_request_bytes: Size = Field(
        4 * 2**20,
        ge=1024,
        description="Largest request body, after gzip (default 4MiB): 413 / "
        "RESOURCE_EXHAUSTED (gRPC's own limit) above it.",
    )
    max_in_flight_requests: int = Field(
        64,
        ge=1,
        description="Requests waiting for Kafka at once (default 64); one more is "
        "answered 503 / UNAVAILABLE with a retry delay.",
    )
    ack_timeout: Duration = Field(
        10.0,
        gt=0,
        description="Wait this long for Kafka to acknowledge a request's messages "
        "(default 10s), then answer 503 / UNAVAILABLE.",
    )
    retry_after: Duration = Field(
        1.0,
        gt=0,
        description="The delay a client is asked to wait before retrying (default 1s).",
    )


class Auth(_Strict):
    """A bearer token every request must carry (``Authorization: Bearer T``)."""

    bearer_token: str | None = Field(None, description="The token (prefer bearer_token_file).")
    bearer_token_file: Path | None = Field(None, description="File holding the token.")

    @model_validator(mode="after")
    def _one(self) -> Auth:
        if (self.bearer_token is None) == (self.bearer_token_file is None):
            raise ValueError("set exactly one of bearer_token and bearer_token_file")
        return self

    def token(self) -> bytes:
        """The token, read now (the file at each call: a reload picks a rotated one)."""
        if self.bearer_token_file is not None:
            try:
                text = self.bearer_token_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    [f"ferryman.auth.bearer_token_file: cannot read it: {exc.strerror}"]
                ) from None
            if not text:
                raise ConfigError(["ferryman.auth.bearer_token_file: the file is empty"])
            return text.encode()
        assert self.bearer_token is not None
        return self.bearer_token.encode()


def token_matches(expected: bytes, authorization: str | None) -> bool:
    """Whether an ``Authorization`` value carries ``expected`` (constant-time compare)."""
    if authorization is None:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)


class ServerTLS(_Strict):
    """TLS on both listeners."""

    cert_file: Path = Field(description="Server certificate (PEM, chain allowed).")
    key_file: Path = Field(description="Its key (PEM).")
    client_ca_file: Path | None = Field(
        None, description="Require client certificates signed by this CA (default: none asked)."
    )


class ReceiverSettings(_Strict):
    kafka: KafkaOut = Field(default_factory=KafkaOut, description="Where spans go.")
    grpc: Listener = Field(
        default_factory=lambda: Listener(listen="127.0.0.1:4317"),
        description="OTLP/gRPC listener (default 127.0.0.1:4317).",
    )
    http: Listener = Field(
        default_factory=lambda: Listener(listen="127.0.0.1:4318"),
        description="OTLP/HTTP listener, POST /v1/traces (default 127.0.0.1:4318).",
    )
    listen: str = Field("127.0.0.1:9903", description="host:port of /metrics and health.")
    limits: Limits = Field(default_factory=Limits, description="Request limits.")
    auth: Auth | None = Field(None, description="Bearer token on both listeners (default none).")
    tls: ServerTLS | None = Field(None, description="TLS on both listeners (default none).")
    kubernetes: PodAttributesConfig | None = Field(
        None,
        description="Add the sending pod's Kubernetes attributes, looked up by its IP "
        "(default: off).",
    )
    lineage: LineageSettings = Field(
        default_factory=LineageSettings,
        description="Batch lineage: a traceparent on every request's messages, a span per "
        "sampled or failed request (default on, 1 %).",
    )


class EdgeTracesConfig(_Strict):
    external_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Resource attributes set on every span's resource; 'cluster' is set "
        "as k8s.cluster.name.",
    )
    ferryman: ReceiverSettings = Field(
        default_factory=ReceiverSettings, description="Receiver settings."
    )

    def resource_attributes(self) -> dict[str, str]:
        return {
            (CLUSTER_ATTRIBUTE if key == "cluster" else key): value
            for key, value in self.external_labels.items()
        }


def load_config(path: Path) -> EdgeTracesConfig:
    """Parse and validate; raises ConfigError listing every problem by dotted path."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"<file>: {exc}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["<root>: expected a mapping"])
    ours = data.get("ferryman")
    if ours is None or isinstance(ours, dict):
        kafka = with_security_env((ours or {}).get("kafka"))
        if kafka is not None:
            data["ferryman"] = {**(ours or {}), "kafka": kafka}
    try:
        config = EdgeTracesConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None
    if config.ferryman.auth is not None:
        config.ferryman.auth.token()  # a missing token file fails the start, not a request
    return config
