"""The contract between the runtime and a function.

A function supplies one step, :meth:`Handler.handle`; the runtime wraps batching,
retry with backoff, timeouts, dead-lettering, commits and telemetry around it.
Functions never sleep, retry or commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

import httpx
from pydantic import BaseModel

from ferryman.telemetry import Registry

from .records import Batch, Delivered

__all__ = ["Context", "FunctionSpec", "Handler"]


class Handler(Protocol):
    def start(self) -> None:
        """Prepare what must exist before the first batch (e.g. index templates); called
        once by the runtime's entry point, before it consumes.

        Raise ``workers.errors.Permanent`` when starting can never succeed as configured
        (credentials refused, a template the backend rejects), a DeliveryError or an
        ``httpx.TransportError`` when it may succeed later (the backend is unreachable or
        busy): the entry point tries again with backoff, then gives up. Anything else
        raised is a bug and stops the process.
        """
        ...

    def handle(self, batch: Batch) -> Delivered:
        """Deliver ``batch``; return what happened, or raise a DeliveryError.

        Guarantee asked of the handler: when it returns, every record not listed in
        ``dead`` or ``retry`` was acknowledged by the next hop. Raising means nothing
        in the batch may be assumed delivered (the whole batch is tried again, so
        sinks must tolerate re-sends: ids, dedup, or idempotent writes).
        """
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Context:
    """What the runtime injects into a function."""

    function: str
    http_client: Callable[..., httpx.Client]
    registry: Registry
    log: logging.Logger


ConfigT = TypeVar("ConfigT", bound=BaseModel)


@dataclass(frozen=True)
class FunctionSpec(Generic[ConfigT]):
    """One registered function: its config model, factory and an example config.

    ``create`` takes the validated config, of type ``config_model`` (not a ``BaseModel``
    to be narrowed): the runtime validates with ``config_model`` and passes the result.
    """

    name: str
    kind: Literal["sink", "transform"]
    summary: str
    config_model: type[ConfigT]
    create: Callable[[ConfigT, Context], Handler]
    example: str
