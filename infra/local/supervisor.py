"""``ferryman stack up|down|status``: install, start, probe and stop the local services.

State (pids, endpoints, versions, measured start times) is kept in
``<home>/run/stack.json`` so tests and ``ferryman up`` find the endpoints, and a
second ``up`` only probes what already runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .catalogue import SERVICES
from .errors import StackError, StartError
from .install import tail
from .paths import Layout, default_layout
from .procs import alive, group_rss_bytes, spawn, start_ticks, stop_group
from .service import Service

__all__ = ["ServiceStatus", "down", "load_state", "status", "up"]

Say = Callable[[str], None]


def load_state(layout: Layout | None = None) -> dict[str, Any]:
    """The state file's content: ``{"services": {name: {...}}}`` (empty when absent)."""
    layout = layout or default_layout()
    try:
        state: dict[str, Any] = json.loads(layout.state_file.read_text())
    except (OSError, ValueError):
        state = {}
    state.setdefault("services", {})
    return state


def _save_state(layout: Layout, state: dict[str, Any]) -> None:
    layout.run.mkdir(parents=True, exist_ok=True)
    tmp = layout.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(layout.state_file)


def _everything() -> list[Service]:
    from .pipeline import PIPELINE

    return [*SERVICES, *PIPELINE]


def _select(names: Iterable[str] | None, pipeline: bool = False) -> list[Service]:
    if names:
        known = {s.name: s for s in _everything()}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise KeyError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return [known[n] for n in names]
    return _everything() if pipeline else list(SERVICES)


#: Installed by ``stack up`` (and so by ``./task test``) for tests and benchmarks only:
#: ``ferryman up`` leaves them out, so a first ``./task up`` waits for what it runs.
TEST_TOOLS = frozenset(
    {"rw2client", "rsyslog", "kube-apiserver", "kube-tools", "kube-state-metrics"}
)

#: Seconds between the lines naming the installs still running.
_HEARTBEAT = 15.0


def to_install(names: Iterable[str] | None, pipeline: bool) -> list[Service]:
    """What ``up`` installs: the named services, else the stack's (``stack up``: test
    tools included), else the stack's and the pipeline's without the test tools
    (``ferryman up``)."""
    services = _select(names, pipeline)
    if pipeline and not names:
        services = [s for s in services if s.name not in TEST_TOOLS]
    return services


def _install_all(layout: Layout, services: list[Service], say: Say) -> dict[str, str]:
    """Install ``services`` (each idempotent and cached), saying what each took when it
    took a while, and every 15 s which installs are still running."""
    started = time.monotonic()
    # Debian packages go first and alone: apt holds one lock for all of them. The
    # long builds (Go programs, downloads) then run side by side; their own few Debian
    # packages wait for the lock apt_install holds.
    slow = {
        "kafka",
        "elasticsearch",
        "jaeger",
        "hotrod",
        "rw2client",
        "victorialogs",
        "kube-apiserver",
        "kube-tools",
        "kube-state-metrics",
    }
    apt_like = [s for s in services if s.name not in slow]
    versions: dict[str, str] = {}
    for service in apt_like:
        began = time.monotonic()
        versions[service.name] = service.install(layout)
        _said_install(say, service.name, versions[service.name], time.monotonic() - began)
    others = [s for s in services if s not in apt_like]
    errors: list[StackError] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        began = time.monotonic()
        futures = {pool.submit(s.install, layout): s.name for s in others}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=_HEARTBEAT, return_when=FIRST_COMPLETED)
            for future in done:
                name = futures[future]
                try:
                    versions[name] = future.result()
                except StackError as exc:
                    errors.append(exc)
                    say(f"  {name}: install failed")
                    continue
                _said_install(say, name, versions[name], time.monotonic() - began)
            if pending and not done:
                names = ", ".join(sorted(futures[f] for f in pending))
                say(f"  still installing ({time.monotonic() - began:.0f}s): {names}")
    if errors:
        raise errors[0]
    say(f"installed {len(services)} services in {time.monotonic() - started:.1f}s")
    return versions


def _said_install(say: Say, name: str, version: str, seconds: float) -> None:
    """A line for an install that did work (a cached one takes well under a second)."""
    if seconds >= 1.0:
        say(f"  {name} {version}: ready after {seconds:.0f}s")


def up(
    names: Iterable[str] | None = None,
    *,
    layout: Layout | None = None,
    say: Say = print,
    pipeline: bool = False,
) -> dict[str, Any]:
    """Install what is missing, start what is not running, wait until all are healthy.

    Idempotent: a healthy service that we started before is left alone.
    Raises :class:`StackError` naming the service, the command and the log tail.
    """
    layout = layout or default_layout()
    layout.ensure()
    services = to_install(names, pipeline)
    versions = _install_all(layout, services, say)
    state = load_state(layout)
    entries = state["services"]
    pending: dict[str, Service] = {}
    for service in services:
        if not service.autostart:
            entries[service.name] = {
                "version": versions[service.name],
                "pid": None,
                "endpoints": service.all_endpoints(layout),
                "installed_only": True,
            }
            continue
        entry = entries.get(service.name) or {}
        pid: int | None = entry.get("pid")
        ours = pid is not None and alive(pid, entry.get("ticks"))
        if ours and service.probe():
            service.after_start(layout)  # idempotent: e.g. topics deleted meanwhile
            entry["endpoints"] = service.all_endpoints(layout)
            continue
        if ours:
            pending[service.name] = service  # still starting from an earlier call
            continue
        if service.probe():
            raise StartError(
                service.name,
                "start",
                f"something else already serves {dict(service.endpoints)}; "
                "stop it or change FERRYMAN_HOME",
            )
        service.prepare(layout)
        argv = service.command(layout)
        pid = spawn(
            argv,
            log=layout.log(service.name),
            cwd=layout.data(service.name),
            env=service.env(layout),
        )
        entries[service.name] = {
            "pid": pid,
            "ticks": start_ticks(pid),
            "version": versions[service.name],
            "command": argv,
            "endpoints": service.all_endpoints(layout),
            "log": str(layout.log(service.name)),
            "started_at": time.time(),
        }
        pending[service.name] = service
        _save_state(layout, state)
    _wait_healthy(layout, state, pending, say)
    _save_state(layout, state)
    return state


def _wait_healthy(
    layout: Layout, state: dict[str, Any], pending: dict[str, Service], say: Say
) -> None:
    entries = state["services"]
    deadline = {name: time.monotonic() + s.start_timeout for name, s in pending.items()}
    while pending:
        for name, service in list(pending.items()):
            entry = entries[name]
            if service.probe():
                service.after_start(layout)
                started = entry.get("started_at", time.time())
                entry["start_seconds"] = round(time.time() - started, 1)
                say(f"{name} healthy after {entry['start_seconds']}s")
                del pending[name]
            elif not alive(entry["pid"]) or time.monotonic() > deadline[name]:
                reason = "exited" if not alive(entry["pid"]) else "never became healthy"
                if alive(entry["pid"]):
                    stop_group(entry["pid"], service.stop_timeout)
                    entries.pop(name)
                log_tail = tail(layout.log(name).read_text(errors="replace"), 40)
                _save_state(layout, state)
                raise StartError(
                    name,
                    " ".join(entry["command"]),
                    f"{reason}; tail of {layout.log(name)}:\n{log_tail}",
                )
        time.sleep(0.5)


def down(
    names: Iterable[str] | None = None, *, layout: Layout | None = None, say: Say = print
) -> None:
    """Stop services (all by default) in reverse start order; nothing is left running."""
    layout = layout or default_layout()
    state = load_state(layout)
    entries = state["services"]
    for service in reversed(_select(names, pipeline=True)):
        entry = entries.pop(service.name, None)
        if not entry or not entry.get("pid") or not alive(entry["pid"], entry.get("ticks")):
            continue
        quiet = stop_group(entry["pid"], service.stop_timeout)
        say(f"{service.name} stopped" + ("" if quiet else " (killed after timeout)"))
        _save_state(layout, state)
    _save_state(layout, state)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    version: str
    endpoint: str
    healthy: bool
    pid: int | None
    rss_bytes: int
    start_seconds: float | None
    autostart: bool = True


def status(*, layout: Layout | None = None) -> list[ServiceStatus]:
    layout = layout or default_layout()
    entries = load_state(layout)["services"]
    rows = []
    for service in _everything():
        entry = entries.get(service.name) or {}
        if service not in SERVICES and not entry:
            continue  # pipeline processes are listed once ferryman up started them
        pid: int | None = entry.get("pid")
        running = pid is not None and alive(pid, entry.get("ticks"))
        rows.append(
            ServiceStatus(
                name=service.name,
                version=entry.get("version", "-"),
                endpoint=_endpoint_column(service.endpoints),
                healthy=running and service.probe(),
                pid=pid if running else None,
                rss_bytes=group_rss_bytes(pid) if pid is not None and running else 0,
                start_seconds=entry.get("start_seconds"),
                autostart=service.autostart,
            )
        )
    return rows


def _endpoint_column(endpoints: Mapping[str, str]) -> str:
    """The first endpoint, and the ports of the others that listen elsewhere (Kafka's
    SASL_SSL listener: ``127.0.0.1:9092 +9094``)."""
    values = list(endpoints.values())
    if not values:
        return "-"
    first = values[0]
    others = [
        port for value in values[1:] if (port := _port(value)) is not None and port != _port(first)
    ]
    return " ".join([first, *(f"+{port}" for port in dict.fromkeys(others))])


def _port(endpoint: str) -> int | None:
    netloc = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").netloc
    try:
        return urlsplit(f"//{netloc}").port
    except ValueError:
        return None


def format_status(rows: list[ServiceStatus]) -> str:
    header = ("SERVICE", "VERSION", "ENDPOINT", "HEALTH", "PID", "RSS MiB", "START s")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r.name,
                r.version,
                r.endpoint,
                "healthy" if r.healthy else ("down" if r.autostart else "installed"),
                str(r.pid or "-"),
                f"{r.rss_bytes / 2**20:.0f}" if r.pid else "-",
                f"{r.start_seconds}" if r.start_seconds is not None and r.pid else "-",
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in lines
    ]
    total = sum(r.rss_bytes for r in rows)
    out.append(f"total RSS {total / 2**20:.0f} MiB")
    return "\n".join(out)
