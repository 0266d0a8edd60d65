//! `metadata.managedFields` on the wire: decoding, manager identifiers, encoding and the cap
//! on update entries.
//!
//! A port of `managedfields/internal/managedfields.go` (`DecodeManagedFields`,
//! `BuildManagerIdentifier`, `encodeManagedFields`, `sortEncodedManagedFields`) and
//! `capmanagers.go`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Operation;
use super::fieldsv1;
use super::updater::{Managers, VersionedSet};

/// Decoded managed fields: sets by manager identifier, and each identifier's `time` as
/// written (`None` when the entry had none).
#[derive(Debug, Default)]
pub(crate) struct Managed {
    pub(crate) fields: Managers,
    pub(crate) times: BTreeMap<String, Option<String>>,
}

/// The identity of a managed fields entry; the JSON form is the map key upstream uses.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ManagerId {
    pub(crate) manager: String,
    pub(crate) operation: Operation,
    /// Only for `Update`: appliers keep one entry whatever version they apply.
    pub(crate) api_version: String,
    pub(crate) subresource: String,
}

/// `BuildManagerIdentifier`: the entry as Go's `json.Marshal` writes a `ManagedFieldsEntry`
/// with only manager, operation, apiVersion (updates) and subresource set.
pub(crate) fn manager_id(
    manager: &str,
    operation: Operation,
    api_version: &str,
    subresource: &str,
) -> String {
    let mut out = String::from("{");
    let mut first = true;
    let mut field = |name: &str, value: &str, out: &mut String| {
        if value.is_empty() {
            return;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
        fieldsv1::go_json_string_into(value, out);
    };
    field("manager", manager, &mut out);
    field("operation", operation.as_str(), &mut out);
    if operation == Operation::Update {
        field("apiVersion", api_version, &mut out);
    }
    field("subresource", subresource, &mut out);
    out.push('}');
    out
}

/// Reads an identifier back (`json.Unmarshal` into a `ManagedFieldsEntry`).
pub(crate) fn parse_manager_id(id: &str) -> Option<ManagerId> {
    let v: Value = serde_json::from_str(id).ok()?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let operation = match v.get("operation").and_then(Value::as_str) {
        Some("Apply") => Operation::Apply,
        _ => Operation::Update,
    };
    Some(ManagerId {
        manager: s("manager"),
        operation,
        api_version: s("apiVersion"),
        subresource: s("subresource"),
    })
}

/// `DecodeManagedFields`. `None` and `null` decode to no managers.
pub(crate) fn decode(value: Option<&Value>) -> Result<Managed, String> {
    let mut managed = Managed::default();
    let entries = match value {
        None | Some(Value::Null) => return Ok(managed),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err("managedFields must be a list".to_owned()),
    };
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(e) = entry else {
            return Err(format!("managed fields entry {i} is not an object"));
        };
        let text = |k: &str| -> Result<&str, String> {
            match e.get(k) {
                None | Some(Value::Null) => Ok(""),
                Some(Value::String(s)) => Ok(s),
                Some(_) => Err(format!("{k} of managed fields entry {i} must be a string")),
            }
        };
        let operation = match text("operation")? {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".to_owned()),
        };
        let api_version = text("apiVersion")?;
        if api_version.is_empty() {
            return Err("apiVersion must not be empty".to_owned());
        }
        match text("fieldsType")? {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {} in managed fields entry {i}",
                    super::fieldpath::go_quote(other)
                ));
            }
        }
        let set = match e.get("fieldsV1") {
            None | Some(Value::Null) => Default::default(),
            Some(v) => {
                fieldsv1::decode(v).map_err(|err| format!("error decoding versioned set: {err}"))?
            }
        };
        let id = manager_id(
            text("manager")?,
            operation,
            api_version,
            text("subresource")?,
        );
        let time = match e.get("time") {
            Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
            _ => None,
        };
        managed.fields.insert(
            id.clone(),
            VersionedSet {
                set,
                api_version: api_version.to_owned(),
                applied: operation == Operation::Apply,
            },
        );
        managed.times.insert(id, time);
    }
    Ok(managed)
}

/// `encodeManagedFields`: the entries in upstream's order, or `None` when there are none
/// (the field is then left out of the object).
pub(crate) fn encode(managed: &Managed) -> Option<Value> {
    if managed.fields.is_empty() {
        return None;
    }
    struct Row {
        id: ManagerId,
        api_version: String,
        time: Option<String>,
        entry: Map<String, Value>,
    }
    let mut rows: Vec<Row> = Vec::with_capacity(managed.fields.len());
    for (key, vs) in &managed.fields {
        let Some(mut id) = parse_manager_id(key) else {
            continue;
        };
        if vs.applied {
            id.operation = Operation::Apply;
        }
        let time = managed.times.get(key).cloned().flatten();
        let mut entry = Map::new();
        if !id.manager.is_empty() {
            entry.insert("manager".into(), Value::String(id.manager.clone()));
        }
        entry.insert(
            "operation".into(),
            Value::String(id.operation.as_str().into()),
        );
        entry.insert("apiVersion".into(), Value::String(vs.api_version.clone()));
        if let Some(t) = &time {
            entry.insert("time".into(), Value::String(t.clone()));
        }
        entry.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        entry.insert("fieldsV1".into(), fieldsv1::encode(&vs.set));
        if !id.subresource.is_empty() {
            entry.insert("subresource".into(), Value::String(id.subresource.clone()));
        }
        rows.push(Row {
            id,
            api_version: vs.api_version.clone(),
            time,
            entry,
        });
    }
    rows.sort_by(|p, q| {
        p.id.operation
            .as_str()
            .cmp(q.id.operation.as_str())
            .then_with(|| unix_seconds(p.time.as_deref()).cmp(&unix_seconds(q.time.as_deref())))
            .then_with(|| p.id.manager.cmp(&q.id.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.id.subresource.cmp(&q.id.subresource))
    });
    Some(Value::Array(
        rows.into_iter().map(|r| Value::Object(r.entry)).collect(),
    ))
}

/// `capUpdateManagers`: while there are more than `max` update entries, the oldest are
/// merged into one `ancient-changes` entry per API version.
pub(crate) fn cap_update_managers(managed: &mut Managed, max: usize) {
    let mut updaters: Vec<String> = managed
        .fields
        .iter()
        .filter(|(_, vs)| !vs.applied)
        .map(|(k, _)| k.clone())
        .collect();
    if updaters.len() <= max {
        return;
    }
    let seconds = |k: &String| unix_seconds(managed.times.get(k).and_then(|t| t.as_deref()));
    updaters.sort_by(|a, b| match seconds(a).cmp(&seconds(b)) {
        Ordering::Equal => a.cmp(b),
        other => other,
    });
    let mut first_of_version: BTreeMap<String, String> = BTreeMap::new();
    let mut length = updaters.len();
    for manager in &updaters {
        if length <= max {
            break;
        }
        let Some(vs) = managed.fields.get(manager).cloned() else {
            continue;
        };
        let time = managed.times.get(manager).cloned().flatten();
        let bucket = manager_id("ancient-changes", Operation::Update, &vs.api_version, "");
        // Upstream would merge an existing bucket into itself and drop it; keep it instead.
        if *manager == bucket {
            first_of_version
                .entry(vs.api_version.clone())
                .or_insert_with(|| manager.clone());
            continue;
        }
        match first_of_version.get(&vs.api_version) {
            Some(first) => {
                if !managed.fields.contains_key(&bucket)
                    && let Some(s) = managed.fields.remove(first)
                {
                    managed.fields.insert(bucket.clone(), s);
                }
                let merged = match managed.fields.get(&bucket) {
                    Some(b) => vs.set.union(&b.set),
                    None => vs.set.clone(),
                };
                managed.fields.insert(
                    bucket.clone(),
                    VersionedSet {
                        set: merged,
                        api_version: vs.api_version.clone(),
                        applied: vs.applied,
                    },
                );
                managed.fields.remove(manager);
                length -= 1;
                managed.times.insert(bucket, time);
            }
            None => {
                first_of_version.insert(vs.api_version.clone(), manager.clone());
            }
        }
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time; 0 when absent or unreadable (upstream
/// sorts entries without a time first).
pub(crate) fn unix_seconds(time: Option<&str>) -> i64 {
    time.and_then(parse_rfc3339).unwrap_or(0)
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let off = num(i + 1, 2)? * 3600 + num(i + 4, 2)? * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_seconds() {
        assert_eq!(unix_seconds(Some("1970-01-01T00:00:00Z")), 0);
        assert_eq!(unix_seconds(Some("2024-02-29T12:34:56Z")), 1_709_210_096);
        assert_eq!(
            unix_seconds(Some("2024-02-29T13:34:56+01:00")),
            1_709_210_096
        );
        assert_eq!(
            unix_seconds(Some("2024-02-29T12:34:56.123456Z")),
            1_709_210_096
        );
        assert_eq!(unix_seconds(Some("yesterday")), 0);
        assert_eq!(unix_seconds(None), 0);
    }

    #[test]
    fn identifiers_match_go_marshalling() {
        assert_eq!(
            manager_id("kubectl", Operation::Apply, "v1", ""),
            r#"{"manager":"kubectl","operation":"Apply"}"#
        );
        assert_eq!(
            manager_id(
                "kube-controller-manager",
                Operation::Update,
                "apps/v1",
                "status"
            ),
            r#"{"manager":"kube-controller-manager","operation":"Update","apiVersion":"apps/v1","subresource":"status"}"#
        );
        assert_eq!(
            parse_manager_id(&manager_id("a<b", Operation::Update, "v1", "")),
            Some(ManagerId {
                manager: "a<b".into(),
                operation: Operation::Update,
                api_version: "v1".into(),
                subresource: String::new(),
            })
        );
    }
}
