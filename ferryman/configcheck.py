"""``ferryman check``: validate configuration files offline, as ``promtool check config``.

A file's kind is, in this order of precedence:

1. the one given on the command line (``--kind logs``, ``--kind worker:loki``);
2. a comment line in the file, ``# ferryman-kind: KIND`` (a comment, because every
   loader rejects keys it does not know, so a ``kind:`` key would break the real run);
3. detected from its keys: the dotted key paths that only one kind's model has
   (``positions``, ``scrape_configs.*.pipeline_stages``, ``ferryman.buffer``,
   ``kafka.input_topic``, ...) vote, and the kind with most votes wins;
4. when no key tells (a bare Prometheus file with static targets, say), the kind whose
   loader alone accepts the file.

A kind with an argument (``worker:NAME``) takes it from ``--kind``, the comment, or the
file's own ``argument_key`` (a worker's ``function:``). The loaders are injected by the
composition root (:mod:`ferryman.cli`), so this module imports nothing above
``ferryman/``; nothing here opens a socket.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ferryman.errors import ConfigError

__all__ = ["HINT", "Kind", "Result", "check_file", "model_paths", "parse_kind"]

#: The comment that names a file's kind: ``# ferryman-kind: worker:loki``.
HINT = "ferryman-kind"
_HINT_LINE = re.compile(rf"^[ \t]*#[ \t]*{HINT}:[ \t]*(\S+)[ \t]*$", re.MULTILINE)

#: Validates ``path`` as this kind, with its argument (None when not given); raises
#: ConfigError listing every problem by dotted path.
Validate = Callable[[Path, "str | None"], None]


@dataclass(frozen=True)
class Kind:
    """One kind of configuration file ``ferryman check`` knows.

    ``models`` give the key paths that detect it; ``also`` adds paths no model has
    (sections a loader drops, a label such as ``__path__``). ``argument_key`` names a
    top-level key that may hold the argument (default: none).
    """

    name: str
    validate: Validate
    models: tuple[type[BaseModel], ...] = ()
    also: frozenset[str] = frozenset()
    argument_key: str | None = None


@dataclass(frozen=True)
class Result:
    """What checking one file found: its kind as written (``worker:loki``), when told,
    and every error (empty: the file is valid)."""

    path: Path
    kind: str | None
    errors: list[str] = field(default_factory=list)


def parse_kind(text: str, kinds: Mapping[str, Kind]) -> tuple[str, str | None]:
    """``worker:loki`` -> (``worker``, ``loki``); raises ValueError for an unknown kind."""
    name, _, argument = text.partition(":")
    if name not in kinds:
        raise ValueError(f"unknown kind {text!r}; known: {_known(kinds)}")
    return name, argument or None


def check_file(path: Path, kinds: Mapping[str, Kind], kind: str | None = None) -> Result:
    """Check one file; ``kind`` (``logs``, ``worker:loki``) skips the detection."""
    try:
        text = path.read_text()
    except (OSError, ValueError) as exc:
        return Result(path, kind, [f"<file>: {exc}"])
    if kind is None:
        hint = _HINT_LINE.search(text)
        kind = hint.group(1) if hint else None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if kind is None:
            return Result(path, None, [f"<file>: {exc}"])
        data = None  # the loader reports it in its own words
    if kind is None:
        kind, errors = _detect(path, data, kinds)
        if kind is None:
            return Result(path, None, errors)
    try:
        name, argument = parse_kind(kind, kinds)
    except ValueError as exc:
        return Result(path, kind, [f"<kind>: {exc}"])
    chosen = kinds[name]
    if argument is None and chosen.argument_key and isinstance(data, dict):
        found = data.get(chosen.argument_key)
        argument = found if isinstance(found, str) else None
    written = f"{name}:{argument}" if argument else name
    try:
        chosen.validate(path, argument)
    except ConfigError as exc:
        return Result(path, written, list(exc.errors))
    return Result(path, written, [])


def _detect(path: Path, data: Any, kinds: Mapping[str, Kind]) -> tuple[str | None, list[str]]:
    if not isinstance(data, dict):
        return None, ["<root>: expected a mapping"]
    present = set(_data_paths(data))
    own = {name: _signature(kind) for name, kind in kinds.items()}
    votes = {
        name: len(present & (paths - set().union(*(p for n, p in own.items() if n != name))))
        for name, paths in own.items()
    }
    best = max(votes.values(), default=0)
    leaders = [name for name, count in votes.items() if count == best]
    if best > 0 and len(leaders) == 1:
        return leaders[0], []
    # No key tells them apart: the kind whose loader alone accepts the file. A kind
    # that needs an argument it cannot find is no candidate.
    accepting = [
        name for name in leaders if not kinds[name].argument_key and _accepts(kinds[name], path)
    ]
    if len(accepting) == 1:
        return accepting[0], []
    return None, [
        f"<kind>: cannot tell which kind of configuration this is ({_known(kinds)}); "
        f"give --kind KIND or a '# {HINT}: KIND' line in the file"
    ]


def _accepts(kind: Kind, path: Path) -> bool:
    try:
        kind.validate(path, None)
    except ConfigError:
        return False
    return True


def _known(kinds: Mapping[str, Kind]) -> str:
    return ", ".join(f"{name}:NAME" if k.argument_key else name for name, k in kinds.items())


def _signature(kind: Kind) -> set[str]:
    paths = set(kind.also)
    for model in kind.models:
        paths |= model_paths(model)
    return paths


def model_paths(
    model: type[BaseModel], prefix: str = "", seen: frozenset[type[BaseModel]] = frozenset()
) -> set[str]:
    """Every dotted key path ``model`` accepts (by alias), ``*`` standing for a list
    item: ``scrape_configs``, ``scrape_configs.*.job_name``, ... Free-form mappings
    (``dict[str, ...]``) end a path: their keys are the user's. A model that holds
    itself (stages inside a stage) is walked once on each path."""
    paths: set[str] = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{info.alias or name}"
        paths.add(path)
        for sub, suffix in _nested_models(info.annotation):
            if sub not in seen and sub is not model:
                paths |= model_paths(sub, f"{path}{suffix}.", seen | {model})
    return paths


def _nested_models(annotation: Any, suffix: str = "") -> Iterator[tuple[type[BaseModel], str]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, suffix
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _nested_models(args[0], suffix)
        return
    if origin in (dict, Mapping):
        return
    item = ".*" if origin in (tuple, list, set, frozenset) else ""
    for arg in args:
        if arg is not Ellipsis:
            yield from _nested_models(arg, suffix + item)


def _data_paths(data: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            yield path
            yield from _data_paths(value, f"{path}.")
    elif isinstance(data, list):
        for item in data:
            yield from _data_paths(item, f"{prefix}*.")
