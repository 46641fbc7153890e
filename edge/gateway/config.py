"""The gateway's configuration, and its tenants (inline or in a file of their own).

::

    listen: 0.0.0.0:8480                     # remote write, Loki push, OTLP/HTTP, /metrics,
                                             # /healthz, /readyz
    kafka:
      bootstrap_servers: kafka:9092
      topics: {metrics: ferryman.metrics, logs: ferryman.logs, traces: ferryman.traces}
    ack_timeout: 10s                         # then 503 with Retry-After
    retry_after: 1s
    max_in_flight_requests: 64
    tenants_file: /etc/ferryman/tenants.yaml # or tenants: [...] here

A tenants file holds ``tenants: [...]``; each tenant::

    - name: team-a                           # the Kafka tenant header; Mimir/Loki id rules
      bearer_token_hash: sha256:<hex>        # sha256 of the token
      basic_auth: {username: team-a, password_hash: "pbkdf2-sha256:..."}
      clusters: [prod-eu-1]                  # the cluster label values it may write
      limits: {max_body_bytes: 4MiB, samples_per_second: 100000, ...}
      write_relabel_configs:                 # optional: Prometheus <relabel_config>s,
        - {source_labels: [__name__], regex: "go_.*", action: drop}   # regexes run by RE2

Secrets are stored hashed only (``ferryman gateway hash-password`` makes a hash).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ferryman.errors import ConfigError, format_errors
from ferryman.kafkaconfig import KafkaSecurity, with_security_env
from ferryman.prom.relabel import RegexNotSupportedError, RelabelConfig, Relabeler, compile_rules
from ferryman.units import Duration, Size

__all__ = [
    "BasicAuth",
    "GatewayConfig",
    "GatewayTLS",
    "KafkaOut",
    "Tenant",
    "TenantLimits",
    "Topics",
    "load_config",
    "valid_tenant_id",
]

#: Mimir's and Loki's tenant id rules: at most 150 bytes of these characters, and not
#: "." or "..".
_TENANT_ID = re.compile(r"[A-Za-z0-9!_.*'()-]{1,150}")
_HASH = re.compile(r"(sha256:[0-9a-f]{64}|pbkdf2-sha256:\d+:[0-9a-f]+:[0-9a-f]{64})")


def valid_tenant_id(text: str) -> bool:
    """Whether ``text`` is a tenant id Mimir and Loki accept."""
    return bool(_TENANT_ID.fullmatch(text)) and text not in {".", ".."}


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Topics(_Strict):
    metrics: str = Field("ferryman.metrics", description="Remote-write messages.")
    logs: str = Field("ferryman.logs", description="Loki push messages.")
    traces: str = Field("ferryman.traces", description="OTLP trace messages.")


class KafkaOut(KafkaSecurity):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    topics: Topics = Field(default_factory=Topics, description="A topic per signal.")
    max_message_bytes: Size = Field(
        2**20 - 16 * 2**10,
        ge=4096,
        description="Largest message value (default 1MiB minus 16KiB): a larger request "
        "is cut into several messages.",
    )


class TenantLimits(_Strict):
    """Each limit answers the way agents handle it: 413, 429 with Retry-After, 400."""

    max_body_bytes: Size = Field(4 * 2**20, ge=1024, description="Request body (413).")
    max_decompressed_bytes: Size = Field(
        32 * 2**20,
        ge=1024,
        description="Body after snappy/gzip (413); decompression stops past it.",
    )
    samples_per_second: float = Field(
        100_000, gt=0, description="Remote-write samples per second (429 above)."
    )
    lines_per_second: float = Field(50_000, gt=0, description="Loki lines per second (429).")
    spans_per_second: float = Field(50_000, gt=0, description="Spans per second (429).")
    burst_seconds: float = Field(
        2.0, gt=0, description="A bucket holds this many seconds of its rate (default 2)."
    )
    max_labels_per_series: int = Field(
        40, ge=1, description="Labels of one series or stream (400 above)."
    )
    max_label_name_length: int = Field(1024, ge=1, description="Bytes of a label name (400).")
    max_label_value_length: int = Field(2048, ge=1, description="Bytes of a value (400).")
    max_line_bytes: Size = Field(256 * 2**10, ge=1, description="Bytes of one Loki line.")
    line_too_long: Literal["truncate", "refuse"] = Field(
        "refuse", description="A longer line is cut to max_line_bytes, or refused (400)."
    )


class BasicAuth(_Strict):
    username: str = Field(description="The user name clients send.")
    password_hash: str = Field(description="pbkdf2-sha256:ITER:SALT:HASH or sha256:HEX.")

    @field_validator("password_hash")
    @classmethod
    def _hashed(cls, value: str) -> str:
        if not _HASH.fullmatch(value):
            raise ValueError("not a hash: use `ferryman gateway hash-password`")
        return value


class Tenant(_Strict):
    name: str = Field(description="The tenant id: the Kafka tenant header.")
    bearer_token_hash: str | None = Field(None, description="sha256:HEX of the bearer token.")
    basic_auth: BasicAuth | None = Field(None, description="A basic-auth credential.")
    client_subject: str | None = Field(
        None,
        description="The subject of a client certificate (signed by tls.client_ca_file) "
        "that authenticates as this tenant, as 'CN=name' or 'CN=name,O=org' in the "
        "certificate's order.",
    )
    clusters: tuple[str, ...] = Field(
        description="Cluster label / k8s.cluster.name values this tenant may write."
    )
    limits: TenantLimits = Field(default_factory=TenantLimits, description="Its limits.")
    write_relabel_configs: tuple[RelabelConfig, ...] = Field(
        (),
        description="Prometheus <relabel_config>s applied to every remote-write series "
        "before the label limits and the cluster check; regexes run by RE2 (linear "
        "time). Default none: series are written as received.",
    )
    _relabeler: Relabeler | None = PrivateAttr(None)

    @field_validator("write_relabel_configs", mode="before")
    @classmethod
    def _rules(cls, value: Any, info: ValidationInfo) -> Any:
        """Each rule validated with RE2 as the regex engine; an error names the tenant and
        the rule."""
        if not isinstance(value, (list, tuple)):
            return value
        tenant = info.data.get("name", "?")
        rules = []
        for index, item in enumerate(value):
            if isinstance(item, RelabelConfig):
                rules.append(item)
                continue
            try:
                rules.append(RelabelConfig.model_validate(item, context={"relabel_engine": "re2"}))
            except ValidationError as exc:
                reasons = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'rule'}: "
                    + e["msg"].removeprefix("Value error, ")
                    for e in exc.errors()
                )
                raise ValueError(
                    f"tenant {tenant}: write_relabel_configs[{index}]: {reasons}"
                ) from None
        return tuple(rules)

    @model_validator(mode="after")
    def _compile_rules(self) -> Tenant:
        if self.write_relabel_configs:
            try:
                self._relabeler = compile_rules(self.write_relabel_configs, engine="re2")
            except RegexNotSupportedError as exc:
                raise ValueError(f"tenant {self.name}: write_relabel_configs: {exc}") from None
        return self

    @property
    def relabeler(self) -> Relabeler | None:
        """The tenant's rules compiled (RE2) when it was loaded; None without rules."""
        return self._relabeler

    @field_validator("name")
    @classmethod
    def _id(cls, value: str) -> str:
        if not valid_tenant_id(value):
            raise ValueError("not a valid tenant id (at most 150 bytes of A-Z a-z 0-9 !-_.*'())")
        return value

    @field_validator("bearer_token_hash")
    @classmethod
    def _token_hashed(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
            raise ValueError("not sha256:HEX (the token's sha256 in lower-case hex)")
        return value


class GatewayTLS(_Strict):
    """TLS on the HTTP listener, and on the gRPC one (which asks no client certificate:
    a ``client_subject`` tenant writes over HTTPS)."""

    cert_file: Path = Field(description="Server certificate (PEM, chain allowed).")
    key_file: Path = Field(description="Its key (PEM).")
    client_ca_file: Path | None = Field(
        None,
        description="Verify client certificates against this CA (default: none asked); "
        "a client without one may still use a token or password.",
    )


class GatewayConfig(_Strict):
    listen: str = Field("0.0.0.0:8480", description="host:port of every endpoint.")
    grpc_listen: str | None = Field(
        None, description="host:port of OTLP/gRPC (default: none, no gRPC listener)."
    )
    kafka: KafkaOut = Field(default_factory=KafkaOut, description="Where data goes.")
    ack_timeout: Duration = Field(10.0, gt=0, description="Wait for Kafka, then 503.")
    retry_after: Duration = Field(1.0, gt=0, description="Retry-After of a 503 (default 1s).")
    max_in_flight_requests: int = Field(64, ge=1, description="Waiting for Kafka; then 503.")
    max_connections: int = Field(
        1024,
        ge=1,
        description="Open HTTP connections at once (a thread each); one more is answered "
        "503 with Retry-After and closed.",
    )
    idle_timeout: Duration = Field(
        120.0,
        gt=0,
        description="An HTTP connection that sends nothing this long, between requests "
        "or in the middle of one, is closed (default 2m).",
    )
    tls: GatewayTLS | None = Field(
        None, description="TLS on the HTTP and gRPC listeners (default off)."
    )
    tenants_file: Path | None = Field(None, description="A YAML file with `tenants:`.")
    tenants: tuple[Tenant, ...] = Field((), description="Tenants given inline.")


class _TenantsFile(_Strict):
    tenants: tuple[Tenant, ...] = Field(description="The tenants.")


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read it: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not YAML: {exc}"]) from None


def load_tenants(config: GatewayConfig) -> tuple[Tenant, ...]:
    """Every tenant, inline and from ``tenants_file`` (read now); names are unique and
    each has a credential, else ConfigError."""
    tenants = list(config.tenants)
    if config.tenants_file is not None:
        raw = _read(config.tenants_file)
        try:
            tenants += _TenantsFile.model_validate(raw).tenants
        except ValidationError as exc:
            raise ConfigError(format_errors(exc)) from None
    errors = []
    seen: set[str] = set()
    for tenant in tenants:
        if tenant.name in seen:
            errors.append(f"tenants: {tenant.name} is defined twice")
        seen.add(tenant.name)
        if (
            tenant.bearer_token_hash is None
            and tenant.basic_auth is None
            and tenant.client_subject is None
        ):
            errors.append(
                f"tenants: {tenant.name} has neither a token nor basic auth nor a client_subject"
            )
    if errors:
        raise ConfigError(errors)
    return tuple(tenants)


def load_config(path: Path) -> GatewayConfig:
    """The gateway's file, validated (ConfigError names each bad field)."""
    raw = _read(path)
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: expected a mapping"])
    if isinstance(raw.get("kafka"), dict):
        raw["kafka"] = with_security_env(raw["kafka"])
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None
    load_tenants(config)
    return config
