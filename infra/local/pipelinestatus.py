"""``ferryman status``: what each pipeline process is doing, read from its ``/metrics``.

Each refresh reads every target's ``/metrics`` (and its readiness endpoint) once; a
column is a sum over the series of the metric names :data:`COLUMNS` lists for the
process's kind, and a rate (``/s``) is the difference of that sum between two
refreshes over the time between them (a counter that went down was reset: its new
value is the increase, as Prometheus's ``rate`` counts it). The first refresh has no
rates. A process that does not answer is shown ``down``; nothing here raises for one.

The kind of a process comes from ``ferryman up``'s state file (the command it runs), or
for an explicit ``--target`` from the series it serves (:func:`kind_of`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .paths import Layout, default_layout
from .supervisor import load_state

__all__ = [
    "COLUMNS",
    "Columns",
    "Row",
    "Sampler",
    "Scrape",
    "Target",
    "format_table",
    "kind_of",
    "once",
    "parse_metrics",
    "parse_target",
    "pipeline_targets",
    "row",
]


@dataclass(frozen=True)
class Columns:
    """Which metric names (summed over all their series) fill a kind's columns; an empty
    tuple leaves the column blank for that kind."""

    received: tuple[str, ...] = ()  # IN/s: records taken in
    sent: tuple[str, ...] = ()  # OUT/s (rate) and SHIPPED (total): acknowledged onwards
    requests: tuple[str, ...] = ()  # REQ/s: requests answered
    lag: tuple[str, ...] = ()  # LAG: a gauge
    lag_unit: str = ""  # "" for records, "B" for bytes
    errors: tuple[str, ...] = ("ferryman_errors_total",)
    dead_letters: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()  # DROPPED: dropped or refused
    ready_path: str = "/readyz"


#: The real metric names behind each column, by kind (workers/runtime_metrics.py,
#: edge/metrics/shipper.py, edge/logs/shipper.py, edge/traces/intake.py,
#: edge/gateway/server.py).
COLUMNS: Mapping[str, Columns] = {
    "worker": Columns(
        received=("ferryman_records_received_total",),
        sent=("ferryman_records_sent_total",),
        lag=("ferryman_consumer_lag",),
        dead_letters=("ferryman_records_dead_lettered_total",),
    ),
    "edge-metrics": Columns(
        received=("ferryman_samples_buffered_total",),
        sent=("ferryman_records_sent_total",),
        lag=("ferryman_buffer_bytes",),
        lag_unit="B",
        dropped=("ferryman_samples_dropped_total",),
        ready_path="/-/ready",
    ),
    "edge-logs": Columns(
        received=("ferryman_lines_read_total",),
        sent=("ferryman_records_sent_total",),
        lag=("ferryman_file_lag_bytes",),
        lag_unit="B",
        dropped=("ferryman_lines_dropped_total",),
        ready_path="/-/ready",
    ),
    "edge-traces": Columns(
        received=("ferryman_spans_received_total",),
        sent=("ferryman_spans_produced_total",),
        requests=("ferryman_requests_total",),
        dropped=("ferryman_spans_refused_total",),
    ),
    "gateway": Columns(
        sent=("ferryman_gateway_accepted_total",),
        requests=("ferryman_gateway_requests_total",),
        dropped=("ferryman_gateway_refused_total",),
    ),
    # Not a ferryman process (HotROD, the trickle), or one whose series say nothing.
    "other": Columns(errors=()),
}

#: The series that tell a kind, tried in this order (the gateway serves the traces
#: receiver's series too).
_SIGNATURES = (
    ("ferryman_gateway_requests_total", "gateway"),
    ("ferryman_records_received_total", "worker"),
    ("ferryman_scrapes_total", "edge-metrics"),
    ("ferryman_lines_read_total", "edge-logs"),
    ("ferryman_spans_produced_total", "edge-traces"),
)


@dataclass(frozen=True)
class Target:
    """One process to watch: its name, the base URL of its ``/metrics`` (``None`` for a
    process that serves none, then ``probe`` tells whether it is up), and its kind
    (``None``: told from its series)."""

    name: str
    url: str | None
    kind: str | None = None
    probe: Callable[[], bool] | None = field(default=None, compare=False)


def parse_target(text: str) -> Target:
    """``NAME=URL`` (``URL`` the process's base, ``http://127.0.0.1:9911``) as a target
    whose kind is told from its series; ``ValueError`` when it is not that shape."""
    name, sep, url = text.partition("=")
    url = url.strip().rstrip("/")
    if not sep or not name.strip() or not url.startswith(("http://", "https://")):
        raise ValueError(f"{text!r}: give NAME=http://HOST:PORT")
    return Target(name.strip(), url.removesuffix("/metrics"))


Series = Mapping[str, tuple[float, ...]]


def parse_metrics(text: str) -> tuple[frozenset[str], Series]:
    """The metric names a ``/metrics`` text declares (counters under their ``_total``
    name too, since a labelled counter with no child yet has no sample), and each
    sample name's values over all its label sets."""
    declared: set[str] = set()
    series: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        declared.add(family.name)
        if family.type == "counter":
            declared.add(f"{family.name}_total")
        for sample in family.samples:
            declared.add(sample.name)
            series.setdefault(sample.name, []).append(float(sample.value))
    return frozenset(declared), {name: tuple(values) for name, values in series.items()}


def kind_of(declared: Iterable[str]) -> str:
    """The kind whose signature series ``declared`` holds, ``"other"`` when none."""
    names = set(declared)
    return next((kind for series, kind in _SIGNATURES if series in names), "other")


@dataclass(frozen=True)
class Scrape:
    """One read of a target: when (monotonic seconds), ``yes``/``no``/``down``, and its
    series (empty when ``/metrics`` did not answer)."""

    at: float
    kind: str
    ready: str
    declared: frozenset[str] = frozenset()
    series: Series = field(default_factory=dict)

    def total(self, names: Sequence[str]) -> float | None:
        """The sum over every series of ``names``; ``None`` when the process declares
        none of them (or is down)."""
        if not names or not any(name in self.declared for name in names):
            return None
        return sum(sum(self.series.get(name, ())) for name in names)


@dataclass(frozen=True)
class Row:
    """One process's line of the table; ``None`` is a blank cell."""

    name: str
    kind: str
    ready: str
    in_rate: float | None = None
    out_rate: float | None = None
    request_rate: float | None = None
    lag: float | None = None
    lag_unit: str = ""
    errors: float | None = None
    dead_letters: float | None = None
    shipped: float | None = None
    dropped: float | None = None


def _rate(names: Sequence[str], before: Scrape | None, now: Scrape) -> float | None:
    if before is None or before.ready == "down" or now.at <= before.at:
        return None
    first, last = before.total(names), now.total(names)
    if first is None or last is None:
        return None
    increase = last - first if last >= first else last  # a reset counter starts again
    return increase / (now.at - before.at)


def row(target: Target, before: Scrape | None, now: Scrape) -> Row:
    """The row for ``target`` from its latest read and the one before (``None`` at the
    first refresh: no rates yet)."""
    columns = COLUMNS.get(now.kind, COLUMNS["other"])
    if now.ready == "down" or not now.declared:
        return Row(target.name, now.kind, now.ready)
    return Row(
        name=target.name,
        kind=now.kind,
        ready=now.ready,
        in_rate=_rate(columns.received, before, now),
        out_rate=_rate(columns.sent, before, now),
        request_rate=_rate(columns.requests, before, now),
        lag=now.total(columns.lag),
        lag_unit=columns.lag_unit,
        errors=now.total(columns.errors),
        dead_letters=now.total(columns.dead_letters),
        shipped=now.total(columns.sent),
        dropped=now.total(columns.dropped),
    )


class Sampler:
    """Reads every target once per :meth:`sample`, side by side, and keeps the previous
    read of each for the rates. ``timeout`` (default 1 s) bounds each HTTP request."""

    def __init__(self, targets: Sequence[Target], *, timeout: float = 1.0) -> None:
        self.targets = list(targets)
        self._client = httpx.Client(timeout=timeout)
        self._before: dict[str, Scrape] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def sample(self) -> list[Row]:
        """A row per target, in the targets' order."""
        if not self.targets:
            return []
        with ThreadPoolExecutor(max_workers=min(16, len(self.targets))) as pool:
            scrapes = list(pool.map(self._scrape, self.targets))
        rows = []
        for target, scrape in zip(self.targets, scrapes, strict=True):
            rows.append(row(target, self._before.get(target.name), scrape))
            self._before[target.name] = scrape
        return rows

    def _scrape(self, target: Target) -> Scrape:
        kind = target.kind or "other"
        if target.url is None:
            up = target.probe() if target.probe is not None else False
            return Scrape(time.monotonic(), kind, "yes" if up else "no")
        try:
            response = self._client.get(f"{target.url}/metrics")
            at = time.monotonic()
            response.raise_for_status()
            declared, series = parse_metrics(response.text)
        except (httpx.HTTPError, ValueError):
            return Scrape(time.monotonic(), kind, "down")
        kind = target.kind or kind_of(declared)
        try:
            ready_path = COLUMNS.get(kind, COLUMNS["other"]).ready_path
            answer = self._client.get(f"{target.url}{ready_path}").status_code
            ready = "yes" if answer == 200 else "no"
        except httpx.HTTPError:
            ready = "down"
        return Scrape(at, kind, ready, declared, series)


def _command_kind(argv: Sequence[str]) -> str:
    """``[python, -m, ferryman, edge, metrics, ...]`` → ``edge-metrics``."""
    words = list(argv)
    if "ferryman" not in words:
        return "other"
    rest = words[words.index("ferryman") + 1 :]
    if rest[:1] == ["edge"] and len(rest) > 1:
        return f"edge-{rest[1]}"
    return rest[0] if rest and rest[0] in COLUMNS else "other"


def pipeline_targets(layout: Layout | None = None) -> list[Target]:
    """The processes ``ferryman up`` started (its state file), in pipeline order; HotROD
    and the trickle serve no ``/metrics`` and are watched through their probes."""
    from .pipeline import PIPELINE

    entries = load_state(layout or default_layout())["services"]
    targets = []
    for service in PIPELINE:
        entry = entries.get(service.name)
        if not entry:
            continue
        kind = _command_kind(entry.get("command") or [])
        url = (entry.get("endpoints") or {}).get("http")
        if kind == "other" or not url:
            targets.append(Target(service.name, None, "other", service.probe))
        else:
            targets.append(Target(service.name, url, kind))
    return targets


HEADER = (
    "NAME",
    "KIND",
    "READY",
    "IN/s",
    "OUT/s",
    "REQ/s",
    "LAG",
    "ERRORS",
    "DEAD",
    "SHIPPED",
    "DROPPED",
)


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "B":
        for power, suffix in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
            if value >= 2**power:
                return f"{value / 2**power:.1f} {suffix}"
        return f"{value:.0f} B"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{prefix}"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def cells(r: Row) -> tuple[str, ...]:
    """A row as the table's text cells, in :data:`HEADER` order."""
    return (
        r.name,
        r.kind,
        r.ready,
        _number(r.in_rate),
        _number(r.out_rate),
        _number(r.request_rate),
        _number(r.lag, r.lag_unit),
        _number(r.errors),
        _number(r.dead_letters),
        _number(r.shipped),
        _number(r.dropped),
    )


def format_table(rows: Sequence[Row]) -> str:
    """A plain table (spaces, no colour), one line per process."""
    lines = [HEADER, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    # Names left-aligned, figures right-aligned under their headers.
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


def once(targets: Sequence[Target], *, interval: float = 1.0, timeout: float = 1.0) -> str:
    """Two reads ``interval`` seconds apart (so the rates are real), as a plain table."""
    if not targets:
        return "no pipeline process is running (ferryman up starts them)"
    with Sampler(targets, timeout=timeout) as sampler:
        started = time.monotonic()
        sampler.sample()
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
        return format_table(sampler.sample())
