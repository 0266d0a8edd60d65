//! Placeholder until the store lands: the redacting string type its records use.

/// A string that never shows in `Debug`/`Display`.
#[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Secret(String);

impl Secret {
    /// Wraps the value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(\"***\")")
    }
}

/// A signed-in person's session.
#[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
pub struct Session {
    /// Random id.
    pub id: String,
    /// IdP `sub`.
    pub subject: String,
    /// IdP `iss`.
    pub issuer: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds.
    pub refreshed_at: i64,
    /// Identity claims.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// IdP refresh token.
    pub idp_refresh_token: Option<Secret>,
    /// Last IdP id_token.
    pub idp_id_token: Option<Secret>,
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Backend failure.
    #[error("store backend: {0}")]
    Backend(String),
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Create or replace.
    async fn put_session(&self, session: &Session) -> Result<()>;
    /// Local view.
    fn session(&self, id: &str, now: i64) -> Option<std::sync::Arc<Session>>;
    /// Delete.
    async fn delete_session(&self, id: &str) -> Result<bool>;
    /// Single-use revoke.
    async fn revoke(&self, id: &str, expires_at: i64) -> Result<bool>;
    /// Hot path.
    fn is_revoked(&self, id: &str) -> bool;
}

/// Temporary: a store that keeps nothing.
pub async fn build(
    _settings: &crate::config::Settings,
    _client: kube::Client,
) -> Result<std::sync::Arc<dyn Store>> {
    Err(StoreError::Backend("not built yet".into()))
}
