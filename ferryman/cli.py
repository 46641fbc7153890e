"""The ``ferryman`` command line.

Subcommands import their modules lazily so that ``ferryman worker`` starts fast
(scale-from-zero) and ``--help`` costs nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ferryman.configcheck import Kind as ConfigKind

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
        print(
            f"ferryman stack {args.action}: {exc.service} failed\n"
            f"  command: {exc.command}\n{exc.detail}",
            file=sys.stderr,
        )
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
    print(
        "\nSeries arrive within a minute: Prometheus http://127.0.0.1:9090 "
        '(try up{cluster="local"}), VictoriaMetrics http://127.0.0.1:8428, '
        "Elasticsearch index metrics-ferryman-*, InfluxDB database 'ferryman'."
    )
    print(gateway_hint())
    from infra.local.pipelinestatus import once, pipeline_targets

    print(f"\n{once(pipeline_targets())}\nLive view, refreshed every second: ferryman status")
    return 0


def _status(args: argparse.Namespace) -> int:
    import contextlib

    from infra.local.pipelinestatus import once, pipeline_targets
    from infra.local.statusview import watch

    targets = args.target or pipeline_targets()
    if args.once:
        try:
            print(once(targets, interval=args.interval), flush=True)
        except KeyboardInterrupt:  # stopped while sampling: no table, no traceback
            return 130
        return 0
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the live view ends
        watch(targets, interval=args.interval)
    return 0


def _status_target(text: str) -> Any:
    from infra.local.pipelinestatus import parse_target

    try:
        return parse_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds between 0.1 and 3600")
    return value


def gateway_hint() -> str:
    """How to write to the local gateway as its demo tenant (the token is read from the
    stack's home, where ``ferryman up`` made it)."""
    from infra.local import default_layout
    from infra.local.pipeline import (
        GATEWAY_CLUSTER,
        GATEWAY_GRPC_PORT,
        GATEWAY_PORT,
        GATEWAY_TENANT,
        gateway_token_file,
    )

    path = gateway_token_file(default_layout())
    token = path.read_text().strip() if path.exists() else "(not made yet)"
    url = f"http://127.0.0.1:{GATEWAY_PORT}"
    return (
        f"\nGateway {url}: remote write {url}/api/v1/write, Loki push "
        f"{url}/loki/api/v1/push, OTLP/HTTP {url}/v1/traces, OTLP/gRPC 127.0.0.1:"
        f"{GATEWAY_GRPC_PORT}.\n"
        f"  tenant {GATEWAY_TENANT}, cluster label {GATEWAY_CLUSTER!r}, bearer token {token}\n"
        f"  (kept in {path}). Try:\n"
        f"  curl -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
        f'{url}/loki/api/v1/push -d \'{{"streams": [{{"stream": {{"cluster": '
        f'"{GATEWAY_CLUSTER}", "job": "curl"}}, "values": '
        f'[["\'$(date +%s%N)\'", "hello"]]}}]}}\''
    )


def _worker(args: argparse.Namespace) -> int:
    from functions.registry import load
    from workers.main import run_retry_worker, run_worker

    _logging(args.log_level, args.log_format)
    if args.retry_lane:
        return run_retry_worker(load, args.name, args.config)
    return run_worker(load, args.name, args.config)


def _logging(level: str, fmt: str | None = None) -> None:
    import logging

    from ferryman import logformat
    from ferryman.errors import ConfigError

    try:
        logformat.configure(level, logformat.resolve(fmt))
    except ConfigError as exc:
        print(f"ferryman: {exc.errors[0]}", file=sys.stderr)
        raise SystemExit(2) from None
    # One line per HTTP request or per fetch would drown the process's own sentences.
    for noisy in ("httpx", "httpcore", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def _edge(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from ferryman.errors import ConfigError, KafkaStartError

    _logging(args.log_level, args.log_format)
    log = logging.getLogger("ferryman.edge")
    if args.kind == "metrics":
        from edge.metrics.shipper import MetricsShipper

        try:
            shipper = MetricsShipper(args.config)
        except ConfigError as exc:
            log.error("cannot start: %s", exc)
            return 2
        try:
            asyncio.run(shipper.run())
        except KafkaStartError as exc:
            log.error("cannot start: %s", exc)
            return 1
        return 0
    if args.kind == "traces":
        from edge.traces.receiver import TracesReceiver

        try:
            receiver = TracesReceiver(args.config)
        except ConfigError as exc:
            log.error("cannot start: %s", exc)
            return 2
        try:
            receiver.run()
        except KafkaStartError as exc:
            log.error("cannot start: %s", exc)
            return 1
        except OSError as exc:
            log.error("cannot start: %s", exc)
            return 1
        return 0
    from edge.logs.shipper import LogShipper

    try:
        log_shipper = LogShipper(args.config, expand_env=args.expand_env)
    except (ConfigError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    try:
        log_shipper.run()
    except KafkaStartError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


def _gateway(args: argparse.Namespace) -> int:
    import logging

    from ferryman.errors import ConfigError, KafkaStartError

    if args.action == "hash-password":
        import getpass
        import sys

        from edge.gateway.auth import hash_password, hash_token

        secret = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else ""
        if not secret:
            secret = getpass.getpass("secret: ")
        print(hash_token(secret) if args.token else hash_password(secret))
        return 0
    _logging(args.log_level, args.log_format)
    log = logging.getLogger("ferryman.gateway")
    if args.config is None:
        log.error("cannot start: --config FILE is required")
        return 2
    from edge.gateway.server import Gateway

    try:
        gateway = Gateway.from_file(args.config)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        return 2
    try:
        gateway.run()
    except (KafkaStartError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


def _go_bool(text: str) -> bool:
    """A boolean flag's value as Go's flag package (strconv.ParseBool) reads it."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true or false)")


def _functions(args: argparse.Namespace) -> int:
    from functions import registry

    for name in registry.names():
        spec = registry.load(name)
        print(f"{name:28} {spec.kind:10} {spec.summary}")
    return 0


def _dlq(args: argparse.Namespace) -> int:
    import os
    import re
    import signal
    import threading

    from ferryman.errors import ConfigError, KafkaStartError
    from ferryman.kafkacheck import check_kafka
    from ferryman.kafkaconfig import PLAINTEXT_CREDENTIALS
    from workers.dlq import ReplayError, ReplayOptions, Selection, parse_time, replay
    from workers.settings import load_settings

    _logging(args.log_level, args.log_format)
    topic = args.topic
    bootstrap = args.bootstrap_servers
    credentials = PLAINTEXT_CREDENTIALS
    if args.config is not None:
        try:
            settings = load_settings(args.config, function=args.function or "dlq-replay")
            credentials = settings.kafka.credentials()
        except ConfigError as exc:
            print(f"ferryman dlq replay: {exc}", file=sys.stderr)
            return 2
        topic = topic or settings.kafka.dead_letter_topic
        bootstrap = bootstrap or settings.kafka.bootstrap_servers
    if topic is None:
        print("ferryman dlq replay: give --topic or --config", file=sys.stderr)
        return 2
    try:
        selection = Selection(
            function=args.function,
            error=re.compile(args.error) if args.error else None,
            from_offset=args.from_offset,
            until_offset=args.until_offset,
            since_ms=parse_time(args.since) if args.since else None,
            until_ms=parse_time(args.until) if args.until else None,
        )
    except (re.error, ValueError) as exc:
        print(f"ferryman dlq replay: {exc}", file=sys.stderr)
        return 2
    options = ReplayOptions(
        topic=topic,
        bootstrap_servers=bootstrap
        or os.environ.get("FERRYMAN_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        selection=selection,
        to=args.to,
        group=args.group,
        dry_run=args.dry_run,
        limit=args.limit,
        show=args.show,
        credentials=credentials,
    )
    try:
        check_kafka(options.bootstrap_servers, credentials)
    except KafkaStartError as exc:
        print(f"ferryman dlq replay: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        summary = replay(options, stop=stop)
    except ReplayError as exc:
        print(f"ferryman dlq replay: {exc}", file=sys.stderr)
        return 1
    print(summary.render(options))
    return 3 if summary.interrupted else 0


def _check(args: argparse.Namespace) -> int:
    from ferryman.configcheck import check_file

    kinds = _config_kinds(expand_env=args.expand_env)
    failed = False
    for path in args.files:
        result = check_file(path, kinds, args.kind)
        if not result.errors:
            print(f"{path}: OK ({result.kind})", flush=True)
            continue
        failed = True
        told = f" ({result.kind})" if result.kind else ""
        count = len(result.errors)
        print(f"{path}: {count} error{'s' if count > 1 else ''}{told}", file=sys.stderr)
        for error in result.errors:
            print(f"  {error}", file=sys.stderr)
    return 1 if failed else 0


def _config_kinds(*, expand_env: bool = False) -> dict[str, ConfigKind]:
    """The kinds of file ``ferryman check`` knows, each with the loader its command
    runs at start-up (offline: nothing here connects to Kafka or Kubernetes)."""
    from edge.gateway.config import GatewayConfig
    from edge.gateway.config import load_config as load_gateway
    from edge.logs.config import EdgeLogsConfig
    from edge.logs.config import load_config as load_logs
    from edge.metrics.config import IGNORED_SECTIONS, EdgeMetricsConfig
    from edge.metrics.config import load_config as load_metrics
    from edge.traces.config import EdgeTracesConfig
    from edge.traces.config import load_config as load_traces
    from ferryman.configcheck import Kind
    from ferryman.errors import ConfigError
    from functions.registry import load
    from workers.main import prepare
    from workers.settings import WorkerSettings, load_settings

    def logs(path: Path, _: str | None) -> None:
        load_logs(path, expand_env=expand_env)

    def metrics(path: Path, _: str | None) -> None:
        load_metrics(path)

    def traces(path: Path, _: str | None) -> None:
        load_traces(path)

    def gateway(path: Path, _: str | None) -> None:
        load_gateway(path)

    def worker(path: Path, function: str | None) -> None:
        if function is not None:
            prepare(load, function, path)
            return
        errors = ["function: not named: give --kind worker:NAME or function: NAME in the file"]
        try:
            load_settings(path, function="-")
        except ConfigError as exc:
            errors.extend(exc.errors)
        raise ConfigError(errors)

    # Promtail's own top-level sections (its tracing is Prometheus's too: it tells nothing).
    promtail = {"server", "clients", "limits_config", "target_config", "options", "tracing"}
    return {
        "logs": Kind(
            "logs",
            logs,
            (EdgeLogsConfig,),
            frozenset({*promtail, "scrape_configs.*.static_configs.*.labels.__path__"}),
        ),
        "metrics": Kind(
            "metrics",
            metrics,
            (EdgeMetricsConfig,),
            frozenset(IGNORED_SECTIONS),
        ),
        "traces": Kind("traces", traces, (EdgeTracesConfig,)),
        "gateway": Kind("gateway", gateway, (GatewayConfig,)),
        "worker": Kind(
            "worker",
            worker,
            (WorkerSettings,),
            argument_key="function",
        ),
    }


class _Version(argparse.Action):
    """``--version``: read from package metadata only when asked (a worker's start stays
    fast), as ``ferryman_build_info`` reports it."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from ferryman.telemetry import version

        print(f"ferryman {version()}")
        parser.exit()


def _add_log_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=None,
        help="text lines, or one JSON object per line (time, level, logger, message, "
        "exception) for a log collector (default: $FERRYMAN_LOG_FORMAT, else text)",
    )


def _kind_argument(text: str) -> str:
    from ferryman.configcheck import parse_kind

    try:
        parse_kind(text, _config_kinds())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferryman", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser(
        "check",
        help="validate configuration files offline (exit 1 if any is invalid)",
        description="Validate edge logs, edge metrics, edge traces, gateway and worker "
        "configuration files as their commands do at start-up, without connecting to "
        "anything; print FILE: OK or every error by its dotted path; exit 1 if any file "
        "is invalid. Each file's kind is --kind, else a '# ferryman-kind: KIND' line in "
        "it, else told from its keys (a worker's function from its function: key).",
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.add_argument(
        "--kind",
        type=_kind_argument,
        metavar="KIND",
        help="logs, metrics, traces, gateway or worker:NAME for every FILE (default: each file's "
        "'# ferryman-kind:' line, else detected)",
    )
    check.add_argument(
        "--config.expand-env",
        "-config.expand-env",
        dest="expand_env",
        action="store_true",
        help="expand ${VAR} in logs files first, as ferryman edge logs does with this flag",
    )
    check.set_defaults(func=_check)

    up = sub.add_parser("up", help="run the whole local pipeline on this machine")
    up.set_defaults(func=_up)

    status = sub.add_parser(
        "status",
        help="live view of the local pipeline: records/s, lag, errors per process",
        description="Read every pipeline process's /metrics each --interval and show, per "
        "process: ready, records/s in and out, requests/s, consumer lag (or buffered "
        "bytes), errors, dead-letters, shipped and dropped (or refused) totals; a live "
        "table until Ctrl-C, or with --once one plain table from two reads an interval "
        "apart. The processes are those ferryman up started, or the --target ones.",
    )
    status.add_argument(
        "--once", action="store_true", help="print one plain table (two reads) and exit"
    )
    status.add_argument(
        "--interval",
        type=_interval,
        default=1.0,
        metavar="SECONDS",
        help="seconds between refreshes (default 1)",
    )
    status.add_argument(
        "--target",
        action="append",
        type=_status_target,
        metavar="NAME=URL",
        help="watch this process (base URL of its /metrics, kind told from its series) "
        "instead of the local pipeline; repeat for several",
    )
    status.set_defaults(func=_status)

    stack = sub.add_parser("stack", help="local real services (Kafka, Elasticsearch, ...)")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("services", nargs="*", help="limit to these services (default: all)")
    stack.set_defaults(func=_stack)

    worker = sub.add_parser("worker", help="run one function (container entrypoint)")
    worker.add_argument("name", help="registered function name (see: ferryman functions list)")
    worker.add_argument("--config", type=Path, default=None, help="YAML settings file")
    worker.add_argument(
        "--retry-lane",
        action="store_true",
        help="retry the records waiting in the function's retry lane "
        "(needs a retry_lane section) instead of consuming its topic",
    )
    worker.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    _add_log_format(worker)
    worker.set_defaults(func=_worker)

    edge = sub.add_parser("edge", help="edge shippers")
    kinds = edge.add_subparsers(dest="kind", required=True)
    metrics = kinds.add_parser(
        "metrics",
        help="scrape Prometheus targets into Kafka",
        description="Scrape the targets of a Prometheus configuration (with a ferryman: "
        "section) and produce their samples to Kafka as remote-write messages.",
    )
    metrics.add_argument(
        "--config",
        "--config.file",
        dest="config",
        type=Path,
        required=True,
        metavar="FILE",
        help="configuration file (--config.file as Prometheus names it)",
    )
    metrics.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    _add_log_format(metrics)
    logs = kinds.add_parser(
        "logs",
        help="tail files and journals into Kafka (replaces Promtail)",
        description="Tail files and systemd journals as a Promtail configuration (with a "
        "ferryman: section) says and produce their lines to Kafka as Loki push messages. "
        "Promtail's -config.file and -config.expand-env work as in Promtail "
        "(see docs/promtail-migration.md).",
    )
    logs.add_argument(
        "--config",
        "--config.file",
        "-config.file",
        dest="config",
        type=Path,
        required=True,
        metavar="FILE",
        help="configuration file (-config.file as Promtail names it)",
    )
    logs.add_argument(
        "--config.expand-env",
        "-config.expand-env",
        dest="expand_env",
        nargs="?",
        const=True,
        default=False,
        type=_go_bool,
        metavar="BOOL",
        help="replace ${VAR} and ${VAR:-default} in the configuration with environment "
        "variables before parsing it, as Promtail does (default: false; =true and =false "
        "are accepted, as in Promtail)",
    )
    logs.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    _add_log_format(logs)
    traces = kinds.add_parser(
        "traces",
        help="receive OTLP traces (gRPC 4317 / HTTP 4318) into Kafka",
        description="Receive OpenTelemetry traces over OTLP/gRPC (TraceService/Export) "
        "and OTLP/HTTP (POST /v1/traces, protobuf or JSON, gzip) and produce them to "
        "Kafka, one message per trace keyed by trace id; answer success only after "
        "Kafka acknowledged.",
    )
    traces.add_argument(
        "--config",
        dest="config",
        type=Path,
        required=True,
        metavar="FILE",
        help="configuration file",
    )
    traces.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    _add_log_format(traces)
    edge.set_defaults(func=_edge)

    gateway = sub.add_parser(
        "gateway",
        help="receive remote write, Loki push and OTLP from any agent, per tenant",
        description="Receive Prometheus remote write 1.0/2.0 (POST /api/v1/write), Loki "
        "push (POST /loki/api/v1/push) and OTLP/HTTP traces (POST /v1/traces) from "
        "authenticated tenants, and produce them to Kafka in the edge's formats; answer "
        "success only after Kafka acknowledged. 'hash-password' reads a secret from "
        "stdin and prints the hash a tenants file stores.",
    )
    gateway.add_argument(
        "action", nargs="?", default="run", choices=["run", "hash-password"], help="default run"
    )
    gateway.add_argument("--config", type=Path, metavar="FILE", help="configuration file")
    gateway.add_argument(
        "--token",
        action="store_true",
        help="hash-password: print the sha256 form for a bearer token (default: PBKDF2)",
    )
    gateway.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    _add_log_format(gateway)
    gateway.set_defaults(func=_gateway)

    dlq = sub.add_parser("dlq", help="dead-letter topics")
    dlq_actions = dlq.add_subparsers(dest="action", required=True)
    replay = dlq_actions.add_parser(
        "replay",
        help="re-inject dead-lettered records once their cause is fixed",
        description="Produce dead-lettered records back to their original topic (or --to), "
        "without the ferryman.error/function/source headers and with "
        "ferryman.replayed-from. Offsets of the replay's own consumer group are "
        "committed after Kafka acknowledged, so running the same command again "
        "resumes without duplicates. Exit 3 when interrupted.",
    )
    replay.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a worker's YAML settings: default --topic and Kafka (TLS and SASL included) from it",
    )
    replay.add_argument(
        "--topic", help="dead-letter topic (default: the config's kafka.dead_letter_topic)"
    )
    replay.add_argument(
        "--bootstrap-servers", help="Kafka (default: the config's, else 127.0.0.1:9092)"
    )
    replay.add_argument("--function", help="only records dead-lettered by this function")
    replay.add_argument(
        "--error", metavar="REGEX", help="only records whose ferryman.error matches REGEX"
    )
    replay.add_argument(
        "--from-offset", type=int, metavar="N", help="start at this offset (per partition)"
    )
    replay.add_argument(
        "--until-offset", type=int, metavar="N", help="stop before this offset (per partition)"
    )
    replay.add_argument(
        "--since",
        metavar="TIME",
        help="only records dead-lettered at or after TIME "
        "(2026-11-25T20:00:00Z, or 2h for two hours ago)",
    )
    replay.add_argument("--until", metavar="TIME", help="...and before TIME")
    replay.add_argument(
        "--to", metavar="TOPIC", help="produce here instead of each record's original topic"
    )
    replay.add_argument(
        "--group", help="consumer group (default: derived from the topic, the selection and --to)"
    )
    replay.add_argument("--limit", type=int, metavar="N", help="stop after N records")
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be replayed; produce and commit nothing",
    )
    replay.add_argument(
        "--show",
        type=int,
        default=5,
        metavar="N",
        help="list the first N selected records (default 5)",
    )
    replay.add_argument("--log-level", default="warning", choices=["debug", "info", "warning"])
    _add_log_format(replay)
    replay.set_defaults(func=_dlq)

    functions = sub.add_parser("functions", help="registered functions")
    functions.add_argument("action", choices=["list"])
    functions.set_defaults(func=_functions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
