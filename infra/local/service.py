"""The shape of one local service: how to install, configure, start and probe it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .paths import Layout
from .probes import Probe

__all__ = ["Service"]


def _nothing(layout: Layout) -> None:
    del layout


@dataclass(frozen=True)
class Service:
    """One real service of the local stack.

    ``install`` puts the software in place (idempotent, stamped) and returns its
    version; ``prepare`` writes configuration and initialises data before each
    start; ``command`` is the foreground command line; ``after_start`` runs once
    the probe passes (for example creating Kafka topics). ``autostart=False``
    services are installed by ``stack up`` but started by whoever needs them.
    ``layout_endpoints`` adds endpoints that depend on the stack home (files such as a
    CA certificate) to ``endpoints``; see :meth:`all_endpoints`.
    """

    name: str
    endpoints: Mapping[str, str]
    install: Callable[[Layout], str]
    command: Callable[[Layout], list[str]]
    probe: Probe
    prepare: Callable[[Layout], None] = _nothing
    after_start: Callable[[Layout], None] = _nothing
    env: Callable[[Layout], Mapping[str, str]] = field(default=lambda layout: {})
    start_timeout: float = 60.0
    stop_timeout: float = 30.0
    autostart: bool = True
    layout_endpoints: Callable[[Layout], Mapping[str, str]] = field(default=lambda layout: {})

    def all_endpoints(self, layout: Layout) -> dict[str, str]:
        """What the state file lists for this service: ``endpoints`` and the files."""
        return {**self.endpoints, **self.layout_endpoints(layout)}
