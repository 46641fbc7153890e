"""The kustomize manifests (infra/k8s) against real programs.

- ``kubectl kustomize`` renders every base and overlay (kubectl v1.37.2, built from
  the k8s.io/kubernetes module by infra/local/build/kubectl.sh);
- ``kubectl apply --server-side --dry-run=server`` of each overlay against a real
  kube-apiserver with KEDA's CRDs (v2.21.0) installed, so ScaledObjects and
  TriggerAuthentications meet KEDA's schema and CEL rules, and PodSecurity admission
  judges every pod template (no warning in the central namespace, warnings only for
  the two workloads that need more than restricted at the edge);
- the settings files the overlays ship are loaded by the programs that read them
  (worker, metrics shipper, log shipper, traces receiver) with the environment the pods get;
- checkov, with the exceptions of infra/k8s/policy-exceptions.yaml and nothing else;
- infra/k8s/central/functions is what infra/k8s/generate.py writes today.

The tools are installed by the same scripts ``ferryman stack up`` runs (service
``kube-tools``); a tool that cannot be installed fails the tests, nothing skips.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.gateway.auth import Authenticator
from edge.gateway.config import load_config as load_gateway_config
from edge.gateway.config import load_tenants
from edge.logs.config import load_config as load_logs_config
from edge.metrics.config import load_config as load_metrics_config
from edge.traces.config import load_config as load_traces_config
from functions.registry import load, names
from infra.k8s import generate
from infra.local.catalogue import KAFKA_TOPICS
from infra.local.paths import default_layout
from tests.integration.kube import Cluster, built, running_apiserver
from workers.main import prepare
from workers.settings import RetryLaneSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "infra" / "k8s"
CENTRAL = K8S / "central" / "overlays" / "example"
TARGET = K8S / "target" / "overlays" / "prod-eu-1"
OVERLAYS = [CENTRAL, TARGET]
BASES = [K8S / "central" / "base", K8S / "target" / "base"]
WORKLOADS = {"Deployment", "DaemonSet", "StatefulSet"}
#: What may use more than the restricted Pod Security Standard, and where.
BEYOND_RESTRICTED = {
    ("ferryman-edge", "DaemonSet", "ferryman-edge-logs"),
    ("ferryman-edge", "DaemonSet", "node-exporter"),
}


@pytest.fixture(scope="module")
def tools() -> dict[str, Path]:
    """kubectl, KEDA's CRDs and checkov, installed (or found up to date) as
    ``ferryman stack up`` installs them."""
    layout = default_layout()
    return {
        "kubectl": built("kubectl.sh", layout.bin / "kubectl"),
        "crds": built("keda-crds.sh", layout.opt / "keda-crds"),
        "checkov": built("checkov.sh", layout.opt / "checkov") / "bin" / "checkov",
    }


def _run(argv: list[Any], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)


def _render(tools: dict[str, Path], path: Path) -> str:
    done = _run([tools["kubectl"], "kustomize", path])
    assert done.returncode == 0, f"kubectl kustomize {path}:\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def rendered(tools: dict[str, Path]) -> dict[Path, list[dict[str, Any]]]:
    return {
        path: [d for d in yaml.safe_load_all(_render(tools, path)) if d]
        for path in OVERLAYS + BASES
    }


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: found {len(found)}"
    return found[0]


def _configmap(docs: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The generated ConfigMap called ``prefix`` (its name carries a hash suffix)."""
    found = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].rsplit("-", 1)[0] == prefix
    ]
    assert len(found) == 1, f"ConfigMap {prefix}-<hash>: found {len(found)}"
    return found[0]


# --- the generator --------------------------------------------------------------------


def test_generated_manifests_are_current() -> None:
    assert generate.stale() == [], "run: python -m infra.k8s.generate"


# --- rendering -------------------------------------------------------------------------


@pytest.mark.parametrize("path", OVERLAYS + BASES, ids=lambda p: str(p.relative_to(K8S)))
def test_renders(rendered: dict[Path, list[dict[str, Any]]], path: Path) -> None:
    kinds = {d["kind"] for d in rendered[path]}
    assert {"Namespace", "ConfigMap", "Deployment"} <= kinds


def test_every_function_is_deployed_and_scaled_on_its_own_group(
    rendered: dict[Path, list[dict[str, Any]]],
) -> None:
    docs = rendered[CENTRAL]
    for name in names():
        spec, dns = load(name), name.replace("_", "-")
        workload = f"ferryman-{dns}"
        deployment = _find(docs, "Deployment", workload)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"ferryman-worker-{dns}:0.1.0"
        assert container["args"] == ["worker", name, "--config", f"/etc/ferryman/{name}.yaml"]
        settings = yaml.safe_load(_configmap(docs, f"{workload}-config")["data"][f"{name}.yaml"])
        scaled = _find(docs, "ScaledObject", workload)["spec"]
        (trigger,) = scaled["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == f"ferryman-{name}"  # the worker's default
        assert trigger["metadata"]["topic"] == settings["kafka"]["input_topic"]
        assert scaled["minReplicaCount"] == 0
        assert scaled["maxReplicaCount"] <= KAFKA_TOPICS[settings["kafka"]["input_topic"]]
        assert "behavior" in scaled["advanced"]["horizontalPodAutoscalerConfig"]
        _find(docs, "Service", workload)
        _find(docs, "PodDisruptionBudget", workload)
        if spec.kind == "sink":
            lane = RetryLaneSettings(redis_url="redis://x:6379/0")
            retry = _find(docs, "ScaledObject", f"{workload}-retry-lane")["spec"]
            lists = {t["metadata"]["listName"] for t in retry["triggers"]}
            queue = f"{lane.namespace}:{lane.queue_for(name)}"
            assert lists == {queue, f"{queue}.DQ"}
            _find(docs, "PodDisruptionBudget", f"{workload}-retry-lane")


def _secret(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    data = _find(docs, "Secret", name)["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def _pod_env(
    docs: list[dict[str, Any]], pod: dict[str, Any], container: dict[str, Any], root: Path
) -> dict[str, str]:
    """The container's environment as the kubelet gives it: values, ConfigMap and
    Secret keys. Secret volumes are written under ``root`` as the kubelet mounts them,
    and a variable naming a file in one points at ``root``'s copy."""
    mounts: dict[str, Path] = {}
    for volume in pod["volumes"]:
        if "secret" not in volume:
            continue
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        local = root / volume["name"]
        local.mkdir(parents=True, exist_ok=True)
        data = _secret(docs, volume["secret"]["secretName"])
        items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            (local / item["path"]).write_text(data[item["key"]])
        mounts[mount["mountPath"]] = local
    env = {}
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[var["name"]] = _find(docs, "ConfigMap", ref["name"])["data"][ref["key"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[var["name"]] = _secret(docs, ref["name"])[ref["key"]]
        elif "value" in var:
            value = var["value"]
            for mount_path, local in mounts.items():
                if value.startswith(mount_path + "/"):
                    value = str(local / value[len(mount_path) + 1 :])
            env[var["name"]] = value
    return env


def _check_kafka_login(kafka: Any, secret: dict[str, str]) -> None:
    """A Kafka section as the example overlays secure it: SASL_SSL with the Secret's
    user, its password read from the mounted file, the CA file mounted."""
    assert kafka.security_protocol == "SASL_SSL"
    assert kafka.sasl.mechanism == "SCRAM-SHA-512"
    assert kafka.sasl.username == secret["username"]
    assert kafka.sasl.password().get_secret_value() == secret["password"]
    assert kafka.ssl.ca_file.read_text() == secret["ca.crt"]


def test_worker_settings_load_as_the_pods_get_them(
    rendered: dict[Path, list[dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = rendered[CENTRAL]
    workers = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"].get("app.kubernetes.io/name") == "ferryman-worker"
    ]
    assert len(workers) == len(names()) + sum(load(n).kind == "sink" for n in names())
    for deployment in workers:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        name, config_path = container["args"][1], Path(container["args"][-1])
        (volume,) = [v for v in pod["volumes"] if "configMap" in v]
        data = _find(docs, "ConfigMap", volume["configMap"]["name"])["data"]
        path = tmp_path / config_path.name
        path.write_text(data[config_path.name])
        with monkeypatch.context() as env:
            for key, value in _pod_env(docs, pod, container, tmp_path / name).items():
                env.setenv(key, value)
            settings, _, _ = prepare(load, name, path)
            _check_kafka_login(settings.kafka, _secret(docs, "ferryman-kafka-auth"))
        bootstrap = _configmap(docs, "ferryman-central")["data"]["kafka_bootstrap_servers"]
        assert settings.kafka.bootstrap_servers == bootstrap
        if "--retry-lane" in container["args"]:
            assert settings.retry_lane is not None
            assert settings.retry_lane.redis_url.startswith("redis://redis-master.redis.svc")


def test_shipper_configs_carry_the_overlays_cluster_once(
    rendered: dict[Path, list[dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = rendered[TARGET]
    cluster = _configmap(docs, "ferryman-cluster")["data"]
    assert cluster["cluster"] == "prod-eu-1"
    metrics_file = tmp_path / "edge-metrics.yaml"
    metrics_file.write_text(
        _configmap(docs, "ferryman-edge-metrics-config")["data"]["edge-metrics.yaml"]
    )
    logs_file = tmp_path / "edge-logs.yaml"
    logs_file.write_text(_configmap(docs, "ferryman-edge-logs-config")["data"]["edge-logs.yaml"])
    traces_file = tmp_path / "edge-traces.yaml"
    traces_file.write_text(
        _configmap(docs, "ferryman-edge-traces-config")["data"]["edge-traces.yaml"]
    )
    secret = _secret(docs, "ferryman-kafka-client")
    loaded: dict[str, Any] = {}
    for kind, name, read in (
        ("Deployment", "ferryman-edge-metrics", lambda: load_metrics_config(metrics_file)),
        ("DaemonSet", "ferryman-edge-logs", lambda: load_logs_config(logs_file, expand_env=True)),
        ("Deployment", "ferryman-edge-traces", lambda: load_traces_config(traces_file)),
    ):
        pod = _find(docs, kind, name)["spec"]["template"]["spec"]
        (container,) = [c for c in pod["containers"] if c["name"] == "shipper"]
        with monkeypatch.context() as env:
            for key, value in _pod_env(docs, pod, container, tmp_path / name).items():
                env.setenv(key, value)
            env.setenv("NODE_NAME", "node-7")  # the log shipper's, from spec.nodeName
            loaded[name] = read()
            _check_kafka_login(loaded[name].ferryman.kafka, secret)
    metrics, logs = loaded["ferryman-edge-metrics"], loaded["ferryman-edge-logs"]
    for config in (metrics, logs):
        assert config.global_.external_labels == {"cluster": "prod-eu-1"}
        assert config.ferryman.kafka.bootstrap_servers == cluster["kafka_bootstrap_servers"]
    traces = loaded["ferryman-edge-traces"]
    assert traces.resource_attributes() == {"k8s.cluster.name": "prod-eu-1"}
    assert traces.ferryman.kafka.bootstrap_servers == cluster["kafka_bootstrap_servers"]
    # The Service sends OTLP to the ports the receiver listens on.
    service = _find(docs, "Service", "ferryman-edge-traces")["spec"]["ports"]
    assert {p["name"]: p["port"] for p in service} == {
        "otlp-grpc": int(traces.ferryman.grpc.listen.rsplit(":", 1)[1]),
        "otlp-http": int(traces.ferryman.http.listen.rsplit(":", 1)[1]),
        "metrics": int(traces.ferryman.listen.rsplit(":", 1)[1]),
    }
    assert logs.ferryman.host == "node-7"
    # Never per job: no relabel rule writes the cluster label.
    for job in (*metrics.scrape_configs, *logs.scrape_configs):
        assert all(rule.target_label != "cluster" for rule in job.relabel_configs)
    assert "CHANGE-ME" not in metrics_file.read_text() + logs_file.read_text()
    assert "CHANGE-ME" not in traces_file.read_text()


def test_gateway_loads_its_settings_and_tenants_as_the_pod_gets_them(
    rendered: dict[Path, list[dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The central overlay's gateway: its settings file and the tenants Secret, mounted
    where the pod mounts them, load; it logs in to Kafka with the overlay's credentials;
    the example token authenticates its tenant; the Service targets its listeners."""
    docs = rendered[CENTRAL]
    pod = _find(docs, "Deployment", "ferryman-gateway")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config_path = Path(container["args"][-1])
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    settings = yaml.safe_load(
        _find(docs, "ConfigMap", volume["configMap"]["name"])["data"][config_path.name]
    )
    with monkeypatch.context() as env:
        for key, value in _pod_env(docs, pod, container, tmp_path).items():
            env.setenv(key, value)
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tenants"]
        tenants_file = Path(settings["tenants_file"])
        assert tenants_file.parent == Path(mount["mountPath"])
        settings["tenants_file"] = str(tmp_path / "tenants" / tenants_file.name)
        path = tmp_path / config_path.name
        path.write_text(yaml.safe_dump(settings))
        config = load_gateway_config(path)
        _check_kafka_login(config.kafka, _secret(docs, "ferryman-kafka-auth"))
    assert (
        config.kafka.bootstrap_servers
        == (_configmap(docs, "ferryman-central")["data"]["kafka_bootstrap_servers"])
    )
    tenants = load_tenants(config)
    assert {t.name for t in tenants} == {"team-payments", "team-search"}
    found = Authenticator(tenants).tenant("Bearer example-token-of-team-payments", None)
    assert found is not None and found.name == "team-payments"
    assert Authenticator(tenants).tenant("Bearer wrong", None) is None
    service = _find(docs, "Service", "ferryman-gateway")["spec"]["ports"]
    assert {p["name"]: p["port"] for p in service} == {
        "http": int(config.listen.rsplit(":", 1)[1]),
        "otlp-grpc": int((config.grpc_listen or "").rsplit(":", 1)[1]),
    }


# --- the real API server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_apiserver(tmp_path_factory.mktemp("kube")) as running:
        kubectl = [tools["kubectl"], "--kubeconfig", running.kubeconfig]
        done = _run([*kubectl, "apply", "--server-side", "-f", tools["crds"]])
        assert done.returncode == 0, done.stderr
        done = _run(
            [*kubectl, "wait", "--for", "condition=Established", "--timeout", "60s", "crd", "--all"]
        )
        assert done.returncode == 0, done.stderr
        yield running


def _dry_run(tools: dict[str, Path], cluster: Cluster, docs: list[dict[str, Any]]) -> str:
    """Server-side dry run of ``docs``; returns kubectl's warnings."""
    done = _run(
        [
            tools["kubectl"],
            "--kubeconfig",
            cluster.kubeconfig,
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=ferryman-test",
            "-f",
            "-",
        ],
        input=yaml.safe_dump_all(docs),
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.count("(server dry run)") == len(docs), done.stdout
    return done.stderr


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: str(p.relative_to(K8S)))
def test_server_side_dry_run(
    tools: dict[str, Path],
    cluster: Cluster,
    rendered: dict[Path, list[dict[str, Any]]],
    path: Path,
) -> None:
    docs = rendered[path]
    # Namespaced objects need their namespace to exist (a dry run creates nothing),
    # and its Pod Security labels must be in force: create the namespaces for real.
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    done = _run(
        [tools["kubectl"], "--kubeconfig", cluster.kubeconfig, "apply", "--server-side", "-f", "-"],
        input=yaml.safe_dump_all(namespaces),
    )
    assert done.returncode == 0, done.stderr

    others = [d for d in docs if d["kind"] not in WORKLOADS and d["kind"] != "Namespace"]
    assert _dry_run(tools, cluster, others).strip() == ""
    # One workload at a time, so each PodSecurity warning is known by its workload.
    beyond = set()
    for workload in (d for d in docs if d["kind"] in WORKLOADS):
        warnings = _dry_run(tools, cluster, [workload])
        key = (workload["metadata"]["namespace"], workload["kind"], workload["metadata"]["name"])
        if warnings.strip():
            assert "would violate PodSecurity" in warnings, warnings
            beyond.add(key)
    here = {n["metadata"]["name"] for n in namespaces}
    assert beyond == {key for key in BEYOND_RESTRICTED if key[0] in here}


# --- policy ------------------------------------------------------------------------------


def test_policy_check_with_listed_exceptions_only(tools: dict[str, Path], tmp_path: Path) -> None:
    exceptions = yaml.safe_load((K8S / "policy-exceptions.yaml").read_text())
    used: set[tuple[str, str]] = set()
    unexpected = []
    for path in OVERLAYS:
        manifest = tmp_path / f"{path.parent.parent.name}.yaml"
        manifest.write_text(_render(tools, path))
        done = _run(
            [
                tools["checkov"],
                "--file",
                manifest,
                "--framework",
                "kubernetes",
                "--output",
                "json",
                "--quiet",
                "--compact",
            ]
        )
        assert done.returncode in (0, 1), done.stderr
        report = json.loads(done.stdout)
        assert report["summary"]["passed"] > 0
        for failed in report["results"]["failed_checks"]:
            check, resource = failed["check_id"], failed["resource"]
            allowed = [
                (e["check"], pattern)
                for e in exceptions
                if e["check"] == check
                for pattern in e["resources"]
                if fnmatch.fnmatchcase(resource, pattern)
            ]
            if allowed:
                used.update(allowed)
            else:
                unexpected.append(f"{check} {failed['check_name']}: {resource}")
    assert unexpected == []
    listed = {(e["check"], p) for e in exceptions for p in e["resources"]}
    assert listed - used == set(), "exceptions nothing needs any more"
    assert all(e["why"].strip() for e in exceptions)
