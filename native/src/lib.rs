//! The edge log shipper's hot path, natively: a stream's lines → Loki push messages.
//!
//! `loki_push_parts` does in one pass what `edge/logs/shipper.py` otherwise does in
//! three (cut the stream into parts that fit a Kafka message, encode each part as a
//! Loki `PushRequest`, compress it with snappy's block format). The bytes it encodes
//! are the ones `ferryman.wire.loki.encode_push_request` writes for the same entries;
//! `tests/unit/native` holds it to that. `loki_push_split` makes the same parts and
//! also says how many entries each holds.
//!
//! It declines (returns `None`) whatever it does not handle, and the shipper's
//! Python path takes over: a line too big for any message (cut there, with the
//! truncation marker) and a timestamp outside 0 ..= 2**63 - 1 nanoseconds.

mod exposition;
mod otlp;
mod relabel;
mod rw2;
mod scrape;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

/// What a part's budget charges each entry beyond its line's bytes (framing and
/// timestamp), as the Python splitter does.
const ENTRY_OVERHEAD: usize = 32;

const TAG_STREAMS: u8 = 0x0a; // PushRequest.streams = 1, length-delimited
const TAG_LABELS: u8 = 0x0a; // Stream.labels = 1
const TAG_ENTRIES: u8 = 0x12; // Stream.entries = 2
const TAG_TIMESTAMP: u8 = 0x0a; // Entry.timestamp = 1
const TAG_LINE: u8 = 0x12; // Entry.line = 2
const TAG_SECONDS: u8 = 0x08; // Timestamp.seconds = 1, varint
const TAG_NANOS: u8 = 0x10; // Timestamp.nanos = 2, varint

/// Bytes a protobuf varint of `value` takes (shared by every encoder of the crate).
pub(crate) fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

/// Appends `value` as a protobuf varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One entry's pieces of arithmetic, computed once for sizing and writing.
struct Shape {
    seconds: u64,
    nanos: u64,
    timestamp_len: usize,
    entry_len: usize,
}

fn shape(stamp_ns: u64, line_len: usize) -> Shape {
    let seconds = stamp_ns / 1_000_000_000;
    let nanos = stamp_ns % 1_000_000_000;
    let timestamp_len =
        1 + varint_len(seconds) + if nanos != 0 { 1 + varint_len(nanos) } else { 0 };
    let entry_len =
        1 + varint_len(timestamp_len as u64) + timestamp_len + 1 + varint_len(line_len as u64)
            + line_len;
    Shape { seconds, nanos, timestamp_len, entry_len }
}

/// The uncompressed `PushRequest` of one stream holding `lines[..]` stamped `stamps[..]`.
fn encode_part(labels: &str, stamps: &[u64], lines: &[&str]) -> Vec<u8> {
    let shapes: Vec<Shape> =
        stamps.iter().zip(lines).map(|(&stamp, line)| shape(stamp, line.len())).collect();
    let entries_len: usize =
        shapes.iter().map(|s| 1 + varint_len(s.entry_len as u64) + s.entry_len).sum();
    let head_len = 1 + varint_len(labels.len() as u64) + labels.len();
    let stream_len = head_len + entries_len;
    let mut out = Vec::with_capacity(1 + varint_len(stream_len as u64) + stream_len);
    out.push(TAG_STREAMS);
    put_varint(&mut out, stream_len as u64);
    out.push(TAG_LABELS);
    put_varint(&mut out, labels.len() as u64);
    out.extend_from_slice(labels.as_bytes());
    for (s, line) in shapes.iter().zip(lines) {
        out.push(TAG_ENTRIES);
        put_varint(&mut out, s.entry_len as u64);
        out.push(TAG_TIMESTAMP);
        put_varint(&mut out, s.timestamp_len as u64);
        out.push(TAG_SECONDS);
        put_varint(&mut out, s.seconds);
        if s.nanos != 0 {
            out.push(TAG_NANOS);
            put_varint(&mut out, s.nanos);
        }
        out.push(TAG_LINE);
        put_varint(&mut out, line.len() as u64);
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// Where each part ends: a part takes entries while their bytes, plus
/// `ENTRY_OVERHEAD` each, add up to `budget` (and always at least one). `None` when
/// a single line does not fit.
fn part_ends(lines: &[&str], budget: usize) -> Option<Vec<usize>> {
    let mut ends = Vec::new();
    let mut used = 0usize;
    for (index, line) in lines.iter().enumerate() {
        let cost = line.len() + ENTRY_OVERHEAD;
        if cost > budget {
            return None;
        }
        if used + cost > budget {
            ends.push(index);
            used = 0;
        }
        used += cost;
    }
    if !lines.is_empty() {
        ends.push(lines.len());
    }
    Some(ends)
}

/// Snappy-compressed Loki `PushRequest` messages of one stream (`labels` as Loki
/// writes them, e.g. `{job="app"}`), its entries in order, cut so that each message's
/// lines plus 32 bytes each stay within `budget`. `None` when the Python path must
/// take over: a line longer than that, or a timestamp outside 0 ..= 2**63 - 1.
#[pyfunction]
fn loki_push_parts<'py>(
    py: Python<'py>,
    labels: &str,
    timestamps: &Bound<'py, PyList>,
    lines: &Bound<'py, PyList>,
    budget: usize,
) -> PyResult<Option<Vec<Bound<'py, PyBytes>>>> {
    Ok(split(py, labels, timestamps, lines, budget)?.map(|(parts, _)| parts))
}

/// What `loki_push_parts` returns, the same parts, and how many entries each holds
/// (in order; they add up to the stream's entries), so that a shipper can say per
/// message where its entries came from. `None` when `loki_push_parts` declines.
#[pyfunction]
fn loki_push_split<'py>(
    py: Python<'py>,
    labels: &str,
    timestamps: &Bound<'py, PyList>,
    lines: &Bound<'py, PyList>,
    budget: usize,
) -> PyResult<Option<Parts<'py>>> {
    let Some((parts, ends)) = split(py, labels, timestamps, lines, budget)? else {
        return Ok(None);
    };
    let starts = std::iter::once(0).chain(ends.iter().copied());
    let counts = ends
        .iter()
        .zip(starts)
        .map(|(end, start)| end - start)
        .collect();
    Ok(Some((parts, counts)))
}

/// Snappy-compressed parts and, per part, where it ends among the entries (or how
/// many it holds).
type Parts<'py> = (Vec<Bound<'py, PyBytes>>, Vec<usize>);

/// The parts of `loki_push_parts` and where each ends among the entries.
fn split<'py>(
    py: Python<'py>,
    labels: &str,
    timestamps: &Bound<'py, PyList>,
    lines: &Bound<'py, PyList>,
    budget: usize,
) -> PyResult<Option<Parts<'py>>> {
    if timestamps.len() != lines.len() {
        return Err(PyValueError::new_err(format!(
            "{} timestamps for {} lines",
            timestamps.len(),
            lines.len()
        )));
    }
    let mut stamps = Vec::with_capacity(timestamps.len());
    for stamp in timestamps.iter() {
        match stamp.extract::<i64>() {
            Ok(value) if value >= 0 => stamps.push(value as u64),
            _ => return Ok(None), // before 1970 or past 2262: Python's arithmetic
        }
    }
    let owned: Vec<Bound<'py, PyString>> = lines
        .iter()
        .map(|line| line.cast_into::<PyString>().map_err(PyErr::from))
        .collect::<PyResult<_>>()?;
    let texts: Vec<&str> = owned.iter().map(|line| line.to_str()).collect::<PyResult<_>>()?;
    let Some(ends) = part_ends(&texts, budget) else {
        return Ok(None);
    };
    let compressed: Vec<Result<Vec<u8>, snap::Error>> = py.detach(|| {
        let mut encoder = snap::raw::Encoder::new();
        let mut start = 0;
        ends.iter()
            .map(|&end| {
                let part = encode_part(labels, &stamps[start..end], &texts[start..end]);
                start = end;
                encoder.compress_vec(&part)
            })
            .collect()
    });
    let parts = compressed
        .into_iter()
        .map(|part| {
            part.map(|bytes| PyBytes::new(py, &bytes))
                .map_err(|exc| PyValueError::new_err(format!("snappy: {exc}")))
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Some((parts, ends)))
}

/// The uncompressed `PushRequest` of one stream, for tests that hold this encoder to
/// the Python one byte for byte.
#[pyfunction]
fn loki_push_request<'py>(
    py: Python<'py>,
    labels: &str,
    timestamps: Vec<u64>,
    lines: Vec<String>,
) -> PyResult<Bound<'py, PyBytes>> {
    if timestamps.len() != lines.len() {
        return Err(PyValueError::new_err("as many timestamps as lines are needed"));
    }
    let texts: Vec<&str> = lines.iter().map(String::as_str).collect();
    Ok(PyBytes::new(py, &encode_part(labels, &timestamps, &texts)))
}

/// The end offsets of a run of the `ferryman.lines` header (see
/// `ferryman/wire/lines.py`): each as the zigzag varint of its difference from the
/// one before (the first from 0). `None` for an offset outside 0 ..= 2**63 - 1.
#[pyfunction]
fn lines_deltas<'py>(py: Python<'py>, offsets: Vec<i64>) -> Option<Bound<'py, PyBytes>> {
    let mut out = Vec::with_capacity(offsets.len() * 2);
    let mut previous: i64 = 0;
    for offset in offsets {
        if offset < 0 {
            return None;
        }
        let delta = offset.wrapping_sub(previous);
        let zigzag = ((delta << 1) ^ (delta >> 63)) as u64;
        put_varint(&mut out, zigzag);
        previous = offset;
    }
    Some(PyBytes::new(py, &out))
}

#[pymodule]
fn ferryman_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(loki_push_parts, module)?)?;
    module.add_function(wrap_pyfunction!(lines_deltas, module)?)?;
    module.add_function(wrap_pyfunction!(loki_push_split, module)?)?;
    module.add_function(wrap_pyfunction!(loki_push_request, module)?)?;
    otlp::register(module)?;
    rw2::register(module)?;
    relabel::register(module)?;
    scrape::register(module)?;
    Ok(())
}
