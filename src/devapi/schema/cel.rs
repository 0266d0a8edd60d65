//! `x-kubernetes-validations` CEL rules, walked like apiextensions' `cel.Validator` (rules in
//! `allOf` branches included, null values skipped, old values correlated through object keys and
//! list-map keys, non-transition failures ratcheted on unchanged values) and evaluated one rule at
//! a time by kube-cel, whose Kubernetes function library does the CEL work. Error texts follow
//! the apiserver: `spec: Invalid value: "object": <message>`, `rule compile error: ...`,
//! `<error> evaluating rule: <rule>`.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use kube_cel::cel::common::ast::{EntryExpr, Expr};
use kube_cel::cel::{ExecutionError, IdedExpr, Program};
use kube_cel::{
    CompilationError, CompiledSchema, ErrorKind, ValidationError, Validator, compile_schema,
};
use serde_json::{Map, Value};

use super::node::Node;
use super::structural::correlate_item;
use super::{FieldError, FieldErrorKind, FieldPath, MAX_SCHEMA_DEPTH, render};

/// Longest rule or message expression compiled; longer ones are reported, not parsed.
const MAX_EXPRESSION_BYTES: usize = 64 * 1024;
/// Bracket nesting allowed in an expression (the CEL parser's own recursion limit is 96).
const MAX_EXPRESSION_NESTING: usize = 64;
/// Deepest expression tree evaluated; the interpreter recurses once per level.
const MAX_AST_DEPTH: usize = 100;
/// `celconfig.MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;
/// The CEL parser and interpreter recurse deeply (tens of KiB per level in debug builds), so
/// rules run on a thread of their own with room for the bounded expressions above.
const CEL_STACK_BYTES: usize = 64 << 20;

/// `hasXValidations`: whether the structural spine (not `allOf`) carries any rule.
pub(super) fn has_rules(s: Node<'_>, depth: usize) -> bool {
    if depth > MAX_SCHEMA_DEPTH {
        return false;
    }
    !s.rules().is_empty()
        || s.items().is_some_and(|i| has_rules(i, depth + 1))
        || s.additional_schema()
            .is_some_and(|a| has_rules(a, depth + 1))
        || s.properties()
            .is_some_and(|p| p.values().any(|v| has_rules(Node::new(v), depth + 1)))
}

/// Evaluates every rule on its own thread; a failure to run at all is an error, never a pass.
pub(super) fn validate(root: Node<'_>, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let outcome = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("crd-cel".to_string())
            .stack_size(CEL_STACK_BYTES)
            .spawn_scoped(scope, || run(root, obj, old))
            .map(|handle| handle.join())
    });
    let problem = match outcome {
        Ok(Ok(errs)) => return errs,
        Ok(Err(_)) => "internal error while evaluating validation rules".to_string(),
        Err(e) => format!("validation rules could not be evaluated: {e}"),
    };
    vec![FieldError::invalid("", render::quote(""), problem)]
}

fn run(root: Node<'_>, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let validator = Validator::new();
    let mut w = Walker {
        validator: &validator,
        update: old.is_some(),
        cache: HashMap::new(),
        errs: Vec::new(),
    };
    let at = Position {
        old,
        correlated: old.is_some(),
        anchor: false,
        root: true,
    };
    w.walk(
        root,
        vec![Source {
            schema: root,
            frozen: None,
        }],
        obj,
        at,
        &FieldPath::default(),
        0,
    );
    w.errs
}

/// A schema whose rules apply at the current node: the node itself or an `allOf` branch.
#[derive(Clone, Copy)]
struct Source<'a> {
    schema: Node<'a>,
    /// For rules reached through `allOf`: the ratcheting decision fixed where the branch began.
    frozen: Option<bool>,
}

/// Where the walk is, relative to the old object.
#[derive(Clone, Copy)]
struct Position<'o> {
    /// The correlated old value, for transition rules.
    old: Option<&'o Value>,
    /// Whether this node correlates for ratcheting.
    correlated: bool,
    /// Whether the nearest correlatable ancestor is unchanged.
    anchor: bool,
    /// Whether this is the resource root.
    root: bool,
}

struct Walker<'v> {
    validator: &'v Validator,
    update: bool,
    cache: HashMap<(usize, usize, usize), Compiled>,
    errs: Vec<FieldError>,
}

/// One rule compiled for one node schema.
enum Compiled {
    Broken(String),
    Ready(Box<Ready>),
}

struct Ready {
    compiled: CompiledSchema,
    rule: Rule,
    transition: bool,
    field_suffix: Option<String>,
}

/// The fields of a `ValidationRule` this module reads itself.
struct Rule {
    rule: String,
    message: String,
    has_message_expression: bool,
    reason: Option<String>,
    optional_old_self: bool,
}

impl Rule {
    fn parse(v: &Value) -> Option<Self> {
        let text = |k: &str| v.get(k).and_then(Value::as_str);
        Some(Self {
            rule: text("rule")?.to_string(),
            message: text("message").unwrap_or("").to_string(),
            has_message_expression: text("messageExpression").is_some_and(|m| !m.is_empty()),
            reason: text("reason").map(str::to_string),
            optional_old_self: v.get("optionalOldSelf").and_then(Value::as_bool) == Some(true),
        })
    }

    /// `ruleErrorString`.
    fn error_string(&self) -> &str {
        if self.message.is_empty() {
            self.rule.trim()
        } else {
            self.message.trim()
        }
    }

    /// `ruleMessageOrDefault`.
    fn message_or_default(&self) -> String {
        if self.message.is_empty() {
            format!("failed rule: {}", self.error_string())
        } else {
            self.message.trim().to_string()
        }
    }
}

impl<'v> Walker<'v> {
    fn walk<'s>(
        &mut self,
        node: Node<'s>,
        sources: Vec<Source<'s>>,
        v: &Value,
        at: Position<'_>,
        path: &FieldPath,
        depth: usize,
    ) {
        if v.is_null() || depth > MAX_SCHEMA_DEPTH || sources.is_empty() {
            return;
        }
        let ratchet_here = if at.correlated {
            at.old == Some(v)
        } else {
            at.anchor
        };

        let mut all = Vec::new();
        for src in sources {
            expand_all_of(src, at.anchor, &mut all, depth);
        }
        for src in &all {
            let ratchet = self.update && src.frozen.unwrap_or(ratchet_here);
            for (idx, rule) in src.schema.rules().iter().enumerate() {
                self.eval(node, src.schema, idx, rule, v, at, ratchet, path);
            }
        }

        match v {
            Value::Object(m) => self.walk_object(node, &all, m, at, ratchet_here, path, depth),
            Value::Array(items) => {
                let Some(item_node) = node.items() else {
                    return;
                };
                let srcs: Vec<Source<'s>> = all
                    .iter()
                    .filter_map(|s| {
                        s.schema.items().map(|i| Source {
                            schema: i,
                            frozen: s.frozen,
                        })
                    })
                    .collect();
                if srcs.is_empty() {
                    return;
                }
                for (i, item) in items.iter().enumerate() {
                    let old = correlate_item(node, at.old, item);
                    let child = Position {
                        old,
                        correlated: at.correlated && old.is_some(),
                        anchor: ratchet_here,
                        root: false,
                    };
                    self.walk(
                        item_node,
                        srcs.clone(),
                        item,
                        child,
                        &path.index(i),
                        depth + 1,
                    );
                }
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_object<'s>(
        &mut self,
        node: Node<'s>,
        all: &[Source<'s>],
        m: &Map<String, Value>,
        at: Position<'_>,
        ratchet_here: bool,
        path: &FieldPath,
        depth: usize,
    ) {
        let old_map = at.old.and_then(Value::as_object);
        if let Some(ap) = node.additional_schema() {
            let srcs: Vec<Source<'s>> = all
                .iter()
                .filter_map(|s| {
                    s.schema.additional_schema().map(|a| Source {
                        schema: a,
                        frozen: s.frozen,
                    })
                })
                .collect();
            if !srcs.is_empty() {
                for (k, cv) in m {
                    let old = old_map.and_then(|o| o.get(k));
                    let child = Position {
                        old,
                        correlated: at.correlated && old.is_some(),
                        anchor: ratchet_here,
                        root: false,
                    };
                    self.walk(ap, srcs.clone(), cv, child, &path.key(k), depth + 1);
                }
            }
        }
        if node.properties().is_none() {
            return;
        }
        for (k, cv) in m {
            let Some(prop) = node.property(k) else {
                continue;
            };
            let srcs: Vec<Source<'s>> = all
                .iter()
                .filter_map(|s| {
                    s.schema.property(k).map(|p| Source {
                        schema: p,
                        frozen: s.frozen,
                    })
                })
                .collect();
            if srcs.is_empty() {
                continue;
            }
            let old = old_map.and_then(|o| o.get(k));
            let type_meta = at.root && (k == "apiVersion" || k == "kind");
            let child = Position {
                old,
                correlated: at.correlated && old.is_some() && !type_meta,
                anchor: ratchet_here && !type_meta,
                root: false,
            };
            self.walk(prop, srcs, cv, child, &path.child(k), depth + 1);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn eval(
        &mut self,
        node: Node<'_>,
        src: Node<'_>,
        idx: usize,
        rule: &Value,
        v: &Value,
        at: Position<'_>,
        ratchet: bool,
        path: &FieldPath,
    ) {
        let type_value = render::quote(if at.root || node.embedded() {
            "object"
        } else {
            node.type_name()
        });
        let compiled = self
            .cache
            .entry((node.id(), src.id(), idx))
            .or_insert_with(|| compile(node, rule));
        let ready = match compiled {
            Compiled::Broken(msg) => {
                self.errs.push(FieldError::invalid(
                    path.as_str(),
                    type_value,
                    format!("rule compile error: {msg}"),
                ));
                return;
            }
            Compiled::Ready(r) => r,
        };
        if ready.transition && at.old.is_none() && !ready.rule.optional_old_self {
            return;
        }
        let old = if ready.transition { at.old } else { None };
        let validator = self.validator;
        let result = catch_unwind(AssertUnwindSafe(|| {
            validator.validate_compiled(&ready.compiled, v, old)
        }));
        let errors = match result {
            Ok(Ok(())) => return,
            Ok(Err(errors)) => errors.into_vec(),
            Err(_) => {
                self.errs.push(FieldError::invalid(
                    path.as_str(),
                    type_value,
                    format!(
                        "internal error evaluating rule: {}",
                        ready.rule.error_string()
                    ),
                ));
                return;
            }
        };
        for e in errors {
            if let Some(err) = map_error(ready, &e, path, &type_value, ratchet) {
                self.errs.push(err);
            }
        }
    }
}

/// Adds `src` and, recursively, its `allOf` branches; a branch's rules ratchet with the decision
/// of the node's nearest correlatable ancestor, as the apiserver's allOf validators do.
fn expand_all_of<'s>(src: Source<'s>, anchor: bool, out: &mut Vec<Source<'s>>, depth: usize) {
    out.push(src);
    if depth > MAX_SCHEMA_DEPTH {
        return;
    }
    for b in src.schema.branches("allOf") {
        let frozen = Some(src.frozen.unwrap_or(anchor));
        expand_all_of(Source { schema: b, frozen }, anchor, out, depth + 1);
    }
}

fn map_error(
    ready: &Ready,
    e: &ValidationError,
    path: &FieldPath,
    type_value: &str,
    ratchet: bool,
) -> Option<FieldError> {
    let rule = &ready.rule;
    let at = path.as_str();
    match e.kind {
        ErrorKind::ValidationFailure => {
            if ratchet && !ready.transition {
                return None;
            }
            let detail = resolve_message(rule, &e.message);
            let target = match &ready.field_suffix {
                Some(suffix) => path.child(suffix),
                None => path.clone(),
            };
            Some(for_reason(
                target.as_str(),
                type_value,
                detail,
                rule.reason.as_deref(),
            ))
        }
        ErrorKind::EvaluationError => {
            let cause =
                std::error::Error::source(e).and_then(|s| s.downcast_ref::<ExecutionError>());
            let detail = match cause {
                Some(c) if is_overload(c) => format!(
                    "'no such overload': call arguments did not match a supported operator, function or macro \
                     signature for rule: {}",
                    rule.error_string()
                ),
                Some(c) => format!(
                    "{} evaluating rule: {}",
                    runtime_text(c),
                    rule.error_string()
                ),
                None => format!("{} evaluating rule: {}", e.message, rule.error_string()),
            };
            Some(FieldError::invalid(at, type_value.to_string(), detail))
        }
        ErrorKind::UnsupportedReference => {
            let name = match std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<ExecutionError>())
            {
                Some(ExecutionError::UndeclaredReference(n)) => n.to_string(),
                _ => "an unknown identifier".to_string(),
            };
            Some(FieldError::invalid(
                at,
                type_value.to_string(),
                format!(
                    "rule compile error: compilation failed: undeclared reference to '{name}' \
                     (or a CEL feature this server does not implement)"
                ),
            ))
        }
        ErrorKind::InvalidResult => Some(FieldError::invalid(
            at,
            type_value.to_string(),
            "rule compile error: cel expression must evaluate to a bool".to_string(),
        )),
        _ => Some(FieldError::invalid(
            at,
            type_value.to_string(),
            format!("rule compile error: {}", e.message),
        )),
    }
}

fn is_overload(e: &ExecutionError) -> bool {
    matches!(
        e,
        ExecutionError::NoSuchOverload
            | ExecutionError::UnsupportedBinaryOperator(..)
            | ExecutionError::UnsupportedUnaryOperator(..)
            | ExecutionError::ValuesNotComparable(..)
            | ExecutionError::UnexpectedType { .. }
            | ExecutionError::UnsupportedTargetType { .. }
            | ExecutionError::NotSupportedAsMethod { .. }
    )
}

/// cel-go's wording for the runtime errors rules commonly hit.
fn runtime_text(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::DivisionByZero(_) => "division by zero".to_string(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_string(),
        ExecutionError::Overflow(..) => "integer overflow".to_string(),
        ExecutionError::FunctionError { message, .. } => message.clone(),
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

/// The detail of a failed rule: an evaluated `messageExpression` when usable, else the message.
fn resolve_message(rule: &Rule, evaluated: &str) -> String {
    let fallback = rule.message_or_default();
    if !rule.has_message_expression {
        return fallback;
    }
    // kube-cel falls back to the raw message or `failed rule: <rule>` when the expression fails.
    let kube_fallback = if rule.message.is_empty() {
        format!("failed rule: {}", rule.rule)
    } else {
        rule.message.clone()
    };
    let trimmed = evaluated.trim();
    if evaluated == kube_fallback
        || trimmed.is_empty()
        || trimmed.contains('\n')
        || trimmed.len() > MAX_MESSAGE_BYTES
    {
        fallback
    } else {
        trimmed.to_string()
    }
}

/// `fieldErrorForReason`.
fn for_reason(field: &str, type_value: &str, detail: String, reason: Option<&str>) -> FieldError {
    match reason.and_then(FieldErrorKind::from_reason) {
        Some(FieldErrorKind::Forbidden) => {
            FieldError::new(field, FieldErrorKind::Forbidden, None, detail)
        }
        Some(FieldErrorKind::Required) => FieldError::required(field, detail),
        Some(FieldErrorKind::Duplicate) => FieldError::new(
            field,
            FieldErrorKind::Duplicate,
            Some(type_value.to_string()),
            String::new(),
        ),
        _ => FieldError::invalid(field, type_value.to_string(), detail),
    }
}

/// Bracket nesting outside string literals, the parser's stack depth in practice.
fn nesting(expr: &str) -> usize {
    let (mut depth, mut max, mut quote, mut escaped) = (0usize, 0usize, None::<char>, false);
    for c in expr.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Depth of an expression tree, measured without recursion.
fn ast_depth(e: &IdedExpr) -> usize {
    let mut max = 0;
    let mut stack = vec![(e, 1usize)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        let next = d + 1;
        match &e.expr {
            Expr::Call(c) => {
                stack.extend(c.target.iter().map(|t| (t.as_ref(), next)));
                stack.extend(c.args.iter().map(|a| (a, next)));
            }
            Expr::Comprehension(c) => {
                for part in [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ] {
                    stack.push((part, next));
                }
            }
            Expr::List(l) => stack.extend(l.elements.iter().map(|x| (x, next))),
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            stack.push((&me.key, next));
                            stack.push((&me.value, next));
                        }
                        EntryExpr::StructField(sf) => stack.push((&sf.value, next)),
                    }
                }
            }
            Expr::Struct(st) => {
                for entry in &st.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            stack.push((&me.key, next));
                            stack.push((&me.value, next));
                        }
                        EntryExpr::StructField(sf) => stack.push((&sf.value, next)),
                    }
                }
            }
            Expr::Select(sel) => stack.push((&sel.operand, next)),
            _ => {}
        }
    }
    max
}

/// Bounds an expression before kube-cel sees it: size, bracket nesting and tree depth.
fn check_expression(expr: &str) -> Result<(), String> {
    if expr.len() > MAX_EXPRESSION_BYTES {
        return Err(format!(
            "expression is longer than {MAX_EXPRESSION_BYTES} bytes"
        ));
    }
    if nesting(expr) > MAX_EXPRESSION_NESTING {
        return Err("expression recursion limit exceeded".to_string());
    }
    // Parse errors are left to kube-cel, which reports them with the rule.
    if let Ok(program) = Program::compile(expr)
        && ast_depth(program.expression()) > MAX_AST_DEPTH
    {
        return Err("expression recursion limit exceeded".to_string());
    }
    Ok(())
}

fn compile(node: Node<'_>, rule_json: &Value) -> Compiled {
    let Some(rule) = Rule::parse(rule_json) else {
        return Compiled::Broken(
            "invalid rule definition: a rule must have a string `rule`".to_string(),
        );
    };
    if let Err(msg) = check_expression(&rule.rule) {
        return Compiled::Broken(msg);
    }
    if let Some(m) = rule_json.get("messageExpression").and_then(Value::as_str)
        && let Err(msg) = check_expression(m)
    {
        return Compiled::Broken(format!("messageExpression: {msg}"));
    }
    let field_suffix = rule_json
        .get("fieldPath")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .and_then(|p| normalize_field_path(p, node));

    let mut schema = strip(node, 0);
    if let Value::Object(m) = &mut schema {
        m.insert(
            "x-kubernetes-validations".to_string(),
            Value::Array(vec![rule_json.clone()]),
        );
    }
    let compiled = match catch_unwind(AssertUnwindSafe(|| compile_schema(&schema))) {
        Ok(c) => c,
        Err(_) => return Compiled::Broken("internal error compiling rule".to_string()),
    };
    let transition = match compiled.validations.first() {
        Some(Ok(cr)) => cr.is_transition_rule,
        Some(Err(CompilationError::Parse { source, .. })) => {
            return Compiled::Broken(format!("compilation failed: {source}"));
        }
        Some(Err(CompilationError::MessageExpressionParse { source, .. })) => {
            return Compiled::Broken(format!("messageExpression compilation failed: {source}"));
        }
        Some(Err(e)) => return Compiled::Broken(e.to_string()),
        None => return Compiled::Broken("rule was not compiled".to_string()),
    };
    Compiled::Ready(Box::new(Ready {
        compiled,
        rule,
        transition,
        field_suffix,
    }))
}

/// The node schema with everything kube-cel would act on besides value conversion removed:
/// nested rules (walked here instead), defaults (already applied) and value validations.
fn strip(node: Node<'_>, depth: usize) -> Value {
    let mut out = Map::new();
    if depth > MAX_SCHEMA_DEPTH {
        return Value::Object(out);
    }
    for key in [
        "type",
        "format",
        "nullable",
        "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "maxLength",
        "maxItems",
        "maxProperties",
    ] {
        if let Some(v) = node.raw(key) {
            out.insert(key.to_string(), v.clone());
        }
    }
    if let Some(props) = node.properties() {
        let stripped: Map<String, Value> = props
            .iter()
            .map(|(k, p)| (k.clone(), strip(Node::new(p), depth + 1)))
            .collect();
        out.insert("properties".to_string(), Value::Object(stripped));
    }
    if let Some(items) = node.items() {
        out.insert("items".to_string(), strip(items, depth + 1));
    }
    match node.raw("additionalProperties") {
        Some(v @ Value::Bool(_)) => {
            out.insert("additionalProperties".to_string(), v.clone());
        }
        Some(v @ Value::Object(_)) => {
            out.insert(
                "additionalProperties".to_string(),
                strip(Node::new(v), depth + 1),
            );
        }
        _ => {}
    }
    Value::Object(out)
}

/// `ValidFieldPath`: `.a.b`, `.m['key']`; returns the path below the rule's node as Kubernetes
/// renders it (`a.b`, `m[key]`), or `None` when it does not name a field of the schema.
fn normalize_field_path(p: &str, node: Node<'_>) -> Option<String> {
    let mut schema = node;
    let mut out = FieldPath::default();
    let mut rest = p;
    while !rest.is_empty() {
        let (name, after) = if let Some(r) = rest.strip_prefix("['") {
            let mut end = None;
            let bytes = r.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'\\' {
                    i += 2;
                    continue;
                }
                if bytes[i] == b'\'' {
                    end = Some(i);
                    break;
                }
                i += 1;
            }
            let end = end?;
            let after = r[end + 1..].strip_prefix(']')?;
            (unescape_single_quoted(&r[..end])?, after)
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            (r[..end].to_string(), &r[end..])
        } else {
            return None;
        };
        if schema.properties().is_some() {
            schema = schema.property(&name)?;
            out = out.child(&name);
        } else if let Some(ap) = schema.additional_schema() {
            schema = ap;
            out = out.key(&name);
        } else {
            return None;
        }
        rest = after;
    }
    (!out.as_str().is_empty()).then_some(out.0)
}

fn unescape_single_quoted(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\'' => '\'',
            '\\' => '\\',
            _ => return None,
        });
    }
    Some(out)
}
