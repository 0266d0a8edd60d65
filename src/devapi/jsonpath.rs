//! Kubernetes JSONPath: the template dialect of `k8s.io/client-go/util/jsonpath`, evaluated over
//! `serde_json::Value`.
//!
//! The dev API's table code ([`super::table`]) uses it for CRD `additionalPrinterColumns`, so both
//! grammar and evaluation follow the Go package, quirks included:
//!
//! - a template is text with `{…}` actions; a CRD column path `P` is parsed as `{P}`;
//! - `['a.b']` is re-parsed as the field path `.a.b` (as in Go); a key containing a dot is
//!   written `.a\.b`; unions need quoted keys or indices (`['a','b']`, `[0,2]`);
//! - a missing key yields no result rather than an error (`AllowMissingKeys(true)`, what the
//!   apiserver uses); an index out of range, a filter over a non-array or a comparison of values of
//!   different kinds (an integer with a float, a string with a number) is an evaluation error;
//! - `range`/`end` blocks are supported; `true`/`false`, integers, floats and quoted strings are
//!   literals.
//!
//! [`to_text`] renders one value the way `JSONPath.PrintResults` does (strings raw, numbers and
//! booleans as Go's `fmt` prints them, arrays and objects as Go's `encoding/json` does).
//!
//! Nesting (filters inside filters, nested `range` blocks) is limited to [`MAX_NESTING`] levels so
//! hostile input cannot exhaust the stack; Go has no such limit but no real path comes close.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{Number, Value};

/// How deeply filters, unions and `range` blocks may nest.
pub const MAX_NESTING: usize = 32;

/// Why a template could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPathError {
    /// The template is not valid Kubernetes JSONPath.
    #[error("invalid JSONPath template {template:?}: {reason}")]
    Syntax {
        /// The template as given.
        template: String,
        /// The parser's complaint (the Go parser's wording).
        reason: String,
    },
    /// Evaluation failed: an index out of range, a filter over a non-array, a comparison of
    /// values of different kinds, an unknown identifier.
    #[error("{0}")]
    Evaluation(String),
}

/// A parsed Kubernetes JSONPath template.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    template: String,
    root: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// One `{…}` action.
    List(Vec<Node>),
    /// Literal text (outside actions, or a quoted string inside one).
    Text(String),
    Field(String),
    Wildcard,
    Recursive,
    Array([Param; 3]),
    Filter(Box<Filter>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Union(Vec<Vec<Node>>),
    Identifier(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Param {
    value: i64,
    known: bool,
    derived: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Vec<Node>,
    right: Vec<Node>,
    op: FilterOp,
}

#[derive(Debug, Clone, PartialEq)]
enum FilterOp {
    Exists,
    /// The operator as written; anything but `== != < > <= >=` fails at evaluation, as in Go.
    Compare(String),
}

impl JsonPath {
    /// Parse a template like `.status.conditions[?(@.type=="Ready")].status`, `{.metadata.name}`,
    /// `.spec.to[*].service.name`, `.items[0:2]`, `..name`, `['a']`, unions `['a','b']`, filters
    /// with `==`, `!=`, `<`, `>`, `<=`, `>=` and existence filters `[?(@.x)]`.
    ///
    /// A template without braces is taken as one action (`.a` means `{.a}`), which is how the
    /// apiserver wraps CRD column paths; a template with braces is parsed as written.
    pub fn parse(template: &str) -> Result<Self, JsonPathError> {
        let text = if template.contains('{') {
            Cow::Borrowed(template)
        } else {
            Cow::Owned(format!("{{{template}}}"))
        };
        Self::parse_exact(&text).map(|mut p| {
            p.template = template.to_owned();
            p
        })
    }

    /// Parse a template exactly as `jsonpath.Parse` does: text outside `{…}` is literal.
    pub fn parse_exact(template: &str) -> Result<Self, JsonPathError> {
        let root = parse_template(template, 0).map_err(|reason| JsonPathError::Syntax {
            template: template.to_owned(),
            reason,
        })?;
        Ok(Self {
            template: template.to_owned(),
            root,
        })
    }

    /// The template this path was parsed from.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// All results, flattened in order (`FindResults` joined); empty when evaluation fails.
    pub fn find<'a>(&self, v: &'a Value) -> Vec<Cow<'a, Value>> {
        self.find_results(v)
            .map(|sets| sets.into_iter().flatten().collect())
            .unwrap_or_default()
    }

    /// `FindResults`: one result set per top-level text or action, in template order.
    pub fn find_results<'a>(
        &self,
        v: &'a Value,
    ) -> Result<Vec<Vec<Cow<'a, Value>>>, JsonPathError> {
        let mut out = Vec::new();
        exec_block(&self.root, &Cow::Borrowed(v), 0, &mut out)
            .map_err(JsonPathError::Evaluation)?;
        Ok(out)
    }
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.template)
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing (parser.go)

struct Parser<'t> {
    input: &'t str,
    pos: usize,
    start: usize,
    width: usize,
    depth: usize,
}

fn parse_template(text: &str, depth: usize) -> Result<Vec<Node>, String> {
    if depth > MAX_NESTING {
        return Err("template is nested too deeply".into());
    }
    let mut p = Parser {
        input: text,
        pos: 0,
        start: 0,
        width: 0,
        depth,
    };
    let mut root = Vec::new();
    loop {
        match p.rest().find('{') {
            Some(offset) => {
                p.pos += offset;
                if p.pos > p.start {
                    root.push(Node::Text(p.consume().to_owned()));
                }
                p.pos += 1;
                p.consume();
                let mut list = Vec::new();
                p.parse_inside_action(&mut list)?;
                root.push(Node::List(list));
            }
            None => {
                p.pos = p.input.len();
                if p.pos > p.start {
                    root.push(Node::Text(p.consume().to_owned()));
                }
                return Ok(root);
            }
        }
    }
}

impl<'t> Parser<'t> {
    fn rest(&self) -> &'t str {
        self.input.get(self.pos..).unwrap_or("")
    }

    fn next(&mut self) -> Option<char> {
        match self.rest().chars().next() {
            Some(c) => {
                self.width = c.len_utf8();
                self.pos += self.width;
                Some(c)
            }
            None => {
                self.width = 0;
                None
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn backup(&mut self) {
        self.pos -= self.width;
    }

    fn consume(&mut self) -> &'t str {
        let s = self.input.get(self.start..self.pos).unwrap_or("");
        self.start = self.pos;
        s
    }

    /// The byte two before the cursor, where Go looks for an escaping backslash.
    fn escaped(&self) -> bool {
        self.pos
            .checked_sub(2)
            .and_then(|i| self.input.as_bytes().get(i))
            .is_some_and(|b| *b == b'\\')
    }

    /// Go's `parseAction`: parse `{text}` and keep the first action's nodes.
    fn parse_action(&self, text: &str) -> Result<Vec<Node>, String> {
        let root = parse_template(&format!("{{{text}}}"), self.depth + 1)?;
        Ok(match root.into_iter().next() {
            Some(Node::List(nodes)) => nodes,
            _ => Vec::new(),
        })
    }

    fn parse_inside_action(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        loop {
            let rest = self.rest();
            if rest.starts_with('}') {
                self.pos += 1;
                self.consume();
                return Ok(());
            }
            if rest.starts_with("[?(") {
                self.parse_filter(cur)?;
                continue;
            }
            if rest.starts_with("..") {
                self.parse_recursive(cur)?;
                continue;
            }
            match self.next() {
                None | Some('\r' | '\n') => return Err("unclosed action".into()),
                Some(' ' | '@' | '$') => {
                    self.consume();
                }
                Some('[') => self.parse_array(cur)?,
                Some(q @ ('"' | '\'')) => self.parse_quote(cur, q)?,
                Some('.') => self.parse_field(cur)?,
                Some(r) if r == '+' || r == '-' || is_digit(r) => {
                    self.backup();
                    self.parse_number(cur)?;
                }
                Some(r) if is_alphanumeric(r) => {
                    self.backup();
                    self.parse_identifier(cur)?;
                }
                Some(r) => {
                    return Err(format!(
                        "unrecognized character in action: U+{:04X} '{r}'",
                        u32::from(r)
                    ));
                }
            }
        }
    }

    fn parse_identifier(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        loop {
            let r = self.next();
            if is_terminator(r) {
                self.backup();
                break;
            }
        }
        let value = self.consume();
        cur.push(match value {
            "true" => Node::Bool(true),
            "false" => Node::Bool(false),
            _ => Node::Identifier(value.to_owned()),
        });
        Ok(())
    }

    fn parse_recursive(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        if matches!(cur.last(), Some(Node::Recursive)) {
            return Err("invalid multiple recursive descent".into());
        }
        self.pos += 2;
        self.consume();
        cur.push(Node::Recursive);
        if self.peek().is_some_and(is_alphanumeric) {
            self.parse_field(cur)?;
        }
        Ok(())
    }

    fn parse_number(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        if matches!(self.peek(), Some('+' | '-')) {
            self.next();
        }
        loop {
            match self.next() {
                Some(r) if r == '.' || is_digit(r) => {}
                _ => {
                    self.backup();
                    break;
                }
            }
        }
        let value = self.consume();
        if let Ok(i) = value.parse::<i64>() {
            cur.push(Node::Int(i));
        } else if let Ok(f) = value.parse::<f64>() {
            cur.push(Node::Float(f));
        } else {
            return Err(format!("cannot parse number {value}"));
        }
        Ok(())
    }

    fn parse_array(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated array".into()),
                Some(']') => break,
                Some(_) => {}
            }
        }
        let text = self.consume();
        let inner = text.get(1..text.len().saturating_sub(1)).unwrap_or("");
        let inner = if inner == "*" { ":" } else { inner };

        let parts: Vec<&str> = inner.split(',').collect();
        if parts.len() > 1 {
            let mut union = Vec::with_capacity(parts.len());
            for part in parts {
                union.push(self.parse_action(&format!("[{}]", part.trim_matches(' ')))?);
            }
            cur.push(Node::Union(union));
            return Ok(());
        }

        // `['key']` is re-parsed as the path `.key` (so `['a.b']` is `.a.b`, as in Go).
        if inner.len() >= 2 && inner.starts_with('\'') && inner.ends_with('\'') {
            let key = &inner[1..inner.len() - 1];
            if !key.contains('\'') {
                cur.extend(self.parse_action(&format!(".{key}"))?);
                return Ok(());
            }
        }

        let groups = slice_groups(inner).ok_or_else(|| format!("invalid array index {inner}"))?;
        let mut params = [Param::default(); 3];
        for i in 0..3 {
            let group = groups[i];
            if group.is_empty() {
                if i == 1 {
                    params[1] = Param {
                        value: params[0].value.wrapping_add(1),
                        known: true,
                        derived: true,
                    };
                }
                continue;
            }
            let digits = if i > 0 { &group[1..] } else { group };
            if i > 0 && digits.is_empty() {
                continue;
            }
            let value = digits
                .parse::<i64>()
                .map_err(|_| format!("array index {digits} is not a number"))?;
            params[i] = Param {
                value,
                known: true,
                derived: false,
            };
        }
        cur.push(Node::Array(params));
        Ok(())
    }

    fn parse_filter(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        self.pos += 3;
        self.consume();
        let (mut begin, mut end, mut pair) = (false, false, '"');
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated filter".into()),
                Some(r @ ('"' | '\'')) => {
                    if !begin {
                        begin = true;
                        pair = r;
                        continue;
                    }
                    if !self.escaped() && r == pair {
                        end = true;
                    }
                }
                Some(')') if begin == end => break,
                Some(_) => {}
            }
        }
        if self.next() != Some(']') {
            return Err("unclosed array expect ]".into());
        }
        let text = self.consume();
        let text = text.get(..text.len().saturating_sub(2)).unwrap_or("");
        let filter = match split_comparison(text) {
            None => Filter {
                left: self.parse_action(text)?,
                right: Vec::new(),
                op: FilterOp::Exists,
            },
            Some((left, op, right)) => Filter {
                left: self.parse_action(left)?,
                right: self.parse_action(right)?,
                op: FilterOp::Compare(op.to_owned()),
            },
        };
        cur.push(Node::Filter(Box::new(filter)));
        Ok(())
    }

    fn parse_quote(&mut self, cur: &mut Vec<Node>, end: char) -> Result<(), String> {
        loop {
            match self.next() {
                None | Some('\n') => return Err("unterminated quoted string".into()),
                Some(c) if c == end && !self.escaped() => break,
                Some(_) => {}
            }
        }
        let value = self.consume();
        let s = unquote_extend(value)
            .ok_or_else(|| format!("unquote string {value} error invalid syntax"))?;
        cur.push(Node::Text(s));
        Ok(())
    }

    fn parse_field(&mut self, cur: &mut Vec<Node>) -> Result<(), String> {
        self.consume();
        loop {
            match self.next() {
                Some('\\') => {
                    self.next();
                }
                r if is_terminator(r) => {
                    self.backup();
                    break;
                }
                _ => {}
            }
        }
        let value = self.consume();
        cur.push(if value == "*" {
            Node::Wildcard
        } else {
            Node::Field(value.replace('\\', ""))
        });
        Ok(())
    }
}

/// The groups of `^(-?\d*)(:-?\d*)?(:-?\d*)?$` (absent groups empty), or `None` without a match.
fn slice_groups(s: &str) -> Option<[&str; 3]> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut bounds = [(0, 0); 3];
    for (g, bound) in bounds.iter_mut().enumerate() {
        let start = i;
        if g > 0 {
            if b.get(i) != Some(&b':') {
                *bound = (i, i);
                continue;
            }
            i += 1;
        }
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        *bound = (start, i);
    }
    if i != b.len() {
        return None;
    }
    Some(bounds.map(|(a, z)| s.get(a..z).unwrap_or("")))
}

/// `^([^!<>=]+)([!<>=]+)(.+?)$` as Go's regexp matches it (the operator run gives back its last
/// character when nothing else is left for the right-hand side).
fn split_comparison(text: &str) -> Option<(&str, &str, &str)> {
    let is_op = |c: char| matches!(c, '!' | '<' | '>' | '=');
    let left_end = text.find(is_op)?;
    if left_end == 0 {
        return None;
    }
    let after = &text[left_end..];
    let run = after.find(|c| !is_op(c)).unwrap_or(after.len());
    let (op_len, right_start) = if run < after.len() {
        (run, run)
    } else if run >= 2 {
        (run - 1, run - 1)
    } else {
        return None;
    };
    Some((&text[..left_end], &after[..op_len], &after[right_start..]))
}

/// Go's `UnquoteExtend`: `strconv.Unquote` for `"…"` and `'…'` strings.
fn unquote_extend(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 2 {
        return None;
    }
    let quote = b[0];
    if quote != b[b.len() - 1] || (quote != b'"' && quote != b'\'') {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    if !inner.bytes().any(|c| c == b'\\' || c == quote) {
        return Some(inner.to_owned());
    }
    let mut buf = Vec::with_capacity(inner.len());
    let mut rest = inner;
    while !rest.is_empty() {
        let (c, multibyte, tail) = unquote_char(rest, quote)?;
        rest = tail;
        if c < 0x80 || !multibyte {
            buf.push(c as u8);
        } else {
            let ch = char::from_u32(c)?;
            let mut tmp = [0u8; 4];
            buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Go's `strconv.UnquoteChar`: (value, multibyte, tail).
fn unquote_char(s: &str, quote: u8) -> Option<(u32, bool, &str)> {
    let b = s.as_bytes();
    let c = *b.first()?;
    if c == quote {
        return None;
    }
    if c >= 0x80 {
        let ch = s.chars().next()?;
        return Some((u32::from(ch), true, &s[ch.len_utf8()..]));
    }
    if c != b'\\' {
        return Some((u32::from(c), false, &s[1..]));
    }
    let esc = *b.get(1)?;
    let rest = s.get(2..)?;
    let simple = match esc {
        b'a' => Some(0x07),
        b'b' => Some(0x08),
        b'f' => Some(0x0c),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        b'v' => Some(0x0b),
        b'\\' => Some(b'\\'),
        b'\'' | b'"' if esc == quote => Some(esc),
        _ => None,
    };
    if let Some(v) = simple {
        return Some((u32::from(v), false, rest));
    }
    match esc {
        b'x' | b'u' | b'U' => {
            let n = match esc {
                b'x' => 2,
                b'u' => 4,
                _ => 8,
            };
            let digits = rest.get(..n)?;
            let mut v: u32 = 0;
            for d in digits.bytes() {
                v = (v << 4) | char::from(d).to_digit(16)?;
            }
            let tail = &rest[n..];
            if esc == b'x' {
                return Some((v, false, tail));
            }
            char::from_u32(v)?;
            Some((v, true, tail))
        }
        b'0'..=b'7' => {
            let mut v = u32::from(esc - b'0');
            let digits = rest.as_bytes().get(..2)?;
            for d in digits {
                if !(b'0'..=b'7').contains(d) {
                    return None;
                }
                v = (v << 3) | u32::from(d - b'0');
            }
            if v > 255 {
                return None;
            }
            Some((v, false, &rest[2..]))
        }
        _ => None,
    }
}

fn is_terminator(r: Option<char>) -> bool {
    match r {
        None => true,
        Some(c) => matches!(
            c,
            ' ' | '\t' | '\r' | '\n' | '.' | ',' | '[' | ']' | '$' | '@' | '{' | '}'
        ),
    }
}

/// Go's `unicode.IsDigit` (decimal digits; non-ASCII numerics approximated).
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// Go's `isAlphaNumeric`: `_`, letters and digits.
fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphabetic() || is_digit(c)
}

// ---------------------------------------------------------------------------------------------
// Evaluation (jsonpath.go)

type Item<'a> = Cow<'a, Value>;

/// Go returns partial values together with an error; an existence filter still counts them.
struct Failure<'a> {
    partial: Vec<Item<'a>>,
    message: String,
}

type Eval<'a> = Result<Vec<Item<'a>>, Failure<'a>>;

fn fail<'a>(partial: Vec<Item<'a>>, message: impl Into<String>) -> Failure<'a> {
    Failure {
        partial,
        message: message.into(),
    }
}

fn has_identifier(nodes: &[Node], name: &str) -> bool {
    nodes
        .iter()
        .any(|n| matches!(n, Node::Identifier(s) if s == name))
}

fn is_range(node: &Node) -> bool {
    matches!(node, Node::List(l) if has_identifier(l, "range"))
}

fn is_end(node: &Node) -> bool {
    matches!(node, Node::List(l) if has_identifier(l, "end"))
}

/// Runs top-level nodes: each text or action adds one result set; `{range …}` repeats the nodes
/// up to its matching `{end}` (or the end of the template) once per value.
fn exec_block<'a>(
    nodes: &[Node],
    cur: &Item<'a>,
    depth: usize,
    out: &mut Vec<Vec<Item<'a>>>,
) -> Result<(), String> {
    if depth > MAX_NESTING {
        return Err("range blocks are nested too deeply".into());
    }
    let mut i = 0;
    while i < nodes.len() {
        let node = &nodes[i];
        if is_range(node) {
            let end = matching_end(nodes, i + 1);
            let body = &nodes[i + 1..end];
            let items = walk(vec![cur.clone()], node).map_err(|f| f.message)?;
            for item in &items {
                exec_block(body, item, depth + 1, out)?;
            }
            i = end + 1;
            continue;
        }
        if is_end(node) {
            return Err("not in range, nothing to end".into());
        }
        out.push(walk(vec![cur.clone()], node).map_err(|f| f.message)?);
        i += 1;
    }
    Ok(())
}

fn matching_end(nodes: &[Node], from: usize) -> usize {
    let mut depth = 0usize;
    for (j, node) in nodes.iter().enumerate().skip(from) {
        if is_range(node) {
            depth += 1;
        } else if is_end(node) {
            if depth == 0 {
                return j;
            }
            depth -= 1;
        }
    }
    nodes.len()
}

fn walk<'a>(input: Vec<Item<'a>>, node: &Node) -> Eval<'a> {
    match node {
        Node::List(nodes) => eval_list(input, nodes),
        Node::Text(t) => Ok(vec![Cow::Owned(Value::String(t.clone()))]),
        Node::Field(name) => Ok(eval_field(input, name)),
        Node::Array(params) => eval_array(input, params),
        Node::Filter(f) => eval_filter(input, f),
        Node::Int(i) => Ok(input.iter().map(|_| Cow::Owned(Value::from(*i))).collect()),
        Node::Float(f) => Ok(input.iter().map(|_| Cow::Owned(Value::from(*f))).collect()),
        Node::Bool(b) => Ok(input.iter().map(|_| Cow::Owned(Value::Bool(*b))).collect()),
        Node::Wildcard => Ok(eval_wildcard(input)),
        Node::Recursive => Ok(eval_recursive(input)),
        Node::Union(lists) => eval_union(input, lists),
        Node::Identifier(name) => match name.as_str() {
            "range" => Ok(input),
            "end" => Err(fail(Vec::new(), "not in range, nothing to end")),
            _ => Err(fail(input, format!("unrecognized identifier {name}"))),
        },
    }
}

fn eval_list<'a>(input: Vec<Item<'a>>, nodes: &[Node]) -> Eval<'a> {
    let mut cur = input;
    for node in nodes {
        cur = walk(cur, node)?;
    }
    Ok(cur)
}

fn eval_field<'a>(input: Vec<Item<'a>>, name: &str) -> Vec<Item<'a>> {
    let mut out = Vec::new();
    for v in input {
        match v {
            Cow::Borrowed(Value::Object(m)) => {
                if let Some(x) = m.get(name) {
                    out.push(Cow::Borrowed(x));
                }
            }
            Cow::Owned(Value::Object(mut m)) => {
                if let Some(x) = m.remove(name) {
                    out.push(Cow::Owned(x));
                }
            }
            _ => {}
        }
    }
    out
}

/// Element `i` of an array item (borrowed when the array is).
fn element<'a>(v: &Item<'a>, i: usize) -> Option<Item<'a>> {
    match v {
        Cow::Borrowed(Value::Array(a)) => a.get(i).map(Cow::Borrowed),
        Cow::Owned(Value::Array(a)) => a.get(i).cloned().map(Cow::Owned),
        _ => None,
    }
}

fn eval_array<'a>(input: Vec<Item<'a>>, params: &[Param; 3]) -> Eval<'a> {
    let mut result = Vec::new();
    for v in &input {
        let len = match v.as_ref() {
            Value::Null => continue,
            Value::Array(a) => a.len() as i64,
            other => {
                let msg = format!("{} is not array or slice", go_type(other));
                return Err(fail(input, msg));
            }
        };
        let mut p = *params;
        if !p[0].known {
            p[0].value = 0;
        }
        if p[0].value < 0 {
            p[0].value += len;
        }
        if !p[1].known {
            p[1].value = len;
        }
        if p[1].value < 0 || (p[1].value == 0 && p[1].derived) {
            p[1].value += len;
        }
        let (from, to) = (p[0].value, p[1].value);
        if from == to {
            // Go returns what it has so far, ignoring any further input.
            return Ok(result);
        }
        if from >= len || from < 0 {
            let msg = format!("array index out of bounds: index {from}, length {len}");
            return Err(fail(input, msg));
        }
        if to > len || to < 0 {
            let msg = format!(
                "array index out of bounds: index {}, length {len}",
                to.saturating_sub(1)
            );
            return Err(fail(input, msg));
        }
        if from > to {
            let msg = format!("starting index {from} is greater than ending index {to}");
            return Err(fail(input, msg));
        }
        let step = if p[2].known {
            if p[2].value <= 0 {
                return Err(fail(input, "step must be > 0"));
            }
            p[2].value
        } else {
            1
        };
        let mut i = from;
        while i < to {
            result.extend(usize::try_from(i).ok().and_then(|i| element(v, i)));
            i = i.saturating_add(step);
        }
    }
    Ok(result)
}

fn eval_union<'a>(input: Vec<Item<'a>>, lists: &[Vec<Node>]) -> Eval<'a> {
    let mut result = Vec::new();
    for list in lists {
        match eval_list(input.clone(), list) {
            Ok(values) => result.extend(values),
            Err(f) => return Err(fail(input, f.message)),
        }
    }
    Ok(result)
}

/// The children Go's wildcard and recursive descent visit: object values, array elements and
/// the bytes of a string.
fn children<'a>(v: &Item<'a>) -> Vec<Item<'a>> {
    match v {
        Cow::Borrowed(b) => match b {
            Value::Object(m) => m.values().map(Cow::Borrowed).collect(),
            Value::Array(a) => a.iter().map(Cow::Borrowed).collect(),
            Value::String(s) => s.bytes().map(|x| Cow::Owned(Value::from(x))).collect(),
            _ => Vec::new(),
        },
        Cow::Owned(o) => match o {
            Value::Object(m) => m.values().cloned().map(Cow::Owned).collect(),
            Value::Array(a) => a.iter().cloned().map(Cow::Owned).collect(),
            Value::String(s) => s.bytes().map(|x| Cow::Owned(Value::from(x))).collect(),
            _ => Vec::new(),
        },
    }
}

fn eval_wildcard<'a>(input: Vec<Item<'a>>) -> Vec<Item<'a>> {
    input.iter().flat_map(children).collect()
}

/// Every value with children (objects, arrays, non-empty strings), depth first, parents first.
fn eval_recursive<'a>(input: Vec<Item<'a>>) -> Vec<Item<'a>> {
    let mut result = Vec::new();
    for v in input {
        let mut stack = vec![v];
        while let Some(x) = stack.pop() {
            match x.as_ref() {
                // A string's children are bytes, which have none: no need to visit them.
                Value::String(s) if !s.is_empty() => result.push(x),
                Value::Object(_) | Value::Array(_) => {
                    let ch = children(&x);
                    if !ch.is_empty() {
                        result.push(x);
                        stack.extend(ch.into_iter().rev());
                    }
                }
                _ => {}
            }
        }
    }
    result
}

fn eval_filter<'a>(input: Vec<Item<'a>>, filter: &Filter) -> Eval<'a> {
    let mut results = Vec::new();
    for v in &input {
        let len = match v.as_ref() {
            Value::Array(a) => a.len(),
            other => {
                let msg = format!(
                    "{} is not array or slice and cannot be filtered",
                    to_text(other)
                );
                return Err(fail(input, msg));
            }
        };
        for i in 0..len {
            let Some(elem) = element(v, i) else { continue };
            let lefts = eval_list(vec![elem.clone()], &filter.left);
            let op = match &filter.op {
                FilterOp::Exists => {
                    let found = match &lefts {
                        Ok(l) => !l.is_empty(),
                        Err(f) => !f.partial.is_empty(),
                    };
                    if found {
                        results.push(elem);
                    }
                    continue;
                }
                FilterOp::Compare(op) => op,
            };
            let lefts = match lefts {
                Ok(l) => l,
                Err(f) => return Err(fail(input, f.message)),
            };
            match lefts.len() {
                0 => continue,
                1 => {}
                _ => return Err(fail(input, "can only compare one element at a time")),
            }
            let rights = match eval_list(vec![elem.clone()], &filter.right) {
                Ok(r) => r,
                Err(f) => return Err(fail(input, f.message)),
            };
            match rights.len() {
                0 => continue,
                1 => {}
                _ => return Err(fail(input, "can only compare one element at a time")),
            }
            match compare(op, &lefts[0], &rights[0]) {
                Ok(true) => results.push(elem),
                Ok(false) => {}
                Err(message) => return Err(fail(results, message)),
            }
        }
    }
    Ok(results)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
}

/// The kind Go's template comparison sees: JSON integers are `int64`, other numbers `float64`.
fn basic_kind(v: &Value) -> Result<Kind, String> {
    match v {
        Value::Bool(_) => Ok(Kind::Bool),
        Value::Number(n) if n.is_i64() => Ok(Kind::Int),
        Value::Number(_) => Ok(Kind::Float),
        Value::String(_) => Ok(Kind::Str),
        _ => Err("invalid type for comparison".into()),
    }
}

fn go_eq(a: &Value, b: &Value) -> Result<bool, String> {
    let (ka, kb) = (basic_kind(a)?, basic_kind(b)?);
    if ka != kb {
        return Err("incompatible types for comparison".into());
    }
    Ok(match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) if ka == Kind::Int => x.as_i64() == y.as_i64(),
        (Value::Number(x), Value::Number(y)) => as_f64(x) == as_f64(y),
        _ => false,
    })
}

fn go_lt(a: &Value, b: &Value) -> Result<bool, String> {
    let (ka, kb) = (basic_kind(a)?, basic_kind(b)?);
    if ka != kb {
        return Err("incompatible types for comparison".into());
    }
    Ok(match (a, b) {
        (Value::String(x), Value::String(y)) => x < y,
        (Value::Number(x), Value::Number(y)) if ka == Kind::Int => x.as_i64() < y.as_i64(),
        (Value::Number(x), Value::Number(y)) => as_f64(x) < as_f64(y),
        _ => return Err("invalid type for comparison".into()),
    })
}

fn compare(op: &str, a: &Value, b: &Value) -> Result<bool, String> {
    match op {
        "==" => go_eq(a, b),
        "!=" => go_eq(a, b).map(|e| !e),
        "<" => go_lt(a, b),
        "<=" => Ok(go_lt(a, b)? || go_eq(a, b)?),
        ">" => Ok(!(go_lt(a, b)? || go_eq(a, b)?)),
        ">=" => go_lt(a, b).map(|lt| !lt),
        _ => Err(format!("unrecognized filter operator {op}")),
    }
}

fn as_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

// ---------------------------------------------------------------------------------------------
// Printing (PrintResults, fmt, encoding/json)

/// One value as `JSONPath.PrintResults` prints it: strings raw, `null` as `<no value>`, numbers
/// and booleans as Go's `fmt` prints `int64`/`float64`/`bool`, arrays and objects as Go's
/// `json.Marshal` does (keys sorted, `<>&` escaped).
pub fn to_text(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => go_fmt_float(as_f64(n)),
        },
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => {
            let mut out = String::new();
            crate::devapi::gojson::write(&mut out, v, usize::MAX);
            out
        }
    }
}

/// Shortest round-trip digits and the decimal exponent of the first digit.
fn float_digits(f: f64) -> (String, i32) {
    let s = format!("{:e}", f.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    (digits, exp.parse().unwrap_or(0))
}

fn format_e(f: f64, trim_exp: bool) -> String {
    let (digits, exp) = float_digits(f);
    if digits.is_empty() {
        return "0".into();
    }
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    if trim_exp {
        let _ = write!(out, "{}", exp.unsigned_abs());
    } else {
        let _ = write!(out, "{:02}", exp.unsigned_abs());
    }
    out
}

fn format_f(f: f64) -> String {
    let (digits, exp) = float_digits(f);
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    if exp >= 0 {
        let int_len = usize::try_from(exp).unwrap_or(0) + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n(
            '0',
            usize::try_from(-exp - 1).unwrap_or(0),
        ));
        out.push_str(&digits);
    }
    out
}

/// `fmt.Sprint(float64)`: `%g` with the shortest precision (exponent form below 1e-4 and from
/// 1e+06 on).
fn go_fmt_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let (_, exp) = float_digits(f);
    if !(-4..6).contains(&exp) {
        format_e(f, false)
    } else {
        format_f(f)
    }
}

/// Cells of type `number` carry a Go `float64`; integral values encode without a fraction.
pub(crate) fn go_float_value(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9e15 {
        Value::from(f as i64)
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(path: &str, v: &Value) -> Vec<String> {
        JsonPath::parse(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .find(v)
            .iter()
            .map(|x| to_text(x))
            .collect()
    }

    /// What `kubectl -o jsonpath` prints: result sets concatenated, values space-separated.
    fn execute(template: &str, v: &Value) -> Result<String, JsonPathError> {
        let p = JsonPath::parse_exact(template)?;
        let sets = p.find_results(v)?;
        Ok(sets
            .iter()
            .map(|set| set.iter().map(|x| to_text(x)).collect::<Vec<_>>().join(" "))
            .collect())
    }

    fn route() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"kubernetes.io/hostname": "n1", "app": "x"}},
            "spec": {
                "from": "https://web.example.com",
                "to": [
                    {"service": {"name": "web", "port": 80}, "weight": 3},
                    {"service": {"name": "canary", "port": 8080}, "weight": 1},
                    {"url": "http://10.0.0.5:8080"}
                ]
            },
            "status": {"conditions": [
                {"type": "Accepted", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "NoEndpoints"}
            ]}
        })
    }

    #[test]
    fn fields_and_braces() {
        let r = route();
        assert_eq!(texts(".spec.from", &r), ["https://web.example.com"]);
        assert_eq!(texts("{.spec.from}", &r), ["https://web.example.com"]);
        assert_eq!(texts("{$.spec.from}", &r), ["https://web.example.com"]);
        assert_eq!(texts("{@.metadata.name}", &r), ["web"]);
        assert!(texts(".spec.missing.deeper", &r).is_empty());
        assert_eq!(
            execute("name: {.metadata.name}!", &r).unwrap(),
            "name: web!"
        );
    }

    #[test]
    fn escaped_dots_and_quoted_keys() {
        let r = route();
        assert_eq!(
            texts(r".metadata.labels.kubernetes\.io/hostname", &r),
            ["n1"]
        );
        assert_eq!(texts(".metadata['labels']['app']", &r), ["x"]);
        // As in Go, a quoted key is re-parsed as a path: ['a.b'] is .a.b.
        let v = json!({"a": {"b": 1}, "a.b": 2});
        assert_eq!(texts("['a.b']", &v), ["1"]);
        assert_eq!(texts(r".a\.b", &v), ["2"]);
    }

    #[test]
    fn arrays_slices_and_wildcards() {
        let r = route();
        assert_eq!(texts(".spec.to[*].service.name", &r), ["web", "canary"]);
        assert_eq!(texts(".spec.to[0].weight", &r), ["3"]);
        assert_eq!(texts(".spec.to[-1].url", &r), ["http://10.0.0.5:8080"]);
        assert_eq!(texts(".spec.to[0:2].weight", &r), ["3", "1"]);
        assert_eq!(texts(".spec.to[:2].weight", &r), ["3", "1"]);
        assert_eq!(texts(".spec.to[::2].weight", &r), ["3"]);
        assert_eq!(texts(".spec.to[1:].weight", &r), ["1"]);
        assert_eq!(
            texts(".spec.to[-1:]", &r),
            [r#"{"url":"http://10.0.0.5:8080"}"#]
        );
        let v = json!({"n": [1, 2, 3, 4]});
        assert_eq!(texts(".n[:4:2]", &v), ["1", "3"]);
        assert_eq!(texts(".n[1::2]", &v), ["2", "4"]);
        assert_eq!(texts(".n[2:2]", &v), Vec::<String>::new());
        assert_eq!(texts(".n[]", &v), ["1"]);
        assert_eq!(texts(".n.*", &v), ["1", "2", "3", "4"]);
        // Out of range is an error, not an empty result.
        let p = JsonPath::parse(".n[4]").unwrap();
        assert!(p.find_results(&v).is_err());
        assert!(p.find(&v).is_empty());
        assert!(
            JsonPath::parse(".n[0:3:0]")
                .unwrap()
                .find_results(&v)
                .is_err()
        );
        assert!(
            JsonPath::parse(".n[3:1]")
                .unwrap()
                .find_results(&v)
                .is_err()
        );
        // Indexing a non-array is an error; indexing null is nothing.
        assert!(
            JsonPath::parse(".n[0][0]")
                .unwrap()
                .find_results(&v)
                .is_err()
        );
        assert!(texts(".n[0].x[0]", &v).is_empty());
        assert!(texts(".missing[0]", &v).is_empty());
        assert_eq!(texts(".n[0,2]", &v), ["1", "3"]);
    }

    #[test]
    fn unions() {
        let v = json!({"items": [
            {"metadata": {"name": "a"}, "status": {"capacity": {"cpu": "4"}}},
            {"metadata": {"name": "b"}, "status": {"capacity": {"cpu": "8"}}}
        ]});
        assert_eq!(
            execute("{.items[*]['metadata.name', 'status.capacity']}", &v).unwrap(),
            r#"a b {"cpu":"4"} {"cpu":"8"}"#
        );
        // Bare names in a union are not valid (Go needs quotes).
        assert!(JsonPath::parse("[a,b]").is_err());
    }

    #[test]
    fn filters() {
        let r = route();
        let ready = r#".status.conditions[?(@.type=="Ready")].status"#;
        assert_eq!(texts(ready, &r), ["False"]);
        assert_eq!(
            texts(".status.conditions[?(@.type!='Ready')].type", &r),
            ["Accepted"]
        );
        assert_eq!(texts(".status.conditions[?(@.reason)].type", &r), ["Ready"]);
        assert_eq!(texts(".spec.to[?(@.weight>1)].service.name", &r), ["web"]);
        assert_eq!(
            texts(".spec.to[?(@.weight>=1)].service.name", &r),
            ["web", "canary"]
        );
        assert_eq!(
            texts(".spec.to[?(@.weight<3)].service.name", &r),
            ["canary"]
        );
        assert_eq!(texts(".spec.to[?(@.weight<=3)].weight", &r), ["3", "1"]);
        assert_eq!(
            texts(".spec.to[?(@.service.port==8080)].service.name", &r),
            ["canary"]
        );
        // A parenthesis inside the quoted value does not end the filter.
        let v = json!({"c": [{"m": "a)b"}, {"m": "c"}]});
        assert_eq!(texts(".c[?(@.m=='a)b')].m", &v), ["a)b"]);
        // Comparing an integer with a float, or a number with a string, is an error.
        let v = json!({"c": [{"x": 1}, {"x": 2.5}]});
        assert!(
            JsonPath::parse(".c[?(@.x==1)]")
                .unwrap()
                .find_results(&v)
                .is_err()
        );
        let v = json!({"c": [{"x": 1.5}, {"x": 2.5}]});
        assert_eq!(texts(".c[?(@.x>2.0)].x", &v), ["2.5"]);
        let v = json!({"c": [{"x": 1}, {"x": "1"}]});
        assert!(
            JsonPath::parse(".c[?(@.x==1)]")
                .unwrap()
                .find_results(&v)
                .is_err()
        );
        // Booleans compare with == but not with <.
        let v = json!({"c": [{"ok": true, "n": "a"}, {"ok": false, "n": "b"}]});
        assert_eq!(texts(".c[?(@.ok==true)].n", &v), ["a"]);
        assert!(
            JsonPath::parse(".c[?(@.ok<true)]")
                .unwrap()
                .find_results(&v)
                .is_err()
        );
        // A filter over a non-array, or with an unknown operator, is an error.
        assert!(
            JsonPath::parse(".metadata[?(@.x)]")
                .unwrap()
                .find_results(&r)
                .is_err()
        );
        let bad_op = JsonPath::parse(".spec.to[?(@.weight<>1)]").unwrap();
        assert!(bad_op.find_results(&r).is_err());
        // Elements without the field are skipped.
        assert_eq!(texts(".spec.to[?(@.url=='x')]", &r), Vec::<String>::new());
        // Filter at the root, over numbers.
        assert_eq!(execute("{[?(@<5)]}", &json!([2, 6, 3, 7])).unwrap(), "2 3");
    }

    #[test]
    fn recursive_descent() {
        let v = json!({
            "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}],
            "users": [{"name": "me", "user": {}}]
        });
        assert_eq!(texts("..name", &v), ["a", "b", "me"]);
        assert_eq!(texts("...name", &v), ["a", "b", "me"]);
        assert_eq!(execute("{..}", &json!([1, 2, 3])).unwrap(), "[1,2,3]");
        assert!(JsonPath::parse("{....name}").is_err());
        assert_eq!(
            texts("..metadata[?(@.name=='b')]", &json!({"x": v})),
            Vec::<String>::new()
        );
        assert_eq!(texts("..items[1].metadata.name", &v), ["b"]);
    }

    #[test]
    fn literals_quotes_and_ranges() {
        let v = json!({"items": [{"n": "a"}, {"n": "b"}], "kind": "List"});
        assert_eq!(execute(r#"{"{"}"#, &v).unwrap(), "{");
        assert_eq!(
            execute(r#"{range .items[*]}{.n}{"\t"}{end}"#, &v).unwrap(),
            "a\tb\t"
        );
        assert_eq!(
            execute("{range .items[*]}{.n}, {end}{.kind}", &v).unwrap(),
            "a, b, List"
        );
        assert_eq!(execute(r"{'\x41\u00e9\101'}", &v).unwrap(), "AéA");
        assert!(
            JsonPath::parse_exact("{.items}{end}")
                .unwrap()
                .find_results(&v)
                .is_err()
        );
        assert!(JsonPath::parse("hello").unwrap().find_results(&v).is_err());
        assert!(JsonPath::parse(r#"{"\q"}"#).is_err());
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "{.a",
            ".a[0",
            ".a[x]",
            ".a[1:2:3:4]",
            ".a[?(@.x==1]",
            ".a[?(@.x==1)",
            r#".a[?(@.x=="y)]"#,
            r#"{"abc}"#,
            "{#}",
            "{.a\n}",
            ".a[-]",
            ".a[99999999999999999999]",
            "{1.2.3}",
            ".a[?(@.x==)]",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?} should not parse");
        }
        let err = JsonPath::parse("{#}").unwrap_err().to_string();
        assert!(
            err.contains("unrecognized character in action: U+0023 '#'"),
            "{err}"
        );
    }

    #[test]
    fn printing_follows_go() {
        assert_eq!(to_text(&json!(null)), "<no value>");
        assert_eq!(to_text(&json!(true)), "true");
        assert_eq!(to_text(&json!(42)), "42");
        assert_eq!(to_text(&json!(2.5)), "2.5");
        assert_eq!(to_text(&json!(1.0)), "1");
        assert_eq!(to_text(&json!(100000.0)), "100000");
        assert_eq!(to_text(&json!(1000000.0)), "1e+06");
        assert_eq!(to_text(&json!(123456789.0)), "1.23456789e+08");
        assert_eq!(to_text(&json!(0.0001)), "0.0001");
        assert_eq!(to_text(&json!(0.00001)), "1e-05");
        assert_eq!(to_text(&json!(-2.5)), "-2.5");
        assert_eq!(
            to_text(&json!({"b": 1, "a": [1.5, "x<y&z"], "c": 1e21, "d": 1e-7})),
            r#"{"a":[1.5,"x\u003cy\u0026z"],"b":1,"c":1e+21,"d":1e-7}"#
        );
        assert_eq!(to_text(&json!(["a\"b\n\u{1}"])), r#"["a\"b\n\u0001"]"#);
        assert_eq!(
            to_text(&json!(18446744073709551615u64)),
            "1.8446744073709552e+19"
        );
    }

    /// A tiny deterministic generator, so the fuzz test needs no extra crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    #[test]
    fn never_panics_on_random_templates() {
        const ALPHABET: &[&str] = &[
            "{", "}", ".", "..", "[", "]", "[?(", ")]", "@", "$", "*", ":", ",", "'", "\"", "\\",
            "=", "==", "!=", "<", ">", "-", "+", "0", "1", "9", "a", "name", "range", "end",
            "true", " ", "\t", "\n", "é", "١", "(", ")", "x\\.y", "[*]", "[0]", "[-1:]",
        ];
        let data = json!({
            "a": [{"name": "x", "n": 1}, {"name": "y", "n": 2.5}],
            "name": "top",
            "x.y": {"z": [true, null]},
            "s": "str"
        });
        let mut rng = Lcg(0x5eed);
        let mut parsed = 0;
        for _ in 0..2000 {
            let len = 1 + rng.next() % 12;
            let mut t = String::new();
            for _ in 0..len {
                t.push_str(ALPHABET[(rng.next() as usize) % ALPHABET.len()]);
            }
            if let Ok(p) = JsonPath::parse(&t) {
                parsed += 1;
                let _ = p.find_results(&data);
                let _ = p.find(&data);
            }
            let _ = JsonPath::parse_exact(&t);
        }
        assert!(
            parsed > 50,
            "the generator should produce some valid templates ({parsed})"
        );
        // Arbitrary characters, not just grammar tokens.
        for _ in 0..500 {
            let len = rng.next() % 24;
            let t: String = (0..len)
                .map(|_| match rng.next() % 4 {
                    0 => char::from(b' ' + (rng.next() % 95) as u8),
                    1 => ['{', '}', '[', ']', '.', '\\', '\'', '"'][(rng.next() % 8) as usize],
                    _ => char::from_u32((rng.next() % 0x3000) as u32).unwrap_or('x'),
                })
                .collect();
            if let Ok(p) = JsonPath::parse(&t) {
                let _ = p.find_results(&data);
            }
        }
        for extreme in [
            ".a[-9223372036854775808:]",
            ".a[9223372036854775807]",
            ".a[:-9223372036854775808]",
            ".a[0:9223372036854775807:9223372036854775807]",
        ] {
            let p = JsonPath::parse(extreme).unwrap();
            let _ = p.find_results(&data);
        }
        // Deep nesting is refused rather than overflowing the stack.
        let deep = format!("{}{}", "[?(".repeat(200), ")]".repeat(200));
        assert!(JsonPath::parse(&deep).is_err());
        let ranges = "{range .a[*]}".repeat(100);
        let p = JsonPath::parse(&ranges).unwrap();
        let nested = json!({"a": [{"a": [{"a": [{"a": [{}]}]}]}]});
        assert!(p.find_results(&nested).is_ok());
        let mut deep = json!({});
        for _ in 0..40 {
            deep = json!({"a": [deep]});
        }
        assert!(p.find_results(&deep).is_err());
    }
}
