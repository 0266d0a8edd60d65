//! OAuth 2.0 errors of the identity endpoints and the one place they become HTTP responses.
//!
//! [`OAuthError`] mirrors the error codes of RFC 6749 §5.2 plus the HTTP-level refusals the token
//! endpoint needs (wrong method, oversize body, wrong media type, rate limiting, internal failure).
//! [`OAuthError::into_response`] maps each to its status, headers and the RFC-shaped JSON body
//! `{"error", "error_description"}`; [`json_response`] gives successful answers the same
//! no-store headers. The token endpoint handler and the parsing in [`super::token`] produce these
//! errors; nothing else turns them into responses.
//!
//! Every description is fixed text (`&'static str`, or a parameter name from a fixed list), so a
//! client secret, a token or an internal error message cannot reach a response body by mistake.
//!
//! Decisions:
//! - `invalid_client` is always `401` with `WWW-Authenticate: Basic realm="portcullis"`, whichever
//!   way the client authenticated. RFC 6749 §5.2 requires 401 when the `Authorization` header was
//!   used and allows it otherwise; answering the same way for every method is consistent and
//!   tells a caller nothing about which check failed.
//! - A body in the wrong media type is `415` (`invalid_request`): RFC 6749 §3.2 and §4.4.2 require
//!   `application/x-www-form-urlencoded`; 415 says exactly that, and OAuth clients read the JSON
//!   error body of any 4xx.
//! - Rate limiting answers `429` with `Retry-After` and the code `temporarily_unavailable`, and an
//!   internal failure `500` with `server_error` (both codes from RFC 6749 §4.1.2.1).
//! - A missing prerequisite (no signing keys yet) answers `503` with `temporarily_unavailable`
//!   and `Retry-After`: the request was fine and may succeed shortly.
//! - HTTP-level refusals that RFC 6749 has no code for (unknown path `404`, wrong method `405`,
//!   body too slow `408`, too large `413`, wrong media type `415`) use `invalid_request`, so every
//!   answer of the authenticate host has the same JSON shape.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

/// The `WWW-Authenticate` challenge sent with `invalid_client`.
pub const BASIC_CHALLENGE: &str = r#"Basic realm="portcullis""#;

/// The media type token requests must use.
pub const FORM_MEDIA_TYPE: &str = "application/x-www-form-urlencoded";

/// An OAuth 2.0 error answered by an identity endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", self.code(), self.description())]
pub enum OAuthError {
    /// `invalid_request` (400): the request is malformed.
    InvalidRequest(&'static str),
    /// `invalid_request` (400): a parameter appears more than once (RFC 6749 §3.2).
    RepeatedParameter(&'static str),
    /// `invalid_request` (400): a required parameter is missing.
    MissingParameter(&'static str),
    /// `invalid_request` (400): the client used more than one authentication method
    /// (RFC 6749 §2.3).
    MultipleClientAuth,
    /// `invalid_client` (401): client authentication is malformed or missing; the text says how.
    InvalidClient(&'static str),
    /// `invalid_client` (401): unknown client, wrong secret or expired secret. One answer for all
    /// three, so a caller cannot tell which.
    ClientAuthenticationFailed,
    /// `invalid_grant` (400).
    InvalidGrant(&'static str),
    /// `unauthorized_client` (400): this client may not use this grant type.
    UnauthorizedClient(&'static str),
    /// `unsupported_grant_type` (400).
    UnsupportedGrantType,
    /// `invalid_scope` (400).
    InvalidScope(&'static str),
    /// `invalid_token` (401 with a `Bearer` challenge, RFC 6750 §3.1): the presented token is
    /// not accepted (Pomerium's `POST /api/v1/token`).
    InvalidToken(&'static str),
    /// `invalid_target` (400, RFC 8693 §2.2.2): an `audience` or `resource` this server issues
    /// no token for.
    InvalidTarget(&'static str),
    /// 405 with `Allow`: the endpoint does not take this method.
    MethodNotAllowed {
        /// Value of the `Allow` header, e.g. `POST`.
        allow: &'static str,
    },
    /// 413: the body is longer than the endpoint accepts.
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 415: the body is not `application/x-www-form-urlencoded` (UTF-8).
    UnsupportedMediaType,
    /// 429 with `Retry-After`: too many failed authentications from this source for this client.
    TooManyRequests {
        /// Seconds until the next attempt is accepted.
        retry_after_secs: u64,
    },
    /// 500 with a fixed description; the cause is logged by whoever produced this.
    ServerError,
    /// 404: no identity endpoint is served at this path.
    NotFound,
    /// 408: the request body did not arrive in time.
    RequestTimeout,
    /// 503 with `Retry-After`: the endpoint cannot answer yet; the text says why.
    TemporarilyUnavailable(&'static str),
}

/// `Retry-After` of [`OAuthError::TemporarilyUnavailable`], in seconds.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

impl OAuthError {
    /// The `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_)
            | Self::RepeatedParameter(_)
            | Self::MissingParameter(_)
            | Self::MultipleClientAuth
            | Self::MethodNotAllowed { .. }
            | Self::PayloadTooLarge { .. }
            | Self::UnsupportedMediaType
            | Self::NotFound
            | Self::RequestTimeout => "invalid_request",
            Self::InvalidClient(_) | Self::ClientAuthenticationFailed => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::InvalidToken(_) => "invalid_token",
            Self::TooManyRequests { .. } | Self::TemporarilyUnavailable(_) => {
                "temporarily_unavailable"
            }
            Self::ServerError => "server_error",
        }
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidClient(_) | Self::ClientAuthenticationFailed | Self::InvalidToken(_) => {
                StatusCode::UNAUTHORIZED
            }
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::TemporarilyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidRequest(_)
            | Self::RepeatedParameter(_)
            | Self::MissingParameter(_)
            | Self::MultipleClientAuth
            | Self::InvalidGrant(_)
            | Self::UnauthorizedClient(_)
            | Self::UnsupportedGrantType
            | Self::InvalidScope(_)
            | Self::InvalidTarget(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The `error_description`: for people, without secrets or internals.
    pub fn description(&self) -> Cow<'static, str> {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d)
            | Self::InvalidToken(d)
            | Self::TemporarilyUnavailable(d) => Cow::Borrowed(d),
            Self::RepeatedParameter(name) => Cow::Owned(format!(
                "the {name} parameter must not appear more than once"
            )),
            Self::MissingParameter(name) => Cow::Owned(format!("the {name} parameter is required")),
            Self::MultipleClientAuth => {
                Cow::Borrowed("the request uses more than one client authentication method")
            }
            Self::ClientAuthenticationFailed => Cow::Borrowed("client authentication failed"),
            Self::UnsupportedGrantType => Cow::Borrowed(
                "this grant_type is not supported here; the discovery document lists grant_types_supported",
            ),
            Self::MethodNotAllowed { allow } => {
                Cow::Owned(format!("this endpoint accepts only {allow} requests"))
            }
            Self::PayloadTooLarge { limit } => Cow::Owned(format!(
                "the request body is larger than the limit of {limit} bytes"
            )),
            Self::UnsupportedMediaType => Cow::Owned(format!(
                "the request body must be {FORM_MEDIA_TYPE} in UTF-8"
            )),
            Self::TooManyRequests { .. } => Cow::Borrowed(
                "too many failed authentications for this client from this address; retry later",
            ),
            Self::ServerError => Cow::Borrowed("the server could not complete the request"),
            Self::NotFound => Cow::Borrowed("no identity endpoint is served at this path"),
            Self::RequestTimeout => {
                Cow::Borrowed("the request body did not arrive in time; send it without pauses")
            }
        }
    }

    /// The HTTP response: status, `Content-Type: application/json`, `Cache-Control: no-store`,
    /// `Pragma: no-cache`, the challenge or `Allow`/`Retry-After`/`Accept-Post`/`Connection:
    /// close` where they belong,
    /// and `{"error", "error_description"}`.
    pub fn into_response(&self) -> Response<Bytes> {
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.description(),
        });
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        match self {
            Self::InvalidClient(_) | Self::ClientAuthenticationFailed => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(BASIC_CHALLENGE),
                );
            }
            Self::InvalidToken(description) => {
                let challenge = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    description.replace(['"', '\\'], "'")
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Self::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            Self::UnsupportedMediaType => {
                headers.insert(
                    http::HeaderName::from_static("accept-post"),
                    HeaderValue::from_static(FORM_MEDIA_TYPE),
                );
            }
            Self::TooManyRequests { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::TemporarilyUnavailable(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS),
                );
            }
            Self::RequestTimeout => {
                // The rest of a late body may still be in flight; the connection cannot be reused.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// A JSON response with the headers every OAuth endpoint answer carries (RFC 6749 §5.1):
/// `Content-Type: application/json`, `Cache-Control: no-store`, `Pragma: no-cache`. Used for
/// errors ([`OAuthError::into_response`]) and successful token responses alike.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Bytes> {
    // Serializing a `Value` only fails for non-string map keys, which `Value` cannot hold.
    let bytes =
        serde_json::to_vec(body).unwrap_or_else(|_| br#"{"error":"server_error"}"#.to_vec());
    let mut response = Response::new(Bytes::from(bytes));
    *response.status_mut() = status;
    set_no_store_json(response.headers_mut());
    response
}

fn set_no_store_json(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &Response<Bytes>) -> serde_json::Map<String, serde_json::Value> {
        let value: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        value.as_object().unwrap().clone()
    }

    fn header<'a>(response: &'a Response<Bytes>, name: &str) -> Option<&'a str> {
        response.headers().get(name).map(|v| v.to_str().unwrap())
    }

    fn all_variants() -> Vec<OAuthError> {
        vec![
            OAuthError::InvalidRequest("malformed"),
            OAuthError::RepeatedParameter("scope"),
            OAuthError::MissingParameter("grant_type"),
            OAuthError::MultipleClientAuth,
            OAuthError::InvalidClient("the Authorization header is not valid Basic credentials"),
            OAuthError::ClientAuthenticationFailed,
            OAuthError::InvalidGrant("expired"),
            OAuthError::UnauthorizedClient("not for this client"),
            OAuthError::UnsupportedGrantType,
            OAuthError::InvalidScope("outside"),
            OAuthError::MethodNotAllowed { allow: "POST" },
            OAuthError::PayloadTooLarge { limit: 16384 },
            OAuthError::UnsupportedMediaType,
            OAuthError::TooManyRequests {
                retry_after_secs: 6,
            },
            OAuthError::ServerError,
            OAuthError::NotFound,
            OAuthError::RequestTimeout,
            OAuthError::TemporarilyUnavailable("no signing key yet"),
        ]
    }

    #[test]
    fn every_error_is_json_no_store_with_exactly_error_and_description() {
        for error in all_variants() {
            let response = error.into_response();
            assert_eq!(response.status(), error.status(), "{error}");
            assert_eq!(header(&response, "content-type"), Some("application/json"));
            assert_eq!(header(&response, "cache-control"), Some("no-store"));
            assert_eq!(header(&response, "pragma"), Some("no-cache"));
            let map = body(&response);
            let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["error", "error_description"], "{error}");
            assert_eq!(map["error"], error.code());
            assert_eq!(map["error_description"], error.description().as_ref());
            assert!(!error.description().is_empty());
        }
    }

    #[test]
    fn invalid_client_is_401_with_basic_challenge() {
        for error in [
            OAuthError::ClientAuthenticationFailed,
            OAuthError::InvalidClient("client authentication is required"),
        ] {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                header(&response, "www-authenticate"),
                Some(r#"Basic realm="portcullis""#)
            );
            assert_eq!(body(&response)["error"], "invalid_client");
        }
        // No other error carries a challenge.
        for error in all_variants() {
            if error.code() != "invalid_client" {
                assert!(
                    error
                        .into_response()
                        .headers()
                        .get("www-authenticate")
                        .is_none()
                );
            }
        }
    }

    #[test]
    fn status_codes_and_codes_per_variant() {
        let cases = [
            (
                OAuthError::RepeatedParameter("scope"),
                400,
                "invalid_request",
            ),
            (
                OAuthError::MissingParameter("grant_type"),
                400,
                "invalid_request",
            ),
            (OAuthError::MultipleClientAuth, 400, "invalid_request"),
            (OAuthError::InvalidGrant("x"), 400, "invalid_grant"),
            (
                OAuthError::UnauthorizedClient("x"),
                400,
                "unauthorized_client",
            ),
            (
                OAuthError::UnsupportedGrantType,
                400,
                "unsupported_grant_type",
            ),
            (OAuthError::InvalidScope("x"), 400, "invalid_scope"),
            (
                OAuthError::MethodNotAllowed { allow: "POST" },
                405,
                "invalid_request",
            ),
            (
                OAuthError::PayloadTooLarge { limit: 1 },
                413,
                "invalid_request",
            ),
            (OAuthError::UnsupportedMediaType, 415, "invalid_request"),
            (
                OAuthError::TooManyRequests {
                    retry_after_secs: 1,
                },
                429,
                "temporarily_unavailable",
            ),
            (OAuthError::ServerError, 500, "server_error"),
            (OAuthError::NotFound, 404, "invalid_request"),
            (OAuthError::RequestTimeout, 408, "invalid_request"),
            (
                OAuthError::TemporarilyUnavailable("x"),
                503,
                "temporarily_unavailable",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn method_not_allowed_names_the_allowed_method() {
        let response = OAuthError::MethodNotAllowed { allow: "POST" }.into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&response, "allow"), Some("POST"));
        assert_eq!(
            body(&response)["error_description"],
            "this endpoint accepts only POST requests"
        );
    }

    #[test]
    fn too_many_requests_carries_retry_after() {
        let response = OAuthError::TooManyRequests {
            retry_after_secs: 42,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&response, "retry-after"), Some("42"));
    }

    #[test]
    fn unavailable_carries_retry_after_and_timeout_closes() {
        let response = OAuthError::TemporarilyUnavailable("no signing key yet").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&response, "retry-after"), Some("5"));
        assert_eq!(body(&response)["error_description"], "no signing key yet");
        let response = OAuthError::RequestTimeout.into_response();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(header(&response, "connection"), Some("close"));
    }

    #[test]
    fn unsupported_media_type_names_the_form_type() {
        let response = OAuthError::UnsupportedMediaType.into_response();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            header(&response, "accept-post"),
            Some("application/x-www-form-urlencoded")
        );
    }

    #[test]
    fn server_error_has_a_fixed_description() {
        let response = OAuthError::ServerError.into_response();
        assert_eq!(
            body(&response)["error_description"],
            "the server could not complete the request"
        );
    }

    #[test]
    fn repeated_and_missing_parameters_are_named() {
        assert_eq!(
            OAuthError::RepeatedParameter("grant_type").description(),
            "the grant_type parameter must not appear more than once"
        );
        assert_eq!(
            OAuthError::MissingParameter("grant_type").to_string(),
            "invalid_request: the grant_type parameter is required"
        );
    }

    #[test]
    fn success_responses_are_no_store_json() {
        let response = json_response(
            StatusCode::OK,
            &serde_json::json!({"access_token": "t", "token_type": "Bearer"}),
        );
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "cache-control"), Some("no-store"));
        assert_eq!(header(&response, "pragma"), Some("no-cache"));
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        assert_eq!(
            response.body().as_ref(),
            br#"{"access_token":"t","token_type":"Bearer"}"#
        );
    }
}
