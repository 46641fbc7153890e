"""The central overlay ships Grafana's files: ``kubectl kustomize`` of
infra/k8s/central/overlays/example renders, in the ferryman namespace and under fixed
names, the ConfigMap of the dashboards (the sidecar label ``grafana_dashboard: "1"``,
folder ferryman) with each dashboard byte for byte the generated file the unit tests
lint, the ConfigMap of the datasources (label ``grafana_datasource: "1"``) holding the
generated central.yaml, whose URLs are in-cluster services of the very backends the
overlay's sinks write to, and the dashboard provider for a Grafana that mounts them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from infra.grafana.dashboards import DASHBOARDS
from infra.local.paths import default_layout
from tests.integration.kube import built

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "infra" / "grafana"
CENTRAL = ROOT / "infra" / "k8s" / "central" / "overlays" / "example"

#: datasource uid -> the overlay's sink settings file whose backend it reads.
SINK_OF = {
    "mimir": "prometheus_remote_write.yaml",
    "elasticsearch-logs": "elasticsearch_logs.yaml",
    "elasticsearch-metrics": "elasticsearch_metrics.yaml",
    "loki": "loki.yaml",
    "jaeger": "otlp_traces.yaml",
}


@pytest.fixture(scope="module")
def configmaps() -> dict[str, dict[str, Any]]:
    kubectl = built("kubectl.sh", default_layout().bin / "kubectl")
    done = subprocess.run(
        [str(kubectl), "kustomize", str(CENTRAL)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, dict[str, Any]] = {}
    for d in yaml.safe_load_all(done.stdout):
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("ferryman-grafana"):
            assert d["metadata"]["name"] not in found, d["metadata"]["name"]
            assert d["metadata"]["namespace"] == "ferryman"
            found[d["metadata"]["name"]] = d
    return found


def test_the_names_are_fixed(configmaps: dict[str, dict[str, Any]]) -> None:
    assert set(configmaps) == {
        "ferryman-grafana-dashboards",
        "ferryman-grafana-datasources",
        "ferryman-grafana-dashboard-provider",
    }


def test_the_dashboards_are_the_generated_files(configmaps: dict[str, dict[str, Any]]) -> None:
    cm = configmaps["ferryman-grafana-dashboards"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "ferryman"
    assert cm["metadata"]["annotations"]["k8s-sidecar-target-directory"] == "ferryman"
    assert "grafana_datasource" not in cm["metadata"]["labels"]
    assert set(cm["data"]) == set(DASHBOARDS), "every dashboard, and only those"
    for name, text in cm["data"].items():
        assert text == (GRAFANA / "dashboards" / name).read_text(), name


def test_the_provider_is_the_generated_file(configmaps: dict[str, dict[str, Any]]) -> None:
    cm = configmaps["ferryman-grafana-dashboard-provider"]
    assert not {"grafana_dashboard", "grafana_datasource"} & set(cm["metadata"]["labels"])
    text = (GRAFANA / "provisioning" / "dashboards" / "ferryman.yaml").read_text()
    assert cm["data"] == {"ferryman.yaml": text}


def _namespace_and_port(url: str) -> tuple[str, str, int | None]:
    """(scheme, namespace of a ``<service>.<namespace>.svc`` host, port)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    labels = host.split(".")
    assert len(labels) == 3 and labels[2] == "svc", f"{url}: not an in-cluster service"
    return parts.scheme, labels[1], parts.port


def test_the_datasources_read_what_the_sinks_write(configmaps: dict[str, dict[str, Any]]) -> None:
    cm = configmaps["ferryman-grafana-datasources"]
    assert cm["metadata"]["labels"]["grafana_datasource"] == "1"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    text = (GRAFANA / "provisioning" / "datasources" / "central.yaml").read_text()
    assert cm["data"] == {"ferryman.yaml": text}
    body = yaml.safe_load(cm["data"]["ferryman.yaml"])
    assert body["apiVersion"] == 1
    datasources = {d["uid"]: d for d in body["datasources"]}
    assert set(datasources) == set(SINK_OF)
    assert [uid for uid, d in datasources.items() if d["isDefault"]] == ["mimir"]
    for uid, sink_file in SINK_OF.items():
        sink_url = yaml.safe_load((CENTRAL / sink_file).read_text())["config"]["url"]
        url = datasources[uid]["url"]
        assert "127.0.0.1" not in url and "localhost" not in url, uid
        # The same backend: its namespace, and (one service for both sides) its URL.
        assert _namespace_and_port(url)[1] == _namespace_and_port(sink_url)[1], uid
        if uid.startswith("elasticsearch"):
            assert url == sink_url, uid
    # The read side of the split backends: query frontends, Mimir's Prometheus API,
    # Jaeger's query service on its API port.
    assert urlsplit(datasources["mimir"]["url"]).hostname == "mimir-query-frontend.mimir.svc"
    assert urlsplit(datasources["mimir"]["url"]).path == "/prometheus"
    assert urlsplit(datasources["loki"]["url"]).hostname == "loki-query-frontend.loki.svc"
    assert _namespace_and_port(datasources["jaeger"]["url"]) == ("http", "jaeger", 16686)
    # Every link lands on a datasource this file provisions.
    assert datasources["jaeger"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] in datasources
