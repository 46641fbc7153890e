//! RE2 (Go) regex syntax, the subset whose meaning Rust's `regex` crate shares: parsed,
//! checked, and written out again in an explicit spelling for the crate; with the
//! literal fast paths of regexes that are literals around `.*`. See `relabel.rs`
//! for what is declined and why.

use regex::Regex;

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

pub(super) type Parsed<T> = Result<T, String>;

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
pub(super) struct Shape {
    exact: Vec<String>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    infixes: Vec<String>,
}

impl Shape {
    pub(super) fn matches(&self, text: &str) -> bool {
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
pub(super) struct Compiled {
    pub(super) regex: Regex,
    /// Group names, "" when unnamed; [0] is the whole match.
    pub(super) names: Vec<String>,
    /// `(.*)` or `.*`: always matches, every group is the whole value.
    pub(super) whole: bool,
    /// The regex as literals, when it is that simple.
    pub(super) shape: Option<Shape>,
}

pub(super) fn compile_regex(source: &str) -> Parsed<Compiled> {
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
