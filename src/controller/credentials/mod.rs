//! ServiceAccountCredentials' secrets and Portcullis's signing keys: the stored digests
//! (`stored.rs`), the checked spec (`spec.rs`).

pub mod spec;
pub mod stored;
