//! Which API calls clients make: `portcullis dev --record-api-access FILE` appends one JSON line
//! per distinct (user agent, verb, group, resource, namespace) the embedded API serves, the way a
//! cluster's audit log would show them. The e2e suite compares what Portcullis's own controller
//! called with the RBAC rules of the Helm chart, so the chart grants what the code needs and not
//! much more.
//!
//! Verbs are Kubernetes authorization verbs: `get`, `list`, `watch`, `create`, `update`,
//! `patch`, `delete`, `deletecollection`. `resource` is the plural, with `/subresource`.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use http::Method;
use serde::Serialize;

/// One distinct kind of call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    /// The client's `User-Agent` (empty when it sent none).
    pub user_agent: String,
    /// The authorization verb.
    pub verb: &'static str,
    /// The API group (`""` for core).
    pub group: String,
    /// The resource plural, with `/subresource` when one was addressed.
    pub resource: String,
    /// The namespace of a namespaced request, `None` for a cluster-wide one.
    pub namespace: Option<String>,
}

/// The authorization verb of a request on a resource path.
pub fn verb(method: &Method, named: bool, watch: bool) -> Option<&'static str> {
    Some(match (method.as_str(), named) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    })
}

/// Appends each distinct [`Access`] to a file once, as JSON lines.
#[derive(Debug)]
pub struct AccessRecorder {
    path: PathBuf,
    seen: Mutex<HashSet<Access>>,
}

impl AccessRecorder {
    /// A recorder appending to `path` (created if missing).
    pub fn new(path: PathBuf) -> std::io::Result<Self> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Self {
            path,
            seen: Mutex::new(HashSet::new()),
        })
    }

    /// Records `access` unless it was seen before. Errors writing are logged, never returned:
    /// recording must not change what the API answers.
    pub fn record(&self, access: Access) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(&access) {
            return;
        }
        let written = serde_json::to_string(&access)
            .map_err(std::io::Error::other)
            .and_then(|line| {
                let mut file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
                writeln!(file, "{line}")
            });
        if let Err(error) = written {
            tracing::warn!(path = %self.path.display(), %error, "recording an API access failed");
        }
        seen.insert(access);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn verbs_follow_kubernetes_authorization() {
        assert_eq!(verb(&Method::GET, true, false), Some("get"));
        assert_eq!(verb(&Method::GET, false, false), Some("list"));
        assert_eq!(verb(&Method::GET, false, true), Some("watch"));
        assert_eq!(verb(&Method::POST, false, false), Some("create"));
        assert_eq!(verb(&Method::PUT, true, false), Some("update"));
        assert_eq!(verb(&Method::PATCH, true, false), Some("patch"));
        assert_eq!(verb(&Method::DELETE, true, false), Some("delete"));
        assert_eq!(
            verb(&Method::DELETE, false, false),
            Some("deletecollection")
        );
        assert_eq!(verb(&Method::OPTIONS, true, false), None);
    }

    #[test]
    fn each_distinct_access_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.jsonl");
        let recorder = AccessRecorder::new(path.clone()).unwrap();
        let access = Access {
            user_agent: "portcullis/0.1.0".into(),
            verb: "list",
            group: "portcullis.dev".into(),
            resource: "routes".into(),
            namespace: None,
        };
        recorder.record(access.clone());
        recorder.record(access.clone());
        recorder.record(Access {
            verb: "watch",
            ..access
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            r#"{"userAgent":"portcullis/0.1.0","verb":"list","group":"portcullis.dev","resource":"routes","namespace":null}"#
        );
    }
}
