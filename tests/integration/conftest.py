"""Session fixtures for the integration tier.

The stack is started if it is not running and reused if it is. A service that
cannot be had fails the session: nothing here ever skips.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

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


@pytest.fixture
def exporter():
    from tests.integration.exporter import Exporter

    served = Exporter()
    yield served
    served.close()
