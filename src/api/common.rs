//! Small types and schema pieces shared by the Portcullis custom resources: Secret references,
//! Go-style durations, header maps, and the validation patterns their schemas use.
//!
//! The patterns are public so the controller can hold Ingress annotations (which have no CRD
//! schema) to the same rules as the custom resources.

use std::borrow::Cow;

use kube::core::{Message, Rule};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A DNS-1123 label: a Kubernetes namespace, or a short object name (at most 63 characters).
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A DNS-1123 subdomain: the name of most Kubernetes objects, Secrets included (at most 253).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A DNS-1035 label: the name of a Service (at most 63 characters).
pub const SERVICE_NAME_PATTERN: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// A key in a Secret's `data`.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// An HTTP header name: one or more RFC 9110 `tchar`s.
pub const HEADER_NAME_PATTERN: &str = r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$";

/// An HTTP header value: no control characters other than horizontal tab (so no CR, LF or NUL
/// that could start another header), which is also what the proxy's HTTP stack accepts.
pub const HEADER_VALUE_PATTERN: &str = r"^[^\x00-\x08\x0A-\x1F\x7F]*$";

/// A Go duration without a sign, as `time.ParseDuration` and CEL's `duration()` read it:
/// `0`, or one or more `<number><unit>` with units `ns`, `us`, `ms`, `s`, `m`, `h`
/// (for example `30s`, `1h30m`, `1.5h`, `720h`).
pub const DURATION_PATTERN: &str = r"^(0|([0-9]{1,9}(\.[0-9]{1,9})?(ns|us|ms|s|m|h))+)$";

/// Longest duration string accepted.
pub const DURATION_MAX_LENGTH: u32 = 32;

/// Most entries in a header map (`setRequestHeaders`, `jwtClaimHeaders`) or header list.
pub const MAX_HEADERS: u32 = 32;

/// Longest header name.
pub const HEADER_NAME_MAX_LENGTH: u32 = 256;

/// Longest header value.
pub const HEADER_VALUE_MAX_LENGTH: u32 = 4096;

/// Header names (lower case) a route may not set, copy claims into, or remove: they frame or
/// route the request between proxy and upstream (request smuggling), or are Portcullis's own.
/// Names starting with [`RESERVED_HEADER_PREFIX`] are refused as well.
pub const RESERVED_HEADER_NAMES: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Prefix of Portcullis's own request headers (the identity assertion), which routes may not
/// configure.
pub const RESERVED_HEADER_PREFIX: &str = "x-portcullis-";

/// CEL rule for a header map: every key is a header name ([`HEADER_NAME_PATTERN`], at most
/// [`HEADER_NAME_MAX_LENGTH`] characters). Structural schemas cannot constrain map keys.
pub(crate) fn header_map_keys_rule() -> Rule {
    Rule::new(format!(
        "self.all(k, size(k) <= {HEADER_NAME_MAX_LENGTH} && k.matches({}))",
        cel_string(HEADER_NAME_PATTERN)
    ))
    .message(Message::Message(format!(
        "header names must be 1 to {HEADER_NAME_MAX_LENGTH} HTTP token characters (letters, digits and !#$%&'*+-.^_`|~)"
    )))
}

/// CEL rule refusing [`RESERVED_HEADER_NAMES`] and `x-portcullis-*`, for a map (the rule
/// iterates its keys) or a list of header names.
pub(crate) fn reserved_headers_rule() -> Rule {
    Rule::new(format!(
        "self.all(k, !(k.lowerAscii() in {}) && !k.lowerAscii().startsWith('{RESERVED_HEADER_PREFIX}'))",
        cel_list(RESERVED_HEADER_NAMES)
    ))
    .message(Message::Message(format!(
        "the headers {} and {RESERVED_HEADER_PREFIX}* are managed by Portcullis and cannot be set, copied into or removed by a route (use preserveHostHeader to keep the client's Host)",
        RESERVED_HEADER_NAMES.join(", ")
    )))
}

/// A CEL string literal for `text` (single-quoted, with `\\` and `'` escaped).
pub(crate) fn cel_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A CEL list literal of string literals.
pub(crate) fn cel_list(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|item| cel_string(item)).collect();
    format!("[{}]", items.join(", "))
}

/// A reference to one key of a Secret in the same namespace as the object that names it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as this object.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key inside the Secret's `data`.
    #[schemars(length(min = 1, max = 253), pattern(SECRET_KEY_PATTERN))]
    pub key: String,
}

/// A duration written the Go way (`30s`, `1h`, `720h`, `1h30m`), kept as the string the user
/// wrote so objects round-trip unchanged. See [`DURATION_PATTERN`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct GoDuration(pub String);

impl GoDuration {
    /// Wraps a duration string; it is checked by the schema, or by [`GoDuration::to_std`].
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The duration as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the duration; `None` when it does not match [`DURATION_PATTERN`] or overflows.
    pub fn to_std(&self) -> Option<std::time::Duration> {
        parse_go_duration(&self.0)
    }
}

impl std::fmt::Display for GoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for GoDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": DURATION_MAX_LENGTH,
            "pattern": DURATION_PATTERN,
        })
    }
}

/// Parses the subset of Go durations that [`DURATION_PATTERN`] accepts.
fn parse_go_duration(text: &str) -> Option<std::time::Duration> {
    if text == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if text.is_empty() || text.len() > DURATION_MAX_LENGTH as usize {
        return None;
    }
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut total: u128 = 0;
    while at < bytes.len() {
        let start = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        let whole = text.get(start..at).filter(|w| (1..=9).contains(&w.len()))?;
        let mut fraction = "";
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            let frac_start = at;
            while at < bytes.len() && bytes[at].is_ascii_digit() {
                at += 1;
            }
            fraction = text
                .get(frac_start..at)
                .filter(|f| (1..=9).contains(&f.len()))?;
        }
        let unit_start = at;
        while at < bytes.len() && bytes[at].is_ascii_alphabetic() {
            at += 1;
        }
        let unit_nanos: u128 = match text.get(unit_start..at)? {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: u128 = whole.parse().ok()?;
        total = total.checked_add(whole.checked_mul(unit_nanos)?)?;
        if !fraction.is_empty() {
            let digits: u128 = fraction.parse().ok()?;
            let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
            total = total.checked_add(digits.checked_mul(unit_nanos)? / scale)?;
        }
    }
    // Go durations are signed 64-bit nanoseconds; anything longer is refused there too.
    if total > i64::MAX as u128 {
        return None;
    }
    let total = u64::try_from(total).ok()?;
    Some(std::time::Duration::from_nanos(total))
}

/// Schema transform for a map from header name to header value (`setRequestHeaders`): bounds
/// the number of entries and the values' length and characters. Keys are checked by CEL rules,
/// since structural schemas cannot constrain map keys.
pub(crate) fn header_value_map(schema: &mut Schema) {
    schema.insert("maxProperties".into(), MAX_HEADERS.into());
    schema.insert(
        "additionalProperties".into(),
        serde_json::json!({
            "type": "string",
            "maxLength": HEADER_VALUE_MAX_LENGTH,
            "pattern": HEADER_VALUE_PATTERN,
        }),
    );
}

/// Schema transform for `jwtClaimHeaders`: header name to claim name.
pub(crate) fn claim_header_map(schema: &mut Schema) {
    schema.insert("maxProperties".into(), MAX_HEADERS.into());
    schema.insert(
        "additionalProperties".into(),
        serde_json::json!({
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "pattern": CLAIM_NAME_PATTERN,
        }),
    );
}

/// A claim name (`spec.claims` keys), or a `.`-separated claim path (`jwtClaimHeaders` values):
/// letters, digits and `_ . : / -`, not starting with `. : / -`.
pub const CLAIM_NAME_PATTERN: &str = r"^[A-Za-z0-9_][-A-Za-z0-9_.:/]*$";

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_durations_parse_like_go() {
        let cases = [
            ("0", Some(Duration::ZERO)),
            ("30s", Some(Duration::from_secs(30))),
            ("1h", Some(Duration::from_secs(3600))),
            ("720h", Some(Duration::from_secs(720 * 3600))),
            ("1h30m", Some(Duration::from_secs(5400))),
            ("1.5h", Some(Duration::from_secs(5400))),
            ("250ms", Some(Duration::from_millis(250))),
            ("10us", Some(Duration::from_micros(10))),
            ("7ns", Some(Duration::from_nanos(7))),
            ("", None),
            ("1", None),
            ("-1s", None),
            ("1d", None),
            ("1 h", None),
            (".5h", None),
            ("1.h", None),
            ("s", None),
            ("999999999h", None),
        ];
        for (text, want) in cases {
            assert_eq!(GoDuration::new(text).to_std(), want, "{text:?}");
        }
    }

    #[test]
    fn durations_serialize_as_plain_strings() {
        let d: GoDuration = serde_json::from_str("\"1h\"").unwrap();
        assert_eq!(d.as_str(), "1h");
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h\"");
        assert_eq!(d.to_string(), "1h");
    }

    #[test]
    fn cel_literals_escape_quotes_and_backslashes() {
        assert_eq!(cel_string("a'b\\c"), r"'a\'b\\c'");
        assert_eq!(cel_list(&["te", "host"]), "['te', 'host']");
    }

    #[test]
    fn header_rules_carry_the_shared_names_and_pattern() {
        let keys = header_map_keys_rule();
        assert!(keys.rule.contains(&cel_string(HEADER_NAME_PATTERN)));
        let reserved = reserved_headers_rule();
        for name in RESERVED_HEADER_NAMES {
            assert!(reserved.rule.contains(&format!("'{name}'")), "{name}");
            assert_eq!(
                name.to_ascii_lowercase(),
                *name,
                "rules compare lower-cased names"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod pattern_tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    #[test]
    fn the_duration_pattern_accepts_exactly_what_the_parser_reads() {
        for text in [
            "0", "30s", "1h", "720h", "1h30m", "1.5h", "250ms", "10us", "7ns", "", "1", "-1s",
            "1d", "1 h", ".5h", "1.h", "s", "1H", "1m1", "0s",
        ] {
            let parsed = GoDuration::new(text).to_std().is_some();
            assert_eq!(matches(DURATION_PATTERN, text), parsed, "{text:?}");
        }
    }

    #[test]
    fn header_patterns_refuse_what_could_split_a_header() {
        for good in ["X-Team", "x-email", "X_Odd.Name~1"] {
            assert!(matches(HEADER_NAME_PATTERN, good), "{good}");
        }
        for bad in [
            "",
            "X Team",
            "X-Team:",
            "X-Team\r\nX-Evil",
            "Ünïcode",
            "(x)",
        ] {
            assert!(!matches(HEADER_NAME_PATTERN, bad), "{bad:?}");
        }
        for good in [
            "",
            "a",
            "value with spaces\tand tab",
            "ünïcode",
            "a=b; c=\"d\"",
        ] {
            assert!(matches(HEADER_VALUE_PATTERN, good), "{good:?}");
        }
        for bad in ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b", "a\x7fb", "a\x1bb"] {
            assert!(!matches(HEADER_VALUE_PATTERN, bad), "{bad:?}");
        }
    }

    #[test]
    fn name_patterns_follow_kubernetes() {
        assert!(matches(DNS_LABEL_PATTERN, "team-a"));
        assert!(!matches(DNS_LABEL_PATTERN, "team.a"));
        assert!(matches(DNS_SUBDOMAIN_PATTERN, "billing-tls.v2"));
        assert!(!matches(DNS_SUBDOMAIN_PATTERN, "Billing"));
        assert!(matches(SERVICE_NAME_PATTERN, "billing"));
        assert!(!matches(SERVICE_NAME_PATTERN, "1billing"));
        assert!(matches(SECRET_KEY_PATTERN, "tls.crt"));
        assert!(!matches(SECRET_KEY_PATTERN, "a/b"));
        assert!(matches(CLAIM_NAME_PATTERN, "kubernetes.io.namespace"));
        assert!(matches(
            CLAIM_NAME_PATTERN,
            "https://example.com/claims/team"
        ));
        assert!(!matches(CLAIM_NAME_PATTERN, ".team"));
        assert!(!matches(CLAIM_NAME_PATTERN, "team name"));
    }
}
