//! Unit tests of the policy engine: criteria, matchers, operators, CEL, compile problems and
//! limits, through the public API only.

use serde_json::{Value, json};

use super::*;

fn policy(v: Value) -> Policy {
    match Policy::compile(&v) {
        Ok(p) => p,
        Err(problems) => panic!("unexpected problems: {problems:?}"),
    }
}

fn problems(v: Value) -> Vec<Problem> {
    match Policy::compile(&v) {
        Ok(_) => panic!("expected problems for {v}"),
        Err(p) => p,
    }
}

fn claims(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("claims must be an object"),
    }
}

fn person(email: &str, verified: bool) -> Identity {
    Identity {
        kind: IdentityKind::User,
        subject: "user-123".to_owned(),
        email: Some(email.to_owned()),
        email_verified: verified,
        groups: vec!["payments".to_owned(), "dev".to_owned()],
        claims: claims(json!({"iss": "https://accounts.example.com", "sub": "user-123"})),
        issuer: Some("https://accounts.example.com".to_owned()),
    }
}

fn service_account(namespace: &str, name: &str) -> Identity {
    Identity {
        kind: IdentityKind::ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        },
        subject: format!("serviceaccount:{namespace}/{name}"),
        email: None,
        email_verified: false,
        groups: Vec::new(),
        claims: claims(json!({
            "sub": format!("serviceaccount:{namespace}/{name}"),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}},
        })),
        issuer: Some("https://auth.example.com".to_owned()),
    }
}

fn external(subject: &str) -> Identity {
    Identity {
        kind: IdentityKind::External,
        subject: subject.to_owned(),
        email: None,
        email_verified: false,
        groups: Vec::new(),
        claims: claims(json!({
            "iss": "https://token.actions.githubusercontent.com",
            "sub": subject,
            "repository_owner": "acme",
        })),
        issuer: Some("https://token.actions.githubusercontent.com".to_owned()),
    }
}

const NO_HEADERS: &[(String, String)] = &[];

fn req<'a>(method: &'a str, path: &'a str) -> Request<'a> {
    Request {
        method,
        path,
        host: "billing.example.com",
        headers: NO_HEADERS,
    }
}

fn allows(p: &Policy, id: Option<&Identity>, r: &Request) -> bool {
    p.evaluate(id, r).is_allow()
}

/// `allow: {or: [criterion]}`.
fn allow_one(criterion: Value) -> Policy {
    policy(json!({"allow": {"or": [criterion]}}))
}

fn paths(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

// ---------------------------------------------------------------- empty and deny-all

#[test]
fn empty_policies_deny_everyone() {
    let alice = person("alice@example.com", true);
    for v in [json!(null), json!({}), json!([]), json!([{}])] {
        let p = policy(v.clone());
        assert!(p.is_empty(), "{v}");
        for id in [None, Some(&alice)] {
            assert_eq!(
                p.evaluate(id, &req("GET", "/")),
                Decision::Deny {
                    reason: DenyReason::NoMatch
                },
                "{v}"
            );
        }
    }
    assert!(!allows(&Policy::deny_all(), Some(&alice), &req("GET", "/")));
    assert!(Policy::deny_all().is_empty());
}

#[test]
fn deny_only_policy_never_allows() {
    let p = policy(json!({"deny": {"or": [{"http_path": {"starts_with": "/admin"}}]}}));
    let alice = person("alice@example.com", true);
    assert_eq!(
        p.evaluate(Some(&alice), &req("GET", "/")),
        Decision::Deny {
            reason: DenyReason::NoMatch
        }
    );
}

// ---------------------------------------------------------------- criteria

#[test]
fn service_account_matches_namespace_slash_name_of_credentials_only() {
    let p = allow_one(json!({"serviceAccount": {"is": "team-a/billing-bot"}}));
    let r = req("GET", "/");
    assert!(allows(
        &p,
        Some(&service_account("team-a", "billing-bot")),
        &r
    ));
    assert!(!allows(
        &p,
        Some(&service_account("team-b", "billing-bot")),
        &r
    ));
    assert!(!allows(&p, Some(&service_account("team-a", "billing")), &r));
    // A person or an external token whose subject looks like a credential is not one.
    let mut impostor = person("x@example.com", true);
    impostor.subject = "team-a/billing-bot".to_owned();
    assert!(!allows(&p, Some(&impostor), &r));
    assert!(!allows(&p, Some(&external("team-a/billing-bot")), &r));
    assert!(!allows(&p, None, &r));

    let p = allow_one(json!({"serviceAccount": {"starts_with": "team-a/"}}));
    assert!(allows(&p, Some(&service_account("team-a", "anything")), &r));
    assert!(!allows(&p, Some(&service_account("team-ab", "x")), &r));
    let p = allow_one(json!({"serviceAccount": {"in": ["team-a/x", "team-b/y"]}}));
    assert!(allows(&p, Some(&service_account("team-b", "y")), &r));
    assert!(!allows(&p, Some(&service_account("team-b", "x")), &r));
    let p = allow_one(json!({"serviceAccount": "team-a/x"}));
    assert!(allows(&p, Some(&service_account("team-a", "x")), &r));
}

#[test]
fn user_matches_the_subject_of_people_only() {
    let p = allow_one(json!({"user": {"is": "user-123"}}));
    let r = req("GET", "/");
    assert!(allows(&p, Some(&person("a@example.com", false)), &r));
    assert!(!allows(&p, Some(&external("user-123")), &r));
    let mut other = person("a@example.com", true);
    other.subject = "user-1234".to_owned();
    assert!(!allows(&p, Some(&other), &r));
    let p = allow_one(json!({"user": {"ends_with": "-123"}}));
    assert!(allows(&p, Some(&person("a@example.com", false)), &r));
}

#[test]
fn email_requires_verification_for_people_and_external_identities() {
    let p = allow_one(json!({"email": {"is": "alice@example.com"}}));
    let r = req("GET", "/");
    assert!(allows(&p, Some(&person("alice@example.com", true)), &r));
    assert!(!allows(&p, Some(&person("alice@example.com", false)), &r));
    let mut ext = external("repo:acme/x");
    ext.email = Some("alice@example.com".to_owned());
    assert!(!allows(&p, Some(&ext), &r));
    ext.email_verified = true;
    assert!(allows(&p, Some(&ext), &r));
    // A service account's email is set by Portcullis, not claimed.
    let mut bot = service_account("team-a", "bot");
    bot.email = Some("alice@example.com".to_owned());
    assert!(allows(&p, Some(&bot), &r));
    assert!(!allows(&p, None, &r));
}

#[test]
fn email_matchers_fold_case() {
    let r = req("GET", "/");
    let alice = person("Alice@Example.COM", true);
    assert!(allows(
        &allow_one(json!({"email": "alice@example.com"})),
        Some(&alice),
        &r
    ));
    assert!(allows(
        &allow_one(json!({"email": {"ends_with": "@EXAMPLE.com"}})),
        Some(&alice),
        &r
    ));
    assert!(allows(
        &allow_one(json!({"email": {"starts_with": "alice@"}})),
        Some(&alice),
        &r
    ));
    assert!(allows(
        &allow_one(json!({"email": {"contains": "ce@ex"}})),
        Some(&alice),
        &r
    ));
    assert!(allows(
        &allow_one(json!({"email": {"in": ["bob@example.com", "ALICE@example.com"]}})),
        Some(&alice),
        &r
    ));
    assert!(!allows(
        &allow_one(json!({"email": {"is": "alice@example.co"}})),
        Some(&alice),
        &r
    ));
    // Every operator of one matcher must hold.
    let both = allow_one(json!({"email": {"starts_with": "alice", "ends_with": "@evil.com"}}));
    assert!(!allows(&both, Some(&alice), &r));
}

#[test]
fn domain_is_the_exact_domain_of_a_verified_email() {
    let p = allow_one(json!({"domain": {"is": "example.com"}}));
    let r = req("GET", "/");
    assert!(allows(&p, Some(&person("alice@example.com", true)), &r));
    assert!(allows(&p, Some(&person("alice@EXAMPLE.com", true)), &r));
    assert!(!allows(
        &p,
        Some(&person("alice@sub.example.com", true)),
        &r
    ));
    assert!(!allows(
        &p,
        Some(&person("alice@example.com.evil.io", true)),
        &r
    ));
    assert!(!allows(&p, Some(&person("alice@example.com", false)), &r));
    assert!(!allows(&p, Some(&person("example.com", true)), &r));
    assert!(!allows(&p, Some(&person("@example.com", true)), &r));
    // The domain is after the last `@`.
    assert!(allows(
        &p,
        Some(&person("\"a@evil.com\"@example.com", true)),
        &r
    ));
    assert!(!allows(
        &p,
        Some(&person("a@example.com@evil.com", true)),
        &r
    ));
    let p = allow_one(json!({"domain": {"ends_with": ".example.com"}}));
    assert!(allows(&p, Some(&person("a@eu.example.com", true)), &r));
    assert!(!allows(&p, Some(&person("a@badexample.com", true)), &r));
    let p = allow_one(json!({"domain": {"in": ["a.com", "Example.com"]}}));
    assert!(allows(&p, Some(&person("x@example.com", true)), &r));
}

#[test]
fn groups_has() {
    let r = req("GET", "/");
    let alice = person("alice@example.com", true);
    assert!(allows(
        &allow_one(json!({"groups": {"has": "payments"}})),
        Some(&alice),
        &r
    ));
    assert!(allows(
        &allow_one(json!({"groups": "dev"})),
        Some(&alice),
        &r
    ));
    assert!(!allows(
        &allow_one(json!({"groups": {"has": "admins"}})),
        Some(&alice),
        &r
    ));
    assert!(!allows(
        &allow_one(json!({"groups": {"has": "Payments"}})),
        Some(&alice),
        &r
    ));
    assert!(!allows(
        &allow_one(json!({"groups": {"has": "pay"}})),
        Some(&alice),
        &r
    ));
    assert!(!allows(
        &allow_one(json!({"groups": {"has": "payments"}})),
        None,
        &r
    ));
}

#[test]
fn claim_paths_use_the_longest_key() {
    let r = req("GET", "/");
    let bot = service_account("team-a", "billing-bot");
    let p = allow_one(json!({"claim/kubernetes.io.namespace": {"is": "team-a"}}));
    assert!(allows(&p, Some(&bot), &r));
    assert!(!allows(
        &p,
        Some(&service_account("team-b", "billing-bot")),
        &r
    ));
    let p = allow_one(json!({"claim/kubernetes.io.serviceaccount.name": "billing-bot"}));
    assert!(allows(&p, Some(&bot), &r));

    let mut tricky = person("a@example.com", true);
    tricky.claims = claims(json!({
        "kubernetes": {"io": {"namespace": "team-a"}},
        "kubernetes.io": {"namespace": "team-b"},
    }));
    let p = allow_one(json!({"claim/kubernetes.io.namespace": {"is": "team-a"}}));
    assert!(!allows(&p, Some(&tricky), &r));
    assert!(!allows(&p, None, &r));
}

#[test]
fn claim_values_of_every_shape() {
    let r = req("GET", "/");
    let mut id = person("a@example.com", true);
    id.claims = claims(json!({
        "team": "payments",
        "level": 3,
        "admin": true,
        "roles": ["reader", "writer"],
        "ids": [1, 2],
        "nothing": null,
        "nested": {"x": "y"},
    }));
    let yes = |c: Value| allows(&allow_one(c.clone()), Some(&id), &r);
    assert!(yes(json!({"claim/team": {"is": "payments"}})));
    assert!(yes(json!({"claim/team": "payments"})));
    assert!(yes(json!({"claim/team": {"starts_with": "pay"}})));
    assert!(yes(json!({"claim/team": {"in": ["x", "payments"]}})));
    assert!(yes(json!({"claim/level": {"is": 3}})));
    assert!(yes(json!({"claim/level": {"is": "3"}})));
    assert!(yes(json!({"claim/admin": {"is": true}})));
    assert!(yes(json!({"claim/admin": true})));
    assert!(yes(json!({"claim/roles": {"has": "writer"}})));
    assert!(yes(json!({"claim/roles": {"is": "reader"}})));
    assert!(yes(json!({"claim/roles": {"starts_with": "wri"}})));
    assert!(yes(json!({"claim/ids": {"has": 2}})));
    assert!(yes(json!({"claim/nested.x": "y"})));
    assert!(!yes(json!({"claim/team": {"is": "Payments"}})));
    assert!(!yes(json!({"claim/level": {"is": 4}})));
    assert!(!yes(json!({"claim/admin": {"is": false}})));
    assert!(!yes(json!({"claim/roles": {"has": "admin"}})));
    assert!(!yes(json!({"claim/nothing": {"is": "null"}})));
    assert!(!yes(json!({"claim/nested": {"is": "y"}})));
    assert!(!yes(json!({"claim/missing": {"is": "x"}})));
}

#[test]
fn http_method_is_case_insensitive_on_the_uppercase_method() {
    let p = allow_one(json!({"http_method": {"is": "get"}}));
    assert!(allows(&p, None, &req("GET", "/")));
    assert!(allows(&p, None, &req("get", "/")));
    assert!(!allows(&p, None, &req("POST", "/")));
    let p = allow_one(json!({"http_method": {"in": ["GET", "head"]}}));
    assert!(allows(&p, None, &req("HEAD", "/")));
    assert!(!allows(&p, None, &req("DELETE", "/")));
}

#[test]
fn http_path_matchers() {
    let p = allow_one(json!({"http_path": {"starts_with": "/api/"}}));
    assert!(allows(&p, None, &req("GET", "/api/x")));
    assert!(!allows(&p, None, &req("GET", "/apiadmin")));
    assert!(!allows(&p, None, &req("GET", "/API/x")));
    let p = allow_one(json!({"http_path": {"is": "/health"}}));
    assert!(allows(&p, None, &req("GET", "/health")));
    assert!(!allows(&p, None, &req("GET", "/health/")));
    let p = allow_one(json!({"http_path": {"ends_with": ".css"}}));
    assert!(allows(&p, None, &req("GET", "/a/b.css")));
    let p = allow_one(json!({"http_path": {"contains": "/public/"}}));
    assert!(allows(&p, None, &req("GET", "/x/public/y")));
}

#[test]
fn authenticated_user_is_any_identity() {
    let p = allow_one(json!({"authenticated_user": true}));
    let r = req("GET", "/");
    assert!(allows(&p, Some(&external("x")), &r));
    assert!(allows(&p, Some(&service_account("a", "b")), &r));
    assert!(!allows(&p, None, &r));
}

// ---------------------------------------------------------------- operators and actions

/// Evaluates `op` over criteria that are true (`/t`) or false (`/f`) by request path.
fn truth(op: &str, values: &[bool]) -> bool {
    let items: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"http_path": {"contains": format!("[{i}]")}}))
        .collect();
    let path: String = values
        .iter()
        .enumerate()
        .filter(|(_, v)| **v)
        .map(|(i, _)| format!("[{i}]"))
        .collect();
    let p = policy(json!({"allow": {op: items}}));
    allows(&p, None, &req("GET", &format!("/{path}")))
}

#[test]
fn operators_follow_pomerium() {
    for (a, b) in [(false, false), (false, true), (true, false), (true, true)] {
        assert_eq!(truth("and", &[a, b]), a && b, "and {a} {b}");
        assert_eq!(truth("or", &[a, b]), a || b, "or {a} {b}");
        // Pomerium: `not` = none is true (¬A ∧ ¬B), `nor` = not all are true (¬A ∨ ¬B).
        assert_eq!(truth("not", &[a, b]), !a && !b, "not {a} {b}");
        assert_eq!(truth("nor", &[a, b]), !a || !b, "nor {a} {b}");
    }
    assert!(truth("not", &[false]));
    assert!(!truth("not", &[true]));
    assert!(truth("nor", &[false]));
    assert!(!truth("nor", &[true]));
}

#[test]
fn nested_operators() {
    let p = policy(json!({"allow": {"and": [
        {"domain": {"is": "example.com"}},
        {"or": [{"groups": {"has": "admins"}}, {"http_method": {"is": "GET"}}]},
        {"not": [{"http_path": {"starts_with": "/admin"}}]},
    ]}}));
    let alice = person("alice@example.com", true);
    assert!(allows(&p, Some(&alice), &req("GET", "/x")));
    assert!(!allows(&p, Some(&alice), &req("POST", "/x")));
    assert!(!allows(&p, Some(&alice), &req("GET", "/admin")));
    let mut admin = alice.clone();
    admin.groups.push("admins".to_owned());
    assert!(allows(&p, Some(&admin), &req("POST", "/x")));
}

#[test]
fn deny_wins_and_names_the_rule() {
    let p = policy(json!({
        "allow": {"or": [{"email": {"is": "alice@example.com"}}]},
        "deny": {"or": [{"http_method": {"is": "DELETE"}}, {"http_path": {"starts_with": "/admin"}}]},
    }));
    let alice = person("alice@example.com", true);
    assert!(allows(&p, Some(&alice), &req("GET", "/x")));
    assert_eq!(
        p.evaluate(Some(&alice), &req("GET", "/admin/users")),
        Decision::Deny {
            reason: DenyReason::Denied {
                rule: "deny.or[1].http_path".to_owned()
            }
        }
    );
    assert_eq!(
        p.evaluate(Some(&alice), &req("DELETE", "/x")),
        Decision::Deny {
            reason: DenyReason::Denied {
                rule: "deny.or[0].http_method".to_owned()
            }
        }
    );
    let p = policy(json!({
        "allow": {"or": [{"authenticated_user": true}]},
        "deny": {"not": [{"domain": {"is": "example.com"}}]},
    }));
    assert_eq!(
        p.evaluate(Some(&person("eve@evil.com", true)), &req("GET", "/")),
        Decision::Deny {
            reason: DenyReason::Denied {
                rule: "deny.not".to_owned()
            }
        }
    );
}

#[test]
fn a_list_of_rules_ors_allows_and_any_deny_wins() {
    let p = policy(json!([
        {"allow": {"or": [{"email": "alice@example.com"}]}},
        {"allow": {"or": [{"serviceAccount": "team-a/bot"}]}},
        {"deny": {"or": [{"http_path": {"starts_with": "/admin"}}]}},
    ]));
    let r = req("GET", "/x");
    assert!(allows(&p, Some(&person("alice@example.com", true)), &r));
    assert!(allows(&p, Some(&service_account("team-a", "bot")), &r));
    assert!(!allows(&p, Some(&person("bob@example.com", true)), &r));
    assert_eq!(
        p.evaluate(
            Some(&service_account("team-a", "bot")),
            &req("GET", "/admin")
        ),
        Decision::Deny {
            reason: DenyReason::Denied {
                rule: "[2].deny.or[0].http_path".to_owned()
            }
        }
    );
}

// ---------------------------------------------------------------- CEL

fn eval_expr(expr: &str, id: Option<&Identity>, r: &Request) -> Decision {
    allow_one(json!({"expression": expr})).evaluate(id, r)
}

#[test]
fn cel_true_false() {
    let r = req("GET", "/");
    let gh = external("repo:acme/billing:ref:refs/heads/main");
    let design_example =
        r#"request.method == "GET" && claims.iss == "https://token.actions.githubusercontent.com""#;
    assert!(eval_expr(design_example, Some(&gh), &r).is_allow());
    assert!(!eval_expr(design_example, Some(&gh), &req("POST", "/")).is_allow());
    assert_eq!(
        eval_expr("false", Some(&gh), &r),
        Decision::Deny {
            reason: DenyReason::NoMatch
        }
    );
}

#[test]
fn cel_errors_never_allow() {
    let r = req("GET", "/");
    let alice = person("alice@example.com", true);
    for expr in [
        "claims.no_such_claim == 'x'",
        "1 / 0 == 1",
        "nosuchfn(1)",
        "'a' < 1",
    ] {
        match eval_expr(expr, Some(&alice), &r) {
            Decision::Deny {
                reason: DenyReason::EvaluationError { rule, error },
            } => {
                assert_eq!(rule, "allow.or[0].expression");
                assert!(!error.is_empty());
            }
            other => panic!("{expr}: {other:?}"),
        }
    }
    // Negating an error is still an error: `not` over a failing expression does not grant.
    let p = policy(json!({"allow": {"not": [{"expression": "claims.nope"}]}}));
    assert!(matches!(
        p.evaluate(Some(&alice), &r),
        Decision::Deny {
            reason: DenyReason::EvaluationError { .. }
        }
    ));
    let p = policy(json!({"allow": {"nor": [{"expression": "claims.nope == 1"}]}}));
    assert!(!allows(&p, Some(&alice), &r));
    // An error that cannot change the outcome does not matter.
    let p = policy(
        json!({"allow": {"or": [{"expression": "claims.nope == 1"}, {"authenticated_user": true}]}}),
    );
    assert!(allows(&p, Some(&alice), &r));
    let p = policy(
        json!({"allow": {"and": [{"expression": "claims.nope == 1"}, {"http_method": "POST"}]}}),
    );
    assert_eq!(
        p.evaluate(Some(&alice), &r),
        Decision::Deny {
            reason: DenyReason::NoMatch
        }
    );
}

#[test]
fn cel_non_bool_results_are_errors() {
    let r = req("GET", "/");
    for expr in ["'yes'", "1", "claims", "null", "[true]"] {
        match eval_expr(expr, Some(&person("a@example.com", true)), &r) {
            Decision::Deny {
                reason: DenyReason::EvaluationError { error, .. },
            } => assert!(error.contains("not a bool"), "{expr}: {error}"),
            other => panic!("{expr}: {other:?}"),
        }
    }
}

#[test]
fn cel_errors_in_deny_deny() {
    let p = policy(json!({
        "allow": {"or": [{"authenticated_user": true}]},
        "deny": {"or": [{"expression": "claims.blocked == true"}]},
    }));
    let alice = person("alice@example.com", true);
    assert_eq!(
        p.evaluate(Some(&alice), &req("GET", "/")),
        Decision::Deny {
            reason: DenyReason::EvaluationError {
                rule: "deny.or[0].expression".to_owned(),
                error: "No such key: blocked".to_owned(),
            }
        }
    );
    let mut ok = alice.clone();
    ok.claims.insert("blocked".to_owned(), json!(false));
    assert!(allows(&p, Some(&ok), &req("GET", "/")));
    // `and` with a false sibling is false whatever the error: no deny.
    let p = policy(json!({
        "allow": {"or": [{"authenticated_user": true}]},
        "deny": {"and": [{"http_method": "DELETE"}, {"expression": "claims.blocked"}]},
    }));
    assert!(allows(&p, Some(&alice), &req("GET", "/")));
    assert!(!allows(&p, Some(&alice), &req("DELETE", "/")));
}

#[test]
fn cel_variables() {
    let headers = vec![
        ("x-team".to_owned(), "a".to_owned()),
        ("x-team".to_owned(), "b".to_owned()),
        ("authorization".to_owned(), "Bearer secret".to_owned()),
        ("cookie".to_owned(), "s=secret".to_owned()),
        ("x-portcullis-authorization".to_owned(), "secret".to_owned()),
    ];
    let r = Request {
        method: "post",
        path: "/api/v1",
        host: "Billing.Example.com",
        headers: &headers,
    };
    let bot = service_account("team-a", "billing-bot");
    let yes = |expr: &str, id: Option<&Identity>| {
        let d = eval_expr(expr, id, &r);
        assert!(d.is_allow(), "{expr}: {d:?}");
    };
    yes("request.method == 'POST'", None);
    yes("request.path.startsWith('/api/')", None);
    yes("request.host == 'billing.example.com'", None);
    yes("request.headers['x-team'] == 'a'", None);
    yes("!('authorization' in request.headers)", None);
    yes(
        "!('cookie' in request.headers) && !has(request.headers.x_portcullis_authorization)",
        None,
    );
    yes("size(request.headers) == 1", None);
    yes("identity == null && claims == null", None);
    yes("claims['kubernetes.io'].namespace == 'team-a'", Some(&bot));
    yes(
        "identity.kind == 'serviceaccount' && identity.namespace == 'team-a' && identity.name == 'billing-bot'",
        Some(&bot),
    );
    yes(
        "identity.subject == 'serviceaccount:team-a/billing-bot'",
        Some(&bot),
    );
    yes("identity.issuer == 'https://auth.example.com'", Some(&bot));
    yes(
        "identity.email == null && identity.groups == []",
        Some(&bot),
    );
    let alice = person("alice@example.com", true);
    yes(
        "identity.kind == 'user' && identity.email == 'alice@example.com' && identity.domain == 'example.com'",
        Some(&alice),
    );
    yes(
        "'payments' in identity.groups && identity.email_verified",
        Some(&alice),
    );
    yes(
        "identity.groups.exists(g, g.startsWith('pay'))",
        Some(&alice),
    );
    // An unverified email is not exposed as `identity.email` (the raw claim stays in `claims`).
    let unverified = person("alice@example.com", false);
    yes(
        "identity.email == null && !identity.email_verified",
        Some(&unverified),
    );
    yes(
        "identity.kind == 'external' && claims.repository_owner == 'acme'",
        Some(&external("x")),
    );
    // Unauthenticated: identity and claims are null, so using them fails closed.
    assert!(!eval_expr("!('admins' in identity.groups)", None, &r).is_allow());
}

#[test]
fn cel_claims_numbers_and_nesting() {
    let mut id = person("a@example.com", true);
    id.claims =
        claims(json!({"n": 3, "big": u64::MAX, "f": 1.5, "l": [1, "x"], "m": {"k": [true]}}));
    let r = req("GET", "/");
    for expr in [
        "claims.n == 3",
        "claims.big == 18446744073709551615u",
        "claims.f == 1.5",
        "claims.l[1] == 'x'",
        "claims.m.k[0]",
    ] {
        assert!(eval_expr(expr, Some(&id), &r).is_allow(), "{expr}");
    }
    // Absurdly nested claims make expressions fail (closed), not the stack overflow.
    let mut deep = json!("leaf");
    for _ in 0..100 {
        deep = json!({"a": deep});
    }
    id.claims.insert("deep".to_owned(), deep);
    assert!(matches!(
        eval_expr("true", Some(&id), &r),
        Decision::Deny {
            reason: DenyReason::EvaluationError { .. }
        }
    ));
}

#[test]
fn cel_is_checked_at_compile_time() {
    let p = problems(json!({"allow": {"or": [
        {"expression": "request.method == "},
        {"expression": "foo.bar == 1"},
        {"expression": 42},
        {"expression": "   "},
    ]}}));
    assert_eq!(
        paths(&p),
        [
            "allow.or[0].expression",
            "allow.or[1].expression",
            "allow.or[2].expression",
            "allow.or[3].expression",
        ]
    );
    assert!(
        p[0].message.starts_with("invalid CEL expression"),
        "{:?}",
        p[0]
    );
    assert!(p[1].message.contains("`foo`"), "{:?}", p[1]);
    assert!(p[2].message.contains("a number"), "{:?}", p[2]);
    assert!(p[3].message.contains("empty"), "{:?}", p[3]);
}

#[test]
fn cel_length_limit() {
    let fits = format!("'{}' != ''", "a".repeat(MAX_EXPRESSION_BYTES - 8));
    assert_eq!(fits.len(), MAX_EXPRESSION_BYTES);
    assert!(
        allow_one(json!({"expression": fits}))
            .evaluate(None, &req("GET", "/"))
            .is_allow()
    );
    let over = format!("'{}' != ''", "a".repeat(MAX_EXPRESSION_BYTES - 7));
    let p = problems(json!({"allow": {"or": [{"expression": over}]}}));
    assert_eq!(paths(&p), ["allow.or[0].expression"]);
    assert!(p[0].message.contains("2049 bytes"), "{:?}", p[0]);
}

#[test]
fn cel_nesting_limit() {
    let nested = |n: usize| format!("{}1{} == 1", "(".repeat(n), ")".repeat(n));
    assert!(
        allow_one(json!({"expression": nested(MAX_EXPRESSION_NESTING)}))
            .evaluate(None, &req("GET", "/"))
            .is_allow()
    );
    let p =
        problems(json!({"allow": {"or": [{"expression": nested(MAX_EXPRESSION_NESTING + 1)}]}}));
    assert!(
        p[0].message.contains("nests brackets 33 deep"),
        "{:?}",
        p[0]
    );
    let lists = format!("{}1{} != []", "[".repeat(40), "]".repeat(40));
    assert!(!problems(json!({"allow": {"or": [{"expression": lists}]}})).is_empty());
    // Long chains without brackets are refused after parsing, before they can exhaust the stack.
    let chain = format!("request.path{} == ''", ".x".repeat(200));
    let p = problems(json!({"allow": {"or": [{"expression": chain}]}}));
    assert!(p[0].message.contains("levels deep"), "{:?}", p[0]);
}

// ---------------------------------------------------------------- compile problems

#[test]
fn every_problem_is_listed_with_its_path() {
    let p = problems(json!({
        "allow": {"or": [
            {"emial": {"is": "a@example.com"}},
            {"email": {"is_not": "a@example.com"}},
            {"groups": {"has": 3}},
            {"email": {"is": "a@example.com"}, "domain": {"is": "example.com"}},
            {"groups": {"is": "admins"}},
            {"and": []},
            {"claim/": "x"},
            {"email/sub": "x"},
            {"http_path": {"starts_with": ""}},
            {"domain": {"in": []}},
            {"domain": {"in": ["ok.com", 7]}},
            {"authenticated_user": false},
            {"serviceAccount": {}},
            {"user": 12},
            "email",
            {"claim/x": {"is": {"nested": true}}},
        ]},
        "deny": {"or": []},
        "alow": {},
    }));
    assert_eq!(
        paths(&p),
        [
            "allow.or[0].emial",
            "allow.or[1].email.is_not",
            "allow.or[2].groups.has",
            "allow.or[3]",
            "allow.or[4].groups.is",
            "allow.or[5].and",
            "allow.or[6].claim/",
            "allow.or[7].email/sub",
            "allow.or[8].http_path.starts_with",
            "allow.or[9].domain.in",
            "allow.or[10].domain.in[1]",
            "allow.or[11].authenticated_user",
            "allow.or[12].serviceAccount",
            "allow.or[13].user",
            "allow.or[14]",
            "allow.or[15].claim/x.is",
            "deny.or",
            "alow",
        ]
    );
    for problem in &p {
        assert!(!problem.message.is_empty());
        assert!(!problem.to_string().is_empty());
    }
    assert!(p[0].message.contains("unknown criterion `emial`"));
    assert!(p[1].message.contains("unknown matcher `is_not`"));
    assert!(p[4].message.contains("`is` does not apply to `groups`"));
}

#[test]
fn block_shape_problems() {
    let p = problems(json!({"allow": {"and": [{"user": "a"}], "or": [{"user": "b"}]}}));
    assert_eq!(paths(&p), ["allow"]);
    assert!(p[0].message.contains("exactly one logical operator"));
    let p = problems(json!({"allow": {"email": {"is": "a@example.com"}}}));
    assert_eq!(paths(&p), ["allow.email"]);
    let p = problems(json!({"or": [{"user": "a"}]}));
    assert_eq!(paths(&p), ["or"]);
    assert!(p[0].message.contains("inside `allow` or `deny`"));
    let p = problems(json!({"allow": [{"user": "a"}]}));
    assert_eq!(paths(&p), ["allow"]);
    let p = problems(json!({"allow": {}}));
    assert_eq!(paths(&p), ["allow"]);
    let p = problems(json!({"allow": {"or": {"user": "a"}}}));
    assert_eq!(paths(&p), ["allow.or"]);
    let p = problems(json!([{"allow": {"or": [{"user": "a"}]}}, "deny", {"deny": {"nor": [{}]}}]));
    assert_eq!(paths(&p), ["[1]", "[2].deny.nor[0]"]);
    let p = problems(json!("allow everyone"));
    assert_eq!(paths(&p), [""]);
    assert_eq!(p[0].to_string().split(':').next(), Some("policy"));
    assert!(problems(json!(42)).len() == 1);
}

#[test]
fn nested_problems_carry_full_paths() {
    let p = problems(json!({"deny": {"or": [
        {"and": [{"http_method": "GET"}, {"not": [{"claim/a.b": {"sw": "x"}}]}]},
    ]}}));
    assert_eq!(paths(&p), ["deny.or[0].and[1].not[0].claim/a.b.sw"]);
}

// ---------------------------------------------------------------- limits

fn nested_policy(depth: usize) -> Value {
    let mut node = json!({"http_method": "GET"});
    for _ in 1..depth {
        node = json!({"and": [node]});
    }
    json!({"allow": {"and": [node]}})
}

#[test]
fn operator_depth_limit() {
    let p = policy(nested_policy(MAX_OPERATOR_DEPTH));
    assert!(allows(&p, None, &req("GET", "/")));
    let p = problems(nested_policy(MAX_OPERATOR_DEPTH + 1));
    assert_eq!(p.len(), 1);
    assert!(
        p[0].message.contains("nested more than 16 deep"),
        "{:?}",
        p[0]
    );
    // Far deeper JSON is refused before the walk, without recursion.
    let mut hostile = json!(1);
    for _ in 0..10_000 {
        hostile = Value::Array(vec![hostile]);
    }
    let p = Policy::compile(&hostile).err().unwrap_or_default();
    assert_eq!(paths(&p), [""]);
    assert!(p[0].message.contains("nested more than"));
    // Dropping a 10k-deep serde_json::Value recurses; keep it off this test's stack.
    std::mem::forget(hostile);
}

#[test]
fn criteria_count_limit() {
    let items =
        |n: usize| -> Vec<Value> { (0..n).map(|i| json!({"user": format!("u{i}")})).collect() };
    assert!(Policy::compile(&json!({"allow": {"or": items(MAX_CRITERIA)}})).is_ok());
    let p = problems(json!({"allow": {"or": items(MAX_CRITERIA + 1)}}));
    assert_eq!(paths(&p), [""]);
    assert!(p[0].message.contains("257 criteria"));
}

#[test]
fn size_limit() {
    let big = "x".repeat(MAX_POLICY_BYTES);
    let p = problems(json!({"allow": {"or": [{"http_path": {"is": big}}]}}));
    assert_eq!(paths(&p), [""]);
    assert!(p[0].message.contains("larger than 65536 bytes"));
    let many: Vec<Value> = (0..100_000).map(|_| json!(0)).collect();
    assert_eq!(paths(&problems(json!({"allow": {"or": many}}))), [""]);
}

#[test]
fn problems_are_capped() {
    let items: Vec<Value> = (0..200).map(|i| json!({format!("bad{i}"): 1})).collect();
    let p = problems(json!({"allow": {"or": items}}));
    assert_eq!(p.len(), MAX_PROBLEMS + 1);
    assert_eq!(p[MAX_PROBLEMS].message, "150 more problems not shown");
}

// ---------------------------------------------------------------- sharing

#[test]
fn policies_are_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Policy>();
    let p = allow_one(json!({"expression": "request.method == 'GET'"}));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || p.evaluate(None, &req("GET", "/")).is_allow())
        })
        .collect();
    for t in threads {
        assert!(matches!(t.join(), Ok(true)));
    }
    assert!(format!("{p:?}").contains("expressions: 1"));
}

#[test]
fn deny_reasons_render_for_logs() {
    assert_eq!(DenyReason::NoMatch.label(), "no_match");
    let r = DenyReason::EvaluationError {
        rule: "allow.or[0].expression".to_owned(),
        error: "boom".to_owned(),
    };
    assert_eq!(r.label(), "evaluation_error");
    assert_eq!(
        r.to_string(),
        "evaluation of allow.or[0].expression failed: boom"
    );
}

#[test]
fn hostile_expressions_are_refused_or_compiled_without_crashing() {
    let n = MAX_EXPRESSION_NESTING;
    let hostile = [
        format!("{}1{}", "(1 + ".repeat(n), ")".repeat(n)),
        format!("{}1{}", "[1, !".repeat(n), "]".repeat(n)),
        format!("{}1{}", "{1: -".repeat(n), "}".repeat(n)),
        format!("{}true{}", "[1].exists(x, ".repeat(n), ")".repeat(n)),
        format!("{}x{}", "f(".repeat(n), ")".repeat(n)),
        format!("{}1{}", "size(".repeat(n), ").a.b.c[0]".repeat(n)),
        format!("{}1", "!-".repeat(MAX_EXPRESSION_BYTES / 2 - 1)),
        format!("request{}", "[0]".repeat(MAX_EXPRESSION_BYTES / 3 - 3)),
        format!("1{}", " ? 1 : 1".repeat(MAX_EXPRESSION_BYTES / 8 - 1)),
        format!(
            "['a']{}",
            ".map(x, x + x)".repeat(MAX_EXPRESSION_BYTES / 15 - 1)
        ),
        format!("'{}'", "\\u0041".repeat(MAX_EXPRESSION_BYTES / 6 - 1)),
    ];
    for src in hostile {
        assert!(src.len() <= MAX_EXPRESSION_BYTES, "{}", src.len());
        if let Ok(p) = Policy::compile(&json!({"allow": {"or": [{"expression": src}]}})) {
            // Anything accepted is shallow enough to evaluate on a normal thread.
            let _ = p.evaluate(None, &req("GET", "/"));
        }
    }
}

#[test]
fn policies_that_admit_people_are_told_apart_from_machine_only_ones() {
    for people in [
        json!({"allow": {"or": [{"email": {"is": "a@example.com"}}]}}),
        json!({"allow": {"and": [{"http_method": {"is": "GET"}}, {"groups": {"has": "eng"}}]}}),
        json!({"allow": {"or": [{"domain": {"is": "example.com"}}]}}),
        json!({"allow": {"or": [{"user": {"is": "alice"}}]}}),
    ] {
        assert!(policy(people.clone()).admits_people(), "{people}");
    }
    for machines in [
        json!({"allow": {"or": [{"serviceAccount": {"is": "team-a/bot"}}]}}),
        json!({"allow": {"or": [{"claim/team": {"is": "a"}}]}}),
        json!({"deny": {"or": [{"email": {"is": "a@example.com"}}]}}),
        json!({}),
    ] {
        assert!(!policy(machines.clone()).admits_people(), "{machines}");
    }
}
