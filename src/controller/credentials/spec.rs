//! A ServiceAccountCredential's spec checked and resolved to plain values, with the defaults of
//! DESIGN.md §3 applied. The CRD schema checks the same rules on a cluster whose CRDs are ours;
//! this check runs anyway (older CRDs, objects written before a rule existed) and is what both
//! `compile` (scopes, lifetime, claims) and the credential reconciler (Secret name, rotation)
//! rely on. Pure.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::api::ServiceAccountCredential;
use crate::identity::token::{is_dns_subdomain, is_reserved_claim, normalize_scope};

/// Default `accessTokenTTL`.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Shortest and longest `accessTokenTTL`.
pub const ACCESS_TOKEN_TTL_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(24 * 3600));
/// Default `rotation.every`.
pub const DEFAULT_ROTATE_EVERY: Duration = Duration::from_secs(720 * 3600);
/// Default `rotation.overlap` (or `every`, if shorter).
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Shortest and longest `rotation.every`.
pub const ROTATE_EVERY_RANGE: (Duration, Duration) =
    (Duration::from_secs(3600), Duration::from_secs(8760 * 3600));

/// A credential's settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialSpec {
    /// The workload Secret's name.
    pub secret_name: String,
    /// Scopes, as written (normalized when tokens are granted).
    pub scopes: Vec<String>,
    /// Access token lifetime.
    pub access_token_ttl: Duration,
    /// How often the secret is replaced.
    pub rotate_every: Duration,
    /// How long the previous secret keeps working.
    pub overlap: Duration,
    /// Extra claims.
    pub claims: Map<String, Value>,
}

/// Why a credential's spec is refused: a condition reason and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// Condition reason (`InvalidClaims`, `InvalidSpec`).
    pub reason: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(message: String) -> SpecProblem {
    SpecProblem {
        reason: "InvalidSpec",
        message,
    }
}

fn duration_in(
    field: &str,
    value: Option<&crate::api::GoDuration>,
    default: Duration,
    (min, max): (Duration, Duration),
) -> Result<Duration, SpecProblem> {
    let Some(value) = value else {
        return Ok(default);
    };
    let d = value
        .to_std()
        .ok_or_else(|| invalid(format!("{field}: {:?} is not a duration", value.as_str())))?;
    if d < min || d > max {
        return Err(invalid(format!(
            "{field}: {} is outside {}..{}",
            value.as_str(),
            crate::config::format_go_duration(min),
            crate::config::format_go_duration(max)
        )));
    }
    Ok(d)
}

/// Checks a credential's spec.
pub fn check(sac: &ServiceAccountCredential) -> Result<CredentialSpec, SpecProblem> {
    let spec = &sac.spec;
    let name = sac.metadata.name.as_deref().unwrap_or_default();
    let namespace = sac.metadata.namespace.as_deref().unwrap_or_default();
    let mut reserved: Vec<&str> = spec
        .claims
        .iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .filter(|k| is_reserved_claim(k))
        .collect();
    if !reserved.is_empty() {
        reserved.sort_unstable();
        return Err(SpecProblem {
            reason: "InvalidClaims",
            message: format!(
                "spec.claims: reserved claim names cannot be set: {}",
                reserved.join(", ")
            ),
        });
    }
    let secret_name = spec
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{name}-oauth"));
    if !is_dns_subdomain(&secret_name) {
        return Err(invalid(format!(
            "spec.secretName: {secret_name:?} is not a valid Secret name"
        )));
    }
    let scopes = spec.scopes.clone().unwrap_or_default();
    if let Some(bad) = scopes
        .iter()
        .find(|s| normalize_scope(namespace, s).is_none())
    {
        return Err(invalid(format!(
            "spec.scopes: {bad:?} is not route:<name> or route:<namespace>/<name>"
        )));
    }
    let access_token_ttl = duration_in(
        "spec.accessTokenTTL",
        spec.access_token_ttl.as_ref(),
        DEFAULT_ACCESS_TOKEN_TTL,
        ACCESS_TOKEN_TTL_RANGE,
    )?;
    let rotation = spec.rotation.as_ref();
    let rotate_every = duration_in(
        "spec.rotation.every",
        rotation.map(|r| &r.every),
        DEFAULT_ROTATE_EVERY,
        ROTATE_EVERY_RANGE,
    )?;
    let overlap = duration_in(
        "spec.rotation.overlap",
        rotation.and_then(|r| r.overlap.as_ref()),
        DEFAULT_OVERLAP.min(rotate_every),
        (Duration::ZERO, rotate_every),
    )?;
    let claims = spec
        .claims
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Ok(CredentialSpec {
        secret_name,
        scopes,
        access_token_ttl,
        rotate_every,
        overlap,
        claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{GoDuration, Rotation, ServiceAccountCredentialSpec};

    fn sac(spec: ServiceAccountCredentialSpec) -> ServiceAccountCredential {
        let mut s = ServiceAccountCredential::new("bot", spec);
        s.metadata.namespace = Some("team-a".into());
        s
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = check(&sac(Default::default())).unwrap();
        assert_eq!(c.secret_name, "bot-oauth");
        assert_eq!(c.access_token_ttl, Duration::from_secs(3600));
        assert_eq!(c.rotate_every, Duration::from_secs(720 * 3600));
        assert_eq!(c.overlap, Duration::from_secs(24 * 3600));
        let short = check(&sac(ServiceAccountCredentialSpec {
            rotation: Some(Rotation {
                every: GoDuration::new("2h"),
                overlap: None,
            }),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(short.overlap, Duration::from_secs(2 * 3600));
    }

    #[test]
    fn reserved_claims_and_bad_values_are_refused_by_field() {
        let claims = [
            ("Email".to_owned(), "x".to_owned()),
            ("team".into(), "a".into()),
        ];
        let p = check(&sac(ServiceAccountCredentialSpec {
            claims: Some(claims.into_iter().collect()),
            ..Default::default()
        }))
        .unwrap_err();
        assert_eq!(p.reason, "InvalidClaims");
        assert!(p.message.contains("Email"), "{}", p.message);
        let p = check(&sac(ServiceAccountCredentialSpec {
            access_token_ttl: Some(GoDuration::new("48h")),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(
            p.message.starts_with("spec.accessTokenTTL"),
            "{}",
            p.message
        );
        let p = check(&sac(ServiceAccountCredentialSpec {
            rotation: Some(Rotation {
                every: GoDuration::new("2h"),
                overlap: Some(GoDuration::new("3h")),
            }),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(
            p.message.starts_with("spec.rotation.overlap"),
            "{}",
            p.message
        );
        let p = check(&sac(ServiceAccountCredentialSpec {
            scopes: Some(vec!["admin".into()]),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(p.message.starts_with("spec.scopes"), "{}", p.message);
        let p = check(&sac(ServiceAccountCredentialSpec {
            secret_name: Some("Not_A_Name".into()),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(p.message.starts_with("spec.secretName"), "{}", p.message);
    }
}
