//! The pure logic of the OAuth 2.0 token endpoint (`POST /oauth2/token`).
//!
//! Owns: parsing a token request ([`parse_token_request`]: method, media type, body limit, strict
//! form decoding, exactly one client authentication method), client secrets and their SHA-256
//! digests ([`ClientSecret`], [`SecretDigest`], [`verify_secret`], [`generate_secret`]), scope
//! narrowing ([`grant_scopes`]), the claims and JSON of an issued access token
//! ([`access_token_claims`], [`token_response`]) and the per-source, per-client limit on failed
//! authentications ([`FailureLimiter`]). Time is always a parameter (`now`, Unix seconds).
//!
//! Called by the token endpoint handler, which reads the body (at most
//! [`MAX_TOKEN_REQUEST_BYTES`]), looks the client up in the live table, signs the claims with the
//! current key (header `typ` = [`ACCESS_TOKEN_TYP`]) and answers with
//! [`super::error::json_response`] or [`OAuthError::into_response`]; and by the credential
//! controller, which generates secrets and stores their digests.
//!
//! Client secrets and assertions live only in [`ClientSecret`] and [`ClientAssertion`], whose
//! `Debug` and `Display` print `[redacted]`; errors carry fixed text only.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::error::{FORM_MEDIA_TYPE, OAuthError};
use crate::api::{RESERVED_CLAIM_NAMES, RESERVED_CLAIM_PREFIXES};

/// Largest token request body accepted; longer bodies get `413`. A client-credentials request
/// is well under 1 KiB; 16 KiB leaves room for JWT client assertions.
pub const MAX_TOKEN_REQUEST_BYTES: usize = 16 * 1024;

/// The JOSE header `typ` of access tokens (RFC 9068 §2.1); the signer sets it.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Prefix of every generated client secret, so secret scanners can find leaked ones.
pub const SECRET_PREFIX: &str = "pcs_";

/// Length of a generated client secret: the prefix and 43 base64url characters.
pub const SECRET_LEN: usize = SECRET_PREFIX.len() + 43;

/// `client_assertion_type` of JWT client assertions (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest `client_id` accepted; longer ones are refused before any lookup.
pub const MAX_CLIENT_ID_BYTES: usize = 256;

/// Most distinct scopes one request may ask for (a credential lists at most 32).
pub const MAX_REQUESTED_SCOPES: usize = 32;

/// Base64 for Basic credentials: the standard alphabet, with or without padding.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A string credential whose `Debug` and `Display` print `[redacted]`; the value is reachable
/// only through `expose`. There is deliberately no `PartialEq`: secrets are compared as digests,
/// in constant time.
macro_rules! redacted_string {
    ($(#[$doc:meta])* $name:ident, $expose_doc:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(String);

        impl $name {
            /// Wraps the value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            #[doc = $expose_doc]
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("[redacted]")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("[redacted]")
            }
        }
    };
}

redacted_string!(
    /// A client secret as presented or generated (redacted in `Debug` and `Display`).
    ClientSecret,
    "The secret itself, for hashing or writing to the workload's Secret; never for logs."
);

redacted_string!(
    /// A JWT client assertion (RFC 7523), a bearer credential like a secret (redacted in
    /// `Debug` and `Display`).
    ClientAssertion,
    "The compact JWT, for verification only."
);

/// The `grant_type` values Portcullis knows (DESIGN.md §4). Only
/// [`GrantType::ClientCredentials`] is served today; the others are answered
/// `unsupported_grant_type` until their flows exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    /// `client_credentials` (RFC 6749 §4.4).
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693).
    TokenExchange,
    /// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628).
    DeviceCode,
    /// `refresh_token` (RFC 6749 §6), for user sessions.
    RefreshToken,
}

impl GrantType {
    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
            Self::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
            Self::RefreshToken => "refresh_token",
        }
    }

    /// The grant type a wire value names (exact, case-sensitive).
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::ClientCredentials,
            Self::TokenExchange,
            Self::DeviceCode,
            Self::RefreshToken,
        ]
        .into_iter()
        .find(|g| g.as_str() == value)
    }
}

/// The grant of an accepted token request, with its grant-specific parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `client_credentials`: no further parameters.
    ClientCredentials,
    /// Token exchange (RFC 8693): an id_token of the identity provider for a session token.
    TokenExchange(ExchangeRequest),
}

/// `subject_token_type` of an OpenID Connect id_token (RFC 8693 §3).
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// `subject_token_type` / `issued_token_type` of a JWT (RFC 8693 §3).
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `issued_token_type` of an access token (RFC 8693 §3): what a session token is to a route.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The parameters of a token exchange (RFC 8693 §2.1) this server accepts: an id_token of the
/// identity provider as the subject, no actor, no scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRequest {
    /// `subject_token`.
    pub subject_token: SubjectToken,
    /// `issued_token_type` of the answer: [`ACCESS_TOKEN_TYPE`] unless the client asked for
    /// [`JWT_TOKEN_TYPE`].
    pub issued_token_type: &'static str,
    /// `audience` and `resource` values as sent; the endpoint checks them against its issuer.
    pub targets: Vec<String>,
}

/// A presented subject token. Its `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectToken(String);

impl SubjectToken {
    /// Wraps a presented token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token, for verification only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectToken([redacted])")
    }
}

/// How the client authenticated (exactly one method per request, RFC 6749 §2.3).
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_secret_basic`: `Authorization: Basic` with form-encoded id and secret.
    Basic {
        /// The client id.
        id: String,
        /// The secret.
        secret: ClientSecret,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    Post {
        /// The client id.
        id: String,
        /// The secret.
        secret: ClientSecret,
    },
    /// The authentik form: `client_id`, `username` (the same client) and `password` (the
    /// secret) in the body.
    Authentik {
        /// The client id (equal to `username`).
        id: String,
        /// The secret, sent as `password`.
        secret: ClientSecret,
    },
    /// A JWT client assertion (RFC 7523 §2.2), verified by federation, not here.
    Assertion {
        /// `client_id`, when the client sent one.
        id: Option<String>,
        /// The assertion.
        assertion: ClientAssertion,
    },
    /// No client authentication: a token exchange, whose subject token is the credential.
    /// `client_id` as a public client sent it, if it did.
    Public {
        /// `client_id`, when the client sent one.
        id: Option<String>,
    },
}

impl ClientAuth {
    /// The client id the request names, if any (an assertion may carry it only inside).
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::Basic { id, .. } | Self::Post { id, .. } | Self::Authentik { id, .. } => Some(id),
            Self::Assertion { id, .. } | Self::Public { id } => id.as_deref(),
        }
    }

    /// The presented secret, for the three secret-based methods.
    pub fn secret(&self) -> Option<&ClientSecret> {
        match self {
            Self::Basic { secret, .. }
            | Self::Post { secret, .. }
            | Self::Authentik { secret, .. } => Some(secret),
            Self::Assertion { .. } | Self::Public { .. } => None,
        }
    }

    /// A name for logs and metrics.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Basic { .. } => "client_secret_basic",
            Self::Post { .. } => "client_secret_post",
            Self::Authentik { .. } => "authentik",
            Self::Assertion { .. } => "client_assertion",
            Self::Public { .. } => "none",
        }
    }
}

/// A well-formed token request.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The grant and its parameters.
    pub grant: Grant,
    /// The client authentication.
    pub client: ClientAuth,
    /// Requested scopes as sent: distinct, in request order, each a valid RFC 6749 §3.3 token.
    pub scopes: Vec<String>,
}

/// Parses a token request: method, media type, body size, form parameters, the client
/// authentication method and the grant type.
///
/// Checks, in order: `POST` (else 405 with `Allow: POST`); the body limit (413); one
/// `Content-Type` of `application/x-www-form-urlencoded`, whose parameters are ignored because
/// the body is always UTF-8 (WHATWG URL §5; else 415); strict form decoding (`invalid_request`
/// for bad percent-encoding or non-UTF-8, or a parameter this endpoint reads that appears
/// twice; empty values count as absent per RFC 6749 §3.1, unknown parameters are ignored);
/// `grant_type` (`invalid_request` when missing, `unsupported_grant_type` unless
/// `client_credentials` or token exchange); the client authentication; the `scope` syntax
/// (`invalid_scope`). A token exchange (only when `token_exchange`: people can sign in) takes
/// no client authentication and no scope, see [`exchange_request`].
pub fn parse_token_request(
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    token_exchange: bool,
) -> Result<TokenRequest, OAuthError> {
    if method != Method::POST {
        return Err(OAuthError::MethodNotAllowed { allow: "POST" });
    }
    if body.len() > MAX_TOKEN_REQUEST_BYTES {
        return Err(OAuthError::PayloadTooLarge {
            limit: MAX_TOKEN_REQUEST_BYTES,
        });
    }
    check_content_type(headers)?;
    let mut form = Form::parse(body)?;
    let grant = match form.grant_type.as_deref().map(GrantType::parse) {
        None => return Err(OAuthError::MissingParameter("grant_type")),
        Some(Some(GrantType::ClientCredentials)) => Grant::ClientCredentials,
        Some(Some(GrantType::TokenExchange)) if token_exchange => {
            return exchange_request(headers, form);
        }
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
    };
    let client = client_auth(headers, &mut form)?;
    let scopes = parse_scope(form.scope.as_deref())?;
    Ok(TokenRequest {
        grant,
        client,
        scopes,
    })
}

/// The rest of a token exchange request (RFC 8693 §2.1): a `subject_token` of type id_token
/// or jwt; `requested_token_type`, when sent, one this server issues (a session token is an
/// access token and a JWT); no `actor_token` (no delegation); no `scope` (the session carries
/// the subject's identity as it is, never more); and no client authentication — the subject
/// token is the credential, so a secret sent along would be a mistake to point out, not
/// something to check.
fn exchange_request(headers: &HeaderMap, mut form: Form) -> Result<TokenRequest, OAuthError> {
    if headers.contains_key(header::AUTHORIZATION)
        || form.client_secret.is_some()
        || form.password.is_some()
        || form.client_assertion.is_some()
        || form.client_assertion_type.is_some()
    {
        return Err(OAuthError::InvalidRequest(
            "a token exchange takes no client authentication: the subject_token is the credential",
        ));
    }
    if form.actor_token.is_some() || form.actor_token_type.is_some() {
        return Err(OAuthError::InvalidRequest(
            "delegation is not supported: send no actor_token",
        ));
    }
    if form.scope.is_some() {
        return Err(OAuthError::InvalidScope(
            "a token exchange issues the subject's own session; no scope can be requested",
        ));
    }
    let subject_token = form
        .subject_token
        .take()
        .ok_or(OAuthError::MissingParameter("subject_token"))?;
    match form.subject_token_type.as_deref() {
        None => return Err(OAuthError::MissingParameter("subject_token_type")),
        Some(ID_TOKEN_TYPE | JWT_TOKEN_TYPE) => {}
        Some(_) => {
            return Err(OAuthError::InvalidRequest(
                "subject_token_type must be urn:ietf:params:oauth:token-type:id_token or urn:ietf:params:oauth:token-type:jwt: only id_tokens of the identity provider are exchanged",
            ));
        }
    }
    let issued_token_type = match form.requested_token_type.as_deref() {
        None | Some(ACCESS_TOKEN_TYPE) => ACCESS_TOKEN_TYPE,
        Some(JWT_TOKEN_TYPE) => JWT_TOKEN_TYPE,
        Some(_) => {
            return Err(OAuthError::InvalidRequest(
                "requested_token_type must be urn:ietf:params:oauth:token-type:access_token or urn:ietf:params:oauth:token-type:jwt: the exchange issues a session token",
            ));
        }
    };
    let id = form.client_id.take();
    if let Some(id) = &id {
        check_client_id(id)?;
    }
    Ok(TokenRequest {
        grant: Grant::TokenExchange(ExchangeRequest {
            subject_token: SubjectToken::new(subject_token),
            issued_token_type,
            targets: std::mem::take(&mut form.targets),
        }),
        client: ClientAuth::Public { id },
        scopes: Vec::new(),
    })
}

fn check_content_type(headers: &HeaderMap) -> Result<(), OAuthError> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let value = values.next().ok_or(OAuthError::UnsupportedMediaType)?;
    if values.next().is_some() {
        return Err(OAuthError::InvalidRequest(
            "the request has more than one Content-Type header",
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| OAuthError::UnsupportedMediaType)?;
    let essence = text.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case(FORM_MEDIA_TYPE) {
        Ok(())
    } else {
        Err(OAuthError::UnsupportedMediaType)
    }
}

/// The body parameters the token endpoint reads. Holds secrets as plain strings, so it has no
/// `Debug` and never leaves this module.
#[derive(Default)]
struct Form {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    username: Option<String>,
    password: Option<String>,
    client_assertion: Option<String>,
    client_assertion_type: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    requested_token_type: Option<String>,
    actor_token: Option<String>,
    actor_token_type: Option<String>,
    /// `audience` and `resource` (RFC 8693 §2.1: each may appear more than once).
    targets: Vec<String>,
}

impl Form {
    fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut form = Self::default();
        for pair in form_pairs(body) {
            let (name, value) = pair?;
            if matches!(name.as_str(), "audience" | "resource") {
                if !value.is_empty() {
                    form.targets.push(value);
                }
                continue;
            }
            let Some((name, slot)) = form.slot(&name) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            if slot.is_some() {
                return Err(OAuthError::RepeatedParameter(name));
            }
            *slot = Some(value);
        }
        Ok(form)
    }

    fn slot(&mut self, name: &str) -> Option<(&'static str, &mut Option<String>)> {
        Some(match name {
            "grant_type" => ("grant_type", &mut self.grant_type),
            "scope" => ("scope", &mut self.scope),
            "client_id" => ("client_id", &mut self.client_id),
            "client_secret" => ("client_secret", &mut self.client_secret),
            "username" => ("username", &mut self.username),
            "password" => ("password", &mut self.password),
            "client_assertion" => ("client_assertion", &mut self.client_assertion),
            "client_assertion_type" => ("client_assertion_type", &mut self.client_assertion_type),
            "subject_token" => ("subject_token", &mut self.subject_token),
            "subject_token_type" => ("subject_token_type", &mut self.subject_token_type),
            "requested_token_type" => ("requested_token_type", &mut self.requested_token_type),
            "actor_token" => ("actor_token", &mut self.actor_token),
            "actor_token_type" => ("actor_token_type", &mut self.actor_token_type),
            _ => return None,
        })
    }
}

/// The decoded `(name, value)` pairs of a form body, in order; a pair that does not decode
/// ([`form_decode`]) is an `invalid_request`.
fn form_pairs(body: &[u8]) -> impl Iterator<Item = Result<(String, String), OAuthError>> + '_ {
    const MALFORMED: OAuthError = OAuthError::InvalidRequest(
        "the request body is not valid application/x-www-form-urlencoded UTF-8",
    );
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut halves = pair.splitn(2, |b| *b == b'=');
            let name = form_decode(halves.next().unwrap_or_default()).ok_or(MALFORMED)?;
            let value = form_decode(halves.next().unwrap_or_default()).ok_or(MALFORMED)?;
            Ok((name, value))
        })
}

/// The one non-empty `name` field of a form request (Pomerium's `POST /api/v1/token` reads
/// `id_token` this way), held to the token endpoint's rules: one `Content-Type` of
/// `application/x-www-form-urlencoded` (415), strict decoding, the field at most once, and
/// present.
pub fn single_form_field(
    headers: &HeaderMap,
    body: &[u8],
    name: &'static str,
) -> Result<String, OAuthError> {
    check_content_type(headers)?;
    let mut found = None;
    for pair in form_pairs(body) {
        let (field, value) = pair?;
        if field != name || value.is_empty() {
            continue;
        }
        if found.is_some() {
            return Err(OAuthError::RepeatedParameter(name));
        }
        found = Some(value);
    }
    found.ok_or(OAuthError::MissingParameter(name))
}

/// Decodes one `application/x-www-form-urlencoded` name or value: `+` is a space, `%XX` a
/// byte. Unlike lenient parsers, a `%` without two hex digits or a result that is not UTF-8 is
/// an error.
fn form_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(byte) = bytes.next() {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let high = hex_digit(bytes.next()?)?;
                let low = hex_digit(bytes.next()?)?;
                out.push((high << 4) | low);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn client_auth(headers: &HeaderMap, form: &mut Form) -> Result<ClientAuth, OAuthError> {
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    let header = authorization.next();
    if authorization.next().is_some() {
        return Err(OAuthError::InvalidRequest(
            "the request has more than one Authorization header",
        ));
    }
    let assertion = form.client_assertion.is_some() || form.client_assertion_type.is_some();
    let methods = [
        header.is_some(),
        form.client_secret.is_some(),
        form.password.is_some(),
        assertion,
    ];
    if methods.into_iter().filter(|used| *used).count() > 1 {
        return Err(OAuthError::MultipleClientAuth);
    }

    if let Some(value) = header {
        let (id, secret) = basic_credentials(value)?;
        // Some clients repeat the client_id in the body; it must then name the same client.
        if form
            .client_id
            .as_ref()
            .is_some_and(|body_id| *body_id != id)
        {
            return Err(OAuthError::InvalidClient(
                "the client_id in the body differs from the one in the Authorization header",
            ));
        }
        return Ok(ClientAuth::Basic { id, secret });
    }
    if let Some(secret) = form.client_secret.take() {
        let id = form.client_id.take().ok_or(OAuthError::InvalidClient(
            "client_secret must be sent with client_id",
        ))?;
        check_client_id(&id)?;
        return Ok(ClientAuth::Post {
            id,
            secret: ClientSecret::new(secret),
        });
    }
    if let Some(password) = form.password.take() {
        let (Some(id), Some(username)) = (form.client_id.take(), form.username.take()) else {
            return Err(OAuthError::InvalidClient(
                "password must be sent with client_id and username",
            ));
        };
        if username != id {
            return Err(OAuthError::InvalidClient(
                "username and client_id must name the same client",
            ));
        }
        check_client_id(&id)?;
        return Ok(ClientAuth::Authentik {
            id,
            secret: ClientSecret::new(password),
        });
    }
    if assertion {
        let (Some(kind), Some(jwt)) = (
            form.client_assertion_type.take(),
            form.client_assertion.take(),
        ) else {
            return Err(OAuthError::InvalidRequest(
                "client_assertion and client_assertion_type must be sent together",
            ));
        };
        if kind != JWT_BEARER_ASSERTION_TYPE {
            return Err(OAuthError::InvalidClient(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
        }
        let id = form.client_id.take();
        if let Some(id) = &id {
            check_client_id(id)?;
        }
        return Ok(ClientAuth::Assertion {
            id,
            assertion: ClientAssertion::new(jwt),
        });
    }
    Err(OAuthError::InvalidClient(
        "client authentication is required",
    ))
}

/// Reads `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1):
/// the two halves are split at the first colon and each is form-decoded. Generated secrets use
/// only base64url characters, which decode to themselves, so clients that skip the encoding
/// (`curl -u`) work too.
fn basic_credentials(value: &HeaderValue) -> Result<(String, ClientSecret), OAuthError> {
    let malformed =
        OAuthError::InvalidClient("the Authorization header is not valid Basic credentials");
    let text = value.to_str().map_err(|_| malformed.clone())?;
    let (scheme, encoded) = text.trim().split_once(' ').ok_or(malformed.clone())?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::InvalidClient(
            "the token endpoint accepts only Basic client credentials in the Authorization header",
        ));
    }
    let decoded = BASIC_BASE64
        .decode(encoded.trim())
        .map_err(|_| OAuthError::InvalidClient("the Basic credentials are not valid base64"))?;
    let colon = decoded
        .iter()
        .position(|b| *b == b':')
        .ok_or(OAuthError::InvalidClient(
            "the Basic credentials have no colon between client_id and secret",
        ))?;
    let (raw_id, rest) = decoded.split_at(colon);
    let raw_secret = rest.get(1..).unwrap_or_default();
    let not_form = OAuthError::InvalidClient(
        "the Basic credentials are not valid form encoding (RFC 6749 section 2.3.1)",
    );
    let id = form_decode(raw_id).ok_or(not_form.clone())?;
    let secret = form_decode(raw_secret).ok_or(not_form)?;
    if id.is_empty() {
        return Err(OAuthError::InvalidClient(
            "the Basic credentials have an empty client_id",
        ));
    }
    if secret.is_empty() {
        return Err(OAuthError::InvalidClient(
            "the Basic credentials have an empty secret",
        ));
    }
    check_client_id(&id)?;
    Ok((id, ClientSecret::new(secret)))
}

fn check_client_id(id: &str) -> Result<(), OAuthError> {
    if id.len() > MAX_CLIENT_ID_BYTES || id.chars().any(char::is_control) {
        return Err(OAuthError::InvalidClient("the client_id is malformed"));
    }
    Ok(())
}

/// Splits a `scope` parameter into distinct tokens, keeping their order. Tokens are separated
/// by spaces (runs of spaces are tolerated) and may hold only the characters RFC 6749 §3.3
/// allows (`%x21 / %x23-5B / %x5D-7E`); more than [`MAX_REQUESTED_SCOPES`] distinct tokens are
/// refused.
pub fn parse_scope(scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> = Vec::new();
    for token in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|t| !t.is_empty())
    {
        let valid = token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !valid {
            return Err(OAuthError::InvalidScope(
                "a scope contains characters that RFC 6749 section 3.3 does not allow",
            ));
        }
        if scopes.iter().any(|s| s == token) {
            continue;
        }
        if scopes.len() == MAX_REQUESTED_SCOPES {
            return Err(OAuthError::InvalidScope("too many scopes were requested"));
        }
        scopes.push(token.to_owned());
    }
    Ok(scopes)
}

/// The SHA-256 digest of a client secret: what Portcullis stores and compares. Equality is
/// constant-time; `Debug` shows only the first four bytes.
#[derive(Clone, Copy)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// A digest from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, the storage form.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`SecretDigest::to_hex`] output (either case); `None` unless exactly 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let [high, low] = pair else { return None };
            *slot = (hex_digit(*high)? << 4) | hex_digit(*low)?;
        }
        Some(Self(out))
    }
}

impl PartialEq for SecretDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretDigest {}

impl std::fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head: String = self.0.iter().take(4).map(|b| format!("{b:02x}")).collect();
        write!(f, "SecretDigest(sha256:{head}…)")
    }
}

/// The SHA-256 digest of `secret` (its UTF-8 bytes).
pub fn digest(secret: &str) -> SecretDigest {
    SecretDigest(Sha256::digest(secret.as_bytes()).into())
}

/// The previous secret of a credential during a rotation overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousSecret {
    /// Its digest.
    pub digest: SecretDigest,
    /// The first second (Unix time) at which it is refused.
    pub expires: i64,
}

/// What the token endpoint knows about one ServiceAccountCredential: plain domain values,
/// compiled by the controller into the live table.
#[derive(Debug, Clone)]
pub struct CredentialRecord {
    /// Namespace of the credential.
    pub namespace: String,
    /// Name of the credential.
    pub name: String,
    /// Its OAuth `client_id`.
    pub client_id: String,
    /// Digest of the current secret.
    pub current: SecretDigest,
    /// Digest of a secret being issued: recorded before it is written to the workload's Secret
    /// and accepted like the current one, so a workload that reads the new Secret before the
    /// rotation completes is not refused.
    pub pending: Option<SecretDigest>,
    /// Digest and expiry of the previous secret, during a rotation overlap.
    pub previous: Option<PreviousSecret>,
    /// `spec.scopes` (`route:<name>` or `route:<namespace>/<name>`); empty = no narrowing.
    pub scopes: Vec<String>,
    /// Lifetime of issued access tokens.
    pub access_token_ttl: Duration,
    /// `spec.claims`, copied into access tokens (reserved names are never copied).
    pub claims: Map<String, Value>,
}

impl CredentialRecord {
    /// The identity of the credential: `serviceaccount:<namespace>/<name>`.
    pub fn subject(&self) -> String {
        format!("serviceaccount:{}/{}", self.namespace, self.name)
    }

    /// Whether `subject` is [`Self::subject`], without building it (checked on every request
    /// with a cached token).
    pub fn has_subject(&self, subject: &str) -> bool {
        subject
            .strip_prefix("serviceaccount:")
            .and_then(|rest| rest.strip_prefix(self.namespace.as_str()))
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|name| name == self.name)
    }
}

/// The credentials of one table generation, by `client_id`.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    by_client_id: HashMap<String, Arc<CredentialRecord>>,
}

impl Credentials {
    /// Adds a record; a second record with the same `client_id` replaces the first.
    pub fn insert(&mut self, record: CredentialRecord) {
        self.by_client_id
            .insert(record.client_id.clone(), Arc::new(record));
    }

    /// The record of `client_id`.
    pub fn get(&self, client_id: &str) -> Option<&Arc<CredentialRecord>> {
        self.by_client_id.get(client_id)
    }

    /// How many credentials there are.
    pub fn len(&self) -> usize {
        self.by_client_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_client_id.is_empty()
    }
}

/// Whether `presented` is the credential's current (or pending) secret, or its previous secret
/// before that one's expiry. Digests are compared in constant time, and every comparison runs.
pub fn verify_secret(record: &CredentialRecord, presented: &ClientSecret, now: i64) -> bool {
    let presented = digest(presented.expose());
    let mut accepted = record.current.0.ct_eq(&presented.0);
    if let Some(pending) = &record.pending {
        accepted |= pending.0.ct_eq(&presented.0);
    }
    if let Some(previous) = &record.previous {
        let live = Choice::from(u8::from(now < previous.expires));
        accepted |= previous.digest.0.ct_eq(&presented.0) & live;
    }
    accepted.into()
}

/// A fresh client secret: `pcs_` followed by 32 random bytes (256 bits) from the thread-local
/// CSPRNG in unpadded base64url, 47 ASCII characters in all (`^pcs_[A-Za-z0-9_-]{43}$`).
pub fn generate_secret() -> ClientSecret {
    let bytes: [u8; 32] = rand::random();
    let mut secret = String::with_capacity(SECRET_LEN);
    secret.push_str(SECRET_PREFIX);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut secret);
    ClientSecret(secret)
}

/// Authenticates a secret-based client: looks the client up with `find`, refuses it while
/// `limiter` holds too many recent failures for this source and client, verifies the secret,
/// and records the outcome. An unknown client, a wrong secret and an expired previous secret
/// get the same answer ([`OAuthError::ClientAuthenticationFailed`]) after the same work.
/// Assertions are refused until federation is served.
pub fn authenticate<'r>(
    client: &ClientAuth,
    find: impl FnOnce(&str) -> Option<&'r CredentialRecord>,
    limiter: &FailureLimiter,
    source: IpAddr,
    now: i64,
) -> Result<&'r CredentialRecord, OAuthError> {
    let (Some(id), Some(secret)) = (client.client_id(), client.secret()) else {
        return Err(OAuthError::InvalidClient(match client {
            ClientAuth::Public { .. } => "client authentication is required",
            _ => "JWT client assertions are not accepted for this client",
        }));
    };
    limiter.check(source, id, now)?;
    let verified = match find(id) {
        Some(record) => verify_secret(record, secret, now).then_some(record),
        None => {
            // The same hashing as for a known client, so timing does not reveal which ids exist.
            std::hint::black_box(digest(secret.expose()));
            None
        }
    };
    match verified {
        Some(record) => {
            limiter.record_success(source, id);
            Ok(record)
        }
        None => {
            limiter.record_failure(source, id, now);
            Err(OAuthError::ClientAuthenticationFailed)
        }
    }
}

/// The normalized form of a route scope: `route:<name>` names a route in `namespace` and
/// becomes `route:<namespace>/<name>`; `route:<namespace>/<name>` stays. `None` for anything
/// else (the namespace must be a DNS label, the name a DNS subdomain).
pub fn normalize_scope(namespace: &str, scope: &str) -> Option<String> {
    let target = scope.strip_prefix("route:")?;
    let (ns, name) = target.split_once('/').unwrap_or((namespace, target));
    (is_dns_label(ns) && is_dns_subdomain(name)).then(|| format!("route:{ns}/{name}"))
}

/// Whether `label` is a DNS-1123 label (a Kubernetes namespace name).
pub fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `name` is a DNS-1123 subdomain (most Kubernetes object names).
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// The scopes of a token for `record`, given the requested ones (DESIGN.md §3: scopes only
/// narrow).
///
/// Requested scopes are normalized to `route:<namespace>/<name>` (a bare `route:<name>` is in
/// the credential's namespace) and compared normalized. A credential with scopes allows only
/// those; a credential without scopes allows any well-formed route scope, which narrows its
/// token. Anything else is `invalid_scope`. With nothing requested the token gets the
/// credential's scopes (none = no narrowing). The result is normalized and distinct.
pub fn grant_scopes(
    record: &CredentialRecord,
    requested: &[String],
) -> Result<Vec<String>, OAuthError> {
    // A malformed stored scope is kept verbatim: it matches no route, so it still narrows.
    let allowed: Vec<String> = record
        .scopes
        .iter()
        .map(|s| normalize_scope(&record.namespace, s).unwrap_or_else(|| s.clone()))
        .collect();
    let wanted: Vec<String> = if requested.is_empty() {
        allowed.clone()
    } else {
        if requested.len() > MAX_REQUESTED_SCOPES {
            return Err(OAuthError::InvalidScope("too many scopes were requested"));
        }
        let mut wanted = Vec::with_capacity(requested.len());
        for scope in requested {
            let normalized = normalize_scope(&record.namespace, scope).ok_or(
                OAuthError::InvalidScope("scopes must be route:<name> or route:<namespace>/<name>"),
            )?;
            if !allowed.is_empty() && !allowed.contains(&normalized) {
                return Err(OAuthError::InvalidScope(
                    "a requested scope is outside the scopes of this client",
                ));
            }
            wanted.push(normalized);
        }
        wanted
    };
    let mut granted: Vec<String> = Vec::with_capacity(wanted.len());
    for scope in wanted {
        if !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    Ok(granted)
}

/// Whether a claim name is one a credential may not set (compared case-insensitively, as the
/// CRD validation does).
pub fn is_reserved_claim(name: &str) -> bool {
    RESERVED_CLAIM_NAMES
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
        || RESERVED_CLAIM_PREFIXES.iter().any(|prefix| {
            name.as_bytes()
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
        })
}

/// The claims of an RFC 9068 access token for `record`: `iss sub aud exp iat jti client_id`,
/// `scope` (space-separated) when `scopes` is not empty, then the credential's own claims,
/// skipping reserved names so a tenant can never change who or what the token is about.
///
/// `nbf` is left out: it would equal `iat`, RFC 9068 does not list it, and verifiers reject a
/// future `iat` already. `exp` is `now` plus the credential's `access_token_ttl`.
pub fn access_token_claims(
    record: &CredentialRecord,
    scopes: &[String],
    issuer: &str,
    audience: &str,
    now: i64,
    jti: &str,
) -> Value {
    let ttl = i64::try_from(record.access_token_ttl.as_secs()).unwrap_or(i64::MAX);
    let mut claims = Map::new();
    claims.insert("iss".into(), issuer.into());
    claims.insert("sub".into(), record.subject().into());
    claims.insert("aud".into(), audience.into());
    claims.insert("exp".into(), now.saturating_add(ttl).into());
    claims.insert("iat".into(), now.into());
    claims.insert("jti".into(), jti.into());
    claims.insert("client_id".into(), record.client_id.as_str().into());
    if !scopes.is_empty() {
        claims.insert("scope".into(), scopes.join(" ").into());
    }
    for (name, value) in &record.claims {
        if !is_reserved_claim(name) && !claims.contains_key(name) {
            claims.insert(name.clone(), value.clone());
        }
    }
    Value::Object(claims)
}

/// A fresh `jti`: a random UUID (version 4).
pub fn new_jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The successful token response (RFC 6749 §5.1): `access_token`, `token_type: Bearer`,
/// `expires_in`, and `scope` whenever the token is narrowed. The granted scopes are normalized
/// and may differ from the request's text, so they are always returned when present.
pub fn token_response(access_token: &str, expires_in: u64, scopes: &[String]) -> Value {
    let mut body = Map::new();
    body.insert("access_token".into(), access_token.into());
    body.insert("token_type".into(), "Bearer".into());
    body.insert("expires_in".into(), expires_in.into());
    if !scopes.is_empty() {
        body.insert("scope".into(), scopes.join(" ").into());
    }
    Value::Object(body)
}

/// Settings of a [`FailureLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterSettings {
    /// Failures a key may have in a burst; the next attempt is refused (at least 1).
    pub max_failures: u32,
    /// One recorded failure drains away every this many seconds (at least 1).
    pub drain_interval_secs: u32,
    /// Most keys tracked; beyond it the key whose last failure is oldest is forgotten.
    pub max_keys: usize,
}

impl Default for LimiterSettings {
    /// 10 failures in a burst, then one more every 6 s (10 per minute sustained; a full burst is
    /// available again after 60 s without failures); 10 000 keys (about 1 MB).
    fn default() -> Self {
        Self {
            max_failures: 10,
            drain_interval_secs: 6,
            max_keys: 10_000,
        }
    }
}

/// Counts failed client authentications per (source, client) in a leaky bucket and refuses a
/// key with too many recent failures (`429` + `Retry-After`), before its secret is checked.
///
/// The real client is never locked out from elsewhere: the key includes the source address, so
/// failures from other addresses do not count against it. Addresses are grouped the way one
/// party usually holds them: IPv4 (and IPv4-mapped IPv6) per address, IPv6 per /64. Only a
/// client sharing an address (or /64) with the guesser can be slowed, and then only by the
/// drain interval at a time; a success clears its key. Refused attempts are not counted, so
/// ignoring `Retry-After` does not extend a block.
///
/// Memory is bounded by [`LimiterSettings::max_keys`]: keys are 32 bytes (the client id is
/// hashed) and the least recently failed key is forgotten first. Time is a parameter (`now`,
/// Unix seconds). Shared by all requests of a replica; each call holds a lock briefly.
#[derive(Debug)]
pub struct FailureLimiter {
    settings: LimiterSettings,
    state: Mutex<LimiterState>,
}

#[derive(Debug, Default)]
struct LimiterState {
    buckets: HashMap<LimiterKey, Bucket>,
    by_age: BTreeMap<u64, LimiterKey>,
    next_stamp: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// When the bucket is empty again (GCRA's theoretical arrival time), Unix seconds.
    empty_at: i64,
    stamp: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LimiterKey {
    source: [u8; 16],
    client: [u8; 16],
}

impl LimiterKey {
    fn new(source: IpAddr, client_id: &str) -> Self {
        let source = match source {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_ipv6_mapped().octets(),
                None => {
                    let mut octets = v6.octets();
                    octets[8..].fill(0);
                    octets
                }
            },
        };
        let hash = Sha256::digest(client_id.as_bytes());
        let mut client = [0u8; 16];
        client.copy_from_slice(&hash[..16]);
        Self { source, client }
    }
}

impl FailureLimiter {
    /// A limiter with `settings`.
    pub fn new(settings: LimiterSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(LimiterState::default()),
        }
    }

    fn interval(&self) -> i64 {
        i64::from(self.settings.drain_interval_secs.max(1))
    }

    /// Seconds of failures a bucket holds when full.
    fn capacity(&self) -> i64 {
        i64::from(self.settings.max_failures.max(1)) * self.interval()
    }

    fn lock(&self) -> MutexGuard<'_, LimiterState> {
        // The state stays consistent across a panic elsewhere: every update is a few
        // assignments.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Ok` when `client_id` may try to authenticate from `source` now; otherwise
    /// [`OAuthError::TooManyRequests`] with the seconds until it may.
    pub fn check(&self, source: IpAddr, client_id: &str, now: i64) -> Result<(), OAuthError> {
        let key = LimiterKey::new(source, client_id);
        let mut state = self.lock();
        let Some(bucket) = state.buckets.get(&key).copied() else {
            return Ok(());
        };
        if bucket.empty_at <= now {
            state.remove(&key);
            return Ok(());
        }
        // A clock that stepped back must not stretch a block beyond one full bucket.
        let level = (bucket.empty_at - now).min(self.capacity());
        let excess = level - (self.capacity() - self.interval());
        if excess > 0 {
            Err(OAuthError::TooManyRequests {
                retry_after_secs: excess.unsigned_abs(),
            })
        } else {
            Ok(())
        }
    }

    /// Records a failed authentication of `client_id` from `source`.
    pub fn record_failure(&self, source: IpAddr, client_id: &str, now: i64) {
        let key = LimiterKey::new(source, client_id);
        let (interval, capacity) = (self.interval(), self.capacity());
        let max_keys = self.settings.max_keys.max(1);
        let mut guard = self.lock();
        let state = &mut *guard;
        let stamp = state.next_stamp;
        state.next_stamp += 1;
        let empty_at = match state.buckets.get(&key) {
            Some(old) => {
                state.by_age.remove(&old.stamp);
                old.empty_at.max(now).saturating_add(interval)
            }
            None => {
                while state.buckets.len() >= max_keys {
                    let Some((_, oldest)) = state.by_age.pop_first() else {
                        break;
                    };
                    state.buckets.remove(&oldest);
                }
                now.saturating_add(interval)
            }
        };
        // Concurrent failures that all passed `check` cannot push the bucket past full.
        let empty_at = empty_at.min(now.saturating_add(capacity));
        state.buckets.insert(key, Bucket { empty_at, stamp });
        state.by_age.insert(stamp, key);
    }

    /// Records a successful authentication: the key's failures are forgotten.
    pub fn record_success(&self, source: IpAddr, client_id: &str) {
        let key = LimiterKey::new(source, client_id);
        self.lock().remove(&key);
    }

    /// How many keys are tracked (for metrics and tests).
    pub fn tracked_keys(&self) -> usize {
        self.lock().buckets.len()
    }
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self::new(LimiterSettings::default())
    }
}

impl LimiterState {
    fn remove(&mut self, key: &LimiterKey) {
        if let Some(bucket) = self.buckets.remove(key) {
            self.by_age.remove(&bucket.stamp);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use base64::engine::general_purpose::STANDARD;
    use http::StatusCode;

    use super::*;

    const SECRET: &str = "pcs_TopSecretValueThatMustNeverBeLogged0123456";
    const NOW: i64 = 1_700_000_000;

    fn form_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers
    }

    fn basic_headers(raw: &str) -> HeaderMap {
        let mut headers = form_headers();
        let value = format!("Basic {}", STANDARD.encode(raw));
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    fn post(headers: &HeaderMap, body: &str) -> Result<TokenRequest, OAuthError> {
        parse_token_request(&Method::POST, headers, body.as_bytes(), false)
    }

    fn post_err(headers: &HeaderMap, body: &str) -> OAuthError {
        post(headers, body).unwrap_err()
    }

    fn cc() -> &'static str {
        "grant_type=client_credentials"
    }

    fn record(scopes: &[&str]) -> CredentialRecord {
        let mut claims = Map::new();
        claims.insert("team".into(), "payments".into());
        CredentialRecord {
            namespace: "team-a".into(),
            name: "billing-bot".into(),
            client_id: "team-a.billing-bot".into(),
            current: digest(SECRET),
            pending: None,
            previous: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            access_token_ttl: Duration::from_secs(3600),
            claims,
        }
    }

    #[test]
    fn has_subject_is_equality_with_subject() {
        let r = record(&[]);
        assert!(r.has_subject(&r.subject()));
        for other in [
            "serviceaccount:team-a/billing-bo",
            "serviceaccount:team-a/billing-bot2",
            "serviceaccount:team-ab/illing-bot",
            "serviceaccount:team/a/billing-bot",
            "serviceaccount:team-a",
            "serviceaccount:team-abilling-bot",
            "user:team-a/billing-bot",
            "team-a/billing-bot",
            "",
        ] {
            assert!(!r.has_subject(other), "{other}");
            assert_ne!(r.subject(), other);
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    // ---- client_secret_basic ----

    #[test]
    fn basic_credentials_are_accepted() {
        let req = post(
            &basic_headers(&format!("team-a.billing-bot:{SECRET}")),
            cc(),
        )
        .unwrap();
        assert_eq!(req.grant, Grant::ClientCredentials);
        assert!(req.scopes.is_empty());
        let ClientAuth::Basic { id, secret } = &req.client else {
            panic!("expected Basic, got {:?}", req.client);
        };
        assert_eq!(id, "team-a.billing-bot");
        assert_eq!(secret.expose(), SECRET);
        assert_eq!(req.client.method(), "client_secret_basic");
        assert_eq!(req.client.client_id(), Some("team-a.billing-bot"));
    }

    #[test]
    fn basic_halves_are_form_decoded() {
        // RFC 6749 §2.3.1: both halves are application/x-www-form-urlencoded.
        let req = post(&basic_headers("team%3Aa+bot:s%3Acr+et%2D%5F"), cc()).unwrap();
        let ClientAuth::Basic { id, secret } = req.client else {
            panic!("expected Basic");
        };
        assert_eq!(id, "team:a bot");
        assert_eq!(secret.expose(), "s:cr et-_");
    }

    #[test]
    fn basic_encoded_like_oauth4webapi_round_trips_a_generated_secret() {
        // openid-client percent-encodes `-` and `_`, which generated secrets contain.
        let secret = "pcs_ab-cd_ef";
        let req = post(&basic_headers("my%2Dclient:pcs%5Fab%2Dcd%5Fef"), cc()).unwrap();
        assert_eq!(req.client.client_id(), Some("my-client"));
        assert_eq!(req.client.secret().unwrap().expose(), secret);
    }

    #[test]
    fn basic_secret_may_contain_a_raw_colon() {
        let req = post(&basic_headers("client:a:b"), cc()).unwrap();
        assert_eq!(req.client.client_id(), Some("client"));
        assert_eq!(req.client.secret().unwrap().expose(), "a:b");
    }

    #[test]
    fn basic_without_padding_is_accepted() {
        let mut headers = form_headers();
        let encoded = STANDARD.encode("ab:c").trim_end_matches('=').to_owned();
        headers.insert(
            header::AUTHORIZATION,
            format!("basic {encoded}").parse().unwrap(),
        );
        assert_eq!(post(&headers, cc()).unwrap().client.client_id(), Some("ab"));
    }

    fn assert_invalid_client(error: &OAuthError, description: &str) {
        assert_eq!(error.code(), "invalid_client", "{error}");
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error.description(), description);
        let response = error.into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Basic realm="portcullis""#
        );
    }

    #[test]
    fn malformed_basic_credentials_are_invalid_client() {
        assert_invalid_client(
            &post_err(&basic_headers("no-colon-here"), cc()),
            "the Basic credentials have no colon between client_id and secret",
        );
        assert_invalid_client(
            &post_err(&basic_headers("client:"), cc()),
            "the Basic credentials have an empty secret",
        );
        assert_invalid_client(
            &post_err(&basic_headers(":secret"), cc()),
            "the Basic credentials have an empty client_id",
        );
        assert_invalid_client(
            &post_err(&basic_headers("client:%zz"), cc()),
            "the Basic credentials are not valid form encoding (RFC 6749 section 2.3.1)",
        );
        assert_invalid_client(
            &post_err(&basic_headers("client:%FF"), cc()),
            "the Basic credentials are not valid form encoding (RFC 6749 section 2.3.1)",
        );

        let mut headers = form_headers();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic !!!notbase64"),
        );
        assert_invalid_client(
            &post_err(&headers, cc()),
            "the Basic credentials are not valid base64",
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic"));
        assert_invalid_client(
            &post_err(&headers, cc()),
            "the Authorization header is not valid Basic credentials",
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_invalid_client(
            &post_err(&headers, cc()),
            "the token endpoint accepts only Basic client credentials in the Authorization header",
        );
    }

    #[test]
    fn two_authorization_headers_are_invalid_request() {
        let mut headers = basic_headers("a:b");
        headers.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YTpj"),
        );
        let error = post_err(&headers, cc());
        assert_eq!(error.code(), "invalid_request");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }

    // ---- two methods, body methods ----

    #[test]
    fn two_authentication_methods_are_invalid_request() {
        let cases = [
            (
                basic_headers("a:b"),
                format!("{}&client_id=a&client_secret=b", cc()),
            ),
            (
                basic_headers("a:b"),
                format!("{}&client_id=a&username=a&password=b", cc()),
            ),
            (
                basic_headers("a:b"),
                format!(
                    "{}&client_assertion_type={JWT_BEARER_ASSERTION_TYPE}&client_assertion=x.y.z",
                    cc()
                ),
            ),
            (
                form_headers(),
                format!("{}&client_id=a&client_secret=b&username=a&password=b", cc()),
            ),
            (
                form_headers(),
                format!(
                    "{}&client_id=a&client_secret=b&client_assertion=x.y.z",
                    cc()
                ),
            ),
        ];
        for (headers, body) in cases {
            let error = post_err(&headers, &body);
            assert_eq!(error, OAuthError::MultipleClientAuth, "{body}");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
            assert_eq!(error.code(), "invalid_request");
        }
    }

    #[test]
    fn basic_with_a_matching_body_client_id_is_accepted() {
        let headers = basic_headers("client:secret");
        let req = post(&headers, &format!("{}&client_id=client", cc())).unwrap();
        assert_eq!(req.client.method(), "client_secret_basic");
        assert_invalid_client(
            &post_err(&headers, &format!("{}&client_id=other", cc())),
            "the client_id in the body differs from the one in the Authorization header",
        );
    }

    #[test]
    fn an_empty_body_secret_does_not_count_as_a_second_method() {
        // RFC 6749 §3.1: a parameter without a value is treated as omitted.
        let req = post(&basic_headers("a:b"), &format!("{}&client_secret=", cc())).unwrap();
        assert_eq!(req.client.method(), "client_secret_basic");
    }

    #[test]
    fn client_secret_post_is_accepted() {
        let body = format!(
            "{}&client_id=team-a.billing-bot&client_secret={SECRET}",
            cc()
        );
        let req = post(&form_headers(), &body).unwrap();
        let ClientAuth::Post { id, secret } = &req.client else {
            panic!("expected Post");
        };
        assert_eq!(id, "team-a.billing-bot");
        assert_eq!(secret.expose(), SECRET);
        assert_invalid_client(
            &post_err(&form_headers(), &format!("{}&client_secret=x", cc())),
            "client_secret must be sent with client_id",
        );
    }

    #[test]
    fn authentik_form_is_accepted_when_username_names_the_client() {
        let body = format!(
            "{}&client_id=team-a.billing-bot&username=team-a.billing-bot&password={SECRET}",
            cc()
        );
        let req = post(&form_headers(), &body).unwrap();
        let ClientAuth::Authentik { id, secret } = &req.client else {
            panic!("expected Authentik");
        };
        assert_eq!(id, "team-a.billing-bot");
        assert_eq!(secret.expose(), SECRET);
    }

    #[test]
    fn authentik_form_with_another_username_is_invalid_client() {
        let body = format!(
            "{}&client_id=team-a.bot&username=team-b.bot&password=x",
            cc()
        );
        assert_invalid_client(
            &post_err(&form_headers(), &body),
            "username and client_id must name the same client",
        );
        let body = format!("{}&client_id=team-a.bot&password=x", cc());
        assert_invalid_client(
            &post_err(&form_headers(), &body),
            "password must be sent with client_id and username",
        );
    }

    #[test]
    fn client_assertions_are_parsed_not_authenticated() {
        let body = format!(
            "{}&client_assertion_type={}&client_assertion=aaa.bbb.ccc",
            cc(),
            JWT_BEARER_ASSERTION_TYPE.replace(':', "%3A")
        );
        let req = post(&form_headers(), &body).unwrap();
        let ClientAuth::Assertion { id, assertion } = &req.client else {
            panic!("expected Assertion");
        };
        assert_eq!(*id, None);
        assert_eq!(assertion.expose(), "aaa.bbb.ccc");
        assert!(!format!("{req:?}").contains("aaa.bbb.ccc"));

        let with_id = post(&form_headers(), &format!("{body}&client_id=bot")).unwrap();
        assert_eq!(with_id.client.client_id(), Some("bot"));

        let error = post_err(&form_headers(), &format!("{}&client_assertion=a.b.c", cc()));
        assert_eq!(error.code(), "invalid_request");
        assert_invalid_client(
            &post_err(
                &form_headers(),
                &format!("{}&client_assertion_type=saml&client_assertion=a", cc()),
            ),
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        );
    }

    #[test]
    fn missing_client_authentication_is_invalid_client() {
        assert_invalid_client(
            &post_err(&form_headers(), cc()),
            "client authentication is required",
        );
        assert_invalid_client(
            &post_err(&form_headers(), &format!("{}&client_id=public", cc())),
            "client authentication is required",
        );
    }

    #[test]
    fn malformed_client_ids_are_refused() {
        let long = "a".repeat(MAX_CLIENT_ID_BYTES + 1);
        for id in [long.as_str(), "bot%0Aforged", "bot%00"] {
            let body = format!("{}&client_id={id}&client_secret=s", cc());
            assert_invalid_client(
                &post_err(&form_headers(), &body),
                "the client_id is malformed",
            );
        }
        let ok = "a".repeat(MAX_CLIENT_ID_BYTES);
        let body = format!("{}&client_id={ok}&client_secret=s", cc());
        assert!(post(&form_headers(), &body).is_ok());
    }

    // ---- form rules ----

    #[test]
    fn repeated_parameters_are_invalid_request_naming_the_parameter() {
        let headers = basic_headers("a:b");
        for (body, name) in [
            (
                "grant_type=client_credentials&grant_type=client_credentials",
                "grant_type",
            ),
            (
                "grant_type=client_credentials&scope=route:a&scope=route:b",
                "scope",
            ),
            (
                "grant_type=client_credentials&scope=route:a&scope=route:a",
                "scope",
            ),
        ] {
            let error = post_err(&headers, body);
            assert_eq!(error, OAuthError::RepeatedParameter(name));
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
            assert_eq!(
                error.description(),
                format!("the {name} parameter must not appear more than once")
            );
        }
        let body = format!("{}&client_id=a&client_secret=b&client_secret=c", cc());
        assert_eq!(
            post_err(&form_headers(), &body),
            OAuthError::RepeatedParameter("client_secret")
        );
    }

    #[test]
    fn unknown_and_empty_parameters_are_ignored() {
        let body = "resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb&&foo&scope=&scope=route:x&grant_type=client_credentials";
        let req = post(&basic_headers("a:b"), body).unwrap();
        assert_eq!(req.scopes, ["route:x"]);
    }

    #[test]
    fn bad_encoding_is_invalid_request() {
        let headers = basic_headers("a:b");
        for body in [
            "grant_type=client%_credentials",
            "grant_type=client_credentials&scope=%",
            "grant_type=client_credentials&scope=%F",
            "grant_type=client_credentials&scope=%FF",
            "grant_type=client_credentials&x%zz=1",
        ] {
            let error = post_err(&headers, body);
            assert_eq!(error.code(), "invalid_request", "{body}");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
        let raw = [
            b"grant_type=client_credentials&scope=".as_slice(),
            &[0xC3, 0x28],
        ]
        .concat();
        let error = parse_token_request(&Method::POST, &headers, &raw, false).unwrap_err();
        assert_eq!(error.code(), "invalid_request");
    }

    #[test]
    fn percent_encoded_values_are_decoded() {
        let body = "grant_type=client%5Fcredentials&scope=route%3Aa+route:b";
        let req = post(&basic_headers("a:b"), body).unwrap();
        assert_eq!(req.scopes, ["route:a", "route:b"]);
    }

    #[test]
    fn oversize_bodies_are_413() {
        let big = format!("{}&pad={}", cc(), "a".repeat(1024 * 1024));
        let error = post_err(&basic_headers("a:b"), &big);
        assert_eq!(
            error,
            OAuthError::PayloadTooLarge {
                limit: MAX_TOKEN_REQUEST_BYTES
            }
        );
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);

        let mut at_limit = format!("{}&pad=", cc());
        at_limit.push_str(&"a".repeat(MAX_TOKEN_REQUEST_BYTES - at_limit.len()));
        assert_eq!(at_limit.len(), MAX_TOKEN_REQUEST_BYTES);
        assert!(post(&basic_headers("a:b"), &at_limit).is_ok());
    }

    #[test]
    fn other_methods_are_405_with_allow_post() {
        for method in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            let error = parse_token_request(&method, &basic_headers("a:b"), cc().as_bytes(), false)
                .unwrap_err();
            assert_eq!(error, OAuthError::MethodNotAllowed { allow: "POST" });
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(response.headers()[header::ALLOW], "POST");
        }
    }

    #[test]
    fn content_type_must_be_form() {
        let mut headers = basic_headers("a:b");
        for ok in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "application/x-www-form-urlencoded;charset=utf-8",
        ] {
            headers.insert(header::CONTENT_TYPE, ok.parse().unwrap());
            assert!(post(&headers, cc()).is_ok(), "{ok}");
        }
        for bad in [
            "application/json",
            "text/plain",
            "multipart/form-data; boundary=x",
            "",
        ] {
            headers.insert(header::CONTENT_TYPE, bad.parse().unwrap());
            let error = post_err(&headers, cc());
            assert_eq!(error, OAuthError::UnsupportedMediaType, "{bad}");
            assert_eq!(error.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        headers.remove(header::CONTENT_TYPE);
        assert_eq!(post_err(&headers, cc()), OAuthError::UnsupportedMediaType);

        let mut two = basic_headers("a:b");
        two.append(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert_eq!(post_err(&two, cc()).code(), "invalid_request");
    }

    #[test]
    fn grant_type_is_required_and_only_client_credentials_is_served() {
        let headers = basic_headers("a:b");
        assert_eq!(
            post_err(&headers, "scope=route:a"),
            OAuthError::MissingParameter("grant_type")
        );
        for grant in [
            "password",
            "authorization_code",
            "refresh_token",
            "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
            "urn:ietf:params:oauth:grant-type:device_code",
            "CLIENT_CREDENTIALS",
        ] {
            let error = post_err(&headers, &format!("grant_type={grant}"));
            assert_eq!(error, OAuthError::UnsupportedGrantType, "{grant}");
            assert_eq!(error.code(), "unsupported_grant_type");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn grant_types_round_trip() {
        for grant in [
            GrantType::ClientCredentials,
            GrantType::TokenExchange,
            GrantType::DeviceCode,
            GrantType::RefreshToken,
        ] {
            assert_eq!(GrantType::parse(grant.as_str()), Some(grant));
        }
        assert_eq!(GrantType::parse("implicit"), None);
    }

    #[test]
    fn scope_parameter_is_split_deduplicated_and_checked() {
        assert_eq!(
            parse_scope(Some("route:b route:a  route:b ")).unwrap(),
            ["route:b", "route:a"]
        );
        assert_eq!(parse_scope(None).unwrap(), Vec::<String>::new());
        for bad in ["route:\"a\"", "route:a\\b", "route:a\tb", "caf\u{e9}"] {
            let error = parse_scope(Some(bad)).unwrap_err();
            assert_eq!(error.code(), "invalid_scope", "{bad}");
        }
        let many: Vec<String> = (0..=MAX_REQUESTED_SCOPES)
            .map(|i| format!("s{i}"))
            .collect();
        assert_eq!(
            parse_scope(Some(&many.join(" "))).unwrap_err().code(),
            "invalid_scope"
        );
        let error = post_err(&basic_headers("a:b"), &format!("{}&scope=a%22b", cc()));
        assert_eq!(error.code(), "invalid_scope");
    }

    // ---- redaction ----

    #[test]
    fn secrets_never_appear_in_debug_display_or_error_bodies() {
        let secret = ClientSecret::new(SECRET);
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{}", ClientAssertion::new("a.b.c")), "[redacted]");

        let requests = [
            post(&basic_headers(&format!("bot:{SECRET}")), cc()).unwrap(),
            post(
                &form_headers(),
                &format!("{}&client_id=bot&client_secret={SECRET}", cc()),
            )
            .unwrap(),
            post(
                &form_headers(),
                &format!("{}&client_id=bot&username=bot&password={SECRET}", cc()),
            )
            .unwrap(),
        ];
        for req in &requests {
            let debug = format!("{req:?} {:#?}", req.client);
            assert!(!debug.contains(SECRET), "{debug}");
            assert!(debug.contains("[redacted]"));
        }

        // Failing requests carrying the secret: the error text never echoes it.
        let failures = [
            post_err(&basic_headers(&format!("bot:{SECRET}%zz")), cc()),
            post_err(
                &basic_headers(&format!("bot:{SECRET}")),
                &format!("{}&client_secret={SECRET}", cc()),
            ),
            post_err(
                &form_headers(),
                &format!("{}&client_id=a&username=b&password={SECRET}", cc()),
            ),
            post_err(
                &form_headers(),
                &format!("{}&client_secret={SECRET}&client_secret={SECRET}", cc()),
            ),
            post_err(
                &form_headers(),
                &format!("grant_type={SECRET}&client_secret={SECRET}"),
            ),
            post_err(
                &form_headers(),
                &format!(
                    "{}&client_id=a&client_secret={SECRET}&scope={SECRET}%22",
                    cc()
                ),
            ),
        ];
        for error in &failures {
            let body = error.into_response().into_body();
            let text = format!("{error} {error:?} {}", String::from_utf8_lossy(&body));
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains("TopSecret"), "{text}");
        }
    }

    #[test]
    fn records_and_digests_do_not_print_secrets() {
        let rec = record(&[]);
        let debug = format!("{rec:?}");
        assert!(!debug.contains(SECRET));
        assert!(!debug.contains(&digest(SECRET).to_hex()));
    }

    // ---- digests and verification ----

    #[test]
    fn digest_is_sha256_with_a_hex_storage_form() {
        let d = digest("abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(SecretDigest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(SecretDigest::from_hex(&d.to_hex().to_uppercase()), Some(d));
        assert_eq!(SecretDigest::from_hex(&d.to_hex()[1..]), None);
        assert_eq!(SecretDigest::from_hex(&"g".repeat(64)), None);
        assert_eq!(format!("{d:?}"), "SecretDigest(sha256:ba7816bf…)");
        assert_eq!(d, SecretDigest::from_bytes(*d.as_bytes()));
        assert_ne!(d, digest("abd"));
    }

    #[test]
    fn verify_secret_accepts_current_and_live_previous_only() {
        let old = "pcs_previousSecret";
        let mut rec = record(&[]);
        assert!(verify_secret(&rec, &ClientSecret::new(SECRET), NOW));
        assert!(!verify_secret(&rec, &ClientSecret::new(old), NOW));
        assert!(!verify_secret(&rec, &ClientSecret::new(""), NOW));
        assert!(!verify_secret(
            &rec,
            &ClientSecret::new(&SECRET[..SECRET.len() - 1]),
            NOW
        ));

        rec.previous = Some(PreviousSecret {
            digest: digest(old),
            expires: NOW + 86_400,
        });
        assert!(verify_secret(&rec, &ClientSecret::new(SECRET), NOW));
        assert!(verify_secret(&rec, &ClientSecret::new(old), NOW));
        assert!(verify_secret(&rec, &ClientSecret::new(old), NOW + 86_399));
        // `expires` is the first second the previous secret is refused.
        assert!(!verify_secret(&rec, &ClientSecret::new(old), NOW + 86_400));
        assert!(!verify_secret(&rec, &ClientSecret::new(old), NOW + 86_401));
        assert!(verify_secret(
            &rec,
            &ClientSecret::new(SECRET),
            NOW + 86_401
        ));
        assert!(!verify_secret(&rec, &ClientSecret::new("pcs_other"), NOW));
    }

    #[test]
    fn generated_secrets_have_the_documented_format() {
        let a = generate_secret();
        let b = generate_secret();
        for s in [a.expose(), b.expose()] {
            assert_eq!(s.len(), SECRET_LEN);
            assert_eq!(s.len(), 47);
            let body = s.strip_prefix("pcs_").unwrap();
            assert!(
                body.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            );
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(body)
                .unwrap();
            assert_eq!(raw.len(), 32);
        }
        assert_ne!(a.expose(), b.expose());
        // A generated secret survives Basic form-decoding unencoded (curl -u).
        let req = post(&basic_headers(&format!("bot:{}", a.expose())), cc()).unwrap();
        assert_eq!(req.client.secret().unwrap().expose(), a.expose());
    }

    // ---- authentication with the limiter ----

    fn source(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn authenticate_answers_unknown_and_wrong_alike() {
        let rec = record(&[]);
        let limiter = FailureLimiter::default();
        let find = |id: &str| (id == rec.client_id).then_some(&rec);
        let ok = ClientAuth::Post {
            id: rec.client_id.clone(),
            secret: ClientSecret::new(SECRET),
        };
        assert_eq!(
            authenticate(&ok, find, &limiter, source(1), NOW)
                .unwrap()
                .name,
            "billing-bot"
        );

        let wrong = ClientAuth::Basic {
            id: rec.client_id.clone(),
            secret: ClientSecret::new("pcs_wrong"),
        };
        let unknown = ClientAuth::Basic {
            id: "nobody".into(),
            secret: ClientSecret::new(SECRET),
        };
        let e1 = authenticate(&wrong, find, &limiter, source(1), NOW).unwrap_err();
        let e2 = authenticate(&unknown, find, &limiter, source(1), NOW).unwrap_err();
        assert_eq!(e1, OAuthError::ClientAuthenticationFailed);
        assert_eq!(e1.into_response().body(), e2.into_response().body());
        assert_eq!(e1.status(), StatusCode::UNAUTHORIZED);

        let assertion = ClientAuth::Assertion {
            id: Some(rec.client_id.clone()),
            assertion: ClientAssertion::new("a.b.c"),
        };
        assert_eq!(
            authenticate(&assertion, find, &limiter, source(1), NOW)
                .unwrap_err()
                .code(),
            "invalid_client"
        );
    }

    #[test]
    fn guessing_from_one_source_never_locks_out_the_real_client_elsewhere() {
        let rec = record(&[]);
        let limiter = FailureLimiter::default();
        let find = |id: &str| (id == rec.client_id).then_some(&rec);
        let guess = ClientAuth::Post {
            id: rec.client_id.clone(),
            secret: ClientSecret::new("pcs_guess"),
        };
        let real = ClientAuth::Post {
            id: rec.client_id.clone(),
            secret: ClientSecret::new(SECRET),
        };
        let attacker = source(66);
        for _ in 0..10 {
            assert_eq!(
                authenticate(&guess, find, &limiter, attacker, NOW).unwrap_err(),
                OAuthError::ClientAuthenticationFailed
            );
        }
        // The guesser is throttled, even if it now had the right secret...
        let blocked = authenticate(&real, find, &limiter, attacker, NOW).unwrap_err();
        assert_eq!(
            blocked,
            OAuthError::TooManyRequests {
                retry_after_secs: 6
            }
        );
        assert_eq!(blocked.into_response().headers()[header::RETRY_AFTER], "6");
        // ...while the workload on its own address is unaffected.
        assert!(authenticate(&real, find, &limiter, source(7), NOW).is_ok());
    }

    // ---- limiter ----

    #[test]
    fn limiter_blocks_after_the_burst_for_that_source_and_client_only() {
        let limiter = FailureLimiter::default();
        for i in 0..10 {
            assert!(limiter.check(source(1), "bot", NOW).is_ok(), "attempt {i}");
            limiter.record_failure(source(1), "bot", NOW);
        }
        assert_eq!(
            limiter.check(source(1), "bot", NOW),
            Err(OAuthError::TooManyRequests {
                retry_after_secs: 6
            })
        );
        assert_eq!(
            limiter.check(source(1), "bot", NOW + 5),
            Err(OAuthError::TooManyRequests {
                retry_after_secs: 1
            })
        );
        assert!(limiter.check(source(2), "bot", NOW).is_ok());
        assert!(limiter.check(source(1), "other-bot", NOW).is_ok());
        // One more attempt per drain interval.
        assert!(limiter.check(source(1), "bot", NOW + 6).is_ok());
        limiter.record_failure(source(1), "bot", NOW + 6);
        assert!(limiter.check(source(1), "bot", NOW + 6).is_err());
        // A full burst again once the bucket has drained (60 s without failures).
        assert!(limiter.check(source(1), "bot", NOW + 66).is_ok());
        assert_eq!(limiter.tracked_keys(), 0);
        for _ in 0..9 {
            limiter.record_failure(source(1), "bot", NOW + 66);
        }
        assert!(limiter.check(source(1), "bot", NOW + 66).is_ok());
    }

    #[test]
    fn limiter_success_clears_the_key() {
        let limiter = FailureLimiter::default();
        for _ in 0..10 {
            limiter.record_failure(source(1), "bot", NOW);
        }
        assert!(limiter.check(source(1), "bot", NOW).is_err());
        limiter.record_success(source(1), "bot");
        assert!(limiter.check(source(1), "bot", NOW).is_ok());
        assert_eq!(limiter.tracked_keys(), 0);
    }

    #[test]
    fn limiter_caps_concurrent_failures_and_clock_steps() {
        let limiter = FailureLimiter::default();
        for _ in 0..500 {
            limiter.record_failure(source(1), "bot", NOW);
        }
        assert_eq!(
            limiter.check(source(1), "bot", NOW),
            Err(OAuthError::TooManyRequests {
                retry_after_secs: 6
            })
        );
        // The clock stepping back an hour does not stretch the block.
        assert_eq!(
            limiter.check(source(1), "bot", NOW - 3600),
            Err(OAuthError::TooManyRequests {
                retry_after_secs: 6
            })
        );
    }

    #[test]
    fn limiter_memory_is_bounded_and_forgets_the_oldest_key() {
        let limiter = FailureLimiter::new(LimiterSettings {
            max_failures: 1,
            drain_interval_secs: 60,
            max_keys: 100,
        });
        limiter.record_failure(source(1), "first", NOW);
        for i in 0..1000 {
            limiter.record_failure(source(2), &format!("spray-{i}"), NOW);
            assert!(limiter.tracked_keys() <= 100);
        }
        assert_eq!(limiter.tracked_keys(), 100);
        assert!(
            limiter.check(source(1), "first", NOW).is_ok(),
            "oldest key evicted"
        );
        assert!(
            limiter.check(source(2), "spray-999", NOW).is_err(),
            "newest key kept"
        );
        assert!(limiter.check(source(2), "spray-900", NOW).is_err());
        assert!(limiter.check(source(2), "spray-899", NOW).is_ok());
    }

    #[test]
    fn limiter_groups_ipv6_by_64_and_maps_ipv4() {
        let limiter = FailureLimiter::new(LimiterSettings {
            max_failures: 1,
            ..LimiterSettings::default()
        });
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limiter.record_failure(a, "bot", NOW);
        assert!(limiter.check(same_64, "bot", NOW).is_err());
        assert!(limiter.check(other_64, "bot", NOW).is_ok());

        limiter.record_failure(source(9), "bot", NOW);
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 9).to_ipv6_mapped());
        assert!(limiter.check(mapped, "bot", NOW).is_err());
        let neighbour = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 10).to_ipv6_mapped());
        assert!(limiter.check(neighbour, "bot", NOW).is_ok());
        assert!(
            limiter
                .check(IpAddr::V6(Ipv6Addr::LOCALHOST), "bot", NOW)
                .is_ok()
        );
    }

    // ---- scopes ----

    #[test]
    fn scopes_normalize_to_namespace_and_name() {
        assert_eq!(
            normalize_scope("team-a", "route:billing-api").as_deref(),
            Some("route:team-a/billing-api")
        );
        assert_eq!(
            normalize_scope("team-a", "route:team-b/ledger.v2").as_deref(),
            Some("route:team-b/ledger.v2")
        );
        for bad in [
            "openid",
            "route:",
            "route:/x",
            "route:x/",
            "route:A",
            "route:a/b/c",
            "route:-a",
            "route:a..b",
            "Route:a",
            "route:team_a/x",
        ] {
            assert_eq!(normalize_scope("team-a", bad), None, "{bad}");
        }
        let long_ns = format!("route:{}/x", "a".repeat(64));
        assert_eq!(normalize_scope("team-a", &long_ns), None);
    }

    #[test]
    fn credential_scopes_only_narrow() {
        let rec = record(&["route:billing-api", "route:team-b/ledger"]);
        assert_eq!(
            grant_scopes(&rec, &[]).unwrap(),
            ["route:team-a/billing-api", "route:team-b/ledger"]
        );
        assert_eq!(
            grant_scopes(&rec, &strings(&["route:team-a/billing-api"])).unwrap(),
            ["route:team-a/billing-api"]
        );
        // Both spellings of one route collapse to one scope.
        assert_eq!(
            grant_scopes(
                &rec,
                &strings(&["route:billing-api", "route:team-a/billing-api"])
            )
            .unwrap(),
            ["route:team-a/billing-api"]
        );
        for outside in [
            "route:ledger",
            "route:team-c/billing-api",
            "route:other",
            "openid",
        ] {
            let error = grant_scopes(&rec, &strings(&[outside])).unwrap_err();
            assert_eq!(error.code(), "invalid_scope", "{outside}");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
        let error = grant_scopes(&rec, &strings(&["route:billing-api", "route:x"])).unwrap_err();
        assert_eq!(
            error.description(),
            "a requested scope is outside the scopes of this client"
        );
    }

    #[test]
    fn credentials_without_scopes_accept_any_route_scope() {
        let rec = record(&[]);
        assert_eq!(grant_scopes(&rec, &[]).unwrap(), Vec::<String>::new());
        assert_eq!(
            grant_scopes(&rec, &strings(&["route:x", "route:team-z/y"])).unwrap(),
            ["route:team-a/x", "route:team-z/y"]
        );
        assert_eq!(
            grant_scopes(&rec, &strings(&["profile"]))
                .unwrap_err()
                .code(),
            "invalid_scope"
        );
    }

    #[test]
    fn malformed_stored_scopes_still_narrow() {
        let rec = record(&["not-a-route"]);
        assert_eq!(grant_scopes(&rec, &[]).unwrap(), ["not-a-route"]);
        assert!(grant_scopes(&rec, &strings(&["route:x"])).is_err());
    }

    // ---- claims and responses ----

    #[test]
    fn access_token_claims_follow_rfc_9068() {
        let rec = record(&[]);
        let claims = access_token_claims(
            &rec,
            &strings(&["route:team-a/billing-api"]),
            "https://auth.example.com",
            "portcullis",
            NOW,
            "jti-1",
        );
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": "https://auth.example.com",
                "sub": "serviceaccount:team-a/billing-bot",
                "aud": "portcullis",
                "exp": NOW + 3600,
                "iat": NOW,
                "jti": "jti-1",
                "client_id": "team-a.billing-bot",
                "scope": "route:team-a/billing-api",
                "team": "payments",
            })
        );
        let unscoped = access_token_claims(&rec, &[], "https://i", "aud", NOW, "j");
        assert!(unscoped.get("scope").is_none());
        assert!(unscoped.get("nbf").is_none());
        assert_eq!(ACCESS_TOKEN_TYP, "at+jwt");
    }

    #[test]
    fn credential_claims_never_override_reserved_ones() {
        let mut rec = record(&[]);
        for (name, value) in [
            ("sub", "user:alice"),
            ("ISS", "https://evil"),
            ("Email", "alice@example.com"),
            ("groups", "admins"),
            ("client_id", "someone-else"),
            ("kubernetes.io/namespace", "kube-system"),
            ("portcullis_admin", "true"),
            ("Pomerium.user", "bob"),
            ("dept", "finance"),
        ] {
            rec.claims.insert(name.into(), value.into());
        }
        let claims = access_token_claims(&rec, &[], "https://i", "aud", NOW, "j");
        let map = claims.as_object().unwrap();
        assert_eq!(map["sub"], "serviceaccount:team-a/billing-bot");
        assert_eq!(map["client_id"], "team-a.billing-bot");
        assert_eq!(map["dept"], "finance");
        assert_eq!(map["team"], "payments");
        for absent in [
            "ISS",
            "Email",
            "groups",
            "kubernetes.io/namespace",
            "portcullis_admin",
            "Pomerium.user",
        ] {
            assert!(!map.contains_key(absent), "{absent}");
        }
        assert!(is_reserved_claim("SCOPE"));
        assert!(is_reserved_claim("kubernetes.io"));
        assert!(!is_reserved_claim("team"));
        assert!(!is_reserved_claim("kube"));
        assert!(!is_reserved_claim("é"));
    }

    #[test]
    fn token_responses() {
        assert_eq!(
            token_response("tok", 3600, &[]),
            serde_json::json!({"access_token": "tok", "token_type": "Bearer", "expires_in": 3600})
        );
        assert_eq!(
            token_response("tok", 60, &strings(&["route:a/b", "route:a/c"])),
            serde_json::json!({
                "access_token": "tok",
                "token_type": "Bearer",
                "expires_in": 60,
                "scope": "route:a/b route:a/c",
            })
        );
    }

    #[test]
    fn jtis_are_unique_uuids() {
        let a = new_jti();
        assert_eq!(a.len(), 36);
        assert_ne!(a, new_jti());
    }

    #[test]
    fn the_whole_client_credentials_flow() {
        let rec = record(&["route:billing-api"]);
        let limiter = FailureLimiter::default();
        let req = post(
            &basic_headers(&format!("team-a.billing-bot:{SECRET}")),
            "grant_type=client_credentials&scope=route%3Abilling-api",
        )
        .unwrap();
        let found = authenticate(
            &req.client,
            |id| (id == rec.client_id).then_some(&rec),
            &limiter,
            source(1),
            NOW,
        )
        .unwrap();
        let scopes = grant_scopes(found, &req.scopes).unwrap();
        let claims = access_token_claims(found, &scopes, "https://auth", "portcullis", NOW, "j");
        assert_eq!(claims["scope"], "route:team-a/billing-api");
        let body = token_response("signed", found.access_token_ttl.as_secs(), &scopes);
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "route:team-a/billing-api");
    }
}
