//! The one place where the proxy's own refusals become responses.
//!
//! [`ProxyError`] names each refusal of a request that is not for the identity endpoints (those
//! answer through [`crate::identity::error::OAuthError`]); [`ProxyError::into_response`] gives
//! it a status and a JSON body `{"error", "error_description"}` with `Cache-Control: no-store`.
//! Descriptions are fixed text: nothing from the request is echoed back.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::authn::AuthnError;
use crate::routing::{HostError, PathError};

/// Longest request-target (path and query) accepted, in bytes; longer ones are a 414. Request
/// heads over the listener's header limit are refused before this with 431.
pub const MAX_REQUEST_TARGET: usize = 8 * 1024;

/// Methods a route may receive, for the `Allow` header of a refused `CONNECT`.
pub const ROUTE_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Why the proxy refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// No route serves this host and path (404 `route_not_found`).
    #[error("no route serves this host and path")]
    RouteNotFound,
    /// The request names no host (400 `invalid_host`).
    #[error("the request has no Host header")]
    MissingHost,
    /// More than one `Host` header, or `Host` and `:authority` naming different hosts.
    #[error("the request names more than one host")]
    ConflictingHost,
    /// The host is not a valid host name (400 `invalid_host`).
    #[error("the request's host is invalid")]
    InvalidHost(#[source] HostError),
    /// `CONNECT` is never proxied (405 with `Allow`).
    #[error("CONNECT is not supported")]
    ConnectNotAllowed,
    /// The request-target is longer than [`MAX_REQUEST_TARGET`] (414).
    #[error("the request-target is too long")]
    UriTooLong,
    /// The path has no canonical form (400 `invalid_request`).
    #[error("the request path is refused")]
    BadPath(#[source] PathError),
    /// A TLS request for a host the connection's certificate was not chosen for (421).
    #[error("the request's host does not match the TLS server name")]
    Misdirected,
    /// A path under `/.portcullis/` or `/.pomerium/` that is not served (yet) (404).
    #[error("this endpoint is not available")]
    EndpointNotAvailable,
    /// No or a bad credential (401 + `WWW-Authenticate: Bearer`, RFC 6750); a repeated
    /// credential header is a 400 `invalid_request`.
    #[error("authentication failed")]
    Unauthenticated {
        /// Why.
        error: AuthnError,
        /// The `realm`: the route's host.
        realm: String,
    },
    /// Authenticated, but the policy does not allow the request (403 `access_denied`).
    #[error("access denied")]
    AccessDenied,
    /// Authenticated and allowed by policy, but the token's scopes do not name the route (403 +
    /// `WWW-Authenticate: Bearer error="insufficient_scope"`).
    #[error("insufficient scope")]
    InsufficientScope {
        /// The `realm`: the route's host.
        realm: String,
        /// The scope that would reach the route.
        scope: String,
    },
    /// The route has no ready upstream (503).
    #[error("no upstream is ready")]
    NoUpstream,
    /// The upstream could not be reached or failed before answering (502).
    #[error("the upstream could not be reached")]
    UpstreamUnreachable,
    /// The upstream did not answer within the route's timeout (504).
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
}

impl ProxyError {
    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RouteNotFound => "route_not_found",
            Self::MissingHost | Self::ConflictingHost | Self::InvalidHost(_) => "invalid_host",
            Self::ConnectNotAllowed => "method_not_allowed",
            Self::BadPath(_) => "invalid_request",
            Self::UriTooLong => "uri_too_long",
            Self::Misdirected => "misdirected_request",
            Self::EndpointNotAvailable => "not_found",
            Self::Unauthenticated {
                error: AuthnError::Repeated,
                ..
            } => "invalid_request",
            Self::Unauthenticated { .. } => "invalid_token",
            Self::AccessDenied => "access_denied",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::NoUpstream => "no_upstream",
            Self::UpstreamUnreachable => "bad_gateway",
            Self::UpstreamTimeout => "gateway_timeout",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MissingHost | Self::ConflictingHost | Self::InvalidHost(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::ConnectNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Self::EndpointNotAvailable => StatusCode::NOT_FOUND,
            Self::Unauthenticated {
                error: AuthnError::Repeated,
                ..
            } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::AccessDenied | Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::NoUpstream => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::RouteNotFound => "no route serves this host and path",
            Self::MissingHost => "the request has no Host header",
            Self::ConflictingHost => "the request names more than one host",
            Self::InvalidHost(_) => "the request's host is not a valid host name",
            Self::ConnectNotAllowed => "CONNECT is not supported",
            Self::BadPath(problem) => {
                return Cow::Owned(format!("the request path is refused: {problem}"));
            }
            Self::UriTooLong => "the request-target is too long",
            Self::Misdirected => "the request's host is not served on this TLS connection",
            Self::EndpointNotAvailable => "this endpoint is not available",
            Self::Unauthenticated { error, .. } => error.description(),
            Self::AccessDenied => "access to this route is not allowed",
            Self::InsufficientScope { .. } => "the access token's scopes do not include this route",
            Self::NoUpstream => "no upstream is ready for this route",
            Self::UpstreamUnreachable => "the upstream could not be reached",
            Self::UpstreamTimeout => "the upstream did not answer in time",
        })
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3), for 401s and scope refusals.
    fn challenge(&self) -> Option<String> {
        let (realm, extra) = match self {
            Self::Unauthenticated { realm, .. } => (realm, String::new()),
            Self::InsufficientScope { realm, scope } => (realm, format!(", scope=\"{scope}\"")),
            _ => return None,
        };
        Some(format!(
            "Bearer realm=\"{realm}\", error=\"{}\", error_description=\"{}\"{extra}",
            self.code(),
            self.description()
        ))
    }

    /// The response: status, JSON body, `Cache-Control: no-store`, and `Allow` for `CONNECT`.
    pub fn into_response(&self) -> Response<Bytes> {
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.description(),
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(Bytes::from(bytes));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if *self == Self::ConnectNotAllowed {
            headers.insert(header::ALLOW, HeaderValue::from_static(ROUTE_METHODS));
        }
        if let Some(challenge) = self.challenge()
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_refusal_is_json_no_store() {
        for (error, status, code) in [
            (ProxyError::RouteNotFound, 404, "route_not_found"),
            (ProxyError::MissingHost, 400, "invalid_host"),
            (ProxyError::ConflictingHost, 400, "invalid_host"),
            (
                ProxyError::InvalidHost(HostError::UserInfo),
                400,
                "invalid_host",
            ),
            (ProxyError::ConnectNotAllowed, 405, "method_not_allowed"),
            (
                ProxyError::BadPath(PathError::DotSegment),
                400,
                "invalid_request",
            ),
            (ProxyError::Misdirected, 421, "misdirected_request"),
            (ProxyError::UriTooLong, 414, "uri_too_long"),
            (ProxyError::EndpointNotAvailable, 404, "not_found"),
            (
                ProxyError::Unauthenticated {
                    error: AuthnError::Missing,
                    realm: "web.example.com".into(),
                },
                401,
                "invalid_token",
            ),
            (
                ProxyError::Unauthenticated {
                    error: AuthnError::Repeated,
                    realm: "web.example.com".into(),
                },
                400,
                "invalid_request",
            ),
            (ProxyError::AccessDenied, 403, "access_denied"),
            (
                ProxyError::InsufficientScope {
                    realm: "web.example.com".into(),
                    scope: "route:team-a/web".into(),
                },
                403,
                "insufficient_scope",
            ),
            (ProxyError::NoUpstream, 503, "no_upstream"),
            (ProxyError::UpstreamUnreachable, 502, "bad_gateway"),
            (ProxyError::UpstreamTimeout, 504, "gateway_timeout"),
        ] {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()["cache-control"], "no-store");
            assert_eq!(response.headers()["content-type"], "application/json");
            let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(body["error"], code);
            assert_eq!(body["error_description"], *error.description());
            assert_eq!(body.as_object().unwrap().len(), 2);
        }
        assert_eq!(
            ProxyError::ConnectNotAllowed.into_response().headers()["allow"],
            ROUTE_METHODS
        );
        let missing = ProxyError::Unauthenticated {
            error: AuthnError::Missing,
            realm: "web.example.com".into(),
        };
        assert_eq!(
            missing.into_response().headers()["www-authenticate"],
            "Bearer realm=\"web.example.com\", error=\"invalid_token\", \
             error_description=\"no access token was sent\""
        );
        let scope = ProxyError::InsufficientScope {
            realm: "web.example.com".into(),
            scope: "route:team-a/web".into(),
        };
        assert!(
            scope.into_response().headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .ends_with("scope=\"route:team-a/web\"")
        );
    }
}
