"""The services of the local stack, in start order.

Every service binds to 127.0.0.1 only and keeps its data under the stack home.
Ports are the services' usual ones; VictoriaLogs stands in for Grafana Loki
(see the README: Loki's module is not allowed here) through its Loki push API.
"""

from __future__ import annotations

import base64
import os
import shutil
import string
import subprocess
import uuid
from pathlib import Path

from .errors import StartError
from .install import apt_install, apt_version, maven_classpath, run_script, tail
from .kafkasec import (
    SASL_USERNAME,
    KafkaSecurityFiles,
    ensure_certificates,
    ensure_password,
    ensure_scram_user,
)
from .paths import ASSETS, Layout
from .probes import http_probe, kafka_probe, redis_probe
from .service import Service

__all__ = ["HOTROD_PORTS", "KAFKA_TOPICS", "SERVICES", "by_name", "hotrod_argv", "prepare_kafka"]

HOST = "127.0.0.1"

KAFKA_VERSION = "4.4.0"
#: The SASL_SSL (SCRAM-SHA-512) listener; 9093 is the KRaft controller's.
KAFKA_SASL_PORT = 9094
ELASTICSEARCH_VERSION = "8.19.21"

#: Topics created at start (auto-creation is off): name -> partitions.
KAFKA_TOPICS: dict[str, int] = {
    "ferryman.metrics": 4,
    "ferryman.logs": 4,
    "ferryman.traces": 2,
    "ferryman.dlq": 1,
}


def _apt(service: str, package: str, *extra: str) -> str:
    apt_install(service, [package, *extra])
    return apt_version(package) or "unknown"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


# --- Kafka -------------------------------------------------------------------------


def _kafka_libs(layout: Layout) -> Path:
    return layout.opt / f"kafka-{KAFKA_VERSION}"


def _kafka_install(layout: Layout) -> str:
    maven_classpath("kafka", ASSETS / "kafka" / "pom.xml", _kafka_libs(layout))
    return KAFKA_VERSION


def _kafka_java(layout: Layout, heap: str = "-Xmx512m") -> list[str]:
    # Serial GC and C1 only: starts faster and stays smaller on a 2-core box.
    return [
        "java",
        "-Xms64m",
        heap,
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={ASSETS / 'kafka' / 'log4j2.properties'}",
        "-cp",
        f"{_kafka_libs(layout)}/*",
    ]


def _kafka_cluster_id() -> str:
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def prepare_kafka(
    layout: Layout,
    data: Path,
    conf: Path,
    broker_port: int,
    controller_port: int,
    *,
    sasl_port: int | None = None,
) -> list[str]:
    """Write a broker config and format its storage once; returns the broker command.

    With ``sasl_port``, the broker also listens there with SASL_SSL (SCRAM-SHA-512),
    its certificates and the user's password made under ``data`` (see
    :mod:`infra.local.kafkasec`); the user itself is added once the broker runs
    (:func:`infra.local.kafkasec.ensure_scram_user`). Also used by tests that need a
    Kafka of their own to stop and start.
    """
    log_dir = data / "log"
    props = string.Template((ASSETS / "kafka" / "server.properties.tmpl").read_text())
    sasl_listener = sasl_settings = ""
    if sasl_port is not None:
        files = KafkaSecurityFiles(data)
        ensure_certificates(files)
        ensure_password(files)
        sasl_listener = f",SASL_SSL://{HOST}:{sasl_port}"
        sasl_settings = string.Template(
            (ASSETS / "kafka" / "sasl_ssl.properties.tmpl").read_text()
        ).substitute(KAFKA_TLS_DIR=files.tls)
    _write(
        conf,
        props.substitute(
            KAFKA_LOG_DIR=log_dir,
            KAFKA_BROKER_PORT=broker_port,
            KAFKA_CONTROLLER_PORT=controller_port,
            KAFKA_SASL_LISTENER=sasl_listener,
            KAFKA_SASL_SSL=sasl_settings,
        ),
    )
    command = [*_kafka_java(layout), "kafka.Kafka", str(conf)]
    if (log_dir / "meta.properties").is_file():
        return command
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        *_kafka_java(layout, "-Xmx256m"),
        "kafka.tools.StorageTool",
        "format",
        "--config",
        str(conf),
        "--cluster-id",
        _kafka_cluster_id(),
        "--ignore-formatted",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StartError("kafka", " ".join(argv), tail(proc.stdout + proc.stderr))
    return command


def _kafka_prepare(layout: Layout) -> None:
    prepare_kafka(
        layout,
        layout.data("kafka"),
        layout.conf("kafka") / "server.properties",
        9092,
        9093,
        sasl_port=KAFKA_SASL_PORT,
    )


def _kafka_files(layout: Layout) -> dict[str, str]:
    files = KafkaSecurityFiles(layout.data("kafka"))
    return {
        "ca_file": str(files.ca_file),
        "client_cert_file": str(files.client_cert),
        "client_key_file": str(files.client_key),
        "sasl_username": SASL_USERNAME,
        "sasl_password_file": str(files.password_file),
    }


def _kafka_after_start(layout: Layout) -> None:
    """The topics, and the SCRAM user of the SASL_SSL listener (both idempotent)."""
    _kafka_topics()
    ensure_scram_user(KafkaSecurityFiles(layout.data("kafka")), f"{HOST}:9092")


def _kafka_topics() -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=f"{HOST}:9092")
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(name, partitions, 1)
            for name, partitions in KAFKA_TOPICS.items()
            if name not in existing
        ]
        if wanted:
            admin.create_topics(wanted)
    finally:
        admin.close()


KAFKA = Service(
    name="kafka",
    endpoints={
        "bootstrap": f"{HOST}:9092",
        "sasl_bootstrap": f"{HOST}:{KAFKA_SASL_PORT}",
    },
    layout_endpoints=_kafka_files,
    install=_kafka_install,
    prepare=_kafka_prepare,
    command=lambda layout: [
        *_kafka_java(layout),
        "kafka.Kafka",
        str(layout.conf("kafka") / "server.properties"),
    ],
    probe=kafka_probe(f"{HOST}:9092"),
    after_start=_kafka_after_start,
    start_timeout=90,
)

# --- Elasticsearch ------------------------------------------------------------------
# Elastic's own distribution as published to Maven (the "integ-test-zip": server,
# launcher and the netty4/x-pack-core/security/apm modules; no bundled JDK). It lacks
# the modules that are not published there (data-streams REST endpoints, ingest,
# painless, mapper-extras, analysis-common); see the README.


def _es_home(layout: Layout) -> Path:
    return (
        layout.opt
        / f"elasticsearch-dist-{ELASTICSEARCH_VERSION}"
        / f"elasticsearch-{ELASTICSEARCH_VERSION}"
    )


def _es_install(layout: Layout) -> str:
    maven_classpath(
        "elasticsearch",
        ASSETS / "elasticsearch" / "pom.xml",
        _es_home(layout).parent,
        goal="dependency:unpack-dependencies",
    )
    return ELASTICSEARCH_VERSION


def _es_prepare(layout: Layout) -> None:
    data = layout.data("elasticsearch")
    for sub in ("data", "logs", "tmp"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    conf = data / "config"
    if not conf.is_dir():
        shutil.copytree(_es_home(layout) / "config", conf)


def _es_command(layout: Layout) -> list[str]:
    data = layout.data("elasticsearch")
    launcher = [
        str(_es_home(layout) / "bin" / "elasticsearch"),
        "-Ediscovery.type=single-node",
        f"-Enetwork.host={HOST}",
        "-Ehttp.port=9200",
        "-Etransport.port=9300",
        "-Expack.security.enabled=false",
        "-Ecluster.routing.allocation.disk.threshold_enabled=false",
        # With the disk threshold off, the first disk-info refresh lifts every
        # read_only_allow_delete block once: tests set that block on purpose
        # (a real per-item 429), so the refresh must not come mid-run.
        "-Ecluster.info.update.interval=1d",
        "-Ecluster.name=ferryman-local",
        "-Enode.name=ferryman-es",
        "-Eaction.destructive_requires_name=false",
        f"-Epath.data={data / 'data'}",
        f"-Epath.logs={data / 'logs'}",
    ]
    if os.geteuid() != 0:
        return launcher
    # Elasticsearch refuses to run as root; a user namespace maps us to uid 1000
    # without privileges while the files stay ours.
    return ["unshare", "--user", "--map-user=1000", "--map-group=1000", *launcher]


def _java_home() -> str:
    java = shutil.which("java")
    if java is None:
        return os.environ.get("JAVA_HOME", "")
    return str(Path(java).resolve().parent.parent)


ELASTICSEARCH = Service(
    name="elasticsearch",
    endpoints={"http": f"http://{HOST}:9200"},
    install=_es_install,
    prepare=_es_prepare,
    command=_es_command,
    env=lambda layout: {
        "ES_JAVA_HOME": _java_home(),
        "ES_PATH_CONF": str(layout.data("elasticsearch") / "config"),
        "ES_TMPDIR": str(layout.data("elasticsearch") / "tmp"),
        "ES_JAVA_OPTS": "-Xms512m -Xmx512m -XX:-AlwaysPreTouch",
    },
    probe=http_probe(f"http://{HOST}:9200/_cluster/health?wait_for_status=yellow&timeout=1s"),
    start_timeout=150,
)

# --- Prometheus ---------------------------------------------------------------------

_PROMETHEUS_CONFIG = """\
# Written by ferryman stack: a remote-write receiver with no scrape jobs of its own,
# evaluating ferryman's alert rules (infra/alerts) on what the pipeline writes into it.
global:
  scrape_interval: 15s
  evaluation_interval: 15s
storage:
  tsdb:
    # Replays after a worker restart re-send recent samples; accept them.
    out_of_order_time_window: 2h
rule_files:
  - ferryman.rules.yml
scrape_configs: []
"""

#: The alert rules operators load (infra/alerts), also evaluated by the stack.
ALERT_RULES = ASSETS.parent / "alerts" / "ferryman.rules.yml"


def _prometheus_prepare(layout: Layout) -> None:
    conf = layout.conf("prometheus")
    _write(conf / "ferryman.rules.yml", ALERT_RULES.read_text())
    _write(conf / "prometheus.yml", _PROMETHEUS_CONFIG)


PROMETHEUS = Service(
    name="prometheus",
    endpoints={"http": f"http://{HOST}:9090", "remote_write": f"http://{HOST}:9090/api/v1/write"},
    install=lambda layout: _apt("prometheus", "prometheus"),
    prepare=_prometheus_prepare,
    command=lambda layout: [
        "/usr/bin/prometheus",
        f"--config.file={layout.conf('prometheus') / 'prometheus.yml'}",
        f"--storage.tsdb.path={layout.data('prometheus')}",
        f"--web.listen-address={HOST}:9090",
        "--web.enable-remote-write-receiver",
        "--storage.tsdb.retention.time=7d",
    ],
    probe=http_probe(f"http://{HOST}:9090/-/ready"),
    # Ready only once its write-ahead log is replayed: after a day of test runs that
    # took 80 s here, past the default minute.
    start_timeout=600,
)

# --- VictoriaMetrics ---------------------------------------------------------------

VICTORIAMETRICS = Service(
    name="victoriametrics",
    endpoints={
        "http": f"http://{HOST}:8428",
        "remote_write": f"http://{HOST}:8428/api/v1/write",
        "influx": f"http://{HOST}:8428/write",
        "opentsdb": f"http://{HOST}:4242",
    },
    install=lambda layout: _apt("victoriametrics", "victoria-metrics"),
    command=lambda layout: [
        "/usr/bin/victoria-metrics",
        f"-httpListenAddr={HOST}:8428",
        f"-opentsdbHTTPListenAddr={HOST}:4242",
        f"-storageDataPath={layout.data('victoriametrics')}",
        "-retentionPeriod=30d",
        # Make freshly written samples visible to queries at once (tests read back).
        "-search.latencyOffset=0s",
        "-loggerLevel=WARN",
    ],
    probe=http_probe(f"http://{HOST}:8428/health", contains="OK"),
)

# --- InfluxDB 1.x -------------------------------------------------------------------


def _influxdb_config(layout: Layout) -> str:
    data = layout.data("influxdb")
    return f"""\
# Written by ferryman stack.
reporting-disabled = true
bind-address = "{HOST}:8088"

[meta]
  dir = "{data / "meta"}"

[data]
  dir = "{data / "data"}"
  wal-dir = "{data / "wal"}"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{HOST}:8086"
  log-enabled = false
"""


def _influxdb_database(layout: Layout) -> None:
    """The database ``ferryman up`` writes to (idempotent in InfluxDB 1.x)."""
    del layout
    import httpx

    httpx.post(
        f"http://{HOST}:8086/query", params={"q": 'CREATE DATABASE "ferryman"'}, timeout=10
    ).raise_for_status()


INFLUXDB = Service(
    name="influxdb",
    endpoints={"http": f"http://{HOST}:8086"},
    install=lambda layout: _apt("influxdb", "influxdb"),
    prepare=lambda layout: _write(
        layout.conf("influxdb") / "influxdb.conf", _influxdb_config(layout)
    ),
    command=lambda layout: [
        "/usr/bin/influxd",
        "-config",
        str(layout.conf("influxdb") / "influxdb.conf"),
    ],
    probe=http_probe(f"http://{HOST}:8086/ping", status=204),
    after_start=_influxdb_database,
)

# --- Built from Go modules -----------------------------------------------------------


def _go_build(service: str, script: str, binary: Path) -> str:
    run_script(service, ASSETS / "build" / script, str(binary))
    stamp = binary.with_name(binary.name + ".version")
    return stamp.read_text().split()[1] if stamp.is_file() else "unknown"


# --- VictoriaLogs (Loki push API) ----------------------------------------------------

VICTORIALOGS = Service(
    name="victorialogs",
    endpoints={
        "http": f"http://{HOST}:9428",
        "loki_push": f"http://{HOST}:9428/insert/loki/api/v1/push",
    },
    install=lambda layout: _go_build(
        "victorialogs", "victorialogs.sh", layout.bin / "victoria-logs"
    ),
    command=lambda layout: [
        str(layout.bin / "victoria-logs"),
        f"-httpListenAddr={HOST}:9428",
        f"-storageDataPath={layout.data('victorialogs')}",
        "-retentionPeriod=7d",
        "-loggerLevel=WARN",
    ],
    probe=http_probe(f"http://{HOST}:9428/health", contains="OK"),
)

# --- Jaeger v2 ----------------------------------------------------------------------

JAEGER = Service(
    name="jaeger",
    endpoints={
        "otlp_grpc": f"{HOST}:4317",
        "otlp_http": f"http://{HOST}:4318",
        "query": f"http://{HOST}:16686",
    },
    install=lambda layout: _go_build("jaeger", "jaeger.sh", layout.bin / "jaeger"),
    command=lambda layout: [
        str(layout.bin / "jaeger"),
        f"--config={ASSETS / 'jaeger' / 'config.yaml'}",
    ],
    probe=http_probe(f"http://{HOST}:13133/status"),
)

# --- HotROD (Jaeger's demo application; started by whoever needs it) -----------------

#: HotROD's own ports (frontend, customer, driver, route); tests and ``ferryman up``
#: pass free ones instead.
HOTROD_PORTS = {"frontend": 8080, "customer": 8081, "driver": 8082, "route": 8083}


def hotrod_argv(binary: Path, ports: dict[str, int]) -> list[str]:
    """``hotrod all`` with every one of its four services on 127.0.0.1 and ``ports``
    (keys as :data:`HOTROD_PORTS`). It exports OTLP/HTTP wherever the environment's
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` points (an ``https://`` URL turns TLS on)."""
    argv = [str(binary), "all"]
    for service, port in ports.items():
        argv += [f"--{service}-service-hostname={HOST}", f"--{service}-service-port={port}"]
    return argv


HOTROD = Service(
    name="hotrod",
    endpoints={"frontend": f"http://{HOST}:{HOTROD_PORTS['frontend']}"},
    install=lambda layout: _go_build("hotrod", "hotrod.sh", layout.bin / "hotrod"),
    command=lambda layout: hotrod_argv(layout.bin / "hotrod", HOTROD_PORTS),
    env=lambda layout: {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:4318"},
    probe=http_probe(f"http://{HOST}:{HOTROD_PORTS['frontend']}/config", contains="jaeger"),
    autostart=False,
)

# --- rw2client (a Prometheus remote-write 2.0 client for the gateway's tests) ---------

#: ``tests/integration/gateway/rw2client``: the Prometheus project's remote-write client
#: (``github.com/prometheus/client_golang/exp/api/remote``) behind a small command of
#: ours; the gateway tests run it, nothing starts it.
RW2CLIENT = Service(
    name="rw2client",
    endpoints={},
    install=lambda layout: _go_build("rw2client", "rw2client.sh", layout.bin / "rw2client"),
    command=lambda layout: [str(layout.bin / "rw2client"), "-h"],
    probe=lambda: True,
    autostart=False,
)

# --- kube-state-metrics (for the Kubernetes dashboards' tests) -------------------------

#: kube-state-metrics, built from its Go module; tests run it against the kube-apiserver
#: they start, nothing starts it.
KUBE_STATE_METRICS = Service(
    name="kube-state-metrics",
    endpoints={},
    install=lambda layout: _go_build(
        "kube-state-metrics", "kube-state-metrics.sh", layout.bin / "kube-state-metrics"
    ),
    command=lambda layout: [str(layout.bin / "kube-state-metrics"), "version"],
    probe=lambda: True,
    autostart=False,
)

# --- Redis --------------------------------------------------------------------------

REDIS = Service(
    name="redis",
    endpoints={"url": f"redis://{HOST}:6379/0"},
    install=lambda layout: _apt("redis", "redis-server"),
    command=lambda layout: [
        "/usr/bin/redis-server",
        "--bind",
        HOST,
        "--port",
        "6379",
        "--dir",
        str(layout.data("redis")),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ],
    probe=redis_probe(HOST, 6379),
)

# --- node-exporter ------------------------------------------------------------------

NODE_EXPORTER = Service(
    name="node-exporter",
    endpoints={"metrics": f"http://{HOST}:9100/metrics"},
    install=lambda layout: _apt("node-exporter", "prometheus-node-exporter"),
    command=lambda layout: [
        "/usr/bin/prometheus-node-exporter",
        f"--web.listen-address={HOST}:9100",
    ],
    probe=http_probe(f"http://{HOST}:9100/metrics", contains="node_cpu_seconds_total"),
)

# --- rsyslog (benchmark peer, started by the benchmark) --------------------------------

RSYSLOG = Service(
    name="rsyslog",
    endpoints={},
    install=lambda layout: _apt("rsyslog", "rsyslog", "rsyslog-kafka"),
    command=lambda layout: ["/usr/sbin/rsyslogd", "-n"],
    probe=lambda: True,
    autostart=False,
)

# --- journald tools (the shipper's journal source runs journalctl; tests write real
# journal files with systemd-journal-remote, as this machine runs no journald) --------

JOURNAL = Service(
    name="journal",
    endpoints={},
    install=lambda layout: _apt("journal", "systemd", "systemd-journal-remote"),
    command=lambda layout: ["journalctl", "--version"],
    probe=lambda: True,
    autostart=False,
)

# --- kube-apiserver + etcd (for Kubernetes discovery tests, which start their own) -----


def _kube_install(layout: Layout) -> str:
    apt_install("kube-apiserver", ["etcd-server"])
    return _go_build("kube-apiserver", "kube-apiserver.sh", layout.bin / "kube-apiserver")


KUBE_APISERVER = Service(
    name="kube-apiserver",
    endpoints={},
    install=_kube_install,
    command=lambda layout: [str(layout.bin / "kube-apiserver"), "--version"],
    probe=lambda: True,
    autostart=False,
)

# --- Kubernetes tools (tests/integration/k8s): kubectl, kube-controller-manager and
# kubelet built from the same k8s.io/kubernetes module as kube-apiserver, containerd
# and the pause image for the kubelet's node, KEDA's CRDs, operator and metrics
# adapter, and checkov ----------------------------------------------------------------


def _kube_tools_install(layout: Layout) -> str:
    # kube-node.sh would install these itself; here under the stack's apt lock, with
    # the packages' init scripts kept from starting a system containerd.
    apt_install("kube-tools", ["containerd", "runc", "containernetworking-plugins"])
    version = _go_build("kube-tools", "kubectl.sh", layout.bin / "kubectl")
    for program in ("kube-controller-manager", "kubelet"):
        _go_build("kube-tools", f"{program}.sh", layout.bin / program)
    run_script("kube-tools", ASSETS / "build" / "kube-node.sh", str(layout.opt / "kube-node"))
    run_script("kube-tools", ASSETS / "build" / "keda-crds.sh", str(layout.opt / "keda-crds"))
    run_script("kube-tools", ASSETS / "build" / "keda.sh", str(layout.bin))
    run_script("kube-tools", ASSETS / "build" / "checkov.sh", str(layout.opt / "checkov"))
    return version


KUBE_TOOLS = Service(
    name="kube-tools",
    endpoints={},
    install=_kube_tools_install,
    command=lambda layout: [str(layout.bin / "kubectl"), "version", "--client"],
    probe=lambda: True,
    autostart=False,
)

SERVICES: tuple[Service, ...] = (
    KAFKA,
    ELASTICSEARCH,
    PROMETHEUS,
    VICTORIAMETRICS,
    INFLUXDB,
    VICTORIALOGS,
    JAEGER,
    HOTROD,
    RW2CLIENT,
    REDIS,
    NODE_EXPORTER,
    RSYSLOG,
    JOURNAL,
    KUBE_APISERVER,
    KUBE_TOOLS,
    KUBE_STATE_METRICS,
)


def by_name(name: str) -> Service:
    for service in SERVICES:
        if service.name == name:
            return service
    raise KeyError(f"no service named {name!r}; known: {', '.join(s.name for s in SERVICES)}")
