"""A gateway per test, on the stack's Kafka, with topics of the test's own."""

from __future__ import annotations

import pytest

from tests.integration.gateway.helpers import Setup, start_gateway


@pytest.fixture
def gw(stack, tmp_path, processes, unique) -> Setup:
    setup = start_gateway(
        tmp_path,
        processes,
        stack("kafka", "bootstrap"),
        unique,
        limits_a={"max_body_bytes": 65536, "max_decompressed_bytes": 262144},
    )
    setup.gateway.wait_ready()
    return setup
