"""KEDA and kube-controller-manager, the real programs, against a test API server.

``running_keda(cluster, workdir)`` takes a ``Cluster`` started with
``running_apiserver(workdir, aggregation=True)`` and runs, all on 127.0.0.1 and out of
cluster with the cluster's admin kubeconfig:

- kube-controller-manager with the controllers scaling needs (deployment,
  replicaset, horizontal pod autoscaler, garbage collector) and short HPA timers;
- KEDA's CRDs and its ``keda`` namespace;
- the KEDA operator (ScaledObject controller, scale to and from zero, the gRPC
  metrics service the adapter asks);
- KEDA's metrics adapter, the extension API server of ``external.metrics.k8s.io``,
  registered by an APIService whose Service is an ExternalName at ``localhost`` (no
  kube-proxy runs, so a ClusterIP would lead nowhere).

It yields once ``/apis/external.metrics.k8s.io/v1beta1`` answers through the API
server, and stops the programs in reverse order at the end. No scheduler runs: on
their own, replicas on Deployments and ReplicaSets change and their pods stay
Pending; with a node (``tests/integration/kubenode.py``) pods bound to it by
``nodeName`` run.

Binaries come from ``$FERRYMAN_HOME/bin`` (built by infra/local/build/keda.sh and
kube-controller-manager.sh when missing; a cold KEDA build takes many minutes).
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from infra.local.paths import default_layout
from tests.integration.kube import (
    HOST,
    Cluster,
    _stop,
    built,
    free_port,
    issue_cert,
    make_ca,
)

__all__ = ["CONTROLLERS", "Keda", "running_keda"]

NAMESPACE = "keda"
#: The Service the APIService names; the adapter's certificate carries its DNS name
#: because the aggregator checks the serving certificate against it.
ADAPTER_SERVICE = "keda-metrics-apiserver"
EXTERNAL_METRICS = "v1beta1.external.metrics.k8s.io"
#: What scaling needs of kube-controller-manager. A test with a real kubelet may add
#: more (the service-account controllers, node lifecycle) through running_keda().
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "horizontal-pod-autoscaler-controller",
    "garbage-collector-controller",
)
#: The HPA controller's period; the KCM default is 15 s.
HPA_SYNC_PERIOD = "2s"
#: How long the HPA controller keeps the highest recent recommendation before it
#: scales down; the KCM default is 5 min. A ScaledObject may set its own.
HPA_DOWNSCALE_STABILIZATION = "5s"


@dataclass(frozen=True)
class Keda:
    """What a test needs of the running programs."""

    kubectl: Path
    kubeconfig: Path
    logs: Path

    def log_tails(self, chars: int = 3000) -> str:
        """The end of every program's log, for an assertion message."""
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)


def make_keda_pki(directory: Path) -> None:
    """ca.crt, tls.crt and tls.key, as KEDA reads them from a ``--cert-dir``.

    The operator's gRPC metrics service and the adapter authenticate each other with
    this one certificate (mutual TLS, the file names are fixed), and the adapter
    serves the aggregated API with it too, hence both key usages and all the names.
    """
    make_ca(directory, "ca", "ferryman-test-keda-ca")
    issue_cert(
        directory,
        "tls",
        "keda",
        "ca",
        f"subjectAltName=IP:{HOST},DNS:localhost,"
        f"DNS:{ADAPTER_SERVICE}.{NAMESPACE}.svc,DNS:keda-operator.{NAMESPACE}.svc\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=digitalSignature,keyEncipherment\n",
    )


def controller_manager_command(
    binary: Path, cluster: Cluster, workdir: Path, controllers: Sequence[str] = CONTROLLERS
) -> list[str]:
    kubeconfig = cluster.kubeconfig
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--controllers={','.join(controllers)}",
        "--leader-elect=false",
        f"--bind-address={HOST}",
        f"--secure-port={free_port()}",
        # Its self-signed serving certificate goes here, not to /var/run/kubernetes.
        f"--cert-dir={workdir / 'kcm-certs'}",
        f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_PERIOD}",
        f"--horizontal-pod-autoscaler-downscale-stabilization={HPA_DOWNSCALE_STABILIZATION}",
        "--profiling=false",
    ]


def keda_environment(kubeconfig: Path) -> dict[str, str]:
    """What KEDA reads from its pod's environment; out of cluster it needs all of it."""
    return {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "WATCH_NAMESPACE": "",  # all namespaces
        "POD_NAMESPACE": NAMESPACE,
        # Otherwise read from the service-account mount, which does not exist here.
        "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
    }


def operator_command(
    binary: Path, certs: Path, ca_dir: Path, grpc_port: int, probe_port: int
) -> list[str]:
    return [
        str(binary),
        "--leader-elect=false",
        f"--metrics-bind-address={HOST}:{free_port()}",
        f"--health-probe-bind-address={HOST}:{probe_port}",
        f"--metrics-service-bind-address={HOST}:{grpc_port}",
        # We generate the certificates; rotation would write them to a Secret and
        # patch the APIService with its own CA.
        "--enable-cert-rotation=false",
        f"--cert-dir={certs}",
        f"--ca-dir={ca_dir}",
        "--zap-encoder=console",
    ]


def adapter_command(
    binary: Path, kubeconfig: Path, certs: Path, port: int, grpc_port: int
) -> list[str]:
    return [
        str(binary),
        f"--secure-port={port}",
        f"--bind-address={HOST}",
        # Also where the adapter finds its gRPC client certificate (ca.crt, tls.*).
        f"--cert-dir={certs}",
        f"--tls-cert-file={certs / 'tls.crt'}",
        f"--tls-private-key-file={certs / 'tls.key'}",
        f"--metrics-service-address={HOST}:{grpc_port}",
        f"--lister-kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        # Its Prometheus endpoint; the adapter binds it on every interface (":PORT")
        # and offers no address flag.
        f"--port={free_port()}",
        "--zap-encoder=console",
    ]


def external_metrics_objects(ca_file: Path, port: int) -> list[tuple[str, dict[str, Any]]]:
    """(API path, object): the ExternalName Service and the APIService routing
    external.metrics.k8s.io/v1beta1 to the adapter on ``localhost:port``."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE},
        "spec": {
            "type": "ExternalName",
            "externalName": "localhost",
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
    }
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": EXTERNAL_METRICS},
        "spec": {
            "group": "external.metrics.k8s.io",
            "version": "v1beta1",
            "service": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE, "port": port},
            "caBundle": base64.b64encode(ca_file.read_bytes()).decode(),
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    return [
        (f"/api/v1/namespaces/{NAMESPACE}/services", service),
        ("/apis/apiregistration.k8s.io/v1/apiservices", api_service),
    ]


class _Programs:
    """Started processes, stopped in reverse order."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Path:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            self._started.append((name, subprocess.Popen(argv, stdout=out, stderr=out, env=env)))
        return log

    def check(self) -> None:
        for name, process in self._started:
            if process.poll() is not None:
                log = (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{name} exited ({process.returncode}):\n{log}")

    def stop(self) -> None:
        while self._started:
            _stop(self._started.pop()[1])


def _wait(
    check: Callable[[], bool], what: str, programs: _Programs, logs: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        programs.check()
        try:
            if check():
                return
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    tails = "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
        for log in sorted(logs.glob("*.log"))
    )
    raise RuntimeError(f"{what} not ready after {timeout}s: {last}\n{tails}")


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}:\n{done.stdout}\n{done.stderr}")


@contextlib.contextmanager
def running_keda(
    cluster: Cluster, workdir: Path, *, controllers: Sequence[str] = CONTROLLERS
) -> Iterator[Keda]:
    if not cluster.aggregation:
        raise ValueError("KEDA's metrics adapter needs running_apiserver(..., aggregation=True)")
    layout = default_layout()
    kcm = built("kube-controller-manager.sh", layout.bin / "kube-controller-manager")
    kubectl = built("kubectl.sh", layout.bin / "kubectl")
    crds = built("keda-crds.sh", layout.opt / "keda-crds")
    built("keda.sh", layout.bin)

    logs = workdir / "logs"
    certs = workdir / "keda-certs"
    ca_dir = workdir / "keda-ca"  # CAs the scalers trust besides the system's: none
    for directory in (logs, ca_dir):
        directory.mkdir(parents=True, exist_ok=True)
    make_keda_pki(certs)
    grpc_port, probe_port, adapter_port = free_port(), free_port(), free_port()
    kubeconfig = cluster.kubeconfig
    ctl = [str(kubectl), "--kubeconfig", str(kubeconfig)]
    env = keda_environment(kubeconfig)

    programs = _Programs(logs)
    try:
        programs.start(
            "kube-controller-manager",
            controller_manager_command(kcm, cluster, workdir, controllers),
        )

        _run([*ctl, "apply", "--server-side", "-f", str(crds)])
        _run([*ctl, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"])
        with cluster.http() as api:
            created = api.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})
            assert created.status_code == 201, created.text

        operator = operator_command(layout.bin / "keda", certs, ca_dir, grpc_port, probe_port)
        programs.start("keda-operator", operator, env)
        _wait(
            lambda: httpx.get(f"http://{HOST}:{probe_port}/readyz", timeout=2).status_code == 200,
            "the KEDA operator",
            programs,
            logs,
            timeout=60,
        )

        adapter = adapter_command(
            layout.bin / "keda-adapter", kubeconfig, certs, adapter_port, grpc_port
        )
        programs.start("keda-adapter", adapter, env)
        with cluster.http() as api:
            for path, obj in external_metrics_objects(certs / "ca.crt", adapter_port):
                created = api.post(path, json=obj)
                assert created.status_code == 201, created.text
            _wait(
                lambda: api.get("/apis/external.metrics.k8s.io/v1beta1").status_code == 200,
                "external.metrics.k8s.io through the API server",
                programs,
                logs,
                timeout=90,
            )
        yield Keda(kubectl=kubectl, kubeconfig=kubeconfig, logs=logs)
    finally:
        programs.stop()
