//! The one place where the proxy's own refusals become responses.
//!
//! [`ProxyError`] names each refusal of a request that is not for the identity endpoints (those
//! answer through [`crate::identity::error::OAuthError`]); [`ProxyError::into_response`] gives
//! it a status and a JSON body `{"error", "error_description"}` with `Cache-Control: no-store`.
//! Descriptions are fixed text: nothing from the request is echoed back.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::routing::HostError;

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
}

impl ProxyError {
    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RouteNotFound => "route_not_found",
            Self::MissingHost | Self::ConflictingHost | Self::InvalidHost(_) => "invalid_host",
            Self::ConnectNotAllowed => "method_not_allowed",
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
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> &'static str {
        match self {
            Self::RouteNotFound => "no route serves this host and path",
            Self::MissingHost => "the request has no Host header",
            Self::ConflictingHost => "the request names more than one host",
            Self::InvalidHost(_) => "the request's host is not a valid host name",
            Self::ConnectNotAllowed => "CONNECT is not supported",
        }
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
        ] {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()["cache-control"], "no-store");
            assert_eq!(response.headers()["content-type"], "application/json");
            let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(body["error"], code);
            assert_eq!(body["error_description"], error.description());
            assert_eq!(body.as_object().unwrap().len(), 2);
        }
        assert_eq!(
            ProxyError::ConnectNotAllowed.into_response().headers()["allow"],
            ROUTE_METHODS
        );
    }
}
