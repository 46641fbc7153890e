"""The ``prometheus_remote_write`` handler: check (and maybe relabel) → POST, one
request per record."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ferryman.prom.relabel import compile_rules
from ferryman.prom.rewrite import Rewriter
from ferryman.wire.remote_write import snappy_compress
from functions._chunks import deliver_chunks, delivered
from functions._records import UnsupportedRecord, remote_write_payload, unreadable
from workers.function import Context
from workers.records import Batch, Delivered, Record

from .classify import classify
from .config import RemoteWriteConfig
from .encode import LabelCheck, request_headers
from .send import make_client, post

__all__ = ["RemoteWriteSink"]


@dataclass(frozen=True, slots=True)
class _Request:
    """One record's request (the chunk the delivery loop sends)."""

    owner: int
    body: bytes
    headers: dict[str, str]

    @property
    def owners(self) -> frozenset[int]:
        return frozenset((self.owner,))

    def by_owner(self) -> list[_Request]:
        return [self]


class RemoteWriteSink:
    def __init__(self, config: RemoteWriteConfig, context: Context) -> None:
        self.config = config
        self.client = make_client(config, context)
        self.log = context.log
        self.check = LabelCheck()
        self.rewriter = (
            Rewriter(compile_rules(config.metric_relabel_configs))
            if config.metric_relabel_configs
            else None
        )

    def start(self) -> None:
        pass

    def _body(self, record: Record) -> bytes | None:
        """The request body: the payload as is, or relabeled (None: nothing to send).
        Raises UnsupportedRecord for a record that must not be sent, with why."""
        payload = remote_write_payload(record)
        body = record.value
        if self.rewriter is not None:
            with unreadable("remote-write message"):
                payload = self.rewriter.rewrite(payload).payload
            body = snappy_compress(payload)
        if not payload:
            return None  # no series (or every one relabeled away)
        problem = self.check.problem(payload)
        if problem is not None:
            raise UnsupportedRecord(f"refused before sending: {problem}")
        return body

    def handle(self, batch: Batch) -> Delivered:
        dead: dict[int, str] = {}
        requests: list[_Request] = []
        for index, record in enumerate(batch):
            try:
                body = self._body(record)
            except UnsupportedRecord as exc:
                dead[index] = str(exc)
                continue
            if body is not None:
                requests.append(_Request(index, body, request_headers(self.config, record)))
        hand_back = deliver_chunks(
            requests,
            self._post,
            classify=classify,
            dead=dead,
            backend="the remote-write receiver",
            log=self.log,
        )
        return delivered(batch, dead, hand_back)

    def _post(self, request: _Request) -> httpx.Response:
        return post(self.client, self.config.url, request.body, request.headers)

    def close(self) -> None:
        self.client.close()
