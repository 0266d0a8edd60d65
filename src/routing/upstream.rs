//! Where the proxy sends a request ([`Upstream`], [`Target`]) and which addresses may be
//! upstreams at all ([`AddressPolicy`]): the SSRF rules of Portcullis.
//!
//! The controller applies the policy when it compiles URL backends ([`parse_url_upstream`]) and
//! EndpointSlice addresses (`controller::compile::backends`); the proxy applies it again at
//! connect time to every address a DNS name resolves to, so DNS rebinding cannot get past it.
//!
//! Never allowed: link-local (`169.254.0.0/16`, `fe80::/10`: cloud metadata lives there), the
//! unspecified and "this network" addresses (`0.0.0.0/8`, `::`), multicast, broadcast, known
//! cloud metadata addresses and names, the Kubernetes API server, and Portcullis's own listeners.
//! Loopback (`127.0.0.0/8`, `::1`, `localhost`) only with [`AddressPolicy::allow_loopback`]
//! (`portcullis dev`). IPv6 forms that embed an IPv4 address (mapped `::ffff:a.b.c.d`, compatible
//! `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4 address. Host
//! names are read with the WHATWG host parser ([`crate::routing::host`]), so `2130706433`,
//! `0x7f.1` and `0177.0.0.1` are the IPv4 address a resolver would make of them.
//!
//! The module knows no Kubernetes types.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use http::HeaderValue;
use http::uri::Authority;

use crate::routing::host::{HostError, host_name, split_authority};

/// Longest upstream URL accepted (the Route CRD's limit).
pub const MAX_URL_LEN: usize = 2048;
/// Longest URL shown in an error message.
const MAX_SHOWN_LEN: usize = 256;

/// Names of the Kubernetes API server every cluster has (`.svc.<cluster domain>` is matched as a
/// suffix family in [`is_api_server_name`]).
const API_SERVER_NAMES: &[&str] = &["kubernetes", "kubernetes.default", "kubernetes.default.svc"];

/// Cloud metadata services reachable by name (GCP, AWS, Tencent Cloud).
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// Cloud metadata addresses outside link-local: Alibaba Cloud, the Azure WireServer, and the AWS
/// instance metadata service over IPv6.
const METADATA_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
const METADATA_V6: &[Ipv6Addr] = &[Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)];

/// The protocol spoken to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpstreamScheme {
    /// HTTP/1.1 in clear text.
    Http,
    /// HTTP over TLS.
    Https,
    /// HTTP/2 in clear text with prior knowledge (Service `appProtocol: kubernetes.io/h2c`).
    H2c,
    /// SSH.
    Ssh,
}

impl UpstreamScheme {
    /// 80 for `http` and `h2c`, 443 for `https`, 22 for `ssh`.
    pub fn default_port(self) -> u16 {
        match self {
            UpstreamScheme::Http | UpstreamScheme::H2c => 80,
            UpstreamScheme::Https => 443,
            UpstreamScheme::Ssh => 22,
        }
    }
}

impl fmt::Display for UpstreamScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpstreamScheme::Http => "http",
            UpstreamScheme::Https => "https",
            UpstreamScheme::H2c => "h2c",
            UpstreamScheme::Ssh => "ssh",
        })
    }
}

/// The socket an upstream is reached at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// An address, already checked against the [`AddressPolicy`].
    Addr(SocketAddr),
    /// A DNS name (canonical: lower case, A-labels, no trailing dot) resolved at connect time,
    /// where every resolved address goes through [`AddressPolicy::check_addr`].
    Name {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(addr) => write!(f, "{addr}"),
            Target::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// One weighted upstream of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The protocol spoken to it.
    pub scheme: UpstreamScheme,
    /// Where it is.
    pub target: Target,
    /// Relative share of requests; 0 sends it no new requests.
    pub weight: u32,
    /// Path prefix put before the forwarded path: `""` or a canonical `/base` without a trailing
    /// `/` (from a URL backend such as `http://10.0.0.5:8080/base`).
    pub base_path: String,
    /// `host[:port]` of the request URI and the `Host` header, computed once from `scheme` and
    /// `target` (so the proxy does not format it per request); `None` if it is not a valid
    /// authority.
    authority: Option<(Authority, HeaderValue)>,
}

impl Upstream {
    /// An upstream; see the fields.
    pub fn new(scheme: UpstreamScheme, target: Target, weight: u32, base_path: String) -> Self {
        let text = Bytes::from(authority_text(scheme, &target));
        let authority = Authority::from_maybe_shared(text.clone())
            .ok()
            .zip(HeaderValue::from_maybe_shared(text).ok());
        Self {
            scheme,
            target,
            weight,
            base_path,
            authority,
        }
    }

    /// `host:port` for the request URI, the port left out when it is the scheme's default.
    pub fn authority(&self) -> Option<&Authority> {
        self.authority.as_ref().map(|(a, _)| a)
    }

    /// [`Self::authority`] as a `Host` header value.
    pub fn host_header(&self) -> Option<&HeaderValue> {
        self.authority.as_ref().map(|(_, h)| h)
    }
}

fn authority_text(scheme: UpstreamScheme, target: &Target) -> String {
    let default = scheme.default_port();
    match target {
        // The common case by far (an endpoint of a Service), written without the formatting
        // machinery: a compile from nothing makes one per endpoint.
        Target::Addr(SocketAddr::V4(addr)) => {
            let mut text = String::with_capacity(21);
            let mut digits = itoa::Buffer::new();
            for (i, octet) in addr.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(digits.format(octet));
            }
            if addr.port() != default {
                text.push(':');
                text.push_str(digits.format(addr.port()));
            }
            text
        }
        Target::Addr(addr) if addr.port() == default => format!("[{}]", addr.ip()),
        Target::Addr(addr) => addr.to_string(),
        Target::Name { host, port } if *port == default => host.clone(),
        Target::Name { host, port } => format!("{host}:{port}"),
    }
}

/// Which addresses may be upstreams. Built once from the settings and the bound listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Allow loopback upstreams (setting `allowLoopbackUpstreams`; on in `portcullis dev`).
    pub allow_loopback: bool,
    /// Portcullis's own listeners (http, https, ssh, admin). An unspecified IP (`0.0.0.0`, `::`)
    /// means that port on every local address: loopback, unspecified and [`Self::local_ips`].
    pub own_listeners: Vec<SocketAddr>,
    /// The machine's own addresses, when known. Without them a listener bound to an unspecified
    /// IP is recognized on loopback only.
    pub local_ips: Vec<IpAddr>,
    /// The Kubernetes API server's sockets (same matching as [`Self::own_listeners`]).
    pub api_servers: Vec<SocketAddr>,
    /// The API server's host names besides the well-known `kubernetes.default.svc` family.
    pub api_server_hosts: Vec<String>,
}

/// Why an address or name may not be an upstream. Messages are for the people who wrote the
/// backend and never repeat the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum Forbidden {
    /// `169.254.0.0/16`, `fe80::/10`.
    #[error(
        "link-local address (cloud metadata and similar services) is not allowed as an upstream"
    )]
    LinkLocal,
    /// `127.0.0.0/8`, `::1`, `localhost`, while loopback upstreams are not allowed.
    #[error(
        "loopback address is not allowed as an upstream (the allowLoopbackUpstreams setting allows it)"
    )]
    Loopback,
    /// `0.0.0.0/8`, `::`: the machine itself to most network stacks.
    #[error("unspecified address (0.0.0.0 or ::) is not allowed as an upstream")]
    Unspecified,
    /// `224.0.0.0/4`, `ff00::/8`.
    #[error("multicast address is not allowed as an upstream")]
    Multicast,
    /// `255.255.255.255`.
    #[error("broadcast address is not allowed as an upstream")]
    Broadcast,
    /// A cloud metadata address outside link-local (Alibaba Cloud, Azure WireServer, AWS IPv6).
    #[error("cloud metadata address is not allowed as an upstream")]
    MetadataAddress,
    /// A cloud metadata host name (`metadata.google.internal`, `instance-data`, ...).
    #[error("cloud metadata host name is not allowed as an upstream")]
    MetadataHost,
    /// The Kubernetes API server, by address or name.
    #[error("the Kubernetes API server is not allowed as an upstream")]
    ApiServer,
    /// One of Portcullis's own listeners (a request loop).
    #[error("Portcullis's own listener is not allowed as an upstream")]
    OwnListener,
    /// A host that has no canonical form, so no check could judge it.
    #[error(transparent)]
    InvalidName(HostError),
}

impl AddressPolicy {
    /// Whether `addr` may be an upstream. The API server and our own listeners are refused even
    /// when loopback is allowed.
    pub fn check_addr(&self, addr: SocketAddr) -> Result<(), Forbidden> {
        let ip = effective_ip(addr.ip());
        let port = addr.port();
        if self
            .api_servers
            .iter()
            .any(|s| self.same_socket(*s, ip, port))
        {
            return Err(Forbidden::ApiServer);
        }
        if self
            .own_listeners
            .iter()
            .any(|s| self.same_socket(*s, ip, port))
        {
            return Err(Forbidden::OwnListener);
        }
        match classify(ip) {
            Some(Forbidden::Loopback) if self.allow_loopback => Ok(()),
            Some(forbidden) => Err(forbidden),
            None => Ok(()),
        }
    }

    /// Whether the host `host` (a DNS name or IP literal, no port) may be an upstream on `port`,
    /// before resolution. The addresses it resolves to still need [`Self::check_addr`].
    pub fn check_name(&self, host: &str, port: u16) -> Result<(), Forbidden> {
        self.checked_target(host, port).map(drop)
    }

    /// [`Self::check_name`], returning the target to connect to: [`Target::Addr`] for an IP
    /// literal (in any spelling the WHATWG parser reads, `0x7f.1` included), otherwise
    /// [`Target::Name`] with the canonical name.
    pub fn checked_target(&self, host: &str, port: u16) -> Result<Target, Forbidden> {
        match split_authority(host) {
            Ok((name, None)) => self.canonical_target(name, port),
            Ok((_, Some(_))) => Err(Forbidden::InvalidName(HostError::UnexpectedPort)),
            Err(e) => Err(Forbidden::InvalidName(e)),
        }
    }

    /// The target for a name already in [`split_authority`] form.
    fn canonical_target(&self, name: String, port: u16) -> Result<Target, Forbidden> {
        if let Some(ip) = literal_ip(&name) {
            let addr = SocketAddr::new(ip, port);
            return self.check_addr(addr).map(|()| Target::Addr(addr));
        }
        if name == "localhost" || name.ends_with(".localhost") {
            // Judged as the addresses it stands for, so dev still refuses our own ports.
            for ip in [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ] {
                self.check_addr(SocketAddr::new(ip, port))?;
            }
        } else if METADATA_NAMES.contains(&name.as_str()) {
            return Err(Forbidden::MetadataHost);
        } else if self.is_api_server_name(&name) {
            return Err(Forbidden::ApiServer);
        }
        Ok(Target::Name { host: name, port })
    }

    fn is_api_server_name(&self, name: &str) -> bool {
        API_SERVER_NAMES.contains(&name)
            || name.starts_with("kubernetes.default.svc.")
            || self
                .api_server_hosts
                .iter()
                .any(|h| host_name(h).is_ok_and(|canonical| canonical == name))
    }

    /// Whether a connection to `ip:port` (an [`effective_ip`]) reaches the socket `bound`.
    fn same_socket(&self, bound: SocketAddr, ip: IpAddr, port: u16) -> bool {
        if bound.port() != port {
            return false;
        }
        let bound_ip = effective_ip(bound.ip());
        if bound_ip.is_unspecified() {
            return ip.is_loopback()
                || ip.is_unspecified()
                || self.local_ips.iter().any(|l| effective_ip(*l) == ip);
        }
        bound_ip == ip
    }
}

/// The IP a canonical host names, if it is a literal (`1.2.3.4` or `[::1]`).
fn literal_ip(name: &str) -> Option<IpAddr> {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => name.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// The IPv4 address an IPv6 address embeds (mapped, compatible, NAT64 well-known prefix, 6to4),
/// or the address itself. `::` and `::1` stay IPv6.
fn effective_ip(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if v6.is_unspecified() || v6.is_loopback() {
        return ip;
    }
    let s = v6.segments();
    let low = Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    let embedded = match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        _ => None,
    };
    embedded.map_or(ip, IpAddr::V4)
}

/// The forbidden class of an [`effective_ip`], if any.
fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if a == 0 {
                Some(Forbidden::Unspecified)
            } else if v4.is_loopback() {
                Some(Forbidden::Loopback)
            } else if a == 169 && b == 254 {
                Some(Forbidden::LinkLocal)
            } else if v4.is_multicast() {
                Some(Forbidden::Multicast)
            } else if v4.is_broadcast() {
                Some(Forbidden::Broadcast)
            } else if METADATA_V4.contains(&v4) {
                Some(Forbidden::MetadataAddress)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Some(Forbidden::Unspecified)
            } else if v6.is_loopback() {
                Some(Forbidden::Loopback)
            } else if v6.segments()[0] & 0xffc0 == 0xfe80 {
                Some(Forbidden::LinkLocal)
            } else if v6.is_multicast() {
                Some(Forbidden::Multicast)
            } else if METADATA_V6.contains(&v6) {
                Some(Forbidden::MetadataAddress)
            } else {
                None
            }
        }
    }
}

/// A URL backend that cannot be an upstream. The message is complete (`url backend <url> is
/// refused: <why>`, the URL without credentials, query or fragment), so the reason is not
/// repeated as an error source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("url backend {url} is refused: {problem}")]
pub struct UpstreamError {
    /// The URL as shown to people: userinfo, query and fragment removed, length capped.
    pub url: String,
    /// Why.
    pub problem: UrlProblem,
}

impl UpstreamError {
    /// Whether the URL is well formed but its address or name is not allowed (as opposed to a
    /// malformed URL).
    pub fn is_forbidden(&self) -> bool {
        matches!(self.problem, UrlProblem::Forbidden(_))
    }
}

/// What is wrong with a URL backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    /// Longer than [`MAX_URL_LEN`].
    #[error("the URL is longer than 2048 characters")]
    TooLong,
    /// Whitespace or a control character anywhere.
    #[error("whitespace or control character in the URL")]
    InvalidCharacter,
    /// No `scheme://`.
    #[error("not an absolute URL (http://, https:// or ssh:// followed by a host)")]
    NotAbsolute,
    /// A scheme other than `http`, `https` or `ssh`.
    #[error("only http, https and ssh upstream URLs are supported")]
    UnsupportedScheme,
    /// `user:password@`.
    #[error("a user name or password in an upstream URL is not allowed")]
    UserInfo,
    /// `?...`.
    #[error("a query in an upstream URL is not allowed")]
    Query,
    /// `#...`.
    #[error("a fragment in an upstream URL is not allowed")]
    Fragment,
    /// The host part has no canonical form.
    #[error(transparent)]
    InvalidHost(HostError),
    /// An empty, `.` or `..` path segment.
    #[error("the path has an empty, '.' or '..' segment")]
    PathSegment,
    /// A path byte outside the plain set the Route CRD allows (no `%`-escapes, `;` or `\`).
    #[error(
        "the path may only hold letters, digits and - . _ ~ ! $ & ' ( ) + , = : @ between slashes"
    )]
    PathCharacter,
    /// A path on an `ssh://` URL.
    #[error("an ssh upstream URL has no path")]
    SshPath,
    /// The address or name is not allowed.
    #[error(transparent)]
    Forbidden(Forbidden),
}

/// Parse a URL backend (`http://10.0.0.5:8080`, `https://api.internal/base`, `ssh://bastion`)
/// into an upstream, applying `policy`. An IP host (in any spelling the WHATWG parser reads)
/// gives [`Target::Addr`], a name [`Target::Name`] after [`AddressPolicy::check_name`].
pub fn parse_url_upstream(
    url: &str,
    weight: u32,
    policy: &AddressPolicy,
) -> Result<Upstream, UpstreamError> {
    parse(url, weight, policy).map_err(|problem| UpstreamError {
        url: shown_url(url),
        problem,
    })
}

fn parse(raw: &str, weight: u32, policy: &AddressPolicy) -> Result<Upstream, UrlProblem> {
    if raw.len() > MAX_URL_LEN {
        return Err(UrlProblem::TooLong);
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UrlProblem::InvalidCharacter);
    }
    let (scheme, rest) = raw.split_once("://").ok_or(UrlProblem::NotAbsolute)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => UpstreamScheme::Http,
        "https" => UpstreamScheme::Https,
        "ssh" => UpstreamScheme::Ssh,
        _ => return Err(UrlProblem::UnsupportedScheme),
    };
    // Where the WHATWG parser ends the authority of a special URL.
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(UrlProblem::UserInfo);
    }
    if tail.contains('?') {
        return Err(UrlProblem::Query);
    }
    if tail.contains('#') {
        return Err(UrlProblem::Fragment);
    }
    let (name, port) = split_authority(authority).map_err(UrlProblem::InvalidHost)?;
    let base_path = base_path(tail)?;
    if scheme == UpstreamScheme::Ssh && !base_path.is_empty() {
        return Err(UrlProblem::SshPath);
    }
    let target = policy
        .canonical_target(name, port.unwrap_or(scheme.default_port()))
        .map_err(UrlProblem::Forbidden)?;
    Ok(Upstream::new(scheme, target, weight, base_path))
}

/// `""` for no path or `/`, otherwise the path without its trailing `/`. Only plain segments:
/// the result is canonical (`crate::routing::path`), so base path + request path is too.
fn base_path(tail: &str) -> Result<String, UrlProblem> {
    let path = tail.strip_suffix('/').unwrap_or(tail);
    if path.is_empty() {
        return Ok(String::new());
    }
    // The authority ends at `\` too (WHATWG): a path starting with it is no plain path.
    let Some(segments) = path.strip_prefix('/') else {
        return Err(UrlProblem::PathCharacter);
    };
    for segment in segments.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(UrlProblem::PathSegment);
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()+,=:@".contains(&b))
        {
            return Err(UrlProblem::PathCharacter);
        }
    }
    Ok(path.to_owned())
}

/// A URL as error messages may show it: everything up to the last `@` (userinfo, whatever
/// delimiters a password holds) replaced, query and fragment cut, controls replaced, length
/// capped.
fn shown_url(raw: &str) -> String {
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (&raw[..scheme.len() + 3], rest),
        None => ("", raw),
    };
    let mut out = String::from(scheme);
    let rest = match rest.rfind('@') {
        Some(at) => {
            out.push_str("…@");
            &rest[at + 1..]
        }
        None => rest,
    };
    let cut = rest.find(['?', '#']);
    let rest = cut.map_or(rest, |i| &rest[..i]);
    out.extend(rest.chars().map(|c| {
        if c.is_control() || c.is_whitespace() {
            '\u{FFFD}'
        } else {
            c
        }
    }));
    if cut.is_some() {
        out.push('…');
    }
    if out.chars().count() > MAX_SHOWN_LEN {
        out = out.chars().take(MAX_SHOWN_LEN).collect();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_leave_out_only_the_default_port() {
        let cases = [
            (UpstreamScheme::Http, "10.0.0.7:80", "10.0.0.7"),
            (UpstreamScheme::Http, "10.0.0.7:8080", "10.0.0.7:8080"),
            (UpstreamScheme::Https, "10.0.0.7:80", "10.0.0.7:80"),
            (UpstreamScheme::Https, "0.0.0.0:443", "0.0.0.0"),
            (
                UpstreamScheme::Http,
                "255.255.255.255:65535",
                "255.255.255.255:65535",
            ),
            (UpstreamScheme::Http, "1.20.100.9:0", "1.20.100.9:0"),
            (UpstreamScheme::Http, "[fd00::1]:80", "[fd00::1]"),
            (UpstreamScheme::Http, "[fd00::1]:81", "[fd00::1]:81"),
        ];
        for (scheme, addr, want) in cases {
            let up = Upstream::new(scheme, Target::Addr(sa(addr)), 1, String::new());
            assert_eq!(up.authority().map(Authority::as_str), Some(want), "{addr}");
            assert_eq!(
                up.host_header().map(HeaderValue::as_bytes),
                Some(want.as_bytes())
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn ipv4_authorities_are_the_socket_address(ip: [u8; 4], port: u16) {
            let addr = SocketAddr::from((ip, port));
            let up = Upstream::new(UpstreamScheme::Https, Target::Addr(addr), 1, String::new());
            let want = if port == 443 { Ipv4Addr::from(ip).to_string() } else { addr.to_string() };
            proptest::prop_assert_eq!(up.authority().map(Authority::as_str), Some(want.as_str()));
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn prod() -> AddressPolicy {
        AddressPolicy {
            own_listeners: vec![sa("0.0.0.0:8443"), sa("[::]:8080"), sa("10.0.0.9:9090")],
            local_ips: vec!["10.0.0.7".parse().unwrap()],
            api_servers: vec![sa("10.96.0.1:443"), sa("172.18.0.2:6443")],
            api_server_hosts: vec!["API.Cluster.Example.".into()],
            ..AddressPolicy::default()
        }
    }

    /// `portcullis dev`: loopback allowed, everything of ours on loopback.
    fn dev() -> AddressPolicy {
        AddressPolicy {
            allow_loopback: true,
            own_listeners: vec![sa("127.0.0.1:8443"), sa("127.0.0.1:8080"), sa("[::]:2222")],
            api_servers: vec![sa("127.0.0.1:6443")],
            ..AddressPolicy::default()
        }
    }

    #[track_caller]
    fn url_err(policy: &AddressPolicy, url: &str, want: UrlProblem) {
        match parse_url_upstream(url, 1, policy) {
            Err(e) => assert_eq!(e.problem, want, "{url}"),
            Ok(u) => panic!("{url} accepted as {u:?}"),
        }
    }

    #[track_caller]
    fn forbidden(policy: &AddressPolicy, url: &str, want: Forbidden) {
        url_err(policy, url, UrlProblem::Forbidden(want));
    }

    #[track_caller]
    fn url_ok(policy: &AddressPolicy, url: &str) -> Upstream {
        match parse_url_upstream(url, 1, policy) {
            Ok(u) => u,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn every_forbidden_ipv4_class() {
        let p = prod();
        let cases = [
            ("169.254.169.254:80", Forbidden::LinkLocal),
            ("169.254.0.1:8080", Forbidden::LinkLocal),
            ("127.0.0.1:9000", Forbidden::Loopback),
            ("127.255.1.2:9000", Forbidden::Loopback),
            ("0.0.0.0:80", Forbidden::Unspecified),
            ("0.1.2.3:80", Forbidden::Unspecified),
            ("224.0.0.1:80", Forbidden::Multicast),
            ("239.255.255.250:1900", Forbidden::Multicast),
            ("255.255.255.255:80", Forbidden::Broadcast),
            ("100.100.100.200:80", Forbidden::MetadataAddress),
            ("168.63.129.16:80", Forbidden::MetadataAddress),
        ];
        for (addr, want) in cases {
            assert_eq!(p.check_addr(sa(addr)), Err(want), "{addr}");
        }
        for addr in [
            "10.0.0.5:8080",
            "169.253.255.255:80",
            "100.100.100.201:80",
            "8.8.8.8:53",
        ] {
            assert_eq!(p.check_addr(sa(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn every_forbidden_ipv6_class_and_embedded_ipv4() {
        let p = prod();
        let cases = [
            ("[fe80::1]:80", Forbidden::LinkLocal),
            ("[febf:ffff::1]:80", Forbidden::LinkLocal),
            ("[::1]:80", Forbidden::Loopback),
            ("[::]:80", Forbidden::Unspecified),
            ("[ff02::1]:80", Forbidden::Multicast),
            ("[fd00:ec2::254]:80", Forbidden::MetadataAddress),
            ("[::ffff:169.254.169.254]:80", Forbidden::LinkLocal),
            ("[::ffff:127.0.0.1]:80", Forbidden::Loopback),
            ("[::ffff:0.0.0.0]:80", Forbidden::Unspecified),
            ("[::ffff:255.255.255.255]:80", Forbidden::Broadcast),
            ("[::169.254.169.254]:80", Forbidden::LinkLocal),
            ("[::127.0.0.1]:80", Forbidden::Loopback),
            ("[64:ff9b::169.254.169.254]:80", Forbidden::LinkLocal),
            ("[64:ff9b::7f00:1]:80", Forbidden::Loopback),
            ("[64:ff9b::e000:1]:80", Forbidden::Multicast),
            ("[2002:a9fe:a9fe::]:80", Forbidden::LinkLocal),
        ];
        for (addr, want) in cases {
            assert_eq!(p.check_addr(sa(addr)), Err(want), "{addr}");
        }
        for addr in [
            "[2001:db8::1]:80",
            "[fec0::1]:80",
            "[::ffff:10.0.0.5]:80",
            "[64:ff9b::a00:5]:80",
            "[64:ff9b:1::a9fe:a9fe]:80",
        ] {
            assert_eq!(p.check_addr(sa(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn api_server_and_own_listeners() {
        let p = prod();
        assert_eq!(p.check_addr(sa("10.96.0.1:443")), Err(Forbidden::ApiServer));
        assert_eq!(
            p.check_addr(sa("[::ffff:10.96.0.1]:443")),
            Err(Forbidden::ApiServer)
        );
        assert_eq!(
            p.check_addr(sa("172.18.0.2:6443")),
            Err(Forbidden::ApiServer)
        );
        assert_eq!(p.check_addr(sa("10.96.0.1:80")), Ok(()));
        // 0.0.0.0:8443: that port on loopback, unspecified and our own addresses.
        assert_eq!(
            p.check_addr(sa("10.0.0.7:8443")),
            Err(Forbidden::OwnListener)
        );
        assert_eq!(
            p.check_addr(sa("127.0.0.1:8443")),
            Err(Forbidden::OwnListener)
        );
        assert_eq!(
            p.check_addr(sa("0.0.0.0:8443")),
            Err(Forbidden::OwnListener)
        );
        assert_eq!(
            p.check_addr(sa("[::ffff:10.0.0.7]:8443")),
            Err(Forbidden::OwnListener)
        );
        assert_eq!(p.check_addr(sa("10.0.0.8:8443")), Ok(()));
        // [::]:8080 covers IPv4 too (dual-stack sockets).
        assert_eq!(
            p.check_addr(sa("10.0.0.7:8080")),
            Err(Forbidden::OwnListener)
        );
        assert_eq!(p.check_addr(sa("[::1]:8080")), Err(Forbidden::OwnListener));
        // A listener on one address is that address only.
        assert_eq!(
            p.check_addr(sa("10.0.0.9:9090")),
            Err(Forbidden::OwnListener)
        );
        assert_eq!(p.check_addr(sa("10.0.0.7:9090")), Ok(()));
    }

    #[test]
    fn dev_allows_loopback_but_not_ours() {
        let d = dev();
        let u = url_ok(&d, "http://127.0.0.1:9000");
        assert_eq!(u.target, Target::Addr(sa("127.0.0.1:9000")));
        url_ok(&d, "http://[::1]:9000/");
        url_ok(&d, "http://localhost:9000");
        forbidden(&d, "http://127.0.0.1:8443", Forbidden::OwnListener);
        forbidden(&d, "https://127.0.0.1:8443/", Forbidden::OwnListener);
        forbidden(&d, "http://127.0.0.1:6443", Forbidden::ApiServer);
        forbidden(&d, "http://localhost:8080", Forbidden::OwnListener);
        forbidden(&d, "http://app.localhost:6443", Forbidden::ApiServer);
        forbidden(&d, "ssh://127.0.0.1:2222", Forbidden::OwnListener);
        forbidden(&d, "ssh://[::1]:2222", Forbidden::OwnListener);
        forbidden(&d, "http://169.254.169.254", Forbidden::LinkLocal);
        forbidden(&d, "http://0.0.0.0:9000", Forbidden::Unspecified);
        // Without the setting loopback is refused.
        let p = prod();
        forbidden(&p, "http://127.0.0.1:9000", Forbidden::Loopback);
        forbidden(&p, "http://[::1]:9000", Forbidden::Loopback);
        forbidden(&p, "http://localhost:9000", Forbidden::Loopback);
        forbidden(&p, "http://LocalHost.:9000", Forbidden::Loopback);
        forbidden(&p, "http://a.b.localhost/", Forbidden::Loopback);
        forbidden(&p, "http://ＬＯＣＡＬＨＯＳＴ/", Forbidden::Loopback);
        url_ok(&p, "http://localhost.example:9000");
    }

    #[test]
    fn odd_ipv4_spellings_are_the_address_they_mean() {
        let p = prod();
        forbidden(&p, "http://2130706433/", Forbidden::Loopback);
        forbidden(&p, "http://0x7f.1/", Forbidden::Loopback);
        forbidden(&p, "http://0177.0.0.1/", Forbidden::Loopback);
        forbidden(&p, "http://127.1/", Forbidden::Loopback);
        forbidden(&p, "http://0/", Forbidden::Unspecified);
        forbidden(&p, "http://0xa9fea9fe/", Forbidden::LinkLocal);
        forbidden(&p, "http://2852039166/", Forbidden::LinkLocal);
        forbidden(&p, "http://0251.0376.0251.0376/", Forbidden::LinkLocal);
        forbidden(&p, "http://169.254.169.254./", Forbidden::LinkLocal);
        forbidden(&p, "ssh://2130706433", Forbidden::Loopback);
        forbidden(&p, "http://[::ffff:169.254.169.254]/", Forbidden::LinkLocal);
        forbidden(&p, "http://[::ffff:a9fe:a9fe]/", Forbidden::LinkLocal);
        forbidden(&p, "http://[64:ff9b::a9fe:a9fe]/", Forbidden::LinkLocal);
        forbidden(&p, "http://[0:0::1]/", Forbidden::Loopback);
        forbidden(&p, "http://[FE80::1]/", Forbidden::LinkLocal);
        forbidden(&p, "https://0xa.0x60.0.1/", Forbidden::ApiServer);
        let u = url_ok(&p, "http://0x0a.0.0.5:8080");
        assert_eq!(u.target, Target::Addr(sa("10.0.0.5:8080")));
    }

    #[test]
    fn names_are_checked_before_resolution() {
        let p = prod();
        for host in [
            "metadata.google.internal",
            "Metadata.Google.Internal.",
            "metadata",
            "metadata.goog",
            "instance-data",
            "instance-data.ec2.internal",
        ] {
            assert_eq!(
                p.check_name(host, 80),
                Err(Forbidden::MetadataHost),
                "{host}"
            );
        }
        for host in [
            "kubernetes",
            "kubernetes.default",
            "KUBERNETES.default.svc",
            "kubernetes.default.svc.",
            "kubernetes.default.svc.cluster.local",
            "kubernetes.default.svc.corp.example",
            "api.cluster.example",
        ] {
            assert_eq!(p.check_name(host, 443), Err(Forbidden::ApiServer), "{host}");
        }
        assert_eq!(p.check_name("localhost", 80), Err(Forbidden::Loopback));
        assert_eq!(p.check_name("2130706433", 80), Err(Forbidden::Loopback));
        assert_eq!(
            p.check_name("169.254.169.254", 80),
            Err(Forbidden::LinkLocal)
        );
        assert_eq!(p.check_name("[fe80::1]", 80), Err(Forbidden::LinkLocal));
        assert_eq!(
            p.check_name("a.example:80", 80),
            Err(Forbidden::InvalidName(HostError::UnexpectedPort))
        );
        assert_eq!(
            p.check_name("", 80),
            Err(Forbidden::InvalidName(HostError::Empty))
        );
        assert_eq!(
            p.check_name("a\r\nb", 80),
            Err(Forbidden::InvalidName(HostError::InvalidCharacter))
        );
        assert_eq!(p.check_name("kubernetes.example", 443), Ok(()));
        assert_eq!(p.check_name("metadata.example", 80), Ok(()));
        assert_eq!(
            p.checked_target("DB.Example.", 5432),
            Ok(Target::Name {
                host: "db.example".into(),
                port: 5432
            })
        );
        assert_eq!(
            p.checked_target("0x0a.0.0.5", 5432),
            Ok(Target::Addr(sa("10.0.0.5:5432")))
        );
    }

    #[test]
    fn url_parts_become_an_upstream() {
        let p = prod();
        let u = url_ok(&p, "http://10.0.0.5:8080");
        assert_eq!(
            u,
            Upstream::new(
                UpstreamScheme::Http,
                Target::Addr(sa("10.0.0.5:8080")),
                1,
                String::new(),
            )
        );
        let u = parse_url_upstream("HTTPS://API.Internal.Example/v1/base/", 7, &p).unwrap();
        assert_eq!(u.scheme, UpstreamScheme::Https);
        assert_eq!(
            u.target,
            Target::Name {
                host: "api.internal.example".into(),
                port: 443
            }
        );
        assert_eq!(u.weight, 7);
        assert_eq!(u.base_path, "/v1/base");
        let u = url_ok(&p, "ssh://bastion.example");
        assert_eq!(u.scheme, UpstreamScheme::Ssh);
        assert_eq!(
            u.target,
            Target::Name {
                host: "bastion.example".into(),
                port: 22
            }
        );
        assert_eq!(url_ok(&p, "http://svc/").base_path, "");
        assert_eq!(url_ok(&p, "http://svc").target.to_string(), "svc:80");
        assert_eq!(
            url_ok(&p, "http://[2001:db8::1]").target.to_string(),
            "[2001:db8::1]:80"
        );
        assert_eq!(url_ok(&p, "http://svc/a:b@c/~x").base_path, "/a:b@c/~x");
        assert_eq!(url_ok(&p, "http://svc/...").base_path, "/...");
        url_ok(&p, "ssh://bastion.example/");
    }

    #[test]
    fn base_paths_are_canonical() {
        let p = prod();
        for url in [
            "http://svc/a",
            "http://svc/a-b_c~d/e.f/!$&'()+,=:@",
            "http://svc/.well-known/x",
        ] {
            let base = url_ok(&p, url).base_path;
            assert!(crate::routing::path::is_canonical_path(&base), "{base}");
        }
    }

    #[test]
    fn malformed_urls_are_refused() {
        let p = prod();
        url_err(&p, "10.0.0.5:8080", UrlProblem::NotAbsolute);
        url_err(&p, "ftp://svc/", UrlProblem::UnsupportedScheme);
        url_err(&p, "file:///etc/passwd", UrlProblem::UnsupportedScheme);
        url_err(&p, "javascript://svc/", UrlProblem::UnsupportedScheme);
        url_err(&p, "http://svc/?a=b", UrlProblem::Query);
        url_err(&p, "http://svc?a=b", UrlProblem::Query);
        url_err(&p, "http://svc/#x", UrlProblem::Fragment);
        url_err(&p, "http://svc\\evil.example", UrlProblem::PathCharacter);
        url_err(&p, "http://svc/\\", UrlProblem::PathCharacter);
        url_err(&p, "http://svc/a/../b", UrlProblem::PathSegment);
        url_err(&p, "http://svc/a/./b", UrlProblem::PathSegment);
        url_err(&p, "http://svc/..", UrlProblem::PathSegment);
        url_err(&p, "http://svc//a", UrlProblem::PathSegment);
        url_err(&p, "http://svc/a//", UrlProblem::PathSegment);
        url_err(&p, "http://svc/a%2Fb", UrlProblem::PathCharacter);
        url_err(&p, "http://svc/%2e%2e/x", UrlProblem::PathCharacter);
        url_err(&p, "http://svc/a;b", UrlProblem::PathCharacter);
        url_err(&p, "http://svc/ä", UrlProblem::PathCharacter);
        url_err(&p, "ssh://bastion/x", UrlProblem::SshPath);
        url_err(&p, "http://svc /", UrlProblem::InvalidCharacter);
        url_err(&p, "http://svc/\r\nX: y", UrlProblem::InvalidCharacter);
        url_err(&p, "http:///x", UrlProblem::InvalidHost(HostError::Empty));
        url_err(
            &p,
            "http://svc:0/",
            UrlProblem::InvalidHost(HostError::BadPort),
        );
        url_err(
            &p,
            "http://svc:99999/",
            UrlProblem::InvalidHost(HostError::BadPort),
        );
        url_err(
            &p,
            "http://sv%63/",
            UrlProblem::InvalidHost(HostError::InvalidCharacter),
        );
        url_err(
            &p,
            "http://[fe80::1%25eth0]/",
            UrlProblem::InvalidHost(HostError::InvalidIpv6),
        );
        url_err(
            &p,
            "http://1.2.3.4.5/",
            UrlProblem::InvalidHost(HostError::InvalidName),
        );
        url_err(
            &p,
            &format!("http://svc/{}", "a".repeat(MAX_URL_LEN)),
            UrlProblem::TooLong,
        );
    }

    #[test]
    fn userinfo_is_refused_without_echoing_it() {
        let p = prod();
        for url in [
            "http://alice:s3cretPW@svc:8080/",
            "http://s3cretPW@svc/",
            "https://alice:s3cretPW@169.254.169.254/",
            "http://alice:s3c#retPW@svc/",
            "http://alice:s3c?retPW@svc/",
            "http://alice:s3c/retPW@svc/",
            "http://alice:s3c@retPW@svc/",
            "alice:s3cretPW@svc",
        ] {
            let e = parse_url_upstream(url, 1, &p).unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(
                !text.contains("s3c") && !text.contains("retPW"),
                "{url}: {text}"
            );
            assert!(!text.contains("alice"), "{url}: {text}");
        }
        let e = parse_url_upstream("http://alice:s3cretPW@svc:8080/x", 1, &p).unwrap_err();
        assert_eq!(e.problem, UrlProblem::UserInfo);
        assert_eq!(
            e.to_string(),
            "url backend http://…@svc:8080/x is refused: \
             a user name or password in an upstream URL is not allowed"
        );
    }

    #[test]
    fn messages_read_well_and_hide_queries() {
        let p = prod();
        let e = parse_url_upstream("http://169.254.169.254/", 1, &p).unwrap_err();
        assert!(std::error::Error::source(&e).is_none());
        assert!(e.is_forbidden());
        assert_eq!(
            e.to_string(),
            "url backend http://169.254.169.254/ is refused: link-local address (cloud metadata \
             and similar services) is not allowed as an upstream"
        );
        let e = parse_url_upstream("http://svc/?token=abc123", 1, &p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "url backend http://svc/… is refused: a query in an upstream URL is not allowed"
        );
        assert!(!e.is_forbidden());
        let e = parse_url_upstream("http://svc/\nx", 1, &p).unwrap_err();
        assert_eq!(e.url, "http://svc/\u{FFFD}x");
        let e = parse_url_upstream(&format!("gopher://{}", "a".repeat(3000)), 1, &p).unwrap_err();
        assert_eq!(e.problem, UrlProblem::TooLong);
        assert_eq!(e.url.chars().count(), MAX_SHOWN_LEN + 1);
    }

    #[test]
    fn target_order_is_total_and_stable() {
        let mut targets = [
            Target::Name {
                host: "b".into(),
                port: 80,
            },
            Target::Addr(sa("[::1]:80")),
            Target::Addr(sa("10.0.0.2:80")),
            Target::Addr(sa("10.0.0.1:81")),
            Target::Addr(sa("10.0.0.1:80")),
        ];
        targets.sort();
        let shown: Vec<String> = targets.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "10.0.0.1:80",
                "10.0.0.1:81",
                "10.0.0.2:80",
                "[::1]:80",
                "b:80"
            ]
        );
    }
}
