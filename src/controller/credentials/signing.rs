//! The signing-key Secret (leader only): created when missing — a second creator racing us gets
//! 409 and adopts the winner's keys, never overwriting them — and rotated every
//! `signing.rotateEvery` (or at once when `signing.algorithm` changes), the old key kept as a
//! previous key until every token it signed has expired. Every replica reads the Secret through
//! its watch store into the routing table.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::controller::status::MANAGER;
use crate::identity::keys::{Algorithm, KeyError, KeySet};

/// What keys to keep.
#[derive(Debug, Clone)]
pub struct SigningConfig {
    /// The Secret's name in Portcullis's namespace.
    pub secret_name: String,
    /// The algorithm of new keys.
    pub algorithm: Algorithm,
    /// How often the current key is replaced.
    pub rotate_every: Duration,
    /// How long a replaced key stays published and accepted: the longest lifetime of any token
    /// we sign, plus leeway.
    pub max_token_lifetime: Duration,
}

/// Errors keeping the signing keys. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A Kubernetes API call failed.
    #[error("{what} Secret {secret}")]
    Api {
        /// What was being done.
        what: &'static str,
        /// `namespace/name`.
        secret: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The Secret exists but cannot be used; it is left as it is for a person to look at.
    #[error("the signing-key Secret {secret} is unusable and was left untouched")]
    Unusable {
        /// `namespace/name`.
        secret: String,
        /// The cause.
        #[source]
        source: KeyError,
    },
    /// Generating keys failed.
    #[error("generating signing keys")]
    Generate(#[source] KeyError),
}

/// When the keys in `secret` (a watch store's copy) next need attention, if they parse and
/// nothing is due before then; `None` means "ask the API" ([`ensure`]).
pub fn settled(secret: Option<&Secret>, cfg: &SigningConfig, now: i64) -> Option<i64> {
    let set = KeySet::from_secret_data(&secret_data(secret?)).ok()?;
    let due = set.next_rotation(cfg.rotate_every);
    (set.current().alg() == cfg.algorithm && now < due).then_some(due)
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, ByteString(v))| (k.clone(), v.clone()))
        .collect()
}

/// Brings the signing-key Secret in line; returns when it next needs attention (unix seconds).
pub async fn ensure(
    client: &Client,
    namespace: &str,
    cfg: &SigningConfig,
    now: i64,
) -> Result<i64, SigningError> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let id = format!("{namespace}/{}", cfg.secret_name);
    let api_err = |what: &'static str| {
        let secret = id.clone();
        move |source| SigningError::Api {
            what,
            secret,
            source,
        }
    };
    let Some(existing) = api
        .get_opt(&cfg.secret_name)
        .await
        .map_err(api_err("reading"))?
    else {
        let set = KeySet::generate(cfg.algorithm, now).map_err(SigningError::Generate)?;
        let secret = key_secret(namespace, &cfg.secret_name, &set, None);
        return match api.create(&post_params(), &secret).await {
            Ok(_) => {
                tracing::info!(secret = %id, kid = set.current().kid(), alg = %cfg.algorithm, "signing keys created");
                Ok(set.next_rotation(cfg.rotate_every))
            }
            // Another replica created it first: its keys are the keys. Read them next pass.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::info!(secret = %id, "signing keys were created by another replica; adopting them");
                Ok(now + 1)
            }
            Err(e) => Err(api_err("creating")(e)),
        };
    };
    let set = KeySet::from_secret_data(&secret_data(&existing)).map_err(|source| {
        SigningError::Unusable {
            secret: id.clone(),
            source,
        }
    })?;
    let Some(next) = set
        .rotate(cfg.algorithm, now, cfg.rotate_every, cfg.max_token_lifetime)
        .map_err(SigningError::Generate)?
    else {
        return Ok(set.next_rotation(cfg.rotate_every));
    };
    let rv = existing.metadata.resource_version.clone();
    let secret = key_secret(namespace, &cfg.secret_name, &next, rv);
    match api.replace(&cfg.secret_name, &post_params(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = %id, kid = next.current().kid(), alg = %cfg.algorithm, "signing keys rotated");
            Ok(next.next_rotation(cfg.rotate_every))
        }
        // Changed under us (another leader's rotation): look again next pass.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(now + 1),
        Err(e) => Err(api_err("rotating")(e)),
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

fn key_secret(namespace: &str, name: &str, set: &KeySet, rv: Option<String>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "portcullis".to_owned(),
            )])),
            resource_version: rv,
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            set.to_secret_data()
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_copy_settles_a_pass_only_when_nothing_is_due() {
        let cfg = SigningConfig {
            secret_name: "keys".into(),
            algorithm: Algorithm::Es256,
            rotate_every: Duration::from_secs(100),
            max_token_lifetime: Duration::from_secs(10),
        };
        let set = KeySet::generate(Algorithm::Es256, 1000).unwrap();
        let secret = key_secret("ns", "keys", &set, None);
        assert_eq!(settled(None, &cfg, 1000), None);
        assert_eq!(settled(Some(&secret), &cfg, 1099), Some(1100));
        assert_eq!(settled(Some(&secret), &cfg, 1100), None);
        let eddsa = SigningConfig {
            algorithm: Algorithm::EdDsa,
            ..cfg.clone()
        };
        assert_eq!(settled(Some(&secret), &eddsa, 1000), None);
        let mut broken = secret;
        broken.data = Some([("keys.json".to_owned(), ByteString(b"{".to_vec()))].into());
        assert_eq!(settled(Some(&broken), &cfg, 1000), None);
    }
}
