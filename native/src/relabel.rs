//! Prometheus relabeling, natively: `NativeRelabeler` runs the rules of
//! `ferryman/prom/relabel.py` (all eleven actions) with the same answers.
//!
//! Regexes are Go RE2 syntax. They are not handed to the `regex` crate as written:
//! a small parser (`relabel/syntax.rs`) accepts a whitelisted subset whose meaning
//! is the same in both engines and writes it out again in an explicit spelling
//! (every literal as `\x{..}`, Perl and POSIX classes as ASCII ranges, anchors as
//! `\A`/`\z`, flags scoped per atom), so the crate's own syntax never decides
//! anything. Anything else declines (`RelabelDeclined`) and the caller keeps its
//! Python or RE2 engine: Unicode classes (`\p..`), `(?m)`, `\Q..\E`, octal escapes,
//! `\C`, case folding of anything but ASCII, nested counted repetitions, a
//! repetition that can match empty around a capture (where engines differ on the
//! last capture), group names not starting with a letter or `_`, and templates
//! mixing `$` with non-ASCII text (Go's idea of a letter is not Rust's).
//!
//! `apply` also declines a label set it cannot answer for exactly: a lone
//! surrogate (no UTF-8 form) and `lowercase`/`uppercase` of a non-ASCII value
//! (Unicode tables of different versions). Native callers use `RuleSet` directly.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use md5::{Digest, Md5};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use regex::Regex;

mod syntax;
use syntax::{compile_regex, Compiled, Parsed, Shape};

create_exception!(
    ferryman_native,
    RelabelDeclined,
    PyException,
    "Raised when the native relabeler does not take a rule or a label set; use Python's."
);

// --------------------------------------------------------------------------
// Go's regexp.Expand.
// --------------------------------------------------------------------------

enum Part {
    Text(String),
    Groups(Vec<usize>), // the first that took part in the match
}

fn template(text: &str, names: &[String]) -> Parsed<Vec<Part>> {
    if text.contains('$') && !text.is_ascii() {
        return Err("a template with $ and non-ASCII text".into());
    }
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            let next = text[i..].find('$').map_or(text.len(), |j| i + j);
            literal.push_str(&text[i..next]);
            i = next;
            continue;
        }
        i += 1;
        if bytes.get(i) == Some(&b'$') {
            literal.push('$');
            i += 1;
            continue;
        }
        let brace = bytes.get(i) == Some(&b'{');
        let start = i + usize::from(brace);
        let mut k = start;
        while k < bytes.len() && (bytes[k].is_ascii_alphanumeric() || bytes[k] == b'_') {
            k += 1;
        }
        let name = &text[start..k];
        if name.is_empty() || (brace && bytes.get(k) != Some(&b'}')) {
            literal.push('$');
            continue;
        }
        i = k + usize::from(brace);
        let number = if name.bytes().all(|b| b.is_ascii_digit())
            && name.len() <= 9
            && (name == "0" || !name.starts_with('0'))
        {
            name.parse::<usize>().ok()
        } else {
            None
        };
        if !literal.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut literal)));
        }
        let groups = match number {
            Some(n) if n < names.len() => vec![n],
            Some(_) => vec![],
            None => (0..names.len()).filter(|&g| names[g] == name).collect(),
        };
        if !groups.is_empty() {
            parts.push(Part::Groups(groups));
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

fn constant(parts: &[Part]) -> Option<String> {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Groups(_) => return None,
        }
    }
    Some(out)
}

/// The template with each group reference replaced by `group(index)`'s text (the
/// first of its candidates that took part in the match).
fn expand<'t>(parts: &[Part], group: impl Fn(usize) -> Option<&'t str>) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Groups(groups) => {
                if let Some(text) = groups.iter().find_map(|&g| group(g)) {
                    out.push_str(text);
                }
            }
        }
    }
    out
}

fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

// --------------------------------------------------------------------------
// Rules and the label set they edit.
// --------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

struct Rule {
    action: Action,
    whole: bool, // the regex is `(.*)` or `.*`: it matches, every group is the value
    shape: Option<Shape>, // the regex as literals, when it is that simple
    sources: Vec<String>,
    separator: String,
    regex: Regex,
    target: Vec<Part>,
    target_constant: Option<String>,
    replacement: Vec<Part>,
    replacement_constant: Option<String>,
    modulus: u64,
}

impl Rule {
    fn matches(&self, text: &str) -> bool {
        if self.whole {
            return true;
        }
        match &self.shape {
            Some(shape) => shape.matches(text),
            None => self.regex.is_match(text),
        }
    }
}

/// One label: its name and value, borrowed from Python's strings while unchanged;
/// `objects` keeps the input's string objects to hand back as they were.
struct Label<'a> {
    name: Cow<'a, str>,
    value: Cow<'a, str>,
    source: Option<usize>, // index of the input pair it still is
}

struct Labels<'a> {
    items: Vec<Label<'a>>,
    // Names in order of first write (Prometheus' labels.Builder), which decides
    // labelmap's order; kept only when a labelmap rule will read it.
    written: Vec<Cow<'a, str>>,
    track: bool,
}

impl<'a> Labels<'a> {
    fn get(&self, name: &str) -> &str {
        self.items
            .iter()
            .find(|l| l.name == name)
            .map_or("", |l| &l.value)
    }

    fn joined(&self, rule: &Rule) -> Cow<'_, str> {
        match rule.sources.as_slice() {
            [] => Cow::Borrowed(""),
            [only] => Cow::Borrowed(self.get(only)),
            many => {
                let mut out = String::new();
                for (i, name) in many.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&rule.separator);
                    }
                    out.push_str(self.get(name));
                }
                Cow::Owned(out)
            }
        }
    }

    /// labels.Builder.Set: an empty value deletes.
    fn set(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) {
        if value.is_empty() {
            self.remove(&name);
            return;
        }
        if self.track && !self.written.contains(&name) {
            self.written.push(name.clone());
        }
        match self.items.iter_mut().find(|l| l.name == name) {
            Some(label) => {
                label.value = value;
                label.source = None;
            }
            None => self.items.push(Label {
                name,
                value,
                source: None,
            }),
        }
    }

    fn remove(&mut self, name: &str) {
        self.items.retain(|l| l.name != name);
        if self.track {
            self.written.retain(|w| w != name);
        }
    }
}

enum Declined {
    Input(&'static str),
}

fn lower_or_upper(value: &str, upper: bool) -> Result<String, Declined> {
    if !value.is_ascii() {
        return Err(Declined::Input("lowercase/uppercase of a non-ASCII value"));
    }
    Ok(if upper {
        value.to_ascii_uppercase()
    } else {
        value.to_ascii_lowercase()
    })
}

fn hashmod(value: &str, modulus: u64) -> String {
    let digest = Md5::digest(value.as_bytes());
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&digest[8..]);
    (u64::from_be_bytes(tail) % modulus).to_string()
}

/// Runs one rule; false when it drops the series.
fn step<'a>(rule: &'a Rule, labels: &mut Labels<'a>) -> Result<bool, Declined> {
    match rule.action {
        Action::Replace => {
            let value = labels.joined(rule);
            let (target, replacement): (Cow<'a, str>, Cow<'a, str>) =
                match (&rule.target_constant, &rule.replacement_constant) {
                    (Some(target), Some(replacement)) => {
                        if !rule.matches(&value) {
                            return Ok(true);
                        }
                        (Cow::Borrowed(target), Cow::Borrowed(replacement))
                    }
                    _ if rule.whole => {
                        // `(.*)` or `.*`: a match, and every group is the whole value.
                        let group = |_: usize| Some(&*value);
                        (
                            rule.target_constant.as_deref().map_or_else(
                                || Cow::Owned(expand(&rule.target, group)),
                                Cow::Borrowed,
                            ),
                            rule.replacement_constant.as_deref().map_or_else(
                                || Cow::Owned(expand(&rule.replacement, group)),
                                Cow::Borrowed,
                            ),
                        )
                    }
                    _ => {
                        let Some(caps) = rule.regex.captures(&value) else {
                            return Ok(true);
                        };
                        let group = |g: usize| caps.get(g).map(|m| m.as_str());
                        (
                            rule.target_constant.as_deref().map_or_else(
                                || Cow::Owned(expand(&rule.target, group)),
                                Cow::Borrowed,
                            ),
                            rule.replacement_constant.as_deref().map_or_else(
                                || Cow::Owned(expand(&rule.replacement, group)),
                                Cow::Borrowed,
                            ),
                        )
                    }
                };
            if is_label_name(&target) {
                labels.set(target, replacement);
            }
            Ok(true)
        }
        Action::Keep | Action::Drop => {
            let matched = rule.matches(&labels.joined(rule));
            Ok(matched == (rule.action == Action::Keep))
        }
        Action::KeepEqual | Action::DropEqual => {
            let target = rule.target_constant.as_deref().unwrap_or("");
            let equal = labels.get(target) == labels.joined(rule);
            Ok(equal == (rule.action == Action::KeepEqual))
        }
        Action::HashMod | Action::Lowercase | Action::Uppercase => {
            let value = labels.joined(rule);
            let result = match rule.action {
                Action::HashMod => hashmod(&value, rule.modulus),
                action => lower_or_upper(&value, action == Action::Uppercase)?,
            };
            let target = rule.target_constant.as_deref().unwrap_or_default();
            labels.set(Cow::Borrowed(target), Cow::Owned(result));
            Ok(true)
        }
        Action::LabelMap => {
            let mut renames: Vec<(Cow<'a, str>, Cow<'a, str>, Cow<'a, str>)> = Vec::new();
            for label in &labels.items {
                let new = match &rule.replacement_constant {
                    Some(name) if rule.matches(&label.name) => Cow::Borrowed(name.as_str()),
                    Some(_) => continue,
                    None if rule.whole => {
                        Cow::Owned(expand(&rule.replacement, |_| Some(&*label.name)))
                    }
                    None => match rule.regex.captures(&label.name) {
                        Some(caps) => Cow::Owned(expand(&rule.replacement, |g| {
                            caps.get(g).map(|m| m.as_str())
                        })),
                        None => continue,
                    },
                };
                renames.push((label.name.clone(), new, label.value.clone()));
            }
            // Prometheus' Builder.Range order: input labels by name, then the
            // written ones in order of writing; the last write to a name wins.
            let position = |name: &str| labels.written.iter().position(|w| w == name);
            renames.sort_by(|a, b| {
                let (pa, pb) = (position(&a.0), position(&b.0));
                (pa.is_some(), pa, &a.0).cmp(&(pb.is_some(), pb, &b.0))
            });
            for (_, new, value) in renames {
                // Unchecked names, as in Prometheus; values are never empty here.
                labels.set(new, value);
            }
            Ok(true)
        }
        Action::LabelDrop | Action::LabelKeep => {
            let drop_on_match = rule.action == Action::LabelDrop;
            let doomed: Vec<Cow<'a, str>> = labels
                .items
                .iter()
                .filter(|l| rule.matches(&l.name) == drop_on_match)
                .map(|l| l.name.clone())
                .collect();
            for name in doomed {
                labels.remove(&name);
            }
            Ok(true)
        }
    }
}

// --------------------------------------------------------------------------
// Python's view.
// --------------------------------------------------------------------------

/// Compiled relabel rules run natively; `apply` answers as `ferryman.prom.relabel`'s
/// `Relabeler.apply` does, or hands a label set it does not take to `fallback` (or
/// raises `RelabelDeclined` without one). The constructor raises `RelabelDeclined`
/// for a rule it does not take.
#[pyclass(module = "ferryman_native", frozen)]
pub(crate) struct NativeRelabeler {
    rules: RuleSet,
    fallback: Option<Py<PyAny>>,
    declined: AtomicU64,
}

/// Compiled rules, also for native callers: a scrape path that relabels the label
/// sets it parsed takes them from a `NativeRelabeler` (`rule_set`).
pub(crate) struct RuleSet {
    rules: Vec<Rule>,
    track: bool, // a labelmap rule reads the order of writes
}

impl RuleSet {
    /// The rules from their plain data (see `NativeRelabeler.__new__`); Err says
    /// which rule is declined and why.
    pub(crate) fn compile(specs: Vec<RuleSpec>) -> Result<Self, String> {
        let rules = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| build_rule(spec).map_err(|e| format!("rule {i}: {e}")))
            .collect::<Result<Vec<Rule>, String>>()?;
        let track = rules.iter().any(|rule| rule.action == Action::LabelMap);
        Ok(Self { rules, track })
    }

    /// Runs the rules on `set`: false when one drops it, Err when it is declined.
    fn run<'a>(&'a self, set: &mut Labels<'a>) -> Result<bool, &'static str> {
        for rule in &self.rules {
            match step(rule, set) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(Declined::Input(why)) => return Err(why),
            }
        }
        Ok(true)
    }

    /// The label set after the rules, in no particular order, or None when a rule
    /// drops it; Err (why) when the native side does not answer for it (a non-ASCII
    /// value to lowercase or uppercase). `pairs` as `Relabeler.apply` takes them: a
    /// later pair of a name wins and an empty value counts as absent.
    pub(crate) fn apply<'a>(
        &'a self,
        pairs: &[(&'a str, &'a str)],
    ) -> Result<Option<Vec<Pair<'a>>>, &'static str> {
        let mut set = Labels {
            items: Vec::with_capacity(pairs.len() + 4),
            written: Vec::new(),
            track: self.track,
        };
        for &(name, value) in pairs {
            match set.items.iter_mut().find(|l| l.name == name) {
                Some(label) => label.value = Cow::Borrowed(value),
                None => set.items.push(Label {
                    name: Cow::Borrowed(name),
                    value: Cow::Borrowed(value),
                    source: None,
                }),
            }
        }
        set.items.retain(|l| !l.value.is_empty());
        if !self.run(&mut set)? {
            return Ok(None);
        }
        Ok(Some(
            set.items.into_iter().map(|l| (l.name, l.value)).collect(),
        ))
    }
}

/// A label's name and value.
pub(crate) type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

pub(crate) type RuleSpec = (
    String,
    Vec<String>,
    String,
    String,
    u64,
    Option<String>,
    String,
);

fn build_rule(spec: RuleSpec) -> Parsed<Rule> {
    let (action, sources, separator, regex_source, modulus, target, replacement) = spec;
    let action = match action.as_str() {
        "replace" => Action::Replace,
        "keep" => Action::Keep,
        "drop" => Action::Drop,
        "keepequal" => Action::KeepEqual,
        "dropequal" => Action::DropEqual,
        "hashmod" => Action::HashMod,
        "labelmap" => Action::LabelMap,
        "labeldrop" => Action::LabelDrop,
        "labelkeep" => Action::LabelKeep,
        "lowercase" => Action::Lowercase,
        "uppercase" => Action::Uppercase,
        other => return Err(format!("unknown action {other:?}")),
    };
    if action == Action::HashMod && modulus == 0 {
        return Err("hashmod with modulus 0".into());
    }
    let Compiled {
        regex,
        names,
        whole,
        shape,
    } = compile_regex(&regex_source).map_err(|e| format!("regex: {e}"))?;
    let target_text = target.unwrap_or_default();
    let (target, replacement) = if action == Action::Replace {
        (
            template(&target_text, &names)?,
            template(&replacement, &names)?,
        )
    } else if action == Action::LabelMap {
        (
            vec![Part::Text(target_text)],
            template(&replacement, &names)?,
        )
    } else {
        (vec![Part::Text(target_text)], vec![Part::Text(replacement)])
    };
    Ok(Rule {
        action,
        whole,
        shape,
        sources,
        separator,
        regex,
        target_constant: constant(&target),
        target,
        replacement_constant: constant(&replacement),
        replacement,
        modulus,
    })
}

enum Refusal {
    Python(PyErr),
    Declined(&'static str),
}

impl From<PyErr> for Refusal {
    fn from(err: PyErr) -> Self {
        Refusal::Python(err)
    }
}

impl NativeRelabeler {
    /// The compiled rules, for native callers.
    #[allow(dead_code)] // for the native scrape path
    pub(crate) fn rule_set(&self) -> &RuleSet {
        &self.rules
    }

    fn run<'py>(
        &self,
        py: Python<'py>,
        labels: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyAny>, Refusal> {
        if let Ok(dict) = labels.cast_exact::<PyDict>() {
            return self.run_dict(py, dict);
        }
        let dict = labels.cast::<PyDict>().ok();
        let mut objects: Vec<(Bound<'py, PyString>, Bound<'py, PyString>)> = Vec::new();
        if let Some(dict) = dict {
            objects.reserve(dict.len());
            for (name, value) in dict.iter() {
                objects.push((
                    name.cast_into::<PyString>().map_err(PyErr::from)?,
                    value.cast_into::<PyString>().map_err(PyErr::from)?,
                ));
            }
        } else {
            // Another mapping gives its items; a list or tuple is the pairs.
            let pairs = if labels.hasattr("items")? {
                labels.call_method0("items")?
            } else {
                labels.clone()
            };
            for pair in pairs.try_iter()? {
                let pair = pair?;
                let pair = pair.cast::<PyTuple>().map_err(PyErr::from)?;
                let (name, value) = (pair.get_item(0)?, pair.get_item(1)?);
                objects.push((
                    name.cast_into::<PyString>().map_err(PyErr::from)?,
                    value.cast_into::<PyString>().map_err(PyErr::from)?,
                ));
            }
        }
        let mut texts: Vec<(&str, &str)> = Vec::with_capacity(objects.len());
        for (name, value) in &objects {
            match (name.to_str(), value.to_str()) {
                (Ok(name), Ok(value)) => texts.push((name, value)),
                _ => return Err(Refusal::Declined("a label without a UTF-8 form")),
            }
        }
        let Some(dict) = dict else {
            // Pairs: the native callers' path (`RuleSet::apply`), into a new dict.
            let out = PyDict::new(py);
            match self.rules.apply(&texts) {
                Ok(None) => return Ok(py.None().into_bound(py)),
                Ok(Some(pairs)) => {
                    for (name, value) in pairs {
                        out.set_item(name.as_ref(), value.as_ref())?;
                    }
                }
                Err(why) => return Err(Refusal::Declined(why)),
            }
            return Ok(out.into_any());
        };
        let mut set = Labels {
            items: Vec::with_capacity(texts.len() + 4),
            written: Vec::new(),
            track: self.rules.track,
        };
        for (index, &(name, value)) in texts.iter().enumerate() {
            // A dict's names are distinct.
            set.items.push(Label {
                name: Cow::Borrowed(name),
                value: Cow::Borrowed(value),
                source: Some(index),
            });
        }
        set.items.retain(|l| !l.value.is_empty());
        match self.rules.run(&mut set) {
            Ok(true) => {}
            Ok(false) => return Ok(py.None().into_bound(py)),
            Err(why) => return Err(Refusal::Declined(why)),
        }
        // A copy of the input, edited: most labels pass unchanged.
        let out = dict.copy()?;
        let mut alive = vec![false; objects.len()];
        for label in &set.items {
            if let Some(index) = label.source {
                alive[index] = true;
            }
        }
        for (index, (name, _)) in objects.iter().enumerate() {
            if !alive[index] {
                out.del_item(name)?;
            }
        }
        for label in set.items.iter().filter(|l| l.source.is_none()) {
            out.set_item(label.name.as_ref(), label.value.as_ref())?;
        }
        Ok(out.into_any())
    }

    /// `run` for a dict (not a subclass): its items are read in place, without
    /// taking references or converting them, and the answer is a copy of it, edited.
    fn run_dict<'py>(
        &self,
        py: Python<'py>,
        dict: &Bound<'py, PyDict>,
    ) -> Result<Bound<'py, PyAny>, Refusal> {
        let mut set = Labels {
            items: Vec::with_capacity(dict.len() + 4),
            written: Vec::new(),
            track: self.rules.track,
        };
        let mut keys: Vec<*mut ffi::PyObject> = Vec::with_capacity(dict.len());
        let (mut pos, mut key, mut value) = (0, std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: PyDict_Next lends the dict's own references; the dict is neither
        // changed nor released until this returns, and nothing here runs Python code
        // (names and values must be exact `str`s, whose UTF-8 form needs none), so the
        // objects and the UTF-8 text they cache outlive every use below.
        while unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut pos, &mut key, &mut value) } != 0 {
            let (name, text) = unsafe { (exact_str(py, key)?, exact_str(py, value)?) };
            if !text.is_empty() {
                set.items.push(Label {
                    name: Cow::Borrowed(name),
                    value: Cow::Borrowed(text),
                    source: Some(keys.len()),
                });
            }
            keys.push(key);
        }
        match self.rules.run(&mut set) {
            Ok(true) => {}
            Ok(false) => return Ok(py.None().into_bound(py)),
            Err(why) => return Err(Refusal::Declined(why)),
        }
        let out = dict.copy()?;
        let mut alive = vec![false; keys.len()];
        for label in &set.items {
            if let Some(index) = label.source {
                alive[index] = true;
            }
        }
        for (index, &key) in keys.iter().enumerate() {
            // SAFETY: `key` is still held by `dict` (and by its copy `out`).
            if !alive[index] && unsafe { ffi::PyDict_DelItem(out.as_ptr(), key) } != 0 {
                return Err(Refusal::Python(PyErr::fetch(py)));
            }
        }
        for label in set.items.iter().filter(|l| l.source.is_none()) {
            out.set_item(label.name.as_ref(), label.value.as_ref())?;
        }
        Ok(out.into_any())
    }
}

/// The text of an exact `str` lent by its container; a `TypeError` for anything
/// else, and a decline for a string without a UTF-8 form (a lone surrogate).
///
/// # Safety
/// `object` must be a live object that outlives `'a` unchanged.
unsafe fn exact_str<'a>(py: Python<'_>, object: *mut ffi::PyObject) -> Result<&'a str, Refusal> {
    if unsafe { ffi::PyUnicode_CheckExact(object) } == 0 {
        return Err(Refusal::Python(PyTypeError::new_err(
            "label names and values must be str",
        )));
    }
    let mut size: ffi::Py_ssize_t = 0;
    let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(object, &mut size) };
    if data.is_null() {
        drop(PyErr::fetch(py)); // the UnicodeEncodeError: declined, not raised
        return Err(Refusal::Declined("a label without a UTF-8 form"));
    }
    // SAFETY: CPython keeps the UTF-8 form (valid UTF-8, `size` bytes) with the
    // string until the string is freed.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size as usize) };
    Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
}

#[pymethods]
impl NativeRelabeler {
    /// `rules`: per rule (action, source_labels, separator, regex, modulus or 0,
    /// target_label or None, replacement), validated beforehand by `RelabelConfig`.
    /// `fallback`: called with the labels for a label set the native side declines
    /// (counted in `declined`); without one, `apply` raises `RelabelDeclined`.
    #[new]
    #[pyo3(signature = (rules, fallback = None))]
    fn new(rules: Vec<RuleSpec>, fallback: Option<Py<PyAny>>) -> PyResult<Self> {
        Ok(Self {
            rules: RuleSet::compile(rules).map_err(RelabelDeclined::new_err)?,
            fallback,
            declined: AtomicU64::new(0),
        })
    }

    /// The label set after the rules (a new dict), or None when a rule drops it.
    /// `labels`: a mapping, or a list of (name, value) pairs (a later pair wins).
    fn apply<'py>(
        &self,
        py: Python<'py>,
        labels: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.run(py, labels) {
            Ok(answer) => Ok(answer),
            Err(Refusal::Python(err)) => Err(err),
            Err(Refusal::Declined(why)) => match &self.fallback {
                Some(fallback) => {
                    self.declined.fetch_add(1, Ordering::Relaxed);
                    fallback.bind(py).call1((labels,))
                }
                None => Err(RelabelDeclined::new_err(why)),
            },
        }
    }

    /// How many label sets went to `fallback` since this relabeler was built.
    #[getter]
    fn declined(&self) -> u64 {
        self.declined.load(Ordering::Relaxed)
    }

    fn __len__(&self) -> usize {
        self.rules.rules.len()
    }
}

/// Whether the native relabeler takes this regex, and if not, why not; for tests
/// and for the log line of a caller that falls back.
#[pyfunction]
fn relabel_regex_declined(source: &str) -> Option<String> {
    compile_regex(source).err()
}

/// Whether the native regex matches `text` by its literal fast path; None when the
/// regex has none. For tests that hold the fast path to the regex.
#[pyfunction]
fn relabel_regex_shape_matches(source: &str, text: &str) -> PyResult<Option<bool>> {
    let compiled = compile_regex(source).map_err(RelabelDeclined::new_err)?;
    Ok(compiled.shape.map(|shape| shape.matches(text)))
}

/// Whether the native (anchored) regex matches `text`, for tests against RE2.
#[pyfunction]
fn relabel_regex_fullmatch(source: &str, text: &str) -> PyResult<bool> {
    let compiled = compile_regex(source).map_err(RelabelDeclined::new_err)?;
    Ok(compiled.regex.is_match(text))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<NativeRelabeler>()?;
    module.add("RelabelDeclined", module.py().get_type::<RelabelDeclined>())?;
    module.add_function(wrap_pyfunction!(relabel_regex_declined, module)?)?;
    module.add_function(wrap_pyfunction!(relabel_regex_fullmatch, module)?)?;
    module.add_function(wrap_pyfunction!(relabel_regex_shape_matches, module)?)?;
    Ok(())
}
