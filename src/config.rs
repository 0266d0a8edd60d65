//! Process settings (DESIGN.md §2): built-in defaults, then the mode's defaults (`portcullis
//! dev` allows loopback upstreams, keeps its store in memory and logs as text), then the
//! optional YAML file (`--config`), then `PORTCULLIS_<UPPER_SNAKE_PATH>` environment variables,
//! then command-line flags, in rising precedence. [`Settings::load`] validates the result and
//! names the bad key in every error. The environment is passed in, never read from globals, so
//! loading is testable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Errors loading settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The settings file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The settings file is not valid YAML.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// One setting is invalid.
    #[error("setting `{key}`: {message}")]
    Invalid {
        /// Dotted camelCase path of the setting (`listen.http`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An environment variable names no setting.
    #[error("environment variable {0} does not name a setting")]
    UnknownEnv(String),
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// A Go-style duration (`30s`, `1h30m`, `720h`) as used in settings and CRDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

/// Parse a Go duration string: one or more `<number><unit>` with units ns, us, µs, ms, s, m, h.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let err =
        || format!("invalid duration {s:?}: use a number with a unit, such as 30s, 15m or 720h");
    if s.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 100.0 * 365.0 * 86400.0 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Format a duration the way Go prints it (`1h0m0s` is written `1h`).
pub fn format_go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

impl Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_go_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_go_duration(&s)
            .map(GoDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// Listen addresses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Listen {
    /// Plain HTTP proxy listener.
    pub http: SocketAddr,
    /// HTTPS proxy listener.
    pub https: SocketAddr,
    /// SSH listener.
    pub ssh: SocketAddr,
    /// Admin listener (health, readiness, metrics).
    pub admin: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            http: SocketAddr::from(([0, 0, 0, 0], 8080)),
            https: SocketAddr::from(([0, 0, 0, 0], 8443)),
            ssh: SocketAddr::from(([0, 0, 0, 0], 2222)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

/// A reference to a key of a Secret in Portcullis's namespace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key in the Secret's data.
    pub key: String,
}

/// The people's identity provider (OIDC).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Idp {
    /// Issuer URL (discovery at `/.well-known/openid-configuration`).
    pub issuer: String,
    /// OAuth client id.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Client secret from a Secret in Portcullis's namespace.
    pub client_secret_ref: Option<SecretKeyRef>,
    /// Client secret from a file.
    pub client_secret_file: Option<String>,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// Extra authorization-request parameters.
    pub auth_params: BTreeMap<String, String>,
    /// More audiences (besides `clientID`) accepted on the provider's tokens presented to
    /// Portcullis: token exchange and routes with `bearerTokenFormat: idp_*`.
    pub allowed_audiences: Vec<String>,
}

/// An external JWT issuer accepted as bearer tokens on routes that list it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalIssuer {
    /// Issuer URL (`iss`).
    pub issuer: String,
    /// Accepted audiences (never empty).
    pub audiences: Vec<String>,
    /// Accepted signature algorithms.
    #[serde(default)]
    pub supported_algs: Vec<String>,
}

/// Signing keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Signing {
    /// Secret (in Portcullis's namespace) holding the keys.
    pub secret_name: String,
    /// `ES256`, `EdDSA` or `RS256`.
    pub algorithm: String,
    /// Rotation period.
    pub rotate_every: GoDuration,
}

impl Default for Signing {
    fn default() -> Self {
        Self {
            secret_name: "portcullis-signing-keys".into(),
            algorithm: "ES256".into(),
            rotate_every: GoDuration(Duration::from_secs(720 * 3600)),
        }
    }
}

/// Optional downstream client-certificate verification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DownstreamMtls {
    /// Secret with the client CA (`ca.crt`); empty disables mTLS.
    pub ca_secret: String,
}

/// TLS defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsSettings {
    /// `namespace/name` of the default certificate Secret.
    pub default_certificate_secret: String,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LogSettings {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// `json` or `text`.
    pub format: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "json".into(),
        }
    }
}

/// Where sessions, client bindings and revocations live (see `docs/store.md`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StoreBackend {
    /// In this process only: nothing survives a restart and replicas do not share it.
    Memory,
    /// Secrets in Portcullis's namespace, watched by every replica.
    Kubernetes,
}

/// The store of sessions, bindings and revocations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `memory` or `kubernetes`.
    pub backend: StoreBackend,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Kubernetes,
        }
    }
}

/// All process settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Settings {
    /// Portcullis's own namespace.
    pub namespace: String,
    /// Where the identity endpoints live.
    #[serde(rename = "authenticateURL")]
    pub authenticate_url: Option<String>,
    /// Listen addresses.
    pub listen: Listen,
    /// Redirect plain-HTTP route requests to https.
    pub http_redirect: bool,
    /// The people's identity provider.
    pub idp: Option<Idp>,
    /// Exact extra hosts allowed as programmatic-login redirect targets.
    pub programmatic_redirect_domains: Vec<String>,
    /// External JWT issuers by name.
    pub identity_providers: BTreeMap<String, ExternalIssuer>,
    /// Session lifetime.
    pub session_lifetime: GoDuration,
    /// Client-binding lifetime.
    pub binding_lifetime: GoDuration,
    /// Signing keys.
    pub signing: Signing,
    /// `aud` of access tokens.
    pub access_token_audience: String,
    /// Namespaces to watch; empty means all.
    pub watch_namespaces: Vec<String>,
    /// Allow loopback upstream URLs.
    pub allow_loopback_upstreams: bool,
    /// Allow Services of type `ExternalName` as backends (off: they can point anywhere).
    pub allow_external_name_services: bool,
    /// The proxy's address (IP or host name) written into `status.loadBalancer` of our
    /// Ingresses; empty writes nothing.
    pub publish_status_address: String,
    /// Downstream mTLS.
    #[serde(rename = "downstreamMTLS")]
    pub downstream_mtls: DownstreamMtls,
    /// TLS defaults.
    pub tls: TlsSettings,
    /// The store of sessions, bindings and revocations.
    pub store: StoreSettings,
    /// Logging.
    pub log: LogSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: "portcullis-system".into(),
            authenticate_url: None,
            listen: Listen::default(),
            http_redirect: false,
            idp: None,
            programmatic_redirect_domains: Vec::new(),
            identity_providers: BTreeMap::new(),
            session_lifetime: GoDuration(Duration::from_secs(14 * 3600)),
            binding_lifetime: GoDuration(Duration::from_secs(48 * 3600)),
            signing: Signing::default(),
            access_token_audience: "portcullis".into(),
            watch_namespaces: Vec::new(),
            allow_loopback_upstreams: false,
            allow_external_name_services: false,
            publish_status_address: String::new(),
            downstream_mtls: DownstreamMtls::default(),
            tls: TlsSettings::default(),
            store: StoreSettings::default(),
            log: LogSettings::default(),
        }
    }
}

/// `camelCase` / `authenticateURL` → `AUTHENTICATE_URL`.
fn upper_snake(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Every settable leaf path (maps and lists are leaves set as YAML text).
fn leaf_paths() -> Vec<Vec<String>> {
    let mut template = Settings {
        idp: Some(Idp {
            client_secret_ref: Some(SecretKeyRef::default()),
            client_secret_file: Some(String::new()),
            ..Idp::default()
        }),
        authenticate_url: Some(String::new()),
        ..Settings::default()
    };
    template.identity_providers.clear();
    let v = serde_json::to_value(&template).unwrap_or(Value::Null);
    let mut out = Vec::new();
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(m)
                if !m.is_empty()
                    && path.last().map(String::as_str) != Some("identityProviders")
                    && path.last().map(String::as_str) != Some("authParams") =>
            {
                for (k, child) in m {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.clone()),
        }
    }
    walk(&v, &mut Vec::new(), &mut out);
    out
}

fn set_path(root: &mut Value, path: &[String], value: Value) {
    let mut cur = root;
    for (i, seg) in path.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Some(m) = cur.as_object_mut() else { return };
        if i == path.len() - 1 {
            m.insert(seg.clone(), value);
            return;
        }
        cur = m.entry(seg.clone()).or_insert_with(|| json!({}));
    }
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// What `portcullis dev` changes in the defaults.
pub fn dev_defaults() -> Value {
    json!({
        "allowLoopbackUpstreams": true,
        "publishStatusAddress": "127.0.0.1",
        "store": {"backend": "memory"},
        "log": {"format": "text"},
    })
}

impl Settings {
    /// Load settings: defaults ← `mode_defaults` ← file ← `env` (`PORTCULLIS_*`) ← `overrides`
    /// (dotted camelCase path → value), then validate.
    pub fn load(
        mode_defaults: Value,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: Vec<(&str, Value)>,
    ) -> Result<Settings, ConfigError> {
        let mut v = serde_json::to_value(Settings::default()).unwrap_or_else(|_| json!({}));
        merge(&mut v, mode_defaults);
        if let Some(path) = file {
            let shown = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            let doc = crate::yaml::from_slice(&bytes).map_err(|e| ConfigError::Syntax {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            match doc {
                Value::Null => {}
                Value::Object(_) => merge(&mut v, doc),
                _ => {
                    return Err(ConfigError::Syntax {
                        path: shown,
                        message: "the settings file must be a mapping".into(),
                    });
                }
            }
        }
        let leaves: BTreeMap<String, Vec<String>> = leaf_paths()
            .into_iter()
            .map(|p| {
                let name = format!(
                    "PORTCULLIS_{}",
                    p.iter()
                        .map(|s| upper_snake(s))
                        .collect::<Vec<_>>()
                        .join("_")
                );
                (name, p)
            })
            .collect();
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("PORTCULLIS_"))
            .collect();
        env.sort();
        for (k, raw) in env {
            let path = leaves
                .get(&k)
                .ok_or_else(|| ConfigError::UnknownEnv(k.clone()))?;
            let value = crate::yaml::from_slice(raw.as_bytes())
                .map_err(|e| invalid(&path.join("."), format!("{k}: {e}")))?;
            // A value that YAML reads as a number or boolean stays text where text is expected.
            set_path(&mut v, path, value.clone());
            if serde_json::from_value::<Settings>(v.clone()).is_err() && !value.is_string() {
                set_path(&mut v, path, Value::String(raw));
            }
        }
        for (key, value) in overrides {
            let path: Vec<String> = key.split('.').map(String::from).collect();
            set_path(&mut v, &path, value);
        }
        let s: Settings = serde_path_to_error::deserialize(v).map_err(|e| {
            let key = e.path().to_string();
            invalid(&key, e.into_inner().to_string())
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Check what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if crate::devapi::meta::validate_name(
            &self.namespace,
            crate::devapi::resources::NameRule::Label,
        )
        .is_err()
        {
            return Err(invalid(
                "namespace",
                "must be a DNS-1123 label (lower-case letters, digits and '-')",
            ));
        }
        if let Some(u) = &self.authenticate_url {
            check_url("authenticateURL", u)?;
        }
        if let Some(idp) = &self.idp {
            check_url("idp.issuer", &idp.issuer)?;
            if idp.client_id.is_empty() {
                return Err(invalid("idp.clientID", "is required"));
            }
            if idp.client_secret_ref.is_some() && idp.client_secret_file.is_some() {
                return Err(invalid(
                    "idp.clientSecretRef",
                    "set clientSecretRef or clientSecretFile, not both",
                ));
            }
        }
        for (name, p) in &self.identity_providers {
            check_url(&format!("identityProviders.{name}.issuer"), &p.issuer)?;
            if p.audiences.is_empty() {
                return Err(invalid(
                    &format!("identityProviders.{name}.audiences"),
                    "must not be empty",
                ));
            }
        }
        for d in &self.programmatic_redirect_domains {
            if d.is_empty() || d.contains(['/', ':', '@', '#', '?', ' ']) {
                return Err(invalid(
                    "programmaticRedirectDomains",
                    format!("{d:?} is not a host name"),
                ));
            }
        }
        if !matches!(self.signing.algorithm.as_str(), "ES256" | "EdDSA" | "RS256") {
            return Err(invalid(
                "signing.algorithm",
                "must be ES256, EdDSA or RS256",
            ));
        }
        for (key, d) in [
            ("sessionLifetime", self.session_lifetime),
            ("bindingLifetime", self.binding_lifetime),
            ("signing.rotateEvery", self.signing.rotate_every),
        ] {
            if d.0.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if self.access_token_audience.is_empty() {
            return Err(invalid("accessTokenAudience", "must not be empty"));
        }
        if !matches!(
            self.log.level.as_str(),
            "trace" | "debug" | "info" | "warn" | "error"
        ) {
            return Err(invalid(
                "log.level",
                "must be trace, debug, info, warn or error",
            ));
        }
        if !matches!(self.log.format.as_str(), "json" | "text") {
            return Err(invalid("log.format", "must be json or text"));
        }
        Ok(())
    }
}

fn check_url(key: &str, u: &str) -> Result<(), ConfigError> {
    let parsed =
        url::Url::parse(u).map_err(|e| invalid(key, format!("{u:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(
            key,
            format!("{u:?} must be an http or https URL with a host"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "10", "h", "1d", "-1s", "1h-", "1e9h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_go_duration(Duration::from_secs(720 * 3600)), "720h");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn env_names() {
        assert_eq!(upper_snake("authenticateURL"), "AUTHENTICATE_URL");
        assert_eq!(upper_snake("clientID"), "CLIENT_ID");
        assert_eq!(upper_snake("downstreamMTLS"), "DOWNSTREAM_MTLS");
        assert_eq!(
            upper_snake("programmaticRedirectDomains"),
            "PROGRAMMATIC_REDIRECT_DOMAINS"
        );
    }

    #[test]
    fn precedence_file_env_flags() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            "namespace: from-file\nlog: {level: debug}\nlisten: {http: 127.0.0.1:1000}\n",
        )
        .expect("write");
        let s = Settings::load(
            dev_defaults(),
            Some(&f),
            env(&[
                ("PORTCULLIS_LISTEN_HTTP", "127.0.0.1:2000"),
                ("PORTCULLIS_ACCESS_TOKEN_AUDIENCE", "api"),
                ("HOME", "/root"),
            ]),
            vec![("listen.admin", json!("127.0.0.1:3000"))],
        )
        .expect("load");
        assert_eq!(s.namespace, "from-file");
        assert_eq!(s.log.level, "debug");
        assert_eq!(s.log.format, "text");
        assert!(s.allow_loopback_upstreams);
        assert_eq!(
            s.listen.http,
            "127.0.0.1:2000".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(s.listen.admin.port(), 3000);
        assert_eq!(s.access_token_audience, "api");
    }

    #[test]
    fn store_backend_defaults_by_mode_and_is_checked() {
        let run = Settings::load(json!({}), None, vec![], vec![]).expect("run");
        assert_eq!(run.store.backend, StoreBackend::Kubernetes);
        let dev = Settings::load(dev_defaults(), None, vec![], vec![]).expect("dev");
        assert_eq!(dev.store.backend, StoreBackend::Memory);
        let dev = Settings::load(
            dev_defaults(),
            None,
            env(&[("PORTCULLIS_STORE_BACKEND", "kubernetes")]),
            vec![],
        )
        .expect("env");
        assert_eq!(dev.store.backend, StoreBackend::Kubernetes);
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "store: {backend: memory}\n").expect("write");
        let s = Settings::load(json!({}), Some(&f), vec![], vec![]).expect("file");
        assert_eq!(s.store.backend, StoreBackend::Memory);
        for bad in ["store: {backend: redis}\n", "store: {backnd: memory}\n"] {
            std::fs::write(&f, bad).expect("write");
            let e = Settings::load(json!({}), Some(&f), vec![], vec![]).expect_err(bad);
            assert!(e.to_string().contains("store"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "listen: {htp: 1}\n").expect("write");
        let e = Settings::load(json!({}), Some(&f), vec![], vec![]).expect_err("unknown");
        assert!(e.to_string().contains("listen"), "{e}");
        std::fs::write(&f, "sessionLifetime: forever\n").expect("write");
        let e = Settings::load(json!({}), Some(&f), vec![], vec![]).expect_err("duration");
        assert!(e.to_string().contains("sessionLifetime"), "{e}");
        let e = Settings::load(json!({}), None, env(&[("PORTCULLIS_NOPE", "1")]), vec![])
            .expect_err("env");
        assert!(e.to_string().contains("PORTCULLIS_NOPE"), "{e}");
        let e = Settings::load(
            json!({}),
            None,
            vec![],
            vec![("signing.algorithm", json!("HS256"))],
        )
        .expect_err("alg");
        assert!(e.to_string().contains("signing.algorithm"), "{e}");
        let e = Settings::load(
            json!({}),
            None,
            env(&[("PORTCULLIS_LISTEN_ADMIN", "nowhere")]),
            vec![],
        )
        .expect_err("addr");
        assert!(e.to_string().contains("listen.admin"), "{e}");
    }
}
