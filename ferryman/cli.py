"""The ``ferryman`` command line.

Subcommands import their modules lazily so that ``ferryman worker`` starts fast
(scale-from-zero) and ``--help`` costs nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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
            return 0 if all(r.healthy for r in wanted if r.autostart) else 1
    except KeyError as exc:
        print(f"ferryman stack {args.action}: {exc.args[0]}", file=sys.stderr)
        return 2
    except local.StackError as exc:
        print(f"ferryman stack {args.action}: {exc.service} failed\n"
              f"  command: {exc.command}\n{exc.detail}", file=sys.stderr)
        return 1
    return 0


def _up(args: argparse.Namespace) -> int:
    from infra import local

    try:
        local.up(pipeline=True)
    except (local.StackError, KeyError) as exc:
        print(f"ferryman up: {exc}", file=sys.stderr)
        return 1
    print(local.format_status(local.status()))
    print("\nSeries arrive within a minute: Prometheus http://127.0.0.1:9090 "
          "(try up{cluster=\"local\"}), VictoriaMetrics http://127.0.0.1:8428, "
          "Elasticsearch index metrics-ferryman-*, InfluxDB database 'ferryman'.")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from workers.main import run_worker

    _logging(args.log_level)
    return run_worker(args.name, args.config)


def _logging(level: str) -> None:
    import logging

    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # One line per HTTP request or per fetch would drown the process's own sentences.
    for noisy in ("httpx", "httpcore", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def _edge(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from workers.errors import ConfigError

    _logging(args.log_level)
    if args.kind == "metrics":
        from edge.metrics.shipper import MetricsShipper

        try:
            shipper = MetricsShipper(args.config)
        except ConfigError as exc:
            logging.getLogger("ferryman.edge").error("cannot start: %s", exc)
            return 2
        asyncio.run(shipper.run())
        return 0
    from edge.logs.shipper import LogShipper

    try:
        log_shipper = LogShipper(args.config)
    except (ConfigError, ValueError) as exc:
        logging.getLogger("ferryman.edge").error("cannot start: %s", exc)
        return 2
    log_shipper.run()
    return 0


def _functions(args: argparse.Namespace) -> int:
    from functions import registry

    for name in registry.names():
        spec = registry.load(name)
        print(f"{name:28} {spec.kind:10} {spec.summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferryman", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole local pipeline on this machine")
    up.set_defaults(func=_up)

    stack = sub.add_parser("stack", help="local real services (Kafka, Elasticsearch, ...)")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("services", nargs="*", help="limit to these services (default: all)")
    stack.set_defaults(func=_stack)

    worker = sub.add_parser("worker", help="run one function (container entrypoint)")
    worker.add_argument("name", help="registered function name (see: ferryman functions list)")
    worker.add_argument("--config", type=Path, default=None, help="YAML settings file")
    worker.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    worker.set_defaults(func=_worker)

    edge = sub.add_parser("edge", help="edge shippers")
    edge.add_argument("kind", choices=["metrics", "logs"])
    edge.add_argument("--config", type=Path, required=True, help="configuration file")
    edge.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    edge.set_defaults(func=_edge)

    functions = sub.add_parser("functions", help="registered functions")
    functions.add_argument("action", choices=["list"])
    functions.set_defaults(func=_functions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
