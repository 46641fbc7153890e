//! Prometheus relabeling, natively: `NativeRelabeler` runs the rules of
//! `ferryman/prom/relabel.py` (all eleven actions) with the same answers.
//!
//! Regexes are Go RE2 syntax. They are not handed to the `regex` crate as written:
//! a small parser accepts a whitelisted subset whose meaning is the same in both
//! engines and writes it out again in an explicit spelling (every literal as
//! `\x{..}`, Perl and POSIX classes as ASCII ranges, anchors as `\A`/`\z`, flags
//! scoped per atom), so the crate's own syntax never decides anything. Anything
//! else declines (`RelabelDeclined`) and the caller keeps its Python or RE2
//! engine: Unicode classes (`\p..`), `(?m)`, `\Q..\E`, octal escapes, `\C`, case
//! folding of anything but ASCII, nested counted repetitions, a repetition that
//! can match empty around a capture (where engines differ on the last capture),
//! group names not starting with a letter or `_`, and templates mixing `$` with
//! non-ASCII text (Go's idea of a letter is not Rust's).
//!
//! `apply` also declines a label set it cannot answer for exactly: a lone
//! surrogate (no UTF-8 form) and `lowercase`/`uppercase` of a non-ASCII value
//! (Unicode tables of different versions).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use md5::{Digest, Md5};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use regex::Regex;

create_exception!(
    ferryman_native,
    RelabelDeclined,
    PyException,
    "Raised when the native relabeler does not take a rule or a label set; use Python's."
);

const MAX_REPEAT: u32 = 1000;
const MAX_DEPTH: usize = 200;

// --------------------------------------------------------------------------
// The RE2 subset: parse, check, write out for the `regex` crate.
// --------------------------------------------------------------------------

enum Node {
    Empty,
    Lit(char, bool),     // the char, folded
    Class(String, bool), // its `[...]` spelling, folded
    AnyChar(bool),       // matches \n too
    Begin,
    End,
    WordBoundary(bool),     // \b (true) or \B
    Group(bool, Box<Node>), // capturing?
    Repeat {
        child: Box<Node>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
        counted: bool,
    },
    Concat(Vec<Node>),
    Alternate(Vec<Node>),
}

impl Node {
    fn can_be_empty(&self) -> bool {
        match self {
            Node::Empty | Node::Begin | Node::End | Node::WordBoundary(_) => true,
            Node::Lit(..) | Node::Class(..) | Node::AnyChar(_) => false,
            Node::Group(_, child) => child.can_be_empty(),
            Node::Repeat { child, min, .. } => *min == 0 || child.can_be_empty(),
            Node::Concat(items) => items.iter().all(Node::can_be_empty),
            Node::Alternate(items) => items.iter().any(Node::can_be_empty),
        }
    }

    fn has_capture(&self) -> bool {
        match self {
            Node::Group(true, _) => true,
            Node::Group(false, child) | Node::Repeat { child, .. } => child.has_capture(),
            Node::Concat(items) | Node::Alternate(items) => items.iter().any(Node::has_capture),
            _ => false,
        }
    }

    fn has_counted(&self) -> bool {
        match self {
            Node::Repeat { counted: true, .. } => true,
            Node::Group(_, child) | Node::Repeat { child, .. } => child.has_counted(),
            Node::Concat(items) | Node::Alternate(items) => items.iter().any(Node::has_counted),
            _ => false,
        }
    }

    fn emit(&self, out: &mut String) {
        match self {
            Node::Empty => out.push_str("(?:)"),
            Node::Lit(c, fold) => {
                if *fold && c.is_ascii_alphabetic() {
                    out.push_str("(?i:");
                    push_char(out, *c);
                    out.push(')');
                } else {
                    push_char(out, *c);
                }
            }
            Node::Class(spelling, fold) => {
                if *fold {
                    out.push_str("(?i:");
                    out.push_str(spelling);
                    out.push(')');
                } else {
                    out.push_str(spelling);
                }
            }
            Node::AnyChar(true) => out.push_str("(?s:.)"),
            Node::AnyChar(false) => out.push_str("[^\\n]"),
            Node::Begin => out.push_str("\\A"),
            Node::End => out.push_str("\\z"),
            Node::WordBoundary(true) => out.push_str("(?-u:\\b)"),
            Node::WordBoundary(false) => out.push_str("(?-u:\\B)"),
            Node::Group(capturing, child) => {
                out.push_str(if *capturing { "(" } else { "(?:" });
                child.emit(out);
                out.push(')');
            }
            Node::Repeat {
                child,
                min,
                max,
                greedy,
                ..
            } => {
                out.push_str("(?:");
                child.emit(out);
                out.push(')');
                match max {
                    Some(max) if max == min => out.push_str(&format!("{{{min}}}")),
                    Some(max) => out.push_str(&format!("{{{min},{max}}}")),
                    None => out.push_str(&format!("{{{min},}}")),
                }
                if !greedy {
                    out.push('?');
                }
            }
            Node::Concat(items) => items.iter().for_each(|item| item.emit(out)),
            Node::Alternate(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push('|');
                    }
                    out.push_str("(?:");
                    item.emit(out);
                    out.push(')');
                }
            }
        }
    }
}

fn push_char(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        out.push_str(&format!("\\x{{{:X}}}", c as u32));
    }
}

const FOLD: u8 = 1;
const DOTNL: u8 = 2;
const UNGREEDY: u8 = 4;

type Ranges = &'static [(char, char)];
const DIGIT: Ranges = &[('0', '9')];
const WORD: Ranges = &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
const SPACE_PERL: Ranges = &[('\t', '\n'), ('\x0c', '\r'), (' ', ' ')];

fn posix_class(name: &str) -> Option<Ranges> {
    Some(match name {
        "alnum" => &[('0', '9'), ('A', 'Z'), ('a', 'z')],
        "alpha" => &[('A', 'Z'), ('a', 'z')],
        "ascii" => &[('\x00', '\x7f')],
        "blank" => &[('\t', '\t'), (' ', ' ')],
        "cntrl" => &[('\x00', '\x1f'), ('\x7f', '\x7f')],
        "digit" => DIGIT,
        "graph" => &[('!', '~')],
        "lower" => &[('a', 'z')],
        "print" => &[(' ', '~')],
        "punct" => &[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
        "space" => &[('\t', '\r'), (' ', ' ')],
        "upper" => &[('A', 'Z')],
        "word" => WORD,
        "xdigit" => &[('0', '9'), ('A', 'F'), ('a', 'f')],
        _ => return None,
    })
}

fn perl_class(c: char) -> Option<(Ranges, bool)> {
    Some(match c {
        'd' => (DIGIT, false),
        'D' => (DIGIT, true),
        'w' => (WORD, false),
        'W' => (WORD, true),
        's' => (SPACE_PERL, false),
        'S' => (SPACE_PERL, true),
        _ => return None,
    })
}

/// `[...]` (or `[^...]`) of ASCII ranges, in the explicit spelling.
fn spell_ranges(ranges: Ranges, negated: bool) -> String {
    let mut out = String::from(if negated { "[^" } else { "[" });
    for &(lo, hi) in ranges {
        push_char(&mut out, lo);
        if hi != lo {
            out.push('-');
            push_char(&mut out, hi);
        }
    }
    out.push(']');
    out
}

struct Parser {
    src: Vec<char>,
    pos: usize,
    names: Vec<String>, // index 0: the whole match
}

type Parsed<T> = Result<T, String>;

impl Parser {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn at(&self, text: &str) -> bool {
        (self.pos..)
            .zip(text.chars())
            .all(|(i, c)| self.src.get(i) == Some(&c))
    }

    fn alternation(&mut self, mut flags: u8, depth: usize) -> Parsed<Node> {
        if depth > MAX_DEPTH {
            return Err("nests too deeply".into());
        }
        let mut branches = Vec::new();
        let mut items: Vec<Node> = Vec::new();
        let mut can_repeat = false;
        while let Some(c) = self.peek() {
            match c {
                '|' => {
                    self.pos += 1;
                    branches.push(concat(std::mem::take(&mut items)));
                    can_repeat = false;
                    continue;
                }
                ')' => break,
                '*' | '+' | '?' => {
                    self.pos += 1;
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    self.repetition(&mut items, can_repeat, flags, min, max, false)?;
                    can_repeat = false;
                    continue;
                }
                '{' => {
                    if let Some((min, max, end)) = self.counted()? {
                        self.pos = end;
                        self.repetition(&mut items, can_repeat, flags, min, max, true)?;
                        can_repeat = false;
                        continue;
                    }
                    self.pos += 1;
                    items.push(Node::Lit('{', flags & FOLD != 0));
                }
                '(' => {
                    if self.at("(?P<") || self.at("(?<") {
                        self.pos += if self.at("(?P<") { 4 } else { 3 };
                        let start = self.pos;
                        while self
                            .peek()
                            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                        {
                            self.pos += 1;
                        }
                        let name: String = self.src[start..self.pos].iter().collect();
                        let leads = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
                        if self.peek() != Some('>') || !leads {
                            return Err("a group name Go and Rust may not both take".into());
                        }
                        if self.names.contains(&name) {
                            return Err("duplicate group name".into());
                        }
                        self.pos += 1;
                        self.names.push(name);
                        let child = self.alternation(flags, depth + 1)?;
                        self.close()?;
                        items.push(Node::Group(true, Box::new(child)));
                    } else if self.at("(?") {
                        let (new_flags, opens) = self.flag_group(flags)?;
                        if !opens {
                            flags = new_flags;
                            continue;
                        }
                        let child = self.alternation(new_flags, depth + 1)?;
                        self.close()?;
                        items.push(Node::Group(false, Box::new(child)));
                    } else {
                        self.pos += 1;
                        self.names.push(String::new());
                        let child = self.alternation(flags, depth + 1)?;
                        self.close()?;
                        items.push(Node::Group(true, Box::new(child)));
                    }
                }
                '[' => {
                    let node = self.class(flags)?;
                    items.push(node);
                }
                '\\' => {
                    let node = self.escape(flags)?;
                    items.push(node);
                }
                '.' => {
                    self.pos += 1;
                    items.push(Node::AnyChar(flags & DOTNL != 0));
                }
                '^' => {
                    self.pos += 1;
                    items.push(Node::Begin);
                }
                '$' => {
                    self.pos += 1;
                    items.push(Node::End);
                }
                _ => {
                    self.pos += 1;
                    items.push(literal(c, flags)?);
                }
            }
            can_repeat = true;
        }
        branches.push(concat(items));
        Ok(if branches.len() == 1 {
            branches.pop().unwrap()
        } else {
            Node::Alternate(branches)
        })
    }

    fn close(&mut self) -> Parsed<()> {
        if self.peek() != Some(')') {
            return Err("missing )".into());
        }
        self.pos += 1;
        Ok(())
    }

    fn repetition(
        &mut self,
        items: &mut [Node],
        can_repeat: bool,
        flags: u8,
        min: u32,
        max: Option<u32>,
        counted: bool,
    ) -> Parsed<()> {
        if !can_repeat {
            return Err("a repetition operator without an argument".into());
        }
        let lazy = self.peek() == Some('?');
        if lazy {
            self.pos += 1;
        }
        if matches!(self.peek(), Some('*' | '+' | '?')) || self.counted()?.is_some() {
            return Err("nested repetition operator".into());
        }
        let last = items.last_mut().expect("an atom to repeat");
        let child = std::mem::replace(last, Node::Empty);
        if counted && child.has_counted() {
            return Err("nested counted repetition".into());
        }
        if child.has_capture() && child.can_be_empty() {
            return Err("a repeated capture that can match empty".into());
        }
        *last = Node::Repeat {
            child: Box::new(child),
            min,
            max,
            greedy: lazy == (flags & UNGREEDY != 0),
            counted,
        };
        Ok(())
    }

    /// `{n}`, `{n,}`, `{n,m}` here, as (min, max, end); None when `{` is a literal.
    fn counted(&self) -> Parsed<Option<(u32, Option<u32>, usize)>> {
        if self.peek() != Some('{') {
            return Ok(None);
        }
        let mut i = self.pos + 1;
        let number = |i: &mut usize| -> Option<u64> {
            let start = *i;
            while self.src.get(*i).is_some_and(|c| c.is_ascii_digit()) {
                *i += 1;
            }
            let digits: String = self.src[start..*i].iter().collect();
            if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
                return None;
            }
            Some(digits.parse().unwrap_or(u64::MAX))
        };
        let Some(min) = number(&mut i) else {
            return Ok(None);
        };
        let mut max = Some(min);
        if self.src.get(i) == Some(&',') {
            i += 1;
            max = if self.src.get(i) == Some(&'}') {
                None
            } else {
                match number(&mut i) {
                    Some(max) => Some(max),
                    None => return Ok(None),
                }
            };
        }
        if self.src.get(i) != Some(&'}') {
            return Ok(None);
        }
        let limit = u64::from(MAX_REPEAT);
        if min > limit || max.is_some_and(|m| m > limit || m < min) {
            return Err("invalid repeat count".into());
        }
        Ok(Some((min as u32, max.map(|m| m as u32), i + 1)))
    }

    /// `(?flags)` or `(?flags:`; the new flags and whether a group opens.
    fn flag_group(&mut self, flags: u8) -> Parsed<(u8, bool)> {
        let mut i = self.pos + 2;
        let (mut on, mut off, mut negate, mut saw) = (0u8, 0u8, false, false);
        if self.src.get(i) == Some(&':') {
            self.pos = i + 1;
            return Ok((flags, true));
        }
        while let Some(&c) = self.src.get(i) {
            i += 1;
            let bit = match c {
                'i' => FOLD,
                's' => DOTNL,
                'U' => UNGREEDY,
                '-' if !negate => {
                    negate = true;
                    saw = false;
                    continue;
                }
                ':' | ')' if saw => {
                    self.pos = i;
                    return Ok(((flags | on) & !off, c == ':'));
                }
                _ => break, // (?m), (?), (?-) and the rest: declined
            };
            saw = true;
            if negate {
                off |= bit;
            } else {
                on |= bit;
            }
        }
        Err("unsupported or invalid flags".into())
    }

    fn escape(&mut self, flags: u8) -> Parsed<Node> {
        let c = self
            .src
            .get(self.pos + 1)
            .copied()
            .ok_or("trailing backslash")?;
        let fold = flags & FOLD != 0;
        let node = match c {
            'A' => Node::Begin,
            'z' => Node::End,
            'b' => Node::WordBoundary(true),
            'B' => Node::WordBoundary(false),
            _ => {
                if let Some((ranges, negated)) = perl_class(c) {
                    Node::Class(spell_ranges(ranges, negated), fold)
                } else {
                    return literal(self.escaped_char()?, flags);
                }
            }
        };
        self.pos += 2;
        Ok(node)
    }

    /// A single-character escape at pos; pos moves past it.
    fn escaped_char(&mut self) -> Parsed<char> {
        let c = self
            .src
            .get(self.pos + 1)
            .copied()
            .ok_or("trailing backslash")?;
        self.pos += 2;
        let simple = match c {
            'a' => Some('\x07'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => Some(c),
            _ => None,
        };
        if let Some(c) = simple {
            return Ok(c);
        }
        if c != 'x' {
            return Err(format!("escape \\{c} declined"));
        }
        let hex: String = if self.peek() == Some('{') {
            let start = self.pos + 1;
            let end = (start..self.src.len())
                .find(|&i| self.src[i] == '}')
                .ok_or("unclosed \\x{")?;
            self.pos = end + 1;
            self.src[start..end].iter().collect()
        } else {
            let end = (self.pos + 2).min(self.src.len());
            let text: String = self.src[self.pos..end].iter().collect();
            self.pos = end;
            if text.len() != 2 {
                return Err("short \\x escape".into());
            }
            text
        };
        if hex.is_empty() || hex.len() > 8 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("bad \\x escape".into());
        }
        let code = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
        char::from_u32(code).ok_or_else(|| "\\x escape beyond Unicode scalar values".into())
    }

    fn class(&mut self, flags: u8) -> Parsed<Node> {
        let fold = flags & FOLD != 0;
        self.pos += 1;
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut body = String::new();
        let mut first = true;
        loop {
            let c = self.peek().ok_or("missing ]")?;
            if c == ']' && !first {
                break;
            }
            first = false;
            if self.at("[:") {
                let start = self.pos + 2;
                let end = (start..self.src.len().saturating_sub(1))
                    .find(|&i| self.src[i] == ':' && self.src[i + 1] == ']')
                    .ok_or("[: without :]")?;
                let name: String = self.src[start..end].iter().collect();
                let (name, negate) = match name.strip_prefix('^') {
                    Some(rest) => (rest.to_string(), true),
                    None => (name, false),
                };
                let ranges = posix_class(&name).ok_or("unknown POSIX class")?;
                body.push_str(&spell_ranges(ranges, negate));
                self.pos = end + 2;
                continue;
            }
            if c == '\\' {
                if let Some((ranges, negate)) =
                    self.src.get(self.pos + 1).and_then(|&c| perl_class(c))
                {
                    body.push_str(&spell_ranges(ranges, negate));
                    self.pos += 2;
                    continue;
                }
            }
            let lo = self.class_char()?;
            let mut hi = lo;
            if self.peek() == Some('-') && self.src.get(self.pos + 1).is_some_and(|&c| c != ']') {
                self.pos += 1;
                hi = self.class_char()?;
                if hi < lo {
                    return Err("bad class range".into());
                }
            }
            if fold && !(lo.is_ascii() && hi.is_ascii()) {
                return Err("case folding beyond ASCII".into());
            }
            push_char(&mut body, lo);
            if hi != lo {
                body.push('-');
                push_char(&mut body, hi);
            }
        }
        self.pos += 1;
        Ok(Node::Class(
            format!("[{}{body}]", if negated { "^" } else { "" }),
            fold,
        ))
    }

    fn class_char(&mut self) -> Parsed<char> {
        match self.peek() {
            None => Err("missing ]".into()),
            Some('\\') => self.escaped_char(),
            Some(c) => {
                self.pos += 1;
                Ok(c)
            }
        }
    }
}

fn literal(c: char, flags: u8) -> Parsed<Node> {
    let fold = flags & FOLD != 0;
    if fold && !c.is_ascii() {
        return Err("case folding beyond ASCII".into());
    }
    Ok(Node::Lit(c, fold))
}

fn concat(mut items: Vec<Node>) -> Node {
    match items.len() {
        0 => Node::Empty,
        1 => items.pop().unwrap(),
        _ => Node::Concat(items),
    }
}

// Most relabel regexes are literals, alternations of literals, or literals around
// `.*`: those are answered by comparing strings, without the regex engine (whose
// fixed cost per search is larger than the comparisons on label-sized text).

const MAX_LITERALS: usize = 64;

/// The finite set of strings `node` matches, when it is small and case-sensitive.
fn literals(node: &Node) -> Option<Vec<String>> {
    match node {
        Node::Empty => Some(vec![String::new()]),
        Node::Lit(c, fold) if !(*fold && c.is_ascii_alphabetic()) => Some(vec![c.to_string()]),
        Node::Group(_, child) => literals(child),
        Node::Repeat {
            child,
            min: 0,
            max: Some(1),
            ..
        } => {
            let mut out = literals(child)?;
            out.push(String::new());
            Some(out)
        }
        Node::Alternate(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(literals(item)?);
                if out.len() > MAX_LITERALS {
                    return None;
                }
            }
            Some(out)
        }
        Node::Concat(items) => {
            let mut acc = vec![String::new()];
            for item in items {
                let tails = literals(item)?;
                if acc.len() * tails.len() > MAX_LITERALS {
                    return None;
                }
                acc = acc
                    .iter()
                    .flat_map(|a| tails.iter().map(move |t| format!("{a}{t}")))
                    .collect();
            }
            Some(acc)
        }
        _ => None,
    }
}

fn is_any_star(node: &Node) -> bool {
    match node {
        Node::Group(_, child) => is_any_star(child),
        Node::Repeat {
            child,
            min: 0,
            max: None,
            ..
        } => matches!(**child, Node::AnyChar(true)),
        _ => false,
    }
}

/// A regex that matches exactly: one of `exact`, or a string starting with one of
/// `prefixes`, ending with one of `suffixes`, or containing one of `infixes`.
#[derive(Default)]
struct Shape {
    exact: Vec<String>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    infixes: Vec<String>,
}

impl Shape {
    fn matches(&self, text: &str) -> bool {
        self.exact.iter().any(|e| e == text)
            || self.prefixes.iter().any(|p| text.starts_with(p.as_str()))
            || self.suffixes.iter().any(|s| text.ends_with(s.as_str()))
            || self.infixes.iter().any(|i| text.contains(i.as_str()))
    }
}

fn shape(root: &Node) -> Option<Shape> {
    let mut root = root;
    while let Node::Group(_, child) = root {
        root = child;
    }
    let branches = match root {
        Node::Alternate(items) => items.iter().collect::<Vec<_>>(),
        node => vec![node],
    };
    let mut found = Shape::default();
    for branch in branches {
        let mut items: Vec<&Node> = match branch {
            Node::Concat(items) => items.iter().collect(),
            node => vec![node],
        };
        while items.first().is_some_and(|n| matches!(n, Node::Begin)) {
            items.remove(0); // ^ at the start of a fully anchored branch: always true
        }
        while items.last().is_some_and(|n| matches!(n, Node::End)) {
            items.pop();
        }
        let lead = items.first().is_some_and(|n| is_any_star(n));
        let trail = items.len() > usize::from(lead) && items.last().is_some_and(|n| is_any_star(n));
        let middle = &items[usize::from(lead)..items.len() - usize::from(trail)];
        let mut acc = vec![String::new()];
        for item in middle {
            let tails = literals(item)?;
            if acc.len() * tails.len() > MAX_LITERALS {
                return None;
            }
            acc = acc
                .iter()
                .flat_map(|a| tails.iter().map(move |t| format!("{a}{t}")))
                .collect();
        }
        match (lead, trail) {
            (false, false) => found.exact.extend(acc),
            (false, true) => found.prefixes.extend(acc),
            (true, false) => found.suffixes.extend(acc),
            (true, true) => found.infixes.extend(acc),
        }
    }
    Some(found)
}

/// A relabel regex, anchored as Prometheus anchors it.
struct Compiled {
    regex: Regex,
    names: Vec<String>, // group names, "" when unnamed; [0] is the whole match
    whole: bool,        // `(.*)` or `.*`: always matches, every group is the whole value
    shape: Option<Shape>,
}

fn compile_regex(source: &str) -> Parsed<Compiled> {
    let mut parser = Parser {
        src: source.chars().collect(),
        pos: 0,
        names: vec![String::new()],
    };
    let root = parser.alternation(DOTNL, 0)?;
    if parser.pos != parser.src.len() {
        return Err("unbalanced )".into());
    }
    let mut spelling = String::from("\\A(?:");
    root.emit(&mut spelling);
    spelling.push_str(")\\z");
    let regex = Regex::new(&spelling).map_err(|e| format!("the regex crate refuses it: {e}"))?;
    if regex.captures_len() != parser.names.len() {
        return Err("groups counted differently".into());
    }
    let whole = match &root {
        Node::Group(true, child) => parser.names.len() == 2 && is_any_star(child),
        node => parser.names.len() == 1 && is_any_star(node),
    };
    Ok(Compiled {
        regex,
        names: parser.names,
        whole,
        shape: shape(&root),
    })
}

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
            for pair in labels.try_iter()? {
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
    /// `labels`: a dict or a list of (name, value) pairs (a later pair wins).
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
