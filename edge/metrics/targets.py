"""From discovered target groups to scrape targets, as Prometheus populates them.

For each discovered target: the group's labels overlaid by the target's own
(``__address__`` and, for Kubernetes, ``__meta_*``); the job's defaults where a
label is not set yet (``job``, ``__scheme__``, ``__metrics_path__``,
``__scrape_interval__``, ``__scrape_timeout__``, ``__param_<name>``); then
``relabel_configs``. A target relabeled away is dropped. Afterwards the default
port of the scheme is added to an address without one (Prometheus 2.42), labels
starting with ``__`` leave the label set, and ``instance`` defaults to the address.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edge.discovery.group import TargetGroup
from ferryman.prom.relabel import Relabeler
from ferryman.units import format_duration, parse_duration

from .config import EdgeMetricsConfig, ScrapeConfig

__all__ = ["Target", "TargetError", "build_targets"]


@dataclass(frozen=True)
class Target:
    job: str
    url: str
    labels: tuple[tuple[str, str], ...]  # final target labels, sorted, no "__" labels
    interval: float
    timeout: float

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.url, self.labels


class TargetError(ValueError):
    """Raised when a discovered target cannot be scraped (no address, bad interval)."""


def _with_port(address: str, scheme: str) -> str:
    host = address
    if address.startswith("["):  # [v6]:port or [v6]
        if "]:" in address:
            return address
    elif ":" in address:
        return address
    return f"{host}:{443 if scheme == 'https' else 80}"


def populate(
    job: ScrapeConfig,
    config: EdgeMetricsConfig,
    relabeler: Relabeler,
    discovered: Mapping[str, str],
) -> Target | None:
    """One discovered target → a Target, or None when relabeling dropped it."""
    labels = dict(discovered)
    defaults = {
        "job": job.job_name,
        "__scheme__": job.scheme,
        "__metrics_path__": job.metrics_path,
        "__scrape_interval__": format_duration(config.interval(job)),
        "__scrape_timeout__": format_duration(config.timeout(job)),
    }
    for name, values in job.params.items():
        if values:
            defaults[f"__param_{name}"] = values[0]
    for name, value in defaults.items():
        labels.setdefault(name, value)
    result = relabeler.apply(labels)
    if result is None:
        return None
    address = result.get("__address__", "")
    if not address:
        raise TargetError(f"job {job.job_name}: target has no __address__ after relabeling")
    scheme = result.get("__scheme__", job.scheme)
    address = _with_port(address, scheme)
    result["__address__"] = address
    result.setdefault("instance", address)
    params = {name: list(values) for name, values in job.params.items()}
    for name, value in result.items():
        if name.startswith("__param_"):
            params[name[len("__param_") :]] = [value]
    query = urllib.parse.urlencode(params, doseq=True)
    path = result.get("__metrics_path__", job.metrics_path)
    url = f"{scheme}://{address}{path}" + (f"?{query}" if query else "")
    try:
        interval = _seconds(result.get("__scrape_interval__", ""), config.interval(job))
        timeout = _seconds(result.get("__scrape_timeout__", ""), config.timeout(job))
    except ValueError as exc:
        raise TargetError(f"job {job.job_name}, target {address}: {exc}") from None
    if timeout > interval:
        raise TargetError(
            f"job {job.job_name}, target {address}: scrape timeout "
            f"{timeout:g}s exceeds interval {interval:g}s"
        )
    final = tuple(sorted((k, v) for k, v in result.items() if not k.startswith("__") and v))
    return Target(job.job_name, url, final, interval, timeout)


def _seconds(value: str, default: float) -> float:
    return parse_duration(value) if value else default


def build_targets(
    job: ScrapeConfig,
    config: EdgeMetricsConfig,
    relabeler: Relabeler,
    groups: Iterable[TargetGroup],
) -> tuple[list[Target], list[str]]:
    """All targets of a job from its groups; errors are returned, not raised, so one
    bad target never hides the others."""
    targets: dict[tuple[str, tuple[tuple[str, str], ...]], Target] = {}
    errors: list[str] = []
    for group in groups:
        for discovered in group.targets:
            merged = {**group.labels, **discovered}
            try:
                target = populate(job, config, relabeler, merged)
            except TargetError as exc:
                errors.append(str(exc))
                continue
            if target is not None:
                targets.setdefault(target.key, target)
    return list(targets.values()), errors
