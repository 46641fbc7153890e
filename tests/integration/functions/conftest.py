"""Fixtures shared by the function tests (``worker`` and ``stack`` live one level up)."""

from __future__ import annotations

import pytest

from tests.integration.faultproxy import FaultProxy


@pytest.fixture
def fault_proxy():
    """``fault_proxy(backend_url)``: a :class:`FaultProxy` in front of that real backend,
    closed at teardown."""
    proxies: list[FaultProxy] = []

    def start(backend: str) -> FaultProxy:
        proxy = FaultProxy(backend)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()
