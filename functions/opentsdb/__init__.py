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

from collections import deque
from collections.abc import Sequence

import httpx
from pydantic import BaseModel

from ferryman import headers as h
from workers.function import Context, FunctionSpec
from workers.records import Batch, Delivered

from .classify import blame, classify, data_at_fault
from .config import OpenTSDBConfig
from .encode import Chunk, DatapointEncoder, Tally, UnsupportedRecord, chunk, decode_record
from .send import make_client, post

__all__ = ["SPEC"]


class OpenTSDBSink:
    def __init__(self, config: OpenTSDBConfig, context: Context) -> None:
        self.config = config
        self.encoder = DatapointEncoder(config)
        self.client = make_client(config, context)
        self.log = context.log
        self.function = context.function
        self.m_skipped = context.registry.counter(
            "ferryman_samples_skipped_total",
            "Samples not written because the backend cannot store them, by reason.",
            ["function", "reason"])
        self.m_sanitized = context.registry.counter(
            "ferryman_names_sanitized_total",
            "Names and tag values rewritten to fit the backend, by what.",
            ["function", "what"])
        self.m_tags_dropped = context.registry.counter(
            "ferryman_tags_dropped_total",
            "Tags left out of series over the backend's tag limit.", ["function"])

    def handle(self, batch: Batch) -> Delivered:
        tallies = [Tally() for _ in batch]
        dead: dict[int, str] = {}
        datapoints: list[tuple[int, bytes]] = []
        for index, record in enumerate(batch):
            try:
                series = decode_record(record)
            except UnsupportedRecord as exc:
                dead[index] = str(exc)
                continue
            raw = record.header(h.CLUSTER)
            cluster = raw.decode("utf-8", "replace") if raw else None
            for one in series:
                datapoints.extend((index, unit) for unit in
                                  self.encoder.datapoints(one, cluster, tallies[index]))
        retry, delay = self._deliver(chunk(datapoints, self.config.max_datapoints), dead)
        self._count(tallies, retry)
        return Delivered(dead=[(batch[i], reason) for i, reason in sorted(dead.items())],
                         retry=[batch[i] for i in sorted(retry)], retry_delay=delay)

    def _deliver(self, chunks: Sequence[Chunk],
                 dead: dict[int, str]) -> tuple[set[int], float | None]:
        """Put ``chunks`` in order; fills ``dead``; returns the records to retry."""
        queue = deque(chunks)
        later: set[int] = set()
        while queue:
            current = queue.popleft()
            owners = current.owners
            if owners <= dead.keys():
                continue
            try:
                response = post(self.client, self.config, current.body())
            except httpx.TransportError as exc:
                return self._hand_back(current, queue, dead, later,
                                       f"unreachable: {exc!r}"), None
            outcome = classify(response.status_code, response.headers, response.text)
            if outcome.kind == "ok":
                continue
            verdicts = blame(response.status_code, response.text, current)
            if verdicts is not None:
                for owner, verdict in verdicts.items():
                    if verdict.kind == "permanent":
                        dead.setdefault(owner, verdict.reason)
                    else:
                        later.add(owner)
                continue
            if outcome.kind == "retry":
                return self._hand_back(current, queue, dead, later,
                                       outcome.reason), outcome.delay
            if data_at_fault(response.status_code) and len(owners) > 1:
                self.log.warning("OpenTSDB refused a request holding %d records (%s); "
                                 "putting them one by one to find the bad ones",
                                 len(owners), outcome.reason)
                queue.extendleft(reversed(current.by_owner()))
                continue
            for owner in owners:
                dead.setdefault(owner, outcome.reason)
        if later - dead.keys():
            self.log.warning("%d records wait for OpenTSDB to store some of their "
                             "datapoints", len(later - dead.keys()))
        return later - dead.keys(), None

    def _hand_back(self, current: Chunk, queue: deque[Chunk], dead: dict[int, str],
                   later: set[int], reason: str) -> set[int]:
        """The records of ``current``, of every chunk not sent yet and of ``later``."""
        retry = set(current.owners).union(later, *(c.owners for c in queue)) - dead.keys()
        self.log.warning("%d records wait for OpenTSDB: %s", len(retry), reason)
        return retry

    def _count(self, tallies: list[Tally], retry: set[int]) -> None:
        for index, tally in enumerate(tallies):
            if index in retry:
                continue
            for reason, count in tally.skipped.items():
                self.m_skipped.inc(count, self.function, reason)
            for what, count in tally.sanitized.items():
                self.m_sanitized.inc(count, self.function, what)
            if tally.tags_dropped:
                self.m_tags_dropped.inc(tally.tags_dropped, self.function)

    def close(self) -> None:
        self.client.close()


def _create(config: BaseModel, context: Context) -> OpenTSDBSink:
    assert isinstance(config, OpenTSDBConfig)
    return OpenTSDBSink(config, context)


SPEC = FunctionSpec(
    name="opentsdb",
    kind="sink",
    summary="Put metrics into OpenTSDB over HTTP /api/put, within its name and tag limits.",
    config_model=OpenTSDBConfig,
    create=_create,
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
