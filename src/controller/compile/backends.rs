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
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};
use k8s_openapi::api::core::v1::Service;
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

/// An object's namespace, name, uid and `resourceVersion`: what a stored Service or
/// EndpointSlice is known by, and what the compile cache tells its versions apart by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Empty only in hand-made objects (the API server always sets it). Shared: compile's
    /// object keys reuse them rather than copying.
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub uid: Option<Arc<str>>,
    pub resource_version: Option<Box<str>>,
}

impl From<ObjectMeta> for Identity {
    fn from(meta: ObjectMeta) -> Self {
        Identity {
            namespace: meta.namespace.unwrap_or_default().into(),
            name: meta.name.unwrap_or_default().into(),
            uid: meta.uid.map(Into::into),
            resource_version: meta.resource_version.map(Into::into),
        }
    }
}

/// What the controller keeps of a Service: exactly what [`resolve_service`] reads. The watch
/// turns each Service it decodes into one; a k8s-openapi `Service` is 824 bytes before any of
/// its strings, nearly all of it fields compile never reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRecord {
    pub id: Identity,
    /// `Some` for a Service of type `ExternalName`: its `externalName` (empty when unset).
    pub external_name: Option<Box<str>>,
    /// Its TCP ports (`protocol` unset or `TCP`), in `spec.ports` order; other protocols are
    /// never a backend.
    pub ports: Box<[ServicePortRecord]>,
}

/// A TCP port of a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePortRecord {
    /// Empty when unset (the API treats both alike).
    pub name: Box<str>,
    pub port: i32,
    pub app_protocol: Option<Box<str>>,
}

impl From<Service> for ServiceRecord {
    fn from(service: Service) -> Self {
        let spec = service.spec.unwrap_or_default();
        let ports = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter(|p| is_tcp(p.protocol.as_deref()))
            .map(|p| ServicePortRecord {
                name: p.name.unwrap_or_default().into(),
                port: p.port,
                app_protocol: p.app_protocol.map(Into::into),
            })
            .collect();
        let external_name = (spec.type_.as_deref() == Some("ExternalName"))
            .then(|| spec.external_name.unwrap_or_default().into());
        ServiceRecord {
            id: service.metadata.into(),
            external_name,
            ports,
        }
    }
}

impl AsRef<Identity> for ServiceRecord {
    fn as_ref(&self) -> &Identity {
        &self.id
    }
}

/// What the controller keeps of an EndpointSlice: exactly what [`resolve_service`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceRecord {
    pub id: Identity,
    /// Its [`SERVICE_NAME_LABEL`].
    pub service: Option<Box<str>>,
    /// `None` for `IPv4` and `IPv6`; any other `addressType` (`FQDN`), for the note that
    /// leaves the slice out.
    pub unsupported_address_type: Option<Box<str>>,
    pub endpoints: Box<[EndpointRecord]>,
    /// Its TCP ports: name (empty when unset) and number.
    pub ports: Box<[(Box<str>, Option<i32>)]>,
}

impl AsRef<Identity> for SliceRecord {
    fn as_ref(&self) -> &Identity {
        &self.id
    }
}

/// One endpoint of an EndpointSlice, its conditions with the API's defaults for unset ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRecord {
    /// Its first address (an endpoint's addresses are fungible; kube-proxy uses the first),
    /// parsed; one that is not an IP address is kept for the note that drops it.
    pub address: Option<Result<IpAddr, Box<str>>>,
    /// `ready` (unset: true).
    pub ready: bool,
    /// `serving` (unset: true).
    pub serving: bool,
    /// `terminating` (unset: false).
    pub terminating: bool,
}

impl From<Endpoint> for EndpointRecord {
    fn from(endpoint: Endpoint) -> Self {
        let c = endpoint.conditions.unwrap_or_default();
        EndpointRecord {
            address: endpoint
                .addresses
                .into_iter()
                .next()
                .map(|raw| raw.parse::<IpAddr>().map_err(|_| raw.into_boxed_str())),
            ready: c.ready.unwrap_or(true),
            serving: c.serving.unwrap_or(true),
            terminating: c.terminating.unwrap_or(false),
        }
    }
}

impl From<EndpointSlice> for SliceRecord {
    fn from(slice: EndpointSlice) -> Self {
        let EndpointSlice {
            mut metadata,
            address_type,
            endpoints,
            ports,
        } = slice;
        let service = metadata
            .labels
            .take()
            .and_then(|mut labels| labels.remove(SERVICE_NAME_LABEL))
            .map(Into::into);
        SliceRecord {
            id: metadata.into(),
            service,
            unsupported_address_type: (!matches!(address_type.as_str(), "IPv4" | "IPv6"))
                .then(|| address_type.into()),
            endpoints: endpoints.into_iter().map(EndpointRecord::from).collect(),
            ports: ports
                .unwrap_or_default()
                .into_iter()
                .filter(|p| is_tcp(p.protocol.as_deref()))
                .map(|p| (p.name.unwrap_or_default().into(), p.port))
                .collect(),
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
pub fn resolve_service<S: Borrow<SliceRecord>>(
    namespace: &str,
    name: &str,
    port: &ServicePort,
    service: Option<&ServiceRecord>,
    slices: &[&S],
    policy: &AddressPolicy,
    allow_external_name: bool,
) -> Result<ResolvedService, BackendError> {
    let service = service
        .filter(|s| *s.id.namespace == *namespace && *s.id.name == *name)
        .ok_or_else(|| BackendError::ServiceNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
    let spec_port = service.ports.iter().find(|p| match port {
        ServicePort::Number(n) => p.port == *n,
        ServicePort::Name(want) => *p.name == **want,
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
        available: service.ports.iter().map(describe_port).collect(),
    };
    let scheme_hint = spec_port
        .and_then(|p| p.app_protocol.as_deref())
        .and_then(scheme_from_app_protocol);

    if let Some(external_name) = service.external_name.as_deref() {
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
    let port_name = &*spec_port.name;

    let mut picked = Picked::default();
    for slice in slices {
        let slice: &SliceRecord = (*slice).borrow();
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

    fn add_slice(&mut self, slice: &SliceRecord, port_name: &str, policy: &AddressPolicy) {
        if let Some(address_type) = &slice.unsupported_address_type {
            self.dropped.insert(format!(
                "EndpointSlice {:?} has addressType {address_type:?}, which is not supported",
                slice.id.name,
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
            let ip = match &endpoint.address {
                None => continue,
                Some(Ok(ip)) => *ip,
                Some(Err(raw)) => {
                    self.dropped
                        .insert(format!("endpoint address {raw:?} is not an IP address"));
                    continue;
                }
            };
            let addr = SocketAddr::new(ip, target_port);
            if let Err(reason) = policy.check_addr(addr) {
                self.dropped
                    .insert(format!("endpoint {addr} is refused: {reason}"));
                continue;
            }
            if endpoint.ready {
                self.ready.push(addr);
            } else if endpoint.serving && endpoint.terminating {
                self.terminating.push(addr);
            }
        }
    }
}

/// The target port of the slice's TCP port named `port_name`.
fn slice_port(slice: &SliceRecord, port_name: &str) -> Option<u16> {
    slice
        .ports
        .iter()
        .filter(|(name, _)| **name == *port_name)
        .find_map(|(_, port)| port.and_then(valid_port))
}

fn belongs_to(slice: &SliceRecord, namespace: &str, name: &str) -> bool {
    *slice.id.namespace == *namespace && slice.service.as_deref() == Some(name)
}

fn is_tcp(protocol: Option<&str>) -> bool {
    matches!(protocol, None | Some("TCP"))
}

fn valid_port(n: i32) -> Option<u16> {
    u16::try_from(n).ok().filter(|&p| p != 0)
}

fn describe_port(p: &ServicePortRecord) -> String {
    match &*p.name {
        "" => p.port.to_string(),
        name => format!("{} ({name})", p.port),
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

/// EndpointSlices (or anything that borrows as one, such as `Arc<SliceRecord>`) grouped by
/// `(namespace, Service name)` from their [`SERVICE_NAME_LABEL`], borrowed from the slices; each
/// group sorted by slice name. Slices without the label belong to no Service and are left out.
pub fn slices_by_service<'a, S: Borrow<SliceRecord>>(
    slices: impl IntoIterator<Item = &'a S>,
) -> HashMap<(&'a str, &'a str), Vec<&'a S>> {
    let slices = slices.into_iter();
    // Most Services have one slice: the number of slices bounds the number of groups.
    let mut out: HashMap<(&'a str, &'a str), Vec<&'a S>> =
        HashMap::with_capacity(slices.size_hint().0);
    for slice in slices {
        let s: &'a SliceRecord = slice.borrow();
        let Some(service) = s.service.as_deref() else {
            continue;
        };
        out.entry((&*s.id.namespace, service))
            .or_default()
            .push(slice);
    }
    for group in out.values_mut() {
        group.sort_by(|a, b| {
            let (a, b): (&SliceRecord, &SliceRecord) = ((*a).borrow(), (*b).borrow());
            a.id.name.cmp(&b.id.name)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::core::v1::{ServicePort as SpecPort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointPort};

    const NO_SLICES: &[&SliceRecord] = &[];

    /// What the store keeps of `service`.
    fn rec(service: &Service) -> ServiceRecord {
        service.clone().into()
    }

    fn recs(slices: &[&EndpointSlice]) -> Vec<SliceRecord> {
        slices.iter().map(|s| (*s).clone().into()).collect()
    }

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
        let slices = recs(slices);
        resolve_service(
            "team-a",
            name,
            &port,
            Some(&rec(service)),
            &slices.iter().collect::<Vec<_>>(),
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
            Some(&rec(&other)),
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
            Some(&rec(&svc)),
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
            Some(&rec(&svc)),
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
            Some(&rec(&svc)),
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
            Some(&rec(&bare)),
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
            Some(&rec(&bare)),
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
            let e = resolve_service("team-a", "x", &port, Some(&rec(&svc)), NO_SLICES, &p, true)
                .unwrap_err();
            match e {
                BackendError::Forbidden { reason, .. } => {
                    assert_eq!(reason, want, "{external}")
                }
                other => panic!("{external}: {other}"),
            }
        }
        let svc = mk_external("x", "", &[(80, "", "")]);
        let e = resolve_service("team-a", "x", &port, Some(&rec(&svc)), NO_SLICES, &p, true)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Service team-a/x: upstream \"\" is refused: empty host"
        );
        let svc = mk_external("x", "10.0.0.5", &[(80, "", "")]);
        let r =
            resolve_service("team-a", "x", &port, Some(&rec(&svc)), NO_SLICES, &p, true).unwrap();
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

        let [a, b] = [a, b].map(SliceRecord::from);
        let grouped = slices_by_service([&b, &a]);
        let regrouped = slices_by_service([&a, &b]);
        assert_eq!(grouped, regrouped);
        let group = &grouped[&("team-a", "web")];
        let names: Vec<_> = group.iter().map(|s| &*s.id.name).collect();
        assert_eq!(names, ["web-a", "web-b"]);
        let port = ServicePort::Number(80);
        let svc = rec(&svc);
        let three =
            resolve_service("team-a", "web", &port, Some(&svc), group, &policy(), false).unwrap();
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
        let [a, b, c, unlabeled] = [a, b, c, unlabeled].map(SliceRecord::from);
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

    /// A Service and an EndpointSlice keep only what resolving reads: TCP ports, each
    /// endpoint's first address (parsed) and its conditions with their defaults, the Service
    /// label.
    #[test]
    fn records_keep_what_resolving_reads() {
        let mut web = mk_service("web", &[(80, "http", "kubernetes.io/h2c"), (81, "", "")]);
        web.metadata.annotations = Some([("a".to_owned(), "b".to_owned())].into());
        web.metadata.uid = Some("u-1".into());
        web.metadata.resource_version = Some("7".into());
        if let Some(spec) = web.spec.as_mut() {
            spec.selector = Some([("app".to_owned(), "web".to_owned())].into());
            spec.cluster_ip = Some("10.96.0.10".into());
            spec.ports.get_or_insert_default().push(SpecPort {
                port: 53,
                protocol: Some("UDP".into()),
                ..SpecPort::default()
            });
        }
        assert_eq!(
            rec(&web),
            ServiceRecord {
                id: Identity {
                    namespace: "team-a".into(),
                    name: "web".into(),
                    uid: Some("u-1".into()),
                    resource_version: Some("7".into()),
                },
                external_name: None,
                ports: [
                    ServicePortRecord {
                        name: "http".into(),
                        port: 80,
                        app_protocol: Some("kubernetes.io/h2c".into()),
                    },
                    ServicePortRecord {
                        name: "".into(),
                        port: 81,
                        app_protocol: None,
                    },
                ]
                .into(),
            }
        );
        let external = rec(&mk_external("ext", "db.example.com", &[]));
        assert_eq!(external.external_name.as_deref(), Some("db.example.com"));

        let mut slice = mk_slice(
            "web",
            "web-a",
            &[("http", 8080), ("", 8081)],
            &[
                ready("10.0.0.1"),
                terminating("10.0.0.2"),
                ("not-an-ip", None, None, None),
            ],
        );
        slice.endpoints[0].addresses.push("10.0.0.9".into());
        slice.endpoints[0].node_name = Some("node-1".into());
        slice.endpoints[0].target_ref = Some(ObjectReference {
            name: Some("web-7d9f".into()),
            ..ObjectReference::default()
        });
        slice.endpoints.push(Endpoint::default());
        if let Some(labels) = slice.metadata.labels.as_mut() {
            labels.insert("endpointslice.kubernetes.io/managed-by".into(), "x".into());
        }
        slice.ports.get_or_insert_default().push(EndpointPort {
            name: Some("dns".into()),
            port: Some(53),
            protocol: Some("UDP".into()),
            ..EndpointPort::default()
        });
        let r = SliceRecord::from(slice.clone());
        assert_eq!(r.id.name.as_ref(), "web-a");
        assert_eq!(r.service.as_deref(), Some("web"));
        assert_eq!(r.unsupported_address_type, None);
        assert_eq!(
            r.ports.as_ref(),
            [("http".into(), Some(8080)), ("".into(), Some(8081))]
        );
        let endpoint = |address, ready, serving, terminating| EndpointRecord {
            address,
            ready,
            serving,
            terminating,
        };
        assert_eq!(
            r.endpoints.as_ref(),
            [
                endpoint(Some(Ok("10.0.0.1".parse().unwrap())), true, true, false),
                endpoint(Some(Ok("10.0.0.2".parse().unwrap())), false, true, true),
                endpoint(Some(Err("not-an-ip".into())), true, true, false),
                endpoint(None, true, true, false),
            ]
        );
        slice.address_type = "FQDN".into();
        let fqdn = SliceRecord::from(slice);
        assert_eq!(fqdn.unsupported_address_type.as_deref(), Some("FQDN"));
    }
}
