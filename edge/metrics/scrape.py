"""One scrape loop per target: fetch, parse, label, limit, mark stale, report.

Per scrape, as Prometheus does: the body is fetched with the scrape timeout and
the body size limit; parsed (text 0.0.4 or OpenMetrics); each series labelled
(see :mod:`.series`); ``sample_limit`` checked after metric relabeling (a breach
fails the whole scrape); series that vanished since the previous scrape get a
staleness marker; and the report series ``up``, ``scrape_duration_seconds``,
``scrape_samples_scraped``, ``scrape_samples_post_metric_relabeling`` and
``scrape_series_added`` are written with the target's labels. A failed scrape
writes ``up 0`` and marks every series of the previous scrape stale.

Natively when it can: given a :class:`~.batcher.Batcher` whose messages are held
natively, the loop keeps its series cache in a :class:`ferryman_native.ScrapeCache`
(native memory the cyclic GC never walks), which parses the body, looks every
series up, encodes every sample and marks stale series in one pass, and calls back
into :meth:`SeriesBuilder.build` only for a series it has not seen (so relabeling
stays the Python one). A body the native parser declines (one Python's parser
refuses, or a spelling it leaves to Python) is parsed in Python and its samples go
through the same native cache; each such scrape counts in
``ferryman_edge_native_fallbacks_total{reason}``. Without the native module, the
Python path below (the oracle of ``tests/unit/native/test_scrape_native.py``) does it
all, with the same messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import aiohttp

from ferryman.prom.exposition import (
    ParseError,
    ScrapedSample,
    is_openmetrics,
    negotiate_accept,
    parse,
)
from ferryman.telemetry import Counter

from .batcher import Batcher
from .series import (
    STALE_NAN,
    EncodedSeries,
    LimitExceeded,
    SeriesBuilder,
    encode_sample,
    timestamp_field,
)
from .targets import Target

try:
    from ferryman_native import SampleLimitExceeded, ScrapeCache
except ImportError:  # an older build of the native module, or none: Python does it all
    ScrapeCache = None  # type: ignore[assignment,misc]

    class SampleLimitExceeded(ValueError):  # type: ignore[no-redef]
        """Never raised: stands in for the native module's exception."""


__all__ = ["ScrapeFailed", "ScrapeLoop", "ScrapeResult"]

log = logging.getLogger("ferryman.edge.metrics")

Emit = Callable[[int, bytes], None]
REPORT_NAMES = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
)


class ScrapeFailed(Exception):
    """Raised when a scrape cannot be used (HTTP error, too large, unparsable, limits)."""


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    up: bool
    duration: float
    scraped: int
    post_relabel: int
    added: int
    error: str = ""


_MISSING = object()


class ScrapeLoop:
    def __init__(
        self,
        target: Target,
        client: aiohttp.ClientSession,
        builder: SeriesBuilder,
        emit: Emit,
        *,
        honor_timestamps: bool,
        sample_limit: int,
        body_size_limit: int,
        auth_header: str | None = None,
        sni_hostname: str | None = None,
        on_result: Callable[[bool], None] = lambda up: None,
        batcher: Batcher | None = None,
        fallbacks: Counter | None = None,
    ) -> None:
        """``emit`` takes every encoded sample of the Python path and the report
        series. With ``batcher`` (whose ``add`` is ``emit``) holding its messages
        natively, the native path writes into it directly; ``fallbacks`` counts the
        bodies the native parser left to Python, by reason."""
        self.target = target
        self.client = client
        self.builder = builder
        self.emit = emit
        self.honor_timestamps = honor_timestamps
        self.sample_limit = sample_limit
        self.body_size_limit = body_size_limit
        self.on_result = on_result
        # tls_config.server_name: the name sent as SNI and verified in the certificate.
        self.sni_hostname = sni_hostname
        self.headers = {
            "Accept": negotiate_accept(),
            "User-Agent": "ferryman-edge/0.1",
            "X-Prometheus-Scrape-Timeout-Seconds": f"{target.timeout:g}",
        }
        if auth_header:
            self.headers["Authorization"] = auth_header
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], object] = {}
        self._tracked: dict[bytes, EncodedSeries] = {}
        self._report = [
            builder.encode(
                {
                    **dict(target.labels),
                    "__name__": name,
                    **{
                        k: v
                        for k, v in builder.external_labels.items()
                        if k not in dict(target.labels)
                    },
                }
            )
            for name in REPORT_NAMES
        ]
        self._batcher = batcher
        self._buffers = batcher.buffers if batcher is not None else None
        self._native = (
            ScrapeCache(builder.build, honor_timestamps=honor_timestamps, sample_limit=sample_limit)
            if self._buffers is not None and ScrapeCache is not None
            else None
        )
        self._fallbacks = fallbacks
        self._was_up: bool | None = None
        self._task: asyncio.Task[None] | None = None
        self.last: ScrapeResult | None = None

    # ---- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop scraping (shutdown: the series are not marked stale)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()

    async def stop(self) -> None:
        """Stop scraping and mark every series of this target stale (target gone)."""
        await self.close()
        now = int(time.time() * 1000)
        self._mark_all_stale(now)
        for series in self._report:
            self.emit(series.bucket, encode_sample(series, STALE_NAN, now))

    async def _run(self) -> None:
        # Spread targets over the interval, stably, as Prometheus does.
        offset = (zlib.crc32(repr(self.target.key).encode()) % 10_000) / 10_000
        interval = self.target.interval
        next_at = time.monotonic() + offset * interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await self.scrape_once()
            next_at += interval
            if next_at < time.monotonic():  # overran: skip missed ticks
                next_at = time.monotonic() + interval

    # ---- one scrape -----------------------------------------------------------------

    async def scrape_once(self) -> ScrapeResult:
        started = time.time()
        now_ms = int(started * 1000)
        scraped = 0
        try:
            body, content_type = await self._fetch()
            scraped, post, added = self.ingest(body, content_type, now_ms)
            result = ScrapeResult(True, time.time() - started, scraped, post, added)
        except ScrapeFailed as exc:
            self.mark_all_stale(now_ms)
            result = ScrapeResult(False, time.time() - started, 0, 0, 0, str(exc))
        self._log_transition(result)
        values = (
            1.0 if result.up else 0.0,
            result.duration,
            float(result.scraped),
            float(result.post_relabel),
            float(result.added),
        )
        for series, value in zip(self._report, values, strict=True):
            self.emit(series.bucket, encode_sample(series, value, now_ms))
        self.last = result
        self.on_result(result.up)
        return result

    async def _fetch(self) -> tuple[bytes, str]:
        try:
            async with asyncio.timeout(self.target.timeout):
                async with self.client.get(
                    self.target.url, headers=self.headers, server_hostname=self.sni_hostname
                ) as response:
                    if response.status != 200:
                        raise ScrapeFailed(f"server returned HTTP {response.status}")
                    chunks = []
                    size = 0
                    # Decoded (gzip) chunks as they arrive: the limit holds for the body.
                    async for chunk in response.content.iter_any():
                        size += len(chunk)
                        if self.body_size_limit and size > self.body_size_limit:
                            raise ScrapeFailed(
                                f"body exceeds body_size_limit {self.body_size_limit} bytes"
                            )
                        chunks.append(chunk)
                    return b"".join(chunks), response.headers.get("content-type", "")
        except TimeoutError:
            raise ScrapeFailed(f"timed out after {self.target.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise ScrapeFailed(f"{type(exc).__name__}: {exc}") from None

    def ingest(self, body: bytes, content_type: str, now_ms: int) -> tuple[int, int, int]:
        """A fetched body's samples and staleness markers written, as of ``now_ms``:
        (samples scraped, samples after relabeling, series added). Raises
        ScrapeFailed (the caller then calls :meth:`mark_all_stale`)."""
        native = self._native
        buffers = self._buffers
        if native is not None and buffers is not None and self._batcher is not None:
            try:
                outcome = native.scrape(body, is_openmetrics(content_type), now_ms, buffers)
            except (LimitExceeded, SampleLimitExceeded) as exc:
                raise ScrapeFailed(str(exc)) from None
            finally:
                self._batcher.drain()
            if not isinstance(outcome, str):
                return outcome
            if self._fallbacks is not None:
                self._fallbacks.labels(reason=outcome).inc()
        try:
            samples, _ = parse(body, content_type)
        except ParseError as exc:
            raise ScrapeFailed(f"unparsable exposition: {exc}") from None
        if native is not None and buffers is not None and self._batcher is not None:
            try:
                post, added = native.process(samples, now_ms, buffers)
            except (LimitExceeded, SampleLimitExceeded) as exc:
                raise ScrapeFailed(str(exc)) from None
            finally:
                self._batcher.drain()
        else:
            post, added = self._process(samples, now_ms)
        return len(samples), post, added

    def _process(self, samples: list[ScrapedSample], now_ms: int) -> tuple[int, int]:
        cache = self._cache
        fresh: dict[tuple[str, tuple[tuple[str, str], ...]], object] = {}
        out: list[tuple[EncodedSeries, float, int]] = []
        tracked: dict[bytes, EncodedSeries] = {}
        build = self.builder.build
        honor = self.honor_timestamps
        try:
            for sample in samples:
                key = (sample.name, sample.labels)
                if key in fresh:
                    continue  # the same series twice in one body: keep the first
                entry = cache.get(key, _MISSING)
                if entry is _MISSING:
                    entry = build(sample.name, sample.labels)
                fresh[key] = entry
                if entry is None:
                    continue
                entry = cast(EncodedSeries, entry)
                if honor and sample.timestamp_ms is not None:
                    out.append((entry, sample.value, sample.timestamp_ms))
                else:
                    out.append((entry, sample.value, now_ms))
                    tracked[entry.labels_pb] = entry
        except LimitExceeded as exc:
            raise ScrapeFailed(str(exc)) from None
        if self.sample_limit and len(out) > self.sample_limit:
            raise ScrapeFailed(f"{len(out)} samples exceed sample_limit {self.sample_limit}")
        previous = self._tracked
        emit = self.emit
        now_field = timestamp_field(now_ms)
        for series, value, ts in out:
            emit(
                series.bucket, encode_sample(series, value, ts, now_field if ts == now_ms else None)
            )
        for pb, series in previous.items():
            if pb not in tracked:
                emit(series.bucket, encode_sample(series, STALE_NAN, now_ms, now_field))
        added = sum(1 for pb in tracked if pb not in previous)
        self._cache = fresh
        self._tracked = tracked
        return len(out), added

    def mark_all_stale(self, now_ms: int) -> None:
        """Every series of the last successful scrape gets a staleness marker; the
        cache is emptied (a failed scrape)."""
        self._mark_all_stale(now_ms)

    def _mark_all_stale(self, now_ms: int) -> None:
        if self._native is not None and self._buffers is not None and self._batcher is not None:
            self._native.mark_all_stale(now_ms, self._buffers)
            self._batcher.drain()
            return
        for series in self._tracked.values():
            self.emit(series.bucket, encode_sample(series, STALE_NAN, now_ms))
        self._tracked = {}
        self._cache = {}

    def _log_transition(self, result: ScrapeResult) -> None:
        if result.up == self._was_up:
            return
        if result.up:
            log.info("target up: job=%s url=%s", self.target.job, self.target.url)
        else:
            log.warning(
                "target down: job=%s url=%s reason=%s",
                self.target.job,
                self.target.url,
                result.error,
            )
        self._was_up = result.up
