"""How a ferryman process talks to Kafka securely: TLS, SASL and where the password is.

Every Kafka section of every config (edge shippers, workers, retry workers,
``dlq replay``) takes these fields next to ``bootstrap_servers``::

    security_protocol: SASL_SSL          # PLAINTEXT (default), SSL, SASL_PLAINTEXT
    ssl:
      ca_file: /etc/ferryman/kafka-ca.pem      # default: the system's trust store
      cert_file: /etc/ferryman/client.pem      # mutual TLS, optional
      key_file: /etc/ferryman/client.key
      check_hostname: true                     # default true
    sasl:
      mechanism: SCRAM-SHA-512           # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (default)
      username: ferryman
      password_file: /run/secrets/kafka  # or password_env: KAFKA_PASSWORD

The password itself is never a config value: it is read from its file or variable
at start (:meth:`KafkaSecurity.credentials`) and travels as a
:class:`pydantic.SecretStr`, so no repr, log line or error message shows it.

The same fields may come from the environment, in every process, over what the file
says: ``FERRYMAN_KAFKA__SECURITY_PROTOCOL``, ``FERRYMAN_KAFKA__SSL__CA_FILE``,
``FERRYMAN_KAFKA__SASL__USERNAME``, ``FERRYMAN_KAFKA__SASL__PASSWORD_FILE`` and so on
(workers read every ``FERRYMAN_*`` variable this way; the shippers read these, see
:func:`with_security_env`). A Kubernetes overlay sets them once for all pods, with the
Secret mounted as files.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .errors import ConfigError

__all__ = [
    "PLAINTEXT_CREDENTIALS",
    "RECONNECT_BACKOFF_MAX_MS",
    "KafkaCredentials",
    "KafkaSASL",
    "KafkaSecurity",
    "KafkaTLS",
    "with_security_env",
]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

#: The longest wait between two attempts to reach a broker. kafka-python doubles its
#: wait up to 30 s, so a client started a few seconds before Kafka would sleep through
#: its 30 s bootstrap deadline; Kafka's own clients stop at 1 s.
RECONNECT_BACKOFF_MAX_MS = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaTLS(_Strict):
    """TLS to the brokers (``security_protocol`` SSL or SASL_SSL)."""

    ca_file: Path | None = Field(
        None, description="CA bundle the brokers' certificates are checked against "
        "(default: the system's trust store)."
    )  # fmt: skip
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="The client certificate's key.")
    check_hostname: bool = Field(
        True, description="Check that a broker's certificate names it (default true)."
    )

    @model_validator(mode="after")
    def _key_with_cert(self) -> KafkaTLS:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


class KafkaSASL(_Strict):
    """SASL authentication (``security_protocol`` SASL_PLAINTEXT or SASL_SSL)."""

    mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default)."
    )
    username: str = Field(min_length=1, description="SASL user name.")
    password_file: Path | None = Field(
        None, description="File holding the password (trailing newline ignored)."
    )
    password_env: str | None = Field(
        None, min_length=1, description="Environment variable holding the password."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "a password is not accepted in the configuration: use password_file or password_env"
            )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> KafkaSASL:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("set exactly one of password_file and password_env")
        return self

    def password(self, where: str = "kafka.sasl") -> SecretStr:
        """The password, read now; ConfigError (never showing it) when it cannot be."""
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if not value:
                raise ConfigError(
                    [f"{where}.password_env: the variable {self.password_env} is not set"]
                )
            return SecretStr(value)
        assert self.password_file is not None
        try:
            value = self.password_file.read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise ConfigError(
                [f"{where}.password_file: cannot read {self.password_file}: {reason}"]
            ) from None
        if not value:
            raise ConfigError([f"{where}.password_file: {self.password_file} is empty"])
        return SecretStr(value)


class KafkaSecurity(_Strict):
    """The security fields of a Kafka section; every config's Kafka section extends it."""

    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    ssl: KafkaTLS | None = Field(
        None, description="TLS settings (SSL, SASL_SSL); default: system trust store."
    )
    sasl: KafkaSASL | None = Field(
        None, description="SASL settings; required by SASL_PLAINTEXT and SASL_SSL."
    )

    @model_validator(mode="after")
    def _coherent(self) -> KafkaSecurity:
        uses_sasl = self.security_protocol.startswith("SASL_")
        uses_tls = self.security_protocol.endswith("SSL")
        if uses_sasl and self.sasl is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs a sasl section")
        if not uses_sasl and self.sasl is not None:
            raise ValueError(
                f"a sasl section needs security_protocol SASL_SSL or SASL_PLAINTEXT, "
                f"not {self.security_protocol}"
            )
        if not uses_tls and self.ssl is not None:
            raise ValueError(
                f"an ssl section needs security_protocol SSL or SASL_SSL, "
                f"not {self.security_protocol}"
            )
        return self

    def credentials(self, where: str = "kafka") -> KafkaCredentials:
        """Read the password and the certificates now (at start); raises ConfigError
        naming the field when one cannot be read."""
        context: ssl.SSLContext | None = None
        tls = self.ssl or KafkaTLS()
        if self.security_protocol.endswith("SSL"):
            context = _ssl_context(tls, f"{where}.ssl")
        sasl = self.sasl
        return KafkaCredentials(
            security_protocol=self.security_protocol,
            ssl_context=context,
            ca_file=tls.ca_file,
            check_hostname=tls.check_hostname,
            sasl_mechanism=sasl.mechanism if sasl else None,
            username=sasl.username if sasl else None,
            password=sasl.password(f"{where}.sasl") if sasl else None,
        )


def _ssl_context(tls: KafkaTLS, where: str) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"{where}.ca_file: cannot load {tls.ca_file}: {_reason(exc)}"]) from None
    context.check_hostname = tls.check_hostname
    if tls.cert_file is not None:
        try:
            context.load_cert_chain(
                str(tls.cert_file), str(tls.key_file) if tls.key_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [f"{where}.cert_file: cannot load {tls.cert_file}: {_reason(exc)}"]
            ) from None
    return context


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)


@dataclass(frozen=True, repr=False)
class KafkaCredentials:
    """What a Kafka client needs to connect, read at start; its repr hides the secret.

    ``PLAINTEXT`` (the default :data:`PLAINTEXT_CREDENTIALS`) adds nothing to a client.
    """

    security_protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    ca_file: Path | None = None
    check_hostname: bool = True
    sasl_mechanism: str | None = None
    username: str | None = None
    password: SecretStr | None = None

    def __repr__(self) -> str:
        return (
            f"KafkaCredentials({self.security_protocol}, sasl={self.sasl_mechanism}, "
            f"user={self.username}, password={'**********' if self.password else None})"
        )

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and
        KafkaAdminClient: the reconnect backoff every client shares, then TLS and SASL
        (nothing more for PLAINTEXT)."""
        out: dict[str, Any] = {"reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS}
        if self.security_protocol == "PLAINTEXT":
            return out
        out["security_protocol"] = self.security_protocol
        if self.ssl_context is not None:
            out["ssl_context"] = self.ssl_context
            out["ssl_check_hostname"] = self.check_hostname
        if self.sasl_mechanism is not None and self.password is not None:
            out["sasl_mechanism"] = self.sasl_mechanism
            out["sasl_plain_username"] = self.username
            out["sasl_plain_password"] = self.password.get_secret_value()
        return out


#: No TLS, no SASL: what a Kafka section without security settings gives.
PLAINTEXT_CREDENTIALS = KafkaCredentials()


#: The prefix of the environment variables that set a Kafka section's security fields.
ENV_PREFIX = "FERRYMAN_KAFKA__"
_ENV_SECTIONS = ("SSL", "SASL")


def with_security_env(section: object, environ: Mapping[str, str] = os.environ) -> object:
    """``section`` (a Kafka section as read from a file) with the security fields the
    environment sets laid over it: ``FERRYMAN_KAFKA__SECURITY_PROTOCOL``, and
    ``FERRYMAN_KAFKA__SSL__<FIELD>`` / ``FERRYMAN_KAFKA__SASL__<FIELD>`` (validation
    refuses a field :class:`KafkaTLS` or :class:`KafkaSASL` does not have, a password
    among them). Other variables are left alone. A missing
    section (None) stays missing unless the environment sets something; another section
    that is not a mapping is returned as it is, for validation to report."""
    if section is not None and not isinstance(section, dict):
        return section
    merged: dict[str, Any] = dict(section or {})
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        outer, _, inner = name[len(ENV_PREFIX) :].partition("__")
        if outer == "SECURITY_PROTOCOL" and not inner:
            merged["security_protocol"] = value
        elif outer in _ENV_SECTIONS and inner:
            nested = merged.get(outer.lower())
            nested = dict(nested) if isinstance(nested, dict) else {}
            nested[inner.lower()] = value
            merged[outer.lower()] = nested
    return merged if merged or section is not None else None
