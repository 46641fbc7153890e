"""Prometheus-style durations (``1m30s``) and sizes (``10MB``, base 2) in configs."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

__all__ = ["Duration", "Size", "format_duration", "parse_duration", "parse_size"]

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_SIZE = re.compile(r"(\d+)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?")
_SIZE_FACTOR = {
    None: 1,
    "B": 1,
    "KB": 2**10,
    "MB": 2**20,
    "GB": 2**30,
    "TB": 2**40,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}


def parse_duration(value: object) -> float:
    """``"1h30m"`` → 5400.0 seconds; a bare number is taken as seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a duration: {value!r}")
    if value == "0":
        return 0.0
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(value):
        raise ValueError(f"not a duration: {value!r} (use e.g. 15s, 1m30s, 500ms)")
    return total


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration`, in Prometheus's style: 90.5 → ``1m30s500ms``."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, ms = divmod(ms, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def parse_size(value: object) -> int:
    """``"10MB"`` → 10485760 (base 2, as Prometheus reads sizes); a bare int is bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not a size: {value!r} (use e.g. 512KB, 10MB, 1GiB)")
    return int(match.group(1)) * _SIZE_FACTOR[match.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
