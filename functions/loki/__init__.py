"""``loki``: Kafka → Grafana Loki (or VictoriaLogs, or any Loki push API receiver).

A batch is decoded record by record; each stream is held to Loki's limits (see
:mod:`.encode`), then the entries of the whole batch are grouped by tenant and label set and
pushed (protobuf, snappy) in requests of at most ``max_request_bytes``; a request may hold
entries of several records. What the handler guarantees when it returns:

* a record not listed as dead or retry had every entry it still holds after the limits
  pushed and acknowledged (2xx);
* a record that is not a Loki push message is dead-lettered with the decode error;
* a 400/413 answer to a multi-record request is narrowed down by pushing that request's
  records one by one; only the records still refused are dead-lettered, each with Loki's
  reason (out of order, too old, invalid labels...); other permanent answers (401, 403,
  404) dead-letter the request's records;
* on 429/5xx or when Loki is unreachable, the records of the failed request and of every
  request not sent yet are handed back for retry (with Retry-After, if any). Entries of
  those records that were pushed already are pushed again: Loki drops an entry equal in
  stream, time and line to a stored one, so the replay is idempotent there (VictoriaLogs
  stores it twice).

Counters, counted once a record is finished (delivered or dead-lettered) so retries do not
count twice: ``ferryman_lines_truncated_total{function,reason}``,
``ferryman_lines_dropped_total{function,reason}`` and
``ferryman_labels_truncated_total{function,reason}`` (streams whose labels were cut).
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import LokiConfig
from .sink import LokiSink

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="loki",
    kind="sink",
    summary="Push logs to Grafana Loki or VictoriaLogs (Loki push API, protobuf + snappy).",
    config_model=LokiConfig,
    create=LokiSink,
    example="""\
url: http://127.0.0.1:3100
push_path: /loki/api/v1/push
tenant: null
tenant_from_header: true
max_request_bytes: 1048576
max_line_bytes: 262144
on_long_line: truncate
max_label_names_per_series: 15
on_label_limit: truncate
timeout_s: 30
""",
)
