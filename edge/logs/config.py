"""The edge log shipper's configuration, in the spirit of Promtail's.

``scrape_configs`` with ``static_configs`` whose labels hold ``__path__`` globs
(``**`` allowed), ``file_sd_configs`` and ``kubernetes_sd_configs`` (pod logs; see
:mod:`edge.logs.discovery`), ``journal`` (see :mod:`edge.logs.journal`),
``relabel_configs`` over those labels, ``pipeline_stages`` (see
:mod:`edge.logs.stages`), ferryman's ``pod_labels`` (see :mod:`edge.logs.podlabels`),
and a ``ferryman:`` section instead of Promtail's ``clients``. Differences from
Promtail are listed in docs/promtail-migration.md.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ferryman.errors import ConfigError, format_errors
from ferryman.kafkaconfig import KafkaSecurity, with_security_env
from ferryman.lineage import LineageSettings
from ferryman.prom.relabel import RelabelConfig
from ferryman.units import Duration, Size

from . import envsubst
from .discovery import FileSDConfig, PodLogsSDConfig
from .journal import JournalConfig
from .podlabels import PodLabelsConfig
from .stages.config import StageConfig

__all__ = ["EdgeLogsConfig", "LogScrapeConfig", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PositionsConfig(_Strict):
    filename: Path = Field(
        Path("/var/lib/ferryman/positions.json"), description="Where read positions are kept."
    )
    stale_after: Duration = Field(
        86400.0,
        gt=0,
        description="Forget the position of a file not found for this long while the "
        "shipper runs (24h).",
    )
    sync_period: Duration | None = Field(
        None,
        description="Promtail's; accepted and unused: positions are written after "
        "every acknowledged batch.",
    )
    ignore_invalid_yaml: bool | None = Field(None, description="Promtail's; accepted and unused.")


class DecompressionConfig(_Strict):
    """Promtail's ``decompression`` block: read compressed rotations (gzip, bzip2, xz)
    once, decompressed."""

    enabled: bool = Field(False, description="Read compressed files (default: never).")
    initial_delay: Duration = Field(
        10.0, description="Only files last modified this long ago (10s): still being written."
    )
    format: str | None = Field(
        None,
        description="Only this format (gz, bz2, xz); default: any of them, by magic bytes.",
    )

    @field_validator("format")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and value not in ("gz", "bz2", "xz"):
            raise ValueError(f"format {value!r}: ferryman reads gz, bz2 and xz")
        return value


class StaticLogConfig(_Strict):
    targets: tuple[str, ...] = Field(("localhost",), description="Ignored, as in Promtail.")
    labels: dict[str, str] = Field(description="Labels; __path__ holds the file glob.")


class LogScrapeConfig(_Strict):
    job_name: str = Field(description="Name of this set of files.")
    static_configs: tuple[StaticLogConfig, ...] = Field((), description="Files to tail.")
    relabel_configs: tuple[RelabelConfig, ...] = Field(
        (), description="Relabel the files' labels (drop a file, add a label)."
    )
    file_sd_configs: tuple[FileSDConfig, ...] = Field(
        (),
        description="Label sets with __path__ globs from JSON/YAML files, re-read "
        "when they change.",
    )
    kubernetes_sd_configs: tuple[PodLogsSDConfig, ...] = Field(
        (),
        description="The containers of this node's pods (role pod), __path__ "
        "defaulting to their kubelet log files.",
    )
    journal: JournalConfig | None = Field(
        None, description="Read the systemd journal (default: no journal)."
    )
    pipeline_stages: tuple[StageConfig, ...] = Field(
        (), description="Promtail-style stages run over each file's lines, in order."
    )
    decompression: DecompressionConfig | None = Field(
        None, description="Compressed rotations are never read as text; see there."
    )
    pod_labels: PodLabelsConfig | None = Field(
        None,
        description="Add the labels of each pod to the files of static_configs "
        "globs over the kubelet's pod log directory, before relabeling (default: none).",
    )

    @field_validator("pod_labels", mode="before")
    @classmethod
    def _every_pod_label(cls, value: Any) -> Any:
        # ``labels: "*"`` reads as Promtail users would write it; the model wants a list.
        if isinstance(value, dict) and value.get("labels") == "*":
            return {**value, "labels": ["*"]}
        return value

    @model_validator(mode="after")
    def _stages_are_for_files(self) -> LogScrapeConfig:
        if self.journal is not None and self.pipeline_stages:
            raise ValueError(
                "pipeline_stages do not run on journal entries: give the "
                "journal a scrape config of its own, without pipeline_stages"
            )
        return self


class GlobalLogs(_Strict):
    external_labels: dict[str, str] = Field(
        default_factory=dict, description="Added to every stream (cluster)."
    )


class KafkaOut(KafkaSecurity):
    """Where batches go; ``security_protocol``, ``ssl`` and ``sasl`` as
    :mod:`ferryman.kafkaconfig` describes them (default PLAINTEXT)."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    topic: str = Field("ferryman.logs", description="Topic for Loki push batches.")
    tenant: str | None = Field(None, description="Tenant header on every message.")
    acks_timeout: Duration = Field(30.0, description="Wait this long for an acknowledgement.")
    max_message_bytes: Size = Field(
        1 << 20,
        ge=64 << 10,
        description="The topic's max.message.bytes (Kafka's default, "
        "1 MiB): a stream's lines are split over messages below it, and a single line "
        "too big for one message is cut with the truncation marker.",
    )
    client_id: str = Field("ferryman-edge-logs", description="Kafka client id (quotas).")


class LogShipperSettings(_Strict):
    kafka: KafkaOut = Field(default_factory=KafkaOut, description="Where batches go.")
    listen: str = Field("127.0.0.1:9902", description="host:port of /metrics and health.")
    host: str = Field(default_factory=socket.gethostname, description="host label.")
    max_line_bytes: Size = Field(256 * 1024, description="Longer lines are cut and marked.")
    batch_bytes: Size = Field(1 << 20, description="Ship a batch at this many line bytes.")
    batch_wait: Duration = Field(1.0, description="...or when its oldest line waited this long.")
    rescan_interval: Duration = Field(5.0, description="How often globs are expanded again.")
    rotate_wait: Duration = Field(
        5.0,
        description="A file no scrape config names any more (renamed away, deleted) is "
        "read until it has been at its end this long (5s), then closed.",
    )
    lineage: LineageSettings = Field(
        default_factory=LineageSettings,
        description="Batch lineage: a traceparent on every message and a span per "
        "sampled or failed batch (see ferryman.lineage).",
    )


class EdgeLogsConfig(_Strict):
    global_: GlobalLogs = Field(
        default_factory=GlobalLogs, alias="global", description="External labels."
    )
    positions: PositionsConfig = Field(
        default_factory=PositionsConfig, description="Positions file."
    )
    scrape_configs: tuple[LogScrapeConfig, ...] = Field((), description="What to ship.")
    ferryman: LogShipperSettings = Field(
        default_factory=LogShipperSettings, description="Shipper settings."
    )

    @model_validator(mode="after")
    def _journal_jobs_are_unique(self) -> EdgeLogsConfig:
        # A journal's cursor is saved under its job's name.
        names = [job.job_name for job in self.scrape_configs if job.journal is not None]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(
                f"scrape_configs: job_name {', '.join(twice)} is used by more "
                "than one journal scrape config"
            )
        return self


def load_config(path: Path, *, expand_env: bool = False) -> EdgeLogsConfig:
    """Parse and validate; raises ConfigError listing every problem by dotted path.

    ``expand_env`` (default False; Promtail's ``-config.expand-env``): replace
    ``${VAR}`` and ``${VAR:-default}`` in the file's text with this process's
    environment before parsing, as :func:`edge.logs.envsubst.expand` describes.
    """
    try:
        text = path.read_text()
        if expand_env:
            text = envsubst.expand(text)
        data: Any = yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError([f"<file>: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(["<root>: expected a mapping"])
    data.pop("server", None)  # Promtail's own HTTP server section: ours is ferryman.listen
    ours = data.get("ferryman")
    if isinstance(ours, dict):  # FERRYMAN_KAFKA__SASL__... and friends, over the file
        kafka = with_security_env(ours.get("kafka"))
        if kafka is not None:
            data["ferryman"] = {**ours, "kafka": kafka}
    try:
        return EdgeLogsConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None
