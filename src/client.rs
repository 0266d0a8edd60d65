//! The client side of the identity surface, for `portcullis token`: read a credential's client
//! id, secret and token URL (from its Secret in the cluster, or from a mounted Secret), then get
//! an access token from the token endpoint with `client_secret_basic`, exactly as any OAuth2
//! library would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustls::pki_types::pem::PemObject as _;

use crate::api::ServiceAccountCredential;
use crate::identity::token::ClientSecret;

/// Largest token response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Errors of `portcullis token`. Never carries the secret.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The credential or its Secret could not be read from the cluster.
    #[error("reading {what}")]
    Kube {
        /// What was being read.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The credential has no Secret yet.
    #[error("ServiceAccountCredential {0} has no Secret yet (see `kubectl describe sac`)")]
    NotIssued(String),
    /// A mounted Secret could not be read.
    #[error("reading {path}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Secret file that is neither a Secret manifest nor a map of entries.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A required entry is missing.
    #[error("the Secret has no {0} entry")]
    Missing(&'static str),
    /// `token_url` is not an http(s) URL.
    #[error("token_url {0:?} is not an http or https URL")]
    TokenUrl(String),
    /// A CA file could not be used.
    #[error("CA file {path}: {message}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The request failed on the way.
    #[error("requesting a token from {url}")]
    Http {
        /// The token URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The token endpoint refused (RFC 6749 §5.2 error).
    #[error("the token endpoint answered {status}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// `error`.
        error: String,
        /// `error_description`.
        description: Option<String>,
    },
    /// The answer was not a token response.
    #[error("the token endpoint answered {status} without an access token")]
    BadResponse {
        /// HTTP status.
        status: StatusCode,
    },
}

/// What a client needs to get tokens.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: ClientSecret,
    /// `token_url`.
    pub token_url: url::Url,
}

impl ClientCredentials {
    /// From a Secret's entries.
    pub fn from_entries(entries: &BTreeMap<String, Vec<u8>>) -> Result<Self, ClientError> {
        let get = |k: &'static str| {
            entries
                .get(k)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or(ClientError::Missing(k))
        };
        let token_url = get("token_url")?;
        let url = url::Url::parse(token_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ClientError::TokenUrl(token_url.to_owned()))?;
        Ok(Self {
            client_id: get("client_id")?.to_owned(),
            client_secret: ClientSecret::new(get("client_secret")?),
            token_url: url,
        })
    }

    /// From a mounted Secret: a directory with one file per entry (how a Secret volume looks),
    /// or a file holding a Secret manifest (`kubectl get secret -o yaml`, `data` or
    /// `stringData`) or a plain map of entries, in YAML or JSON.
    pub fn from_path(path: &Path) -> Result<Self, ClientError> {
        let io = |source| ClientError::File {
            path: path.to_path_buf(),
            source,
        };
        if path.is_dir() {
            let mut entries = BTreeMap::new();
            for key in ["client_id", "client_secret", "token_url"] {
                let file = path.join(key);
                if file.exists() {
                    entries.insert(key.to_owned(), std::fs::read(&file).map_err(io)?);
                }
            }
            return Self::from_entries(&entries);
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let format = |message: String| ClientError::Format {
            path: path.to_path_buf(),
            message,
        };
        let doc = crate::yaml::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
        let serde_json::Value::Object(map) = doc else {
            return Err(format(
                "expected a Secret manifest or a map of entries".into(),
            ));
        };
        let mut entries = BTreeMap::new();
        let text = |v: &serde_json::Value| v.as_str().map(|s| s.as_bytes().to_vec());
        if let Some(serde_json::Value::Object(data)) = map.get("data") {
            for (k, v) in data {
                let decoded = v
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .ok_or_else(|| format(format!("data.{k} is not base64")))?;
                entries.insert(k.clone(), decoded);
            }
        }
        let plain = match map.get("stringData") {
            Some(serde_json::Value::Object(s)) => Some(s),
            _ if !map.contains_key("data") => Some(&map),
            _ => None,
        };
        for (k, v) in plain.into_iter().flatten() {
            if let Some(v) = text(v) {
                entries.insert(k.clone(), v);
            }
        }
        Self::from_entries(&entries)
    }

    /// From the cluster: the credential `namespace/name`, then the Secret its status names.
    pub async fn from_cluster(
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Self, ClientError> {
        let id = format!("{namespace}/{name}");
        let sac = Api::<ServiceAccountCredential>::namespaced(client.clone(), namespace)
            .get(name)
            .await
            .map_err(|source| ClientError::Kube {
                what: format!("ServiceAccountCredential {id}"),
                source,
            })?;
        let issued = sac
            .status
            .as_ref()
            .and_then(|s| s.client_id.as_ref())
            .is_some();
        let secret_name = sac
            .status
            .and_then(|s| s.secret_name)
            .filter(|_| issued)
            .ok_or_else(|| ClientError::NotIssued(id.clone()))?;
        let secret = Api::<Secret>::namespaced(client.clone(), namespace)
            .get(&secret_name)
            .await
            .map_err(|source| ClientError::Kube {
                what: format!("Secret {namespace}/{secret_name}"),
                source,
            })?;
        let entries = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        Self::from_entries(&entries)
    }
}

/// RFC 6749 §2.3.1: the client id and secret are form-encoded before Basic encoding. Everything
/// but unreserved characters is escaped (`application/x-www-form-urlencoded`).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'*');

fn form(s: &str) -> String {
    utf8_percent_encode(s, FORM).to_string().replace("%20", "+")
}

/// The TLS settings of a request to Portcullis (`portcullis token`, `portcullis login`): the
/// system's roots (or those of `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, as OpenSSL does), plus
/// `extra_ca` (PEM) if given.
pub(crate) fn tls_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let ca_err = |message: String| ClientError::Ca {
            path: path.to_path_buf(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let mut added = 0;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| ca_err(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_err("no PEM certificate found".into()));
        }
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A token response.
#[derive(Debug, serde::Deserialize)]
struct TokenResponse {
    access_token: String,
}

/// An error response.
#[derive(Debug, serde::Deserialize)]
struct ErrorResponse {
    error: String,
    error_description: Option<String>,
}

/// Gets an access token with `client_credentials` and `client_secret_basic`, asking for
/// `scopes` (none: the credential's own).
/// An HTTP/1.1 and h2 client for http and https URLs, trusting the system roots and
/// `extra_ca`.
pub(crate) fn https_client<B>(
    extra_ca: Option<&Path>,
) -> Result<
    hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        B,
    >,
    ClientError,
>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(extra_ca)?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, B>(connector),
    )
}

pub async fn request_token(
    creds: &ClientCredentials,
    scopes: &[String],
    extra_ca: Option<&Path>,
) -> Result<String, ClientError> {
    let url = creds.token_url.to_string();
    let http_err = |source: Box<dyn std::error::Error + Send + Sync>| ClientError::Http {
        url: url.clone(),
        source,
    };
    let client = https_client::<Full<bytes::Bytes>>(extra_ca)?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        form(&creds.client_id),
        form(creds.client_secret.expose())
    ));
    let mut body = "grant_type=client_credentials".to_owned();
    if !scopes.is_empty() {
        body.push_str("&scope=");
        body.push_str(&form(&scopes.join(" ")));
    }
    let request = Request::post(url.as_str())
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| http_err(Box::new(e)))?;
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
            .await
            .map_err(|e| http_err(Box::new(e)))?
            .map_err(|e| http_err(Box::new(e)))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(http_err)?
        .to_bytes();
    if status.is_success() {
        return serde_json::from_slice::<TokenResponse>(&bytes)
            .map(|t| t.access_token)
            .map_err(|_| ClientError::BadResponse { status });
    }
    match serde_json::from_slice::<ErrorResponse>(&bytes) {
        Ok(e) => Err(ClientError::Refused {
            status,
            error: e.error,
            description: e.error_description,
        }),
        Err(_) => Err(ClientError::BadResponse { status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_every_shape_of_mounted_secret() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = dir.path().join("mounted");
        std::fs::create_dir(&mounted).unwrap();
        write(&mounted, "client_id", "abc");
        write(&mounted, "client_secret", "pcs_x\n");
        write(&mounted, "token_url", "http://localhost:8080/oauth2/token");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let manifest = write(
            dir.path(),
            "secret.yaml",
            &format!(
                "apiVersion: v1\nkind: Secret\ndata:\n  client_id: {}\n  client_secret: {}\n  token_url: {}\n",
                b64("abc"),
                b64("pcs_x"),
                b64("http://localhost:8080/oauth2/token")
            ),
        );
        let plain = write(
            dir.path(),
            "plain.json",
            r#"{"client_id":"abc","client_secret":"pcs_x","token_url":"http://localhost:8080/oauth2/token"}"#,
        );
        for p in [&mounted, &manifest, &plain] {
            let c = ClientCredentials::from_path(p).unwrap();
            assert_eq!(c.client_id, "abc");
            assert_eq!(c.client_secret.expose(), "pcs_x");
            assert_eq!(c.token_url.as_str(), "http://localhost:8080/oauth2/token");
        }
    }

    #[test]
    fn bad_secrets_say_what_is_missing_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "s.json",
            r#"{"client_id":"abc","client_secret":"pcs_hidden"}"#,
        );
        let e = ClientCredentials::from_path(&p).unwrap_err();
        assert_eq!(e.to_string(), "the Secret has no token_url entry");
        let p = write(
            dir.path(),
            "t.json",
            r#"{"client_id":"abc","client_secret":"pcs_hidden","token_url":"file:///etc/passwd"}"#,
        );
        let e = ClientCredentials::from_path(&p).unwrap_err();
        assert!(e.to_string().contains("not an http or https URL"), "{e}");
        let c = ClientCredentials {
            client_id: "a".into(),
            client_secret: ClientSecret::new("pcs_hidden"),
            token_url: "http://x/".parse().unwrap(),
        };
        assert!(!format!("{c:?}").contains("pcs_hidden"));
    }

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        assert_eq!(form("a b+c/d:é"), "a+b%2Bc%2Fd%3A%C3%A9");
        assert_eq!(form("pcs_AZaz09-_"), "pcs_AZaz09-_");
    }
}
