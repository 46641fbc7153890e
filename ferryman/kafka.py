"""The one way ferryman makes a Kafka producer.

Every producer of the project (edge shippers, workers, the retry lane, dlq replay)
waits for all in-sync replicas (``acks=all``), is idempotent (a retried send is not
written twice) and keeps at most one request in flight, so a partition's records
keep their order across retries. Callers add only what differs: compression, the
largest request, a request timeout, and the credentials of a secured cluster
(:class:`ferryman.kafkaconfig.KafkaCredentials`, read at start).
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer

from .kafkaconfig import PLAINTEXT_CREDENTIALS, KafkaCredentials

__all__ = ["RETRIES", "producer"]

#: Sends kafka-python retries inside one ``send`` before its future fails.
RETRIES = 5


def producer(
    bootstrap_servers: str,
    client_id: str,
    *,
    compression: str | None = None,
    max_request_size: int = 16 * 2**20,
    request_timeout_ms: int = 30_000,
    linger_ms: int = 5,
    credentials: KafkaCredentials = PLAINTEXT_CREDENTIALS,
    **extra: Any,
) -> KafkaProducer:
    """A producer with the project's delivery settings (see the module docstring).

    ``compression`` is None for payloads that are compressed already (snappy'd remote
    write, Loki pushes), ``"snappy"`` for the rest. ``credentials`` add TLS and SASL
    (default: PLAINTEXT).
    """
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        retries=RETRIES,
        max_in_flight_requests_per_connection=1,
        compression_type=compression,
        max_request_size=max_request_size,
        request_timeout_ms=request_timeout_ms,
        linger_ms=linger_ms,
        **credentials.kwargs(),
        **extra,
    )
