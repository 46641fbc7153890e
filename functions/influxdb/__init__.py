"""``influxdb``: Kafka → InfluxDB 1.x / 2.x (or VictoriaMetrics) in line protocol.

A batch is decoded record by record, turned into lines (see :mod:`.encode` for the
mapping and escaping rules) and written in chunks of ``max_lines`` / ``max_bytes``; a
chunk may hold lines of several records. What the handler guarantees when it returns:

* a record not listed as dead or retry had every line written and acknowledged (2xx);
* a record that is not a remote-write message is dead-lettered with the decode error;
* a refusal of the data (400 partial write, 413, 422) of a multi-record chunk is narrowed
  down by sending that chunk's records one by one; only the records still refused are
  dead-lettered, each with InfluxDB's reason (see :mod:`.classify`); other permanent
  answers (401, 403, 404 database not found) dead-letter the chunk's records;
* on 429/5xx or when InfluxDB is unreachable, the records of the failed chunk and of every
  chunk not sent yet are handed back for retry (with Retry-After, if any). Lines of those
  records that were written already are written again: InfluxDB overwrites a point with
  the same measurement, tags and timestamp, so the replay is idempotent.

Counters: ``ferryman_samples_skipped_total{function,reason}`` and
``ferryman_names_sanitized_total{function,what}``, counted once a record is finished
(delivered or dead-lettered), so retries do not count twice.
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import InfluxDBConfig
from .sink import InfluxDBSink

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="influxdb",
    kind="sink",
    summary="Write metrics to InfluxDB 1.x (/write) or 2.x (/api/v2/write) in line protocol.",
    config_model=InfluxDBConfig,
    create=InfluxDBSink,
    example="""\
url: http://127.0.0.1:8086
api: v1
database: metrics
retention_policy: null
precision: ns
measurement: null
field: value
max_lines: 5000
gzip: false
timeout_s: 30
""",
)
