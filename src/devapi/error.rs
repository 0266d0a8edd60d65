//! Errors of the embedded API, shaped as Kubernetes `Status` objects.
//!
//! Every failure a client can see goes through [`ApiError`], which renders the same `Status` body
//! (`kind`, `reason`, `message`, `details`, `code`) kube-apiserver sends, so kubectl, helm and
//! kube-rs print and classify it as they would against a real cluster.

use serde_json::{Value, json};

/// A Kubernetes `StatusCause` (one field-level problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Machine-readable cause (`FieldValueRequired`, `FieldValueInvalid`, ...).
    pub reason: String,
    /// Human-readable description.
    pub message: String,
    /// The field path (`spec.to[0].service.port`).
    pub field: String,
}

/// A failed API request, rendered as a `Status` with an HTTP status code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details.{group, kind, name}` when the error concerns one object.
    pub details: Option<Box<Details>>,
    /// `Status.details.causes`.
    pub causes: Vec<Cause>,
}

/// The object an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    /// API group (empty for core).
    pub group: String,
    /// Resource plural (Kubernetes puts the plural into `details.kind` for most errors).
    pub kind: String,
    /// Object name.
    pub name: String,
}

/// `Result` with [`ApiError`] as the default error.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// `plural.group` as kube-apiserver names a resource in messages (`routes.portcullis.dev`, `configmaps`).
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            causes: Vec::new(),
        }
    }

    fn about(mut self, group: &str, plural: &str, name: &str) -> Self {
        self.details = Some(Box::new(Details {
            group: group.to_string(),
            kind: plural.to_string(),
            name: name.to_string(),
        }));
        self
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden about one object.
    pub fn forbidden(group: &str, plural: &str, name: &str, why: impl std::fmt::Display) -> Self {
        let what = qualified(group, plural);
        Self::new(
            403,
            "Forbidden",
            format!("{what} \"{name}\" is forbidden: {why}"),
        )
        .about(group, plural, name)
    }

    /// 404 NotFound for an object.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        let what = qualified(group, plural);
        Self::new(404, "NotFound", format!("{what} \"{name}\" not found"))
            .about(group, plural, name)
    }

    /// 404 for a path that names no resource.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(method: &str, what: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method} {what})"
            ),
        )
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(accept: &str) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: application/json, application/yaml (asked for {accept})"
            ),
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        let what = qualified(group, plural);
        Self::new(
            409,
            "AlreadyExists",
            format!("{what} \"{name}\" already exists"),
        )
        .about(group, plural, name)
    }

    /// 409 Conflict for a stale `resourceVersion`.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        let what = qualified(group, plural);
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {what} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .about(group, plural, name)
    }

    /// 410 Expired / Gone for a resource version older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media(content_type: &str, accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 422 Invalid with field causes; `kind` is the object's Kind (`Route`), as Kubernetes writes it.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let mut list: Vec<String> = Vec::new();
        for c in &causes {
            let line = if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            };
            if !list.contains(&line) {
                list.push(line);
            }
        }
        let joined = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {joined}"),
        );
        e.details = Some(Box::new(Details {
            group: group.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
        }));
        e.causes = causes;
        e
    }

    /// 422 with a single field problem.
    pub fn invalid_field(
        group: &str,
        kind: &str,
        name: &str,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        Self::invalid(
            group,
            kind,
            name,
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message,
                field: field.to_string(),
            }],
        )
    }

    /// 500 InternalError; the message must not carry secrets or internals beyond a short reason.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 504 Timeout (e.g. a resource version from the future).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.details.is_some() || !self.causes.is_empty() {
            let mut details = serde_json::Map::new();
            if let Some(d) = &self.details {
                details.insert("name".into(), json!(d.name));
                if !d.group.is_empty() {
                    details.insert("group".into(), json!(d.group));
                }
                details.insert("kind".into(), json!(d.kind));
            }
            if !self.causes.is_empty() {
                details.insert(
                    "causes".into(),
                    Value::Array(
                        self.causes
                            .iter()
                            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                            .collect(),
                    ),
                );
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_shaped_like_kubernetes() {
        let s = ApiError::not_found("portcullis.dev", "routes", "x").to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "routes.portcullis.dev \"x\" not found");
        assert_eq!(s["details"]["kind"], "routes");
        assert_eq!(s["details"]["group"], "portcullis.dev");
    }

    #[test]
    fn invalid_lists_causes() {
        let e = ApiError::invalid(
            "portcullis.dev",
            "Route",
            "r",
            vec![
                Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "spec.to".into(),
                },
                Cause {
                    reason: "FieldValueInvalid".into(),
                    message: "Invalid value: \"x\": bad".into(),
                    field: "spec.from".into(),
                },
            ],
        );
        assert_eq!(
            e.message,
            "Route.portcullis.dev \"r\" is invalid: [spec.to: Required value, spec.from: Invalid value: \"x\": bad]"
        );
        assert_eq!(e.to_status()["details"]["causes"][0]["field"], "spec.to");
    }
}
