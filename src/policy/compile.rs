//! `spec.policy` JSON → [`Rules`], or every problem with its JSON path. Bounded work on any
//! input: size and nesting are measured iteratively before the tree is walked, and the walk
//! never recurses deeper than the JSON nesting it has already accepted.

use std::borrow::Cow;

use serde_json::Value;

use super::cel::{self, ParsedExpressions};
use super::eval::{Criterion, Node, Op, OpKind, PathSpan, Rules, Test};
use super::json::Json;
use super::matcher::{Fold, StringMatcher, StringOp};
use super::{MAX_CRITERIA, MAX_OPERATOR_DEPTH, MAX_POLICY_BYTES, MAX_PROBLEMS, Problem};

/// JSON nesting accepted before walking: a valid policy at the operator-depth limit needs about
/// `2 * MAX_OPERATOR_DEPTH + 6` levels; the margin lets the depth problem name the operator.
const MAX_JSON_DEPTH: usize = 2 * MAX_OPERATOR_DEPTH + 16;

const OPERATORS: [(&str, OpKind); 4] = [
    ("and", OpKind::And),
    ("or", OpKind::Or),
    ("not", OpKind::Not),
    ("nor", OpKind::Nor),
];

const CRITERIA: &str = "serviceAccount, user, email, domain, groups, claim/<path>, http_method, \
                        http_path, authenticated_user, expression";

/// Matchers for criteria whose subject is one string.
const STRING_MATCHERS: &[&str] = &["is", "starts_with", "ends_with", "contains", "in"];
/// Matchers for `claim/<path>`: one string, a number/bool as JSON text, or a list.
const CLAIM_MATCHERS: &[&str] = &["is", "starts_with", "ends_with", "contains", "in", "has"];
/// Matchers for `groups` (Pomerium's string list matcher).
const LIST_MATCHERS: &[&str] = &["has"];

/// [`compile`] of a `serde_json` value (borrowed, not copied).
pub(crate) fn compile_value(v: &Value, memo: &ParsedExpressions) -> Result<Rules, Vec<Problem>> {
    match Json::borrow(v, MAX_JSON_DEPTH) {
        Some(doc) => compile(&doc, memo),
        None => Err(vec![too_deep()]),
    }
}

pub(crate) fn compile(doc: &Json<'_>, memo: &ParsedExpressions) -> Result<Rules, Vec<Problem>> {
    measure(doc)?;
    let mut c = Compiler::default();
    let mut rules = Rules::default();
    match doc {
        Json::Null => {}
        Json::Object(m) => c.rule(m, &mut rules),
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = c.enter_index(i);
                match item {
                    Json::Object(m) => c.rule(m, &mut rules),
                    other => c.problem(format!(
                        "expected a rule (an object with `allow` and/or `deny`), found {}",
                        other.kind()
                    )),
                }
                c.leave(at);
            }
        }
        other => c.problem(format!(
            "expected an object with `allow` and/or `deny` (or a list of them), found {}",
            other.kind()
        )),
    }
    if c.criteria > MAX_CRITERIA {
        c.problem(format!(
            "policy has {} criteria; the limit is {MAX_CRITERIA}",
            c.criteria
        ));
    }
    let sources: Vec<&str> = c.expressions.iter().map(|e| e.source).collect();
    let parsed = cel::parse_all(&sources, memo);
    let mut programs = Vec::with_capacity(parsed.len());
    // Insert each expression's problems where it was written, last first so slots stay valid.
    let mut placed = Vec::new();
    for (e, result) in c.expressions.iter().zip(parsed) {
        match result {
            Ok(p) => programs.push(p),
            Err(messages) => placed.push((e.slot, e.path.clone(), messages)),
        }
    }
    for (slot, path, messages) in placed.into_iter().rev() {
        let problems = messages.into_iter().map(|message| Problem {
            path: path.clone(),
            message,
        });
        c.problems.splice(slot..slot, problems);
    }
    if !c.problems.is_empty() {
        let mut problems = c.problems;
        if problems.len() > MAX_PROBLEMS {
            let more = problems.len() - MAX_PROBLEMS;
            problems.truncate(MAX_PROBLEMS);
            problems.push(Problem {
                path: String::new(),
                message: format!("{more} more problems not shown"),
            });
        }
        return Err(problems);
    }
    rules.programs = programs;
    rules.paths = c.kept;
    // Kept for as long as the route is: without the room the pushes left (a list grown to four
    // nodes for one, a path buffer doubled as it filled).
    rules.allow.shrink_to_fit();
    rules.deny.shrink_to_fit();
    rules.paths.shrink_to_fit();
    Ok(rules)
}

/// The walk's state. The JSON path of the element being compiled is kept in one buffer, a
/// segment pushed on the way in and cut on the way out: a path becomes a string of its own only
/// in a [`Problem`], and compiled nodes keep theirs as spans of one string ([`Rules::paths`]).
#[derive(Default)]
struct Compiler<'a> {
    /// Every problem, in document order (bounded by the policy size; capped when returned).
    problems: Vec<Problem>,
    criteria: usize,
    /// Every expression that passed the pre-parse checks, in `Test::Expression` index order.
    expressions: Vec<PendingExpression<'a>>,
    /// The path of the element being compiled, relative to `spec.policy`.
    path: String,
    /// The paths of compiled nodes, one after the other (becomes [`Rules::paths`]).
    kept: String,
}

/// An expression waiting to be parsed with the others.
struct PendingExpression<'a> {
    path: String,
    source: &'a str,
    /// Where its problems go in `Compiler::problems`, to keep document order.
    slot: usize,
}

impl<'a> Compiler<'a> {
    /// A problem with the element at the current path.
    fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(Problem {
            path: self.path.clone(),
            message: message.into(),
        });
    }

    /// Descends into `key` (`a.key`, or `key` at the top); returns where to [`Self::leave`] to.
    fn enter_key(&mut self, key: &str) -> usize {
        let at = self.path.len();
        if at != 0 {
            self.path.push('.');
        }
        self.path.push_str(key);
        at
    }

    /// Descends into list element `i` (`a[i]`); returns where to [`Self::leave`] to.
    fn enter_index(&mut self, i: usize) -> usize {
        let at = self.path.len();
        self.path.push('[');
        self.path.push_str(itoa::Buffer::new().format(i));
        self.path.push(']');
        at
    }

    fn leave(&mut self, at: usize) {
        self.path.truncate(at);
    }

    /// Keeps the current path for a compiled node.
    fn keep_path(&mut self) -> PathSpan {
        let start = self.kept.len();
        self.kept.push_str(&self.path);
        PathSpan::new(start, self.kept.len())
    }

    /// `{allow: <block>, deny: <block>}` (either may be absent).
    fn rule(&mut self, m: &'a [(Cow<'a, str>, Json<'a>)], rules: &mut Rules) {
        for (key, value) in m {
            let at = self.enter_key(key);
            let target = match &**key {
                "allow" => Some(&mut rules.allow),
                "deny" => Some(&mut rules.deny),
                k if op_kind(k).is_some() => {
                    self.problem(format!(
                        "`{k}` must be inside `allow` or `deny`, as in `allow: {{{k}: [...]}}`"
                    ));
                    None
                }
                k => {
                    self.problem(format!(
                        "unknown key `{k}`; a rule has `allow` and/or `deny`"
                    ));
                    None
                }
            };
            if let Some(target) = target
                && let Some(node) = self.block(value)
            {
                target.push(node);
            }
            self.leave(at);
        }
    }

    /// The value of `allow` / `deny`: exactly one logical operator.
    fn block(&mut self, v: &'a Json<'a>) -> Option<Node> {
        let Json::Object(m) = v else {
            self.problem(format!(
                "expected one logical operator (and, or, not, nor), as in `{{or: [...]}}`; found {}",
                v.kind()
            ));
            return None;
        };
        let mut entries = m.iter();
        let (Some((key, value)), None) = (entries.next(), entries.next()) else {
            let message = if m.is_empty() {
                "empty block: expected one logical operator (and, or, not, nor)"
            } else {
                "a block takes exactly one logical operator; nest them (`and: [{or: [...]}, ...]`) \
                 or write a list of rules"
            };
            self.problem(message);
            return None;
        };
        let at = self.enter_key(key);
        let node = match op_kind(key) {
            Some(k) => self.operator(k, value, 1),
            None => {
                self.problem(format!(
                    "expected a logical operator (and, or, not, nor), found `{key}`; \
                     criteria go in its list, as in `{{or: [{{{key}: ...}}]}}`"
                ));
                None
            }
        };
        self.leave(at);
        node
    }

    /// `and` / `or` / `not` / `nor` with its list of criteria and nested operators.
    fn operator(&mut self, kind: OpKind, v: &'a Json<'a>, depth: usize) -> Option<Node> {
        if depth > MAX_OPERATOR_DEPTH {
            self.problem(format!(
                "logical operators are nested more than {MAX_OPERATOR_DEPTH} deep"
            ));
            return None;
        }
        let Json::Array(items) = v else {
            self.problem(format!(
                "expected a list of criteria and logical operators, found {}",
                v.kind()
            ));
            return None;
        };
        if items.is_empty() {
            self.problem("empty list: give at least one criterion");
            return None;
        }
        let mut children = Vec::with_capacity(items.len());
        let mut complete = true;
        for (i, item) in items.iter().enumerate() {
            let at = self.enter_index(i);
            match self.item(item, depth) {
                Some(node) => children.push(node),
                None => complete = false,
            }
            self.leave(at);
        }
        complete.then(|| {
            Node::Op(Op {
                kind,
                children,
                path: self.keep_path(),
            })
        })
    }

    /// One list element: a single-key map, either a nested operator or a criterion.
    fn item(&mut self, v: &'a Json<'a>, depth: usize) -> Option<Node> {
        let Json::Object(m) = v else {
            self.problem(format!(
                "expected a criterion such as `{{email: {{is: ...}}}}`, found {}",
                v.kind()
            ));
            return None;
        };
        let mut entries = m.iter();
        let (Some((key, value)), None) = (entries.next(), entries.next()) else {
            let message = if m.is_empty() {
                "empty criterion: expected one key such as `email` or `or`".to_owned()
            } else {
                let keys: Vec<&str> = m.iter().map(|(k, _)| &**k).take(5).collect();
                format!(
                    "a criterion has exactly one key, found {} ({}); write each as its own list item",
                    m.len(),
                    keys.join(", ")
                )
            };
            self.problem(message);
            return None;
        };
        let at = self.enter_key(key);
        let node = match op_kind(key) {
            Some(k) => self.operator(k, value, depth + 1),
            None => self.criterion(key, value).map(|test| {
                Node::Criterion(Criterion {
                    path: self.keep_path(),
                    test,
                })
            }),
        };
        self.leave(at);
        node
    }

    fn criterion(&mut self, key: &str, v: &'a Json<'a>) -> Option<Test> {
        self.criteria += 1;
        let (name, sub) = match key.split_once('/') {
            Some((n, s)) => (n, Some(s)),
            None => (key, None),
        };
        if name != "claim" && sub.is_some() {
            self.problem(format!(
                "`{name}` takes no sub-path; only `claim/<path>` does"
            ));
            return None;
        }
        let string = |c: &mut Self, fold| c.matcher(v, name, STRING_MATCHERS, fold, false);
        match name {
            "serviceAccount" => string(self, Fold::None).map(Test::ServiceAccount),
            "user" => string(self, Fold::None).map(Test::User),
            "email" => string(self, Fold::Lower).map(Test::Email),
            "domain" => string(self, Fold::Lower).map(Test::Domain),
            "http_method" => string(self, Fold::Upper).map(Test::HttpMethod),
            "http_path" => string(self, Fold::None).map(Test::HttpPath),
            "groups" => self
                .matcher(v, name, LIST_MATCHERS, Fold::None, false)
                .map(Test::Groups),
            "claim" => {
                let claim = sub.unwrap_or_default();
                if claim.is_empty() {
                    self.problem("`claim` needs a path, as in `claim/kubernetes.io.namespace`");
                    return None;
                }
                self.matcher(v, "claim", CLAIM_MATCHERS, Fold::None, true)
                    .map(|matcher| Test::Claim {
                        path: claim.to_owned(),
                        matcher,
                    })
            }
            "authenticated_user" => {
                if matches!(v, Json::Bool(true)) {
                    Some(Test::AuthenticatedUser)
                } else {
                    self.problem("`authenticated_user` takes `true`; negate it with `not`");
                    None
                }
            }
            "expression" => self.expression(v),
            _ => {
                self.problem(format!(
                    "unknown criterion `{name}`; the criteria are {CRITERIA}"
                ));
                None
            }
        }
    }

    fn expression(&mut self, v: &'a Json<'a>) -> Option<Test> {
        let Json::String(src) = v else {
            self.problem(format!(
                "expected a CEL expression (a string), found {}",
                v.kind()
            ));
            return None;
        };
        if let Err(message) = cel::check_source(src) {
            self.problem(message);
            return None;
        }
        self.expressions.push(PendingExpression {
            path: self.path.clone(),
            source: src,
            slot: self.problems.len(),
        });
        Some(Test::Expression(self.expressions.len() - 1))
    }

    /// A matcher object (`{is: x, starts_with: y}`, every operator must hold) or the shorthand
    /// of a bare value (`is` for strings and claims, `has` for groups).
    fn matcher(
        &mut self,
        v: &Json<'_>,
        criterion: &str,
        allowed: &[&str],
        fold: Fold,
        scalars: bool,
    ) -> Option<StringMatcher> {
        let m = match v {
            Json::Object(m) => m,
            v => {
                if let Some(text) = operand(v, scalars) {
                    let op = StringOp::Is(folded(fold, text));
                    return Some(StringMatcher {
                        ops: vec![op],
                        fold,
                    });
                }
                self.problem(format!(
                    "expected a matcher such as `{{{}: ...}}` or a string, found {}",
                    allowed[0],
                    v.kind()
                ));
                return None;
            }
        };
        if m.is_empty() {
            self.problem(format!("empty matcher; use one of {}", allowed.join(", ")));
            return None;
        }
        let mut ops = Vec::with_capacity(m.len());
        let before = self.problems.len();
        for (name, value) in m {
            let at = self.enter_key(name);
            if let Some(op) = self.matcher_op(name, value, criterion, allowed, fold, scalars) {
                ops.push(op);
            }
            self.leave(at);
        }
        (self.problems.len() == before).then_some(StringMatcher { ops, fold })
    }

    /// One operator of a matcher object, at the current path.
    fn matcher_op(
        &mut self,
        name: &str,
        value: &Json<'_>,
        criterion: &str,
        allowed: &[&str],
        fold: Fold,
        scalars: bool,
    ) -> Option<StringOp> {
        if !allowed.contains(&name) {
            let message = if CLAIM_MATCHERS.contains(&name) {
                format!(
                    "`{name}` does not apply to `{criterion}`; use {}",
                    allowed.join(", ")
                )
            } else {
                format!("unknown matcher `{name}`; use {}", allowed.join(", "))
            };
            self.problem(message);
            return None;
        }
        if name == "in" {
            return self.in_list(value, fold, scalars).map(StringOp::In);
        }
        let Some(text) = operand(value, scalars) else {
            self.problem(format!(
                "expected a string{}, found {}",
                if scalars { ", number or bool" } else { "" },
                value.kind()
            ));
            return None;
        };
        let text = folded(fold, text);
        let op = match name {
            "starts_with" => StringOp::StartsWith(text),
            "ends_with" => StringOp::EndsWith(text),
            "contains" => StringOp::Contains(text),
            _ => StringOp::Is(text),
        };
        if let StringOp::StartsWith(t) | StringOp::EndsWith(t) | StringOp::Contains(t) = &op
            && t.is_empty()
        {
            self.problem(format!("an empty `{name}` matches everything"));
            return None;
        }
        Some(op)
    }

    fn in_list(&mut self, v: &Json<'_>, fold: Fold, scalars: bool) -> Option<Vec<String>> {
        let Json::Array(items) = v else {
            self.problem(format!("`in` takes a list of strings, found {}", v.kind()));
            return None;
        };
        if items.is_empty() {
            self.problem("empty `in` list matches nothing");
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match operand(item, scalars) {
                Some(t) => out.push(folded(fold, t)),
                None => {
                    ok = false;
                    let at = self.enter_index(i);
                    self.problem(format!("expected a string, found {}", item.kind()));
                    self.leave(at);
                }
            }
        }
        ok.then_some(out)
    }
}

/// `text` with `fold` applied, copied at most once.
fn folded(fold: Fold, text: Cow<'_, str>) -> String {
    match fold.apply(&text) {
        Cow::Owned(s) => s,
        Cow::Borrowed(_) => text.into_owned(),
    }
}

/// A matcher operand as text: strings always; numbers and bools (as JSON text) for claims.
fn operand<'v>(v: &'v Json<'_>, scalars: bool) -> Option<Cow<'v, str>> {
    match v {
        Json::String(s) => Some(Cow::Borrowed(s)),
        Json::Bool(b) if scalars => Some(Cow::Owned(b.to_string())),
        Json::Number(n) if scalars => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

fn op_kind(key: &str) -> Option<OpKind> {
    OPERATORS.iter().find(|(k, _)| *k == key).map(|(_, o)| *o)
}

/// Refuses policies over [`MAX_POLICY_BYTES`] (as compact JSON) or nested deeper than
/// [`MAX_JSON_DEPTH`], without recursion and stopping as soon as a limit is passed.
fn measure(doc: &Json<'_>) -> Result<(), Vec<Problem>> {
    let too_big = || {
        vec![Problem {
            path: String::new(),
            message: format!("policy is larger than {MAX_POLICY_BYTES} bytes (as compact JSON)"),
        }]
    };
    let mut stack = vec![(doc, 1usize)];
    let mut size = 0usize;
    while let Some((doc, depth)) = stack.pop() {
        if depth > MAX_JSON_DEPTH {
            return Err(vec![too_deep()]);
        }
        size += match doc {
            Json::Null | Json::Bool(true) => 4,
            Json::Bool(false) => 5,
            Json::Number(n) => number_len(n),
            Json::String(s) => escaped_len(s),
            Json::Array(items) => {
                if items.len() > MAX_POLICY_BYTES {
                    return Err(too_big());
                }
                stack.extend(items.iter().map(|x| (x, depth + 1)));
                2 + items.len().saturating_sub(1)
            }
            Json::Object(m) => {
                if m.len() > MAX_POLICY_BYTES {
                    return Err(too_big());
                }
                for (k, x) in m {
                    size += escaped_len(k) + 1;
                    stack.push((x, depth + 1));
                }
                2 + m.len().saturating_sub(1)
            }
        };
        if size > MAX_POLICY_BYTES {
            return Err(too_big());
        }
    }
    Ok(())
}

/// The problem of a policy nested deeper than [`MAX_JSON_DEPTH`].
fn too_deep() -> Problem {
    Problem {
        path: String::new(),
        message: format!(
            "policy is nested more than {MAX_JSON_DEPTH} levels deep \
             (logical operators may nest {MAX_OPERATOR_DEPTH} deep)"
        ),
    }
}

/// Length of `s` as a JSON string literal, quotes included (serde_json's escaping). Only ASCII
/// bytes are escaped, so the UTF-8 length plus the escapes' extra bytes is the answer.
fn escaped_len(s: &str) -> usize {
    2 + s.len()
        + s.bytes()
            .map(|b| match b {
                b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
                b if b < 0x20 => 5,
                _ => 0,
            })
            .sum::<usize>()
}

/// Length of a number as serde_json writes it, without allocating.
fn number_len(n: &serde_json::Number) -> usize {
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail.
    let _ = std::fmt::Write::write_fmt(&mut count, format_args!("{n}"));
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn measured_size_is_the_compact_json_size() {
        let samples = [
            json!(null),
            json!({"allow": {"or": [{"email": {"is": "a\"b\\c\n\u{1}é"}}]}}),
            json!([1, 2.5, -3, true, false, "x", {}, []]),
            json!([
                1e300,
                -0.0,
                18446744073709551615u64,
                -9223372036854775808i64,
                0.1
            ]),
            json!({"\u{8}\u{c}\u{1f}\u{7f}": "ü€😀\r\u{0}/"}),
            json!({"a": {"b": [null, {"c": "\t"}]}}),
        ];
        for v in samples {
            let exact = serde_json::to_string(&v).map(|s| s.len()).unwrap_or(0);
            let mut measured = 0;
            let mut stack = vec![&v];
            while let Some(v) = stack.pop() {
                measured += match v {
                    Value::Null | Value::Bool(true) => 4,
                    Value::Bool(false) => 5,
                    Value::Number(n) => n.to_string().len(),
                    Value::String(s) => escaped_len(s),
                    Value::Array(a) => {
                        stack.extend(a.iter());
                        2 + a.len().saturating_sub(1)
                    }
                    Value::Object(m) => {
                        for (k, x) in m {
                            measured += escaped_len(k) + 1;
                            stack.push(x);
                        }
                        2 + m.len().saturating_sub(1)
                    }
                };
            }
            assert_eq!(measured, exact, "{v}");
        }
    }

    #[test]
    fn size_limit_is_exact() {
        // {"allow":{"or":[{"http_path":{"is":"/xxx"}}]}} grows with the string.
        let base = serde_json::to_string(&json!({"allow": {"or": [{"http_path": {"is": "/"}}]}}))
            .map(|s| s.len())
            .unwrap_or(0);
        let at_limit = json!({"allow": {"or": [{"http_path": {"is": format!("/{}", "x".repeat(MAX_POLICY_BYTES - base))}}]}});
        let at_limit_text = at_limit.to_string();
        assert!(Json::parse(&at_limit_text).is_ok_and(|doc| measure(&doc).is_ok()));
        let over = json!({"allow": {"or": [{"http_path": {"is": format!("/{}", "x".repeat(MAX_POLICY_BYTES - base + 1))}}]}});
        let over_text = over.to_string();
        assert!(Json::parse(&over_text).is_ok_and(|doc| measure(&doc).is_err()));
        assert!(compile_value(&over, &ParsedExpressions::default()).is_err());
    }

    /// Every node's path, depth first, as evaluation reports them.
    fn node_paths(rules: &Rules) -> Vec<&str> {
        fn walk<'r>(rules: &'r Rules, node: &Node, out: &mut Vec<&'r str>) {
            match node {
                Node::Op(op) => {
                    out.push(rules.path(op.path));
                    for child in &op.children {
                        walk(rules, child, out);
                    }
                }
                Node::Criterion(c) => out.push(rules.path(c.path)),
            }
        }
        let mut out = Vec::new();
        for node in rules.deny.iter().chain(&rules.allow) {
            walk(rules, node, &mut out);
        }
        out
    }

    #[test]
    fn nodes_keep_their_json_paths() {
        let list = json!([
            {"deny": {"or": [{"http_path": {"starts_with": "/admin"}}]}},
            {"allow": {"and": [
                {"email": "a@example.com"},
                {"not": [{"claim/kubernetes.io.namespace": {"in": ["x", 1]}}, {"expression": "true"}]}
            ]}}
        ]);
        let Ok(rules) = compile_value(&list, &ParsedExpressions::default()) else {
            panic!("valid policy refused");
        };
        assert_eq!(
            node_paths(&rules),
            [
                "[0].deny.or",
                "[0].deny.or[0].http_path",
                "[1].allow.and",
                "[1].allow.and[0].email",
                "[1].allow.and[1].not",
                "[1].allow.and[1].not[0].claim/kubernetes.io.namespace",
                "[1].allow.and[1].not[1].expression",
            ]
        );
        let object = json!({"allow": {"nor": [{"groups": "g"}, {"or": [{"user": "u"}]}]}});
        let Ok(rules) = compile_value(&object, &ParsedExpressions::default()) else {
            panic!("valid policy refused");
        };
        assert_eq!(
            node_paths(&rules),
            [
                "allow.nor",
                "allow.nor[0].groups",
                "allow.nor[1].or",
                "allow.nor[1].or[0].user"
            ]
        );
    }

    #[test]
    fn the_text_compiles_like_the_value() {
        let deep = (0..MAX_JSON_DEPTH).fold(json!(1), |v, _| json!({ "not": [v] }));
        let nested = |depth: usize| (1..depth).fold(json!("x"), |v, _| json!([v]));
        let samples = [
            json!({}),
            json!(null),
            json!({"allow": {"or": [{"email": {"is": "a@example.com"}}, {"expression": "true"}]}}),
            json!({"allow": {"or": [{"email": {"nope": 1}}, {"expression": "((("}]}}),
            json!({"deny": {"and": [{"groups": {"has": "x"}}]}, "extra": 1}),
            json!({"allow": {"or": [{"claim/n": {"in": [1, true, "é\n"]}}, {"user": 2}]}}),
            json!({"allow": deep}),
            nested(MAX_JSON_DEPTH),
            nested(MAX_JSON_DEPTH + 1),
        ];
        let result = |r: Result<Rules, Vec<Problem>>| {
            r.map(|r| (r.allow.len(), r.deny.len(), r.programs.len(), r.paths))
        };
        for v in samples {
            let text = v.to_string();
            let Ok(doc) = Json::parse(&text) else {
                panic!("{text} parses");
            };
            let memo = ParsedExpressions::default();
            assert_eq!(
                result(compile_value(&v, &memo)),
                result(compile(&doc, &memo)),
                "{text}"
            );
        }
        assert_eq!(
            compile_value(&nested(MAX_JSON_DEPTH + 1), &ParsedExpressions::default()).err(),
            Some(vec![too_deep()])
        );
    }
}
