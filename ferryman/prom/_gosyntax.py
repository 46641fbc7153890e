"""Go semantics that relabeling needs, in Python: RE2 regexes translated to ``re``
(with literal-shaped fast paths), Go ``regexp.Expand`` templates, and Go's case mapping.

Private to :mod:`ferryman.prom.relabel`; see its docstring for the divergences."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol, TypeAlias

import re2


class RegexNotSupportedError(ValueError):
    """Raised when a regex is not valid RE2 syntax, or is RE2 that Python's ``re``
    cannot express faithfully."""


# --------------------------------------------------------------------------
# RE2 syntax -> a small tree -> Python ``re``.
# --------------------------------------------------------------------------

_FOLD, _MULTILINE, _DOTNL, _UNGREEDY = 1, 2, 4, 8
_FLAG_BITS = {"i": _FOLD, "m": _MULTILINE, "s": _DOTNL, "U": _UNGREEDY}
_MAX_RUNE = 0x10FFFF
_MAX_REPEAT = 1000
_MAX_DEPTH = 1000

_Ranges: TypeAlias = tuple[tuple[int, int], ...]

_DIGIT: _Ranges = ((0x30, 0x39),)
_WORD: _Ranges = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_PERL_CLASSES: dict[str, _Ranges] = {
    "d": _DIGIT,
    "s": ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)),  # RE2's \s has no \v
    "w": _WORD,
}
_POSIX_CLASSES: dict[str, _Ranges] = {
    "alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "ascii": ((0x00, 0x7F),),
    "blank": ((0x09, 0x09), (0x20, 0x20)),
    "cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "digit": _DIGIT,
    "graph": ((0x21, 0x7E),),
    "lower": ((0x61, 0x7A),),
    "print": ((0x20, 0x7E),),
    "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
    "upper": ((0x41, 0x5A),),
    "word": _WORD,
    "xdigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
}
_C_ESCAPES = {"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


@dataclass(frozen=True, slots=True)
class _Lit:
    text: str
    fold: bool


@dataclass(frozen=True, slots=True)
class _Class:
    ranges: _Ranges
    negated: bool
    fold: bool


@dataclass(frozen=True, slots=True)
class _AnyChar:
    dotnl: bool


@dataclass(frozen=True, slots=True)
class _Assert:
    python: str  # its Python spelling
    edge: Literal["begin", "end", ""]  # begin/end of text, or neither


@dataclass(frozen=True, slots=True)
class _Group:
    index: int | None  # None: grouping only
    child: _Node


@dataclass(frozen=True, slots=True)
class _Repeat:
    child: _Node
    min: int
    max: int  # -1: unbounded
    greedy: bool
    counted: bool  # written as {n,m}


@dataclass(frozen=True, slots=True)
class _Concat:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Alternate:
    items: tuple[_Node, ...]


_Node: TypeAlias = _Lit | _Class | _AnyChar | _Assert | _Group | _Repeat | _Concat | _Alternate


def _normalise(ranges: Iterable[tuple[int, int]]) -> _Ranges:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _complement(ranges: _Ranges) -> _Ranges:
    out, nxt = [], 0
    for lo, hi in _normalise(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return tuple(out)


def _ascii_group(ranges: _Ranges, negated: bool, fold: bool) -> _Ranges:
    """An ASCII class (Perl or POSIX), negated after folding as RE2 does: under
    ``(?i)`` the letters k and s also stand for KELVIN SIGN and LONG S."""
    if fold:
        extra = [
            (c, c)
            for letters, c in (("kK", 0x212A), ("sS", 0x17F))
            if any(lo <= ord(ch) <= hi for ch in letters for lo, hi in ranges)
        ]
        ranges = _normalise((*ranges, *extra))
    return _complement(ranges) if negated else ranges


class _Parser:
    """Recursive descent over RE2's Perl-flavoured syntax (Go's ``regexp/syntax``)."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0
        self.group_names: list[str] = [""]  # index 0 is the whole match

    def fail(self, reason: str) -> RegexNotSupportedError:
        return RegexNotSupportedError(f"invalid regex {self.src!r}: {reason}")

    def parse(self) -> _Node:
        node = self.alternation(_DOTNL, 0)  # Prometheus wraps the regex in (?s:...)
        if self.pos < len(self.src):
            raise self.fail("unexpected ) (unbalanced parentheses)")
        return node

    def alternation(self, flags: int, depth: int) -> _Node:
        if depth > _MAX_DEPTH:
            raise self.fail("expression nests too deeply")
        src = self.src
        branches: list[_Node] = []
        items: list[_Node] = []
        can_repeat = False  # the last thing read was an atom without an operator
        while self.pos < len(src):
            c = src[self.pos]
            if c == "|":
                branches.append(_concat(items))
                items, can_repeat = [], False
                self.pos += 1
                continue
            if c == ")":
                break
            if c in "*+?" or (c == "{" and self.counted_repeat() is not None):
                if not can_repeat:
                    if items and isinstance(items[-1], _Repeat):
                        raise self.fail("invalid nested repetition operator")
                    raise self.fail("missing argument to repetition operator")
                items[-1] = self.repetition(items[-1], flags)
                can_repeat = False
                continue
            if (
                c == "("
                and src.startswith("(?", self.pos)
                and not _NAMED_GROUP.match(src, self.pos)
            ):
                new_flags, opens = self.flag_group(flags)
                if not opens:  # (?i) changes flags to the end of the group
                    flags = new_flags
                    continue
                child = self.alternation(new_flags, depth + 1)
                self.close_group()
                items.append(_Group(None, child))
            elif c == "(":
                index = len(self.group_names)
                named = _NAMED_GROUP.match(src, self.pos)
                if named:  # (?P<name> or (?<name>; RE2 takes the name up to the first >
                    end = src.find(">", named.end())
                    name = src[named.end() : end]
                    if end < 0 or not (name.isascii() and name.replace("_", "a").isalnum()):
                        raise self.fail(f"invalid named capture {src[self.pos : end + 1]!r}")
                    self.group_names.append(name)
                    self.pos = end + 1
                else:
                    self.group_names.append("")
                    self.pos += 1
                child = self.alternation(flags, depth + 1)
                self.close_group()
                items.append(_Group(index, child))
            elif c == "[":
                items.append(self.char_class(flags))
            elif c == "\\":
                atom = self.escape(flags)
                if atom is None:  # \Q...\E
                    quoted = self.quoted(flags)
                    items.extend(quoted)
                    can_repeat = can_repeat or bool(quoted)
                    continue
                items.append(atom)
            else:
                self.pos += 1
                items.append(self.simple(c, flags))
            can_repeat = True
        branches.append(_concat(items))
        return branches[0] if len(branches) == 1 else _Alternate(tuple(branches))

    def close_group(self) -> None:
        if self.pos >= len(self.src):
            raise self.fail("missing closing )")
        self.pos += 1

    @staticmethod
    def simple(c: str, flags: int) -> _Node:
        if c == ".":
            return _AnyChar(bool(flags & _DOTNL))
        if c == "^":
            return _Assert(r"(?m:^)", "") if flags & _MULTILINE else _Assert(r"\A", "begin")
        if c == "$":
            return _Assert(r"(?m:$)", "") if flags & _MULTILINE else _Assert(r"\Z", "end")
        return _Lit(c, bool(flags & _FOLD))

    def counted_repeat(self) -> tuple[int, int, int] | None:
        """``{n}``, ``{n,}`` or ``{n,m}`` at pos as (min, max, end), else None:
        anything else starting with ``{`` is a literal brace in RE2."""
        m = _COUNTED.match(self.src, self.pos)
        if not m:
            return None
        lo_text, comma, hi_text = m.groups()
        lo = int(lo_text)
        hi = lo if not comma else (int(hi_text) if hi_text else -1)
        if lo > _MAX_REPEAT or hi > _MAX_REPEAT or (hi >= 0 and lo > hi):
            raise self.fail(f"invalid repeat count {m.group(0)!r}")
        return lo, hi, m.end()

    def repetition(self, child: _Node, flags: int) -> _Node:
        c = self.src[self.pos]
        counted = c == "{"
        if counted:
            spec = self.counted_repeat()
            assert spec is not None
            lo, hi, self.pos = spec
        else:
            lo, hi = {"*": (0, -1), "+": (1, -1), "?": (0, 1)}[c]
            self.pos += 1
        lazy = self.src.startswith("?", self.pos)
        if lazy:
            self.pos += 1
        node = _Repeat(child, lo, hi, greedy=lazy == bool(flags & _UNGREEDY), counted=counted)
        if counted and (lo >= 2 or hi >= 2) and not _repeat_is_valid(node, _MAX_REPEAT):
            raise self.fail("invalid repeat count: nested repetition exceeds 1000")
        if self.pos < len(self.src) and (
            self.src[self.pos] in "*+?" or self.counted_repeat() is not None
        ):
            raise self.fail("invalid nested repetition operator")
        return node

    def flag_group(self, flags: int) -> tuple[int, bool]:
        """``(?flags)`` or ``(?flags:``; returns the new flags and whether a group opens."""
        src, start = self.src, self.pos
        i, on, off, negate, saw = self.pos + 2, 0, 0, False, False
        while i < len(src):
            c = src[i]
            i += 1
            if c in _FLAG_BITS:
                if negate:
                    off |= _FLAG_BITS[c]
                else:
                    on |= _FLAG_BITS[c]
                saw = True
            elif c == "-" and not negate:
                negate, saw = True, False
            elif c in ":)":
                if negate and not saw:
                    break
                self.pos = i
                return (flags | on) & ~off, c == ":"
            else:
                break
        raise self.fail(f"invalid or unsupported Perl syntax {src[start:i]!r}")

    def quoted(self, flags: int) -> list[_Node]:
        end = self.src.find(r"\E", self.pos)
        if end < 0:  # RE2 would read on to the end, swallowing Prometheus' closing ")"
            raise self.fail(r"\Q without \E (missing closing ) once anchored)")
        text, self.pos = self.src[self.pos : end], end + 2
        return [_Lit(ch, bool(flags & _FOLD)) for ch in text]

    def escape(self, flags: int) -> _Node | None:
        """An escape outside a class; None for ``\\Q`` (pos is then after it)."""
        src = self.src
        if self.pos + 1 >= len(src):
            raise self.fail("trailing backslash at end of expression")
        c = src[self.pos + 1]
        fold = bool(flags & _FOLD)
        simple = {
            "A": _Assert(r"\A", "begin"),
            "z": _Assert(r"\Z", "end"),
            "b": _Assert(r"(?a:\b)", ""),
            # Python's \B (before 3.14) fails on empty input, where RE2's holds.
            "B": _Assert(r"(?a:\B|\A\Z)", ""),
        }
        if c in simple:
            self.pos += 2
            return simple[c]
        if c == "Q":
            self.pos += 2
            return None
        if c.lower() in _PERL_CLASSES:
            self.pos += 2
            return _Class(_ascii_group(_PERL_CLASSES[c.lower()], c.isupper(), fold), False, fold)
        return _Lit(chr(self.escaped_char()), fold)

    def escaped_char(self) -> int:
        """A single-character escape at pos (RE2 rules); moves pos past it."""
        src, start = self.src, self.pos
        if start + 1 >= len(src):
            raise self.fail("trailing backslash at end of expression")
        c = src[start + 1]
        self.pos = start + 2
        if c in "pP":
            raise RegexNotSupportedError(
                f"regex {src!r}: Unicode classes like \\pL or \\p{{Greek}} are not supported"
            )
        if c == "C":
            raise self.fail(r"invalid escape sequence '\C'")
        if c.isascii() and not c.isalnum():
            return ord(c)
        if c in _C_ESCAPES:
            return ord(_C_ESCAPES[c])
        if c in "01234567":
            m = _OCTAL.match(src, start + 1)
            assert m is not None
            # \1 to \7 alone would be a backreference, which RE2 does not have.
            if c != "0" and len(m.group(0)) == 1:
                raise self.fail(f"invalid escape sequence {src[start : start + 2]!r}")
            self.pos = m.end()
            return int(m.group(0), 8)
        if c == "x":
            m = _HEX.match(src, start + 2)
            if m:
                value = int(m.group(1) or m.group(2), 16)
                if value <= _MAX_RUNE:
                    self.pos = m.end()
                    return value
        raise self.fail(f"invalid escape sequence {src[start : start + 3]!r}")

    def char_class(self, flags: int) -> _Class:
        src, start = self.src, self.pos
        fold = bool(flags & _FOLD)
        self.pos += 1
        negated = src.startswith("^", self.pos)
        if negated:
            self.pos += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while first or not src.startswith("]", self.pos):
            if self.pos >= len(src):
                raise self.fail(f"missing closing ] in {src[start:]!r}")
            first = False
            end = src.find(":]", self.pos + 2) if src.startswith("[:", self.pos) else -1
            if end >= 0:  # [:alpha:] or [:^alpha:]; RE2 takes the first ":]" it finds
                name = src[self.pos + 2 : end]
                if name.removeprefix("^") not in _POSIX_CLASSES:
                    raise self.fail(f"invalid character class range {src[self.pos : end + 2]!r}")
                group = _POSIX_CLASSES[name.removeprefix("^")]
                ranges.extend(_ascii_group(group, name.startswith("^"), fold))
                self.pos = end + 2
                continue
            if src.startswith("\\", self.pos) and src[self.pos + 1 : self.pos + 2].lower() in (
                _PERL_CLASSES
            ):
                c = src[self.pos + 1]
                ranges.extend(_ascii_group(_PERL_CLASSES[c.lower()], c.isupper(), fold))
                self.pos += 2
                continue
            lo = self.class_char()
            hi = lo
            if (
                src.startswith("-", self.pos)
                and self.pos + 1 < len(src)
                and (src[self.pos + 1] != "]")
            ):
                self.pos += 1
                hi = self.class_char()
                if hi < lo:
                    raise self.fail(f"invalid character class range {chr(lo)}-{chr(hi)}")
            ranges.append((lo, hi))
        self.pos += 1
        return _Class(_normalise(ranges), negated, fold)

    def class_char(self) -> int:
        if self.pos >= len(self.src):
            raise self.fail("missing closing ]")
        if self.src[self.pos] == "\\":
            return self.escaped_char()
        self.pos += 1
        return ord(self.src[self.pos - 1])


_NAMED_GROUP = re.compile(r"\(\?P?<")
_COUNTED = re.compile(r"\{(0|[1-9][0-9]*)(?:(,)(0|[1-9][0-9]*)?)?\}")
_OCTAL = re.compile(r"[0-7]{1,3}")
_HEX = re.compile(r"\{([0-9A-Fa-f]+)\}|([0-9A-Fa-f]{2})")


def _concat(items: list[_Node]) -> _Node:
    merged: list[_Node] = []
    for item in items:
        last = merged[-1] if merged else None
        if isinstance(item, _Lit) and isinstance(last, _Lit) and last.fold == item.fold:
            merged[-1] = _Lit(last.text + item.text, item.fold)
        else:
            merged.append(item)
    return merged[0] if len(merged) == 1 else _Concat(tuple(merged))


def _repeat_is_valid(node: _Node, budget: int) -> bool:
    """RE2's rule: nested counted repetitions may not multiply past 1000 copies."""
    if isinstance(node, _Repeat) and node.counted:
        copies = node.max if node.max >= 0 else node.min
        if copies == 0:
            return True
        if copies > budget:
            return False
        budget //= copies
    children: tuple[_Node, ...] = ()
    if isinstance(node, _Group | _Repeat):
        children = (node.child,)
    elif isinstance(node, _Concat | _Alternate):
        children = node.items
    return all(_repeat_is_valid(child, budget) for child in children)


def _char_escape(code: int) -> str:
    if code < 0x80 and chr(code).isalnum():
        return chr(code)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _emit(node: _Node) -> str:
    if isinstance(node, _Lit):
        text = re.escape(node.text)
        cased = node.fold and node.text.lower() != node.text.upper()
        return f"(?i:{text})" if cased else text
    if isinstance(node, _Class):
        if not node.ranges:
            return "[\\x00-\\U0010ffff]" if node.negated else "(?!)"
        body = "".join(
            _char_escape(lo) if lo == hi else f"{_char_escape(lo)}-{_char_escape(hi)}"
            for lo, hi in node.ranges
        )
        text = f"[{'^' if node.negated else ''}{body}]"
        return f"(?i:{text})" if node.fold else text
    if isinstance(node, _AnyChar):
        return "." if node.dotnl else "[^\\n]"  # compiled with re.DOTALL
    if isinstance(node, _Assert):
        return node.python
    if isinstance(node, _Group):
        return f"({_emit(node.child)})" if node.index is not None else f"(?:{_emit(node.child)})"
    if isinstance(node, _Repeat):
        child = _emit(node.child)
        atomic = isinstance(node.child, _Group | _AnyChar | _Class) or (
            isinstance(node.child, _Lit) and len(node.child.text) == 1
        )
        if not atomic:
            child = f"(?:{child})"
        if node.counted:
            if node.max == node.min:
                op = f"{{{node.min}}}"
            else:
                op = f"{{{node.min},{'' if node.max < 0 else node.max}}}"
        else:
            op = {(0, -1): "*", (1, -1): "+", (0, 1): "?"}[(node.min, node.max)]
        return child + op + ("" if node.greedy else "?")
    if isinstance(node, _Concat):
        return "".join(_emit(item) for item in node.items)
    return "|".join(_emit(item) for item in node.items)


# Fast paths: most relabel regexes are literals, alternations of literals, or
# literals around ``.*``; those become set membership and str.startswith.

_MAX_LITERALS = 256


def _literals(node: _Node) -> frozenset[str] | None:
    """The finite set of strings ``node`` matches, if it is small and case-sensitive."""
    if isinstance(node, _Lit):
        if node.fold and node.text.lower() != node.text.upper():
            return None
        return frozenset((node.text,))
    if isinstance(node, _Group):
        return _literals(node.child)
    if isinstance(node, _Alternate):
        out: set[str] = set()
        for item in node.items:
            sub = _literals(item)
            if sub is None or len(out) + len(sub) > _MAX_LITERALS:
                return None
            out |= sub
        return frozenset(out)
    if isinstance(node, _Concat):
        acc = frozenset(("",))
        for item in node.items:
            sub = _literals(item)
            if sub is None or len(acc) * len(sub) > _MAX_LITERALS:
                return None
            acc = frozenset(a + b for a in acc for b in sub)
        return acc
    if isinstance(node, _Repeat) and (node.min, node.max) == (0, 1):
        sub = _literals(node.child)
        return None if sub is None else sub | {""}
    if (
        isinstance(node, _Class)
        and not node.negated
        and not node.fold
        and sum(hi - lo + 1 for lo, hi in node.ranges) <= 32
    ):
        return frozenset(chr(c) for lo, hi in node.ranges for c in range(lo, hi + 1))
    return None


def _is_any_star(node: _Node) -> bool:
    while isinstance(node, _Group):
        node = node.child
    return (
        isinstance(node, _Repeat)
        and isinstance(node.child, _AnyChar)
        and node.child.dotnl
        and node.min == 0
        and node.max == -1
    )


@dataclass(frozen=True, slots=True)
class _Shape:
    """A regex that matches exactly: one of ``exact``, or a string starting with
    one of ``prefixes``, ending with one of ``suffixes`` or containing an infix."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]
    suffixes: tuple[str, ...]
    infixes: tuple[str, ...]

    def matcher(self) -> Callable[[str], bool]:
        exact, starts, ends, inner = self.exact, self.prefixes, self.suffixes, self.infixes
        if "" in starts or "" in ends or "" in inner:
            return _always
        if not starts and not ends and not inner:
            return exact.__contains__
        if not inner:
            return lambda v: v in exact or v.startswith(starts) or v.endswith(ends)
        return lambda v: (
            v in exact
            or v.startswith(starts)
            or v.endswith(ends)
            or any(part in v for part in inner)
        )


def _literal_shape(root: _Node) -> _Shape | None:
    """The regex as literals around ``.*``, if it is that simple."""
    while isinstance(root, _Group):
        root = root.child
    found: dict[tuple[bool, bool], set[str]] = {}
    for branch in root.items if isinstance(root, _Alternate) else (root,):
        items = list(branch.items) if isinstance(branch, _Concat) else [branch]
        while items and isinstance(items[0], _Assert) and items[0].edge == "begin":
            items.pop(0)  # ^ at the start of a fully anchored branch: always true
        while items and isinstance(items[-1], _Assert) and items[-1].edge == "end":
            items.pop()
        lead = bool(items) and _is_any_star(items[0])
        trail = len(items) > int(lead) and _is_any_star(items[-1])
        middle = _literals(_Concat(tuple(items[int(lead) : len(items) - int(trail)])))
        if middle is None:
            return None
        found.setdefault((lead, trail), set()).update(middle)
    return _Shape(
        exact=frozenset(found.get((False, False), ())),
        prefixes=tuple(found.get((False, True), ())),
        suffixes=tuple(found.get((True, False), ())),
        infixes=tuple(found.get((True, True), ())),
    )


def _always(_: str) -> bool:
    return True


class _Pattern(Protocol):
    """What steps need of a compiled regex: a full match whose groups index by number."""

    def fullmatch(self, text: str, /) -> _Groups | None: ...


@dataclass(frozen=True, slots=True)
class _Regex:
    pattern: _Pattern
    group_names: tuple[str, ...]  # index -> name, "" when unnamed; [0] is the whole match
    matches: Callable[[str], bool]  # match-only test
    fast: bool  # ``matches`` avoids the regex engine
    exact: frozenset[str] | None  # the regex matches exactly these strings
    whole: bool  # ``(.*)`` or ``.*``: always matches, every group is the whole value


def _finish(
    pattern: _Pattern, names: tuple[str, ...], root: _Node | None, shape: _Shape | None
) -> _Regex:
    """A compiled regex with the fast paths its parsed form allows (none without one)."""
    whole = (
        root is not None
        and _is_any_star(root)
        and (len(names) == 1 or (len(names) == 2 and isinstance(root, _Group) and root.index == 1))
    )
    if whole:
        return _Regex(pattern, names, _always, True, None, whole)
    if shape is None:
        return _Regex(
            pattern, names, lambda v: pattern.fullmatch(v) is not None, False, None, whole
        )
    only_exact = not (shape.prefixes or shape.suffixes or shape.infixes)
    return _Regex(pattern, names, shape.matcher(), True, shape.exact if only_exact else None, whole)


@lru_cache(maxsize=1024)
def _compile_regex(source: str) -> _Regex:
    """Translate a Prometheus relabel regex (anchored, RE2) and compile it once."""
    parser = _Parser(source)
    try:
        root = parser.parse()
        pattern = re.compile(_emit(root), re.DOTALL)
        shape = _literal_shape(root)
    except RecursionError:
        raise RegexNotSupportedError(f"invalid regex {source!r}: nests too deeply") from None
    except re.error as exc:
        raise RegexNotSupportedError(
            f"regex {source!r} is valid RE2 but Python's re cannot compile it: {exc}"
        ) from None
    return _finish(pattern, tuple(parser.group_names), root, shape)


# --------------------------------------------------------------------------
# The same regexes run by RE2 itself (google-re2): linear time in the input.
# --------------------------------------------------------------------------

# ``\C`` (any byte) is C++ RE2 only: Go refuses it, and it can split a character.
_ANY_BYTE = re.compile(r"(?<!\\)(?:\\\\)*\\C")


class _Re2Pattern:
    """A compiled RE2 regex matched against ``str``; a string that has no UTF-8 form
    (a lone surrogate, which no protobuf or JSON decoder yields) never matches."""

    __slots__ = ("_regexp",)

    def __init__(self, regexp: re2._Regexp[str]) -> None:
        self._regexp = regexp

    def fullmatch(self, text: str, /) -> _Groups | None:
        try:
            return self._regexp.fullmatch(text)
        except UnicodeEncodeError:
            return None


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # errors become RegexNotSupportedError, not stderr lines
    return options


@lru_cache(maxsize=1024)
def _compile_regex_re2(source: str) -> _Regex:
    """Compile a Prometheus relabel regex with RE2, anchored as ``^(?s:REGEX)$``.

    RE2 matches in time linear in the input whatever the regex. Literal-shaped regexes
    keep their fast paths (found by this module's parser, which knows RE2 syntax; a
    regex it cannot translate, such as ``\\pL``, simply has none). Refused: what RE2
    refuses, an unbalanced ``)`` (Prometheus would splice it into its anchoring), and
    ``\\C``.
    """
    options = _re2_options()
    if _ANY_BYTE.search(source):
        raise RegexNotSupportedError(
            f"invalid regex {source!r}: \\C (any byte) is not RE2 as Go has it"
        )
    try:
        re2.compile(source, options)  # alone: an unbalanced ) is an error here
        regexp = re2.compile(f"^(?s:{source})$", options)
    except re2.error as exc:
        reason = (
            exc.args[0].decode(errors="replace")
            if exc.args and isinstance(exc.args[0], bytes)
            else str(exc)
        )
        raise RegexNotSupportedError(f"invalid regex {source!r}: {reason}") from None
    except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8
        raise RegexNotSupportedError(
            f"invalid regex {source!r}: a lone surrogate has no UTF-8 form"
        ) from None
    root: _Node | None = None
    shape: _Shape | None = None
    parser = _Parser(source)
    try:
        root = parser.parse()
        shape = _literal_shape(root)
        names = tuple(parser.group_names)
    except (RegexNotSupportedError, RecursionError):
        root = shape = None
        names_list = [""] * (regexp.groups + 1)
        for name, index in regexp.groupindex.items():
            names_list[index] = name
        names = tuple(names_list)
    if len(names) != regexp.groups + 1:  # the parser and RE2 disagree: trust RE2 alone
        raise RegexNotSupportedError(f"invalid regex {source!r}: its groups are ambiguous")
    return _finish(_Re2Pattern(regexp), names, root, shape)


# --------------------------------------------------------------------------
# Go's regexp.Expand for ``$1``, ``${1}``, ``$name``, ``${name}`` and ``$$``.
# --------------------------------------------------------------------------


class _Groups(Protocol):
    def __getitem__(self, index: int, /) -> str | None: ...


_Expander: TypeAlias = Callable[[_Groups], str]
_TemplatePart: TypeAlias = str | tuple[int, ...]  # literal, or group candidates


def _template_parts(template: str, group_names: Sequence[str]) -> list[_TemplatePart]:
    parts: list[_TemplatePart] = []
    literal: list[str] = []
    i, n = 0, len(template)
    while True:
        j = template.find("$", i)
        if j < 0:
            literal.append(template[i:])
            break
        literal.append(template[i:j])
        i = j + 1
        if template.startswith("$", i):
            literal.append("$")
            i += 1
            continue
        brace = template.startswith("{", i)
        k = start = i + brace
        while k < n and (template[k].isalpha() or template[k].isdecimal() or template[k] == "_"):
            k += 1
        name = template[start:k]
        if not name or (brace and not template.startswith("}", k)):
            literal.append("$")  # malformed: the $ is plain text
            continue
        i = k + brace
        num = -1
        if name.isascii() and name.isdigit() and (name == "0" or name[0] != "0"):
            num = int(name) if len(name) <= 9 else -1
        if literal:
            parts.append("".join(literal))
            literal = []
        if num >= 0:
            parts.append((num,) if num < len(group_names) else ())
        else:
            parts.append(tuple(g for g, gname in enumerate(group_names) if gname == name))
    if "".join(literal):
        parts.append("".join(literal))
    return [p for p in parts if p != "" and p != ()]


def _compile_template(template: str, group_names: Sequence[str]) -> _Expander | str:
    """A constant string when the template refers to no group, else an expander."""
    parts = _template_parts(template, group_names)
    if not any(isinstance(p, tuple) for p in parts):
        return "".join(p for p in parts if isinstance(p, str))
    if len(parts) == 1 and isinstance(parts[0], tuple) and len(parts[0]) == 1:
        index = parts[0][0]
        return lambda groups: groups[index] or ""

    def expand(groups: _Groups) -> str:
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            for index in part:
                value = groups[index]
                if value is not None:
                    out.append(value)
                    break
        return "".join(out)

    return expand


# --------------------------------------------------------------------------
# Go's strings.ToLower / ToUpper: one rune to one rune (simple case mapping).
# --------------------------------------------------------------------------


def _lower_rune(c: str) -> str:
    low = c.lower()
    if len(low) == 1:
        return low
    return "i" if c == "\u0130" else c  # only U+0130 lowers to two code points


def _upper_rune(c: str) -> str:
    up = c.upper()
    if len(up) == 1:
        return up
    title = c.title()  # e.g. U+1F80 -> U+1F88, where the simple mapping exists
    return title if len(title) == 1 else c


def _go_case(rune: Callable[[str], str], ascii_case: Callable[[str], str]) -> Callable[[str], str]:
    memo: dict[str, str] = {}

    def convert(value: str) -> str:
        if value.isascii():
            return ascii_case(value)
        out = []
        for c in value:
            mapped = memo.get(c)
            if mapped is None:
                mapped = memo[c] = rune(c)
            out.append(mapped)
        return "".join(out)

    return convert


_go_lower = _go_case(_lower_rune, str.lower)
_go_upper = _go_case(_upper_rune, str.upper)
