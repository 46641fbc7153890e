"""A real Kubernetes API server (kube-apiserver + etcd) on loopback for tests.

``running_apiserver(workdir)`` starts etcd and kube-apiserver on free 127.0.0.1
ports with everything they need generated under ``workdir`` (a CA and serving
certificate, the service-account key pair, a static token file), waits until
``/readyz`` answers ``ok``, yields a ``Cluster`` (its kubeconfig among others) and
stops both at the end. No kubelet, scheduler or controller-manager runs: tests
create nodes, pods, endpoints and endpoint slices as plain objects and set their
status through the status subresources.

``running_apiserver(workdir, aggregation=True)`` also turns on the aggregation
layer (a front-proxy CA and client certificate, the ``--requestheader-*`` and
``--proxy-client-*`` flags), so an APIService can send a group such as
``external.metrics.k8s.io`` to an extension server on loopback (tests/integration/keda.py).

Binaries: kube-apiserver from ``$FERRYMAN_HOME/bin`` (built by
``infra/local/build/kube-apiserver.sh`` when missing, a long cold build), etcd from
``$FERRYMAN_ETCD`` or Debian's ``/usr/bin/etcd``.

Run as ``python -m tests.integration.kube record FILE`` to start a server, create
the objects the unit tests use and write what the server returned to FILE.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from infra.local.paths import default_layout

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "infra" / "local" / "build"
HOST = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"


def built(script: str, output: Path) -> Path:
    """``output`` made (or found up to date) by ``infra/local/build/<script>``, as
    ``ferryman stack up`` makes it: idempotent and quick when it is there, minutes cold."""
    subprocess.run(
        ["bash", str(BUILD / script), str(output)], check=True, stdout=subprocess.DEVNULL
    )
    return output


def apiserver_binary() -> Path:
    return built("kube-apiserver.sh", default_layout().bin / "kube-apiserver")


def etcd_binary() -> Path:
    found = os.environ.get("FERRYMAN_ETCD") or shutil.which("etcd") or "/usr/bin/etcd"
    return Path(found)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(directory: Path) -> None:
    """ca.crt/ca.key, server.crt/server.key (127.0.0.1, localhost) and sa.key/sa.pub."""
    make_ca(directory, "ca", "ferryman-test-ca")
    issue_cert(
        directory,
        "server",
        "kube-apiserver",
        "ca",
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default.svc,IP:10.96.0.1\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    _openssl(
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "sa.key",
        cwd=directory,
    )
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)


def make_ca(directory: Path, name: str, common_name: str) -> None:
    """A self-signed CA: ``name``.crt and ``name``.key in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3650",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-subj",
        f"/CN={common_name}",
        cwd=directory,
    )


def issue_cert(directory: Path, name: str, common_name: str, ca: str, extensions: str) -> None:
    """``name``.crt/``name``.key signed by the CA ``ca``.crt/``ca``.key of ``directory``;
    ``extensions`` is an openssl extension file's text (SANs, key usages)."""
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={common_name}",
        cwd=directory,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=directory,
    )


#: The name the API server's front-proxy client certificate carries; extension
#: servers trust request headers only from a client of this name.
FRONT_PROXY_CLIENT = "front-proxy-client"


def make_front_proxy_pki(directory: Path) -> None:
    """front-proxy-ca.crt/.key and the client certificate the API server shows
    extension servers when it proxies a request (front-proxy-client.crt/.key)."""
    make_ca(directory, "front-proxy-ca", "ferryman-test-front-proxy-ca")
    issue_cert(
        directory,
        FRONT_PROXY_CLIENT,
        FRONT_PROXY_CLIENT,
        "front-proxy-ca",
        "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )


def aggregation_flags(pki: Path) -> list[str]:
    """kube-apiserver flags of the aggregation layer (kubeadm's set). The extension
    server learns the request-header settings from the ``extension-apiserver-
    authentication`` ConfigMap the API server publishes in kube-system."""
    return [
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
    ]


def etcd_command(binary: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    peer = f"http://{HOST}:{peer_port}"
    client = f"http://{HOST}:{client_port}"
    return [
        str(binary),
        "--name=ferryman-kube",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=ferryman-kube={peer}",
        "--initial-cluster-state=new",
        "--log-level=warn",
    ]


def apiserver_command(
    binary: Path, pki: Path, etcd: str, port: int, token_file: Path, *, aggregation: bool = False
) -> list[str]:
    extra = aggregation_flags(pki) if aggregation else []
    return [
        str(binary),
        f"--etcd-servers={etcd}",
        f"--bind-address={HOST}",
        f"--advertise-address={HOST}",
        f"--secure-port={port}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'server.crt'}",
        f"--tls-private-key-file={pki / 'server.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--token-auth-file={token_file}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # No controller-manager creates each namespace's "default" service account,
        # which the ServiceAccount admission plugin would require of every pod.
        "--disable-admission-plugins=ServiceAccount",
        # The endpoint reconciler would publish the advertise address as the
        # "kubernetes" service's endpoint, and refuses a loopback one.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        *extra,
    ]


def write_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "ferryman",
                        "cluster": {"server": server, "certificate-authority": str(ca_file)},
                    }
                ],
                "users": [{"name": "admin", "user": {"token": token}}],
                "contexts": [
                    {"name": "ferryman", "context": {"cluster": "ferryman", "user": "admin"}}
                ],
                "current-context": "ferryman",
            }
        )
    )


def wait_ready(
    server: str,
    ca_file: Path,
    token: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 90.0,
) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"kube-apiserver exited ({process.returncode}):\n" + log.read_text()[-4000:]
            )
        try:
            response = httpx.get(
                f"{server}/readyz",
                verify=_tls(ca_file),
                timeout=5,
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code == 200 and response.text.strip() == "ok":
                return
            last = f"{response.status_code} {response.text[-500:]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise RuntimeError(
        f"kube-apiserver not ready after {timeout}s: {last}\n" + log.read_text()[-4000:]
    )


def _tls(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Cluster:
    """etcd + kube-apiserver in ``workdir``; the API server can be restarted (same
    port, same etcd) to test clients' reconnection. ``aggregation`` (default off)
    turns on the aggregation layer for extension API servers."""

    def __init__(self, workdir: Path, *, aggregation: bool = False) -> None:
        self.workdir = workdir
        self.aggregation = aggregation
        self.pki = workdir / "pki"
        self.ca_file = self.pki / "ca.crt"
        self.kubeconfig = workdir / "kubeconfig"
        self.token = secrets.token_hex(16)  # a static token of a system:masters user
        self.etcd_url = f"http://{HOST}:{free_port()}"
        self.server = f"https://{HOST}:{free_port()}"
        self._etcd_peer = free_port()
        self._etcd: subprocess.Popen[bytes] | None = None
        self._api: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        make_pki(self.pki)
        if self.aggregation:
            make_front_proxy_pki(self.pki)
        token_file = self.workdir / "tokens.csv"
        token_file.write_text(f"{self.token},ferryman-admin,ferryman-admin,system:masters\n")
        self._apiserver_binary = apiserver_binary()
        port = int(self.etcd_url.rsplit(":", 1)[1])
        with (self.workdir / "etcd.log").open("ab") as out:
            self._etcd = subprocess.Popen(
                etcd_command(etcd_binary(), self.workdir / "etcd", port, self._etcd_peer),
                stdout=out,
                stderr=out,
            )
        self.start_apiserver()
        write_kubeconfig(self.kubeconfig, self.server, self.ca_file, self.token)

    def start_apiserver(self) -> None:
        log = self.workdir / "kube-apiserver.log"
        port = int(self.server.rsplit(":", 1)[1])
        with log.open("ab") as out:
            self._api = subprocess.Popen(
                apiserver_command(
                    self._apiserver_binary,
                    self.pki,
                    self.etcd_url,
                    port,
                    self.workdir / "tokens.csv",
                    aggregation=self.aggregation,
                ),
                stdout=out,
                stderr=out,
            )
        wait_ready(self.server, self.ca_file, self.token, self._api, log)

    def stop_apiserver(self) -> None:
        if self._api is not None:
            _stop(self._api)
            self._api = None

    def http(self) -> httpx.Client:
        """An HTTP client for the API server, authenticated as a cluster admin."""
        return httpx.Client(
            base_url=self.server,
            verify=_tls(self.ca_file),
            timeout=30,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    @property
    def apiserver_pid(self) -> int | None:
        return None if self._api is None else self._api.pid

    def stop(self) -> None:
        self.stop_apiserver()
        if self._etcd is not None:
            _stop(self._etcd)
            self._etcd = None


def kube_state_metrics_binary() -> Path:
    return built("kube-state-metrics.sh", default_layout().bin / "kube-state-metrics")


class KubeStateMetrics:
    """kube-state-metrics watching ``cluster``'s API server, its /metrics on
    ``url``; the objects' series appear once its informers have synced."""

    def __init__(self, cluster: Cluster, workdir: Path) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/metrics"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> KubeStateMetrics:
        log = self.workdir / "kube-state-metrics.log"
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                [
                    str(kube_state_metrics_binary()),
                    f"--kubeconfig={self.cluster.kubeconfig}",
                    f"--host={HOST}",
                    f"--port={self.port}",
                    f"--telemetry-host={HOST}",
                    f"--telemetry-port={free_port()}",
                ],
                stdout=out,
                stderr=out,
            )
        return self

    def metrics(self) -> str:
        """Its exposition now ("" while it does not answer)."""
        if self._process is not None and self._process.poll() is not None:
            log = (self.workdir / "kube-state-metrics.log").read_text()[-2000:]
            raise AssertionError(f"kube-state-metrics exited:\n{log}")
        try:
            response = httpx.get(self.url, timeout=10)
        except httpx.TransportError:
            return ""
        return response.text if response.status_code == 200 else ""

    def stop(self) -> None:
        if self._process is not None:
            _stop(self._process)
            self._process = None


@contextlib.contextmanager
def running_apiserver(workdir: Path, *, aggregation: bool = False) -> Iterator[Cluster]:
    cluster = Cluster(workdir, aggregation=aggregation)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# --- recording the objects of the unit tests ----------------------------------------

RECORD_NAMESPACE = "shop"


def _manifests() -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(API path, object, status) for every recorded object; status, when given, is
    then written through the status subresource as a kubelet would."""
    ns = RECORD_NAMESPACE
    core, slices = "/api/v1", "/apis/discovery.k8s.io/v1"
    ready_conditions = [
        {"type": "Ready", "status": "True"},
        {"type": "ContainersReady", "status": "True"},
    ]
    node_status = {
        "addresses": [
            {"type": "Hostname", "address": "edge-1"},
            {"type": "ExternalIP", "address": "203.0.113.7"},
            {"type": "InternalIP", "address": "10.0.0.11"},
            {"type": "InternalIP", "address": "10.0.0.12"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
            {
                "type": "MemoryPressure",
                "status": "False",
                "reason": "Ok",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
        ],
    }
    web_pod = {
        "metadata": {
            "name": "web-7d4b9",
            "namespace": ns,
            "labels": {"app": "web", "app.kubernetes.io/name": "web"},
            "annotations": {"prometheus.io/scrape": "true"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-7d4b",
                    "uid": "0c9e6c49-6c71-4f57-9f5e-2b8a3c7f1d01",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": "edge-1",
            "initContainers": [
                {
                    "name": "migrate",
                    "image": "shop/migrate:1.2",
                    "ports": [{"containerPort": 9000, "name": "mig"}],
                }
            ],
            "containers": [
                {
                    "name": "app",
                    "image": "shop/web:2.0",
                    "ports": [
                        {"containerPort": 8080, "name": "http"},
                        {"containerPort": 9102, "name": "metrics"},
                    ],
                },
                {"name": "sidecar", "image": "shop/proxy:1.0"},
            ],
        },
    }
    web_status = {
        "phase": "Running",
        "podIP": "10.244.1.5",
        "podIPs": [{"ip": "10.244.1.5"}],
        "hostIP": "10.0.0.11",
        "hostIPs": [{"ip": "10.0.0.11"}],
        "conditions": ready_conditions,
        "containerStatuses": [
            {
                "name": "app",
                "image": "shop/web:2.0",
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "containerID": "containerd://aaa111",
            },
            {
                "name": "sidecar",
                "image": "shop/proxy:1.0",
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "containerID": "containerd://bbb222",
            },
        ],
        "initContainerStatuses": [
            {
                "name": "migrate",
                "image": "shop/migrate:1.2",
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "containerID": "containerd://ccc333",
            }
        ],
    }
    pending_pod = {
        "metadata": {"name": "batch-x", "namespace": ns},
        "spec": {"containers": [{"name": "job", "image": "shop/batch:1"}]},
    }
    web_ports = [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"},
    ]
    target_ref = {"kind": "Pod", "namespace": ns, "name": "web-7d4b9"}
    return [
        (
            f"{core}/nodes",
            {
                "metadata": {
                    "name": "edge-1",
                    "labels": {
                        "kubernetes.io/hostname": "edge-1",
                        "topology.kubernetes.io/zone": "z1",
                    },
                    "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                },
                "spec": {"providerID": "kind://docker/edge-1"},
            },
            node_status,
        ),
        (f"{core}/nodes", {"metadata": {"name": "bare"}}, None),
        (f"{core}/namespaces", {"metadata": {"name": ns}}, None),
        (f"{core}/namespaces/{ns}/pods", web_pod, web_status),
        (f"{core}/namespaces/{ns}/pods", pending_pod, None),
        (
            f"{core}/namespaces/{ns}/services",
            {
                "metadata": {
                    "name": "web",
                    "namespace": ns,
                    "labels": {"app": "web"},
                    "annotations": {"prometheus.io/probe": "true"},
                },
                "spec": {"selector": {"app": "web"}, "ports": web_ports},
            },
            None,
        ),
        (
            f"{core}/namespaces/{ns}/services",
            {
                "metadata": {"name": "edge-lb", "namespace": ns},
                "spec": {
                    "type": "LoadBalancer",
                    "loadBalancerIP": "198.51.100.9",
                    "ipFamilyPolicy": "PreferDualStack",
                    "ports": [{"name": "https", "port": 443, "targetPort": 8443}],
                },
            },
            None,
        ),
        (
            f"{core}/namespaces/{ns}/services",
            {
                "metadata": {"name": "upstream", "namespace": ns},
                "spec": {
                    "type": "ExternalName",
                    "externalName": "api.example.org",
                    "ports": [{"port": 443}],
                },
            },
            None,
        ),
        (
            f"{core}/namespaces/{ns}/endpoints",
            {
                "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
                "subsets": [
                    {
                        "addresses": [
                            {"ip": "10.244.1.5", "nodeName": "edge-1", "targetRef": target_ref}
                        ],
                        "notReadyAddresses": [{"ip": "10.244.2.9", "hostname": "web-0"}],
                        "ports": [
                            {"name": "http", "port": 8080, "protocol": "TCP"},
                            {"name": "dns", "port": 5353, "protocol": "UDP"},
                        ],
                    }
                ],
            },
            None,
        ),
        (
            f"{slices}/namespaces/{ns}/endpointslices",
            {
                "metadata": {
                    "name": "web-abcde",
                    "namespace": ns,
                    "labels": {
                        "kubernetes.io/service-name": "web",
                        "endpointslice.kubernetes.io/managed-by": "test",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": ["10.244.1.5"],
                        "nodeName": "edge-1",
                        "zone": "z1",
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "targetRef": target_ref,
                    },
                    {
                        "addresses": ["10.244.2.9"],
                        "hostname": "web-0",
                        "conditions": {"ready": False},
                    },
                ],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}],
            },
            None,
        ),
        (
            f"{slices}/namespaces/{ns}/endpointslices",
            {
                "metadata": {
                    "name": "edge-lb-v6",
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": "edge-lb"},
                },
                "addressType": "IPv6",
                "endpoints": [{"addresses": ["fd00::5"]}],
                "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}],
            },
            None,
        ),
        (
            f"{slices}/namespaces/{ns}/endpointslices",
            {
                "metadata": {"name": "orphan-1", "namespace": ns},
                "addressType": "IPv6",
                "endpoints": [{"addresses": ["fd00::7"], "conditions": {}}],
                "ports": [{"name": "metrics"}],
            },
            None,
        ),
    ]


def _kind_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


def record(cluster: Cluster, out: Path) -> None:
    """Create the recorded objects and write {resource: [objects as served]}."""
    recorded: dict[str, list[dict[str, Any]]] = {}
    with cluster.http() as http:
        for path, obj, status in _manifests():
            created = http.post(path, json=obj)
            created.raise_for_status()
            body = created.json()
            if status is not None:
                name = obj["metadata"]["name"]
                patched = http.patch(
                    f"{path}/{name}/status",
                    json={"status": status},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                patched.raise_for_status()
                body = patched.json()
            body["metadata"].pop("managedFields", None)
            recorded.setdefault(_kind_of(path), []).append(body)
        version = http.get("/version").json()["gitVersion"]
    payload = {"recorded_from": f"kube-apiserver {version}", **recorded}
    out.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")


# ---- helpers for tests that talk to the apiserver through Cluster.http() ---------------

CORE = "/api/v1"


def create(
    api: httpx.Client, path: str, obj: dict[str, Any], status: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST ``obj`` to ``path`` (201 expected), then set its status if given."""
    response = api.post(path, json=obj)
    assert response.status_code == 201, response.text
    if status is not None:
        return patch(api, f"{path}/{obj['metadata']['name']}/status", {"status": status})
    body: dict[str, Any] = response.json()
    return body


def patch(api: httpx.Client, path: str, change: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (200 expected)."""
    response = api.patch(
        path, json=change, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "record":
        print("usage: python -m tests.integration.kube record FILE", file=sys.stderr)
        return 2
    with (
        tempfile.TemporaryDirectory(prefix="ferryman-kube-") as tmp,
        running_apiserver(Path(tmp)) as cluster,
    ):
        record(cluster, Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
