//! The compiled policy tree and its evaluation in three-valued (Kleene) logic: a criterion is
//! true, false, or unknown (a CEL error). Unknown never grants and always denies. Built by
//! `compile.rs`, run by [`super::Policy::evaluate`].

use std::cell::OnceCell;

use super::cel::{self, CelProgram, Variables};
use super::matcher::{self, StringMatcher};
use super::{Decision, DenyReason, Identity, IdentityKind, Request};

/// A compiled policy: allow blocks and deny blocks (each list is OR-ed), plus the parsed CEL
/// programs that `Test::Expression` criteria point into.
#[derive(Default)]
pub(crate) struct Rules {
    pub(crate) allow: Vec<Node>,
    pub(crate) deny: Vec<Node>,
    pub(crate) programs: Vec<CelProgram>,
    /// The JSON paths of the nodes, one after the other; each node holds its [`PathSpan`].
    pub(crate) paths: String,
}

/// Where a node's JSON path is in [`Rules::paths`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathSpan {
    start: u32,
    end: u32,
}

impl PathSpan {
    /// The span `start..end`. Policies are at most `MAX_POLICY_BYTES` of JSON, so their paths
    /// stay far below `u32::MAX` bytes; an offset that does not fit gives the empty path.
    pub(crate) fn new(start: usize, end: usize) -> PathSpan {
        match (u32::try_from(start), u32::try_from(end)) {
            (Ok(start), Ok(end)) => PathSpan { start, end },
            _ => PathSpan { start: 0, end: 0 },
        }
    }
}

/// A node of the tree: a logical operator or a criterion.
pub(crate) enum Node {
    Op(Op),
    Criterion(Criterion),
}

/// `and`, `or`, `not` (none is true) or `nor` (not all are true) over a non-empty list.
pub(crate) struct Op {
    pub(crate) kind: OpKind,
    pub(crate) children: Vec<Node>,
    pub(crate) path: PathSpan,
}

/// The four PPL logical operators, with Pomerium's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// All are true.
    And,
    /// At least one is true.
    Or,
    /// None is true: ¬A ∧ ¬B (Pomerium's `not`).
    Not,
    /// Not all are true: ¬A ∨ ¬B (Pomerium's `nor`).
    Nor,
}

/// One criterion and the path where it was written.
pub(crate) struct Criterion {
    pub(crate) path: PathSpan,
    pub(crate) test: Test,
}

/// What a criterion checks.
pub(crate) enum Test {
    ServiceAccount(StringMatcher),
    User(StringMatcher),
    Email(StringMatcher),
    Domain(StringMatcher),
    Groups(StringMatcher),
    Claim {
        path: String,
        matcher: StringMatcher,
    },
    HttpMethod(StringMatcher),
    HttpPath(StringMatcher),
    AuthenticatedUser,
    /// Index into [`Rules::programs`].
    Expression(usize),
}

/// The value of a subtree. `True` carries the path that made it true (for deny reasons).
enum Truth<'p> {
    True(&'p str),
    False,
    Unknown { rule: &'p str, error: String },
}

/// Per-request inputs; the CEL variables are built at most once, on first use.
struct Input<'a> {
    identity: Option<&'a Identity>,
    req: &'a Request<'a>,
    vars: OnceCell<Result<Variables, String>>,
}

impl Rules {
    /// The JSON path a node was written at.
    pub(crate) fn path(&self, span: PathSpan) -> &str {
        self.paths
            .get(span.start as usize..span.end as usize)
            .unwrap_or_default()
    }

    pub(crate) fn evaluate(&self, identity: Option<&Identity>, req: &Request) -> Decision {
        let input = Input {
            identity,
            req,
            vars: OnceCell::new(),
        };
        match self.any(&self.deny, &input) {
            Truth::True(rule) => {
                return Decision::Deny {
                    reason: DenyReason::Denied {
                        rule: rule.to_owned(),
                    },
                };
            }
            Truth::Unknown { rule, error } => {
                return Decision::Deny {
                    reason: DenyReason::EvaluationError {
                        rule: rule.to_owned(),
                        error,
                    },
                };
            }
            Truth::False => {}
        }
        match self.any(&self.allow, &input) {
            Truth::True(_) => Decision::Allow,
            Truth::False => Decision::Deny {
                reason: DenyReason::NoMatch,
            },
            Truth::Unknown { rule, error } => Decision::Deny {
                reason: DenyReason::EvaluationError {
                    rule: rule.to_owned(),
                    error,
                },
            },
        }
    }

    /// OR over blocks: true if one is true, else unknown if one is unknown, else false.
    fn any<'p>(&'p self, nodes: &'p [Node], input: &Input) -> Truth<'p> {
        let mut unknown = None;
        for node in nodes {
            match self.node(node, input) {
                Truth::True(w) => return Truth::True(w),
                Truth::False => {}
                u @ Truth::Unknown { .. } => {
                    unknown.get_or_insert(u);
                }
            }
        }
        unknown.unwrap_or(Truth::False)
    }

    /// AND over nodes: false if one is false, else unknown if one is unknown, else true.
    fn all<'p>(&'p self, nodes: &'p [Node], input: &Input) -> Truth<'p> {
        let mut unknown = None;
        let mut witness = "";
        for node in nodes {
            match self.node(node, input) {
                Truth::True(w) => witness = w,
                Truth::False => return Truth::False,
                u @ Truth::Unknown { .. } => {
                    unknown.get_or_insert(u);
                }
            }
        }
        unknown.unwrap_or(Truth::True(witness))
    }

    fn node<'p>(&'p self, node: &'p Node, input: &Input) -> Truth<'p> {
        match node {
            Node::Criterion(c) => self.criterion(c, input),
            Node::Op(op) => {
                let own = self.path(op.path);
                match op.kind {
                    OpKind::Or => self.any(&op.children, input),
                    OpKind::And => match self.all(&op.children, input) {
                        // One child: its path says more; several: the `and` itself matched.
                        Truth::True(w) if op.children.len() == 1 => Truth::True(w),
                        Truth::True(_) => Truth::True(own),
                        other => other,
                    },
                    OpKind::Not => negate(self.any(&op.children, input), own),
                    OpKind::Nor => negate(self.all(&op.children, input), own),
                }
            }
        }
    }

    fn criterion<'p>(&'p self, c: &'p Criterion, input: &Input) -> Truth<'p> {
        let path = self.path(c.path);
        let hit = match &c.test {
            Test::Expression(i) => return self.expression(*i, path, input),
            Test::AuthenticatedUser => input.identity.is_some(),
            Test::HttpMethod(m) => m.matches(input.req.method),
            Test::HttpPath(m) => m.matches(input.req.path),
            Test::ServiceAccount(m) => match input.identity.map(|i| &i.kind) {
                Some(IdentityKind::ServiceAccount { namespace, name }) => {
                    m.matches(&format!("{namespace}/{name}"))
                }
                _ => false,
            },
            Test::User(m) => match input.identity {
                Some(id) if id.kind == IdentityKind::User => m.matches(&id.subject),
                _ => false,
            },
            Test::Email(m) => trusted_email(input.identity).is_some_and(|e| m.matches(e)),
            Test::Domain(m) => trusted_email(input.identity)
                .and_then(email_domain)
                .is_some_and(|d| m.matches(d)),
            Test::Groups(m) => input
                .identity
                .is_some_and(|id| id.groups.iter().any(|g| m.matches(g))),
            Test::Claim { path, matcher } => input
                .identity
                .and_then(|id| matcher::lookup_claim(&id.claims, path))
                .is_some_and(|v| matcher.matches_claim(v)),
        };
        if hit { Truth::True(path) } else { Truth::False }
    }

    fn expression<'p>(&'p self, index: usize, path: &'p str, input: &Input) -> Truth<'p> {
        let Some(program) = self.programs.get(index) else {
            return Truth::Unknown {
                rule: path,
                error: "internal error: missing compiled expression".to_owned(),
            };
        };
        let vars = input
            .vars
            .get_or_init(|| Variables::new(input.identity, input.req).map_err(|e| e.to_string()));
        let vars = match vars {
            Ok(v) => v,
            Err(e) => {
                return Truth::Unknown {
                    rule: path,
                    error: e.clone(),
                };
            }
        };
        match cel::execute(program, vars) {
            Ok(true) => Truth::True(path),
            Ok(false) => Truth::False,
            Err(e) => Truth::Unknown {
                rule: path,
                error: e.to_string(),
            },
        }
    }
}

fn negate<'p>(t: Truth<'p>, own: &'p str) -> Truth<'p> {
    match t {
        Truth::True(_) => Truth::False,
        Truth::False => Truth::True(own),
        u @ Truth::Unknown { .. } => u,
    }
}

/// The email that email and domain criteria may trust: a service account's as is (Portcullis
/// sets it), anyone else's only when the identity provider verified it.
pub(crate) fn trusted_email(identity: Option<&Identity>) -> Option<&str> {
    let id = identity?;
    let email = id.email.as_deref().filter(|e| !e.is_empty())?;
    match id.kind {
        IdentityKind::ServiceAccount { .. } => Some(email),
        IdentityKind::User | IdentityKind::External => id.email_verified.then_some(email),
    }
}

/// The part after the last `@`, if both sides are non-empty.
pub(crate) fn email_domain(email: &str) -> Option<&str> {
    let (local, domain) = email.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then_some(domain)
}
