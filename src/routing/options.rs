//! The per-route settings the proxy reads on every request: who may pass without a policy, which
//! bearer tokens count, which identity headers go upstream, how the request is rewritten and how
//! long the upstream may take.
//!
//! `controller::compile::options` builds a [`RouteOptions`] from a Route's spec or an Ingress's
//! `portcullis.dev/` annotations (after validating every value); the proxy only reads it. Plain
//! domain types: no Kubernetes types, no JSON.

use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// The upstream timeout a route gets when it sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest upstream timeout a route may set.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest upstream timeout a route may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Which bearer tokens a route accepts in `Authorization` (or `X-Portcullis-Authorization`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BearerTokenFormat {
    /// Portcullis access and session tokens.
    #[default]
    Default,
    /// Access tokens of the people's identity provider, verified by its introspection endpoint.
    IdpAccessToken,
    /// Identity tokens (id_tokens) of the people's identity provider, verified with its keys.
    IdpIdentityToken,
    /// External JWTs from the issuers in [`RouteOptions::identity_providers`].
    Jwt,
}

impl BearerTokenFormat {
    /// Every format, in documentation order.
    pub const ALL: [BearerTokenFormat; 4] = [
        BearerTokenFormat::Default,
        BearerTokenFormat::IdpAccessToken,
        BearerTokenFormat::IdpIdentityToken,
        BearerTokenFormat::Jwt,
    ];

    /// The name used in Route specs and annotations (`default`, `idp_access_token`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            BearerTokenFormat::Default => "default",
            BearerTokenFormat::IdpAccessToken => "idp_access_token",
            BearerTokenFormat::IdpIdentityToken => "idp_identity_token",
            BearerTokenFormat::Jwt => "jwt",
        }
    }

    /// The format with this exact (case-sensitive) name.
    pub fn from_name(name: &str) -> Option<BearerTokenFormat> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for BearerTokenFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything about a route besides where it is, where it goes and its policy. The header lists
/// hold lower-case names (what [`HeaderName`] stores), sorted by name, each name at most once
/// (see [`RouteOptions::sort_headers`]), so two compilations of one object are equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOptions {
    /// Let in every authenticated caller, whatever the policy says. Default false.
    pub allow_any_authenticated_user: bool,
    /// Let in everyone without authentication; the policy is then empty. Default false.
    pub allow_public_unauthenticated_access: bool,
    /// Which bearer tokens the route accepts. Default [`BearerTokenFormat::Default`].
    pub bearer_token_format: BearerTokenFormat,
    /// Names of `identityProviders` settings whose JWTs the route accepts; only ever non-empty
    /// with [`BearerTokenFormat::Jwt`]. Sorted.
    pub identity_providers: Vec<String>,
    /// Extra hosts (lower case, exact) the programmatic login may redirect to, besides
    /// loopback. `None` means the global setting; `Some(empty)` means loopback only. The login
    /// API intersects it with the global list, so a route can only narrow it. Sorted.
    pub programmatic_redirect_domains: Option<Vec<String>>,
    /// Send the signed identity assertion (`X-Portcullis-Jwt-Assertion`) upstream. Default true.
    pub pass_identity_headers: bool,
    /// Upstream headers filled from a verified claim: header name and claim path (`.`-separated).
    pub jwt_claim_headers: Vec<(HeaderName, String)>,
    /// Headers set on every upstream request.
    pub set_request_headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers removed from every request before it reaches the upstream.
    pub remove_request_headers: Vec<HeaderName>,
    /// Send the client's `Host` upstream instead of the upstream's own. Default false.
    pub preserve_host_header: bool,
    /// Replacement for the matched path prefix, in canonical path form (`/`, `/v2`).
    pub prefix_rewrite: Option<String>,
    /// The longest the proxy waits for the upstream's answer: between [`MIN_TIMEOUT`] and
    /// [`MAX_TIMEOUT`], default [`DEFAULT_TIMEOUT`]. Never zero: there is no "no timeout".
    pub timeout: Duration,
    /// Let WebSocket upgrades through to the upstream. Default false.
    pub allow_websockets: bool,
    /// Let unauthenticated CORS preflight requests through to the upstream. Default false.
    pub cors_allow_preflight: bool,
}

impl Default for RouteOptions {
    /// What a route that sets nothing gets: authenticated callers the policy allows, Portcullis
    /// tokens only, the identity assertion passed upstream, a 30 s timeout, no WebSockets.
    fn default() -> Self {
        RouteOptions {
            allow_any_authenticated_user: false,
            allow_public_unauthenticated_access: false,
            bearer_token_format: BearerTokenFormat::Default,
            identity_providers: Vec::new(),
            programmatic_redirect_domains: None,
            pass_identity_headers: true,
            jwt_claim_headers: Vec::new(),
            set_request_headers: Vec::new(),
            remove_request_headers: Vec::new(),
            preserve_host_header: false,
            prefix_rewrite: None,
            timeout: DEFAULT_TIMEOUT,
            allow_websockets: false,
            cors_allow_preflight: false,
        }
    }
}

impl RouteOptions {
    /// Puts the header lists in their canonical order: sorted by name, and for each name only
    /// the first entry kept (the compiler refuses duplicates before this, so nothing is lost).
    pub fn sort_headers(&mut self) {
        sort_dedup(&mut self.jwt_claim_headers, |(name, _)| name);
        sort_dedup(&mut self.set_request_headers, |(name, _)| name);
        sort_dedup(&mut self.remove_request_headers, |name| name);
    }
}

/// Stable sort by header name, then drop later entries of an already seen name.
fn sort_dedup<T>(items: &mut Vec<T>, name: impl Fn(&T) -> &HeaderName) {
    items.sort_by(|a, b| name(a).as_str().cmp(name(b).as_str()));
    items.dedup_by(|later, earlier| name(later) == name(earlier));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let o = RouteOptions::default();
        assert!(!o.allow_any_authenticated_user);
        assert!(!o.allow_public_unauthenticated_access);
        assert_eq!(o.bearer_token_format, BearerTokenFormat::Default);
        assert!(o.identity_providers.is_empty());
        assert_eq!(o.programmatic_redirect_domains, None);
        assert!(o.pass_identity_headers);
        assert!(o.jwt_claim_headers.is_empty());
        assert!(o.set_request_headers.is_empty());
        assert!(o.remove_request_headers.is_empty());
        assert!(!o.preserve_host_header);
        assert_eq!(o.prefix_rewrite, None);
        assert_eq!(o.timeout, Duration::from_secs(30));
        assert!(!o.allow_websockets);
        assert!(!o.cors_allow_preflight);
        assert!(MIN_TIMEOUT <= DEFAULT_TIMEOUT && DEFAULT_TIMEOUT <= MAX_TIMEOUT);
    }

    #[test]
    fn bearer_token_formats_round_trip_their_names() {
        let names: Vec<&str> = BearerTokenFormat::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(
            names,
            ["default", "idp_access_token", "idp_identity_token", "jwt"]
        );
        for format in BearerTokenFormat::ALL {
            assert_eq!(BearerTokenFormat::from_name(format.as_str()), Some(format));
            assert_eq!(format.to_string(), format.as_str());
        }
        assert_eq!(BearerTokenFormat::from_name("JWT"), None);
        assert_eq!(BearerTokenFormat::from_name(""), None);
    }

    #[test]
    fn headers_sort_by_name_and_keep_the_first_of_a_name() {
        let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).unwrap();
        let value = HeaderValue::from_static;
        let mut o = RouteOptions {
            set_request_headers: vec![
                (name("X-Zeta"), value("z")),
                (name("x-alpha"), value("first")),
                (name("X-Alpha"), value("second")),
            ],
            jwt_claim_headers: vec![
                (name("x-mail"), "email".into()),
                (name("x-groups"), "groups".into()),
            ],
            remove_request_headers: vec![name("x-b"), name("X-A"), name("x-b")],
            ..RouteOptions::default()
        };
        o.sort_headers();
        let set: Vec<(&str, &str)> = o
            .set_request_headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(set, [("x-alpha", "first"), ("x-zeta", "z")]);
        let claims: Vec<(&str, &str)> = o
            .jwt_claim_headers
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_str()))
            .collect();
        assert_eq!(claims, [("x-groups", "groups"), ("x-mail", "email")]);
        let removed: Vec<&str> = o
            .remove_request_headers
            .iter()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(removed, ["x-a", "x-b"]);
    }
}
