"""Worker settings: a YAML file and ``FERRYMAN_*`` environment variables.

Environment variables win over the file; nesting uses ``__``, for example
``FERRYMAN_KAFKA__BOOTSTRAP_SERVERS=broker:9092``. Everything is validated at
start and every error is reported with its dotted path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from ferryman.errors import ConfigError, format_errors
from ferryman.kafkaconfig import KafkaSecurity
from ferryman.lineage import LineageSettings

__all__ = [
    "BatchSettings",
    "HttpSettings",
    "KafkaSettings",
    "RetryLaneSettings",
    "RetrySettings",
    "WorkerSettings",
    "load_settings",
]

#: dramatiq cannot delay a message by more than seven days.
_SEVEN_DAYS_S = 7 * 86400.0


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(KafkaSecurity):
    """Where the worker consumes and produces; ``security_protocol``, ``ssl`` and
    ``sasl`` as :mod:`ferryman.kafkaconfig` describes them (default PLAINTEXT)."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap host:port list.")
    input_topic: str = Field(description="Topic the function consumes.")
    group_id: str | None = Field(None, description="Consumer group; default ferryman-<function>.")
    output_topic: str | None = Field(None, description="Where a transform produces its output.")
    dead_letter_topic: str = Field("ferryman.dlq", description="Where undeliverable records go.")
    max_poll_records: int = Field(500, ge=1, description="Records per poll at most.")
    session_timeout_ms: int = Field(10_000, ge=1000, description="Group session timeout.")
    max_poll_interval_ms: int = Field(300_000, ge=1000, description="Max time between polls.")


class BatchSettings(_Section):
    max_records: int = Field(500, ge=1, description="Deliver once this many records are held.")
    max_bytes: int = Field(16 * 2**20, ge=1, description="...or this many payload bytes.")
    max_wait_s: float = Field(0.5, gt=0, description="...or the oldest record waited this long.")


class RetrySettings(_Section):
    """Retrying in process, while the batch holds its partition.

    Delays between attempts are drawn with full jitter below a cap that doubles from
    ``initial_backoff_s`` up to ``max_backoff_s``; a delay the backend asked for is a
    floor.

    Without a retry lane, a record is dead-lettered as poison only on evidence: in the
    attempt that refused it, the backend took other records of that attempt, and the
    sink pinned the refusal on the record itself (``Delivered.refused``: sent, and
    answered with a status other than 408, 429, 502, 503, 504 or per-item backpressure).
    It goes with the backend's reason once so refused ``partial_max_attempts`` times
    (default 10) or ``partial_max_age_s`` seconds (default 600) after the first such
    refusal, whichever comes first, in an attempt that refuses it so again. An outage
    or backpressure, even one starting mid-batch, and records handed back unsent never
    count: they hold the partition for as long as it takes. Records handed back
    ``partial_max_attempts`` times or for ``partial_max_age_s`` (attempts, on evidence
    or not) widen their batch with the newer records of their partitions, so a record
    retried alone gets others to be compared with (see ``workers.widening``). With a
    retry lane configured, these bounds do not apply: records refused while the backend
    takes others of their batch go to the lane once its budget is spent, and its
    ``max_age_s`` applies.
    """

    initial_backoff_s: float = Field(
        0.2, gt=0, description="Cap of the first retry delay (default 0.2)."
    )
    max_backoff_s: float = Field(30.0, gt=0, description="The cap doubles up to this (default 30).")
    delivery_timeout_s: float = Field(
        30.0, gt=0, description="Timeout of one delivery call (default 30)."
    )
    partial_max_attempts: int | None = Field(
        10,
        ge=1,
        description="Without a retry lane, dead-letter a record refused on "
        "evidence (about itself, while the backend took others of the same attempt) this "
        "many times; records handed back this many times widen their batch (default 10; "
        "null: no bound).",
    )
    partial_max_age_s: float | None = Field(
        600.0,
        gt=0,
        description="...or this many seconds after its first refusal on "
        "evidence (widening: after it was first handed back) (default 600; null: no "
        "bound).",
    )

    @model_validator(mode="after")
    def _coherent(self) -> RetrySettings:
        if self.initial_backoff_s > self.max_backoff_s:
            raise ValueError("initial_backoff_s is greater than max_backoff_s")
        return self


class RetryLaneSettings(_Section):
    """The dramatiq retry lane on Redis (off unless this section is present).

    Records a backend refuses for now (``Delivered.retry``) while it takes the rest of
    their batch are retried in process until the budget is spent (``budget_attempts``
    attempts or ``budget_s`` seconds, whichever comes first), then handed to the lane so
    the partition moves on; ``ferryman worker NAME --retry-lane`` retries them from
    there with exponential backoff until ``max_age_s``, then dead-letters them.
    """

    redis_url: str = Field(description="Redis holding the lane, e.g. redis://host:6379/0.")
    namespace: str = Field(
        "ferryman", min_length=1, description="Prefix of the lane's Redis keys (default ferryman)."
    )
    queue: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9._-]*$",
        description="dramatiq queue; default retry.<function>.",
    )
    budget_attempts: int | None = Field(
        3,
        ge=1,
        description="Hand records to the lane after "
        "this many delivery attempts in process (default 3).",
    )
    budget_s: float | None = Field(
        30.0, gt=0, description="...or after this many seconds of trying in process (default 30)."
    )
    min_backoff_s: float = Field(1.0, gt=0, description="First delay in the lane (default 1).")
    max_backoff_s: float = Field(
        300.0, gt=0, le=_SEVEN_DAYS_S, description="Delays double up to this (default 300)."
    )
    max_age_s: float = Field(
        86400.0,
        gt=0,
        le=_SEVEN_DAYS_S,
        description="Dead-letter a record still refused this long after "
        "its first refusal (default 1 day, at most 7).",
    )
    max_in_flight: int = Field(
        100_000,
        ge=1,
        description="Records the lane may hold at once; beyond that "
        "the worker keeps retrying in process (default "
        "100000).",
    )
    timeout_s: float = Field(5.0, gt=0, description="Timeout of one Redis call (default 5).")
    heartbeat_timeout_s: float = Field(
        60.0,
        ge=5,
        description="A retry worker silent this long (killed, frozen) is taken "
        "for dead: the messages it held go back to the lane (default 60).",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return url

    @model_validator(mode="after")
    def _coherent(self) -> RetryLaneSettings:
        if self.budget_attempts is None and self.budget_s is None:
            raise ValueError("set budget_attempts, budget_s or both")
        if self.min_backoff_s > self.max_backoff_s:
            raise ValueError("min_backoff_s is greater than max_backoff_s")
        return self

    def queue_for(self, function: str) -> str:
        return self.queue or f"retry.{function}"


class HttpSettings(_Section):
    listen: str = Field(
        "127.0.0.1:0",
        description="host:port of /metrics, /healthz, /readyz; port 0 picks a free one.",
    )


class WorkerSettings(BaseSettings):
    """Everything one worker process needs; ``config`` is the function's own section."""

    model_config = SettingsConfigDict(
        env_prefix="FERRYMAN_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    function: str = Field(description="Registered function name (ferryman functions list).")
    kafka: KafkaSettings
    batch: BatchSettings = BatchSettings()
    retry: RetrySettings = RetrySettings()
    http: HttpSettings = HttpSettings()
    retry_lane: RetryLaneSettings | None = Field(
        None, description="The dramatiq retry lane; off when absent."
    )
    lineage: LineageSettings = Field(
        default_factory=LineageSettings,
        description="Batch lineage: spans of sampled and failed batches, linked to the "
        "edge's (see ferryman.lineage).",
    )
    shutdown_deadline_s: float = Field(20.0, gt=0, description="SIGTERM drain deadline.")
    config: dict[str, Any] = Field(default_factory=dict, description="The function's config.")

    @property
    def group_id(self) -> str:
        return self.kafka.group_id or f"ferryman-{self.function}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load_settings(path: Path | None, **overrides: Any) -> WorkerSettings:
    """Read ``path`` (YAML, optional), then the environment, then ``overrides``.

    Raises :class:`ConfigError` listing every problem by dotted path.
    """
    yaml_file = str(path) if path is not None else None
    if path is not None and not path.is_file():
        raise ConfigError([f"<file>: {path} does not exist"])
    loaded = type(
        "LoadedWorkerSettings",
        (WorkerSettings,),
        {
            "model_config": SettingsConfigDict(
                **{**WorkerSettings.model_config, "yaml_file": yaml_file}
            ),
        },
    )
    try:
        settings: WorkerSettings = loaded(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None
    return settings
