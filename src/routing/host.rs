//! The canonical host: what a `Host` header or `:authority` names, in the one form route hosts,
//! reserved hosts, SNI and redirects are compared in. Called by the table ([`super::RouteTable`])
//! for every lookup and by the controller for route hosts.
//!
//! * lower-case; one trailing dot removed (`Example.COM.` → `example.com`);
//! * internationalized names become A-labels (punycode) through the WHATWG URL host parser of the
//!   `url` crate (UTS #46 mapping, as browsers do), so `bücher.example` and
//!   `xn--bcher-kva.example` are one host; SNI carries A-labels too (RFC 6066);
//! * IPv4 in dotted decimal (the WHATWG parser also reads `0x7f.1` as `127.0.0.1`), IPv6 in
//!   brackets, compressed (`[0:0::1]` → `[::1]`);
//! * the scheme's default port is stripped (80 for http, 443 for https); any other port stays as
//!   `host:port`;
//! * refused ([`HostError`]): empty, too long, whitespace and controls, userinfo (`@`),
//!   percent-encoding (the URL parser would decode it: host confusion), bare IPv6, bad ports,
//!   empty labels, and anything but `a-z 0-9 - _` in a name once mapped (no `*`, no quotes).

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest raw authority looked at: a 253-byte name, brackets, `:` and a port, with room for a
/// Unicode name that maps to a shorter one. Bounds the IDNA work a hostile header can cause.
const MAX_RAW_LEN: usize = 1024;
/// Longest DNS name (RFC 1035 §2.3.4, without the trailing dot).
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// The scheme a request arrived with, which decides the default port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP, default port 80.
    Http,
    /// HTTP over TLS, default port 443.
    Https,
}

impl Scheme {
    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// Why a host has no canonical form. At the proxy each is a `400 Bad Request`; in a route it is
/// an `InvalidHost` refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum HostError {
    /// Nothing, or only a port / trailing dot.
    #[error("empty host")]
    Empty,
    /// Longer than any DNS name can be.
    #[error("host is too long")]
    TooLong,
    /// `user@host`: userinfo is never part of a Host header.
    #[error("userinfo in host")]
    UserInfo,
    /// A character no host may hold (whitespace, control, `%`, `/`, `\`, `*`, ...).
    #[error("invalid character in host")]
    InvalidCharacter,
    /// Port not 1 to 65535 in decimal digits, or a `:` with no port.
    #[error("invalid port")]
    BadPort,
    /// A bracketed literal that is not IPv6, or IPv6 without brackets.
    #[error("invalid IPv6 address")]
    InvalidIpv6,
    /// Refused by the IDNA / WHATWG host parser (bad punycode, bad IPv4, ...).
    #[error("invalid host name")]
    InvalidName,
    /// `a..b`, or a label longer than 63 bytes.
    #[error("invalid label in host name")]
    BadLabel,
    /// A port in a route host or wildcard: route hosts are names (every listener serves them).
    #[error("a route host has no port")]
    UnexpectedPort,
    /// A wildcard whose suffix is an IP address.
    #[error("a wildcard suffix must be a DNS name")]
    WildcardIp,
}

/// Canonical host for a request on `scheme`: `name` or `name:port` when the port is not the
/// scheme's default. See the module documentation.
pub fn canonical_host(raw: &str, scheme: Scheme) -> Result<String, HostError> {
    let (mut name, port) = split_authority(raw)?;
    if let Some(port) = port.filter(|&p| p != scheme.default_port()) {
        name.push(':');
        name.push_str(&port.to_string());
    }
    Ok(name)
}

/// The canonical name of an authority with its port dropped, as routing compares hosts (route
/// hosts carry no port, whatever port the listener has). Same rules as [`canonical_host`].
pub fn canonical_host_name(raw: &str) -> Result<String, HostError> {
    host_name(raw).map(Cow::into_owned)
}

/// [`canonical_host_name`], borrowing when `raw` is already canonical: the lookup path of
/// [`super::RouteTable::find`], where most hosts are plain lower-case ASCII names.
pub(crate) fn host_name(raw: &str) -> Result<Cow<'_, str>, HostError> {
    match fast_name(raw) {
        Some(name) => Ok(Cow::Borrowed(name)),
        None => split_authority(raw).map(|(name, _)| Cow::Owned(name)),
    }
}

/// The name part of `raw` when the WHATWG parser would return it unchanged: lower-case
/// `a-z 0-9 - _` labels of sane length, no trailing dot, no A-label (`xn--`, which needs
/// validation) and a last label that is not a number (which would make it IPv4), with a valid
/// port or none. `None` means "take the full parser", never "invalid".
fn fast_name(raw: &str) -> Option<&str> {
    let (name, port) = match raw.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (raw, None),
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN || port.is_some_and(|p| parse_port(p).is_err())
    {
        return None;
    }
    let mut last = "";
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with("xn--")
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return None;
        }
        last = label;
    }
    let hex = last.strip_prefix("0x").unwrap_or(last);
    let number = last.bytes().all(|b| b.is_ascii_digit())
        || (last.starts_with("0x") && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    (!number).then_some(name)
}

/// Whether `name` is a canonical host name without a port, as [`canonical_host_name`] would
/// return it unchanged; `false` means "not known to be", never "invalid".
pub(crate) fn is_plain_canonical_name(name: &str) -> bool {
    !name.contains(':') && fast_name(name) == Some(name)
}

/// Split `raw` into its canonical name and its port, if any.
pub fn split_authority(raw: &str) -> Result<(String, Option<u16>), HostError> {
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    if raw.len() > MAX_RAW_LEN {
        return Err(HostError::TooLong);
    }
    if raw.contains('@') {
        return Err(HostError::UserInfo);
    }
    let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(HostError::InvalidIpv6)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(HostError::InvalidIpv6)?),
        };
        (ipv6(literal)?, port)
    } else {
        let (host, port) = match raw.split_once(':') {
            Some((_, port)) if port.contains(':') => return Err(HostError::InvalidIpv6),
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        };
        (domain_or_ipv4(host)?, port)
    };
    let port = port.map(parse_port).transpose()?;
    Ok((name, port))
}

fn parse_port(s: &str) -> Result<u16, HostError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::BadPort);
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostError::BadPort),
        Ok(p) => Ok(p),
    }
}

fn ipv6(literal: &str) -> Result<String, HostError> {
    // The URL parser would accept a zone id only in its own syntax; IPv6 literals in a Host
    // header are plain (RFC 3986 IP-literal without IPvFuture).
    if literal.is_empty()
        || !literal
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return Err(HostError::InvalidIpv6);
    }
    match url::Host::parse(&format!("[{literal}]")) {
        Ok(host @ url::Host::Ipv6(_)) => Ok(host.to_string()),
        _ => Err(HostError::InvalidIpv6),
    }
}

fn domain_or_ipv4(host: &str) -> Result<String, HostError> {
    // Most names (every Route's `from`, compiled again on each compile from nothing) are
    // canonical already: the parser would return them unchanged.
    if fast_name(host) == Some(host) {
        return Ok(host.to_owned());
    }
    parsed_domain_or_ipv4(host)
}

/// [`domain_or_ipv4`] through the WHATWG host parser.
fn parsed_domain_or_ipv4(host: &str) -> Result<String, HostError> {
    let host = match host.strip_suffix('.') {
        Some(h) if !h.is_empty() => h,
        _ if host.is_empty() || host == "." => return Err(HostError::Empty),
        _ => host,
    };
    if host.ends_with('.') || host.starts_with('.') || host.contains("..") {
        return Err(HostError::BadLabel);
    }
    // Refuse before the URL parser sees them: it percent-decodes, and maps some of these away.
    if host.bytes().any(|b| {
        b.is_ascii_control()
            || b.is_ascii_whitespace()
            || matches!(b, b'%' | b'/' | b'\\' | b'?' | b'#' | b'[' | b']' | b'*')
    }) {
        return Err(HostError::InvalidCharacter);
    }
    let parsed = url::Host::parse(host).map_err(|_| HostError::InvalidName)?;
    let name = match parsed {
        url::Host::Domain(d) => d,
        url::Host::Ipv4(ip) => return Ok(ip.to_string()),
        url::Host::Ipv6(_) => return Err(HostError::InvalidIpv6),
    };
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(HostError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(HostError::BadLabel);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(HostError::InvalidCharacter);
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ok(raw: &str, scheme: Scheme, want: &str) {
        assert_eq!(canonical_host(raw, scheme).as_deref(), Ok(want), "{raw}");
        assert_eq!(canonical_host(want, scheme).as_deref(), Ok(want), "{want}");
    }

    #[track_caller]
    fn err(raw: &str, want: HostError) {
        assert_eq!(canonical_host(raw, Scheme::Https), Err(want), "{raw:?}");
    }

    #[test]
    fn case_dot_and_ports() {
        ok("Example.COM", Scheme::Https, "example.com");
        ok("example.com.", Scheme::Https, "example.com");
        ok("example.com.:443", Scheme::Https, "example.com");
        ok("example.com:443", Scheme::Https, "example.com");
        ok("example.com:80", Scheme::Http, "example.com");
        ok("example.com:80", Scheme::Https, "example.com:80");
        ok("example.com:443", Scheme::Http, "example.com:443");
        ok("example.com:8443", Scheme::Https, "example.com:8443");
        ok("example.com:08443", Scheme::Https, "example.com:8443");
        ok("localhost:8080", Scheme::Http, "localhost:8080");
        ok("under_score.example", Scheme::Https, "under_score.example");
        assert_eq!(
            split_authority("a.example:8443"),
            Ok(("a.example".to_owned(), Some(8443)))
        );
        assert_eq!(
            canonical_host_name("A.example:8443"),
            Ok("a.example".into())
        );
    }

    #[test]
    fn ip_literals() {
        ok("127.0.0.1", Scheme::Http, "127.0.0.1");
        ok("127.0.0.1:80", Scheme::Http, "127.0.0.1");
        ok("0x7f.1", Scheme::Http, "127.0.0.1");
        ok("[::1]", Scheme::Https, "[::1]");
        ok("[0:0::1]:443", Scheme::Https, "[::1]");
        ok("[::1]:8443", Scheme::Https, "[::1]:8443");
        ok("[2001:DB8::1]", Scheme::Https, "[2001:db8::1]");
        ok("[::ffff:1.2.3.4]", Scheme::Https, "[::ffff:102:304]");
        err("::1", HostError::InvalidIpv6);
        err("[::1", HostError::InvalidIpv6);
        err("[::1]x", HostError::InvalidIpv6);
        err("[fe80::1%25eth0]", HostError::InvalidIpv6);
        err("[example.com]", HostError::InvalidIpv6);
        err("[]", HostError::InvalidIpv6);
        err("256.0.0.1", HostError::InvalidName);
        err("example.1", HostError::InvalidName);
    }

    #[test]
    fn idn_becomes_punycode() {
        ok("bücher.example", Scheme::Https, "xn--bcher-kva.example");
        ok("BÜCHER.example", Scheme::Https, "xn--bcher-kva.example");
        ok(
            "xn--bcher-kva.example",
            Scheme::Https,
            "xn--bcher-kva.example",
        );
        ok("ｅｘａｍｐｌｅ.com", Scheme::Https, "example.com");
        err("xn--zz--.example", HostError::InvalidName);
    }

    #[test]
    fn garbage_is_refused() {
        err("", HostError::Empty);
        err(".", HostError::Empty);
        err(":443", HostError::Empty);
        err("example .com", HostError::InvalidCharacter);
        err(" example.com", HostError::InvalidCharacter);
        err("example.com\r\nx", HostError::InvalidCharacter);
        err("example.com\0", HostError::InvalidCharacter);
        err("user@example.com", HostError::UserInfo);
        err("localhost@evil.example", HostError::UserInfo);
        err("user:pw@example.com", HostError::UserInfo);
        err("ex%61mple.com", HostError::InvalidCharacter);
        err("example.com/path", HostError::InvalidCharacter);
        err("example.com\\x", HostError::InvalidCharacter);
        err("evil.example#@localhost", HostError::UserInfo);
        err("evil.example#x", HostError::InvalidCharacter);
        err("*.example.com", HostError::InvalidCharacter);
        err("a\"b.example", HostError::InvalidCharacter);
        err("example.com:", HostError::BadPort);
        err("example.com:0", HostError::BadPort);
        err("example.com:65536", HostError::BadPort);
        err("example.com:+80", HostError::BadPort);
        err("example.com:80a", HostError::BadPort);
        err("example.com:123456", HostError::BadPort);
        err("example.com..", HostError::BadLabel);
        err("a..example.com", HostError::BadLabel);
        err(".example.com", HostError::BadLabel);
        err(&format!("{}.example", "a".repeat(64)), HostError::BadLabel);
        err(&format!("{}example", "a.".repeat(130)), HostError::TooLong);
        err(&"a".repeat(2000), HostError::TooLong);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn fast_path_agrees_with_the_parser(
                raw in "[a-z0-9_.x-]{1,12}(\\.[a-z0-9x-]{0,6}){0,3}(:[0-9]{0,6})?",
            ) {
                if let Some(name) = fast_name(&raw) {
                    prop_assert_eq!(split_authority(&raw).map(|(n, _)| n), Ok(name.to_owned()));
                    prop_assert_eq!(parsed_domain_or_ipv4(name), Ok(name.to_owned()));
                }
            }

            #[test]
            fn canonical_host_is_total_and_idempotent(
                raw in prop_oneof![
                    any::<String>(),
                    "[a-zA-Z0-9.:\\[\\]@%_-]{0,24}",
                    "\\PC{0,12}(\\.[a-z]{1,4})?(:[0-9]{1,6})?",
                ],
                https in any::<bool>(),
            ) {
                let scheme = if https { Scheme::Https } else { Scheme::Http };
                if let Ok(c) = canonical_host(&raw, scheme) {
                    prop_assert_eq!(canonical_host(&c, scheme), Ok(c.clone()));
                    prop_assert!(c.is_ascii() && !c.contains(char::is_uppercase));
                    let name = canonical_host_name(&raw).unwrap();
                    prop_assert!(c.starts_with(&name));
                    prop_assert_eq!(canonical_host_name(&name), Ok(name.clone()));
                }
            }
        }
    }
}
