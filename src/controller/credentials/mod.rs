//! ServiceAccountCredentials' secrets and Portcullis's signing keys, kept by the leader:
//! the checked spec (`spec.rs`), the stored digests (`stored.rs`), the pure next step
//! (`plan.rs`), the loop that carries it out and reports it (`reconcile.rs`) and the
//! signing-key Secret (`signing.rs`).

pub mod plan;
pub mod reconcile;
pub mod signing;
pub mod spec;
pub mod stored;
