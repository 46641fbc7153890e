"""The native relabeler (``ferryman_native.NativeRelabeler``, ``native/src/relabel.rs``),
for :mod:`ferryman.prom.relabel`'s ``engine="native"`` and ``engine="auto"``.

It declines a rule whose regex is outside the RE2 subset it can vouch for (when
built: :class:`NativeDeclinedError`; the caller then uses another engine for the
whole rule list), and a label set it cannot answer for exactly (that one goes to
the fallback it was given, counted)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .relabel import RelabelConfig

__all__ = ["AVAILABLE", "NativeDeclinedError", "NativeRules", "native_rules", "rule_spec"]


class NativeRules(Protocol):
    """What the native relabeler offers (see ``native/python/ferryman_native``)."""

    @property
    def declined(self) -> int: ...
    def apply(self, labels: Mapping[str, str], /) -> dict[str, str] | None: ...


class _NoNativeModule(Exception):
    """Stands for the native module's exception when there is no native module."""


_native: Any
_declined: type[Exception]
try:
    from ferryman_native import NativeRelabeler as _native
    from ferryman_native import RelabelDeclined as _declined
except ImportError:  # an older build of the native module, or none
    _native = None
    _declined = _NoNativeModule

AVAILABLE = _native is not None


class NativeDeclinedError(ValueError):
    """Raised when the native relabeler does not take a rule list; says which rule
    and why (a regex outside its RE2 subset, a template it cannot expand exactly),
    or that the native module has no relabeler."""


def rule_spec(config: RelabelConfig) -> tuple[str, list[str], str, str, int, str | None, str]:
    """A rule as the native relabeler takes it: action, source labels, separator,
    regex, modulus (0 for none), target label, replacement."""
    return (
        config.action,
        list(config.source_labels),
        config.separator,
        config.regex,
        config.modulus or 0,
        config.target_label,
        config.replacement,
    )


def native_rules(
    configs: Sequence[RelabelConfig], fallback: Callable[[Mapping[str, str]], dict[str, str] | None]
) -> NativeRules:
    """The native relabeler of these (validated) rules; a label set it does not take
    goes to ``fallback``, counted in its ``declined``."""
    if _native is None:
        raise NativeDeclinedError("the native module has no relabeler")
    try:
        rules: NativeRules = _native([rule_spec(config) for config in configs], fallback)
    except _declined as exc:
        raise NativeDeclinedError(str(exc)) from None
    except UnicodeEncodeError:  # a lone surrogate in a regex, template or name
        raise NativeDeclinedError("a rule holds text without a UTF-8 form") from None
    return rules
