"""Relabeling as Prometheus does it.

Every expected value in the tables below was derived from Prometheus' documented
``<relabel_config>`` behaviour and cross-checked against Prometheus 3.7's own
``model/relabel`` package (hashmod vectors are md5 digests worked out by hand).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pydantic
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from ferryman.prom import relabel
from ferryman.prom.relabel import RelabelConfig, Relabeler, compile_rules, is_valid_label_name

Labels = dict[str, str]


def rules(*configs: dict[str, Any]) -> Relabeler:
    return compile_rules([RelabelConfig.model_validate(c) for c in configs])


def run(configs: list[dict[str, Any]], labels: Labels) -> Labels | None:
    return rules(*configs).apply(labels)


# --------------------------------------------------------------------------
# Configuration: defaults, YAML spelling, validation.
# --------------------------------------------------------------------------


def test_defaults_are_prometheus_defaults() -> None:
    config = RelabelConfig(target_label="t")
    assert config.action == "replace"
    assert config.source_labels == ()
    assert config.separator == ";"
    assert config.regex == "(.*)"
    assert config.replacement == "$1"
    assert config.modulus is None


def test_every_field_is_described() -> None:
    for name, field in RelabelConfig.model_fields.items():
        assert field.description, name


def test_config_is_frozen_and_rejects_unknown_keys() -> None:
    config = RelabelConfig(target_label="t")
    with pytest.raises(pydantic.ValidationError):
        config.separator = ","  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="extra"):
        RelabelConfig.model_validate({"target_label": "t", "regexp": "x"})


PROMETHEUS_YAML = """
- source_labels: [__meta_kubernetes_namespace, __meta_kubernetes_pod_name]
  separator: /
  target_label: pod
- source_labels: [__address__]
  regex: ([^:]+)(?::\\d+)?
  target_label: host
  replacement: ${1}
- action: LabelMap
  regex: __meta_kubernetes_pod_label_(.+)
- source_labels: [__address__]
  modulus: 4
  target_label: __tmp_shard
  action: hashmod
- source_labels: [__tmp_shard]
  regex: 1
  action: keep
- source_labels: [status]
  regex: 404
  action: drop
- action: labeldrop
  regex: __tmp_.*
- source_labels: [pod]
  target_label: app
  action: keepequal
"""


def test_reads_a_prometheus_yml_snippet() -> None:
    configs = [RelabelConfig.model_validate(c) for c in yaml.safe_load(PROMETHEUS_YAML)]
    assert [c.action for c in configs] == [
        "replace",
        "replace",
        "labelmap",
        "hashmod",
        "keep",
        "drop",
        "labeldrop",
        "keepequal",
    ]
    assert configs[4].regex == "1"  # YAML integers are read as text, as Go's yaml does
    assert configs[5].regex == "404"
    relabeler = compile_rules(configs)
    labels = {
        "__address__": "10.0.0.1:9090",  # md5 ... 495a2c49cbaa7081 -> 1 (mod 4)
        "__meta_kubernetes_namespace": "prod",
        "__meta_kubernetes_pod_name": "api-0",
        "__meta_kubernetes_pod_label_app": "prod/api-0",
    }
    assert relabeler.apply(labels) == {
        "__address__": "10.0.0.1:9090",
        "__meta_kubernetes_namespace": "prod",
        "__meta_kubernetes_pod_name": "api-0",
        "__meta_kubernetes_pod_label_app": "prod/api-0",
        "pod": "prod/api-0",
        "host": "10.0.0.1",
        "app": "prod/api-0",
    }


@pytest.mark.parametrize(
    "config",
    [
        {"target_label": "t"},
        {
            "source_labels": ["a", "b"],
            "separator": "",
            "regex": "x(.*)",
            "target_label": "t_$1",
            "replacement": "${1}!",
        },
        {"source_labels": ["a"], "regex": "a|b", "action": "keep"},
        {"source_labels": ["a"], "regex": "a|b", "action": "drop"},
        {"source_labels": ["a"], "target_label": "b", "action": "keepequal"},
        {"source_labels": ["a"], "target_label": "b", "action": "dropequal"},
        {"source_labels": ["a"], "modulus": 3, "target_label": "h", "action": "hashmod"},
        {"regex": "__meta_(.+)", "replacement": "m_$1", "action": "labelmap"},
        {"regex": "__tmp.*", "action": "labeldrop"},
        {"regex": "__name__|job", "action": "labelkeep"},
        {"source_labels": ["a"], "target_label": "b", "action": "lowercase"},
        {"source_labels": ["a"], "target_label": "b", "action": "uppercase"},
    ],
    ids=lambda c: c.get("action", "replace"),
)
def test_every_action_round_trips(config: dict[str, Any]) -> None:
    parsed = RelabelConfig.model_validate(config)
    assert RelabelConfig.model_validate(parsed.model_dump()) == parsed
    assert RelabelConfig.model_validate_json(parsed.model_dump_json()) == parsed
    assert RelabelConfig.model_validate(parsed.model_dump(exclude_unset=True)) == parsed


def test_action_is_case_insensitive() -> None:
    assert RelabelConfig(action="LabelDrop", regex="x").action == "labeldrop"  # type: ignore[arg-type]


def test_yaml_null_means_go_zero_value() -> None:
    config = RelabelConfig.model_validate(
        yaml.safe_load(
            "{source_labels: [a, b], separator: null, regex: null, target_label: t, replacement: x}"
        )
    )
    assert config.separator == ""
    assert config.regex == ""
    relabeler = compile_rules([config])
    assert relabeler.apply({"c": "1"}) == {"c": "1", "t": "x"}  # "" + "" matches the empty regex
    assert relabeler.apply({"a": "1"}) == {"a": "1"}


def test_replacement_null_is_empty_and_deletes() -> None:
    config = RelabelConfig.model_validate({"target_label": "t", "replacement": None})
    assert config.replacement == ""
    assert compile_rules([config]).apply({"t": "old"}) == {}


INVALID_CONFIGS = [
    ({"action": ""}, 'unknown relabel action ""'),
    ({"action": None}, "relabel action cannot be empty"),
    ({"action": "rename"}, 'unknown relabel action "rename"'),
    (
        {"source_labels": ["a"], "target_label": "h", "action": "hashmod"},
        "relabel configuration for hashmod requires non-zero modulus",
    ),
    (
        {"source_labels": ["a"], "modulus": 0, "target_label": "h", "action": "hashmod"},
        "relabel configuration for hashmod requires non-zero modulus",
    ),
    (
        {"source_labels": ["a"], "modulus": -1, "target_label": "h", "action": "hashmod"},
        "modulus must be an unsigned 64-bit integer",
    ),
    # Go's YAML decoder lets this one through, mangled; we refuse it.
    (
        {"source_labels": ["a"], "modulus": 2**64, "target_label": "h", "action": "hashmod"},
        "modulus must be an unsigned 64-bit integer",
    ),
    (
        {"source_labels": ["a"]},
        "relabel configuration for replace action requires 'target_label' value",
    ),
    (
        {"target_label": ""},
        "relabel configuration for replace action requires 'target_label' value",
    ),
    (
        {"source_labels": ["a"], "modulus": 2, "action": "hashmod"},
        "relabel configuration for hashmod action requires 'target_label' value",
    ),
    (
        {"source_labels": ["a"], "action": "lowercase"},
        "relabel configuration for lowercase action requires 'target_label' value",
    ),
    (
        {"source_labels": ["a"], "action": "keepequal"},
        "relabel configuration for keepequal action requires 'target_label' value",
    ),
    ({"target_label": "1abc"}, "\"1abc\" is invalid 'target_label' for replace action"),
    ({"target_label": "a-b"}, "\"a-b\" is invalid 'target_label' for replace action"),
    ({"target_label": "${1}-x"}, "\"${1}-x\" is invalid 'target_label' for replace action"),
    ({"target_label": "$"}, "\"$\" is invalid 'target_label' for replace action"),
    ({"target_label": "1$1"}, "\"1$1\" is invalid 'target_label' for replace action"),
    (
        {"source_labels": ["a"], "target_label": "${1}", "action": "lowercase"},
        "\"${1}\" is invalid 'target_label' for lowercase action",
    ),
    (
        {"source_labels": ["a"], "target_label": "b", "replacement": "x", "action": "uppercase"},
        "'replacement' can not be set for uppercase action",
    ),
    (
        {"source_labels": ["a"], "target_label": "b", "replacement": "x", "action": "keepequal"},
        "'replacement' can not be set for keepequal action",
    ),
    (
        {"regex": "(.*)", "replacement": "a-$1", "action": "labelmap"},
        "\"a-$1\" is invalid 'replacement' for labelmap action",
    ),
    (
        {"regex": "(.*)", "replacement": "", "action": "labelmap"},
        "\"\" is invalid 'replacement' for labelmap action",
    ),
    (
        {"source_labels": ["a"], "modulus": 2, "target_label": "$1", "action": "hashmod"},
        "\"$1\" is invalid 'target_label' for hashmod action",
    ),
    (
        {"source_labels": ["a"], "target_label": "b", "separator": ",", "action": "dropequal"},
        "dropequal action requires only 'source_labels' and `target_label`, and no other fields",
    ),
    (
        {"source_labels": ["a"], "target_label": "b", "regex": "x", "action": "keepequal"},
        "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
    ),
    (
        {"source_labels": ["a"], "target_label": "b", "modulus": 2, "action": "keepequal"},
        "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
    ),
    (
        {"source_labels": ["a"], "regex": "x", "action": "labeldrop"},
        "labeldrop action requires only 'regex', and no other fields",
    ),
    (
        {"target_label": "a", "regex": "x", "action": "labelkeep"},
        "labelkeep action requires only 'regex', and no other fields",
    ),
    (
        {"separator": ",", "regex": "x", "action": "labeldrop"},
        "labeldrop action requires only 'regex', and no other fields",
    ),
    (
        {"replacement": "x", "regex": "x", "action": "labeldrop"},
        "labeldrop action requires only 'regex', and no other fields",
    ),
    (
        {"modulus": 1, "regex": "x", "action": "labelkeep"},
        "labelkeep action requires only 'regex', and no other fields",
    ),
    # Legacy label names throughout; Prometheus 3's UTF-8 scheme would accept this.
    ({"source_labels": ["a.b"], "target_label": "t"}, '"a.b" is not a valid label name'),
    ({"source_labels": ["a"], "target_label": "t", "regex": "("}, "missing closing )"),
    (
        {"source_labels": ["a"], "target_label": "t", "regex": "a**"},
        "invalid nested repetition operator",
    ),
    (
        {"source_labels": ["a"], "target_label": "t", "regex": "*a"},
        "missing argument to repetition operator",
    ),
    ({"source_labels": ["a"], "target_label": "t", "regex": "a{1001}"}, "invalid repeat count"),
    (
        {"source_labels": ["a"], "target_label": "t", "regex": "(a{100}){100}"},
        "invalid repeat count",
    ),
    (
        {"source_labels": ["a"], "target_label": "t", "regex": "[z-a]"},
        "invalid character class range",
    ),
    ({"source_labels": ["a"], "target_label": "t", "regex": "[a"}, "missing closing ]"),
    (
        {"source_labels": ["a"], "target_label": "t", "regex": "[[:foo:]]"},
        "invalid character class range",
    ),
    ({"source_labels": ["a"], "target_label": "t", "regex": "\\8"}, "invalid escape sequence"),
    ({"source_labels": ["a"], "target_label": "t", "regex": "(a)\\1"}, "invalid escape sequence"),
    ({"source_labels": ["a"], "target_label": "t", "regex": "\\e"}, "invalid escape sequence"),
    ({"source_labels": ["a"], "target_label": "t", "regex": "a\\"}, "trailing backslash"),
    ({"source_labels": ["a"], "target_label": "t", "regex": "(?<=a)b"}, "invalid named capture"),
    ({"source_labels": ["a"], "target_label": "t", "regex": "(?P<a-b>x)"}, "invalid named capture"),
    (
        {"source_labels": ["a"], "target_label": "t", "regex": "(?=a)"},
        "invalid or unsupported Perl syntax",
    ),
    (
        {"source_labels": ["a"], "target_label": "t", "regex": "(?i-)a"},
        "invalid or unsupported Perl syntax",
    ),
    ({"source_labels": ["a"], "target_label": "t", "regex": "\\Qa.b"}, "\\Q without \\E"),
    ({"source_labels": ["a"], "target_label": "t", "regex": "\\C"}, "invalid escape sequence"),
    # Valid for Prometheus, refused here: this one splices into Prometheus' own
    # anchoring parentheses (it becomes ^(?s:a)|(b)$) ...
    ({"source_labels": ["a"], "target_label": "t", "regex": "a)|(b"}, "unbalanced parentheses"),
    # ... and Python's re has no Unicode property classes.
    ({"source_labels": ["a"], "target_label": "t", "regex": "\\pL"}, "Unicode classes"),
    ({"source_labels": ["a"], "target_label": "t", "regex": "[\\p{Greek}]"}, "Unicode classes"),
]


@pytest.mark.parametrize(("config", "message"), INVALID_CONFIGS)
def test_invalid_configs_are_rejected_with_prometheus_messages(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=re.escape(message)):
        RelabelConfig.model_validate(config)


@pytest.mark.parametrize(
    "target", ["t", "_", "__tmp_x", "$1", "${1}", "${1}_x", "x_$1", "$name", "${a}${b}", "a$1b"]
)
def test_valid_replace_targets(target: str) -> None:
    assert RelabelConfig(target_label=target).target_label == target


def test_explicit_default_regex_is_accepted_for_keepequal() -> None:
    # Prometheus compares the compiled regex by pointer, so it rejects an explicit
    # `regex: (.*)` here; we compare by value and accept it.
    config = RelabelConfig.model_validate(
        {"source_labels": ["a"], "target_label": "b", "regex": "(.*)", "action": "keepequal"}
    )
    assert config.regex == "(.*)"


@pytest.mark.parametrize("name", ["a", "_", "__name__", "A9_z", "_0"])
def test_valid_label_names(name: str) -> None:
    assert is_valid_label_name(name)


@pytest.mark.parametrize("name", ["", "0a", "a-b", "a.b", "é", "a b", "$1"])
def test_invalid_label_names(name: str) -> None:
    assert not is_valid_label_name(name)


# --------------------------------------------------------------------------
# Regex dialect: RE2, anchored as ^(?s:REGEX)$.
# --------------------------------------------------------------------------

REGEX_MATCHES = [
    ("foo", "foo", True),
    ("foo", "foobar", False),  # anchored at both ends
    ("o+", "foo", False),
    ("bar", "foobar", False),
    ("a|b", "a", True),
    ("ab|cd", "abd", False),
    ("", "", True),
    ("", "x", False),
    (".*", "", True),
    (".*", "a\nb", True),  # Prometheus 3 anchors with (?s:...): . matches newline
    ("a.b", "a\nb", True),
    ("(?-s)a.b", "a\nb", False),
    ("a$", "a\n", False),  # $ is end of text, not before a final newline
    ("a\\n", "a\n", True),
    ("^a$", "a", True),
    ("(?m)^a$", "a", True),
    ("a\\z", "a", True),
    ("\\Aa", "a", True),
    ("(?i)foo", "FoO", True),
    ("(?i)k", "\u212a", True),  # KELVIN SIGN folds to k, as in Go
    ("(?i)é", "É", True),
    ("x(?i)y", "XY", False),
    ("x(?i)y", "xY", True),
    ("(?i:a)b", "AB", False),
    ("a(?i)b|c", "C", True),  # flags last to the end of the group, across |
    ("\\d", "5", True),
    ("\\d", "\u0663", False),  # ARABIC-INDIC DIGIT THREE: RE2's \d is ASCII
    ("\\w+", "ab_9", True),
    ("\\w", "é", False),
    ("\\W", "é", True),
    ("\\s", "\t", True),
    ("\\s", "\v", False),  # RE2's \s has no vertical tab
    ("[[:space:]]", "\v", True),
    ("[[:alpha:]]+", "abC", True),
    ("[[:^digit:]]", "5", False),
    ("[[:^digit:]]", "x", True),
    ("[^a]", "\n", True),
    ("[]a]+", "]a", True),
    ("[a-]+", "-a", True),
    ("[\\d-z]+", "1-z", True),
    ("\\Qa.b\\E", "a.b", True),
    ("\\Qa.b\\E", "axb", False),
    ("a{,2}", "a{,2}", True),  # not a repeat in RE2: literal braces
    ("a{,2}", "aa", False),
    ("a{2}", "aa", True),
    ("a{1,2}", "aaa", False),
    ("\\x{263a}", "\u263a", True),
    ("\\x41", "A", True),
    ("\\101", "A", True),  # octal
    ("\\0", "\x00", True),
    ("\\.", ".", True),
    ("\\.", "x", False),
    ("\\bfoo\\b", "foo", True),
    ("\\B", "", True),
    ("(?P<n>a)(?<m>b)", "ab", True),
    ("(?i)[^k]", "\u212a", False),
    ("(?i)\\W", "\u212a", False),  # folded before negation, as RE2 does
    ("go_.*|process_.*", "process_cpu_seconds_total", True),
    ("go_.*|process_.*", "node_go_info", False),
    (".*_total", "http_requests_total", True),
    (".*_total", "http_requests_total_x", False),
    (".*err.*", "an error here", True),
    ("(foo|bar)_(x|y)", "bar_y", True),
    ("(foo|bar)_(x|y)", "bar_z", False),
    ("colou?r", "color", True),
    ("[ab]c", "bc", True),
]


@pytest.mark.parametrize(("regex", "value", "matches"), REGEX_MATCHES)
def test_regex_dialect(regex: str, value: str, matches: bool) -> None:
    keep = rules({"source_labels": ["v"], "regex": regex, "action": "keep"})
    kept = keep.apply({"v": value} if value else {})
    assert (kept is not None) == matches


# --------------------------------------------------------------------------
# Replacement templates: Go's regexp.Expand.
# --------------------------------------------------------------------------

EXPANSIONS = [
    ("(.*)", "abc", "$1", "abc"),
    ("(.*)", "abc", "${1}", "abc"),
    ("(.*)", "abc", "$0", "abc"),
    ("(.*)", "abc", "$1x", None),  # "$1x" names a group called "1x": empty
    ("(.*)", "abc", "${1}x", "abcx"),
    ("(.*)", "abc", "$$1", "$1"),
    ("(.*)", "abc", "a$", "a$"),  # a lone $ is text
    ("(.*)", "abc", "${1", "${1"),  # malformed: the $ is text
    ("(.*)", "abc", "${}", "${}"),
    ("(.*)", "abc", "$-", "$-"),
    ("(.*)", "abc", "$01", None),  # leading zero: a name, not a number
    ("(.*)", "abc", "$2", None),  # no such group
    ("(.*)", "abc", "[$2]", "[]"),
    ("(.*)", "abc", "$é", None),  # letters are name characters, even non-ASCII ones
    ("(a)(b)?", "a", "<$1|$2>", "<a|>"),  # group that did not take part: empty
    ("(?P<host>[^:]+):(?P<port>\\d+)", "h:80", "${port}@$host", "80@h"),
    ("(?P<1x>a)", "a", "$1x", "a"),  # RE2 allows names that start with a digit
    ("(?P<n>a)|(?P<n>b)", "b", "$n", "b"),  # first group of that name that took part
    ("(a|ab)(c|bcd)(d*)", "abcd", "$1,$2,$3", "a,bcd,"),  # leftmost-first, like RE2
    ("(?U)(a+)(a*)", "aaa", "$1,$2", "a,aa"),  # (?U) swaps greediness
    ("(a+?)(a*)", "aaa", "$1,$2", "a,aa"),
    ("(\\w)(\\w*)", "abc", "${2}${1}", "bca"),
    ("((a)|b)+", "ab", "$1,$2", "b,a"),  # a group keeps its last match in a loop
    ("x", "x", "const", "const"),
    ("x", "x", "", None),  # an empty result deletes the target
]


@pytest.mark.parametrize(("regex", "value", "replacement", "expected"), EXPANSIONS)
def test_replacement_expands_like_go(
    regex: str, value: str, replacement: str, expected: str | None
) -> None:
    out = run(
        [{"source_labels": ["v"], "regex": regex, "target_label": "t", "replacement": replacement}],
        {"v": value, "t": "old"},
    )
    assert out is not None
    assert out.get("t") == expected


# --------------------------------------------------------------------------
# Actions.
# --------------------------------------------------------------------------

ACTION_CASES: list[tuple[str, list[dict[str, Any]], Labels, Labels | None]] = [
    (
        "replace copies with the default regex",
        [{"source_labels": ["__address__"], "target_label": "instance"}],
        {"__address__": "h:80"},
        {"__address__": "h:80", "instance": "h:80"},
    ),
    (
        "replace with a missing source sets the target to empty, deleting it",
        [{"source_labels": ["missing"], "target_label": "job"}],
        {"job": "api"},
        {},
    ),
    (
        "replace with no source labels matches the empty string",
        [{"target_label": "env", "replacement": "prod"}],
        {"a": "1"},
        {"a": "1", "env": "prod"},
    ),
    (
        "replace joins sources with the separator, missing ones as empty",
        [{"source_labels": ["a", "missing", "b"], "target_label": "t"}],
        {"a": "1", "b": "2"},
        {"a": "1", "b": "2", "t": "1;;2"},
    ),
    (
        "replace with an empty separator",
        [{"source_labels": ["a", "b"], "separator": "", "target_label": "t"}],
        {"a": "1", "b": "2"},
        {"a": "1", "b": "2", "t": "12"},
    ),
    (
        "replace does nothing when the regex does not match",
        [{"source_labels": ["a"], "regex": "x.*", "target_label": "a", "replacement": "y"}],
        {"a": "abc"},
        {"a": "abc"},
    ),
    (
        "replace with a regex that matches empty acts on a missing label",
        [{"source_labels": ["missing"], "regex": "", "target_label": "t", "replacement": "none"}],
        {},
        {"t": "none"},
    ),
    (
        "replace with a templated target",
        [
            {
                "source_labels": ["k", "v"],
                "regex": "(\\w+);(.*)",
                "target_label": "tag_$1",
                "replacement": "$2",
            }
        ],
        {"k": "env", "v": "prod"},
        {"k": "env", "v": "prod", "tag_env": "prod"},
    ),
    (
        "replace skips a target that expands to an invalid name",
        [{"source_labels": ["k"], "regex": "(.*)", "target_label": "${1}", "replacement": "x"}],
        {"k": "1abc"},
        {"k": "1abc"},
    ),
    (
        "replace skips a target that expands to nothing",
        [{"source_labels": ["k"], "regex": "(.*)", "target_label": "${2}", "replacement": "x"}],
        {"k": "a"},
        {"k": "a"},
    ),
    (
        "replace overwrites an existing label",
        [{"source_labels": ["a"], "target_label": "b"}],
        {"a": "1", "b": "2"},
        {"a": "1", "b": "1"},
    ),
    (
        "__tmp labels are ordinary labels: written, read, kept",
        [
            {"source_labels": ["a"], "target_label": "__tmp_a", "replacement": "x$1"},
            {"source_labels": ["__tmp_a"], "target_label": "b"},
        ],
        {"a": "1"},
        {"a": "1", "__tmp_a": "x1", "b": "x1"},
    ),
    (
        "keep keeps a match",
        [{"source_labels": ["job"], "regex": "api|web", "action": "keep"}],
        {"job": "web"},
        {"job": "web"},
    ),
    (
        "keep drops a non-match",
        [{"source_labels": ["job"], "regex": "api|web", "action": "keep"}],
        {"job": "db"},
        None,
    ),
    (
        "keep with the default regex keeps everything",
        [{"source_labels": ["missing"], "action": "keep"}],
        {"a": "1"},
        {"a": "1"},
    ),
    (
        "drop drops a match",
        [{"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}],
        {"__name__": "go_goroutines"},
        None,
    ),
    (
        "drop on a missing label matches the empty string",
        [{"source_labels": ["missing"], "regex": "", "action": "drop"}],
        {"a": "1"},
        None,
    ),
    (
        "drop .+ keeps a series without the label",
        [{"source_labels": ["missing"], "regex": ".+", "action": "drop"}],
        {"a": "1"},
        {"a": "1"},
    ),
    (
        "keep on joined values",
        [{"source_labels": ["a", "b"], "regex": "1;2", "action": "keep"}],
        {"a": "1", "b": "2"},
        {"a": "1", "b": "2"},
    ),
    (
        "keepequal keeps equal values",
        [{"source_labels": ["a"], "target_label": "b", "action": "keepequal"}],
        {"a": "x", "b": "x"},
        {"a": "x", "b": "x"},
    ),
    (
        "keepequal drops different values",
        [{"source_labels": ["a"], "target_label": "b", "action": "keepequal"}],
        {"a": "x", "b": "y"},
        None,
    ),
    (
        "keepequal: two missing labels are equal",
        [{"source_labels": ["a"], "target_label": "b", "action": "keepequal"}],
        {"c": "1"},
        {"c": "1"},
    ),
    (
        "keepequal compares the joined value",
        [{"source_labels": ["a", "b"], "target_label": "c", "action": "keepequal"}],
        {"a": "1", "b": "2", "c": "1;2"},
        {"a": "1", "b": "2", "c": "1;2"},
    ),
    (
        "dropequal drops equal values",
        [{"source_labels": ["a"], "target_label": "b", "action": "dropequal"}],
        {"a": "x", "b": "x"},
        None,
    ),
    (
        "dropequal keeps different values",
        [{"source_labels": ["a"], "target_label": "b", "action": "dropequal"}],
        {"a": "x"},
        {"a": "x"},
    ),
    (
        "hashmod of the empty string",  # md5("") = d41d8cd98f00b204 e9800998ecf8427e
        [{"source_labels": ["missing"], "modulus": 1000, "target_label": "h", "action": "hashmod"}],
        {},
        {"h": "958"},  # 0xe9800998ecf8427e % 1000
    ),
    (
        "hashmod uses the last 8 bytes of md5, big-endian",  # md5("foo") = ...edef654fccc4a4d8
        [{"source_labels": ["a"], "modulus": 2**64 - 1, "target_label": "h", "action": "hashmod"}],
        {"a": "foo"},
        {"a": "foo", "h": "17145033699835028696"},
    ),
    (
        "hashmod of joined values",  # md5("a;b") = 45d17989299efc43 21960bf46f2ebd0a
        [{"source_labels": ["x", "y"], "modulus": 3, "target_label": "h", "action": "hashmod"}],
        {"x": "a", "y": "b"},
        {"x": "a", "y": "b", "h": "2"},
    ),
    (
        "hashmod hashes UTF-8",  # md5("é") = 66ddcd97cfdeabb2 f6fb8a999b4bc76f
        [{"source_labels": ["a"], "modulus": 7, "target_label": "h", "action": "hashmod"}],
        {"a": "é"},
        {"a": "é", "h": "3"},
    ),
    (
        "labelmap copies matching labels under new names",
        [{"regex": "__meta_kubernetes_pod_label_(.+)", "action": "labelmap"}],
        {"__meta_kubernetes_pod_label_app": "api", "__meta_kubernetes_pod_name": "p"},
        {"__meta_kubernetes_pod_label_app": "api", "__meta_kubernetes_pod_name": "p", "app": "api"},
    ),
    (
        "labelmap with a replacement template",
        [{"regex": "__meta_(\\w+)_(\\w+)", "replacement": "${2}_$1", "action": "labelmap"}],
        {"__meta_pod_name": "p"},
        {"__meta_pod_name": "p", "name_pod": "p"},  # $1 is greedy: "pod", then "name"
    ),
    (
        "labelmap onto one name: the last in label-name order wins",
        [{"regex": "__meta_(pod|svc)_label_(.+)", "replacement": "$2", "action": "labelmap"}],
        {"__meta_svc_label_app": "from-svc", "__meta_pod_label_app": "from-pod"},
        {"__meta_svc_label_app": "from-svc", "__meta_pod_label_app": "from-pod", "app": "from-svc"},
    ),
    (
        "labelmap onto one name: labels written by earlier rules come after the input's",
        [
            {"source_labels": ["x"], "target_label": "__meta_pod_label_app"},
            {"regex": "__meta_(pod|svc)_label_(.+)", "replacement": "$2", "action": "labelmap"},
        ],
        {"x": "written", "__meta_svc_label_app": "from-svc"},
        {
            "x": "written",
            "__meta_svc_label_app": "from-svc",
            "__meta_pod_label_app": "written",
            "app": "written",
        },
    ),
    (
        "labelmap writes in label-name order, which a later labelmap sees",
        [
            {"regex": "__meta_(\\w)_x", "action": "labelmap"},  # writes a, then b
            {"regex": "a|b", "replacement": "last", "action": "labelmap"},
        ],
        {"__meta_b_x": "1", "__meta_a_x": "2"},
        {"__meta_b_x": "1", "__meta_a_x": "2", "a": "2", "b": "1", "last": "1"},
    ),
    (
        "labelmap reads the values from before its own writes",
        [{"regex": "\\w_(\\w+)", "replacement": "$1", "action": "labelmap"}],
        {"a_b_c": "1", "b_c": "2"},  # a_b_c -> b_c, then b_c (still "2") -> c
        {"a_b_c": "1", "b_c": "1", "c": "2"},
    ),
    (
        "chained labelmaps see earlier rules' writes",
        [
            {"regex": "(a|b)", "replacement": "${1}${1}", "action": "labelmap"},
            {"regex": "a", "replacement": "b", "action": "labelmap"},
        ],
        {"a": "1", "b": "2"},
        {"a": "1", "b": "1", "aa": "1", "bb": "2"},
    ),
    (
        "labelmap does not check the names it makes",
        [{"regex": "__meta_(.+)", "action": "labelmap"}],
        {"__meta_9x": "v"},
        {"__meta_9x": "v", "9x": "v"},
    ),
    (
        "labeldrop drops matching names",
        [{"regex": "__meta_.*|tmp", "action": "labeldrop"}],
        {"__meta_a": "1", "tmp": "2", "keep": "3"},
        {"keep": "3"},
    ),
    (
        "labeldrop names are anchored",
        [{"regex": "tmp", "action": "labeldrop"}],
        {"tmp": "1", "tmpx": "2"},
        {"tmpx": "2"},
    ),
    (
        "labelkeep keeps matching names only",
        [{"regex": "__name__|job", "action": "labelkeep"}],
        {"__name__": "up", "job": "a", "instance": "b"},
        {"__name__": "up", "job": "a"},
    ),
    (
        "lowercase",
        [{"source_labels": ["a"], "target_label": "b", "action": "lowercase"}],
        {"a": "HeLLo"},
        {"a": "HeLLo", "b": "hello"},
    ),
    (
        "lowercase maps rune by rune like Go: no final sigma, İ to i",
        [{"source_labels": ["a"], "target_label": "b", "action": "lowercase"}],
        {"a": "ΟΔΟΣ İ"},
        {"a": "ΟΔΟΣ İ", "b": "οδοσ i"},
    ),
    (
        "uppercase keeps ß (no one-rune upper case) and joins sources",
        [{"source_labels": ["a", "c"], "target_label": "b", "action": "uppercase"}],
        {"a": "straße", "c": "ǆ"},
        {"a": "straße", "c": "ǆ", "b": "STRAßE;Ǆ"},
    ),
    (
        "lowercase of nothing deletes the target",
        [{"source_labels": ["missing"], "target_label": "b", "action": "lowercase"}],
        {"b": "x"},
        {},
    ),
    (
        "__meta_ labels are kept: dropping them is the caller's job",
        [{"source_labels": ["__meta_x"], "target_label": "x"}],
        {"__meta_x": "1", "__address__": "h:1"},
        {"__meta_x": "1", "__address__": "h:1", "x": "1"},
    ),
    (
        "empty-valued input labels are absent to every rule and in the result",
        [
            {"regex": "(.*)", "replacement": "copy", "action": "labelmap"},
            {"source_labels": ["e"], "regex": "", "action": "keep"},
        ],
        {"e": "", "v": "1"},
        {"v": "1", "copy": "1"},
    ),
    (
        "rules run in order",
        [
            {"source_labels": ["a"], "target_label": "b", "replacement": "x"},
            {"source_labels": ["b"], "regex": "x", "action": "drop"},
        ],
        {"a": "1"},
        None,
    ),
]


@pytest.mark.parametrize(
    ("configs", "labels", "expected"),
    [case[1:] for case in ACTION_CASES],
    ids=[case[0] for case in ACTION_CASES],
)
def test_actions(configs: list[dict[str, Any]], labels: Labels, expected: Labels | None) -> None:
    before = dict(labels)
    assert run(configs, labels) == expected
    assert labels == before


def test_no_rules_returns_a_copy() -> None:
    labels = {"a": "1"}
    out = compile_rules([]).apply(labels)
    assert out == labels
    assert out is not labels


def test_results_survive_memo_eviction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relabel, "_MEMO_SIZE", 2)
    relabeler = rules(
        {
            "source_labels": ["v"],
            "regex": "(\\d+)-(\\d+)",
            "target_label": "t",
            "replacement": "$2$1",
        },
        {"source_labels": ["v"], "modulus": 5, "target_label": "h", "action": "hashmod"},
        {"regex": "x(\\d)", "replacement": "y$1", "action": "labelmap"},
        {"source_labels": ["v"], "regex": "(9+)-.*", "action": "drop"},
    )
    for i in range(20):
        value = f"{i}-{i * 7}"
        digest = hashlib.md5(value.encode()).digest()
        expected = {
            "v": value,
            f"x{i % 10}": "1",
            f"y{i % 10}": "1",
            "t": f"{i * 7}{i}",
            "h": str(int.from_bytes(digest[8:], "big") % 5),
        }
        assert relabeler.apply({"v": value, f"x{i % 10}": "1"}) == (None if i == 9 else expected)


# --------------------------------------------------------------------------
# Properties.
# --------------------------------------------------------------------------

names = st.sampled_from(["__name__", "job", "a", "b", "__meta_x_y", "__tmp_z", "x1", "le"])
values = st.text(alphabet="abAB;:_-1é\n", max_size=6)
label_sets = st.dictionaries(names, values, max_size=8)
literals = st.text(alphabet="ab_:;", min_size=1, max_size=4)
literal_regexes = st.builds(  # shapes with fast paths: a|b, a.*|b.*, .*a|.*b, .*a.*
    lambda parts, lead, trail: "|".join(lead + p + trail for p in parts),
    st.lists(literals, min_size=1, max_size=3),
    st.sampled_from(["", ".*"]),
    st.sampled_from(["", ".*"]),
)
any_config = st.sampled_from(
    [
        {
            "source_labels": ["a", "b"],
            "regex": "(.*);(.*)",
            "target_label": "t",
            "replacement": "$2",
        },
        {"source_labels": ["job"], "target_label": "${1}", "regex": "(.*)"},
        {"source_labels": ["a"], "regex": "a.*", "action": "drop"},
        {"source_labels": ["b"], "regex": ".+", "action": "keep"},
        {"source_labels": ["a"], "target_label": "b", "action": "dropequal"},
        {"source_labels": ["a", "job"], "modulus": 3, "target_label": "h", "action": "hashmod"},
        {"regex": "__meta_(.+)", "action": "labelmap"},
        {"regex": "(a|b|x1)", "replacement": "job", "action": "labelmap"},
        {"regex": "__tmp.*", "action": "labeldrop"},
        {"regex": "__name__|a|b|job", "action": "labelkeep"},
        {"source_labels": ["a"], "target_label": "a", "action": "uppercase"},
        {"source_labels": ["job"], "target_label": "a", "replacement": ""},
    ]
)


@given(st.lists(any_config, max_size=5), label_sets)
def test_input_untouched_and_no_empty_values(configs: list[dict[str, Any]], labels: Labels) -> None:
    before = dict(labels)
    out = run(configs, labels)
    assert labels == before
    assert out is None or all(out.values())


@given(st.lists(any_config, max_size=5), label_sets, st.randoms())
def test_input_order_does_not_matter(
    configs: list[dict[str, Any]], labels: Labels, rnd: Any
) -> None:
    items = list(labels.items())
    rnd.shuffle(items)
    assert run(configs, dict(items)) == run(configs, labels)


@given(label_sets)
def test_no_rules_drop_only_empty_values(labels: Labels) -> None:
    assert compile_rules([]).apply(labels) == {k: v for k, v in labels.items() if v}


@given(literal_regexes, st.sampled_from(["a", "job"]), label_sets)
def test_keep_and_drop_partition(regex: str, source: str, labels: Labels) -> None:
    keep = rules({"source_labels": [source], "regex": regex, "action": "keep"}).apply(labels)
    drop = rules({"source_labels": [source], "regex": regex, "action": "drop"}).apply(labels)
    assert (keep is None) != (drop is None)


@given(literal_regexes, values)
def test_literal_fast_paths_agree_with_the_regex_engine(regex: str, value: str) -> None:
    # `(?:\b)?` always matches empty, but no fast path sees through it.
    slow = rules({"source_labels": ["v"], "regex": f"(?:{regex})(?:\\b)?", "action": "keep"})
    fast = rules({"source_labels": ["v"], "regex": regex, "action": "keep"})
    labels = {"v": value}
    assert fast.apply(labels) == slow.apply(labels)


@given(values, st.integers(min_value=1, max_value=2**64 - 1))
def test_hashmod_is_md5_low_64_bits_mod_modulus(value: str, modulus: int) -> None:
    out = run(
        [{"source_labels": ["v"], "modulus": modulus, "target_label": "h", "action": "hashmod"}],
        {"v": value},
    )
    assert out is not None
    digest = hashlib.md5(value.encode()).digest()
    assert out["h"] == str(int.from_bytes(digest[8:16], "big") % modulus)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=10))
def test_ascii_case_mapping(value: str) -> None:
    upper = run(
        [
            {"source_labels": ["v"], "target_label": "u", "action": "uppercase"},
            {"source_labels": ["v"], "target_label": "l", "action": "lowercase"},
        ],
        {"v": value},
    )
    assert upper is not None
    assert upper.get("u", "") == value.upper()
    assert upper.get("l", "") == value.lower()
