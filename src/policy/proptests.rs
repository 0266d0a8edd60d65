//! Property tests: random policy trees checked against an independent three-valued reference
//! evaluator, deny monotonicity, the empty policy, and no panic on arbitrary JSON.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use super::*;

/// A criterion with an obvious meaning, so the reference below can be written independently.
#[derive(Debug, Clone)]
enum Crit {
    ServiceAccount(&'static str),
    User(&'static str),
    EmailIs(&'static str),
    EmailEndsWith(&'static str),
    Domain(&'static str),
    Group(&'static str),
    Namespace(&'static str),
    Team(&'static str),
    Method(&'static str),
    PathPrefix(&'static str),
    Authenticated,
    Expression(&'static str),
}

/// Expressions whose outcome the reference knows (`None` = an error).
const EXPRESSIONS: [&str; 8] = [
    "true",
    "false",
    "1 / 0 == 1",
    "'not a bool'",
    "request.method == 'GET'",
    "request.path.startsWith('/admin')",
    "identity.kind == 'user'",
    "'payments' in identity.groups",
];

#[derive(Debug, Clone)]
enum Spec {
    Op(&'static str, Vec<Spec>),
    Crit(Crit),
}

fn crit() -> impl Strategy<Value = Crit> {
    prop_oneof![
        select(vec!["team-a/bot", "team-b/bot", "team-a/other"]).prop_map(Crit::ServiceAccount),
        select(vec!["u1", "u2"]).prop_map(Crit::User),
        select(vec!["alice@example.com", "BOB@example.com", "eve@evil.com"])
            .prop_map(Crit::EmailIs),
        select(vec!["@example.com", ".com", "@EVIL.com"]).prop_map(Crit::EmailEndsWith),
        select(vec!["example.com", "evil.com", "EXAMPLE.COM"]).prop_map(Crit::Domain),
        select(vec!["payments", "admins", "dev"]).prop_map(Crit::Group),
        select(vec!["team-a", "team-b"]).prop_map(Crit::Namespace),
        select(vec!["a", "b"]).prop_map(Crit::Team),
        select(vec!["GET", "post", "Delete"]).prop_map(Crit::Method),
        select(vec!["/admin", "/api", "/"]).prop_map(Crit::PathPrefix),
        Just(Crit::Authenticated),
        select(EXPRESSIONS.to_vec()).prop_map(Crit::Expression),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    crit()
        .prop_map(Spec::Crit)
        .prop_recursive(4, 32, 4, |inner| {
            (
                select(vec!["and", "or", "not", "nor"]),
                prop::collection::vec(inner, 1..4),
            )
                .prop_map(|(op, children)| Spec::Op(op, children))
        })
}

/// A block: always an operator at the top.
fn block() -> impl Strategy<Value = Spec> {
    (
        select(vec!["and", "or", "not", "nor"]),
        prop::collection::vec(spec(), 1..4),
    )
        .prop_map(|(op, children)| Spec::Op(op, children))
}

fn crit_json(c: &Crit) -> Value {
    match c {
        Crit::ServiceAccount(s) => json!({"serviceAccount": {"is": s}}),
        Crit::User(s) => json!({"user": s}),
        Crit::EmailIs(s) => json!({"email": {"is": s}}),
        Crit::EmailEndsWith(s) => json!({"email": {"ends_with": s}}),
        Crit::Domain(s) => json!({"domain": {"in": [s]}}),
        Crit::Group(s) => json!({"groups": {"has": s}}),
        Crit::Namespace(s) => json!({"claim/kubernetes.io.namespace": {"is": s}}),
        Crit::Team(s) => json!({"claim/team": s}),
        Crit::Method(s) => json!({"http_method": {"is": s}}),
        Crit::PathPrefix(s) => json!({"http_path": {"starts_with": s}}),
        Crit::Authenticated => json!({"authenticated_user": true}),
        Crit::Expression(s) => json!({"expression": s}),
    }
}

fn spec_json(s: &Spec) -> Value {
    match s {
        Spec::Crit(c) => crit_json(c),
        Spec::Op(op, children) => json!({*op: children.iter().map(spec_json).collect::<Vec<_>>()}),
    }
}

fn policy_json(allow: &[Spec], deny: &[Spec]) -> Value {
    let rules: Vec<Value> = allow
        .iter()
        .map(|s| json!({"allow": spec_json(s)}))
        .chain(deny.iter().map(|s| json!({"deny": spec_json(s)})))
        .collect();
    Value::Array(rules)
}

// ---------------------------------------------------------------- the reference

fn trusted_email(id: &Identity) -> Option<String> {
    let email = id.email.clone().filter(|e| !e.is_empty())?;
    let trusted = matches!(id.kind, IdentityKind::ServiceAccount { .. }) || id.email_verified;
    trusted.then(|| email.to_lowercase())
}

fn reference_crit(c: &Crit, id: Option<&Identity>, req: &Request) -> Option<bool> {
    let lower = |s: &str| s.to_lowercase();
    Some(match c {
        Crit::ServiceAccount(s) => id.is_some_and(|id| match &id.kind {
            IdentityKind::ServiceAccount { namespace, name } => format!("{namespace}/{name}") == *s,
            _ => false,
        }),
        Crit::User(s) => id.is_some_and(|id| id.kind == IdentityKind::User && id.subject == *s),
        Crit::EmailIs(s) => id.and_then(trusted_email) == Some(lower(s)),
        Crit::EmailEndsWith(s) => id
            .and_then(trusted_email)
            .is_some_and(|e| e.ends_with(&lower(s))),
        Crit::Domain(s) => id.and_then(trusted_email).is_some_and(|e| {
            e.rsplit_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d == lower(s))
        }),
        Crit::Group(s) => id.is_some_and(|id| id.groups.iter().any(|g| g == s)),
        Crit::Namespace(s) => id.is_some_and(|id| {
            let flat = id.claims.get("kubernetes.io.namespace");
            let nested = id
                .claims
                .get("kubernetes.io")
                .and_then(|v| v.get("namespace"));
            flat.or(nested) == Some(&json!(s))
        }),
        Crit::Team(s) => id.is_some_and(|id| match id.claims.get("team") {
            Some(Value::String(t)) => t == s,
            Some(Value::Array(items)) => items.contains(&json!(s)),
            _ => false,
        }),
        Crit::Method(s) => req.method.to_uppercase() == s.to_uppercase(),
        Crit::PathPrefix(s) => req.path.starts_with(s),
        Crit::Authenticated => id.is_some(),
        Crit::Expression(e) => match *e {
            "true" => true,
            "false" => false,
            "request.method == 'GET'" => req.method.to_uppercase() == "GET",
            "request.path.startsWith('/admin')" => req.path.starts_with("/admin"),
            "identity.kind == 'user'" => id?.kind == IdentityKind::User,
            "'payments' in identity.groups" => id?.groups.iter().any(|g| g == "payments"),
            _ => return None,
        },
    })
}

/// Kleene logic, written out: `None` is unknown.
fn reference(s: &Spec, id: Option<&Identity>, req: &Request) -> Option<bool> {
    let Spec::Op(op, children) = s else {
        let Spec::Crit(c) = s else { return None };
        return reference_crit(c, id, req);
    };
    let values: Vec<Option<bool>> = children.iter().map(|c| reference(c, id, req)).collect();
    let and = if values.contains(&Some(false)) {
        Some(false)
    } else if values.contains(&None) {
        None
    } else {
        Some(true)
    };
    let or = if values.contains(&Some(true)) {
        Some(true)
    } else if values.contains(&None) {
        None
    } else {
        Some(false)
    };
    match *op {
        "and" => and,
        "or" => or,
        "not" => or.map(|v| !v),
        _ => and.map(|v| !v),
    }
}

fn any_of(blocks: &[Spec], id: Option<&Identity>, req: &Request) -> Option<bool> {
    let values: Vec<Option<bool>> = blocks.iter().map(|b| reference(b, id, req)).collect();
    if values.contains(&Some(true)) {
        Some(true)
    } else if values.contains(&None) {
        None
    } else {
        Some(false)
    }
}

/// The expected decision label: "allow", or the deny reason's label.
fn reference_decision(
    allow: &[Spec],
    deny: &[Spec],
    id: Option<&Identity>,
    req: &Request,
) -> &'static str {
    match any_of(deny, id, req) {
        Some(true) => "denied",
        None => "evaluation_error",
        Some(false) => match any_of(allow, id, req) {
            Some(true) => "allow",
            Some(false) => "no_match",
            None => "evaluation_error",
        },
    }
}

fn label(d: &Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Deny { reason } => reason.label(),
    }
}

// ---------------------------------------------------------------- identities and requests

fn identity() -> impl Strategy<Value = Option<Identity>> {
    let kind = prop_oneof![
        Just(IdentityKind::User),
        Just(IdentityKind::External),
        select(vec![
            ("team-a", "bot"),
            ("team-b", "bot"),
            ("team-a", "other")
        ])
        .prop_map(|(namespace, name)| IdentityKind::ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
    ];
    let email = prop::option::of(select(vec![
        "alice@example.com",
        "Bob@Example.com",
        "eve@evil.com",
        "no-at-sign",
        "@example.com",
        "",
    ]));
    let groups = prop::collection::vec(select(vec!["payments", "admins", "dev"]), 0..3);
    let claims = (
        prop::option::of(select(vec!["team-a", "team-b"])),
        prop::option::of(select(vec!["team-a", "team-b"])),
        prop::option::of(prop_oneof![
            select(vec!["a", "b"]).prop_map(|s| json!(s)),
            Just(json!(1)),
            Just(json!(["a"])),
        ]),
    )
        .prop_map(|(nested, flat, team)| {
            let mut m = serde_json::Map::new();
            if let Some(ns) = nested {
                m.insert("kubernetes.io".to_owned(), json!({"namespace": ns}));
            }
            if let Some(ns) = flat {
                m.insert("kubernetes.io.namespace".to_owned(), json!(ns));
            }
            if let Some(t) = team {
                m.insert("team".to_owned(), t);
            }
            m
        });
    prop::option::of(
        (
            kind,
            select(vec!["u1", "u2"]),
            email,
            any::<bool>(),
            groups,
            claims,
        )
            .prop_map(
                |(kind, subject, email, verified, groups, claims)| Identity {
                    kind,
                    subject: subject.to_owned(),
                    email: email.map(str::to_owned),
                    email_verified: verified,
                    groups: groups.into_iter().map(str::to_owned).collect(),
                    claims,
                    issuer: Some("https://issuer.example.com".to_owned()),
                },
            ),
    )
}

fn method_and_path() -> impl Strategy<Value = (&'static str, &'static str)> {
    (
        select(vec!["GET", "get", "POST", "DELETE"]),
        select(vec!["/", "/admin", "/admin/users", "/api/v1", "/apiadmin"]),
    )
}

fn request<'a>(method: &'a str, path: &'a str) -> Request<'a> {
    Request {
        method,
        path,
        host: "app.example.com",
        headers: &[],
    }
}

// ---------------------------------------------------------------- arbitrary JSON

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let word = select(vec![
        "allow",
        "deny",
        "and",
        "or",
        "not",
        "nor",
        "email",
        "domain",
        "groups",
        "user",
        "serviceAccount",
        "claim/a.b",
        "claim/",
        "claim",
        "http_method",
        "http_path",
        "expression",
        "authenticated_user",
        "is",
        "in",
        "has",
        "starts_with",
        "ends_with",
        "contains",
        "x",
    ])
    .prop_map(str::to_owned);
    let text = prop_oneof![
        word.clone(),
        select(vec![
            "true",
            "request.method == 'GET'",
            "claims.x",
            "((((",
            "1 / 0",
            "/admin",
            "a@example.com",
            "",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        text.prop_map(Value::String),
    ];
    leaf.prop_recursive(8, 96, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((word.clone(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn evaluation_matches_the_reference(
        allow in prop::collection::vec(block(), 0..3),
        deny in prop::collection::vec(block(), 0..2),
        id in identity(),
        (method, path) in method_and_path(),
    ) {
        let p = Policy::compile(&policy_json(&allow, &deny));
        prop_assert!(p.is_ok(), "{:?}", p.err());
        let p = p.unwrap_or_else(|_| Policy::deny_all());
        let req = request(method, path);
        let got = p.evaluate(id.as_ref(), &req);
        prop_assert_eq!(label(&got), reference_decision(&allow, &deny, id.as_ref(), &req), "{:?}", got);
    }

    #[test]
    fn adding_a_deny_never_turns_deny_into_allow(
        allow in prop::collection::vec(block(), 0..3),
        deny in prop::collection::vec(block(), 0..2),
        extra in block(),
        id in identity(),
        (method, path) in method_and_path(),
    ) {
        let req = request(method, path);
        let before = Policy::compile(&policy_json(&allow, &deny)).map(|p| p.evaluate(id.as_ref(), &req));
        let mut more = deny.clone();
        more.push(extra);
        let after = Policy::compile(&policy_json(&allow, &more)).map(|p| p.evaluate(id.as_ref(), &req));
        prop_assert!(before.is_ok() && after.is_ok());
        if matches!(after, Ok(Decision::Allow)) {
            prop_assert_eq!(before, Ok(Decision::Allow));
        }
    }

    #[test]
    fn the_empty_policy_denies_everything(id in identity(), (method, path) in method_and_path()) {
        let req = request(method, path);
        for v in [json!(null), json!({}), json!([]), json!([{}, {}])] {
            let p = Policy::compile(&v);
            prop_assert!(p.is_ok());
            let d = p.map(|p| p.evaluate(id.as_ref(), &req));
            prop_assert_eq!(d, Ok(Decision::Deny { reason: DenyReason::NoMatch }));
        }
    }

    #[test]
    fn allow_or_x_allows_exactly_when_x_matches(
        x in crit(),
        id in identity(),
        (method, path) in method_and_path(),
    ) {
        let req = request(method, path);
        let expected = reference_crit(&x, id.as_ref(), &req);
        let allow = Policy::compile(&json!({"allow": {"or": [crit_json(&x)]}}))
            .map(|p| p.evaluate(id.as_ref(), &req).is_allow());
        prop_assert_eq!(allow, Ok(expected == Some(true)));
        // And its negation allows exactly when X is false (never on an error).
        let not = Policy::compile(&json!({"allow": {"not": [crit_json(&x)]}}))
            .map(|p| p.evaluate(id.as_ref(), &req).is_allow());
        prop_assert_eq!(not, Ok(expected == Some(false)));
    }

    #[test]
    fn arbitrary_json_never_panics(
        v in arbitrary_json(),
        id in identity(),
        (method, path) in method_and_path(),
    ) {
        let req = request(method, path);
        match Policy::compile(&v) {
            Ok(p) => {
                let _ = p.evaluate(id.as_ref(), &req);
                let _ = p.evaluate(None, &req);
            }
            Err(problems) => {
                prop_assert!(!problems.is_empty() && problems.len() <= MAX_PROBLEMS + 1);
                prop_assert!(problems.iter().all(|p| !p.message.is_empty()));
            }
        }
        for wrapped in [json!({"allow": {"or": [v.clone()]}}), json!({"deny": {"and": [{"or": [v]}]}})] {
            if let Ok(p) = Policy::compile(&wrapped) {
                let _ = p.evaluate(id.as_ref(), &req);
            }
        }
    }

    #[test]
    fn arbitrary_expressions_never_crash_compile(
        tokens in prop::collection::vec(select(vec![
            "(", ")", "[", "]", "{", "}", "request", "claims", "identity", ".", "x", "1", "'s'",
            "\"", "'", "r'", "+", "-", "!", "&&", "||", "==", "?", ":", ",", "in", "map", "all",
            "exists", "(x,", "size(", "matches(", "//", "\n", "\\", "'''", "has(", " ",
        ]), 0..400),
    ) {
        let src: String = tokens.concat();
        if let Ok(p) = Policy::compile(&json!({"allow": {"or": [{"expression": src}]}})) {
            let _ = p.evaluate(None, &request("GET", "/"));
        }
    }
}
