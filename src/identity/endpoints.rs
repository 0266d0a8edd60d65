//! Paths of every identity endpoint, in one place, and the discovery document that lists them.
//!
//! Two families (DESIGN.md §4): endpoints on the authenticate host (token, JWKS, metadata,
//! device, revocation, introspection, the IdP callback, the Pomerium-compatible token API), and
//! endpoints every route host serves under `/.portcullis/` and its Pomerium-compatible alias
//! `/.pomerium/`. The listener and router match requests with [`identity_endpoint`] and
//! [`route_endpoint`]; the controller refuses routes that claim these paths; the metadata
//! handlers serve [`metadata`].

use url::Url;

use super::token::GrantType;

/// RFC 8414 authorization server metadata.
pub const OAUTH_AUTHORIZATION_SERVER: &str = "/.well-known/oauth-authorization-server";
/// OpenID Connect discovery (the same document as [`OAUTH_AUTHORIZATION_SERVER`]).
pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
/// The public signing keys (RFC 7517).
pub const JWKS: &str = "/.well-known/jwks.json";
/// The token endpoint (RFC 6749 §3.2).
pub const TOKEN: &str = "/oauth2/token";
/// Token revocation (RFC 7009).
pub const REVOKE: &str = "/oauth2/revoke";
/// Token introspection (RFC 7662).
pub const INTROSPECT: &str = "/oauth2/introspect";
/// Device authorization (RFC 8628 §3.1).
pub const DEVICE_AUTHORIZATION: &str = "/oauth2/device_authorization";
/// The user-code page of the device flow (RFC 8628 §3.3).
pub const DEVICE: &str = "/oauth2/device";
/// Redirect target of the external identity provider (OIDC code flow).
pub const CALLBACK: &str = "/oauth2/callback";
/// Pomerium's 2019 token API: form `id_token` → `{"Token","Expiry"}`.
pub const API_V1_TOKEN: &str = "/api/v1/token";

/// Prefix of the endpoints every route host serves.
pub const ROUTE_PREFIX: &str = "/.portcullis/";
/// Pomerium-compatible alias of [`ROUTE_PREFIX`].
pub const POMERIUM_ROUTE_PREFIX: &str = "/.pomerium/";
/// Both route prefixes; a route can never claim a path under either.
pub const ROUTE_PREFIXES: [&str; 2] = [ROUTE_PREFIX, POMERIUM_ROUTE_PREFIX];

/// Sub-path (after a route prefix) of the programmatic login API.
pub const ROUTE_LOGIN: &str = "api/v1/login";
/// Sub-path of the route-host callback that completes a sign-in.
pub const ROUTE_CALLBACK: &str = "callback";
/// Sub-path of the sign-in redirect.
pub const ROUTE_SIGN_IN: &str = "sign_in";
/// Sub-path of sign-out (POST + CSRF).
pub const ROUTE_SIGN_OUT: &str = "sign_out";
/// Sub-path returning the caller's assertion.
pub const ROUTE_JWT: &str = "jwt";
/// Sub-path of the page listing the user's client bindings.
pub const ROUTE_SESSION_BINDING_INFO: &str = "session_binding_info";

/// An endpoint on the authenticate host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityEndpoint {
    /// [`OAUTH_AUTHORIZATION_SERVER`] or [`OPENID_CONFIGURATION`].
    Metadata,
    /// [`JWKS`].
    Jwks,
    /// [`TOKEN`].
    Token,
    /// [`REVOKE`].
    Revoke,
    /// [`INTROSPECT`].
    Introspect,
    /// [`DEVICE_AUTHORIZATION`].
    DeviceAuthorization,
    /// [`DEVICE`].
    Device,
    /// [`CALLBACK`].
    Callback,
    /// [`API_V1_TOKEN`].
    ApiV1Token,
}

/// The authenticate-host endpoint a request path names, if any (exact match; the query is not
/// part of `path`).
pub fn identity_endpoint(path: &str) -> Option<IdentityEndpoint> {
    Some(match path {
        OAUTH_AUTHORIZATION_SERVER | OPENID_CONFIGURATION => IdentityEndpoint::Metadata,
        JWKS => IdentityEndpoint::Jwks,
        TOKEN => IdentityEndpoint::Token,
        REVOKE => IdentityEndpoint::Revoke,
        INTROSPECT => IdentityEndpoint::Introspect,
        DEVICE_AUTHORIZATION => IdentityEndpoint::DeviceAuthorization,
        DEVICE => IdentityEndpoint::Device,
        CALLBACK => IdentityEndpoint::Callback,
        API_V1_TOKEN => IdentityEndpoint::ApiV1Token,
        _ => return None,
    })
}

/// An endpoint under a route prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteEndpoint {
    /// The prefix itself (`/.portcullis/`): who am I.
    WhoAmI,
    /// [`ROUTE_LOGIN`].
    Login,
    /// [`ROUTE_CALLBACK`].
    Callback,
    /// [`ROUTE_SIGN_IN`].
    SignIn,
    /// [`ROUTE_SIGN_OUT`].
    SignOut,
    /// [`ROUTE_JWT`].
    Jwt,
    /// [`ROUTE_SESSION_BINDING_INFO`].
    SessionBindingInfo,
    /// A reserved path no endpoint serves: answered 404 by Portcullis, never proxied.
    NotFound,
}

/// The route-host endpoint a request path names: `None` when the path is not under a route
/// prefix (the request goes to the route's upstream). One trailing `/` after a sub-path is
/// accepted (Pomerium's callback is `/.pomerium/callback/`); the bare prefix without its slash
/// (`/.portcullis`) is reserved too.
pub fn route_endpoint(path: &str) -> Option<RouteEndpoint> {
    let sub = ROUTE_PREFIXES.iter().find_map(|prefix| {
        path.strip_prefix(prefix)
            .or_else(|| (path == prefix.trim_end_matches('/')).then_some(""))
    })?;
    let sub = sub.strip_suffix('/').unwrap_or(sub);
    Some(match sub {
        "" => RouteEndpoint::WhoAmI,
        ROUTE_LOGIN => RouteEndpoint::Login,
        ROUTE_CALLBACK => RouteEndpoint::Callback,
        ROUTE_SIGN_IN => RouteEndpoint::SignIn,
        ROUTE_SIGN_OUT => RouteEndpoint::SignOut,
        ROUTE_JWT => RouteEndpoint::Jwt,
        ROUTE_SESSION_BINDING_INFO => RouteEndpoint::SessionBindingInfo,
        _ => RouteEndpoint::NotFound,
    })
}

/// The issuer identifier for an authenticate URL: the URL without query, fragment or trailing
/// `/` (`https://auth.example.com`). Tokens carry it as `iss` and the discovery document as
/// `issuer`; clients compare the two exactly.
pub fn issuer_identifier(issuer: &Url) -> String {
    let mut url = issuer.clone();
    url.set_query(None);
    url.set_fragment(None);
    let text = url.as_str();
    text.strip_suffix('/').unwrap_or(text).to_owned()
}

/// The absolute URL of an endpoint path on the authenticate host. Identity endpoints live at
/// the root of the host, so a path in the issuer URL is replaced, not extended.
pub fn endpoint_url(issuer: &Url, path: &str) -> String {
    let mut url = issuer.clone();
    url.set_path(path);
    url.set_query(None);
    url.set_fragment(None);
    url.into()
}

/// What the identity surface offers today; [`metadata`] advertises exactly this and nothing
/// that is not served.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities<'a> {
    /// Grant types the token endpoint accepts. `device_code` also advertises the device
    /// authorization endpoint.
    pub grant_types: &'a [GrantType],
    /// `alg` values of the keys Portcullis signs tokens with (current and previous key).
    pub signing_algs: &'a [&'a str],
    /// `alg` values accepted on JWT client assertions. Empty until federation is served; when
    /// set, `private_key_jwt` joins the token endpoint's authentication methods.
    pub client_assertion_algs: &'a [&'a str],
    /// Scope values to advertise; empty omits `scopes_supported` (RFC 8414 §2 lets a server
    /// advertise fewer scopes than it accepts, and route scopes would name every route).
    pub scopes: &'a [&'a str],
    /// Whether [`REVOKE`] is served.
    pub revocation: bool,
    /// Whether [`INTROSPECT`] is served.
    pub introspection: bool,
}

impl Default for Capabilities<'static> {
    /// Client credentials signed with ES256, nothing else.
    fn default() -> Self {
        Self {
            grant_types: &[GrantType::ClientCredentials],
            signing_algs: &["ES256"],
            client_assertion_algs: &[],
            scopes: &[],
            revocation: false,
            introspection: false,
        }
    }
}

/// Client authentication methods of the token endpoint (besides `private_key_jwt`, which
/// depends on [`Capabilities::client_assertion_algs`]).
pub const TOKEN_ENDPOINT_AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// The discovery document served at both [`OAUTH_AUTHORIZATION_SERVER`] (RFC 8414) and
/// [`OPENID_CONFIGURATION`] (OpenID Connect Discovery 1.0).
///
/// Values that exist only because a specification or a validator requires them:
/// - `authorization_endpoint` is absent: Portcullis issues no authorization codes (people sign
///   in through their routes; machines use the token endpoint), and RFC 8414 §2 requires it only
///   when a grant type uses it. OpenID Connect Discovery lists it as required, but clients that
///   only fetch tokens (openid-client checks `issuer` only; authlib requires it only for
///   `authorization_code`/`implicit`) do not need it.
/// - `response_types_supported` is `["id_token"]` and `subject_types_supported` `["public"]`,
///   as the Kubernetes service-account issuer and GitHub Actions' token issuer publish for the
///   same situation: both fields are required and strict validators refuse an empty list.
/// - `id_token_signing_alg_values_supported` lists the algorithms of Portcullis's own keys; RS256
///   appears only when it is configured (OpenID Connect Discovery asks for RS256, which
///   Portcullis does not sign with by default, and listing an algorithm no key uses would
///   mislead verifiers).
pub fn metadata(issuer: &Url, capabilities: &Capabilities<'_>) -> serde_json::Value {
    let mut auth_methods: Vec<&str> = TOKEN_ENDPOINT_AUTH_METHODS.to_vec();
    if !capabilities.client_assertion_algs.is_empty() {
        auth_methods.push("private_key_jwt");
    }
    let mut doc = serde_json::Map::new();
    let mut put = |key: &str, value: serde_json::Value| {
        doc.insert(key.to_owned(), value);
    };
    put("issuer", issuer_identifier(issuer).into());
    put("token_endpoint", endpoint_url(issuer, TOKEN).into());
    put("jwks_uri", endpoint_url(issuer, JWKS).into());
    if capabilities.grant_types.contains(&GrantType::DeviceCode) {
        put(
            "device_authorization_endpoint",
            endpoint_url(issuer, DEVICE_AUTHORIZATION).into(),
        );
    }
    if capabilities.revocation {
        put("revocation_endpoint", endpoint_url(issuer, REVOKE).into());
        put(
            "revocation_endpoint_auth_methods_supported",
            auth_methods.clone().into(),
        );
    }
    if capabilities.introspection {
        put(
            "introspection_endpoint",
            endpoint_url(issuer, INTROSPECT).into(),
        );
        put(
            "introspection_endpoint_auth_methods_supported",
            auth_methods.clone().into(),
        );
    }
    let grants: Vec<&str> = capabilities
        .grant_types
        .iter()
        .map(|g| g.as_str())
        .collect();
    put("grant_types_supported", grants.into());
    put("token_endpoint_auth_methods_supported", auth_methods.into());
    if !capabilities.client_assertion_algs.is_empty() {
        put(
            "token_endpoint_auth_signing_alg_values_supported",
            capabilities.client_assertion_algs.to_vec().into(),
        );
    }
    put("response_types_supported", vec!["id_token"].into());
    put("subject_types_supported", vec!["public"].into());
    put(
        "id_token_signing_alg_values_supported",
        capabilities.signing_algs.to_vec().into(),
    );
    if !capabilities.scopes.is_empty() {
        put("scopes_supported", capabilities.scopes.to_vec().into());
    }
    serde_json::Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> Url {
        Url::parse("https://auth.example.com").unwrap()
    }

    #[test]
    fn identity_paths_are_matched_exactly() {
        assert_eq!(
            identity_endpoint("/oauth2/token"),
            Some(IdentityEndpoint::Token)
        );
        assert_eq!(
            identity_endpoint("/.well-known/openid-configuration"),
            Some(IdentityEndpoint::Metadata)
        );
        assert_eq!(
            identity_endpoint("/.well-known/oauth-authorization-server"),
            Some(IdentityEndpoint::Metadata)
        );
        assert_eq!(
            identity_endpoint("/.well-known/jwks.json"),
            Some(IdentityEndpoint::Jwks)
        );
        assert_eq!(
            identity_endpoint("/api/v1/token"),
            Some(IdentityEndpoint::ApiV1Token)
        );
        assert_eq!(identity_endpoint("/oauth2/token/"), None);
        assert_eq!(identity_endpoint("/oauth2/tokens"), None);
        assert_eq!(identity_endpoint("/OAUTH2/TOKEN"), None);
    }

    #[test]
    fn route_paths_under_both_prefixes() {
        for prefix in ["/.portcullis/", "/.pomerium/"] {
            let at = |sub: &str| route_endpoint(&format!("{prefix}{sub}"));
            assert_eq!(at(""), Some(RouteEndpoint::WhoAmI));
            assert_eq!(at("api/v1/login"), Some(RouteEndpoint::Login));
            assert_eq!(at("callback"), Some(RouteEndpoint::Callback));
            assert_eq!(at("callback/"), Some(RouteEndpoint::Callback));
            assert_eq!(at("sign_in"), Some(RouteEndpoint::SignIn));
            assert_eq!(at("sign_out"), Some(RouteEndpoint::SignOut));
            assert_eq!(at("jwt"), Some(RouteEndpoint::Jwt));
            assert_eq!(
                at("session_binding_info"),
                Some(RouteEndpoint::SessionBindingInfo)
            );
            assert_eq!(at("admin"), Some(RouteEndpoint::NotFound));
            assert_eq!(at("jwt//"), Some(RouteEndpoint::NotFound));
        }
        assert_eq!(route_endpoint("/.portcullis"), Some(RouteEndpoint::WhoAmI));
        assert_eq!(route_endpoint("/.pomerium"), Some(RouteEndpoint::WhoAmI));
        assert_eq!(route_endpoint("/.portcullisx/jwt"), None);
        assert_eq!(route_endpoint("/api/.portcullis/jwt"), None);
        assert_eq!(route_endpoint("/"), None);
    }

    #[test]
    fn issuer_and_endpoint_urls() {
        assert_eq!(issuer_identifier(&issuer()), "https://auth.example.com");
        let with_port = Url::parse("https://auth.example.com:8443/?x=1#f").unwrap();
        assert_eq!(
            issuer_identifier(&with_port),
            "https://auth.example.com:8443"
        );
        assert_eq!(
            endpoint_url(&with_port, TOKEN),
            "https://auth.example.com:8443/oauth2/token"
        );
        let with_path = Url::parse("https://auth.example.com/sso/").unwrap();
        assert_eq!(
            issuer_identifier(&with_path),
            "https://auth.example.com/sso"
        );
        assert_eq!(
            endpoint_url(&with_path, JWKS),
            "https://auth.example.com/.well-known/jwks.json"
        );
    }

    #[test]
    fn metadata_for_client_credentials_only() {
        let doc = metadata(&issuer(), &Capabilities::default());
        let expected = serde_json::json!({
            "issuer": "https://auth.example.com",
            "token_endpoint": "https://auth.example.com/oauth2/token",
            "jwks_uri": "https://auth.example.com/.well-known/jwks.json",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        assert_eq!(doc, expected);
        // Nothing that is not served is advertised.
        for absent in [
            "authorization_endpoint",
            "device_authorization_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
            "token_endpoint_auth_signing_alg_values_supported",
            "scopes_supported",
        ] {
            assert!(doc.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn metadata_grows_with_capabilities() {
        let caps = Capabilities {
            grant_types: &[
                GrantType::ClientCredentials,
                GrantType::TokenExchange,
                GrantType::DeviceCode,
                GrantType::RefreshToken,
            ],
            signing_algs: &["ES256", "RS256"],
            client_assertion_algs: &["RS256", "ES256"],
            scopes: &["openid"],
            revocation: true,
            introspection: true,
        };
        let doc = metadata(&issuer(), &caps);
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!([
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:token-exchange",
                "urn:ietf:params:oauth:grant-type:device_code",
                "refresh_token"
            ])
        );
        assert_eq!(
            doc["device_authorization_endpoint"],
            "https://auth.example.com/oauth2/device_authorization"
        );
        assert_eq!(
            doc["revocation_endpoint"],
            "https://auth.example.com/oauth2/revoke"
        );
        assert_eq!(
            doc["introspection_endpoint"],
            "https://auth.example.com/oauth2/introspect"
        );
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            serde_json::json!([
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt"
            ])
        );
        assert_eq!(
            doc["token_endpoint_auth_signing_alg_values_supported"],
            serde_json::json!(["RS256", "ES256"])
        );
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            serde_json::json!(["ES256", "RS256"])
        );
        assert_eq!(doc["scopes_supported"], serde_json::json!(["openid"]));
    }

    #[test]
    fn metadata_issuer_matches_token_issuer_form() {
        // The `issuer` must equal the `iss` of issued tokens byte for byte.
        let url = Url::parse("https://auth.example.com/").unwrap();
        let doc = metadata(&url, &Capabilities::default());
        assert_eq!(doc["issuer"], issuer_identifier(&url));
    }
}
