import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.logparse import (
    PathError,
    compile_path,
    lookup,
    parse_json,
    parse_logfmt,
    parse_regex,
    scalar_text,
)


def test_logfmt_pairs_quotes_escapes_and_bare_keys() -> None:
    line = 'level=info msg="hello \\"world\\"\\n" flag dur=1.2s'
    assert parse_logfmt(line) == {
        "level": "info",
        "msg": 'hello "world"\n',
        "flag": "",
        "dur": "1.2s",
    }


def test_logfmt_tolerates_garbage() -> None:
    assert parse_logfmt('= ="x" a=1 "b=2 c="open') == {"a": "1", "c": "open"}


@given(st.text())
def test_logfmt_never_raises(line: str) -> None:
    assert isinstance(parse_logfmt(line), dict)


def test_json_object_only() -> None:
    assert parse_json('{"a": 1}') == {"a": 1}
    assert parse_json("[1, 2]") is None
    assert parse_json("not json") is None


def test_paths() -> None:
    doc = {"a": {"b": [1, {"x-y": 3}]}, "k.d": "dotted"}
    assert lookup(doc, compile_path('a.b[1]."x-y"')) == 3
    assert lookup(doc, compile_path('["k.d"]')) == "dotted"
    assert lookup(doc, compile_path("a.missing")) is None
    assert lookup(doc, compile_path("a.b[7]")) is None
    with pytest.raises(PathError):
        compile_path("a..b")


def test_scalar_text_and_regex() -> None:
    assert scalar_text("s") == "s"
    assert scalar_text({"a": [1, True]}) == '{"a":[1,true]}'
    pattern = re.compile(r"(?P<level>[A-Z]+) (?P<rest>.*)(?P<never>zzz)?")
    assert parse_regex(pattern, "WARN disk full") == {"level": "WARN", "rest": "disk full"}
    assert parse_regex(pattern, "lowercase") is None
