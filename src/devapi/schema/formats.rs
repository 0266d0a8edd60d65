//! The string formats a CRD schema may use and their checks, ported from kube-openapi's
//! `strfmt` registry (which follows go-openapi and a fork of govalidator). Names are compared
//! after removing dashes (`date-time` is `datetime`), as go-openapi does; formats the apiserver
//! does not support are ignored by the caller.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use regex::Regex;

/// Formats validated for CRDs at compatibility version 1.35, normalized (dashes removed).
const SUPPORTED: [&str; 27] = [
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "quantity",
    "k8sshortname",
    "k8slongname",
];

/// go-openapi's format name normalization.
pub(super) fn normalize(format: &str) -> String {
    format.replace('-', "")
}

pub(super) fn is_supported(normalized: &str) -> bool {
    SUPPORTED.contains(&normalized)
}

/// Whether `s` is valid for the (normalized, supported) format.
pub(super) fn check(normalized: &str, s: &str) -> bool {
    match normalized {
        "bsonobjectid" => s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => is_request_uri(s),
        "email" => is_email(s),
        "hostname" => is_hostname(s),
        "ipv4" => parse_ip_sloppy(s).is_some() && s.contains('.'),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok() && s.contains(':'),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "uuid" => is_uuid(s, None),
        "uuid3" => is_uuid(s, Some(b'3')),
        "uuid4" => is_uuid(s, Some(b'4')),
        "uuid5" => is_uuid(s, Some(b'5')),
        "isbn" => is_isbn10(s) || is_isbn13(s),
        "isbn10" => is_isbn10(s),
        "isbn13" => is_isbn13(s),
        "creditcard" => is_credit_card(s),
        "ssn" => is_ssn(s),
        "hexcolor" => is_hex_color(s),
        "rgbcolor" => is_rgb_color(s),
        "byte" => is_base64(s),
        "date" => is_date(s),
        "duration" => is_duration(s),
        "datetime" => is_date_time(s),
        "quantity" => is_quantity(s),
        "k8sshortname" => crate::devapi::validation::is_dns1123_label(s),
        "k8slongname" => s.len() <= 253 && crate::devapi::validation::is_dns1123_subdomain_shape(s),
        _ => true,
    }
}

fn cached(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

/// `[a-zA-Z0-9\p{S}\p{L}]`, one character of a hostname label.
fn is_host_char(c: char) -> bool {
    static RX: OnceLock<Option<Regex>> = OnceLock::new();
    if c.is_ascii_alphanumeric() {
        return true;
    }
    if c.is_ascii() {
        return false;
    }
    let mut buf = [0u8; 4];
    cached(&RX, r"^[\p{S}\p{L}]$").is_some_and(|r| r.is_match(c.encode_utf8(&mut buf)))
}

/// `[a-zA-Z\p{L}]`, one character of a top-level domain.
fn is_tld_char(c: char) -> bool {
    static RX: OnceLock<Option<Regex>> = OnceLock::new();
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    let mut buf = [0u8; 4];
    cached(&RX, r"^\p{L}$").is_some_and(|r| r.is_match(c.encode_utf8(&mut buf)))
}

/// strfmt `IsHostname`: its regex (single label, or labels plus an alphabetic TLD), then the
/// 255-byte total and 63-byte label limits.
fn is_hostname(s: &str) -> bool {
    let single = {
        let mut chars = s.chars();
        match chars.next() {
            Some(first) if is_host_char(first) => {
                let rest = chars.as_str();
                let rest = rest.strip_prefix('-').unwrap_or(rest);
                rest.chars().count() <= 62 && rest.chars().all(is_host_char)
            }
            _ => false,
        }
    };
    let dotted = {
        let labels: Vec<&str> = s.split('.').collect();
        match labels.split_last() {
            Some((tld, rest)) if !rest.is_empty() => {
                let n = tld.chars().count();
                (2..=63).contains(&n)
                    && tld.chars().all(is_tld_char)
                    && rest.iter().all(|l| {
                        let chars: Vec<char> = l.chars().collect();
                        match chars.as_slice() {
                            [] => false,
                            [c] => is_host_char(*c),
                            [first, middle @ .., last] => {
                                middle.len() <= 61
                                    && is_host_char(*first)
                                    && is_host_char(*last)
                                    && middle.iter().all(|c| *c == '-' || is_host_char(*c))
                            }
                        }
                    })
            }
            _ => false,
        }
    };
    (single || dotted) && s.len() <= 255 && s.split('.').all(|p| p.len() <= 63)
}

/// Go 1.16 `net.ParseIP` as kept by `netutils.ParseIPSloppy`: IPv4 octets may have leading zeros.
fn parse_ip_sloppy(s: &str) -> Option<()> {
    if s.contains(':') {
        return s.parse::<Ipv6Addr>().ok().map(|_| ());
    }
    parse_ipv4_sloppy(s).map(|_| ())
}

fn parse_ipv4_sloppy(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut rest = s;
    for (i, octet) in octets.iter_mut().enumerate() {
        if i > 0 {
            rest = rest.strip_prefix('.')?;
        }
        let (n, used) = dtoi(rest)?;
        *octet = u8::try_from(n).ok()?;
        rest = &rest[used..];
    }
    rest.is_empty().then(|| Ipv4Addr::from(octets))
}

/// Go's `dtoi`: leading decimal digits, value below 0xFFFFFF.
fn dtoi(s: &str) -> Option<(u32, usize)> {
    let mut n: u32 = 0;
    let mut used = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            break;
        }
        n = n * 10 + u32::from(b - b'0');
        used += 1;
        if n >= 0xFF_FFFF {
            return None;
        }
    }
    (used > 0).then_some((n, used))
}

fn is_cidr(s: &str) -> bool {
    let Some((addr, mask)) = s.split_once('/') else {
        return false;
    };
    let bits = if parse_ipv4_sloppy(addr).is_some() {
        32
    } else if addr.parse::<Ipv6Addr>().is_ok() {
        128
    } else {
        return false;
    };
    matches!(dtoi(mask), Some((n, used)) if used == mask.len() && n <= bits)
}

/// Go `net.ParseMAC`: 6, 8 or 20 octets as `xx:xx`/`xx-xx`, or `xxxx.xxxx` groups.
fn is_mac(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    if s.len() < 14 {
        return false;
    }
    let b = s.as_bytes();
    if b[2] == b':' || b[2] == b'-' {
        let sep = b[2] as char;
        let parts: Vec<&str> = s.split(sep).collect();
        matches!(parts.len(), 6 | 8 | 20) && parts.iter().all(|p| hex(p, 2))
    } else if b[4] == b'.' {
        let parts: Vec<&str> = s.split('.').collect();
        matches!(parts.len(), 3 | 4 | 10) && parts.iter().all(|p| hex(p, 4))
    } else {
        false
    }
}

/// `(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?V[0-9a-f]{3}-?[89ab]?[0-9a-f]{3}-?[0-9a-f]{12}$` family.
fn is_uuid(s: &str, version: Option<u8>) -> bool {
    let mut groups: Vec<&[u8]> = Vec::with_capacity(5);
    let mut rest = s.as_bytes();
    for (i, len) in [8usize, 4, 4, 4, 12].into_iter().enumerate() {
        if i > 0 && rest.first() == Some(&b'-') {
            rest = &rest[1..];
        }
        if rest.len() < len || !rest[..len].iter().all(u8::is_ascii_hexdigit) {
            return false;
        }
        groups.push(&rest[..len]);
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return false;
    }
    match version {
        None => true,
        Some(v) => {
            let variant_ok =
                v == b'3' || matches!(groups[3][0].to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b');
            groups[2][0] == v && variant_ok
        }
    }
}

fn sanitize_isbn(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(|b| !matches!(b, b'-' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'))
        .collect()
}

fn is_isbn10(s: &str) -> bool {
    let d = sanitize_isbn(s);
    if d.len() != 10
        || !d[..9].iter().all(u8::is_ascii_digit)
        || !(d[9].is_ascii_digit() || d[9] == b'X')
    {
        return false;
    }
    let mut sum: u32 = (0..9)
        .map(|i| (i as u32 + 1) * u32::from(d[i] - b'0'))
        .sum();
    sum += 10
        * if d[9] == b'X' {
            10
        } else {
            u32::from(d[9] - b'0')
        };
    sum.is_multiple_of(11)
}

fn is_isbn13(s: &str) -> bool {
    let d = sanitize_isbn(s);
    if d.len() != 13 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = (0..12)
        .map(|i| if i % 2 == 0 { 1 } else { 3 } * u32::from(d[i] - b'0'))
        .sum();
    u32::from(d[12] - b'0') == (10 - sum % 10) % 10
}

fn is_credit_card(s: &str) -> bool {
    static RX: OnceLock<Option<Regex>> = OnceLock::new();
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let shape = cached(
        &RX,
        r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35[0-9]{3})[0-9]{11})$",
    )
    .is_some_and(|r| r.is_match(&digits));
    if !shape {
        return false;
    }
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut n = u32::from(b - b'0');
        if i % 2 == 1 {
            n *= 2;
            if n >= 10 {
                n = n % 10 + 1;
            }
        }
        sum += n;
    }
    sum.is_multiple_of(10)
}

/// govalidator `IsSSN`: exactly 11 bytes matching `^\d{3}[- ]?\d{2}[- ]?\d{4}$`.
fn is_ssn(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11
        && b[..3].iter().all(u8::is_ascii_digit)
        && matches!(b[3], b'-' | b' ')
        && b[4..6].iter().all(u8::is_ascii_digit)
        && matches!(b[6], b'-' | b' ')
        && b[7..].iter().all(u8::is_ascii_digit)
}

fn is_hex_color(s: &str) -> bool {
    let h = s.strip_prefix('#').unwrap_or(s);
    matches!(h.len(), 3 | 6) && h.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_rgb_color(s: &str) -> bool {
    static RX: OnceLock<Option<Regex>> = OnceLock::new();
    const C: &str = r"(0|[1-9][0-9]?|1[0-9][0-9]?|2[0-4][0-9]|25[0-5])";
    const W: &str = r"[\t\n\f\r ]*";
    cached(&RX, &format!(r"^rgb\({W}{C}{W},{W}{C}{W},{W}{C}{W}\)$")).is_some_and(|r| r.is_match(s))
}

/// govalidator `IsBase64`: padded standard alphabet, at least one quantum.
fn is_base64(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(4) {
        return false;
    }
    let alpha = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    let (body, last) = b.split_at(b.len() - 4);
    body.iter().all(alpha)
        && match last {
            [a, b2, b'=', b'='] => alpha(a) && alpha(b2),
            [a, b2, c, b'='] => alpha(a) && alpha(b2) && alpha(c),
            q => q.iter().all(alpha),
        }
}

/// Go `time.Parse("2006-01-02", s)`.
pub(super) fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// strfmt `IsDateTime`: a date, a `t`, then `hh:mm:ss(.frac)?(z|±hh:mm)`, case-insensitive.
fn is_date_time(s: &str) -> bool {
    static RX: OnceLock<Option<Regex>> = OnceLock::new();
    if s.len() < 4 {
        return false;
    }
    let lower = s.to_lowercase();
    let parts: Vec<&str> = lower.split('t').collect();
    if parts.len() < 2 || !is_date(parts[0]) {
        return false;
    }
    // The Go pattern leaves the fraction's dot unescaped; kept as is.
    let Some(rx) = cached(
        &RX,
        r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$",
    ) else {
        return false;
    };
    let Some(c) = rx.captures(parts[1]) else {
        return false;
    };
    let g = |i: usize| c.get(i).map_or("", |m| m.as_str());
    g(1) <= "23" && g(2) <= "59" && g(3) <= "59"
}

/// strfmt `ParseDuration`: Go `time.ParseDuration`, else any `<int> <unit>` pairs with units
/// like `ns`, `ms`, `sec`, `min`, `hours`, `d`, `w`.
fn is_duration(s: &str) -> bool {
    static RX: OnceLock<Option<Regex>> = OnceLock::new();
    if go_parse_duration(s) {
        return true;
    }
    let Some(rx) = cached(&RX, r"((?:-[\t\n\f\r ]?)?[0-9]+)[\t\n\f\r ]*([A-Za-zµ]+)") else {
        return false;
    };
    const UNITS: [&[&str]; 8] = [
        &["ns", "nano"],
        &["us", "µs", "micro"],
        &["ms", "milli"],
        &["s", "sec"],
        &["m", "min"],
        &["h", "hr", "hour"],
        &["d", "day"],
        &["w", "wk", "week"],
    ];
    let mut ok = false;
    for cap in rx.captures_iter(s) {
        let num = cap.get(1).map_or("", |m| m.as_str());
        let num = num.strip_prefix('-').unwrap_or(num).trim();
        if num.parse::<i64>().is_err() {
            return false;
        }
        let unit = cap.get(2).map_or("", |m| m.as_str()).trim().to_lowercase();
        for variants in UNITS {
            let last = variants.len() - 1;
            for (i, v) in variants.iter().enumerate() {
                if (i == last && unit.starts_with(v)) || v.eq_ignore_ascii_case(&unit) {
                    ok = true;
                }
            }
        }
    }
    ok
}

/// Go `time.ParseDuration` syntax (overflow checked): `[-+]?([0-9]*(\.[0-9]*)?unit)+` or `0`.
fn go_parse_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return false;
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let nanos: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return false,
        };
        let value: f64 = format!(
            "{}.{}",
            if int_part.is_empty() { "0" } else { int_part },
            frac_part
        )
        .trim_end_matches('.')
        .parse()
        .unwrap_or(f64::INFINITY);
        total += value * nanos;
        if total > 9.223_372_036_854_775e18 {
            return false;
        }
        rest = after;
    }
    true
}

/// `resource.ParseQuantity` syntax: signed decimal with an SI, binary-SI or exponent suffix.
fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, rest) = s.split_at(int_len);
    let (frac_len, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            (n, &r[n..])
        }
        None => (0, rest),
    };
    if int_part.is_empty() && frac_len == 0 {
        return false;
    }
    match rest {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        r if r.starts_with(['e', 'E']) => {
            let e = &r[1..];
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// Go `url.ParseRequestURI`: an absolute URI or an absolute path, valid escapes, valid host.
fn is_request_uri(s: &str) -> bool {
    if s.is_empty() || s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return false;
    }
    if s == "*" {
        return true;
    }
    let (scheme, rest) = match split_scheme(s) {
        Ok(v) => v,
        Err(()) => return false,
    };
    let rest = match rest.split_once('?') {
        Some((before, _)) => before,
        None => rest,
    };
    if !rest.starts_with('/') {
        return !scheme.is_empty();
    }
    let path = if !scheme.is_empty() && rest.starts_with("//") {
        let authority_and_path = &rest[2..];
        let (authority, path) = match authority_and_path.find('/') {
            Some(i) => authority_and_path.split_at(i),
            None => (authority_and_path, ""),
        };
        if !valid_authority(authority) {
            return false;
        }
        path
    } else {
        rest
    };
    valid_escapes(path)
}

fn split_scheme(s: &str) -> Result<(&str, &str), ()> {
    for (i, c) in s.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' => {
                if i == 0 {
                    return Err(());
                }
                return Ok((&s[..i], &s[i + 1..]));
            }
            _ => return Ok(("", s)),
        }
    }
    Ok(("", s))
}

fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn valid_authority(authority: &str) -> bool {
    let host = match authority.rfind('@') {
        Some(i) => {
            let user = &authority[..i];
            let user_ok = user.bytes().all(|b| {
                b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b) || b >= 0x80
            });
            if !user_ok {
                return false;
            }
            &authority[i + 1..]
        }
        None => authority,
    };
    if let Some(inner) = host.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return false;
        };
        let port = &inner[end + 1..];
        return (port.is_empty() || valid_port(port)) && valid_escapes(&inner[..end]);
    }
    if let Some(i) = host.rfind(':')
        && !valid_port(&host[i..])
    {
        return false;
    }
    valid_escapes(host)
        && host.bytes().all(|b| {
            b >= 0x80 || b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"%".contains(&b)
        })
}

fn valid_port(colon_port: &str) -> bool {
    match colon_port.strip_prefix(':') {
        Some(p) => p.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Go `net/mail.ParseAddress`, simplified: `local@domain`, optionally as `Name <local@domain>`.
fn is_email(s: &str) -> bool {
    let s = s.trim_matches([' ', '\t']);
    if let Some(inner) = s.strip_suffix('>') {
        let Some(open) = inner.rfind('<') else {
            return false;
        };
        let name = inner[..open].trim();
        let name_ok = name.is_empty()
            || (name.starts_with('"') && name.ends_with('"') && name.len() >= 2)
            || name
                .split_whitespace()
                .all(|w| w.chars().all(|c| is_atext(c, true)));
        return name_ok && is_addr_spec(inner[open + 1..].trim());
    }
    is_addr_spec(s)
}

fn is_atext(c: char, dot: bool) -> bool {
    match c {
        '.' => dot,
        '(' | ')' | '<' | '>' | '[' | ']' | ':' | ';' | '@' | '\\' | ',' | '"' => false,
        c => ('!'..='~').contains(&c) || !c.is_ascii(),
    }
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.contains("..")
        && s.chars().all(|c| is_atext(c, true))
}

fn is_addr_spec(s: &str) -> bool {
    let Some(at) = s.rfind('@') else {
        return false;
    };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    let local_ok = if local.starts_with('"') {
        local.len() >= 2 && local.ends_with('"')
    } else {
        is_dot_atom(local)
    };
    let domain_ok = if let Some(lit) = domain.strip_prefix('[') {
        lit.ends_with(']') && !lit[..lit.len() - 1].contains(['[', ']', '\\'])
    } else {
        is_dot_atom(domain)
    };
    local_ok && domain_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(f: &str, s: &str) -> bool {
        check(&normalize(f), s)
    }

    #[test]
    fn formats_accept_and_reject_like_strfmt() {
        let cases: &[(&str, &str, bool)] = &[
            ("uri", "https://example.com/a?b=c", true),
            ("uri", "/relative/path", true),
            ("uri", "mailto:someone", true),
            ("uri", "relative", false),
            ("uri", "http://a b.com/", false),
            ("uri", "http://x/%zz", false),
            ("email", "someone@example.com", true),
            ("email", "Some One <someone@example.com>", true),
            ("email", "someone", false),
            ("email", "a..b@example.com", false),
            ("hostname", "example.com", true),
            ("hostname", "my-host.example.com", true),
            ("hostname", "localhost", true),
            // strfmt's single-label branch only allows a dash right after the first character.
            ("hostname", "my-host", false),
            ("hostname", "bücher.de", true),
            ("hostname", "-bad.com", false),
            ("hostname", "a.b.c1", false),
            ("ipv4", "10.0.0.1", true),
            ("ipv4", "010.0.0.1", true),
            ("ipv4", "256.0.0.1", false),
            ("ipv4", "::ffff:1.2.3.4", true),
            ("ipv6", "fe80::1", true),
            ("ipv6", "10.0.0.1", false),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "fd00::/64", true),
            ("cidr", "10.0.0.0/33", false),
            ("mac", "00:00:5e:00:53:01", true),
            ("mac", "0000.5e00.5301", true),
            ("mac", "00:00:5e:00:53", false),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", true),
            ("uuid", "123E4567E89B12D3A456426614174000", true),
            ("uuid", "123e4567-e89b-12d3-a456", false),
            ("uuid4", "123e4567-e89b-42d3-a456-426614174000", true),
            ("uuid4", "123e4567-e89b-12d3-a456-426614174000", false),
            ("uuid3", "123e4567-e89b-32d3-0456-426614174000", true),
            ("isbn", "0321751043", true),
            ("isbn", "978-0321751041", true),
            ("isbn10", "0321751044", false),
            ("creditcard", "4111 1111 1111 1111", true),
            ("creditcard", "4111 1111 1111 1112", false),
            ("ssn", "123-45-6789", true),
            ("ssn", "123456789", false),
            ("hexcolor", "#FFaa00", true),
            ("hexcolor", "fff", true),
            ("hexcolor", "#ffff", false),
            ("rgbcolor", "rgb(255, 0, 10)", true),
            ("rgbcolor", "rgb(256,0,0)", false),
            ("byte", "aGVsbG8=", true),
            ("byte", "aGVsbG8", false),
            ("byte", "", false),
            ("date", "2024-02-29", true),
            ("date", "2023-02-29", false),
            ("date", "2024-1-01", false),
            ("date-time", "2024-01-02T03:04:05Z", true),
            ("date-time", "2024-01-02T03:04:05.123+02:00", true),
            ("date-time", "2024-01-02t03:04:05z", true),
            ("date-time", "2024-01-02T24:00:00Z", false),
            ("date-time", "2024-01-02", false),
            ("date-time", "2024-01-02T03:04:05", false),
            ("duration", "1h30m", true),
            ("duration", "-1.5s", true),
            ("duration", "3 days", true),
            ("duration", "5 minutes", true),
            ("duration", "forever", false),
            ("duration", "1x", false),
            ("quantity", "10Gi", true),
            ("quantity", "500m", true),
            ("quantity", "1.5e3", true),
            ("quantity", "abc", false),
            ("quantity", "1Qi", false),
            ("bsonobjectid", "507f1f77bcf86cd799439011", true),
            ("bsonobjectid", "507f1f77bcf86cd79943901", false),
            ("k8s-short-name", "my-name", true),
            ("k8s-short-name", "My-Name", false),
            ("k8s-long-name", "a.b-c.d", true),
            ("k8s-long-name", "a..b", false),
            ("password", "anything at all", true),
        ];
        for (f, s, want) in cases {
            assert!(is_supported(&normalize(f)), "{f} should be supported");
            assert_eq!(ok(f, s), *want, "format {f} value {s:?}");
        }
        assert!(!is_supported("int32"));
        assert!(!is_supported("x-custom"));
    }
}
