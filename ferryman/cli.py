"""The ``ferryman`` command line.

Subcommands import their modules lazily so that ``ferryman worker`` starts fast
(scale-from-zero) and ``--help`` costs nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _stack(args: argparse.Namespace) -> int:
    from infra import local

    try:
        if args.action == "up":
            local.up(args.services or None)
            print(local.format_status(local.status()))
        elif args.action == "down":
            local.down(args.services or None)
        else:
            rows = local.status()
            print(local.format_status(rows))
            wanted = [r for r in rows if r.name in (args.services or [r.name for r in rows])]
            return 0 if all(r.healthy for r in wanted if r.name != "rsyslog") else 1
    except local.StackError as exc:
        print(f"ferryman stack {args.action}: {exc.service} failed\n"
              f"  command: {exc.command}\n{exc.detail}", file=sys.stderr)
        return 1
    return 0


def _up(args: argparse.Namespace) -> int:
    # For now the local pipeline is the stack itself; shippers and functions join it
    # as they are built.
    return _stack(argparse.Namespace(action="up", services=None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferryman", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole local pipeline on this machine")
    up.set_defaults(func=_up)

    stack = sub.add_parser("stack", help="local real services (Kafka, Elasticsearch, ...)")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("services", nargs="*", help="limit to these services (default: all)")
    stack.set_defaults(func=_stack)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
