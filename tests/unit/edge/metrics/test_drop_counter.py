"""The metrics shipper exposes its buffer-drop counter at 0 from the start, so the
first drop is an ``increase()`` the alert FerrymanEdgeBufferDropping sees (a counter
born at its first drop would show none)."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.metrics.shipper import MetricsShipper

SERIES = 'ferryman_samples_dropped_total{reason="buffer_full"}'


def test_buffer_full_drops_are_counted_from_zero(tmp_path: Path) -> None:
    config = tmp_path / "edge-metrics.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"external_labels": {"cluster": "alpha"}},
                "scrape_configs": [],
                "ferryman": {
                    "kafka": {"bootstrap_servers": "127.0.0.1:1", "topic": "metrics"},
                    "buffer": {"directory": str(tmp_path / "buffer")},
                },
            }
        )
    )
    shipper = MetricsShipper(config)
    try:
        assert f"{SERIES} 0.0" in shipper.registry.render().splitlines()
        shipper._dropped(records=2, samples=7)  # what the disk queue reports when full
        assert f"{SERIES} 7.0" in shipper.registry.render().splitlines()
    finally:
        shipper.queue.close()
