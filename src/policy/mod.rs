//! Route authorization policies: a Pomerium-PPL-like tree of `allow` / `deny` blocks over
//! criteria (`serviceAccount`, `user`, `email`, `domain`, `groups`, `claim/<path>`,
//! `http_method`, `http_path`, `authenticated_user`, `expression` in CEL).
//!
//! The controller calls [`Policy::compile`] on a Route's `spec.policy` (arbitrary JSON) and turns
//! the [`Problem`]s into a status condition; the proxy calls [`Policy::evaluate`] once per request
//! with the authenticated [`Identity`] and the canonical [`Request`]. Everything here works on
//! plain domain types: no Kubernetes, no I/O, no clock.
//!
//! ```text
//! spec.policy (JSON) ── compile ──► Policy (tree + parsed CEL, Arc) ── evaluate ──► Decision
//!                          └─► Vec<Problem> {path: "allow.or[2].email", message}
//! ```
//!
//! Semantics, in Pomerium's terms where Pomerium has one:
//!
//! - A policy is `{allow: <block>, deny: <block>}` (either optional) or a list of such rules.
//!   Each block is exactly one logical operator over a non-empty list of criteria and nested
//!   operators. Blocks of the same action are OR-ed. Deny wins; no matching allow denies; `null`,
//!   `{}` and `[]` deny everyone.
//! - `and`: all true; `or`: one true; `not`: none true (¬A ∧ ¬B); `nor`: not all true
//!   (¬A ∨ ¬B). `not`/`nor` are Pomerium's, whose names are swapped from Boolean algebra's.
//! - Evaluation is three-valued: a CEL error is *unknown*; `and`/`or` short-circuit only on a
//!   decisive value and `not`/`nor` keep unknown unknown. An unknown allow never grants and an
//!   unknown deny denies, both as [`DenyReason::EvaluationError`].
//! - Matchers: `is`, `starts_with`, `ends_with`, `contains`, `in` (a list), `has` (an element of
//!   a list); several in one object must all hold. A bare value is shorthand for `is` (`has` for
//!   `groups`). `email` and `domain` fold ASCII case, `http_method` compares uppercase.
//! - `serviceAccount` (`namespace/name`) matches credentials only, `user` (the subject) people
//!   from the IdP only, `email` / `domain` a verified email (a service account's is trusted as
//!   Portcullis sets it), `groups` takes `has` only, `authenticated_user` takes `true`.
//! - `claim/<path>` follows the longest key at each level (see `matcher.rs`); strings, numbers and
//!   bools (as JSON text) match with string matchers, lists when one element does.
//! - `expression` is CEL, see `cel.rs` for its variables and limits.

mod cel;
mod compile;
mod eval;
mod json;
mod matcher;

pub(crate) use cel::PARSER_STACK_BYTES;
pub use cel::ParsedExpressions;
pub(crate) use json::Json;
pub use matcher::{lookup_claim, scalar_text};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

/// Largest accepted policy, measured as compact JSON.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Deepest accepted nesting of logical operators (`allow: {or: [...]}` is depth 1).
pub const MAX_OPERATOR_DEPTH: usize = 16;
/// Most criteria accepted in one policy.
pub const MAX_CRITERIA: usize = 256;
/// Longest accepted CEL expression, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 2048;
/// Deepest accepted nesting of `()`, `[]` and `{}` in a CEL expression (outside string
/// literals and comments), checked before the expression is parsed.
pub const MAX_EXPRESSION_NESTING: usize = 32;
/// Most problems reported for one policy; the rest are summarized in one last problem.
pub const MAX_PROBLEMS: usize = 50;

/// Who is making the request, as established by the proxy's authentication step.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// What kind of principal this is.
    pub kind: IdentityKind,
    /// The subject (`sub`): the IdP user id for people, `serviceaccount:<ns>/<name>` for
    /// credentials, the external issuer's `sub` for external JWTs.
    pub subject: String,
    /// The email address, if any (see `email_verified`).
    pub email: Option<String>,
    /// Whether the identity provider verified `email`. Email and domain criteria ignore an
    /// unverified email of a person or an external identity.
    pub email_verified: bool,
    /// Group ids or names, as the identity provider reports them.
    pub groups: Vec<String>,
    /// All validated token claims.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The token issuer (`iss`), if known.
    pub issuer: Option<String>,
}

/// The kind of principal behind an [`Identity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityKind {
    /// A `ServiceAccountCredential` (`namespace/name`).
    ServiceAccount {
        /// The credential's namespace.
        namespace: String,
        /// The credential's name.
        name: String,
    },
    /// A person signed in through the configured identity provider.
    User,
    /// A bearer JWT from one of the configured external `identityProviders`.
    External,
}

/// The parts of an HTTP request a policy may look at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The request method, in any case.
    pub method: &'a str,
    /// The canonical path (already normalized by the proxy, no query string).
    pub path: &'a str,
    /// The request host, without port.
    pub host: &'a str,
    /// Request headers with lowercase names, in arrival order.
    pub headers: &'a [(String, String)],
}

/// A compiled, immutable route policy. Cloning is cheap (one `Arc`); `Send + Sync`.
#[derive(Clone)]
pub struct Policy {
    rules: Arc<eval::Rules>,
}

/// One thing wrong with a policy, with the JSON path of the offending element relative to
/// `spec.policy` (for example `allow.or[2].email`; empty for the policy itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", if path.is_empty() { "policy" } else { path.as_str() })]
pub struct Problem {
    /// Where the problem is, such as `deny.or[0].http_path.starts_with`.
    pub path: String,
    /// What is wrong, for people.
    pub message: String,
}

/// The outcome of evaluating a policy for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An allow rule matched and no deny rule did.
    Allow,
    /// Anything else.
    Deny {
        /// Why, for the access log (never for the client).
        reason: DenyReason,
    },
}

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No allow rule matched (always the case for the empty policy).
    NoMatch,
    /// A deny rule matched; `rule` is the path of the criterion (or operator) that made it match.
    Denied {
        /// Path of the matching deny criterion, such as `deny.or[0].http_path`.
        rule: String,
    },
    /// A CEL expression the decision depended on failed; the request is denied.
    EvaluationError {
        /// Path of the failing expression, such as `allow.or[5].expression`.
        rule: String,
        /// What went wrong, for the log.
        error: String,
    },
}

impl Policy {
    /// Compiles `spec.policy`. `null`, `{}` and `[]` give the empty policy, which denies
    /// everyone. Returns every problem found (up to [`MAX_PROBLEMS`]), each with its path.
    /// CEL expressions are parsed and checked here, once.
    pub fn compile(v: &serde_json::Value) -> Result<Policy, Vec<Problem>> {
        let memo = ParsedExpressions::default();
        Self::from_rules(compile::compile_value(v, &memo))
    }

    /// [`Policy::compile`], with the CEL expressions parsed through `memo` (see
    /// [`Policy::compile_json`]).
    pub(crate) fn compile_with(
        v: &serde_json::Value,
        memo: &ParsedExpressions,
    ) -> Result<Policy, Vec<Problem>> {
        Self::from_rules(compile::compile_value(v, memo))
    }

    /// [`Policy::compile`] of a document as [`Json`] holds it (a Route's `spec.policy`, its
    /// strings borrowed from the text the Route keeps). Same result, same problems.
    /// Expressions already in `memo` are not parsed again; those parsed are added to it.
    pub(crate) fn compile_json(
        doc: &Json<'_>,
        memo: &ParsedExpressions,
    ) -> Result<Policy, Vec<Problem>> {
        Self::from_rules(compile::compile(doc, memo))
    }

    fn from_rules(rules: Result<eval::Rules, Vec<Problem>>) -> Result<Policy, Vec<Problem>> {
        rules.map(|rules| Policy {
            rules: Arc::new(rules),
        })
    }

    /// The policy that denies every request (what a route gets when its policy is invalid).
    pub fn deny_all() -> Policy {
        Policy {
            rules: Arc::new(eval::Rules::default()),
        }
    }

    /// Evaluates the policy for `identity` (`None` = unauthenticated) and `req`. Never panics;
    /// never allows on an error.
    pub fn evaluate(&self, identity: Option<&Identity>, req: &Request) -> Decision {
        self.rules.evaluate(identity, req)
    }

    /// Whether evaluation may read [`Request::headers`] (only CEL expressions do), so callers
    /// can pass an empty list otherwise and save collecting the headers.
    pub fn reads_headers(&self) -> bool {
        !self.rules.programs.is_empty()
    }

    /// Whether an allow rule names people: `user`, `email`, `domain`, `groups` or
    /// `authenticated_user` (claims and expressions can match anyone, so they do not count).
    pub fn admits_people(&self) -> bool {
        fn names_people(node: &eval::Node) -> bool {
            match node {
                eval::Node::Op(op) => op.children.iter().any(names_people),
                eval::Node::Criterion(c) => matches!(
                    c.test,
                    eval::Test::User(_)
                        | eval::Test::Email(_)
                        | eval::Test::Domain(_)
                        | eval::Test::Groups(_)
                        | eval::Test::AuthenticatedUser
                ),
            }
        }
        self.rules.allow.iter().any(names_people)
    }

    /// Whether the policy has no rule at all (and so denies everyone).
    pub fn is_empty(&self) -> bool {
        self.rules.allow.is_empty() && self.rules.deny.is_empty()
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("allow_blocks", &self.rules.allow.len())
            .field("deny_blocks", &self.rules.deny.len())
            .field("expressions", &self.rules.programs.len())
            .finish()
    }
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

impl DenyReason {
    /// A short, fixed label for metrics and log fields.
    pub fn label(&self) -> &'static str {
        match self {
            DenyReason::NoMatch => "no_match",
            DenyReason::Denied { .. } => "denied",
            DenyReason::EvaluationError { .. } => "evaluation_error",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NoMatch => f.write_str("no allow rule matched"),
            DenyReason::Denied { rule } => write!(f, "denied by {rule}"),
            DenyReason::EvaluationError { rule, error } => {
                write!(f, "evaluation of {rule} failed: {error}")
            }
        }
    }
}
