//! The edge metrics shipper's scrape pass, natively: a scrape body → encoded
//! remote-write samples in per-bucket message buffers, with the target's series cache
//! and staleness tracking held in native memory (the cyclic GC never walks them).
//!
//! `ScrapeCache` does what `edge/metrics/scrape.py` `ScrapeLoop._process` does after
//! `ferryman.prom.exposition.parse`: a series seen before is looked up by its identity
//! as parsed (name and labels in order); a new one is handed to the Python
//! `SeriesBuilder.build` (so relabeling, limits and external labels stay exactly the
//! Python ones) and its result kept (the labels' protobuf bytes and the bucket, or
//! "dropped"). A series twice in one body keeps its first sample; honored timestamps
//! are not tracked for staleness; `sample_limit` fails the scrape before anything is
//! written; series of the previous scrape now missing get a staleness marker. Every
//! sample is written as the bytes `edge.metrics.series.encode_sample` gives into a
//! `SampleBuffers`, which closes a bucket's message at `max_samples` as
//! `edge.metrics.batcher.Batcher` does. `tests/unit/native/test_scrape_native.py`
//! holds both to the Python path, byte for byte.

use crate::{put_varint, varint_len};
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::create_exception;
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::exposition::{self, Parsed};

create_exception!(
    ferryman_native,
    SampleLimitExceeded,
    PyValueError,
    "A scrape gave more samples (after metric relabeling) than sample_limit."
);

/// Prometheus's staleness marker, bit for bit.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// One `WriteRequest.timeseries` field holding one sample: what `encode_sample` writes.
fn encode_sample(out: &mut Vec<u8>, labels_pb: &[u8], value: u64, timestamp_ms: i64) {
    let stamp = timestamp_ms as u64; // a negative int64 as its two's complement
    let sample_len = 9 + 1 + varint_len(stamp);
    let body_len = labels_pb.len() + 1 + varint_len(sample_len as u64) + sample_len;
    out.reserve(1 + varint_len(body_len as u64) + body_len);
    out.push(0x0a);
    put_varint(out, body_len as u64);
    out.extend_from_slice(labels_pb);
    out.push(0x12);
    put_varint(out, sample_len as u64);
    out.push(0x09);
    out.extend_from_slice(&value.to_le_bytes());
    out.push(0x10);
    put_varint(out, stamp);
}

/// Per-bucket remote-write messages being filled, and the closed ones in the order
/// they closed. A message closes when it holds `max_samples` samples or on `flush`.
#[pyclass(module = "ferryman_native")]
pub struct SampleBuffers {
    parts: Vec<Vec<u8>>,
    counts: Vec<usize>,
    max_samples: usize,
    ready: Vec<(usize, usize, Vec<u8>)>,
}

impl SampleBuffers {
    fn check(&self, bucket: usize) -> PyResult<()> {
        if bucket >= self.parts.len() {
            return Err(PyIndexError::new_err(format!("no bucket {bucket}")));
        }
        Ok(())
    }

    fn write(&mut self, bucket: usize, labels_pb: &[u8], value: u64, timestamp_ms: i64) {
        encode_sample(&mut self.parts[bucket], labels_pb, value, timestamp_ms);
        self.added(bucket);
    }

    fn added(&mut self, bucket: usize) {
        self.counts[bucket] += 1;
        if self.counts[bucket] >= self.max_samples {
            self.close(bucket);
        }
    }

    fn close(&mut self, bucket: usize) {
        let part = std::mem::take(&mut self.parts[bucket]);
        let count = std::mem::replace(&mut self.counts[bucket], 0);
        self.ready.push((bucket, count, part));
    }
}

#[pymethods]
impl SampleBuffers {
    #[new]
    fn new(buckets: usize, max_samples: usize) -> Self {
        SampleBuffers {
            parts: vec![Vec::new(); buckets],
            counts: vec![0; buckets],
            max_samples,
            ready: Vec::new(),
        }
    }

    /// Add one encoded sample to its bucket's message; True when a message closed.
    fn add(&mut self, bucket: usize, encoded: &[u8]) -> PyResult<bool> {
        self.check(bucket)?;
        self.parts[bucket].extend_from_slice(encoded);
        self.added(bucket);
        Ok(!self.ready.is_empty())
    }

    /// Close every bucket's message that holds a sample, in bucket order.
    fn flush(&mut self) {
        for bucket in 0..self.parts.len() {
            if self.counts[bucket] > 0 {
                self.close(bucket);
            }
        }
    }

    /// The closed messages, in the order they closed, as (bucket, samples, the
    /// uncompressed `WriteRequest` bytes); they are then forgotten.
    fn drain<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let ready = std::mem::take(&mut self.ready);
        let items = ready
            .into_iter()
            .map(|(bucket, count, part)| (bucket, count, PyBytes::new(py, &part)));
        PyList::new(py, items)
    }

    /// Samples waiting in messages not closed yet.
    fn pending(&self) -> usize {
        self.counts.iter().sum()
    }
}

/// A word-at-a-time multiplicative hash, seeded per process: several times faster
/// than SipHash on the ~100-byte keys here. Not collision-proof against a crafted
/// exposition, but its cost stays that target's own (each target has its own cache).
#[derive(Clone, Copy)]
struct Seeded(u64);

impl Default for Seeded {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        Seeded(*SEED.get_or_init(|| {
            std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1
        }))
    }
}

impl BuildHasher for Seeded {
    type Hasher = Fast;
    fn build_hasher(&self) -> Fast {
        Fast(self.0)
    }
}

struct Fast(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Fast {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(K);
    }
}

impl Hasher for Fast {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
    }
}

type FastMap<K, V> = HashMap<K, V, Seeded>;
type FastSet<K> = HashSet<K, Seeded>;

/// A series ready to ship: its labels' protobuf bytes and its bucket, and the
/// generation of the last scrape that tracked it for staleness. One per distinct
/// labels_pb (interned), so "the same series" is "the same Arc".
struct Series {
    labels_pb: Box<[u8]>,
    bucket: usize,
    mark: AtomicU64,
}

/// Series compared by their labels (as the Python path keys `tracked` by labels_pb).
#[derive(Clone)]
struct ByLabels(Arc<Series>);

impl Borrow<[u8]> for ByLabels {
    fn borrow(&self) -> &[u8] {
        &self.0.labels_pb
    }
}

impl PartialEq for ByLabels {
    fn eq(&self, other: &Self) -> bool {
        self.0.labels_pb == other.0.labels_pb
    }
}
impl Eq for ByLabels {}
impl Hash for ByLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.labels_pb.hash(state);
    }
}

struct Cached {
    generation: u64,
    series: Option<Arc<Series>>, // None: relabeled away
}

/// What one scrape produced, before it is written.
struct Pending {
    out: Vec<(Arc<Series>, f64, i64)>,
    tracked: Vec<Arc<Series>>,
    added: usize,
}

/// One target's series cache and staleness state; see the module docs.
#[pyclass(module = "ferryman_native")]
pub struct ScrapeCache {
    build: Py<PyAny>,
    honor_timestamps: bool,
    sample_limit: usize,
    cache: FastMap<Box<[u8]>, Cached>,
    generation: u64,
    /// The series of the last successful scrape, in first-seen order, and its generation.
    tracked: Vec<Arc<Series>>,
    tracked_generation: u64,
    interned: FastSet<ByLabels>,
    key: Vec<u8>,
}

fn push_key_part(key: &mut Vec<u8>, text: &str) {
    put_varint(key, text.len() as u64);
    key.extend_from_slice(text.as_bytes());
}

impl ScrapeCache {
    fn begin(&mut self, samples: usize) -> Pending {
        self.generation += 1;
        let series = self.tracked.len();
        Pending {
            out: Vec::with_capacity(samples),
            tracked: Vec::with_capacity(series),
            added: 0,
        }
    }

    /// One sample whose identity is in `self.key`; `make` gives the Python
    /// (name, labels) for the builder on a miss.
    fn sample<'py>(
        &mut self,
        py: Python<'py>,
        pending: &mut Pending,
        value: f64,
        timestamp_ms: Option<i64>,
        now_ms: i64,
        make: impl FnOnce() -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    ) -> PyResult<()> {
        let generation = self.generation;
        let series = match self.cache.get_mut(self.key.as_slice()) {
            Some(cached) => {
                if cached.generation == generation {
                    return Ok(()); // twice in one body: the first sample stands
                }
                cached.generation = generation;
                cached.series.clone()
            }
            None => {
                let (name, labels) = make()?;
                let built = self.build.bind(py).call1((name, labels))?;
                let series = if built.is_none() {
                    None
                } else {
                    let pb = built.getattr(intern!(py, "labels_pb"))?;
                    let bucket: usize = built.getattr(intern!(py, "bucket"))?.extract()?;
                    let labels_pb: &[u8] = pb.cast::<PyBytes>()?.as_bytes();
                    Some(match self.interned.get(labels_pb) {
                        Some(known) => known.0.clone(),
                        None => {
                            let series = Arc::new(Series {
                                labels_pb: labels_pb.into(),
                                bucket,
                                mark: AtomicU64::new(u64::MAX), // never a generation
                            });
                            self.interned.insert(ByLabels(series.clone()));
                            series
                        }
                    })
                };
                self.cache.insert(
                    self.key.as_slice().into(),
                    Cached {
                        generation,
                        series: series.clone(),
                    },
                );
                series
            }
        };
        let Some(series) = series else {
            return Ok(());
        };
        match timestamp_ms {
            Some(stamp) if self.honor_timestamps => pending.out.push((series, value, stamp)),
            _ => {
                let before = series.mark.swap(generation, Ordering::Relaxed);
                if before != generation {
                    if before != self.tracked_generation {
                        pending.added += 1;
                    }
                    pending.tracked.push(series.clone());
                }
                pending.out.push((series, value, now_ms));
            }
        }
        Ok(())
    }

    /// The end of a scrape: limits, then the samples and staleness markers written.
    fn commit(
        &mut self,
        pending: Pending,
        now_ms: i64,
        buffers: &mut SampleBuffers,
    ) -> PyResult<(usize, usize)> {
        if self.sample_limit > 0 && pending.out.len() > self.sample_limit {
            return Err(SampleLimitExceeded::new_err(format!(
                "{} samples exceed sample_limit {}",
                pending.out.len(),
                self.sample_limit
            )));
        }
        for (series, _, _) in &pending.out {
            buffers.check(series.bucket)?;
        }
        for (series, value, stamp) in &pending.out {
            buffers.write(series.bucket, &series.labels_pb, value.to_bits(), *stamp);
        }
        let generation = self.generation;
        for previous in &self.tracked {
            if previous.mark.load(Ordering::Relaxed) != generation {
                buffers.check(previous.bucket)?;
                buffers.write(previous.bucket, &previous.labels_pb, STALE_NAN, now_ms);
            }
        }
        let post = pending.out.len();
        drop(pending.out);
        self.cache
            .retain(|_, cached| cached.generation == generation);
        self.tracked = pending.tracked;
        self.tracked_generation = generation;
        // Interned series no cache entry (nor `tracked`) holds any more.
        self.interned
            .retain(|series| Arc::strong_count(&series.0) > 1);
        Ok((post, pending.added))
    }

    fn run_parsed(
        &mut self,
        py: Python<'_>,
        parsed: &Parsed,
        text: &str,
        now_ms: i64,
    ) -> PyResult<Pending> {
        let mut pending = self.begin(parsed.samples.len());
        for sample in &parsed.samples {
            let name = parsed.name(text, sample);
            let labels = parsed.labels_of(sample);
            self.key.clear();
            push_key_part(&mut self.key, name);
            for label in labels {
                push_key_part(&mut self.key, parsed.label_name(text, label));
                push_key_part(&mut self.key, parsed.label_value(text, label));
            }
            let make = || -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
                let pairs = labels.iter().map(|label| {
                    (
                        parsed.label_name(text, label),
                        parsed.label_value(text, label),
                    )
                });
                let tuple = PyTuple::new(py, pairs)?;
                Ok((PyString::new(py, name).into_any(), tuple.into_any()))
            };
            self.sample(
                py,
                &mut pending,
                sample.value,
                sample.timestamp_ms,
                now_ms,
                make,
            )?;
        }
        Ok(pending)
    }

    fn forget(&mut self) {
        self.cache.clear();
        self.interned.clear();
    }
}

#[pymethods]
impl ScrapeCache {
    /// `build(name, labels)` is `SeriesBuilder.build`: an object with `labels_pb`
    /// (bytes) and `bucket` (int), or None for a series relabeled away; it may raise
    /// (`LimitExceeded`), which fails the scrape.
    #[new]
    #[pyo3(signature = (build, *, honor_timestamps, sample_limit))]
    fn new(build: Py<PyAny>, honor_timestamps: bool, sample_limit: usize) -> Self {
        ScrapeCache {
            build,
            honor_timestamps,
            sample_limit,
            cache: FastMap::default(),
            generation: 0,
            tracked: Vec::new(),
            tracked_generation: 0,
            interned: FastSet::default(),
            key: Vec::new(),
        }
    }

    /// Parse a scrape body and write its samples and staleness markers into
    /// `buffers`: (samples scraped, samples after relabeling, series added), or the
    /// reason (a str) the native parser declined the body, with nothing changed (the
    /// Python parser then parses it, and `process` takes its samples). Raises what the
    /// builder raises and `SampleLimitExceeded`; the caller then calls
    /// `mark_all_stale`.
    fn scrape(
        &mut self,
        py: Python<'_>,
        body: &Bound<'_, PyBytes>,
        openmetrics: bool,
        now_ms: i64,
        buffers: &Bound<'_, SampleBuffers>,
    ) -> PyResult<Py<PyAny>> {
        let bytes = body.as_bytes();
        let (parsed, text) = match py.detach(|| exposition::parse(bytes, openmetrics)) {
            Ok(parsed) => parsed,
            Err(decline) => {
                return Ok(PyString::new(py, decline.reason()).into_any().unbind());
            }
        };
        let scraped = parsed.samples.len();
        let pending = match self.run_parsed(py, &parsed, text, now_ms) {
            Ok(pending) => pending,
            Err(err) => {
                self.forget();
                return Err(err);
            }
        };
        let result = self.commit(pending, now_ms, &mut buffers.borrow_mut());
        match result {
            Ok((post, added)) => Ok((scraped, post, added)
                .into_pyobject(py)?
                .into_any()
                .unbind()),
            Err(err) => {
                self.forget();
                Err(err)
            }
        }
    }

    /// What `scrape` does after parsing, for samples the Python parser gave
    /// (`ScrapedSample`s): (samples after relabeling, series added).
    fn process(
        &mut self,
        py: Python<'_>,
        samples: &Bound<'_, PyAny>,
        now_ms: i64,
        buffers: &Bound<'_, SampleBuffers>,
    ) -> PyResult<(usize, usize)> {
        let result = self.process_samples(py, samples, now_ms, buffers);
        if result.is_err() {
            self.forget();
        }
        result
    }

    /// A failed scrape or a target gone: every series of the last successful scrape
    /// gets a staleness marker at `now_ms`, and the cache is emptied.
    fn mark_all_stale(&mut self, now_ms: i64, buffers: &Bound<'_, SampleBuffers>) -> PyResult<()> {
        let mut buffers = buffers.borrow_mut();
        for series in &self.tracked {
            buffers.check(series.bucket)?;
        }
        for series in std::mem::take(&mut self.tracked) {
            buffers.write(series.bucket, &series.labels_pb, STALE_NAN, now_ms);
        }
        self.tracked_generation = 0;
        self.forget();
        Ok(())
    }

    /// (series cached, series tracked for staleness, bytes those hold natively,
    /// counting keys, labels, table slots and allocation headers roughly).
    fn stats(&self) -> (usize, usize, usize) {
        let slot = std::mem::size_of::<(Box<[u8]>, Cached)>() + 1;
        let mut bytes = self.cache.capacity() * slot;
        for key in self.cache.keys() {
            bytes += key.len() + 16;
        }
        for series in &self.interned {
            // Shared by cache entries and `tracked`; counted once here.
            bytes += series.0.labels_pb.len() + 16 + std::mem::size_of::<Series>() + 16;
        }
        bytes += self.interned.capacity() * (std::mem::size_of::<ByLabels>() + 1);
        bytes += self.tracked.capacity() * std::mem::size_of::<Arc<Series>>();
        (self.cache.len(), self.tracked.len(), bytes)
    }
}

impl ScrapeCache {
    fn process_samples(
        &mut self,
        py: Python<'_>,
        samples: &Bound<'_, PyAny>,
        now_ms: i64,
        buffers: &Bound<'_, SampleBuffers>,
    ) -> PyResult<(usize, usize)> {
        let mut pending = self.begin(samples.len().unwrap_or(0));
        let name_attr = intern!(py, "name");
        let labels_attr = intern!(py, "labels");
        let value_attr = intern!(py, "value");
        let stamp_attr = intern!(py, "timestamp_ms");
        for sample in samples.try_iter()? {
            let sample = sample?;
            let name = sample.getattr(name_attr)?;
            let labels = sample.getattr(labels_attr)?;
            let value: f64 = sample.getattr(value_attr)?.extract()?;
            let stamp: Option<i64> = sample.getattr(stamp_attr)?.extract()?;
            self.key.clear();
            push_key_part(&mut self.key, name.cast::<PyString>()?.to_str()?);
            for pair in labels.cast::<PyTuple>()?.iter() {
                let pair = pair.cast_into::<PyTuple>()?;
                push_key_part(
                    &mut self.key,
                    pair.get_item(0)?.cast::<PyString>()?.to_str()?,
                );
                push_key_part(
                    &mut self.key,
                    pair.get_item(1)?.cast::<PyString>()?.to_str()?,
                );
            }
            let make = || Ok((name.clone(), labels.clone()));
            self.sample(py, &mut pending, value, stamp, now_ms, make)?;
        }
        self.commit(pending, now_ms, &mut buffers.borrow_mut())
    }
}

/// What the native parser makes of a body: a list of (name, labels, value,
/// timestamp_ms) like `ScrapedSample`s, or the reason it declined (a str). For tests
/// that hold it to `ferryman.prom.exposition.parse`.
#[pyfunction]
fn parse_exposition<'py>(
    py: Python<'py>,
    body: &[u8],
    openmetrics: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let (parsed, text) = match exposition::parse(body, openmetrics) {
        Ok(parsed) => parsed,
        Err(decline) => return Ok(PyString::new(py, decline.reason()).into_any()),
    };
    let items = parsed
        .samples
        .iter()
        .map(|sample| -> PyResult<Bound<'py, PyAny>> {
            let labels = PyTuple::new(
                py,
                parsed
                    .labels_of(sample)
                    .iter()
                    .map(|l| (parsed.label_name(text, l), parsed.label_value(text, l))),
            )?;
            Ok((
                parsed.name(text, sample),
                labels,
                sample.value,
                sample.timestamp_ms,
            )
                .into_pyobject(py)?
                .into_any())
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyList::new(py, items)?.into_any())
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(parse_exposition, module)?)?;
    module.add_class::<SampleBuffers>()?;
    module.add_class::<ScrapeCache>()?;
    module.add(
        "SampleLimitExceeded",
        module.py().get_type::<SampleLimitExceeded>(),
    )?;
    Ok(())
}
