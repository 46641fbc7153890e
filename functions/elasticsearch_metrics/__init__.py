"""``elasticsearch_metrics``: Kafka (remote-write) → Elasticsearch, one document per sample.

Guarantees, per batch:

* templates are installed (idempotent PUTs) before the first document is written;
* a record is acknowledged only when every one of its documents was stored (201) or
  found already stored (409: the ``_id`` is derived from series and timestamp and
  written with ``create``, so replays add nothing);
* documents refused for now (429, 5xx, rejected execution) send their records back
  to the runtime in ``retry``; re-sending a record's other documents just yields 409s;
* documents refused for good (400 mapping errors, …) are dead-lettered one by one
  as JSON documents with the reason — once the rest of their record is stored;
* a record that is not a remote-write message is dead-lettered whole;
* NaN (including stale markers) and ±Inf samples are skipped and counted in
  ``ferryman_samples_skipped_total{function,reason}``.

Not guaranteed: dedup across backing indices. A data stream that rolls over keeps
older ``_id``s in older backing indices, so a replay reaching back past a rollover
can store those samples again. ``index`` mode names indices after the sample's own
time and has no such gap.
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from workers.function import Context, FunctionSpec
from workers.records import Batch, Delivered, Record

from .classify import classify, classify_bulk
from .config import ElasticsearchMetricsConfig
from .encode import BulkEncoder, Chunk, document_record
from .send import install_templates, make_client, post_bulk

__all__ = ["SPEC"]


class _Tally:
    """What became of each record of one batch; retry beats dead beats ok."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.retry: set[int] = set()
        self.dead: dict[int, str] = {}
        self.dead_documents: dict[int, list[tuple[Record, str]]] = {}
        self.delay: float | None = None

    def retry_chunks(self, chunks: list[Chunk], delay: float | None = None) -> None:
        for chunk in chunks:
            self.retry.update(chunk.owners)
        self.delay = delay

    def delivered(self) -> Delivered:
        dead: list[tuple[Record, str]] = []
        retry: list[Record] = []
        for position, record in enumerate(self.batch):
            if position in self.retry:
                # Its rejected documents will be rejected again and dead-lettered then,
                # once: dead-lettering them now too would do it twice.
                retry.append(record)
            elif position in self.dead:
                dead.append((record, self.dead[position]))
            else:
                dead.extend(self.dead_documents.get(position, ()))
        return Delivered(dead=dead, retry=retry, retry_delay=self.delay if retry else None)


class ElasticsearchMetricsSink:
    def __init__(self, config: ElasticsearchMetricsConfig, context: Context) -> None:
        self.config = config
        self.log = context.log
        self.client = make_client(config, context)
        self.encoder = BulkEncoder(config)
        self.templates_ready = not config.template.install
        labels = ["function", "reason"]
        self.m_skipped = context.registry.counter(
            "ferryman_samples_skipped_total",
            "Samples not written because Elasticsearch cannot store them (NaN, stale "
            "marker, Inf, timestamp out of range).", labels)
        self.m_documents = context.registry.counter(
            "ferryman_documents_total", "Documents sent, by what the backend answered "
            "(created, duplicate, retry, rejected).", ["function", "result"])
        self.function = context.function

    def handle(self, batch: Batch) -> Delivered:
        if not self.templates_ready:
            install_templates(self.client, self.config)
            self.templates_ready = True
            self.log.info("index template %s for %s is in place", self.config.template_name,
                          self.config.index_pattern)
        encoded = self.encoder.encode(batch)
        for reason, count in encoded.skipped.items():
            self.m_skipped.inc(count, self.function, reason)
        tally = _Tally(batch)
        for position, reason in encoded.undecodable:
            tally.dead[position] = reason
        for number, chunk in enumerate(encoded.chunks):
            try:
                response = post_bulk(self.client, self.config, chunk.body())
            except httpx.TransportError:
                # The node is unreachable: everything not yet sent waits for it.
                tally.retry_chunks(encoded.chunks[number:])
                break
            # A 2xx body is read item by item below, not as text.
            outcome = classify(response.status_code, response.headers,
                               "" if response.is_success else response.text)
            if outcome.kind == "retry":
                tally.retry_chunks(encoded.chunks[number:], outcome.delay)
                break
            if outcome.kind == "permanent":
                for position in chunk.owners:
                    tally.dead.setdefault(position, f"bulk request refused: {outcome.reason}")
                continue
            self._judge_items(chunk, response.content, tally)
        return tally.delivered()

    def _judge_items(self, chunk: Chunk, body: bytes, tally: _Tally) -> None:
        result = classify_bulk(body, len(chunk))
        self.m_documents.inc(result.created, self.function, "created")
        self.m_documents.inc(result.duplicates, self.function, "duplicate")
        refused = [outcome for _, outcome in result.failed if outcome.kind == "retry"]
        if refused:
            self.m_documents.inc(len(refused), self.function, "retry")
            self.log.warning("Elasticsearch refused %d of %d documents for now; their records "
                             "will be retried; first reason: %s", len(refused), len(chunk),
                             refused[0].reason)
        for item, outcome in result.failed:
            position = chunk.owners[item]
            if outcome.kind == "retry":
                tally.retry.add(position)
            else:
                self.m_documents.inc(1, self.function, "rejected")
                tally.dead_documents.setdefault(position, []).append(
                    (document_record(tally.batch[position], chunk, item), outcome.reason))

    def close(self) -> None:
        self.client.close()


def _create(config: BaseModel, context: Context) -> ElasticsearchMetricsSink:
    assert isinstance(config, ElasticsearchMetricsConfig)
    return ElasticsearchMetricsSink(config, context)


SPEC = FunctionSpec(
    name="elasticsearch_metrics",
    kind="sink",
    summary="Index metric samples into an Elasticsearch data stream (or dated indices), "
            "one deduplicated document per sample.",
    config_model=ElasticsearchMetricsConfig,
    create=_create,
    example="""\
url: http://127.0.0.1:9200
data_stream: metrics-ferryman-default
index: null
cluster_label: cluster
max_bulk_bytes: 5242880
template:
  install: true
  priority: 200
  number_of_shards: 1
  number_of_replicas: 0
  labels: keyword
  composed_of: []
timeout_s: 30
""",
)
