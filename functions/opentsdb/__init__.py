"""``opentsdb``: Kafka → OpenTSDB 2.x (or VictoriaMetrics' OpenTSDB listener) via ``/api/put``.

A batch is decoded record by record, turned into JSON datapoints (see :mod:`.encode` for
the mapping, name rules and tag limit) and put in chunks of ``max_datapoints``; a chunk
may hold datapoints of several records. Every put asks for ``details`` (per-datapoint
errors) and, by default, ``sync`` (answer once stored, not once queued). What the handler
guarantees when it returns:

* a record not listed as dead or retry had every datapoint stored (OpenTSDB said so);
* a record that is not a remote-write message is dead-lettered with the decode error;
* when OpenTSDB lists refused datapoints, each is pinned on its record: storage trouble
  hands the record back for retry, a refusal of the datapoint itself dead-letters the
  record with OpenTSDB's error; the chunk's other records are done (see :mod:`.classify`);
* a 400 that lists nothing, for a multi-record chunk, is narrowed down by putting that
  chunk's records one by one; other permanent answers dead-letter the chunk's records;
* on 429/5xx or when OpenTSDB is unreachable, the records of the failed chunk and of every
  chunk not sent yet are handed back for retry (with Retry-After, if any). Their
  datapoints that were stored already are put again with the same metric, tags, timestamp
  and value: OpenTSDB writes the same cell again (VictoriaMetrics keeps a duplicate
  sample unless deduplication is on).

Counters: ``ferryman_samples_skipped_total{function,reason}``,
``ferryman_names_sanitized_total{function,what}`` and
``ferryman_tags_dropped_total{function}``, counted once a record is finished (delivered
or dead-lettered), so retries do not count twice.
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import OpenTSDBConfig
from .sink import OpenTSDBSink

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="opentsdb",
    kind="sink",
    summary="Put metrics into OpenTSDB over HTTP /api/put, within its name and tag limits.",
    config_model=OpenTSDBConfig,
    create=OpenTSDBSink,
    example="""\
url: http://127.0.0.1:4242
max_datapoints: 50
max_tags: 8
keep_tags: [cluster]
placeholder_tag: {key: cluster, value: unknown}
sync: true
sync_timeout_s: 20
timeout_s: 30
""",
)
