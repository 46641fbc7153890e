"""HotROD, the Jaeger project's demo application, as a real OTLP/HTTP client.

HotROD (``examples/hotrod`` in the Jaeger Go module, built by
``infra/local/build/hotrod.sh``) is four HTTP/gRPC services in one process
(``hotrod all``: frontend, customer, driver, route) instrumented with the
OpenTelemetry Go SDK. Its MySQL and Redis are simulated in-process and report
spans as services of their own (``mysql``, ``redis-manual``). Every service's
tracer exports OTLP/HTTP protobuf to ``$OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``
through a batch span processor with a 1 s timeout (``OTEL_EXPORTER_OTLP_PROTOCOL`` is
not read: it is always HTTP); ``OTEL_RESOURCE_ATTRIBUTES`` is merged under each
service's own ``service.name``.

:class:`HotROD` runs it on free ports of 127.0.0.1 against any OTLP/HTTP endpoint
(the stack's Jaeger, or ferryman's edge traces receiver) and drives its
``GET /dispatch?customer=N`` with a W3C ``traceparent`` of a fresh trace id, so a
test knows each request's trace id and can look it up in Jaeger.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from infra.local.catalogue import HOTROD_PORTS, hotrod_argv
from infra.local.paths import default_layout
from tests.integration.pipeline import free_port

ROOT = Path(__file__).resolve().parents[2]

#: The services one dispatch reaches, as they name themselves in ``service.name``.
SERVICES = ("frontend", "customer", "mysql", "driver", "redis-manual", "route")
#: The customers HotROD's simulated database knows (others answer 500).
CUSTOMERS = (123, 392, 567, 731)
#: Spans of the last request leave the SDK within its 1 s batch timeout.
FLUSH_S = 2.0


def hotrod_binary() -> Path:
    """The HotROD binary under the stack home, built first if missing (idempotent and
    quick when present; a cold build downloads the Jaeger module's dependencies)."""
    binary = default_layout().bin / "hotrod"
    script = ROOT / "infra" / "local" / "build" / "hotrod.sh"
    subprocess.run(["bash", str(script), str(binary)], check=True, stdout=subprocess.DEVNULL)
    return binary


@dataclass(frozen=True)
class Dispatch:
    """One ``/dispatch`` request: the trace id it was sent under and HotROD's answer."""

    trace_id: str
    customer: int
    status: int


class HotROD:
    """``hotrod all`` as a subprocess exporting to ``endpoint``.

    ``endpoint`` is an OTLP/HTTP base URL such as ``http://127.0.0.1:4318``; the SDK
    posts to ``endpoint/v1/traces``, and ``https://`` turns TLS on (with
    ``OTEL_EXPORTER_OTLP_CERTIFICATE`` in ``env`` for a private CA; a bearer token goes
    in ``OTEL_EXPORTER_OTLP_HEADERS``). ``resource_attributes`` are added to every
    span's resource. Use as a context manager; :meth:`stop` waits for the last spans
    to leave before it terminates the process (HotROD does not flush on SIGTERM).
    """

    def __init__(
        self,
        endpoint: str,
        workdir: Path,
        *,
        resource_attributes: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.ports = {service: free_port() for service in HOTROD_PORTS}
        self.frontend = f"http://127.0.0.1:{self.ports['frontend']}"
        self.dispatched: list[Dispatch] = []
        self._workdir = workdir
        self._log_path = workdir / f"hotrod-{self.ports['frontend']}.log"
        self._env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            **(env or {}),
        }
        if resource_attributes:
            self._env["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(
                f"{key}={value}" for key, value in resource_attributes.items()
            )
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._client = httpx.Client(timeout=30)
        self._last_request = 0.0
        self._lock = threading.Lock()

    def start(self, timeout: float = 30.0) -> HotROD:
        """Start HotROD and return once its frontend answers."""
        argv = hotrod_argv(hotrod_binary(), self.ports)
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._log = self._log_path.open("wb")
        self._proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=self._env, cwd=self._workdir
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"hotrod exited {self._proc.returncode}:\n{self.output()}")
            try:
                if self._client.get(f"{self.frontend}/config").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"hotrod not ready after {timeout}s:\n{self.output()}")
            time.sleep(0.1)

    def dispatch(self, customer: int = 123) -> Dispatch:
        """One ride request under a fresh trace id (sampled), whatever HotROD answers."""
        trace_id = os.urandom(16).hex()
        traceparent = f"00-{trace_id}-{os.urandom(8).hex()}-01"
        response = self._client.get(
            f"{self.frontend}/dispatch",
            params={"customer": str(customer)},
            headers={"traceparent": traceparent},
        )
        # HotROD answers with the trace it recorded the request in.
        answered = response.headers.get("traceresponse", "").split("-")
        if len(answered) != 4 or answered[1] != trace_id:
            raise RuntimeError(f"hotrod did not continue trace {trace_id}: {answered}")
        done = Dispatch(trace_id, customer, response.status_code)
        with self._lock:
            self.dispatched.append(done)
            self._last_request = time.monotonic()
        return done

    def drive(self, count: int, interval: float = 0.0) -> list[Dispatch]:
        """``count`` dispatches, one after another, cycling through :data:`CUSTOMERS`."""
        done = []
        for i in range(count):
            if i and interval:
                time.sleep(interval)
            done.append(self.dispatch(CUSTOMERS[i % len(CUSTOMERS)]))
        return done

    @contextmanager
    def trickle(self, interval: float = 1.0) -> Iterator[list[Dispatch]]:
        """Dispatch every ``interval`` seconds in a background thread while the block
        runs; yields the list the dispatches are appended to (errors of the receiver
        side, such as a refused connection of HotROD's own, do not stop it)."""
        stop = threading.Event()
        sent: list[Dispatch] = []

        def run() -> None:
            i = 0
            while not stop.wait(interval if i else 0):
                # HotROD itself restarting or busy: the next tick tries again.
                with contextlib.suppress(httpx.HTTPError, RuntimeError):
                    sent.append(self.dispatch(CUSTOMERS[i % len(CUSTOMERS)]))
                i += 1

        thread = threading.Thread(target=run, name="hotrod-trickle", daemon=True)
        thread.start()
        try:
            yield sent
        finally:
            stop.set()
            thread.join(60)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output(self) -> str:
        """HotROD's log so far (its last 8 KiB)."""
        try:
            return self._log_path.read_bytes()[-8192:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Wait :data:`FLUSH_S` after the last request (the SDK's batch timeout), then
        terminate HotROD."""
        if self._proc is not None and self._proc.poll() is None:
            wait = self._last_request + FLUSH_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._client.close()

    def __enter__(self) -> HotROD:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def jaeger_trace(query: str, trace_id: str) -> dict[str, Any] | None:
    """The trace ``trace_id`` from Jaeger's query API at ``query`` (None if not there)."""
    response = httpx.get(f"{query}/api/traces/{trace_id}", timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()["data"]
    return data[0] if data else None


def complete_traces(
    query: str, sent: Iterable[Dispatch], timeout: float = 30.0
) -> list[dict[str, Any]]:
    """The traces of ``sent`` from Jaeger's query API at ``query``, once each holds spans
    of every one of :data:`SERVICES` (HotROD exports each service's spans on its own
    schedule); raises AssertionError naming what is missing after ``timeout``."""
    wanted = [d.trace_id for d in sent]
    deadline = time.monotonic() + timeout
    while True:
        traces = {t: jaeger_trace(query, t) for t in wanted}
        missing = {
            t: sorted(set(SERVICES) - (services_of(trace) if trace else set()))
            for t, trace in traces.items()
        }
        if not any(missing.values()):
            return [trace for trace in traces.values() if trace is not None]
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout}s, services missing by trace: {missing}")
        time.sleep(0.5)


def services_of(trace: Mapping[str, Any]) -> set[str]:
    """The ``service.name`` of every process that contributed spans to ``trace``."""
    processes: Mapping[str, Any] = trace["processes"]
    used = {span["processID"] for span in trace["spans"]}
    return {processes[p]["serviceName"] for p in used}


def process_tags(trace: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Resource attributes by service name (Jaeger's process tags) of ``trace``."""
    return {
        process["serviceName"]: {tag["key"]: tag["value"] for tag in process["tags"]}
        for process in trace["processes"].values()
    }
