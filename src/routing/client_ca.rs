//! Downstream mTLS: the CA that client certificates must chain to (setting
//! `downstreamMTLS.caSecret`), compiled into the table like every other certificate.
//!
//! `controller::compile` builds a [`ClientAuth`] from the Secret's `ca.crt`; the https listener's
//! client-certificate verifier (`proxy::tls`) reads it from the live table during each handshake,
//! so a changed CA applies to the next connection without a restart. When the setting names a CA
//! that is missing or unusable the table says [`ClientAuth::Unusable`] and every handshake is
//! refused: a listener that was asked to verify clients never lets one in unverified.

use std::fmt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

/// Largest accepted `ca.crt`, in bytes.
pub const MAX_CA_BYTES: usize = 256 * 1024;

/// How the https listener treats client certificates, for one table generation.
#[derive(Clone, Default)]
pub enum ClientAuth {
    /// `downstreamMTLS.caSecret` is not set: no client certificates are asked for.
    #[default]
    Off,
    /// Client certificates are required and verified against the CA.
    Verify(Arc<dyn ClientCertVerifier>),
    /// The setting names a CA that is missing or unusable: every handshake is refused.
    Unusable,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientAuth::Off => "Off",
            ClientAuth::Verify(_) => "Verify",
            ClientAuth::Unusable => "Unusable",
        })
    }
}

/// Why a `ca.crt` cannot be used. Messages quote nothing from the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientCaError {
    /// The Secret does not exist (in Portcullis's namespace).
    #[error("the Secret does not exist")]
    NotFound,
    /// The Secret has no `ca.crt`.
    #[error("the Secret has no ca.crt")]
    MissingKey,
    /// `ca.crt` is larger than [`MAX_CA_BYTES`].
    #[error("ca.crt is larger than {MAX_CA_BYTES} bytes")]
    TooLarge,
    /// `ca.crt` holds no usable PEM certificate.
    #[error("ca.crt holds no usable PEM certificate")]
    NoCertificate,
    /// rustls refused to build a verifier from the certificates.
    #[error("the CA certificates cannot verify client certificates")]
    Verifier,
}

impl ClientAuth {
    /// Client certificates verified against the PEM certificates in `ca_pem` (every
    /// `CERTIFICATE` block is a trust anchor).
    pub fn from_pem(ca_pem: &[u8]) -> Result<ClientAuth, ClientCaError> {
        if ca_pem.len() > MAX_CA_BYTES {
            return Err(ClientCaError::TooLarge);
        }
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|_| ClientCaError::NoCertificate)?;
            roots.add(cert).map_err(|_| ClientCaError::NoCertificate)?;
        }
        if roots.is_empty() {
            return Err(ClientCaError::NoCertificate);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map(ClientAuth::Verify)
            .map_err(|_| ClientCaError::Verifier)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_pem_builds_a_verifier_and_garbage_does_not() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        assert!(matches!(
            ClientAuth::from_pem(ca.pem().as_bytes()),
            Ok(ClientAuth::Verify(_))
        ));
        assert_eq!(
            ClientAuth::from_pem(b"not pem").unwrap_err(),
            ClientCaError::NoCertificate
        );
        assert_eq!(
            ClientAuth::from_pem(&vec![b'a'; MAX_CA_BYTES + 1]).unwrap_err(),
            ClientCaError::TooLarge
        );
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(ClientAuth::from_pem(broken.as_bytes()).is_err());
    }
}
