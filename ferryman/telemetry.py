"""The process's own metrics, served on its ``/metrics``, kept by ``prometheus_client``.

Names follow one scheme across components: ``ferryman_records_received_total``,
``ferryman_records_sent_total``, ``ferryman_errors_total{error_type,stage}``, ... A metric
is declared once per name, help text included, and takes its labels by name::

    registry = Registry()
    errors = registry.counter("ferryman_errors_total", "Errors by type and stage.",
                              ["error_type", "stage"])
    errors.labels(error_type="timeout", stage="deliver").inc()
    registry.value("ferryman_errors_total", error_type="timeout", stage="deliver")  # 1.0

Each :class:`Registry` holds its own ``prometheus_client.CollectorRegistry`` (tests build
several in one process) with the standard ``process_*`` and ``python_*`` series and
``ferryman_build_info{version}`` next to what the process declares. Thread-safe; rendered in
the text exposition format 0.0.4.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

__all__ = ["CONTENT_TYPE", "Counter", "Gauge", "Histogram", "Registry", "version"]

#: What :meth:`Registry.render` produces (``prometheus_client.CONTENT_TYPE_LATEST`` names
#: text format 1.0.0 in recent releases; the scrapers we serve expect 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_Family = TypeVar("_Family", bound=MetricWrapperBase)


class _Metric(Generic[_Family]):
    """One declared metric: its name, its label names, and the children taken by name."""

    def __init__(self, family: _Family, name: str, labelnames: Sequence[str]) -> None:
        self._family = family
        self.name = name
        self.labelnames = tuple(labelnames)

    def labels(self, **labels: str) -> _Family:
        """The child for these label values (every label name, by name), made on first use."""
        return self._family.labels(**labels)

    def _wanted(self, labels: dict[str, str]) -> dict[str, str]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} has labels {self.labelnames}, got {sorted(labels)}")
        return {n: str(v) for n, v in labels.items()}


class _Scalar(_Metric[_Family]):
    """A metric with one value per child: a counter or a gauge."""

    def value(self, **labels: str) -> float:
        """The current value for these labels (by name), 0.0 for a child never used
        (reading makes none)."""
        wanted = self._wanted(labels)
        for family in self._family.collect():
            for sample in family.samples:
                if sample.name == self.name and sample.labels == wanted:
                    return float(sample.value)
        return 0.0


class Counter(_Scalar[prometheus_client.Counter]):
    """A counter; ``counter.labels(stage="deliver").inc(3)``, or ``counter.inc()`` when it
    has no labels."""

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (default 1, never negative) to a counter without labels."""
        self._family.inc(amount)


class Gauge(_Scalar[prometheus_client.Gauge]):
    """A gauge; ``gauge.labels(job="node").set(4)``, or ``gauge.set(4)`` without labels."""

    def set(self, value: float) -> None:
        """Set a gauge without labels to ``value``."""
        self._family.set(value)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (default 1) to a gauge without labels."""
        self._family.inc(amount)

    def remove(self, **labels: str) -> None:
        """Forget the child with these labels (by name), if there is one."""
        wanted = self._wanted(labels)
        with contextlib.suppress(KeyError):  # older prometheus_client releases raise it
            self._family.remove(*(wanted[n] for n in self.labelnames))


class Histogram(_Metric[prometheus_client.Histogram]):
    """A histogram; ``hist.labels(function="loki").observe(0.2)``, or ``hist.observe(0.2)``
    without labels. Read it through :meth:`Registry.value` with the ``_count``, ``_sum`` or
    ``_bucket`` (and ``le``) series name."""

    #: Seconds, from a fast local call to a backend that is struggling.
    DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

    def observe(self, value: float) -> None:
        """Count ``value`` into a histogram without labels."""
        self._family.observe(value)


def version() -> str:
    """This installation's version, from package metadata ("unknown" when ferryman is
    not installed); what ``ferryman_build_info`` and ``ferryman --version`` report."""
    try:
        return importlib.metadata.version("ferryman")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Registry:
    """The metrics of one process, by name, with the process's standard series.

    ``collector_registry`` is the ``prometheus_client`` registry behind it, for
    ``generate_latest`` and anything else that speaks ``prometheus_client``.
    """

    def __init__(self) -> None:
        # A ``*_created`` series beside every counter and histogram doubles what Prometheus
        # stores and what every text parser must skip, for a start time nothing here reads.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.collector_registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.collector_registry)
        PlatformCollector(registry=self.collector_registry)
        GCCollector(registry=self.collector_registry)
        Info(
            "ferryman_build",
            "The ferryman release this process runs (always 1).",
            registry=self.collector_registry,
        ).info({"version": version()})
        self._series: dict[str, tuple[str, ...]] = {}  # declared name -> series it makes

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        """Declare a counter; its name ends in ``_total`` (``prometheus_client`` would add
        it otherwise, and the name read back would not be the one declared)."""
        if not name.endswith("_total"):
            raise ValueError(f"counter {name}: counter names end in _total")
        self._refuse_twice(name)
        metric = Counter(
            prometheus_client.Counter(
                name, help_text, labelnames, registry=self.collector_registry
            ),
            name,
            labelnames,
        )
        self._series[name] = (name,)
        return metric

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        """Declare a gauge."""
        self._refuse_twice(name)
        metric = Gauge(
            prometheus_client.Gauge(name, help_text, labelnames, registry=self.collector_registry),
            name,
            labelnames,
        )
        self._series[name] = (name,)
        return metric

    def histogram(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Iterable[float] = Histogram.DEFAULT_BUCKETS,
    ) -> Histogram:
        """Declare a histogram; ``buckets`` default to :attr:`Histogram.DEFAULT_BUCKETS`."""
        self._refuse_twice(name)
        metric = Histogram(
            prometheus_client.Histogram(
                name,
                help_text,
                labelnames,
                buckets=tuple(sorted(buckets)),
                registry=self.collector_registry,
            ),
            name,
            labelnames,
        )
        self._series[name] = (f"{name}_bucket", f"{name}_count", f"{name}_sum")
        return metric

    def _refuse_twice(self, name: str) -> None:
        # prometheus_client refuses clashing series as well (``x`` beside ``x_total``, or a
        # ``process_*`` name), in its own words; this names the usual mistake plainly.
        if name in self._series:
            raise ValueError(f"metric {name} registered twice")

    def value(self, name: str, **labels: str) -> float:
        """The value of series ``name`` with exactly these labels (by name): 0.0 when a
        declared metric has no such child yet; ``KeyError`` when no metric makes ``name``."""
        found = self.collector_registry.get_sample_value(name, labels)
        if found is not None:
            return found
        if not any(name in series for series in self._series.values()):
            raise KeyError(f"no metric makes the series {name}")
        return 0.0

    def render(self) -> str:
        """Every series, in the text exposition format 0.0.4."""
        return generate_latest(self.collector_registry).decode()
