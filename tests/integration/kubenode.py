"""A real Kubernetes node (kubelet + containerd) on loopback for tests.

``running_node(cluster, workdir)`` joins this machine to a ``Cluster`` of
``tests/integration/kube.py`` as the node ``ferryman-node``: it starts containerd
with its own configuration, root, state and socket under ``workdir``, imports the
sandbox ("pause") image, starts kubelet against the cluster's kubeconfig, waits
until the Node is Ready, yields a ``Node`` and at the end stops kubelet, removes
every container it ran, stops containerd and unmounts whatever is left under
``workdir``.

What the tests can and cannot do with it:

- No kube-scheduler or controller-manager runs: a pod is bound by setting
  ``spec.nodeName: ferryman-node`` when it is created.
- The API server runs without the ServiceAccount admission plugin and no controller
  creates service-account tokens: pods set ``automountServiceAccountToken: false``.
- Every pod is on the host network (``hostNetwork: true``): the only CNI plugin
  configured is ``loopback``, there is no bridge.
- There is no registry: images come from ``Node.import_image(archive)`` and pods use
  ``imagePullPolicy: Never``.
- The node publishes no address (kubelet refuses a loopback node IP as an address),
  so ``kubectl logs`` and ``exec`` cannot reach kubelet; read the container logs
  from ``/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`` (CRI
  format, ``Node.pod_log``).

What this machine needed (cgroup v1, a host that refuses a negative
``oom_score_adj``): kubelet with ``failCgroupV1: false``, the cgroupfs driver, no
QoS cgroups and no node-allocatable enforcement; containerd's CRI plugin with
``restrict_oom_score_adj`` (the pause container asks for -998).

Binaries: kubelet from ``$FERRYMAN_HOME/bin`` (built by
``infra/local/build/kubelet.sh``, a long cold build), containerd, runc and the CNI
plugins from Debian and the pause image from ``infra/local/build/kube-node.sh``.
Needs root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from infra.images.build import build, specs, version
from infra.local.paths import default_layout
from tests.integration.kube import HOST, Cluster, built, free_port

__all__ = ["NODE_NAME", "POD_LOGS", "Node", "image_archive", "image_ref", "running_node"]

NODE_NAME = "ferryman-node"
POD_LOGS = Path("/var/log/pods")
CNI_BIN = Path("/usr/lib/cni")
K8S_NAMESPACE = "k8s.io"  # containerd's namespace for everything the CRI plugin runs


def kubelet_binary() -> Path:
    return built("kubelet.sh", default_layout().bin / "kubelet")


def node_assets() -> Path:
    """The folder of the pause image (``pause.tar``, ``pause.ref``); installs
    containerd, runc and the CNI plugins when missing."""
    return built("kube-node.sh", default_layout().opt / "kube-node")


def containerd_config(workdir: Path, socket: Path, sandbox_image: str, cni_conf: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{workdir / "root"}"
state = "{workdir / "state"}"

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{workdir / "opt"}"

[{cri}]
  sandbox_image = "{sandbox_image}"
  # This host refuses a negative oom_score_adj, and the sandbox asks for -998:
  # clamp every container's to containerd's own.
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{workdir / "runc"}"

[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{cni_conf}"
"""


# Only the loopback plugin: pods share the host's network, nothing gets a bridge.
CNI_LOOPBACK = {
    "cniVersion": "1.0.0",
    "name": "ferryman-loopback",
    "plugins": [{"type": "loopback"}],
}


def kubelet_config(
    socket: Path, port: int, healthz_port: int, client_ca: Path | None = None
) -> dict[str, Any]:
    """kubelet's configuration. With ``client_ca`` its HTTPS port authenticates as a
    kubeadm-made kubelet does: client certificates of that CA and bearer tokens
    (service-account tokens among them) through the API server's TokenReview, each
    request authorized by a SubjectAccessReview (``nodes/metrics`` for /metrics and
    /metrics/cadvisor); without, it authenticates nobody (default)."""
    if client_ca is None:
        authentication: dict[str, Any] = {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
        }
        authorization = {"mode": "AlwaysAllow"}
    else:
        authentication = {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        }
        authorization = {"mode": "Webhook"}
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{socket}",
        "address": HOST,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": HOST,
        "healthzPort": healthz_port,
        "authentication": authentication,
        "authorization": authorization,
        # This machine has cgroup v1 only, and no systemd.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        # The host refuses a negative oom_score_adj, kubelet's default is -999.
        "oomScoreAdj": 0,
        # A test machine's disk fills with other things: never evict the test pods.
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # Quick reactions: tests wait on pod phases and node status.
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "nodeStatusUpdateFrequency": "2s",
        "nodeStatusReportFrequency": "10s",
        "registerNode": True,
    }


def _stop(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below ``directory``, deepest first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # \040 for spaces
        if Path(point).is_relative_to(directory):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _processes_mentioning(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (containerd's shims name the
    socket of the containerd that started them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def image_ref(name: str) -> str:
    """The reference pods use for ferryman's image ``name`` (``ferryman-edge-logs``)."""
    return f"localhost/{name}:{version()}"


def image_archive(name: str) -> Path:
    """Ferryman's image ``name`` as an OCI archive for :meth:`Node.import_image`: built
    by ``infra/images`` when missing or stale (a no-op when current), exported from
    podman once per image ID (cached under ``$FERRYMAN_HOME/opt/kube-node/images``)."""
    wanted = [s for s in specs() if s.name == name]
    if not wanted:
        raise KeyError(f"no image named {name!r}")
    build(wanted, say=lambda line: None)
    image = image_ref(name)
    found = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    archive = default_layout().opt / "kube-node" / "images" / f"{name}-{found.stdout[:12]}.tar"
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_name(archive.name + ".partial")
        partial.unlink(missing_ok=True)
        subprocess.run(
            ["podman", "save", "--format", "oci-archive", "--output", str(partial), image],
            check=True,
            capture_output=True,
        )
        partial.replace(archive)
    return archive


class Node:
    """containerd + kubelet under ``workdir``, registered with ``cluster`` as
    ``NODE_NAME``; ``authenticate`` (default off) makes kubelet's HTTPS port
    authenticate and authorize through the cluster as an operator's kubelet does
    (:func:`kubelet_config`).

    ``cadvisor`` (default off) lets kubelet's embedded cAdvisor reach containerd, so
    /metrics/cadvisor labels container series with their pod, namespace, container
    and image: cAdvisor dials only ``/run/containerd/containerd.sock`` (kubelet does
    not pass it ``containerRuntimeEndpoint``, and v1.37 no longer has cAdvisor's
    ``--containerd`` flag), so kubelet runs in a mount namespace of its own where
    this node's containerd folder is mounted on ``/run/containerd``; the host's
    ``/run/containerd`` stays as it was. A volume kubelet itself mounts (secret,
    configMap, projected: tmpfs) then stays in that namespace, out of containerd's
    sight: pods of such a node must not use them.
    """

    def __init__(
        self, cluster: Cluster, workdir: Path, *, authenticate: bool = False, cadvisor: bool = False
    ) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.authenticate = authenticate
        self.cadvisor = cadvisor
        self.port = free_port()
        """kubelet's HTTPS port (on ``HOST``): /metrics, /metrics/cadvisor, /pods."""
        self.name = NODE_NAME
        self.containerd_dir = workdir / "containerd"
        self.socket = self.containerd_dir / "containerd.sock"
        self.kubelet_dir = workdir / "kubelet"
        self.containerd_log = workdir / "containerd.log"
        self.kubelet_log = workdir / "kubelet.log"
        self._containerd: subprocess.Popen[bytes] | None = None
        self._kubelet: subprocess.Popen[bytes] | None = None

    # --- start ----------------------------------------------------------------------

    def start(self) -> None:
        kubelet = kubelet_binary()
        assets = node_assets()
        self.start_containerd((assets / "pause.ref").read_text().strip())
        self.import_image(assets / "pause.tar")
        self.start_kubelet(kubelet)
        self.wait_ready()

    def start_containerd(self, sandbox_image: str) -> None:
        cni_conf = self.workdir / "cni"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-ferryman-loopback.conflist").write_text(json.dumps(CNI_LOOPBACK))
        self.containerd_dir.mkdir(parents=True, exist_ok=True)
        config = self.containerd_dir / "config.toml"
        config.write_text(
            containerd_config(self.containerd_dir, self.socket, sandbox_image, cni_conf)
        )
        with self.containerd_log.open("ab") as out:
            self._containerd = subprocess.Popen(
                ["containerd", "--config", str(config)], stdout=out, stderr=out
            )
        deadline = time.monotonic() + 30
        while not self._ctr_ok("version"):
            if self._containerd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "containerd did not start:\n" + self.containerd_log.read_text()[-4000:]
                )
            time.sleep(0.2)

    def start_kubelet(self, binary: Path) -> None:
        self.kubelet_dir.mkdir(parents=True, exist_ok=True)
        config = self.kubelet_dir / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                kubelet_config(
                    self.socket,
                    self.port,
                    free_port(),
                    self.cluster.ca_file if self.authenticate else None,
                ),
                sort_keys=False,
            )
        )
        command = [
            str(binary),
            f"--config={config}",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--root-dir={self.kubelet_dir / 'root'}",
            f"--cert-dir={self.kubelet_dir / 'pki'}",
            f"--hostname-override={self.name}",
            # kubelet warns that a loopback node IP is not published as an address.
            f"--node-ip={HOST}",
            "--v=2",
        ]
        if self.cadvisor:
            command = [
                "unshare",
                "--mount",
                "--propagation=private",
                "sh",
                "-c",
                'mkdir -p /run/containerd && mount --bind "$0" /run/containerd && exec "$@"',
                str(self.containerd_dir),
                *command,
            ]
        with self.kubelet_log.open("ab") as out:
            self._kubelet = subprocess.Popen(command, stdout=out, stderr=out)

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Waits until the Node's Ready condition is True; returns the Node."""
        deadline = time.monotonic() + timeout
        last: Any = "not registered"
        with self.cluster.http() as api:
            while time.monotonic() < deadline:
                if self._kubelet is None or self._kubelet.poll() is not None:
                    raise RuntimeError("kubelet exited:\n" + self.kubelet_log.read_text()[-4000:])
                response = api.get(f"/api/v1/nodes/{self.name}")
                if response.status_code == 200:
                    node: dict[str, Any] = response.json()
                    conditions = node.get("status", {}).get("conditions", [])
                    ready = [c for c in conditions if c["type"] == "Ready"]
                    if ready and ready[0]["status"] == "True":
                        return node
                    last = ready
                time.sleep(0.5)
        raise RuntimeError(
            f"node {self.name} not Ready after {timeout}s: {last}\n"
            + self.kubelet_log.read_text()[-4000:]
        )

    # --- use ------------------------------------------------------------------------

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this node's containerd, in the CRI plugin's namespace."""
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", K8S_NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    def _ctr_ok(self, *args: str) -> bool:
        return self.socket.exists() and self.ctr(*args).returncode == 0

    def import_image(self, archive: Path) -> None:
        """Imports an OCI (or docker) image archive; pods then use the image by the
        name the archive gives it, with ``imagePullPolicy: Never``."""
        done = self.ctr("images", "import", str(archive))
        if done.returncode != 0:
            raise RuntimeError(f"ctr images import {archive} failed: {done.stderr}")

    @staticmethod
    def pod_log(pod: dict[str, Any], container: str, restart: int = 0) -> Path:
        """Where kubelet keeps a container's log (CRI format lines)."""
        meta = pod["metadata"]
        folder = f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
        return POD_LOGS / folder / container / f"{restart}.log"

    # --- stop -----------------------------------------------------------------------

    def stop(self) -> None:
        if self._kubelet is not None:
            _stop(self._kubelet)
            self._kubelet = None
        if self._containerd is not None:
            # kubelet leaves its containers running when it exits: kill and remove
            # them while containerd is still there to do it.
            if self._containerd.poll() is None:
                self._remove_containers()
            _stop(self._containerd)
            self._containerd = None
        # Shims that outlived their containerd (a task it could not delete).
        for pid in _processes_mentioning(str(self.socket)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for point in _mounts_under(self.workdir):
            subprocess.run(["umount", "--lazy", str(point)], check=False, capture_output=True)
        self._remove_pod_logs()

    def _remove_containers(self) -> None:
        tasks = self.ctr("tasks", "list", "--quiet").stdout.split()
        for task in tasks:
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task)
        for task in tasks:
            self.ctr("tasks", "delete", "--force", task)
        containers = self.ctr("containers", "list", "--quiet").stdout.split()
        if containers:
            self.ctr("containers", "delete", *containers)

    def _remove_pod_logs(self) -> None:
        """The pod log folders (and their /var/log/containers links) of the pods
        bound to this node."""
        try:
            with self.cluster.http() as api:
                response = api.get(
                    "/api/v1/pods", params={"fieldSelector": f"spec.nodeName={self.name}"}
                )
        except httpx.HTTPError:
            return  # the API server is gone: nothing tells which folders are ours
        if response.status_code != 200:
            return
        uids = {pod["metadata"]["uid"] for pod in response.json()["items"]}
        folders = [f for f in POD_LOGS.glob("*_*_*") if f.name.rsplit("_", 1)[1] in uids]
        links = Path("/var/log/containers")
        for link in links.glob("*.log") if links.is_dir() else []:
            if link.is_symlink() and any(f in Path(os.readlink(link)).parents for f in folders):
                link.unlink()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def running_node(
    cluster: Cluster, workdir: Path, *, authenticate: bool = False, cadvisor: bool = False
) -> Iterator[Node]:
    node = Node(cluster, workdir, authenticate=authenticate, cadvisor=cadvisor)
    try:
        node.start()
        yield node
    finally:
        node.stop()
