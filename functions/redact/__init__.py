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

from collections import Counter

from pydantic import BaseModel

from functions.log_transform import rewrite_batch
from workers.function import Context, FunctionSpec
from workers.records import Batch, Delivered

from .config import RedactConfig
from .core import Redactor

__all__ = ["SPEC"]


class RedactTransform:
    def __init__(self, config: RedactConfig, context: Context) -> None:
        self.redactor = Redactor(config)
        self.name = context.function
        self.m_redactions = context.registry.counter(
            "ferryman_redactions_total", "Matches masked, by rule.", ["function", "rule"])

    def handle(self, batch: Batch) -> Delivered:
        counts: Counter[str] = Counter()
        delivered = rewrite_batch(batch,
                                  lambda streams: self.redactor.streams(streams, counts))
        for rule, count in counts.items():
            self.m_redactions.inc(count, self.name, rule)
        return delivered

    def close(self) -> None:
        pass


def _create(config: BaseModel, context: Context) -> RedactTransform:
    assert isinstance(config, RedactConfig)
    return RedactTransform(config, context)


SPEC = FunctionSpec(
    name="redact",
    kind="transform",
    summary="Mask secrets and personal data in log lines and metadata: logs topic in, "
            "logs topic out.",
    config_model=RedactConfig,
    create=_create,
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
