"""The ``elasticsearch_logs`` handler: templates at start, then encode → bulk → judge.

Counts records whose ``ferryman.lines`` header did not match their message in
``ferryman_lines_header_invalid_total{function}`` (their lines are named by content),
and says so in the log the first time only.
"""

from __future__ import annotations

from ferryman import headers as h
from functions._elasticsearch import BulkWriter
from workers.function import Context
from workers.records import Batch, Delivered

from .config import ElasticsearchLogsConfig
from .encode import BulkEncoder, Encoded
from .send import install_templates, make_client, post_bulk

__all__ = ["ElasticsearchLogsSink"]


class ElasticsearchLogsSink:
    def __init__(self, config: ElasticsearchLogsConfig, context: Context) -> None:
        self.config = config
        self.log = context.log
        self.client = make_client(config, context)
        self.encoder = BulkEncoder(config)
        self.writer = BulkWriter(lambda body: post_bulk(self.client, config, body), context)
        self.m_documents = self.writer.m_documents
        self.function = context.function
        self.m_invalid_lines = context.registry.counter(
            "ferryman_lines_header_invalid_total",
            "Records whose ferryman.lines header did not match their message; their lines "
            "were named by content.",
            ["function"],
        )
        self._told_invalid_lines = False

    def start(self) -> None:
        """Install the templates (unless the operator manages them); raises DeliveryError
        when Elasticsearch cannot be reached or is busy, Permanent when it refuses them."""
        if not self.config.template.install:
            return
        install_templates(self.client, self.config)
        self.log.info(
            "index template %s for %s is in place",
            self.config.template_name,
            self.config.data_stream,
        )

    def handle(self, batch: Batch) -> Delivered:
        encoded = self.encoder.encode(batch)
        if encoded.invalid_lines_headers:
            self._count_invalid_lines(batch, encoded)
        return self.writer.write(batch, encoded.chunks, encoded.undecodable)

    def _count_invalid_lines(self, batch: Batch, encoded: Encoded) -> None:
        self.m_invalid_lines.labels(function=self.function).inc(len(encoded.invalid_lines_headers))
        if self._told_invalid_lines:
            return
        self._told_invalid_lines = True
        position, reason = encoded.invalid_lines_headers[0]
        record = batch[position]
        self.log.warning(
            "the %s header of %s/%d/%d does not match its message (%s); its lines are "
            "named by content, as are those of every such record from now on, counted in "
            "ferryman_lines_header_invalid_total and not logged again",
            h.LINES,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )

    def close(self) -> None:
        self.client.close()
