"""Session fixtures for the integration tier.

The stack is started if it is not running and reused if it is. A service that
cannot be had fails the session: nothing here ever skips.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from infra import local


class Endpoints:
    """Endpoints of the running stack, read from its state file."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._services = state["services"]

    def __call__(self, service: str, name: str) -> str:
        endpoint: str = self._services[service]["endpoints"][name]
        return endpoint


@pytest.fixture(scope="session")
def stack() -> Endpoints:
    # FERRYMAN_STACK_SERVICES=kafka,redis narrows the stack while working on one area;
    # CI leaves it unset and so needs every service.
    only = [n for n in os.environ.get("FERRYMAN_STACK_SERVICES", "").split(",") if n]
    try:
        state = local.up(only or None, say=lambda line: None)
    except local.StackError as exc:
        pytest.fail(f"local stack unavailable: {exc}", pytrace=False)
    return Endpoints(state)


@pytest.fixture
def unique() -> str:
    """A short unique token to keep tests from seeing each other's data."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def processes():
    """Starts ferryman processes and kills whatever is still running at teardown."""
    from tests.integration.pipeline import Process

    started: list[Process] = []

    def start(process: Process) -> Process:
        started.append(process.start())
        return process

    yield start
    for process in started:
        if process.alive():
            process.kill9()


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, section by section."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def worker(stack, tmp_path):
    """Starts ``ferryman worker NAME`` as a real process: ``worker(name, topic, config,
    **settings_overrides)`` returns it once /readyz says its partitions are assigned.

    Each worker gets the group ``g-<topic>-<name>`` (so a restart in the same test
    resumes it; pass ``kafka={"group_id": ...}`` for another), its own dead-letter topic
    ``<topic>-<name>-dlq`` (created here), an http port of its own, small batches and
    short backoffs. ``settings_overrides`` are laid over those settings section by
    section (``batch={"max_records": 5}`` keeps ``max_wait_s``). The input topic is the
    test's to create. At teardown every worker still running gets SIGTERM and must exit
    0 within 30 s; one the test stopped or killed itself is left alone.
    """
    from kafka.errors import TopicAlreadyExistsError

    from tests.integration.pipeline import Worker, create_topics, free_port

    started: list[Worker] = []
    dead_letter_topics: set[str] = set()
    bootstrap = stack("kafka", "bootstrap")

    def start(name: str, topic: str, config: dict[str, Any], **settings_overrides: Any) -> Worker:
        settings = _merged(
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "input_topic": topic,
                    "group_id": f"g-{topic}-{name}",
                    "dead_letter_topic": f"{topic}-{name}-dlq",
                },
                "batch": {"max_records": 50, "max_wait_s": 0.2},
                "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 2.0},
                "shutdown_deadline_s": 10,
                "http": {"listen": f"127.0.0.1:{free_port()}"},
                "config": config,
            },
            settings_overrides,
        )
        dead_letter_topic = settings["kafka"]["dead_letter_topic"]
        if dead_letter_topic not in dead_letter_topics:
            with contextlib.suppress(TopicAlreadyExistsError):  # the test made it itself
                create_topics(bootstrap, (dead_letter_topic, 1))
            dead_letter_topics.add(dead_letter_topic)
        process = Worker(tmp_path, name, settings)
        started.append(process.start())
        return process.wait_ready()

    yield start
    unclean = []
    for process in started:
        if not process.alive():
            continue
        try:
            code = process.terminate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill9()
            code = None
        if code != 0:
            unclean.append(
                f"worker {process.name} exited {code} after SIGTERM:\n{process.output()[-3000:]}"
            )
    assert not unclean, "\n".join(unclean)


@pytest.fixture
def exporter():
    from tests.integration.exporter import Exporter

    served = Exporter()
    yield served
    served.close()


@pytest.fixture
def es(stack):
    """A client of the stack's Elasticsearch."""
    client = Elasticsearch(stack("elasticsearch", "http"), request_timeout=30)
    yield client
    client.close()
