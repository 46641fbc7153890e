"""The edge metrics shipper's configuration: a Prometheus configuration file (the
subset an operator pastes from an existing Prometheus) plus a ``ferryman:`` section.

Top-level Prometheus sections that do not apply to a shipper (``rule_files``,
``alerting``, ``remote_write``, ...) are ignored with a warning; anything unknown
inside a scrape config is an error, so a target is never silently not scraped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.discovery.config import FileSDConfig, KubernetesSDConfig, StaticConfig
from ferryman.errors import ConfigError, format_errors
from ferryman.kafkaconfig import KafkaSecurity, with_security_env
from ferryman.lineage import LineageSettings
from ferryman.prom.relabel import RelabelConfig
from ferryman.units import Duration, Size

__all__ = [
    "Authorization",
    "BasicAuth",
    "EdgeMetricsConfig",
    "GlobalConfig",
    "ScrapeConfig",
    "ShipperSettings",
    "TLSConfig",
    "load_config",
]

log = logging.getLogger("ferryman.edge.metrics")

IGNORED_SECTIONS = (
    "rule_files",
    "alerting",
    "remote_write",
    "remote_read",
    "storage",
    "tracing",
    "otlp",
    "runtime",
    "scrape_config_files",
)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BasicAuth(_Strict):
    username: str = Field(description="User name.")
    password: str | None = Field(None, description="Password.")
    password_file: Path | None = Field(None, description="File holding the password.")

    def secret(self) -> str:
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return self.password or ""


class Authorization(_Strict):
    type: str = Field("Bearer", description="Authorization scheme (default Bearer).")
    credentials: str | None = Field(None, description="The credentials.")
    credentials_file: Path | None = Field(None, description="File holding the credentials.")

    def header(self) -> str:
        creds = (
            self.credentials_file.read_text().strip()
            if self.credentials_file
            else self.credentials or ""
        )
        return f"{self.type} {creds}"


class TLSConfig(_Strict):
    ca_file: Path | None = Field(None, description="CA to verify the target (default: system).")
    cert_file: Path | None = Field(None, description="Client certificate.")
    key_file: Path | None = Field(None, description="Client key.")
    server_name: str | None = Field(None, description="SNI / expected server name.")
    insecure_skip_verify: bool = Field(False, description="Do not verify the target.")


class ScrapeConfig(_Strict):
    job_name: str = Field(description="The job label of every target.")
    scrape_interval: Duration | None = Field(None, description="Default: global.")
    scrape_timeout: Duration | None = Field(None, description="Default: global.")
    metrics_path: str = Field("/metrics", description="HTTP path.")
    scheme: Literal["http", "https"] = Field("http", description="http or https.")
    params: dict[str, tuple[str, ...]] = Field(default_factory=dict, description="URL params.")
    honor_labels: bool = Field(False, description="Scraped labels win over target labels.")
    honor_timestamps: bool = Field(True, description="Use the timestamps the target exposes.")
    sample_limit: int = Field(
        0,
        ge=0,
        description="Fail the scrape above this many samples "
        "after metric relabeling (0: no limit).",
    )
    label_limit: int = Field(0, ge=0, description="Max labels per series (0: no limit).")
    label_name_length_limit: int = Field(0, ge=0, description="0: no limit.")
    label_value_length_limit: int = Field(0, ge=0, description="0: no limit.")
    body_size_limit: Size = Field(0, description="Fail the scrape above this size (0: none).")
    basic_auth: BasicAuth | None = Field(None, description="Basic auth for the targets.")
    authorization: Authorization | None = Field(None, description="Authorization header.")
    bearer_token: str | None = Field(None, description="Deprecated form of authorization.")
    bearer_token_file: Path | None = Field(None, description="Deprecated form, from a file.")
    tls_config: TLSConfig = Field(default_factory=TLSConfig, description="TLS to targets.")
    static_configs: tuple[StaticConfig, ...] = Field((), description="Fixed targets.")
    file_sd_configs: tuple[FileSDConfig, ...] = Field((), description="Targets from files.")
    kubernetes_sd_configs: tuple[KubernetesSDConfig, ...] = Field(
        (), description="Targets from the Kubernetes API."
    )
    relabel_configs: tuple[RelabelConfig, ...] = Field((), description="Target relabeling.")
    metric_relabel_configs: tuple[RelabelConfig, ...] = Field(
        (), description="Sample relabeling, after the scrape."
    )

    @model_validator(mode="after")
    def _auth_once(self) -> ScrapeConfig:
        forms = [
            self.basic_auth is not None,
            self.authorization is not None,
            self.bearer_token is not None or self.bearer_token_file is not None,
        ]
        if sum(forms) > 1:
            raise ValueError("at most one of basic_auth, authorization, bearer_token")
        return self

    def auth_header(self) -> str | None:
        if self.authorization is not None:
            return self.authorization.header()
        if self.bearer_token_file is not None:
            return f"Bearer {self.bearer_token_file.read_text().strip()}"
        if self.bearer_token is not None:
            return f"Bearer {self.bearer_token}"
        return None


class GlobalConfig(_Strict):
    model_config = ConfigDict(frozen=True, extra="ignore")  # evaluation_interval & co.

    scrape_interval: Duration = Field(60.0, description="Default 1m, as Prometheus.")
    scrape_timeout: Duration = Field(10.0, description="Default 10s, as Prometheus.")
    external_labels: dict[str, str] = Field(
        default_factory=dict, description="Added to every series (e.g. cluster)."
    )


class KafkaOut(KafkaSecurity):
    """Where batches go; ``security_protocol``, ``ssl`` and ``sasl`` as
    :mod:`ferryman.kafkaconfig` describes them (default PLAINTEXT)."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    topic: str = Field("ferryman.metrics", description="Topic for remote-write batches.")
    tenant: str | None = Field(None, description="Tenant header on every message.")
    acks_timeout: Duration = Field(30.0, description="Wait this long for an acknowledgement.")


class BufferSettings(_Strict):
    directory: Path = Field(
        Path("/var/lib/ferryman/edge-metrics"), description="Disk buffer directory."
    )
    max_bytes: Size = Field(
        1 << 30,
        description="Bound of the disk buffer (default 1GiB); "
        "oldest data is dropped and counted beyond it.",
    )


class ShipperSettings(_Strict):
    kafka: KafkaOut = Field(default_factory=KafkaOut, description="Where batches go.")
    buffer: BufferSettings = Field(default_factory=BufferSettings, description="Disk buffer.")
    listen: str = Field("127.0.0.1:9901", description="host:port of /metrics and health.")
    max_samples_per_message: int = Field(5000, ge=1, description="Samples per Kafka message.")
    flush_interval: Duration = Field(1.0, description="Flush partial messages this often.")
    buckets: int = Field(
        16,
        ge=1,
        le=4096,
        description="Series hash buckets; a bucket maps to one partition, keeping order.",
    )
    lineage: LineageSettings = Field(
        default_factory=LineageSettings,
        description="Batch lineage: a traceparent on every message and a span per "
        "sampled or failed batch (see ferryman.lineage).",
    )


class EdgeMetricsConfig(_Strict):
    global_: GlobalConfig = Field(
        default_factory=GlobalConfig, alias="global", description="Prometheus global section."
    )
    scrape_configs: tuple[ScrapeConfig, ...] = Field((), description="Jobs to scrape.")
    ferryman: ShipperSettings = Field(
        default_factory=ShipperSettings, description="Shipper settings."
    )

    @model_validator(mode="after")
    def _unique_jobs(self) -> EdgeMetricsConfig:
        names = [c.job_name for c in self.scrape_configs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate job_name: {', '.join(duplicates)}")
        return self

    def interval(self, job: ScrapeConfig) -> float:
        return job.scrape_interval or self.global_.scrape_interval

    def timeout(self, job: ScrapeConfig) -> float:
        timeout = job.scrape_timeout or self.global_.scrape_timeout
        return min(timeout, self.interval(job))


def load_config(path: Path) -> EdgeMetricsConfig:
    """Parse and validate; raises ConfigError listing every problem by dotted path."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"<file>: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(["<root>: expected a mapping"])
    for section in IGNORED_SECTIONS:
        if data.pop(section, None) is not None:
            log.warning("ignoring the %r section: a shipper does not use it", section)
    ours = data.get("ferryman")
    if isinstance(ours, dict):  # FERRYMAN_KAFKA__SASL__... and friends, over the file
        kafka = with_security_env(ours.get("kafka"))
        if kafka is not None:
            data["ferryman"] = {**ours, "kafka": kafka}
    try:
        return EdgeMetricsConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None
