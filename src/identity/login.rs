//! The people's identity provider (DESIGN.md §2 `idp`): an OpenID Connect relying party built
//! on the `openidconnect` crate.
//!
//! ```text
//! Idp::spawn(settings) ── task: client secret (file or Secret) + discovery + JWKS, retried ──► IdpState
//! sign-in:   IdpClient::authorize_url(state, nonce, PKCE S256 challenge)  ──► 302 to the IdP
//! callback:  IdpClient::exchange_code(code, verifier, nonce) ── id_token verified (iss, aud,
//!            azp, alg, signature, nonce, exp) + userinfo ──► IdpTokens (claims, refresh token)
//! refresh:   IdpClient::refresh(refresh_token) ──► IdpTokens
//! sign-out:  IdpClient::end_session_url(id_token_hint, post_logout_redirect_uri)
//! ```
//!
//! The provider is configured by the operator and trusted as such: its URLs are not subject to
//! the upstream address policy. Its HTTP client follows no redirects, times out, and reads at
//! most [`MAX_RESPONSE_BYTES`] of any answer. Nothing the provider returns is logged beyond
//! error classes; tokens never are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJsonWebKeyType,
    CoreJwsSigningAlgorithm, CoreTokenResponse, CoreUserInfoClaims,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IntrospectionUrl, IssuerUrl, JwsSigningAlgorithm as _,
    LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, RedirectUrl, RefreshToken, Scope, TokenResponse as _, UserInfoClaims,
};
use serde_json::{Map, Value};
use url::Url;

use crate::store::Secret;

/// Longest answer read from the identity provider.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// How long one request to the identity provider may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often discovery and the JWKS are fetched again once loaded.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// Claims of the id_token that describe the token itself, not the person; never copied into a
/// session.
pub const TOKEN_HOUSEKEEPING_CLAIMS: [&str; 13] = [
    "iss",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "nonce",
    "at_hash",
    "c_hash",
    "s_hash",
    "azp",
    "auth_time",
    "sid",
];

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long an access token the provider's introspection endpoint called active is taken as
/// such before it is asked again (so a token revoked at the provider stops working soon).
pub const INTROSPECTION_CACHE_SECS: i64 = 60;

/// Discovery fields beyond OpenID Connect Core that we read: RP-initiated logout's
/// `end_session_endpoint` (through [`openidconnect::LogoutProviderMetadata`]) and RFC 8414's
/// `introspection_endpoint`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
struct IntrospectionMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    introspection_endpoint: Option<IntrospectionUrl>,
}

impl openidconnect::AdditionalProviderMetadata for IntrospectionMetadata {}

type ProviderMetadata = openidconnect::ProviderMetadata<
    openidconnect::LogoutProviderMetadata<IntrospectionMetadata>,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreClientAuthMethod,
    openidconnect::core::CoreClaimName,
    openidconnect::core::CoreClaimType,
    openidconnect::core::CoreGrantType,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJweKeyManagementAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreResponseMode,
    openidconnect::core::CoreResponseType,
    openidconnect::core::CoreSubjectIdentifierType,
>;

/// Our client with the provider's introspection endpoint set.
type IntrospectingClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why talking to the identity provider failed. Messages name the class of problem and the
/// provider's OAuth error code, never a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// The HTTP exchange itself failed (connect, timeout, size, status).
    #[error("the identity provider could not be reached: {0}")]
    Http(String),
    /// Discovery failed or the document is unusable.
    #[error("identity provider discovery failed: {0}")]
    Discovery(String),
    /// The token endpoint refused the code or refresh token (`invalid_grant`, ...).
    #[error("the identity provider refused the request: {0}")]
    Refused(String),
    /// The id_token failed verification.
    #[error("the identity provider's id_token is not valid: {0}")]
    InvalidIdToken(String),
    /// The answer lacked something required (an id_token on the code grant).
    #[error("the identity provider's answer is incomplete: {0}")]
    Incomplete(&'static str),
    /// The provider has no token endpoint.
    #[error("the identity provider has no token endpoint")]
    NoTokenEndpoint,
}

impl IdpError {
    /// A short fixed label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            IdpError::Http(_) => "idp_unreachable",
            IdpError::Discovery(_) => "idp_discovery",
            IdpError::Refused(_) => "idp_refused",
            IdpError::InvalidIdToken(_) => "invalid_id_token",
            IdpError::Incomplete(_) | IdpError::NoTokenEndpoint => "idp_incomplete",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

/// What a relying party needs to know about the provider, resolved from the settings.
#[derive(Clone)]
pub struct IdpSettings {
    /// The issuer URL (discovery at `/.well-known/openid-configuration` below it).
    pub issuer: String,
    /// Our client id at the provider.
    pub client_id: String,
    /// Scopes requested at sign-in (`openid` is always added).
    pub scopes: Vec<String>,
    /// Extra authorization-request parameters.
    pub auth_params: BTreeMap<String, String>,
    /// Where the provider sends the browser back: `<authenticate URL>/oauth2/callback`.
    pub redirect_url: String,
    /// More `aud` values accepted on id_tokens presented to us directly (token exchange,
    /// routes with `bearerTokenFormat: idp_identity_token`), besides `client_id`.
    pub allowed_audiences: Vec<String>,
}

impl std::fmt::Debug for IdpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What a code or refresh grant gave us about the person.
#[derive(Clone)]
pub struct IdpTokens {
    /// The person's claims: the verified id_token's (without [`TOKEN_HOUSEKEEPING_CLAIMS`]),
    /// completed by userinfo where the provider has it.
    pub claims: Map<String, Value>,
    /// The raw id_token (for `id_token_hint` at sign-out).
    pub id_token: Option<Secret>,
    /// The refresh token, when the provider issued one.
    pub refresh_token: Option<Secret>,
    /// When the provider's access token expires (unix seconds), if it said.
    pub access_expires_at: Option<i64>,
}

impl std::fmt::Debug for IdpTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpTokens")
            .field("subject", &self.claims.get("sub"))
            .finish_non_exhaustive()
    }
}

/// A token of the provider a caller presented (an id_token for token exchange or a route
/// taking the provider's id_tokens; an access token for a route taking those), once verified.
#[derive(Clone)]
pub struct PresentedIdpToken {
    /// `sub`.
    pub subject: String,
    /// The person's claims, without [`TOKEN_HOUSEKEEPING_CLAIMS`].
    pub claims: Map<String, Value>,
    /// `exp` (unix seconds).
    pub expires: i64,
    /// Whether it was issued to our client (`azp`, else `aud`, names `clientID`), so the
    /// provider takes it as `id_token_hint` along with our `client_id` at sign-out.
    pub issued_to_us: bool,
}

impl std::fmt::Debug for PresentedIdpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedIdpToken")
            .field("subject", &self.subject)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why a presented id_token was refused: a class a caller may be told, never the token or
/// what it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpTokenRejection {
    /// Not a compact JWS with an id_token's claims.
    Malformed,
    /// Another kind of token (`typ` of an access token, a JWE).
    NotAnIdToken,
    /// Signed with an algorithm we never accept (`none`, HMAC) or the provider does not use.
    Algorithm,
    /// The signature does not verify with the provider's keys.
    Signature,
    /// Another issuer.
    Issuer,
    /// `aud` names none of our audiences, or `azp` another party.
    Audience,
    /// Expired (or not yet valid, or issued in the future).
    Expired,
    /// No usable `sub`.
    Subject,
    /// The provider's introspection endpoint calls the access token inactive, or not an
    /// access token.
    Inactive,
    /// The provider has no introspection endpoint: its access tokens cannot be checked.
    NotVerifiable,
    /// The provider did not answer the introspection.
    Unreachable,
}

impl IdpTokenRejection {
    /// What the caller is told.
    pub fn description(self) -> &'static str {
        match self {
            Self::Malformed => "the token is not a well-formed signed id_token",
            Self::NotAnIdToken => {
                "the token is not an id_token: its typ names another kind of token"
            }
            Self::Algorithm => "the token's signing algorithm is not accepted",
            Self::Signature => {
                "the token's signature does not verify with the identity provider's keys"
            }
            Self::Issuer => "the token was not issued by the configured identity provider",
            Self::Audience => "the token's audience (aud, azp) is not accepted here",
            Self::Expired => "the token has expired",
            Self::Subject => "the token names no subject",
            Self::Inactive => {
                "the identity provider says the token is not active (expired, revoked, or not an access token)"
            }
            Self::NotVerifiable => {
                "the identity provider has no introspection endpoint, so its access tokens cannot be verified here"
            }
            Self::Unreachable => {
                "the identity provider could not be asked about the token; retry shortly"
            }
        }
    }
}

impl std::fmt::Display for IdpTokenRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for IdpTokenRejection {}

/// The PKCE verifier, nonce and state of one sign-in, chosen before the browser leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSecrets {
    /// The `state` parameter (random, single use).
    pub state: String,
    /// The `nonce` the id_token must carry.
    pub nonce: String,
    /// The PKCE code verifier (its S256 challenge goes to the provider).
    pub verifier: String,
}

impl LoginSecrets {
    /// Fresh random values.
    pub fn random() -> Self {
        Self {
            state: CsrfToken::new_random().secret().clone(),
            nonce: Nonce::new_random().secret().clone(),
            verifier: PkceCodeChallenge::new_random_sha256().1.secret().clone(),
        }
    }
}

/// A discovered provider with our client registration: cheap to share, immutable.
pub struct IdpClient {
    settings: IdpSettings,
    client: OidcClient,
    /// The same client for the provider's introspection endpoint, when it has one.
    introspection: Option<IntrospectingClient>,
    /// The provider's id_token algorithms that sign with a key of its JWKS.
    id_token_algs: Vec<CoreJwsSigningAlgorithm>,
    end_session: Option<Url>,
    issuer: String,
    http: HttpClient,
}

impl std::fmt::Debug for IdpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpClient")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn http_client() -> HttpClient {
    let tls = crate::proxy::upstream::native_roots_client_config();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(REQUEST_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

async fn send(
    http: HttpClient,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
    let exchange = async {
        let response = http
            .request(request)
            .await
            .map_err(|e| HttpError(format!("request failed: {}", crate::error_chain(&e))))?;
        let (parts, body) = response.into_parts();
        // A provider failing is not a provider refusing, whatever error body it sends.
        if parts.status.is_server_error() {
            return Err(HttpError(format!("status {}", parts.status.as_u16())));
        }
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| HttpError("the answer is too large or broken".into()))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body.to_vec()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| HttpError("timed out".into()))?
}

impl IdpClient {
    /// Discovers the provider (metadata and JWKS) and registers our client with `secret`.
    pub async fn discover(settings: IdpSettings, secret: &Secret) -> Result<Self, IdpError> {
        let http = http_client();
        let issuer_url = IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| IdpError::Discovery(format!("issuer: {e}")))?;
        let caller = |request| send(http.clone(), request);
        let metadata = ProviderMetadata::discover_async(issuer_url, &caller)
            .await
            .map_err(|e| IdpError::Discovery(crate::error_chain(&e)))?;
        let redirect = RedirectUrl::new(settings.redirect_url.clone())
            .map_err(|e| IdpError::Discovery(format!("redirect URL: {e}")))?;
        let end_session = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|u| u.url().clone());
        let introspection_url = metadata
            .additional_metadata()
            .additional_metadata
            .introspection_endpoint
            .clone();
        let post_only = metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|methods| {
                let names: Vec<String> = methods
                    .iter()
                    .filter_map(|m| serde_json::to_value(m).ok())
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                !names.iter().any(|n| n == "client_secret_basic")
                    && names.iter().any(|n| n == "client_secret_post")
            });
        let issuer = metadata.issuer().as_str().to_owned();
        // Never an HMAC keyed with our client secret, nor `none`: an id_token is signed by
        // the provider's JWKS, whatever else the provider lists.
        let id_token_algs = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|alg| {
                alg.key_type()
                    .is_some_and(|k| k != CoreJsonWebKeyType::Symmetric)
            })
            .cloned()
            .collect();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(settings.client_id.clone()),
            Some(ClientSecret::new(secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(if post_only {
            AuthType::RequestBody
        } else {
            AuthType::BasicAuth
        });
        let introspection = introspection_url.map(|url| client.clone().set_introspection_url(url));
        Ok(Self {
            settings,
            client,
            introspection,
            id_token_algs,
            end_session,
            issuer,
            http,
        })
    }

    /// The provider's issuer identifier, as its discovery document states it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Whether the provider has an end-session endpoint.
    pub fn has_end_session(&self) -> bool {
        self.end_session.is_some()
    }

    /// The authorization URL for one sign-in: code flow, our scopes, `state`, `nonce`, the S256
    /// challenge of `secrets.verifier`, and the configured extra parameters.
    pub fn authorize_url(&self, secrets: &LoginSecrets) -> Url {
        let verifier = PkceCodeVerifier::new(secrets.verifier.clone());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let state = secrets.state.clone();
        let nonce = secrets.nonce.clone();
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        for (name, value) in &self.settings.auth_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        request.url().0
    }

    /// Redeems an authorization code with its PKCE verifier, verifies the id_token against
    /// `nonce`, and completes the claims from userinfo.
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: i64,
    ) -> Result<IdpTokens, IdpError> {
        let http = self.http.clone();
        let caller = |request| send(http.clone(), request);
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| IdpError::NoTokenEndpoint)?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&caller)
            .await
            .map_err(token_error)?;
        let nonce = Nonce::new(nonce.to_owned());
        self.tokens_from(&response, Some(&nonce), None, now).await
    }

    /// Uses a refresh token; the claims are the new id_token's when the provider sends one,
    /// else `previous` with userinfo's answer on top.
    pub async fn refresh(
        &self,
        refresh_token: &Secret,
        previous: &Map<String, Value>,
        now: i64,
    ) -> Result<IdpTokens, IdpError> {
        let http = self.http.clone();
        let caller = |request| send(http.clone(), request);
        let token = RefreshToken::new(refresh_token.expose().to_owned());
        let response = self
            .client
            .exchange_refresh_token(&token)
            .map_err(|_| IdpError::NoTokenEndpoint)?
            .request_async(&caller)
            .await
            .map_err(token_error)?;
        let mut tokens = self
            .tokens_from(&response, None, Some(previous), now)
            .await?;
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.clone());
        }
        Ok(tokens)
    }

    async fn tokens_from(
        &self,
        response: &CoreTokenResponse,
        nonce: Option<&Nonce>,
        previous: Option<&Map<String, Value>>,
        now: i64,
    ) -> Result<IdpTokens, IdpError> {
        let mut claims = match (response.id_token(), previous) {
            (Some(id_token), _) => {
                // `exp` is judged at `now`, the caller's clock, not the system's.
                let at = chrono::DateTime::from_timestamp_secs(now)
                    .ok_or(IdpError::InvalidIdToken("the time is out of range".into()))?;
                let verifier = self
                    .client
                    .id_token_verifier()
                    .set_allowed_algs(self.id_token_algs.iter().cloned())
                    .set_time_fn(move || at);
                let verified = match nonce {
                    Some(nonce) => id_token.claims(&verifier, nonce),
                    // A refreshed id_token carries no nonce (OIDC Core §12.2).
                    None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
                }
                .map_err(|e| IdpError::InvalidIdToken(crate::error_chain(&e)))?;
                // The crate leaves `azp` to its caller (OIDC Core §3.1.3.7, step 5).
                if verified
                    .authorized_party()
                    .is_some_and(|azp| azp.as_str() != self.settings.client_id)
                {
                    return Err(IdpError::InvalidIdToken("azp names another client".into()));
                }
                let mut claims = jwt_payload(&id_token.to_string()).ok_or(
                    IdpError::InvalidIdToken("payload is not a JSON object".into()),
                )?;
                if let Some(previous_sub) = previous.and_then(|p| p.get("sub"))
                    && claims.get("sub") != Some(previous_sub)
                {
                    return Err(IdpError::InvalidIdToken(
                        "the refreshed id_token names another subject".into(),
                    ));
                }
                for name in TOKEN_HOUSEKEEPING_CLAIMS {
                    claims.remove(name);
                }
                claims
            }
            (None, Some(previous)) => previous.clone(),
            (None, None) => return Err(IdpError::Incomplete("no id_token in the answer")),
        };
        if let Some(extra) = self.user_info(response).await {
            if extra.get("sub") == claims.get("sub") {
                for (name, value) in extra {
                    if !TOKEN_HOUSEKEEPING_CLAIMS.contains(&name.as_str()) {
                        claims.insert(name, value);
                    }
                }
            } else {
                tracing::warn!("the identity provider's userinfo names another subject; ignored");
            }
        }
        Ok(IdpTokens {
            claims,
            id_token: response.id_token().map(|t| Secret::new(t.to_string())),
            refresh_token: response
                .refresh_token()
                .map(|t| Secret::new(t.secret().clone())),
            access_expires_at: response
                .expires_in()
                .map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))),
        })
    }

    /// Verifies an id_token a caller presented to us directly: the provider's keys and an
    /// algorithm it signs with (never `none` or an HMAC), `iss`, `exp` at `now`, and the
    /// audience: `aud` must contain our client id or one of `allowedAudiences`, and when it
    /// has several values or an `azp`, `azp` must be one of those too (OIDC Core §3.1.3.7). A
    /// `typ` of another kind of token (`at+jwt`, ...) is refused whatever it claims.
    pub fn verify_presented_id_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<PresentedIdpToken, IdpTokenRejection> {
        use std::str::FromStr as _;
        let header = jwt_part(token, 0).ok_or(IdpTokenRejection::Malformed)?;
        if let Some(typ) = header.get("typ") {
            let typ = typ.as_str().ok_or(IdpTokenRejection::Malformed)?;
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            if !typ.eq_ignore_ascii_case("jwt") {
                return Err(IdpTokenRejection::NotAnIdToken);
            }
        }
        let id_token = openidconnect::core::CoreIdToken::from_str(token)
            .map_err(|_| IdpTokenRejection::Malformed)?;
        let at = chrono::DateTime::from_timestamp_secs(now).ok_or(IdpTokenRejection::Expired)?;
        let verifier = self
            .client
            .id_token_verifier()
            .set_allowed_algs(self.id_token_algs.iter().cloned())
            .require_audience_match(false)
            .set_time_fn(move || at);
        let verified = id_token
            .claims(&verifier, |_: Option<&Nonce>| Ok(()))
            .map_err(|error| {
                use openidconnect::ClaimsVerificationError as E;
                match error {
                    E::Expired(_) => IdpTokenRejection::Expired,
                    E::InvalidIssuer(_) => IdpTokenRejection::Issuer,
                    E::InvalidAudience(_) => IdpTokenRejection::Audience,
                    E::InvalidSubject(_) => IdpTokenRejection::Subject,
                    E::SignatureVerification(
                        openidconnect::SignatureVerificationError::DisallowedAlg(_)
                        | openidconnect::SignatureVerificationError::UnsupportedAlg(_),
                    ) => IdpTokenRejection::Algorithm,
                    E::SignatureVerification(_) => IdpTokenRejection::Signature,
                    _ => IdpTokenRejection::Malformed,
                }
            })?;
        let accepted = |value: &str| {
            value == self.settings.client_id
                || self.settings.allowed_audiences.iter().any(|a| a == value)
        };
        let audiences = verified.audiences();
        if !audiences.iter().any(|aud| accepted(aud.as_str())) {
            return Err(IdpTokenRejection::Audience);
        }
        match verified.authorized_party() {
            Some(azp) if !accepted(azp.as_str()) => return Err(IdpTokenRejection::Audience),
            None if audiences.len() > 1 => return Err(IdpTokenRejection::Audience),
            _ => {}
        }
        let subject = verified.subject().as_str().to_owned();
        if subject.is_empty() {
            return Err(IdpTokenRejection::Subject);
        }
        let ours = self.settings.client_id.as_str();
        let issued_to_us = match verified.authorized_party() {
            Some(azp) => azp.as_str() == ours,
            None => audiences.iter().any(|aud| aud.as_str() == ours),
        };
        let expires = verified.expiration().timestamp();
        let mut claims = jwt_part(token, 1).ok_or(IdpTokenRejection::Malformed)?;
        for name in TOKEN_HOUSEKEEPING_CLAIMS {
            claims.remove(name);
        }
        Ok(PresentedIdpToken {
            subject,
            claims,
            expires,
            issued_to_us,
        })
    }

    /// Verifies an access token of the provider a caller presented (a route with
    /// `bearerTokenFormat: idp_access_token`) at the provider's introspection endpoint (RFC
    /// 7662, authenticated as our client, `token_type_hint=access_token`): it must be active,
    /// of type Bearer when a type is said, from the provider's issuer when one is said, and for
    /// us: `aud` contains our client id or one of `allowedAudiences` or, without `aud`, its
    /// `client_id` is one of those. The person's claims come from userinfo with the same token
    /// (its `sub` must agree; a token userinfo refuses is refused), else only `sub` is known. Good until its `exp`, but at most
    /// [`INTROSPECTION_CACHE_SECS`] before the provider is asked again.
    pub async fn verify_presented_access_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<PresentedIdpToken, IdpTokenRejection> {
        use openidconnect::TokenIntrospectionResponse as _;
        let introspector = self
            .introspection
            .as_ref()
            .ok_or(IdpTokenRejection::NotVerifiable)?;
        let http = self.http.clone();
        let caller = |request| send(http.clone(), request);
        let access_token = openidconnect::AccessToken::new(token.to_owned());
        let answer = introspector
            .introspect(&access_token)
            .set_token_type_hint("access_token")
            .request_async(&caller)
            .await
            .map_err(|error| match error {
                // An OAuth error answer (`unsupported_token_type` for a JWT it does not
                // introspect, ...) is the provider refusing the token, not failing.
                openidconnect::RequestTokenError::ServerResponse(_) => IdpTokenRejection::Inactive,
                other => {
                    tracing::warn!(error = %crate::error_chain(&other), "introspecting an access token at the identity provider failed");
                    IdpTokenRejection::Unreachable
                }
            })?;
        if !answer.active() {
            return Err(IdpTokenRejection::Inactive);
        }
        if answer
            .token_type()
            .is_some_and(|t| !matches!(t, openidconnect::core::CoreTokenType::Bearer))
        {
            return Err(IdpTokenRejection::Inactive);
        }
        if answer.iss().is_some_and(|iss| iss != self.issuer) {
            return Err(IdpTokenRejection::Issuer);
        }
        let accepted = |value: &str| {
            value == self.settings.client_id
                || self.settings.allowed_audiences.iter().any(|a| a == value)
        };
        let for_us = match answer.aud() {
            Some(audiences) => audiences.iter().any(|aud| accepted(aud)),
            None => answer.client_id().is_some_and(|id| accepted(id.as_str())),
        };
        if !for_us {
            return Err(IdpTokenRejection::Audience);
        }
        let expires = answer.exp().map_or(i64::MAX, |exp| exp.timestamp());
        if expires <= now {
            return Err(IdpTokenRejection::Expired);
        }
        // Userinfo takes access tokens only, so a refresh token that introspection calls active
        // (without a `token_type`) is refused here. Without a userinfo endpoint, only `sub`.
        let mut claims = match self.user_info_claims(access_token).await {
            Ok(Some(claims)) => claims,
            Ok(None) => Map::new(),
            Err(openidconnect::UserInfoError::Request(error)) => {
                tracing::warn!(error = %crate::error_chain(&error), "userinfo request failed");
                return Err(IdpTokenRejection::Unreachable);
            }
            Err(_) => return Err(IdpTokenRejection::Inactive),
        };
        let subject = match (answer.sub(), claims.get("sub").and_then(Value::as_str)) {
            (Some(a), Some(b)) if a != b => {
                tracing::warn!(
                    "the identity provider's userinfo names another subject than its introspection; ignored"
                );
                claims.clear();
                a.to_owned()
            }
            (Some(sub), _) | (None, Some(sub)) => sub.to_owned(),
            (None, None) => return Err(IdpTokenRejection::Subject),
        };
        for name in TOKEN_HOUSEKEEPING_CLAIMS {
            claims.remove(name);
        }
        claims.insert("sub".into(), subject.clone().into());
        Ok(PresentedIdpToken {
            subject,
            claims,
            expires: expires.min(now.saturating_add(INTROSPECTION_CACHE_SECS)),
            issued_to_us: false,
        })
    }

    /// Userinfo's claims, when the provider has the endpoint and answers; a failure only
    /// loses what userinfo would have added.
    async fn user_info(&self, response: &CoreTokenResponse) -> Option<Map<String, Value>> {
        self.user_info_with(response.access_token().clone()).await
    }

    /// Userinfo's claims for `access_token`, when the provider has the endpoint and answers.
    async fn user_info_with(
        &self,
        access_token: openidconnect::AccessToken,
    ) -> Option<Map<String, Value>> {
        self.user_info_claims(access_token)
            .await
            .inspect_err(
                |error| tracing::warn!(error = %crate::error_chain(error), "userinfo request failed"),
            )
            .ok()
            .flatten()
    }

    /// Userinfo's answer for `access_token`: `None` when the provider has no userinfo endpoint.
    async fn user_info_claims(
        &self,
        access_token: openidconnect::AccessToken,
    ) -> Result<Option<Map<String, Value>>, openidconnect::UserInfoError<HttpError>> {
        let Ok(request) = self.client.user_info(access_token, None) else {
            return Ok(None);
        };
        let http = self.http.clone();
        let caller = |request| send(http.clone(), request);
        let claims: UserInfoClaims<ExtraClaims, CoreGenderClaim> =
            request.request_async(&caller).await?;
        match serde_json::to_value(&claims) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Err(openidconnect::UserInfoError::Other(
                "userinfo claims are not an object".into(),
            )),
        }
    }

    /// Where to send the browser to end the session at the provider, when it has an
    /// end-session endpoint.
    pub fn end_session_url(
        &self,
        id_token_hint: Option<&Secret>,
        post_logout_redirect_uri: &str,
    ) -> Option<Url> {
        let endpoint = self.end_session.clone()?;
        let mut request: LogoutRequest = openidconnect::EndSessionUrl::from_url(endpoint).into();
        if let Ok(url) = PostLogoutRedirectUrl::new(post_logout_redirect_uri.to_owned()) {
            request = request.set_post_logout_redirect_uri(url);
        }
        request = request.set_client_id(ClientId::new(self.settings.client_id.clone()));
        let mut url = request.http_get_url();
        if let Some(hint) = id_token_hint {
            url.query_pairs_mut()
                .append_pair("id_token_hint", hint.expose());
        }
        Some(url)
    }
}

/// Every claim userinfo sends beyond the standard ones (`groups`, ...).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ExtraClaims {
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl openidconnect::AdditionalClaims for ExtraClaims {}

/// `CoreUserInfoClaims` is kept in scope for readers comparing with the crate's examples.
#[allow(dead_code)]
type StandardUserInfo = CoreUserInfoClaims;

fn token_error<E: std::error::Error + 'static>(
    error: openidconnect::RequestTokenError<
        E,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> IdpError {
    match error {
        openidconnect::RequestTokenError::ServerResponse(response) => {
            IdpError::Refused(response.error().to_string())
        }
        openidconnect::RequestTokenError::Request(e) => IdpError::Http(crate::error_chain(&e)),
        // An id_token the crate cannot even parse (`"exp": "never"`, an unknown `alg`) fails
        // verification like any other bad id_token; the parser's message may quote its claims.
        openidconnect::RequestTokenError::Parse(_, body)
            if only_the_id_token_is_malformed(&body) =>
        {
            IdpError::InvalidIdToken("the id_token is malformed".into())
        }
        other => IdpError::Http(crate::error_chain(&other)),
    }
}

/// Whether a token response that did not parse does once its `id_token` is taken out.
fn only_the_id_token_is_malformed(body: &[u8]) -> bool {
    let Ok(Value::Object(mut answer)) = serde_json::from_slice(body) else {
        return false;
    };
    answer.remove("id_token").is_some()
        && serde_json::from_value::<CoreTokenResponse>(Value::Object(answer)).is_ok()
}

/// The JSON payload of a compact JWS, unverified: call only on a token already verified.
fn jwt_payload(token: &str) -> Option<Map<String, Value>> {
    jwt_part(token, 1)
}

/// Part `index` of a compact JWS (0: the header, 1: the payload) as a JSON object,
/// unverified.
fn jwt_part(token: &str, index: usize) -> Option<Map<String, Value>> {
    use base64::Engine as _;
    let part = token.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Where the people's sign-in stands in this process.
#[derive(Debug, Clone)]
pub enum IdpState {
    /// No `idp` is configured: routes for people cannot sign anyone in.
    NotConfigured,
    /// Configured, not usable yet or any more; the reason is for status and logs (never a
    /// secret).
    Unavailable(String),
    /// Discovered and ready.
    Ready(Arc<IdpClient>),
}

/// Where the client secret comes from.
#[derive(Clone)]
pub enum SecretSource {
    /// A file (mounted Secret, dev).
    File(std::path::PathBuf),
    /// A key of a Secret in Portcullis's namespace, read through the API.
    Secret {
        /// The kube client.
        client: kube::Client,
        /// Portcullis's namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// Key in its data.
        key: String,
    },
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "File({})", path.display()),
            SecretSource::Secret {
                namespace,
                name,
                key,
                ..
            } => {
                write!(f, "Secret({namespace}/{name}, {key})")
            }
        }
    }
}

impl SecretSource {
    async fn read(&self) -> Result<Secret, String> {
        match self {
            SecretSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map(|s| Secret::new(s.trim().to_owned()))
                .map_err(|e| format!("client secret file {}: {e}", path.display())),
            SecretSource::Secret {
                client,
                namespace,
                name,
                key,
            } => {
                let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
                    kube::Api::namespaced(client.clone(), namespace);
                let secret = api
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("reading Secret {namespace}/{name}: {e}"))?
                    .ok_or_else(|| format!("Secret {namespace}/{name} not found"))?;
                let value = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .ok_or_else(|| format!("Secret {namespace}/{name} has no key {key}"))?;
                let text = std::str::from_utf8(&value.0)
                    .map_err(|_| format!("Secret {namespace}/{name} key {key} is not text"))?;
                if text.trim().is_empty() {
                    return Err(format!("Secret {namespace}/{name} key {key} is empty"));
                }
                Ok(Secret::new(text.trim().to_owned()))
            }
        }
    }
}

/// The live identity-provider state, shared by every request; one task keeps it current.
#[derive(Debug, Clone)]
pub struct Idp {
    state: Arc<ArcSwap<IdpState>>,
    unavailable: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl Idp {
    /// An IdP handle that stays in `state` (tests, and installs without `idp`).
    pub fn fixed(state: IdpState) -> Self {
        let reason = match &state {
            IdpState::Unavailable(reason) => Some(reason.clone()),
            _ => None,
        };
        Self {
            state: Arc::new(ArcSwap::from_pointee(state)),
            unavailable: Arc::new(tokio::sync::watch::channel(reason).0),
        }
    }

    /// The current state.
    pub fn state(&self) -> Arc<IdpState> {
        self.state.load_full()
    }

    /// The ready client, if any.
    pub fn client(&self) -> Option<Arc<IdpClient>> {
        match &**self.state.load() {
            IdpState::Ready(client) => Some(Arc::clone(client)),
            _ => None,
        }
    }

    /// Why people cannot sign in (`None`: they can, or it is not known yet); changes only
    /// when the reason does.
    pub fn unavailable(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.unavailable.subscribe()
    }

    fn set(&self, state: IdpState) {
        let reason = match &state {
            IdpState::Unavailable(reason) => Some(reason.clone()),
            _ => None,
        };
        self.state.store(Arc::new(state));
        self.unavailable.send_if_modified(|current| {
            let changed = *current != reason;
            *current = reason;
            changed
        });
    }

    /// Starts the task that reads the client secret and discovers the provider, retrying with
    /// backoff while either fails and refreshing every [`REFRESH_EVERY`] once it works.
    pub fn spawn(settings: IdpSettings, secret: SecretSource) -> Self {
        let idp = Self::fixed(IdpState::Unavailable(
            "the identity provider has not been discovered yet".into(),
        ));
        // Not known to be unavailable until the first attempt fails: no condition flaps at
        // every start.
        idp.unavailable.send_replace(None);
        let handle = idp.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                let outcome = match secret.read().await {
                    Err(problem) => Err(problem),
                    Ok(secret) => IdpClient::discover(settings.clone(), &secret)
                        .await
                        .map_err(|e| e.to_string()),
                };
                let wait = match outcome {
                    Ok(client) => {
                        if !matches!(*handle.state(), IdpState::Ready(_)) {
                            tracing::info!(issuer = %client.issuer(), "identity provider ready");
                        }
                        handle.set(IdpState::Ready(Arc::new(client)));
                        backoff = Duration::from_secs(1);
                        REFRESH_EVERY
                    }
                    Err(problem) => {
                        let was_ready = matches!(*handle.state(), IdpState::Ready(_));
                        if was_ready {
                            // A refresh failure keeps the last good provider.
                            tracing::warn!(%problem, "refreshing the identity provider failed; keeping the last discovery");
                        } else {
                            tracing::warn!(%problem, "the identity provider is not available");
                            handle.set(IdpState::Unavailable(problem));
                        }
                        let wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        wait
                    }
                };
                tokio::time::sleep(wait).await;
            }
        });
        idp
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn login_secrets_are_random_and_url_safe() {
        let a = LoginSecrets::random();
        let b = LoginSecrets::random();
        assert_ne!(a, b);
        for value in [&a.state, &a.nonce, &a.verifier] {
            assert!(value.len() >= 22, "{value}");
            assert!(
                value
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
                "{value}"
            );
        }
    }

    #[test]
    fn a_token_response_is_blamed_on_its_id_token_only_when_the_rest_parses() {
        let answer = |id_token: &str, extra: &str| {
            format!(
                r#"{{"access_token":"a","token_type":"Bearer","id_token":"{id_token}"{extra}}}"#
            )
        };
        assert!(only_the_id_token_is_malformed(answer("x.y", "").as_bytes()));
        assert!(!only_the_id_token_is_malformed(
            answer("x.y", r#","expires_in":"soon""#).as_bytes()
        ));
        assert!(!only_the_id_token_is_malformed(
            br#"{"access_token":"a","token_type":"Bearer"}"#
        ));
        assert!(!only_the_id_token_is_malformed(b"<h1>Welcome</h1>"));
    }

    #[test]
    fn jwt_payload_reads_the_middle_part_only_when_it_is_an_object() {
        use base64::Engine as _;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!("{}.{}.sig", enc("{}"), enc(r#"{"sub":"alice"}"#));
        assert_eq!(jwt_payload(&token).unwrap()["sub"], "alice");
        assert!(jwt_payload(&format!("a.{}.c", enc("[1]"))).is_none());
        assert!(jwt_payload("nodots").is_none());
    }
}
