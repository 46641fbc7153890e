"""A worker started before its Kafka waits for it, against the real Kafka.

Kafka is "late" through a plain TCP forwarder on a port of the test's own: nothing
listens there at first (connections are refused, as they are while a broker starts),
then the forwarder opens and passes bytes to the stack's Kafka unchanged. The broker
advertises its own address, so only the bootstrap goes through the forwarder.

A worker's consumer gives up one bootstrap after ``BOOTSTRAP_TIMEOUT_MS`` and
kafka-python, by default, backs off up to 30 s between connection attempts; a worker
must outlast several attempts, deliver within seconds of Kafka opening, and stop
cleanly while it waits.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.integration.pipeline import (
    Worker,
    create_topics,
    free_port,
    produce,
    remote_write,
    series_ids,
    time_series,
    wait_for,
)
from workers.clients import BOOTSTRAP_TIMEOUT_MS

BOOTSTRAP_DEADLINE_S = BOOTSTRAP_TIMEOUT_MS / 1000


class LateForwarder:
    """A loopback TCP port that refuses connections until :meth:`open`, then forwards
    each connection to ``target`` (host, port) byte for byte."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.server: socket.socket | None = None
        self.accepted = 0
        self.connections: list[socket.socket] = []

    def open(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port))
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for connection in self.connections:
            connection.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:  # closed
                return
            self.accepted += 1
            upstream = socket.create_connection(self.target)
            self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def _worker(tmp_path, stack, bootstrap: str, topic: str, **kafka: str) -> Worker:
    """A remote-write worker reading ``topic`` through ``bootstrap``; ``kafka`` adds keys
    to its kafka section."""
    return Worker(
        tmp_path,
        "prometheus_remote_write",
        {
            "kafka": {"bootstrap_servers": bootstrap, "input_topic": topic, **kafka},
            "batch": {"max_records": 10, "max_wait_s": 0.2},
            "shutdown_deadline_s": 5,
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "config": {"url": stack("prometheus", "remote_write")},
        },
    )


def test_a_worker_started_before_kafka_waits_then_delivers(stack, unique, tmp_path) -> None:
    bootstrap = stack("kafka", "bootstrap")
    host, port = bootstrap.rsplit(":", 1)
    create_topics(bootstrap, (unique, 1), (f"{unique}-dlq", 1))
    late = LateForwarder((host, int(port)))
    worker = _worker(
        tmp_path,
        stack,
        f"127.0.0.1:{late.port}",
        unique,
        group_id=f"g-{unique}",
        dead_letter_topic=f"{unique}-dlq",
    )
    try:
        worker.start()
        # Three bootstrap attempts with nothing listening: still running, not ready,
        # and saying why each time.
        wait_for(
            lambda: worker.output().count("cannot reach Kafka at 127.0.0.1:") >= 3,
            4 * BOOTSTRAP_DEADLINE_S + 15,
            "the worker to say three times it cannot reach Kafka",
        )
        assert worker.alive(), worker.output()[-3000:]
        assert not worker.ready()

        metric = f"late_{unique}"
        now = int(time.time() * 1000)
        produce(
            bootstrap,
            unique,
            [remote_write([time_series({"__name__": metric, "sid": "0"}, (1.0, now))])],
        )
        late.open()
        opened = time.monotonic()
        worker.wait_ready(timeout=30)
        ready_after = time.monotonic() - opened
        # Reconnect attempts are at most a second apart; joining the group takes the rest.
        assert ready_after < 15, f"ready {ready_after:.1f}s after Kafka opened"
        assert late.accepted >= 1
        stored = stack("prometheus", "http")
        wait_for(lambda: series_ids(stored, metric) == {"0"}, 30, "the series stored")
        wait_for(lambda: worker.committed() == 1, 30, "the offset committed")
        assert worker.terminate() == 0
    finally:
        if worker.alive():
            worker.kill9()
        late.close()


def test_a_worker_stopped_while_waiting_for_kafka_exits_cleanly(stack, unique, tmp_path) -> None:
    nowhere = free_port()  # nothing listens
    worker = _worker(tmp_path, stack, f"127.0.0.1:{nowhere}", unique)
    try:
        worker.start()
        wait_for(
            lambda: "cannot reach Kafka at 127.0.0.1:" in worker.output(),
            BOOTSTRAP_DEADLINE_S + 15,
            "the worker to say it cannot reach Kafka",
        )
        stopping = time.monotonic()
        assert worker.terminate(timeout=BOOTSTRAP_DEADLINE_S + 10) == 0, worker.output()[-3000:]
        assert "worker stopped" in worker.output()
        # It stops at its next attempt at the latest (a bootstrap attempt runs out its
        # deadline first).
        assert time.monotonic() - stopping < BOOTSTRAP_DEADLINE_S + 5
    finally:
        if worker.alive():
            worker.kill9()
