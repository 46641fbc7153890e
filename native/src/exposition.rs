//! Prometheus text exposition 0.0.4 and OpenMetrics 1.0 text, parsed natively.
//!
//! `parse` accepts exactly what `ferryman/prom/exposition.py` `parse` accepts and
//! gives the same samples (name, labels in order, value bit for bit, timestamp in
//! milliseconds). It never words an error: anything the Python parser would refuse,
//! and the few valid spellings it does not handle itself (an OpenMetrics timestamp
//! with more than 28 significant digits or a huge exponent, an integer timestamp of
//! more than 4,000 characters), make it decline, and the Python parser then takes
//! the body (and raises its `ParseError` with the line and the reason).
//! `tests/unit/native/test_exposition_native.py` holds it to the Python parser.
//!
//! Family bookkeeping (HELP/TYPE/UNIT once each, the sample names each type
//! produces, OpenMetrics grouping and `# EOF`) follows the Python parser's rules
//! step for step, since they decide what is refused.

use std::collections::{HashMap, HashSet};

/// Why the native parser declined a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// The Python parser refuses the body (it raises `ParseError`).
    Invalid,
    /// Valid, perhaps, but spelled in a way the native parser leaves to Python.
    Unsupported,
}

impl Decline {
    pub fn reason(self) -> &'static str {
        match self {
            Decline::Invalid => "invalid_exposition",
            Decline::Unsupported => "unsupported_spelling",
        }
    }
}

type R<T> = Result<T, Decline>;

/// A label of a sample: its name in the body, its value in the body or (when it
/// held a backslash escape) in `Parsed::arena`.
#[derive(Debug, Clone, Copy)]
pub struct Label {
    pub name: (usize, usize),
    pub value: (usize, usize),
    pub escaped: bool,
}

/// One sample line: its name in the body, its labels (a range of `Parsed::labels`).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub name: (usize, usize),
    pub labels: (usize, usize),
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// The samples of a body, in order, referring into the body text.
#[derive(Default)]
pub struct Parsed {
    pub samples: Vec<Sample>,
    pub labels: Vec<Label>,
    pub arena: String,
}

impl Parsed {
    pub fn name<'a>(&self, text: &'a str, sample: &Sample) -> &'a str {
        &text[sample.name.0..sample.name.1]
    }

    pub fn labels_of(&self, sample: &Sample) -> &[Label] {
        &self.labels[sample.labels.0..sample.labels.1]
    }

    pub fn label_name<'a>(&self, text: &'a str, label: &Label) -> &'a str {
        &text[label.name.0..label.name.1]
    }

    pub fn label_value<'a>(&'a self, text: &'a str, label: &Label) -> &'a str {
        if label.escaped {
            &self.arena[label.value.0..label.value.1]
        } else {
            &text[label.value.0..label.value.1]
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Untyped,
    Summary,
    Histogram,
    Unknown,
    Stateset,
    Info,
    GaugeHistogram,
}

fn kind_of(text: &str, openmetrics: bool) -> Option<Kind> {
    let kind = match text {
        "counter" => Kind::Counter,
        "gauge" => Kind::Gauge,
        "summary" => Kind::Summary,
        "histogram" => Kind::Histogram,
        "untyped" if !openmetrics => Kind::Untyped,
        "unknown" if openmetrics => Kind::Unknown,
        "stateset" if openmetrics => Kind::Stateset,
        "info" if openmetrics => Kind::Info,
        "gaugehistogram" if openmetrics => Kind::GaugeHistogram,
        _ => return None,
    };
    Some(kind)
}

/// The sample-name suffixes each type produces, per format (as the Python tables).
fn suffixes(kind: Kind, openmetrics: bool) -> &'static [&'static str] {
    if openmetrics {
        match kind {
            Kind::Counter => &["_total", "_created"],
            Kind::Info => &["_info"],
            Kind::Summary => &["", "_sum", "_count", "_created"],
            Kind::Histogram => &["_bucket", "_sum", "_count", "_created"],
            Kind::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            _ => &[""],
        }
    } else {
        match kind {
            Kind::Summary => &["", "_sum", "_count"],
            Kind::Histogram => &["_bucket", "_sum", "_count"],
            _ => &[""],
        }
    }
}

fn unitless(kind: Kind) -> bool {
    matches!(kind, Kind::Info | Kind::Stateset)
}

struct Family {
    name: String,
    kind: Kind,
    has_help: bool,
    has_type: bool,
    has_unit: bool,
    unit: bool, // a non-empty unit
    has_samples: bool,
    closed: bool,
}

fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn skip_blanks(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && is_blank(bytes[pos]) {
        pos += 1;
    }
    pos
}

/// End of `[^ \t]*` from pos.
fn token_end(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && !is_blank(bytes[pos]) {
        pos += 1;
    }
    pos
}

/// End of `[a-zA-Z_:][a-zA-Z0-9_:]*` at pos, if one starts there.
fn metric_name_end(bytes: &[u8], pos: usize) -> Option<usize> {
    let first = *bytes.get(pos)?;
    if !(first.is_ascii_alphabetic() || first == b'_' || first == b':') {
        return None;
    }
    let mut end = pos + 1;
    while end < bytes.len()
        && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':')
    {
        end += 1;
    }
    Some(end)
}

/// End of `[a-zA-Z_][a-zA-Z0-9_]*` at pos, if one starts there.
fn label_name_end(bytes: &[u8], pos: usize) -> Option<usize> {
    let first = *bytes.get(pos)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let mut end = pos + 1;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
        end += 1;
    }
    Some(end)
}

fn is_metric_name(name: &str) -> bool {
    metric_name_end(name.as_bytes(), 0) == Some(name.len())
}

/// The value Go's strconv.ParseFloat gives, as `_go_float` in the Python parser.
pub fn go_float(token: &str) -> Option<f64> {
    let bytes = token.as_bytes();
    let (&first, &last) = (bytes.first()?, bytes.last()?);
    if !token.is_ascii() || bytes.contains(&b'_') || first <= b' ' || last <= b' ' {
        return None;
    }
    let value: f64 = token.parse().ok()?;
    if value.is_finite() {
        return Some(value);
    }
    let lower = token.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" | "-inf" | "infinity" | "+infinity" | "-infinity" | "nan" => Some(value),
        _ => None,
    }
}

/// Text 0.0.4 timestamp: `[+-]?[0-9]+` within int64, as Python's int() reads it.
fn text_timestamp(token: &str) -> R<i64> {
    if token.len() > 4000 {
        return Err(Decline::Unsupported); // Python's int() limits digits
    }
    let bytes = token.as_bytes();
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Decline::Invalid);
    }
    let mut value: i128 = 0;
    for &digit in digits {
        value = value * 10 + i128::from(digit - b'0');
        if value > 1 << 64 {
            return Err(Decline::Invalid);
        }
    }
    if negative {
        value = -value;
    }
    i64::try_from(value).map_err(|_| Decline::Invalid)
}

/// OpenMetrics timestamp: float seconds to milliseconds, scaled exactly and truncated
/// toward zero (as the Python parser does with Decimal).
fn om_timestamp(token: &str) -> R<i64> {
    let seconds = go_float(token).ok_or(Decline::Invalid)?;
    if !seconds.is_finite() {
        return Err(Decline::Invalid);
    }
    let bytes = token.as_bytes();
    let mut pos = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            pos = 1;
            true
        }
        Some(b'+') => {
            pos = 1;
            false
        }
        _ => false,
    };
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut fraction = 0i64;
    let mut in_fraction = false;
    while pos < bytes.len() {
        let byte = bytes[pos];
        if byte.is_ascii_digit() {
            if !(digits.is_empty() && byte == b'0') {
                digits.push(byte - b'0');
            }
            if in_fraction {
                fraction += 1;
            }
        } else if byte == b'.' {
            in_fraction = true;
        } else {
            break;
        }
        pos += 1;
    }
    let mut exponent = 0i64;
    if pos < bytes.len() {
        // (e|E)[+-]?digits: go_float has checked the shape.
        let rest = &token[pos + 1..];
        if rest.len() > 6 {
            return Err(Decline::Unsupported);
        }
        exponent = rest.parse().map_err(|_| Decline::Unsupported)?;
    }
    if digits.is_empty() {
        return Ok(0);
    }
    if digits.len() > 28 {
        return Err(Decline::Unsupported); // Decimal would round at its precision
    }
    let scale = exponent - fraction + 3;
    let mut magnitude: i128 = 0;
    let kept = if scale >= 0 {
        if digits.len() as i64 + scale > 20 {
            return Err(Decline::Invalid); // beyond int64
        }
        digits.len()
    } else {
        let drop = (-scale) as usize;
        if drop >= digits.len() {
            return Ok(0);
        }
        digits.len() - drop
    };
    for &digit in &digits[..kept] {
        magnitude = magnitude * 10 + i128::from(digit);
    }
    if scale > 0 {
        magnitude *= 10i128.pow(scale as u32);
    }
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| Decline::Invalid)
}

fn unescape_into(raw: &str, out: &mut String) {
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
}

struct Parser<'t> {
    text: &'t str,
    openmetrics: bool,
    families: HashMap<String, usize>,
    fams: Vec<Family>,
    index: HashMap<String, usize>,
    current: Option<usize>,
    seen_eof: bool,
    /// The last sample name resolved and its family, until a metadata line.
    last: Option<(usize, usize, usize)>,
    out: Parsed,
    seen_names: HashSet<&'t str>,
}

/// Parse a body (`openmetrics` as the Python parser decides from the Content-Type).
pub fn parse(body: &[u8], openmetrics: bool) -> Result<(Parsed, &str), Decline> {
    let text = std::str::from_utf8(body).map_err(|_| Decline::Invalid)?;
    if text.starts_with('\u{feff}') {
        return Err(Decline::Invalid);
    }
    let mut parser = Parser {
        text,
        openmetrics,
        families: HashMap::new(),
        fams: Vec::new(),
        index: HashMap::new(),
        current: None,
        seen_eof: false,
        last: None,
        out: Parsed::default(),
        seen_names: HashSet::new(),
    };
    parser.run()?;
    Ok((parser.out, text))
}

impl<'t> Parser<'t> {
    fn run(&mut self) -> R<()> {
        let text = self.text;
        let size = text.len();
        let bytes = text.as_bytes();
        let mut start = 0;
        // Lines as Python's split("\n") gives them, less one final empty line.
        while start < size {
            let end = memchr_newline(bytes, start).unwrap_or(size);
            let is_last = end + 1 >= size;
            self.line(start, end, is_last)?;
            start = end + 1;
        }
        if self.openmetrics && !self.seen_eof {
            return Err(Decline::Invalid);
        }
        Ok(())
    }

    fn line(&mut self, start: usize, end: usize, is_last: bool) -> R<()> {
        let text = self.text;
        let line = &text[start..end];
        let bytes = line.as_bytes();
        let Some(&first) = bytes.first() else {
            return if self.openmetrics {
                Err(Decline::Invalid)
            } else {
                Ok(())
            };
        };
        if first == b'#' {
            self.last = None;
            return if self.openmetrics {
                self.om_comment(line, is_last)
            } else {
                self.text_comment(line)
            };
        }
        if is_blank(first) && !self.openmetrics {
            let skip = skip_blanks(bytes, 0);
            if skip == bytes.len() {
                return Ok(());
            }
            if bytes[skip] == b'#' {
                self.last = None;
                return self.text_comment(&line[skip..]);
            }
        }
        let labels_from = self.out.labels.len();
        let (name, value, stamp) = if self.openmetrics {
            self.om_sample(start, end)?
        } else {
            self.text_sample(start, end)?
        };
        let family = self.resolve(name)?;
        if self.openmetrics {
            if self.fams[family].closed {
                return Err(Decline::Invalid);
            }
            self.make_current(family);
        }
        self.fams[family].has_samples = true;
        let labels_to = self.out.labels.len();
        self.out.samples.push(Sample {
            name,
            labels: (labels_from, labels_to),
            value,
            timestamp_ms: stamp,
        });
        Ok(())
    }

    // --- families ------------------------------------------------------------------

    fn resolve(&mut self, name: (usize, usize)) -> R<usize> {
        let text = self.text;
        let spelled = &text[name.0..name.1];
        if let Some((s, e, family)) = self.last {
            if &text[s..e] == spelled {
                return Ok(family);
            }
        }
        let family = if let Some(&family) = self.index.get(spelled) {
            family
        } else {
            if self.families.contains_key(spelled) {
                return Err(Decline::Invalid); // a declared family this name does not fit
            }
            self.new_family(spelled)
        };
        self.last = Some((name.0, name.1, family));
        Ok(family)
    }

    fn new_family(&mut self, name: &str) -> usize {
        let family = self.fams.len();
        self.fams.push(Family {
            name: name.to_owned(),
            kind: if self.openmetrics {
                Kind::Unknown
            } else {
                Kind::Untyped
            },
            has_help: false,
            has_type: false,
            has_unit: false,
            unit: false,
            has_samples: false,
            closed: false,
        });
        self.families.insert(name.to_owned(), family);
        self.index.insert(name.to_owned(), family);
        family
    }

    fn make_current(&mut self, family: usize) {
        if let Some(current) = self.current {
            if current != family {
                self.fams[current].closed = true;
            }
        }
        self.current = Some(family);
    }

    fn metadata_family(&mut self, name: &str) -> R<usize> {
        let family = match self.families.get(name) {
            Some(&family) => family,
            None => {
                if name.is_empty() || !is_metric_name(name) {
                    return Err(Decline::Invalid);
                }
                if self.openmetrics && self.index.contains_key(name) {
                    return Err(Decline::Invalid);
                }
                self.new_family(name)
            }
        };
        if self.openmetrics {
            let fam = &self.fams[family];
            if fam.has_samples || fam.closed {
                return Err(Decline::Invalid);
            }
            self.make_current(family);
        }
        Ok(family)
    }

    fn set_type(&mut self, family: usize, kind: Kind) -> R<()> {
        let om = self.openmetrics;
        let (old, name) = {
            let fam = &self.fams[family];
            if fam.has_type || fam.has_samples || (unitless(kind) && fam.unit) {
                return Err(Decline::Invalid);
            }
            (fam.kind, fam.name.clone())
        };
        for suffix in suffixes(old, om) {
            let sample_name = format!("{name}{suffix}");
            if self.index.get(&sample_name) == Some(&family) {
                self.index.remove(&sample_name);
            }
        }
        for suffix in suffixes(kind, om) {
            let sample_name = format!("{name}{suffix}");
            if !om {
                if suffix.is_empty() {
                    self.index.insert(sample_name, family);
                } else {
                    self.index.entry(sample_name).or_insert(family);
                }
                continue;
            }
            let other = self
                .index
                .get(&sample_name)
                .or_else(|| self.families.get(&sample_name));
            if let Some(&other) = other {
                if other != family {
                    return Err(Decline::Invalid);
                }
            }
            self.index.insert(sample_name, family);
        }
        if om && kind == Kind::Counter && name.ends_with("_total") {
            self.index.entry(name).or_insert(family);
        }
        let fam = &mut self.fams[family];
        fam.kind = kind;
        fam.has_type = true;
        Ok(())
    }

    // --- comment lines -------------------------------------------------------------

    fn text_comment(&mut self, line: &str) -> R<()> {
        // `#[ \t]+(HELP|TYPE)` then the end or blanks, else an ordinary comment.
        let bytes = line.as_bytes();
        let pos = skip_blanks(bytes, 1);
        if pos == 1 {
            return Ok(());
        }
        let keyword = &line[pos..];
        let is_help = keyword.starts_with("HELP");
        if !(is_help || keyword.starts_with("TYPE")) {
            return Ok(());
        }
        let after = pos + 4;
        if after < bytes.len() && !is_blank(bytes[after]) {
            return Ok(());
        }
        let name_start = skip_blanks(bytes, after);
        let name_end = token_end(bytes, name_start);
        let name = &line[name_start..name_end];
        let value = line[name_end..].trim_matches(|c| c == ' ' || c == '\t');
        let family = self.metadata_family(name)?;
        if is_help {
            if self.fams[family].has_help {
                return Err(Decline::Invalid);
            }
            self.fams[family].has_help = true;
            return Ok(());
        }
        let kind = kind_of(value, false).ok_or(Decline::Invalid)?;
        self.set_type(family, kind)
    }

    fn om_comment(&mut self, line: &str, is_last: bool) -> R<()> {
        if line == "# EOF" {
            if !is_last {
                return Err(Decline::Invalid);
            }
            self.seen_eof = true;
            return Ok(());
        }
        let Some(rest) = line.strip_prefix("# ") else {
            return Err(Decline::Invalid);
        };
        let keyword = rest.get(..5).ok_or(Decline::Invalid)?;
        let keyword = match keyword {
            "HELP " => 0,
            "TYPE " => 1,
            "UNIT " => 2,
            _ => return Err(Decline::Invalid),
        };
        let rest = &rest[5..];
        let (name, value) = match rest.find(' ') {
            Some(space) => (&rest[..space], Some(&rest[space + 1..])),
            None => (rest, None),
        };
        let family = self.metadata_family(name)?;
        let value = value.ok_or(Decline::Invalid)?;
        let fam = &self.fams[family];
        match keyword {
            0 => {
                if fam.has_help {
                    return Err(Decline::Invalid);
                }
                self.fams[family].has_help = true;
            }
            1 => {
                let kind = kind_of(value, true).ok_or(Decline::Invalid)?;
                self.set_type(family, kind)?;
            }
            _ => {
                if fam.has_unit
                    || !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
                {
                    return Err(Decline::Invalid);
                }
                if !value.is_empty()
                    && (!(name.len() > value.len()
                        && name.ends_with(value)
                        && name.as_bytes()[name.len() - value.len() - 1] == b'_')
                        || unitless(fam.kind))
                {
                    return Err(Decline::Invalid);
                }
                let fam = &mut self.fams[family];
                fam.unit = !value.is_empty();
                fam.has_unit = true;
            }
        }
        Ok(())
    }

    // --- sample lines --------------------------------------------------------------

    /// A label set from just after `{` (text: blanks allowed around everything);
    /// the labels go to `out.labels`; returns the position after `}`.
    fn labels(&mut self, start: usize, end: usize, mut pos: usize, exemplar: bool) -> R<usize> {
        let text = self.text;
        let line = &text[start..end];
        let bytes = line.as_bytes();
        let size = bytes.len();
        let om = self.openmetrics;
        let first = self.out.labels.len();
        self.seen_names.clear();
        loop {
            if !om {
                pos = skip_blanks(bytes, pos);
            }
            if pos >= size {
                return Err(Decline::Invalid);
            }
            if bytes[pos] == b'}' {
                return Ok(pos + 1);
            }
            let name_end = label_name_end(bytes, pos).ok_or(Decline::Invalid)?;
            let name = &line[pos..name_end];
            if name == "__name__" && !exemplar {
                return Err(Decline::Invalid);
            }
            let count = self.out.labels.len() - first;
            let duplicate = if count < 16 {
                self.out.labels[first..]
                    .iter()
                    .any(|l| &text[l.name.0..l.name.1] == name)
            } else {
                if self.seen_names.is_empty() {
                    for l in &self.out.labels[first..] {
                        self.seen_names.insert(&text[l.name.0..l.name.1]);
                    }
                }
                !self.seen_names.insert(name)
            };
            if duplicate {
                return Err(Decline::Invalid);
            }
            let name_span = (start + pos, start + name_end);
            pos = name_end;
            if !om {
                pos = skip_blanks(bytes, pos);
            }
            if pos >= size || bytes[pos] != b'=' {
                return Err(Decline::Invalid);
            }
            pos += 1;
            if !om {
                pos = skip_blanks(bytes, pos);
            }
            if pos >= size || bytes[pos] != b'"' {
                return Err(Decline::Invalid);
            }
            let value_start = pos + 1;
            let mut i = value_start;
            let mut escaped = false;
            while i < size {
                match bytes[i] {
                    b'"' => break,
                    b'\\' => {
                        if i + 1 >= size {
                            break;
                        }
                        escaped = true;
                        i += 2;
                    }
                    _ => i += 1,
                }
            }
            if i >= size || bytes[i] != b'"' {
                return Err(Decline::Invalid);
            }
            // i + 2 may have stepped into a multi-byte character; never past a quote.
            let raw = &line[value_start..i];
            let value = if escaped {
                let from = self.out.arena.len();
                unescape_into(raw, &mut self.out.arena);
                (from, self.out.arena.len())
            } else {
                (start + value_start, start + i)
            };
            self.out.labels.push(Label {
                name: name_span,
                value,
                escaped,
            });
            pos = i + 1;
            if !om {
                pos = skip_blanks(bytes, pos);
            }
            if pos < size && bytes[pos] == b',' {
                pos += 1;
            } else if !(pos < size && bytes[pos] == b'}') {
                return Err(Decline::Invalid);
            }
        }
    }

    fn text_sample(&mut self, start: usize, end: usize) -> R<((usize, usize), f64, Option<i64>)> {
        let text = self.text;
        let line = &text[start..end];
        let bytes = line.as_bytes();
        let size = bytes.len();
        let name_start = skip_blanks(bytes, 0);
        let name_end = metric_name_end(bytes, name_start).ok_or(Decline::Invalid)?;
        let after = skip_blanks(bytes, name_end);
        let mut pos;
        if after < size && bytes[after] == b'{' {
            pos = self.labels(start, end, after + 1, false)?;
            pos = skip_blanks(bytes, pos);
        } else if after == name_end && name_end < size {
            return Err(Decline::Invalid);
        } else {
            pos = after;
        }
        let value_end = token_end(bytes, pos);
        let value = go_float(&line[pos..value_end]).ok_or(Decline::Invalid)?;
        pos = skip_blanks(bytes, value_end);
        let mut stamp = None;
        if pos < size {
            let stamp_end = token_end(bytes, pos);
            stamp = Some(text_timestamp(&line[pos..stamp_end])?);
            if skip_blanks(bytes, stamp_end) < size {
                return Err(Decline::Invalid);
            }
        }
        Ok(((start + name_start, start + name_end), value, stamp))
    }

    fn om_sample(&mut self, start: usize, end: usize) -> R<((usize, usize), f64, Option<i64>)> {
        let text = self.text;
        let line = &text[start..end];
        let bytes = line.as_bytes();
        let size = bytes.len();
        if is_blank(bytes[0]) {
            return Err(Decline::Invalid);
        }
        let name_end = metric_name_end(bytes, 0).ok_or(Decline::Invalid)?;
        let mut pos = name_end;
        if pos < size && bytes[pos] == b'{' {
            pos = self.labels(start, end, pos + 1, false)?;
        }
        if pos >= size || bytes[pos] != b' ' {
            return Err(Decline::Invalid);
        }
        let (next, token) = om_token(line, pos + 1);
        pos = next;
        let value = go_float(token).ok_or(Decline::Invalid)?;
        let mut stamp = None;
        if pos < size && !line[pos..].starts_with(" # ") {
            let (next, token) = om_token(line, pos + 1);
            pos = next;
            stamp = Some(om_timestamp(token)?);
        }
        if pos < size {
            if !line[pos..].starts_with(" # {") {
                return Err(Decline::Invalid);
            }
            // An exemplar: checked, then dropped.
            let keep = self.out.labels.len();
            let arena = self.out.arena.len();
            pos = self.labels(start, end, pos + 4, true)?;
            self.out.labels.truncate(keep);
            self.out.arena.truncate(arena);
            if pos >= size || bytes[pos] != b' ' {
                return Err(Decline::Invalid);
            }
            let (next, token) = om_token(line, pos + 1);
            pos = next;
            go_float(token).ok_or(Decline::Invalid)?;
            if pos < size {
                let (next, token) = om_token(line, pos + 1);
                om_timestamp(token)?;
                if next < size {
                    return Err(Decline::Invalid);
                }
            }
        }
        Ok(((start, start + name_end), value, stamp))
    }
}

fn om_token(line: &str, pos: usize) -> (usize, &str) {
    let end = line[pos..].find(' ').map_or(line.len(), |i| pos + i);
    (end, &line[pos..end])
}

fn memchr_newline(bytes: &[u8], from: usize) -> Option<usize> {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
}
