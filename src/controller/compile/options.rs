//! Route options: a Route's spec, or an Ingress's `portcullis.dev/` annotations, turned into the
//! [`RouteOptions`] and [`Policy`] the proxy reads, or every problem found, each naming its field.
//!
//! The route and Ingress compilers call [`route_options`] and [`ingress_options`]; the problems
//! become an `Accepted=False` condition (Route) or an Event (Ingress). Both paths read their
//! input into one shape and run the same per-field checks, so an annotation is held to exactly
//! the rules of the Route field it mirrors. The CRD schema already checks Route fields, but an
//! object can predate a schema change or come from a cluster with an older CRD, so everything is
//! checked again here.
//!
//! ```text
//! RouteSpec ─────────────────────┐
//!                                ├─► Input ── check each field ──► CompiledOptions {options, policy}
//! annotations ── parse values ───┘                 └──► Vec<OptionProblem> {field, message}
//! ```
//!
//! Annotation syntax: booleans are exactly `true` or `false`; lists (`identity-providers`,
//! `programmatic-redirect-domains`, `remove-request-headers`) are comma-separated, blanks around
//! items ignored, the empty string being the empty list; maps (`set-request-headers`,
//! `jwt-claim-headers`) and `policy` are YAML (or JSON), parsed by the bounded parser in
//! [`crate::yaml`] after a size cap. A YAML key given twice keeps its last value.
//!
//! Not checked here, for want of the process settings: that the `identityProviders` names exist
//! in the `identityProviders` setting, and that `programmaticRedirectDomains` narrows the global
//! list (the login API intersects them).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use regex::Regex;
use serde_json::{Map, Value};

use crate::api::{
    self, CLAIM_NAME_PATTERN, DNS_LABEL_PATTERN, DURATION_MAX_LENGTH, GoDuration,
    HEADER_NAME_MAX_LENGTH, HEADER_NAME_PATTERN, HEADER_VALUE_MAX_LENGTH, HEADER_VALUE_PATTERN,
    HOST_PATTERN, MAX_HEADERS, PATH_PATTERN, POLICY_MAX_PROPERTIES, RESERVED_HEADER_NAMES,
    RESERVED_HEADER_PREFIX, RouteSpec,
};
use crate::policy::{Json, MAX_POLICY_BYTES, ParsedExpressions, Policy};
use crate::routing::options::{
    BearerTokenFormat, DEFAULT_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT, RouteOptions,
};
use crate::routing::path::is_canonical_path;

/// Prefix of the Ingress annotations Portcullis reads; any other annotation under it is refused.
pub const ANNOTATION_PREFIX: &str = "portcullis.dev/";

/// The annotations Portcullis reads, without [`ANNOTATION_PREFIX`], in Route field order.
pub const KNOWN_ANNOTATIONS: [&str; Field::ALL.len()] = {
    let mut names = [""; Field::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Field::ALL[i].annotation();
        i += 1;
    }
    names
};

/// Largest `portcullis.dev/policy` value, checked before parsing. YAML is wordier than the
/// compact JSON [`MAX_POLICY_BYTES`] measures, hence the margin.
pub const MAX_POLICY_ANNOTATION_BYTES: usize = 2 * MAX_POLICY_BYTES;

/// Largest value of any other `portcullis.dev/` annotation (Kubernetes' limit for all of an
/// object's annotations together), checked before parsing.
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// Longest list of `identityProviders` or `programmaticRedirectDomains` (the CRD's `maxItems`).
const MAX_NAMES: usize = 16;
/// Longest `prefixRewrite` (the CRD's `maxLength`).
const PREFIX_REWRITE_MAX_LENGTH: usize = 1024;
/// Longest claim path in `jwtClaimHeaders` (the CRD's `maxLength`).
const CLAIM_PATH_MAX_LENGTH: usize = 256;
/// Longest identity provider name (a DNS label).
const IDENTITY_PROVIDER_MAX_LENGTH: usize = 63;
/// Longest redirect domain (a DNS name).
const DOMAIN_MAX_LENGTH: usize = 253;
/// Characters of user input quoted in a field or message; the rest is cut.
const MAX_QUOTED_CHARS: usize = 64;
/// Longest policy problem path (it holds the policy's own keys) or YAML error message kept.
const MAX_POLICY_PATH_CHARS: usize = 256;
/// Longest policy problem message kept (CEL errors quote the expression).
const MAX_POLICY_MESSAGE_CHARS: usize = 512;

/// One thing wrong with a Route's options or an Ingress's annotations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct OptionProblem {
    /// Where: `spec.setRequestHeaders[X-Foo]`, `spec.policy.allow.or[0].email`,
    /// `metadata.annotations[portcullis.dev/timeout]`.
    pub field: String,
    /// What is wrong, for people. Quotes at most 64 characters of any value, escaped.
    pub message: String,
}

/// The validated options of one route and its compiled policy.
#[derive(Debug, Clone)]
pub struct CompiledOptions {
    /// What the proxy reads besides the policy (the compiled route shares it).
    pub options: Arc<RouteOptions>,
    /// The compiled `policy`; [`Policy::deny_all`] when none is given. With
    /// `allowAnyAuthenticatedUser` or `allowPublicUnauthenticatedAccess` the proxy lets
    /// callers in before consulting it.
    pub policy: Policy,
}

/// Validates the options of a Route's spec (everything but `from`, `to` and `tls`) and compiles
/// its policy (its CEL expressions through `cel`). Returns every problem found, in field order.
pub fn route_options(
    spec: &RouteSpec,
    cel: &ParsedExpressions,
) -> Result<CompiledOptions, Vec<OptionProblem>> {
    let input = Input {
        policy: spec.policy.as_ref().map(PolicyInput::Spec),
        allow_any_authenticated_user: spec.allow_any_authenticated_user,
        allow_public_unauthenticated_access: spec.allow_public_unauthenticated_access,
        bearer_token_format: spec.bearer_token_format.map(token_format),
        identity_providers: spec.identity_providers.clone(),
        programmatic_redirect_domains: spec.programmatic_redirect_domains.clone(),
        pass_identity_headers: spec.pass_identity_headers,
        jwt_claim_headers: spec.jwt_claim_headers.clone(),
        set_request_headers: spec.set_request_headers.clone(),
        remove_request_headers: spec.remove_request_headers.clone(),
        preserve_host_header: spec.preserve_host_header,
        prefix_rewrite: spec.prefix_rewrite.clone(),
        timeout: spec.timeout.as_ref().map(|t| t.as_str().to_owned()),
        allow_websockets: spec.allow_websockets,
        cors_allow_preflight: spec.cors_allow_preflight,
    };
    compile(input, Problems::new(Source::Spec), cel)
}

/// Validates an Ingress's `portcullis.dev/` annotations and compiles its policy. Annotations
/// outside the prefix are ignored; unknown ones under it are problems. Returns every problem
/// found: first those of reading each annotation (in key order), then those of checking the
/// fields (in Route field order).
pub fn ingress_options(
    annotations: &BTreeMap<String, String>,
    cel: &ParsedExpressions,
) -> Result<CompiledOptions, Vec<OptionProblem>> {
    let mut p = Problems::new(Source::Annotations);
    let mut input = Input::default();
    for (key, text) in annotations {
        let Some(name) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        let Some(field) = Field::ALL.into_iter().find(|f| f.annotation() == name) else {
            p.push(
                format!("metadata.annotations[{}]", shorten(key)),
                format!(
                    "unknown annotation; the {ANNOTATION_PREFIX} annotations are {}",
                    KNOWN_ANNOTATIONS.join(", ")
                ),
            );
            continue;
        };
        let cap = match field {
            Field::Policy => MAX_POLICY_ANNOTATION_BYTES,
            _ => MAX_ANNOTATION_BYTES,
        };
        if text.len() > cap {
            p.at(
                field,
                format!("the value is {} bytes; the limit is {cap}", text.len()),
            );
            continue;
        }
        let flag = |p: &mut Problems| parse_bool(p, field, text);
        match field {
            Field::Policy => input.policy = parse_policy(&mut p, text).map(PolicyInput::Parsed),
            Field::AllowAnyAuthenticatedUser => input.allow_any_authenticated_user = flag(&mut p),
            Field::AllowPublicUnauthenticatedAccess => {
                input.allow_public_unauthenticated_access = flag(&mut p);
            }
            Field::BearerTokenFormat => {
                input.bearer_token_format = parse_token_format(&mut p, text);
            }
            Field::IdentityProviders => input.identity_providers = Some(split_list(text)),
            Field::ProgrammaticRedirectDomains => {
                input.programmatic_redirect_domains = Some(split_list(text));
            }
            Field::PassIdentityHeaders => input.pass_identity_headers = flag(&mut p),
            Field::JwtClaimHeaders => input.jwt_claim_headers = parse_map(&mut p, field, text),
            Field::SetRequestHeaders => {
                input.set_request_headers = parse_map(&mut p, field, text);
            }
            Field::RemoveRequestHeaders => input.remove_request_headers = Some(split_list(text)),
            Field::PreserveHostHeader => input.preserve_host_header = flag(&mut p),
            Field::PrefixRewrite => input.prefix_rewrite = Some(text.clone()),
            Field::Timeout => input.timeout = Some(text.clone()),
            Field::AllowWebsockets => input.allow_websockets = flag(&mut p),
            Field::CorsAllowPreflight => input.cors_allow_preflight = flag(&mut p),
        }
    }
    compile(input, p, cel)
}

/// The options of one object before validation, whichever kind it came from.
#[derive(Default)]
struct Input<'a> {
    policy: Option<PolicyInput<'a>>,
    allow_any_authenticated_user: Option<bool>,
    allow_public_unauthenticated_access: Option<bool>,
    bearer_token_format: Option<BearerTokenFormat>,
    identity_providers: Option<Vec<String>>,
    programmatic_redirect_domains: Option<Vec<String>>,
    pass_identity_headers: Option<bool>,
    jwt_claim_headers: Option<BTreeMap<String, String>>,
    set_request_headers: Option<BTreeMap<String, String>>,
    remove_request_headers: Option<Vec<String>>,
    preserve_host_header: Option<bool>,
    prefix_rewrite: Option<String>,
    timeout: Option<String>,
    allow_websockets: Option<bool>,
    cors_allow_preflight: Option<bool>,
}

/// Checks every field of `input`, adding to the problems `p` already holds.
/// A policy as an annotation gives it (parsed YAML) or as a Route spec holds it (borrowed: a
/// copy of every policy on every compile is what it would cost otherwise).
enum PolicyInput<'a> {
    Parsed(Value),
    Spec(&'a crate::api::RoutePolicy),
}

fn compile(
    input: Input<'_>,
    mut p: Problems,
    cel: &ParsedExpressions,
) -> Result<CompiledOptions, Vec<OptionProblem>> {
    let policy = match &input.policy {
        Some(v) => check_policy(&mut p, v, cel),
        None => Policy::deny_all(),
    };
    let any = input.allow_any_authenticated_user.unwrap_or(false);
    let public = input.allow_public_unauthenticated_access.unwrap_or(false);
    if public && (input.policy.is_some() || any) {
        let message = format!(
            "lets everyone in, so it cannot be combined with {} or {}",
            p.name(Field::Policy),
            p.name(Field::AllowAnyAuthenticatedUser)
        );
        p.at(Field::AllowPublicUnauthenticatedAccess, message);
    }
    let format = input.bearer_token_format.unwrap_or_default();
    let identity_providers = check_names(
        &mut p,
        Field::IdentityProviders,
        input.identity_providers.as_deref().unwrap_or_default(),
        &NameRule {
            max_length: IDENTITY_PROVIDER_MAX_LENGTH,
            pattern: &DNS_LABEL,
            what: "an identityProviders setting name (a lower-case DNS label)",
        },
    );
    if !identity_providers.is_empty() && format != BearerTokenFormat::Jwt {
        let message = format!(
            "only used with {} {}, which this route does not set",
            p.name(Field::BearerTokenFormat),
            BearerTokenFormat::Jwt
        );
        p.at(Field::IdentityProviders, message);
    }
    let programmatic_redirect_domains = input.programmatic_redirect_domains.map(|domains| {
        check_names(
            &mut p,
            Field::ProgrammaticRedirectDomains,
            &domains,
            &NameRule {
                max_length: DOMAIN_MAX_LENGTH,
                pattern: &HOST,
                what: "a lower-case host name without port or wildcard",
            },
        )
    });
    let no_headers = BTreeMap::new();
    let jwt_claim_headers = check_claim_headers(
        &mut p,
        input.jwt_claim_headers.as_ref().unwrap_or(&no_headers),
    );
    let set_request_headers = check_set_headers(
        &mut p,
        input.set_request_headers.as_ref().unwrap_or(&no_headers),
    );
    let remove_request_headers = input
        .remove_request_headers
        .map(|l| check_remove_headers(&mut p, &l))
        .unwrap_or_default();
    check_header_overlap(
        &mut p,
        &jwt_claim_headers,
        &set_request_headers,
        &remove_request_headers,
    );
    let prefix_rewrite = input
        .prefix_rewrite
        .and_then(|path| check_prefix_rewrite(&mut p, path));
    let timeout = input
        .timeout
        .map_or(DEFAULT_TIMEOUT, |t| check_timeout(&mut p, &t));

    if !p.list.is_empty() {
        return Err(p.list);
    }
    let mut options = RouteOptions {
        allow_any_authenticated_user: any,
        allow_public_unauthenticated_access: public,
        bearer_token_format: format,
        identity_providers,
        programmatic_redirect_domains,
        pass_identity_headers: input.pass_identity_headers.unwrap_or(true),
        jwt_claim_headers: jwt_claim_headers
            .into_iter()
            .map(|(name, claim, _)| (name, claim))
            .collect(),
        set_request_headers: set_request_headers
            .into_iter()
            .map(|(name, value, _)| (name, value))
            .collect(),
        remove_request_headers: remove_request_headers.into_iter().map(|(_, n)| n).collect(),
        preserve_host_header: input.preserve_host_header.unwrap_or(false),
        prefix_rewrite,
        timeout,
        allow_websockets: input.allow_websockets.unwrap_or(false),
        cors_allow_preflight: input.cors_allow_preflight.unwrap_or(false),
    };
    options.sort_headers();
    Ok(CompiledOptions {
        options: Arc::new(options),
        policy,
    })
}

// ---- the fields and how problems name them ----

/// One option, with its name in a Route spec and as an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Policy,
    AllowAnyAuthenticatedUser,
    AllowPublicUnauthenticatedAccess,
    BearerTokenFormat,
    IdentityProviders,
    ProgrammaticRedirectDomains,
    PassIdentityHeaders,
    JwtClaimHeaders,
    SetRequestHeaders,
    RemoveRequestHeaders,
    PreserveHostHeader,
    PrefixRewrite,
    Timeout,
    AllowWebsockets,
    CorsAllowPreflight,
}

impl Field {
    const ALL: [Field; 15] = [
        Field::Policy,
        Field::AllowAnyAuthenticatedUser,
        Field::AllowPublicUnauthenticatedAccess,
        Field::BearerTokenFormat,
        Field::IdentityProviders,
        Field::ProgrammaticRedirectDomains,
        Field::PassIdentityHeaders,
        Field::JwtClaimHeaders,
        Field::SetRequestHeaders,
        Field::RemoveRequestHeaders,
        Field::PreserveHostHeader,
        Field::PrefixRewrite,
        Field::Timeout,
        Field::AllowWebsockets,
        Field::CorsAllowPreflight,
    ];

    /// `(Route spec field, annotation name)`.
    const fn names(self) -> (&'static str, &'static str) {
        match self {
            Field::Policy => ("policy", "policy"),
            Field::AllowAnyAuthenticatedUser => {
                ("allowAnyAuthenticatedUser", "allow-any-authenticated-user")
            }
            Field::AllowPublicUnauthenticatedAccess => (
                "allowPublicUnauthenticatedAccess",
                "allow-public-unauthenticated-access",
            ),
            Field::BearerTokenFormat => ("bearerTokenFormat", "bearer-token-format"),
            Field::IdentityProviders => ("identityProviders", "identity-providers"),
            Field::ProgrammaticRedirectDomains => (
                "programmaticRedirectDomains",
                "programmatic-redirect-domains",
            ),
            Field::PassIdentityHeaders => ("passIdentityHeaders", "pass-identity-headers"),
            Field::JwtClaimHeaders => ("jwtClaimHeaders", "jwt-claim-headers"),
            Field::SetRequestHeaders => ("setRequestHeaders", "set-request-headers"),
            Field::RemoveRequestHeaders => ("removeRequestHeaders", "remove-request-headers"),
            Field::PreserveHostHeader => ("preserveHostHeader", "preserve-host-header"),
            Field::PrefixRewrite => ("prefixRewrite", "prefix-rewrite"),
            Field::Timeout => ("timeout", "timeout"),
            Field::AllowWebsockets => ("allowWebsockets", "allow-websockets"),
            Field::CorsAllowPreflight => ("corsAllowPreflight", "cors-allow-preflight"),
        }
    }

    const fn annotation(self) -> &'static str {
        self.names().1
    }
}

/// Where the options came from, which decides how fields are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Spec,
    Annotations,
}

/// The problems found so far, and the naming of their fields.
struct Problems {
    source: Source,
    list: Vec<OptionProblem>,
}

impl Problems {
    fn new(source: Source) -> Self {
        Problems {
            source,
            list: Vec::new(),
        }
    }

    /// How a message refers to a field: `timeout` or `portcullis.dev/timeout`.
    fn name(&self, field: Field) -> String {
        match self.source {
            Source::Spec => field.names().0.to_owned(),
            Source::Annotations => format!("{ANNOTATION_PREFIX}{}", field.annotation()),
        }
    }

    /// The full path of a field: `spec.timeout` or `metadata.annotations[portcullis.dev/timeout]`.
    fn path(&self, field: Field) -> String {
        match self.source {
            Source::Spec => format!("spec.{}", field.names().0),
            Source::Annotations => format!("metadata.annotations[{}]", self.name(field)),
        }
    }

    fn push(&mut self, field: String, message: impl Into<String>) {
        self.list.push(OptionProblem {
            field,
            message: message.into(),
        });
    }

    fn at(&mut self, field: Field, message: impl Into<String>) {
        self.push(self.path(field), message);
    }

    /// A problem with one entry of a map (by key) or a list (by index).
    fn at_entry(&mut self, field: Field, entry: &Entry<'_>, message: impl Into<String>) {
        let at = match entry {
            Entry::Key(key) => format!("{}[{}]", self.path(field), shorten(key)),
            Entry::Index(i) => format!("{}[{i}]", self.path(field)),
        };
        self.push(at, message);
    }
}

/// Which element of a map or list field a problem is about.
enum Entry<'a> {
    Key(&'a str),
    Index(usize),
}

/// At most [`MAX_QUOTED_CHARS`] characters of `text`, control characters, `"` and `\\` escaped,
/// with `…` when cut.
fn shorten(text: &str) -> String {
    clip(text, MAX_QUOTED_CHARS, |c| {
        c.is_control() || c == '"' || c == '\\'
    })
}

/// At most `max` characters of `text`, those `escape` picks written as Rust escapes, with `…`
/// when cut.
fn clip(text: &str, max: usize, escape: impl Fn(char) -> bool) -> String {
    let mut out = String::new();
    for c in text.chars().take(max) {
        if escape(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// `text` in double quotes, [`shorten`]ed.
fn quote(text: &str) -> String {
    format!("\"{}\"", shorten(text))
}

/// Length as the CRD's `maxLength` counts it: in characters.
fn char_len(text: &str) -> usize {
    text.chars().count()
}

// ---- reading annotation values ----

fn parse_bool(p: &mut Problems, field: Field, text: &str) -> Option<bool> {
    match text {
        "true" => Some(true),
        "false" => Some(false),
        other => {
            p.at(
                field,
                format!("must be \"true\" or \"false\", not {}", quote(other)),
            );
            None
        }
    }
}

fn parse_token_format(p: &mut Problems, text: &str) -> Option<BearerTokenFormat> {
    let format = BearerTokenFormat::from_name(text);
    if format.is_none() {
        let names: Vec<&str> = BearerTokenFormat::ALL.iter().map(|f| f.as_str()).collect();
        p.at(
            Field::BearerTokenFormat,
            format!("must be one of {}, not {}", names.join(", "), quote(text)),
        );
    }
    format
}

/// A comma-separated list; blanks around items are dropped and the empty string is the empty
/// list. Empty items stay, for the field check to refuse with their index.
fn split_list(text: &str) -> Vec<String> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    text.split(',').map(|item| item.trim().to_owned()).collect()
}

/// A YAML mapping of strings; an empty value is the empty map.
fn parse_map(p: &mut Problems, field: Field, text: &str) -> Option<BTreeMap<String, String>> {
    let map = match parse_yaml(p, field, text)? {
        Value::Null => return Some(BTreeMap::new()),
        Value::Object(map) => map,
        other => {
            p.at(
                field,
                format!(
                    "must be a YAML mapping such as `X-Team: a`, not {}",
                    kind(&other)
                ),
            );
            return None;
        }
    };
    let mut out = BTreeMap::new();
    for (key, value) in map {
        match value {
            Value::String(s) => {
                out.insert(key, s);
            }
            other => p.at_entry(
                field,
                &Entry::Key(&key),
                format!("must be a string (quote it), not {}", kind(&other)),
            ),
        }
    }
    Some(out)
}

/// A YAML (or JSON) policy; an empty value is the empty policy, which denies everyone.
fn parse_policy(p: &mut Problems, text: &str) -> Option<Value> {
    match parse_yaml(p, Field::Policy, text)? {
        Value::Null => Some(Value::Object(Map::new())),
        v => Some(v),
    }
}

fn parse_yaml(p: &mut Problems, field: Field, text: &str) -> Option<Value> {
    match crate::yaml::from_slice(text.as_bytes()) {
        Ok(v) => Some(v),
        Err(e) => {
            // Syntax errors name a location; clipped all the same, in case one quotes input.
            let message = clip(&e.to_string(), MAX_POLICY_PATH_CHARS, char::is_control);
            p.at(field, format!("invalid YAML: {message}"));
            None
        }
    }
}

/// [`kind`] of a [`Json`] document.
fn json_kind(v: &Json<'_>) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

// ---- checking fields (shared by both sources) ----

fn token_format(format: api::BearerTokenFormat) -> BearerTokenFormat {
    match format {
        api::BearerTokenFormat::Default => BearerTokenFormat::Default,
        api::BearerTokenFormat::IdpAccessToken => BearerTokenFormat::IdpAccessToken,
        api::BearerTokenFormat::IdpIdentityToken => BearerTokenFormat::IdpIdentityToken,
        api::BearerTokenFormat::Jwt => BearerTokenFormat::Jwt,
    }
}

/// `policy`: a mapping of at most [`POLICY_MAX_PROPERTIES`] keys that [`Policy::compile`]
/// accepts. Policy problems keep their path below the field.
fn check_policy(p: &mut Problems, input: &PolicyInput<'_>, cel: &ParsedExpressions) -> Policy {
    let compiled = match input {
        PolicyInput::Parsed(v) => policy_value(p, v, cel),
        PolicyInput::Spec(policy) => match policy.text() {
            // A Route keeps the text of an object it decoded: it parses, as an object.
            Some(text) => match Json::parse(text) {
                Ok(doc) => {
                    let keys = match &doc {
                        Json::Object(m) => Some(m.len()),
                        _ => None,
                    };
                    top_level(p, json_kind(&doc), keys).then(|| Policy::compile_json(&doc, cel))
                }
                Err(_) => {
                    p.at(Field::Policy, "is not valid JSON");
                    None
                }
            },
            None => policy_value(p, &Value::Object(policy.object()), cel),
        },
    };
    match compiled {
        None => Policy::deny_all(),
        Some(compiled) => compiled_policy(p, compiled),
    }
}

/// [`check_policy`] of a parsed value.
fn policy_value(
    p: &mut Problems,
    v: &Value,
    cel: &ParsedExpressions,
) -> Option<Result<Policy, Vec<crate::policy::Problem>>> {
    top_level(p, kind(v), v.as_object().map(Map::len)).then(|| Policy::compile_with(v, cel))
}

/// Whether a policy of this kind, with this many keys when a mapping, may be compiled; the
/// problem when not.
fn top_level(p: &mut Problems, kind: &str, keys: Option<usize>) -> bool {
    match keys {
        None => {
            p.at(
                Field::Policy,
                format!("must be a mapping with allow and/or deny, not {kind}"),
            );
            false
        }
        Some(n) if n > POLICY_MAX_PROPERTIES as usize => {
            p.at(
                Field::Policy,
                format!("has {n} keys; the limit is {POLICY_MAX_PROPERTIES}"),
            );
            false
        }
        Some(_) => true,
    }
}

/// The policy compiled, or its problems turned into the field's (deny all).
fn compiled_policy(
    p: &mut Problems,
    compiled: Result<Policy, Vec<crate::policy::Problem>>,
) -> Policy {
    match compiled {
        Ok(policy) => policy,
        Err(problems) => {
            let base = p.path(Field::Policy);
            // Paths and messages can echo policy keys and CEL source, so both are clipped.
            for problem in problems {
                let path = clip(&problem.path, MAX_POLICY_PATH_CHARS, char::is_control);
                let field = match path.as_str() {
                    "" => base.clone(),
                    path if path.starts_with('[') => format!("{base}{path}"),
                    path => format!("{base}.{path}"),
                };
                let message = clip(&problem.message, MAX_POLICY_MESSAGE_CHARS, char::is_control);
                p.push(field, message);
            }
            Policy::deny_all()
        }
    }
}

/// A regular expression from `crate::api`, compiled once. An expression that fails to compile
/// matches nothing, so values are refused rather than let through (a test compiles them all).
struct Pattern {
    source: &'static str,
    regex: OnceLock<Option<Regex>>,
}

impl Pattern {
    const fn new(source: &'static str) -> Self {
        Pattern {
            source,
            regex: OnceLock::new(),
        }
    }

    fn is_match(&self, text: &str) -> bool {
        self.regex
            .get_or_init(|| Regex::new(self.source).ok())
            .as_ref()
            .is_some_and(|r| r.is_match(text))
    }
}

static DNS_LABEL: Pattern = Pattern::new(DNS_LABEL_PATTERN);
static HOST: Pattern = Pattern::new(HOST_PATTERN);
static HEADER_NAME: Pattern = Pattern::new(HEADER_NAME_PATTERN);
static HEADER_VALUE: Pattern = Pattern::new(HEADER_VALUE_PATTERN);
static CLAIM_NAME: Pattern = Pattern::new(CLAIM_NAME_PATTERN);
static PATH: Pattern = Pattern::new(PATH_PATTERN);

/// What the entries of a list of names must look like.
struct NameRule {
    max_length: usize,
    pattern: &'static Pattern,
    what: &'static str,
}

/// A set of names (`identityProviders`, `programmaticRedirectDomains`): at most
/// [`MAX_NAMES`], each matching `rule`, none twice. Returns the valid names, sorted.
fn check_names(p: &mut Problems, field: Field, names: &[String], rule: &NameRule) -> Vec<String> {
    if names.len() > MAX_NAMES {
        p.at(
            field,
            format!("has {} entries; the limit is {MAX_NAMES}", names.len()),
        );
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let ok = (1..=rule.max_length).contains(&char_len(name)) && rule.pattern.is_match(name);
        if !ok {
            let message = format!(
                "{} is not {}, at most {} characters",
                quote(name),
                rule.what,
                rule.max_length
            );
            p.at_entry(field, &Entry::Index(i), message);
        } else if out.contains(name) {
            p.at_entry(
                field,
                &Entry::Index(i),
                format!("{} is listed twice", quote(name)),
            );
        } else {
            out.push(name.clone());
        }
    }
    out.sort();
    out
}

/// Problems of one header name as a route may configure it (any of the three header fields).
fn header_name_problem(p: &Problems, raw: &str) -> Option<String> {
    if !(1..=HEADER_NAME_MAX_LENGTH as usize).contains(&char_len(raw)) || !HEADER_NAME.is_match(raw)
    {
        return Some(format!(
            "{} is not a header name: 1 to {HEADER_NAME_MAX_LENGTH} letters, digits and !#$%&'*+-.^_`|~",
            quote(raw)
        ));
    }
    // Many upstreams (CGI, WSGI, PHP) read `_` as `-`, so underscore spellings count too.
    let lower = raw.to_ascii_lowercase().replace('_', "-");
    if RESERVED_HEADER_NAMES.contains(&lower.as_str()) || lower.starts_with(RESERVED_HEADER_PREFIX)
    {
        let hint = if lower == "host" {
            format!(
                " (use {} to keep the client's Host)",
                p.name(Field::PreserveHostHeader)
            )
        } else {
            String::new()
        };
        return Some(format!(
            "{} is managed by Portcullis: the headers {} and {RESERVED_HEADER_PREFIX}* (also spelt with _) cannot be set, copied into or removed by a route{hint}",
            quote(raw),
            RESERVED_HEADER_NAMES.join(", ")
        ));
    }
    None
}

/// The header names of one field, checked and made [`HeaderName`]s (lower case), each
/// name (compared without case) once. Entries that fail are reported and left out.
fn check_header_names<'a, T: 'a>(
    p: &mut Problems,
    field: Field,
    entries: impl ExactSizeIterator<Item = (Entry<'a>, &'a str, T)>,
) -> Vec<(HeaderName, T)> {
    if entries.len() > MAX_HEADERS as usize {
        p.at(
            field,
            format!("has {} entries; the limit is {MAX_HEADERS}", entries.len()),
        );
        return Vec::new();
    }
    let mut out: Vec<(HeaderName, T)> = Vec::new();
    for (entry, raw, item) in entries {
        if let Some(message) = header_name_problem(p, raw) {
            p.at_entry(field, &entry, message);
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(raw.as_bytes()) else {
            p.at_entry(
                field,
                &entry,
                format!("{} is not a header name", quote(raw)),
            );
            continue;
        };
        if out.iter().any(|(seen, _)| *seen == name) {
            let message = format!(
                "the header {name} is given more than once (header names are case-insensitive)"
            );
            p.at_entry(field, &entry, message);
            continue;
        }
        out.push((name, item));
    }
    out
}

/// `setRequestHeaders`: header name → value without control characters (tab allowed). Keeps
/// each entry's key as written, for [`check_header_overlap`].
fn check_set_headers<'a>(
    p: &mut Problems,
    map: &'a BTreeMap<String, String>,
) -> Vec<(HeaderName, HeaderValue, &'a str)> {
    let field = Field::SetRequestHeaders;
    let names = check_header_names(p, field, map_entries(map));
    let mut out = Vec::with_capacity(names.len());
    for (name, (key, value)) in names {
        let valid =
            char_len(value) <= HEADER_VALUE_MAX_LENGTH as usize && HEADER_VALUE.is_match(value);
        match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(v) if valid => out.push((name, v, key)),
            _ => p.at_entry(
                field,
                &Entry::Key(key),
                format!(
                    "{} is not a header value: at most {HEADER_VALUE_MAX_LENGTH} characters, no control characters (CR, LF, NUL, ...) except tab",
                    quote(value)
                ),
            ),
        }
    }
    out
}

/// `jwtClaimHeaders`: header name → claim name or `.`-separated claim path. Keeps each entry's
/// key as written, for [`check_header_overlap`].
fn check_claim_headers<'a>(
    p: &mut Problems,
    map: &'a BTreeMap<String, String>,
) -> Vec<(HeaderName, String, &'a str)> {
    let field = Field::JwtClaimHeaders;
    let names = check_header_names(p, field, map_entries(map));
    let mut out = Vec::with_capacity(names.len());
    for (name, (key, claim)) in names {
        if (1..=CLAIM_PATH_MAX_LENGTH).contains(&char_len(claim)) && CLAIM_NAME.is_match(claim) {
            out.push((name, claim.clone(), key));
        } else {
            p.at_entry(
                field,
                &Entry::Key(key),
                format!(
                    "{} is not a claim name: 1 to {CLAIM_PATH_MAX_LENGTH} letters, digits and _ . : / -, not starting with . : / -",
                    quote(claim)
                ),
            );
        }
    }
    out
}

/// The entries of a header map for [`check_header_names`], each carrying its key and value.
fn map_entries(
    map: &BTreeMap<String, String>,
) -> impl ExactSizeIterator<Item = (Entry<'_>, &str, (&str, &String))> {
    map.iter()
        .map(|(k, v)| (Entry::Key(k), k.as_str(), (k.as_str(), v)))
}

/// `removeRequestHeaders`: header names. Keeps the list index for [`check_header_overlap`].
fn check_remove_headers(p: &mut Problems, list: &[String]) -> Vec<(usize, HeaderName)> {
    let entries = list
        .iter()
        .enumerate()
        .map(|(i, raw)| (Entry::Index(i), raw.as_str(), i));
    check_header_names(p, Field::RemoveRequestHeaders, entries)
        .into_iter()
        .map(|(name, i)| (i, name))
        .collect()
}

/// A header may come from one place only: setting it in two fields, or setting and removing
/// it, would leave the upstream's view to the order the proxy applies them in.
fn check_header_overlap(
    p: &mut Problems,
    claims: &[(HeaderName, String, &str)],
    set: &[(HeaderName, HeaderValue, &str)],
    remove: &[(usize, HeaderName)],
) {
    let is_set = |name: &HeaderName| set.iter().any(|(n, _, _)| n == name);
    for (name, _, key) in claims {
        if is_set(name) {
            let message = format!(
                "the header {name} is also in {}; a header is set from one place only",
                p.name(Field::SetRequestHeaders)
            );
            p.at_entry(Field::JwtClaimHeaders, &Entry::Key(key), message);
        }
    }
    for (i, name) in remove {
        if claims.iter().any(|(n, _, _)| n == name) || is_set(name) {
            let message = format!(
                "the header {name} is also set by {} or {}; a header cannot be both set and removed",
                p.name(Field::JwtClaimHeaders),
                p.name(Field::SetRequestHeaders)
            );
            p.at_entry(Field::RemoveRequestHeaders, &Entry::Index(*i), message);
        }
    }
}

/// `prefixRewrite`: an absolute path in canonical form (no `.`/`..` segments, escapes, `//`).
fn check_prefix_rewrite(p: &mut Problems, path: String) -> Option<String> {
    let ok = (1..=PREFIX_REWRITE_MAX_LENGTH).contains(&char_len(&path))
        && PATH.is_match(&path)
        && is_canonical_path(&path);
    if ok {
        return Some(path);
    }
    p.at(
        Field::PrefixRewrite,
        format!(
            "{} is not a path: / or /segments of at most {PREFIX_REWRITE_MAX_LENGTH} characters, without . or .. segments, %-escapes, \\, *, ?, # or //",
            quote(&path)
        ),
    );
    None
}

/// `timeout`: a Go duration between [`MIN_TIMEOUT`] and [`MAX_TIMEOUT`].
fn check_timeout(p: &mut Problems, text: &str) -> Duration {
    let parsed = if text.len() <= DURATION_MAX_LENGTH as usize {
        GoDuration::new(text).to_std()
    } else {
        None
    };
    match parsed {
        Some(d) if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d) => d,
        Some(_) => {
            p.at(Field::Timeout, "timeout must be between 1s and 24h");
            DEFAULT_TIMEOUT
        }
        None => {
            p.at(
                Field::Timeout,
                format!(
                    "{} is not a duration: use a number with a unit (ns, us, ms, s, m, h), such as 30s, 1m or 1h30m",
                    quote(text)
                ),
            );
            DEFAULT_TIMEOUT
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;
    use crate::policy::{Decision, Identity, IdentityKind, Request};

    fn route_options(spec: &RouteSpec) -> Result<CompiledOptions, Vec<OptionProblem>> {
        super::route_options(spec, &ParsedExpressions::default())
    }

    fn ingress_options(
        annotations: &BTreeMap<String, String>,
    ) -> Result<CompiledOptions, Vec<OptionProblem>> {
        super::ingress_options(annotations, &ParsedExpressions::default())
    }

    #[test]
    fn policies_too_deep_are_refused_whether_kept_as_text_or_as_a_tree() {
        // 30 `not`s make a policy 63 levels deep, kept as text; 60 make 123, kept as a tree
        // (past what the JSON parser reads back). Both are past what compile accepts.
        for levels in [30, 60] {
            let deep = (0..levels).fold(
                json!({"email": "a@example.com"}),
                |v, _| json!({"not": [v]}),
            );
            let route = spec(json!({"policy": {"allow": deep}}));
            let kept_as_text = route.policy.as_ref().and_then(|p| p.text()).is_some();
            assert_eq!(kept_as_text, levels == 30);
            let (field, message) = only_problem(route_options(&route));
            assert_eq!(field, "spec.policy", "{levels}");
            assert!(message.contains("nested more than"), "{message}");
        }
    }

    /// A Route spec with `fields` on top of a minimal `from` and `to`.
    fn spec(fields: Value) -> RouteSpec {
        let mut v = json!({"from": "https://a.example.com", "to": [{"url": "http://10.0.0.1"}]});
        if let (Some(base), Value::Object(extra)) = (v.as_object_mut(), fields) {
            base.extend(extra);
        }
        serde_json::from_value(v).unwrap()
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ingress(pairs: &[(&str, &str)]) -> Result<CompiledOptions, Vec<OptionProblem>> {
        let named: Vec<(String, &str)> = pairs
            .iter()
            .map(|(k, v)| (format!("{ANNOTATION_PREFIX}{k}"), *v))
            .collect();
        let named: Vec<(&str, &str)> = named.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        ingress_options(&annotations(&named))
    }

    fn options(result: Result<CompiledOptions, Vec<OptionProblem>>) -> RouteOptions {
        match result {
            Ok(c) => RouteOptions::clone(&c.options),
            Err(problems) => panic!("unexpected problems: {problems:#?}"),
        }
    }

    fn problems(result: Result<CompiledOptions, Vec<OptionProblem>>) -> Vec<OptionProblem> {
        match result {
            Ok(c) => panic!("expected problems, got {:?}", c.options),
            Err(problems) => problems,
        }
    }

    /// The single problem of `result`, as `(field, message)`.
    fn only_problem(result: Result<CompiledOptions, Vec<OptionProblem>>) -> (String, String) {
        let mut all = problems(result);
        assert_eq!(all.len(), 1, "{all:#?}");
        let p = all.remove(0);
        (p.field, p.message)
    }

    fn header(name: &str) -> HeaderName {
        HeaderName::from_bytes(name.as_bytes()).unwrap()
    }

    fn person(email: &str) -> Identity {
        Identity {
            kind: IdentityKind::User,
            subject: "u1".into(),
            email: Some(email.into()),
            email_verified: true,
            groups: vec![],
            claims: Map::new(),
            issuer: None,
        }
    }

    fn decide(policy: &Policy, email: &str) -> Decision {
        let req = Request {
            method: "GET",
            path: "/",
            host: "a.example.com",
            headers: &[],
        };
        policy.evaluate(Some(&person(email)), &req)
    }

    #[test]
    fn nothing_set_gives_the_defaults_and_a_policy_that_denies() {
        let route = route_options(&spec(json!({}))).unwrap();
        assert_eq!(*route.options, RouteOptions::default());
        assert!(route.policy.is_empty());
        assert_eq!(
            decide(&route.policy, "alice@example.com"),
            Decision::Deny {
                reason: crate::policy::DenyReason::NoMatch
            }
        );
        let foreign = annotations(&[
            ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
            ("portcullis.dev.evil/timeout", "nonsense"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
        ]);
        let ingress = ingress_options(&foreign).unwrap();
        assert_eq!(*ingress.options, RouteOptions::default());
        assert!(ingress.policy.is_empty());
    }

    const FULL_POLICY_YAML: &str = "allow:\n  or:\n    - email: {is: alice@example.com}\ndeny:\n  or: [{http_path: {starts_with: /admin}}]\n";

    /// What the full Route spec and the full annotation set both compile to.
    fn full_options() -> RouteOptions {
        RouteOptions {
            allow_any_authenticated_user: true,
            allow_public_unauthenticated_access: false,
            bearer_token_format: BearerTokenFormat::Jwt,
            identity_providers: vec!["github-actions".into(), "gitlab".into()],
            programmatic_redirect_domains: Some(vec!["cli.example.com".into()]),
            pass_identity_headers: false,
            jwt_claim_headers: vec![
                (header("x-email"), "email".into()),
                (header("x-ns"), "kubernetes.io.namespace".into()),
            ],
            set_request_headers: vec![
                (header("a-first"), HeaderValue::from_static("1")),
                (header("x-team"), HeaderValue::from_static("a\tb")),
            ],
            remove_request_headers: vec![header("x-debug"), header("x-trace")],
            preserve_host_header: true,
            prefix_rewrite: Some("/v2/".into()),
            timeout: Duration::from_secs(90),
            allow_websockets: true,
            cors_allow_preflight: true,
        }
    }

    #[test]
    fn a_full_route_spec_compiles_every_field() {
        let compiled = route_options(&spec(json!({
            "policy": serde_yaml::from_str::<Value>(FULL_POLICY_YAML).unwrap(),
            "allowAnyAuthenticatedUser": true,
            "allowPublicUnauthenticatedAccess": false,
            "bearerTokenFormat": "jwt",
            "identityProviders": ["gitlab", "github-actions"],
            "programmaticRedirectDomains": ["cli.example.com"],
            "passIdentityHeaders": false,
            "jwtClaimHeaders": {"X-Ns": "kubernetes.io.namespace", "X-Email": "email"},
            "setRequestHeaders": {"X-Team": "a\tb", "a-first": "1"},
            "removeRequestHeaders": ["X-Trace", "X-Debug"],
            "preserveHostHeader": true,
            "prefixRewrite": "/v2/",
            "timeout": "1m30s",
            "allowWebsockets": true,
            "corsAllowPreflight": true,
        })))
        .unwrap();
        assert_eq!(*compiled.options, full_options());
        assert_eq!(
            decide(&compiled.policy, "alice@example.com"),
            Decision::Allow
        );
        assert!(matches!(
            decide(&compiled.policy, "bob@example.com"),
            Decision::Deny { .. }
        ));
    }

    #[test]
    fn the_same_options_as_annotations_compile_to_the_same_result() {
        let compiled = ingress(&[
            ("policy", FULL_POLICY_YAML),
            ("allow-any-authenticated-user", "true"),
            ("allow-public-unauthenticated-access", "false"),
            ("bearer-token-format", "jwt"),
            ("identity-providers", " gitlab , github-actions"),
            ("programmatic-redirect-domains", "cli.example.com"),
            ("pass-identity-headers", "false"),
            (
                "jwt-claim-headers",
                "X-Ns: kubernetes.io.namespace\nX-Email: email\n",
            ),
            (
                "set-request-headers",
                "{\"X-Team\": \"a\\tb\", a-first: \"1\"}",
            ),
            ("remove-request-headers", "X-Trace,X-Debug"),
            ("preserve-host-header", "true"),
            ("prefix-rewrite", "/v2/"),
            ("timeout", "90s"),
            ("allow-websockets", "true"),
            ("cors-allow-preflight", "true"),
        ])
        .unwrap();
        assert_eq!(*compiled.options, full_options());
        assert_eq!(
            decide(&compiled.policy, "alice@example.com"),
            Decision::Allow
        );
        assert!(matches!(
            decide(&compiled.policy, "bob@example.com"),
            Decision::Deny { .. }
        ));
    }

    /// One invalid value, given once as a Route field and once as an annotation: both must be
    /// refused, at the matching field, with a message containing `says`.
    struct Case {
        spec: Value,
        annotations: &'static [(&'static str, &'static str)],
        spec_field: &'static str,
        annotation_field: &'static str,
        says: &'static str,
    }

    fn check_case(case: &Case) {
        let (field, message) = only_problem(route_options(&spec(case.spec.clone())));
        assert_eq!(field, case.spec_field, "{message}");
        assert!(message.contains(case.says), "{field}: {message}");
        let (field, message) = only_problem(ingress(case.annotations));
        let want = format!(
            "metadata.annotations[portcullis.dev/{}",
            case.annotation_field
        );
        assert_eq!(field, want, "{message}");
        assert!(message.contains(case.says), "{field}: {message}");
    }

    #[test]
    fn invalid_values_are_refused_the_same_way_in_both_sources() {
        let cases = [
            Case {
                spec: json!({"bearerTokenFormat": "jwt", "identityProviders": ["GitHub"]}),
                annotations: &[
                    ("bearer-token-format", "jwt"),
                    ("identity-providers", "GitHub"),
                ],
                spec_field: "spec.identityProviders[0]",
                annotation_field: "identity-providers][0]",
                says: "\"GitHub\" is not an identityProviders setting name",
            },
            Case {
                spec: json!({"bearerTokenFormat": "jwt", "identityProviders": ["a", "b", "a"]}),
                annotations: &[
                    ("bearer-token-format", "jwt"),
                    ("identity-providers", "a,b,a"),
                ],
                spec_field: "spec.identityProviders[2]",
                annotation_field: "identity-providers][2]",
                says: "\"a\" is listed twice",
            },
            Case {
                spec: json!({"bearerTokenFormat": "jwt", "identityProviders": ["a", ""]}),
                annotations: &[
                    ("bearer-token-format", "jwt"),
                    ("identity-providers", "a, "),
                ],
                spec_field: "spec.identityProviders[1]",
                annotation_field: "identity-providers][1]",
                says: "\"\" is not",
            },
            Case {
                spec: json!({"programmaticRedirectDomains": ["a.example", "Evil.Example"]}),
                annotations: &[("programmatic-redirect-domains", "a.example,Evil.Example")],
                spec_field: "spec.programmaticRedirectDomains[1]",
                annotation_field: "programmatic-redirect-domains][1]",
                says: "\"Evil.Example\" is not a lower-case host name",
            },
            Case {
                spec: json!({"programmaticRedirectDomains": ["a.example:8080"]}),
                annotations: &[("programmatic-redirect-domains", "a.example:8080")],
                spec_field: "spec.programmaticRedirectDomains[0]",
                annotation_field: "programmatic-redirect-domains][0]",
                says: "without port or wildcard",
            },
            Case {
                spec: json!({"programmaticRedirectDomains": ["*.example.com"]}),
                annotations: &[("programmatic-redirect-domains", "*.example.com")],
                spec_field: "spec.programmaticRedirectDomains[0]",
                annotation_field: "programmatic-redirect-domains][0]",
                says: "without port or wildcard",
            },
            Case {
                spec: json!({"jwtClaimHeaders": {"X-Email": ".email"}}),
                annotations: &[("jwt-claim-headers", "X-Email: .email")],
                spec_field: "spec.jwtClaimHeaders[X-Email]",
                annotation_field: "jwt-claim-headers][X-Email]",
                says: "\".email\" is not a claim name",
            },
            Case {
                spec: json!({"jwtClaimHeaders": {"X-Email": "e mail"}}),
                annotations: &[("jwt-claim-headers", "X-Email: e mail")],
                spec_field: "spec.jwtClaimHeaders[X-Email]",
                annotation_field: "jwt-claim-headers][X-Email]",
                says: "\"e mail\" is not a claim name",
            },
            Case {
                spec: json!({"jwtClaimHeaders": {"X Email": "email"}}),
                annotations: &[("jwt-claim-headers", "X Email: email")],
                spec_field: "spec.jwtClaimHeaders[X Email]",
                annotation_field: "jwt-claim-headers][X Email]",
                says: "\"X Email\" is not a header name",
            },
            Case {
                spec: json!({"setRequestHeaders": {"X-Team:": "a"}}),
                annotations: &[("set-request-headers", "'X-Team:': a")],
                spec_field: "spec.setRequestHeaders[X-Team:]",
                annotation_field: "set-request-headers][X-Team:]",
                says: "\"X-Team:\" is not a header name",
            },
            Case {
                spec: json!({"setRequestHeaders": {"X-Team": "a\r\nX-Evil: 1"}}),
                annotations: &[("set-request-headers", "X-Team: \"a\\r\\nX-Evil: 1\"")],
                spec_field: "spec.setRequestHeaders[X-Team]",
                annotation_field: "set-request-headers][X-Team]",
                says: "\"a\\r\\nX-Evil: 1\" is not a header value",
            },
            Case {
                spec: json!({"setRequestHeaders": {"X-Team": "a\u{0}b"}}),
                annotations: &[("set-request-headers", "X-Team: \"a\\0b\"")],
                spec_field: "spec.setRequestHeaders[X-Team]",
                annotation_field: "set-request-headers][X-Team]",
                says: "no control characters (CR, LF, NUL, ...)",
            },
            Case {
                spec: json!({"setRequestHeaders": {"X-Team": "a\nb"}}),
                annotations: &[("set-request-headers", "X-Team: \"a\\nb\"")],
                spec_field: "spec.setRequestHeaders[X-Team]",
                annotation_field: "set-request-headers][X-Team]",
                says: "\"a\\nb\" is not a header value",
            },
            Case {
                spec: json!({"setRequestHeaders": {"X-Team": 1}}),
                annotations: &[("set-request-headers", "X-Team: 1")],
                spec_field: "",
                annotation_field: "set-request-headers][X-Team]",
                says: "must be a string (quote it), not a number",
            },
            Case {
                spec: json!({"removeRequestHeaders": ["X-Debug", "bad header"]}),
                annotations: &[("remove-request-headers", "X-Debug, bad header")],
                spec_field: "spec.removeRequestHeaders[1]",
                annotation_field: "remove-request-headers][1]",
                says: "\"bad header\" is not a header name",
            },
            Case {
                spec: json!({"prefixRewrite": "/a/../b"}),
                annotations: &[("prefix-rewrite", "/a/../b")],
                spec_field: "spec.prefixRewrite",
                annotation_field: "prefix-rewrite]",
                says: "\"/a/../b\" is not a path",
            },
            Case {
                spec: json!({"prefixRewrite": "api"}),
                annotations: &[("prefix-rewrite", "api")],
                spec_field: "spec.prefixRewrite",
                annotation_field: "prefix-rewrite]",
                says: "\"api\" is not a path",
            },
            Case {
                spec: json!({"prefixRewrite": "/a%2Fb"}),
                annotations: &[("prefix-rewrite", "/a%2Fb")],
                spec_field: "spec.prefixRewrite",
                annotation_field: "prefix-rewrite]",
                says: "is not a path",
            },
            Case {
                spec: json!({"prefixRewrite": "//"}),
                annotations: &[("prefix-rewrite", "//")],
                spec_field: "spec.prefixRewrite",
                annotation_field: "prefix-rewrite]",
                says: "is not a path",
            },
            Case {
                spec: json!({"timeout": "0"}),
                annotations: &[("timeout", "0")],
                spec_field: "spec.timeout",
                annotation_field: "timeout]",
                says: "timeout must be between 1s and 24h",
            },
            Case {
                spec: json!({"timeout": "500ms"}),
                annotations: &[("timeout", "500ms")],
                spec_field: "spec.timeout",
                annotation_field: "timeout]",
                says: "timeout must be between 1s and 24h",
            },
            Case {
                spec: json!({"timeout": "24h0m1s"}),
                annotations: &[("timeout", "24h0m1s")],
                spec_field: "spec.timeout",
                annotation_field: "timeout]",
                says: "timeout must be between 1s and 24h",
            },
            Case {
                spec: json!({"timeout": "1d"}),
                annotations: &[("timeout", "1d")],
                spec_field: "spec.timeout",
                annotation_field: "timeout]",
                says: "\"1d\" is not a duration",
            },
            Case {
                spec: json!({"timeout": "30"}),
                annotations: &[("timeout", "30")],
                spec_field: "spec.timeout",
                annotation_field: "timeout]",
                says: "\"30\" is not a duration",
            },
            Case {
                spec: json!({"timeout": " 30s"}),
                annotations: &[("timeout", " 30s")],
                spec_field: "spec.timeout",
                annotation_field: "timeout]",
                says: "\" 30s\" is not a duration",
            },
        ];
        for case in &cases {
            if case.spec_field.is_empty() {
                // Not expressible in a Route: the field's type refuses it when deserializing.
                assert!(
                    serde_json::from_value::<RouteSpec>(json!({
                        "from": "https://a.example.com", "to": [], "setRequestHeaders": {"X": 1}
                    }))
                    .is_err()
                );
                let (field, message) = only_problem(ingress(case.annotations));
                let want = format!(
                    "metadata.annotations[portcullis.dev/{}",
                    case.annotation_field
                );
                assert_eq!(field, want);
                assert!(message.contains(case.says), "{message}");
            } else {
                check_case(case);
            }
        }
    }

    #[test]
    fn reserved_headers_are_refused_in_every_header_field() {
        for name in [
            "Host",
            "Transfer-Encoding",
            "content-length",
            "Connection",
            "TE",
            "Upgrade",
            "X-Portcullis-Jwt-Assertion",
            "x-portcullis-authorization",
            "X_Portcullis_Jwt_Assertion",
            "transfer_encoding",
        ] {
            let route = [
                ("jwtClaimHeaders", json!({ name: "email" })),
                ("setRequestHeaders", json!({ name: "x" })),
                ("removeRequestHeaders", json!([name])),
            ];
            for (field, value) in route {
                let (at, message) = only_problem(route_options(&spec(json!({ field: value }))));
                let want = if field == "removeRequestHeaders" {
                    format!("spec.{field}[0]")
                } else {
                    format!("spec.{field}[{name}]")
                };
                assert_eq!(at, want);
                assert!(message.contains("is managed by Portcullis"), "{message}");
                assert_eq!(
                    message.contains("use preserveHostHeader"),
                    name == "Host",
                    "{message}"
                );
            }
            let yaml = format!("{name}: email");
            let annotated = [
                ("jwt-claim-headers", yaml.as_str()),
                ("set-request-headers", yaml.as_str()),
                ("remove-request-headers", name),
            ];
            for (key, value) in annotated {
                let (at, message) = only_problem(ingress(&[(key, value)]));
                assert!(
                    at.starts_with(&format!("metadata.annotations[portcullis.dev/{key}][")),
                    "{at}"
                );
                assert!(message.contains("is managed by Portcullis"), "{message}");
                assert_eq!(
                    message.contains("use portcullis.dev/preserve-host-header"),
                    name == "Host",
                    "{message}"
                );
            }
        }
        // Close relatives stay allowed.
        let ok = options(route_options(&spec(json!({
            "setRequestHeaders": {"X-Portcullis": "1", "Hostname": "h", "X-Forwarded-Host": "f"}
        }))));
        let names: Vec<&str> = ok
            .set_request_headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["hostname", "x-forwarded-host", "x-portcullis"]);
    }

    #[test]
    fn header_values_with_line_breaks_never_reach_the_options() {
        for value in [
            "a\r\nX-Evil: 1",
            "a\rb",
            "a\nb",
            "a\u{0}b",
            "a\u{7f}b",
            "\u{1b}[31m",
        ] {
            let (at, message) = only_problem(route_options(&spec(
                json!({"setRequestHeaders": {"X-Team": value}}),
            )));
            assert_eq!(at, "spec.setRequestHeaders[X-Team]");
            assert!(
                !message.contains('\r') && !message.contains('\n'),
                "{message}"
            );
            assert!(!message.contains('\u{0}'), "{message}");
        }
        // Tab and non-ASCII text are header-safe and kept byte for byte.
        let ok = options(route_options(&spec(
            json!({"setRequestHeaders": {"X-Team": "é\tü"}}),
        )));
        assert_eq!(ok.set_request_headers[0].1.as_bytes(), "é\tü".as_bytes());
    }

    #[test]
    fn size_and_count_limits_match_the_crd() {
        let long_value = "v".repeat(HEADER_VALUE_MAX_LENGTH as usize + 1);
        let (at, message) = only_problem(route_options(&spec(
            json!({"setRequestHeaders": {"X-Big": long_value}}),
        )));
        assert_eq!(at, "spec.setRequestHeaders[X-Big]");
        assert!(message.contains("at most 4096 characters"), "{message}");
        assert!(message.len() < 400, "{message}");
        let at_limit = "v".repeat(HEADER_VALUE_MAX_LENGTH as usize);
        options(route_options(&spec(
            json!({"setRequestHeaders": {"X-Big": at_limit}}),
        )));

        let long_name = "x".repeat(HEADER_NAME_MAX_LENGTH as usize + 1);
        let (at, message) = only_problem(route_options(&spec(
            json!({"removeRequestHeaders": [long_name]}),
        )));
        assert_eq!(at, "spec.removeRequestHeaders[0]");
        assert!(message.contains("1 to 256"), "{message}");

        let many: Map<String, Value> = (0..=MAX_HEADERS)
            .map(|i| (format!("X-H{i}"), json!("v")))
            .collect();
        assert_eq!(
            only_problem(route_options(&spec(json!({ "setRequestHeaders": many })))),
            (
                "spec.setRequestHeaders".to_owned(),
                "has 33 entries; the limit is 32".to_owned()
            )
        );
        let many_names = vec!["a"; MAX_NAMES + 1].join(",");
        assert_eq!(
            only_problem(ingress(&[("programmatic-redirect-domains", &many_names)])),
            (
                "metadata.annotations[portcullis.dev/programmatic-redirect-domains]".to_owned(),
                "has 17 entries; the limit is 16".to_owned()
            )
        );
        let nine: Map<String, Value> = (0..9).map(|i| (format!("k{i}"), json!(null))).collect();
        assert_eq!(
            only_problem(route_options(&spec(json!({ "policy": nine })))),
            (
                "spec.policy".to_owned(),
                "has 9 keys; the limit is 8".to_owned()
            )
        );
    }

    #[test]
    fn header_names_are_case_insensitive_and_come_out_sorted() {
        let compiled = options(route_options(&spec(json!({
            "setRequestHeaders": {"X-b": "2", "a": "1", "X-C": "3"},
            "removeRequestHeaders": ["Z-Last", "b-first"],
        }))));
        let set: Vec<(&str, &str)> = compiled
            .set_request_headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(set, [("a", "1"), ("x-b", "2"), ("x-c", "3")]);
        let removed: Vec<&str> = compiled
            .remove_request_headers
            .iter()
            .map(HeaderName::as_str)
            .collect();
        assert_eq!(removed, ["b-first", "z-last"]);
        // The same headers from YAML in another order compile to the same options.
        let from_yaml = options(ingress(&[
            ("set-request-headers", "X-C: '3'\na: '1'\nX-b: '2'\n"),
            ("remove-request-headers", "b-first,Z-Last"),
        ]));
        assert_eq!(from_yaml, compiled);

        let (at, message) = only_problem(route_options(&spec(json!({
            "setRequestHeaders": {"X-Team": "a", "x-team": "b"}
        }))));
        assert_eq!(at, "spec.setRequestHeaders[x-team]");
        assert_eq!(
            message,
            "the header x-team is given more than once (header names are case-insensitive)"
        );
        let (at, _) = only_problem(ingress(&[("remove-request-headers", "X-A,x-a")]));
        assert_eq!(
            at,
            "metadata.annotations[portcullis.dev/remove-request-headers][1]"
        );
    }

    #[test]
    fn a_header_comes_from_one_field_only() {
        let all = problems(route_options(&spec(json!({
            "jwtClaimHeaders": {"X-Email": "email"},
            "setRequestHeaders": {"x-email": "fixed"},
            "removeRequestHeaders": ["X-Other", "X-EMAIL"],
        }))));
        let fields: Vec<&str> = all.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.jwtClaimHeaders[X-Email]",
                "spec.removeRequestHeaders[1]"
            ]
        );
        assert!(all[0].message.contains("also in setRequestHeaders"));
        assert!(all[1].message.contains("cannot be both set and removed"));
    }

    #[test]
    fn public_access_excludes_policy_and_any_authenticated_user() {
        let message =
            "lets everyone in, so it cannot be combined with policy or allowAnyAuthenticatedUser";
        for extra in [
            json!({"policy": {}}),
            json!({"allowAnyAuthenticatedUser": true}),
        ] {
            let mut fields = json!({"allowPublicUnauthenticatedAccess": true});
            fields
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            assert_eq!(
                only_problem(route_options(&spec(fields))),
                (
                    "spec.allowPublicUnauthenticatedAccess".to_owned(),
                    message.to_owned()
                )
            );
        }
        let (at, message) = only_problem(ingress(&[
            ("allow-public-unauthenticated-access", "true"),
            ("policy", ""),
        ]));
        assert_eq!(
            at,
            "metadata.annotations[portcullis.dev/allow-public-unauthenticated-access]"
        );
        assert!(
            message
                .ends_with("portcullis.dev/policy or portcullis.dev/allow-any-authenticated-user"),
            "{message}"
        );
        let public = options(ingress(&[
            ("allow-public-unauthenticated-access", "true"),
            ("allow-any-authenticated-user", "false"),
        ]));
        assert!(public.allow_public_unauthenticated_access);
        assert!(!public.allow_any_authenticated_user);
    }

    #[test]
    fn identity_providers_need_the_jwt_format() {
        for format in [None, Some("default"), Some("idp_access_token")] {
            let mut fields = json!({"identityProviders": ["github-actions"]});
            if let Some(f) = format {
                fields["bearerTokenFormat"] = json!(f);
            }
            assert_eq!(
                only_problem(route_options(&spec(fields))),
                (
                    "spec.identityProviders".to_owned(),
                    "only used with bearerTokenFormat jwt, which this route does not set"
                        .to_owned()
                )
            );
        }
        let (at, message) = only_problem(ingress(&[("identity-providers", "github-actions")]));
        assert_eq!(
            at,
            "metadata.annotations[portcullis.dev/identity-providers]"
        );
        assert!(message.contains("portcullis.dev/bearer-token-format jwt"));
        // An empty list says nothing and is fine with any format.
        let empty = options(route_options(&spec(json!({"identityProviders": []}))));
        assert!(empty.identity_providers.is_empty());
        let empty = options(ingress(&[("identity-providers", "")]));
        assert!(empty.identity_providers.is_empty());
    }

    #[test]
    fn redirect_domains_keep_unset_apart_from_empty() {
        assert_eq!(
            options(route_options(&spec(json!({})))).programmatic_redirect_domains,
            None
        );
        assert_eq!(
            options(route_options(&spec(
                json!({"programmaticRedirectDomains": []})
            )))
            .programmatic_redirect_domains,
            Some(vec![])
        );
        assert_eq!(
            options(ingress(&[("programmatic-redirect-domains", "")]))
                .programmatic_redirect_domains,
            Some(vec![])
        );
        assert_eq!(
            options(ingress(&[(
                "programmatic-redirect-domains",
                "b.example, a.example"
            )]))
            .programmatic_redirect_domains,
            Some(vec!["a.example".to_owned(), "b.example".to_owned()])
        );
    }

    #[test]
    fn bearer_token_formats_and_booleans_are_spelt_exactly() {
        for format in BearerTokenFormat::ALL {
            let spec_format = options(route_options(&spec(
                json!({"bearerTokenFormat": format.as_str()}),
            )));
            assert_eq!(spec_format.bearer_token_format, format);
            let annotated = options(ingress(&[("bearer-token-format", format.as_str())]));
            assert_eq!(annotated.bearer_token_format, format);
        }
        assert_eq!(
            only_problem(ingress(&[("bearer-token-format", "JWT")])),
            (
                "metadata.annotations[portcullis.dev/bearer-token-format]".to_owned(),
                "must be one of default, idp_access_token, idp_identity_token, jwt, not \"JWT\""
                    .to_owned()
            )
        );
        for bad in ["True", "yes", "1", "", " true", "false\n"] {
            let (at, message) = only_problem(ingress(&[("allow-websockets", bad)]));
            assert_eq!(at, "metadata.annotations[portcullis.dev/allow-websockets]");
            assert_eq!(
                message,
                format!("must be \"true\" or \"false\", not {}", quote(bad))
            );
        }
        let flags = [
            "allow-any-authenticated-user",
            "pass-identity-headers",
            "preserve-host-header",
            "allow-websockets",
            "cors-allow-preflight",
        ];
        let on: Vec<(&str, &str)> = flags.iter().map(|f| (*f, "true")).collect();
        let o = options(ingress(&on));
        assert!(o.allow_any_authenticated_user && o.pass_identity_headers);
        assert!(o.preserve_host_header && o.allow_websockets && o.cors_allow_preflight);
        let off: Vec<(&str, &str)> = flags.iter().map(|f| (*f, "false")).collect();
        let o = options(ingress(&off));
        assert!(!o.allow_any_authenticated_user && !o.pass_identity_headers);
        assert!(!o.preserve_host_header && !o.allow_websockets && !o.cors_allow_preflight);
    }

    #[test]
    fn timeouts_parse_go_durations_within_bounds() {
        for (text, want) in [
            ("1s", Duration::from_secs(1)),
            ("1.5m", Duration::from_secs(90)),
            ("24h", Duration::from_secs(24 * 3600)),
            ("1000ms", Duration::from_secs(1)),
        ] {
            assert_eq!(
                options(route_options(&spec(json!({ "timeout": text })))).timeout,
                want
            );
            assert_eq!(options(ingress(&[("timeout", text)])).timeout, want);
        }
        let long = "1".repeat(10_000);
        let (_, message) = only_problem(ingress(&[("timeout", &long)]));
        assert!(message.len() < 300, "{message}");
        assert!(message.contains('…'), "{message}");
    }

    #[test]
    fn prefix_rewrites_are_stored_in_canonical_form() {
        for path in ["/", "/api", "/api/v2/", "/~user/a.b"] {
            assert_eq!(
                options(route_options(&spec(json!({ "prefixRewrite": path })))).prefix_rewrite,
                Some(path.to_owned())
            );
        }
    }

    #[test]
    fn unknown_annotations_are_problems() {
        let (at, message) = only_problem(ingress_options(&annotations(&[
            ("portcullis.dev/timeot", "30s"),
            ("example.com/timeot", "30s"),
        ])));
        assert_eq!(at, "metadata.annotations[portcullis.dev/timeot]");
        assert!(message.starts_with("unknown annotation; the portcullis.dev/ annotations are policy, allow-any-authenticated-user,"), "{message}");
        assert!(
            message.ends_with("allow-websockets, cors-allow-preflight"),
            "{message}"
        );
        // Names are case-sensitive, and the bare prefix is no annotation either.
        for key in [
            "portcullis.dev/Timeout",
            "portcullis.dev/",
            "portcullis.dev/allowWebsockets",
        ] {
            let (at, _) = only_problem(ingress_options(&annotations(&[(key, "true")])));
            assert_eq!(at, format!("metadata.annotations[{key}]"));
        }
    }

    #[test]
    fn known_annotations_mirror_the_route_fields() {
        assert_eq!(KNOWN_ANNOTATIONS.len(), 15);
        for field in Field::ALL {
            let (spec_name, annotation) = field.names();
            let kebab: String = spec_name
                .chars()
                .flat_map(|c| {
                    let dash = c.is_ascii_uppercase().then_some('-');
                    dash.into_iter()
                        .chain(std::iter::once(c.to_ascii_lowercase()))
                })
                .collect();
            assert_eq!(kebab, annotation);
        }
        // Every field of the Route spec besides from, to and tls is an option here.
        let crd = serde_json::to_value(<api::Route as kube::CustomResourceExt>::crd()).unwrap();
        let properties = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
            ["spec"]["properties"]
            .as_object()
            .unwrap();
        let mut in_crd: Vec<&str> = properties
            .keys()
            .map(String::as_str)
            .filter(|k| !["from", "to", "tls"].contains(k))
            .collect();
        let mut here: Vec<&str> = Field::ALL.iter().map(|f| f.names().0).collect();
        in_crd.sort_unstable();
        here.sort_unstable();
        assert_eq!(in_crd, here);
    }

    #[test]
    fn policies_sharing_an_expression_each_get_its_outcome() {
        let cel = ParsedExpressions::default();
        let good = "identity.email == 'a@example.com'";
        let bad = "request.method == ";
        let first = json!({"allow": {"or": [{"expression": good}, {"expression": bad}]}});
        let second = json!({"deny": {"or": [{"expression": bad}]}, "allow": {"and": [{"expression": good}]}});
        for (policy, at) in [(first, "allow.or[1]"), (second, "deny.or[0]")] {
            let all = problems(super::route_options(
                &spec(json!({ "policy": policy })),
                &cel,
            ));
            assert!(!all.is_empty());
            let field = format!("spec.policy.{at}.expression");
            assert!(all.iter().all(|p| p.field == field), "{all:#?}");
        }
        let third =
            json!({"allow": {"or": [{"domain": {"is": "other.org"}}, {"expression": good}]}});
        let Ok(compiled) = super::route_options(&spec(json!({ "policy": third })), &cel) else {
            panic!("the third policy is valid");
        };
        assert!(matches!(
            decide(&compiled.policy, "a@example.com"),
            Decision::Allow
        ));
        assert!(!matches!(
            decide(&compiled.policy, "b@example.com"),
            Decision::Allow
        ));
    }

    #[test]
    fn invalid_cel_is_reported_at_its_path() {
        let policy = json!({"allow": {"or": [
            {"email": {"is": "a@example.com"}},
            {"expression": "request.method == "},
        ]}});
        let all = problems(route_options(&spec(json!({ "policy": policy }))));
        assert!(!all.is_empty());
        assert!(
            all.iter()
                .all(|p| p.field == "spec.policy.allow.or[1].expression"),
            "{all:#?}"
        );
        let yaml = "allow:\n  or:\n    - email: {is: a@example.com}\n    - expression: 'request.method == '\n";
        let all = problems(ingress(&[("policy", yaml)]));
        assert!(
            all.iter()
                .all(|p| p.field
                    == "metadata.annotations[portcullis.dev/policy].allow.or[1].expression"),
            "{all:#?}"
        );
        // A policy that is not a mapping.
        let (at, message) = only_problem(ingress(&[("policy", "- allow: {or: [{email: a}]}")]));
        assert_eq!(at, "metadata.annotations[portcullis.dev/policy]");
        assert_eq!(
            message,
            "must be a mapping with allow and/or deny, not a list"
        );
        let (at, message) = only_problem(ingress(&[("policy", "allow: [")]));
        assert_eq!(at, "metadata.annotations[portcullis.dev/policy]");
        assert!(message.starts_with("invalid YAML: "), "{message}");
    }

    #[test]
    fn policy_problems_are_clipped_and_escaped() {
        let key = format!("x\n{}", "k".repeat(10_000));
        let all = problems(route_options(&spec(json!({
            "policy": {"allow": {"or": [{ key.as_str(): 1 }]}}
        }))));
        assert_eq!(all.len(), 1, "{all:#?}");
        let field = &all[0].field;
        assert!(
            field.starts_with("spec.policy.allow.or[0].x\\nkkk"),
            "{field}"
        );
        assert!(
            field.ends_with('…') && field.chars().count() < 300,
            "{field}"
        );
        let message = &all[0].message;
        assert!(
            message.starts_with("unknown criterion `x\\nkkk"),
            "{message}"
        );
        assert!(
            message.ends_with('…') && message.chars().count() == 514,
            "{message}"
        );
    }

    /// The classic billion-laughs document: nine levels of nine aliases each.
    fn billion_laughs(prefix: &str) -> String {
        let mut doc = format!(
            "{prefix}a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in names.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let refs = vec![format!("*{prev}"); 9].join(",");
            doc.push_str(&format!("{prefix}{next}: &{next} [{refs}]\n"));
        }
        doc
    }

    #[test]
    fn yaml_alias_bombs_are_refused_quickly() {
        let started = Instant::now();
        let policy = format!("allow:\n{}", billion_laughs("  "));
        let (at, message) = only_problem(ingress(&[("policy", &policy)]));
        assert_eq!(at, "metadata.annotations[portcullis.dev/policy]");
        assert_eq!(message, "invalid YAML: repetition limit exceeded");
        let (at, message) = only_problem(ingress(&[("set-request-headers", &billion_laughs(""))]));
        assert_eq!(
            at,
            "metadata.annotations[portcullis.dev/set-request-headers]"
        );
        assert!(message.starts_with("invalid YAML: "), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn megabyte_policies_are_refused_before_parsing_or_compiling() {
        let huge = format!(
            "allow: {{or: [{{http_path: {{is: /{}}}}}]}}",
            "x".repeat(1 << 20)
        );
        let started = Instant::now();
        assert_eq!(
            only_problem(ingress(&[("policy", &huge)])),
            (
                "metadata.annotations[portcullis.dev/policy]".to_owned(),
                format!(
                    "the value is {} bytes; the limit is {MAX_POLICY_ANNOTATION_BYTES}",
                    huge.len()
                )
            )
        );
        let huge_map = format!("X-A: {}", "x".repeat(1 << 20));
        let (at, message) = only_problem(ingress(&[("set-request-headers", &huge_map)]));
        assert_eq!(
            at,
            "metadata.annotations[portcullis.dev/set-request-headers]"
        );
        assert!(message.ends_with(&format!("the limit is {MAX_ANNOTATION_BYTES}")));
        // The same megabyte policy in a Route is refused by the policy compiler's size check.
        let path = format!("/{}", "x".repeat(1 << 20));
        let (at, message) = only_problem(route_options(&spec(json!({
            "policy": {"allow": {"or": [{"http_path": {"is": path}}]}}
        }))));
        assert_eq!(at, "spec.policy");
        assert!(message.contains("larger than"), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_in_a_fixed_order() {
        let bad = annotations(&[
            ("portcullis.dev/timeout", "forever"),
            ("portcullis.dev/allow-websockets", "yes"),
            ("portcullis.dev/nonsense", "1"),
            (
                "portcullis.dev/set-request-headers",
                "X-A: \"a\\nb\"\nHost: h\n",
            ),
            ("portcullis.dev/prefix-rewrite", "/a/./b"),
            ("portcullis.dev/bearer-token-format", "opaque"),
            ("portcullis.dev/policy", "allow: {or: [{emial: x}]}"),
        ]);
        let first = problems(ingress_options(&bad));
        let fields: Vec<&str> = first.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                // Reading, in key order.
                "metadata.annotations[portcullis.dev/allow-websockets]",
                "metadata.annotations[portcullis.dev/bearer-token-format]",
                "metadata.annotations[portcullis.dev/nonsense]",
                // Checking, in field order.
                "metadata.annotations[portcullis.dev/policy].allow.or[0].emial",
                "metadata.annotations[portcullis.dev/set-request-headers][Host]",
                "metadata.annotations[portcullis.dev/set-request-headers][X-A]",
                "metadata.annotations[portcullis.dev/prefix-rewrite]",
                "metadata.annotations[portcullis.dev/timeout]",
            ]
        );
        assert_eq!(problems(ingress_options(&bad)), first);

        let spec_problems = problems(route_options(&spec(json!({
            "allowPublicUnauthenticatedAccess": true,
            "allowAnyAuthenticatedUser": true,
            "timeout": "0",
            "removeRequestHeaders": ["Connection"],
        }))));
        let fields: Vec<&str> = spec_problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.allowPublicUnauthenticatedAccess",
                "spec.removeRequestHeaders[0]",
                "spec.timeout"
            ]
        );
    }

    #[test]
    fn problems_quote_at_most_a_short_escaped_excerpt() {
        let key = format!("X-{}", "k".repeat(500));
        let value = format!("{}\r\n{}", "v".repeat(100), "w".repeat(100_000));
        let all = problems(route_options(&spec(json!({
            "setRequestHeaders": { key.as_str(): "ok", "X-Team": value }
        }))));
        assert_eq!(all.len(), 2, "{all:#?}");
        for p in &all {
            assert!(p.field.len() < 120, "{}", p.field);
            assert!(p.message.len() < 400, "{}", p.message);
            assert!(!p.message.contains(['\r', '\n']), "{}", p.message);
        }
        assert_eq!(
            all[0].field,
            format!("spec.setRequestHeaders[X-{}…]", "k".repeat(62))
        );
        assert!(
            all[1]
                .message
                .starts_with(&format!("\"{}…\"", "v".repeat(64)))
        );
        assert_eq!(shorten("a\r\n\"b"), "a\\r\\n\\\"b");
        assert_eq!(
            OptionProblem {
                field: "spec.timeout".into(),
                message: "timeout must be between 1s and 24h".into()
            }
            .to_string(),
            "spec.timeout: timeout must be between 1s and 24h"
        );
    }

    #[test]
    fn the_api_patterns_compile() {
        for pattern in [
            &DNS_LABEL,
            &HOST,
            &HEADER_NAME,
            &HEADER_VALUE,
            &CLAIM_NAME,
            &PATH,
        ] {
            assert!(Regex::new(pattern.source).is_ok(), "{}", pattern.source);
            assert!(
                pattern
                    .regex
                    .get_or_init(|| Regex::new(pattern.source).ok())
                    .is_some()
            );
        }
    }
}
