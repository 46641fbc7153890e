"""``redact``: a transform from one logs topic to another that masks secrets and
personal data in every line and, by default, in every structured metadata value.

Rules are regexes with a replacement, applied in order (the enabled defaults first,
then the configured ones), each to the result of the one before. The defaults, all
on unless switched off one by one under ``defaults``: bearer tokens, ``token=`` /
``api_key=``-style parameters, passwords in URLs, e-mail addresses (see
:data:`.config.DEFAULT_RULES`). Labels are not touched: they name streams, and a
secret in a label is a shipper misconfiguration to fix at the edge.

Each message gives one message (same key and headers); undecodable ones are
dead-lettered with the reason. Counter: ``ferryman_redactions_total{function,rule}``
(matches replaced).
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import RedactConfig
from .transform import RedactTransform

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="redact",
    kind="transform",
    summary="Mask secrets and personal data in log lines and metadata: logs topic in, "
    "logs topic out.",
    config_model=RedactConfig,
    create=RedactTransform,
    example="""\
defaults:
  bearer_token: true
  query_token: true
  url_password: true
  email: true
rules:
  - name: card_number
    regex: '\\b(?:\\d[ -]?){12}(\\d{4})\\b'
    replacement: '****\\g<1>'
metadata: true
""",
)
