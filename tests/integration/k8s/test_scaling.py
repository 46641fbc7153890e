"""KEDA scales a function on real Kafka lag, and the real image drains it, on a real node.

Everything here is the real program: kube-apiserver with the aggregation layer,
kube-controller-manager (deployment, replicaset and HPA controllers), KEDA's operator
and metrics adapter (v2.21.0, built from its Go module), a kubelet with containerd
and runc (``tests/integration/kubenode.py``), the ``prometheus_remote_write`` image
built by ``infra/images``, the stack's Kafka and Prometheus. No scheduler runs: the
test overlay binds the pods to the node by ``nodeName``.

The overlay is the central base's ``common`` and the function's folder, as an
operator's overlay would list them, with a test patch: the node's name, host
networking (loopback only), ``imagePullPolicy: Never`` (the image was imported into
containerd), an HTTP port of 0 with no container port and no probes (two replicas
share the host's ports on one node), the test's own topic, and KEDA's and the HPA's
timers shortened (polling 1 s, cooldown 15 s) so the test takes minutes rather than
a quarter of an hour.

The scale-from-zero test runs over the stack's SASL_SSL listener with the component
``central/kafka-sasl-ssl``: KEDA's Kafka scaler (through the TriggerAuthentication)
and the workers (the Secret mounted as files) both log in with SCRAM-SHA-512 over TLS.

Measured and printed (the README quotes them): scale-from-zero latency, from the lag
produced to the first record delivered (committed after Prometheus acknowledged),
and the throughput of two replicas on a two-partition topic against one.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaAdminClient

from tests.integration.keda import Keda, running_keda
from tests.integration.kube import running_apiserver
from tests.integration.kubenode import Node, image_archive, image_ref, running_node
from tests.integration.pipeline import (
    committed_by_partition,
    committed_total,
    create_topics,
    produce,
    remote_write,
    series_ids,
    time_series,
    wait_for,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CENTRAL = ROOT / "infra" / "k8s" / "central"
FUNCTION = "prometheus_remote_write"
WORKLOAD = "ferryman-prometheus-remote-write"
IMAGE = "ferryman-worker-prometheus-remote-write"
GROUP = f"ferryman-{FUNCTION}"  # the worker's default, as the ScaledObject names it
PARTITIONS = 2
BACKLOG = 20_000  # records drained for a throughput figure


class Platform:
    """The running programs a test drives: kubectl against the API server, the node."""

    def __init__(self, keda: Keda, node: Node) -> None:
        self.keda = keda
        self.node = node

    def kubectl(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.keda.kubectl), "--kubeconfig", str(self.keda.kubeconfig), *args],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}:\n{done.stderr}"
        return done.stdout

    def replicas(self) -> tuple[int, int]:
        """The Deployment's desired and ready replicas."""
        deployment = json.loads(
            self.kubectl("-n", "ferryman", "get", "deployment", WORKLOAD, "-o", "json")
        )
        return deployment["spec"].get("replicas", 0), deployment["status"].get("readyReplicas", 0)

    def pods(self) -> list[str]:
        """The function's pods that exist (running, starting or terminating)."""
        selector = f"app.kubernetes.io/instance={WORKLOAD}"
        listed = json.loads(
            self.kubectl("-n", "ferryman", "get", "pods", "-l", selector, "-o", "json")
        )
        return [pod["metadata"]["name"] for pod in listed["items"]]

    def idle(self) -> bool:
        """At zero: no replica wanted and no pod left."""
        return self.replicas() == (0, 0) and not self.pods()

    def wait(self, check: Callable[[], object], timeout: float, what: str) -> None:
        """:func:`wait_for`, failing with the cluster's state and the programs' logs."""
        try:
            wait_for(check, timeout, what)
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n{self.why()}") from None

    def why(self) -> str:
        """Everything useful when a wait fails: objects, events, the programs' logs."""
        return "\n".join(
            [
                self.kubectl("-n", "ferryman", "get", "all,scaledobject,hpa", "-o", "wide"),
                self.kubectl("-n", "ferryman", "get", "events", "--sort-by=.lastTimestamp"),
                self.keda.log_tails(2000),
            ]
        )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """API server, controllers, KEDA and a node with the function's image imported."""
    work = tmp_path_factory.mktemp("scaling")
    archive = image_archive(IMAGE)
    with contextlib.ExitStack() as running:
        cluster = running.enter_context(running_apiserver(work / "api", aggregation=True))
        keda = running.enter_context(running_keda(cluster, work / "keda"))
        node = running.enter_context(running_node(cluster, work / "node"))
        node.import_image(archive)
        yield Platform(keda, node)


def _patch(target: dict[str, str], *operations: tuple[str, str, Any]) -> dict[str, Any]:
    """A JSON 6902 patch of kustomize: (op, path, value) operations on ``target``."""
    ops = [
        {"op": op, "path": path, **({} if op == "remove" else {"value": value})}
        for op, path, value in operations
    ]
    return {"target": target, "patch": json.dumps(ops)}


def _overlay(directory: Path, node: Node, topic: str, stack: Any, *, secure: bool) -> Path:
    """The test overlay (see the module docstring) in ``directory``; ``secure``: over
    the stack's SASL_SSL listener, with the component ``central/kafka-sasl-ssl`` and a
    Secret holding the stack's CA and SCRAM user, as an operator's overlay would."""
    directory.mkdir(parents=True, exist_ok=True)
    folder = CENTRAL / "functions" / "prometheus-remote-write"
    settings = yaml.safe_load((folder / f"{FUNCTION}.yaml").read_text())
    settings["kafka"]["input_topic"] = topic
    settings["http"]["listen"] = "127.0.0.1:0"
    settings["config"]["url"] = stack("prometheus", "remote_write")
    settings["batch"] = {"max_records": 20, "max_wait_s": 0.2}
    (directory / f"{FUNCTION}.yaml").write_text(yaml.safe_dump(settings))
    if secure:
        bootstrap = stack("kafka", "sasl_bootstrap")
        password = Path(stack("kafka", "sasl_password_file")).read_text().strip()
        auth = f"sasl=scram_sha512\ntls=enable\nusername={stack('kafka', 'sasl_username')}\n"
        (directory / "kafka-auth.env").write_text(f"{auth}password={password}\n")
        (directory / "ca.crt").write_text(Path(stack("kafka", "ca_file")).read_text())
    else:
        bootstrap = stack("kafka", "bootstrap")
        (directory / "kafka-auth.env").write_text("sasl=none\ntls=disable\nusername=\npassword=\n")
        (directory / "ca.crt").write_text("")
    name, _, image_tag = image_ref(IMAGE).rpartition(":")
    pod = "/spec/template/spec"
    worker = f"{pod}/containers/0"
    hpa = "/spec/advanced/horizontalPodAutoscalerConfig/behavior"
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "ferryman",
        # kustomize takes no absolute path for a folder of resources.
        "resources": [os.path.relpath(path, directory) for path in (CENTRAL / "common", folder)],
        "configMapGenerator": [
            {
                "name": "ferryman-central",
                "behavior": "merge",
                "literals": [
                    f"kafka_bootstrap_servers={bootstrap}",
                    "redis_url=redis://127.0.0.1:6379/0",
                    "redis_address=127.0.0.1:6379",
                ],
            },
            {"name": f"{WORKLOAD}-config", "behavior": "replace", "files": [f"{FUNCTION}.yaml"]},
        ],
        "secretGenerator": [
            {
                "name": "ferryman-kafka-auth",
                "options": {"disableNameSuffixHash": True},
                "envs": ["kafka-auth.env"],
                "files": ["ca.crt"],
            }
        ],
        "images": [{"name": IMAGE, "newName": name, "newTag": image_tag}],
        "patches": [
            _patch(
                {"kind": "Deployment", "labelSelector": "app.kubernetes.io/name=ferryman-worker"},
                ("add", f"{pod}/nodeName", node.name),
                ("add", f"{pod}/hostNetwork", True),
                ("add", f"{pod}/dnsPolicy", "ClusterFirstWithHostNet"),
                ("replace", f"{worker}/imagePullPolicy", "Never"),
                # On the host network a container port is a host port, which two
                # replicas on one node cannot share (kubelet refuses the second).
                ("remove", f"{worker}/ports", None),
                ("remove", f"{worker}/startupProbe", None),
                ("remove", f"{worker}/livenessProbe", None),
                ("remove", f"{worker}/readinessProbe", None),
            ),
            # Host networking is beyond the restricted Pod Security Standard the
            # namespace enforces.
            _patch(
                {"kind": "Namespace", "name": "ferryman"},
                ("replace", "/metadata/labels/pod-security.kubernetes.io~1enforce", "privileged"),
            ),
            _patch(
                {"kind": "ScaledObject", "name": WORKLOAD},
                ("replace", "/spec/pollingInterval", 1),
                ("replace", "/spec/cooldownPeriod", 15),
                ("replace", "/spec/maxReplicaCount", PARTITIONS),
                ("replace", "/spec/triggers/0/metadata/topic", topic),
                ("replace", f"{hpa}/scaleUp/policies/0/periodSeconds", 1),
                ("replace", f"{hpa}/scaleUp/policies/1/periodSeconds", 1),
                ("replace", f"{hpa}/scaleDown/stabilizationWindowSeconds", 5),
                ("replace", f"{hpa}/scaleDown/policies/0/periodSeconds", 1),
            ),
        ],
    }
    if secure:
        kustomization["components"] = [os.path.relpath(CENTRAL / "kafka-sasl-ssl", directory)]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


def _messages(metric: str, count: int, series: int, first: int = 0) -> list[Any]:
    """``count`` remote-write records of ``series`` series each, keyed round the
    partitions; series ids ``first`` ... ``first + count * series - 1``."""
    now = int(time.time() * 1000)
    return [
        remote_write(
            [
                time_series({"__name__": metric, "sid": str(first + m * series + i)}, (1.0, now))
                for i in range(series)
            ],
            key=str(m).encode(),
        )
        for m in range(count)
    ]


def _deploy(
    platform: Platform, stack: Any, topic: str, directory: Path, *, secure: bool = False
) -> None:
    """The overlay for ``topic`` applied, and the function at zero."""
    create_topics(stack("kafka", "bootstrap"), (topic, PARTITIONS))
    overlay = _overlay(directory, platform.node, topic, stack, secure=secure)
    platform.kubectl("apply", "--server-side", "-k", str(overlay))
    platform.wait(platform.idle, 120, "KEDA to scale the function to zero")


def test_keda_scales_from_zero_on_lag_and_back(
    platform: Platform, stack: Any, unique: str, tmp_path: Path
) -> None:
    bootstrap = stack("kafka", "bootstrap")
    # KEDA's scaler and the workers both log in to Kafka over SASL_SSL, with the
    # Secret of the TriggerAuthentication.
    _deploy(platform, stack, unique, tmp_path / "overlay", secure=True)

    # Lag of several replicas' worth: KEDA activates the Deployment, the HPA takes it up
    # to the partition count and no further.
    metric = f"scaled_{unique}"
    count, series = 8000, 10
    seen: set[int] = set()

    def committed() -> int:
        seen.add(platform.replicas()[0])
        return committed_total(bootstrap, GROUP, unique)

    messages = _messages(metric, count, series)
    produce(bootstrap, unique, messages[:1])  # acknowledged: the lag is there
    lag_appeared = time.monotonic()
    produce(bootstrap, unique, messages[1:])
    platform.wait(lambda: committed() > 0, 180, "the first record delivered")
    first_delivered = time.monotonic() - lag_appeared
    platform.wait(lambda: committed() == count, 300, "every record delivered")
    drained = time.monotonic() - lag_appeared
    stored = series_ids(stack("prometheus", "http"), metric)
    assert stored == {str(i) for i in range(count * series)}
    assert max(seen) == PARTITIONS, f"replicas seen: {sorted(seen)}"

    # Nothing left: back to zero once the cooldown has passed.
    idle = time.monotonic()
    platform.wait(platform.idle, 180, "the function back at zero")
    to_zero = time.monotonic() - idle
    print(
        f"\nscale from zero: first record delivered {first_delivered:.1f} s after the lag "
        f"appeared; {count} records drained in {drained:.1f} s with up to {max(seen)} "
        f"replicas; back at zero {to_zero:.1f} s after the last commit (cooldown 15 s)"
    )


def _hold(platform: Platform, replicas: int) -> None:
    """KEDA keeps the function at ``replicas`` until told otherwise; returns once
    KEDA says the ScaledObject is paused."""
    platform.kubectl(
        "-n", "ferryman", "annotate", "--overwrite", "scaledobject", WORKLOAD,
        f"autoscaling.keda.sh/paused-replicas={replicas}",
    )  # fmt: skip

    def paused() -> bool:
        found = json.loads(
            platform.kubectl("-n", "ferryman", "get", "scaledobject", WORKLOAD, "-o", "json")
        )
        conditions = found.get("status", {}).get("conditions", [])
        return any(c["type"] == "Paused" and c["status"] == "True" for c in conditions)

    platform.wait(paused, 60, f"KEDA to hold the function at {replicas}")


def _members(bootstrap: str) -> int:
    """How many members the function's group has once it is stable (-1 before)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        group = admin.describe_groups([GROUP])[GROUP]
    finally:
        admin.close()
    return len(group["members"]) if group["group_state"] == "Stable" else -1


def _drain_rate(platform: Platform, bootstrap: str, topic: str, replicas: int) -> float:
    """Records per second that ``replicas`` replicas commit of a backlog of
    :data:`BACKLOG` records, from the moment their group is stable over the next half of
    what is left; the function is at zero again at the end. Each replica must have
    done its share: every partition's committed offset moves during the measurement."""
    # Held at zero while the backlog is produced: otherwise KEDA would scale on it
    # before being told how many replicas to use.
    _hold(platform, 0)
    before = committed_total(bootstrap, GROUP, topic)
    produce(bootstrap, topic, _messages(f"rate_{topic}", BACKLOG, 10, before * 10))
    _hold(platform, replicas)
    platform.wait(lambda: _members(bootstrap) == replicas, 120, f"{replicas} in the group")
    start = committed_by_partition(bootstrap, GROUP, topic)
    started = time.monotonic()
    left = before + BACKLOG - sum(start.values())
    assert left >= BACKLOG / 2, f"only {left} records left once the group was stable"
    platform.wait(
        lambda: committed_total(bootstrap, GROUP, topic) >= sum(start.values()) + left / 2,
        300,
        f"half the backlog committed by {replicas} replica(s)",
    )
    end = committed_by_partition(bootstrap, GROUP, topic)
    rate = (sum(end.values()) - sum(start.values())) / (time.monotonic() - started)
    moved = {p for p in range(PARTITIONS) if end.get(p, 0) > start.get(p, 0)}
    assert moved == set(range(PARTITIONS)), f"committed before {start}, after {end}"
    assert platform.replicas()[0] == replicas
    platform.wait(
        lambda: committed_total(bootstrap, GROUP, topic) == before + BACKLOG,
        300,
        "the whole backlog committed",
    )
    _hold(platform, 0)
    platform.wait(platform.idle, 120, "the function back at zero")
    return rate


def test_two_replicas_share_a_two_partition_topic(
    platform: Platform, stack: Any, unique: str, tmp_path: Path
) -> None:
    """The same backlog drained by KEDA's replicas held at 1, then at 2 (the
    ``paused-replicas`` annotation): two replicas form one stable group of two, and
    both partitions progress while they drain it.

    The throughput of each is measured and printed, not asserted (speed is measured in
    benchmarks, not timed in tests): on this 2-core machine the replicas share the
    cores with Prometheus, Kafka and the control plane, and runs gave 0.85x to 2.30x
    for two replicas against one."""
    bootstrap = stack("kafka", "bootstrap")
    _deploy(platform, stack, unique, tmp_path / "overlay")
    one, two = (_drain_rate(platform, bootstrap, unique, n) for n in (1, 2))
    print(
        f"\nthroughput: 1 replica {one:.0f} records/s, 2 replicas {two:.0f} records/s "
        f"({two / one:.2f}x), records of 10 series to Prometheus"
    )
