"""Generated scrape bodies (text 0.0.4 and OpenMetrics) with the awkward corners, for
the differential tests of the native scrape path against the Python one."""

from __future__ import annotations

from hypothesis import strategies as st

OM_TYPES = ["counter", "gauge", "unknown", "stateset", "info", "summary", "histogram"]
OM_TYPES += ["gaugehistogram"]
TEXT_TYPES = ["counter", "gauge", "untyped", "summary", "histogram"]
SUFFIXES = ["", "", "", "_total", "_created", "_bucket", "_sum", "_count", "_info", "_gsum"]
BASES = ["a", "a", "b", "b_total", "c:d", "_x", "up", "http_requests", "1bad", "x-y", "é"]
LABEL_NAMES = ["l", "l", "le", "quantile", "job", "instance", "exported_job", "_x", "a"]
LABEL_NAMES += ["__name__", "bad-name", "1x", "cluster"]
# As written in the body: escapes, and some that break the line.
LABEL_VALUES = ["", "v", "v", "w", "with space", 'q\\"uote', "back\\\\slash", "new\\nline"]
LABEL_VALUES += ["\\x", "é", "\U0001f600", "x" * 300, "\t", "}", ",", "=", "# {", "\\", '"']
LABEL_VALUES += ["0.5", "+Inf", "1", "\\\\\\n"]
VALUES = ["1", "0", "-0", "1.5", "1e3", "1E-3", ".5", "5.", "+Inf", "-Inf", "Inf", "inf"]
VALUES += ["infinity", "-Infinity", "NaN", "nan", "-NaN", "+nan", "1_000", "0x10", "1e999"]
VALUES += ["-1e999", "", "abc", "1.5e+308", "4.9e-324", "\u0661", "1\r", "1e", "e1", "."]
VALUES += ["+.5", "-5.", "00012", "1.7976931348623157e308", "nAn", "iNf", "3", "42", "7.25"]
TEXT_STAMPS = ["", "", "", " 1700000000000", " -5", " +5", " 0", " 9223372036854775807"]
TEXT_STAMPS += [" 9223372036854775808", " -9223372036854775808", " -9223372036854775809"]
TEXT_STAMPS += [" 1.5", " 1_0", " 00042", "\t12", " 12 ", " x", " 1 2", " " + "0" * 4100 + "1"]
OM_STAMPS = ["", "", "", " 1700000000.123", " 1.005", " -1.5", " 1e3", " 1E-3", " 0.0005"]
OM_STAMPS += [" -0.0005", " 9223372036854775.807", " 9223372036854775.808", " 1e400"]
OM_STAMPS += [" NaN", " +Inf", " 1_0", " .5", " 5.", " 0e99999", " 1234567890123456789.5"]
OM_STAMPS += [" 0.99999999999999999999999999999", " 1.2345678901234567890123456789012e5"]
OM_STAMPS += ["  1", " 1 ", " -9223372036854775.808", " 17e-1"]
EXEMPLARS = ["", "", "", ' # {trace_id="abc"} 1', " # {} 1 1700000000.5", ' # {a="b",} 2']
EXEMPLARS += [' # {__name__="x"} 1', ' # {a="1",a="2"} 1', " # {} x", " # {}", " #", " # {} 1 x"]
EXEMPLARS += [' # {a="b"} 1 2 3']
HELPS = ["help", "a \\\\ b \\n", ""]
# Pools for bodies meant to be valid (the awkward but legal spellings).
CLEAN_VALUES = ["1", "0", "-0", "1.5", "1e3", "1E-3", ".5", "5.", "+Inf", "-Inf", "NaN", "nan"]
CLEAN_VALUES += ["infinity", "-Infinity", "4.9e-324", "00012", "nAn", "iNf", "3", "42", "7.25"]
CLEAN_LABEL_VALUES = [v for v in LABEL_VALUES if v not in ("\\", '"')]
CLEAN_TEXT_STAMPS = ["", "", "", " 1700000000000", " -5", " +5", " 0", " 9223372036854775807"]
CLEAN_TEXT_STAMPS += [" -9223372036854775808", " 00042", "\t12", " 12 "]
CLEAN_OM_STAMPS = ["", "", "", " 1700000000.123", " 1.005", " -1.5", " 1e3", " 1E-3"]
CLEAN_OM_STAMPS += [" -0.0005", " 9223372036854775.807", " .5", " 5.", " 0e99999", " 17e-1"]
CLEAN_EXEMPLARS = ["", "", "", ' # {trace_id="abc"} 1', " # {} 1 1700000000.5"]
CLEAN_EXEMPLARS += [' # {a="b",} 2', ' # {__name__="x"} 1']
CLEAN_SUFFIXES = {
    (False, "counter"): [""],
    (False, "gauge"): [""],
    (False, "untyped"): [""],
    (False, "summary"): ["", "_sum", "_count"],
    (False, "histogram"): ["_bucket", "_sum", "_count"],
    (True, "counter"): ["_total", "_created"],
    (True, "gauge"): [""],
    (True, "unknown"): [""],
    (True, "stateset"): [""],
    (True, "info"): ["_info"],
    (True, "summary"): ["", "_sum", "_count", "_created"],
    (True, "histogram"): ["_bucket", "_sum", "_count", "_created"],
    (True, "gaugehistogram"): ["_bucket", "_gsum", "_gcount"],
}
CLEAN_BASES = ["a", "b", "c:d", "_x", "up", "http_requests", "node_cpu", "q"]
OTHER_LINES = ["# a comment", "#", "", "   ", "#HELP x y", "# EOF", "# HELP", "# TYPE a"]
OTHER_LINES += ["\t# TYPE tabbed gauge", "# UNIT a seconds", "# HELP a\tx", "# HELPER x"]
OTHER_LINES += ["# TYPE  spaced   counter ", "#\tTYPE a gauge", "# TYPE b_total counter"]


@st.composite
def label_set(draw: st.DrawFn, blanks: bool, clean: bool = False) -> str:
    """``{...}`` as written, or nothing."""
    if draw(st.integers(0, 4)) == 0:
        return ""
    if draw(st.integers(0, 9)) == 0:
        return "{}"
    count = draw(st.integers(1, 4))
    if draw(st.integers(0, 30)) == 0:
        count = draw(st.integers(15, 40))  # many labels: the set-based duplicate check
    blank = st.sampled_from(["", "", "", " ", "\t"]) if blanks else st.just("")
    parts = []
    for index in range(count):
        name = draw(st.sampled_from(LABEL_NAMES))
        if count > 8 or clean:
            name = f"n{index}" if clean or draw(st.integers(0, 20)) else "n0"
        value = draw(st.sampled_from(CLEAN_LABEL_VALUES if clean else LABEL_VALUES))
        parts.append(f'{draw(blank)}{name}{draw(blank)}={draw(blank)}"{value}"{draw(blank)}')
    trailing = "," if draw(st.integers(0, 8)) == 0 else ""
    return "{" + ",".join(parts) + trailing + draw(blank) + "}"


@st.composite
def sample_line(draw: st.DrawFn, name: str, openmetrics: bool, clean: bool = False) -> str:
    blanks = not openmetrics or draw(st.integers(0, 10)) == 0
    lead = draw(st.sampled_from(["", "", "", "", " ", "\t"])) if blanks else ""
    labels = draw(label_set(blanks, clean))
    gap = draw(st.sampled_from([" ", " ", " ", "\t", "  "])) if blanks else " "
    between = draw(st.sampled_from(["", "", "", " "])) if blanks and labels else ""
    if clean:
        value = draw(st.sampled_from(CLEAN_VALUES))
        stamp = draw(st.sampled_from(CLEAN_OM_STAMPS if openmetrics else CLEAN_TEXT_STAMPS))
        exemplar = draw(st.sampled_from(CLEAN_EXEMPLARS)) if openmetrics else ""
        if openmetrics:
            lead = between = ""
            gap = " "
            if stamp.endswith(" "):
                stamp = stamp.rstrip()
    else:
        value = draw(st.sampled_from(VALUES[:12] * 3 + VALUES))
        stamp = draw(st.sampled_from(OM_STAMPS if openmetrics else TEXT_STAMPS))
        exemplar = draw(st.sampled_from(EXEMPLARS)) if openmetrics else ""
    return f"{lead}{name}{between}{labels}{gap}{value}{stamp}{exemplar}"


@st.composite
def exposition(draw: st.DrawFn, openmetrics: bool) -> bytes:
    """A body of families (metadata, then samples of the names their type produces),
    sometimes with lines repeated, moved, or replaced by odd ones. Half of them are
    meant to be valid (legal spellings only, each family's own sample names)."""
    clean = draw(st.booleans())
    if clean:
        return draw(clean_exposition(openmetrics))
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 5))):
        base = draw(st.sampled_from(BASES))
        kind = draw(st.sampled_from(OM_TYPES if openmetrics else TEXT_TYPES))
        if draw(st.booleans()):
            text = draw(st.sampled_from(HELPS))
            lines.append(f"# HELP {base} {text}")
        if draw(st.integers(0, 3)):
            lines.append(f"# TYPE {base} {kind}")
        if openmetrics and draw(st.integers(0, 4)) == 0:
            unit = draw(st.sampled_from(["seconds", "", "bytes", "bad unit"]))
            lines.append(f"# UNIT {base} {unit}")
        for _ in range(draw(st.integers(0, 6))):
            name = base + draw(st.sampled_from(SUFFIXES))
            lines.append(draw(sample_line(name, openmetrics)))
    if lines and draw(st.integers(0, 3)) == 0:
        lines.append(lines[draw(st.integers(0, len(lines) - 1))])  # a duplicate line
    if lines and draw(st.integers(0, 4)) == 0:
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(OTHER_LINES)))
    if openmetrics and draw(st.integers(0, 12)):
        lines.append("# EOF")
    text = "\n".join(lines)
    if draw(st.integers(0, 5)):
        text += "\n"
    body = text.encode()
    corner = draw(st.integers(0, 40))
    if corner == 0:
        body = b"\xef\xbb\xbf" + body  # a byte order mark
    elif corner == 1 and body:
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + body[at:]
    elif corner == 2:
        body += b"\n\n"
    return body


@st.composite
def clean_exposition(draw: st.DrawFn, openmetrics: bool) -> bytes:
    """A body both parsers should take, with the legal corners."""
    lines: list[str] = []
    bases = draw(st.lists(st.sampled_from(CLEAN_BASES), max_size=4, unique=True))
    for base in bases:
        kind = draw(st.sampled_from(OM_TYPES if openmetrics else TEXT_TYPES))
        if openmetrics and kind == "counter" and draw(st.booleans()):
            base += "_total"  # kube-state-metrics' naming: samples of the family's name
            suffixes = [""]
        else:
            suffixes = CLEAN_SUFFIXES[(openmetrics, kind)]
        if draw(st.booleans()):
            lines.append(f"# HELP {base} {draw(st.sampled_from(HELPS))}")
        if draw(st.integers(0, 3)):
            lines.append(f"# TYPE {base} {kind}")
        elif openmetrics or kind in ("summary", "histogram"):
            suffixes = [""]
        for _ in range(draw(st.integers(0, 6))):
            name = base + draw(st.sampled_from(suffixes))
            lines.append(draw(sample_line(name, openmetrics, clean=True)))
        if not openmetrics and draw(st.integers(0, 3)) == 0:
            lines.append(draw(st.sampled_from(["# a comment", "", "  ", "#"])))
    if lines and draw(st.integers(0, 3)) == 0:
        lines.append(lines[-1])  # a duplicate series
    if openmetrics:
        lines.append("# EOF")
    text = "\n".join(lines)
    if not openmetrics or draw(st.integers(0, 3)):
        text += "\n"
    return text.encode()
