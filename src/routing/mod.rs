//! Routing: which route serves a request, decided on one canonical host and one canonical path.
//!
//! ```text
//! controller/compile ── Entry{host, path, route, id} + rank ──► TableBuilder ──build──► RouteTable<R>
//!                                                                     └──► Vec<Refused> (conditions, Events)
//! proxy ── canonical_path(target) ──► RouteTable::find(authority, path) ──► (Match, &Arc<R>)
//! ```
//!
//! * [`path`]: the one canonical path form, used for routing, policy and rewrite alike.
//! * [`host`]: the canonical host (case, trailing dot, default port, IPv6, IDNA).
//! * [`matcher`]: the table, its builder (conflicts, reserved hosts and prefixes) and the pure
//!   lookup [`RouteTable::find`].
//!
//! The module knows no Kubernetes types: the controller fills the payload `R` with its route and
//! passes the rank (creation time, then namespace/name) that settles conflicts.

pub mod certs;
pub mod client_ca;
pub mod host;
pub mod live;
pub mod matcher;
pub mod options;
pub mod path;
pub mod route;
pub mod upstream;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use host::{HostError, Scheme, canonical_host, canonical_host_name, split_authority};
pub use matcher::{Rank, RouteTable, TableBuilder};
pub use path::{PathError, canonical_path, is_canonical_path, prefix_matches, rewrite_prefix};

/// The hosts an entry claims.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HostPattern {
    /// One host name, e.g. `billing.example.com`.
    Exact(Arc<str>),
    /// `*.<suffix>`: every host that is exactly one label followed by the suffix
    /// (`a.example.com` for `example.com`, not `a.b.example.com`, not `example.com`). Holds the
    /// suffix only: `Wildcard("*.example.com")` is refused, [`HostPattern::parse`] strips the `*.`.
    Wildcard(Arc<str>),
    /// Every host that has neither an exact nor a wildcard entry (an Ingress rule without a
    /// host, an Ingress default backend). Shown as `*`.
    Any,
}

impl HostPattern {
    /// `*.example.com` → `Wildcard("example.com")`, anything else → `Exact` (Ingress rule hosts).
    /// Validation happens in [`HostPattern::canonical`].
    pub fn parse(s: &str) -> HostPattern {
        match s.strip_prefix("*.") {
            Some(suffix) => HostPattern::Wildcard(suffix.into()),
            None => HostPattern::Exact(s.into()),
        }
    }

    /// The canonical pattern: names as [`canonical_host_name`] gives them, no port, and a
    /// wildcard suffix that is a DNS name (not an IP address).
    pub fn canonical(&self) -> Result<HostPattern, HostError> {
        let name = |raw: &str| match split_authority(raw)? {
            (_, Some(_)) => Err(HostError::UnexpectedPort),
            (name, None) => Ok(name),
        };
        match self {
            HostPattern::Exact(h) => name(h).map(|n| HostPattern::Exact(n.into())),
            HostPattern::Wildcard(s) => {
                let suffix = name(s)?;
                if suffix.starts_with('[') || suffix.parse::<std::net::Ipv4Addr>().is_ok() {
                    return Err(HostError::WildcardIp);
                }
                Ok(HostPattern::Wildcard(suffix.into()))
            }
            HostPattern::Any => Ok(HostPattern::Any),
        }
    }

    /// Whether [`HostPattern::canonical`] would return this pattern unchanged, checked without
    /// allocating. `false` means "not known to be": call [`HostPattern::canonical`].
    pub fn is_canonical(&self) -> bool {
        match self {
            HostPattern::Exact(h) | HostPattern::Wildcard(h) => host::is_plain_canonical_name(h),
            HostPattern::Any => true,
        }
    }

    /// Whether a canonical host name (no port) falls under this canonical pattern.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(h) => **h == *name,
            HostPattern::Wildcard(suffix) => name
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == &**suffix),
            HostPattern::Any => true,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// The paths an entry claims (Ingress `pathType`; `ImplementationSpecific` is `Prefix`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PathMatch {
    /// Every path under this one on a segment boundary; a trailing `/` is ignored, so `/api` and
    /// `/api/` are the same claim.
    Prefix(Arc<str>),
    /// Exactly this canonical path (`/api` does not match `/api/`).
    Exact(Arc<str>),
}

impl PathMatch {
    /// The path as written.
    pub fn as_str(&self) -> &str {
        match self {
            PathMatch::Prefix(p) | PathMatch::Exact(p) => p,
        }
    }

    /// The canonical claim: the path in [`canonical_path`] form, prefixes without a trailing `/`
    /// (except `/`). A `?` is refused ([`PathError::Query`]) rather than dropped.
    pub fn canonical(&self) -> Result<PathMatch, PathError> {
        let canon = |p: &str| {
            if p.contains('?') {
                return Err(PathError::Query);
            }
            canonical_path(p)
        };
        match self {
            PathMatch::Prefix(p) => {
                let c = canon(p)?;
                Ok(PathMatch::Prefix(path::trim_prefix(&c).into()))
            }
            PathMatch::Exact(p) => canon(p).map(|c| PathMatch::Exact(c.into())),
        }
    }

    /// Whether [`PathMatch::canonical`] would return this claim unchanged, checked without
    /// allocating (unless the path holds escapes).
    pub fn is_canonical(&self) -> bool {
        match self {
            PathMatch::Prefix(p) => {
                !p.contains('?') && path::trim_prefix(p) == &**p && is_canonical_path(p)
            }
            PathMatch::Exact(p) => !p.contains('?') && is_canonical_path(p),
        }
    }

    /// Whether a canonical request path falls under this claim.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Prefix(p) => prefix_matches(p, path),
            PathMatch::Exact(p) => **p == *path,
        }
    }
}

impl fmt::Display for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathMatch::Prefix(p) => write!(f, "Prefix {p}"),
            PathMatch::Exact(p) => write!(f, "Exact {p}"),
        }
    }
}

/// One claim of a host and path by a route.
#[derive(Debug)]
pub struct Entry<R> {
    /// The host(s) claimed.
    pub host: HostPattern,
    /// The path(s) claimed.
    pub path: PathMatch,
    /// What a matching request is served by.
    pub route: Arc<R>,
    /// Who claims it, for conflicts and status (e.g. `Route team-a/billing`).
    pub id: Arc<str>,
}

impl<R> Clone for Entry<R> {
    fn clone(&self) -> Self {
        Entry {
            host: self.host.clone(),
            path: self.path.clone(),
            route: Arc::clone(&self.route),
            id: Arc::clone(&self.id),
        }
    }
}

/// What [`RouteTable::find`] matched, borrowed from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a> {
    /// The [`Entry::id`] of the winning entry.
    pub entry_id: &'a str,
    /// The matched prefix in canonical form without a trailing `/` (`/` for the root; the whole
    /// path for an `Exact` entry): the input of [`rewrite_prefix`].
    pub matched_prefix: &'a str,
}

/// An entry the builder refused, with the claim (canonical when it could be made canonical).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refused {
    /// The [`Entry::id`] of the refused entry.
    pub id: String,
    /// The host it claimed.
    pub host: HostPattern,
    /// The path it claimed.
    pub path: PathMatch,
    /// Why.
    pub reason: RefuseReason,
}

/// Why an entry is not in the table. Each becomes `Accepted=False` (or an Event on an Ingress).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum RefuseReason {
    /// An older claim (lower rank) on the same host pattern and path won.
    #[error("host and path are already claimed by {winner_id}")]
    Conflict {
        /// The [`Entry::id`] that holds the claim.
        winner_id: String,
    },
    /// The host is reserved (the authenticate host).
    #[error("host is reserved for Portcullis")]
    ReservedHost,
    /// The path lies under a prefix reserved on every host.
    #[error("path is under the reserved prefix {prefix}")]
    ReservedPath {
        /// The reserved prefix, canonical.
        prefix: String,
    },
    /// The host pattern has no canonical form.
    #[error("invalid host")]
    InvalidHost(#[source] HostError),
    /// The path has no canonical form.
    #[error("invalid path")]
    InvalidPath(#[source] PathError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_canonical_only_when_canonical_returns_the_same() {
        let hosts = [
            "a.example.com",
            "A.example.com",
            "a.example.com.",
            "a.example.com:443",
            "*.example.com",
            "*.10.0.0.1",
            "10.0.0.1",
            "[::1]",
            "xn--bcher-kva.example",
            "bücher.example",
            "a_b.example",
            "",
            "a..b",
        ];
        for raw in hosts {
            for pattern in [HostPattern::parse(raw), HostPattern::Exact(raw.into())] {
                if pattern.is_canonical() {
                    assert_eq!(pattern.canonical().as_ref(), Ok(&pattern), "{raw:?}");
                }
            }
        }
        assert!(HostPattern::parse("a.example.com").is_canonical());
        assert!(HostPattern::parse("*.example.com").is_canonical());
        assert!(!HostPattern::parse("A.example.com").is_canonical());
        assert!(HostPattern::Any.is_canonical());

        let paths = [
            "/", "/api", "/api/", "//", "/a/../b", "/a/./b", "/%7e", "/%7E", "/%2F", "/a?b",
            "/a b", "", "api", "/é",
        ];
        for raw in paths {
            for claim in [PathMatch::Prefix(raw.into()), PathMatch::Exact(raw.into())] {
                if claim.is_canonical() {
                    assert_eq!(claim.canonical().as_ref(), Ok(&claim), "{raw:?}");
                }
            }
        }
        assert!(PathMatch::Prefix("/api".into()).is_canonical());
        assert!(!PathMatch::Prefix("/api/".into()).is_canonical());
        assert!(PathMatch::Exact("/api/".into()).is_canonical());
    }

    #[test]
    fn host_patterns_canonicalize() {
        assert_eq!(
            HostPattern::parse("*.Example.COM.").canonical(),
            Ok(HostPattern::Wildcard("example.com".into()))
        );
        assert_eq!(
            HostPattern::Wildcard("*.example.com".into()).canonical(),
            Err(HostError::InvalidCharacter)
        );
        assert_eq!(
            HostPattern::parse("Bücher.example").canonical(),
            Ok(HostPattern::Exact("xn--bcher-kva.example".into()))
        );
        assert_eq!(
            HostPattern::parse("a.example:8443").canonical(),
            Err(HostError::UnexpectedPort)
        );
        assert_eq!(
            HostPattern::parse("*.*.example").canonical(),
            Err(HostError::InvalidCharacter)
        );
        assert_eq!(
            HostPattern::parse("a.*.example").canonical(),
            Err(HostError::InvalidCharacter)
        );
        assert_eq!(
            HostPattern::parse("*.0.0.1").canonical(),
            Err(HostError::WildcardIp)
        );
        assert_eq!(HostPattern::parse("*.").canonical(), Err(HostError::Empty));
        assert_eq!(
            HostPattern::parse("*").canonical(),
            Err(HostError::InvalidCharacter)
        );
        assert_eq!(
            HostPattern::parse("*.localhost").canonical(),
            Ok(HostPattern::Wildcard("localhost".into()))
        );
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let w = HostPattern::Wildcard("example.com".into());
        assert!(w.matches("a.example.com"));
        assert!(w.matches("xn--bcher-kva.example.com"));
        assert!(!w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches(".example.com"));
        assert!(!w.matches("aexample.com"));
        assert_eq!(w.to_string(), "*.example.com");
    }

    #[test]
    fn path_matches_canonicalize() {
        assert_eq!(
            PathMatch::Prefix("/api/".into()).canonical(),
            Ok(PathMatch::Prefix("/api".into()))
        );
        assert_eq!(
            PathMatch::Prefix("/".into()).canonical(),
            Ok(PathMatch::Prefix("/".into()))
        );
        assert_eq!(
            PathMatch::Prefix("//".into()).canonical(),
            Ok(PathMatch::Prefix("/".into()))
        );
        assert_eq!(
            PathMatch::Exact("/%61pi/".into()).canonical(),
            Ok(PathMatch::Exact("/api/".into()))
        );
        assert_eq!(
            PathMatch::Prefix("/api?x=1".into()).canonical(),
            Err(PathError::Query)
        );
        assert_eq!(
            PathMatch::Prefix("/a/../b".into()).canonical(),
            Err(PathError::DotSegment)
        );
        assert_eq!(
            PathMatch::Exact("api".into()).canonical(),
            Err(PathError::NotOriginForm)
        );
    }

    #[test]
    fn patterns_round_trip_through_json() {
        let entries = vec![
            (
                HostPattern::Exact("a.example".into()),
                PathMatch::Prefix("/api".into()),
            ),
            (
                HostPattern::Wildcard("example".into()),
                PathMatch::Exact("/x".into()),
            ),
        ];
        let json = serde_json::to_string(&entries).unwrap();
        assert_eq!(
            json,
            r#"[[{"exact":"a.example"},{"prefix":"/api"}],[{"wildcard":"example"},{"exact":"/x"}]]"#
        );
        let back: Vec<(HostPattern, PathMatch)> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, entries);
    }

    #[test]
    fn refusal_reasons_read_well() {
        let r = RefuseReason::Conflict {
            winner_id: "Route team-a/billing".into(),
        };
        assert_eq!(
            r.to_string(),
            "host and path are already claimed by Route team-a/billing"
        );
        let r = RefuseReason::InvalidPath(PathError::DotSegment);
        assert_eq!(r.to_string(), "invalid path");
        let source = std::error::Error::source(&r).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("dot segment in path"));
    }
}
