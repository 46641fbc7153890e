"""Environment references in a configuration file, expanded as Promtail's
``-config.expand-env`` does (it runs the file's text through Go's drone/envsubst
before parsing the YAML).

- ``${VAR}`` is the variable's value; a variable that is not set is empty (no
  error), as in Promtail.
- ``${VAR:-default}``, ``${VAR:=default}`` and ``${VAR=default}`` are the default
  when the variable is unset *or empty* (Promtail reads variables with Go's
  os.Getenv, which cannot tell the two apart; nothing is assigned). The default may
  hold references of its own (``${A:-${B}}``) and runs to the first ``}``.
- ``$$`` is a literal ``$`` (so ``$${VAR}`` stays ``${VAR}``), ``\\\\`` is one
  backslash and ``\\/`` is ``/``: a regex's backslashes must be doubled. These
  escapes apply outside references only.
- ``$VAR`` without braces, and a ``$`` before anything but ``{`` or ``$``, stay as
  they are.
- A variable's name is letters, digits, ``_`` and ``-`` (so ``${VAR-x}`` is the
  variable ``VAR-x``, as in Promtail).

Promtail also applies envsubst's bash-style operators (``${#VAR}``,
``${VAR:1:2}``, ``${VAR/a/b}``, ``${VAR^^}``, ``${VAR%x}``, ``${VAR:?x}``,
``${VAR:+x}``, ...); ferryman refuses them rather than give them another meaning.
An unterminated ``${`` is an error in both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = ["expand"]

_NAME = re.compile(r"[\w-]+")
_DEFAULTS = (":-", ":=", "=")
_ESCAPES = {"$$": "$", "\\\\": "\\", "\\/": "/"}
_SUPPORTED = "${VAR}, ${VAR:-default}, ${VAR:=default}, ${VAR=default}"


def expand(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with its references replaced from ``environ`` (default: this
    process's environment). Raises ValueError naming the line of a reference that
    is unterminated or uses an operator ferryman does not expand."""
    env = os.environ if environ is None else environ
    out, _ = _Expansion(text, env).run(0, in_default=False)
    return out


class _Expansion:
    def __init__(self, text: str, env: Mapping[str, str]) -> None:
        self.text = text
        self.env = env

    def run(self, pos: int, *, in_default: bool) -> tuple[str, int]:
        """Expand from ``pos`` to the end, or (``in_default``) to the ``}`` closing
        the default, whose position is returned."""
        text, out = self.text, []
        while pos < len(text):
            if text.startswith("${", pos):
                value, pos = self._reference(pos)
                out.append(value)
            elif in_default and text[pos] == "}":
                return "".join(out), pos
            elif not in_default and text[pos : pos + 2] in _ESCAPES:
                out.append(_ESCAPES[text[pos : pos + 2]])
                pos += 2
            else:
                out.append(text[pos])
                pos += 1
        if in_default:
            raise self._error(pos, "a default without its closing }")
        return "".join(out), pos

    def _reference(self, start: int) -> tuple[str, int]:
        """The value of the reference at ``start`` (its ``${``) and where it ends."""
        name = _NAME.match(self.text, start + 2)
        if name is None:
            raise self._error(start, f"${{ without a variable name; ferryman expands {_SUPPORTED}")
        value = self.env.get(name.group(), "")
        pos = name.end()
        if self.text.startswith("}", pos):
            return value, pos + 1
        operator = next((op for op in _DEFAULTS if self.text.startswith(op, pos)), None)
        if operator is None:
            if pos >= len(self.text):
                raise self._error(start, f"${{{name.group()} without its closing }}")
            raise self._error(
                start,
                f"${{{name.group()}{self.text[pos]}...}} is not expanded by ferryman; "
                f"it expands {_SUPPORTED}",
            )
        default, pos = self.run(pos + len(operator), in_default=True)
        return value or default, pos + 1

    def _error(self, pos: int, what: str) -> ValueError:
        line = self.text.count("\n", 0, pos) + 1
        return ValueError(f"line {line}: {what}")
