//! The stored state of one ServiceAccountCredential: a Secret in Portcullis's own namespace
//! holding the digests of its client secrets (the source of truth, DESIGN.md §3), never the
//! secrets themselves. Written by the credential reconciler (leader), read by `compile` on every
//! replica.
//!
//! ```text
//! Secret <namespace>/credential-<uid>   label portcullis.dev/credential-digest=true
//!   namespace, name, uid, client_id      whose credential this is
//!   current, current_created             SHA-256 (hex) of the secret in the workload Secret, unix s
//!   pending                              a secret being written to the workload Secret (accepted)
//!   previous, previous_expires           the secret replaced by the last rotation, until expiry
//!   rotate_request                       the last `portcullis.dev/rotate` value acted on
//! ```

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use crate::identity::token::{PreviousSecret, SecretDigest};

/// Label on every digest Secret (value `true`).
pub const DIGEST_LABEL: &str = "portcullis.dev/credential-digest";

/// The name of the digest Secret of the credential with this uid.
pub fn digest_secret_name(uid: &str) -> String {
    format!("credential-{uid}")
}

/// What Portcullis keeps about one credential's secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// Namespace of the credential.
    pub namespace: String,
    /// Name of the credential.
    pub name: String,
    /// uid of the credential (a re-created credential is a new client).
    pub uid: String,
    /// Its `client_id`.
    pub client_id: String,
    /// Digest of the current secret.
    pub current: SecretDigest,
    /// When the current secret was created (unix seconds).
    pub current_created: i64,
    /// Digest of a secret being issued.
    pub pending: Option<SecretDigest>,
    /// The previous secret, during a rotation overlap.
    pub previous: Option<PreviousSecret>,
    /// The last `portcullis.dev/rotate` annotation value acted on.
    pub rotate_request: Option<String>,
}

/// Why a digest Secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("digest Secret entry {0:?} is missing or malformed")]
pub struct StoredError(pub &'static str);

fn text<'a>(data: &'a BTreeMap<String, ByteString>, key: &'static str) -> Option<&'a str> {
    data.get(key).and_then(|v| std::str::from_utf8(&v.0).ok())
}

fn required<'a>(
    data: &'a BTreeMap<String, ByteString>,
    key: &'static str,
) -> Result<&'a str, StoredError> {
    text(data, key)
        .filter(|v| !v.is_empty())
        .ok_or(StoredError(key))
}

fn digest_entry(
    data: &BTreeMap<String, ByteString>,
    key: &'static str,
) -> Result<Option<SecretDigest>, StoredError> {
    match text(data, key) {
        None | Some("") => Ok(None),
        Some(hex) => SecretDigest::from_hex(hex)
            .map(Some)
            .ok_or(StoredError(key)),
    }
}

fn seconds(data: &BTreeMap<String, ByteString>, key: &'static str) -> Result<i64, StoredError> {
    required(data, key)?.parse().map_err(|_| StoredError(key))
}

impl StoredCredential {
    /// Reads a digest Secret.
    pub fn from_secret(secret: &Secret) -> Result<Self, StoredError> {
        let empty = BTreeMap::new();
        let data = secret.data.as_ref().unwrap_or(&empty);
        let previous = match digest_entry(data, "previous")? {
            Some(digest) => Some(PreviousSecret {
                digest,
                expires: seconds(data, "previous_expires")?,
            }),
            None => None,
        };
        Ok(Self {
            namespace: required(data, "namespace")?.to_owned(),
            name: required(data, "name")?.to_owned(),
            uid: required(data, "uid")?.to_owned(),
            client_id: required(data, "client_id")?.to_owned(),
            current: digest_entry(data, "current")?.ok_or(StoredError("current"))?,
            current_created: seconds(data, "current_created")?,
            pending: digest_entry(data, "pending")?,
            previous,
            rotate_request: text(data, "rotate_request")
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
        })
    }

    /// The Secret data for this state.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            data.insert(k.to_owned(), ByteString(v.into_bytes()));
        };
        put("namespace", self.namespace.clone());
        put("name", self.name.clone());
        put("uid", self.uid.clone());
        put("client_id", self.client_id.clone());
        put("current", self.current.to_hex());
        put("current_created", self.current_created.to_string());
        if let Some(p) = &self.pending {
            put("pending", p.to_hex());
        }
        if let Some(p) = &self.previous {
            put("previous", p.digest.to_hex());
            put("previous_expires", p.expires.to_string());
        }
        if let Some(r) = &self.rotate_request {
            put("rotate_request", r.clone());
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::token::digest;

    fn stored() -> StoredCredential {
        StoredCredential {
            namespace: "team-a".into(),
            name: "bot".into(),
            uid: "0b5c".into(),
            client_id: "0b5c".into(),
            current: digest("pcs_a"),
            current_created: 100,
            pending: Some(digest("pcs_b")),
            previous: Some(PreviousSecret {
                digest: digest("pcs_c"),
                expires: 200,
            }),
            rotate_request: Some("1".into()),
        }
    }

    #[test]
    fn round_trips_through_secret_data() {
        let s = stored();
        let secret = Secret {
            data: Some(s.to_data()),
            ..Default::default()
        };
        assert_eq!(StoredCredential::from_secret(&secret), Ok(s.clone()));
        let minimal = StoredCredential {
            pending: None,
            previous: None,
            rotate_request: None,
            ..s
        };
        let secret = Secret {
            data: Some(minimal.to_data()),
            ..Default::default()
        };
        assert_eq!(StoredCredential::from_secret(&secret), Ok(minimal));
    }

    #[test]
    fn malformed_entries_are_named() {
        let mut data = stored().to_data();
        data.insert("current".into(), ByteString(b"zz".to_vec()));
        let secret = Secret {
            data: Some(data.clone()),
            ..Default::default()
        };
        assert_eq!(
            StoredCredential::from_secret(&secret),
            Err(StoredError("current"))
        );
        data.remove("current");
        data.insert("previous_expires".into(), ByteString(b"soon".to_vec()));
        data.insert(
            "current".into(),
            ByteString(digest("x").to_hex().into_bytes()),
        );
        let secret = Secret {
            data: Some(data),
            ..Default::default()
        };
        assert_eq!(
            StoredCredential::from_secret(&secret),
            Err(StoredError("previous_expires"))
        );
    }
}
