//! The identity surface (DESIGN.md §4): signing keys and JWKS, endpoint paths and metadata, the
//! token endpoint's request parsing, client authentication, scopes, access-token claims, the
//! OAuth error responses and the service that serves them on the authenticate host; login,
//! sessions and federation join here. Works on plain domain types, never Kubernetes ones.

pub mod access;
pub mod endpoints;
pub mod error;
pub mod keys;
pub mod login;
pub mod people;
pub mod programmatic;
pub mod service;
pub mod session;
pub mod token;
