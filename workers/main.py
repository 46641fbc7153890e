"""``ferryman worker NAME [--retry-lane]``: one function per process (the container
entrypoint); with ``--retry-lane``, the process retries that function's lane instead of
consuming its topic."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import ValidationError

from ferryman.errors import ConfigError, format_errors
from ferryman.http import serve
from ferryman.telemetry import Registry

from .function import Context, FunctionSpec
from .runtime import Runtime
from .settings import WorkerSettings, load_settings

__all__ = ["prepare", "run_retry_worker", "run_worker"]

log = logging.getLogger("ferryman.worker")


#: Looks a function up by name (the CLI passes ``functions.registry.load``); raises
#: KeyError naming the known functions.
Lookup = Callable[[str], FunctionSpec[Any]]


def prepare(lookup: Lookup, name: str, config_path: Path | None,
            **overrides: Any) -> tuple[WorkerSettings, FunctionSpec[Any], Any]:
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
    if errors or settings is None:
        raise ConfigError(errors)
    return settings, spec, config


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


def run_worker(lookup: Lookup, name: str, config_path: Path | None, **overrides: Any) -> int:
    started = time.monotonic()
    try:
        settings, spec, config = prepare(lookup, name, config_path, **overrides)
    except ConfigError as exc:
        log.error("worker %s cannot start: %s", name, exc)
        return 2
    registry = Registry()
    handler = spec.create(config, _context(name, registry))
    runtime = Runtime(settings, handler, registry)
    runtime.install_signal_handlers()
    server = serve(settings.http.listen, registry, {
        "/healthz": lambda: time.monotonic() - runtime.last_loop < 60,
        "/readyz": lambda: runtime.ready,
    })
    lane = f"; retry lane {runtime.lane.describe()}" if runtime.lane is not None else ""
    log.info("worker %s consuming %s as group %s%s; http on %s:%d; started in %.2fs",
             name, settings.kafka.input_topic, settings.group_id, lane,
             *server.server_address[:2], time.monotonic() - started)
    try:
        runtime.run()
    finally:
        server.shutdown()
    return 0


def run_retry_worker(lookup: Lookup, name: str, config_path: Path | None,
                     **overrides: Any) -> int:
    """Retry function ``name``'s lane until SIGTERM (exit 2 when the settings are bad or
    have no ``retry_lane`` section)."""
    from .retry_worker import RetryWorker

    try:
        settings, spec, config = prepare(lookup, name, config_path, **overrides)
        if settings.retry_lane is None:
            raise ConfigError(["retry_lane: required by --retry-lane"])
    except ConfigError as exc:
        log.error("retry worker %s cannot start: %s", name, exc)
        return 2
    registry = Registry()
    handler = spec.create(config, _context(name, registry))
    worker = RetryWorker(settings, handler, registry)
    worker.install_signal_handlers()
    server = serve(settings.http.listen, registry, worker.checks())
    log.info("retry worker %s on lane %s; http on %s:%d", name, worker.lane.describe(),
             *server.server_address[:2])
    try:
        worker.run()
    finally:
        server.shutdown()
    return 0
