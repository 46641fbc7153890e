"""Prometheus relabeling: ``relabel_configs`` and ``metric_relabel_configs``.

Behaves like Prometheus 3 (``model/relabel``) with the legacy label-name scheme
(``[a-zA-Z_][a-zA-Z0-9_]*``): the same defaults, the same per-action validation
(and error texts), the same anchoring (``^(?s:REGEX)$``), Go's template expansion
(``$1``, ``${1}``, ``${name}``; ``$1x`` names the group ``1x``) and the same
order of writes, so a ``labelmap`` onto one name keeps the value Prometheus keeps.

Regexes are RE2 (Go) syntax. Two engines run them; literal-shaped ones
(``a|b``, ``go_.*``, ``.*_total``) skip either engine.

- ``engine="python"`` (the default): translated once to Python's ``re``. Refused
  with a clear error: ``\\pL``-style Unicode classes (Python has none) and an
  unbalanced ``)`` (which Prometheus would splice into its own anchoring). Known
  divergences, all in corner cases: Python backtracks, so nested repetition such
  as ``(a*)*`` can take exponential time where RE2 is linear; a repetition of a
  sub-pattern that can match empty may leave an empty last capture where RE2
  keeps the previous one; case folding under ``(?i)`` follows Python's Unicode
  tables.
- ``engine="re2"``: compiled by RE2 itself (google-re2) from the RE2 source, so
  matching takes time linear in the input whatever the regex; for rules that come
  from outside (a tenant's). Refused: what RE2 refuses, an unbalanced ``)`` and
  ``\\C``. Validate such configs with ``context={"relabel_engine": "re2"}`` so the
  regex is checked by RE2, not by the translator.
- ``engine="native"``: the rules run in the native module (``native/src/relabel.rs``,
  Rust's linear-time ``regex`` crate) with the same answers as RE2. It takes only a
  whitelisted subset of RE2 syntax whose meaning it can vouch for, and refuses the
  rule list otherwise (:class:`NativeDeclinedError`); a label set it cannot answer
  for exactly (a lone surrogate, ``lowercase``/``uppercase`` of a non-ASCII value)
  goes to the RE2 engine (the Python one if RE2 refuses a rule), counted in the
  relabeler's ``declined``.
- ``engine="auto"``: native when it takes every rule, else RE2 when it compiles
  every regex, else Python; a choice other than native is logged once per rule list
  with the reason. Use it only where RE2 semantics are wanted: it is not the
  default, which stays ``"python"``.

Who drops what: this module keeps every label it is not told to drop, including
``__meta_*``, ``__tmp*`` and ``__address__``. Removing ``__``-prefixed labels after
target relabeling is the caller's job, as it is Prometheus' scrape manager's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, get_args

import pydantic

from ._gosyntax import (
    RegexNotSupportedError,
    _compile_regex,
    _compile_regex_re2,
    _compile_template,
    _go_lower,
    _go_upper,
    _Groups,
    _Regex,
)
from ._native import NativeDeclinedError, native_rules

Engine: TypeAlias = Literal["python", "re2", "native", "auto"]
_RegexEngine: TypeAlias = Literal["python", "re2"]  # the engines that compile steps

__all__ = [
    "Action",
    "Engine",
    "NativeDeclinedError",
    "RegexNotSupportedError",
    "RelabelConfig",
    "Relabeler",
    "compile_rules",
    "is_valid_label_name",
]

Action: TypeAlias = Literal[
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


def is_valid_label_name(name: str) -> bool:
    """Whether ``name`` is a legacy Prometheus label name, ``[a-zA-Z_][a-zA-Z0-9_]*``."""
    return name.isascii() and name.isidentifier()


# --------------------------------------------------------------------------
# Configuration.
# --------------------------------------------------------------------------

_DEFAULT_REGEX = "(.*)"
_DEFAULT_SEPARATOR = ";"
_DEFAULT_REPLACEMENT = "$1"
_TARGET_WITH_VARIABLES = re.compile(
    r"(?:[a-zA-Z_]|\$(?:\{\w+\}|\w++))(?:\w|\$(?:\{\w+\}|\w++))*", re.ASCII
)
_ACTIONS: frozenset[str] = frozenset(get_args(Action))
_NEEDS_TARGET = {"replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal"}
_GO_ZERO_VALUES = {"source_labels": (), "separator": "", "regex": "", "replacement": ""}


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # close to Go's %q


class RelabelConfig(pydantic.BaseModel):
    """One ``<relabel_config>``, spelled as in ``prometheus.yml``.

    Validated as Prometheus validates it when loading its configuration, with
    the same messages. A YAML null (``None``) means what it means to Prometheus:
    the field's zero value, so ``regex: null`` is the empty regex and
    ``separator: null`` the empty separator.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    source_labels: tuple[str, ...] = pydantic.Field(
        default=(),
        description="Labels whose values are joined with `separator`; a missing label "
        "counts as the empty string. Default: none, so the joined value is ''.",
    )
    separator: str = pydantic.Field(
        default=_DEFAULT_SEPARATOR,
        description="Placed between the source label values. Default ';'.",
    )
    target_label: str | None = pydantic.Field(
        default=None,
        description="Label written by replace, hashmod, lowercase and uppercase, and "
        "compared by keepequal/dropequal. May use $1 / ${name} for replace. Default none.",
    )
    regex: str = pydantic.Field(
        default=_DEFAULT_REGEX,
        description="RE2 regex, fully anchored as ^(?s:REGEX)$. Matched against the "
        "joined value, or against label names for labelmap/labeldrop/labelkeep. "
        "Default '(.*)'.",
    )
    modulus: int | None = pydantic.Field(
        default=None,
        description="Modulus for hashmod (1 to 2**64-1). Default none (zero).",
    )
    replacement: str = pydantic.Field(
        default=_DEFAULT_REPLACEMENT,
        description="Template for replace (the value) and labelmap (the new name), "
        "expanded like Go's regexp.Expand. Default '$1'.",
    )
    action: Action = pydantic.Field(
        default="replace",
        description="What to do; case-insensitive as in Prometheus. Default 'replace'.",
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _yaml_spelling(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for key, zero in _GO_ZERO_VALUES.items():
            if key in out and out[key] is None:
                out[key] = zero
        if "action" in out:
            action = out["action"]
            if action is None:
                raise ValueError("relabel action cannot be empty")
            if isinstance(action, str):
                if action.lower() not in _ACTIONS:
                    raise ValueError(f"unknown relabel action {_quote(action)}")
                out["action"] = action.lower()
        if out.get("target_label") == "":
            out["target_label"] = None
        return out

    @pydantic.field_validator("source_labels")
    @classmethod
    def _valid_source_labels(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not is_valid_label_name(name):
                raise ValueError(f"{_quote(name)} is not a valid label name")
        return names

    @pydantic.field_validator("regex")
    @classmethod
    def _valid_regex(cls, source: str, info: pydantic.ValidationInfo) -> str:
        context = info.context if isinstance(info.context, Mapping) else {}
        _COMPILERS[context.get("relabel_engine", "python")](source)
        return source

    @pydantic.field_validator("modulus")
    @classmethod
    def _valid_modulus(cls, modulus: int | None) -> int | None:
        if modulus is not None and not 0 <= modulus < 2**64:
            raise ValueError("modulus must be an unsigned 64-bit integer")
        return modulus

    @pydantic.model_validator(mode="after")
    def _valid_for_action(self) -> RelabelConfig:
        action, target = self.action, self.target_label or ""
        if action == "hashmod" and not self.modulus:
            raise ValueError("relabel configuration for hashmod requires non-zero modulus")
        if action in _NEEDS_TARGET and not target:
            raise ValueError(
                f"relabel configuration for {action} action requires 'target_label' value"
            )
        bad_target = f"{_quote(target)} is invalid 'target_label' for {action} action"
        if action == "replace":
            if "$" in target and not _TARGET_WITH_VARIABLES.fullmatch(target):
                raise ValueError(bad_target)
            if "$" not in target and not is_valid_label_name(target):
                raise ValueError(bad_target)
        if action in {"lowercase", "uppercase", "keepequal", "dropequal"}:
            if not is_valid_label_name(target):
                raise ValueError(bad_target)
            if self.replacement != _DEFAULT_REPLACEMENT:
                raise ValueError(f"'replacement' can not be set for {action} action")
        if action == "labelmap" and not _TARGET_WITH_VARIABLES.fullmatch(self.replacement):
            raise ValueError(
                f"{_quote(self.replacement)} is invalid 'replacement' for {action} action"
            )
        if action == "hashmod" and not is_valid_label_name(target):
            raise ValueError(bad_target)
        if action in {"keepequal", "dropequal"} and (
            self.regex != _DEFAULT_REGEX or self.modulus or self.separator != _DEFAULT_SEPARATOR
        ):
            raise ValueError(
                f"{action} action requires only 'source_labels' and "
                "`target_label`, and no other fields"
            )
        if action in {"labeldrop", "labelkeep"} and (
            self.source_labels
            or target
            or self.modulus
            or self.separator != _DEFAULT_SEPARATOR
            or self.replacement != _DEFAULT_REPLACEMENT
        ):
            raise ValueError(f"{action} action requires only 'regex', and no other fields")
        return self


# --------------------------------------------------------------------------
# Compiled rules.
# --------------------------------------------------------------------------

# A step edits ``labels`` in place and says whether the series is kept.
# ``written`` mirrors the order of Prometheus' labels.Builder additions, which
# decides who wins when labelmap maps two names onto one; only kept when a
# later labelmap step needs it.
_Step: TypeAlias = Callable[[dict[str, str], dict[str, None]], bool]

_MEMO_SIZE = 4096


class _Memo(dict[str, Any]):
    """A bounded memo: a plain dict lookup on a hit, ``compute`` on a miss."""

    __slots__ = ("compute",)

    def __init__(self, compute: Callable[[str], Any]) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, key: str) -> Any:
        value = self.compute(key)
        if len(self) >= _MEMO_SIZE:
            self.clear()
        self[key] = value
        return value


def _joiner(config: RelabelConfig) -> Callable[[dict[str, str]], str]:
    names, sep = config.source_labels, config.separator
    if not names:
        return lambda labels: ""
    if len(names) == 1:
        (only,) = names
        return lambda labels: labels.get(only, "")
    return lambda labels: sep.join([labels.get(n, "") for n in names])


def _write(
    labels: dict[str, str], written: dict[str, None], track: bool, name: str, value: str
) -> None:
    """labels.Builder.Set: an empty value deletes the label."""
    if value:
        labels[name] = value
        if track:
            written[name] = None
    else:
        labels.pop(name, None)
        written.pop(name, None)


def _keep(labels: dict[str, str], written: dict[str, None]) -> bool:
    return True


def _replace_step(config: RelabelConfig, regex: _Regex, track: bool) -> _Step:
    joined = _joiner(config)
    target_tpl = _compile_template(config.target_label or "", regex.group_names)
    value_tpl = _compile_template(config.replacement, regex.group_names)
    if isinstance(target_tpl, str) and not is_valid_label_name(target_tpl):
        return _keep  # e.g. "${9}x" with no group 9: never a valid name, never written

    if isinstance(target_tpl, str) and isinstance(value_tpl, str):
        target, constant = target_tpl, value_tpl
        matches = regex.matches if regex.fast else _Memo(regex.matches).__getitem__

        def set_constant(labels: dict[str, str], written: dict[str, None]) -> bool:
            if matches(joined(labels)):
                _write(labels, written, track, target, constant)
            return True

        return set_constant

    if regex.whole and isinstance(target_tpl, str) and not isinstance(value_tpl, str):
        # The default regex ``(.*)``: every group is the whole value, no matching needed.
        target, expand = target_tpl, value_tpl

        def copy(labels: dict[str, str], written: dict[str, None]) -> bool:
            val = joined(labels)
            _write(labels, written, track, target, expand((val, val)))
            return True

        return copy

    def compute(val: str) -> tuple[str, str] | None:
        match: _Groups | None = (val, val) if regex.whole else regex.pattern.fullmatch(val)
        if match is None:
            return None
        target = target_tpl if isinstance(target_tpl, str) else target_tpl(match)
        if not is_valid_label_name(target):
            return None
        return target, value_tpl if isinstance(value_tpl, str) else value_tpl(match)

    memo = _Memo(compute)

    def replace(labels: dict[str, str], written: dict[str, None]) -> bool:
        result = memo[joined(labels)]
        if result is not None:
            _write(labels, written, track, *result)
        return True

    return replace


def _keep_drop_step(config: RelabelConfig, regex: _Regex) -> _Step:
    joined = _joiner(config)
    keep_on_match = config.action == "keep"
    test = regex.matches if regex.fast else _Memo(regex.matches).__getitem__

    def keep_drop(labels: dict[str, str], written: dict[str, None]) -> bool:
        return test(joined(labels)) == keep_on_match

    return keep_drop


def _equal_step(config: RelabelConfig) -> _Step:
    joined = _joiner(config)
    target = config.target_label or ""
    keep_if_equal = config.action == "keepequal"

    def equal(labels: dict[str, str], written: dict[str, None]) -> bool:
        return (labels.get(target, "") == joined(labels)) == keep_if_equal

    return equal


def _set_step(config: RelabelConfig, track: bool) -> _Step:
    """lowercase, uppercase and hashmod: the target gets a function of the value."""
    joined = _joiner(config)
    target = config.target_label or ""
    function: Callable[[str], str]
    if config.action == "lowercase":
        function = _go_lower
    elif config.action == "uppercase":
        function = _go_upper
    else:
        modulus = config.modulus or 1

        def hashmod(val: str) -> str:
            digest = hashlib.md5(val.encode("utf-8", "surrogatepass")).digest()
            return str(int.from_bytes(digest[8:], "big") % modulus)  # last 8 bytes, as Go

        function = _Memo(hashmod).__getitem__

    def set_target(labels: dict[str, str], written: dict[str, None]) -> bool:
        _write(labels, written, track, target, function(joined(labels)))
        return True

    return set_target


def _builder_order(
    renames: list[tuple[str, str, str]], written: dict[str, None]
) -> list[tuple[str, str, str]]:
    """Order (name, ...) tuples as Prometheus' Builder.Range visits names: input
    labels sorted by name, then labels written so far in order of writing."""
    position = {name: i for i, name in enumerate(written)}
    return sorted(renames, key=lambda r: (r[0] in position, position.get(r[0], 0), r[0]))


def _labelmap_step(config: RelabelConfig, regex: _Regex, track: bool) -> _Step:
    name_tpl = _compile_template(config.replacement, regex.group_names)

    def rename(name: str) -> str | None:
        if isinstance(name_tpl, str):
            return name_tpl if regex.matches(name) else None
        match: _Groups | None = (name, name) if regex.whole else regex.pattern.fullmatch(name)
        return None if match is None else name_tpl(match)

    memo = _Memo(rename)

    def labelmap(labels: dict[str, str], written: dict[str, None]) -> bool:
        renames = [
            (name, new, value) for name, value in labels.items() if (new := memo[name]) is not None
        ]
        if len(renames) > 1 and (track or len({new for _, new, _ in renames}) < len(renames)):
            # The last write to a name wins, and a later labelmap's order is this
            # one's order of writing: both need Prometheus' order.
            renames = _builder_order(renames, written)
        for _, new, value in renames:  # unchecked names, as in Prometheus
            labels[new] = value
            if track:
                written[new] = None
        return True

    return labelmap


def _label_filter_step(config: RelabelConfig, regex: _Regex) -> _Step:
    if config.action == "labeldrop" and regex.exact is not None:
        names = tuple(regex.exact)

        def drop_names(labels: dict[str, str], written: dict[str, None]) -> bool:
            for name in names:
                if name in labels:
                    del labels[name]
                    written.pop(name, None)
            return True

        return drop_names

    drop_on_match = config.action == "labeldrop"
    memo = _Memo(regex.matches)

    def label_filter(labels: dict[str, str], written: dict[str, None]) -> bool:
        doomed = [name for name in labels if memo[name] == drop_on_match]
        for name in doomed:
            del labels[name]
            written.pop(name, None)
        return True

    return label_filter


_COMPILERS: dict[str, Callable[[str], _Regex]] = {
    "python": _compile_regex,
    "re2": _compile_regex_re2,
}


def _compile_step(config: RelabelConfig, track: bool, engine: _RegexEngine) -> _Step:
    regex = _COMPILERS[engine](config.regex)
    action = config.action
    if action == "replace":
        return _replace_step(config, regex, track)
    if action in {"keep", "drop"}:
        return _keep_drop_step(config, regex)
    if action in {"keepequal", "dropequal"}:
        return _equal_step(config)
    if action == "labelmap":
        return _labelmap_step(config, regex, track)
    if action in {"labeldrop", "labelkeep"}:
        return _label_filter_step(config, regex)
    return _set_step(config, track)


class Relabeler:
    """Compiled relabel rules; build with :func:`compile_rules`. Thread-safe.

    ``apply`` runs the rules in order on a copy of ``labels`` and returns the new
    label set, or None when a rule drops the series. The input is never mutated.
    A label with an empty value counts as absent, as in Prometheus: rules do not
    see it and the result never holds one. Key order of the result is unspecified.

    Like Prometheus, ``labelmap`` does not check the names it makes (``$1`` can
    expand to ``""`` or ``"9x"``); callers that need valid names check the result,
    as Prometheus' scrape loop does.
    """

    __slots__ = ("_steps", "configs", "engine")

    def __init__(self, configs: Sequence[RelabelConfig], engine: _RegexEngine = "python") -> None:
        self.configs = tuple(configs)
        self.engine: Engine = engine
        last_labelmap = max(
            (i for i, c in enumerate(self.configs) if c.action == "labelmap"), default=-1
        )
        self._steps = tuple(
            _compile_step(config, i < last_labelmap, engine)
            for i, config in enumerate(self.configs)
        )

    def apply(self, labels: Mapping[str, str]) -> dict[str, str] | None:
        out = dict(labels)
        if not all(out.values()):  # as labels.Builder does: empty means absent, from the start
            out = {name: value for name, value in out.items() if value}
        written: dict[str, None] = {}
        for step in self._steps:
            if not step(out, written):
                return None
        return out

    def __repr__(self) -> str:
        return f"Relabeler({len(self.configs)} rules, {self.engine})"


class _NativeRelabeler(Relabeler):
    """The native engine's :class:`Relabeler`: ``apply`` runs natively; a label set
    the native side declines is answered by ``fallback`` (the same rules on the RE2
    engine, or the Python one when RE2 refuses a rule) and counted in ``declined``."""

    # ``apply`` is the native method itself, set per instance: a Python frame around
    # it would cost about as much as the native work (bench/relabel.py).
    __slots__ = ("_native", "apply", "fallback")

    def __init__(self, configs: Sequence[RelabelConfig]) -> None:
        try:
            fallback = Relabeler(configs, "re2")
        except RegexNotSupportedError:
            fallback = Relabeler(configs, "python")
        # Not Relabeler.__init__: the steps are the fallback's. The native side holds
        # the fallback's apply, never this object's, so no reference cycle forms
        # through the native object (which the cyclic GC cannot see into).
        self.configs = fallback.configs
        self.engine = "native"
        self._steps = ()
        self.fallback = fallback
        self._native = native_rules(self.configs, fallback.apply)
        object.__setattr__(self, "apply", self._native.apply)  # over the method

    @property
    def declined(self) -> int:
        """Label sets answered by the fallback engine since the rules were compiled."""
        return self._native.declined

    def __repr__(self) -> str:
        return f"Relabeler({len(self.configs)} rules, native, else {self.fallback.engine})"


_log = logging.getLogger(__name__)


def compile_rules(configs: Sequence[RelabelConfig], engine: Engine = "python") -> Relabeler:
    """Compile relabel configs once (regexes, templates, fast paths) for ``apply``.

    ``engine`` (default ``"python"``, the translator) picks who runs the regexes;
    ``"re2"`` guarantees linear-time matching; ``"native"`` runs the rules in the
    native module and ``"auto"`` picks native, else RE2, else Python (see the module
    docstring). RegexNotSupportedError when a regex does not compile with that
    engine; NativeDeclinedError when ``"native"`` does not take a rule."""
    if engine == "native":
        return _NativeRelabeler(configs)
    if engine == "python" or engine == "re2":
        return Relabeler(configs, engine)
    try:
        return _NativeRelabeler(configs)
    except NativeDeclinedError as exc:
        reason = str(exc)
    try:
        chosen = Relabeler(configs, "re2")
    except RegexNotSupportedError:
        chosen = Relabeler(configs, "python")
    _log.info(
        "relabel rules on the %s engine: %d rules, the native engine declines them: %s",
        chosen.engine,
        len(chosen.configs),
        reason,
    )
    return chosen
