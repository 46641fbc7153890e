"""``ferryman stack status``'s endpoint column names every port a service listens on."""

from __future__ import annotations

from infra.local.supervisor import _endpoint_column


def test_the_first_endpoint_and_the_other_ports() -> None:
    kafka = {"bootstrap": "127.0.0.1:9092", "sasl_bootstrap": "127.0.0.1:9094"}
    assert _endpoint_column(kafka) == "127.0.0.1:9092 +9094"
    prometheus = {
        "http": "http://127.0.0.1:9090",
        "remote_write": "http://127.0.0.1:9090/api/v1/write",
    }
    assert _endpoint_column(prometheus) == "http://127.0.0.1:9090"
    jaeger = {"grpc": "127.0.0.1:4317", "http": "http://127.0.0.1:4318", "ui": "127.0.0.1:16686"}
    assert _endpoint_column(jaeger) == "127.0.0.1:4317 +4318 +16686"
    assert _endpoint_column({}) == "-"
