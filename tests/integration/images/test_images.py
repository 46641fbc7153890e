"""The images as an orchestrator runs them: podman, host network, a read-only root,
a mounted configuration, SIGTERM to stop. The images are built first (cached: a
no-op when nothing changed); a machine without podman gets it from Debian."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from infra.images.build import PODMAN, PODMAN_LIMITS, build, specs, version
from tests.integration.edge.test_logs_shipper import Lines
from tests.integration.pipeline import (
    committed_total,
    create_topics,
    free_port,
    produce_series,
    series_ids,
    topic_size,
    wait_for,
)

WORKER = "ferryman-worker-prometheus-remote-write"
LOGS = "ferryman-edge-logs"


@pytest.fixture(scope="module")
def tags() -> dict[str, str]:
    wanted = [s for s in specs() if s.name in (WORKER, LOGS)]
    build(wanted, say=lambda line: None)
    return {s.name: s.tag(version()) for s in wanted}


def _received(port: int) -> float:
    """The worker's ferryman_records_received_total: records taken from Kafka."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ferryman_records_received_total")
    )


class Container:
    """One ``podman run -d`` of an image, with ``mounts`` (host path: container path)
    and the configuration mounted read-only at /etc/ferryman/config.yaml; ``command``
    before ``--config`` as the manifests give it (``edge logs``), or nothing for the
    image's own."""

    def __init__(
        self,
        tmp: Path,
        image: str,
        settings: dict[str, Any],
        mounts: dict[Path, str],
        command: tuple[str, ...] = (),
    ) -> None:
        config = tmp / f"config-{time.monotonic_ns()}"
        config.mkdir()
        (config / "config.yaml").write_text(yaml.safe_dump(settings))
        config.chmod(0o755)
        (config / "config.yaml").chmod(0o644)
        self.name = f"ferryman-test-{config.name}"
        volumes = [f"--volume={config}:/etc/ferryman:ro"]
        volumes += [f"--volume={host}:{inside}" for host, inside in mounts.items()]
        self.started = time.monotonic()
        subprocess.run(
            [
                *PODMAN,
                "run",
                "--detach",
                f"--name={self.name}",
                "--network=host",
                *PODMAN_LIMITS,
                "--read-only",
                *volumes,
                image,
                *command,
                "--config",
                "/etc/ferryman/config.yaml",
            ],
            check=True,
            capture_output=True,
        )

    def wait_ready(self, url: str, timeout: float = 60) -> float:
        """Seconds from ``podman run`` until ``url`` answered 200."""

        def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url, timeout=2).status_code == 200
            return False

        wait_for(ready, timeout, f"{url} ready; logs:\n{self.logs()[-3000:]}", interval=0.05)
        return time.monotonic() - self.started

    def stop(self) -> int:
        """SIGTERM, 30 s before SIGKILL, as Kubernetes' default grace; the exit code."""
        subprocess.run([*PODMAN, "stop", "--time=30", self.name], check=True, capture_output=True)
        code = subprocess.run(
            [*PODMAN, "inspect", "--format={{.State.ExitCode}}", self.name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return int(code)

    def logs(self) -> str:
        proc = subprocess.run(
            [*PODMAN, "logs", self.name], capture_output=True, text=True, check=False
        )
        return proc.stdout + proc.stderr

    def remove(self) -> None:
        subprocess.run([*PODMAN, "rm", "--force", self.name], capture_output=True, check=False)


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


def test_worker_image_delivers_drains_and_commits_on_sigterm(
    stack, unique, tmp_path, tags, containers
):
    bootstrap = stack("kafka", "bootstrap")
    dead_letter = f"{unique}-dlq"
    create_topics(bootstrap, (unique, 2), (dead_letter, 1))
    metric = f"img_{unique}"
    sent = produce_series(bootstrap, unique, metric, messages=40, series_per_message=10)
    port, group = free_port(), f"g-{unique}"
    settings = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "input_topic": unique,
            "group_id": group,
            "dead_letter_topic": dead_letter,
        },
        "batch": {"max_records": 20, "max_wait_s": 0.2},
        "shutdown_deadline_s": 20,
        "http": {"listen": f"127.0.0.1:{port}"},
        "config": {"url": stack("prometheus", "remote_write")},
    }
    worker = Container(tmp_path, tags[WORKER], settings, {})
    containers.append(worker)
    ready_s = worker.wait_ready(f"http://127.0.0.1:{port}/readyz")
    print(f"{WORKER}: podman run to /readyz in {ready_s:.2f} s")
    wait_for(lambda: committed_total(bootstrap, group, unique) == 40, 60, "40 offsets committed")
    prometheus = stack("prometheus", "http")
    wait_for(lambda: series_ids(prometheus, metric) == sent, 30, "every series in Prometheus")

    # More records, then SIGTERM as soon as the worker has taken them all from Kafka,
    # while batches are still being delivered: it drains them and commits.
    sent |= produce_series(bootstrap, unique, metric, messages=200, series_per_message=10, start=40)
    wait_for(lambda: _received(port) >= 240, 60, "every record fetched", interval=0.02)
    assert worker.stop() == 0, worker.logs()[-3000:]
    assert "worker stopped" in worker.logs()
    assert committed_total(bootstrap, group, unique) == topic_size(bootstrap, unique) == 240
    assert wait_for(lambda: series_ids(prometheus, metric) == sent, 30, "the drained series")


def test_edge_logs_image_ships_a_mounted_directory_and_checkpoints_on_sigterm(
    stack, unique, tmp_path, tags, containers
):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    logs, state = tmp_path / "logs", tmp_path / "state"
    logs.mkdir()
    state.mkdir()
    state.chmod(0o777)  # the shipper runs as uid 10001
    logs.chmod(0o755)
    app = logs / "app.log"
    app.write_text("".join(f"line {i}\n" for i in range(100)))
    app.chmod(0o644)
    port = free_port()
    settings = {
        "global": {"external_labels": {"cluster": "alpha"}},
        "positions": {"filename": "/var/lib/ferryman/positions.json"},
        "scrape_configs": [
            {
                "job_name": "files",
                "static_configs": [{"labels": {"job": "app", "__path__": "/logs/*.log"}}],
            }
        ],
        "ferryman": {
            "kafka": {"bootstrap_servers": bootstrap, "topic": unique},
            "listen": f"127.0.0.1:{port}",
            "host": "node-1",
            "batch_wait": "200ms",
            "rescan_interval": "300ms",
        },
    }
    shipper = Container(
        tmp_path,
        tags[LOGS],
        settings,
        {logs: "/logs:ro", state: "/var/lib/ferryman"},
        command=("edge", "logs"),
    )
    containers.append(shipper)
    ready_s = shipper.wait_ready(f"http://127.0.0.1:{port}/-/ready")
    print(f"{LOGS}: podman run to /-/ready in {ready_s:.2f} s")
    shipped = Lines(bootstrap, unique)
    expected = [f"line {i}" for i in range(100)]
    wait_for(lambda: shipped.poll().by_file.get("/logs/app.log") == expected, 30, "the first lines")

    # More lines, then SIGTERM at once: what was read is shipped and checkpointed.
    with app.open("a") as f:
        f.write("".join(f"line {i}\n" for i in range(100, 2000)))
    time.sleep(0.5)
    assert shipper.stop() == 0, shipper.logs()[-3000:]
    positions = json.loads((state / "positions.json").read_text())
    (entry,) = [p for p in positions["files"] if p["path"] == "/logs/app.log"]
    assert entry["offset"] == app.stat().st_size
    expected += [f"line {i}" for i in range(100, 2000)]
    wait_for(lambda: shipped.poll().by_file.get("/logs/app.log") == expected, 30, "every line once")
