//! The one canonical request path. The proxy canonicalizes the request-target once
//! ([`canonical_path`]); route matching, policy (`http_path`) and `prefixRewrite` all work on that
//! string, and it is what the upstream receives, so no layer can judge a different path than the
//! one forwarded.
//!
//! The form (RFC 3986 §6.2.2 normalization, plus refusals for what makes paths ambiguous between
//! us and the upstream):
//!
//! * starts with `/`; `*` (asterisk-form) and absolute/authority-form targets are not paths;
//! * everything from the first `?` on is the query and is dropped: it never influences the path;
//!   a raw `#` is refused (a fragment is never part of a request-target);
//! * escapes of unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded, every other escape is
//!   kept with upper-case hex; raw bytes that may not appear in a path (space, `"`, `<`, `>`, `^`,
//!   `` ` ``, `{`, `|`, `}`, non-ASCII) are percent-encoded, so `/a b` and `/a%20b` are one path;
//! * empty segments collapse (`//a///b` → `/a/b`); a trailing `/` is kept (`/a/` ≠ `/a`);
//! * refused ([`PathError`], each a `400` at the proxy): `%2F`, `\` and `%5C`, `%00` and every
//!   control character raw or encoded, malformed escapes, double encoding (`%25` followed by two
//!   hex digits once decoded), `;` and `%3B` (path parameters: the `..;` trick), dot segments
//!   `.`/`..` after decoding (`%2e%2e`), and escapes that do not decode to UTF-8 (overlong
//!   `%C0%AE` is a dot to some old decoders).
//!
//! Dot segments are refused rather than resolved: browsers and HTTP clients resolve them before
//! sending (RFC 3986 §5.2.4, WHATWG URL), so a request that still carries one is an attack or a
//! broken client, and refusing leaves no room for the upstream to resolve them differently.
//! Empty segments are collapsed rather than refused: clients that join URLs by concatenation
//! send `//` in ordinary traffic, collapsing is what nginx does by default (`merge_slashes`), and
//! the collapsed form is also what is forwarded, so nothing is judged on one path and served on
//! another (it also removes `//evil.example` style paths that upstreams may turn into redirects).

/// Why a request path has no canonical form. Each is a `400 Bad Request` at the proxy; messages
/// name the class of problem, never echo the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum PathError {
    /// The request-target is empty.
    #[error("empty path")]
    Empty,
    /// `*` (the `OPTIONS *` asterisk-form) is not a path.
    #[error("asterisk-form request-target is not a path")]
    AsteriskForm,
    /// The target does not start with `/` (absolute-form, authority-form or garbage).
    #[error("path does not start with '/'")]
    NotOriginForm,
    /// A raw `#`: fragments are never sent in a request-target.
    #[error("fragment in request-target")]
    Fragment,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    MalformedEscape,
    /// `%2F`: an encoded segment separator.
    #[error("encoded '/' in path")]
    EncodedSlash,
    /// `\` or `%5C`: a separator to some servers.
    #[error("backslash in path")]
    Backslash,
    /// A control character (including NUL), raw or encoded.
    #[error("control character in path")]
    ControlCharacter,
    /// `%25` followed by two hex digits: a second decoding would yield another escape.
    #[error("double percent-encoding in path")]
    DoubleEncoding,
    /// `;` or `%3B`: path parameters, which some upstreams strip (`/public/..;/admin`).
    #[error("path parameter (';') in path")]
    PathParameter,
    /// A `.` or `..` segment, also when encoded.
    #[error("dot segment in path")]
    DotSegment,
    /// Percent-escapes that do not decode to UTF-8 (overlong forms included).
    #[error("percent-encoded bytes are not UTF-8")]
    InvalidUtf8,
    /// A `?` in a route's path. Only configuration gets this one: a request's query is dropped.
    #[error("a route path has no query")]
    Query,
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Canonicalize a request path (the raw request-target path; anything from the first `?` on is
/// the query and is ignored). See the module documentation for the form and the refusals.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    scan(raw, Some(&mut out))?;
    Ok(out)
}

/// Whether `path` is already canonical (`canonical_path(path) == Ok(path)`), without allocating
/// unless it holds escapes. [`super::RouteTable::find`] uses it to refuse raw paths.
pub fn is_canonical_path(path: &str) -> bool {
    matches!(scan(path, None), Ok(false))
}

/// Whether `prefix` matches `path` on a segment boundary: `/api` (or `/api/`) matches `/api`,
/// `/api/` and `/api/x`, never `/apiadmin`; `/` matches every path. Both are expected canonical;
/// the comparison is byte-wise (escapes are upper-case in canonical form).
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = trim_prefix(prefix);
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// A prefix without any trailing `/`, the root becoming empty: what a rewrite cuts and pastes.
fn strip(prefix: &str) -> &str {
    match trim_prefix(prefix) {
        "/" => "",
        p => p,
    }
}

/// A prefix without its trailing `/` (Ingress and Gateway API ignore it), except the root `/`.
pub(crate) fn trim_prefix(prefix: &str) -> &str {
    match prefix.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => prefix,
    }
}

/// `prefixRewrite` (Gateway API `ReplacePrefixMatch` semantics): replace `matched`, a prefix of
/// `path` on a segment boundary (the `matched_prefix` of a [`super::Match`]), by `replacement`,
/// joined on exactly one `/`: `/foo` → `/xyz` turns `/foo/bar` into `/xyz/bar` and `/foo` into
/// `/xyz`; `/foo` → `/` turns `/foo/bar` into `/bar` and `/foo` into `/`. `None` when `matched`
/// does not match `path`. With canonical inputs the result is canonical.
pub fn rewrite_prefix(path: &str, matched: &str, replacement: &str) -> Option<String> {
    if !prefix_matches(matched, path) {
        return None;
    }
    let rest = &path[strip(matched).len()..];
    let head = strip(replacement);
    let mut out = String::with_capacity(head.len() + rest.len() + 1);
    out.push_str(head);
    out.push_str(rest);
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    Some(out)
}

/// Where the canonical form goes: a buffer, or nowhere when only checking. Tracks the state of
/// the double-encoding check, which must look at the *output* (`%25%34%31` emits `%2541`).
struct Out<'a> {
    buf: Option<&'a mut String>,
    /// Hex digits still needed after an emitted `%25` to make a double encoding.
    pending_hex: u8,
}

impl Out<'_> {
    fn byte(&mut self, b: u8) -> Result<(), PathError> {
        if self.pending_hex > 0 {
            if b.is_ascii_hexdigit() {
                self.pending_hex -= 1;
                if self.pending_hex == 0 {
                    return Err(PathError::DoubleEncoding);
                }
            } else {
                self.pending_hex = 0;
            }
        }
        if let Some(buf) = self.buf.as_deref_mut() {
            buf.push(char::from(b));
        }
        Ok(())
    }

    fn escape(&mut self, v: u8) {
        if let Some(buf) = self.buf.as_deref_mut() {
            buf.push('%');
            buf.push(char::from(HEX[usize::from(v >> 4)]));
            buf.push(char::from(HEX[usize::from(v & 0xF)]));
        }
        self.pending_hex = if v == b'%' { 2 } else { 0 };
    }
}

/// The decoded content of the current segment, enough to spot `.` and `..`.
#[derive(Default)]
struct Segment {
    len: usize,
    dots: usize,
}

impl Segment {
    fn push(&mut self, decoded: u8) {
        self.len += 1;
        if decoded == b'.' {
            self.dots += 1;
        }
    }

    fn finish(&mut self) -> Result<(), PathError> {
        if self.len == self.dots && (1..=2).contains(&self.len) {
            return Err(PathError::DotSegment);
        }
        *self = Segment::default();
        Ok(())
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes that may stay raw in a canonical path: RFC 3986 `pchar` minus `%` (escapes are handled
/// apart) and `;` (refused), plus `/`.
fn is_raw_ok(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One pass over `raw`: writes the canonical form into `out` (when given) and returns whether it
/// differs from `raw`.
fn scan(raw: &str, buf: Option<&mut String>) -> Result<bool, PathError> {
    let bytes = raw.as_bytes();
    match bytes.first() {
        None => return Err(PathError::Empty),
        Some(b'*') if bytes.len() == 1 => return Err(PathError::AsteriskForm),
        Some(b'/') => {}
        Some(_) => return Err(PathError::NotOriginForm),
    }
    let mut out = Out {
        buf,
        pending_hex: 0,
    };
    let mut changed = false;
    let mut has_escapes = false;
    let mut segment = Segment::default();
    let mut after_slash = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match b {
            b'?' => {
                changed = true;
                break;
            }
            b'#' => return Err(PathError::Fragment),
            b'/' => {
                segment.finish()?;
                if after_slash {
                    changed = true;
                } else {
                    out.byte(b'/')?;
                    after_slash = true;
                }
                continue;
            }
            b'%' => {
                let hi = bytes.get(i).copied().and_then(hex_value);
                let lo = bytes.get(i + 1).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::MalformedEscape);
                };
                let v = (hi << 4) | lo;
                match v {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::Backslash),
                    b';' => return Err(PathError::PathParameter),
                    0x00..=0x1F | 0x7F => return Err(PathError::ControlCharacter),
                    _ if is_unreserved(v) => {
                        changed = true;
                        out.byte(v)?;
                    }
                    _ => {
                        has_escapes = true;
                        if bytes[i..i + 2].iter().any(u8::is_ascii_lowercase) {
                            changed = true;
                        }
                        out.escape(v);
                    }
                }
                segment.push(v);
                i += 2;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::PathParameter),
            0x00..=0x1F | 0x7F => return Err(PathError::ControlCharacter),
            _ if is_raw_ok(b) => {
                out.byte(b)?;
                segment.push(b);
            }
            _ => {
                // Not allowed raw (space, quotes, brackets, non-ASCII bytes): encode it.
                changed = true;
                has_escapes = true;
                out.escape(b);
                segment.push(b);
            }
        }
        after_slash = false;
    }
    segment.finish()?;
    if has_escapes {
        let decoded = percent_encoding::percent_decode_str(&raw[..i]);
        if decoded.decode_utf8().is_err() {
            return Err(PathError::InvalidUtf8);
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ok(raw: &str, want: &str) {
        assert_eq!(canonical_path(raw).as_deref(), Ok(want), "{raw}");
        assert!(is_canonical_path(want), "{want} should be canonical");
        assert_eq!(is_canonical_path(raw), raw == want, "{raw}");
    }

    #[track_caller]
    fn err(raw: &str, want: PathError) {
        assert_eq!(canonical_path(raw), Err(want), "{raw}");
        assert!(!is_canonical_path(raw), "{raw}");
    }

    #[test]
    fn plain_paths_are_kept() {
        ok("/", "/");
        ok("/api", "/api");
        ok("/api/", "/api/");
        ok("/a/b.json", "/a/b.json");
        ok("/a/.well-known/x", "/a/.well-known/x");
        ok("/a/...", "/a/...");
        ok("/a/.../b", "/a/.../b");
        ok("/a/..b/.c", "/a/..b/.c");
        ok("/user@host:8/!$&'()*+,=~_-", "/user@host:8/!$&'()*+,=~_-");
    }

    #[test]
    fn traversal_is_refused() {
        err("/public/../admin", PathError::DotSegment);
        err("/public/./admin", PathError::DotSegment);
        err("/..", PathError::DotSegment);
        err("/.", PathError::DotSegment);
        err("/a/..", PathError::DotSegment);
        err("/a/../", PathError::DotSegment);
        err("/public/%2e%2e/admin", PathError::DotSegment);
        err("/public/%2E%2E/admin", PathError::DotSegment);
        err("/public/.%2e/admin", PathError::DotSegment);
        err("/public/%2e/admin", PathError::DotSegment);
        err("/a/..?q=1", PathError::DotSegment);
        err("/a/..//b", PathError::DotSegment);
        // Overlong UTF-8 for '.' and '/'.
        err("/public/%C0%AE%C0%AE/admin", PathError::InvalidUtf8);
        err("/public%C0%AFadmin", PathError::InvalidUtf8);
        err("/%FF", PathError::InvalidUtf8);
    }

    #[test]
    fn path_parameters_are_refused() {
        err("/public/..;/admin", PathError::PathParameter);
        err("/admin;jsessionid=1", PathError::PathParameter);
        err("/admin%3bx", PathError::PathParameter);
        err("/admin%3B", PathError::PathParameter);
    }

    #[test]
    fn separators_and_controls_are_refused() {
        err("/a%2Fb", PathError::EncodedSlash);
        err("/a%2fb", PathError::EncodedSlash);
        err("/a\\b", PathError::Backslash);
        err("/\\evil.example", PathError::Backslash);
        err("/a%5Cb", PathError::Backslash);
        err("/a%5cb", PathError::Backslash);
        err("/a%00b", PathError::ControlCharacter);
        err("/a\0b", PathError::ControlCharacter);
        err("/a\r\nX-Injected: 1", PathError::ControlCharacter);
        err("/a%0d%0a", PathError::ControlCharacter);
        err("/a%7F", PathError::ControlCharacter);
        err("/a\tb", PathError::ControlCharacter);
    }

    #[test]
    fn double_and_malformed_encoding_is_refused() {
        err("/a%252e%252e/admin", PathError::DoubleEncoding);
        err("/%252F", PathError::DoubleEncoding);
        err("/%25%32%66", PathError::DoubleEncoding);
        err("/%25%34%31", PathError::DoubleEncoding);
        err("/%25a1", PathError::DoubleEncoding);
        err("/a%", PathError::MalformedEscape);
        err("/a%2", PathError::MalformedEscape);
        err("/a%zz", PathError::MalformedEscape);
        err("/a%u002e", PathError::MalformedEscape);
        // A literal percent sign not followed by hex is data.
        ok("/100%25", "/100%25");
        ok("/100%25/x", "/100%25/x");
        ok("/100%25%25", "/100%25%25");
        ok("/100%25zz", "/100%25zz");
    }

    #[test]
    fn escapes_are_normalized() {
        ok("/%61dmin", "/admin");
        ok("/%41%42c", "/ABc");
        ok("/a%2Db%5f%7e%2E", "/a-b_~.");
        ok("/file%2ejson", "/file.json");
        ok("/a%3a", "/a%3A");
        ok("/a%3A", "/a%3A");
        ok("/caf%c3%a9", "/caf%C3%A9");
        ok("/a%20b", "/a%20b");
        ok("/a b", "/a%20b");
        ok("/café", "/caf%C3%A9");
        ok("/{x}|\"<>^`", "/%7Bx%7D%7C%22%3C%3E%5E%60");
        ok("/a%21", "/a%21");
    }

    #[test]
    fn empty_segments_collapse() {
        ok("//", "/");
        ok("//evil.example", "/evil.example");
        ok("/a//b", "/a/b");
        ok("/a///b//", "/a/b/");
    }

    #[test]
    fn query_is_not_part_of_the_path() {
        ok("/admin?x=/../", "/admin");
        ok("/admin?", "/admin");
        ok("/?a", "/");
        ok("/a%3Fb", "/a%3Fb");
        assert!(!is_canonical_path("/admin?x"));
        err("/a#frag", PathError::Fragment);
    }

    #[test]
    fn non_paths_are_refused() {
        err("", PathError::Empty);
        err("*", PathError::AsteriskForm);
        err("http://example.com/a", PathError::NotOriginForm);
        err("example.com:443", PathError::NotOriginForm);
        err("a/b", PathError::NotOriginForm);
        err("?a", PathError::NotOriginForm);
        err("*/a", PathError::NotOriginForm);
    }

    #[test]
    fn prefix_matching_is_segment_bound() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apiadmin"));
        assert!(!prefix_matches("/api", "/ap"));
        assert!(!prefix_matches("/api", "/"));
        assert!(prefix_matches("/api/", "/api"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api/", "/apix"));
        assert!(prefix_matches("/", "/"));
        assert!(prefix_matches("/", "/anything/at/all"));
        assert!(prefix_matches("/a/b", "/a/b/c"));
        assert!(!prefix_matches("/a/b", "/a/bc"));
        assert!(!prefix_matches("/a/b", "/a"));
    }

    #[test]
    fn rewrite_follows_gateway_api() {
        let cases = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/bar", "/foo", "/", "/bar"),
            ("/foo", "/foo", "/", "/"),
            ("/foo/", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/a/b", "/", "/x", "/x/a/b"),
            // The root prefix cuts nothing, so `/` keeps its slash, as `/foo/` does above.
            ("/", "/", "/x", "/x/"),
            ("/a", "/", "/", "/a"),
        ];
        for (path, matched, replacement, want) in cases {
            assert_eq!(
                rewrite_prefix(path, matched, replacement).as_deref(),
                Some(want),
                "{path} {matched} {replacement}"
            );
        }
        assert_eq!(rewrite_prefix("/apiadmin", "/api", "/x"), None);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn pathish() -> impl Strategy<Value = String> {
            let atom = prop_oneof![
                Just("/".to_owned()),
                Just("//".to_owned()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just("%".to_owned()),
                Just("%25".to_owned()),
                Just("%2e".to_owned()),
                Just("%2E".to_owned()),
                Just("%2F".to_owned()),
                Just("%3b".to_owned()),
                Just(";".to_owned()),
                Just("\\".to_owned()),
                Just("?".to_owned()),
                Just("#".to_owned()),
                Just(" ".to_owned()),
                Just("é".to_owned()),
                "%[0-9a-fA-F]{2}",
                "[a-zA-Z0-9]{1,3}",
                "[!-~]",
            ];
            prop::collection::vec(atom, 0..12).prop_map(|v| format!("/{}", v.concat()))
        }

        fn check(p: &str) {
            match canonical_path(p) {
                Ok(c) => {
                    assert_eq!(canonical_path(&c).as_deref(), Ok(c.as_str()), "{p}");
                    assert!(is_canonical_path(&c));
                    assert_eq!(is_canonical_path(p), p == c);
                    assert!(c.starts_with('/'));
                    assert!(!c.contains("//") && !c.contains('?') && !c.contains(';'));
                    assert!(!c.contains('\\') && !c.contains("%2F") && !c.contains("%5C"));
                    assert!(c.is_ascii());
                    let decoded = percent_encoding::percent_decode_str(&c).decode_utf8_lossy();
                    assert!(
                        decoded.split('/').all(|s| s != "." && s != ".."),
                        "{p} -> {c} -> {decoded}"
                    );
                    let again = percent_encoding::percent_decode_str(&decoded).decode_utf8_lossy();
                    assert!(
                        again.split('/').all(|s| s != "." && s != ".."),
                        "double decoding of {p} -> {c} reaches a dot segment"
                    );
                }
                Err(_) => assert!(!is_canonical_path(p)),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]
            #[test]
            fn canonical_is_total_and_idempotent(p in pathish()) {
                check(&p);
            }

            #[test]
            fn arbitrary_strings_never_panic(p in any::<String>()) {
                check(&p);
                let _ = prefix_matches(&p, &p);
                let _ = rewrite_prefix(&p, "/", &p);
            }

            #[test]
            fn rewrite_of_canonical_is_canonical(
                p in pathish(), m in pathish(), r in pathish()
            ) {
                let canon = (canonical_path(&p), canonical_path(&m), canonical_path(&r));
                if let (Ok(p), Ok(m), Ok(r)) = canon
                    && let Some(out) = rewrite_prefix(&p, &m, &r)
                {
                    prop_assert!(is_canonical_path(&out), "{p} {m} {r} -> {out}");
                }
            }
        }
    }
}
