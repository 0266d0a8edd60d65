//! Kubernetes label and field selectors (`labelSelector=` and `fieldSelector=` on list and watch).
//!
//! Pure parsing and matching, written to the grammar and messages of
//! `k8s.io/apimachinery/pkg/labels` and `k8s.io/apimachinery/pkg/fields`, so kubectl, helm and
//! kube-rs see the same acceptance and the same `400` texts as against kube-apiserver. The list and
//! watch handlers parse once per request and call `matches` per object; they check
//! [`FieldSelector::fields`] against the fields a resource supports (400 for the rest).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

/// A selector string that does not parse; the message is the one kube-apiserver gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The `labelSelector` is malformed or names an invalid key or value.
    #[error("{0}")]
    InvalidLabelSelector(String),
    /// The `fieldSelector` is malformed or has a bad escape in a value.
    #[error("{0}")]
    InvalidFieldSelector(String),
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOperator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value` (also matches objects without the label)
    NotEquals,
    /// `key in (a, b)`
    In,
    /// `key notin (a, b)` (also matches objects without the label)
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>1` (integer comparison; the label must parse as an integer)
    GreaterThan,
    /// `key<1` (integer comparison; the label must parse as an integer)
    LessThan,
}

/// One `key op values` term of a label selector; all terms must hold (AND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    key: String,
    operator: LabelOperator,
    /// Sorted and deduplicated, as `sets.String.List()` gives them.
    values: Vec<String>,
}

impl LabelRequirement {
    /// The label key (`app`, `example.com/tier`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> LabelOperator {
        self.operator
    }

    /// The values, sorted and deduplicated (empty for `Exists` and `DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// Whether this requirement holds for the given labels.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels.and_then(|l| l.get(&self.key)).map(scalar_text);
        match self.operator {
            LabelOperator::In | LabelOperator::Equals | LabelOperator::DoubleEquals => {
                value.is_some_and(|v| self.has_value(&v))
            }
            LabelOperator::NotIn | LabelOperator::NotEquals => {
                value.is_none_or(|v| !self.has_value(&v))
            }
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == LabelOperator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            LabelOperator::Exists | LabelOperator::DoesNotExist => return Ok(()),
            LabelOperator::Equals => "=",
            LabelOperator::DoubleEquals => "==",
            LabelOperator::NotEquals => "!=",
            LabelOperator::GreaterThan => ">",
            LabelOperator::LessThan => "<",
            LabelOperator::In => " in ",
            LabelOperator::NotIn => " notin ",
        };
        f.write_str(op)?;
        let set = matches!(self.operator, LabelOperator::In | LabelOperator::NotIn);
        if set {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: the AND of its requirements. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Sorted by key (stable), as kube-apiserver does.
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses a selector such as `app=web,tier in (a, b),!canary,version>2`.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let tokens = lex(s);
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = parser
            .parse()
            .map_err(SelectorError::InvalidLabelSelector)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// Whether every requirement holds for `metadata.labels` (pass `None` when the object has no
    /// labels: `!=`, `notin` and `!key` then match, everything else does not).
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether this selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// The single value `label` must have (`label=v`, `label==v`, `label in (v)`), if the selector
    /// pins it; lets a caller narrow a scan before matching.
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.operator, r.values.as_slice()) {
            (LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In, [value]) => {
                Some(value)
            }
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The text a label or field compares as: strings as they are, other scalars as JSON text.
fn scalar_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        other => Cow::Owned(other.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    End,
    OpenPar,
    ClosedPar,
    Comma,
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
    Ident(&'a str),
}

impl<'a> Tok<'a> {
    fn literal(self) -> &'a str {
        match self {
            Tok::End => "",
            Tok::OpenPar => "(",
            Tok::ClosedPar => ")",
            Tok::Comma => ",",
            Tok::DoesNotExist => "!",
            Tok::Equals => "=",
            Tok::DoubleEquals => "==",
            Tok::NotEquals => "!=",
            Tok::GreaterThan => ">",
            Tok::LessThan => "<",
            Tok::In => "in",
            Tok::NotIn => "notin",
            Tok::Ident(s) => s,
        }
    }

    /// In value position `in` and `notin` are plain identifiers (`x in (in)`).
    fn as_value(self) -> Self {
        match self {
            Tok::In | Tok::NotIn => Tok::Ident(self.literal()),
            t => t,
        }
    }
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Tokenizes like the apimachinery lexer: specials by longest match (`==`, `!=`), everything else
/// up to whitespace or a special is an identifier or the keywords `in` / `notin`.
fn lex(s: &str) -> Vec<Tok<'_>> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && is_whitespace(bytes[i]) {
            i += 1;
        }
        let Some(&b) = bytes.get(i) else {
            out.push(Tok::End);
            return out;
        };
        if is_special(b) {
            let next = bytes.get(i + 1).copied();
            let (tok, len) = match (b, next) {
                (b'=', Some(b'=')) => (Tok::DoubleEquals, 2),
                (b'!', Some(b'=')) => (Tok::NotEquals, 2),
                (b'=', _) => (Tok::Equals, 1),
                (b'!', _) => (Tok::DoesNotExist, 1),
                (b'(', _) => (Tok::OpenPar, 1),
                (b')', _) => (Tok::ClosedPar, 1),
                (b',', _) => (Tok::Comma, 1),
                (b'>', _) => (Tok::GreaterThan, 1),
                _ => (Tok::LessThan, 1),
            };
            out.push(tok);
            i += len;
        } else {
            let start = i;
            while i < bytes.len() && !is_special(bytes[i]) && !is_whitespace(bytes[i]) {
                i += 1;
            }
            // Both ends sit next to ASCII bytes or the string ends, so these are char boundaries.
            let word = s.get(start..i).unwrap_or_default();
            out.push(match word {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                w => Tok::Ident(w),
            });
        }
    }
}

struct Parser<'a> {
    tokens: Vec<Tok<'a>>,
    pos: usize,
}

impl<'a> Parser<'a> {
    /// The current token in value context, without consuming it.
    fn peek(&self) -> Tok<'a> {
        self.tokens
            .get(self.pos)
            .copied()
            .unwrap_or(Tok::End)
            .as_value()
    }

    /// The current token in value context; advances.
    fn next(&mut self) -> Tok<'a> {
        let t = self.peek();
        self.pos += 1;
        t
    }

    /// The current token in operator context (`in` stays a keyword); advances.
    fn next_operator(&mut self) -> Tok<'a> {
        let t = self.tokens.get(self.pos).copied().unwrap_or(Tok::End);
        self.pos += 1;
        t
    }

    fn parse(&mut self) -> Result<Vec<LabelRequirement>, String> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Tok::Ident(_) | Tok::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    match self.next() {
                        Tok::End => return Ok(requirements),
                        Tok::Comma => {
                            let t = self.peek();
                            if !matches!(t, Tok::Ident(_) | Tok::DoesNotExist) {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                ));
                            }
                        }
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            ));
                        }
                    }
                }
                Tok::End => return Ok(requirements),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<LabelRequirement, String> {
        let mut tok = self.next();
        let negated = tok == Tok::DoesNotExist;
        if negated {
            tok = self.next();
        }
        let Tok::Ident(key) = tok else {
            return Err(format!("found '{}', expected: identifier", tok.literal()));
        };
        let key_errors = crate::devapi::validation::qualified_name(key);
        if !key_errors.is_empty() {
            return Err(invalid("<nil>", key, &key_errors.join("; ")));
        }
        let unary = matches!(self.peek(), Tok::End | Tok::Comma);
        if negated || unary {
            let operator = if negated {
                LabelOperator::DoesNotExist
            } else {
                LabelOperator::Exists
            };
            return Ok(LabelRequirement {
                key: key.to_string(),
                operator,
                values: Vec::new(),
            });
        }
        let operator = match self.next_operator() {
            Tok::In => LabelOperator::In,
            Tok::NotIn => LabelOperator::NotIn,
            Tok::Equals => LabelOperator::Equals,
            Tok::DoubleEquals => LabelOperator::DoubleEquals,
            Tok::NotEquals => LabelOperator::NotEquals,
            Tok::GreaterThan => LabelOperator::GreaterThan,
            Tok::LessThan => LabelOperator::LessThan,
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                ));
            }
        };
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, operator, values)
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let tok = self.next();
        if tok != Tok::OpenPar {
            return Err(format!("found '{}' expected: '('", tok.literal()));
        }
        let first = self.peek();
        match first {
            Tok::Ident(_) | Tok::Comma => {
                let set = self.parse_identifiers_list()?;
                if self.next() != Tok::ClosedPar {
                    return Err(format!("found '{}', expected: ')'", first.literal()));
                }
                Ok(set)
            }
            Tok::ClosedPar => {
                self.next();
                Ok(BTreeSet::from([String::new()]))
            }
            t => Err(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            )),
        }
    }

    /// A comma-separated list where empty items are the empty value (`(,a)`, `(a,,b)`, `(a,)`).
    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut set = BTreeSet::new();
        loop {
            match self.next() {
                Tok::Ident(v) => {
                    set.insert(v.to_string());
                    match self.peek() {
                        Tok::Comma => {}
                        Tok::ClosedPar => return Ok(set),
                        t => {
                            return Err(format!("found '{}', expected: ',' or ')'", t.literal()));
                        }
                    }
                }
                Tok::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    match self.peek() {
                        Tok::ClosedPar => {
                            set.insert(String::new());
                            return Ok(set);
                        }
                        Tok::Comma => {
                            self.next();
                            set.insert(String::new());
                        }
                        _ => {}
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        t.literal()
                    ));
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        match self.next() {
            Tok::Ident(v) => Ok(BTreeSet::from([v.to_string()])),
            t => Err(format!("found '{}', expected: identifier", t.literal())),
        }
    }
}

/// Validates the values as `labels.NewRequirement` does and builds the requirement.
fn new_requirement(
    key: &str,
    operator: LabelOperator,
    values: BTreeSet<String>,
) -> Result<LabelRequirement, String> {
    let values: Vec<String> = values.into_iter().collect();
    let mut errors = Vec::new();
    if matches!(
        operator,
        LabelOperator::GreaterThan | LabelOperator::LessThan
    ) {
        for (i, v) in values.iter().enumerate() {
            if v.parse::<i64>().is_err() {
                errors.push(invalid(
                    &format!("values[{i}]"),
                    v,
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                ));
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let errs = crate::devapi::validation::label_value(v);
        if !errs.is_empty() {
            errors.push(invalid(&format!("values[{i}][{key}]"), v, &errs.join("; ")));
        }
    }
    match errors.len() {
        0 => Ok(LabelRequirement {
            key: key.to_string(),
            operator,
            values,
        }),
        1 => Err(errors.remove(0)),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

/// A `field.Invalid` error as apimachinery prints it.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value:?}: {detail}")
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

/// The operator of one field requirement (`=` and `==` are the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    /// `field=value` or `field==value`
    Equals,
    /// `field!=value`
    NotEquals,
}

/// One `field op value` term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    field: String,
    operator: FieldOperator,
    value: String,
}

impl FieldRequirement {
    /// The dotted field path (`metadata.name`), exactly as written (not trimmed).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The operator.
    pub fn operator(&self) -> FieldOperator {
        self.operator
    }

    /// The unescaped value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the object's field (missing = empty string) satisfies this term.
    pub fn matches(&self, obj: &Value) -> bool {
        let have = field_text(obj, &self.field);
        match self.operator {
            FieldOperator::Equals => have == self.value,
            FieldOperator::NotEquals => have != self.value,
        }
    }
}

/// A parsed field selector: the AND of its terms. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses a selector such as `metadata.name=web,status.phase!=Running`; `\,`, `\=` and `\\`
    /// escape those characters in values.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut requirements = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, operator, raw)) = split_term(part) else {
                return Err(SelectorError::InvalidFieldSelector(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value: unescape_value(raw)?,
            });
        }
        Ok(Self { requirements })
    }

    /// Whether every term holds for `obj`; fields are read by dotted path, a missing field reads
    /// as the empty string, numbers and booleans as their JSON text.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(obj))
    }

    /// The field paths the selector uses, in order (may repeat), for the caller to check against
    /// the fields the resource supports.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// Whether this selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, sorted as kube-apiserver sorts them.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The single value `field` must equal, if some term pins it (`metadata.name=web`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

/// Splits on commas that are not escaped; the escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator; `!=` and `==` are tried before `=` at each position.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidFieldSelector(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            escaped = false;
        } else {
            match c {
                '\\' => escaped = true,
                ',' | '=' => {
                    return Err(SelectorError::InvalidFieldSelector(format!(
                        "invalid field selector: unescaped character in value: {c}"
                    )));
                }
                c => out.push(c),
            }
        }
    }
    if escaped {
        return Err(SelectorError::InvalidFieldSelector(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}

fn escape_value(s: &str) -> Cow<'_, str> {
    if !s.contains(['\\', ',', '=']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Reads a dotted path; anything missing (or `null`) reads as "".
fn field_text<'a>(obj: &'a Value, path: &str) -> Cow<'a, str> {
    let mut cur = obj;
    for segment in path.split('.') {
        match cur.get(segment) {
            Some(v) => cur = v,
            None => return Cow::Borrowed(""),
        }
    }
    scalar_text(cur)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("labels must be an object"),
        }
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn label_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(v) => panic!("{s:?} should not parse, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        for s in ["", "   ", "\t\n"] {
            let x = sel(s);
            assert!(x.is_empty());
            assert!(x.matches(None));
            assert!(x.matches(Some(&labels(json!({"a": "b"})))));
        }
    }

    #[test]
    fn equality_operators() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        for s in ["app=web", "app==web", " app = web ", "app=web,tier=front"] {
            assert!(sel(s).matches(Some(&l)), "{s}");
        }
        assert!(!sel("app=db").matches(Some(&l)));
        assert!(!sel("app=web,tier=back").matches(Some(&l)));
        assert!(!sel("app=web").matches(None));
        assert!(sel("app!=db").matches(Some(&l)));
        assert!(!sel("app!=web").matches(Some(&l)));
        // `!=` matches objects lacking the label, as in Kubernetes.
        assert!(sel("missing!=x").matches(Some(&l)));
        assert!(sel("app!=x").matches(None));
    }

    #[test]
    fn empty_values() {
        let l = labels(json!({"a": "", "b": "x"}));
        assert!(sel("a=").matches(Some(&l)));
        assert!(sel("a=,b=x").matches(Some(&l)));
        assert!(!sel("b=").matches(Some(&l)));
        assert!(!sel("c=").matches(Some(&l)), "missing is not empty for =");
        assert!(sel("a in ()").matches(Some(&l)));
        assert!(sel("a in (,x)").matches(Some(&l)));
        assert_eq!(sel("a in (x,)").requirements()[0].values(), ["", "x"]);
        assert_eq!(
            sel("a in (x,,y)").requirements()[0].values(),
            ["", "x", "y"]
        );
    }

    #[test]
    fn set_operators() {
        let l = labels(json!({"env": "prod"}));
        assert!(sel("env in (prod, staging)").matches(Some(&l)));
        assert!(sel("env in (prod)").matches(Some(&l)));
        assert!(!sel("env in (dev,staging)").matches(Some(&l)));
        assert!(!sel("other in (prod)").matches(Some(&l)));
        assert!(sel("env notin (dev)").matches(Some(&l)));
        assert!(!sel("env notin (dev, prod)").matches(Some(&l)));
        assert!(sel("other notin (prod)").matches(Some(&l)));
        assert!(sel("other notin (prod)").matches(None));
        // keywords are values in value position, and keys in key position
        let kw = labels(json!({"in": "notin"}));
        assert!(sel("in in (notin)").matches(Some(&kw)));
        assert!(sel("in=notin").matches(Some(&kw)));
        assert!(sel("in").matches(Some(&kw)));
        assert_eq!(sel("env in(a,b)").to_string(), "env in (a,b)");
    }

    #[test]
    fn existence_operators() {
        let l = labels(json!({"a": "1"}));
        assert!(sel("a").matches(Some(&l)));
        assert!(!sel("b").matches(Some(&l)));
        assert!(sel("!b").matches(Some(&l)));
        assert!(sel("! b").matches(Some(&l)));
        assert!(!sel("!a").matches(Some(&l)));
        assert!(sel("!a").matches(None));
        assert!(!sel("a").matches(None));
        assert!(sel("a,!b").matches(Some(&l)));
        assert_eq!(
            sel("!b").requirements()[0].operator(),
            LabelOperator::DoesNotExist
        );
        assert_eq!(sel("b").requirements()[0].operator(), LabelOperator::Exists);
    }

    #[test]
    fn integer_comparisons() {
        let l = labels(json!({"n": "5", "s": "x", "neg": "-3"}));
        assert!(sel("n>4").matches(Some(&l)));
        assert!(!sel("n>5").matches(Some(&l)));
        assert!(sel("n<6").matches(Some(&l)));
        assert!(!sel("n<5").matches(Some(&l)));
        assert!(
            !sel("s>1").matches(Some(&l)),
            "non-integer label never matches"
        );
        assert!(!sel("missing<100").matches(Some(&l)));
        assert!(sel("neg<0").matches(Some(&l)));
        assert!(label_err("n>x").contains("the value must be an integer"));
        // "-1" is an integer but not a valid label value, which Kubernetes rejects too.
        assert!(label_err("n>-1").contains("a valid label must be"));
    }

    #[test]
    fn requirements_are_sorted_and_displayed() {
        let s = sel("z=1, a in (y,x,x), !m, k");
        let keys: Vec<&str> = s.requirements().iter().map(|r| r.key()).collect();
        assert_eq!(keys, ["a", "k", "m", "z"]);
        assert_eq!(s.to_string(), "a in (x,y),k,!m,z=1");
        assert_eq!(s.requires_exact_match("z"), Some("1"));
        assert_eq!(s.requires_exact_match("a"), None);
        assert_eq!(sel("a in (x)").requires_exact_match("a"), Some("x"));
    }

    #[test]
    fn qualified_keys() {
        let l = labels(json!({"example.com/tier": "a", "app.kubernetes.io/name": "b"}));
        assert!(sel("example.com/tier=a").matches(Some(&l)));
        assert!(sel("app.kubernetes.io/name in (b)").matches(Some(&l)));
        let long = "a".repeat(63);
        sel(&format!("{long}=x"));
        sel(&format!("x={long}"));
        sel("A_b.c-D=E_f.g-H");
    }

    #[test]
    fn invalid_label_selectors() {
        let cases: &[(&str, &str)] = &[
            ("a=b=c", "found '=', expected: ',' or 'end of string'"),
            (
                "=a",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            ("a,", "found '', expected: identifier after ','"),
            ("a,,b", "found ',', expected: identifier after ','"),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a in b",
                "unable to parse requirement: found 'b' expected: '('",
            ),
            (
                "a in (b",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "a in (b c)",
                "unable to parse requirement: found 'c', expected: ',' or ')'",
            ),
            (
                "a in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "a in (,=)",
                "unable to parse requirement: found '=', expected: ',', or identifier",
            ),
            (
                "a=(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "!",
                "unable to parse requirement: found '', expected: identifier",
            ),
            (
                "!=a",
                "found '!=', expected: !, identifier, or 'end of string'",
            ),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            (
                "(",
                "found '(', expected: !, identifier, or 'end of string'",
            ),
            (
                "a>=1",
                "unable to parse requirement: found '=', expected: identifier",
            ),
            (
                "a in",
                "unable to parse requirement: found '' expected: '('",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&label_err(input), want, "input {input:?}");
        }
    }

    #[test]
    fn invalid_keys_and_values() {
        let e = label_err("a/b/c=d");
        assert!(e.starts_with("unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of"), "{e}");
        let e = label_err("/a");
        assert!(e.contains("prefix part must be non-empty"), "{e}");
        let e = label_err("Example.com/a");
        assert!(
            e.contains("prefix part a lowercase RFC 1123 subdomain"),
            "{e}"
        );
        let e = label_err("example.com/");
        assert!(e.contains("name part must be non-empty"), "{e}");
        let e = label_err(&format!("{}=x", "a".repeat(64)));
        assert!(
            e.contains("name part must be no more than 63 characters"),
            "{e}"
        );
        let e = label_err("-a");
        assert!(e.contains("name part must consist of"), "{e}");
        let e = label_err("a=-b");
        assert!(e.starts_with("unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be"), "{e}");
        let e = label_err(&format!("a={}", "b".repeat(64)));
        assert!(e.contains("must be no more than 63 characters"), "{e}");
        let e = label_err("a in (ok, bad!)");
        assert!(e.contains("found '!', expected: ',' or ')'"), "{e}");
        let e = label_err("a in (ok, b_, -c)");
        assert!(
            e.starts_with("unable to parse requirement: [values[0][a]: Invalid value: \"-c\""),
            "{e}"
        );
        let e = label_err("é=x");
        assert!(e.contains("Invalid value"), "{e}");
    }

    #[test]
    fn label_parse_never_panics() {
        let alphabet = [
            "a", "b/", "=", "!", "(", ")", ",", " ", ">", "<", "in", "notin", "é", "1", "-", "\\",
            "\0",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let mut s = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 9) as usize;
            let mut x = seed;
            for _ in 0..len {
                s.push_str(alphabet[(x % alphabet.len() as u64) as usize]);
                x /= alphabet.len() as u64;
            }
            let _ = LabelSelector::parse(&s);
            let _ = FieldSelector::parse(&s);
        }
    }

    #[test]
    fn non_string_label_values_compare_as_text() {
        let l = labels(json!({"n": 3, "b": true}));
        assert!(sel("n=3").matches(Some(&l)));
        assert!(sel("n>2").matches(Some(&l)));
        assert!(sel("b=true").matches(Some(&l)));
    }

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn field_err(s: &str) -> String {
        match FieldSelector::parse(s) {
            Ok(v) => panic!("{s:?} should not parse, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn field_operators() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "team-a"},
            "spec": {"nodeName": "n1", "unschedulable": false, "replicas": 3},
            "status": {"phase": "Running"},
            "type": "Warning",
        });
        assert!(fsel("metadata.name=web-1").matches(&pod));
        assert!(fsel("metadata.name==web-1").matches(&pod));
        assert!(!fsel("metadata.name!=web-1").matches(&pod));
        assert!(fsel("metadata.namespace=team-a,status.phase!=Pending").matches(&pod));
        assert!(!fsel("metadata.namespace=team-a,status.phase=Pending").matches(&pod));
        assert!(fsel("type=Warning").matches(&pod));
        assert!(fsel("spec.unschedulable=false").matches(&pod));
        assert!(fsel("spec.replicas=3").matches(&pod));
        // missing fields read as ""
        assert!(fsel("spec.missing=").matches(&pod));
        assert!(fsel("involvedObject.kind=").matches(&pod));
        assert!(fsel("involvedObject.kind!=Pod").matches(&pod));
        assert!(!fsel("involvedObject.kind=Pod").matches(&pod));
        assert!(fsel("metadata.name.deeper=").matches(&pod));
        let empty = fsel("");
        assert!(empty.is_empty() && empty.matches(&pod));
        assert!(fsel(",").is_empty());
    }

    #[test]
    fn field_fields_and_exact_match() {
        let s = fsel("status.phase!=Failed,metadata.name=a");
        let fields: Vec<&str> = s.fields().collect();
        assert_eq!(fields, ["metadata.name", "status.phase"]);
        assert_eq!(s.requires_exact_match("metadata.name"), Some("a"));
        assert_eq!(s.requires_exact_match("status.phase"), None);
        // whitespace is not trimmed, as in Kubernetes (the caller rejects the odd field name)
        assert_eq!(fsel("a = b").fields().collect::<Vec<_>>(), ["a "]);
        assert_eq!(fsel("a = b").requirements()[0].value(), " b");
    }

    #[test]
    fn field_escaping() {
        let s = fsel(r"metadata.name=a\,b\=c\\d,spec.x=y");
        assert_eq!(s.requirements()[0].value(), r"a,b=c\d");
        assert!(s.matches(&json!({"metadata": {"name": "a,b=c\\d"}, "spec": {"x": "y"}})));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d,spec.x=y");
        assert_eq!(FieldSelector::parse(&s.to_string()).unwrap(), s);
        // `!=` is found before `=`: the value is "=x" only when escaped
        assert_eq!(fsel(r"a!=\=x").requirements()[0].value(), "=x");
        assert_eq!(fsel("a==b").requirements()[0].value(), "b");
        assert_eq!(fsel(r"a=b\,").requirements()[0].value(), "b,");
    }

    #[test]
    fn invalid_field_selectors() {
        assert_eq!(
            field_err("a"),
            "invalid selector: 'a'; can't understand 'a'"
        );
        assert_eq!(
            field_err("x=y,b!c"),
            "invalid selector: 'x=y,b!c'; can't understand 'b!c'"
        );
        assert_eq!(
            field_err("a=b=c"),
            "invalid field selector: unescaped character in value: ="
        );
        assert_eq!(
            field_err("a===b"),
            "invalid field selector: unescaped character in value: ="
        );
        assert_eq!(
            field_err(r"a=b\n"),
            r"invalid field selector: invalid escape sequence: \n"
        );
        assert_eq!(
            field_err(r"a=b\"),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            field_err(r"a=b\\\"),
            r"invalid field selector: invalid escape sequence: \"
        );
    }
}
