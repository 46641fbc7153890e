"""What every discovery mechanism yields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["TargetGroup"]


@dataclass(frozen=True)
class TargetGroup:
    """What a discovery mechanism yields: addresses with their labels, from one source."""

    source: str
    targets: tuple[Mapping[str, str], ...]  # each holds at least __address__
    labels: Mapping[str, str]
