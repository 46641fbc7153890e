"""The one error hierarchy of ferryman.

    FerrymanError                 root of every error ferryman raises on purpose
     ├── ConfigError              the configuration is invalid (start-up only)
     ├── KafkaStartError          Kafka refused our certificate or login (start-up only)
     └── workers.errors.DeliveryError   a batch was not delivered (the function contract)
          ├── Permanent           dead-letter now: retrying can never succeed
          └── Throttled           retry after the delay the backend asked for

Errors of the wire decoders (:class:`ferryman.wire.protobuf.DecodeError`) are
``ValueError`` subclasses: bad bytes are a value problem, routed, never fatal.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["ConfigError", "FerrymanError", "KafkaStartError", "format_errors"]


class FerrymanError(Exception):
    """Raised by ferryman itself; the root every other ferryman error derives from."""


class ConfigError(FerrymanError):
    """Raised at start when settings are invalid; lists every error by its dotted path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  {e}" for e in errors))
        self.errors = errors


class KafkaStartError(FerrymanError):
    """Raised at start when Kafka refused the connection for good: its certificate did
    not verify, or it refused the SASL login. The message is one line naming the
    broker, never a secret."""


def format_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    """One ``dotted.path: message`` line per error pydantic found."""
    out = []
    for error in exc.errors():
        path = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        out.append(f"{path or '<root>'}: {error['msg']}")
    return out
