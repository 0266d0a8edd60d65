//! The store of sessions, client bindings and revocations (DESIGN.md §4): one [`Store`] trait,
//! two backends — [`memory::MemoryStore`] (`portcullis dev`, one process) and
//! [`kubernetes::KubernetesStore`] (Secrets in Portcullis's namespace, watched by every replica)
//! — and one [`conformance`] suite both pass.
//!
//! Reads are synchronous lookups in a local view (a hash map behind a lock that is never held
//! across `.await`), so the hot path (`is_revoked`, `session`) costs no I/O. Writes are async:
//! the Kubernetes backend applies them to its local view once the API accepted them, and every
//! other replica sees them through its watch. Time is always passed in (`now`, unix seconds);
//! the store never reads the clock. The identity endpoints, the proxy and the SSH listener call
//! it; `app.rs` builds it with [`build`]. See `docs/store.md`.

pub mod conformance;
pub mod kubernetes;
pub mod memory;
mod view;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Settings, StoreBackend};

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Errors of the store. Messages name what failed, never an entry's id or content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The Kubernetes API refused or could not be reached.
    #[error("store: {action}")]
    Api {
        /// What was being done (`creating a session`).
        action: &'static str,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// An entry could not be encoded as JSON.
    #[error("store: encoding a {kind}")]
    Encoding {
        /// The kind of entry.
        kind: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// A short, fixed label for metrics (`portcullis_..._errors_total{reason}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::Api { .. } => "api",
            StoreError::Encoding { .. } => "encoding",
        }
    }
}

/// A string that never shows in `Debug` or `Display` (`Secret("***")`); serialized as the plain
/// string, so it round-trips through the store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it (the IdP's token or end-session endpoint).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"***\")")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A signed-in person's session. `Debug` shows the id only as a short hash and never the IdP
/// tokens.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Random, chosen by the caller; treated as secret (it may be what a cookie carries).
    pub id: String,
    /// The IdP's `sub`.
    pub subject: String,
    /// The IdP's `iss`.
    pub issuer: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the session is invisible from this moment and collected afterwards.
    pub expires_at: i64,
    /// Unix seconds of the last refresh at the IdP.
    pub refreshed_at: i64,
    /// Identity claims (email, groups, name, ...).
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The IdP refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_refresh_token: Option<Secret>,
    /// The last IdP id_token, for the end-session `id_token_hint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_id_token: Option<Secret>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &Redacted(&self.id))
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("refreshed_at", &self.refreshed_at)
            .field("claims", &self.claims)
            .field("idp_refresh_token", &self.idp_refresh_token)
            .field("idp_id_token", &self.idp_id_token)
            .finish()
    }
}

/// A non-HTTP client (an SSH key, ...) bound to a user. `Debug` shows `session_id` only as a
/// short hash.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    /// Random, chosen by the caller.
    pub id: String,
    /// The session that approved the binding; the binding ends with it.
    pub session_id: String,
    /// The IdP's `sub` of that session.
    pub subject: String,
    /// What is bound, e.g. an SSH key fingerprint `SHA256:...`.
    pub client: String,
    /// The route, `namespace/name`.
    pub route: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the binding is invisible from this moment and collected afterwards.
    pub expires_at: i64,
    /// "Remember me": lives until the session ends.
    #[serde(default)]
    pub remember: bool,
    /// Shown on the bindings page (source IP, ...).
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("id", &self.id)
            .field("session_id", &Redacted(&self.session_id))
            .field("subject", &self.subject)
            .field("client", &self.client)
            .field("route", &self.route)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("remember", &self.remember)
            .field("details", &self.details)
            .finish()
    }
}

/// A change subscribers act on (close an SSH connection, drop a cached token). `Debug` shows
/// session ids and revoked ids only as short hashes.
#[derive(Clone, PartialEq)]
pub enum StoreEvent {
    /// A session left the store (signed out, deleted, or collected after expiry).
    SessionDeleted {
        /// The session's id.
        id: String,
    },
    /// A binding left the store.
    BindingDeleted {
        /// The binding's id.
        id: String,
        /// Its session's id.
        session_id: String,
    },
    /// An id was revoked (or a single-use marker used).
    Revoked {
        /// The revoked id (`session:<id>`, `jti:<jti>`, ...).
        id: String,
    },
}

impl fmt::Debug for StoreEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreEvent::SessionDeleted { id } => f
                .debug_struct("SessionDeleted")
                .field("id", &Redacted(id))
                .finish(),
            StoreEvent::BindingDeleted { id, session_id } => f
                .debug_struct("BindingDeleted")
                .field("id", id)
                .field("session_id", &Redacted(session_id))
                .finish(),
            StoreEvent::Revoked { id } => f
                .debug_struct("Revoked")
                .field("id", &Redacted(id))
                .finish(),
        }
    }
}

/// Shows an id as its namespace (the text up to `:`, if any) and a short hash.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&short_id(self.0))
    }
}

/// How log lines and `Debug` name an id: `session:#1a2b3c4d5e6f` for `session:<secret>`,
/// `#1a2b3c4d5e6f` for an id without a namespace. The hash is one-way; equal ids show equally.
pub fn short_id(id: &str) -> String {
    let hash = hex(&Sha256::digest(id.as_bytes())[..6]);
    match id.split_once(':') {
        Some((ns, _)) if !ns.is_empty() && ns.len() <= 16 && ns.bytes().all(is_name_byte) => {
            format!("{ns}:#{hash}")
        }
        _ => format!("#{hash}"),
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Where sessions, bindings and revocations live. Shared as `Arc<dyn Store>`.
///
/// Expiry: an entry is invisible once `expires_at <= now` and removed by
/// [`collect_garbage`](Store::collect_garbage). A binding is visible only while its session is.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Creates or replaces a session. A session deleted meanwhile (a sign-out on another
    /// replica racing a refresh here) is created again, so sign-out should also revoke
    /// `session:<id>` and readers check that revocation.
    async fn put_session(&self, session: &Session) -> Result<()>;
    /// The session `id` in the local view; `None` when unknown or expired at `now`.
    fn session(&self, id: &str, now: i64) -> Option<Arc<Session>>;
    /// Like [`session`](Store::session), but when the local view lacks `id`, asks the backend:
    /// a session written on another replica a moment ago (the browser came back through another
    /// replica) is found before the watch brings it. Costs an API call per miss, so call it
    /// only for a session id from a cookie or token whose signature was verified.
    async fn load_session(&self, id: &str, now: i64) -> Result<Option<Arc<Session>>> {
        Ok(self.session(id, now))
    }
    /// The sessions of `subject` not expired at `now`, oldest first.
    fn sessions_of(&self, subject: &str, now: i64) -> Vec<Arc<Session>>;
    /// Deletes the session and every binding of it; true when something was deleted. Emits
    /// [`StoreEvent::SessionDeleted`] and a [`StoreEvent::BindingDeleted`] per binding.
    async fn delete_session(&self, id: &str) -> Result<bool>;
    /// Creates or replaces a binding.
    async fn put_binding(&self, binding: &Binding) -> Result<()>;
    /// The binding `id`; `None` when unknown, expired at `now`, or its session is.
    fn binding(&self, id: &str, now: i64) -> Option<Arc<Binding>>;
    /// The visible bindings of `subject` at `now`, oldest first.
    fn bindings_of(&self, subject: &str, now: i64) -> Vec<Arc<Binding>>;
    /// The visible bindings of a session at `now`, oldest first.
    fn bindings_of_session(&self, session_id: &str, now: i64) -> Vec<Arc<Binding>>;
    /// Deletes a binding; true when it existed. Emits [`StoreEvent::BindingDeleted`].
    async fn delete_binding(&self, id: &str) -> Result<bool>;
    /// Records that `id` (`session:<id>`, `jti:<jti>`, `state:<id>`) is revoked or used until
    /// `expires_at`. True when this call revoked it first: of concurrent callers on any
    /// replicas exactly one gets true. While a revocation of `id` exists (until it is collected
    /// after its expiry) every further call gets false and its expiry stays.
    async fn revoke(&self, id: &str, expires_at: i64) -> Result<bool>;
    /// Whether `id` is revoked in the local view: one hash lookup, no allocation. An expired
    /// revocation counts until it is collected.
    fn is_revoked(&self, id: &str) -> bool;
    /// Every deletion and revocation from any replica (this one included), sent after the local
    /// view has it. A slow receiver may see `Lagged`; it should then re-read what it cares about.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StoreEvent>;
    /// Deletes the entries expired at `now` and the bindings whose session has been gone for a
    /// while; returns how many this call deleted. Safe to run on every replica at once.
    async fn collect_garbage(&self, now: i64) -> Result<usize>;
    /// Resolves once the local view holds everything that existed at start (the first list).
    async fn ready(&self);
}

/// How many events a subscriber may fall behind before it sees `Lagged`.
pub(crate) const EVENT_CAPACITY: usize = 1024;

/// A binding whose session is gone is collected once it is this old (seconds): younger, its
/// session may just not have reached this replica's view yet.
pub(crate) const ORPHAN_GRACE: i64 = 60;

/// The store `settings.store.backend` names: memory, or Secrets in `namespace` through
/// `client`. The Kubernetes store's watch starts at once; await [`Store::ready`] (with a
/// timeout) before serving what depends on it.
pub async fn build(
    settings: &Settings,
    client: kube::Client,
    namespace: &str,
) -> Result<Arc<dyn Store>> {
    Ok(match settings.store.backend {
        StoreBackend::Memory => Arc::new(memory::MemoryStore::new()),
        StoreBackend::Kubernetes => kubernetes::KubernetesStore::start(client, namespace)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_ids_never_show_in_debug() {
        let s = Session {
            id: "sid-very-secret".into(),
            subject: "alice".into(),
            issuer: "https://idp".into(),
            created_at: 1,
            expires_at: 2,
            refreshed_at: 1,
            claims: Default::default(),
            idp_refresh_token: Some(Secret::new("refresh-very-secret")),
            idp_id_token: Some(Secret::new("idtoken-very-secret")),
        };
        let shown = format!(
            "{s:?} {:?} {}",
            s.idp_refresh_token,
            Secret::new("x-secret")
        );
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("x-secret"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
        let e = StoreEvent::Revoked {
            id: "session:sid-very-secret".into(),
        };
        let shown = format!("{e:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("session:#"), "{shown}");
    }

    #[test]
    fn secret_serializes_as_a_plain_string() {
        let v = serde_json::to_value(Secret::new("t")).expect("json");
        assert_eq!(v, serde_json::json!("t"));
        let back: Secret = serde_json::from_value(v).expect("back");
        assert_eq!(back.expose(), "t");
    }

    #[test]
    fn short_ids_keep_only_a_safe_namespace() {
        assert_eq!(short_id("jti:abc"), short_id("jti:abc"));
        assert!(short_id("jti:abc").starts_with("jti:#"));
        assert!(short_id("abc").starts_with('#'));
        assert!(short_id("a b:c").starts_with('#'));
        assert!(!short_id("secret-without-namespace").contains("secret"));
        assert_ne!(short_id("jti:a"), short_id("jti:b"));
    }
}
