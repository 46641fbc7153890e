"""``ferryman worker NAME [--retry-lane]``: one function per process (the container
entrypoint); with ``--retry-lane``, the process retries that function's lane instead of
consuming its topic.

Exit codes: 0 after a clean stop, 2 when the configuration is invalid (a Kafka
password file or certificate that cannot be read included), 1 when the function cannot
start (Kafka refused its certificate or login; its
:meth:`~workers.function.Handler.start` refused for good, failed unexpectedly, or found
its backend unreachable for :data:`START_PATIENCE_S`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import ValidationError

from ferryman.errors import ConfigError, KafkaStartError, format_errors
from ferryman.http import serve
from ferryman.kafkacheck import check_kafka
from ferryman.lineage import LineageExporter
from ferryman.telemetry import Registry

from .errors import DeliveryError, Permanent
from .function import Context, FunctionSpec, Handler
from .runtime import Runtime
from .settings import WorkerSettings, load_settings

__all__ = ["START_PATIENCE_S", "prepare", "run_retry_worker", "run_worker", "start_handler"]

log = logging.getLogger("ferryman.worker")


#: Looks a function up by name (the CLI passes ``functions.registry.load``); raises
#: KeyError naming the known functions.
Lookup = Callable[[str], FunctionSpec[Any]]


def prepare(
    lookup: Lookup, name: str, config_path: Path | None, **overrides: Any
) -> tuple[WorkerSettings, FunctionSpec[Any], Any]:
    """Load and validate everything; raises ConfigError listing every problem."""
    try:
        spec = lookup(name)
    except KeyError as exc:
        raise ConfigError([f"function: {exc.args[0]}"]) from None
    errors: list[str] = []
    settings: WorkerSettings | None = None
    try:
        settings = load_settings(config_path, function=name, **overrides)
        raw_config = settings.config
    except ConfigError as exc:
        errors.extend(exc.errors)
        raw_config = _raw_section(config_path, "config")
    try:
        config = spec.config_model.model_validate(raw_config)
    except ValidationError as exc:
        errors.extend(format_errors(exc, prefix="config"))
    if settings is not None and spec.kind == "transform" and not settings.kafka.output_topic:
        # Caught here, not when the first output is produced: after start-up a worker
        # routes what it cannot handle and keeps running.
        errors.append(f"kafka.output_topic: required by the transform {name}")
    if errors or settings is None:
        raise ConfigError(errors)
    return settings, spec, config


#: How long a worker keeps trying to start while its backend is unreachable or busy
#: (DeliveryError, httpx.TransportError), with backoff from 1 s doubling up to 30 s,
#: before it exits 1 and leaves the restart to its supervisor. Nothing is consumed yet
#: and no signal handler is installed, so a SIGTERM during the wait ends the process.
START_PATIENCE_S = 300.0
_FIRST_DELAY_S = 1.0
_MAX_DELAY_S = 30.0


def start_handler(
    handler: Handler,
    name: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    patience_s: float = START_PATIENCE_S,
) -> bool:
    """Call ``handler.start()``; True once it returned.

    A Permanent error (start can never succeed as configured) and any unexpected
    exception (a bug) are logged and give False at once. A transient one — the backend
    unreachable (httpx.TransportError) or busy (DeliveryError) — is tried again with
    backoff for up to ``patience_s`` seconds, then gives False.
    """
    deadline = clock() + patience_s
    delay = _FIRST_DELAY_S
    attempt = 1
    while True:
        try:
            handler.start()
            return True
        except Permanent as exc:
            log.error("worker %s cannot start: %s", name, exc.reason)
            return False
        except (DeliveryError, httpx.TransportError) as exc:
            if clock() + delay > deadline:
                log.error(
                    "worker %s cannot start: its backend still fails after %d "
                    "attempts in %.0fs: %s",
                    name,
                    attempt,
                    patience_s,
                    exc,
                )
                return False
            log.warning(
                "worker %s cannot start yet (attempt %d): %s; trying again in %.0fs",
                name,
                attempt,
                exc,
                delay,
            )
            sleep(delay)
            delay = min(delay * 2, _MAX_DELAY_S)
            attempt += 1
        except Exception:
            log.exception("worker %s cannot start: its start hook failed", name)
            return False


def check_kafka_access(settings: WorkerSettings) -> None:
    """Read the Kafka credentials and log in once (see :mod:`ferryman.kafkacheck`):
    ConfigError when they cannot be read, KafkaStartError when Kafka refuses them."""
    check_kafka(settings.kafka.bootstrap_servers, settings.kafka.credentials())


def _raw_section(path: Path | None, key: str) -> Any:
    """The section as written in the file, to report its errors alongside the others."""
    if path is None or not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return {}
    return data.get(key, {}) if isinstance(data, dict) else {}


def _context(name: str, registry: Registry) -> Context:
    return Context(
        function=name,
        http_client=lambda **kw: httpx.Client(**kw),
        registry=registry,
        log=logging.getLogger(f"ferryman.function.{name}"),
    )


def _lineage(settings: WorkerSettings, registry: Registry) -> LineageExporter | None:
    """The exporter of this worker's batch lineage; None when ``lineage.enabled`` is off."""
    if not settings.lineage.enabled:
        return None
    return LineageExporter(
        settings.lineage,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        registry=registry,
        resource={"service.name": f"ferryman-worker-{settings.function}"},
        credentials=settings.kafka.credentials(),
    )


def run_worker(lookup: Lookup, name: str, config_path: Path | None, **overrides: Any) -> int:
    started = time.monotonic()
    try:
        settings, spec, config = prepare(lookup, name, config_path, **overrides)
        check_kafka_access(settings)
    except ConfigError as exc:
        log.error("worker %s cannot start: %s", name, exc)
        return 2
    except KafkaStartError as exc:
        log.error("worker %s cannot start: %s", name, exc)
        return 1
    registry = Registry()
    handler = spec.create(config, _context(name, registry))
    if not start_handler(handler, name):
        handler.close()
        return 1
    runtime = Runtime(settings, handler, registry, lineage=_lineage(settings, registry))
    runtime.install_signal_handlers()
    server = serve(
        settings.http.listen,
        registry,
        {
            "/healthz": lambda: time.monotonic() - runtime.last_loop < 60,
            "/readyz": lambda: runtime.ready,
        },
    )
    lane = f"; retry lane {runtime.lane.describe()}" if runtime.lane is not None else ""
    log.info(
        "worker %s consuming %s as group %s%s; http on %s:%d; started in %.2fs",
        name,
        settings.kafka.input_topic,
        settings.group_id,
        lane,
        *server.server_address[:2],
        time.monotonic() - started,
    )
    try:
        runtime.run()
    finally:
        server.shutdown()
    return 0


def run_retry_worker(lookup: Lookup, name: str, config_path: Path | None, **overrides: Any) -> int:
    """Retry function ``name``'s lane until SIGTERM (exit 2 when the settings are bad or
    have no ``retry_lane`` section, 1 when the function cannot start)."""
    from .retry_worker import RetryWorker

    try:
        settings, spec, config = prepare(lookup, name, config_path, **overrides)
        if settings.retry_lane is None:
            raise ConfigError(["retry_lane: required by --retry-lane"])
        check_kafka_access(settings)
    except ConfigError as exc:
        log.error("retry worker %s cannot start: %s", name, exc)
        return 2
    except KafkaStartError as exc:
        log.error("retry worker %s cannot start: %s", name, exc)
        return 1
    registry = Registry()
    handler = spec.create(config, _context(name, registry))
    if not start_handler(handler, name):
        handler.close()
        return 1
    worker = RetryWorker(settings, handler, registry)
    worker.install_signal_handlers()
    server = serve(settings.http.listen, registry, worker.checks())
    log.info(
        "retry worker %s on lane %s; http on %s:%d",
        name,
        worker.lane.describe(),
        *server.server_address[:2],
    )
    try:
        worker.run()
    finally:
        server.shutdown()
    return 0
