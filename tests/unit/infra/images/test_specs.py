"""The images `./task images` builds are the ones the manifests run."""

from __future__ import annotations

import re
from pathlib import Path

from functions.registry import names
from infra.images.build import specs
from infra.k8s.generate import functions

K8S = Path(__file__).resolve().parents[4] / "infra" / "k8s"


def test_one_worker_image_per_registered_function_named_as_the_manifests_name_it():
    workers = {s.name: s.function for s in specs() if s.name.startswith("ferryman-worker-")}
    assert workers == {f.image: f.name for f in functions()}
    assert sorted(workers.values()) == names()


def test_every_image_a_manifest_names_is_built():
    named = {
        match
        for path in K8S.rglob("*.yaml")
        for match in re.findall(r"image: (ferryman-[a-z-]+)", path.read_text())
    }
    assert named, "no ferryman image found in infra/k8s"
    assert named <= {s.name for s in specs()}
    assert {"ferryman-edge-metrics", "ferryman-edge-logs"} <= named
