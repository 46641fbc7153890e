"""The edge log shipper's configuration, in the spirit of Promtail's.

``scrape_configs`` with ``static_configs`` whose labels hold ``__path__`` globs
(``**`` allowed), ``relabel_configs`` over those labels, ``pipeline_stages``
(see :mod:`edge.logs.stages`), and a ``ferryman:`` section instead of Promtail's
``clients``. Differences from Promtail are listed in docs/promtail-migration.md.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ferryman.prom.relabel import RelabelConfig
from ferryman.units import Duration, Size
from workers.errors import ConfigError
from workers.settings import format_errors

from .stages.config import StageConfig

__all__ = ["EdgeLogsConfig", "LogScrapeConfig", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PositionsConfig(_Strict):
    filename: Path = Field(Path("/var/lib/ferryman/positions.json"),
                           description="Where read positions are kept.")


class StaticLogConfig(_Strict):
    targets: tuple[str, ...] = Field(("localhost",), description="Ignored, as in Promtail.")
    labels: dict[str, str] = Field(description="Labels; __path__ holds the file glob.")


class LogScrapeConfig(_Strict):
    job_name: str = Field(description="Name of this set of files.")
    static_configs: tuple[StaticLogConfig, ...] = Field((), description="Files to tail.")
    relabel_configs: tuple[RelabelConfig, ...] = Field((), description="Relabel the files' "
                                                       "labels (drop a file, add a label).")
    pipeline_stages: tuple[StageConfig, ...] = Field((), description="Promtail-style stages "
                                                     "run over each file's lines, in order.")


class GlobalLogs(_Strict):
    external_labels: dict[str, str] = Field(default_factory=dict,
                                            description="Added to every stream (cluster).")


class KafkaOut(_Strict):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    topic: str = Field("ferryman.logs", description="Topic for Loki push batches.")
    tenant: str | None = Field(None, description="Tenant header on every message.")
    acks_timeout: Duration = Field(30.0, description="Wait this long for an acknowledgement.")
    max_message_bytes: Size = Field(
        1 << 20, ge=64 << 10, description="The topic's max.message.bytes (Kafka's default, "
        "1 MiB): a stream's lines are split over messages below it, and a single line "
        "too big for one message is cut with the truncation marker.")
    client_id: str = Field("ferryman-edge-logs", description="Kafka client id (quotas).")


class LogShipperSettings(_Strict):
    kafka: KafkaOut = Field(default_factory=KafkaOut, description="Where batches go.")
    listen: str = Field("127.0.0.1:9902", description="host:port of /metrics and health.")
    host: str = Field(default_factory=socket.gethostname, description="host label.")
    max_line_bytes: Size = Field(256 * 1024, description="Longer lines are cut and marked.")
    batch_bytes: Size = Field(1 << 20, description="Ship a batch at this many line bytes.")
    batch_wait: Duration = Field(1.0, description="...or when its oldest line waited this long.")
    rescan_interval: Duration = Field(5.0, description="How often globs are expanded again.")


class EdgeLogsConfig(_Strict):
    global_: GlobalLogs = Field(default_factory=GlobalLogs, alias="global",
                                description="External labels.")
    positions: PositionsConfig = Field(default_factory=PositionsConfig,
                                       description="Positions file.")
    scrape_configs: tuple[LogScrapeConfig, ...] = Field((), description="Files to ship.")
    ferryman: LogShipperSettings = Field(default_factory=LogShipperSettings,
                                         description="Shipper settings.")


def load_config(path: Path) -> EdgeLogsConfig:
    """Parse and validate; raises ConfigError listing every problem by dotted path."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"<file>: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(["<root>: expected a mapping"])
    data.pop("server", None)  # Promtail's own HTTP server section: ours is ferryman.listen
    try:
        return EdgeLogsConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None
