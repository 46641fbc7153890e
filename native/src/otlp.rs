//! The OTLP traces receiver's hot path, natively: a serialized
//! `ExportTraceServiceRequest` → one message per trace (or part of a trace).
//!
//! `otlp_split` does on the request's bytes what `ferryman.wire.otlp`'s
//! `set_resource_attributes` and `split_by_trace` do on the decoded message: set
//! resource attributes (those of the same key dropped, the new ones appended), group
//! the spans by trace id in the order the traces first appear, and cut each trace
//! into requests of at most `max_bytes` serialized, each span with its resource and
//! scope. It copies the resource, scope and span bytes as they are (their unknown
//! fields with them) and writes only the length prefixes around them, so for a
//! request serialized by protobuf (fields in number order, as the receiver's
//! listeners hand it over) it writes the bytes the Python path serializes;
//! `tests/unit/native/test_otlp_split.py` holds it to that. Like the Python path it
//! leaves out the fields of `ExportTraceServiceRequest`, `ResourceSpans` and
//! `ScopeSpans` it does not know.
//!
//! It walks only the levels it needs (request, resource spans, scope spans, span's
//! trace id, resource attributes' keys) and raises `ValueError` for bytes that are
//! not protobuf there; it does not check what lies below (a span's attributes).

use crate::{put_varint, varint_len};
use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_I32: u8 = 5;

/// Field 1 and 2 and 3, length-delimited: the only tags this module writes.
const TAG_1: u8 = 0x0a;
const TAG_2: u8 = 0x12;
const TAG_3: u8 = 0x1a;

type Malformed = &'static str;

/// Bytes of a length-delimited field with a one-byte tag and `payload` bytes.
fn field_size(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

fn put_field(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, Malformed> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let Some(&byte) = buf.get(*pos) else {
            return Err("truncated varint");
        };
        *pos += 1;
        if shift == 63 && byte > 1 {
            return Err("varint longer than 64 bits");
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes")
}

/// One field of a message: its number, wire type, where it starts (its tag) and
/// ends, and, when length-delimited, its payload.
struct Field<'a> {
    number: u64,
    wire: u8,
    start: usize,
    end: usize,
    payload: &'a [u8],
}

/// The fields of a message, in order; an error for bytes that are not protobuf.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn skip_group(&mut self, number: u64, depth: usize) -> Result<(), Malformed> {
        if depth > 64 {
            return Err("groups nested too deep");
        }
        loop {
            if self.pos >= self.buf.len() {
                return Err("unterminated group");
            }
            let key = read_varint(self.buf, &mut self.pos)?;
            let (inner, wire) = (key >> 3, (key & 7) as u8);
            if inner == 0 {
                return Err("field number 0");
            }
            if wire == WIRE_END_GROUP {
                return if inner == number {
                    Ok(())
                } else {
                    Err("mismatched end group")
                };
            }
            self.skip_value(inner, wire, depth)?;
        }
    }

    fn skip_value(&mut self, number: u64, wire: u8, depth: usize) -> Result<&'a [u8], Malformed> {
        match wire {
            WIRE_VARINT => {
                read_varint(self.buf, &mut self.pos)?;
            }
            WIRE_I64 | WIRE_I32 => {
                let width = if wire == WIRE_I64 { 8 } else { 4 };
                if self.buf.len() - self.pos < width {
                    return Err("truncated fixed-width field");
                }
                self.pos += width;
            }
            WIRE_LEN => {
                let len = read_varint(self.buf, &mut self.pos)?;
                if len > (self.buf.len() - self.pos) as u64 {
                    return Err("truncated length-delimited field");
                }
                let start = self.pos;
                self.pos += len as usize;
                return Ok(&self.buf[start..self.pos]);
            }
            WIRE_START_GROUP => self.skip_group(number, depth + 1)?,
            WIRE_END_GROUP => return Err("end group without a start"),
            _ => return Err("invalid wire type"),
        }
        Ok(&[])
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let step = (|| {
            let key = read_varint(self.buf, &mut self.pos)?;
            let (number, wire) = (key >> 3, (key & 7) as u8);
            if number == 0 {
                return Err("field number 0");
            }
            let payload = self.skip_value(number, wire, 0)?;
            Ok(Field {
                number,
                wire,
                start,
                end: self.pos,
                payload,
            })
        })();
        if step.is_err() {
            self.pos = self.buf.len(); // stop after the first error
        }
        Some(step)
    }
}

/// Whether `field` is field `number`, length-delimited.
fn is_len(field: &Field<'_>, number: u64) -> bool {
    field.number == number && field.wire == WIRE_LEN
}

/// A message field that may occur several times: protobuf merges the occurrences,
/// which is what their payloads concatenated decode to.
fn merged(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

struct Scope<'a> {
    /// The scope's payload, when the field is there.
    scope: Option<Vec<u8>>,
    schema_url: &'a [u8],
}

struct Resource<'a> {
    resource: Option<Vec<u8>>,
    schema_url: &'a [u8],
    scopes: Vec<Scope<'a>>,
}

/// A span of the request: its resource and scope (indexes) and its bytes.
#[derive(Clone, Copy)]
struct SpanAt<'a> {
    resource: usize,
    scope: usize,
    bytes: &'a [u8],
}

struct Trace<'a> {
    id: &'a [u8],
    spans: Vec<SpanAt<'a>>,
}

/// What the walk found: resources with their scopes, the spans by trace (in the
/// order the traces first appear), and the spans whose trace id is not valid.
struct Walked<'a> {
    resources: Vec<Resource<'a>>,
    traces: Vec<Trace<'a>>,
    invalid_ids: usize,
}

fn trace_id_of(span: &[u8]) -> Result<&[u8], Malformed> {
    let mut id: &[u8] = &[];
    for field in Fields::new(span) {
        let field = field?;
        if is_len(&field, 1) {
            id = field.payload; // the last occurrence wins, as protobuf reads it
        }
    }
    Ok(id)
}

/// The key of a `KeyValue` (the last occurrence of field 1).
fn key_of(key_value: &[u8]) -> Result<&[u8], Malformed> {
    trace_id_of(key_value)
}

/// A resource's payload with `attributes` set: its attributes of those keys left
/// out, the others first (in order), then the new ones, then its other fields.
fn with_attributes(resource: &[u8], attributes: &[(String, String)]) -> Result<Vec<u8>, Malformed> {
    let mut kept = Vec::with_capacity(resource.len() + 64 * attributes.len());
    let mut rest: Vec<&[u8]> = Vec::new();
    for field in Fields::new(resource) {
        let field = field?;
        let raw = &resource[field.start..field.end];
        if is_len(&field, 1) {
            let key = key_of(field.payload)?;
            if !attributes.iter().any(|(k, _)| k.as_bytes() == key) {
                kept.extend_from_slice(raw);
            }
        } else {
            rest.push(raw);
        }
    }
    for (key, value) in attributes {
        // KeyValue { key = 1; value = 2: AnyValue { string_value = 1 } }; an empty key
        // is not written (proto3), an empty string value is (it is a oneof member).
        let any_len = field_size(value.len());
        let mut kv_len = field_size(any_len);
        if !key.is_empty() {
            kv_len += field_size(key.len());
        }
        kept.push(TAG_1);
        put_varint(&mut kept, kv_len as u64);
        if !key.is_empty() {
            put_field(&mut kept, TAG_1, key.as_bytes());
        }
        kept.push(TAG_2);
        put_varint(&mut kept, any_len as u64);
        put_field(&mut kept, TAG_1, value.as_bytes());
    }
    for raw in rest {
        kept.extend_from_slice(raw);
    }
    Ok(kept)
}

fn walk<'a>(body: &'a [u8], attributes: &[(String, String)]) -> Result<Walked<'a>, Malformed> {
    let mut resources = Vec::new();
    let mut traces: Vec<Trace<'a>> = Vec::new();
    let mut index: HashMap<&'a [u8], usize> = HashMap::new();
    let mut invalid_ids = 0;
    for field in Fields::new(body) {
        let field = field?;
        if !is_len(&field, 1) {
            continue; // not resource_spans: left out, as the Python path does
        }
        let r_index = resources.len();
        let mut resource_parts: Vec<&[u8]> = Vec::new();
        let mut has_resource = false;
        let mut schema_url: &[u8] = &[];
        let mut scopes = Vec::new();
        for rs_field in Fields::new(field.payload) {
            let rs_field = rs_field?;
            if is_len(&rs_field, 1) {
                has_resource = true;
                resource_parts.push(rs_field.payload);
            } else if is_len(&rs_field, 3) {
                schema_url = rs_field.payload;
            } else if is_len(&rs_field, 2) {
                let s_index = scopes.len();
                let mut scope_parts: Vec<&[u8]> = Vec::new();
                let mut has_scope = false;
                let mut scope_url: &[u8] = &[];
                for ss_field in Fields::new(rs_field.payload) {
                    let ss_field = ss_field?;
                    if is_len(&ss_field, 1) {
                        has_scope = true;
                        scope_parts.push(ss_field.payload);
                    } else if is_len(&ss_field, 3) {
                        scope_url = ss_field.payload;
                    } else if is_len(&ss_field, 2) {
                        let span = ss_field.payload;
                        let id = trace_id_of(span)?;
                        if id.len() != 16 || id.iter().all(|&b| b == 0) {
                            invalid_ids += 1;
                            continue;
                        }
                        let at = SpanAt {
                            resource: r_index,
                            scope: s_index,
                            bytes: span,
                        };
                        match index.get(id) {
                            Some(&t) => traces[t].spans.push(at),
                            None => {
                                index.insert(id, traces.len());
                                traces.push(Trace {
                                    id,
                                    spans: vec![at],
                                });
                            }
                        }
                    }
                }
                scopes.push(Scope {
                    scope: has_scope.then(|| merged(&scope_parts)),
                    schema_url: scope_url,
                });
            }
        }
        let resource = if attributes.is_empty() {
            has_resource.then(|| merged(&resource_parts))
        } else {
            Some(with_attributes(&merged(&resource_parts), attributes)?)
        };
        resources.push(Resource {
            resource,
            schema_url,
            scopes,
        });
    }
    Ok(Walked {
        resources,
        traces,
        invalid_ids,
    })
}

fn resource_head(resource: &Resource<'_>) -> usize {
    resource
        .resource
        .as_ref()
        .map_or(0, |r| field_size(r.len()))
        + if resource.schema_url.is_empty() {
            0
        } else {
            field_size(resource.schema_url.len())
        }
}

fn scope_head(scope: &Scope<'_>) -> usize {
    scope.scope.as_ref().map_or(0, |s| field_size(s.len()))
        + if scope.schema_url.is_empty() {
            0
        } else {
            field_size(scope.schema_url.len())
        }
}

/// A request being filled with spans of one trace; `size` is its exact serialized
/// size. The sizes are kept per resource and per scope as the Python builder does.
#[derive(Default)]
struct Builder<'a> {
    spans: Vec<SpanAt<'a>>,
    resource_sizes: Vec<(usize, usize)>,
    scope_sizes: Vec<((usize, usize), usize)>,
    size: usize,
}

impl<'a> Builder<'a> {
    fn resource_size(&self, r: usize) -> Option<usize> {
        self.resource_sizes
            .iter()
            .find(|(k, _)| *k == r)
            .map(|(_, v)| *v)
    }

    fn scope_size(&self, key: (usize, usize)) -> Option<usize> {
        self.scope_sizes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// (scope payload, resource payload) once `span` is in.
    fn sizes_with(&self, walked: &Walked<'_>, span: &SpanAt<'_>) -> (usize, usize) {
        let resource = &walked.resources[span.resource];
        let old_scope = self.scope_size((span.resource, span.scope));
        let new_scope = old_scope.unwrap_or_else(|| scope_head(&resource.scopes[span.scope]))
            + field_size(span.bytes.len());
        let mut new_resource = self
            .resource_size(span.resource)
            .unwrap_or_else(|| resource_head(resource));
        if let Some(old) = old_scope {
            new_resource -= field_size(old);
        }
        (new_scope, new_resource + field_size(new_scope))
    }

    fn cost_of(&self, walked: &Walked<'_>, span: &SpanAt<'_>) -> usize {
        let (_, new_resource) = self.sizes_with(walked, span);
        field_size(new_resource) - self.resource_size(span.resource).map_or(0, field_size)
    }

    fn add(&mut self, walked: &Walked<'_>, span: SpanAt<'a>, cost: usize) {
        let (new_scope, new_resource) = self.sizes_with(walked, &span);
        let key = (span.resource, span.scope);
        match self.scope_sizes.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = new_scope,
            None => self.scope_sizes.push((key, new_scope)),
        }
        match self
            .resource_sizes
            .iter_mut()
            .find(|(k, _)| *k == span.resource)
        {
            Some(entry) => entry.1 = new_resource,
            None => self.resource_sizes.push((span.resource, new_resource)),
        }
        self.size += cost;
        self.spans.push(span);
    }

    /// The serialized request: resources in the order their first span came, each
    /// with its scopes in that order (the spans come sorted by resource and scope).
    fn finish(&self, walked: &Walked<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size);
        let spans = &self.spans;
        let mut i = 0;
        while i < spans.len() {
            let r = spans[i].resource;
            let resource = &walked.resources[r];
            out.push(TAG_1);
            put_varint(&mut out, self.resource_size(r).unwrap_or(0) as u64);
            if let Some(payload) = &resource.resource {
                put_field(&mut out, TAG_1, payload);
            }
            while i < spans.len() && spans[i].resource == r {
                let s = spans[i].scope;
                let scope = &resource.scopes[s];
                out.push(TAG_2);
                put_varint(&mut out, self.scope_size((r, s)).unwrap_or(0) as u64);
                if let Some(payload) = &scope.scope {
                    put_field(&mut out, TAG_1, payload);
                }
                while i < spans.len() && spans[i].resource == r && spans[i].scope == s {
                    put_field(&mut out, TAG_2, spans[i].bytes);
                    i += 1;
                }
                if !scope.schema_url.is_empty() {
                    put_field(&mut out, TAG_3, scope.schema_url);
                }
            }
            if !resource.schema_url.is_empty() {
                put_field(&mut out, TAG_3, resource.schema_url);
            }
        }
        debug_assert_eq!(out.len(), self.size);
        out
    }
}

/// One message: its trace id, its bytes, how many spans it holds.
type Message<'a> = (&'a [u8], Vec<u8>, usize);

/// Messages of every trace, and the sizes of the spans refused as too large (in order).
fn cut<'a>(walked: &Walked<'a>, max_bytes: usize) -> (Vec<Message<'a>>, Vec<usize>) {
    let mut messages = Vec::new();
    let mut too_large = Vec::new();
    for trace in &walked.traces {
        let mut builder = Builder::default();
        for span in &trace.spans {
            let mut cost = builder.cost_of(walked, span);
            if !builder.spans.is_empty() && builder.size + cost > max_bytes {
                messages.push((trace.id, builder.finish(walked), builder.spans.len()));
                builder = Builder::default();
                cost = builder.cost_of(walked, span);
            }
            if cost > max_bytes {
                too_large.push(cost);
                continue;
            }
            builder.add(walked, *span, cost);
        }
        if !builder.spans.is_empty() {
            messages.push((trace.id, builder.finish(walked), builder.spans.len()));
        }
    }
    (messages, too_large)
}

/// Messages (trace id, serialized request, spans), the count of spans refused for
/// their trace id, and the sizes of the spans refused as larger than `max_bytes`.
type Split<'py> = (
    Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>, usize)>,
    usize,
    Vec<usize>,
);

/// A serialized `ExportTraceServiceRequest` cut into one request per trace (or part
/// of one) of at most `max_bytes`, with `attributes` (key, value) set on every
/// resource. Refused: spans whose trace id is not 16 bytes or is all zero (counted)
/// and single spans above `max_bytes` (their sizes). `ValueError` when `body` is not
/// such a request.
#[pyfunction]
#[pyo3(signature = (body, max_bytes, attributes = Vec::new()))]
fn otlp_split<'py>(
    py: Python<'py>,
    body: &[u8],
    max_bytes: usize,
    attributes: Vec<(String, String)>,
) -> PyResult<Split<'py>> {
    let result = py.detach(|| {
        let walked = walk(body, &attributes)?;
        let (messages, too_large) = cut(&walked, max_bytes);
        let messages: Vec<(Vec<u8>, Vec<u8>, usize)> = messages
            .into_iter()
            .map(|(id, value, n)| (id.to_vec(), value, n))
            .collect();
        Ok::<_, Malformed>((messages, walked.invalid_ids, too_large))
    });
    let (messages, invalid, too_large) = result.map_err(|why| {
        PyValueError::new_err(format!(
            "not an OTLP ExportTraceServiceRequest protobuf: {why}"
        ))
    })?;
    let messages = messages
        .into_iter()
        .map(|(id, value, n)| (PyBytes::new(py, &id), PyBytes::new(py, &value), n))
        .collect();
    Ok((messages, invalid, too_large))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(otlp_split, module)?)?;
    Ok(())
}
