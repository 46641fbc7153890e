"""Times as Promtail's ``timestamp`` stage reads them, to Unix nanoseconds.

Named formats: ``RFC3339``, ``RFC3339Nano`` (fractional seconds optional in both,
as in Go), ``Unix`` (seconds, fraction allowed), ``UnixMs``, ``UnixUs``,
``UnixNs`` and Go's layout constants (``ANSIC``, ``RFC1123``, ``Kitchen``, ...).
Anything else is a Go reference layout (``2006-01-02 15:04:05.000 -0700``),
translated once to a regex. A time without an offset is in ``location`` (UTC by
default); a layout without a year takes the current one, as Promtail does.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable
from typing import Final

__all__ = ["Parser", "compile_format", "parse_rfc3339"]

#: text, location → Unix nanoseconds, or None when the text does not fit.
Parser = Callable[[str, dt.tzinfo], "int | None"]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*([Zz]|[+-]\d{2}:?\d{2})"
)


def _frac_ns(digits: str | None) -> int:
    if not digits:
        return 0
    return int(digits[:9].ljust(9, "0"))


def _offset_seconds(text: str) -> int:
    if text in ("Z", "z"):
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    seconds = int(digits[4:6] or 0)
    return sign * (hours * 3600 + minutes * 60 + seconds)


def parse_rfc3339(text: str) -> int | None:
    """``2024-05-01T10:00:00.123456789Z`` → Unix nanoseconds; None if it is not one."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, frac, offset = match.groups()
    try:
        seconds = calendar.timegm(
            (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
        )
        dt.date(int(year), int(month), int(day))  # timegm accepts day 31 of February
    except ValueError:
        return None
    return (seconds - _offset_seconds(offset)) * 1_000_000_000 + _frac_ns(frac)


def _unix(scale: int, fraction: bool) -> Parser:
    pattern = re.compile(r"-?\d+(?:\.\d+)?" if fraction else r"-?\d+")

    def parse(text: str, zone: dt.tzinfo) -> int | None:
        text = text.strip()
        if pattern.fullmatch(text) is None:
            return None
        whole, _, frac = text.partition(".")
        sign = -1 if whole.startswith("-") else 1
        return int(whole) * scale + sign * _frac_ns(frac)

    return parse


def _rfc3339(text: str, zone: dt.tzinfo) -> int | None:
    return parse_rfc3339(text)


# Go's layout tokens, longest first where one is a prefix of another.
_TOKENS: Final = [
    ("January", "month_name", r"([A-Za-z]+)"),
    ("Jan", "month_name", r"([A-Za-z]{3})"),
    ("Monday", "weekday", r"([A-Za-z]+)"),
    ("Mon", "weekday", r"([A-Za-z]{3})"),
    ("MST", "zone_name", r"([A-Za-z]{2,5}|[+-]\d{2,4})"),
    ("2006", "year", r"(\d{4})"),
    ("002", "yearday", r"(\d{3})"),
    ("-07:00:00", "offset", r"([+-]\d{2}:\d{2}:\d{2})"),
    ("-0700", "offset", r"([+-]\d{4})"),
    ("-07:00", "offset", r"([+-]\d{2}:\d{2})"),
    ("-07", "offset", r"([+-]\d{2})"),
    ("Z07:00:00", "offset", r"(Z|[+-]\d{2}:\d{2}:\d{2})"),
    ("Z0700", "offset", r"(Z|[+-]\d{4})"),
    ("Z07:00", "offset", r"(Z|[+-]\d{2}:\d{2})"),
    ("Z07", "offset", r"(Z|[+-]\d{2})"),
    ("01", "month", r"(\d{2})"),
    ("02", "day", r"(\d{2})"),
    ("_2", "day", r" ?(\d{1,2})"),
    ("03", "hour12", r"(\d{2})"),
    ("04", "minute", r"(\d{2})"),
    ("05", "second", r"(\d{2})"),
    ("06", "year2", r"(\d{2})"),
    ("15", "hour", r"(\d{1,2})"),
    ("1", "month", r"(\d{1,2})"),
    ("2", "day", r"(\d{1,2})"),
    ("3", "hour12", r"(\d{1,2})"),
    ("4", "minute", r"(\d{1,2})"),
    ("5", "second", r"(\d{1,2})"),
    ("PM", "ampm", r"([AaPp][Mm])"),
    ("pm", "ampm", r"([AaPp][Mm])"),
]
_FRACTION = re.compile(r"[.,](0+|9+)(?![0-9])")
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}

LAYOUTS: Final = {
    "ANSIC": "Mon Jan _2 15:04:05 2006",
    "UnixDate": "Mon Jan _2 15:04:05 MST 2006",
    "RubyDate": "Mon Jan 02 15:04:05 -0700 2006",
    "RFC822": "02 Jan 06 15:04 MST",
    "RFC822Z": "02 Jan 06 15:04 -0700",
    "RFC850": "Monday, 02-Jan-06 15:04:05 MST",
    "RFC1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "RFC1123Z": "Mon, 02 Jan 2006 15:04:05 -0700",
    "Kitchen": "3:04PM",
    "Stamp": "Jan _2 15:04:05",
    "StampMilli": "Jan _2 15:04:05.000",
    "StampMicro": "Jan _2 15:04:05.000000",
    "StampNano": "Jan _2 15:04:05.000000000",
    "DateTime": "2006-01-02 15:04:05",
    "DateOnly": "2006-01-02",
    "TimeOnly": "15:04:05",
}
_NAMED: Final[dict[str, Parser]] = {
    "RFC3339": _rfc3339,
    "RFC3339Nano": _rfc3339,
    "Unix": _unix(1_000_000_000, True),
    "UnixMs": _unix(1_000_000, False),
    "UnixUs": _unix(1_000, False),
    "UnixNs": _unix(1, False),
}


def _translate(layout: str) -> tuple[re.Pattern[str], list[str]]:
    pattern: list[str] = []
    kinds: list[str] = []
    pos = 0
    while pos < len(layout):
        fraction = _FRACTION.match(layout, pos)
        if fraction is not None and kinds and kinds[-1] == "second":
            optional = fraction.group(1).startswith("9")
            pattern.append(r"(?:[.,](\d+))?" if optional else r"[.,](\d+)")
            kinds.append("fraction")
            pos = fraction.end()
            continue
        for token, kind, regex in _TOKENS:
            if layout.startswith(token, pos):
                pattern.append(regex)
                kinds.append(kind)
                pos += len(token)
                if kind == "second" and not _FRACTION.match(layout, pos):
                    # Go accepts a fraction after the seconds even if the layout has none.
                    pattern.append(r"(?:[.,](\d+))?")
                    kinds.append("fraction")
                break
        else:
            pattern.append(re.escape(layout[pos]))
            pos += 1
    if not any(
        kind
        in ("year", "year2", "month", "month_name", "day", "hour", "hour12", "minute", "second")
        for kind in kinds
    ):
        raise ValueError(
            f"{layout!r} is neither a known format nor a Go reference layout "
            "(such as 2006-01-02T15:04:05.000Z07:00)"
        )
    return re.compile(r"\s*" + "".join(pattern) + r"\s*"), kinds


def _layout_parser(layout: str) -> Parser:
    regex, kinds = _translate(layout)

    def parse(text: str, zone: dt.tzinfo) -> int | None:
        match = regex.fullmatch(text)
        if match is None:
            return None
        fields: dict[str, str] = {}
        for kind, value in zip(kinds, match.groups(), strict=True):
            if value is not None:
                fields[kind] = value
        try:
            return _assemble(fields, zone)
        except (ValueError, KeyError, OverflowError):
            return None

    return parse


def _assemble(fields: dict[str, str], zone: dt.tzinfo) -> int:
    if "year" in fields:
        year = int(fields["year"])
    elif "year2" in fields:
        short = int(fields["year2"])
        year = 1900 + short if short >= 69 else 2000 + short  # Go's pivot
    else:
        year = dt.datetime.now(zone).year
    if "month_name" in fields:
        month = _MONTHS[fields["month_name"][:3].lower()]
    else:
        month = int(fields.get("month", 1))
    day = int(fields.get("day", 1))
    hour = int(fields.get("hour", fields.get("hour12", 0)))
    ampm = fields.get("ampm", "").lower()
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    stamp = dt.datetime(
        year, month, day, hour, int(fields.get("minute", 0)), int(fields.get("second", 0))
    )
    if "yearday" in fields:
        stamp = stamp.replace(month=1, day=1) + dt.timedelta(days=int(fields["yearday"]) - 1)
    offset = fields.get("offset")
    if offset is None and fields.get("zone_name", "").upper() in ("UTC", "GMT", "Z"):
        offset = "Z"
    elif offset is None and fields.get("zone_name", "")[:1] in ("+", "-"):
        offset = fields["zone_name"]
    if offset is not None:
        seconds = calendar.timegm(stamp.timetuple()) - _offset_seconds(offset)
    else:
        seconds = calendar.timegm(stamp.replace(tzinfo=zone).utctimetuple())
    return seconds * 1_000_000_000 + _frac_ns(fields.get("fraction"))


def compile_format(name: str) -> Parser:
    """A parser for a named format or Go layout; raises ValueError for neither."""
    if name in _NAMED:
        return _NAMED[name]
    return _layout_parser(LAYOUTS.get(name, name))
