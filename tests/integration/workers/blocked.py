"""A real transient per-item refusal for the runtime's tests: Elasticsearch's flood-stage
block (``read_only_allow_delete``) on yesterday's index answers 429 for each of its
documents inside an otherwise successful ``_bulk``, which the real
``elasticsearch_metrics`` sink hands back in ``Delivered.retry``. Records whose samples
are from yesterday go to the blocked index, today's to an open one, so a batch is
partly stored and partly refused for as long as the block lasts."""

from __future__ import annotations

import time

import httpx
from elasticsearch import Elasticsearch

from ferryman import headers as h
from ferryman.wire.remote_write import Sample, TimeSeries, encode_write_request, snappy_compress
from functions.elasticsearch_metrics.config import ElasticsearchMetricsConfig
from functions.elasticsearch_metrics.send import install_templates
from tests.integration.pipeline import committed_total, create_topics

DAY_MS = 86_400_000


class BlockedIndexScene:
    """One test's topic (``partitions``), dead-letter topic, group and indices, with
    yesterday's index blocked from the start."""

    def __init__(self, stack, unique: str, es: Elasticsearch, partitions: int = 1) -> None:
        self.bootstrap = stack("kafka", "bootstrap")
        self.es = es
        self.unique = unique
        self.topic = unique
        self.dlq = f"{unique}-dlq"
        self.group = f"g-{unique}"
        self.config = {
            "url": stack("elasticsearch", "http"),
            "data_stream": None,
            "index": f"{unique}-%Y.%m.%d",
        }
        self.now = int(time.time() * 1000)
        self.yesterday = self.now - DAY_MS
        self.blocked = time.strftime(f"{unique}-%Y.%m.%d", time.gmtime(self.yesterday / 1000))
        self.open = time.strftime(f"{unique}-%Y.%m.%d", time.gmtime(self.now / 1000))
        create_topics(self.bootstrap, (self.topic, partitions), (self.dlq, 1))
        with httpx.Client() as client:  # the index needs its template before the block
            install_templates(client, ElasticsearchMetricsConfig.model_validate(self.config))
        es.indices.create(index=self.blocked)
        self.block(True)

    def block(self, on: bool) -> None:
        self.es.indices.put_settings(
            index=self.blocked, settings={"index.blocks.read_only_allow_delete": on or None}
        )

    def cleanup(self) -> None:
        self.block(False)
        self.es.indices.delete(index=f"{self.unique}-*")
        self.es.indices.delete_index_template(name=self.unique)
        self.es.cluster.delete_component_template(name=f"{self.unique}@ferryman")

    def record(self, m: int, day: str, series: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """Record ``m`` as (key, value, headers): ``series`` series of one sample each,
        from yesterday (``day == "y"``: refused while blocked) or today."""
        ts = self.yesterday if day == "y" else self.now
        body = encode_write_request(
            [
                TimeSeries(
                    tuple(
                        sorted(
                            {"__name__": f"lane_{self.unique}", "m": str(m), "s": str(s)}.items()
                        )
                    ),
                    (Sample(float(m), ts),),
                )
                for s in range(series)
            ]
        )
        headers = [(h.SCHEMA, h.SCHEMA_REMOTE_WRITE), (h.CLUSTER, b"alpha")]
        return f"m{m}".encode(), snappy_compress(body), headers

    def committed(self) -> int:
        return committed_total(self.bootstrap, self.group, self.topic)

    def count(self, index: str) -> int:
        """Documents in ``index`` (0 while it does not exist)."""
        if not self.es.indices.exists(index=index):
            return 0
        self.es.indices.refresh(index=index)
        return int(self.es.count(index=index)["count"])
