"""``ferryman edge metrics --config F``: scrape targets, batch, buffer on disk, ship to Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from edge.discovery.files import Discoverer, FileSD, Static
from ferryman import headers as h
from ferryman.http import serve
from ferryman.kafkacheck import check_kafka
from ferryman.lineage import LineageExporter
from ferryman.prom.relabel import Relabeler, compile_rules
from ferryman.telemetry import Registry
from ferryman.tls import ssl_verify
from ferryman.wire.otlp import CLUSTER_ATTRIBUTE

from ..diskqueue import DiskQueue
from ..sender import KafkaSender
from .batcher import Batcher
from .config import EdgeMetricsConfig, ScrapeConfig, TLSConfig, load_config
from .scrape import ScrapeLoop
from .series import SeriesBuilder
from .targets import build_targets

__all__ = ["MetricsShipper"]

log = logging.getLogger("ferryman.edge.metrics")


@dataclass
class _Job:
    config: ScrapeConfig
    discoverers: list[Discoverer]
    loops: dict[tuple[str, tuple[tuple[str, str], ...]], ScrapeLoop] = field(default_factory=dict)
    # Compiled once per job, on the native engine where it takes every rule (else RE2,
    # else the Python translator: same answers, logged once).
    relabel: Relabeler = field(init=False)
    metric_relabel: Relabeler | None = field(init=False)

    def __post_init__(self) -> None:
        self.relabel = compile_rules(self.config.relabel_configs, engine="auto")
        self.metric_relabel = (
            compile_rules(self.config.metric_relabel_configs, engine="auto")
            if self.config.metric_relabel_configs
            else None
        )


class MetricsShipper:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config: EdgeMetricsConfig = load_config(config_path)
        self.registry = Registry()
        r = self.registry
        self.m_scrapes = r.counter(
            "ferryman_scrapes_total", "Scrapes by job and result.", ["job", "result"]
        )
        self.m_targets = r.gauge("ferryman_targets", "Active scrape targets by job.", ["job"])
        self.m_messages = r.counter(
            "ferryman_messages_buffered_total", "Remote-write messages written to the disk buffer."
        )
        self.m_samples = r.counter(
            "ferryman_samples_buffered_total", "Samples written to the disk buffer."
        )
        self.m_sent = r.counter("ferryman_records_sent_total", "Samples acknowledged by Kafka.")
        self.m_dropped = r.counter(
            "ferryman_samples_dropped_total", "Samples dropped, by reason.", ["reason"]
        )
        # At 0 from the start: the first drop is then an increase() an alert sees.
        self.m_dropped.labels(reason="buffer_full")
        self.m_errors = r.counter(
            "ferryman_errors_total", "Errors by type and stage.", ["error_type", "stage"]
        )
        self.m_native_fallbacks = r.counter(
            "ferryman_edge_native_fallbacks_total",
            "Scrape bodies the native parser left to the Python parser, by reason "
            "(invalid_exposition: Python refuses it too; unsupported_spelling).",
            ["reason"],
        )
        for reason in ("invalid_exposition", "unsupported_spelling"):
            self.m_native_fallbacks.labels(reason=reason)
        self.m_backlog = r.gauge("ferryman_buffer_bytes", "Bytes waiting in the disk buffer.")
        self.m_reloads = r.counter(
            "ferryman_config_reloads_total", "Reloads by result.", ["result"]
        )
        settings = self.config.ferryman
        #: Read once at start; a reload keeps them (restart to change Kafka settings).
        self.kafka_credentials = settings.kafka.credentials("ferryman.kafka")
        self.queue = DiskQueue(
            settings.buffer.directory, max_bytes=settings.buffer.max_bytes, on_drop=self._dropped
        )
        self.batcher = Batcher(
            self.queue,
            buckets=settings.buckets,
            max_samples=settings.max_samples_per_message,
            messages=self.m_messages,
            samples=self.m_samples,
        )
        cluster = self.config.global_.external_labels.get("cluster")
        self.lineage = (
            LineageExporter(
                settings.lineage,
                bootstrap_servers=settings.kafka.bootstrap_servers,
                registry=r,
                resource={
                    "service.name": "ferryman-edge-metrics",
                    **({CLUSTER_ATTRIBUTE: cluster} if cluster else {}),
                },
                credentials=self.kafka_credentials,
                cluster=cluster,
            )
            if settings.lineage.enabled
            else None
        )
        self.sender = KafkaSender(
            self.queue,
            bootstrap_servers=settings.kafka.bootstrap_servers,
            topic=settings.kafka.topic,
            headers=self._headers(),
            ack_timeout=settings.kafka.acks_timeout,
            sent=self.m_sent,
            errors=self.m_errors,
            backlog=self.m_backlog,
            credentials=self.kafka_credentials,
            lineage=self.lineage,
        )
        self.jobs: dict[str, _Job] = {}
        self._stop = asyncio.Event()
        self._reload = False
        self._synced = False
        # The first scrape after start is flushed at once rather than on the next
        # flush_interval tick: a new shipper shows up in Kafka within a second.
        self._first_flushed = False

    def _headers(self) -> list[tuple[str, bytes]]:
        out = [(h.SCHEMA, h.SCHEMA_REMOTE_WRITE)]
        cluster = self.config.global_.external_labels.get("cluster")
        if cluster:
            out.append((h.CLUSTER, cluster.encode()))
        if self.config.ferryman.kafka.tenant:
            out.append((h.TENANT, self.config.ferryman.kafka.tenant.encode()))
        return out

    def _dropped(self, records: int, samples: int) -> None:
        self.m_dropped.labels(reason="buffer_full").inc(samples)
        log.error(
            "disk buffer full (%d bytes): dropped the oldest %d messages, %d samples",
            self.config.ferryman.buffer.max_bytes,
            records,
            samples,
        )

    # ---- running --------------------------------------------------------------------

    async def run(self) -> None:
        """Scrape and ship until SIGTERM; raises KafkaStartError first when Kafka refuses
        the configured certificate or login (see :mod:`ferryman.kafkacheck`)."""
        check_kafka(self.config.ferryman.kafka.bootstrap_servers, self.kafka_credentials)
        # Thousands of long-lived cached series per target make the cyclic collector's
        # frequent young-generation passes costly; nothing here builds cycles.
        gc.set_threshold(50_000, 20, 20)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        server = serve(
            self.config.ferryman.listen,
            self.registry,
            {
                "/-/healthy": lambda: True,
                "/-/ready": lambda: self._synced,
            },
        )
        self.sender.start()
        self._apply(self.config)
        log.info(
            "edge metrics shipper running: %d jobs, buffer %s, Kafka %s topic %s, http on %s:%d",
            len(self.jobs),
            self.config.ferryman.buffer.directory,
            self.config.ferryman.kafka.bootstrap_servers,
            self.config.ferryman.kafka.topic,
            *server.server_address[:2],
        )
        last_flush = time.monotonic()
        try:
            await self._sync_targets()  # scrape loops start now, not after the first tick
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=0.2)
                if self._reload:
                    self._reload = False
                    self._reload_config()
                await self._sync_targets()
                if time.monotonic() - last_flush >= self.config.ferryman.flush_interval:
                    self.batcher.flush()
                    self.sender.wake()
                    last_flush = time.monotonic()
        finally:
            for job in self.jobs.values():
                for scrape_loop in job.loops.values():
                    await scrape_loop.close()
            self.batcher.flush()
            self.sender.stop(drain_timeout=10.0)
            self.queue.close()
            server.shutdown()
            log.info(
                "edge metrics shipper stopped; %d bytes left in the disk buffer",
                self.queue.pending_bytes(),
            )

    def _scrape_counter(self, job: str) -> Callable[[bool], None]:
        def count(up: bool) -> None:
            self.m_scrapes.labels(job=job, result="success" if up else "failure").inc()
            if not self._first_flushed:
                self._first_flushed = True
                self.batcher.flush()
                self.sender.wake()

        return count

    def _request_reload(self) -> None:
        self._reload = True

    def _reload_config(self) -> None:
        try:
            config = load_config(self.config_path)
        except Exception as exc:
            self.m_reloads.labels(result="failure").inc()
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        self.m_reloads.labels(result="success").inc()
        log.info("configuration reloaded from %s", self.config_path)
        self.config = config
        self._apply(config)

    def _apply(self, config: EdgeMetricsConfig) -> None:
        for name in list(self.jobs):
            job = self.jobs.pop(name)
            for key, scrape_loop in job.loops.items():
                del key
                asyncio.get_running_loop().create_task(scrape_loop.stop())
        for job_config in config.scrape_configs:
            discoverers: list[Discoverer] = [Static(job_config.job_name, job_config.static_configs)]
            discoverers += [FileSD(c) for c in job_config.file_sd_configs]
            if job_config.kubernetes_sd_configs:
                from edge.discovery.kubernetes import KubernetesSD

                discoverers += [KubernetesSD(c) for c in job_config.kubernetes_sd_configs]
            self.jobs[job_config.job_name] = _Job(job_config, discoverers)
        self._synced = False

    async def _sync_targets(self) -> None:
        config = self.config
        for name, job in self.jobs.items():
            changed = [d.changed() for d in job.discoverers]
            if not any(changed):
                continue
            relabeler = job.relabel
            groups = [g for d in job.discoverers for g in d.groups()]
            targets, errors = build_targets(job.config, config, relabeler, groups)
            for error in errors:
                self.m_errors.labels(error_type="target", stage="discovery").inc()
                log.error("discovery: %s", error)
            wanted = {t.key: t for t in targets}
            for key in [k for k in job.loops if k not in wanted]:
                await job.loops.pop(key).stop()
            metric_relabel = job.metric_relabel
            for key, target in wanted.items():
                if key in job.loops:
                    continue
                builder = SeriesBuilder(
                    target.labels,
                    honor_labels=job.config.honor_labels,
                    metric_relabel=metric_relabel,
                    external_labels=config.global_.external_labels,
                    buckets=config.ferryman.buckets,
                    label_limit=job.config.label_limit,
                    name_length_limit=job.config.label_name_length_limit,
                    value_length_limit=job.config.label_value_length_limit,
                )
                scrape_loop = ScrapeLoop(
                    # A client (connection pool) per target: one shared pool scans all
                    # its connections on every request.
                    target,
                    _client(job.config),
                    builder,
                    self.batcher.add,
                    honor_timestamps=job.config.honor_timestamps,
                    sample_limit=job.config.sample_limit,
                    body_size_limit=job.config.body_size_limit,
                    auth_header=job.config.auth_header(),
                    sni_hostname=job.config.tls_config.server_name,
                    on_result=self._scrape_counter(name),
                    batcher=self.batcher,
                    fallbacks=self.m_native_fallbacks,
                )
                job.loops[key] = scrape_loop
                scrape_loop.start()
            self.m_targets.labels(job=name).set(len(job.loops))
        self._synced = True


#: TLS settings → (the files' modification times, the context built from them).
_TLS_CONTEXTS: dict[TLSConfig, tuple[tuple[int, ...], ssl.SSLContext | bool]] = {}


def _tls_context(tls: TLSConfig) -> ssl.SSLContext | bool:
    """One context for every target with the same TLS settings: building one loads the
    CA store (tens of milliseconds and about 0.7 MiB each), so a context per target made
    2,000 targets take over a minute to start. A changed file (a rotated certificate)
    gives a new context for the targets created afterwards."""
    files = [f for f in (tls.ca_file, tls.cert_file, tls.key_file) if f is not None]
    try:
        stamp = tuple(f.stat().st_mtime_ns for f in files)
    except OSError:
        stamp = ()  # ssl_verify below reports the missing file
    cached = _TLS_CONTEXTS.get(tls)
    if cached is not None and stamp and cached[0] == stamp:
        return cached[1]
    context = ssl_verify(
        ca_file=tls.ca_file,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
        insecure_skip_verify=tls.insecure_skip_verify,
    )
    if files and stamp:
        _TLS_CONTEXTS[tls] = (stamp, context)
    return context


def _client(job: ScrapeConfig) -> aiohttp.ClientSession:
    """The scrape client of one target: aiohttp, a fifth of httpx's CPU per scrape
    (bench/scrape_client.py). No proxy from the environment and no cookies kept, as
    Prometheus; the scrape timeout is applied per scrape by the loop."""
    verify = _tls_context(job.tls_config)
    auth = None
    if job.basic_auth is not None:
        auth = aiohttp.BasicAuth(job.basic_auth.username, job.basic_auth.secret())
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=verify, limit=256),
        auth=auth,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
    )
