"""The ``elasticsearch_logs`` handler: templates at start, then encode → bulk → judge."""

from __future__ import annotations

from functions._elasticsearch import BulkWriter
from workers.function import Context
from workers.records import Batch, Delivered

from .config import ElasticsearchLogsConfig
from .encode import BulkEncoder
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
        return self.writer.write(batch, encoded.chunks, encoded.undecodable)

    def close(self) -> None:
        self.client.close()
