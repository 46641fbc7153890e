"""``-config.expand-env``: references expanded as Promtail's envsubst does, what it
does not do refused, and load_config expanding only when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.logs.config import load_config
from edge.logs.envsubst import expand
from ferryman.errors import ConfigError

ENV = {"TOPIC": "logs.alpha", "EMPTY": "", "HOST": "node-1", "WITH-DASH": "dashed"}


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("topic: ${TOPIC}", "topic: logs.alpha"),
        ("${TOPIC}/${HOST}", "logs.alpha/node-1"),
        # unset without a default: empty, no error
        ("topic: ${UNSET}", "topic: "),
        # a default applies when the variable is unset or empty, whichever operator
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${TOPIC:-fallback}", "logs.alpha"),
        ("${UNSET:=fallback}", "fallback"),
        ("${UNSET=fallback}", "fallback"),
        ("${EMPTY=fallback}", "fallback"),
        ("${UNSET:-}", ""),
        ("${UNSET:-a b:c/d}", "a b:c/d"),
        ("${UNSET:-${HOST}}", "node-1"),
        ("${UNSET:-x-${UNSET2:-${HOST}}-y}", "x-node-1-y"),
        # ``-`` belongs to the name, so this is the variable WITH-DASH
        ("${WITH-DASH}", "dashed"),
        ("${TOPIC-fallback}", ""),
        # escapes, outside references
        ("$${TOPIC}", "${TOPIC}"),
        ("cost: $$5", "cost: $5"),
        ("$$$${TOPIC}", "$${TOPIC}"),
        (r"regex: '\\d+\\.log'", r"regex: '\d+\.log'"),
        (r"a\/b", "a/b"),
        (r"\d", r"\d"),
        # ...and not inside a default
        ("${UNSET:-$$}", "$$"),
        # no braces, no expansion
        ("$TOPIC and $ alone and a } too", "$TOPIC and $ alone and a } too"),
        ("price$", "price$"),
    ],
)
def test_expand(text: str, expanded: str) -> None:
    assert expand(text, ENV) == expanded


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: 1\nb: ${TOPIC", "line 2: ${TOPIC without its closing }"),
        ("${UNSET:-fallback", "line 1: a default without its closing }"),
        ("x: ${}", "line 1: ${ without a variable name"),
        ("\n\n${TOPIC:+other}", "line 3: ${TOPIC:...} is not expanded by ferryman"),
        ("${TOPIC:?required}", "${TOPIC:...} is not expanded"),
        ("${#TOPIC}", "${ without a variable name"),
        ("${TOPIC:0:3}", "${TOPIC:...} is not expanded"),
        ("${TOPIC/a/b}", "${TOPIC/...} is not expanded"),
        ("${TOPIC^^}", "${TOPIC^...} is not expanded"),
        ("${TOPIC%.*}", "${TOPIC%...} is not expanded"),
    ],
)
def test_what_ferryman_does_not_expand_is_an_error_with_its_line(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as raised:
        expand(text, ENV)
    assert problem in str(raised.value)


def test_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRYMAN_TEST_TOPIC", "from-env")
    monkeypatch.delenv("FERRYMAN_TEST_UNSET", raising=False)
    assert expand("${FERRYMAN_TEST_TOPIC}${FERRYMAN_TEST_UNSET:-!}") == "from-env!"


CONFIG = """\
ferryman:
  kafka:
    topic: ${FERRYMAN_TEST_TOPIC}
    bootstrap_servers: ${FERRYMAN_TEST_KAFKA:-kafka:9092}
"""


def test_load_config_expands_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRYMAN_TEST_TOPIC", "logs.alpha")
    monkeypatch.delenv("FERRYMAN_TEST_KAFKA", raising=False)
    path = tmp_path / "promtail.yaml"
    path.write_text(CONFIG)
    expanded = load_config(path, expand_env=True).ferryman.kafka
    assert (expanded.topic, expanded.bootstrap_servers) == ("logs.alpha", "kafka:9092")
    literal = load_config(path).ferryman.kafka
    assert literal.topic == "${FERRYMAN_TEST_TOPIC}"


def test_a_bad_reference_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "promtail.yaml"
    path.write_text("ferryman:\n  kafka:\n    topic: ${TOPIC:+x}\n")
    with pytest.raises(ConfigError, match=r"<file>: line 3: \$\{TOPIC:\.\.\.\}"):
        load_config(path, expand_env=True)
