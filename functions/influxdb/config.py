"""Configuration of the ``influxdb`` sink."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from functions._http import Credentials, HttpClientConfig, TLSConfig

__all__ = ["InfluxDBConfig", "TLSConfig"]

_V1_ONLY = ("database", "retention_policy", "username", "password")
_V2_ONLY = ("org", "bucket", "token")


class InfluxDBConfig(HttpClientConfig):
    """Where and how to write line protocol: InfluxDB 1.x ``/write`` (``api: v1``) or
    InfluxDB 2.x ``/api/v2/write`` (``api: v2``); VictoriaMetrics accepts both."""

    auth_fields: ClassVar[tuple[str, ...]] = ("username", "token")

    url: str = Field(
        description="Base URL, e.g. http://influxdb:8086; the API path "
        "(/write or /api/v2/write) is appended."
    )
    api: Literal["v1", "v2"] = Field(
        "v1",
        description="v1: /write with database, "
        "retention_policy, username/password (default). "
        "v2: /api/v2/write with org, bucket and token.",
    )
    database: str | None = Field(None, description="v1: the database (`db`); required for v1.")
    retention_policy: str | None = Field(
        None, description="v1: the retention policy (`rp`); default: the database's default."
    )
    username: str | None = Field(
        None,
        description="v1: user, sent with `password` as HTTP "
        "basic auth (what the u/p parameters do, but kept out of "
        "URLs and access logs). Default: none.",
    )
    password: str | None = Field(None, description="v1: password of `username`.")
    org: str | None = Field(None, description="v2: organisation name or id; required for v2.")
    bucket: str | None = Field(None, description="v2: bucket; required for v2.")
    token: str | None = Field(
        None, description="v2: API token, sent as `Authorization: Token ...`. Default: none."
    )
    precision: Literal["ns", "us", "ms", "s"] = Field(
        "ns",
        description="Timestamp precision written (default ns). Prometheus samples carry "
        "ms, so `s` truncates to the second.",
    )
    measurement: str | None = Field(
        None,
        description="Default none: the measurement is the metric name and the sample "
        "is field `field` (InfluxDB 1.x's own Prometheus layout). Set it to "
        "write every series to this one measurement with the metric name "
        "as the field key instead.",
    )
    field: str = Field(
        "value",
        description="Field key of the sample when the measurement is "
        "the metric name (default `value`).",
    )
    string_fields: tuple[str, ...] = Field(
        (),
        description="Labels written as string fields instead of tags (for "
        "high-cardinality labels such as request ids). Default: none.",
    )
    escape_backslashes: bool = Field(
        False,
        description="Write each backslash in names and tag values as two. InfluxDB "
        "1.x and 2.x read backslashes literally (default false); "
        "VictoriaMetrics and Telegraf read `\\\\` as one backslash: set "
        "true for them.",
    )
    cluster_from_header: bool = Field(
        True,
        description="Tag a series that has no `cluster` label with the message's "
        "`cluster` header (default true).",
    )
    max_lines: int = Field(
        5000,
        ge=1,
        description="Lines per request at most (default 5000, InfluxDB's recommended batch).",
    )
    max_bytes: int = Field(
        4 * 2**20, ge=1024, description="Uncompressed bytes per request at most (default 4 MiB)."
    )
    gzip: bool = Field(False, description="Send request bodies gzip-compressed (default false).")

    @field_validator("measurement")
    @classmethod
    def _measurement(cls, measurement: str | None) -> str | None:
        if measurement is not None and (not measurement or measurement.startswith("#")):
            raise ValueError(
                "measurement must be non-empty and not start with '#' (a comment in line protocol)"
            )
        return measurement

    @field_validator("field")
    @classmethod
    def _field(cls, field: str) -> str:
        if not field or field == "time":
            raise ValueError("field must be non-empty and not `time` (reserved by InfluxDB)")
        return field

    @model_validator(mode="after")
    def _api_options(self) -> InfluxDBConfig:
        other = _V2_ONLY if self.api == "v1" else _V1_ONLY
        wrong = [name for name in other if getattr(self, name) is not None]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} apply to the other api, not {self.api}")
        if self.api == "v1" and not self.database:
            raise ValueError("api v1 needs database")
        if self.api == "v2" and not (self.org and self.bucket):
            raise ValueError("api v2 needs org and bucket")
        if (self.username is None) != (self.password is None):
            raise ValueError("set username and password together")
        if self.measurement is not None and self.field != "value":
            raise ValueError(
                "field applies when the measurement is the metric name; with "
                "measurement set the metric name is the field key"
            )
        return self

    def credentials(self) -> Credentials:
        if self.username is not None and self.password is not None:
            return Credentials(basic=(self.username, self.password))
        if self.token:
            return Credentials(authorization=f"Token {self.token}")
        return Credentials()
