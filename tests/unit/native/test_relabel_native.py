"""The native relabeler (``ferryman_native.NativeRelabeler``, ``compile_rules(engine=
"native")``) against its oracles: on generated rules of every action, with generated
RE2 regexes (Go corners included: ``(?i)`` with k/s and their Unicode fold partners,
``(?U)``, ``(?-s)``, ``\\b``, POSIX and Perl classes inside and outside brackets,
counted and lazy repetition, named groups, ``$name``/``${1}x`` templates) and
generated label sets, it gives the answers of the Python translator and of RE2. Every
regex it takes matches exactly the strings google-re2 matches (anchored as
Prometheus anchors). It declines, by name, what it cannot vouch for."""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import types
from typing import Any

import pydantic
import pytest
import re2
from ferryman_native import (
    NativeRelabeler,
    RelabelDeclined,
    relabel_regex_declined,
    relabel_regex_fullmatch,
    relabel_regex_shape_matches,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ferryman.prom._native import rule_spec
from ferryman.prom.relabel import (
    NativeDeclinedError,
    RegexNotSupportedError,
    RelabelConfig,
    Relabeler,
    compile_rules,
)
from tests.unit.ferryman.prom.test_relabel import EXPANSIONS, REGEX_MATCHES

Labels = dict[str, str]

# Text the generated regexes and labels share, so that matches happen: k/s and
# KELVIN SIGN / LONG S (Go and RE2 fold them together), a newline, a non-ASCII letter.
ALPHABET = "abkKsS_1 \n\x0b.-\u212a\u017f\u00e9"

LITERALS = ["a", "b", "k", "K", "s", "S", "_", "1", "\\.", "-", "\\n", "\\x41", "\\x{e9}", "é"]
ATOMS = [
    ".",
    "\\d",
    "\\w",
    "\\s",
    "\\D",
    "\\W",
    "\\S",
    "[ab]",
    "[^ab]",
    "[a-k]",
    "[^\\n]",
    "[]a]",
    "[a-]",
    "[\\w.]",
    "[^\\d\\s]",
    "[[:alpha:]]",
    "[[:^digit:]k]",
    "[[:punct:]]",
    "\\b",
    "\\B",
    "^",
    "$",
    "\\A",
    "\\z",
    "[[:upper:]]",
    "[^[:lower:]]",
    "\\x{212A}",
    "[\\x{17F}-\\x{212A}]",
    "(?:)",
    "a{",
    "\\pL",
    "\\Qa\\E",
]
REPEATS = ["*", "+", "?", "*?", "+?", "??", "{2}", "{1,}", "{0,2}", "{1,2}?"]
FLAGS = ["(?i)", "(?U)", "(?-s)", "(?i-s)", "(?s)"]


def _regexes() -> st.SearchStrategy[str]:
    atom = st.sampled_from(LITERALS + ATOMS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.lists(inner, min_size=2, max_size=4).map("".join),
            st.lists(inner, min_size=2, max_size=3).map("|".join),
            inner.map(lambda r: f"({r})"),
            inner.map(lambda r: f"(?:{r})"),
            inner.map(lambda r: f"(?P<n>{r})"),
            inner.map(lambda r: f"(?<m>{r})"),
            inner.map(lambda r: f"(?i:{r})"),
            st.tuples(st.sampled_from(FLAGS), inner).map("".join),
            st.tuples(inner.map(lambda r: f"(?:{r})"), st.sampled_from(REPEATS)).map("".join),
            st.tuples(atom, st.sampled_from(REPEATS)).map("".join),
        )

    return st.recursive(atom, extend, max_leaves=8)


REGEXES = _regexes()
TEXTS = st.text(alphabet=ALPHABET, max_size=8)
NAMES = st.sampled_from(["a", "b", "k", "__name__", "job", "s_1"])
LABELS = st.dictionaries(NAMES, st.text(alphabet=ALPHABET, max_size=6), max_size=5)
TEMPLATES = st.sampled_from(
    [
        "$1",
        "${1}",
        "$0",
        "${n}",
        "$n",
        "${m}_$n",
        "x_$1",
        "${1}x",
        "$1x",
        "$2",
        "$$1",
        "a",
        "",
        "$",
        "${",
    ]
)


def _re2_fullmatch(source: str, text: str) -> bool | None:
    """RE2's answer, or None when RE2 refuses the regex."""
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(source, options)
        regexp = re2.compile(f"^(?s:{source})$", options)
    except re2.error:
        return None
    return regexp.fullmatch(text) is not None


@settings(max_examples=1500)
@given(REGEXES, st.lists(TEXTS, min_size=1, max_size=6))
def test_every_regex_it_takes_matches_what_re2_matches(source: str, texts: list[str]) -> None:
    assume(relabel_regex_declined(source) is None)
    for text in texts:
        expected = _re2_fullmatch(source, text)
        assert expected is not None, f"RE2 refuses {source!r}, which the native side took"
        assert relabel_regex_fullmatch(source, text) == expected, (source, text)
        assert relabel_regex_shape_matches(source, text) in {None, expected}, (source, text)


LITERAL_SHAPED = st.lists(
    st.tuples(
        st.sampled_from(["", ".*", "(.*)", "^", "(?s:.*)"]),
        st.lists(
            st.sampled_from(["a", "k", "\\.", "(a|b)", "s?", "(?:k_|)", "\\n", "é"]), max_size=3
        ),
        st.sampled_from(["", ".*", "$", ".*?"]),
    ).map(lambda t: t[0] + "".join(t[1]) + t[2]),
    min_size=1,
    max_size=3,
).map("|".join)


@given(LITERAL_SHAPED, st.lists(TEXTS, min_size=1, max_size=6))
def test_the_literal_fast_path_matches_what_re2_matches(source: str, texts: list[str]) -> None:
    assert relabel_regex_declined(source) is None
    for text in [*texts, source.replace(".*", "").replace("\\", "")]:
        fast = relabel_regex_shape_matches(source, text)
        assert fast in {None, _re2_fullmatch(source, text)}, (source, text)


@pytest.mark.parametrize(
    "source", ["a|b", "go_.*", ".*_total", ".*er.*", "(a|b)_(c|d)?", "^x$", "(?:k_|)s"]
)
def test_literal_shaped_regexes_take_the_fast_path(source: str) -> None:
    assert relabel_regex_shape_matches(source, "") is not None


CORNERS = [
    ".\\b.",
    ".\\B.",
    "\\b",
    "\\B",
    "(?i)k",
    "(?i)s+",
    "(?i)[^k]",
    "(?i)[^\\W]",
    "(?i)\\w",
    "(?i)\\W",
    "(?i)[[:^alpha:]]",
    "(?i)[k-s]",
    "(?i)[\\D]",
    "\\s",
    "\\S",
    "[[:space:]]",
    "[[:word:]]+",
    "(?-s).",
    "[^\\n]",
    "(?U)(a+)(a*)",
    "$^",
    "^$",
    "a\\z",
    "\\Aa",
    "[]a]",
    "[^]a]",
    "[a-]",
    "a{2}|\\x{212A}",
    "(?i:K)\\.",
    "[^\\x00-\\x{10FFFF}]",
    "[\\x00-\\x{10FFFF}]+",
    "a{",
    "a{,2}",
    "{",
    "x{0}a",
    "(|a)",
    "(?:)",
    "(?i)[[:upper:]]",
    "(?i)[[:^lower:]]",
    "[\\d-z]",
    "(?i)(?-i:k)K",
    "(?U)a+?k?",
]
SHORT_TEXTS = [
    "".join(chars)
    for size in range(4)
    for chars in itertools.product("akK\u212as\u017f\u00e9 \n\x0b.]-", repeat=size)
    if size < 3 or chars[0] in "a\u212a"
]


@pytest.mark.parametrize("source", CORNERS)
def test_corner_regexes_match_what_re2_matches_on_every_short_string(source: str) -> None:
    assert relabel_regex_declined(source) is None
    for text in SHORT_TEXTS:
        expected = _re2_fullmatch(source, text)
        assert relabel_regex_fullmatch(source, text) == expected, text
        assert relabel_regex_shape_matches(source, text) in {None, expected}, text


def _rule(action: str, regex: str, sources: list[str], target: str, replacement: str) -> Any:
    config: dict[str, Any] = {"action": action}
    if action in {"replace", "keep", "drop", "hashmod", "lowercase", "uppercase"}:
        config |= {"source_labels": sources, "regex": regex, "separator": ";"}
    if action in {"keepequal", "dropequal"}:
        config |= {"source_labels": sources, "target_label": target.strip("$") or "t"}
    if action == "replace":
        config |= {"target_label": target, "replacement": replacement}
    if action in {"lowercase", "uppercase"}:
        config |= {"target_label": target.strip("$") or "t"}
    if action == "hashmod":
        config |= {"target_label": target.strip("$") or "t", "modulus": 7}
    if action in {"labelmap", "labeldrop", "labelkeep"}:
        config |= {"regex": regex}
    if action == "labelmap":
        config |= {"replacement": replacement or "x"}
    return config


ACTIONS = [
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


def _rules(actions: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        _rule,
        st.sampled_from(actions),
        st.one_of(REGEXES, st.sampled_from(["(.*)", "a|b", "(k)(.*)", "(?P<n>.)(.*)", "job|k"])),
        st.lists(NAMES, max_size=3),
        st.sampled_from(["t", "a", "job", "x_$1", "$1", "${n}_t", "k"]),
        TEMPLATES,
    )


RULES = _rules(ACTIONS)


def _engines(configs: list[dict[str, Any]]) -> tuple[Relabeler, list[Relabeler]]:
    """The native relabeler and its oracles (Python, and RE2 when RE2 takes the rules);
    rejects an example whose rules some validator or the native side refuses."""
    try:
        parsed = [RelabelConfig.model_validate(c) for c in configs]
    except pydantic.ValidationError:
        assume(False)
        raise
    try:
        native = compile_rules(parsed, engine="native")
    except NativeDeclinedError:
        assume(False)
        raise
    oracles = [compile_rules(parsed)]
    with contextlib.suppress(RegexNotSupportedError):  # RE2 refuses what Go refuses
        oracles.append(compile_rules(parsed, engine="re2"))
    return native, oracles


@settings(max_examples=1500)
@given(st.lists(RULES, min_size=1, max_size=4), st.lists(LABELS, min_size=1, max_size=4))
def test_the_native_engine_answers_as_python_and_re2(
    configs: list[dict[str, Any]], label_sets: list[Labels]
) -> None:
    native, oracles = _engines(configs)
    pairs = NativeRelabeler([rule_spec(config) for config in native.configs])  # no fallback
    for labels in label_sets:
        got = native.apply(labels)
        for oracle in oracles:
            assert got == oracle.apply(labels), (configs, labels, oracle.engine)
        try:  # the path native callers take: (name, value) pairs
            assert pairs.apply(list(labels.items())) == got
        except RelabelDeclined:
            assert getattr(native, "declined", 0) > 0  # the fallback answered, checked above


@pytest.mark.parametrize("action", ACTIONS)
@given(data=st.data())
def test_every_action_answers_as_python(action: str, data: st.DataObject) -> None:
    config = data.draw(_rules([action]))
    native, oracles = _engines([config])
    labels = data.draw(LABELS)
    for oracle in oracles:
        assert native.apply(labels) == oracle.apply(labels)


@given(st.lists(st.tuples(NAMES, st.text(alphabet=ALPHABET, max_size=4)), max_size=6))
def test_pairs_are_labels_and_the_later_pair_wins(pairs: list[tuple[str, str]]) -> None:
    native = NativeRelabeler([("replace", ["a"], ";", "(.*)", 0, "copy", "$1")])
    oracle = compile_rules([RelabelConfig(source_labels=("a",), target_label="copy")])
    assert native.apply(pairs) == oracle.apply(dict(pairs))


class _Labels(dict[str, str]):
    """A dict subclass: read through the general path, not the plain dict's."""


@given(LABELS)
def test_a_dict_subclass_answers_as_a_dict(labels: Labels) -> None:
    configs = [
        RelabelConfig(source_labels=("a", "k"), regex="(.*);(.*)", target_label="t"),
        RelabelConfig(action="labeldrop", regex="job|s_1"),
    ]
    native = compile_rules(configs, engine="native")
    assert native.apply(_Labels(labels)) == native.apply(dict(labels))


@pytest.mark.parametrize("labels", [{"a": 1}, {2: "x"}, _Labels({"a": b"x"})])  # type: ignore[dict-item]
def test_labels_that_are_not_str_are_a_type_error(labels: dict[Any, Any]) -> None:
    native = compile_rules([RelabelConfig(source_labels=("a",), target_label="t")], "native")
    with pytest.raises(TypeError):
        native.apply(labels)


def test_any_mapping_is_labels() -> None:
    configs = [RelabelConfig(source_labels=("a",), target_label="copy")]
    native = compile_rules(configs, engine="native")
    labels = types.MappingProxyType({"a": "x", "b": ""})
    assert native.apply(labels) == {"a": "x", "copy": "x"}
    assert getattr(native, "declined", None) == 0


# --------------------------------------------------------------------------
# What it declines, and that the caller then falls back.
# --------------------------------------------------------------------------

DECLINED = [
    ("\\pL", "Unicode classes (table versions differ)"),
    ("\\p{Greek}", "Unicode classes"),
    ("[\\PL]", "Unicode classes in a bracket"),
    ("(?m)^a$", "multi-line mode"),
    ("\\Qa.b\\E", "quoting"),
    ("\\C", "any byte"),
    ("\\Z", "not RE2"),
    ("\\0", "octal"),
    ("\\1", "a backreference"),
    ("(?i)é", "non-ASCII case folding"),
    ("(?i)[à-é]", "non-ASCII case folding in a class"),
    ("(a*)*", "a capture repeated that can match empty"),
    ("(a|)+", "a capture repeated that can match empty"),
    ("(?:a{2}){3}", "nested counted repetition"),
    ("a{1001}", "a count above 1000"),
    ("a**", "nested repetition operator"),
    ("(?P<1a>x)", "a group name starting with a digit"),
    ("(?P<n>a)(?P<n>b)", "a duplicate group name"),
    ("(?#c)", "comments"),
    ("(?)", "an empty flag group"),
    ("\\x{D800}", "a surrogate"),
    ("[[:word]", "an unclosed POSIX class"),
    ("[[:foo:]]", "an unknown POSIX class"),
    ("a)", "an unbalanced )"),
    ("(a", "a missing )"),
    ("*", "a repetition of nothing"),
]


@pytest.mark.parametrize(("regex", "why"), DECLINED)
def test_it_declines_regexes_it_cannot_vouch_for(regex: str, why: str) -> None:
    assert relabel_regex_declined(regex) is not None, why
    with pytest.raises(RelabelDeclined):
        NativeRelabeler([("keep", ["a"], ";", regex, 0, None, "$1")])


@pytest.mark.parametrize("template", ["${ñ}", "$ñ", "x_$1_é"], ids=["braced", "bare", "mixed"])
def test_it_declines_templates_with_dollar_and_non_ascii(template: str) -> None:
    with pytest.raises(RelabelDeclined, match="non-ASCII"):
        NativeRelabeler([("replace", ["a"], ";", "(.*)", 0, "t", template)])


def test_native_engine_refuses_a_rule_list_it_declines_and_auto_falls_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    configs = [
        RelabelConfig(source_labels=("a",), regex="(?m)x$", target_label="t", replacement="y")
    ]
    with pytest.raises(NativeDeclinedError, match="rule 0"):
        compile_rules(configs, engine="native")
    with caplog.at_level(logging.INFO, logger="ferryman.prom.relabel"):
        auto = compile_rules(configs, engine="auto")
    assert auto.engine == "re2"
    assert "re2 engine: 1 rules, the native engine declines them: rule 0" in caplog.text
    assert auto.apply({"a": "x"}) == {"a": "x", "t": "y"}
    assert compile_rules(configs).engine == "python"  # the default is unchanged


def test_a_rule_without_a_utf8_form_is_declined() -> None:
    configs = [RelabelConfig(source_labels=("a",), regex="x\udc00", target_label="t")]
    with pytest.raises(NativeDeclinedError, match="UTF-8"):
        compile_rules(configs, engine="native")
    assert compile_rules(configs, engine="auto").engine != "native"


def test_the_native_relabeler_makes_no_reference_cycle() -> None:
    # The native object holds only the fallback's apply, not the relabeler: the
    # cyclic GC cannot see into it, so a cycle through it would never be freed.
    configs = [RelabelConfig(source_labels=("a",), target_label="t")]
    relabeler = compile_rules(configs, engine="native")
    assert sys.getrefcount(relabeler) == 2  # the name and getrefcount's argument


def test_auto_picks_native_when_it_takes_every_rule() -> None:
    configs = [RelabelConfig(source_labels=("a",), regex="(k+)", target_label="t")]
    auto = compile_rules(configs, engine="auto")
    assert auto.engine == "native"
    assert auto.apply({"a": "kK\u212a"}) is not None


@pytest.mark.parametrize(
    ("config", "labels"),
    [
        ({"action": "lowercase", "source_labels": ["a"], "target_label": "t"}, {"a": "ÀB"}),
        ({"action": "uppercase", "source_labels": ["a"], "target_label": "t"}, {"a": "ß\u1f80"}),
        ({"source_labels": ["a"], "target_label": "t"}, {"a": "x\ud800"}),
        ({"source_labels": ["a"], "target_label": "t"}, {"b\udfff": "x"}),
    ],
    ids=["lowercase", "uppercase", "surrogate-value", "surrogate-name"],
)
def test_a_label_set_it_declines_is_answered_by_the_fallback_and_counted(
    config: dict[str, Any], labels: Labels
) -> None:
    parsed = [RelabelConfig.model_validate(config)]
    native = compile_rules(parsed, engine="native")
    raw = NativeRelabeler(
        [("lowercase", ["a"], ";", "(.*)", 0, "t", "$1")]
        if config.get("action") == "lowercase"
        else [("uppercase", ["a"], ";", "(.*)", 0, "t", "$1")]
        if config.get("action") == "uppercase"
        else [("replace", ["a"], ";", "(.*)", 0, "t", "$1")]
    )
    with pytest.raises(RelabelDeclined):
        raw.apply(labels)
    assert native.apply(labels) == compile_rules(parsed, engine="re2").apply(labels)
    assert getattr(native, "declined", None) == 1


def test_ascii_case_mapping_and_hashmod_run_natively() -> None:
    configs = [
        RelabelConfig(action="lowercase", source_labels=("a",), target_label="low"),
        RelabelConfig(action="uppercase", source_labels=("a",), target_label="up"),
        RelabelConfig(
            action="hashmod", source_labels=("a", "b"), target_label="h", modulus=2**64 - 1
        ),
    ]
    native = compile_rules(configs, engine="native")
    labels = {"a": "MiXeD_1", "b": "é"}
    assert native.apply(labels) == compile_rules(configs).apply(labels)
    assert getattr(native, "declined", None) == 0


# --------------------------------------------------------------------------
# The Go dialect and template tables of the Python engine's tests.
# --------------------------------------------------------------------------

# What those tables hold that the native side declines (the rest it must answer).
DECLINED_IN_TABLES = {
    "(?m)^a$",
    "(?i)é",
    "\\Qa.b\\E",
    "\\101",
    "\\0",
    "(?P<1x>a)",
    "(?P<n>a)|(?P<n>b)",
    "$é",
}


@pytest.mark.parametrize(("regex", "value", "matches"), REGEX_MATCHES)
def test_the_dialect_table_holds_natively(regex: str, value: str, matches: bool) -> None:
    config = RelabelConfig(source_labels=("v",), regex=regex, action="keep")
    try:
        keep = compile_rules([config], engine="native")
    except NativeDeclinedError:
        assert regex in DECLINED_IN_TABLES
        return
    assert regex not in DECLINED_IN_TABLES
    assert (keep.apply({"v": value} if value else {}) is not None) == matches


@pytest.mark.parametrize(("regex", "value", "replacement", "expected"), EXPANSIONS)
def test_the_template_table_holds_natively(
    regex: str, value: str, replacement: str, expected: str | None
) -> None:
    config = RelabelConfig(
        source_labels=("v",), regex=regex, target_label="t", replacement=replacement
    )
    try:
        rules = compile_rules([config], engine="native")
    except NativeDeclinedError:
        assert regex in DECLINED_IN_TABLES or replacement in DECLINED_IN_TABLES
        return
    out = rules.apply({"v": value, "t": "old"})
    assert out is not None
    assert out.get("t") == expected
