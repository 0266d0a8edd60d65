//! The `expression` criterion: CEL (`cel` crate, standard library only) checked and parsed once
//! at compile time, evaluated per request against three variables:
//!
//! - `request`: `{method (uppercase), path, host (lowercase), headers: {lowercase name: first
//!   value}}`; credential headers (`authorization`, `proxy-authorization`, `cookie`,
//!   `x-portcullis-authorization`, `x-pomerium-authorization`) are left out, so an expression
//!   can never become an oracle for someone's token;
//! - `claims`: the identity's validated token claims (a map), `null` when unauthenticated;
//! - `identity`: `{kind: "serviceaccount"|"user"|"external", subject, email, email_verified,
//!   groups, issuer}` plus `namespace` and `name` for service accounts; `email` is the verified
//!   email (as the `email` criterion sees it) or `null`; the whole map is `null` when
//!   unauthenticated.
//!
//! Hostile expressions are bounded before and after parsing: length and bracket nesting before
//! (the parser is recursive), parsing on a thread with a large stack, then an AST check (depth,
//! known variables, no nested or chained comprehensions, few concatenations and regexes) so an
//! expression cannot blow up memory or time per request. cel-rust has no cost limit of its own.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use ::cel::common::ast::{ComprehensionExpr, EntryExpr, Expr, IdedExpr};
use ::cel::objects::{Key, Map as CelMap};
use ::cel::{Context, Env, ExecutionError, Value};

use super::eval::{email_domain, trusted_email};
use super::{Identity, IdentityKind, MAX_EXPRESSION_BYTES, MAX_EXPRESSION_NESTING, Request};

/// Deepest accepted expression tree after parsing (the evaluator recurses once per level).
const MAX_AST_DEPTH: usize = 32;
/// Most comprehension macros (`all`, `exists`, `exists_one`, `filter`, `map`) per expression.
const MAX_COMPREHENSIONS: usize = 8;
/// Most `+` operators per expression (strings and lists grow with each).
const MAX_CONCATENATIONS: usize = 64;
/// Most `matches()` calls per expression (each compiles a regex at run time).
const MAX_REGEX_CALLS: usize = 4;
/// Deepest claim nesting passed to CEL; deeper claims make the expression fail (closed).
const MAX_CLAIM_DEPTH: usize = 32;
/// Stack for the parser: the ANTLR parser needs megabytes per bracket level in debug builds.
/// Only touched pages are committed.
pub(crate) const PARSER_STACK_BYTES: usize = 64 << 20;
/// Longest error text kept (parse errors go to status conditions, run-time errors to logs).
const MAX_ERROR_CHARS: usize = 300;

const VARIABLES: [&str; 3] = ["request", "claims", "identity"];
/// Identifiers that name types or namespaces of the standard library, not variables.
const BUILTIN_IDENTS: [&str; 14] = [
    "bool",
    "bytes",
    "double",
    "duration",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "optional",
    "string",
    "timestamp",
    "type",
    "uint",
];
/// Headers that carry credentials and never reach an expression.
const HIDDEN_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-portcullis-authorization",
    "x-pomerium-authorization",
];

/// The standard CEL environment, built once; immutable, so sharing it is not global state.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A parsed and checked expression; its clones share it.
#[derive(Clone)]
pub(crate) struct CelProgram {
    expr: Arc<IdedExpr>,
}

/// What parsing and checking one source gave: the program or the problems with it.
type Parsed = Result<CelProgram, Vec<String>>;

/// The CEL sources parsed so far, with what each gave, for the policies of one compile: Routes
/// written from one template share their expressions, and parsing is most of what compiling a
/// policy costs. Threads compiling at once share it; a source two of them meet at once may be
/// parsed twice, with the same result.
#[derive(Default)]
pub struct ParsedExpressions {
    parsed: Mutex<HashMap<Box<str>, Parsed>>,
}

impl ParsedExpressions {
    fn get(&self, source: &str) -> Option<Parsed> {
        self.lock().get(source).cloned()
    }

    fn insert(&self, source: &str, parsed: &Parsed) {
        self.lock().insert(source.into(), parsed.clone());
    }

    /// A panic while the lock was held (none is expected: nothing under it can panic) left
    /// whole entries only.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Parsed>> {
        self.parsed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for ParsedExpressions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedExpressions")
            .field("sources", &self.lock().len())
            .finish()
    }
}

/// Why an expression failed at run time. Any of these makes the criterion unknown.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EvalError {
    #[error("{}", truncate(&.0.to_string()))]
    Execution(#[from] ExecutionError),
    #[error("expression returned a {0}, not a bool")]
    NotBool(String),
    #[error("expression evaluation panicked")]
    Panicked,
    #[error("claims are nested deeper than {MAX_CLAIM_DEPTH} levels")]
    ClaimsTooDeep,
}

/// The checks made before parsing: size and bracket nesting.
pub(crate) fn check_source(src: &str) -> Result<(), String> {
    if src.len() > MAX_EXPRESSION_BYTES {
        return Err(format!(
            "expression is {} bytes; the limit is {MAX_EXPRESSION_BYTES}",
            src.len()
        ));
    }
    if src.trim().is_empty() {
        return Err("expression is empty".to_owned());
    }
    let depth = nesting_depth(src);
    if depth > MAX_EXPRESSION_NESTING {
        return Err(format!(
            "expression nests brackets {depth} deep; the limit is {MAX_EXPRESSION_NESTING}"
        ));
    }
    Ok(())
}

/// Parses and checks every source (already through [`check_source`]) on a large stack, or finds
/// it in `memo`. Each result is the program or the problems with it.
///
/// On a thread with that much stack left (compile's own threads are made so) the parser runs in
/// place; elsewhere on a fresh segment of this thread's stack (stacker), not a thread of its
/// own: a compile parses the expressions of hundreds of policies, and a thread per policy cost
/// more than the parsing. A segment is mapped and unmapped per call, which makes threads
/// parsing at once wait for each other: compile's threads must not need one.
pub(crate) fn parse_all(sources: &[&str], memo: &ParsedExpressions) -> Vec<Parsed> {
    let mut found: Vec<Option<Parsed>> = sources.iter().map(|s| memo.get(s)).collect();
    if found.iter().any(Option::is_none) {
        stacker::maybe_grow(PARSER_STACK_BYTES, PARSER_STACK_BYTES, || {
            for (slot, source) in found.iter_mut().zip(sources) {
                if slot.is_none() {
                    let parsed = parse_one(source);
                    memo.insert(source, &parsed);
                    *slot = Some(parsed);
                }
            }
        });
    }
    found.into_iter().flatten().collect()
}

fn parse_one(src: &str) -> Parsed {
    let parsed = catch_unwind(|| ENV.parser().parse(src))
        .map_err(|_| vec!["the CEL parser failed on this expression".to_owned()])?;
    let expr = parsed.map_err(|e| vec![truncate(&format!("invalid CEL expression: {e}"))])?;
    let problems = check_ast(&expr);
    if problems.is_empty() {
        Ok(CelProgram {
            expr: Arc::new(expr),
        })
    } else {
        Err(problems)
    }
}

/// Runs `program`; only a bool result counts, anything else is an error.
pub(crate) fn execute(program: &CelProgram, vars: &Variables) -> Result<bool, EvalError> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        Value::resolve(&program.expr, &vars.context)
    }))
    .map_err(|_| EvalError::Panicked)?;
    match result? {
        Value::Bool(b) => Ok(b),
        other => Err(EvalError::NotBool(other.type_of().to_string())),
    }
}

/// The per-request CEL context with `request`, `claims` and `identity` bound.
pub(crate) struct Variables {
    context: Context<'static, 'static>,
}

impl Variables {
    pub(crate) fn new(identity: Option<&Identity>, req: &Request) -> Result<Variables, EvalError> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        bind(&mut context, "request", request_value(req))?;
        let (claims, ident) = match identity {
            Some(id) => (
                json_map_to_cel(&id.claims, 1)?,
                identity_value(id, trusted_email(Some(id))),
            ),
            None => (Value::Null, Value::Null),
        };
        bind(&mut context, "claims", claims)?;
        bind(&mut context, "identity", ident)?;
        Ok(Variables { context })
    }
}

fn bind(context: &mut Context<'static, 'static>, name: &str, v: Value) -> Result<(), EvalError> {
    let val: Box<dyn ::cel::common::value::Val> = v.try_into()?;
    context.add_variable_as_val(name, val);
    Ok(())
}

fn string(s: &str) -> Value {
    Value::String(Arc::new(s.to_owned()))
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let map: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_owned())), v))
        .collect();
    Value::Map(CelMap { map: Arc::new(map) })
}

fn request_value(req: &Request) -> Value {
    let mut headers: HashMap<Key, Value> = HashMap::with_capacity(req.headers.len());
    for (name, value) in req.headers {
        let name = name.to_ascii_lowercase();
        if HIDDEN_HEADERS.contains(&name.as_str()) {
            continue;
        }
        headers
            .entry(Key::String(Arc::new(name)))
            .or_insert_with(|| string(value));
    }
    map(vec![
        (
            "method",
            Value::String(Arc::new(req.method.to_ascii_uppercase())),
        ),
        ("path", string(req.path)),
        (
            "host",
            Value::String(Arc::new(req.host.to_ascii_lowercase())),
        ),
        (
            "headers",
            Value::Map(CelMap {
                map: Arc::new(headers),
            }),
        ),
    ])
}

fn identity_value(id: &Identity, email: Option<&str>) -> Value {
    let optional = |s: Option<&str>| s.map_or(Value::Null, string);
    let kind = match id.kind {
        IdentityKind::ServiceAccount { .. } => "serviceaccount",
        IdentityKind::User => "user",
        IdentityKind::External => "external",
    };
    let mut entries = vec![
        ("kind", string(kind)),
        ("subject", string(&id.subject)),
        ("email", optional(email)),
        ("email_verified", Value::Bool(id.email_verified)),
        ("domain", optional(email.and_then(email_domain))),
        (
            "groups",
            Value::List(Arc::new(id.groups.iter().map(|g| string(g)).collect())),
        ),
        ("issuer", optional(id.issuer.as_deref())),
    ];
    if let IdentityKind::ServiceAccount { namespace, name } = &id.kind {
        entries.push(("namespace", string(namespace)));
        entries.push(("name", string(name)));
    }
    map(entries)
}

fn json_map_to_cel(
    m: &serde_json::Map<String, serde_json::Value>,
    depth: usize,
) -> Result<Value, EvalError> {
    if depth > MAX_CLAIM_DEPTH {
        return Err(EvalError::ClaimsTooDeep);
    }
    let mut out = HashMap::with_capacity(m.len());
    for (k, v) in m {
        out.insert(Key::String(Arc::new(k.clone())), json_to_cel(v, depth + 1)?);
    }
    Ok(Value::Map(CelMap { map: Arc::new(out) }))
}

fn json_to_cel(v: &serde_json::Value, depth: usize) -> Result<Value, EvalError> {
    use serde_json::Value as J;
    if depth > MAX_CLAIM_DEPTH {
        return Err(EvalError::ClaimsTooDeep);
    }
    Ok(match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            (None, None) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => string(s),
        J::Array(items) => Value::List(Arc::new(
            items
                .iter()
                .map(|x| json_to_cel(x, depth + 1))
                .collect::<Result<_, _>>()?,
        )),
        J::Object(m) => json_map_to_cel(m, depth)?,
    })
}

/// Deepest nesting of `()`, `[]`, `{}` outside string literals and `//` comments. A rough
/// lexer: it only has to be exact for expressions the parser accepts.
fn nesting_depth(src: &str) -> usize {
    let b = src.as_bytes();
    let (mut i, mut depth, mut max) = (0, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            q @ (b'"' | b'\'') => {
                let raw = is_raw_prefix(b, i);
                let triple = b[i..].starts_with(&[q, q, q]);
                i += if triple { 3 } else { 1 };
                loop {
                    match b.get(i) {
                        None => return max,
                        Some(b'\\') if !raw => i += 2,
                        Some(&c) if c == q && (!triple || b[i..].starts_with(&[q, q, q])) => {
                            i += if triple { 3 } else { 1 };
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// Whether the quote at `i` opens a raw string (`r"…"`, `R'…'`, `br"…"`, `rb"…"`).
fn is_raw_prefix(b: &[u8], i: usize) -> bool {
    let prefix_start = b[..i]
        .iter()
        .rposition(|c| !matches!(c, b'r' | b'R' | b'b' | b'B'))
        .map_or(0, |p| p + 1);
    let prefix = &b[prefix_start..i];
    let standalone = prefix_start == 0 || {
        let c = b[prefix_start - 1];
        !(c.is_ascii_alphanumeric() || c == b'_')
    };
    standalone && prefix.len() <= 2 && prefix.iter().any(|c| matches!(c, b'r' | b'R'))
}

/// A node still to visit in [`check_ast`].
struct Item<'e> {
    e: &'e IdedExpr,
    depth: usize,
    in_comprehension: bool,
    /// The comprehension whose variables are in scope.
    scope: Option<&'e ComprehensionExpr>,
}

/// The checks made after parsing: tree depth, variables, and what bounds the cost of a run.
fn check_ast(root: &IdedExpr) -> Vec<String> {
    let mut problems = Vec::new();
    let (mut too_deep, mut nested, mut regex_in_loop) = (false, false, false);
    let (mut comprehensions, mut concatenations, mut regexes) = (0, 0, 0);
    let mut unknown: Vec<&str> = Vec::new();
    let mut stack = vec![Item {
        e: root,
        depth: 1,
        in_comprehension: false,
        scope: None,
    }];
    while let Some(it) = stack.pop() {
        if it.depth > MAX_AST_DEPTH {
            too_deep = true;
            continue;
        }
        let depth = it.depth + 1;
        let inherit = |e| Item {
            e,
            depth,
            in_comprehension: it.in_comprehension,
            scope: it.scope,
        };
        let first_child = stack.len();
        match &it.e.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => {
                let bound = it.scope.is_some_and(|c| {
                    *name == c.iter_var
                        || *name == c.accu_var
                        || c.iter_var2.as_deref() == Some(name.as_str())
                });
                let known = name.starts_with('@')
                    || bound
                    || VARIABLES.contains(&name.as_str())
                    || BUILTIN_IDENTS.contains(&name.as_str());
                if !known && !unknown.contains(&name.as_str()) {
                    unknown.push(name);
                }
            }
            Expr::Call(call) => {
                // Macro expansions append to their accumulator (`@result + [x]`): not the author's.
                let generated = matches!(
                    call.args.first().map(|a| &a.expr),
                    Some(Expr::Ident(n)) if n.starts_with('@')
                );
                if call.func_name == "_+_" && !generated {
                    concatenations += 1;
                }
                if call.func_name == "matches" {
                    regexes += 1;
                    regex_in_loop |= it.in_comprehension;
                }
                stack.extend(call.target.as_deref().map(inherit));
                stack.extend(call.args.iter().map(inherit));
            }
            Expr::Comprehension(c) => {
                comprehensions += 1;
                nested |= it.in_comprehension;
                for (e, scope) in [
                    (&c.iter_range, it.scope),
                    (&c.accu_init, it.scope),
                    (&c.loop_cond, Some(&**c)),
                    (&c.loop_step, Some(&**c)),
                    (&c.result, Some(&**c)),
                ] {
                    stack.push(Item {
                        e,
                        depth,
                        in_comprehension: true,
                        scope,
                    });
                }
            }
            Expr::List(list) => stack.extend(list.elements.iter().map(inherit)),
            Expr::Map(m) => {
                for entry in &m.entries {
                    stack.extend(entry_children(&entry.expr).map(inherit));
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    stack.extend(entry_children(&entry.expr).map(inherit));
                }
            }
            Expr::Select(s) => stack.push(inherit(&s.operand)),
        }
        // Visit children in source order, so problems name variables as written.
        stack[first_child..].reverse();
    }
    if too_deep {
        problems.push(format!(
            "expression is nested more than {MAX_AST_DEPTH} levels deep"
        ));
    }
    if !unknown.is_empty() {
        problems.push(format!(
            "unknown variable{} {}; the variables are request, claims and identity",
            if unknown.len() == 1 { "" } else { "s" },
            unknown
                .iter()
                .take(5)
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if nested {
        problems.push(
            "comprehensions (all, exists, exists_one, filter, map) cannot be nested or chained; \
             use `in` for membership"
                .to_owned(),
        );
    }
    if comprehensions > MAX_COMPREHENSIONS {
        problems.push(format!(
            "expression has {comprehensions} comprehensions; the limit is {MAX_COMPREHENSIONS}"
        ));
    }
    if concatenations > MAX_CONCATENATIONS {
        problems.push(format!(
            "expression has {concatenations} `+` operators; the limit is {MAX_CONCATENATIONS}"
        ));
    }
    if regexes > MAX_REGEX_CALLS {
        problems.push(format!(
            "expression calls matches() {regexes} times; the limit is {MAX_REGEX_CALLS}"
        ));
    }
    if regex_in_loop {
        problems.push("matches() cannot be used inside a comprehension".to_owned());
    }
    problems
}

fn entry_children(entry: &EntryExpr) -> impl Iterator<Item = &IdedExpr> {
    let (first, second) = match entry {
        EntryExpr::StructField(field) => (&field.value, None),
        EntryExpr::MapEntry(e) => (&e.key, Some(&e.value)),
    };
    std::iter::once(first).chain(second)
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_ignores_strings_and_comments() {
        assert_eq!(nesting_depth("f(a[1], {2: (3)})"), 3);
        assert_eq!(nesting_depth(r#"")))))" + ((1))"#), 2);
        assert_eq!(nesting_depth(r#""\"(((" + (1)"#), 1);
        assert_eq!(nesting_depth("'''a ' (( '''+(1)"), 1);
        assert_eq!(nesting_depth("r'\\' + (1)"), 1);
        assert_eq!(nesting_depth("// ((((\n(1)"), 1);
        // Closing brackets in a string cannot hide real opening ones.
        let hidden = format!("{}\"{}\"{}1", "(".repeat(30), ")".repeat(30), "(".repeat(5));
        assert_eq!(nesting_depth(&hidden), 35);
    }

    #[test]
    fn raw_prefix_detection() {
        assert!(is_raw_prefix(b"r'", 1));
        assert!(is_raw_prefix(b"x + br'", 6));
        assert!(is_raw_prefix(b"Rb'", 2));
        assert!(!is_raw_prefix(b"b'", 1));
        assert!(!is_raw_prefix(b"bar'", 3));
        assert!(!is_raw_prefix(b"'", 0));
    }

    fn problems(src: &str) -> Vec<String> {
        match parse_all(&[src], &ParsedExpressions::default()).pop() {
            Some(Err(p)) => p,
            Some(Ok(_)) => Vec::new(),
            None => vec!["no result".to_owned()],
        }
    }

    #[test]
    fn a_source_is_parsed_once_per_memo() {
        let memo = ParsedExpressions::default();
        let ok = "request.method == 'GET'";
        let first = parse_all(&[ok, "1 +"], &memo);
        let again = parse_all(&["1 +", ok, ok], &memo);
        assert_eq!(memo.lock().len(), 2);
        match (&first[0], &again[1], &again[2]) {
            (Ok(a), Ok(b), Ok(c)) => {
                assert!(Arc::ptr_eq(&a.expr, &b.expr) && Arc::ptr_eq(&b.expr, &c.expr));
            }
            _ => panic!("`{ok}` should parse"),
        }
        let (Err(bad), Err(bad_again)) = (&first[1], &again[0]) else {
            panic!("`1 +` should not parse");
        };
        assert!(bad[0].starts_with("invalid CEL expression"), "{bad:?}");
        assert_eq!(bad, bad_again);
        // Another memo parses afresh: nothing outlives the compile that made it.
        let Some(Ok(kept)) = memo.get(ok) else {
            panic!("`{ok}` should be kept");
        };
        let other = parse_all(&[ok], &ParsedExpressions::default());
        assert!(matches!(&other[0], Ok(p) if !Arc::ptr_eq(&p.expr, &kept.expr)));
    }

    #[test]
    fn ast_checks() {
        assert!(problems("request.method == 'GET' && claims.iss == 'x'").is_empty());
        assert!(problems("identity.groups.exists(g, g in ['a', 'b'])").is_empty());
        assert!(problems("[1, 2].map(x, x * 2).size() == 2").is_empty());
        let chained = problems("[1, 2].map(x, x * 2).exists(y, y == 4)");
        assert!(chained.iter().any(|p| p.contains("chained")), "{chained:?}");
        assert!(
            problems("[1].all(x, [2].exists(y, x == y))")
                .iter()
                .any(|p| p.contains("nested"))
        );
        assert!(
            problems("foo == 1 && bar")
                .iter()
                .any(|p| p.contains("`foo`, `bar`"))
        );
        assert!(problems("type(claims.x) == string").is_empty());
        let many = ["[1].exists(x, x == 1)"; MAX_COMPREHENSIONS + 1].join(" || ");
        assert!(problems(&many).iter().any(|p| p.contains("comprehensions")));
        // A balanced sum of n strings has n - 1 `+` and stays shallow.
        fn sum(n: usize) -> String {
            if n == 1 {
                "'a'".to_owned()
            } else {
                format!("({} + {})", sum(n / 2), sum(n - n / 2))
            }
        }
        assert!(problems(&format!("{} != ''", sum(MAX_CONCATENATIONS + 1))).is_empty());
        let plus = problems(&format!("{} != ''", sum(MAX_CONCATENATIONS + 2)));
        assert!(plus.iter().any(|p| p.contains("65 `+`")), "{plus:?}");
        assert!(
            problems("['a'].exists(x, x.matches('a+'))")
                .iter()
                .any(|p| p.contains("matches"))
        );
        let regex = ["'a'.matches('a')"; MAX_REGEX_CALLS + 1].join(" || ");
        assert!(problems(&regex).iter().any(|p| p.contains("matches")));
        let deep = format!("1{} == 1", " - 1".repeat(MAX_AST_DEPTH + 1));
        assert!(problems(&deep).iter().any(|p| p.contains("levels deep")));
        assert!(
            problems("1 +")
                .iter()
                .any(|p| p.starts_with("invalid CEL expression"))
        );
    }

    #[test]
    fn expressions_at_the_depth_limit_evaluate() {
        // Debug builds need far more stack per level than release ones; give this test room.
        let run = || {
            let chain = format!("1{} == 1", " * 1".repeat(MAX_AST_DEPTH - 2));
            let program = match parse_all(&[chain.as_str()], &ParsedExpressions::default()).pop() {
                Some(Ok(p)) => p,
                other => return Err(format!("{:?}", other.map(|r| r.err()))),
            };
            let req = Request {
                method: "GET",
                path: "/",
                host: "h",
                headers: &[],
            };
            let vars = Variables::new(None, &req).map_err(|e| e.to_string())?;
            execute(&program, &vars).map_err(|e| e.to_string())
        };
        let outcome = std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(run)
            .map(|h| h.join());
        assert!(matches!(outcome, Ok(Ok(Ok(true)))), "{outcome:?}");
        let over = format!("1{} == 1", " * 1".repeat(MAX_AST_DEPTH));
        assert!(problems(&over).iter().any(|p| p.contains("levels deep")));
    }
}
