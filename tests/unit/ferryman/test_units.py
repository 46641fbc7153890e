from __future__ import annotations

import pytest

from ferryman.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("0", 0.0),
        (5, 5.0),
        ("1w", 604800.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "15", "1x", "s", "1m 30s", "-1s", True, None])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10MB", 10 * 2**20),
        ("512KB", 512 * 2**10),
        ("1GiB", 2**30),
        ("100", 100),
        (7, 7),
        ("3 B", 3),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["ten", "10XB", "", "-1MB", 1.5])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (15.0, "15s"),
        (0.3, "300ms"),
        (90.5, "1m30s500ms"),
        (3600.0, "1h"),
        (0.0, "0s"),
    ],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
