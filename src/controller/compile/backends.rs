//! Service backends: a Service port in the route's namespace, turned into upstream targets from
//! the Service and its EndpointSlices the way kube-proxy reads them. Pure; called by the compiler
//! for every Route `service:` target and Ingress backend, after it has refused references to
//! other namespaces.
//!
//! * The Service port is found by number or name (TCP only); the EndpointSlice port with the same
//!   name (unset and `""` are one name) gives each endpoint's target port.
//! * Ready endpoints are used (`ready` unset counts as ready); when none is ready, endpoints that
//!   are serving and terminating, as kube-proxy does. Each endpoint's first address is used,
//!   every address goes through the [`AddressPolicy`], and refused ones are reported in
//!   [`ResolvedService::dropped`].
//! * No usable EndpointSlice: the Service DNS name `<name>.<namespace>.svc`, resolved at connect
//!   time. Slices without any endpoint (a Service with no pods) mean "no endpoints": an empty
//!   target list, which the proxy answers with 503.
//! * `ExternalName` Services only when enabled, and their name passes the policy too.
//!
//! The output depends on the objects only, never on their order.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use foldhash::{HashMap, HashMapExt};
use k8s_openapi::api::core::v1::{Service, ServicePort as SpecPort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::api::networking::v1::ServiceBackendPort;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::routing::upstream::{AddressPolicy, Forbidden, Target, UpstreamScheme};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Which port of a Service a backend names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServicePort {
    /// The Service port number (`spec.ports[].port`, not the target port).
    Number(i32),
    /// The Service port name (`spec.ports[].name`).
    Name(String),
}

impl ServicePort {
    /// The port of an Ingress backend: the number when set, otherwise the name. `None` when
    /// neither is set (the API server refuses such Ingresses).
    pub fn from_ingress(port: &ServiceBackendPort) -> Option<ServicePort> {
        match (port.number, port.name.as_deref()) {
            (Some(n), _) if n != 0 => Some(ServicePort::Number(n)),
            (_, Some(name)) if !name.is_empty() => Some(ServicePort::Name(name.to_owned())),
            _ => None,
        }
    }
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServicePort::Number(n) => write!(f, "{n}"),
            ServicePort::Name(name) => write!(f, "{name:?}"),
        }
    }
}

/// Where a Service backend's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedService {
    /// The upstream targets, sorted, without duplicates. Empty when the Service has no usable
    /// endpoint: the proxy answers 503.
    pub targets: Vec<Target>,
    /// The protocol the Service port declares in `appProtocol` (`https`, `kubernetes.io/h2c`,
    /// `kubernetes.io/ws`, `kubernetes.io/wss`); `None`: plain HTTP, or what the route says.
    pub scheme_hint: Option<UpstreamScheme>,
    /// Whether the targets come from EndpointSlices (`false`: a DNS name).
    pub from_endpoints: bool,
    /// Sorted notes for people, each naming the Service, about endpoints that were left out
    /// (addresses the policy refused, addresses that are not IPs, FQDN slices), e.g. for a
    /// condition or an Event on the route.
    pub dropped: Vec<String>,
}

/// Why a Service backend has no upstream. Messages are complete and name the Service and port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No such Service in the namespace.
    #[error("Service {namespace}/{name} not found")]
    ServiceNotFound {
        /// The route's namespace.
        namespace: String,
        /// The Service name.
        name: String,
    },
    /// The Service has no TCP port with that number or name.
    #[error(
        "Service {namespace}/{name} has no TCP port {port} (its TCP ports: {})",
        port_list(.available)
    )]
    PortNotFound {
        /// The route's namespace.
        namespace: String,
        /// The Service name.
        name: String,
        /// The port asked for.
        port: ServicePort,
        /// The Service's TCP ports, as `80 (http)` or `9000`.
        available: Vec<String>,
    },
    /// An `ExternalName` Service while those backends are not enabled.
    #[error(
        "Service {namespace}/{name} is of type ExternalName, and ExternalName backends are not enabled"
    )]
    ExternalNameNotAllowed {
        /// The route's namespace.
        namespace: String,
        /// The Service name.
        name: String,
    },
    /// The Service's upstream name is not allowed: its `externalName`, or its own DNS name (the
    /// API server's `kubernetes` Service).
    #[error("Service {namespace}/{name}: upstream {host:?} is refused: {reason}")]
    Forbidden {
        /// The route's namespace.
        namespace: String,
        /// The Service name.
        name: String,
        /// The name as written: `spec.externalName` (empty when unset) or `<name>.<namespace>.svc`.
        host: String,
        /// Why.
        reason: Forbidden,
    },
}

fn port_list(available: &[String]) -> String {
    if available.is_empty() {
        "none".to_owned()
    } else {
        available.join(", ")
    }
}

/// Resolve the Service `namespace/name` (the caller has checked the namespace is the route's)
/// and its `port` into upstream targets. `service` is the Service if it exists; `slices` its
/// EndpointSlices (others are ignored). See the module documentation for the rules.
pub fn resolve_service<S: Borrow<EndpointSlice>>(
    namespace: &str,
    name: &str,
    port: &ServicePort,
    service: Option<&Service>,
    slices: &[&S],
    policy: &AddressPolicy,
    allow_external_name: bool,
) -> Result<ResolvedService, BackendError> {
    let service = service
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata.name.as_deref() == Some(name)
        })
        .ok_or_else(|| BackendError::ServiceNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
    let spec = service.spec.as_ref();
    let tcp_ports = || {
        spec.and_then(|s| s.ports.as_deref())
            .unwrap_or_default()
            .iter()
            .filter(|p| is_tcp(p.protocol.as_deref()))
    };
    let spec_port = tcp_ports().find(|p| match port {
        ServicePort::Number(n) => p.port == *n,
        ServicePort::Name(want) => p.name.as_deref().unwrap_or("") == want,
    });
    // A DNS name (the Service's own or its externalName) the address policy must allow.
    let named_target = |host: &str, port: u16| {
        policy
            .checked_target(host, port)
            .map_err(|reason| BackendError::Forbidden {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                host: host.to_owned(),
                reason,
            })
    };
    let port_not_found = || BackendError::PortNotFound {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        port: port.clone(),
        available: tcp_ports().map(describe_port).collect(),
    };
    let scheme_hint = spec_port
        .and_then(|p| p.app_protocol.as_deref())
        .and_then(scheme_from_app_protocol);

    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        if !allow_external_name {
            return Err(BackendError::ExternalNameNotAllowed {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        }
        // Ports are optional on an ExternalName Service: a number stands for itself.
        let number = match (spec_port, port) {
            (Some(p), _) => valid_port(p.port),
            (None, ServicePort::Number(n)) => valid_port(*n),
            (None, ServicePort::Name(_)) => None,
        }
        .ok_or_else(port_not_found)?;
        let external_name = spec
            .and_then(|s| s.external_name.as_deref())
            .unwrap_or_default();
        let target = named_target(external_name, number)?;
        return Ok(ResolvedService {
            targets: vec![target],
            scheme_hint,
            from_endpoints: false,
            dropped: Vec::new(),
        });
    }

    let spec_port = spec_port.ok_or_else(port_not_found)?;
    let number = valid_port(spec_port.port).ok_or_else(port_not_found)?;
    let port_name = spec_port.name.as_deref().unwrap_or("");

    let mut picked = Picked::default();
    for slice in slices {
        let slice: &EndpointSlice = (*slice).borrow();
        if belongs_to(slice, namespace, name) {
            picked.add_slice(slice, port_name, policy);
        }
    }
    let use_dns = !picked.ip_slices || (!picked.carrying && picked.any_endpoint);
    if use_dns {
        let host = format!("{name}.{namespace}.svc");
        let target = named_target(&host, number)?;
        return Ok(ResolvedService {
            targets: vec![target],
            scheme_hint,
            from_endpoints: false,
            dropped: picked.notes(namespace, name),
        });
    }
    let dropped = picked.notes(namespace, name);
    let mut chosen = if picked.ready.is_empty() {
        picked.terminating
    } else {
        picked.ready
    };
    chosen.sort_unstable();
    chosen.dedup();
    Ok(ResolvedService {
        targets: chosen.into_iter().map(Target::Addr).collect(),
        scheme_hint,
        from_endpoints: true,
        dropped,
    })
}

/// What the EndpointSlices of one Service port hold; the addresses unsorted, with duplicates.
#[derive(Default)]
struct Picked {
    /// At least one IPv4/IPv6 slice exists.
    ip_slices: bool,
    /// At least one of them has an endpoint (a Service with pods).
    any_endpoint: bool,
    /// At least one of them carries the port.
    carrying: bool,
    ready: Vec<SocketAddr>,
    /// Not ready, but serving and terminating: used only when nothing is ready.
    terminating: Vec<SocketAddr>,
    dropped: BTreeSet<String>,
}

impl Picked {
    /// The dropped notes, each naming the Service.
    fn notes(&self, namespace: &str, name: &str) -> Vec<String> {
        if self.dropped.is_empty() {
            return Vec::new();
        }
        let prefix = format!("Service {namespace}/{name}: ");
        self.dropped
            .iter()
            .map(|d| format!("{prefix}{d}"))
            .collect()
    }

    fn add_slice(&mut self, slice: &EndpointSlice, port_name: &str, policy: &AddressPolicy) {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            self.dropped.insert(format!(
                "EndpointSlice {:?} has addressType {:?}, which is not supported",
                slice.metadata.name.as_deref().unwrap_or_default(),
                slice.address_type
            ));
            return;
        }
        self.ip_slices = true;
        self.any_endpoint |= !slice.endpoints.is_empty();
        let Some(target_port) = slice_port(slice, port_name) else {
            return;
        };
        self.carrying = true;
        for endpoint in &slice.endpoints {
            // The addresses of one endpoint are fungible; kube-proxy uses the first.
            let Some(raw) = endpoint.addresses.first() else {
                continue;
            };
            let Ok(ip) = raw.parse::<IpAddr>() else {
                self.dropped
                    .insert(format!("endpoint address {raw:?} is not an IP address"));
                continue;
            };
            let addr = SocketAddr::new(ip, target_port);
            if let Err(reason) = policy.check_addr(addr) {
                self.dropped
                    .insert(format!("endpoint {addr} is refused: {reason}"));
                continue;
            }
            let (ready, serving, terminating) = conditions(endpoint);
            if ready {
                self.ready.push(addr);
            } else if serving && terminating {
                self.terminating.push(addr);
            }
        }
    }
}

/// `(ready, serving, terminating)` with the API's defaults for unset conditions.
fn conditions(endpoint: &Endpoint) -> (bool, bool, bool) {
    let c = endpoint.conditions.as_ref();
    (
        c.and_then(|c| c.ready).unwrap_or(true),
        c.and_then(|c| c.serving).unwrap_or(true),
        c.and_then(|c| c.terminating).unwrap_or(false),
    )
}

/// The target port of the slice's TCP port named `port_name`.
fn slice_port(slice: &EndpointSlice, port_name: &str) -> Option<u16> {
    slice
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|p| is_tcp(p.protocol.as_deref()) && p.name.as_deref().unwrap_or("") == port_name)
        .find_map(|p| p.port.and_then(valid_port))
}

fn belongs_to(slice: &EndpointSlice, namespace: &str, name: &str) -> bool {
    slice.metadata.namespace.as_deref() == Some(namespace) && service_label(slice) == Some(name)
}

fn service_label(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)
        .map(String::as_str)
}

fn is_tcp(protocol: Option<&str>) -> bool {
    matches!(protocol, None | Some("TCP"))
}

fn valid_port(n: i32) -> Option<u16> {
    u16::try_from(n).ok().filter(|&p| p != 0)
}

fn describe_port(p: &SpecPort) -> String {
    match p.name.as_deref() {
        Some(name) if !name.is_empty() => format!("{} ({name})", p.port),
        _ => p.port.to_string(),
    }
}

fn scheme_from_app_protocol(app_protocol: &str) -> Option<UpstreamScheme> {
    match app_protocol.to_ascii_lowercase().as_str() {
        "http" | "kubernetes.io/ws" => Some(UpstreamScheme::Http),
        "https" | "kubernetes.io/wss" => Some(UpstreamScheme::Https),
        "kubernetes.io/h2c" | "h2c" => Some(UpstreamScheme::H2c),
        _ => None,
    }
}

/// Reduces a Service to what [`resolve_service`] reads (its names, uid and `resourceVersion`;
/// `type`, `externalName` and the ports' name, number, protocol and `appProtocol`), so the
/// controller's stores keep no more: it resolves exactly as the whole object does.
pub fn slim_service(service: &mut Service) {
    slim_meta(&mut service.metadata, |_| false);
    service.status = None;
    if let Some(spec) = service.spec.as_mut() {
        let ports = spec.ports.take().map(|ports| {
            ports
                .into_iter()
                .map(|p| SpecPort {
                    name: p.name,
                    port: p.port,
                    protocol: p.protocol,
                    app_protocol: p.app_protocol,
                    ..SpecPort::default()
                })
                .collect()
        });
        *spec = ServiceSpec {
            ports,
            type_: spec.type_.take(),
            external_name: spec.external_name.take(),
            ..ServiceSpec::default()
        };
    }
}

/// Reduces an EndpointSlice to what [`resolve_service`] reads (names, uid, `resourceVersion`,
/// the Service label, `addressType`, each endpoint's first address and conditions, the ports'
/// name, number and protocol): it resolves exactly as the whole object does.
pub fn slim_slice(slice: &mut EndpointSlice) {
    slim_meta(&mut slice.metadata, |label| label == SERVICE_NAME_LABEL);
    for endpoint in &mut slice.endpoints {
        endpoint.addresses.truncate(1);
        *endpoint = Endpoint {
            addresses: std::mem::take(&mut endpoint.addresses),
            conditions: endpoint.conditions.take(),
            ..Endpoint::default()
        };
    }
    if let Some(ports) = slice.ports.as_mut() {
        for p in ports {
            p.app_protocol = None;
        }
    }
}

/// Keeps the identity of an object (names, uid, `resourceVersion`, creation time) and the
/// labels `keep` picks; drops every annotation, owner and finalizer.
fn slim_meta(meta: &mut ObjectMeta, keep: impl Fn(&str) -> bool) {
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|k, _| keep(k));
    }
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
    meta.managed_fields = None;
}

/// EndpointSlices (or anything that borrows as one, such as `Arc<EndpointSlice>`) grouped by
/// `(namespace, Service name)` from their [`SERVICE_NAME_LABEL`], borrowed from the slices; each
/// group sorted by slice name. Slices without a namespace or the label belong to no Service and
/// are left out.
pub fn slices_by_service<'a, S: Borrow<EndpointSlice>>(
    slices: impl IntoIterator<Item = &'a S>,
) -> HashMap<(&'a str, &'a str), Vec<&'a S>> {
    let slices = slices.into_iter();
    // Most Services have one slice: the number of slices bounds the number of groups.
    let mut out: HashMap<(&'a str, &'a str), Vec<&'a S>> =
        HashMap::with_capacity(slices.size_hint().0);
    for slice in slices {
        let s: &'a EndpointSlice = slice.borrow();
        let (Some(namespace), Some(service)) = (s.metadata.namespace.as_deref(), service_label(s))
        else {
            continue;
        };
        out.entry((namespace, service)).or_default().push(slice);
    }
    for group in out.values_mut() {
        group.sort_by(|a, b| {
            let (a, b): (&EndpointSlice, &EndpointSlice) = ((*a).borrow(), (*b).borrow());
            a.metadata.name.cmp(&b.metadata.name)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort};

    const NO_SLICES: &[&EndpointSlice] = &[];

    fn meta(namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        }
    }

    /// A ClusterIP Service in `team-a` with `(port, name, appProtocol)` TCP ports.
    fn mk_service(name: &str, ports: &[(i32, &str, &str)]) -> Service {
        let ports = ports
            .iter()
            .map(|&(port, name, app)| SpecPort {
                port,
                name: (!name.is_empty()).then(|| name.into()),
                app_protocol: (!app.is_empty()).then(|| app.into()),
                ..SpecPort::default()
            })
            .collect();
        Service {
            metadata: meta("team-a", name),
            spec: Some(ServiceSpec {
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn mk_external(name: &str, external: &str, ports: &[(i32, &str, &str)]) -> Service {
        let mut s = mk_service(name, ports);
        if let Some(spec) = s.spec.as_mut() {
            spec.type_ = Some("ExternalName".into());
            spec.external_name = Some(external.into());
        }
        s
    }

    /// `(address, ready, serving, terminating)`; `None` leaves the condition unset.
    type Ep<'a> = (&'a str, Option<bool>, Option<bool>, Option<bool>);

    fn ready(addr: &str) -> Ep<'_> {
        (addr, Some(true), Some(true), Some(false))
    }

    fn terminating(addr: &str) -> Ep<'_> {
        (addr, Some(false), Some(true), Some(true))
    }

    /// An IPv4 EndpointSlice of Service `team-a/<service>` with `(name, port)` TCP ports.
    fn mk_slice(
        service: &str,
        slice: &str,
        ports: &[(&str, i32)],
        eps: &[Ep<'_>],
    ) -> EndpointSlice {
        let mut m = meta("team-a", slice);
        m.labels = Some([(SERVICE_NAME_LABEL.to_owned(), service.to_owned())].into());
        EndpointSlice {
            metadata: m,
            address_type: "IPv4".into(),
            ports: Some(
                ports
                    .iter()
                    .map(|&(name, port)| EndpointPort {
                        name: (!name.is_empty()).then(|| name.into()),
                        port: Some(port),
                        protocol: Some("TCP".into()),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
            endpoints: eps
                .iter()
                .map(|&(addr, ready, serving, terminating)| Endpoint {
                    addresses: vec![addr.into()],
                    conditions: Some(EndpointConditions {
                        ready,
                        serving,
                        terminating,
                    }),
                    ..Endpoint::default()
                })
                .collect(),
        }
    }

    fn policy() -> AddressPolicy {
        AddressPolicy {
            own_listeners: vec!["0.0.0.0:8443".parse().unwrap()],
            local_ips: vec!["10.0.0.7".parse().unwrap()],
            api_servers: vec!["10.96.0.1:443".parse().unwrap()],
            ..AddressPolicy::default()
        }
    }

    fn resolve(
        port: ServicePort,
        service: &Service,
        slices: &[&EndpointSlice],
    ) -> Result<ResolvedService, BackendError> {
        let name = service.metadata.name.as_deref().unwrap();
        resolve_service(
            "team-a",
            name,
            &port,
            Some(service),
            slices,
            &policy(),
            false,
        )
    }

    fn addrs(r: &ResolvedService) -> Vec<String> {
        r.targets.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn ready_endpoints_with_the_slice_target_port() {
        let svc = mk_service("billing", &[(80, "http", ""), (9090, "metrics", "")]);
        let a = mk_slice(
            "billing",
            "billing-a",
            &[("http", 8080), ("metrics", 9100)],
            &[
                ready("10.0.0.2"),
                ready("10.0.0.1"),
                terminating("10.0.0.3"),
            ],
        );
        // Another slice may map the named port to another container port.
        let b = mk_slice(
            "billing",
            "billing-b",
            &[("http", 8081)],
            &[ready("10.0.1.1")],
        );
        let r = resolve(ServicePort::Number(80), &svc, &[&a, &b]).unwrap();
        assert_eq!(
            addrs(&r),
            ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.1.1:8081"]
        );
        assert!(r.from_endpoints);
        assert_eq!(r.scheme_hint, None);
        assert!(r.dropped.is_empty());
        let r = resolve(ServicePort::Name("metrics".into()), &svc, &[&a, &b]).unwrap();
        assert_eq!(addrs(&r), ["10.0.0.1:9100", "10.0.0.2:9100"]);
    }

    #[test]
    fn unset_conditions_count_as_ready() {
        let svc = mk_service("web", &[(80, "", "")]);
        let s = mk_slice(
            "web",
            "web-a",
            &[("", 8080)],
            &[("10.0.0.1", None, None, None)],
        );
        let r = resolve(ServicePort::Number(80), &svc, &[&s]).unwrap();
        assert_eq!(addrs(&r), ["10.0.0.1:8080"]);
        let mut bare = s.clone();
        bare.endpoints[0].conditions = None;
        let r = resolve(ServicePort::Number(80), &svc, &[&bare]).unwrap();
        assert_eq!(addrs(&r), ["10.0.0.1:8080"]);
    }

    #[test]
    fn terminating_endpoints_only_when_nothing_is_ready() {
        let svc = mk_service("web", &[(80, "", "")]);
        let not_serving = ("10.0.0.9", Some(false), Some(false), Some(true));
        let not_ready = ("10.0.0.8", Some(false), Some(true), Some(false));
        let s = mk_slice(
            "web",
            "web-a",
            &[("", 8080)],
            &[
                terminating("10.0.0.2"),
                ready("10.0.0.1"),
                not_serving,
                not_ready,
            ],
        );
        let r = resolve(ServicePort::Number(80), &svc, &[&s]).unwrap();
        assert_eq!(addrs(&r), ["10.0.0.1:8080"]);

        let s = mk_slice(
            "web",
            "web-a",
            &[("", 8080)],
            &[
                terminating("10.0.0.2"),
                not_serving,
                not_ready,
                terminating("10.0.0.3"),
            ],
        );
        let r = resolve(ServicePort::Number(80), &svc, &[&s]).unwrap();
        assert_eq!(addrs(&r), ["10.0.0.2:8080", "10.0.0.3:8080"]);
        assert!(r.from_endpoints);

        let s = mk_slice("web", "web-a", &[("", 8080)], &[not_serving, not_ready]);
        let r = resolve(ServicePort::Number(80), &svc, &[&s]).unwrap();
        assert_eq!(r.targets, []);
        assert!(r.from_endpoints);
    }

    #[test]
    fn port_names_unset_and_empty_are_one_name() {
        let svc = mk_service("web", &[(80, "", "")]);
        let mut s = mk_slice("web", "web-a", &[("", 8080)], &[ready("10.0.0.1")]);
        if let Some(ports) = s.ports.as_mut() {
            ports[0].name = Some(String::new());
        }
        let r = resolve(ServicePort::Number(80), &svc, &[&s]).unwrap();
        assert_eq!(addrs(&r), ["10.0.0.1:8080"]);
        // A slice port with another name is not this Service port.
        let other = mk_slice("web", "web-a", &[("grpc", 9000)], &[ready("10.0.0.1")]);
        let r = resolve(ServicePort::Number(80), &svc, &[&other]).unwrap();
        assert!(!r.from_endpoints);
    }

    #[test]
    fn missing_port_names_the_available_ones() {
        let svc = mk_service("billing", &[(80, "http", ""), (9000, "", "")]);
        let e = resolve(ServicePort::Number(8080), &svc, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Service team-a/billing has no TCP port 8080 (its TCP ports: 80 (http), 9000)"
        );
        let e = resolve(ServicePort::Name("grpc".into()), &svc, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Service team-a/billing has no TCP port \"grpc\" (its TCP ports: 80 (http), 9000)"
        );
        let mut udp = mk_service("dns", &[(53, "dns", "")]);
        if let Some(ports) = udp.spec.as_mut().and_then(|s| s.ports.as_mut()) {
            ports[0].protocol = Some("UDP".into());
        }
        let e = resolve(ServicePort::Number(53), &udp, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Service team-a/dns has no TCP port 53 (its TCP ports: none)"
        );
    }

    #[test]
    fn missing_or_foreign_service_is_not_found() {
        let e = resolve_service(
            "team-a",
            "billing",
            &ServicePort::Number(80),
            None,
            NO_SLICES,
            &policy(),
            true,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "Service team-a/billing not found");
        let mut other = mk_service("billing", &[(80, "", "")]);
        other.metadata.namespace = Some("team-b".into());
        let e = resolve_service(
            "team-a",
            "billing",
            &ServicePort::Number(80),
            Some(&other),
            NO_SLICES,
            &policy(),
            true,
        )
        .unwrap_err();
        assert!(matches!(e, BackendError::ServiceNotFound { .. }), "{e}");
    }

    #[test]
    fn no_slices_fall_back_to_the_service_name() {
        let svc = mk_service("billing", &[(80, "http", "")]);
        let r = resolve(ServicePort::Name("http".into()), &svc, &[]).unwrap();
        assert_eq!(
            r.targets,
            [Target::Name {
                host: "billing.team-a.svc".into(),
                port: 80
            }]
        );
        assert!(!r.from_endpoints);
        // Slices of another Service or namespace are not this Service's.
        let foreign = mk_slice("other", "other-a", &[("http", 8080)], &[ready("10.0.0.1")]);
        let mut elsewhere = mk_slice(
            "billing",
            "billing-a",
            &[("http", 8080)],
            &[ready("10.0.0.1")],
        );
        elsewhere.metadata.namespace = Some("team-b".into());
        let r = resolve(ServicePort::Number(80), &svc, &[&foreign, &elsewhere]).unwrap();
        assert_eq!(addrs(&r), ["billing.team-a.svc:80"]);
        // So are FQDN slices, which are noted.
        let mut fqdn = mk_slice(
            "billing",
            "billing-f",
            &[("http", 8080)],
            &[ready("db.example")],
        );
        fqdn.address_type = "FQDN".into();
        let r = resolve(ServicePort::Number(80), &svc, &[&fqdn]).unwrap();
        assert_eq!(addrs(&r), ["billing.team-a.svc:80"]);
        assert_eq!(
            r.dropped,
            [
                "Service team-a/billing: EndpointSlice \"billing-f\" has addressType \"FQDN\", which is not supported"
            ]
        );
    }

    #[test]
    fn a_service_without_pods_has_no_targets() {
        let svc = mk_service("billing", &[(80, "http", "")]);
        // The placeholder slice the EndpointSlice controller writes when no pod matches.
        let placeholder = mk_slice("billing", "billing-x", &[], &[]);
        let r = resolve(ServicePort::Number(80), &svc, &[&placeholder]).unwrap();
        assert_eq!(r.targets, []);
        assert!(r.from_endpoints);
    }

    #[test]
    fn the_kubernetes_service_name_is_refused() {
        let mut svc = mk_service("kubernetes", &[(443, "https", "")]);
        svc.metadata.namespace = Some("default".into());
        let e = resolve_service(
            "default",
            "kubernetes",
            &ServicePort::Number(443),
            Some(&svc),
            NO_SLICES,
            &policy(),
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Service default/kubernetes: upstream \"kubernetes.default.svc\" is refused: \
             the Kubernetes API server is not allowed as an upstream"
        );
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn refused_endpoint_addresses_are_dropped_and_noted() {
        let svc = mk_service("web", &[(80, "", "")]);
        let s = mk_slice(
            "web",
            "web-a",
            &[("", 8443)],
            &[
                ready("169.254.169.254"),
                ready("10.0.0.7"),
                ready("127.0.0.1"),
                ready("10.0.0.1"),
                ready("not-an-ip"),
                terminating("224.0.0.1"),
            ],
        );
        let r = resolve(ServicePort::Number(80), &svc, &[&s]).unwrap();
        assert_eq!(addrs(&r), ["10.0.0.1:8443"]);
        assert_eq!(
            r.dropped,
            [
                "Service team-a/web: endpoint 10.0.0.7:8443 is refused: Portcullis's own listener is not allowed as an upstream",
                "Service team-a/web: endpoint 127.0.0.1:8443 is refused: Portcullis's own listener is not allowed as an upstream",
                "Service team-a/web: endpoint 169.254.169.254:8443 is refused: link-local address (cloud metadata and similar services) is not allowed as an upstream",
                "Service team-a/web: endpoint 224.0.0.1:8443 is refused: multicast address is not allowed as an upstream",
                "Service team-a/web: endpoint address \"not-an-ip\" is not an IP address",
            ]
        );
        // The API server's endpoints, and everything refused: no target, not a DNS fallback.
        let api = mk_slice("web", "web-a", &[("", 443)], &[ready("10.96.0.1")]);
        let r = resolve(ServicePort::Number(80), &svc, &[&api]).unwrap();
        assert_eq!(r.targets, []);
        assert!(r.from_endpoints);
        assert_eq!(r.dropped.len(), 1);
    }

    #[test]
    fn ipv6_and_headless_services_use_their_slices() {
        let mut svc = mk_service("db", &[(5432, "pg", "")]);
        if let Some(spec) = svc.spec.as_mut() {
            spec.cluster_ip = Some("None".into());
        }
        let mut s = mk_slice(
            "db",
            "db-v6",
            &[("pg", 5432)],
            &[ready("fd00::2"), ready("fe80::1")],
        );
        s.address_type = "IPv6".into();
        let v4 = mk_slice("db", "db-v4", &[("pg", 5432)], &[ready("10.0.0.2")]);
        let r = resolve(ServicePort::Number(5432), &svc, &[&s, &v4]).unwrap();
        assert_eq!(addrs(&r), ["10.0.0.2:5432", "[fd00::2]:5432"]);
        assert_eq!(r.dropped.len(), 1);
        assert!(
            r.dropped[0]
                .starts_with("Service team-a/db: endpoint [fe80::1]:5432 is refused: link-local")
        );
    }

    #[test]
    fn app_protocol_gives_the_scheme_hint() {
        for (app, want) in [
            ("https", Some(UpstreamScheme::Https)),
            ("HTTPS", Some(UpstreamScheme::Https)),
            ("kubernetes.io/h2c", Some(UpstreamScheme::H2c)),
            ("kubernetes.io/ws", Some(UpstreamScheme::Http)),
            ("kubernetes.io/wss", Some(UpstreamScheme::Https)),
            ("http", Some(UpstreamScheme::Http)),
            ("example.com/custom", None),
        ] {
            let svc = mk_service("web", &[(443, "web", app)]);
            let r = resolve(ServicePort::Number(443), &svc, &[]).unwrap();
            assert_eq!(r.scheme_hint, want, "{app}");
        }
    }

    #[test]
    fn external_name_only_when_enabled_and_allowed() {
        let svc = mk_external("db", "DB.Example.Net.", &[(5432, "pg", "")]);
        let port = ServicePort::Number(5432);
        let e = resolve_service(
            "team-a",
            "db",
            &port,
            Some(&svc),
            NO_SLICES,
            &policy(),
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Service team-a/db is of type ExternalName, and ExternalName backends are not enabled"
        );
        let r = resolve_service(
            "team-a",
            "db",
            &port,
            Some(&svc),
            NO_SLICES,
            &policy(),
            true,
        )
        .unwrap();
        assert_eq!(
            r.targets,
            [Target::Name {
                host: "db.example.net".into(),
                port: 5432
            }]
        );
        assert!(!r.from_endpoints);
        // Without ports a number stands for itself; a name cannot.
        let bare = mk_external("db", "db.example.net", &[]);
        let r = resolve_service(
            "team-a",
            "db",
            &port,
            Some(&bare),
            NO_SLICES,
            &policy(),
            true,
        )
        .unwrap();
        assert_eq!(addrs(&r), ["db.example.net:5432"]);
        let e = resolve_service(
            "team-a",
            "db",
            &ServicePort::Name("pg".into()),
            Some(&bare),
            NO_SLICES,
            &policy(),
            true,
        )
        .unwrap_err();
        assert!(matches!(e, BackendError::PortNotFound { .. }), "{e}");
    }

    #[test]
    fn external_names_pass_the_policy() {
        let p = policy();
        let port = ServicePort::Number(80);
        for (external, want) in [
            ("metadata.google.internal", Forbidden::MetadataHost),
            ("169.254.169.254", Forbidden::LinkLocal),
            ("2130706433", Forbidden::Loopback),
            ("localhost", Forbidden::Loopback),
            ("kubernetes.default.svc.cluster.local", Forbidden::ApiServer),
        ] {
            let svc = mk_external("x", external, &[(80, "", "")]);
            let e =
                resolve_service("team-a", "x", &port, Some(&svc), NO_SLICES, &p, true).unwrap_err();
            match e {
                BackendError::Forbidden { reason, .. } => {
                    assert_eq!(reason, want, "{external}")
                }
                other => panic!("{external}: {other}"),
            }
        }
        let svc = mk_external("x", "", &[(80, "", "")]);
        let e = resolve_service("team-a", "x", &port, Some(&svc), NO_SLICES, &p, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Service team-a/x: upstream \"\" is refused: empty host"
        );
        let svc = mk_external("x", "10.0.0.5", &[(80, "", "")]);
        let r = resolve_service("team-a", "x", &port, Some(&svc), NO_SLICES, &p, true).unwrap();
        assert_eq!(r.targets, [Target::Addr("10.0.0.5:80".parse().unwrap())]);
    }

    #[test]
    fn output_does_not_depend_on_input_order() {
        let svc = mk_service("web", &[(80, "http", "")]);
        let a = mk_slice(
            "web",
            "web-a",
            &[("http", 8080)],
            &[ready("10.0.0.3"), ready("10.0.0.1"), ready("169.254.1.1")],
        );
        // The same endpoint in two slices (a move between slices) counts once.
        let b = mk_slice(
            "web",
            "web-b",
            &[("http", 8080)],
            &[ready("10.0.0.2"), ready("10.0.0.1"), ready("0.0.0.0")],
        );
        let one = resolve(ServicePort::Number(80), &svc, &[&a, &b]).unwrap();
        let two = resolve(ServicePort::Number(80), &svc, &[&b, &a]).unwrap();
        assert_eq!(one, two);
        assert_eq!(
            addrs(&one),
            ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
        );
        assert_eq!(one.dropped.len(), 2);

        let grouped = slices_by_service([&b, &a]);
        let regrouped = slices_by_service([&a, &b]);
        assert_eq!(grouped, regrouped);
        let group = &grouped[&("team-a", "web")];
        let names: Vec<_> = group.iter().map(|s| s.metadata.name.as_deref()).collect();
        assert_eq!(names, [Some("web-a"), Some("web-b")]);
        let three = resolve(ServicePort::Number(80), &svc, group).unwrap();
        assert_eq!(three, one);
    }

    #[test]
    fn slices_group_by_namespace_and_service_label() {
        let a = mk_slice("web", "web-a", &[], &[]);
        let mut b = mk_slice("web", "web-b", &[], &[]);
        b.metadata.namespace = Some("team-b".into());
        let c = mk_slice("api", "api-a", &[], &[]);
        let mut unlabeled = mk_slice("web", "stray", &[], &[]);
        unlabeled.metadata.labels = None;
        let grouped = slices_by_service([&a, &b, &c, &unlabeled]);
        let mut keys: Vec<_> = grouped.keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [("team-a", "api"), ("team-a", "web"), ("team-b", "web")]
        );
        assert_eq!(grouped[&("team-a", "web")].len(), 1);
    }

    #[test]
    fn ingress_ports_convert() {
        let number = ServiceBackendPort {
            number: Some(80),
            name: None,
        };
        let name = ServiceBackendPort {
            number: None,
            name: Some("http".into()),
        };
        assert_eq!(
            ServicePort::from_ingress(&number),
            Some(ServicePort::Number(80))
        );
        assert_eq!(
            ServicePort::from_ingress(&name),
            Some(ServicePort::Name("http".into()))
        );
        assert_eq!(
            ServicePort::from_ingress(&ServiceBackendPort::default()),
            None
        );
        assert_eq!(ServicePort::Name("http".into()).to_string(), "\"http\"");
        assert_eq!(ServicePort::Number(80).to_string(), "80");
    }

    #[test]
    fn slim_objects_resolve_like_whole_ones() {
        let mut web = mk_service("web", &[(80, "http", "kubernetes.io/h2c"), (81, "", "")]);
        web.metadata.annotations = Some([("a".to_owned(), "b".to_owned())].into());
        web.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
        if let Some(spec) = web.spec.as_mut() {
            spec.selector = Some([("app".to_owned(), "web".to_owned())].into());
            spec.cluster_ip = Some("10.96.0.10".into());
        }
        let mut slice = mk_slice(
            "web",
            "web-a",
            &[("http", 8080), ("", 8081)],
            &[
                ready("10.0.0.1"),
                terminating("10.0.0.2"),
                ready("127.0.0.1"),
            ],
        );
        slice.endpoints[0].addresses.push("10.0.0.9".into());
        slice.endpoints[0].node_name = Some("node-1".into());
        slice.endpoints[0].target_ref = Some(ObjectReference {
            name: Some("web-7d9f".into()),
            ..ObjectReference::default()
        });
        if let Some(labels) = slice.metadata.labels.as_mut() {
            labels.insert("endpointslice.kubernetes.io/managed-by".into(), "x".into());
        }
        let external = mk_external("ext", "db.example.com", &[(5432, "pg", "")]);
        let dns = mk_service("lonely", &[(80, "http", "")]);

        let cases = [(&web, vec![&slice]), (&external, vec![]), (&dns, vec![])];
        for (service, slices) in cases {
            let (mut slim_svc, mut slim_slices) = (service.clone(), Vec::new());
            slim_service(&mut slim_svc);
            for s in &slices {
                let mut s = (*s).clone();
                slim_slice(&mut s);
                slim_slices.push(s);
            }
            let slim_refs: Vec<&EndpointSlice> = slim_slices.iter().collect();
            for port in [
                ServicePort::Number(80),
                ServicePort::Number(81),
                ServicePort::Number(5432),
                ServicePort::Name("http".into()),
                ServicePort::Name("pg".into()),
            ] {
                let name = service.metadata.name.as_deref().unwrap();
                let whole = resolve_service(
                    "team-a",
                    name,
                    &port,
                    Some(service),
                    &slices,
                    &policy(),
                    true,
                );
                let slim = resolve_service(
                    "team-a",
                    name,
                    &port,
                    Some(&slim_svc),
                    &slim_refs,
                    &policy(),
                    true,
                );
                assert_eq!(whole, slim, "{name} {port}");
            }
            assert_eq!(slim_svc.metadata.annotations, None);
            assert!(slim_svc.spec.as_ref().unwrap().selector.is_none());
        }
        let mut s = slice.clone();
        slim_slice(&mut s);
        assert_eq!(s.endpoints[0].addresses, ["10.0.0.1"]);
        assert_eq!(s.endpoints[0].target_ref, None);
        assert_eq!(
            s.metadata.labels.unwrap().keys().collect::<Vec<_>>(),
            [SERVICE_NAME_LABEL]
        );
    }
}
