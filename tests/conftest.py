"""Test tiers: everything under tests/integration needs the real local stack."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Timing-based checks fail on a loaded 2-core machine (CI runs services beside the
# tests); properties are about results, not speed.
settings.register_profile("ferryman", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ferryman")

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)
