//! Kubernetes API types of Portcullis: the `portcullis.dev/v1alpha1` custom resources (one file
//! per kind) and the CRDs generated from them.
//!
//! Only the controller (and `portcullis crds`) use these wire types; the routing, policy, proxy
//! and identity layers work on domain types the controller compiles from them. `crds/` in the
//! repository holds [`crd_yaml`] of every CRD in [`all_crds`]; a test fails when it drifts.

mod common;
mod credential;
mod route;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use common::{
    CLAIM_NAME_PATTERN, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_MAX_LENGTH,
    DURATION_PATTERN, GoDuration, HEADER_NAME_MAX_LENGTH, HEADER_NAME_PATTERN,
    HEADER_VALUE_MAX_LENGTH, HEADER_VALUE_PATTERN, MAX_HEADERS, RESERVED_HEADER_NAMES,
    RESERVED_HEADER_PREFIX, SECRET_KEY_PATTERN, SERVICE_NAME_PATTERN, SecretKeyRef,
};
pub use credential::{
    CLAIM_NAME_MAX_LENGTH, CLAIM_VALUE_MAX_LENGTH, Federation, ISSUER_PATTERN, JWKS_URL_PATTERN,
    MAX_CLAIMS, RESERVED_CLAIM_NAMES, RESERVED_CLAIM_PREFIXES, Rotation, SCOPE_PATTERN,
    ServiceAccountCredential, ServiceAccountCredentialSpec, ServiceAccountCredentialStatus,
    TOKEN_STRING_PATTERN,
};
pub use route::{
    Backend, BearerTokenFormat, FROM_PATTERN, HOST_PATTERN, PATH_PATTERN, POLICY_MAX_PROPERTIES,
    Route, RoutePolicy, RouteSpec, RouteStatus, RouteTarget, RouteTls, ServiceTarget,
    UPSTREAM_URL_PATTERN,
};

/// API group of every Portcullis custom resource.
pub const GROUP: &str = "portcullis.dev";

/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Every Portcullis CRD, in a fixed order: routes, then serviceaccountcredentials.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![Route::crd(), ServiceAccountCredential::crd()]
}

/// One CRD as a YAML document, starting with `---`. This is the exact content of
/// `crds/<crd_file_name>`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!("---\n{}", serde_yaml::to_string(crd)?))
}

/// Every CRD of [`all_crds`] as one multi-document YAML stream (what `portcullis crds` prints):
/// the [`crd_yaml`] documents one after another, byte for byte stable.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    all_crds().iter().map(crd_yaml).collect()
}

/// File name of a CRD under `crds/`: `<crd name>.yaml`, e.g. `routes.portcullis.dev.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::PathBuf;

    fn schemas() -> Vec<(String, Value)> {
        all_crds()
            .iter()
            .map(|crd| {
                let crd = serde_json::to_value(crd).unwrap();
                let name = crd["metadata"]["name"].as_str().unwrap().to_string();
                (
                    name,
                    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
                )
            })
            .collect()
    }

    /// Checks the Kubernetes structural-schema rules (and a few more the apiserver enforces) on
    /// one node and its children, collecting problems.
    fn check_structural(node: &Value, path: &str, problems: &mut Vec<String>) {
        let Some(object) = node.as_object() else {
            problems.push(format!("{path}: schema is not an object"));
            return;
        };
        for forbidden in [
            "$ref",
            "$schema",
            "definitions",
            "$defs",
            "anyOf",
            "oneOf",
            "allOf",
            "not",
            "patternProperties",
            "dependencies",
            "const",
            "examples",
        ] {
            if object.contains_key(forbidden) {
                problems.push(format!("{path}: has {forbidden}"));
            }
        }
        if object.get("uniqueItems") == Some(&Value::Bool(true)) {
            problems.push(format!("{path}: uniqueItems is not allowed"));
        }
        if object.get("type").is_some_and(|t| !t.is_string()) {
            problems.push(format!("{path}: type must be a single string"));
        }
        let typed = object.contains_key("type")
            || object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if !typed {
            problems.push(format!("{path}: no type"));
        }
        if object.contains_key("properties") && object.contains_key("additionalProperties") {
            problems.push(format!("{path}: both properties and additionalProperties"));
        }
        if let Some(additional) = object.get("additionalProperties") {
            if additional.is_boolean() {
                problems.push(format!("{path}: boolean additionalProperties"));
            } else {
                check_structural(additional, &format!("{path}.*"), problems);
            }
        }
        if object.get("type") == Some(&Value::String("array".into()))
            && !object.contains_key("items")
        {
            problems.push(format!("{path}: array without items"));
        }
        if let Some(items) = object.get("items") {
            match object.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") if items["type"] == "object" || items["type"] == "array" => {
                    problems.push(format!("{path}: list-type set needs scalar items"));
                }
                Some("map") => {
                    let keys = object["x-kubernetes-list-map-keys"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let required = items["required"].as_array().cloned().unwrap_or_default();
                    if keys.is_empty() || keys.iter().any(|k| !required.contains(k)) {
                        problems.push(format!("{path}: list-map keys must be required"));
                    }
                }
                _ => {}
            }
            check_structural(items, &format!("{path}[]"), problems);
        }
        if let Some(properties) = object.get("properties").and_then(Value::as_object) {
            for (name, child) in properties {
                check_structural(child, &format!("{path}.{name}"), problems);
            }
        }
        for rule in object
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let message = rule["message"].as_str().unwrap_or_default();
            if rule["rule"].as_str().is_none_or(str::is_empty)
                || message.is_empty()
                || message.contains('\n')
            {
                problems.push(format!("{path}: rule without a one-line message: {rule}"));
            }
        }
    }

    #[test]
    fn every_schema_is_structural() {
        for (name, schema) in schemas() {
            let mut problems = Vec::new();
            check_structural(&schema, &name, &mut problems);
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }

    /// The apiserver's CEL cost estimator needs bounds on every string, list and map a rule may
    /// touch; every one under `spec` gets one, so new rules stay cheap too.
    fn check_bounded(node: &Value, path: &str, problems: &mut Vec<String>) {
        let bounded = |key: &str| node.get(key).is_some();
        match node["type"].as_str() {
            Some("string") if !(bounded("maxLength") || bounded("enum")) => {
                problems.push(format!("{path}: string without maxLength"));
            }
            Some("array") if !bounded("maxItems") => {
                problems.push(format!("{path}: list without maxItems"))
            }
            Some("object")
                if (node.get("additionalProperties").is_some()
                    || node.get("x-kubernetes-preserve-unknown-fields").is_some())
                    && !bounded("maxProperties") =>
            {
                problems.push(format!("{path}: map without maxProperties"));
            }
            _ => {}
        }
        if let Some(items) = node.get("items") {
            check_bounded(items, &format!("{path}[]"), problems);
        }
        if let Some(additional) = node.get("additionalProperties") {
            check_bounded(additional, &format!("{path}.*"), problems);
        }
        for (name, child) in node
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            check_bounded(child, &format!("{path}.{name}"), problems);
        }
    }

    #[test]
    fn every_spec_string_list_and_map_is_bounded() {
        for (name, schema) in schemas() {
            let mut problems = Vec::new();
            check_bounded(
                &schema["properties"]["spec"],
                &format!("{name}.spec"),
                &mut problems,
            );
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }

    #[test]
    fn crds_come_in_a_fixed_order_with_stable_yaml() {
        let names: Vec<String> = all_crds().iter().map(crd_file_name).collect();
        assert_eq!(
            names,
            [
                "routes.portcullis.dev.yaml",
                "serviceaccountcredentials.portcullis.dev.yaml"
            ]
        );
        let all = crds_yaml().unwrap();
        assert_eq!(all, crds_yaml().unwrap());
        let joined: String = all_crds()
            .iter()
            .map(|crd| crd_yaml(crd).unwrap())
            .collect();
        assert_eq!(all, joined);
        assert!(all.starts_with("---\napiVersion: apiextensions.k8s.io/v1\n"));
        assert_eq!(all.matches("\n---\n").count(), 1);
        for crd in all_crds() {
            let yaml = crd_yaml(&crd).unwrap();
            let parsed: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
            assert_eq!(parsed, crd);
        }
    }

    fn repo_file(relative: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
    }

    /// `crds/` and the Helm chart's `charts/portcullis/crds/` must hold exactly what the code
    /// generates. To regenerate both after changing a type, run the tests with `UPDATE_CRDS=1`.
    #[test]
    fn committed_crds_match_the_types() {
        let update = std::env::var_os("UPDATE_CRDS").is_some();
        for dir in ["crds", "charts/portcullis/crds"] {
            for crd in all_crds() {
                let path = repo_file(&format!("{dir}/{}", crd_file_name(&crd)));
                let generated = crd_yaml(&crd).unwrap();
                if update {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, &generated).unwrap();
                }
                let committed = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    committed == generated,
                    "{} is out of date: rerun the tests with UPDATE_CRDS=1 and commit the result",
                    path.display()
                );
            }
        }
        // Nothing else in the chart's crds/: helm would install it too.
        let mut listed: Vec<String> = std::fs::read_dir(repo_file("charts/portcullis/crds"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        listed.sort();
        let mut expected: Vec<String> = all_crds().iter().map(crd_file_name).collect();
        expected.sort();
        assert_eq!(listed, expected, "charts/portcullis/crds holds other files");
    }

    #[test]
    fn quickstart_examples_parse_as_their_kinds() {
        let read = |file: &str| std::fs::read_to_string(repo_file(file)).unwrap();
        let route: Route = serde_yaml::from_str(&read("examples/quickstart/route.yaml")).unwrap();
        assert_eq!(route.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(route.spec.from, "http://echo.localhost:8080");
        assert_eq!(
            route.spec.to[0].backend(),
            Some(route::Backend::Url("http://127.0.0.1:9000"))
        );
        let policy = serde_json::to_string(&route.spec.policy).unwrap();
        assert!(policy.contains("default/echo-bot"), "{policy}");

        let credential: ServiceAccountCredential =
            serde_yaml::from_str(&read("examples/quickstart/credential.yaml")).unwrap();
        assert_eq!(credential.metadata.name.as_deref(), Some("echo-bot"));
        assert_eq!(credential.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(credential.spec.scopes, Some(vec!["route:echo".to_string()]));
    }
}
