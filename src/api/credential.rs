//! The `ServiceAccountCredential` custom resource (`portcullis.dev/v1alpha1`): an OAuth2 client
//! for a workload, whose generated Secret (or federated JWTs) gets it access tokens.
//!
//! The controller watches these objects, writes the workload Secret and the digests, rotates
//! secrets, and reports `clientId`, the Secret name, rotation times and conditions in status.
//! Only the wire shape and the schema-level validation live here.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{
    CustomResource, KubeSchema,
    core::{Message, Rule},
};
use serde::{Deserialize, Serialize};

use super::common::{
    CLAIM_NAME_PATTERN, DNS_SUBDOMAIN_PATTERN, GoDuration, HEADER_VALUE_PATTERN, SecretKeyRef,
    cel_list, cel_string,
};

/// A scope: `route:<name>` (a Route in the credential's namespace) or
/// `route:<namespace>/<name>`.
pub const SCOPE_PATTERN: &str = r"^route:([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Longest claim name.
pub const CLAIM_NAME_MAX_LENGTH: u32 = 128;

/// Longest claim value.
pub const CLAIM_VALUE_MAX_LENGTH: u32 = 1024;

/// Most claims on one credential.
pub const MAX_CLAIMS: u32 = 32;

/// Claim names a credential may not set (compared case-insensitively).
///
/// A credential's claims are copied into the access tokens Portcullis signs, and route policies
/// match on claims, so a tenant must not be able to set a claim that says who the caller is, who
/// issued the token or for whom, or what it may do; otherwise one namespace could impersonate a
/// person or another workload. The list holds:
/// - the JWT registered claims (RFC 7519): `iss sub aud exp nbf iat jti`, and the JOSE
///   typing claims used to tell token kinds apart: `typ cty`;
/// - OAuth 2.0 token claims (RFC 9068, RFC 8693, RFC 7800, RFC 8176, RFC 9449, OIDC Core):
///   `client_id scope scp azp act may_act cnf auth_time acr amr nonce at_hash c_hash sid`;
/// - identity claims people's tokens carry and policies match (OIDC Core §5.1 and the SCIM
///   attributes RFC 9068 §2.2.3.1 names): `email email_verified name given_name family_name
///   middle_name nickname preferred_username phone_number phone_number_verified groups roles
///   entitlements`;
/// - Portcullis's (and Pomerium's) own assertion claims: `user impersonate`.
///
/// Names starting with one of [`RESERVED_CLAIM_PREFIXES`] are refused as well.
pub const RESERVED_CLAIM_NAMES: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "typ",
    "cty",
    "client_id",
    "scope",
    "scp",
    "azp",
    "act",
    "may_act",
    "cnf",
    "auth_time",
    "acr",
    "amr",
    "nonce",
    "at_hash",
    "c_hash",
    "sid",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "phone_number",
    "phone_number_verified",
    "groups",
    "roles",
    "entitlements",
    "user",
    "impersonate",
];

/// Claim name prefixes a credential may not use (compared case-insensitively): Kubernetes
/// service-account token claims (`kubernetes.io`, which policies read as
/// `claim/kubernetes.io.namespace`), and Portcullis's and Pomerium's own namespaces.
pub const RESERVED_CLAIM_PREFIXES: &[&str] = &["kubernetes.io", "portcullis", "pomerium"];

/// Issuer of federated client assertions: `kubernetes` (this cluster's service-account issuer),
/// an `https://` URL, or an `http://` URL on a loopback host (for local development).
pub const ISSUER_PATTERN: &str = r"^(kubernetes|https://[^\x00-\x20\x7F/?#]+(/[^\x00-\x20\x7F?#]*)?|http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?(/[^\x00-\x20\x7F?#]*)?)$";

/// A JWKS URL: `https://`, or `http://` on a loopback host (for local development).
pub const JWKS_URL_PATTERN: &str = r"^(https://[^\x00-\x20\x7F/?#]+(/[^\x00-\x20\x7F#]*)?|http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?(/[^\x00-\x20\x7F#]*)?)$";

/// A token audience or subject: visible characters, no spaces.
pub const TOKEN_STRING_PATTERN: &str = r"^[^\x00-\x20\x7F]+$";

/// Desired state of a ServiceAccountCredential: its generated Secret, scopes, token lifetime,
/// rotation, extra claims and trusted issuers.
// clippy reads the repeated `type_` keys of the `printcolumn(...)` groups as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "ServiceAccountCredential",
    namespaced,
    status = "ServiceAccountCredentialStatus",
    derive = "PartialEq",
    doc = "A ServiceAccountCredential is an OAuth2 client for a workload: Portcullis writes its client_id and client_secret to a Secret (rotated on a schedule) and, optionally, accepts JWTs from trusted issuers instead, then issues access tokens whose identity is serviceaccount:<namespace>/<name> for routes whose policy allows it.",
    shortname = "sac",
    category = "portcullis",
    printcolumn(
        name = "Client-ID",
        type_ = "string",
        json_path = ".status.clientId",
        description = "OAuth2 client_id of this credential"
    ),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.secretName",
        description = "Secret holding the client credentials"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the credential can be used"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountCredentialSpec {
    /// Name of the Secret Portcullis generates for the workload (keys `client_id`,
    /// `client_secret`, `token_url`, `issuer`). Default `<name>-oauth`. An existing Secret that
    /// Portcullis does not own is never overwritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: Option<String>,

    /// Narrow this credential's tokens to these routes: `route:<name>` (same namespace) or
    /// `route:<namespace>/<name>`. Empty or unset means no narrowing: the routes' policies alone
    /// decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        inner(length(min = 7, max = 330), pattern(SCOPE_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub scopes: Option<Vec<String>>,

    /// Lifetime of the access tokens issued to this credential, as a Go duration between `1m`
    /// and `24h`. Default `1h`.
    #[serde(
        default,
        rename = "accessTokenTTL",
        skip_serializing_if = "Option::is_none"
    )]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('24h')").message("accessTokenTTL must be between 1m and 24h"))]
    pub access_token_ttl: Option<GoDuration>,

    /// When the client secret is replaced. Default: every `720h`, with a `24h` overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,

    /// Extra string claims put into this credential's access tokens, for policies to match
    /// (`claim/<name>`), e.g. `team: payments`. At most 32; values up to 1024 characters without
    /// control characters. Names that identify a caller or describe a token are reserved and
    /// refused, in any letter case: the JWT, OAuth 2.0 and OpenID Connect claims iss, sub, aud,
    /// exp, nbf, iat, jti, typ, cty, client_id, scope, scp, azp, act, may_act, cnf, auth_time,
    /// acr, amr, nonce, at_hash, c_hash, sid, email, email_verified, name, given_name,
    /// family_name, middle_name, nickname, preferred_username, phone_number,
    /// phone_number_verified, groups, roles, entitlements, user and impersonate, and names
    /// starting with kubernetes.io, portcullis or pomerium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = claims_map)]
    #[x_kube(
        validation = claim_names_rule(),
        validation = reserved_claims_rule()
    )]
    pub claims: Option<BTreeMap<String, String>>,

    /// Trusted issuers whose JWTs this credential accepts as client assertions
    /// (`client_assertion`), instead of or beside the client secret: e.g. GitHub Actions OIDC
    /// tokens, or this cluster's service-account tokens (`issuer: kubernetes`). At most 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub federation: Option<Vec<Federation>>,
}

/// Client secret rotation of a credential.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!has(self.overlap) || duration(self.overlap) <= duration(self.every)").message("rotation.overlap must not be longer than rotation.every"))]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// How often a new client secret is generated, as a Go duration between `1h` and `8760h`
    /// (one year), e.g. `720h`.
    #[x_kube(validation = Rule::new("duration(self) >= duration('1h') && duration(self) <= duration('8760h')").message("rotation.every must be between 1h and 8760h"))]
    pub every: GoDuration,

    /// How long the previous secret keeps working after a rotation, as a Go duration no longer
    /// than `every`, e.g. `24h`. `0s` retires it at once. Default `24h`, or `every` if shorter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<GoDuration>,
}

/// One trusted issuer of client assertions (JWTs) for a credential.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("self.issuer != 'kubernetes' || !(has(self.jwksURL) || has(self.jwksSecretRef) || has(self.certificatesSecretRef))").message("issuer kubernetes uses this cluster's service-account keys: remove jwksURL, jwksSecretRef and certificatesSecretRef"),
    validation = Rule::new("self.issuer == 'kubernetes' || (has(self.jwksURL) ? 1 : 0) + (has(self.jwksSecretRef) ? 1 : 0) + (has(self.certificatesSecretRef) ? 1 : 0) == 1").message("set exactly one of jwksURL, jwksSecretRef or certificatesSecretRef for this issuer"),
)]
#[serde(rename_all = "camelCase")]
pub struct Federation {
    /// The `iss` the assertions must carry: an `https://` URL (e.g.
    /// `https://token.actions.githubusercontent.com`), or `kubernetes` for this cluster's
    /// service-account tokens.
    #[schemars(length(min = 1, max = 512), pattern(ISSUER_PATTERN))]
    pub issuer: String,

    /// URL of the issuer's JSON Web Key Set (`https://`).
    #[serde(default, rename = "jwksURL", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), pattern(JWKS_URL_PATTERN))]
    pub jwks_url: Option<String>,

    /// A key of a Secret in this namespace holding the issuer's JSON Web Key Set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_secret_ref: Option<SecretKeyRef>,

    /// A key of a Secret in this namespace holding the issuer's PEM certificates or public keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates_secret_ref: Option<SecretKeyRef>,

    /// Audiences the assertions must carry (at least one must match exactly), typically
    /// Portcullis's authenticate URL. Required, 1 to 8 entries.
    #[schemars(
        length(min = 1, max = 8),
        inner(length(min = 1, max = 512), pattern(TOKEN_STRING_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub audiences: Vec<String>,

    /// The `sub` the assertions must carry: exact, or a glob anchored at both ends where `*`
    /// matches any run of characters, e.g. `repo:acme/billing:ref:refs/heads/main` or
    /// `system:serviceaccount:team-a:billing`.
    #[schemars(length(min = 1, max = 512), pattern(TOKEN_STRING_PATTERN))]
    #[x_kube(validation = Rule::new("!self.matches('^[*]+$')").message("subject must name a workload: a subject made only of * would accept every token of the issuer"))]
    pub subject: String,

    /// Optional CEL expression over the assertion's `claims` that must be true, e.g.
    /// `claims.repository_owner == "acme"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub expression: Option<String>,
}

/// Observed state of a ServiceAccountCredential, written by the controller.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountCredentialStatus {
    /// The OAuth2 `client_id` of this credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,

    /// Name of the Secret holding `client_id` and `client_secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// When the current client secret was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_secret_created: Option<Time>,

    /// When the previous client secret stops working (set during a rotation overlap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires: Option<Time>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (tokens can be issued), `SecretConflict` (the named Secret belongs to someone
    /// else), and other conditions about the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Option<Vec<Condition>>,
}

/// Schema transform for `spec.claims`: bounds the number of claims and their values, which may
/// not hold control characters (routes can copy claims into headers).
fn claims_map(schema: &mut schemars::Schema) {
    schema.insert("maxProperties".into(), MAX_CLAIMS.into());
    schema.insert(
        "additionalProperties".into(),
        serde_json::json!({
            "type": "string",
            "maxLength": CLAIM_VALUE_MAX_LENGTH,
            "pattern": HEADER_VALUE_PATTERN,
        }),
    );
}

/// CEL rule for claim-name syntax (structural schemas cannot constrain map keys).
fn claim_names_rule() -> Rule {
    Rule::new(format!(
        "self.all(k, size(k) <= {CLAIM_NAME_MAX_LENGTH} && k.matches({}))",
        cel_string(CLAIM_NAME_PATTERN)
    ))
    .message(Message::Message(format!(
        "claim names must be 1 to {CLAIM_NAME_MAX_LENGTH} characters: letters, digits and _ . : / - (not starting with . : / -)"
    )))
}

/// CEL rule refusing [`RESERVED_CLAIM_NAMES`] and [`RESERVED_CLAIM_PREFIXES`].
fn reserved_claims_rule() -> Rule {
    let prefixes: Vec<String> = RESERVED_CLAIM_PREFIXES
        .iter()
        .map(|prefix| format!("!k.lowerAscii().startsWith({})", cel_string(prefix)))
        .collect();
    Rule::new(format!(
        "self.all(k, !(k.lowerAscii() in {}) && {})",
        cel_list(RESERVED_CLAIM_NAMES),
        prefixes.join(" && ")
    ))
    .message(Message::Message(format!(
        "claims must not use reserved names, which Portcullis sets to identify the caller: {} (in any letter case), or names starting with {}",
        RESERVED_CLAIM_NAMES.join(", "),
        RESERVED_CLAIM_PREFIXES.join(", ")
    )))
    .reason(kube::core::Reason::FieldValueForbidden)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    /// The DESIGN.md §3 example, plus a `kubernetes` issuer and a status.
    const FULL_CREDENTIAL: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: ServiceAccountCredential
metadata: {name: billing-bot, namespace: team-a}
spec:
  secretName: billing-bot-oauth
  scopes: [route:billing-api, route:team-b/reports]
  accessTokenTTL: 1h
  rotation: {every: 720h, overlap: 24h}
  claims: {team: payments}
  federation:
    - issuer: https://token.actions.githubusercontent.com
      jwksURL: https://token.actions.githubusercontent.com/.well-known/jwks
      audiences: [https://auth.example.com]
      subject: repo:acme/billing:ref:refs/heads/main
      expression: 'claims.repository_owner == "acme"'
    - issuer: kubernetes
      audiences: [https://auth.example.com]
      subject: system:serviceaccount:team-a:billing
    - issuer: https://issuer.example.com
      jwksSecretRef: {name: issuer-keys, key: jwks.json}
      audiences: [portcullis]
      subject: "job-*"
status:
  clientId: team-a.billing-bot
  secretName: billing-bot-oauth
  currentSecretCreated: "2025-01-01T00:00:00Z"
  previousSecretExpires: "2025-01-02T00:00:00Z"
  observedGeneration: 2
  conditions:
    - type: Ready
      status: "True"
      reason: SecretWritten
      message: ""
      lastTransitionTime: "2025-01-01T00:00:00Z"
"#;

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    #[test]
    fn a_full_credential_round_trips_unchanged() {
        let raw: Value = serde_yaml::from_str(FULL_CREDENTIAL).unwrap();
        let credential: ServiceAccountCredential = serde_yaml::from_str(FULL_CREDENTIAL).unwrap();
        assert_eq!(serde_json::to_value(&credential).unwrap(), raw);

        let spec = &credential.spec;
        assert_eq!(spec.access_token_ttl, Some(GoDuration::new("1h")));
        let rotation = spec.rotation.as_ref().unwrap();
        assert_eq!(
            rotation.every.to_std(),
            Some(std::time::Duration::from_secs(720 * 3600))
        );
        let federation = spec.federation.as_ref().unwrap();
        assert_eq!(
            federation[0].jwks_url.as_deref(),
            Some("https://token.actions.githubusercontent.com/.well-known/jwks")
        );
        assert_eq!(
            federation[2]
                .jwks_secret_ref
                .as_ref()
                .map(|r| r.key.as_str()),
            Some("jwks.json")
        );
        let status = credential.status.as_ref().unwrap();
        assert_eq!(status.client_id.as_deref(), Some("team-a.billing-bot"));
        assert!(status.previous_secret_expires.is_some());
    }

    #[test]
    fn renamed_fields_keep_their_design_spelling() {
        let federation = Federation {
            issuer: "https://i.example.com".into(),
            jwks_url: Some("https://i.example.com/jwks".into()),
            audiences: vec!["a".into()],
            subject: "s".into(),
            ..Default::default()
        };
        let value = serde_json::to_value(&federation).unwrap();
        assert_eq!(value["jwksURL"], "https://i.example.com/jwks");
        let spec = ServiceAccountCredentialSpec {
            access_token_ttl: Some(GoDuration::new("5m")),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({"accessTokenTTL": "5m"})
        );
    }

    #[test]
    fn a_minimal_credential_serializes_only_what_was_set() {
        let credential =
            ServiceAccountCredential::new("echo-bot", ServiceAccountCredentialSpec::default());
        assert_eq!(
            serde_json::to_value(&credential).unwrap(),
            json!({
                "apiVersion": "portcullis.dev/v1alpha1",
                "kind": "ServiceAccountCredential",
                "metadata": {"name": "echo-bot"},
                "spec": {},
            })
        );
        let status = ServiceAccountCredentialStatus::default();
        assert_eq!(serde_json::to_value(&status).unwrap(), json!({}));
    }

    #[test]
    fn the_crd_has_names_columns_and_status() {
        let crd = ServiceAccountCredential::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("serviceaccountcredentials.portcullis.dev")
        );
        assert_eq!(crd.spec.names.short_names, Some(vec!["sac".to_string()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["portcullis".to_string()])
        );
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        );
        let columns: Vec<(&str, &str, &str)> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.type_.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            columns,
            [
                ("Client-ID", "string", ".status.clientId"),
                ("Secret", "string", ".status.secretName"),
                (
                    "Ready",
                    "string",
                    r#".status.conditions[?(@.type=="Ready")].status"#
                ),
                ("Age", "date", ".metadata.creationTimestamp"),
            ]
        );
    }

    #[test]
    fn the_crd_carries_the_cel_rules() {
        let crd = serde_json::to_value(ServiceAccountCredential::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let rules = |node: &Value| -> Vec<String> {
            node["x-kubernetes-validations"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .map(|r| r["rule"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let description = spec["properties"]["claims"]["description"]
            .as_str()
            .unwrap()
            .replace('\n', " ");
        for name in RESERVED_CLAIM_NAMES.iter().chain(RESERVED_CLAIM_PREFIXES) {
            assert!(
                description.contains(&format!(" {name}")),
                "description misses {name}"
            );
        }
        let claims = rules(&spec["properties"]["claims"]);
        assert_eq!(claims.len(), 2);
        for name in RESERVED_CLAIM_NAMES {
            assert!(claims[1].contains(&format!("'{name}'")), "{name}");
        }
        for prefix in RESERVED_CLAIM_PREFIXES {
            assert!(
                claims[1].contains(&format!("startsWith('{prefix}')")),
                "{prefix}"
            );
        }
        let rotation = &spec["properties"]["rotation"];
        assert_eq!(
            rules(rotation),
            ["!has(self.overlap) || duration(self.overlap) <= duration(self.every)"]
        );
        assert_eq!(rules(&rotation["properties"]["every"]).len(), 1);
        assert_eq!(rules(&spec["properties"]["accessTokenTTL"]).len(), 1);
        let federation = &spec["properties"]["federation"]["items"];
        assert_eq!(rules(federation).len(), 2);
        assert_eq!(rules(&federation["properties"]["subject"]).len(), 1);
        assert_eq!(
            federation["required"],
            json!(["audiences", "issuer", "subject"])
        );
        assert_eq!(federation["properties"]["audiences"]["minItems"], 1);
    }

    #[test]
    fn reserved_claims_are_lower_case_and_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for name in RESERVED_CLAIM_NAMES.iter().chain(RESERVED_CLAIM_PREFIXES) {
            assert_eq!(
                name.to_ascii_lowercase(),
                *name,
                "rules compare lower-cased names"
            );
            assert!(seen.insert(*name), "{name} listed twice");
            assert!(matches(CLAIM_NAME_PATTERN, name), "{name}");
        }
    }

    #[test]
    fn scopes_issuers_and_token_strings_are_checked() {
        for good in ["route:billing-api", "route:team-b/reports", "route:a.b"] {
            assert!(matches(SCOPE_PATTERN, good), "{good}");
        }
        for bad in [
            "billing-api",
            "route:",
            "route:Team/x",
            "route:a/b/c",
            "route:*",
            "routes:a",
        ] {
            assert!(!matches(SCOPE_PATTERN, bad), "{bad}");
        }
        for good in [
            "kubernetes",
            "https://token.actions.githubusercontent.com",
            "https://issuer.example.com/tenant/v2",
            "http://localhost:3000",
            "http://127.0.0.1:9000/oidc",
        ] {
            assert!(matches(ISSUER_PATTERN, good), "{good}");
        }
        for bad in [
            "Kubernetes",
            "http://issuer.example.com",
            "http://localhost.evil.example",
            "https://issuer.example.com/?x=1",
            "https://issuer.example.com#f",
            "https://",
            "https://a b",
        ] {
            assert!(!matches(ISSUER_PATTERN, bad), "{bad}");
        }
        assert!(matches(
            JWKS_URL_PATTERN,
            "https://a.example.com/keys?kid=1"
        ));
        assert!(!matches(JWKS_URL_PATTERN, "http://a.example.com/keys"));
        assert!(matches(
            TOKEN_STRING_PATTERN,
            "repo:acme/billing:ref:refs/heads/main"
        ));
        assert!(!matches(TOKEN_STRING_PATTERN, "a b"));
        assert!(!matches(TOKEN_STRING_PATTERN, "a\nb"));
    }
}
