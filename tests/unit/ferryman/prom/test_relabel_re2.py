"""The RE2 engine of relabeling (``engine="re2"``): the same answers as the translator,
in time linear in the input."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.prom.relabel import (
    Action,
    RegexNotSupportedError,
    RelabelConfig,
    Relabeler,
    compile_rules,
)
from tests.unit.ferryman.prom.test_relabel import EXPANSIONS, REGEX_MATCHES

Labels = dict[str, str]
RE2 = {"relabel_engine": "re2"}


def both(*configs: dict[str, Any]) -> tuple[Relabeler, Relabeler]:
    parsed = [RelabelConfig.model_validate(c) for c in configs]
    return compile_rules(parsed), compile_rules(parsed, engine="re2")


def re2_rules(*configs: dict[str, Any]) -> Relabeler:
    return compile_rules(
        [RelabelConfig.model_validate(c, context=RE2) for c in configs], engine="re2"
    )


@pytest.mark.parametrize(("regex", "value", "matches"), REGEX_MATCHES)
def test_the_dialect_table_holds_through_re2(regex: str, value: str, matches: bool) -> None:
    keep = re2_rules({"source_labels": ["v"], "regex": regex, "action": "keep"})
    assert (keep.apply({"v": value} if value else {}) is not None) == matches


@pytest.mark.parametrize(("regex", "value", "replacement", "expected"), EXPANSIONS)
def test_the_expansion_table_holds_through_re2(
    regex: str, value: str, replacement: str, expected: str | None
) -> None:
    out = re2_rules(
        {"source_labels": ["v"], "regex": regex, "target_label": "t", "replacement": replacement}
    ).apply({"v": value})
    assert out is not None
    assert out.get("t") == expected


# Regexes both engines run faithfully (no Unicode folding, no empty-capture loops):
# literal shapes (fast paths), groups, classes, alternations, counted repeats, anchors.
REGEXES = [
    "(.*)",
    ".*",
    "a",
    "a|b|job",
    "a.*",
    ".*_z",
    ".*a.*",
    "(a|b)(.*)",
    "(.*);(.*)",
    "([ab]+)_?(.*)",
    "(?P<first>[a-z])(?P<rest>.*)",
    "[^;]*;([AB]+)",
    "(?i)ab?",
    "__meta_(.+)",
    "__(.*)",
    "(a{1,2})(b*)",
    "^a.*$",
    "(\\w+)\\W?(\\d*)",
    "(?:x|(a))+b?",
    "é|1.*",
    "(a*)*c",
]
NAMES = ["__name__", "job", "a", "b", "__meta_x_y", "__tmp_z", "x1", "le"]
names = st.sampled_from(NAMES)
values = st.text(alphabet="abAB;:_-1é\nc", max_size=8)
label_sets = st.dictionaries(names, values, max_size=8)
regexes = st.sampled_from(REGEXES)
sources = st.lists(names, min_size=1, max_size=2, unique=True)
targets = st.sampled_from(["t", "job", "a", "${1}", "$first"])
replacements = st.sampled_from(["$1", "${2}x", "const", "", "$rest-$first", "$0"])


def _config(action: Action, draw: Any) -> dict[str, Any]:
    if action in {"replace"}:
        return {
            "action": action,
            "source_labels": draw(sources),
            "regex": draw(regexes),
            "target_label": draw(targets),
            "replacement": draw(replacements),
        }
    if action in {"keep", "drop"}:
        return {"action": action, "source_labels": draw(sources), "regex": draw(regexes)}
    if action in {"keepequal", "dropequal"}:
        return {"action": action, "source_labels": draw(sources), "target_label": draw(names)}
    if action == "hashmod":
        return {
            "action": action,
            "source_labels": draw(sources),
            "modulus": draw(st.integers(1, 2**64 - 1)),
            "target_label": "h",
        }
    if action == "labelmap":
        return {
            "action": action,
            "regex": draw(regexes),
            "replacement": draw(st.sampled_from(["$1", "job", "x_${1}", "$2"])),
        }
    if action in {"labeldrop", "labelkeep"}:
        return {"action": action, "regex": draw(regexes)}
    return {"action": action, "source_labels": draw(sources), "target_label": draw(names)}


ACTIONS: list[Action] = [
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
]


@pytest.mark.parametrize("action", ACTIONS)
@given(data=st.data())
def test_re2_and_the_translator_agree(action: Action, data: st.DataObject) -> None:
    configs = [_config(action, data.draw)]
    # and after a rule of any other action, so actions meet each other's output
    configs += [_config(data.draw(st.sampled_from(ACTIONS)), data.draw)]
    labels = data.draw(label_sets)
    python, re2 = both(*configs)
    assert re2.apply(labels) == python.apply(labels)


@given(st.sampled_from(REGEXES), st.text(alphabet="abc;_", max_size=12))
def test_every_regex_of_the_set_matches_alike(regex: str, value: str) -> None:
    python, re2 = both({"source_labels": ["v"], "regex": regex, "action": "keep"})
    assert re2.apply({"v": value}) == python.apply({"v": value})


def test_nested_repetition_answers_through_re2() -> None:
    # The translator backtracks 2**40 ways on this before it can say no; RE2 is linear.
    drop = re2_rules({"source_labels": ["v"], "regex": "(a*)*c", "action": "drop"})
    kept = {"v": "a" * 40}
    assert drop.apply(kept) == kept
    assert drop.apply({"v": "a" * 40 + "c"}) is None
    copy = re2_rules(
        {"source_labels": ["v"], "regex": "(a*)*(b?)", "target_label": "t", "replacement": "<$2>"}
    )
    assert copy.apply({"v": "a" * 40 + "x"}) == {"v": "a" * 40 + "x"}  # no match: untouched
    assert copy.apply({"v": "a" * 40 + "b"}) == {"v": "a" * 40 + "b", "t": "<b>"}


def test_re2_takes_rre2_syntax_the_translator_refuses() -> None:
    config = {"source_labels": ["v"], "regex": "\\pL+", "action": "keep"}
    with pytest.raises(pydantic.ValidationError, match="Unicode"):
        RelabelConfig.model_validate(config)
    keep = re2_rules(config)
    assert keep.apply({"v": "héllo"}) is not None
    assert keep.apply({"v": "h3llo"}) is None


@pytest.mark.parametrize(
    ("regex", "message"),
    [
        ("a)|(b", "unexpected \\)"),  # would splice into ^(?s:...)$
        ("(a", "missing \\)"),
        ("a**", "bad repetition"),
        ("a{1001}", "invalid repetition size"),
        ("(?<!a)b", "invalid perl operator"),  # look-behind: not RE2
        ("\\1", "invalid escape"),  # back-reference: not RE2
        ("a\\Cb", "any byte"),
    ],
)
def test_re2_refuses_with_a_clear_error(regex: str, message: str) -> None:
    with pytest.raises(RegexNotSupportedError, match=message):
        compile_rules(
            [RelabelConfig.model_construct(source_labels=("v",), regex=regex, action="keep")],
            engine="re2",
        )
    with pytest.raises(pydantic.ValidationError, match=message):
        RelabelConfig.model_validate({"regex": regex, "action": "keep"}, context=RE2)


def test_the_default_engine_is_unchanged() -> None:
    assert compile_rules([]).engine == "python"
    assert compile_rules([], engine="re2").engine == "re2"
