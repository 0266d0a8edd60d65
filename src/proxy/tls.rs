//! TLS for the https listener: certificates chosen by SNI from the live table, with a fallback.
//!
//! [`TableResolver`] is the rustls certificate resolver. It runs inside the handshake (a sync
//! callback), so it reads the live table with [`LiveTable::peek`]: the certificate bound to the
//! SNI name or its wildcard, else the table's default certificate (`tls.defaultCertificateSecret`),
//! else the listener's fallback. In `portcullis dev` the fallback is a certificate from the
//! development CA (the one whose `ca.crt` is in the data directory) for [`dev_certificate_names`];
//! `portcullis run` has none, so a name without a certificate fails the handshake.
//!
//! The server speaks TLS 1.2 and 1.3 with the aws-lc-rs provider, chosen explicitly so nothing
//! depends on a process-wide default, and offers `h2` then `http/1.1` by ALPN.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use crate::routing::client_ca::ClientAuth;
use crate::routing::live::LiveTable;

/// ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The fallback certificate's key is unusable or does not match it.
    #[error("the fallback certificate cannot be used")]
    FallbackKey(#[source] rustls::Error),
    /// rustls refused the protocol versions of the provider.
    #[error("building the TLS configuration")]
    Config(#[source] rustls::Error),
}

/// Issues a certificate for one server name (in `portcullis dev`, from the development CA).
pub type IssueCertificate = dyn Fn(&str) -> Option<Arc<CertifiedKey>> + Send + Sync;

/// Most certificates [`PerNameCertificates`] keeps; past it the cache starts over.
const MAX_ISSUED: usize = 1024;

/// Certificates made on demand for the exact name a client asked for, cached. `portcullis dev`
/// uses it so that every route host verifies with the development CA: TLS clients refuse a
/// wildcard directly under one label (`*.localhost`), so one fallback certificate cannot cover
/// `echo.localhost`.
pub struct PerNameCertificates {
    issue: Box<IssueCertificate>,
    issued: std::sync::Mutex<std::collections::HashMap<String, Arc<CertifiedKey>>>,
}

impl PerNameCertificates {
    /// Certificates from `issue`, one per name.
    pub fn new(issue: Box<IssueCertificate>) -> Self {
        Self {
            issue,
            issued: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = crate::routing::canonical_host_name(name).ok()?;
        let mut issued = self
            .issued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cert) = issued.get(&name) {
            return Some(Arc::clone(cert));
        }
        let cert = (self.issue)(&name)?;
        if issued.len() >= MAX_ISSUED {
            issued.clear();
        }
        issued.insert(name, Arc::clone(&cert));
        Some(cert)
    }
}

/// Chooses the certificate of each handshake from the live table (see the module docs).
pub struct TableResolver {
    live: LiveTable,
    fallback: Option<Arc<CertifiedKey>>,
    per_name: Option<Arc<PerNameCertificates>>,
}

impl TableResolver {
    /// A resolver over `live`, serving a certificate from `per_name` for the client's server
    /// name, or else `fallback`, when the table has nothing for a name.
    pub fn new(
        live: LiveTable,
        fallback: Option<Arc<CertifiedKey>>,
        per_name: Option<Arc<PerNameCertificates>>,
    ) -> Self {
        Self {
            live,
            fallback,
            per_name,
        }
    }
}

impl std::fmt::Debug for TableResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableResolver")
            .field("fallback", &self.fallback.is_some())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for TableResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.live
            .peek()
            .certs
            .resolve(hello.server_name())
            .or_else(|| {
                let name = hello.server_name()?;
                self.per_name.as_ref()?.get(name)
            })
            .or_else(|| self.fallback.clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Verifies client certificates against the CA of the live table (downstream mTLS): required
/// on every handshake, refused outright while the table has no usable CA.
pub struct TableClientVerifier {
    live: LiveTable,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for TableClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableClientVerifier")
            .field("client_auth", &self.live.peek().client_auth)
            .finish()
    }
}

impl TableClientVerifier {
    fn verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        match &self.live.peek().client_auth {
            ClientAuth::Verify(verifier) => Ok(Arc::clone(verifier)),
            ClientAuth::Off | ClientAuth::Unusable => Err(rustls::Error::General(
                "no usable CA for client certificates".into(),
            )),
        }
    }
}

impl ClientCertVerifier for TableClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would borrow from one table generation; clients send their certificate
        // without them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The https listener's rustls configuration: [`TableResolver`] over `live` with `fallback`,
/// ALPN `h2` and `http/1.1`, and, with `client_certificates` (`downstreamMTLS.caSecret` is set),
/// client certificates required and verified by [`TableClientVerifier`].
pub fn server_config(
    live: LiveTable,
    fallback: Option<Arc<CertifiedKey>>,
    per_name: Option<Arc<PerNameCertificates>>,
    client_certificates: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = if client_certificates {
        builder.with_client_cert_verifier(Arc::new(TableClientVerifier {
            live: live.clone(),
            provider: provider(),
        }))
    } else {
        builder.with_no_client_auth()
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(TableResolver::new(live, fallback, per_name)));
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// A served certificate from a DER chain (leaf first) and its private key; the key must match
/// the leaf.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(TlsError::FallbackKey)
}

/// The names of the `portcullis dev` fallback certificate: `localhost`, `*.localhost`,
/// `127.0.0.1`, `::1`, and the authenticate host when it is another name.
pub fn dev_certificate_names(authenticate_host: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "*.localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(host) = authenticate_host {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if !names.iter().any(|n| n == host) {
            names.push(host.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_names_add_the_authenticate_host_once() {
        assert_eq!(
            dev_certificate_names(None),
            ["localhost", "*.localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(dev_certificate_names(Some("localhost")).len(), 4);
        assert_eq!(dev_certificate_names(Some("[::1]")).len(), 4);
        assert_eq!(
            dev_certificate_names(Some("auth.example.test")).last(),
            Some(&"auth.example.test".to_owned())
        );
    }
}
