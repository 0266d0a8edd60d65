//! The identity half of the table: OAuth clients from ServiceAccountCredentials joined with
//! their digest Secrets, and the signing keys from the signing-key Secret. Both Secrets live in
//! Portcullis's own namespace; a credential whose spec is refused, or that has no digest Secret
//! yet, is not a client.

use std::sync::Arc;

use k8s_openapi::ByteString;

use super::{CompileContext, Index};
use crate::controller::credentials::spec;
use crate::controller::credentials::stored::{StoredCredential, digest_secret_name};
use crate::controller::snapshot::Snapshot;
use crate::identity::keys::KeySet;
use crate::identity::token::{CredentialRecord, Credentials};

/// The OAuth clients of `snap`.
pub(super) fn credentials(snap: &Snapshot, index: &Index<'_>, ctx: &CompileContext) -> Credentials {
    let mut out = Credentials::default();
    for sac in &snap.credentials {
        let (Some(uid), Some(namespace), Some(name)) = (
            sac.metadata.uid.as_deref(),
            sac.metadata.namespace.as_deref(),
            sac.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let Ok(checked) = spec::check(sac) else {
            continue;
        };
        let Some(secret) = index.secret(&ctx.namespace, &digest_secret_name(uid)) else {
            continue;
        };
        let Ok(stored) = StoredCredential::from_secret(secret) else {
            continue;
        };
        // The digest Secret names its credential; a mismatch is someone else's object.
        if stored.uid != uid || stored.namespace != namespace || stored.name != name {
            continue;
        }
        out.insert(CredentialRecord {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            client_id: stored.client_id,
            current: stored.current,
            pending: stored.pending,
            previous: stored.previous,
            scopes: checked.scopes,
            access_token_ttl: checked.access_token_ttl,
            claims: checked.claims,
        });
    }
    out
}

/// The signing keys, when the signing-key Secret exists and parses. A malformed Secret is
/// reported by the key reconciler; here it only means no keys.
pub(super) fn signing_keys(index: &Index<'_>, ctx: &CompileContext) -> Option<Arc<KeySet>> {
    let secret = index.secret(&ctx.namespace, &ctx.signing_secret)?;
    let data: std::collections::BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, ByteString(v))| (k.clone(), v.clone()))
        .collect();
    KeySet::from_secret_data(&data).ok().map(Arc::new)
}
