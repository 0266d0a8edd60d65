//! The `Route` custom resource (`portcullis.dev/v1alpha1`): one protected host (+ path prefix)
//! and where its traffic goes, who may reach it, and how requests are rewritten.
//!
//! The controller watches these objects and compiles them (with Ingresses) into the routing
//! table; its status holds the route's URL and the `Accepted` / `ResolvedRefs` / `Ready`
//! conditions. Only the wire shape and the schema-level validation live here.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::common::{
    DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, GoDuration, HEADER_NAME_PATTERN,
    SERVICE_NAME_PATTERN, claim_header_map, header_map_keys_rule, header_value_map,
    reserved_headers_rule,
};

// Pieces of the URL patterns below, as macros so `concat!` can build the patterns at compile
// time. A host is a lower-case DNS name; a port is 1 to 65535.
macro_rules! host {
    () => {
        r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"
    };
}
macro_rules! port {
    () => {
        r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))"
    };
}
// One `/segment` of a path: URL path characters without `%`, `\`, `?`, `#`, `*` or `/`, and not
// empty, `.` or `..`.
macro_rules! segment {
    () => {
        concat!(
            r"(/([-A-Za-z0-9_~!$&'()+,;=:@][-A-Za-z0-9_~!$&'()+,;=:@.]*",
            r"|\.[-A-Za-z0-9_~!$&'()+,;=:@][-A-Za-z0-9_~!$&'()+,;=:@.]*",
            r"|\.\.[-A-Za-z0-9_~!$&'()+,;=:@.]+))"
        )
    };
}

/// What `spec.from` accepts: `https://host[:port][/path]`, `http://host[:port][/path]`, or
/// `ssh://name`. Hosts are lower-case DNS names; the path is a prefix made of non-empty
/// segments, without `.`/`..` segments, `%`-escapes, `\`, `*`, `?` or `#`, so the prefix has one
/// canonical spelling.
pub const FROM_PATTERN: &str = concat!(
    r"^(https?://",
    host!(),
    port!(),
    "?",
    segment!(),
    "*/?|ssh://",
    host!(),
    ")$"
);

/// What `spec.to[].url` accepts: `http://`, `https://` or `ssh://`, a lower-case host name or an
/// IP address (IPv6 in brackets), an optional port and an optional path (same rules as `from`).
pub const UPSTREAM_URL_PATTERN: &str = concat!(
    r"^(https?|ssh)://(",
    host!(),
    r"|\[[0-9a-fA-F:.]+\])",
    port!(),
    "?",
    segment!(),
    "*/?$"
);

/// What `spec.prefixRewrite` accepts: an absolute path with the same segment rules as `from`.
pub const PATH_PATTERN: &str = concat!("^(", segment!(), "+/?|/)$");

/// A host name as `programmaticRedirectDomains` lists it: lower case, no port, no wildcard.
pub const HOST_PATTERN: &str = concat!("^", host!(), "$");

/// Desired state of a Route: the host it serves, where requests go, and who may reach it.
// clippy reads the repeated `type_` keys of the `printcolumn(...)` groups as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "Route",
    namespaced,
    status = "RouteStatus",
    derive = "PartialEq",
    doc = "A Route exposes one host (and optional path prefix) through the Portcullis identity-aware proxy: where the traffic goes (Services in the same namespace or URLs), who may reach it (policy), and how requests are rewritten on the way.",
    shortname = "rt",
    category = "portcullis",
    printcolumn(
        name = "From",
        type_ = "string",
        json_path = ".spec.from",
        description = "The URL (or ssh:// name) this route serves"
    ),
    printcolumn(
        name = "To",
        type_ = "string",
        json_path = ".spec.to",
        description = "Where requests are sent"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the route is being served"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.tls) || self.from.startsWith('https://')").message("tls only applies to routes whose from starts with https://"),
    validation = Rule::new("self.to.all(t, !has(t.url) || (t.url.startsWith('ssh://') == self.from.startsWith('ssh://')))").message("an ssh:// route needs ssh:// upstream URLs, and an http:// or https:// route needs http:// or https:// upstream URLs"),
    validation = Rule::new("self.to.exists(t, !has(t.weight) || t.weight > 0)").message("at least one to entry needs a weight above 0"),
    validation = Rule::new("!has(self.identityProviders) || size(self.identityProviders) == 0 || (has(self.bearerTokenFormat) && self.bearerTokenFormat == 'jwt')").message("identityProviders only applies with bearerTokenFormat: jwt"),
    validation = Rule::new("!(has(self.allowPublicUnauthenticatedAccess) && self.allowPublicUnauthenticatedAccess) || (!has(self.policy) && !(has(self.allowAnyAuthenticatedUser) && self.allowAnyAuthenticatedUser))").message("allowPublicUnauthenticatedAccess lets everyone in, so it cannot be combined with policy or allowAnyAuthenticatedUser"),
)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// The external URL this route serves: `https://host`, `http://host` (optionally with a
    /// port), plus an optional path prefix such as `https://api.example.com/billing`; or
    /// `ssh://name` for an SSH route. Host names are lower case. A path prefix matches whole
    /// segments: `/api` matches `/api` and `/api/x`, never `/apiadmin`.
    #[schemars(length(min = 1, max = 1024), pattern(FROM_PATTERN))]
    pub from: String,

    /// Where requests go: one or more upstreams, each either a Service in this namespace
    /// (`service: {name, port}`) or a URL (`url: http://10.0.0.5:8080`), with an optional
    /// relative `weight` for splitting traffic.
    #[schemars(length(min = 1, max = 16))]
    pub to: Vec<RouteTarget>,

    /// TLS certificate for an `https://` route: a `kubernetes.io/tls` Secret in this namespace.
    /// Without it, a matching Ingress TLS Secret or the proxy's default certificate is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,

    /// Who may use this route, in a Pomerium-PPL-like form: `allow` and `deny` blocks holding
    /// `and` / `or` / `not` / `nor` lists of criteria (`serviceAccount`, `user`, `email`,
    /// `domain`, `groups`, `claim/<path>`, `http_method`, `http_path`, `expression`). Deny wins;
    /// an empty policy denies everyone. Problems in the policy are reported in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RoutePolicy>,

    /// Let in every authenticated caller (person or workload), whatever the policy says.
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_any_authenticated_user: Option<bool>,

    /// Let in everyone, without authentication. Cannot be combined with `policy` or
    /// `allowAnyAuthenticatedUser`. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_public_unauthenticated_access: Option<bool>,

    /// Which bearer tokens this route accepts: `default` (Portcullis access and session
    /// tokens), `idp_access_token` or `idp_identity_token` (tokens from the people's identity
    /// provider, verified per request), or `jwt` (external JWTs from `identityProviders`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_format: Option<BearerTokenFormat>,

    /// Names of external JWT issuers, from the `identityProviders` setting, whose tokens this
    /// route accepts (used with `bearerTokenFormat: jwt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 63), pattern(DNS_LABEL_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub identity_providers: Option<Vec<String>>,

    /// Extra hosts (exact names, no wildcards) the programmatic login may redirect to, on top of
    /// loopback. Can only narrow the global `programmaticRedirectDomains` setting; unset means
    /// the global list, an empty list means loopback only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 253), pattern(HOST_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub programmatic_redirect_domains: Option<Vec<String>>,

    /// Send the caller's identity to the upstream as a signed JWT in the
    /// `X-Portcullis-Jwt-Assertion` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_identity_headers: Option<bool>,

    /// Copy verified claims into upstream request headers: header name to claim name (or
    /// `.`-separated claim path), e.g. `X-Email: email`. At most 32 entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = claim_header_map)]
    #[x_kube(
        validation = header_map_keys_rule(),
        validation = reserved_headers_rule()
    )]
    pub jwt_claim_headers: Option<BTreeMap<String, String>>,

    /// Headers set on every upstream request: name to value, e.g. `X-Team: a`. Values may not
    /// contain control characters (CR, LF, NUL, ...). At most 32 entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = header_value_map)]
    #[x_kube(
        validation = header_map_keys_rule(),
        validation = reserved_headers_rule()
    )]
    pub set_request_headers: Option<BTreeMap<String, String>>,

    /// Headers removed from every request before it reaches the upstream, e.g. `X-Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 256), pattern(HEADER_NAME_PATTERN))
    )]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = reserved_headers_rule()
    )]
    pub remove_request_headers: Option<Vec<String>>,

    /// Send the client's `Host` header to the upstream instead of the upstream's own host.
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_host_header: Option<bool>,

    /// Replace the matched `from` path prefix with this path before forwarding, e.g. `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), pattern(PATH_PATTERN))]
    pub prefix_rewrite: Option<String>,

    /// How long an upstream may take to answer, as a Go duration between `1s` and `24h`
    /// (e.g. `30s`). Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('24h')").message("timeout must be between 1s and 24h"))]
    pub timeout: Option<GoDuration>,

    /// Allow WebSocket upgrades to the upstream. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_websockets: Option<bool>,

    /// Let unauthenticated CORS preflight requests (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) through to the upstream. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_allow_preflight: Option<bool>,
}

/// One upstream of a route: exactly one of `service` or `url`, plus an optional weight.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new("has(self.service) != has(self.url)").message("each to entry must set exactly one of service or url"))]
#[serde(rename_all = "camelCase")]
pub struct RouteTarget {
    /// A Service in the route's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceTarget>,

    /// An upstream URL: `http://`, `https://` (or `ssh://` for SSH routes), host or IP, optional
    /// port and path, e.g. `http://10.0.0.5:8080`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), pattern(UPSTREAM_URL_PATTERN))]
    pub url: Option<String>,

    /// Relative share of requests this upstream gets, 0 to 1000. Default 1; 0 sends it no new
    /// requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub weight: Option<i32>,
}

/// Which upstream a [`RouteTarget`] names, once validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend<'a> {
    /// A Service in the route's namespace.
    Service(&'a ServiceTarget),
    /// An upstream URL.
    Url(&'a str),
}

impl RouteTarget {
    /// The upstream this entry names, or `None` when it sets both or neither of
    /// `service` and `url` (the schema refuses such objects).
    pub fn backend(&self) -> Option<Backend<'_>> {
        match (&self.service, &self.url) {
            (Some(service), None) => Some(Backend::Service(service)),
            (None, Some(url)) => Some(Backend::Url(url)),
            _ => None,
        }
    }

    /// The entry's weight, defaulting to 1.
    pub fn weight_or_default(&self) -> u32 {
        self.weight.map_or(1, |w| u32::try_from(w).unwrap_or(0))
    }
}

/// A Service port in the route's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTarget {
    /// Name of the Service, in the route's namespace.
    #[schemars(length(min = 1, max = 63), pattern(SERVICE_NAME_PATTERN))]
    pub name: String,

    /// Service port number, 1 to 65535.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// TLS settings of a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    /// Name of a `kubernetes.io/tls` Secret in the route's namespace holding the certificate
    /// and key for the route's host.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: String,
}

/// The bearer tokens a route accepts (see `RouteSpec::bearer_token_format`).
// The empty schema description keeps the field's own description in the CRD: kube hoists an
// optional enum's schema over the field's.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(description = "")]
pub enum BearerTokenFormat {
    /// Portcullis access and session tokens.
    #[default]
    Default,
    /// Access tokens from the people's identity provider.
    IdpAccessToken,
    /// Identity tokens from the people's identity provider.
    IdpIdentityToken,
    /// External JWTs from the issuers listed in `identityProviders`.
    Jwt,
}

/// Most top-level keys in a route policy.
pub const POLICY_MAX_PROPERTIES: u32 = 8;

/// A route policy, kept as raw JSON: policies are recursive, which CRD schemas cannot
/// express, so the schema only says "an object" and the controller validates the contents.
///
/// Held as its compact JSON text, not as a `serde_json` tree: the controller keeps every Route
/// of the cluster, and a tree of small objects took ten times the room (about 2.5 KB against
/// 150 bytes for a policy of three criteria). Compile parses the text with its strings borrowed
/// ([`RoutePolicy::text`]), once per spec: compile results are cached by generation. A policy
/// nested deeper than the JSON parser goes ([`TEXT_MAX_DEPTH`]) is kept as its tree, for compile
/// to refuse as it refuses any policy too deep.
#[derive(Clone, PartialEq)]
pub struct RoutePolicy(PolicyRepr);

#[derive(Clone, PartialEq)]
enum PolicyRepr {
    Text(Box<str>),
    Tree(serde_json::Map<String, serde_json::Value>),
}

/// The deepest nesting kept as text: `serde_json` parses at most 128 levels.
const TEXT_MAX_DEPTH: usize = 100;

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

impl RoutePolicy {
    /// The policy of this JSON object.
    pub fn new(object: &serde_json::Map<String, serde_json::Value>) -> Self {
        Self::from_object(object.clone())
    }

    fn from_object(object: serde_json::Map<String, serde_json::Value>) -> Self {
        if 1 + object.values().map(depth).max().unwrap_or(0) > TEXT_MAX_DEPTH {
            return RoutePolicy(PolicyRepr::Tree(object));
        }
        let text = serde_json::Value::Object(object).to_string();
        RoutePolicy(PolicyRepr::Text(text.into()))
    }

    /// The compact JSON text of the object, as kept; `None` for one nested too deep to keep as
    /// text (use [`RoutePolicy::object`]).
    pub fn text(&self) -> Option<&str> {
        match &self.0 {
            PolicyRepr::Text(text) => Some(text),
            PolicyRepr::Tree(_) => None,
        }
    }

    /// The JSON object, keys in their order.
    pub fn object(&self) -> serde_json::Map<String, serde_json::Value> {
        match &self.0 {
            // Only ever made from an object no deeper than the parser goes, so it parses back.
            PolicyRepr::Text(text) => serde_json::from_str(text).unwrap_or_default(),
            PolicyRepr::Tree(tree) => tree.clone(),
        }
    }
}

impl Default for RoutePolicy {
    fn default() -> Self {
        RoutePolicy(PolicyRepr::Text("{}".into()))
    }
}

impl std::fmt::Debug for RoutePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            PolicyRepr::Text(text) => f.debug_tuple("RoutePolicy").field(text).finish(),
            PolicyRepr::Tree(tree) => f.debug_tuple("RoutePolicy").field(tree).finish(),
        }
    }
}

impl Serialize for RoutePolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.object().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RoutePolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        Ok(RoutePolicy::from_object(object))
    }
}

impl JsonSchema for RoutePolicy {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RoutePolicy".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "maxProperties": POLICY_MAX_PROPERTIES,
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

/// Observed state of a Route, written by the controller.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// The URL clients use to reach this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Accepted` (the route is valid and owns its host and path), `ResolvedRefs` (its Services
    /// and Secrets exist) and `Ready` (it is being served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Option<Vec<Condition>>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    /// The DESIGN.md §3 example, with every field set.
    const FULL_ROUTE: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata:
  name: billing-api
  namespace: team-a
spec:
  from: https://billing.example.com
  to:
    - service: {name: billing, port: 8080}
      weight: 90
    - url: http://10.0.0.5:8080
      weight: 10
  tls: {secretName: billing-tls}
  policy:
    allow:
      or:
        - serviceAccount: {is: team-a/billing-bot}
        - email: {is: alice@example.com}
        - domain: {is: example.com}
        - groups: {has: payments}
        - claim/kubernetes.io.namespace: {is: team-a}
        - expression: 'request.method == "GET" && claims.iss == "https://token.actions.githubusercontent.com"'
    deny:
      or: [{http_path: {starts_with: /admin}}]
  allowAnyAuthenticatedUser: false
  allowPublicUnauthenticatedAccess: false
  bearerTokenFormat: jwt
  identityProviders: [github-actions]
  programmaticRedirectDomains: []
  passIdentityHeaders: true
  jwtClaimHeaders: {X-Email: email}
  setRequestHeaders: {X-Team: a}
  removeRequestHeaders: [X-Debug]
  preserveHostHeader: false
  prefixRewrite: /
  timeout: 30s
  allowWebsockets: true
  corsAllowPreflight: false
status:
  url: https://billing.example.com
  observedGeneration: 3
  conditions:
    - type: Ready
      status: "True"
      reason: Serving
      message: the route is served
      lastTransitionTime: "2025-01-01T00:00:00Z"
      observedGeneration: 3
"#;

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    #[test]
    fn a_full_route_round_trips_unchanged() {
        let raw: Value = serde_yaml::from_str(FULL_ROUTE).unwrap();
        let route: Route = serde_yaml::from_str(FULL_ROUTE).unwrap();
        assert_eq!(serde_json::to_value(&route).unwrap(), raw);

        let spec = &route.spec;
        assert_eq!(spec.from, "https://billing.example.com");
        assert_eq!(
            spec.to[0].backend(),
            Some(Backend::Service(&ServiceTarget {
                name: "billing".into(),
                port: 8080
            }))
        );
        assert_eq!(
            spec.to[1].backend(),
            Some(Backend::Url("http://10.0.0.5:8080"))
        );
        assert_eq!(spec.to[1].weight_or_default(), 10);
        assert_eq!(spec.bearer_token_format, Some(BearerTokenFormat::Jwt));
        assert_eq!(spec.programmatic_redirect_domains, Some(vec![]));
        assert_eq!(
            spec.timeout.as_ref().and_then(GoDuration::to_std),
            Some(std::time::Duration::from_secs(30))
        );
        let policy = spec.policy.as_ref().unwrap();
        assert!(
            policy.object()["allow"]["or"]
                .as_array()
                .is_some_and(|or| or.len() == 6)
        );
        let status = route.status.as_ref().unwrap();
        assert_eq!(status.conditions.as_ref().unwrap()[0].type_, "Ready");
    }

    #[test]
    fn a_minimal_route_serializes_only_what_was_set() {
        let route = Route::new(
            "echo",
            RouteSpec {
                from: "http://echo.localhost:8080".into(),
                to: vec![RouteTarget {
                    url: Some("http://127.0.0.1:9000".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        assert_eq!(
            serde_json::to_value(&route).unwrap(),
            json!({
                "apiVersion": "portcullis.dev/v1alpha1",
                "kind": "Route",
                "metadata": {"name": "echo"},
                "spec": {"from": "http://echo.localhost:8080", "to": [{"url": "http://127.0.0.1:9000"}]},
            })
        );
        assert_eq!(route.spec.to[0].weight_or_default(), 1);
    }

    #[test]
    fn bearer_token_formats_use_their_documented_names() {
        for (format, name) in [
            (BearerTokenFormat::Default, "default"),
            (BearerTokenFormat::IdpAccessToken, "idp_access_token"),
            (BearerTokenFormat::IdpIdentityToken, "idp_identity_token"),
            (BearerTokenFormat::Jwt, "jwt"),
        ] {
            assert_eq!(serde_json::to_value(format).unwrap(), json!(name));
        }
        assert!(serde_json::from_value::<BearerTokenFormat>(json!("JWT")).is_err());
    }

    #[test]
    fn a_target_with_both_or_neither_upstream_has_no_backend() {
        let both = RouteTarget {
            service: Some(ServiceTarget {
                name: "a".into(),
                port: 80,
            }),
            url: Some("http://a".into()),
            weight: None,
        };
        assert_eq!(both.backend(), None);
        assert_eq!(RouteTarget::default().backend(), None);
        let drained = RouteTarget {
            weight: Some(0),
            ..Default::default()
        };
        assert_eq!(drained.weight_or_default(), 0);
    }

    #[test]
    fn a_policy_must_be_an_object() {
        assert!(serde_json::from_value::<RoutePolicy>(json!({"allow": {}})).is_ok());
        assert!(serde_json::from_value::<RoutePolicy>(json!([{"allow": {}}])).is_err());
    }

    #[test]
    fn a_policy_is_kept_as_written() {
        let v = json!({"deny": {"or": [{"n": 1.5}, {"ok": true}, {"x": null}]},
            "allow": {"or": [{"email": {"is": "a@example.com"}}, {"claim/sub": {"is": -42}}]}});
        let p: RoutePolicy = serde_json::from_value(v.clone()).unwrap();
        // Keys stay in their order; numbers, booleans and nulls are unchanged.
        assert!(matches!(&p.0, PolicyRepr::Text(t) if t.as_ref() == v.to_string().as_str()));
        assert_eq!(serde_json::to_value(&p).unwrap(), v);
        assert_eq!(serde_json::Value::Object(p.object()), v);
        assert_eq!(RoutePolicy::new(v.as_object().unwrap()), p);
        let yaml: RoutePolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(yaml, p);
        assert!(RoutePolicy::default().object().is_empty());

        // Deeper than the parser goes: kept whole all the same.
        let mut deep = json!({"email": {"is": "a@example.com"}});
        for _ in 0..200 {
            deep = json!({"and": [deep]});
        }
        let p: RoutePolicy = serde_json::from_value(deep.clone()).unwrap();
        assert_eq!(serde_json::Value::Object(p.object()), deep);
        assert_eq!(serde_json::to_value(&p).unwrap(), deep);
    }

    #[test]
    fn the_crd_has_names_columns_and_status() {
        let crd = Route::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("routes.portcullis.dev"));
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["rt".to_string()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["portcullis".to_string()])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
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
                ("From", "string", ".spec.from"),
                ("To", "string", ".spec.to"),
                (
                    "Ready",
                    "string",
                    r#".status.conditions[?(@.type=="Ready")].status"#
                ),
                ("Age", "date", ".metadata.creationTimestamp"),
            ]
        );
    }

    fn rules_at(schema: &Value, pointer: &str) -> Vec<String> {
        schema
            .pointer(pointer)
            .and_then(|node| node.get("x-kubernetes-validations"))
            .and_then(Value::as_array)
            .map(|rules| {
                rules
                    .iter()
                    .map(|r| r["rule"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_crd_carries_the_cel_rules() {
        let crd = serde_json::to_value(Route::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let spec = rules_at(schema, "/properties/spec");
        assert_eq!(spec.len(), 5);
        assert!(
            spec.iter()
                .any(|r| r.contains("self.from.startsWith('https://')"))
        );
        assert!(
            spec.iter()
                .any(|r| r.contains("self.bearerTokenFormat == 'jwt'"))
        );
        assert!(spec.iter().any(|r| r.contains("t.weight > 0")));
        assert!(
            spec.iter()
                .any(|r| r.contains("allowPublicUnauthenticatedAccess"))
        );
        assert_eq!(
            rules_at(schema, "/properties/spec/properties/to/items"),
            ["has(self.service) != has(self.url)"]
        );
        for header_map in ["setRequestHeaders", "jwtClaimHeaders"] {
            let rules = rules_at(schema, &format!("/properties/spec/properties/{header_map}"));
            assert_eq!(rules.len(), 2, "{header_map}");
            assert!(rules[1].contains("'transfer-encoding'"), "{header_map}");
        }
        assert_eq!(
            rules_at(schema, "/properties/spec/properties/removeRequestHeaders").len(),
            1
        );
        assert_eq!(
            rules_at(schema, "/properties/spec/properties/timeout").len(),
            1
        );
        let policy = &schema["properties"]["spec"]["properties"]["policy"];
        assert_eq!(policy["type"], "object");
        assert_eq!(policy["x-kubernetes-preserve-unknown-fields"], true);
        assert_eq!(policy["maxProperties"], POLICY_MAX_PROPERTIES);
        let conditions = &schema["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    }

    #[test]
    fn from_accepts_urls_with_canonical_path_prefixes_and_ssh_names() {
        for good in [
            "https://billing.example.com",
            "https://billing.example.com/",
            "https://api.example.com/billing",
            "https://api.example.com/billing/v1/",
            "http://echo.localhost:8080",
            "https://a.example.com:443/.well-known/x",
            "https://a.example.com/...x/a..b",
            "ssh://db",
            "ssh://db.team-a",
        ] {
            assert!(matches(FROM_PATTERN, good), "{good}");
        }
        for bad in [
            "billing.example.com",
            "ftp://billing.example.com",
            "https://Billing.example.com",
            "https://billing.example.com:0",
            "https://billing.example.com:65536",
            "https://-bad.example.com",
            "https://a.example.com//x",
            "https://a.example.com/./x",
            "https://a.example.com/x/..",
            "https://a.example.com/x/../admin",
            "https://a.example.com/%2e%2e/admin",
            "https://a.example.com/x?y=1",
            "https://a.example.com/x#frag",
            "https://a.example.com/a\\b",
            "https://user@a.example.com/",
            "https://*.example.com",
            "ssh://db/path",
            "ssh://db:22",
            "https://a.example.com/x\n",
        ] {
            assert!(!matches(FROM_PATTERN, bad), "{bad:?}");
        }
    }

    #[test]
    fn upstream_urls_and_paths_are_checked() {
        for good in [
            "http://10.0.0.5:8080",
            "https://billing.team-a.svc.cluster.local:8443/base",
            "http://[::1]:9000",
            "ssh://10.0.0.7:22",
            "http://127.0.0.1:9000",
        ] {
            assert!(matches(UPSTREAM_URL_PATTERN, good), "{good}");
        }
        for bad in [
            "10.0.0.5:8080",
            "http://a b",
            "http://a/..",
            "file:///etc/passwd",
            "http://a:99999",
        ] {
            assert!(!matches(UPSTREAM_URL_PATTERN, bad), "{bad}");
        }
        for good in ["/", "/api", "/api/v2/"] {
            assert!(matches(PATH_PATTERN, good), "{good}");
        }
        for bad in ["", "api", "/a/../b", "//", "/a%20b"] {
            assert!(!matches(PATH_PATTERN, bad), "{bad}");
        }
        assert!(matches(HOST_PATTERN, "app.example.com"));
        assert!(!matches(HOST_PATTERN, "app.example.com:8080"));
        assert!(!matches(HOST_PATTERN, "*.example.com"));
    }
}
