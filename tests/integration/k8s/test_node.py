"""A real kubelet node (tests/integration/kubenode.py) against a real kube-apiserver.

kubelet v1.37.2 (built by infra/local/build/kubelet.sh) registers with the API server
and turns Ready; pods bound to it by ``spec.nodeName`` run in Debian's containerd on
the host network, from a ferryman image exported from podman (built by
``python -m infra.images``) and imported into containerd, and kubelet writes their
output to /var/log/pods in the CRI log format.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.kube import Cluster, running_apiserver
from tests.integration.kubenode import NODE_NAME, Node, image_archive, image_ref, running_node

pytestmark = pytest.mark.integration

IMAGE_NAME = "ferryman-edge-logs"
NAMESPACE = "default"
# <RFC 3339 time> <stream> <P(artial)|F(ull)> <content>
CRI_LINE = re.compile(r"^(\S+) (stdout|stderr) ([PF]) (.*)$")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Node]]:
    workdir = tmp_path_factory.mktemp("kube")
    with running_apiserver(workdir) as cluster, running_node(cluster, workdir / "node") as node:
        node.import_image(image_archive(IMAGE_NAME))
        yield cluster, node


def run_pod(cluster: Cluster, name: str, command: list[str]) -> dict[str, Any]:
    """Creates a host-network pod bound to the node and waits until it ends."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeName": NODE_NAME,  # no scheduler runs
            "hostNetwork": True,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "main",
                    "image": image_ref(IMAGE_NAME),
                    "imagePullPolicy": "Never",
                    "command": command,
                }
            ],
        },
    }
    with cluster.http() as api:
        created = api.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=pod)
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            current: dict[str, Any] = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}").json()
            if current["status"].get("phase") in ("Succeeded", "Failed"):
                return current
            time.sleep(0.5)
    pytest.fail(f"pod {name} did not end in 120 s: {current['status']}")


def cri_lines(path: Path) -> list[tuple[str, str, str]]:
    """(stream, tag, content) of every line of a CRI log file; fails on any other line."""
    lines = []
    for line in path.read_text().splitlines():
        match = CRI_LINE.match(line)
        assert match, f"not a CRI log line: {line!r}"
        lines.append((match[2], match[3], match[4]))
    return lines


def test_the_node_registers_and_is_ready(node: tuple[Cluster, Node]) -> None:
    cluster, _ = node
    with cluster.http() as api:
        found = api.get(f"/api/v1/nodes/{NODE_NAME}").json()
    conditions = {c["type"]: c["status"] for c in found["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert conditions["MemoryPressure"] == "False"
    info = found["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.37.2"
    assert info["containerRuntimeVersion"].startswith("containerd://1.6.")


def test_a_host_network_pod_runs_to_completion_and_logs_to_var_log_pods(
    node: tuple[Cluster, Node],
) -> None:
    cluster, _ = node
    pod = run_pod(cluster, "version", ["ferryman", "--version"])

    assert pod["status"]["phase"] == "Succeeded"
    (status,) = pod["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 0
    assert status["imageID"]
    lines = cri_lines(Node.pod_log(pod, "main"))
    assert [(stream, tag) for stream, tag, _ in lines] == [("stdout", "F")]
    assert re.fullmatch(r"ferryman \d+\.\d+\.\d+\S*", lines[0][2]), lines


def test_a_failing_pod_fails_with_its_exit_code_and_stderr(node: tuple[Cluster, Node]) -> None:
    cluster, _ = node
    pod = run_pod(cluster, "fails", ["sh", "-c", "echo going down >&2; exit 3"])

    assert pod["status"]["phase"] == "Failed"
    (status,) = pod["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 3
    assert cri_lines(Node.pod_log(pod, "main")) == [("stderr", "F", "going down")]
