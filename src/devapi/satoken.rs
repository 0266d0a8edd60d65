//! Service-account tokens of the embedded API: `TokenRequest`
//! (`POST .../serviceaccounts/<name>/token`) and the issuer's OIDC discovery
//! (`/.well-known/openid-configuration`, `/openid/v1/jwks`), so workloads under `portcullis dev`
//! can present a Kubernetes service-account JWT exactly as in a cluster.
//!
//! Tokens are ES256 JWTs with the claims kube-apiserver issues (`iss`, `sub`
//! `system:serviceaccount:<ns>:<name>`, `aud`, `exp`, `iat`, `nbf`, `jti`, `kubernetes.io`). The
//! signing key lives in the data directory (`sa-signing.key`, 0600) and is reused across restarts.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::KeyPair;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::{ApiError, Result};
use super::tls::{TlsError, write_private};

/// Shortest token lifetime kube-apiserver accepts.
pub const MIN_EXPIRATION: Duration = Duration::from_secs(600);
/// Longest lifetime handed out (longer requests are capped, as kube-apiserver does).
pub const MAX_EXPIRATION: Duration = Duration::from_secs(48 * 3600);
/// Lifetime when the request names none.
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(3600);

/// The service-account token issuer.
pub struct SaIssuer {
    issuer: String,
    key: EncodingKey,
    kid: String,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl SaIssuer {
    /// Load the signing key from `dir` (creating it there), or keep a fresh one in memory when
    /// `dir` is `None`. `issuer` is the `iss` of every token (the API's URL).
    pub fn load_or_create(dir: Option<&Path>, issuer: String) -> Result<Self, TlsError> {
        let key = match dir {
            Some(dir) => {
                let path = dir.join("sa-signing.key");
                match std::fs::read_to_string(&path) {
                    Ok(pem) => KeyPair::from_pem(&pem)?,
                    Err(_) => {
                        let k = KeyPair::generate()?;
                        write_private(&path, k.serialize_pem().as_bytes(), 0o600).map_err(
                            |source| TlsError::Io {
                                path: path.clone(),
                                source,
                            },
                        )?;
                        k
                    }
                }
            }
            None => KeyPair::generate()?,
        };
        // rcgen's default key is ECDSA P-256: the raw public key is 0x04 || x || y.
        let raw = key.public_key_raw();
        let (x, y) = raw
            .get(1..)
            .filter(|xy| xy.len() == 64)
            .map(|xy| xy.split_at(32))
            .ok_or(TlsError::Cert(rcgen::Error::KeyGenerationUnavailable))?;
        let kid = b64(&Sha256::digest(raw));
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y), "kid": kid, "use": "sig", "alg": "ES256"});
        let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())
            .map_err(|_| TlsError::Cert(rcgen::Error::CouldNotParseKeyPair))?;
        Ok(Self {
            issuer,
            key: encoding,
            kid,
            jwk,
        })
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `/.well-known/openid-configuration`.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// `/openid/v1/jwks`: the public key only.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }

    /// Answer a `TokenRequest` for the service account `sa` (the stored object).
    pub fn token_request(
        &self,
        sa: &Value,
        request: &Value,
        now: jiff::Timestamp,
    ) -> Result<Value> {
        let ns = sa
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = sa
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let uid = sa
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
        let audiences: Vec<String> = match spec.get("audiences") {
            None | Some(Value::Null) => vec![self.issuer.clone()],
            Some(Value::Array(a)) => {
                let mut out = Vec::new();
                for v in a {
                    match v.as_str() {
                        Some(s) if !s.is_empty() => out.push(s.to_string()),
                        _ => {
                            return Err(ApiError::invalid_field(
                                "authentication.k8s.io",
                                "TokenRequest",
                                name,
                                "spec.audiences",
                                "Invalid value: audiences must be non-empty strings",
                            ));
                        }
                    }
                }
                if out.is_empty() {
                    vec![self.issuer.clone()]
                } else {
                    out
                }
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "spec.audiences must be a list of strings",
                ));
            }
        };
        let requested = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION,
            Some(v) => Duration::from_secs(v.as_u64().ok_or_else(|| {
                ApiError::bad_request("spec.expirationSeconds must be a positive integer")
            })?),
        };
        if requested < MIN_EXPIRATION {
            return Err(ApiError::invalid_field(
                "authentication.k8s.io",
                "TokenRequest",
                name,
                "spec.expirationSeconds",
                format!(
                    "Invalid value: {}: may not specify a duration less than 10 minutes",
                    requested.as_secs()
                ),
            ));
        }
        let ttl = requested.min(MAX_EXPIRATION);
        let iat = now.as_second();
        let exp = iat + ttl.as_secs() as i64;
        let mut k8s = json!({"namespace": ns, "serviceaccount": {"name": name, "uid": uid}});
        if let Some(bound) = spec.get("boundObjectRef").filter(|b| b.is_object()) {
            let kind = bound
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase();
            if kind == "pod" || kind == "secret" || kind == "node" {
                k8s[kind] = json!({
                    "name": bound.get("name").cloned().unwrap_or(Value::Null),
                    "uid": bound.get("uid").cloned().unwrap_or(Value::Null),
                });
            }
        }
        let claims = json!({
            "iss": self.issuer,
            "sub": format!("system:serviceaccount:{ns}:{name}"),
            "aud": audiences,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": k8s,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|_| ApiError::internal("the token could not be signed"))?;
        let expires = jiff::Timestamp::from_second(exp)
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        let mut spec_out = spec;
        spec_out["audiences"] = json!(claims["aud"]);
        spec_out["expirationSeconds"] = json!(ttl.as_secs());
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": spec_out,
            "status": {"token": token, "expirationTimestamp": expires},
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode, jwk::Jwk};

    fn sa() -> Value {
        json!({"metadata": {"name": "bot", "namespace": "team-a", "uid": "u-1"}})
    }

    #[test]
    fn tokens_verify_against_the_published_key() {
        let issuer =
            SaIssuer::load_or_create(None, "https://127.0.0.1:6443".into()).expect("issuer");
        let now = jiff::Timestamp::now();
        let resp = issuer
            .token_request(
                &sa(),
                &json!({"spec": {"audiences": ["portcullis"], "expirationSeconds": 900}}),
                now,
            )
            .expect("token");
        let token = resp["status"]["token"].as_str().expect("token");
        let jwk: Jwk = serde_json::from_value(issuer.jwks()["keys"][0].clone()).expect("jwk");
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["portcullis"]);
        v.set_issuer(&["https://127.0.0.1:6443"]);
        let data = decode::<Value>(token, &DecodingKey::from_jwk(&jwk).expect("key"), &v)
            .expect("verifies");
        assert_eq!(data.claims["sub"], "system:serviceaccount:team-a:bot");
        assert_eq!(data.claims["kubernetes.io"]["serviceaccount"]["uid"], "u-1");
        assert_eq!(
            data.claims["exp"].as_i64().expect("exp") - data.claims["iat"].as_i64().expect("iat"),
            900
        );
        assert!(
            issuer.jwks()["keys"][0].get("d").is_none(),
            "no private member published"
        );
    }

    #[test]
    fn short_lifetimes_are_refused_and_long_ones_capped() {
        let issuer = SaIssuer::load_or_create(None, "https://x".into()).expect("issuer");
        let now = jiff::Timestamp::now();
        let e = issuer
            .token_request(&sa(), &json!({"spec": {"expirationSeconds": 60}}), now)
            .expect_err("too short");
        assert_eq!(e.code, 422);
        let r = issuer
            .token_request(
                &sa(),
                &json!({"spec": {"expirationSeconds": 10_000_000}}),
                now,
            )
            .expect("capped");
        assert_eq!(r["spec"]["expirationSeconds"], MAX_EXPIRATION.as_secs());
        assert_eq!(r["spec"]["audiences"], json!(["https://x"]));
    }

    #[test]
    fn the_key_survives_restarts() {
        let dir = tempfile::tempdir().expect("dir");
        let a = SaIssuer::load_or_create(Some(dir.path()), "https://x".into()).expect("a");
        let b = SaIssuer::load_or_create(Some(dir.path()), "https://x".into()).expect("b");
        assert_eq!(a.jwks(), b.jwks());
    }
}
