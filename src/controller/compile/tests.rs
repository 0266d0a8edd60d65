//! Pure compile tests: snapshots built with `mk_*` builders, no API server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort as K8sServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressClassSpec,
    IngressRule, IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::json;

use super::*;
use crate::api::{self, RouteSpec, RouteTarget, RouteTls, ServiceTarget};
use crate::controller::snapshot::{Snapshot, StoredRoute};
use crate::controller::status::SeenStatus;
use crate::routing::route::Protocol;
use crate::routing::upstream::Target;

// ---------------------------------------------------------------- builders

fn meta(ns: &str, name: &str, created: i64) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{ns}-{name}")),
        generation: Some(1),
        creation_timestamp: Some(Time(jiff::Timestamp::from_second(created).unwrap())),
        ..ObjectMeta::default()
    }
}

struct RouteB(api::Route);

fn mk_route(ns: &str, name: &str, from: &str) -> RouteB {
    let mut r = api::Route::new(
        name,
        RouteSpec {
            from: from.into(),
            to: vec![],
            allow_any_authenticated_user: Some(true),
            ..RouteSpec::default()
        },
    );
    r.metadata = meta(ns, name, 1000);
    RouteB(r)
}

impl RouteB {
    fn created(mut self, t: i64) -> Self {
        self.0.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(t).unwrap()));
        self
    }
    fn service(mut self, name: &str, port: i32) -> Self {
        self.0.spec.to.push(RouteTarget {
            service: Some(ServiceTarget {
                name: name.into(),
                port,
            }),
            ..RouteTarget::default()
        });
        self
    }
    fn url(mut self, url: &str) -> Self {
        self.0.spec.to.push(RouteTarget {
            url: Some(url.into()),
            ..RouteTarget::default()
        });
        self
    }
    fn tls(mut self, secret: &str) -> Self {
        self.0.spec.tls = Some(RouteTls {
            secret_name: secret.into(),
        });
        self
    }
    fn policy(mut self, v: serde_json::Value) -> Self {
        self.0.spec.allow_any_authenticated_user = None;
        self.0.spec.policy = Some(serde_json::from_value(v).unwrap());
        self
    }
    fn build(self) -> Arc<StoredRoute> {
        Arc::new(self.0.into())
    }
}

fn mk_service(ns: &str, name: &str, ports: &[(&str, i32)]) -> Arc<ServiceRecord> {
    Arc::new(ServiceRecord::from(Service {
        metadata: meta(ns, name, 1),
        spec: Some(ServiceSpec {
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| K8sServicePort {
                        name: (!n.is_empty()).then(|| n.to_string()),
                        port: *p,
                        ..K8sServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }))
}

/// An EndpointSlice of Service `svc` with one named port and (address, ready) endpoints.
fn mk_slice(
    ns: &str,
    svc: &str,
    port: (&str, i32),
    endpoints: &[(&str, bool)],
) -> Arc<SliceRecord> {
    let mut m = meta(ns, &format!("{svc}-abc"), 1);
    m.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_owned(),
        svc.to_owned(),
    )]));
    Arc::new(SliceRecord::from(EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|(a, ready)| Endpoint {
                addresses: vec![a.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some(port.0.into()),
            port: Some(port.1),
            ..EndpointPort::default()
        }]),
    }))
}

/// A self-signed certificate for `hosts` as a `kubernetes.io/tls` Secret.
fn mk_tls_secret(ns: &str, name: &str, hosts: &[&str]) -> Arc<Secret> {
    let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    Arc::new(Secret {
        metadata: meta(ns, name, 1),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".into(), ByteString(cert.pem().into_bytes())),
            (
                "tls.key".into(),
                ByteString(key.serialize_pem().into_bytes()),
            ),
        ])),
        ..Secret::default()
    })
}

struct IngressB(Ingress);

fn mk_ingress(ns: &str, name: &str) -> IngressB {
    IngressB(Ingress {
        metadata: meta(ns, name, 1000),
        spec: Some(IngressSpec {
            ingress_class_name: Some("portcullis".into()),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

fn svc_backend(name: &str, port: i32) -> IngressBackend {
    IngressBackend {
        service: Some(IngressServiceBackend {
            name: name.into(),
            port: Some(ServiceBackendPort {
                number: Some(port),
                name: None,
            }),
        }),
        ..IngressBackend::default()
    }
}

impl IngressB {
    fn class(mut self, class: Option<&str>) -> Self {
        self.spec().ingress_class_name = class.map(Into::into);
        self
    }
    fn annotation(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(k.into(), v.into());
        self
    }
    fn spec(&mut self) -> &mut IngressSpec {
        self.0.spec.get_or_insert_with(IngressSpec::default)
    }
    /// A rule: host ("" for none) and (path, pathType, service, port) entries.
    fn rule(mut self, host: &str, paths: &[(&str, &str, &str, i32)]) -> Self {
        let rule = IngressRule {
            host: (!host.is_empty()).then(|| host.to_owned()),
            http: Some(HTTPIngressRuleValue {
                paths: paths
                    .iter()
                    .map(|(p, t, s, port)| HTTPIngressPath {
                        path: Some(p.to_string()),
                        path_type: t.to_string(),
                        backend: svc_backend(s, *port),
                    })
                    .collect(),
            }),
        };
        self.spec().rules.get_or_insert_with(Vec::new).push(rule);
        self
    }
    fn default_backend(mut self, svc: &str, port: i32) -> Self {
        self.spec().default_backend = Some(svc_backend(svc, port));
        self
    }
    fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
        self.spec()
            .tls
            .get_or_insert_with(Vec::new)
            .push(IngressTLS {
                hosts: Some(hosts.iter().map(|h| h.to_string()).collect()),
                secret_name: Some(secret.into()),
            });
        self
    }
    fn build(self) -> Arc<Ingress> {
        Arc::new(self.0)
    }
}

fn mk_class(name: &str, controller: &str, default: bool) -> Arc<IngressClass> {
    let mut m = meta("", name, 1);
    m.namespace = None;
    if default {
        m.annotations = Some(BTreeMap::from([(
            "ingressclass.kubernetes.io/is-default-class".to_owned(),
            "true".to_owned(),
        )]));
    }
    Arc::new(IngressClass {
        metadata: m,
        spec: Some(IngressClassSpec {
            controller: Some(controller.into()),
            parameters: None,
        }),
    })
}

fn ctx() -> CompileContext {
    let listen = |s: &str| s.parse::<SocketAddr>().unwrap();
    CompileContext {
        authenticate_host: Some("auth.example.com".into()),
        address_policy: AddressPolicy {
            allow_loopback: false,
            own_listeners: vec![listen("0.0.0.0:8080"), listen("0.0.0.0:8443")],
            local_ips: vec![],
            api_servers: vec![listen("10.96.0.1:443")],
            api_server_hosts: vec![],
        },
        allow_external_name: false,
        default_certificate: None,
        client_ca: None,
        namespace: "portcullis-system".into(),
        signing_secret: "portcullis-signing-keys".into(),
        now: 1_800_000_000,
        sign_in_unavailable: None,
        idp_configured: true,
    }
}

fn dev_ctx() -> CompileContext {
    let mut c = ctx();
    c.address_policy.allow_loopback = true;
    c
}

fn key(kind: Kind, ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: ns.into(),
        name: name.into(),
    }
}

fn route_key(ns: &str, name: &str) -> ObjectKey {
    key(Kind::Route, ns, name)
}

fn reasons(c: &Compiled, k: &ObjectKey) -> Vec<&'static str> {
    c.reports[k].problems.iter().map(|p| p.reason).collect()
}

/// The id of the route serving host + path.
fn served_by(c: &Compiled, host: &str, path: &str) -> Option<String> {
    c.table.find(host, path).map(|(_, r)| r.id.to_string())
}

fn addrs(c: &Compiled, host: &str, path: &str) -> Vec<String> {
    let (_, r) = c.table.find(host, path).expect("route");
    r.backends
        .iter()
        .flat_map(|b| b.upstreams.iter())
        .map(|u| match &u.target {
            Target::Addr(a) => a.to_string(),
            Target::Name { host, port } => format!("{host}:{port}"),
        })
        .collect()
}

// ---------------------------------------------------------------- Routes

#[test]
fn a_route_to_a_service_uses_its_ready_endpoints() {
    let snap = Snapshot {
        routes: vec![
            mk_route("team-a", "billing", "https://billing.example.com")
                .service("billing", 8080)
                .build(),
        ],
        services: vec![mk_service("team-a", "billing", &[("http", 8080)])],
        endpoint_slices: vec![mk_slice(
            "team-a",
            "billing",
            ("http", 9000),
            &[("10.1.0.7", true), ("10.1.0.5", true), ("10.1.0.9", false)],
        )],
        ..Snapshot::default()
    };
    let c = compile(&snap, &ctx());
    let k = route_key("team-a", "billing");
    assert_eq!(c.reports[&k].problems, vec![]);
    assert_eq!(
        c.reports[&k].url.as_deref(),
        Some("https://billing.example.com")
    );
    assert_eq!(c.reports[&k].served, 1);
    assert_eq!(
        served_by(&c, "billing.example.com", "/x").as_deref(),
        Some("Route team-a/billing")
    );
    assert_eq!(
        addrs(&c, "billing.example.com", "/"),
        ["10.1.0.5:9000", "10.1.0.7:9000"]
    );
    let (_, r) = c.table.find("billing.example.com", "/").unwrap();
    assert_eq!(r.protocol, Protocol::Https);
}

#[test]
fn a_service_without_endpoint_slices_falls_back_to_its_dns_name() {
    let snap = Snapshot {
        routes: vec![
            mk_route("team-a", "b", "http://b.example.com")
                .service("billing", 80)
                .build(),
        ],
        services: vec![mk_service("team-a", "billing", &[("", 80)])],
        ..Snapshot::default()
    };
    let c = compile(&snap, &ctx());
    assert_eq!(c.reports[&route_key("team-a", "b")].problems, vec![]);
    assert_eq!(addrs(&c, "b.example.com", "/"), ["billing.team-a.svc:80"]);
}

#[test]
fn a_missing_service_keeps_the_route_claimed_but_unresolved() {
    let snap = Snapshot {
        routes: vec![
            mk_route("team-a", "b", "http://b.example.com")
                .service("nope", 80)
                .build(),
        ],
        ..Snapshot::default()
    };
    let c = compile(&snap, &ctx());
    let r = &c.reports[&route_key("team-a", "b")];
    assert_eq!(reasons(&c, &r.key), ["BackendNotFound"]);
    assert_eq!(r.served, 1);
    assert!(r.no_endpoints);
    assert!(addrs(&c, "b.example.com", "/").is_empty());
}

#[test]
fn url_backends_follow_the_ssrf_rules() {
    let routes = vec![
        mk_route("a", "metadata", "http://m.example.com")
            .url("http://169.254.169.254/latest")
            .build(),
        mk_route("a", "loop", "http://l.example.com")
            .url("http://127.0.0.1:9000")
            .build(),
        mk_route("a", "own", "http://o.example.com")
            .url("http://127.0.0.1:8443")
            .build(),
        mk_route("a", "api", "http://k.example.com")
            .url("https://10.96.0.1")
            .build(),
        mk_route("a", "fine", "http://f.example.com")
            .url("http://10.0.0.5:8080")
            .build(),
    ];
    let snap = Snapshot {
        routes,
        ..Snapshot::default()
    };
    let c = compile(&snap, &ctx());
    for name in ["metadata", "loop", "own", "api"] {
        assert_eq!(
            reasons(&c, &route_key("a", name)),
            ["BackendNotAllowed"],
            "{name}"
        );
    }
    assert_eq!(reasons(&c, &route_key("a", "fine")), Vec::<&str>::new());
    assert_eq!(addrs(&c, "f.example.com", "/"), ["10.0.0.5:8080"]);

    // `portcullis dev` allows loopback, but never our own listeners.
    let c = compile(&snap, &dev_ctx());
    assert_eq!(reasons(&c, &route_key("a", "loop")), Vec::<&str>::new());
    assert_eq!(reasons(&c, &route_key("a", "own")), ["BackendNotAllowed"]);
    assert_eq!(
        reasons(&c, &route_key("a", "metadata")),
        ["BackendNotAllowed"]
    );
}

#[test]
fn conflicts_go_to_the_oldest_whatever_the_order() {
    let young = mk_route("a", "young", "https://x.example.com")
        .url("http://10.0.0.1")
        .created(2000)
        .build();
    let old = mk_route("z", "old", "https://x.example.com")
        .url("http://10.0.0.2")
        .created(1000)
        .build();
    for routes in [
        vec![young.clone(), old.clone()],
        vec![old.clone(), young.clone()],
    ] {
        let snap = Snapshot {
            routes,
            ..Snapshot::default()
        };
        let c = compile(&snap, &ctx());
        assert_eq!(
            served_by(&c, "x.example.com", "/").as_deref(),
            Some("Route z/old")
        );
        let loser = &c.reports[&route_key("a", "young")];
        assert_eq!(reasons(&c, &loser.key), ["Conflict"]);
        assert!(
            loser.problems[0].message.contains("Route z/old"),
            "{:?}",
            loser.problems
        );
        assert_eq!(loser.served, 0);
        assert_eq!(loser.url, None);
    }
    // Same creation time: namespace/name decides.
    let a = mk_route("a", "r", "https://y.example.com")
        .url("http://10.0.0.1")
        .build();
    let b = mk_route("b", "r", "https://y.example.com")
        .url("http://10.0.0.2")
        .build();
    let c = compile(
        &Snapshot {
            routes: vec![b, a],
            ..Snapshot::default()
        },
        &ctx(),
    );
    assert_eq!(
        served_by(&c, "y.example.com", "/").as_deref(),
        Some("Route a/r")
    );
}

#[test]
fn different_prefixes_on_one_host_do_not_conflict_and_match_on_segments() {
    let snap = Snapshot {
        routes: vec![
            mk_route("a", "api", "https://x.example.com/api")
                .url("http://10.0.0.1")
                .build(),
            mk_route("a", "root", "https://x.example.com")
                .url("http://10.0.0.2")
                .build(),
        ],
        ..Snapshot::default()
    };
    let c = compile(&snap, &ctx());
    assert_eq!(
        served_by(&c, "x.example.com", "/api/v1").as_deref(),
        Some("Route a/api")
    );
    assert_eq!(
        served_by(&c, "x.example.com", "/apiadmin").as_deref(),
        Some("Route a/root")
    );
    assert_eq!(
        c.reports[&route_key("a", "api")].url.as_deref(),
        Some("https://x.example.com/api")
    );
}

#[test]
fn the_authenticate_host_and_reserved_prefixes_cannot_be_claimed() {
    let snap = Snapshot {
        routes: vec![
            mk_route("a", "auth", "https://auth.example.com")
                .url("http://10.0.0.1")
                .build(),
            mk_route("a", "p", "https://x.example.com/.portcullis")
                .url("http://10.0.0.1")
                .build(),
            mk_route("a", "q", "https://x.example.com/.pomerium/x")
                .url("http://10.0.0.1")
                .build(),
        ],
        ..Snapshot::default()
    };
    let c = compile(&snap, &ctx());
    assert_eq!(reasons(&c, &route_key("a", "auth")), ["ReservedHost"]);
    assert_eq!(reasons(&c, &route_key("a", "p")), ["ReservedPath"]);
    assert_eq!(reasons(&c, &route_key("a", "q")), ["ReservedPath"]);
    assert!(c.table.routes.is_empty());
}

#[test]
fn an_invalid_policy_refuses_only_its_route() {
    let snap = Snapshot {
        routes: vec![
            mk_route("a", "bad", "https://bad.example.com")
                .url("http://10.0.0.1")
                .policy(json!({"allow": {"or": [{"expression": "request.method =="}]}}))
                .build(),
            mk_route("a", "good", "https://good.example.com")
                .url("http://10.0.0.1")
                .policy(json!({"allow": {"or": [{"email": {"is": "alice@example.com"}}]}}))
                .build(),
        ],
        ..Snapshot::default()
    };
    let c = compile(&snap, &ctx());
    let bad = &c.reports[&route_key("a", "bad")];
    assert_eq!(reasons(&c, &bad.key), ["InvalidPolicy"]);
    assert!(
        bad.problems[0]
            .message
            .contains("spec.policy.allow.or[0].expression"),
        "{:?}",
        bad.problems
    );
    assert_eq!(served_by(&c, "bad.example.com", "/"), None);
    assert_eq!(
        served_by(&c, "good.example.com", "/").as_deref(),
        Some("Route a/good")
    );
}

#[test]
fn hostile_policies_are_refused_quickly() {
    let mut deep = json!({"email": {"is": "a@example.com"}});
    for _ in 0..200 {
        deep = json!({"and": [deep]});
    }
    let huge: Vec<_> = (0..20_000)
        .map(|i| json!({"email": {"is": format!("user{i}@example.com")}}))
        .collect();
    let snap = Snapshot {
        routes: vec![
            mk_route("a", "deep", "https://d.example.com").url("http://10.0.0.1").policy(json!({"allow": deep})).build(),
            mk_route("a", "huge", "https://h.example.com").url("http://10.0.0.1").policy(json!({"allow": {"or": huge}})).build(),
            mk_route("a", "cel", "https://c.example.com").url("http://10.0.0.1")
                .policy(json!({"allow": {"or": [{"expression": format!("{}true{}", "(".repeat(500), ")".repeat(500))}]}}))
                .build(),
        ],
        ..Snapshot::default()
    };
    let c = compile(&snap, &ctx());
    for name in ["deep", "huge", "cel"] {
        assert_eq!(
            reasons(&c, &route_key("a", name)),
            ["InvalidPolicy"],
            "{name}"
        );
        assert!(c.reports[&route_key("a", name)].problems[0].message.len() <= MAX_MESSAGE + 3);
    }
}

#[test]
fn ssh_routes_are_served_by_name_and_conflict_by_age() {
    let snap = Snapshot {
        routes: vec![
            mk_route("a", "db", "ssh://db")
                .url("ssh://10.0.0.9")
                .created(5)
                .build(),
            mk_route("b", "db2", "ssh://db")
                .url("ssh://10.0.0.8:2200")
                .created(9)
                .build(),
        ],
        ..Snapshot::default()
    };
    let c = compile(&snap, &ctx());
    let r = &c.table.ssh["db"];
    assert_eq!(r.id.to_string(), "Route a/db");
    assert_eq!(r.protocol, Protocol::Ssh);
    assert_eq!(reasons(&c, &route_key("b", "db2")), ["Conflict"]);
    assert_eq!(
        c.reports[&route_key("a", "db")].url.as_deref(),
        Some("ssh://db")
    );
}

#[test]
fn route_tls_certificates_are_served_by_sni() {
    let snap = Snapshot {
        routes: vec![
            mk_route("a", "r", "https://r.example.com")
                .url("http://10.0.0.1")
                .tls("r-tls")
                .build(),
            mk_route("a", "wrong", "https://w.example.com")
                .url("http://10.0.0.1")
                .tls("r-tls")
                .build(),
            mk_route("a", "missing", "https://m.example.com")
                .url("http://10.0.0.1")
                .tls("nope")
                .build(),
        ],
        secrets: vec![
            mk_tls_secret("a", "r-tls", &["r.example.com"]),
            mk_tls_secret("b", "other", &["m.example.com"]),
        ],
        ..Snapshot::default()
    };
    let c = compile(&snap, &ctx());
    assert_eq!(reasons(&c, &route_key("a", "r")), Vec::<&str>::new());
    assert!(c.table.certs.resolve(Some("r.example.com")).is_some());
    assert_eq!(
        reasons(&c, &route_key("a", "wrong")),
        ["CertificateMismatch"]
    );
    assert!(c.table.certs.resolve(Some("w.example.com")).is_none());
    // A Secret of the same name in another namespace is never used.
    assert_eq!(reasons(&c, &route_key("a", "missing")), ["SecretNotFound"]);
    // Routes with certificate problems are still served (with the default certificate).
    assert!(served_by(&c, "m.example.com", "/").is_some());
}

// ---------------------------------------------------------------- Ingresses

fn ingress_snapshot(ingresses: Vec<Arc<Ingress>>, classes: Vec<Arc<IngressClass>>) -> Snapshot {
    Snapshot {
        ingresses,
        ingress_classes: classes,
        services: vec![
            mk_service("web", "site", &[("http", 80)]),
            mk_service("web", "api", &[("http", 8080)]),
        ],
        endpoint_slices: vec![
            mk_slice("web", "site", ("http", 8000), &[("10.2.0.1", true)]),
            mk_slice("web", "api", ("http", 9000), &[("10.2.0.2", true)]),
        ],
        ..Snapshot::default()
    }
}

#[test]
fn only_ingresses_of_our_class_are_compiled() {
    let ours = |name: &str| {
        mk_ingress("web", name).rule(
            &format!("{name}.example.com"),
            &[("/", "Prefix", "site", 80)],
        )
    };
    let ingresses = vec![
        ours("named").build(),
        ours("nginx").class(Some("nginx")).build(),
        ours("noclass").class(None).build(),
        ours("legacy")
            .class(None)
            .annotation("kubernetes.io/ingress.class", "portcullis")
            .build(),
        ours("custom").class(Some("iap")).build(),
    ];
    let classes = vec![
        mk_class("nginx", "k8s.io/ingress-nginx", false),
        mk_class("iap", INGRESS_CONTROLLER, false),
    ];
    let c = compile(&ingress_snapshot(ingresses.clone(), classes), &ctx());
    let served: Vec<&str> = c.reports.keys().map(|k| &*k.name).collect();
    assert_eq!(served, ["custom", "legacy", "named"]);

    // No class: ours only when our IngressClass is the default.
    let classes = vec![mk_class("iap", INGRESS_CONTROLLER, true)];
    let c = compile(&ingress_snapshot(ingresses.clone(), classes), &ctx());
    assert!(
        c.reports
            .contains_key(&key(Kind::Ingress, "web", "noclass"))
    );

    // The name `portcullis` is not ours when another controller's IngressClass holds it.
    let classes = vec![mk_class("portcullis", "example.com/other", false)];
    let c = compile(&ingress_snapshot(ingresses, classes), &ctx());
    assert!(!c.reports.contains_key(&key(Kind::Ingress, "web", "named")));
}

#[test]
fn ingress_rules_compile_to_routes_by_path_type() {
    let ing = mk_ingress("web", "site")
        .rule(
            "shop.example.com",
            &[
                ("/", "Prefix", "site", 80),
                ("/api", "ImplementationSpecific", "api", 8080),
                ("/exact", "Exact", "api", 8080),
            ],
        )
        .rule("", &[("/health", "Exact", "api", 8080)])
        .default_backend("site", 80)
        .build();
    let c = compile(&ingress_snapshot(vec![ing], vec![]), &ctx());
    let k = key(Kind::Ingress, "web", "site");
    assert_eq!(c.reports[&k].problems, vec![]);
    assert_eq!(c.reports[&k].served, 5);
    assert_eq!(addrs(&c, "shop.example.com", "/"), ["10.2.0.1:8000"]);
    assert_eq!(addrs(&c, "shop.example.com", "/api/v1"), ["10.2.0.2:9000"]);
    assert_eq!(addrs(&c, "shop.example.com", "/exact"), ["10.2.0.2:9000"]);
    // Exact does not match below itself: the `/` prefix takes it.
    assert_eq!(addrs(&c, "shop.example.com", "/exact/x"), ["10.2.0.1:8000"]);
    // Rules without host and the default backend serve every other host.
    assert_eq!(addrs(&c, "other.test", "/health"), ["10.2.0.2:9000"]);
    assert_eq!(addrs(&c, "other.test", "/anything"), ["10.2.0.1:8000"]);
    let (_, r) = c.table.find("shop.example.com", "/").unwrap();
    assert_eq!(r.protocol, Protocol::Http);
    assert_eq!(&*r.url, "http://shop.example.com");
}

#[test]
fn ingress_tls_serves_certificates_and_refuses_other_namespaces() {
    let ing = mk_ingress("web", "site")
        .rule("shop.example.com", &[("/", "Prefix", "site", 80)])
        .rule("*.shop.example.com", &[("/", "Prefix", "site", 80)])
        .tls(&["shop.example.com", "*.shop.example.com"], "shop-tls")
        .tls(&["x.example.com"], "other/stolen")
        .build();
    let mut snap = ingress_snapshot(vec![ing], vec![]);
    snap.secrets = vec![mk_tls_secret(
        "web",
        "shop-tls",
        &["shop.example.com", "*.shop.example.com"],
    )];
    let c = compile(&snap, &ctx());
    let k = key(Kind::Ingress, "web", "site");
    assert_eq!(reasons(&c, &k), ["RefNotPermitted"]);
    assert!(c.table.certs.resolve(Some("shop.example.com")).is_some());
    assert!(c.table.certs.resolve(Some("a.shop.example.com")).is_some());
    let (_, r) = c.table.find("a.shop.example.com", "/").unwrap();
    assert_eq!(r.protocol, Protocol::Https);
}

#[test]
fn bad_ingress_annotations_refuse_the_ingress_only() {
    let bad = mk_ingress("web", "bad")
        .rule("bad.example.com", &[("/", "Prefix", "site", 80)])
        .annotation("portcullis.dev/no-such-thing", "1")
        .annotation("portcullis.dev/allow-websockets", "yes")
        .build();
    let bomb = mk_ingress("web", "bomb")
        .rule("bomb.example.com", &[("/", "Prefix", "site", 80)])
        .annotation(
            "portcullis.dev/policy",
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n",
        )
        .build();
    let good = mk_ingress("web", "good")
        .rule("good.example.com", &[("/", "Prefix", "site", 80)])
        .annotation("portcullis.dev/allow-any-authenticated-user", "true")
        .annotation("nginx.ingress.kubernetes.io/rewrite-target", "/")
        .build();
    let c = compile(&ingress_snapshot(vec![bad, bomb, good], vec![]), &ctx());
    let bad = &c.reports[&key(Kind::Ingress, "web", "bad")];
    assert_eq!(bad.problems.len(), 2, "{:?}", bad.problems);
    assert!(bad.problems.iter().all(|p| p.reason == "InvalidAnnotation"));
    assert_eq!(
        reasons(&c, &key(Kind::Ingress, "web", "bomb")),
        ["InvalidAnnotation"]
    );
    assert_eq!(served_by(&c, "bad.example.com", "/"), None);
    assert_eq!(served_by(&c, "bomb.example.com", "/"), None);
    assert_eq!(
        served_by(&c, "good.example.com", "/").as_deref(),
        Some("Ingress web/good")
    );
}

#[test]
fn routes_and_ingresses_conflict_by_age_too() {
    let ing = mk_ingress("web", "site")
        .rule("x.example.com", &[("/", "Prefix", "site", 80)])
        .build();
    let route = mk_route("a", "r", "https://x.example.com")
        .url("http://10.0.0.1")
        .created(10)
        .build();
    let mut snap = ingress_snapshot(vec![ing], vec![]);
    snap.routes = vec![route];
    let c = compile(&snap, &ctx());
    assert_eq!(
        served_by(&c, "x.example.com", "/").as_deref(),
        Some("Route a/r")
    );
    assert_eq!(
        reasons(&c, &key(Kind::Ingress, "web", "site")),
        ["Conflict"]
    );
}

// ---------------------------------------------------------------- determinism

#[test]
fn compile_is_deterministic_in_any_input_order() {
    let mut routes = Vec::new();
    for i in 0..40 {
        routes.push(
            mk_route(
                "a",
                &format!("r{i}"),
                &format!("https://h{}.example.com/p{}", i % 7, i % 3),
            )
            .url("http://10.0.0.1")
            .created(i64::from(i % 5))
            .build(),
        );
    }
    let snap = Snapshot {
        routes: routes.clone(),
        ..Snapshot::default()
    };
    let first = compile(&snap, &ctx());
    routes.reverse();
    routes.rotate_left(13);
    let second = compile(
        &Snapshot {
            routes,
            ..Snapshot::default()
        },
        &ctx(),
    );
    assert_eq!(first.reports, second.reports);
    let ids = |c: &Compiled| {
        c.table
            .routes
            .entries()
            .map(|e| (e.host.to_string(), e.path.to_string(), e.id.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ids(&second));
    assert_eq!(first.table.routes.len(), 21);
}

// ---------------------------------------------------------------- memo across compiles

/// Everything a compile produces that a user could notice, in a comparable form.
fn outcome(c: &Compiled) -> String {
    let entries: Vec<String> = c
        .table
        .routes
        .entries()
        .map(|e| format!("{} {} {} {:?}", e.host, e.path, e.id, e.route))
        .collect();
    let ssh: Vec<String> = c
        .table
        .ssh
        .iter()
        .map(|(n, r)| format!("{n} {r:?}"))
        .collect();
    let certs: Vec<String> = c
        .table
        .routes
        .hosts()
        .map(|h| format!("{h} {:?}", c.table.certs.find(Some(&h))))
        .collect();
    format!("{:#?}\n{entries:#?}\n{ssh:#?}\n{certs:#?}", c.reports)
}

/// The route object serving host + path.
fn route_at(c: &Compiled, host: &str, path: &str) -> Arc<crate::routing::route::Route> {
    Arc::clone(c.table.find(host, path).expect("route").1)
}

/// A snapshot with one of each thing compile memoizes or must not: Service and URL backends,
/// a missing Service, SSH, TLS, a conflict, invalid options and policies, an Ingress.
fn varied_snapshot() -> Snapshot {
    Snapshot {
        routes: vec![
            mk_route("team-a", "billing", "https://billing.example.com/api")
                .service("billing", 80)
                .url("http://10.0.0.9:8080")
                .build(),
            mk_route("team-a", "old", "https://shared.example.com")
                .service("billing", 80)
                .created(10)
                .build(),
            mk_route("team-a", "young", "https://shared.example.com")
                .url("http://10.0.0.8")
                .created(20)
                .build(),
            mk_route("team-a", "gone", "https://gone.example.com")
                .service("nope", 80)
                .build(),
            mk_route("team-a", "db", "ssh://db")
                .url("ssh://10.0.0.7:22")
                .build(),
            mk_route("team-a", "tls", "https://secure.example.com")
                .service("billing", 80)
                .tls("secure-cert")
                .build(),
            mk_route("team-a", "bad-policy", "https://bad.example.com")
                .url("http://10.0.0.1")
                .policy(json!({"allow": {"or": [{"email": {"nope": 1}}]}}))
                .build(),
            mk_route("team-a", "bad-from", "ftp://x")
                .url("http://10.0.0.1")
                .build(),
            mk_route("team-a", "meta", "https://meta.example.com")
                .url("http://169.254.169.254")
                .build(),
        ],
        services: vec![mk_service("team-a", "billing", &[("http", 80)])],
        endpoint_slices: vec![mk_slice(
            "team-a",
            "billing",
            ("http", 8080),
            &[("10.1.0.1", true), ("10.1.0.2", false)],
        )],
        secrets: vec![mk_tls_secret(
            "team-a",
            "secure-cert",
            &["secure.example.com"],
        )],
        ingresses: vec![
            mk_ingress("team-a", "web")
                .rule("web.example.com", &[("/", "Prefix", "billing", 80)])
                .build(),
        ],
        ..Snapshot::default()
    }
}

#[test]
fn a_compile_with_the_last_cache_gives_what_a_fresh_compile_gives() {
    let snap = varied_snapshot();
    let fresh = compile(&snap, &ctx());
    assert!(fresh.reports.len() >= 10, "{:?}", fresh.reports.keys());
    let mut warm = compile_with(&snap, &ctx(), fresh.cache);
    let fresh = compile(&snap, &ctx());
    assert_eq!(outcome(&warm), outcome(&fresh));
    // And again from a cache that was itself filled from a cache.
    let mut warmer = compile_with(&snap, &ctx(), std::mem::take(&mut warm.cache));
    assert_eq!(outcome(&warmer), outcome(&fresh));
    // Unchanged Routes keep their compiled route.
    assert!(Arc::ptr_eq(
        &route_at(&warm, "billing.example.com", "/api"),
        &route_at(&warmer, "billing.example.com", "/api")
    ));
    // A cache compiled under other settings is not used.
    let other = compile_with(&snap, &dev_ctx(), std::mem::take(&mut warmer.cache));
    assert_eq!(outcome(&other), outcome(&compile(&snap, &dev_ctx())));
    assert!(!Arc::ptr_eq(
        &route_at(&other, "billing.example.com", "/api"),
        &route_at(&warmer, "billing.example.com", "/api")
    ));
}

#[test]
fn a_changed_object_is_compiled_again() {
    let mut snap = varied_snapshot();
    let first = compile(&snap, &ctx());
    let billing = route_at(&first, "billing.example.com", "/api");

    // A status write: a new object with the same generation. Nothing to compile again.
    let mut with_status = StoredRoute::clone(&snap.routes[0]);
    with_status.seen = Some(SeenStatus::of(&api::RouteStatus {
        url: Some("https://billing.example.com/api".into()),
        ..api::RouteStatus::default()
    }));
    snap.routes[0] = Arc::new(with_status);
    let second = compile_with(&snap, &ctx(), first.cache);
    assert!(Arc::ptr_eq(
        &billing,
        &route_at(&second, "billing.example.com", "/api")
    ));

    // A spec change moves the generation: compiled again.
    let mut changed = StoredRoute::clone(&snap.routes[0]);
    changed.spec.to.truncate(1);
    changed.meta.generation = Some(2);
    snap.routes[0] = Arc::new(changed);
    let third = compile_with(&snap, &ctx(), second.cache);
    assert_eq!(outcome(&third), outcome(&compile(&snap, &ctx())));
    assert_eq!(
        addrs(&third, "billing.example.com", "/api"),
        ["10.1.0.1:8080"]
    );

    // An EndpointSlice change reaches every Route of the Service, and only those.
    let url_only = Arc::clone(&third.table.ssh["db"]);
    snap.endpoint_slices = vec![mk_slice(
        "team-a",
        "billing",
        ("http", 8080),
        &[("10.1.0.1", true), ("10.1.0.2", true)],
    )];
    let fourth = compile_with(&snap, &ctx(), third.cache);
    assert_eq!(outcome(&fourth), outcome(&compile(&snap, &ctx())));
    assert_eq!(
        addrs(&fourth, "billing.example.com", "/api"),
        ["10.1.0.1:8080", "10.1.0.2:8080"]
    );
    assert_eq!(
        addrs(&fourth, "web.example.com", "/"),
        ["10.1.0.1:8080", "10.1.0.2:8080"]
    );
    assert!(Arc::ptr_eq(&url_only, &fourth.table.ssh["db"]));

    // A Service that appears resolves; a deleted Route leaves no trace.
    snap.services
        .push(mk_service("team-a", "nope", &[("http", 80)]));
    snap.routes.retain(|r| &*r.meta.id.name != "old");
    let fifth = compile_with(&snap, &ctx(), fourth.cache);
    assert_eq!(outcome(&fifth), outcome(&compile(&snap, &ctx())));
    assert_eq!(
        addrs(&fifth, "gone.example.com", "/"),
        ["nope.team-a.svc:80"]
    );
    assert_eq!(
        served_by(&fifth, "shared.example.com", "/").as_deref(),
        Some("Route team-a/young")
    );
}

#[test]
fn a_cached_route_still_takes_its_rank_from_the_object() {
    // Same uid and generation (what the cache keys on) with another creation time: only a
    // hand-made snapshot does this, and the conflict must still be settled by the new time.
    let mut snap = varied_snapshot();
    let first = compile(&snap, &ctx());
    assert_eq!(
        served_by(&first, "shared.example.com", "/").as_deref(),
        Some("Route team-a/old")
    );
    let i = snap
        .routes
        .iter()
        .position(|r| &*r.meta.id.name == "old")
        .unwrap();
    let mut younger = StoredRoute::clone(&snap.routes[i]);
    younger.meta.created = Some(5000);
    snap.routes[i] = Arc::new(younger);
    let second = compile_with(&snap, &ctx(), first.cache);
    assert_eq!(outcome(&second), outcome(&compile(&snap, &ctx())));
    assert_eq!(
        served_by(&second, "shared.example.com", "/").as_deref(),
        Some("Route team-a/young")
    );
}

#[test]
fn routes_reading_the_providers_tokens_say_when_no_idp_is_configured() {
    let with_format = |name: &str, format: api::BearerTokenFormat| {
        let mut r = mk_route("a", name, &format!("https://{name}.example.com"))
            .url("http://10.0.0.1")
            .policy(json!({"allow": {"or": [{"claim/sub": {"is": "ci-bot"}}]}}));
        r.0.spec.bearer_token_format = Some(format);
        r.build()
    };
    let snap = Snapshot {
        routes: vec![
            with_format("id", api::BearerTokenFormat::IdpIdentityToken),
            with_format("access", api::BearerTokenFormat::IdpAccessToken),
            with_format("ours", api::BearerTokenFormat::Default),
        ],
        ..Snapshot::default()
    };
    let mut no_idp = ctx();
    no_idp.idp_configured = false;
    let c = compile(&snap, &no_idp);
    for name in ["id", "access"] {
        assert_eq!(
            reasons(&c, &route_key("a", name)),
            ["IdentityProviderUnavailable"],
            "{name}"
        );
        assert_eq!(
            served_by(&c, &format!("{name}.example.com"), "/").as_deref(),
            Some(format!("Route a/{name}").as_str()),
            "still served: Portcullis tokens work"
        );
    }
    assert!(reasons(&c, &route_key("a", "ours")).is_empty());
    let c = compile(&snap, &ctx());
    for name in ["id", "access", "ours"] {
        assert!(reasons(&c, &route_key("a", name)).is_empty(), "{name}");
    }
}

/// Compiles `snap` with the cache of the last compile and checks it against a compile from
/// nothing, then keeps the new cache.
fn warm_step(cache: &mut Cache, snap: &Snapshot, ctx: &CompileContext, what: &str) -> Compiled {
    let mut warm = compile_with(snap, ctx, std::mem::take(cache));
    let fresh = compile(snap, ctx);
    assert_eq!(outcome(&warm), outcome(&fresh), "after: {what}");
    assert_eq!(warm.table.routes.len(), fresh.table.routes.len(), "{what}");
    *cache = std::mem::take(&mut warm.cache);
    warm
}

/// Replaces (or adds) the Route of the same name, as a new generation of it.
fn put_route(snap: &mut Snapshot, route: Arc<StoredRoute>) {
    let mut route = StoredRoute::clone(&route);
    let old = snap.routes.iter().position(|r| {
        r.meta.id.name == route.meta.id.name && r.meta.id.namespace == route.meta.id.namespace
    });
    match old {
        Some(i) => {
            route.meta.generation = snap.routes[i].meta.generation.map(|g| g + 1);
            snap.routes[i] = Arc::new(route);
        }
        None => snap.routes.push(Arc::new(route)),
    }
}

fn drop_route(snap: &mut Snapshot, name: &str) {
    snap.routes.retain(|r| &*r.meta.id.name != name);
}

#[test]
fn every_kind_of_change_compiles_as_from_nothing() {
    let mut snap = varied_snapshot();
    snap.routes.push(
        mk_route("team-b", "db-young", "ssh://db")
            .url("ssh://10.0.0.6:22")
            .created(5000)
            .build(),
    );
    let ctx = ctx();
    let mut cache = compile(&snap, &ctx).cache;
    let mut step =
        |snap: &Snapshot, ctx: &CompileContext, what: &str| warm_step(&mut cache, snap, ctx, what);
    step(&snap, &ctx, "nothing");

    // A host added, then removed.
    put_route(
        &mut snap,
        mk_route("team-b", "new", "https://new.example.com/a")
            .url("http://10.0.0.5")
            .build(),
    );
    let c = step(&snap, &ctx, "a Route on a new host");
    assert_eq!(
        served_by(&c, "new.example.com", "/a").as_deref(),
        Some("Route team-b/new")
    );
    drop_route(&mut snap, "new");
    let c = step(&snap, &ctx, "the new host's Route deleted");
    assert_eq!(served_by(&c, "new.example.com", "/a"), None);

    // A second path on an existing host, then a Route moving to another host.
    put_route(
        &mut snap,
        mk_route("team-b", "second", "https://billing.example.com/other")
            .url("http://10.0.0.5")
            .build(),
    );
    step(&snap, &ctx, "a second path on a host");
    put_route(
        &mut snap,
        mk_route("team-b", "second", "https://moved.example.com/")
            .url("http://10.0.0.5")
            .build(),
    );
    step(&snap, &ctx, "a Route moved to another host");

    // The conflict winner deleted: the younger claimant wins; back again: it loses again.
    let old = snap
        .routes
        .iter()
        .find(|r| &*r.meta.id.name == "old")
        .cloned()
        .unwrap();
    drop_route(&mut snap, "old");
    let c = step(&snap, &ctx, "the conflict winner deleted");
    assert_eq!(
        served_by(&c, "shared.example.com", "/").as_deref(),
        Some("Route team-a/young")
    );
    assert!(reasons(&c, &route_key("team-a", "young")).is_empty());
    snap.routes.push(old);
    let c = step(&snap, &ctx, "the conflict winner back");
    assert_eq!(reasons(&c, &route_key("team-a", "young")), ["Conflict"]);

    // The same for SSH names.
    drop_route(&mut snap, "db");
    let c = step(&snap, &ctx, "the older SSH Route deleted");
    assert!(reasons(&c, &route_key("team-b", "db-young")).is_empty());

    // Wildcard hosts, from an Ingress, next to an exact host under them.
    snap.ingresses.push(
        mk_ingress("team-a", "wild")
            .rule("*.wild.example.com", &[("/", "Prefix", "billing", 80)])
            .build(),
    );
    put_route(
        &mut snap,
        mk_route("team-b", "under", "https://a.wild.example.com/")
            .url("http://10.0.0.5")
            .build(),
    );
    let c = step(&snap, &ctx, "a wildcard Ingress and an exact host under it");
    assert_eq!(
        served_by(&c, "b.wild.example.com", "/").as_deref(),
        Some("Ingress team-a/wild")
    );
    drop_route(&mut snap, "under");
    step(&snap, &ctx, "the exact host under the wildcard deleted");

    // Ingress changes: another path, a conflict with a Route, listing a claim twice, another
    // class, deleted.
    let web = |paths: &[(&str, &str, &str, i32)]| {
        mk_ingress("team-a", "web")
            .rule("web.example.com", paths)
            .build()
    };
    snap.ingresses[0] = web(&[("/x", "Prefix", "billing", 80)]);
    step(&snap, &ctx, "an Ingress path changed");
    snap.ingresses[0] = web(&[
        ("/x", "Prefix", "billing", 80),
        ("/x", "Prefix", "billing", 80),
    ]);
    step(&snap, &ctx, "an Ingress listing a claim twice");
    put_route(
        &mut snap,
        mk_route("team-b", "over-web", "https://web.example.com/x")
            .url("http://10.0.0.5")
            .created(1)
            .build(),
    );
    let c = step(&snap, &ctx, "an older Route over an Ingress");
    assert_eq!(
        served_by(&c, "web.example.com", "/x").as_deref(),
        Some("Route team-b/over-web")
    );
    snap.ingresses[0] = mk_ingress("team-a", "web")
        .class(Some("other"))
        .rule("web.example.com", &[("/x", "Prefix", "billing", 80)])
        .build();
    step(&snap, &ctx, "an Ingress of another class");
    snap.ingresses.remove(0);
    step(&snap, &ctx, "an Ingress deleted");

    // TLS: the certificate expires as time moves, its Secret goes and comes back.
    let later = CompileContext {
        now: 100_000_000_000,
        ..ctx.clone()
    };
    let c = step(&snap, &later, "time moved past the certificate's expiry");
    assert!(reasons(&c, &route_key("team-a", "tls")).contains(&"CertificateExpired"));
    let c = step(&snap, &ctx, "time back");
    assert!(!reasons(&c, &route_key("team-a", "tls")).contains(&"CertificateExpired"));
    let secrets = std::mem::take(&mut snap.secrets);
    let c = step(&snap, &ctx, "the TLS Secret deleted");
    assert!(reasons(&c, &route_key("team-a", "tls")).contains(&"SecretNotFound"));
    snap.secrets = secrets;
    step(&snap, &ctx, "the TLS Secret back");
    put_route(
        &mut snap,
        mk_route("team-b", "tls-too", "https://secure.example.com/b")
            .url("http://10.0.0.5")
            .tls("other-cert")
            .build(),
    );
    snap.secrets.push(mk_tls_secret(
        "team-b",
        "other-cert",
        &["secure.example.com"],
    ));
    step(&snap, &ctx, "a second certificate for a host");

    // Services and EndpointSlices.
    let slices = std::mem::take(&mut snap.endpoint_slices);
    step(&snap, &ctx, "the EndpointSlices deleted");
    snap.endpoint_slices = slices;
    step(&snap, &ctx, "the EndpointSlices back");
    let services = std::mem::take(&mut snap.services);
    step(&snap, &ctx, "the Service deleted");
    snap.services = services;
    step(&snap, &ctx, "the Service back");

    // Reserved and invalid claims.
    put_route(
        &mut snap,
        mk_route("team-b", "auth", "https://auth.example.com/")
            .url("http://10.0.0.5")
            .build(),
    );
    put_route(
        &mut snap,
        mk_route("team-b", "reserved", "https://r.example.com/.portcullis/x")
            .url("http://10.0.0.5")
            .build(),
    );
    step(&snap, &ctx, "reserved host and path");

    // Two objects with one key (only a hand-made snapshot has them), then one again.
    let twin = mk_route("team-a", "young", "https://twin.example.com/")
        .url("http://10.0.0.4")
        .created(20)
        .build();
    snap.routes.push(twin);
    step(&snap, &ctx, "two Routes with one key");
    snap.routes.pop();
    step(&snap, &ctx, "one of the two gone");

    // A status write (a new object, the same generation), and a Route deleted and created
    // again under its name (another uid) between two compiles.
    for r in &mut snap.routes {
        if &*r.meta.id.name == "young" {
            let mut written = StoredRoute::clone(r);
            written.seen = Some(SeenStatus::of(&api::RouteStatus::default()));
            *r = Arc::new(written);
        }
    }
    step(&snap, &ctx, "a status written");
    for r in &mut snap.routes {
        if &*r.meta.id.name == "billing" {
            let mut again = StoredRoute::clone(r);
            again.meta.id.uid = Some("uid-again".into());
            again.spec.from = "https://billing.example.com/again".into();
            *r = Arc::new(again);
        }
    }
    step(&snap, &ctx, "a Route created again");

    // Everything gone, then back.
    let all = std::mem::take(&mut snap.routes);
    let c = step(&snap, &ctx, "every Route deleted");
    assert_eq!(c.table.ssh.len(), 0);
    snap.routes = all;
    step(&snap, &ctx, "every Route back");
    // Objects in another order.
    snap.routes.reverse();
    step(&snap, &ctx, "the same objects in another order");
}

/// `copies` copies of [`varied_snapshot`]'s Routes under other names (a third of them on hosts of
/// their own, the rest conflicting with the first copy's; every other one naming Services of
/// its own, half of which exist), and a Route sharing the first one's uid.
fn many_routes(copies: usize) -> Snapshot {
    let base = varied_snapshot();
    let mut snap = Snapshot {
        routes: Vec::new(),
        ..base.clone()
    };
    for copy in 0..copies {
        for r in &base.routes {
            let mut r = StoredRoute::clone(r);
            let name = format!("{}-{copy}", r.meta.id.name);
            r.meta.id.uid = Some(format!("uid-{name}").into());
            r.meta.id.name = name.into();
            if copy % 3 == 0 {
                r.spec.from = r
                    .spec
                    .from
                    .replace(".example.com", &format!("-{copy}.example.com"));
            }
            if copy % 2 == 1 {
                for service in r.spec.to.iter_mut().filter_map(|t| t.service.as_mut()) {
                    service.name = format!("{}-{copy}", service.name);
                }
            }
            snap.routes.push(Arc::new(r));
        }
        if copy % 4 == 1 {
            let name = format!("billing-{copy}");
            let address = format!("10.2.{}.{}", copy / 250, copy % 250);
            snap.services
                .push(mk_service("team-a", &name, &[("http", 80)]));
            snap.endpoint_slices.push(mk_slice(
                "team-a",
                &name,
                ("http", 8080),
                &[(&address, true)],
            ));
        }
    }
    let mut twin = StoredRoute::clone(&snap.routes[0]);
    twin.meta.id.name = "twin".into();
    twin.spec.from = "https://twin.example.com".into();
    snap.routes.push(Arc::new(twin));
    // And a second object with another's key (only a hand-made snapshot has them).
    let mut same_key = StoredRoute::clone(&snap.routes[1]);
    same_key.meta.id.uid = Some("uid-same-key".into());
    same_key.spec.from = "https://same-key.example.com".into();
    snap.routes.push(Arc::new(same_key));
    // A second certificate for a host the copies' certificate covers: refused, and reported.
    snap.secrets.push(mk_tls_secret(
        "team-a",
        "other-cert",
        &["secure.example.com"],
    ));
    snap.routes.push(
        mk_route("team-a", "other-tls", "https://secure.example.com/other")
            .url("http://10.0.0.3")
            .tls("other-cert")
            .created(5000)
            .build(),
    );
    snap
}

#[test]
fn specs_and_services_done_on_several_threads_compile_as_on_one() {
    // Valid and invalid specs and policies, conflicts, SSH, Services, two objects sharing
    // one uid (the later reuses the earlier's spec, as one thread would have it) and two
    // sharing one key (contributed again in full, where they merge).
    // Services named by Routes are resolved ahead on several threads too.
    let snap = many_routes(40);
    assert!(snap.routes.len() > cache::PARALLEL_SPECS);
    let serial = compile_inner(
        &snap,
        &ctx(),
        Cache::default(),
        Parallel {
            specs: usize::MAX,
            settle: usize::MAX,
        },
    );
    let parallel = compile(&snap, &ctx());
    assert_eq!(outcome(&parallel), outcome(&serial));
    let every_part_parallel = compile_inner(
        &snap,
        &ctx(),
        Cache::default(),
        Parallel {
            specs: 2,
            settle: 2,
        },
    );
    assert_eq!(outcome(&every_part_parallel), outcome(&serial));
    assert!(
        serial
            .reports
            .values()
            .any(|r| r.problems.iter().any(|p| p.reason == "BackendNotFound"))
    );
    assert!(
        parallel.table.routes.len() > 50,
        "{}",
        parallel.table.routes.len()
    );
    // And the cache they leave behaves the same.
    let warm = compile_with(&snap, &ctx(), parallel.cache);
    assert_eq!(outcome(&warm), outcome(&serial));
}

#[test]
fn reports_made_on_several_threads_are_those_made_one_by_one() {
    // From nothing, every report is made at once (on several threads when there are this
    // many); after a compile of one Route, each changed object's report is made on its own.
    let snap = many_routes(2 * table::PER_THREAD / 9 + 1);
    assert!(snap.routes.len() > 2 * table::PER_THREAD);
    let fresh = compile(&snap, &ctx());
    let small = Snapshot {
        routes: snap.routes[..1].to_vec(),
        ..snap.clone()
    };
    let one_by_one = compile_with(&snap, &ctx(), compile(&small, &ctx()).cache);
    assert_eq!(outcome(&fresh), outcome(&one_by_one));
    // One report per Route key (two Routes share one) and one for the Ingress.
    assert_eq!(fresh.reports.len(), snap.routes.len() - 1 + 1);
    assert_eq!(
        reasons(&fresh, &route_key("team-a", "other-tls")),
        ["CertificateConflict"]
    );
}
