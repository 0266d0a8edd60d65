//! Portcullis: a Kubernetes operator and ingress controller with an in-process identity-aware
//! proxy, built for programmatic and machine-to-machine access.
//!
//! ```text
//! kubectl / helm ──► Kubernetes API (a real cluster, or devapi: the embedded dev API)
//!                          │ watch (kube-runtime watchers)
//!                          ▼
//!                 controller ── compile (pure) ──► one ArcSwap<RouteTable>
//!                                                        │ load_full() per request
//! client ─TLS/SNI─► listener ─► match route ─► authenticate ─► authorize ─► upstream
//!                                                    │ sessions, bindings, revocations
//!                                                    ▼
//!                                  store (memory, or Secrets watched by every replica)
//! ```
//!
//! Today the crate holds the CRD types ([`api`]), process settings ([`config`]), the embedded
//! Kubernetes-compatible API ([`devapi`]), the controller ([`controller`]) and its live table
//! ([`routing`]), the identity endpoints ([`identity`]), the HTTP and HTTPS listeners ([`proxy`]),
//! the store of sessions, client bindings and revocations ([`store`]) and the wiring of
//! `portcullis dev` and `portcullis run` ([`app`]), and the clients of `portcullis token`
//! ([`client`]) and `portcullis login` ([`login`]). See `docs/architecture.md`.

pub mod admin;
pub mod api;
pub mod app;
pub mod client;
pub mod config;
pub mod controller;
pub mod devapi;
pub mod echo;
pub mod identity;
pub mod login;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod routing;
pub mod store;
pub mod web;
pub mod yaml;

/// An error and its causes on one line (`outer: cause: root cause`), for log fields. Error types
/// here keep their cause out of their own message, so nothing is printed twice.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
