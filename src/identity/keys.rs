//! Token signing keys: generation, the signing-key Secret's contents, rotation, JWKS, and signing
//! and verifying Portcullis's own JWTs.
//!
//! ```text
//! controller (leader) ── KeySet::generate / rotate ──► to_secret_data ──► Secret `signing.secretName`
//! every replica ◄── from_secret_data ◄── the same Secret (watched)
//!   token service ── KeySet::sign(typ, claims) ──► compact JWS {alg, typ, kid}
//!   authn ── KeySet::verify(token, typ, now, validation)  (or verifier(kid, now) + jsonwebtoken)
//!   /.well-known/jwks.json ── KeySet::jwks(now)
//! ```
//!
//! Everything here is pure: time is a parameter (unix seconds) and the only side effect is the
//! randomness of new keys. The module knows no Kubernetes types; it reads and writes the plain
//! `BTreeMap<String, Vec<u8>>` the controller stores as the Secret's `data`.
//!
//! * Algorithms: ES256 (P-256 ECDSA, the default; signatures in the JOSE 64-byte `R||S` form),
//!   EdDSA (Ed25519) and RS256 (RSA 2048). RSA keys are 2048 bits because RS256 exists here for
//!   compatibility with verifiers that know nothing else, and 2048 is what those ecosystems
//!   publish; keys rotate monthly, and 3072-bit signing costs about three times as much.
//! * `kid` is the RFC 7638 JWK thumbprint of the public key: SHA-256 over the required public
//!   members in lexicographic order, base64url without padding (43 characters). It is stable for a
//!   key, and a stored `kid` that does not match its key is refused.
//! * Rotation: [`KeySet::rotate`] makes a new current key when the current one is `rotateEvery`
//!   old or the configured algorithm changed. The old current key is kept as a previous key until
//!   `retire_at = now + max_token_lifetime`: it is still accepted and published until then, and
//!   dropped at the next rotation after that.
//! * The algorithm used to verify always comes from the key found by `kid`, never from the token
//!   header; [`KeySet::verify`] also refuses `crit`, embedded keys (`jwk`, `jku`, `x5u`, `x5c`) and
//!   a `typ` other than the one expected.
//! * Private keys never appear in `Debug` or `Display` output or in errors: they live in a
//!   redacting wrapper, and errors about stored keys name the key (`current`, `previous[1]`) and the
//!   problem only.
//!
//! # Secret format
//!
//! One entry, [`SECRET_ENTRY`] (`keys.json`), at most [`MAX_SECRET_ENTRY_BYTES`]; other entries
//! are ignored. Version 1:
//!
//! ```json
//! {
//!   "version": 1,
//!   "current": {
//!     "kid": "<RFC 7638 thumbprint>",
//!     "alg": "ES256",
//!     "created": 1767225600,
//!     "privateKey": "-----BEGIN PRIVATE KEY-----\n...PKCS#8...\n-----END PRIVATE KEY-----\n"
//!   },
//!   "previous": [
//!     {"kid": "...", "alg": "ES256", "created": 1764633600, "retireAt": 1767276000, "privateKey": "..."}
//!   ]
//! }
//! ```
//!
//! `alg` uses the settings spelling (`ES256`, `EdDSA`, `RS256`); times are unix seconds;
//! `privateKey` is one unencrypted PKCS#8 PEM block. Reading is strict: unknown fields, an unknown
//! `version`, more than [`MAX_KEYS`] keys, a key that does not parse as its `alg`, an RSA modulus
//! outside 2048–4096 bits, a `kid` that is not the key's thumbprint, a repeated `kid`, or
//! `retireAt` not after `created` refuse the whole Secret.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature as aws_sig;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{DecodingKey, EncodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The Secret `data` entry holding the key set.
pub const SECRET_ENTRY: &str = "keys.json";
/// The version of the `keys.json` format this module reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The largest `keys.json` accepted.
pub const MAX_SECRET_ENTRY_BYTES: usize = 64 * 1024;
/// The most keys (current + previous) a set may hold.
pub const MAX_KEYS: usize = 16;
/// The largest token [`KeySet::verify`] looks at.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

const MAX_PEM_BYTES: usize = 8 * 1024;
const RSA_BITS_MIN: usize = 2048;
const RSA_BITS_MAX: usize = 4096;

/// A signing algorithm Portcullis can sign with (setting `signing.algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256 (`ES256`).
    #[default]
    Es256,
    /// Ed25519 (`EdDSA`).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 on a 2048-bit key (`RS256`).
    Rs256,
}

impl Algorithm {
    /// The JOSE `alg` value, which is also the settings spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Rs256 => "RS256",
        }
    }

    /// The same algorithm as `jsonwebtoken` names it.
    pub const fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }

    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Algorithm::Es256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::EdDsa => &rcgen::PKCS_ED25519,
            Algorithm::Rs256 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;

    /// Exact, case-sensitive JOSE spelling: `ES256`, `EdDSA` or `RS256`.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "ES256" => Ok(Algorithm::Es256),
            "EdDSA" => Ok(Algorithm::EdDsa),
            "RS256" => Ok(Algorithm::Rs256),
            _ => Err(KeyError::UnknownAlgorithm {
                given: s.chars().take(32).collect(),
            }),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong with keys, the signing Secret, or a token. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `signing.algorithm` (or a stored `alg`) is not one we sign with.
    #[error("unknown signing algorithm {given:?}; expected ES256, EdDSA or RS256")]
    UnknownAlgorithm {
        /// The value given, cut to 32 characters.
        given: String,
    },
    /// The crypto library could not make a key.
    #[error("generating an {alg} signing key")]
    Generate {
        /// The algorithm asked for.
        alg: Algorithm,
        /// The library's error (it names no key bytes).
        #[source]
        source: rcgen::Error,
    },
    /// The Secret has no `keys.json`.
    #[error("the signing-key Secret has no {SECRET_ENTRY} entry")]
    MissingEntry,
    /// `keys.json` is over the size cap.
    #[error("{SECRET_ENTRY} is {size} bytes, more than the {max} allowed")]
    SecretTooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// `keys.json` is not JSON of the expected shape. Only the position is kept: the parser's own
    /// message may quote the offending value, which could be key material.
    #[error(
        "{SECRET_ENTRY} does not match format version {FORMAT_VERSION} at `{path}` (line {line}, column {column})"
    )]
    MalformedSecret {
        /// Where in the document, e.g. `previous[0].created`.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// `keys.json` has a `version` this build does not know.
    #[error("{SECRET_ENTRY} has format version {found}; this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: u64,
    },
    /// More keys than [`MAX_KEYS`].
    #[error("{count} signing keys, more than the {MAX_KEYS} allowed")]
    TooManyKeys {
        /// How many there are (or would be).
        count: usize,
    },
    /// One stored key is unusable.
    #[error("signing key {key}: {problem}")]
    InvalidKey {
        /// `current` or `previous[i]`.
        key: String,
        /// What is wrong, in words that quote nothing from the key.
        problem: &'static str,
    },
    /// Two keys share a `kid`.
    #[error("two signing keys have the kid {kid}")]
    DuplicateKid {
        /// The public thumbprint.
        kid: String,
    },
    /// `sign` was given claims that are not a JSON object.
    #[error("JWT claims must be a JSON object")]
    ClaimsNotObject,
    /// The crypto library refused to sign (or the claims did not serialize).
    #[error("signing a token failed")]
    Sign,
    /// [`KeySet::verify`] refused a token.
    #[error("token refused")]
    TokenRejected(#[source] TokenRejection),
}

/// Why [`KeySet::verify`] refused a token. Nothing from the token is quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not three base64url parts with a JSON header naming a known `alg`.
    #[error("token is not a compact JWS")]
    Malformed,
    /// `typ` is missing or not the expected one.
    #[error("token typ is not {expected}")]
    WrongType {
        /// The expected `typ`.
        expected: String,
    },
    /// The header has `crit`, which we never send and do not understand.
    #[error("token header has crit")]
    CriticalHeader,
    /// The header carries a key or points at one (`jwk`, `jku`, `x5u`, `x5c`).
    #[error("token header carries a key or key URL")]
    EmbeddedKey,
    /// No `kid` in the header.
    #[error("token header has no kid")]
    MissingKid,
    /// No accepted key has the token's `kid`.
    #[error("no accepted signing key has the token's kid")]
    UnknownKey,
    /// The header's `alg` is not the key's.
    #[error("token alg is not {expected}, the algorithm of its key")]
    AlgorithmMismatch {
        /// The key's algorithm.
        expected: Algorithm,
    },
    /// The signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// A required claim is absent.
    #[error("token has no {claim} claim")]
    MissingClaim {
        /// The claim's name.
        claim: String,
    },
    /// A claim has the wrong JSON type (e.g. `"exp": "never"`).
    #[error("token claim {claim} has the wrong type")]
    InvalidClaim {
        /// The claim's name.
        claim: String,
    },
    /// `iss`, `aud` or `sub` is not the expected value.
    #[error("token claim {claim} is not the expected value")]
    ClaimMismatch {
        /// The claim's name.
        claim: &'static str,
    },
    /// `exp` has come (no leeway: a token never outlives its `exp`).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token was issued in the future")]
    IssuedInFuture,
}

/// A PKCS#8 PEM private key that prints as `[redacted]`.
#[derive(Clone)]
struct PrivateKeyPem(String);

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem([redacted])")
    }
}

/// A parsed private key, ready to sign. Parsing a PKCS#8 key (with aws-lc's pairwise
/// consistency check) costs several times more than one signature, so it is done once per key
/// rather than per token, which is what `jsonwebtoken::encode` would do.
enum Signer {
    Ecdsa(aws_sig::EcdsaKeyPair),
    Ed25519(aws_sig::Ed25519KeyPair),
    Rsa(aws_sig::RsaKeyPair),
}

impl Signer {
    fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<Self, &'static str> {
        let invalid = |_| "privateKey is not a PKCS#8 private key for its alg";
        Ok(match alg {
            Algorithm::Es256 => Signer::Ecdsa(
                aws_sig::EcdsaKeyPair::from_pkcs8(&aws_sig::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(invalid)?,
            ),
            Algorithm::EdDsa => {
                Signer::Ed25519(aws_sig::Ed25519KeyPair::from_pkcs8(der).map_err(invalid)?)
            }
            Algorithm::Rs256 => Signer::Rsa(aws_sig::RsaKeyPair::from_pkcs8(der).map_err(invalid)?),
        })
    }

    /// The JWS signature of `message` (fixed-size `r || s` for ECDSA, as JOSE wants).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match self {
            Signer::Ecdsa(pair) => pair
                .sign(&rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Signer::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&aws_sig::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
        }
    }
}

/// One signing key: its private half (redacted, and parsed once for signing), a ready-made
/// `jsonwebtoken` public key and its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    created: i64,
    private_key: PrivateKeyPem,
    signer: std::sync::Arc<Signer>,
    decoding: DecodingKey,
    jwk: Value,
    /// An HMAC key derived from the private key (HKDF-SHA256), for values only Portcullis signs
    /// and checks (signed sign-in URLs): every replica derives the same one.
    mac: MacKey,
}

/// A 256-bit HMAC key, redacted in `Debug`.
#[derive(Clone)]
pub struct MacKey([u8; 32]);

impl MacKey {
    /// HMAC-SHA256 of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 32] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
        let tag = aws_lc_rs::hmac::sign(&key, message);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Whether `tag` is the HMAC-SHA256 of `message` (constant time).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
        aws_lc_rs::hmac::verify(&key, message, tag).is_ok()
    }

    fn derive(private_der: &[u8]) -> Self {
        let salt = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, b"portcullis");
        let prk = salt.extract(private_der);
        let mut out = [0u8; 32];
        let filled = prk
            .expand(&[b"portcullis mac v1"], aws_lc_rs::hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out));
        if filled.is_err() {
            // HKDF-SHA256 always yields 32 bytes; keep a usable key derived by hashing anyway.
            out = Sha256::digest(private_der).into();
        }
        Self(out)
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}

impl SigningKey {
    fn generate(alg: Algorithm, created: i64) -> Result<Self, KeyError> {
        let pair = match alg {
            Algorithm::Rs256 => {
                rcgen::KeyPair::generate_rsa_for(alg.rcgen(), rcgen::RsaKeySize::_2048)
            }
            Algorithm::Es256 | Algorithm::EdDsa => rcgen::KeyPair::generate_for(alg.rcgen()),
        }
        .map_err(|source| KeyError::Generate { alg, source })?;
        Self::from_key_pair(&pair, alg, created).map_err(|problem| KeyError::InvalidKey {
            key: "new".into(),
            problem,
        })
    }

    /// Parses one stored PEM; the error is a fixed description that quotes nothing.
    fn from_pem(pem: &str, alg: Algorithm, created: i64) -> Result<Self, &'static str> {
        if pem.len() > MAX_PEM_BYTES {
            return Err("privateKey is larger than 8192 bytes");
        }
        let text = pem.trim();
        if !text.starts_with("-----BEGIN PRIVATE KEY-----")
            || !text.ends_with("-----END PRIVATE KEY-----")
            || text.matches("-----BEGIN").count() != 1
        {
            return Err("privateKey is not exactly one PEM block labelled PRIVATE KEY (PKCS#8)");
        }
        let pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(text, alg.rcgen())
            .map_err(|_| "privateKey is not a PKCS#8 private key for its alg")?;
        Self::from_key_pair(&pair, alg, created)
    }

    fn from_key_pair(
        pair: &rcgen::KeyPair,
        alg: Algorithm,
        created: i64,
    ) -> Result<Self, &'static str> {
        // Re-encoding gives one canonical PEM whatever whitespace the Secret held.
        let pem = pair.serialize_pem();
        let raw = pair.public_key_raw();
        let signer = Signer::from_pkcs8(alg, pair.serialized_der())?;
        let mac = MacKey::derive(pair.serialized_der());
        let (decoding, public) = match alg {
            Algorithm::Es256 => {
                let point = match raw.split_first() {
                    Some((4, point)) if point.len() == 64 => point,
                    _ => return Err("public key is not an uncompressed P-256 point"),
                };
                let (x, y) = point.split_at(32);
                (
                    DecodingKey::from_ec_der(raw),
                    PublicParams::Ec {
                        x: b64(x),
                        y: b64(y),
                    },
                )
            }
            Algorithm::EdDsa => {
                if raw.len() != 32 {
                    return Err("public key is not 32 bytes of Ed25519");
                }
                (
                    DecodingKey::from_ed_der(raw),
                    PublicParams::Okp { x: b64(raw) },
                )
            }
            Algorithm::Rs256 => {
                let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|_| "privateKey is not an RSA private key")?;
                let jwk = Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::RS256)
                    .map_err(|_| "privateKey is not an RSA private key")?;
                let AlgorithmParameters::RSA(params) = jwk.algorithm else {
                    return Err("privateKey is not an RSA private key");
                };
                let n = URL_SAFE_NO_PAD
                    .decode(&params.n)
                    .map_err(|_| "RSA modulus is not base64url")?;
                let e = URL_SAFE_NO_PAD
                    .decode(&params.e)
                    .map_err(|_| "RSA exponent is not base64url")?;
                if !(RSA_BITS_MIN..=RSA_BITS_MAX).contains(&bit_len(&n)) {
                    return Err("RSA modulus is not between 2048 and 4096 bits");
                }
                (
                    DecodingKey::from_rsa_raw_components(&n, &e),
                    PublicParams::Rsa {
                        n: params.n,
                        e: params.e,
                    },
                )
            }
        };
        let kid = public.thumbprint();
        let jwk = public.jwk(&kid, alg);
        Ok(SigningKey {
            kid,
            alg,
            created,
            private_key: PrivateKeyPem(pem),
            signer: std::sync::Arc::new(signer),
            decoding,
            jwk,
            mac,
        })
    }

    /// The HMAC key derived from this key.
    pub fn mac_key(&self) -> &MacKey {
        &self.mac
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// When the key was made (unix seconds).
    pub fn created(&self) -> i64 {
        self.created
    }

    /// The public key, for `jsonwebtoken::decode`.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The public JWK (`kty`, `crv`, `x`, `y` / `n`, `e`; `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The compact JWS (RFC 7515 §7.1) of `header` and `claims`, signed with this key.
    fn jws(&self, header: &impl serde::Serialize, claims: &Value) -> Result<String, KeyError> {
        let header = serde_json::to_vec(header).map_err(|_| KeyError::Sign)?;
        let claims = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
        let mut token = String::with_capacity((header.len() + claims.len()) * 4 / 3 + 100);
        URL_SAFE_NO_PAD.encode_string(&header, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let signature = self.signer.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

/// The protected header of every token we sign.
#[derive(serde::Serialize)]
struct JwsHeader<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'a str,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created", &self.created)
            .field("private_key", &self.private_key)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} key {}", self.alg, self.kid)
    }
}

/// The public members of a key, enough for a JWK and its thumbprint.
enum PublicParams {
    Ec { x: String, y: String },
    Okp { x: String },
    Rsa { n: String, e: String },
}

impl PublicParams {
    /// RFC 7638: the required members in lexicographic order, no whitespace. The values are
    /// base64url, so they need no JSON escaping.
    fn thumbprint(&self) -> String {
        let canonical = match self {
            PublicParams::Ec { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            PublicParams::Okp { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            PublicParams::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        };
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    fn jwk(&self, kid: &str, alg: Algorithm) -> Value {
        let mut jwk = match self {
            PublicParams::Ec { x, y } => json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            PublicParams::Okp { x } => json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            PublicParams::Rsa { n, e } => json!({"kty": "RSA", "n": n, "e": e}),
        };
        if let Some(members) = jwk.as_object_mut() {
            members.insert("kid".into(), kid.into());
            members.insert("alg".into(), alg.as_str().into());
            members.insert("use".into(), "sig".into());
        }
        jwk
    }
}

/// A key that is no longer used to sign but still verifies (and is published) until `retire_at`.
#[derive(Clone, Debug)]
pub struct PreviousKey {
    key: SigningKey,
    retire_at: i64,
}

impl PreviousKey {
    /// The key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// From this time on (unix seconds) the key is neither accepted nor published.
    pub fn retire_at(&self) -> i64 {
        self.retire_at
    }
}

/// The current signing key and the previous keys still accepted.
#[derive(Clone, Debug)]
pub struct KeySet {
    current: SigningKey,
    previous: Vec<PreviousKey>,
}

impl fmt::Display for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "current {}, {} previous",
            self.current,
            self.previous.len()
        )
    }
}

impl KeySet {
    /// A set with one new key, created `now`.
    pub fn generate(alg: Algorithm, now: i64) -> Result<KeySet, KeyError> {
        Ok(KeySet {
            current: SigningKey::generate(alg, now)?,
            previous: Vec::new(),
        })
    }

    /// Reads the Secret's `data` (format in the module docs). Strict: any problem refuses the
    /// whole set, so a damaged Secret is reported rather than half used.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<KeySet, KeyError> {
        let raw = data.get(SECRET_ENTRY).ok_or(KeyError::MissingEntry)?;
        if raw.len() > MAX_SECRET_ENTRY_BYTES {
            return Err(KeyError::SecretTooLarge {
                size: raw.len(),
                max: MAX_SECRET_ENTRY_BYTES,
            });
        }
        // The version first, so a newer layout is reported as such and not as a shape error.
        let version: VersionOnly = parse_json(raw)?;
        if version.version != u64::from(FORMAT_VERSION) {
            return Err(KeyError::UnsupportedVersion {
                found: version.version,
            });
        }
        let file: KeysFile = parse_json(raw)?;
        let count = 1 + file.previous.len();
        if count > MAX_KEYS {
            return Err(KeyError::TooManyKeys { count });
        }

        let c = &file.current;
        let current = load_stored("current".into(), &c.kid, &c.alg, c.created, &c.private_key)?;
        let mut previous = Vec::with_capacity(file.previous.len());
        for (i, stored) in file.previous.iter().enumerate() {
            let name = format!("previous[{i}]");
            if stored.retire_at <= stored.created {
                return Err(KeyError::InvalidKey {
                    key: name,
                    problem: "retireAt is not after created",
                });
            }
            let key = load_stored(
                name,
                &stored.kid,
                &stored.alg,
                stored.created,
                &stored.private_key,
            )?;
            previous.push(PreviousKey {
                key,
                retire_at: stored.retire_at,
            });
        }
        let set = KeySet { current, previous };
        set.check_unique_kids()?;
        Ok(set)
    }

    /// The Secret's `data`: one `keys.json` entry, pretty JSON in a fixed member order, so the
    /// same set always gives the same bytes.
    pub fn to_secret_data(&self) -> BTreeMap<String, Vec<u8>> {
        let stored = |key: &SigningKey| {
            json!({
                "kid": key.kid,
                "alg": key.alg.as_str(),
                "created": key.created,
                "privateKey": key.private_key.0,
            })
        };
        let previous: Vec<Value> = self
            .previous
            .iter()
            .map(|p| {
                json!({
                    "kid": p.key.kid,
                    "alg": p.key.alg.as_str(),
                    "created": p.key.created,
                    "retireAt": p.retire_at,
                    "privateKey": p.key.private_key.0,
                })
            })
            .collect();
        let file = json!({
            "version": FORMAT_VERSION,
            "current": stored(&self.current),
            "previous": previous,
        });
        BTreeMap::from([(SECRET_ENTRY.to_owned(), format!("{file:#}\n").into_bytes())])
    }

    /// `Some(new set)` when a rotation is due at `now`: the current key is at least
    /// `rotate_every` old, or `alg` differs from its algorithm. The new set has a new current key
    /// created `now`; the old current key becomes a previous key with
    /// `retire_at = now + max_token_lifetime`, and previous keys whose `retire_at` has come are
    /// dropped. `None` when nothing is due.
    ///
    /// `max_token_lifetime` must cover the longest-lived token the old key may have signed plus
    /// the verification leeway, so those tokens stay verifiable until they expire.
    pub fn rotate(
        &self,
        alg: Algorithm,
        now: i64,
        rotate_every: Duration,
        max_token_lifetime: Duration,
    ) -> Result<Option<KeySet>, KeyError> {
        if alg == self.current.alg && now < self.next_rotation(rotate_every) {
            return Ok(None);
        }
        let retire_at = now.saturating_add(seconds(max_token_lifetime));
        let mut previous = Vec::with_capacity(self.previous.len() + 1);
        if retire_at > now {
            previous.push(PreviousKey {
                key: self.current.clone(),
                retire_at,
            });
        }
        previous.extend(self.previous.iter().filter(|p| p.retire_at > now).cloned());
        let count = previous.len() + 1;
        if count > MAX_KEYS {
            return Err(KeyError::TooManyKeys { count });
        }
        let set = KeySet {
            current: SigningKey::generate(alg, now)?,
            previous,
        };
        set.check_unique_kids()?;
        Ok(Some(set))
    }

    /// When [`rotate`](Self::rotate) will next return `Some` for the same algorithm (unix seconds):
    /// the current key's `created + rotate_every`. A changed algorithm is due at once.
    pub fn next_rotation(&self, rotate_every: Duration) -> i64 {
        self.current.created.saturating_add(seconds(rotate_every))
    }

    /// The key new tokens are signed with.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// The previous keys, newest first, including any whose `retire_at` has passed but that have
    /// not been dropped by a rotation yet.
    pub fn previous(&self) -> &[PreviousKey] {
        &self.previous
    }

    /// Signs `claims` (a JSON object) with the current key: header `{typ, alg, kid}`, compact JWS.
    pub fn sign(&self, typ: &str, claims: &Value) -> Result<String, KeyError> {
        if !claims.is_object() {
            return Err(KeyError::ClaimsNotObject);
        }
        self.current.jws(
            &JwsHeader {
                alg: self.current.alg.as_str(),
                kid: &self.current.kid,
                typ,
            },
            claims,
        )
    }

    /// The public key and algorithm for `kid` at `now`: the current key, or a previous key
    /// before its `retire_at`. Verify with exactly this algorithm
    /// (`Validation::new(alg)`); the token header's `alg` must never choose it.
    pub fn verifier(&self, kid: &str, now: i64) -> Option<(&DecodingKey, jsonwebtoken::Algorithm)> {
        self.accepted(now)
            .find(|key| key.kid == kid)
            .map(|key| (&key.decoding, key.alg.to_jwt()))
    }

    /// The HMAC key of the accepted key `kid` at `now` (current, or previous and not retired).
    pub fn mac_key(&self, kid: &str, now: i64) -> Option<&MacKey> {
        self.accepted(now)
            .find(|key| key.kid == kid)
            .map(|key| &key.mac)
    }

    /// The JWKS document at `now`: the current key and the previous keys not yet retired, public
    /// members only.
    pub fn jwks(&self, now: i64) -> Value {
        let keys: Vec<Value> = self.accepted(now).map(|key| key.jwk.clone()).collect();
        json!({ "keys": keys })
    }

    /// Verifies one of our own tokens and returns its claims.
    ///
    /// The key comes from the header's `kid` via [`verifier`](Self::verifier) and the algorithm
    /// from that key. The header must have `typ` equal to `expected_typ` (exact match: we only
    /// verify what we signed), no `crit`, and no `jwk`/`jku`/`x5u`/`x5c`. `validation` supplies
    /// issuer, audience, subject, required claims and leeway; its algorithm list is replaced by
    /// the key's, and time is judged against `now`: `exp` is required and must be an integer,
    /// `nbf` and `iat`, when present, must be integers not in the future.
    pub fn verify(
        &self,
        token: &str,
        expected_typ: &str,
        now: i64,
        validation: &Validation,
    ) -> Result<Value, KeyError> {
        self.verify_inner(token, expected_typ, now, validation)
            .map_err(KeyError::TokenRejected)
    }

    fn verify_inner(
        &self,
        token: &str,
        expected_typ: &str,
        now: i64,
        validation: &Validation,
    ) -> Result<Value, TokenRejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRejection::TooLarge);
        }
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(TokenRejection::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
        if header.typ.as_deref() != Some(expected_typ) {
            return Err(TokenRejection::WrongType {
                expected: expected_typ.to_owned(),
            });
        }
        if header.crit.is_some() {
            return Err(TokenRejection::CriticalHeader);
        }
        if header.jwk.is_some()
            || header.jku.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return Err(TokenRejection::EmbeddedKey);
        }
        let kid = header.kid.as_deref().ok_or(TokenRejection::MissingKid)?;
        let key = self
            .accepted(now)
            .find(|key| key.kid == kid)
            .ok_or(TokenRejection::UnknownKey)?;
        if header.alg != key.alg.to_jwt() {
            return Err(TokenRejection::AlgorithmMismatch { expected: key.alg });
        }

        let mut rules = validation.clone();
        rules.algorithms = vec![key.alg.to_jwt()];
        // jsonwebtoken reads the wall clock; time is judged below against `now` instead.
        rules.validate_exp = false;
        rules.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Value>(token, &key.decoding, &rules)
            .map_err(|e| rejection(e.kind()))?
            .claims;

        let leeway = i64::try_from(validation.leeway).unwrap_or(i64::MAX);
        let exp = numeric_date(&claims, "exp")?.ok_or(TokenRejection::MissingClaim {
            claim: "exp".into(),
        })?;
        // The leeway is for clocks that differ between replicas, and only ever delays when a
        // token starts to count: a token we signed never outlives its `exp`, so a lifetime we
        // promise (a session no longer than its id_token) is the one enforced.
        if now >= exp {
            return Err(TokenRejection::Expired);
        }
        if numeric_date(&claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(TokenRejection::NotYetValid);
        }
        if numeric_date(&claims, "iat")?.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(TokenRejection::IssuedInFuture);
        }
        Ok(claims)
    }

    /// The keys accepted at `now`: current first, then previous keys before `retire_at`.
    fn accepted(&self, now: i64) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(
            self.previous
                .iter()
                .filter(move |p| now < p.retire_at)
                .map(|p| &p.key),
        )
    }

    fn check_unique_kids(&self) -> Result<(), KeyError> {
        let mut seen = BTreeSet::new();
        let all = std::iter::once(&self.current).chain(self.previous.iter().map(|p| &p.key));
        for key in all {
            if !seen.insert(key.kid.as_str()) {
                return Err(KeyError::DuplicateKid {
                    kid: key.kid.clone(),
                });
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(rename = "version")]
    _version: u64,
    current: StoredKey,
    #[serde(default)]
    previous: Vec<StoredPreviousKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StoredKey {
    kid: String,
    alg: String,
    created: i64,
    private_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StoredPreviousKey {
    kid: String,
    alg: String,
    created: i64,
    retire_at: i64,
    private_key: String,
}

fn load_stored(
    name: String,
    kid: &str,
    alg: &str,
    created: i64,
    private_key: &str,
) -> Result<SigningKey, KeyError> {
    let invalid = |problem| KeyError::InvalidKey {
        key: name.clone(),
        problem,
    };
    let alg = Algorithm::from_str(alg).map_err(|_| invalid("alg is not ES256, EdDSA or RS256"))?;
    if created < 0 {
        return Err(invalid("created is negative"));
    }
    let key = SigningKey::from_pem(private_key, alg, created).map_err(invalid)?;
    if key.kid != kid {
        return Err(invalid("kid is not the RFC 7638 thumbprint of the key"));
    }
    Ok(key)
}

/// Parses `raw` as one JSON document; errors keep the position and path, never the parser's
/// message (which may quote a value).
fn parse_json<'a, T: Deserialize<'a>>(raw: &'a [u8]) -> Result<T, KeyError> {
    let malformed = |path: String, e: &serde_json::Error| KeyError::MalformedSecret {
        path,
        line: e.line(),
        column: e.column(),
    };
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| malformed(e.path().to_string(), e.inner()))?;
    de.end().map_err(|e| malformed(".".into(), &e))?;
    Ok(value)
}

fn rejection(kind: &JwtErrorKind) -> TokenRejection {
    match kind {
        JwtErrorKind::InvalidSignature => TokenRejection::BadSignature,
        JwtErrorKind::MissingRequiredClaim(claim) => TokenRejection::MissingClaim {
            claim: claim.clone(),
        },
        JwtErrorKind::InvalidClaimFormat(claim) => TokenRejection::InvalidClaim {
            claim: claim.clone(),
        },
        JwtErrorKind::InvalidIssuer => TokenRejection::ClaimMismatch { claim: "iss" },
        JwtErrorKind::InvalidAudience => TokenRejection::ClaimMismatch { claim: "aud" },
        JwtErrorKind::InvalidSubject => TokenRejection::ClaimMismatch { claim: "sub" },
        JwtErrorKind::ExpiredSignature => TokenRejection::Expired,
        JwtErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        _ => TokenRejection::Malformed,
    }
}

/// An integer NumericDate claim; `Ok(None)` when absent, an error for any other JSON type.
fn numeric_date(claims: &Value, name: &str) -> Result<Option<i64>, TokenRejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(TokenRejection::InvalidClaim {
            claim: name.to_owned(),
        }),
    }
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Bits in a big-endian unsigned integer, ignoring leading zeros.
fn bit_len(be: &[u8]) -> usize {
    let mut digits = be.iter().skip_while(|b| **b == 0);
    match digits.next() {
        None => 0,
        Some(top) => (digits.count() + 1) * 8 - top.leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use jsonwebtoken::Header;
    use jsonwebtoken::jwk::{JwkSet, ThumbprintHash};

    use super::*;

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600;
    /// 2100-01-01T00:00:00Z: far enough for checks that read the wall clock.
    const FAR: i64 = 4_102_444_800;
    const ALL: [Algorithm; 3] = [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256];
    const ISS: &str = "https://auth.example.com";
    const AUD: &str = "portcullis";

    // The key set lives behind an ArcSwap shared by every request task.
    const _: fn() = || {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<KeySet>();
    };

    /// One generated set per algorithm at `T0` (RSA generation is slow in debug builds).
    fn base(alg: Algorithm) -> KeySet {
        static SETS: [OnceLock<KeySet>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let slot = ALL.iter().position(|a| *a == alg).unwrap();
        SETS[slot]
            .get_or_init(|| KeySet::generate(alg, T0).unwrap())
            .clone()
    }

    fn claims(iat: i64, exp: i64) -> Value {
        json!({"iss": ISS, "sub": "team-a/ci", "aud": AUD, "iat": iat, "exp": exp, "jti": "j-1"})
    }

    fn validation() -> Validation {
        let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_issuer(&[ISS]);
        v.set_audience(&[AUD]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        v
    }

    fn rejection_of(result: Result<Value, KeyError>) -> TokenRejection {
        match result {
            Err(KeyError::TokenRejected(reason)) => reason,
            other => panic!("expected a token rejection, got {other:?}"),
        }
    }

    /// Signs with the current key but a header of the test's choosing.
    fn sign_with_header(set: &KeySet, header: &Header, claims: &Value) -> String {
        set.current.jws(header, claims).unwrap()
    }

    fn our_header(set: &KeySet, typ: &str) -> Header {
        let mut h = Header::new(set.current().alg().to_jwt());
        h.typ = Some(typ.into());
        h.kid = Some(set.current().kid().into());
        h
    }

    fn segment(json: &Value) -> String {
        b64(json.to_string().as_bytes())
    }

    fn keys_json(set: &KeySet) -> Value {
        serde_json::from_slice(&set.to_secret_data()[SECRET_ENTRY]).unwrap()
    }

    fn data_of(doc: &Value) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(SECRET_ENTRY.to_owned(), serde_json::to_vec(doc).unwrap())])
    }

    fn kids(jwks: &Value) -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The base64 lines inside a PEM block.
    fn pem_body_lines(pem: &str) -> Vec<&str> {
        pem.lines()
            .filter(|l| !l.starts_with("-----") && !l.is_empty())
            .collect()
    }

    #[test]
    fn algorithm_uses_the_settings_spelling() {
        for (text, alg) in [
            ("ES256", Algorithm::Es256),
            ("EdDSA", Algorithm::EdDsa),
            ("RS256", Algorithm::Rs256),
        ] {
            assert_eq!(text.parse::<Algorithm>().unwrap(), alg);
            assert_eq!(alg.to_string(), text);
        }
        assert_eq!(Algorithm::default(), Algorithm::Es256);
        for bad in ["es256", "EDDSA", "HS256", "ES384", "none", ""] {
            let e = bad.parse::<Algorithm>().unwrap_err();
            assert!(
                matches!(&e, KeyError::UnknownAlgorithm { given } if given == bad),
                "{e}"
            );
        }
        let long = "X".repeat(10_000);
        let e = long.parse::<Algorithm>().unwrap_err().to_string();
        assert!(e.len() < 120, "the error quotes at most 32 characters: {e}");
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 §3.1.
        let rfc = PublicParams::Rsa {
            n: "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
            e: "AQAB".into(),
        };
        assert_eq!(
            rfc.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );

        // jsonwebtoken's own thumbprint agrees for every algorithm we generate.
        for alg in ALL {
            let set = base(alg);
            let jwk: Jwk = serde_json::from_value(set.current().public_jwk().clone()).unwrap();
            assert_eq!(
                jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
                set.current().kid()
            );
            assert_eq!(set.current().kid().len(), 43, "{alg}");
        }
    }

    #[test]
    fn secret_data_round_trips_for_each_algorithm() {
        for alg in ALL {
            let first = base(alg);
            let rotated = first
                .rotate(
                    alg,
                    T0 + 10,
                    Duration::from_secs(10),
                    Duration::from_secs(3600),
                )
                .unwrap()
                .unwrap();
            let data = rotated.to_secret_data();
            assert_eq!(data.keys().collect::<Vec<_>>(), vec![SECRET_ENTRY]);

            let loaded = KeySet::from_secret_data(&data).unwrap();
            assert_eq!(loaded.current().kid(), rotated.current().kid());
            assert_eq!(loaded.current().alg(), alg);
            assert_eq!(loaded.current().created(), T0 + 10);
            assert_eq!(loaded.previous().len(), 1);
            assert_eq!(loaded.previous()[0].key().kid(), first.current().kid());
            assert_eq!(loaded.previous()[0].key().created(), T0);
            assert_eq!(loaded.previous()[0].retire_at(), T0 + 10 + 3600);
            assert_eq!(loaded.to_secret_data(), data, "{alg}: the layout is stable");
            assert_eq!(loaded.jwks(T0 + 10), rotated.jwks(T0 + 10));

            // Tokens signed before the round trip verify after it, by either key.
            let c = claims(T0 + 10, FAR);
            let new = rotated.sign("at+jwt", &c).unwrap();
            let old = first.sign("at+jwt", &c).unwrap();
            for token in [new, old] {
                assert_eq!(
                    loaded
                        .verify(&token, "at+jwt", T0 + 11, &validation())
                        .unwrap(),
                    c
                );
            }
        }
    }

    #[test]
    fn secret_data_has_the_documented_layout() {
        let set = base(Algorithm::Es256)
            .rotate(
                Algorithm::Es256,
                T0 + 5,
                Duration::ZERO,
                Duration::from_secs(60),
            )
            .unwrap()
            .unwrap();
        let doc = keys_json(&set);
        let members = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(members(&doc), ["version", "current", "previous"]);
        assert_eq!(doc["version"], 1);
        assert_eq!(
            members(&doc["current"]),
            ["kid", "alg", "created", "privateKey"]
        );
        assert_eq!(doc["current"]["kid"], set.current().kid());
        assert_eq!(doc["current"]["alg"], "ES256");
        assert_eq!(doc["current"]["created"], T0 + 5);
        let pem = doc["current"]["privateKey"].as_str().unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{}",
            &pem[..30]
        );
        assert!(pem.trim_end().ends_with("-----END PRIVATE KEY-----"));
        let previous = &doc["previous"][0];
        assert_eq!(
            members(previous),
            ["kid", "alg", "created", "retireAt", "privateKey"]
        );
        assert_eq!(previous["kid"], base(Algorithm::Es256).current().kid());
        assert_eq!(previous["retireAt"], T0 + 65);
    }

    #[test]
    fn damaged_secret_data_is_refused() {
        let set = base(Algorithm::Es256)
            .rotate(
                Algorithm::Es256,
                T0 + 5,
                Duration::ZERO,
                Duration::from_secs(60),
            )
            .unwrap()
            .unwrap();
        let good = keys_json(&set);
        let edited = |edit: &dyn Fn(&mut Value)| {
            let mut doc = good.clone();
            edit(&mut doc);
            KeySet::from_secret_data(&data_of(&doc)).unwrap_err()
        };

        assert!(matches!(
            KeySet::from_secret_data(&BTreeMap::new()),
            Err(KeyError::MissingEntry)
        ));
        let huge = BTreeMap::from([(
            SECRET_ENTRY.to_owned(),
            vec![b' '; MAX_SECRET_ENTRY_BYTES + 1],
        )]);
        assert!(matches!(
            KeySet::from_secret_data(&huge),
            Err(KeyError::SecretTooLarge { size, max: MAX_SECRET_ENTRY_BYTES })
                if size == MAX_SECRET_ENTRY_BYTES + 1
        ));
        for raw in [&b"{not json"[..], b"", b"[]", b"{\"version\": 1} trailing"] {
            let data = BTreeMap::from([(SECRET_ENTRY.to_owned(), raw.to_vec())]);
            let e = KeySet::from_secret_data(&data).unwrap_err();
            assert!(matches!(e, KeyError::MalformedSecret { .. }), "{e}");
        }

        let e = edited(&|d| d["version"] = json!(2));
        assert!(
            matches!(e, KeyError::UnsupportedVersion { found: 2 }),
            "{e}"
        );
        let e = edited(&|d| {
            d.as_object_mut().unwrap().remove("version");
        });
        assert!(matches!(e, KeyError::MalformedSecret { .. }), "{e}");
        let e = edited(&|d| d["current"]["note"] = json!("hello"));
        assert!(matches!(e, KeyError::MalformedSecret { .. }), "{e}");
        let e = edited(&|d| d["current"]["created"] = json!("yesterday"));
        match &e {
            KeyError::MalformedSecret { path, line, .. } => {
                assert_eq!(path, "current.created");
                assert_eq!(*line, 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.to_string().contains("yesterday"), "{e}");

        // The current key again as a previous key.
        let e = edited(&|d| {
            let mut copy = d["current"].clone();
            copy["retireAt"] = json!(T0 + 100);
            d["previous"] = json!([copy]);
        });
        assert!(
            matches!(&e, KeyError::DuplicateKid { kid } if kid == set.current().kid()),
            "{e}"
        );

        let invalid = |e: KeyError, key: &str, words: &str| match &e {
            KeyError::InvalidKey { key: k, problem } => {
                assert_eq!(k, key, "{e}");
                assert!(problem.contains(words), "{e}");
            }
            other => panic!("expected InvalidKey for {key}, got {other:?}"),
        };
        invalid(
            edited(&|d| d["current"]["kid"] = json!(base(Algorithm::EdDsa).current().kid())),
            "current",
            "thumbprint",
        );
        invalid(
            edited(&|d| d["current"]["alg"] = json!("EdDSA")),
            "current",
            "for its alg",
        );
        invalid(
            edited(&|d| d["previous"][0]["alg"] = json!("HS256")),
            "previous[0]",
            "alg is not",
        );
        invalid(
            edited(&|d| d["previous"][0]["retireAt"] = json!(T0 - 1)),
            "previous[0]",
            "retireAt",
        );
        invalid(
            edited(&|d| d["current"]["created"] = json!(-5)),
            "current",
            "negative",
        );
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        invalid(
            edited(&|d| d["current"]["privateKey"] = json!(p384.serialize_pem())),
            "current",
            "for its alg",
        );
        invalid(
            edited(&|d| {
                d["current"]["privateKey"] =
                    json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            }),
            "current",
            "for its alg",
        );
        let pem = set.current.private_key.0.clone();
        invalid(
            edited(&|d| d["current"]["privateKey"] = json!(format!("{pem}{pem}"))),
            "current",
            "exactly one PEM block",
        );
        invalid(
            edited(&|d| {
                d["current"]["privateKey"] = json!(pem.replace("PRIVATE KEY", "EC PRIVATE KEY"))
            }),
            "current",
            "exactly one PEM block",
        );
        invalid(
            edited(&|d| d["current"]["privateKey"] = json!("x".repeat(MAX_PEM_BYTES + 1))),
            "current",
            "larger than",
        );

        let e = edited(&|d| {
            let one = d["previous"][0].clone();
            d["previous"] = Value::Array(vec![one; MAX_KEYS]);
        });
        assert!(matches!(e, KeyError::TooManyKeys { count: 17 }), "{e}");
    }

    #[test]
    fn rotation_is_due_exactly_at_rotate_every() {
        let every = Duration::from_secs(100);
        let life = Duration::from_secs(50);
        let set = base(Algorithm::Es256);
        assert_eq!(set.next_rotation(every), T0 + 100);
        assert!(
            set.rotate(Algorithm::Es256, T0 + 99, every, life)
                .unwrap()
                .is_none()
        );
        assert!(
            set.rotate(Algorithm::Es256, T0 - 3600, every, life)
                .unwrap()
                .is_none()
        );

        for now in [T0 + 100, T0 + 101] {
            let next = set
                .rotate(Algorithm::Es256, now, every, life)
                .unwrap()
                .unwrap();
            assert_ne!(next.current().kid(), set.current().kid());
            assert_eq!(next.current().alg(), Algorithm::Es256);
            assert_eq!(next.current().created(), now);
            assert_eq!(next.previous().len(), 1);
            assert_eq!(next.previous()[0].key().kid(), set.current().kid());
            assert_eq!(next.previous()[0].retire_at(), now + 50);
            assert_eq!(next.next_rotation(every), now + 100);
            assert!(
                next.rotate(Algorithm::Es256, now + 99, every, life)
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn previous_key_is_accepted_until_retire_at_then_dropped() {
        let every = Duration::from_secs(100);
        let life = Duration::from_secs(50);
        let old = base(Algorithm::Es256);
        let old_kid = old.current().kid().to_owned();
        let token = old.sign("at+jwt", &claims(T0 + 99, T0 + 140)).unwrap();
        let no_leeway = Validation {
            leeway: 0,
            ..validation()
        };

        let new = old
            .rotate(Algorithm::Es256, T0 + 100, every, life)
            .unwrap()
            .unwrap();
        let new_kid = new.current().kid().to_owned();
        let (_, alg) = new.verifier(&old_kid, T0 + 149).unwrap();
        assert_eq!(alg, jsonwebtoken::Algorithm::ES256);
        assert!(new.verifier(&old_kid, T0 + 150).is_none());
        assert!(new.verifier(&new_kid, T0 + 10_000).is_some());
        assert_eq!(
            kids(&new.jwks(T0 + 149)),
            [new_kid.clone(), old_kid.clone()]
        );
        assert_eq!(kids(&new.jwks(T0 + 150)), [new_kid.as_str()]);

        assert_eq!(
            new.verify(&token, "at+jwt", T0 + 139, &no_leeway).unwrap()["exp"],
            T0 + 140
        );
        assert_eq!(
            rejection_of(new.verify(&token, "at+jwt", T0 + 140, &no_leeway)),
            TokenRejection::Expired
        );
        assert_eq!(
            rejection_of(new.verify(&token, "at+jwt", T0 + 150, &no_leeway)),
            TokenRejection::UnknownKey
        );

        // An algorithm change before the old key retires keeps both previous keys.
        let changed = new
            .rotate(Algorithm::EdDsa, T0 + 120, every, life)
            .unwrap()
            .unwrap();
        assert_eq!(changed.current().alg(), Algorithm::EdDsa);
        let previous: Vec<(&str, i64)> = changed
            .previous()
            .iter()
            .map(|p| (p.key().kid(), p.retire_at()))
            .collect();
        assert_eq!(
            previous,
            [(new_kid.as_str(), T0 + 170), (old_kid.as_str(), T0 + 150)]
        );

        // The next rotation after retire_at drops the old key from the set and the Secret.
        let later = new
            .rotate(Algorithm::Es256, T0 + 200, every, life)
            .unwrap()
            .unwrap();
        let previous: Vec<&str> = later.previous().iter().map(|p| p.key().kid()).collect();
        assert_eq!(previous, [new_kid.as_str()]);
        let stored = String::from_utf8(later.to_secret_data()[SECRET_ENTRY].clone()).unwrap();
        assert!(!stored.contains(&old_kid));
    }

    #[test]
    fn algorithm_change_rotates_at_once() {
        let every = Duration::from_secs(3600);
        let set = base(Algorithm::Es256);
        let next = set
            .rotate(Algorithm::EdDsa, T0 + 1, every, Duration::from_secs(600))
            .unwrap()
            .unwrap();
        assert_eq!(next.current().alg(), Algorithm::EdDsa);
        assert_eq!(next.previous()[0].key().alg(), Algorithm::Es256);
        let jwks = next.jwks(T0 + 1);
        let algs: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["alg"].as_str().unwrap())
            .collect();
        assert_eq!(algs, ["EdDSA", "ES256"]);
        let token = next.sign("JWT", &claims(T0 + 1, FAR)).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().alg,
            jsonwebtoken::Algorithm::EdDSA
        );
        // A zero token lifetime keeps no previous key at all.
        let bare = set
            .rotate(Algorithm::EdDsa, T0 + 1, every, Duration::ZERO)
            .unwrap()
            .unwrap();
        assert!(bare.previous().is_empty());
    }

    #[test]
    fn too_many_overlapping_keys_are_refused() {
        let every = Duration::from_secs(1);
        let life = Duration::from_secs(1000);
        let mut set = base(Algorithm::EdDsa);
        for i in 1..MAX_KEYS as i64 {
            set = set
                .rotate(Algorithm::EdDsa, T0 + i, every, life)
                .unwrap()
                .unwrap();
        }
        assert_eq!(set.previous().len(), MAX_KEYS - 1);
        let e = set
            .rotate(Algorithm::EdDsa, T0 + 100, every, life)
            .unwrap_err();
        assert!(matches!(e, KeyError::TooManyKeys { count: 17 }), "{e}");
    }

    #[test]
    fn jwks_has_public_members_only() {
        let private_members = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];
        for alg in ALL {
            let set = base(alg);
            let jwks = set.jwks(T0);
            let keys = jwks["keys"].as_array().unwrap();
            assert_eq!(keys.len(), 1);
            let key = keys[0].as_object().unwrap();
            let members: Vec<&str> = key.keys().map(String::as_str).collect();
            let expected: &[&str] = match alg {
                Algorithm::Es256 => &["kty", "crv", "x", "y", "kid", "alg", "use"],
                Algorithm::EdDsa => &["kty", "crv", "x", "kid", "alg", "use"],
                Algorithm::Rs256 => &["kty", "n", "e", "kid", "alg", "use"],
            };
            assert_eq!(members, expected, "{alg}");
            for m in private_members {
                assert!(!key.contains_key(m), "{alg} publishes {m}");
            }
            assert_eq!(key["kid"], set.current().kid());
            assert_eq!(key["alg"], alg.as_str());
            assert_eq!(key["use"], "sig");
            let decoded = |m: &str| URL_SAFE_NO_PAD.decode(key[m].as_str().unwrap()).unwrap();
            match alg {
                Algorithm::Es256 => {
                    assert_eq!(key["kty"], "EC");
                    assert_eq!(key["crv"], "P-256");
                    assert_eq!(decoded("x").len(), 32);
                    assert_eq!(decoded("y").len(), 32);
                }
                Algorithm::EdDsa => {
                    assert_eq!(key["kty"], "OKP");
                    assert_eq!(key["crv"], "Ed25519");
                    assert_eq!(decoded("x").len(), 32);
                }
                Algorithm::Rs256 => {
                    assert_eq!(key["kty"], "RSA");
                    assert_eq!(key["e"], "AQAB");
                    assert_eq!(bit_len(&decoded("n")), 2048);
                }
            }

            // A JWKS consumer (here jsonwebtoken's own JWK parser) verifies our tokens.
            let parsed: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
            let jwk = parsed.find(set.current().kid()).unwrap();
            let mut v = validation();
            v.algorithms = vec![alg.to_jwt()];
            let c = claims(T0, FAR);
            let token = set.sign("at+jwt", &c).unwrap();
            let got =
                jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
                    .unwrap();
            assert_eq!(got.claims, c);
        }
    }

    #[test]
    fn sign_and_verify_for_each_algorithm() {
        for alg in ALL {
            let set = base(alg);
            let c = claims(T0, FAR);
            let token = set.sign("at+jwt", &c).unwrap();
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts.len(), 3);
            let header: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
            assert_eq!(
                header,
                json!({"typ": "at+jwt", "alg": alg.as_str(), "kid": set.current().kid()})
            );
            let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            let expected_len = match alg {
                Algorithm::Es256 | Algorithm::EdDsa => 64,
                Algorithm::Rs256 => 256,
            };
            assert_eq!(signature.len(), expected_len, "{alg}");

            // The right way with jsonwebtoken directly: key and algorithm from verifier().
            let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
            let (key, key_alg) = set.verifier(&kid, T0).unwrap();
            assert_eq!(key_alg, alg.to_jwt());
            let mut v = validation();
            v.algorithms = vec![key_alg];
            assert_eq!(
                jsonwebtoken::decode::<Value>(&token, key, &v)
                    .unwrap()
                    .claims,
                c
            );

            assert_eq!(set.verify(&token, "at+jwt", T0, &validation()).unwrap(), c);
        }
        assert!(matches!(
            base(Algorithm::Es256).sign("JWT", &json!(["not", "an", "object"])),
            Err(KeyError::ClaimsNotObject)
        ));
    }

    #[test]
    fn forged_headers_are_refused() {
        let set = base(Algorithm::Es256);
        let kid = set.current().kid().to_owned();
        let c = claims(T0, FAR);
        let good = set.sign("at+jwt", &c).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let check = |token: &str| rejection_of(set.verify(token, "at+jwt", T0, &validation()));

        // HS256 keyed with our public key, in both forms an attacker could fetch.
        let point = {
            let jwk = set.current().public_jwk();
            let mut raw = vec![4u8];
            for m in ["x", "y"] {
                raw.extend(URL_SAFE_NO_PAD.decode(jwk[m].as_str().unwrap()).unwrap());
            }
            raw
        };
        let jwk_bytes = set.current().public_jwk().to_string().into_bytes();
        for secret in [point, jwk_bytes] {
            let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
            h.typ = Some("at+jwt".into());
            h.kid = Some(kid.clone());
            let forged = jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(&secret)).unwrap();
            assert_eq!(
                check(&forged),
                TokenRejection::AlgorithmMismatch {
                    expected: Algorithm::Es256
                }
            );
            // verifier() + jsonwebtoken with the key's algorithm refuses it too.
            let (key, alg) = set.verifier(&kid, T0).unwrap();
            let mut v = validation();
            v.algorithms = vec![alg];
            assert!(jsonwebtoken::decode::<Value>(&forged, key, &v).is_err());
        }

        // ES384 claimed over an ES256 signature.
        let es384 = json!({"typ": "at+jwt", "alg": "ES384", "kid": kid});
        let swapped = format!("{}.{}.{}", segment(&es384), parts[1], parts[2]);
        assert_eq!(
            check(&swapped),
            TokenRejection::AlgorithmMismatch {
                expected: Algorithm::Es256
            }
        );

        // `none` in every spelling, and no alg at all.
        for alg in [
            json!("none"),
            json!("None"),
            json!("nOnE"),
            json!(""),
            Value::Null,
        ] {
            let header = json!({"typ": "at+jwt", "alg": alg, "kid": kid});
            let token = format!("{}.{}.{}", segment(&header), parts[1], parts[2]);
            assert_eq!(check(&token), TokenRejection::Malformed, "alg {alg}");
        }
        let header = json!({"typ": "at+jwt", "kid": kid});
        let token = format!("{}.{}.{}", segment(&header), parts[1], parts[2]);
        assert_eq!(check(&token), TokenRejection::Malformed);
        assert_eq!(
            check(&format!("{}.{}.", parts[0], parts[1])),
            TokenRejection::Malformed
        );

        // Headers we never send, even when the signature is ours.
        let mut crit = our_header(&set, "at+jwt");
        crit.crit = Some(vec!["exp".into()]);
        assert_eq!(
            check(&sign_with_header(&set, &crit, &c)),
            TokenRejection::CriticalHeader
        );
        let mut jku = our_header(&set, "at+jwt");
        jku.jku = Some("https://evil.example/jwks.json".into());
        assert_eq!(
            check(&sign_with_header(&set, &jku, &c)),
            TokenRejection::EmbeddedKey
        );
        let mut x5u = our_header(&set, "at+jwt");
        x5u.x5u = Some("https://evil.example/cert.pem".into());
        assert_eq!(
            check(&sign_with_header(&set, &x5u, &c)),
            TokenRejection::EmbeddedKey
        );
        let mut no_kid = our_header(&set, "at+jwt");
        no_kid.kid = None;
        assert_eq!(
            check(&sign_with_header(&set, &no_kid, &c)),
            TokenRejection::MissingKid
        );

        // typ: another kind of our token, and none at all.
        let session = set.sign("portcullis-session+jwt", &c).unwrap();
        let wrong = TokenRejection::WrongType {
            expected: "at+jwt".into(),
        };
        assert_eq!(check(&session), wrong);
        let mut untyped = our_header(&set, "at+jwt");
        untyped.typ = None;
        assert_eq!(check(&sign_with_header(&set, &untyped, &c)), wrong);

        // A kid from another key set (another issuer, or a key never ours).
        let other = base(Algorithm::EdDsa).sign("at+jwt", &c).unwrap();
        assert_eq!(check(&other), TokenRejection::UnknownKey);
        let mut foreign = our_header(&set, "at+jwt");
        foreign.kid = Some(base(Algorithm::EdDsa).current().kid().into());
        assert_eq!(
            check(&sign_with_header(&set, &foreign, &c)),
            TokenRejection::UnknownKey
        );
    }

    #[test]
    fn damaged_tokens_are_refused() {
        let set = base(Algorithm::Es256);
        let c = claims(T0, FAR);
        let good = set.sign("at+jwt", &c).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let check = |token: &str| rejection_of(set.verify(token, "at+jwt", T0, &validation()));

        let tampered =
            json!({"iss": ISS, "sub": "team-b/admin", "aud": AUD, "iat": T0, "exp": FAR});
        assert_eq!(
            check(&format!("{}.{}.{}", parts[0], segment(&tampered), parts[2])),
            TokenRejection::BadSignature
        );
        let zeros = b64(&[0u8; 64]);
        assert_eq!(
            check(&format!("{}.{}.{zeros}", parts[0], parts[1])),
            TokenRejection::BadSignature
        );
        for shape in [
            format!("{}.{}", parts[0], parts[1]),
            format!("{good}.{}", parts[2]),
            format!(
                "{}.{}.{}.{}.{}",
                parts[0], parts[1], parts[2], parts[1], parts[2]
            ),
            format!(
                "{{\"payload\":\"{}\",\"signature\":\"{}\"}}",
                parts[1], parts[2]
            ),
            format!("%%.{}.{}", parts[1], parts[2]),
            String::new(),
        ] {
            assert_eq!(check(&shape), TokenRejection::Malformed, "{shape}");
        }
        assert_eq!(check(&"a".repeat(1 << 20)), TokenRejection::TooLarge);
    }

    #[test]
    fn time_claims_are_judged_against_now() {
        let set = base(Algorithm::Es256);
        let sign = |c: &Value| set.sign("at+jwt", c).unwrap();
        let check = |token: &str, now: i64, v: &Validation| {
            set.verify(token, "at+jwt", now, v).map_err(|e| match e {
                KeyError::TokenRejected(r) => r,
                other => panic!("{other:?}"),
            })
        };
        let v = validation();

        // exp without leeway: accepted until exp, refused from then on.
        let token = sign(&claims(T0, T0 + 10));
        assert!(check(&token, T0 + 9, &v).is_ok());
        assert_eq!(check(&token, T0 + 10, &v), Err(TokenRejection::Expired));

        let mut future_nbf = claims(T0, FAR);
        future_nbf["nbf"] = json!(T0 + 31);
        assert_eq!(
            check(&sign(&future_nbf), T0, &v),
            Err(TokenRejection::NotYetValid)
        );
        future_nbf["nbf"] = json!(T0 + 30);
        assert!(check(&sign(&future_nbf), T0, &v).is_ok());
        assert_eq!(
            check(&sign(&claims(T0 + 31, FAR)), T0, &v),
            Err(TokenRejection::IssuedInFuture)
        );

        // A string exp fails, whether or not the caller lists exp as required.
        let mut never = claims(T0, FAR);
        never["exp"] = json!("never");
        let token = sign(&never);
        assert_eq!(
            check(&token, T0, &v),
            Err(TokenRejection::MissingClaim {
                claim: "exp".into()
            })
        );
        let mut lax = validation();
        lax.required_spec_claims.clear();
        assert_eq!(
            check(&token, T0, &lax),
            Err(TokenRejection::InvalidClaim {
                claim: "exp".into()
            })
        );
        let mut no_exp = claims(T0, FAR);
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            check(&sign(&no_exp), T0, &lax),
            Err(TokenRejection::MissingClaim {
                claim: "exp".into()
            })
        );
        let mut string_nbf = claims(T0, FAR);
        string_nbf["nbf"] = json!("now");
        assert_eq!(
            check(&sign(&string_nbf), T0, &lax),
            Err(TokenRejection::InvalidClaim {
                claim: "nbf".into()
            })
        );

        // Issuer and audience come from the caller's validation, exactly.
        for (claim, value) in [
            ("aud", json!("portcullis/")),
            ("aud", json!("Portcullis")),
            ("aud", json!(["someone-else"])),
            ("iss", json!("https://auth.example.com/")),
        ] {
            let mut c = claims(T0, FAR);
            c[claim] = value;
            let expected = TokenRejection::ClaimMismatch {
                claim: if claim == "aud" { "aud" } else { "iss" },
            };
            assert_eq!(check(&sign(&c), T0, &v), Err(expected), "{c}");
        }
    }

    #[test]
    fn debug_and_display_never_show_private_keys() {
        let rotated = base(Algorithm::Es256)
            .rotate(
                Algorithm::Es256,
                T0 + 1,
                Duration::ZERO,
                Duration::from_secs(60),
            )
            .unwrap()
            .unwrap();
        for set in [rotated, base(Algorithm::EdDsa), base(Algorithm::Rs256)] {
            let mut pems = vec![set.current.private_key.0.clone()];
            pems.extend(set.previous.iter().map(|p| p.key.private_key.0.clone()));
            let mut rendered = vec![
                format!("{set:?}"),
                format!("{set:#?}"),
                set.to_string(),
                format!("{:?}", set.current()),
                format!("{:#?}", set.current()),
                set.current().to_string(),
                format!("{:?}", set.current.private_key),
            ];
            for p in set.previous() {
                rendered.push(format!("{p:?}"));
                rendered.push(format!("{p:#?}"));
                rendered.push(p.key().to_string());
            }
            for text in &rendered {
                for pem in &pems {
                    let body = pem_body_lines(pem);
                    assert!(body.len() >= 2, "a real PEM body");
                    for line in body {
                        assert!(!text.contains(line), "private key material in {text}");
                        assert!(
                            !text.contains(&line[..16]),
                            "private key material in {text}"
                        );
                    }
                }
            }
            assert!(rendered[0].contains("[redacted]"));
            assert!(rendered[0].contains(set.current().kid()));
            assert_eq!(
                set.current().to_string(),
                format!("{} key {}", set.current().alg(), set.current().kid())
            );

            // Errors about a stored key quote none of it, even when it sits in the wrong field.
            let mut doc = keys_json(&set);
            doc["current"]["created"] = json!(set.current.private_key.0.clone());
            let e = KeySet::from_secret_data(&data_of(&doc)).unwrap_err();
            doc["current"]["created"] = json!(T0);
            doc["current"]["kid"] = json!("not-the-thumbprint");
            let e2 = KeySet::from_secret_data(&data_of(&doc)).unwrap_err();
            for text in [
                e.to_string(),
                format!("{e:?}"),
                e2.to_string(),
                format!("{e2:?}"),
            ] {
                for line in pem_body_lines(&set.current.private_key.0) {
                    assert!(
                        !text.contains(&line[..16]),
                        "private key material in {text}"
                    );
                }
            }
        }
    }

    #[test]
    fn bit_len_counts_significant_bits() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[0, 0]), 0);
        assert_eq!(bit_len(&[1]), 1);
        assert_eq!(bit_len(&[0, 0x80, 0]), 16);
        assert_eq!(bit_len(&[0x01, 0xff]), 9);
    }
}
