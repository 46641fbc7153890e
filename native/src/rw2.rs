//! The gateway's remote write 2.0 conversion, natively: a decompressed
//! `io.prometheus.write.v2.Request` → remote write 1.0 series.
//!
//! `rw2_convert` does what `ferryman.wire.remote_write2.decode_request` does and
//! returns, per series, the pieces of its `Request`: the series as one 1.0
//! `WriteRequest.timeseries` field, its labels sorted (as `str` pairs), its float
//! samples and its 1.0 `WriteRequest.metadata` field (or `b""`), with the counts of
//! samples, histograms and exemplars. It writes the bytes the Python path writes:
//! symbols are carried as the UTF-8 they arrived in (which is what Python's decode
//! then encode gives back), labels sorted by their bytes (the order of Python's
//! `str` comparison), doubles copied bit for bit, varints re-encoded as uint64.
//! `tests/unit/native/test_rw2_convert.py` holds it to the Python path.
//!
//! It never raises for bad bytes: it declines (returns `None`) on anything the Python
//! path would refuse (and the Python path then raises its `DecodeError`).

use crate::{put_varint, varint_len};
use std::collections::{HashMap, HashSet};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyString, PyTuple, PyType};

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH: u64 = 2;
const FIXED32: u64 = 5;

/// Why a request was declined; the Python path says it properly.
struct Decline;

type Res<T> = Result<T, Decline>;

/// A uint64 varint as `ferryman.wire.protobuf.fields` reads it: the tenth byte's
/// lowest bit only, and a tenth byte with its continuation bit set is an error.
fn read_varint(buf: &[u8], pos: &mut usize) -> Res<u64> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let &byte = buf.get(*pos).ok_or(Decline)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
        shift += 7;
        if shift == 63 {
            let &tenth = buf.get(*pos).ok_or(Decline)?;
            *pos += 1;
            if tenth >= 0x80 {
                return Err(Decline);
            }
            return Ok(value | (u64::from(tenth & 1) << 63));
        }
    }
}

enum Value<'a> {
    Varint(u64),
    Fixed64(&'a [u8]),
    Length(&'a [u8]),
    Fixed32,
}

/// The fields of a message, as `fields` yields them; `Err` where it raises.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn next_field(&mut self) -> Res<Option<(u64, Value<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag = read_varint(self.buf, &mut self.pos)?;
        let number = tag >> 3;
        if number == 0 {
            return Err(Decline);
        }
        let value = match tag & 7 {
            VARINT => Value::Varint(read_varint(self.buf, &mut self.pos)?),
            LENGTH => {
                let length = read_varint(self.buf, &mut self.pos)?;
                let rest = (self.buf.len() - self.pos) as u64;
                if length > rest {
                    return Err(Decline);
                }
                let start = self.pos;
                self.pos += length as usize;
                Value::Length(&self.buf[start..self.pos])
            }
            FIXED64 => {
                if self.pos + 8 > self.buf.len() {
                    return Err(Decline);
                }
                self.pos += 8;
                Value::Fixed64(&self.buf[self.pos - 8..self.pos])
            }
            FIXED32 => {
                if self.pos + 4 > self.buf.len() {
                    return Err(Decline);
                }
                self.pos += 4;
                Value::Fixed32
            }
            _ => return Err(Decline),
        };
        Ok(Some((number, value)))
    }
}

fn put_bytes_field(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// `labels_refs` (packed or one varint) appended to `refs`, as `_refs` reads them.
fn push_refs(value: &Value<'_>, refs: &mut Vec<u64>) -> Res<()> {
    match value {
        Value::Varint(one) => refs.push(*one),
        Value::Length(data) => {
            let mut pos = 0;
            while pos < data.len() {
                let mut one: u64 = 0;
                let mut shift = 0u32;
                loop {
                    let &byte = data.get(pos).ok_or(Decline)?;
                    pos += 1;
                    one |= u64::from(byte & 0x7f) << shift;
                    if byte < 0x80 {
                        break;
                    }
                    shift += 7;
                    if shift > 35 {
                        return Err(Decline);
                    }
                }
                refs.push(one);
            }
        }
        _ => return Err(Decline),
    }
    Ok(())
}

/// The label pairs of `refs` (indices into `symbols`), sorted.
fn labels(refs: &[u64], symbols: &[&[u8]]) -> Res<Vec<(u32, u32)>> {
    if refs.len() % 2 == 1 {
        return Err(Decline);
    }
    let count = symbols.len() as u64;
    let mut pairs = Vec::with_capacity(refs.len() / 2);
    for pair in refs.chunks_exact(2) {
        if pair[0] >= count || pair[1] >= count {
            return Err(Decline);
        }
        pairs.push((pair[0] as u32, pair[1] as u32));
    }
    let sorted = pairs.windows(2).all(|w| {
        (symbols[w[0].0 as usize], symbols[w[0].1 as usize])
            <= (symbols[w[1].0 as usize], symbols[w[1].1 as usize])
    });
    if !sorted {
        pairs.sort_by(|a, b| {
            (symbols[a.0 as usize], symbols[a.1 as usize])
                .cmp(&(symbols[b.0 as usize], symbols[b.1 as usize]))
        });
    }
    Ok(pairs)
}

/// 1.0 `Label` fields (field 1 of a `TimeSeries` or an `Exemplar`) of `pairs`.
fn put_labels(out: &mut Vec<u8>, pairs: &[(u32, u32)], symbols: &[&[u8]]) {
    for &(name, value) in pairs {
        let name = symbols[name as usize];
        let value = symbols[value as usize];
        let inner = 1
            + varint_len(name.len() as u64)
            + name.len()
            + 1
            + varint_len(value.len() as u64)
            + value.len();
        out.push(0x0a);
        put_varint(out, inner as u64);
        put_bytes_field(out, 0x0a, name);
        put_bytes_field(out, 0x12, value);
    }
}

/// A 2.0 exemplar as the body of a 1.0 one.
fn exemplar(buf: &[u8], symbols: &[&[u8]]) -> Res<Vec<u8>> {
    let mut refs = Vec::new();
    let mut rest = Vec::new();
    let mut fields = Fields::new(buf);
    while let Some((number, value)) = fields.next_field()? {
        match (number, &value) {
            (1, _) => push_refs(&value, &mut refs)?,
            (2, Value::Fixed64(raw)) => {
                rest.push(0x11);
                rest.extend_from_slice(raw);
            }
            (3, Value::Varint(stamp)) => {
                rest.push(0x18);
                put_varint(&mut rest, *stamp);
            }
            _ => {}
        }
    }
    let pairs = labels(&refs, symbols)?;
    let mut out = Vec::with_capacity(rest.len() + 32 * pairs.len());
    put_labels(&mut out, &pairs, symbols);
    out.extend_from_slice(&rest);
    Ok(out)
}

/// A 2.0 series' metadata as the fields of a 1.0 `MetricMetadata` but its name.
fn metadata(buf: &[u8], symbols: &[&[u8]]) -> Res<Vec<u8>> {
    let mut kind: u64 = 0;
    let mut help: &[u8] = b"";
    let mut unit: &[u8] = b"";
    let mut fields = Fields::new(buf);
    while let Some((number, value)) = fields.next_field()? {
        let Value::Varint(raw) = value else { continue };
        let symbol = || symbols.get(usize::try_from(raw).ok()?).copied();
        match number {
            1 => kind = raw,
            3 => help = symbol().ok_or(Decline)?,
            4 => unit = symbol().ok_or(Decline)?,
            _ => {}
        }
    }
    let mut out = Vec::new();
    if kind != 0 {
        out.push(0x08);
        put_varint(&mut out, kind);
    }
    if !help.is_empty() {
        put_bytes_field(&mut out, 0x22, help);
    }
    if !unit.is_empty() {
        put_bytes_field(&mut out, 0x2a, unit);
    }
    Ok(out)
}

/// One series converted: its 1.0 field, sorted label pairs, samples (value bits,
/// timestamp) and metadata field.
struct Series {
    encoded: Vec<u8>,
    pairs: Vec<(u32, u32)>,
    samples: Vec<(f64, i64)>,
    metadata: Vec<u8>,
    histograms: usize,
    exemplars: usize,
}

fn series(buf: &[u8], symbols: &[&[u8]], seen: &mut HashSet<Vec<u8>>) -> Res<Series> {
    let mut refs: Vec<u64> = Vec::with_capacity(32);
    let mut samples: Vec<(f64, i64)> = Vec::new();
    let mut sample_bytes: Vec<u8> = Vec::new();
    let mut histograms: Vec<&[u8]> = Vec::new();
    let mut exemplars: Vec<Vec<u8>> = Vec::new();
    let mut meta: Vec<u8> = Vec::new();
    let mut fields = Fields::new(buf);
    while let Some((number, value)) = fields.next_field()? {
        match (number, &value) {
            (1, _) => push_refs(&value, &mut refs)?,
            (2, Value::Length(raw)) => {
                let mut bits = [0u8; 8];
                let mut stamp: u64 = 0;
                let mut inner = Fields::new(raw);
                while let Some((n, v)) = inner.next_field()? {
                    match (n, v) {
                        (1, Value::Fixed64(b)) => bits.copy_from_slice(b),
                        (2, Value::Varint(t)) => stamp = t,
                        _ => {}
                    }
                }
                let len = 9 + 1 + varint_len(stamp);
                sample_bytes.push(0x12);
                put_varint(&mut sample_bytes, len as u64);
                sample_bytes.push(0x09);
                sample_bytes.extend_from_slice(&bits);
                sample_bytes.push(0x10);
                put_varint(&mut sample_bytes, stamp);
                samples.push((f64::from_le_bytes(bits), stamp as i64));
            }
            (3, Value::Length(raw)) => histograms.push(raw),
            (4, Value::Length(raw)) => exemplars.push(exemplar(raw, symbols)?),
            (5, Value::Length(raw)) => meta = metadata(raw, symbols)?,
            _ => {}
        }
    }
    let pairs = labels(&refs, symbols)?;
    let mut body = Vec::with_capacity(buf.len() * 3 + 64);
    put_labels(&mut body, &pairs, symbols);
    body.extend_from_slice(&sample_bytes);
    for one in &exemplars {
        put_bytes_field(&mut body, 0x1a, one);
    }
    for one in &histograms {
        put_bytes_field(&mut body, 0x22, one);
    }
    let mut encoded = Vec::with_capacity(body.len() + 6);
    put_bytes_field(&mut encoded, 0x0a, &body);
    let mut metadata_field = Vec::new();
    if !meta.is_empty() {
        // the first label of the name (sorted: the smallest value), as `label` finds it
        let first = |name: &[u8]| pairs.iter().find(|p| symbols[p.0 as usize] == name);
        let name = first(b"__name__");
        let cluster = first(b"cluster");
        // equal symbols compare equal by their text, not their index: key by text
        let name_text = name.map_or(&b""[..], |p| symbols[p.1 as usize]);
        let cluster_text = cluster.map_or(&b""[..], |p| symbols[p.1 as usize]);
        let mut key = Vec::with_capacity(name_text.len() + cluster_text.len() + meta.len() + 20);
        put_varint(&mut key, cluster_text.len() as u64);
        key.extend_from_slice(cluster_text);
        put_varint(&mut key, name_text.len() as u64);
        key.extend_from_slice(name_text);
        key.extend_from_slice(&meta);
        if seen.insert(key) {
            let mut inner = Vec::with_capacity(name_text.len() + meta.len() + 8);
            put_bytes_field(&mut inner, 0x12, name_text);
            inner.extend_from_slice(&meta);
            put_bytes_field(&mut metadata_field, 0x1a, &inner);
        }
    }
    Ok(Series {
        encoded,
        pairs,
        samples,
        metadata: metadata_field,
        histograms: histograms.len(),
        exemplars: exemplars.len(),
    })
}

fn convert(buf: &[u8]) -> Res<(Vec<&[u8]>, Vec<Series>)> {
    let mut symbols: Vec<&[u8]> = Vec::new();
    let mut raw_series: Vec<&[u8]> = Vec::new();
    let mut fields = Fields::new(buf);
    while let Some((number, value)) = fields.next_field()? {
        let Value::Length(raw) = value else { continue };
        if number == 4 {
            std::str::from_utf8(raw).map_err(|_| Decline)?;
            symbols.push(raw);
        } else if number == 5 {
            raw_series.push(raw);
        }
    }
    let mut seen = HashSet::new();
    let out = raw_series
        .iter()
        .map(|raw| series(raw, &symbols, &mut seen))
        .collect::<Res<Vec<_>>>()?;
    Ok((symbols, out))
}

/// The series (`series_type` objects, their samples `sample_type` ones), the encoded
/// series, the metadata fields, then the request's samples, histograms and
/// exemplars; `None` when the Python path must say what is wrong with the bytes.
type Converted<'py> = (
    Vec<Bound<'py, PyAny>>,
    Vec<Bound<'py, PyBytes>>,
    Vec<Bound<'py, PyBytes>>,
    usize,
    usize,
    usize,
);

/// The conversion of `decode_request` (see the module's text); `None` for bytes it
/// would refuse. `series_type` and `sample_type` are `remote_write.TimeSeries` and
/// `remote_write.Sample`, frozen dataclasses: their objects are made the way their
/// own `__init__` makes them (`object.__new__`, then `object.__setattr__` for
/// `labels` and `samples`, `value` and `timestamp_ms`), without running it. Equal
/// label pairs of a request are one tuple object, equal symbols one `str`.
#[pyfunction]
fn rw2_convert<'py>(
    py: Python<'py>,
    body: &[u8],
    series_type: &Bound<'py, PyType>,
    sample_type: &Bound<'py, PyType>,
) -> PyResult<Option<Converted<'py>>> {
    let Ok((symbols, converted)) = py.detach(|| convert(body)) else {
        return Ok(None);
    };
    let object = py.get_type::<PyAny>();
    let new = object.getattr(intern!(py, "__new__"))?;
    let set = object.getattr(intern!(py, "__setattr__"))?;
    let make = |kind: &Bound<'py, PyType>,
                first: (&Bound<'py, PyString>, Bound<'py, PyAny>),
                second: (&Bound<'py, PyString>, Bound<'py, PyAny>)|
     -> PyResult<Bound<'py, PyAny>> {
        let made = new.call1((kind,))?;
        set.call1((&made, first.0, first.1))?;
        set.call1((&made, second.0, second.1))?;
        Ok(made)
    };
    let (labels_name, samples_name) = (intern!(py, "labels"), intern!(py, "samples"));
    let (value_name, stamp_name) = (intern!(py, "value"), intern!(py, "timestamp_ms"));
    let mut texts: Vec<Option<Bound<'py, PyString>>> = vec![None; symbols.len()];
    let mut text = |index: u32| -> Bound<'py, PyString> {
        let slot = &mut texts[index as usize];
        if let Some(done) = slot {
            return done.clone();
        }
        // checked as UTF-8 in `convert`
        let made = PyString::new(
            py,
            std::str::from_utf8(symbols[index as usize]).unwrap_or(""),
        );
        *slot = Some(made.clone());
        made
    };
    let mut tuples: HashMap<(u32, u32), Bound<'py, PyTuple>> = HashMap::new();
    let (mut samples, mut histograms, mut exemplars) = (0, 0, 0);
    let count = converted.len();
    let mut series = Vec::with_capacity(count);
    let mut encoded = Vec::with_capacity(count);
    let mut metadata = Vec::with_capacity(count);
    let empty = PyBytes::new(py, b"");
    for one in converted {
        let mut pairs = Vec::with_capacity(one.pairs.len());
        for &(name, value) in &one.pairs {
            let pair = match tuples.get(&(name, value)) {
                Some(done) => done.clone(),
                None => {
                    let made = PyTuple::new(py, [text(name), text(value)])?;
                    tuples.insert((name, value), made.clone());
                    made
                }
            };
            pairs.push(pair);
        }
        let points = one
            .samples
            .iter()
            .map(|&(value, stamp)| {
                make(
                    sample_type,
                    (value_name, PyFloat::new(py, value).into_any()),
                    (stamp_name, stamp.into_pyobject(py)?.into_any()),
                )
            })
            .collect::<PyResult<Vec<_>>>()?;
        series.push(make(
            series_type,
            (labels_name, PyTuple::new(py, pairs)?.into_any()),
            (samples_name, PyTuple::new(py, points)?.into_any()),
        )?);
        samples += one.samples.len();
        histograms += one.histograms;
        exemplars += one.exemplars;
        encoded.push(PyBytes::new(py, &one.encoded));
        metadata.push(if one.metadata.is_empty() {
            empty.clone()
        } else {
            PyBytes::new(py, &one.metadata)
        });
    }
    Ok(Some((
        series, encoded, metadata, samples, histograms, exemplars,
    )))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(rw2_convert, module)?)?;
    Ok(())
}
