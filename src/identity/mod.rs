//! The identity surface (DESIGN.md §4): signing keys and JWKS today; the token service, login,
//! sessions and federation join here. Works on plain domain types, never Kubernetes ones.

pub mod keys;
