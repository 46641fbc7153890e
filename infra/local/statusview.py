"""The live terminal view of ``ferryman status``: a ``rich`` table redrawn in place after
every refresh of :class:`~infra.local.pipelinestatus.Sampler`, until Ctrl-C.

Where the output is not a terminal (a pipe, a file) nothing is redrawn: each refresh
prints the plain table of :func:`~infra.local.pipelinestatus.format_table` instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .pipelinestatus import HEADER, Row, Sampler, Target, cells, format_table

__all__ = ["render", "watch"]

_READY_STYLE = {"yes": "green", "no": "yellow", "down": "bold red"}


def render(rows: Sequence[Row], *, interval: float) -> Table:
    """The table for one refresh; its caption says when and how often."""
    table = Table(
        title=f"ferryman status  {time.strftime('%H:%M:%S')}",
        caption=f"every {interval:g}s, Ctrl-C to quit; rates over the last refresh",
        title_justify="left",
        caption_justify="left",
    )
    for i, name in enumerate(HEADER):
        table.add_column(name, justify="left" if i < 3 else "right", no_wrap=True)
    for r in rows:
        text = list(cells(r))
        text[2] = f"[{_READY_STYLE.get(r.ready, '')}]{r.ready}[/]"
        table.add_row(*text)
    if not rows:
        table.caption = "no pipeline process is running (ferryman up starts them)"
    return table


def watch(
    targets: Sequence[Target],
    *,
    interval: float = 1.0,
    timeout: float = 1.0,
    console: Console | None = None,
) -> None:
    """Refresh every ``interval`` seconds (default 1) until interrupted (the caller
    catches ``KeyboardInterrupt``); ``timeout`` bounds each HTTP request."""
    console = console or Console()
    with Sampler(targets, timeout=min(timeout, interval)) as sampler:
        rows = sampler.sample()  # no rates yet: the next refresh has them
        if not console.is_terminal:
            _print_each(sampler, interval)
            return
        with Live(render(rows, interval=interval), console=console, auto_refresh=False) as live:
            next_at = time.monotonic() + interval
            while True:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
                live.update(render(sampler.sample(), interval=interval), refresh=True)


def _print_each(sampler: Sampler, interval: float) -> None:
    next_at = time.monotonic() + interval
    while True:
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at += interval
        print(format_table(sampler.sample()) + "\n", flush=True)
