//! TLS certificates by SNI: what the `tls.crt` and `tls.key` of a TLS Secret become
//! ([`parse_pem_pair`] → [`Certificate`]), and the table the proxy's rustls resolver reads on every
//! handshake ([`CertStore::resolve`]).
//!
//! ```text
//! controller ── parse_pem_pair(tls.crt, tls.key) ──► Certificate
//!            ── add(host, certificate, owner, rank) ──► CertStoreBuilder ──build──► CertStore
//!                                                                  └──► Vec<CertRefused> (conditions, Events)
//! proxy (rustls ResolvesServerCert) ── SNI ──► CertStore::resolve ──► Arc<CertifiedKey>
//! ```
//!
//! * Parsing is bounded: each PEM input at most [`MAX_PEM_BYTES`], a chain at most
//!   [`MAX_CHAIN_LEN`] certificates. The leaf comes first, as in the PEM; the rest is the chain,
//!   sent as given. Keys are PKCS#8, PKCS#1 (RSA) or SEC1 (EC), loaded with the aws-lc-rs provider,
//!   and must match the leaf.
//! * A certificate's names are the leaf's subjectAltName `dNSName` entries in [`HostPattern`]
//!   canonical form (`*.example.com` is `Wildcard("example.com")`); the subject CN is used only
//!   when there is no `dNSName` (RFC 6125 §6.4.4). Entries with no canonical form are ignored.
//! * Resolution is at most two hash lookups: the exact name, then its one-label wildcard, then the
//!   default certificate.
//! * Two owners binding different certificates to one host pattern: the lowest rank wins (then
//!   the lowest owner id), the others are refused ([`CertRefused`]). The same certificate bound
//!   twice is no conflict. A binding the certificate does not cover is not served (the caller
//!   reports it, see [`Certificate::covers_pattern`]). The same inputs in any order give the same
//!   store and the same sorted refusals.
//! * No key material in any `Debug` output or error: errors name the file and the problem only.
//!
//! The module knows no Kubernetes types; `tls.crt` and `tls.key` appear in error messages only,
//! because those are the names the people reading them know.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use pki_types::pem::{self, PemObject};
use pki_types::{CertificateDer, PrivateKeyDer};
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, pki_types};
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

use super::{HostPattern, Rank};

/// Largest `tls.crt` or `tls.key` accepted, checked before any parsing.
pub const MAX_PEM_BYTES: usize = 1024 * 1024;
/// Most certificates accepted in `tls.crt`, leaf included.
pub const MAX_CHAIN_LEN: usize = 16;
/// Longest DNS name; a longer SNI cannot match and is not lowercased.
const MAX_NAME_LEN: usize = 253;

/// Which of the two PEM inputs an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemFile {
    /// The certificate chain (`tls.crt`).
    Certificate,
    /// The private key (`tls.key`).
    Key,
}

impl fmt::Display for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PemFile::Certificate => "tls.crt",
            PemFile::Key => "tls.key",
        })
    }
}

/// The encoding of a private key, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `PRIVATE KEY`.
    Pkcs8,
    /// `RSA PRIVATE KEY`.
    Pkcs1,
    /// `EC PRIVATE KEY`.
    Sec1,
}

impl fmt::Display for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyFormat::Pkcs8 => "PKCS#8",
            KeyFormat::Pkcs1 => "PKCS#1 RSA",
            KeyFormat::Sec1 => "SEC1 EC",
        })
    }
}

/// Why a certificate and key pair cannot be used. Messages are for the owner of the Secret and
/// never quote the input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CertError {
    /// An input is larger than [`MAX_PEM_BYTES`].
    #[error("{file} is larger than {MAX_PEM_BYTES} bytes")]
    TooLarge {
        /// The input.
        file: PemFile,
    },
    /// Broken PEM framing or base64.
    #[error("{file} is not valid PEM: {problem}")]
    Pem {
        /// The input.
        file: PemFile,
        /// What is wrong, in words that quote nothing from the input.
        problem: &'static str,
    },
    /// `tls.crt` holds no `CERTIFICATE` block.
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    /// `tls.crt` holds more than [`MAX_CHAIN_LEN`] certificates.
    #[error("tls.crt holds more than {MAX_CHAIN_LEN} certificates")]
    ChainTooLong,
    /// A certificate is not X.509 DER.
    #[error("certificate {index} in tls.crt is not a valid X.509 certificate")]
    InvalidCertificate {
        /// Position in `tls.crt`, 0 for the leaf.
        index: usize,
        /// The parser's reason.
        #[source]
        source: X509Error,
    },
    /// The leaf cannot be served over TLS (rustls refused to parse it).
    #[error("the certificate in tls.crt cannot be used for TLS")]
    UnusableCertificate(#[source] rustls::Error),
    /// `tls.key` holds no unencrypted private key.
    #[error("tls.key holds no PEM private key")]
    NoPrivateKey,
    /// `tls.key` is encrypted with a passphrase.
    #[error("tls.key is encrypted; store the private key without a passphrase")]
    EncryptedKey,
    /// A key of a type or size the TLS provider does not sign with.
    #[error(
        "tls.key holds a {format} key of an unsupported type \
         (supported: RSA 2048 to 8192 bits, ECDSA P-256/P-384/P-521, Ed25519)"
    )]
    UnsupportedKey {
        /// The key's encoding.
        format: KeyFormat,
    },
    /// The key is not the one the leaf certificate certifies.
    #[error("tls.key does not match the certificate in tls.crt")]
    KeyMismatch,
}

/// A certificate chain with its private key, ready to serve. Cloning shares the key and chain.
/// [`parse_pem_pair`] makes them with a key that matches the leaf and canonical names.
#[derive(Clone)]
pub struct Certificate {
    /// The chain (leaf first) and signing key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// The leaf's DNS names, canonical, sorted, without duplicates. May be empty (a certificate
    /// with only IP addresses, or with names that are not host names): such a certificate covers
    /// no host and can only be the default.
    pub names: Vec<HostPattern>,
    /// Start of validity (`notBefore`), Unix seconds.
    pub not_before: i64,
    /// End of validity (`notAfter`, inclusive), Unix seconds.
    pub not_after: i64,
}

impl fmt::Debug for Certificate {
    /// Names, validity and chain length; never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.names.iter().map(ToString::to_string).collect();
        f.debug_struct("Certificate")
            .field("names", &names)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("chain_len", &self.key.cert.len())
            .finish()
    }
}

impl Certificate {
    /// Whether a client asking for `host` accepts this certificate by name: an exact name, or a
    /// wildcard one label above it. `host` is compared case-insensitively, a trailing dot ignored;
    /// a host with no canonical form is covered by nothing.
    pub fn covers(&self, host: &str) -> bool {
        let Ok(HostPattern::Exact(name)) = HostPattern::Exact(host.into()).canonical() else {
            return false;
        };
        self.names.iter().any(|n| n.matches(&name))
    }

    /// Whether the certificate is past its `notAfter` at `now_unix`.
    pub fn expired_at(&self, now_unix: i64) -> bool {
        now_unix > self.not_after
    }

    /// Whether this certificate can be served for a canonical host pattern, which is what
    /// [`CertStoreBuilder::build`] requires of a binding: an exact host it covers, or a wildcard
    /// it holds itself (`*.example.com` does not cover `*.a.example.com`). [`HostPattern::Any`]
    /// names no host, so nothing covers it: that is what the default certificate is for.
    pub fn covers_pattern(&self, pattern: &HostPattern) -> bool {
        match pattern {
            HostPattern::Exact(name) => self.names.iter().any(|n| n.matches(name)),
            HostPattern::Wildcard(_) => self.names.contains(pattern),
            HostPattern::Any => false,
        }
    }

    /// Total order on the chain bytes: equal exactly when the same chain is served.
    fn cmp_chain(&self, other: &Certificate) -> Ordering {
        self.key
            .cert
            .iter()
            .map(|d| d.as_ref())
            .cmp(other.key.cert.iter().map(|d| d.as_ref()))
    }
}

/// Parse the PEM contents of `tls.crt` (leaf first, then its chain) and `tls.key`, and check that
/// the key belongs to the leaf. See the module documentation for the limits and names.
pub fn parse_pem_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<Certificate, CertError> {
    for (file, input) in [(PemFile::Certificate, cert_pem), (PemFile::Key, key_pem)] {
        if input.len() > MAX_PEM_BYTES {
            return Err(CertError::TooLarge { file });
        }
    }
    let chain = read_chain(cert_pem)?;
    let (names, not_before, not_after) = inspect_chain(&chain)?;
    let key_der = read_key(key_pem)?;
    let format = match &key_der {
        PrivateKeyDer::Pkcs1(_) => KeyFormat::Pkcs1,
        PrivateKeyDer::Sec1(_) => KeyFormat::Sec1,
        _ => KeyFormat::Pkcs8,
    };
    let signing_key =
        any_supported_type(&key_der).map_err(|_| CertError::UnsupportedKey { format })?;
    drop(key_der);

    let key = CertifiedKey::new(chain, signing_key);
    match key.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(CertError::KeyMismatch);
        }
        // A key that cannot name its public key cannot be checked, so it is not served.
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(CertError::UnsupportedKey { format });
        }
        Err(e) => return Err(CertError::UnusableCertificate(e)),
    }
    Ok(Certificate {
        key: Arc::new(key),
        names,
        not_before,
        not_after,
    })
}

fn read_chain(cert_pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut chain = Vec::new();
    for der in CertificateDer::pem_slice_iter(cert_pem) {
        if chain.len() == MAX_CHAIN_LEN {
            return Err(CertError::ChainTooLong);
        }
        chain.push(der.map_err(|e| pem_error(PemFile::Certificate, &e))?);
    }
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(chain)
}

fn read_key(key_pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    // The PEM reader skips `ENCRYPTED PRIVATE KEY` blocks and fails on legacy encrypted PKCS#1
    // headers; either way the useful answer is that the key is encrypted.
    let encrypted = [
        &b"-----BEGIN ENCRYPTED PRIVATE KEY-----"[..],
        &b"Proc-Type: 4,ENCRYPTED"[..],
    ];
    if encrypted
        .iter()
        .any(|marker| key_pem.windows(marker.len()).any(|w| w == *marker))
    {
        return Err(CertError::EncryptedKey);
    }
    match PrivateKeyDer::pem_slice_iter(key_pem).next() {
        Some(Ok(key)) => Ok(key),
        Some(Err(e)) => Err(pem_error(PemFile::Key, &e)),
        None => Err(CertError::NoPrivateKey),
    }
}

/// The reader's errors quote lines and bytes of the input, which may be key material: keep the
/// kind only.
fn pem_error(file: PemFile, e: &pem::Error) -> CertError {
    let problem = match e {
        pem::Error::MissingSectionEnd { .. } => "a BEGIN line has no matching END line",
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        pem::Error::Base64Decode(_) => "invalid base64 in a PEM block",
        pem::Error::SectionTooLarge => "PEM block too large",
        _ => "unreadable PEM",
    };
    CertError::Pem { file, problem }
}

/// Check every certificate is X.509 and read the leaf's names and validity.
fn inspect_chain(
    chain: &[CertificateDer<'static>],
) -> Result<(Vec<HostPattern>, i64, i64), CertError> {
    let mut leaf = None;
    for (index, der) in chain.iter().enumerate() {
        let invalid = |source| CertError::InvalidCertificate { index, source };
        let cert = match x509_parser::parse_x509_certificate(der) {
            Ok((rest, _)) if !rest.is_empty() => {
                return Err(invalid(X509Error::InvalidCertificate));
            }
            Ok((_, cert)) => cert,
            Err(x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e)) => {
                return Err(invalid(e));
            }
            Err(x509_parser::nom::Err::Incomplete(_)) => {
                return Err(invalid(X509Error::InvalidCertificate));
            }
        };
        if index == 0 {
            let validity = cert.validity();
            let names = dns_names(&cert).map_err(invalid)?;
            leaf = Some((
                names,
                validity.not_before.timestamp(),
                validity.not_after.timestamp(),
            ));
        }
    }
    leaf.ok_or(CertError::NoCertificate)
}

fn dns_names(cert: &X509Certificate<'_>) -> Result<Vec<HostPattern>, X509Error> {
    let mut raw: Vec<&str> = Vec::new();
    if let Some(san) = cert.subject_alternative_name()? {
        raw.extend(san.value.general_names.iter().filter_map(|n| match n {
            GeneralName::DNSName(name) => Some(*name),
            _ => None,
        }));
    }
    if raw.is_empty() {
        raw.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok()),
        );
    }
    let mut names: Vec<HostPattern> = raw
        .into_iter()
        .filter_map(|name| HostPattern::parse(name).canonical().ok())
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The certificates to serve, by SNI. Immutable once built, `Send + Sync`; the proxy keeps the
/// live one behind its `ArcSwap` and calls [`CertStore::resolve`] from its rustls resolver.
#[derive(Debug, Clone, Default)]
pub struct CertStore {
    exact: HashMap<Box<str>, Certificate>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<Box<str>, Certificate>,
    default: Option<Certificate>,
}

impl CertStore {
    /// A builder with the default [`Rank`].
    pub fn builder() -> CertStoreBuilder {
        CertStoreBuilder::new()
    }

    /// The chain and key for a handshake: the certificate bound to the SNI name, else the one
    /// bound to its one-label wildcard, else the default. No SNI gets the default. `None` when
    /// nothing applies (rustls then aborts the handshake).
    pub fn resolve(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.find(sni).map(|cert| Arc::clone(&cert.key))
    }

    /// The [`Certificate`] [`CertStore::resolve`] serves, for status, metrics and expiry checks.
    pub fn find(&self, sni: Option<&str>) -> Option<&Certificate> {
        sni.and_then(|name| self.by_name(name))
            .or(self.default.as_ref())
    }

    /// Number of host patterns with a certificate (the default not counted).
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// Whether no host pattern has a certificate (there may still be a default).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn by_name(&self, sni: &str) -> Option<&Certificate> {
        let name = sni.strip_suffix('.').unwrap_or(sni);
        if name.len() > MAX_NAME_LEN {
            return None;
        }
        // rustls hands over lower case already; allocate only for a client that did not.
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        if let Some(cert) = self.exact.get(name.as_ref()) {
            return Some(cert);
        }
        match name.split_once('.') {
            Some((label, suffix)) if !label.is_empty() => self.wildcard.get(suffix),
            _ => None,
        }
    }
}

/// A binding that lost a conflict: another owner with a lower rank binds a different
/// certificate to the same host pattern. Becomes a condition or Event on the loser.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CertRefused {
    /// Who bound it (the `owner_id` given to [`CertStoreBuilder::add`]).
    pub owner_id: String,
    /// The host pattern, canonical.
    pub host: HostPattern,
    /// The owner whose certificate is served for it.
    pub winner_id: String,
}

#[derive(Debug)]
struct Binding<K> {
    host: HostPattern,
    cert: Certificate,
    owner_id: String,
    rank: K,
}

/// Collects certificate bindings, then builds a [`CertStore`] and the list of refusals. `K` is
/// the conflict rank (lower wins); the controller uses [`Rank`].
#[derive(Debug)]
pub struct CertStoreBuilder<K = Rank> {
    bindings: Vec<Binding<K>>,
    default: Option<Certificate>,
}

impl<K> Default for CertStoreBuilder<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> CertStoreBuilder<K> {
    /// An empty builder.
    pub fn new() -> Self {
        CertStoreBuilder {
            bindings: Vec::new(),
            default: None,
        }
    }

    /// The certificate served when no bound one applies (no SNI, or an unknown name). Setting it
    /// again replaces it.
    pub fn default_certificate(&mut self, cert: Certificate) {
        self.default = Some(cert);
    }
}

impl<K: Ord> CertStoreBuilder<K> {
    /// Bind `cert` to `host` for `owner_id` (e.g. `Route team-a/billing`), in any order. Among
    /// different certificates on one pattern the lowest `rank` wins, then the lowest owner id.
    /// A pattern with no canonical form, or one the certificate does not cover
    /// ([`Certificate::covers_pattern`]), is not bound and not reported: check it before adding
    /// and report it there (clients would refuse the certificate for that host anyway).
    pub fn add(&mut self, host: HostPattern, cert: Certificate, owner_id: String, rank: K) {
        self.bindings.push(Binding {
            host,
            cert,
            owner_id,
            rank,
        });
    }

    /// Settle conflicts and index. Refusals are sorted, so the result does not depend on the
    /// order of [`CertStoreBuilder::add`] calls.
    pub fn build(self) -> (CertStore, Vec<CertRefused>) {
        let mut refused = Vec::new();
        let mut claims: BTreeMap<HostPattern, Vec<Binding<K>>> = BTreeMap::new();
        for binding in self.bindings {
            let Ok(host) = binding.host.canonical() else {
                continue;
            };
            if !binding.cert.covers_pattern(&host) {
                continue;
            }
            claims
                .entry(host.clone())
                .or_default()
                .push(Binding { host, ..binding });
        }

        let mut store = CertStore {
            default: self.default,
            ..CertStore::default()
        };
        for (host, mut claimants) in claims {
            claimants.sort_by(|a, b| {
                a.rank
                    .cmp(&b.rank)
                    .then_with(|| a.owner_id.cmp(&b.owner_id))
                    .then_with(|| a.cert.cmp_chain(&b.cert))
            });
            let mut claimants = claimants.into_iter();
            let Some(winner) = claimants.next() else {
                continue;
            };
            for loser in claimants {
                if loser.cert.cmp_chain(&winner.cert).is_ne() {
                    refused.push(CertRefused {
                        owner_id: loser.owner_id,
                        host: loser.host,
                        winner_id: winner.owner_id.clone(),
                    });
                }
            }
            let (map, key) = match host {
                HostPattern::Exact(name) => (&mut store.exact, name),
                HostPattern::Wildcard(suffix) => (&mut store.wildcard, suffix),
                HostPattern::Any => continue,
            };
            map.insert((*key).into(), winner.cert);
        }
        refused.sort();
        (store, refused)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::{ClientConfig, WebPkiServerVerifier};
    use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
    use rustls::{
        CertificateError, ClientConnection, DigitallySignedStruct, RootCertStore, ServerConnection,
        SignatureAlgorithm, SignatureScheme,
    };

    use super::*;

    /// A test CA that signs leaves.
    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        der: CertificateDer<'static>,
        pem: String,
    }

    fn mk_ca() -> Ca {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Portcullis Test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    impl Ca {
        fn sign(&self, params: &CertificateParams, key: &KeyPair) -> String {
            params.signed_by(key, &self.issuer).unwrap().pem()
        }

        /// `(tls.crt, tls.key)` for a P-256 leaf with these SANs.
        fn pair(&self, sans: &[&str]) -> (String, String) {
            let key = KeyPair::generate().unwrap();
            (self.sign(&mk_params(sans), &key), key.serialize_pem())
        }

        fn cert(&self, sans: &[&str]) -> Certificate {
            let (crt, key) = self.pair(sans);
            parse_pem_pair(crt.as_bytes(), key.as_bytes()).unwrap()
        }
    }

    fn mk_params(sans: &[&str]) -> CertificateParams {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        CertificateParams::new(sans).unwrap()
    }

    fn rank(t: i64, name: &str) -> Rank {
        (t, name.into())
    }

    fn pattern(s: &str) -> HostPattern {
        HostPattern::parse(s)
    }

    fn leaf(cert: &Certificate) -> &[u8] {
        cert.key.cert[0].as_ref()
    }

    /// The first DER element of `input`: (whole element, tag, content, rest).
    fn der_next(input: &[u8]) -> (&[u8], u8, &[u8], &[u8]) {
        let (len, header) = match input[1] {
            n if n < 0x80 => (n as usize, 2),
            n => {
                let k = (n & 0x7f) as usize;
                let len = input[2..2 + k]
                    .iter()
                    .fold(0, |acc, &b| acc << 8 | b as usize);
                (len, 2 + k)
            }
        };
        let end = header + len;
        (&input[..end], input[0], &input[header..end], &input[end..])
    }

    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// The `privateKey` inside a PKCS#8 `PrivateKeyInfo`: RSAPrivateKey (PKCS#1) for RSA,
    /// ECPrivateKey (SEC1) for EC.
    fn pkcs8_inner(pkcs8: &[u8]) -> Vec<u8> {
        let (_, tag, info, _) = der_next(pkcs8);
        assert_eq!(tag, 0x30);
        let (_, _, _, rest) = der_next(info);
        let (_, _, _, rest) = der_next(rest);
        let (_, tag, key, _) = der_next(rest);
        assert_eq!(tag, 0x04);
        key.to_vec()
    }

    /// A P-256 ECPrivateKey with its curve named, as `openssl ecparam -genkey` writes it.
    fn sec1_p256(pkcs8: &[u8]) -> Vec<u8> {
        let inner = pkcs8_inner(pkcs8);
        let (_, tag, body, _) = der_next(&inner);
        assert_eq!(tag, 0x30);
        let (version, _, _, rest) = der_next(body);
        let (private, _, _, rest) = der_next(rest);
        let mut content = [version, private].concat();
        if rest.first() != Some(&0xa0) {
            let prime256v1 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
            content.extend(der(0xa0, &prime256v1));
        }
        content.extend_from_slice(rest);
        der(0x30, &content)
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in der.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
            for _ in chunk.len()..3 {
                b64.push('=');
            }
        }
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    #[test]
    fn pem_errors_are_named() {
        let ca = mk_ca();
        let (crt, key) = ca.pair(&["a.example.com"]);
        let (_, other_key) = ca.pair(&["a.example.com"]);
        let parse = |c: &str, k: &str| parse_pem_pair(c.as_bytes(), k.as_bytes()).map(|_| ());

        assert_eq!(parse("", ""), Err(CertError::NoCertificate));
        assert_eq!(parse("not pem at all", &key), Err(CertError::NoCertificate));
        assert_eq!(parse(&key, &key), Err(CertError::NoCertificate));
        assert_eq!(parse(&crt, &crt), Err(CertError::NoPrivateKey));
        assert_eq!(parse(&crt, ""), Err(CertError::NoPrivateKey));
        assert_eq!(parse(&crt, &other_key), Err(CertError::KeyMismatch));
        assert_eq!(
            CertError::KeyMismatch.to_string(),
            "tls.key does not match the certificate in tls.crt"
        );

        let bad_b64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert_eq!(
            parse(bad_b64, &key),
            Err(CertError::Pem {
                file: PemFile::Certificate,
                problem: "invalid base64 in a PEM block"
            })
        );
        let unterminated = crt.replace("-----END CERTIFICATE-----", "");
        assert!(matches!(
            parse(&unterminated, &key),
            Err(CertError::Pem {
                file: PemFile::Certificate,
                ..
            })
        ));
        let not_x509 = pem_encode("CERTIFICATE", b"\x30\x03\x02\x01\x01");
        let err = parse(&not_x509, &key).unwrap_err();
        assert!(
            matches!(err, CertError::InvalidCertificate { index: 0, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "certificate 0 in tls.crt is not a valid X.509 certificate"
        );
        let chain_with_junk = format!("{crt}{not_x509}");
        assert!(matches!(
            parse(&chain_with_junk, &key),
            Err(CertError::InvalidCertificate { index: 1, .. })
        ));
        let garbage_key = pem_encode("PRIVATE KEY", b"\x30\x03\x02\x01\x00");
        assert_eq!(
            parse(&crt, &garbage_key),
            Err(CertError::UnsupportedKey {
                format: KeyFormat::Pkcs8
            })
        );
        let encrypted = pem_encode("ENCRYPTED PRIVATE KEY", b"\x30\x00");
        assert_eq!(parse(&crt, &encrypted), Err(CertError::EncryptedKey));
        let legacy = key.replace(
            "-----BEGIN PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n",
        );
        assert_eq!(parse(&crt, &legacy), Err(CertError::EncryptedKey));
    }

    #[test]
    fn inputs_are_bounded() {
        let ca = mk_ca();
        let (crt, key) = ca.pair(&["a.example.com"]);
        let huge = format!("{crt}{}", " ".repeat(MAX_PEM_BYTES));
        assert_eq!(
            parse_pem_pair(huge.as_bytes(), key.as_bytes()).map(|_| ()),
            Err(CertError::TooLarge {
                file: PemFile::Certificate
            })
        );
        let huge_key = format!("{key}{}", " ".repeat(MAX_PEM_BYTES));
        assert_eq!(
            parse_pem_pair(crt.as_bytes(), huge_key.as_bytes()).map(|_| ()),
            Err(CertError::TooLarge { file: PemFile::Key })
        );

        let full = format!("{crt}{}", ca.pem.repeat(MAX_CHAIN_LEN - 1));
        let cert = parse_pem_pair(full.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(cert.key.cert.len(), MAX_CHAIN_LEN);
        let over = format!("{full}{}", ca.pem);
        assert_eq!(
            parse_pem_pair(over.as_bytes(), key.as_bytes()).map(|_| ()),
            Err(CertError::ChainTooLong)
        );
    }

    #[test]
    fn chain_keeps_pem_order_leaf_first() {
        let ca = mk_ca();
        let (crt, key) = ca.pair(&["a.example.com"]);
        let bundle = format!("{crt}{}", ca.pem);
        let cert = parse_pem_pair(bundle.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(cert.key.cert.len(), 2);
        assert_eq!(cert.key.cert[1], ca.der);
        assert_ne!(cert.key.cert[0], ca.der);

        let reversed = format!("{}{crt}", ca.pem);
        assert_eq!(
            parse_pem_pair(reversed.as_bytes(), key.as_bytes()).map(|_| ()),
            Err(CertError::KeyMismatch)
        );
    }

    #[test]
    fn key_formats() {
        let ca = mk_ca();
        let params = mk_params(&["a.example.com"]);

        let rsa = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let pkcs1 = pem_encode("RSA PRIVATE KEY", &pkcs8_inner(&rsa.serialize_der()));
        let p256 = KeyPair::generate().unwrap();
        let sec1 = pem_encode("EC PRIVATE KEY", &sec1_p256(&p256.serialize_der()));
        let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();

        let cases = [
            (&rsa, pkcs1, "RSA PRIVATE KEY", SignatureAlgorithm::RSA),
            (&p256, sec1, "EC PRIVATE KEY", SignatureAlgorithm::ECDSA),
            (
                &ed25519,
                ed25519.serialize_pem(),
                "PRIVATE KEY",
                SignatureAlgorithm::ED25519,
            ),
            (
                &p256,
                p256.serialize_pem(),
                "PRIVATE KEY",
                SignatureAlgorithm::ECDSA,
            ),
            (
                &p384,
                p384.serialize_pem(),
                "PRIVATE KEY",
                SignatureAlgorithm::ECDSA,
            ),
            (
                &rsa,
                rsa.serialize_pem(),
                "PRIVATE KEY",
                SignatureAlgorithm::RSA,
            ),
        ];
        for (key_pair, key_pem, label, algorithm) in cases {
            assert!(key_pem.starts_with(&format!("-----BEGIN {label}-----\n")));
            let crt = ca.sign(&params, key_pair);
            let cert = parse_pem_pair(crt.as_bytes(), key_pem.as_bytes()).unwrap();
            assert_eq!(cert.key.key.algorithm(), algorithm, "{label}");
            assert_eq!(cert.names, [pattern("a.example.com")]);
        }

        let other = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let other_pkcs1 = pem_encode("RSA PRIVATE KEY", &pkcs8_inner(&other.serialize_der()));
        let crt = ca.sign(&params, &rsa);
        assert_eq!(
            parse_pem_pair(crt.as_bytes(), other_pkcs1.as_bytes()).map(|_| ()),
            Err(CertError::KeyMismatch)
        );
    }

    #[test]
    fn names_come_from_dns_sans() {
        let ca = mk_ca();
        let cert = ca.cert(&[
            "B.Example.COM.",
            "*.Apps.Example.com",
            "xn--bcher-kva.example",
            "b.example.com",
            "10.1.2.3",
            "*",
            "foo*.example.com",
            "*.*.example.com",
        ]);
        assert_eq!(
            cert.names,
            [
                pattern("b.example.com"),
                pattern("xn--bcher-kva.example"),
                pattern("*.apps.example.com"),
            ]
        );

        let mut with_cn = mk_params(&["san.example.com"]);
        with_cn
            .distinguished_name
            .push(DnType::CommonName, "cn.example.com");
        let key = KeyPair::generate().unwrap();
        let crt = ca.sign(&with_cn, &key);
        let cert = parse_pem_pair(crt.as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(cert.names, [pattern("san.example.com")]);

        let mut cn_only = mk_params(&[]);
        cn_only.distinguished_name = DistinguishedName::new();
        cn_only
            .distinguished_name
            .push(DnType::CommonName, "Legacy.Example.");
        let crt = ca.sign(&cn_only, &key);
        let cert = parse_pem_pair(crt.as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(cert.names, [pattern("legacy.example")]);

        let ip_only = ca.sign(&mk_params(&["10.1.2.3"]), &key);
        let cert = parse_pem_pair(ip_only.as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(cert.names, vec![], "the rcgen CN is no host name");
    }

    #[test]
    fn covers_exact_and_one_label_wildcards() {
        let ca = mk_ca();
        let cert = ca.cert(&["a.example.com", "*.apps.example.com"]);
        assert!(cert.covers("a.example.com"));
        assert!(cert.covers("A.Example.Com."));
        assert!(cert.covers("x.apps.example.com"));
        assert!(cert.covers("xn--bcher-kva.apps.example.com"));
        assert!(cert.covers("bücher.apps.example.com"));
        assert!(!cert.covers("apps.example.com"));
        assert!(!cert.covers("x.y.apps.example.com"));
        assert!(!cert.covers("b.example.com"));
        assert!(!cert.covers("*.apps.example.com"));
        assert!(!cert.covers(""));
    }

    #[test]
    fn validity_is_read_and_expiry_is_inclusive() {
        let ca = mk_ca();
        let mut params = mk_params(&["a.example.com"]);
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2025, 1, 1);
        let key = KeyPair::generate().unwrap();
        let crt = ca.sign(&params, &key);
        let cert = parse_pem_pair(crt.as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(cert.not_before, 1_704_067_200);
        assert_eq!(cert.not_after, 1_735_689_600);
        assert!(!cert.expired_at(1_720_000_000));
        assert!(!cert.expired_at(1_735_689_600));
        assert!(cert.expired_at(1_735_689_601));
    }

    #[test]
    fn no_key_material_in_debug_or_errors() {
        let ca = mk_ca();
        let (crt, key) = ca.pair(&["a.example.com"]);
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        let secret_chunks: Vec<&str> = (0..body.len() - 12)
            .step_by(12)
            .map(|i| &body[i..i + 12])
            .collect();
        let cert = parse_pem_pair(crt.as_bytes(), key.as_bytes()).unwrap();
        let mut b = CertStore::builder();
        b.add(
            pattern("a.example.com"),
            cert.clone(),
            "Route a/a".into(),
            rank(1, "a/a"),
        );
        b.default_certificate(cert.clone());
        let debug_builder = format!("{b:?}");
        let (store, _) = b.build();

        let mut broken = key.clone().into_bytes();
        let mid = broken.len() / 2;
        broken[mid] = b'!';
        let err = parse_pem_pair(crt.as_bytes(), &broken).unwrap_err();
        assert_eq!(
            err,
            CertError::Pem {
                file: PemFile::Key,
                problem: "invalid base64 in a PEM block"
            }
        );
        let unterminated = key.replace("-----END PRIVATE KEY-----", "");
        let err2 = parse_pem_pair(crt.as_bytes(), unterminated.as_bytes()).unwrap_err();

        let debug_cert = format!("{cert:?}");
        assert!(debug_cert.starts_with(r#"Certificate { names: ["a.example.com"], not_before: "#));
        for text in [
            debug_cert,
            format!("{store:?}"),
            debug_builder,
            format!("{err} {err:?} {err2} {err2:?}"),
        ] {
            assert!(!text.contains("PRIVATE"), "{text}");
            for chunk in &secret_chunks {
                assert!(!text.contains(chunk), "{text}");
            }
        }
    }

    #[test]
    fn resolution_order_is_exact_then_wildcard_then_default() {
        let ca = mk_ca();
        let exact = ca.cert(&["a.example.com"]);
        let wild = ca.cert(&["*.example.com"]);
        let fallback = ca.cert(&["default.example.net"]);
        let mut b = CertStore::builder();
        b.add(
            pattern("a.example.com"),
            exact.clone(),
            "exact".into(),
            rank(1, "exact"),
        );
        b.add(
            pattern("*.example.com"),
            wild.clone(),
            "wild".into(),
            rank(2, "wild"),
        );
        let (no_default, refused) = CertStore::builder().build();
        assert!(refused.is_empty());
        b.default_certificate(fallback.clone());
        let (store, refused) = b.build();
        assert!(refused.is_empty());
        assert_eq!(store.len(), 2);
        assert!(!store.is_empty());

        let served = |sni: Option<&str>| store.resolve(sni).map(|k| k.cert[0].as_ref().to_vec());
        assert_eq!(served(Some("a.example.com")).as_deref(), Some(leaf(&exact)));
        assert_eq!(
            served(Some("A.EXAMPLE.com.")).as_deref(),
            Some(leaf(&exact))
        );
        assert_eq!(served(Some("b.example.com")).as_deref(), Some(leaf(&wild)));
        assert_eq!(
            served(Some("x.a.example.com")).as_deref(),
            Some(leaf(&fallback))
        );
        assert_eq!(
            served(Some("example.com")).as_deref(),
            Some(leaf(&fallback))
        );
        assert_eq!(
            served(Some(".example.com")).as_deref(),
            Some(leaf(&fallback))
        );
        assert_eq!(served(Some("other.test")).as_deref(), Some(leaf(&fallback)));
        assert_eq!(served(None).as_deref(), Some(leaf(&fallback)));
        let long = format!("{}.example.com", "a".repeat(300));
        assert_eq!(served(Some(&long)).as_deref(), Some(leaf(&fallback)));
        assert_eq!(
            store.find(Some("b.example.com")).map(|c| c.names.to_vec()),
            Some(vec![pattern("*.example.com")])
        );

        assert!(no_default.is_empty());
        assert!(no_default.resolve(None).is_none());
        assert!(no_default.resolve(Some("a.example.com")).is_none());
    }

    #[test]
    fn lowest_rank_wins_a_conflict_in_any_order() {
        let ca = mk_ca();
        let old = ca.cert(&["a.example.com"]);
        let new = ca.cert(&["a.example.com", "b.example.com"]);
        let adds = [
            ("a.example.com", &new, "Route t/new", rank(20, "t/new")),
            ("a.example.com", &old, "Route t/old", rank(10, "t/old")),
            ("b.example.com", &new, "Route t/new", rank(20, "t/new")),
        ];
        let build = |order: &[usize]| {
            let mut b = CertStore::builder();
            for &i in order {
                let (host, cert, owner, r) = &adds[i];
                b.add(pattern(host), (*cert).clone(), owner.to_string(), r.clone());
            }
            b.build()
        };
        let want = vec![CertRefused {
            owner_id: "Route t/new".into(),
            host: pattern("a.example.com"),
            winner_id: "Route t/old".into(),
        }];
        for order in [[0, 1, 2], [1, 0, 2], [2, 1, 0], [2, 0, 1]] {
            let (store, refused) = build(&order);
            assert_eq!(refused, want, "{order:?}");
            assert_eq!(store.len(), 2);
            let a = store.resolve(Some("a.example.com")).unwrap();
            assert_eq!(a.cert[0].as_ref(), leaf(&old), "{order:?}");
            let b = store.resolve(Some("b.example.com")).unwrap();
            assert_eq!(b.cert[0].as_ref(), leaf(&new), "{order:?}");
        }
    }

    #[test]
    fn equal_ranks_fall_back_to_owner_id() {
        let ca = mk_ca();
        let x = ca.cert(&["*.example.com"]);
        let y = ca.cert(&["*.example.com"]);
        for (first, second) in [(&x, &y), (&y, &x)] {
            let mut b = CertStore::builder();
            b.add(
                pattern("*.example.com"),
                second.clone(),
                "Route ns/b".into(),
                rank(5, "ns/b"),
            );
            b.add(
                pattern("*.example.com"),
                first.clone(),
                "Route ns/a".into(),
                rank(5, "ns/a"),
            );
            let (store, refused) = b.build();
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].owner_id, "Route ns/b");
            let served = store.resolve(Some("q.example.com")).unwrap();
            assert_eq!(served.cert[0].as_ref(), leaf(first));
        }
    }

    #[test]
    fn the_same_certificate_from_two_owners_is_no_conflict() {
        let ca = mk_ca();
        let (crt, key) = ca.pair(&["a.example.com"]);
        let one = parse_pem_pair(crt.as_bytes(), key.as_bytes()).unwrap();
        let again = parse_pem_pair(crt.as_bytes(), key.as_bytes()).unwrap();
        let mut b = CertStore::builder();
        b.add(
            pattern("a.example.com"),
            one.clone(),
            "Route a/one".into(),
            rank(1, "a/one"),
        );
        b.add(
            pattern("A.example.com."),
            again,
            "Route b/two".into(),
            rank(2, "b/two"),
        );
        b.add(
            pattern("a.example.com"),
            one.clone(),
            "Route a/one".into(),
            rank(1, "a/one"),
        );
        let (store, refused) = b.build();
        assert_eq!(refused, []);
        assert_eq!(store.len(), 1);
        let served = store.resolve(Some("a.example.com")).unwrap();
        assert_eq!(served.cert[0].as_ref(), leaf(&one));
    }

    #[test]
    fn only_covered_canonical_bindings_are_served() {
        let ca = mk_ca();
        let cert = ca.cert(&["a.example.com", "*.apps.example.com"]);
        let covered = ["a.example.com", "x.apps.example.com", "*.apps.example.com"];
        let not_covered = ["b.example.com", "*.example.com", "apps.example.com"];
        for host in covered {
            assert!(cert.covers_pattern(&pattern(host)), "{host}");
        }
        for host in not_covered {
            assert!(!cert.covers_pattern(&pattern(host)), "{host}");
        }
        assert!(!cert.covers_pattern(&HostPattern::Any));

        let mut b = CertStore::builder();
        let hosts = covered.iter().chain(&not_covered).map(|h| pattern(h));
        for host in hosts.chain([pattern("a.example.com:443"), HostPattern::Any]) {
            b.add(host, cert.clone(), "Route t/r".into(), rank(1, "t/r"));
        }
        let (store, refused) = b.build();
        assert_eq!(refused, []);
        assert_eq!(store.len(), 3);
        assert!(store.resolve(Some("x.apps.example.com")).is_some());
        assert!(store.resolve(Some("y.apps.example.com")).is_some());
        assert!(store.resolve(Some("b.example.com")).is_none());
        assert!(store.resolve(Some("c.example.com")).is_none());
        assert!(store.resolve(None).is_none());
    }

    /// Serves from a [`CertStore`], as the proxy's resolver does over its live table.
    #[derive(Debug)]
    struct StoreResolver(CertStore);

    impl ResolvesServerCert for StoreResolver {
        fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            self.0.resolve(hello.server_name())
        }
    }

    /// The standard WebPKI verifier, remembering which leaf the server presented.
    #[derive(Debug)]
    struct Recording {
        inner: Arc<WebPkiServerVerifier>,
        seen: Mutex<Option<Vec<u8>>>,
    }

    impl ServerCertVerifier for Recording {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &pki_types::ServerName<'_>,
            ocsp_response: &[u8],
            now: pki_types::UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            *self.seen.lock().unwrap() = Some(end_entity.as_ref().to_vec());
            self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    }

    /// A full handshake in memory: `Ok(leaf served)` once both sides finish, or the first error
    /// with whatever leaf the client saw.
    fn handshake(
        store: CertStore,
        ca: &Ca,
        server_name: &str,
        send_sni: bool,
    ) -> (Result<(), rustls::Error>, Option<Vec<u8>>) {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server_config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(StoreResolver(store)));
        let mut roots = RootCertStore::empty();
        roots.add(ca.der.clone()).unwrap();
        let verifier = Arc::new(Recording {
            inner: WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::clone(&provider),
            )
            .build()
            .unwrap(),
            seen: Mutex::new(None),
        });
        let mut client_config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth();
        client_config.enable_sni = send_sni;

        let name = pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
        let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
        let result = (|| {
            for _ in 0..10 {
                let mut wire = Vec::new();
                client.write_tls(&mut wire).unwrap();
                let mut input = wire.as_slice();
                while !input.is_empty() {
                    server.read_tls(&mut input).unwrap();
                    server.process_new_packets()?;
                }
                let mut wire = Vec::new();
                server.write_tls(&mut wire).unwrap();
                let mut input = wire.as_slice();
                while !input.is_empty() {
                    client.read_tls(&mut input).unwrap();
                    client.process_new_packets()?;
                }
                if !client.is_handshaking() && !server.is_handshaking() {
                    return Ok(());
                }
            }
            panic!("the handshake did not finish");
        })();
        let seen = verifier.seen.lock().unwrap().clone();
        (result, seen)
    }

    #[test]
    fn real_handshakes_get_the_certificate_for_their_name() {
        let ca = mk_ca();
        let exact = ca.cert(&["app.example.com"]);
        let rsa = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let wild_crt = ca.sign(&mk_params(&["*.example.com"]), &rsa);
        let wild_key = pem_encode("RSA PRIVATE KEY", &pkcs8_inner(&rsa.serialize_der()));
        let wild = parse_pem_pair(wild_crt.as_bytes(), wild_key.as_bytes()).unwrap();
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let default_crt = format!(
            "{}{}",
            ca.sign(&mk_params(&["default.example.net"]), &ed),
            ca.pem
        );
        let fallback =
            parse_pem_pair(default_crt.as_bytes(), ed.serialize_pem().as_bytes()).unwrap();

        let mut b = CertStore::builder();
        b.add(
            pattern("app.example.com"),
            exact.clone(),
            "exact".into(),
            rank(1, "exact"),
        );
        b.add(
            pattern("*.example.com"),
            wild.clone(),
            "wild".into(),
            rank(1, "wild"),
        );
        let without_default = CertStore::builder();
        b.default_certificate(fallback.clone());
        let (store, refused) = b.build();
        assert!(refused.is_empty());

        let (result, seen) = handshake(store.clone(), &ca, "app.example.com", true);
        assert_eq!(result, Ok(()));
        assert_eq!(seen.as_deref(), Some(leaf(&exact)));

        let (result, seen) = handshake(store.clone(), &ca, "billing.example.com", true);
        assert_eq!(result, Ok(()));
        assert_eq!(seen.as_deref(), Some(leaf(&wild)));

        let (result, seen) = handshake(store.clone(), &ca, "unknown.example.org", true);
        assert!(
            matches!(
                result,
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{result:?}"
        );
        assert_eq!(seen.as_deref(), Some(leaf(&fallback)));

        let (result, seen) = handshake(store, &ca, "default.example.net", false);
        assert_eq!(result, Ok(()));
        assert_eq!(seen.as_deref(), Some(leaf(&fallback)));

        let (result, seen) = handshake(without_default.build().0, &ca, "unknown.example.org", true);
        assert!(result.is_err());
        assert_eq!(seen, None);
    }
}
