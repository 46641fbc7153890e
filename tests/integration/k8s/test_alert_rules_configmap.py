"""The central overlay ships the alert rules: ``kubectl kustomize`` of
infra/k8s/central/overlays/example renders the ConfigMap ferryman-alert-rules in the
ferryman namespace, its key ferryman.rules.yml byte for byte the file
infra/alerts/ferryman.rules.yml that promtool tests (one source, no copy to drift)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from infra.local.paths import default_layout
from tests.integration.kube import built

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "infra" / "alerts" / "ferryman.rules.yml"


@pytest.mark.parametrize("path", ["central/overlays/example", "central/alerts"])
def test_the_rules_configmap_is_the_tested_file(path: str) -> None:
    kubectl = built("kubectl.sh", default_layout().bin / "kubectl")
    done = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / "infra" / "k8s" / path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = [
        d
        for d in yaml.safe_load_all(done.stdout)
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ferryman-alert-rules"
    ]
    assert len(found) == 1, f"ConfigMap ferryman-alert-rules: found {len(found)}"
    assert found[0]["data"] == {"ferryman.rules.yml": RULES.read_text()}
    if path.startswith("central/overlays"):
        assert found[0]["metadata"]["namespace"] == "ferryman"
