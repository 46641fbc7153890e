"""Prometheus text exposition 0.0.4 and OpenMetrics 1.0 text, parsed strictly and fast.

Written from the published specs (Prometheus ``exposition_formats``, the OpenMetrics
1.0 ABNF); where they are silent we behave like Prometheus's scraper. ``parse`` is
pure: bytes and a Content-Type in, samples and metric families out, or ``ParseError``
("line N: what") for the whole body, as the OpenMetrics spec asks.

Decisions
    * Format: ``application/openmetrics-text`` (any version, as Prometheus does) is
      OpenMetrics; anything else, missing or unparsable is text 0.0.4.
    * Names use the legacy character set only. Quoted UTF-8 names (text 1.0.0,
      OpenMetrics 2.0) are a ParseError; ``negotiate_accept`` asks exposers for
      ``escaping=underscores`` so they do not send them.
    * Exemplars are checked for syntax, then dropped.
    * ``_created`` samples are returned like any other sample (value in seconds).
    * Timestamps are int64 milliseconds; OpenMetrics seconds are scaled exactly
      and truncated (Prometheus's float product gives 1004 ms for 1.005 s).
      Out of int64 range is an error.
    * Escapes: ``\\\\``, ``\\"`` and ``\\n`` are decoded in label values (and in
      OpenMetrics HELP); 0.0.4 HELP decodes ``\\\\`` and ``\\n`` only. Any other
      backslash sequence is kept verbatim, as Prometheus does.
    * Metadata: at most one HELP, TYPE and UNIT per family. 0.0.4: TYPE after the
      family's samples is an error; samples of one family may be split by other
      families. OpenMetrics: any metadata after the family's samples, interleaved
      families and clashing sample names (gauge ``a_created`` beside counter ``a``)
      are errors, and ``# EOF`` must end the body.
    * Accepted where Prometheus accepts them: a missing final line feed (0.0.4),
      a trailing comma in a label set (both formats).
    * Not checked, as Prometheus's parsers do not either: value semantics (negative
      counters, bucket order, ``le``/``quantile`` values, info == 1), duplicate
      series, timestamp order, exemplar length.

Speed: a line of the common shape (single spaces, no backslash-quote) is taken apart
with ``str.split('"')``; the label-name skeleton of such a line is validated once per
parse and cached. Any other line goes through a careful position-based scanner,
which is also the one that words every error. Both are linear in the line length.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, cast

__all__ = [
    "ACCEPT",
    "MetricFamily",
    "ParseError",
    "ScrapedSample",
    "is_openmetrics",
    "negotiate_accept",
    "parse",
]

# Prometheus 3's header for scrape_protocols [OpenMetricsText1.0.0,
# OpenMetricsText0.0.1, PrometheusText0.0.4] with legacy name validation: the q
# weights count down from 0.6 and only the 1.0.0 formats carry ``escaping``.
ACCEPT: Final = (
    "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=0.0.4;q=0.4,"
    "*/*;q=0.3"
)


class ParseError(ValueError):
    """Raised when a scrape body is not valid exposition; message names the line number
    and what is wrong ("line N: <what>")."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason

    def __reduce__(self) -> tuple[type[ParseError], tuple[int, str]]:
        return ParseError, (self.line, self.reason)


@dataclass(frozen=True, slots=True)
class ScrapedSample:
    """One sample line: its own metric name (``foo_bucket``), labels as written, value, time."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """A family's metadata; type is "untyped" (0.0.4) or "unknown" (OpenMetrics) by default."""

    name: str
    type: str
    help: str
    unit: str


def negotiate_accept() -> str:
    """The Accept header a scraper sends: OpenMetrics first, then text 0.0.4, like Prometheus."""
    return ACCEPT


def is_openmetrics(content_type: str) -> bool:
    """Whether :func:`parse` reads a body of this Content-Type as OpenMetrics."""
    return content_type.partition(";")[0].strip().lower() == "application/openmetrics-text"


def parse(body: bytes, content_type: str) -> tuple[list[ScrapedSample], dict[str, MetricFamily]]:
    """Parse a scrape body; the families are keyed by family name (``foo`` for ``foo_bucket``).

    Every family named by a metadata line or by a sample appears, so each sample's
    family is in the result. Raises ParseError for the first thing that is wrong.
    """
    parser = _Parser(openmetrics=is_openmetrics(content_type))
    text = _decode(body)
    # Parsing builds no reference cycles, yet the cyclic collector would rescan the
    # growing sample list again and again (about half the parse time); pause it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return parser.run(text)
    finally:
        if collecting:
            gc.enable()


# --- lexical rules ---------------------------------------------------------------

_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_QUOTED_BODY: Final = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
_BLANKS: Final = re.compile(r"[ \t]*")
_TOKEN: Final = re.compile(r"[^ \t]*")
_HEAD: Final = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([a-zA-Z_][a-zA-Z0-9_]*)=")
_SEPARATOR: Final = re.compile(r",([a-zA-Z_][a-zA-Z0-9_]*)=")
_UNIT: Final = re.compile(r"[a-zA-Z0-9_:]*")
# Greedy throughout: a lazy group before trailing blanks would be quadratic.
_TEXT_META: Final = re.compile(r"#[ \t]+(HELP|TYPE)(?:[ \t]+([^ \t]*))?(?:[ \t]+(.*))?")
_OM_META: Final = re.compile(r"# (HELP|TYPE|UNIT) ([^ ]*)(?: (.*))?")
_ESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)

_LABEL_ESCAPES: Final = {"\\": "\\", '"': '"', "n": "\n"}
_TEXT_HELP_ESCAPES: Final = {"\\": "\\", "n": "\n"}
_GO_SPECIAL_FLOATS: Final = frozenset(
    {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan"}
)
_INT64_MIN: Final = -(2**63)
_INT64_LIMIT: Final = 2**63

# Sample-name suffixes each type produces, per format.
_TEXT_SUFFIXES: Final[dict[str, tuple[str, ...]]] = {
    "counter": ("",),
    "gauge": ("",),
    "untyped": ("",),
    "summary": ("", "_sum", "_count"),
    "histogram": ("_bucket", "_sum", "_count"),
}
_OM_SUFFIXES: Final[dict[str, tuple[str, ...]]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "unknown": ("",),
    "stateset": ("",),
    "info": ("_info",),
    "summary": ("", "_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}
_UNITLESS_TYPES: Final = frozenset({"info", "stateset"})


def _decode(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        column = exc.start - body.rfind(b"\n", 0, exc.start)
        reason = f"invalid UTF-8 (byte 0x{body[exc.start]:02x} at column {column})"
        raise ParseError(line, reason) from None
    if text.startswith("\ufeff"):
        raise ParseError(1, "a byte order mark is not allowed")
    return text


def _go_float(token: str) -> float | None:
    """The value Go's strconv.ParseFloat gives (minus hex and ``_``, as Prometheus), or None."""
    try:
        value = float(token)
    except ValueError:
        return None
    # float() also takes digit separators, non-ASCII digits and surrounding spaces.
    if "_" in token or not token.isascii() or token[0] <= " " or token[-1] <= " ":
        return None
    if value - value == 0.0:
        return value
    # Not finite: Go spells these only as [+-]inf, [+-]infinity and unsigned nan,
    # and reports an overflow such as 1e999 as an error.
    return value if token.lower() in _GO_SPECIAL_FLOATS else None


def _text_timestamp(token: str) -> int | None:
    """Milliseconds as Go's strconv.ParseInt(token, 10, 64) reads them, or None."""
    if not token or "_" in token or not token.isascii() or token[0] <= " " or token[-1] <= " ":
        return None
    try:
        value = int(token)
    except ValueError:
        return None
    return value if _INT64_MIN <= value < _INT64_LIMIT else None


def _om_timestamp(token: str) -> int | None:
    """Float seconds to milliseconds truncated toward zero, or None if invalid.

    The decimal is scaled exactly: Prometheus's ``int64(ts * 1000)`` turns 1.005 s
    into 1004 ms through binary rounding; this gives 1005.
    """
    seconds = _go_float(token)
    if seconds is None or seconds - seconds != 0.0:
        return None
    try:
        millis = int(Decimal(token).scaleb(3))
    except ArithmeticError:  # an exponent beyond Decimal's (0e99999999999999999999)
        return None
    return millis if _INT64_MIN <= millis < _INT64_LIMIT else None


def _is_metric_name(name: str) -> bool:
    """[a-zA-Z_:][a-zA-Z0-9_:]*, checked without a regex: ASCII identifiers are exactly that."""
    return name.isascii() and (name.isidentifier() or name.replace(":", "_").isidentifier())


def _unescape(raw: str, escapes: dict[str, str]) -> str:
    if "\\" not in raw:
        return raw
    return _ESCAPE.sub(lambda m: escapes.get(m.group(1), m.group(0)), raw)


def _show(text: str, start: int = 0, limit: int = 60) -> str:
    """A bounded repr of text[start:] for messages, so a huge line cannot make a huge one."""
    if len(text) - start <= limit:
        return repr(text[start:])
    return repr(text[start : start + limit]) + "..."


class _Family:
    __slots__ = (
        "closed",
        "has_help",
        "has_samples",
        "has_type",
        "has_unit",
        "help",
        "name",
        "type",
        "unit",
    )

    def __init__(self, name: str, type_: str) -> None:
        self.name = name
        self.type = type_
        self.help = ""
        self.unit = ""
        self.has_help = self.has_type = self.has_unit = False
        self.has_samples = False
        self.closed = False  # OpenMetrics: another family came after this one.


# (metric name, label names, number of labels, family)
_Skeleton = tuple[str, tuple[str, ...], int, _Family]
_new_sample = cast(Callable[[type[ScrapedSample]], ScrapedSample], object.__new__)


def _slot_setter(field: str) -> Callable[[ScrapedSample, object], None]:
    # The frozen dataclass __init__ costs two thirds of a microsecond per sample;
    # writing the slots directly builds the identical object in half the time.
    return cast(Callable[[ScrapedSample, object], None], ScrapedSample.__dict__[field].__set__)


_set_name = _slot_setter("name")
_set_labels = _slot_setter("labels")
_set_value = _slot_setter("value")
_set_timestamp = _slot_setter("timestamp_ms")


class _Parser:
    """State of one parse: families and the sample-name -> family index."""

    def __init__(self, *, openmetrics: bool) -> None:
        self.openmetrics = openmetrics
        self.suffixes = _OM_SUFFIXES if openmetrics else _TEXT_SUFFIXES
        self.default_type = "unknown" if openmetrics else "untyped"
        self.families: dict[str, _Family] = {}
        self.by_sample_name: dict[str, _Family] = {}
        self.skeletons: dict[tuple[str, ...], _Skeleton] = {}
        self.current: _Family | None = None  # OpenMetrics grouping only.
        self.seen_eof = False

    def run(self, text: str) -> tuple[list[ScrapedSample], dict[str, MetricFamily]]:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # The final line feed, or an empty body.
        samples = self._samples(lines)
        if self.openmetrics and not self.seen_eof:
            raise ParseError(len(lines) + 1, "missing '# EOF' at the end of the exposition")
        families = {
            name: MetricFamily(name, f.type, f.help, f.unit) for name, f in self.families.items()
        }
        return samples, families

    def _samples(self, lines: Sequence[str]) -> list[ScrapedSample]:
        samples: list[ScrapedSample] = []
        append = samples.append
        by_sample_name = self.by_sample_name
        skeletons = self.skeletons
        openmetrics = self.openmetrics
        timestamp = _om_timestamp if openmetrics else _text_timestamp
        comment = self._om_comment if openmetrics else self._text_comment
        last = len(lines)
        sampled: _Family | None = None  # Family of the previous line, if it was a sample.
        for lineno, line in enumerate(lines, 1):
            if not line:
                if openmetrics:
                    raise ParseError(lineno, "blank lines are not allowed in OpenMetrics")
                continue
            first = line[0]
            if first == "#":
                comment(line, lineno, lineno == last)
                sampled = None
                continue
            if (first == " " or first == "\t") and not openmetrics:
                stripped = line.lstrip(" \t")
                if not stripped:
                    continue
                if stripped[0] == "#":
                    comment(stripped, lineno, lineno == last)
                    sampled = None
                    continue

            # Fast path: accept only the canonical shape, never raise; anything
            # else is left to the careful scanner below.
            rest: str | None = None
            labels: tuple[tuple[str, str], ...] = ()
            if line.find("{") < 0:
                name, _, after_name = line.partition(" ")
                known = by_sample_name.get(name)
                if known is not None:
                    family = known
                    rest = after_name
            elif "\\" not in line or '\\"' not in line:
                # Without a backslash-quote every quote delimits, so the split is exact.
                parts = line.split('"')
                if len(parts) & 1:
                    key = tuple(parts[:-1:2])
                    skeleton = skeletons.get(key)
                    if skeleton is None:
                        skeleton = self._skeleton(key, lineno)
                    tail = parts[-1]
                    if skeleton is not None and tail.startswith("} "):
                        name, names, count, family = skeleton
                        # Spelled out for common sizes: three times faster than zip().
                        if count == 1:
                            labels = ((names[0], parts[1]),)
                        elif count == 2:
                            labels = ((names[0], parts[1]), (names[1], parts[3]))
                        elif count == 3:
                            labels = (
                                (names[0], parts[1]),
                                (names[1], parts[3]),
                                (names[2], parts[5]),
                            )
                        else:
                            labels = tuple(zip(names, parts[1::2], strict=False))
                        if "\\" in line:
                            labels = tuple((n, _unescape(v, _LABEL_ESCAPES)) for n, v in labels)
                        rest = tail[2:]
            value: float | None = None
            if rest:
                space = rest.find(" ")
                if space < 0:
                    value_token = rest
                    stamp = None
                else:
                    value_token = rest[:space]
                    stamp = timestamp(rest[space + 1 :])
                if space < 0 or stamp is not None:
                    try:
                        value = float(value_token)
                    except ValueError:
                        value = None
                    else:
                        if (
                            value - value != 0.0
                            or "_" in value_token
                            or not value_token.isascii()
                            or value_token[0] <= " "
                            or value_token[-1] <= " "
                        ):
                            value = _go_float(value_token)
            if value is None:
                if openmetrics:
                    name, labels, value, stamp = _om_sample(line, lineno)
                else:
                    name, labels, value, stamp = _text_sample(line, lineno)
                family = self._resolve(name, lineno)

            if family is not sampled:
                if openmetrics:
                    sampled = self._enter(family, lineno)
                else:
                    family.has_samples = True
                    sampled = family
            sample = _new_sample(ScrapedSample)
            _set_name(sample, name)
            _set_labels(sample, labels)
            _set_value(sample, value)
            _set_timestamp(sample, stamp)
            append(sample)
        return samples

    # --- families -------------------------------------------------------------

    def _skeleton(self, key: tuple[str, ...], lineno: int) -> _Skeleton | None:
        """Validate the label-name skeleton of a fast-path line once, or None."""
        match = _HEAD.fullmatch(key[0]) if key else None
        if match is None:
            return None
        name, first = match.groups()
        names = [first]
        for separator in key[1:]:
            match = _SEPARATOR.fullmatch(separator)
            if match is None:
                return None
            names.append(match.group(1))
        if "__name__" in names or len(set(names)) != len(names):
            return None
        skeleton = (name, tuple(names), len(names), self._resolve(name, lineno))
        self.skeletons[key] = skeleton
        return skeleton

    def _resolve(self, name: str, lineno: int) -> _Family:
        """The family a sample name belongs to; an implicit one if no metadata names it."""
        family = self.by_sample_name.get(name)
        if family is not None:
            return family
        declared = self.families.get(name)
        if declared is not None:
            expected = ", ".join(name + s for s in self.suffixes[declared.type])
            raise ParseError(
                lineno,
                f"sample {name} does not fit {declared.type} family {name} (expected {expected})",
            )
        family = _Family(name, self.default_type)
        self.families[name] = family
        self.by_sample_name[name] = family
        return family

    def _enter(self, family: _Family, lineno: int) -> _Family:
        """OpenMetrics: the sample's family becomes current; it must not have been left."""
        if family.closed:
            raise ParseError(
                lineno, f"samples of family {family.name} are interleaved with another family"
            )
        self._make_current(family)
        family.has_samples = True
        return family

    def _make_current(self, family: _Family) -> None:
        current = self.current
        if current is not None and current is not family:
            current.closed = True
        self.current = family

    def _metadata_family(self, keyword: str, name: str, lineno: int) -> _Family:
        """The family a HELP/TYPE/UNIT line describes, created on first mention."""
        family = self.families.get(name)
        if family is None:
            if name.startswith('"'):
                raise ParseError(lineno, f"quoted metric names are not supported: {_show(name)}")
            if not name:
                raise ParseError(lineno, f"{keyword} needs a metric name")
            if not _is_metric_name(name):
                raise ParseError(lineno, f"invalid metric name {_show(name)}")
            owner = self.by_sample_name.get(name)
            if owner is not None and self.openmetrics:
                raise ParseError(
                    lineno,
                    f"family {name} clashes with samples of {owner.type} family {owner.name}",
                )
            family = _Family(name, self.default_type)
            self.families[name] = family
            self.by_sample_name[name] = family
        if self.openmetrics:
            if family.has_samples:
                raise ParseError(lineno, f"{keyword} for family {name} after its samples")
            if family.closed:
                raise ParseError(lineno, f"{keyword} for family {name} after another family")
            self._make_current(family)
        return family

    def _set_type(self, family: _Family, type_: str, lineno: int) -> None:
        if family.has_type:
            raise ParseError(lineno, f"second TYPE line for family {family.name}")
        if family.has_samples:
            raise ParseError(lineno, f"TYPE for family {family.name} after its samples")
        if type_ in _UNITLESS_TYPES and family.unit:
            raise ParseError(lineno, f"a {type_} family cannot have a unit")
        index = self.by_sample_name
        for suffix in self.suffixes[family.type]:
            if index.get(family.name + suffix) is family:
                del index[family.name + suffix]
        for suffix in self.suffixes[type_]:
            sample_name = family.name + suffix
            if not self.openmetrics:
                # Like Prometheus, a family of the exact name wins over a suffix.
                if suffix:
                    index.setdefault(sample_name, family)
                else:
                    index[sample_name] = family
                continue
            other = index.get(sample_name) or self.families.get(sample_name)
            if other is not None and other is not family:
                raise ParseError(
                    lineno,
                    f"{type_} family {family.name} would produce sample {sample_name},"
                    f" which clashes with family {other.name}",
                )
            index[sample_name] = family
        if self.openmetrics and type_ == "counter" and family.name.endswith("_total"):
            # kube-state-metrics (v2.20) names counter families with their _total and
            # writes samples of that same name; Prometheus takes them, and so do we.
            index.setdefault(family.name, family)
        family.type = type_
        family.has_type = True

    # --- comment lines ----------------------------------------------------------

    def _text_comment(self, line: str, lineno: int, is_last: bool) -> None:
        name = ""
        if line.startswith(("# HELP ", "# TYPE ")):
            name, _, text = line[7:].partition(" ")
            keyword = line[2:6]
            text = text.strip(" \t")
        if not name or "\t" in name:  # Not the common shape: take the line apart slowly.
            match = _TEXT_META.fullmatch(line)
            if match is None:
                return  # An ordinary comment.
            keyword, name, text = match.groups()
            name = name or ""
            text = (text or "").rstrip(" \t")
        family = self._metadata_family(keyword, name, lineno)
        if keyword == "HELP":
            if family.has_help:
                raise ParseError(lineno, f"second HELP line for family {family.name}")
            family.help = _unescape(text, _TEXT_HELP_ESCAPES)
            family.has_help = True
        elif text in _TEXT_SUFFIXES:
            self._set_type(family, text, lineno)
        else:
            raise ParseError(lineno, f"invalid metric type {_show(text)} for family {family.name}")

    def _om_comment(self, line: str, lineno: int, is_last: bool) -> None:
        if line == "# EOF":
            if not is_last:
                raise ParseError(lineno + 1, "content after '# EOF'")
            self.seen_eof = True
            return
        match = _OM_META.fullmatch(line)
        if match is None:
            if line.startswith("# EOF"):
                raise ParseError(lineno, "content after '# EOF'")
            raise ParseError(
                lineno, "OpenMetrics allows only '# HELP', '# TYPE', '# UNIT' and '# EOF' lines"
            )
        keyword, name, text = match.groups()
        family = self._metadata_family(keyword, name, lineno)
        if text is None:
            raise ParseError(lineno, f"{keyword} {name} needs a space and a value after the name")
        if keyword == "HELP":
            if family.has_help:
                raise ParseError(lineno, f"second HELP line for family {name}")
            family.help = _unescape(text, _LABEL_ESCAPES)
            family.has_help = True
        elif keyword == "TYPE":
            if text not in _OM_SUFFIXES:
                raise ParseError(lineno, f"invalid metric type {_show(text)} for family {name}")
            self._set_type(family, text, lineno)
        else:
            if family.has_unit:
                raise ParseError(lineno, f"second UNIT line for family {name}")
            if _UNIT.fullmatch(text) is None:
                raise ParseError(lineno, f"invalid unit {_show(text)}")
            if text and not name.endswith("_" + text):
                raise ParseError(lineno, f"unit {text} is not a suffix of family name {name}")
            if text and family.type in _UNITLESS_TYPES:
                raise ParseError(lineno, f"a {family.type} family cannot have a unit")
            family.unit = text
            family.has_unit = True


# --- the careful scanner ------------------------------------------------------------

_Sample = tuple[str, tuple[tuple[str, str], ...], float, int | None]


def _end(pattern: re.Pattern[str], line: str, pos: int) -> int:
    """Where a match of pattern (which may match the empty string) at pos ends."""
    match = pattern.match(line, pos)
    return pos if match is None else match.end()


def _metric_name(line: str, pos: int, lineno: int) -> tuple[str, int]:
    match = _METRIC_NAME.match(line, pos)
    if match is None:
        if line.startswith("{", pos):
            raise ParseError(lineno, "metric names inside braces (UTF-8 names) are not supported")
        raise ParseError(lineno, f"invalid metric name at column {pos + 1}: {_show(line, pos)}")
    return match.group(), match.end()


def _labels(
    line: str, pos: int, lineno: int, *, openmetrics: bool, exemplar: bool = False
) -> tuple[tuple[tuple[str, str], ...], int]:
    """Scan a label set from just after ``{``; return it and the position after ``}``."""
    what = "exemplar label" if exemplar else "label"
    labels: list[tuple[str, str]] = []
    seen: set[str] = set()
    size = len(line)
    while True:
        if not openmetrics:
            pos = _end(_BLANKS, line, pos)
        if pos >= size:
            raise ParseError(lineno, f"{what} set is not closed with '}}'")
        if line[pos] == "}":
            return tuple(labels), pos + 1
        match = _LABEL_NAME.match(line, pos)
        if match is None:
            if line[pos] == '"':
                raise ParseError(lineno, "quoted label names (UTF-8 names) are not supported")
            raise ParseError(lineno, f"invalid {what} name at column {pos + 1}: {_show(line, pos)}")
        name = match.group()
        if name == "__name__" and not exemplar:
            raise ParseError(lineno, "label name __name__ is reserved")
        if name in seen:
            raise ParseError(lineno, f"duplicate {what} name {name}")
        pos = match.end()
        if not openmetrics:
            pos = _end(_BLANKS, line, pos)
        if not line.startswith("=", pos):
            raise ParseError(lineno, f"expected '=' after {what} name {name}")
        pos += 1
        if not openmetrics:
            pos = _end(_BLANKS, line, pos)
        if not line.startswith('"', pos):
            raise ParseError(lineno, f"expected '\"' to open the value of {what} {name}")
        end = _end(_QUOTED_BODY, line, pos + 1)
        if end >= size or line[end] != '"':
            raise ParseError(lineno, f"value of {what} {name} is not closed with '\"'")
        labels.append((name, _unescape(line[pos + 1 : end], _LABEL_ESCAPES)))
        seen.add(name)
        pos = end + 1
        if not openmetrics:
            pos = _end(_BLANKS, line, pos)
        if line.startswith(",", pos):
            pos += 1
        elif not line.startswith("}", pos):
            raise ParseError(lineno, f"expected ',' or '}}' after the value of {what} {name}")


def _value(token: str, lineno: int, what: str = "value") -> float:
    value = _go_float(token) if token else None
    if value is None:
        if not token:
            raise ParseError(lineno, f"missing {what}")
        hint = " (line endings must be \\n, not \\r\\n)" if token.endswith("\r") else ""
        raise ParseError(lineno, f"invalid {what} {_show(token)}{hint}")
    return value


def _text_sample(line: str, lineno: int) -> _Sample:
    """Scan a 0.0.4 sample line: blanks and tabs separate tokens, and may surround them."""
    size = len(line)
    start = _end(_BLANKS, line, 0)
    name, pos = _metric_name(line, start, lineno)
    after = _end(_BLANKS, line, pos)
    labels: tuple[tuple[str, str], ...] = ()
    if line.startswith("{", after):
        labels, pos = _labels(line, after + 1, lineno, openmetrics=False)
        pos = _end(_BLANKS, line, pos)
    elif after == pos and pos < size:
        end = _end(_TOKEN, line, start)
        raise ParseError(lineno, f"invalid metric name {_show(line[start:end])}")
    else:
        pos = after
    end = _end(_TOKEN, line, pos)
    value = _value(line[pos:end], lineno)
    pos = _end(_BLANKS, line, end)
    stamp = None
    if pos < size:
        end = _end(_TOKEN, line, pos)
        token = line[pos:end]
        stamp = _text_timestamp(token)
        if stamp is None:
            raise ParseError(lineno, f"invalid timestamp {_show(token)} (want int64 milliseconds)")
        pos = _end(_BLANKS, line, end)
        if pos < size:
            raise ParseError(lineno, f"unexpected text after the timestamp: {_show(line, pos)}")
    return name, labels, value, stamp


def _om_sample(line: str, lineno: int) -> _Sample:
    """Scan an OpenMetrics sample line: single spaces, optional timestamp and exemplar."""
    if line[0] in " \t":
        raise ParseError(lineno, "leading whitespace is not allowed in OpenMetrics")
    name, pos = _metric_name(line, 0, lineno)
    labels: tuple[tuple[str, str], ...] = ()
    if line.startswith("{", pos):
        labels, pos = _labels(line, pos + 1, lineno, openmetrics=True)
    if not line.startswith(" ", pos):
        if pos == len(line):
            raise ParseError(lineno, "missing value")
        raise ParseError(lineno, f"expected a space before the value, got {_show(line, pos)}")
    pos, value_token = _om_token(line, pos + 1)
    value = _value(value_token, lineno)
    stamp = None
    if pos < len(line) and not line.startswith(" # ", pos):
        pos, token = _om_token(line, pos + 1)
        stamp = _om_timestamp(token)
        if stamp is None:
            raise ParseError(lineno, f"invalid timestamp {_show(token)} (want float seconds)")
    if pos < len(line):
        if not line.startswith(" # {", pos):
            raise ParseError(lineno, f"unexpected text after the sample: {_show(line, pos)}")
        _om_exemplar(line, pos + 4, lineno)
    return name, labels, value, stamp


def _om_token(line: str, pos: int) -> tuple[int, str]:
    end = line.find(" ", pos)
    if end < 0:
        end = len(line)
    return end, line[pos:end]


def _om_exemplar(line: str, pos: int, lineno: int) -> None:
    """Check `` # {labels} value [timestamp]`` from just after the ``{``; it is then dropped."""
    _, pos = _labels(line, pos, lineno, openmetrics=True, exemplar=True)
    if not line.startswith(" ", pos):
        raise ParseError(lineno, "expected a space and a value after the exemplar labels")
    pos, token = _om_token(line, pos + 1)
    _value(token, lineno, "exemplar value")
    if pos < len(line):
        pos, token = _om_token(line, pos + 1)
        if _om_timestamp(token) is None:
            raise ParseError(lineno, f"invalid exemplar timestamp {_show(token)}")
        if pos < len(line):
            raise ParseError(lineno, f"unexpected text after the exemplar: {_show(line, pos)}")
