"""The dashboards, one function each; :data:`DASHBOARDS` maps a file name to its JSON.

Every metric name here is one ferryman, node-exporter, kube-state-metrics or the
kubelet (cAdvisor) really exports; every series is narrowed by the ``cluster``,
``job`` and ``instance`` variables except the count transform's line counters, which
are written, not scraped, and so carry ``cluster`` alone (see ``UNSCRAPED``).
"""

from __future__ import annotations

from collections.abc import Callable

from .panels import (
    Json,
    Layout,
    dashboard,
    datasource_variable,
    ds,
    logs,
    prom,
    query_variable,
    selector,
    stat,
    table,
    textbox_variable,
    timeseries,
)

__all__ = ["DASHBOARDS", "UNSCRAPED"]

RATE = "[$__rate_interval]"
PROM = ds("prometheus")
#: Metrics written by the count transform (remote-write, no scrape): no job/instance.
UNSCRAPED = frozenset({"ferryman_log_lines_total"})
#: Levels counted as errors in log lines (case-insensitive).
ERROR_LEVELS = "(?i)(error|err|fatal|crit|critical|alert|emerg|panic)"
ERROR_MATCHER = f'level=~"{ERROR_LEVELS}"'
RUNNING = 'phase="Running"'
IDLE = 'mode="idle"'
NOT_IDLE = 'mode!="idle"'


def _lines(*matchers: str) -> str:
    return selector("ferryman_log_lines_total", *matchers, scope=("cluster",))


def _prom_variables(cluster_from: str = "up", *extra: Json, by_target: bool = True) -> list[Json]:
    """The datasource and cluster variables, then (``by_target``) job and instance."""
    target = [
        query_variable("job", f'label_values({cluster_from}{{cluster=~"$cluster"}}, job)', PROM),
        query_variable(
            "instance",
            f'label_values({cluster_from}{{cluster=~"$cluster", job=~"$job"}}, instance)',
            PROM,
        ),
    ]
    return [
        datasource_variable("prometheus", "prometheus"),
        query_variable("cluster", f"label_values({cluster_from}, cluster)", PROM),
        *(target if by_target else []),
        *extra,
    ]


def _cluster_selector(metric: str, *matchers: str) -> str:
    """A selector scoped by cluster only: the Kubernetes panels mix cAdvisor's jobs
    (one per node) with kube-state-metrics', so a job or instance choice would empty
    half of them."""
    return selector(metric, *matchers, scope=("cluster",))


#: Why an error-trace panel may list the wrong traces (README: Error traces and Jaeger).
_ERROR_SEARCH = (
    "Jaeger's memory store before v2.17.0 takes the error=true search for error=false and lists "
    "traces with an Ok status instead."
)


def overview() -> Json:
    layout = Layout()
    layout.row("Per cluster")
    layout.add(
        timeseries(
            "Targets up",
            [prom(f"sum by (cluster) ({selector('up')})", "{{cluster}}")],
            "short",
            description="Scrape targets answering, per cluster (up == 1).",
        )
    )
    layout.add(
        timeseries(
            "Targets down",
            [prom(f"count by (cluster, job) ({selector('up')} == 0)", "{{cluster}} {{job}}")],
            "short",
            description="Scrape targets not answering, per cluster and job.",
        )
    )
    layout.add(
        timeseries(
            "Nodes",
            [prom(f"count by (cluster) ({selector('kube_node_info')})", "{{cluster}}")],
            "short",
            description="Nodes kube-state-metrics knows, per cluster.",
        )
    )
    layout.add(
        timeseries(
            "Pods running",
            [
                prom(
                    f"sum by (cluster) ({selector('kube_pod_status_phase', RUNNING)})",
                    "{{cluster}}",
                )
            ],
            "short",
        )
    )
    layout.add(
        timeseries(
            "Log volume",
            [prom(f"sum by (cluster) (rate({_lines()}{RATE}))", "{{cluster}}")],
            "short",
            description="Log lines per second, counted by the count transform.",
        )
    )
    layout.add(
        timeseries(
            "Error lines",
            [
                prom(
                    f"sum by (cluster) (rate({_lines(ERROR_MATCHER)}{RATE}))",
                    "{{cluster}}",
                )
            ],
            "short",
            description="Log lines per second whose level is an error level (needs the "
            "count transform's `by: [level]`).",
        )
    )
    layout.add(
        timeseries(
            "Spans received",
            [
                prom(
                    f"sum by (cluster) (rate({selector('ferryman_spans_received_total')}{RATE}))",
                    "{{cluster}}",
                )
            ],
            "short",
            description="Spans per second the edge traces receivers decoded, per cluster.",
        )
    )
    layout.add(
        timeseries(
            "Spans refused",
            [
                prom(
                    "sum by (cluster, reason) "
                    f"(rate({selector('ferryman_spans_refused_total')}{RATE}))",
                    "{{cluster}} {{reason}}",
                )
            ],
            "short",
        )
    )
    layout.row("Traces with errors (Jaeger), one table per cluster")
    layout.add(
        table(
            "Error traces in $cluster",
            [
                {
                    "datasource": ds("jaeger", "traces"),
                    "queryType": "search",
                    "service": "$service",
                    "tags": "error=true k8s.cluster.name=$cluster",
                    "limit": 20,
                }
            ],
            description="Traces with an error span; Jaeger has no per-cluster error-rate "
            "series, so this lists them (repeated for each selected cluster). " + _ERROR_SEARCH,
            repeat="cluster",
        ),
        24,
        8,
    )
    return dashboard(
        "ferryman-overview",
        "Clusters overview",
        "Every cluster at a glance: targets, nodes, pods, log volume and errors, spans.",
        _prom_variables(
            "up",
            datasource_variable("jaeger", "jaeger", "traces", "Traces"),
            textbox_variable("service", "frontend", "Service (traces)"),
        ),
        layout,
    )


def nodes() -> Json:
    """Node Exporter Full's headline panels and its basic CPU, memory, network, disk."""
    n = "node_cpu_seconds_total"
    layout = Layout()
    layout.row("Quick CPU / Mem / Disk")
    cpu_busy = f"100 * (1 - avg by (cluster, instance) (rate({selector(n, IDLE)}{RATE})))"
    layout.add(stat("CPU busy", [prom(cpu_busy, "{{cluster}} {{instance}}")], "percent"), 4, 4)
    load = (
        f"100 * avg by (cluster, instance) ({selector('node_load1')}) / "
        f"count by (cluster, instance) ({selector(n, IDLE)})"
    )
    layout.add(stat("Sys load (1m avg)", [prom(load, "{{cluster}} {{instance}}")], "percent"), 4, 4)
    ram = (
        f"100 * (1 - sum by (cluster, instance) ({selector('node_memory_MemAvailable_bytes')}) / "
        f"sum by (cluster, instance) ({selector('node_memory_MemTotal_bytes')}))"
    )
    layout.add(stat("RAM used", [prom(ram, "{{cluster}} {{instance}}")], "percent"), 4, 4)
    root = 'mountpoint="/", fstype!="rootfs"'
    fs = (
        f"100 * (1 - sum by (cluster, instance) ({selector('node_filesystem_avail_bytes', root)})"
        f" / sum by (cluster, instance) ({selector('node_filesystem_size_bytes', root)}))"
    )
    layout.add(stat("Root FS used", [prom(fs, "{{cluster}} {{instance}}")], "percent"), 4, 4)
    cores = f"count by (cluster, instance) ({selector(n, IDLE)})"
    layout.add(stat("CPU cores", [prom(cores, "{{cluster}} {{instance}}")], "short"), 4, 4)
    uptime = f"{selector('node_time_seconds')} - {selector('node_boot_time_seconds')}"
    layout.add(stat("Uptime", [prom(uptime, "{{cluster}} {{instance}}")], "s"), 4, 4)
    layout.row("Basic CPU / Mem / Net / Disk")
    cpu_modes = (
        f"sum by (cluster, instance, mode) (rate({selector(n, NOT_IDLE)}{RATE})) / "
        f"on (cluster, instance) group_left count by (cluster, instance) "
        f"({selector(n, IDLE)})"
    )
    layout.add(
        timeseries(
            "CPU basic",
            [prom(cpu_modes, "{{cluster}} {{instance}} {{mode}}")],
            "percentunit",
            stack=True,
        )
    )
    mem = (
        f"sum by (cluster, instance) ({selector('node_memory_MemTotal_bytes')}) - "
        f"sum by (cluster, instance) ({selector('node_memory_MemAvailable_bytes')})"
    )
    layout.add(timeseries("Memory used", [prom(mem, "{{cluster}} {{instance}}")], "bytes"))
    net = 'device!~"lo|veth.*|docker.*|cali.*|flannel.*|cni.*"'
    layout.add(
        timeseries(
            "Network traffic",
            [
                prom(
                    f"sum by (cluster, instance, device) "
                    f"(rate({selector('node_network_receive_bytes_total', net)}{RATE}))",
                    "{{cluster}} {{instance}} {{device}} receive",
                ),
                prom(
                    f"-sum by (cluster, instance, device) "
                    f"(rate({selector('node_network_transmit_bytes_total', net)}{RATE}))",
                    "{{cluster}} {{instance}} {{device}} transmit",
                ),
            ],
            "Bps",
        )
    )
    real_fs = 'fstype!~"tmpfs|overlay|squashfs|rootfs|nsfs|ramfs"'
    layout.add(
        timeseries(
            "Disk space used",
            [
                prom(
                    f"100 * (1 - {selector('node_filesystem_avail_bytes', real_fs)} / "
                    f"{selector('node_filesystem_size_bytes', real_fs)})",
                    "{{cluster}} {{instance}} {{mountpoint}}",
                )
            ],
            "percent",
        )
    )
    return dashboard(
        "ferryman-nodes",
        "Nodes",
        "node-exporter per node, after Node Exporter Full's headline and basic panels.",
        _prom_variables("node_uname_info"),
        layout,
    )


def kubernetes() -> Json:
    """The Kubernetes mixin's compute-resources views, from cAdvisor and kube-state-metrics."""
    ns = 'namespace=~"$namespace"'
    container = 'container!="", image!=""'
    layout = Layout()
    layout.row("Compute resources")
    layout.add(
        timeseries(
            "CPU usage by namespace",
            [
                prom(
                    "sum by (cluster, namespace) (rate("
                    + _cluster_selector("container_cpu_usage_seconds_total", ns, container)
                    + f"{RATE}))",
                    "{{cluster}} {{namespace}}",
                )
            ],
            "short",
            description="Cores used (cAdvisor, via the kubelet's /metrics/cadvisor).",
        )
    )
    layout.add(
        timeseries(
            "Memory usage (working set) by namespace",
            [
                prom(
                    "sum by (cluster, namespace) "
                    f"({_cluster_selector('container_memory_working_set_bytes', ns, container)})",
                    "{{cluster}} {{namespace}}",
                )
            ],
            "bytes",
        )
    )
    for resource, unit in (("cpu", "percentunit"), ("memory", "percentunit")):
        wanted = f'resource="{resource}"'
        commit = (
            "sum by (cluster) ("
            f"{_cluster_selector('kube_pod_container_resource_requests', ns, wanted)})"
            " / sum by (cluster) ("
            f"{_cluster_selector('kube_node_status_allocatable', wanted)})"
        )
        layout.add(
            timeseries(
                f"{resource.upper() if resource == 'cpu' else 'Memory'} requests commitment",
                [prom(commit, "{{cluster}}")],
                unit,
                description="Requests of the selected namespaces over allocatable.",
            )
        )
    layout.row("Workloads (kube-state-metrics)")
    layout.add(
        timeseries(
            "Deployment replicas available / desired",
            [
                prom(
                    f"sum by (cluster, namespace, deployment) "
                    f"({_cluster_selector('kube_deployment_status_replicas_available', ns)})",
                    "{{cluster}} {{namespace}}/{{deployment}} available",
                ),
                prom(
                    f"sum by (cluster, namespace, deployment) "
                    f"({_cluster_selector('kube_deployment_spec_replicas', ns)})",
                    "{{cluster}} {{namespace}}/{{deployment}} desired",
                ),
            ],
            "short",
        )
    )
    layout.add(
        timeseries(
            "Pods by phase",
            [
                prom(
                    f"sum by (cluster, phase) ({_cluster_selector('kube_pod_status_phase', ns)})",
                    "{{cluster}} {{phase}}",
                )
            ],
            "short",
            stack=True,
        )
    )
    layout.add(
        timeseries(
            "Container restarts",
            [
                prom(
                    "sum by (cluster, namespace, pod) (increase("
                    f"{_cluster_selector('kube_pod_container_status_restarts_total', ns)}{RATE}))",
                    "{{cluster}} {{namespace}}/{{pod}}",
                )
            ],
            "short",
        )
    )
    layout.add(
        timeseries(
            "Containers waiting",
            [
                prom(
                    "sum by (cluster, namespace, reason) "
                    f"({_cluster_selector('kube_pod_container_status_waiting_reason', ns)})",
                    "{{cluster}} {{namespace}} {{reason}}",
                )
            ],
            "short",
        )
    )
    return dashboard(
        "ferryman-kubernetes",
        "Kubernetes workloads",
        "Compute resources and workload state per cluster and namespace.",
        _prom_variables(
            "kube_node_info",
            query_variable(
                "namespace",
                'label_values(kube_namespace_status_phase{cluster=~"$cluster"}, namespace)',
                PROM,
            ),
            by_target=False,
        ),
        layout,
    )


def _logs_dashboard(
    uid: str,
    title: str,
    type_: str,
    default: str,
    volume: Json,
    lines: Json,
    cluster: Json,
    *extra: Json,
    search: str = "",
) -> Json:
    layout = Layout()
    layout.add(
        timeseries(
            "Log volume by level",
            [volume],
            "short",
            stack=True,
            description="Lines per interval, by level.",
        ),
        24,
        8,
    )
    layout.add(
        logs(
            "Logs",
            [lines],
            description="Lines matching the search; a trace id "
            "links to its trace in Jaeger (derived field).",
        ),
        24,
        16,
    )
    return dashboard(
        uid,
        title,
        f"Log volume by level and the lines themselves ({title.split()[-1]}).",
        [
            datasource_variable(type_, default),
            cluster,
            *extra,
            textbox_variable("search", search, "Line contains"),
        ],
        layout,
        tags=("ferryman", "logs"),
    )


def logs_loki() -> Json:
    loki = ds("loki")
    stream = '{cluster=~"$cluster"}'
    return _logs_dashboard(
        "ferryman-logs-loki",
        "Logs (Loki)",
        "loki",
        "loki",
        {
            "datasource": loki,
            "expr": f'sum by (level) (count_over_time({stream} |= "$search" [$__auto]))',
            "legendFormat": "{{level}}",
            "queryType": "range",
        },
        {"datasource": loki, "expr": f'{stream} |= "$search"', "queryType": "range"},
        query_variable("cluster", "label_values(cluster)", loki),
    )


def logs_elasticsearch() -> Json:
    es = ds("elasticsearch")
    # Raw: a textbox holds Lucene syntax, which the lucene format would escape.
    query = "cluster:$cluster AND (${search:raw})"
    return _logs_dashboard(
        "ferryman-logs-elasticsearch",
        "Logs (Elasticsearch)",
        "elasticsearch",
        "elasticsearch-logs",
        {
            "datasource": es,
            "query": query,
            "timeField": "@timestamp",
            "metrics": [{"id": "1", "type": "count"}],
            "bucketAggs": [
                {
                    "id": "2",
                    "type": "terms",
                    "field": "labels.level",
                    "settings": {
                        "size": "10",
                        "order": "desc",
                        "orderBy": "_count",
                        "min_doc_count": "1",
                    },
                },
                {
                    "id": "3",
                    "type": "date_histogram",
                    "field": "@timestamp",
                    "settings": {"interval": "auto"},
                },
            ],
        },
        {
            "datasource": es,
            "query": query,
            "timeField": "@timestamp",
            "metrics": [{"id": "1", "type": "logs", "settings": {"limit": "500"}}],
            "bucketAggs": [],
        },
        query_variable("cluster", '{"find": "terms", "field": "cluster"}', es, all_value="*"),
        search="*",  # Lucene: an empty "()" would not parse
    )


def logs_victorialogs() -> Json:
    vl = ds("victoriametrics-logs-datasource")
    stream = '{cluster=~"$cluster"}'
    return _logs_dashboard(
        "ferryman-logs-victorialogs",
        "Logs (VictoriaLogs)",
        "victoriametrics-logs-datasource",
        "victorialogs",
        {
            "datasource": vl,
            "expr": f"{stream} $search | stats by (level) count()",
            "legendFormat": "{{level}}",
            "queryType": "statsRange",
        },
        {"datasource": vl, "expr": f"{stream} $search", "queryType": "instant"},
        query_variable("cluster", {"type": "fieldValue", "field": "cluster", "query": "*"}, vl),
        # LogsQL words, or * for every line: an empty phrase "" matches empty lines only.
        search="*",
    )


def traces() -> Json:
    jaeger = ds("jaeger")
    layout = Layout()
    layout.add(
        timeseries(
            "Spans received per cluster",
            [
                prom(
                    f"sum by (cluster) (rate({selector('ferryman_spans_received_total')}{RATE}))",
                    "{{cluster}}",
                    variable="metrics",
                )
            ],
            "short",
        ),
        24,
        6,
    )
    for title, tags, description in (
        ("Traces in $cluster", "k8s.cluster.name=$cluster $tags", ""),
        (
            "Error traces in $cluster",
            "error=true k8s.cluster.name=$cluster $tags",
            "Traces with an error span. " + _ERROR_SEARCH,
        ),
    ):
        layout.add(
            table(
                title,
                [
                    {
                        "datasource": jaeger,
                        "queryType": "search",
                        "service": "$service",
                        "tags": tags,
                        "limit": 20,
                    }
                ],
                description=description,
                repeat="cluster",
            ),
            24,
            8,
        )
    metrics = ds("prometheus", "metrics")
    return dashboard(
        "ferryman-traces",
        "Traces",
        "Jaeger search per cluster (the k8s.cluster.name resource attribute the edge "
        "receivers set), with the receivers' span rate.",
        [
            datasource_variable("jaeger", "jaeger"),
            datasource_variable("prometheus", "prometheus", "metrics", "Metrics"),
            query_variable("cluster", "label_values(up, cluster)", metrics),
            query_variable("job", 'label_values(up{cluster=~"$cluster"}, job)', metrics),
            query_variable(
                "instance",
                'label_values(up{cluster=~"$cluster", job=~"$job"}, instance)',
                metrics,
            ),
            textbox_variable("service", "frontend"),
            textbox_variable("tags", "", "Tags (logfmt)"),
        ],
        layout,
        tags=("ferryman", "traces"),
    )


def _rate(metric: str, by: str, *matchers: str, legend: str) -> Json:
    return prom(f"sum by ({by}) (rate({selector(metric, *matchers)}{RATE}))", legend)


def ferryman() -> Json:
    fn = 'function=~"$function"'
    layout = Layout()
    layout.row("Functions (workers)")
    by_fn = "cluster, function"
    legend = "{{cluster}} {{function}}"
    layout.add(
        timeseries(
            "Records in",
            [_rate("ferryman_records_received_total", by_fn, fn, legend=legend)],
            "short",
        )
    )
    layout.add(
        timeseries(
            "Records out", [_rate("ferryman_records_sent_total", by_fn, fn, legend=legend)], "short"
        )
    )
    layout.add(
        timeseries(
            "Errors",
            [
                _rate(
                    "ferryman_errors_total",
                    "cluster, function, error_type, stage",
                    fn,
                    legend="{{cluster}} {{function}} {{error_type}} {{stage}}",
                )
            ],
            "short",
        )
    )
    layout.add(
        timeseries(
            "Batches by outcome",
            [
                _rate(
                    "ferryman_batches_total",
                    "cluster, function, outcome",
                    fn,
                    legend="{{cluster}} {{function}} {{outcome}}",
                )
            ],
            "short",
        )
    )
    layout.add(
        timeseries(
            "Consumer lag per group and partition",
            [
                prom(
                    f"max by (cluster, function, topic, partition) "
                    f"({selector('ferryman_consumer_lag', fn)})",
                    "{{cluster}} ferryman-{{function}} {{topic}}/{{partition}}",
                )
            ],
            "short",
            description="Records behind the end of each partition; the consumer group is "
            "ferryman-<function> unless configured otherwise.",
        )
    )
    layout.add(
        timeseries(
            "Delivery latency (batch start to commit)",
            [
                prom(
                    f"histogram_quantile({q}, sum by (cluster, function, le) (rate("
                    f"{selector('ferryman_batch_duration_seconds_bucket', fn)}{RATE})))",
                    f"{{{{cluster}}}} {{{{function}}}} p{int(q * 100)}",
                    ref,
                )
                for ref, q in (("A", 0.5), ("B", 0.99))
            ],
            "s",
        )
    )
    layout.row("Dead letters and the retry lane")
    layout.add(
        timeseries(
            "Dead-lettered records",
            [_rate("ferryman_records_dead_lettered_total", by_fn, fn, legend=legend)],
            "short",
        )
    )
    layout.add(
        timeseries(
            "Retry-lane depth",
            [
                prom(
                    f"sum by (cluster, function, state) "
                    f"({selector('ferryman_retry_lane_queue_length', fn)})",
                    "{{cluster}} {{function}} {{state}}",
                )
            ],
            "short",
        )
    )
    layout.add(
        timeseries(
            "Records handed to the retry lane",
            [_rate("ferryman_records_handed_to_lane_total", by_fn, fn, legend=legend)],
            "short",
        )
    )
    layout.add(
        timeseries(
            "Lane records retried",
            [_rate("ferryman_records_retried_total", by_fn, fn, legend=legend)],
            "short",
        )
    )
    layout.row("Edge shippers")
    layout.add(
        timeseries(
            "Disk buffer",
            [
                prom(
                    f"sum by (cluster, instance) ({selector('ferryman_buffer_bytes')})",
                    "{{cluster}} {{instance}}",
                )
            ],
            "bytes",
            description="Bytes waiting in the metrics shippers' disk buffers.",
        )
    )
    layout.add(
        timeseries(
            "Drops",
            [
                _rate(
                    "ferryman_samples_dropped_total",
                    "cluster, reason",
                    legend="{{cluster}} samples {{reason}}",
                ),
                _rate(
                    "ferryman_lines_dropped_total",
                    "cluster, reason",
                    'function=""',
                    legend="{{cluster}} lines {{reason}}",
                ),
            ],
            "short",
            description="Samples the metrics shippers and lines the log shippers dropped.",
        )
    )
    layout.add(
        timeseries(
            "Log files: bytes not yet shipped",
            [
                prom(
                    f"sum by (cluster, instance) ({selector('ferryman_file_lag_bytes')})",
                    "{{cluster}} {{instance}}",
                )
            ],
            "bytes",
        )
    )
    layout.add(
        timeseries(
            "Shipped to Kafka",
            [
                _rate(
                    "ferryman_records_sent_total",
                    "cluster, job",
                    'function=""',
                    legend="{{cluster}} {{job}}",
                )
            ],
            "short",
            description="Samples and lines the edge shippers had acknowledged by Kafka.",
        )
    )
    layout.row("Scrape health")
    layout.add(
        timeseries(
            "Scrapes by result",
            [
                _rate(
                    "ferryman_scrapes_total",
                    "cluster, job, result",
                    legend="{{cluster}} {{job}} {{result}}",
                )
            ],
            "short",
        )
    )
    layout.add(
        timeseries(
            "Targets per cluster",
            [
                prom(f"sum by (cluster) ({selector('ferryman_targets')})", "{{cluster}} active"),
                prom(f"count by (cluster) ({selector('up')} == 0)", "{{cluster}} down", "B"),
            ],
            "short",
        )
    )
    metrics = _prom_variables(
        "up",
        query_variable(
            "function",
            'label_values(ferryman_records_received_total{cluster=~"$cluster"}, function)',
            PROM,
        ),
    )
    return dashboard(
        "ferryman-health",
        "ferryman health",
        "ferryman's own pipeline: functions, lag, dead letters, retry lane, edge buffers "
        "and drops, scrape health, delivery latency.",
        metrics,
        layout,
    )


DASHBOARDS: dict[str, Callable[[], Json]] = {
    "overview.json": overview,
    "nodes.json": nodes,
    "kubernetes.json": kubernetes,
    "logs-loki.json": logs_loki,
    "logs-elasticsearch.json": logs_elasticsearch,
    "logs-victorialogs.json": logs_victorialogs,
    "traces.json": traces,
    "ferryman.json": ferryman,
}
