"""The Kubernetes dashboard's container usage panels show a real kubelet's cAdvisor data.

A real kube-apiserver and a real node (kubelet v1.37 + containerd,
``tests/integration/kubenode.py``) whose kubelet authenticates and authorizes its HTTPS
port through the API server as a kubeadm-made kubelet does (webhook TokenReview and
SubjectAccessReview), and whose embedded cAdvisor reaches containerd, so
``/metrics/cadvisor`` labels each container's series with its namespace, pod, container
and image. One long-running pod (the sandbox image, in namespace ``proof-<token>``)
runs on it.

The metrics shippers use the target overlay's own ``kubelet`` and ``cadvisor`` jobs
(``infra/k8s/target/base/edge-metrics.yaml``: ``kubernetes_sd_configs`` role node,
HTTPS, the service account's bearer token, no certificate verification, the ``node``
relabeling) with the overlay's RBAC (``infra/k8s/target/base/rbac.yaml``) applied: the
``ferryman-edge-metrics`` service account's token (a TokenRequest, as the kubelet
projects it into the pod) is both the discovery's credential and the scrape's bearer
token, so kubelet's /metrics/cadvisor answers only through the ``nodes/metrics`` grant.
What differs from a shipper in a pod, and why:

- the shipper runs outside the cluster, so discovery reads a kubeconfig holding that
  token (``kubeconfig_file``) instead of the in-cluster service account files, and
  ``bearer_token_file`` names where the test wrote the token;
- scrape interval 2 s instead of 30 s, so the test does not wait minutes;
- kubelet refuses to publish a loopback node IP as the Node's address (it logs
  "nodeIP can't be loopback address" and leaves ``status.addresses`` empty), and the
  node role, like Prometheus', makes no target of a node without an address; the test
  writes the address kubelet would publish on a routable host (``InternalIP``
  127.0.0.1, where kubelet listens, and ``Hostname``) through ``nodes/status``.
  kubelet's own status updates leave it there (checked at the end), and the port
  comes from the Node's ``daemonEndpoints`` as kubelet registered it.

kubelet must answer /metrics/cadvisor with 401 without a token and 403 for a service
account without the grant, 200 for the shipper's.

Two such shippers (clusters ``alpha-<token>`` and ``beta-<token>``, both scraping the
one kubelet) ship into one Kafka topic; two ``prometheus_remote_write`` workers deliver
it to Prometheus and to VictoriaMetrics. Every query of the panels in
:data:`proof.PROVEN_BY_KUBELET`, expanded as Grafana does with both clusters selected,
must return series of both clusters on both stores, the pod's namespace among them for
each cluster; both jobs' targets must be up for both clusters on both stores.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.grafana.expand import ALL, Range
from tests.integration.grafana.harness import BACKENDS, prometheus_queries, query_range
from tests.integration.grafana.proof import (
    NOT_PROVEN,
    PROVEN,
    PROVEN_BY_KUBELET,
    UNPROVEN,
    all_panels,
)
from tests.integration.kube import (
    CORE,
    HOST,
    ROOT,
    Cluster,
    create,
    patch,
    running_apiserver,
    write_kubeconfig,
)
from tests.integration.kubenode import NODE_NAME, Node, node_assets, running_node
from tests.integration.pipeline import EdgeMetrics, Worker, create_topics, free_port

DEADLINE_S = 150
TARGET_BASE = ROOT / "infra" / "k8s" / "target" / "base"
#: The target overlay's jobs that scrape every node's kubelet.
KUBELET_JOBS = ("kubelet", "cadvisor")
#: Where a pod finds its service account's token: what the overlay's jobs read.
IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
EDGE_NAMESPACE = "ferryman-edge"
SHIPPER_ACCOUNT = "ferryman-edge-metrics"


def test_every_panel_is_proven_once_or_has_a_reason() -> None:
    for dashboard, titles in all_panels().items():
        sets = [
            set(PROVEN.get(dashboard, ())),
            set(PROVEN_BY_KUBELET.get(dashboard, ())),
            set(UNPROVEN.get(dashboard, {})),
        ]
        assert sum(len(s) for s in sets) == len(set().union(*sets)), dashboard
        assert titles == set().union(*sets), dashboard
        # What the two-cluster test reads: everything it does not prove, with why.
        assert set(NOT_PROVEN.get(dashboard, {})) == titles - sets[0], dashboard


@dataclass(frozen=True)
class KubeletNode:
    cluster: Cluster
    node: Node
    namespace: str
    token_file: Path
    kubeconfig: Path


def _target_rbac(api: httpx.Client) -> None:
    """The overlay's namespace, the shipper's service account and what it may read,
    from ``rbac.yaml``."""
    create(api, f"{CORE}/namespaces", {"metadata": {"name": EDGE_NAMESPACE}})
    docs = [d for d in yaml.safe_load_all((TARGET_BASE / "rbac.yaml").read_text()) if d]
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    wanted = {
        ("ServiceAccount", SHIPPER_ACCOUNT): f"{CORE}/namespaces/{EDGE_NAMESPACE}/serviceaccounts",
        ("ClusterRole", "ferryman-edge-discovery"): f"{rbac}/clusterroles",
        ("ClusterRoleBinding", SHIPPER_ACCOUNT): f"{rbac}/clusterrolebindings",
    }
    found = [d for d in docs if (d["kind"], d["metadata"]["name"]) in wanted]
    assert len(found) == len(wanted), "rbac.yaml changed: update the test"
    for doc in found:
        create(api, wanted[doc["kind"], doc["metadata"]["name"]], doc)


def _token(api: httpx.Client, account: str) -> str:
    """A token of ``account`` (in the overlay's namespace), as kubelet projects one into
    a pod of that account."""
    response = api.post(
        f"{CORE}/namespaces/{EDGE_NAMESPACE}/serviceaccounts/{account}/token",
        json={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["status"]["token"]
    return token


def _kubelet_answers(node: Node, token: str | None) -> int:
    """The status of a /metrics/cadvisor request to kubelet with ``token`` (or none)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    url = f"https://{HOST}:{node.port}/metrics/cadvisor"
    return httpx.get(url, headers=headers, verify=False, timeout=30).status_code


def _publish_address(api: httpx.Client) -> None:
    """The addresses kubelet would publish were its node IP not loopback."""
    path = f"{CORE}/nodes/{NODE_NAME}/status"
    addresses = [
        {"type": "InternalIP", "address": HOST},
        {"type": "Hostname", "address": NODE_NAME},
    ]
    patch(api, path, {"status": {"addresses": addresses}})


def _run_pod(api: httpx.Client, namespace: str, image: str) -> None:
    """A pod whose one container runs until the node stops; waits until it runs."""
    create(api, f"{CORE}/namespaces", {"metadata": {"name": namespace}})
    pod = {
        "metadata": {"name": "usage", "namespace": namespace},
        "spec": {
            "nodeName": NODE_NAME,  # no scheduler runs
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never"}],
        },
    }
    create(api, f"{CORE}/namespaces/{namespace}/pods", pod)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = api.get(f"{CORE}/namespaces/{namespace}/pods/usage").json()["status"]
        if status.get("phase") == "Running":
            return
        time.sleep(0.5)
    pytest.fail(f"pod usage not running after 120 s: {status}")


@pytest.fixture
def kubelet_node(tmp_path_factory: pytest.TempPathFactory, unique: str) -> Iterator[KubeletNode]:
    # A short folder: containerd's sockets must fit in 104 bytes.
    workdir = tmp_path_factory.mktemp("kube")
    with (
        running_apiserver(workdir) as cluster,
        running_node(cluster, workdir / "node", authenticate=True, cadvisor=True) as node,
    ):
        namespace = f"proof-{unique}"
        with cluster.http() as api:
            _target_rbac(api)
            token = _token(api, SHIPPER_ACCOUNT)
            _publish_address(api)
            _run_pod(api, namespace, (node_assets() / "pause.ref").read_text().strip())
        token_file = workdir / "shipper.token"
        token_file.write_text(token)
        kubeconfig = workdir / "shipper.kubeconfig"
        write_kubeconfig(kubeconfig, cluster.server, cluster.ca_file, token)
        yield KubeletNode(cluster, node, namespace, token_file, kubeconfig)


def kubelet_jobs(token_file: Path, kubeconfig: Path) -> list[dict[str, Any]]:
    """The target overlay's ``kubelet`` and ``cadvisor`` jobs as they are, but for a
    shipper outside the cluster: the token from ``token_file``, discovery through
    ``kubeconfig``."""
    config = yaml.safe_load((TARGET_BASE / "edge-metrics.yaml").read_text())
    jobs = [copy.deepcopy(j) for j in config["scrape_configs"] if j["job_name"] in KUBELET_JOBS]
    assert [j["job_name"] for j in jobs] == list(KUBELET_JOBS)
    for job in jobs:
        assert job["bearer_token_file"] == IN_CLUSTER_TOKEN, job
        job["bearer_token_file"] = str(token_file)
        job["kubernetes_sd_configs"] = [
            {**sd, "kubeconfig_file": str(kubeconfig)} for sd in job["kubernetes_sd_configs"]
        ]
    return jobs


def _shipper(stack: Any, tmp: Path, topic: str, cluster: str, kube: KubeletNode) -> EdgeMetrics:
    return EdgeMetrics(
        tmp,
        {
            "global": {
                "scrape_interval": "2s",
                "scrape_timeout": "2s",
                "external_labels": {"cluster": cluster},
            },
            "scrape_configs": kubelet_jobs(kube.token_file, kube.kubeconfig),
            "ferryman": {
                "kafka": {"bootstrap_servers": stack("kafka", "bootstrap"), "topic": topic},
                "buffer": {"directory": str(tmp / f"buffer-{cluster}")},
                "listen": f"127.0.0.1:{free_port()}",
                "flush_interval": "200ms",
            },
        },
    )


def _worker(stack: Any, tmp: Path, topic: str, store: str) -> Worker:
    return Worker(
        tmp,
        "prometheus_remote_write",
        {
            "kafka": {
                "bootstrap_servers": stack("kafka", "bootstrap"),
                "input_topic": topic,
                "group_id": f"g-{topic}-{store}",
                "dead_letter_topic": f"{topic}-dlq",
            },
            "batch": {"max_wait_s": 0.2},
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "config": {"url": stack(store, "remote_write")},
        },
    )


def _instant(base: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{base}/api/v1/query", data={"query": expr}, timeout=30)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _missing(stack: Any, clusters: tuple[str, str], namespace: str) -> list[str]:
    """Per store: every proven panel query lacking a cluster or, for a cluster, the
    pod's namespace; and every kubelet job of a cluster whose target is not up."""
    now = time.time()
    time_range = Range(now - 300, now)
    out: list[str] = []
    for backend in BACKENDS:
        base = stack(backend, "http")
        for dashboard, titles in PROVEN_BY_KUBELET.items():
            for query in prometheus_queries(f"{dashboard}.json"):
                if query.panel not in titles:
                    continue
                selected = {n: [ALL] for n, v in query.variables.items() if v["type"] == "query"}
                selected["cluster"] = list(clusters)
                status, body, expr = query_range(base, query, time_range, selected)
                assert status == 200 and body["status"] == "success", (backend, expr, body)
                seen: dict[str, set[str]] = {}
                for series in body["data"]["result"]:
                    if series["values"]:
                        labels = series["metric"]
                        seen.setdefault(labels.get("cluster", ""), set()).add(
                            labels.get("namespace", "")
                        )
                found = sorted((c, sorted(n)) for c, n in seen.items())
                for cluster in clusters:
                    if namespace not in seen.get(cluster, set()):
                        out.append(
                            f"{backend} {query.name}: no {namespace} for {cluster} "
                            f"(clusters and namespaces: {found})"
                        )
        up = _instant(base, f'up{{cluster=~"{"|".join(clusters)}"}} == 1')
        targets = {(s["metric"].get("cluster"), s["metric"].get("job")) for s in up}
        for cluster in clusters:
            for job in KUBELET_JOBS:
                if (cluster, job) not in targets:
                    out.append(f"{backend}: job {job} of {cluster} not up")
    return out


@pytest.mark.integration
def test_container_usage_panels_show_a_real_kubelet_for_both_clusters(
    stack: Any, unique: str, tmp_path: Path, kubelet_node: KubeletNode, processes: Any
) -> None:
    # kubelet_node before processes: the shippers stop before the API server they watch.
    topic = f"{unique}-kubelet"
    create_topics(stack("kafka", "bootstrap"), (topic, 2), (f"{topic}-dlq", 1))
    clusters = (f"alpha-{unique}", f"beta-{unique}")
    for store in BACKENDS:
        processes(_worker(stack, tmp_path, topic, store)).wait_ready()
    for cluster in clusters:
        processes(_shipper(stack, tmp_path, topic, cluster, kubelet_node))

    # kubelet answers only through the grant: nobody, nor an account without it.
    node = kubelet_node.node
    with kubelet_node.cluster.http() as api:
        accounts = f"{CORE}/namespaces/{EDGE_NAMESPACE}/serviceaccounts"
        create(api, accounts, {"metadata": {"name": "no-grant"}})
        other = _token(api, "no-grant")
    assert _kubelet_answers(node, None) == 401
    assert _kubelet_answers(node, other) == 403
    assert _kubelet_answers(node, kubelet_node.token_file.read_text()) == 200

    deadline = time.monotonic() + DEADLINE_S
    missing = _missing(stack, clusters, kubelet_node.namespace)
    while missing and time.monotonic() < deadline:
        time.sleep(3)
        missing = _missing(stack, clusters, kubelet_node.namespace)
    assert missing == [], (
        f"after {DEADLINE_S}s:\n"
        + "\n".join(missing)
        + "\nkubelet log tail:\n"
        + kubelet_node.node.kubelet_log.read_text()[-3000:]
    )
    # kubelet's own status updates (every 2 s here) left the written address alone.
    with kubelet_node.cluster.http() as api:
        status = api.get(f"{CORE}/nodes/{NODE_NAME}").json()["status"]
    assert {"type": "InternalIP", "address": HOST} in status["addresses"]
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == node.port
