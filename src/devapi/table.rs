//! Server-side `meta.k8s.io/v1` `Table` responses (`Accept: application/json;as=Table;v=v1;
//! g=meta.k8s.io`), so `kubectl get` prints the same columns against the dev API as against a real
//! cluster. The server's list/get handlers call it; it is pure (time comes in as `now`).
//!
//! Columns and cells follow kube-apiserver:
//!
//! - built-in kinds use the printers of `pkg/printers/internalversion/printers.go`: every column,
//!   wide ones at priority 1, always filled (the apiserver generates tables with `Wide: true`);
//!   cell values keep the Go types (`int64` cells are JSON numbers, the rest strings);
//! - kinds without a printer there (Role, ClusterRole, LimitRange, CustomResourceDefinition, any
//!   kind this file does not know) get the default convertor's `Name`, `Created At` (RFC 3339);
//! - custom resources get their CRD's `additionalPrinterColumns` through the apiextensions table
//!   convertor (`tableconvertor.go`): `Name` first, `Age` when the version declares none; a
//!   `string` column prints the first JSONPath result as `PrintResults` does (arrays and objects
//!   as JSON), other types convert it (`date` → age, `integer` truncates, mismatches → `null`);
//!   no result or an evaluation error gives a `null` cell, which kubectl prints blank.
//!
//! Ages use `k8s.io/apimachinery/pkg/util/duration.HumanDuration` ([`human_duration`]). Objects
//! of any shape are accepted: missing or mistyped fields print as the Go printers print zero
//! values, with the apiserver's defaults applied where a real server would have stored them
//! (`replicas: 1`, Service `type: ClusterIP`, port protocol `TCP`, CronJob `suspend: false`, an
//! HPA without metrics targets CPU at 80%). Resource quantities are printed as stored, not
//! canonicalised.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::jsonpath::{JsonPath, go_float_value, to_text};

/// One column of a table: its `TableColumnDefinition` plus, for CRD columns, the JSONPath that
/// fills it (`None` for the computed columns of built-in kinds and the `Name` column).
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Header, e.g. `Name`, `Ready` (kubectl upper-cases it).
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    /// OpenAPI format; `name` marks the object-name column.
    pub format: String,
    /// Human-readable description.
    pub description: String,
    /// 0 = shown by default, 1 = shown with `-o wide`.
    pub priority: i32,
    /// The CRD JSONPath filling this column.
    pub json_path: Option<JsonPath>,
}

impl Column {
    /// This column's `TableColumnDefinition` JSON.
    pub fn definition(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// What a row's `object` holds (the `includeObject` table option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `object` is `null`.
    None,
    /// A `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter (empty means `Metadata`); `None` for a value the
    /// apiserver rejects with 400 `unrecognized includeObject value: "…"`.
    pub fn from_query(value: &str) -> Option<Self> {
        match value {
            "None" => Some(Self::None),
            "Metadata" | "" => Some(Self::Metadata),
            "Object" => Some(Self::Object),
            _ => None,
        }
    }
}

/// Why a CRD version's `additionalPrinterColumns` were refused. The message is the apiserver's
/// field error below `spec.versions[i]`; prefix that path for a 422 cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// `additionalPrinterColumns` is neither a list nor null.
    #[error("additionalPrinterColumns: Invalid value: must be a list of column definitions")]
    NotAList,
    /// One column fails the apiextensions validation (or its JSONPath does not parse).
    #[error("additionalPrinterColumns[{index}]{field}: {detail}")]
    InvalidColumn {
        /// Index of the column in the list.
        index: usize,
        /// The offending field with a leading dot (`.type`, `.JSONPath`), or empty.
        field: &'static str,
        /// `Required value…` or `Invalid value: "…": …`.
        detail: String,
    },
}

const COLUMN_TYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];
const COLUMN_FORMATS: &[&str] = &[
    "byte",
    "date",
    "date-time",
    "double",
    "float",
    "int32",
    "int64",
    "password",
];

fn name_column() -> Column {
    Column {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: D_OBJECT_META_NAME.into(),
        priority: 0,
        json_path: None,
    }
}

/// Columns for a custom resource version from its CRD `additionalPrinterColumns` (a JSON array or
/// null), as the apiextensions table convertor builds them: `Name` first, then the declared
/// columns; when none are declared, `Name` and `Age` (`.metadata.creationTimestamp`, type
/// `date`). Columns failing the apiserver's CRD validation (empty name, unknown type or format,
/// a JSONPath not starting with `.`) or whose JSONPath does not parse are refused.
pub fn custom_columns(printer_columns: &Value) -> Result<Vec<Column>, TableError> {
    let declared: &[Value] = match printer_columns {
        Value::Null => &[],
        Value::Array(a) => a,
        _ => return Err(TableError::NotAList),
    };
    let mut columns = vec![name_column()];
    if declared.is_empty() {
        columns.push(Column {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: D_OBJECT_META_CREATION_TIMESTAMP.into(),
            priority: 0,
            json_path: JsonPath::parse_exact("{.metadata.creationTimestamp}").ok(),
        });
        return Ok(columns);
    }
    for (index, col) in declared.iter().enumerate() {
        columns.push(custom_column(index, col)?);
    }
    Ok(columns)
}

fn custom_column(index: usize, col: &Value) -> Result<Column, TableError> {
    let invalid = |field: &'static str, detail: String| TableError::InvalidColumn {
        index,
        field,
        detail,
    };
    let Some(obj) = col.as_object() else {
        return Err(invalid("", "Invalid value: must be an object".into()));
    };
    let string = |key: &str, field: &'static str| -> Result<String, TableError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(invalid(field, "Invalid value: must be a string".into())),
        }
    };
    let name = string("name", ".name")?;
    let type_ = string("type", ".type")?;
    let format = string("format", ".format")?;
    let description = string("description", ".description")?;
    let path = string("jsonPath", ".JSONPath")?;
    let priority = match obj.get("priority") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| invalid(".priority", "Invalid value: must be an int32".into()))?,
    };

    let types = COLUMN_TYPES.join(",");
    if name.is_empty() {
        return Err(invalid(".name", "Required value".into()));
    }
    if type_.is_empty() {
        return Err(invalid(
            ".type",
            format!("Required value: must be one of {types}"),
        ));
    }
    if !COLUMN_TYPES.contains(&type_.as_str()) {
        let detail = format!("Invalid value: {type_:?}: must be one of {types}");
        return Err(invalid(".type", detail));
    }
    if !format.is_empty() && !COLUMN_FORMATS.contains(&format.as_str()) {
        let formats = COLUMN_FORMATS.join(",");
        let detail = format!("Invalid value: {format:?}: must be one of {formats}");
        return Err(invalid(".format", detail));
    }
    if path.is_empty() {
        return Err(invalid(".JSONPath", "Required value".into()));
    }
    if !path.starts_with('.') {
        let detail = format!("Invalid value: {path:?}: must be a simple json path starting with .");
        return Err(invalid(".JSONPath", detail));
    }
    // The apiextensions convertor parses "{" + path + "}", whatever the path holds.
    let json_path = JsonPath::parse_exact(&format!("{{{path}}}")).map_err(|e| {
        let reason = match e {
            super::jsonpath::JsonPathError::Syntax { reason, .. } => reason,
            other => other.to_string(),
        };
        invalid(".JSONPath", format!("Invalid value: {path:?}: {reason}"))
    })?;
    let description = if description.is_empty() {
        format!("Custom resource definition column (in JSONPath format): {path}")
    } else {
        description
    };
    Ok(Column {
        name,
        type_,
        format,
        description,
        priority,
        json_path: Some(json_path),
    })
}

/// Default columns for a built-in kind, as kube-apiserver's printers define them (for example
/// ConfigMap: Name, Data, Age; Deployment: Name, Ready, Up-to-date, Available, Age and, at
/// priority 1, Containers, Images, Selector). Kinds without a printer get `Name`, `Created At`.
pub fn builtin_columns(group: &str, kind: &str) -> Vec<Column> {
    printer(group, kind)
        .columns
        .iter()
        .map(|s| Column {
            name: s.name.into(),
            type_: s.type_.into(),
            format: s.format.into(),
            description: s.description.into(),
            priority: s.priority,
            json_path: None,
        })
        .collect()
}

/// One row's cells for an object, one per column: JSONPath columns are evaluated as the CRD
/// convertor does, computed columns come from the kind's printer (`Name`, `Age` and
/// `Created At` work for any kind).
pub fn cells(
    columns: &[Column],
    group: &str,
    kind: &str,
    obj: &Value,
    now: Timestamp,
) -> Vec<Value> {
    let printer = printer(group, kind);
    let mut computed: Option<Vec<Value>> = None;
    columns
        .iter()
        .map(|col| {
            if let Some(path) = &col.json_path {
                return custom_cell(col, path, obj, now);
            }
            match printer.columns.iter().position(|s| s.name == col.name) {
                Some(i) => computed
                    .get_or_insert_with(|| (printer.row)(obj, now))
                    .get(i)
                    .cloned()
                    .unwrap_or(Value::Null),
                None => match col.name.as_str() {
                    "Name" => Value::String(name(obj).into()),
                    "Age" => age(obj, now),
                    "Created At" => created_at(obj),
                    _ => Value::Null,
                },
            }
        })
        .collect()
}

/// A whole `meta.k8s.io/v1` `Table`: `metadata` carries `resourceVersion`, `continue` and
/// `remainingItemCount` from `list_metadata` (empty ones dropped), `columnDefinitions` the
/// columns, and each row its cells plus `object` per `include`: `null` for
/// [`IncludeObject::None`] (what the apiserver sends), a `PartialObjectMetadata` for
/// [`IncludeObject::Metadata`], the object itself for [`IncludeObject::Object`]. Completed and
/// failed Pods carry the `Completed` row condition, as from a real server.
pub fn table(
    columns: &[Column],
    group: &str,
    kind: &str,
    objects: &[&Value],
    include: IncludeObject,
    list_metadata: Value,
    now: Timestamp,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert(
                "cells".into(),
                Value::Array(cells(columns, group, kind, obj, now)),
            );
            if let Some(conditions) = row_conditions(group, kind, obj) {
                row.insert("conditions".into(), conditions);
            }
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => partial_object_metadata(obj),
                IncludeObject::Object => (*obj).clone(),
            };
            row.insert("object".into(), object);
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta(&list_metadata),
        "columnDefinitions": columns.iter().map(Column::definition).collect::<Vec<_>>(),
        "rows": rows,
    })
}

fn list_meta(given: &Value) -> Value {
    let mut meta = Map::new();
    for key in ["resourceVersion", "continue", "remainingItemCount"] {
        match given.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(v) => {
                meta.insert(key.into(), v.clone());
            }
        }
    }
    Value::Object(meta)
}

fn partial_object_metadata(obj: &Value) -> Value {
    let mut metadata = match obj.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    // ObjectMeta always serialises creationTimestamp (null when unset).
    metadata.entry("creationTimestamp").or_insert(Value::Null);
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    })
}

fn row_conditions(group: &str, kind: &str, obj: &Value) -> Option<Value> {
    if (group, kind) != ("", "Pod") {
        return None;
    }
    let (reason, message) = match s(obj, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`: "5s", "119s", "3m2s", "10m", "179m",
/// "3h5m", "47h", "3d4h", "30d", "2y12d", "8y".
pub fn human_duration(d: Duration) -> String {
    human_duration_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `HumanDuration` of a signed Go `time.Duration` (nanoseconds): below -1s it is `<invalid>`
/// (a timestamp in the future), between -2s and 0 `0s`.
fn human_duration_nanos(ns: i64) -> String {
    const SECOND: i64 = 1_000_000_000;
    const MINUTE: i64 = 60 * SECOND;
    const HOUR: i64 = 60 * MINUTE;
    let seconds = ns / SECOND;
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = ns / MINUTE;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = ns / HOUR;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = hours / 24;
        return if days % 365 == 0 {
            format!("{}y", days / 365)
        } else {
            format!("{}y{}d", days / 365, days % 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

// ---------------------------------------------------------------------------------------------
// CRD cells (tableconvertor.go)

fn custom_cell(col: &Column, path: &JsonPath, obj: &Value, now: Timestamp) -> Value {
    let Ok(results) = path.find_results(obj) else {
        return Value::Null;
    };
    let Some(value) = results.first().and_then(|set| set.first()) else {
        return Value::Null;
    };
    let value: &Value = value;
    match col.type_.as_str() {
        "string" => Value::String(to_text(value)),
        _ if value.is_null() => Value::Null,
        "integer" => match value.as_i64() {
            Some(i) => Value::from(i),
            None => value
                .as_f64()
                .map_or(Value::Null, |f| Value::from(f as i64)),
        },
        "number" => value.as_f64().map_or(Value::Null, go_float_value),
        "boolean" => value.as_bool().map_or(Value::Null, Value::Bool),
        "date" => value
            .as_str()
            .map_or(Value::Null, |s| Value::String(date_cell(s, now))),
        _ => Value::Null,
    }
}

/// A `date` cell: `metav1.Time.UnmarshalQueryParameter`, then the age.
fn date_cell(s: &str, now: Timestamp) -> String {
    if s.is_empty() || s == "null" {
        return "<unknown>".into();
    }
    match parse_rfc3339(s) {
        None => "<invalid>".into(),
        Some(t) if is_zero_time(t) => "<unknown>".into(),
        Some(t) => since(t, now),
    }
}

// ---------------------------------------------------------------------------------------------
// Field access and formatting shared by the printers

static NULL: Value = Value::Null;

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .try_fold(v, |cur, key| cur.get(*key))
        .unwrap_or(&NULL)
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).as_str().unwrap_or("")
}

fn int_of(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

fn int(v: &Value, path: &[&str]) -> i64 {
    int_of(get(v, path)).unwrap_or(0)
}

/// An integer the apiserver defaults when unset (`replicas: 1`).
fn int_or(v: &Value, path: &[&str], default: i64) -> i64 {
    int_of(get(v, path)).unwrap_or(default)
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path).as_array().map_or(&[], Vec::as_slice)
}

fn len_of(v: &Value, path: &[&str]) -> i64 {
    let n = match get(v, path) {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    n as i64
}

fn present(v: &Value, path: &[&str]) -> bool {
    !get(v, path).is_null()
}

fn name(obj: &Value) -> &str {
    s(obj, &["metadata", "name"])
}

fn is_deleting(obj: &Value) -> bool {
    present(obj, &["metadata", "deletionTimestamp"])
}

/// Go's `time.Parse(time.RFC3339, s)`.
fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    if s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    s.parse().ok()
}

/// `0001-01-01T00:00:00Z`, Go's zero `time.Time`.
fn is_zero_time(t: Timestamp) -> bool {
    t.as_second() == -62_135_596_800 && t.subsec_nanosecond() == 0
}

/// A `metav1.Time` or `metav1.MicroTime` field; `None` when unset or zero.
fn time_of(v: &Value) -> Option<Timestamp> {
    v.as_str()
        .and_then(parse_rfc3339)
        .filter(|t| !is_zero_time(*t))
}

fn since(t: Timestamp, now: Timestamp) -> String {
    let ns = now.as_nanosecond() - t.as_nanosecond();
    let ns = i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX });
    human_duration_nanos(ns)
}

/// `translateTimestampSince`.
fn translate_since(v: &Value, now: Timestamp) -> String {
    time_of(v).map_or_else(|| "<unknown>".into(), |t| since(t, now))
}

fn age(obj: &Value, now: Timestamp) -> Value {
    Value::String(translate_since(
        get(obj, &["metadata", "creationTimestamp"]),
        now,
    ))
}

/// The default convertor's `Created At`: the creation time in RFC 3339, UTC, whole seconds.
fn created_at(obj: &Value) -> Value {
    let raw = get(obj, &["metadata", "creationTimestamp"]);
    let text = match raw.as_str().and_then(parse_rfc3339) {
        Some(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => match raw.as_str() {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => "0001-01-01T00:00:00Z".to_owned(),
        },
    };
    Value::String(text)
}

fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// `labels.FormatLabels`: sorted `k=v` pairs, or `<none>`.
fn format_labels(v: &Value) -> String {
    let mut pairs: Vec<String> = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// `metav1.LabelSelectorAsSelector(sel).String()`: empty for a nil or empty selector, `Err` for
/// an invalid operator or value list.
fn selector_string(sel: &Value) -> Result<String, ()> {
    let Some(m) = sel.as_object() else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = m.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for expr in m
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let key = s(expr, &["key"]);
        let mut values: Vec<&str> = arr(expr, &["values"])
            .iter()
            .map(|v| v.as_str().unwrap_or(""))
            .collect();
        values.sort_unstable();
        let rendered = match s(expr, &["operator"]) {
            op @ ("In" | "NotIn") => {
                if values.is_empty() {
                    return Err(());
                }
                let word = if op == "In" { "in" } else { "notin" };
                format!("{key} {word} ({})", values.join(","))
            }
            "Exists" if values.is_empty() => key.to_owned(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return Err(()),
        };
        reqs.push((key.to_owned(), rendered));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(","))
}

/// `metav1.FormatLabelSelector`.
fn format_label_selector(sel: &Value) -> String {
    match selector_string(sel) {
        Err(()) => "<error>".into(),
        Ok(s) if s.is_empty() => "<none>".into(),
        Ok(s) => s,
    }
}

/// `layoutContainerCells`: container names and images, comma-joined.
fn container_cells(pod_spec: &Value) -> (Value, Value) {
    let containers = arr(pod_spec, &["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| s(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, &["image"])).collect();
    (names.join(",").into(), images.join(",").into())
}

/// An `IntOrString` or a `resource.Quantity` as printed (quantities as stored).
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".into(),
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.into()
    }
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The `… + N more...` lists of printers.go (empty → `<unset>`).
fn list_with_more(list: &[String], count: usize, max: usize) -> String {
    let ret = list.join(",");
    if count > max {
        format!("{ret} + {} more...", count - max)
    } else if ret.is_empty() {
        "<unset>".into()
    } else {
        ret
    }
}

/// Sorted, de-duplicated load-balancer ingress IPs (or host names).
fn load_balancer_addresses(status: &Value) -> String {
    let mut out: Vec<&str> = arr(status, &["ingress"])
        .iter()
        .filter_map(|i| {
            let ip = s(i, &["ip"]);
            let host = s(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip)
            } else if !host.is_empty() {
                Some(host)
            } else {
                None
            }
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out.join(",")
}

fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|x| x.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn storage_class_of(obj: &Value) -> String {
    let annotations = get(obj, &["metadata", "annotations"]);
    match annotations.get("volume.beta.kubernetes.io/storage-class") {
        Some(v) => v.as_str().unwrap_or("").into(),
        None => s(obj, &["spec", "storageClassName"]).into(),
    }
}

fn cond_true(conditions: &[Value], type_: &str) -> bool {
    conditions
        .iter()
        .find(|c| s(c, &["type"]) == type_)
        .is_some_and(|c| s(c, &["status"]) == "True")
}

// ---------------------------------------------------------------------------------------------
// Built-in printers (printers.go)

struct Spec {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    priority: i32,
    description: &'static str,
}

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Spec {
    Spec {
        name,
        type_,
        format: "",
        priority: 0,
        description,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Spec {
    Spec {
        name,
        type_,
        format: "",
        priority: 1,
        description,
    }
}

const NAME: Spec = Spec {
    name: "Name",
    type_: "string",
    format: "name",
    priority: 0,
    description: D_OBJECT_META_NAME,
};
const AGE: Spec = col("Age", "string", D_OBJECT_META_CREATION_TIMESTAMP);
const CONTAINERS: Spec = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Spec = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

struct Printer {
    columns: &'static [Spec],
    row: fn(&Value, Timestamp) -> Vec<Value>,
}

fn printer(group: &str, kind: &str) -> &'static Printer {
    match (group, kind) {
        ("", "Pod") => &POD,
        ("", "PodTemplate") => &POD_TEMPLATE,
        ("", "ReplicationController") => &REPLICATION_CONTROLLER,
        ("", "Service") => &SERVICE,
        ("", "Endpoints") => &ENDPOINTS,
        ("", "Node") => &NODE,
        ("", "Event") | ("events.k8s.io", "Event") => &EVENT,
        ("", "Namespace") => &NAMESPACE,
        ("", "Secret") => &SECRET,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "PersistentVolume") => &PERSISTENT_VOLUME,
        ("", "PersistentVolumeClaim") => &PERSISTENT_VOLUME_CLAIM,
        ("", "ConfigMap") => &CONFIG_MAP,
        ("", "ResourceQuota") => &RESOURCE_QUOTA,
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "ReplicaSet") => &REPLICA_SET,
        ("apps", "StatefulSet") => &STATEFUL_SET,
        ("apps", "DaemonSet") => &DAEMON_SET,
        ("apps", "ControllerRevision") => &CONTROLLER_REVISION,
        ("batch", "Job") => &JOB,
        ("batch", "CronJob") => &CRON_JOB,
        ("autoscaling", "HorizontalPodAutoscaler") => &HPA,
        ("policy", "PodDisruptionBudget") => &PDB,
        ("networking.k8s.io", "Ingress") => &INGRESS,
        ("networking.k8s.io", "IngressClass") => &INGRESS_CLASS,
        ("networking.k8s.io", "NetworkPolicy") => &NETWORK_POLICY,
        ("discovery.k8s.io", "EndpointSlice") => &ENDPOINT_SLICE,
        ("rbac.authorization.k8s.io", "RoleBinding") => &ROLE_BINDING,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => &CLUSTER_ROLE_BINDING,
        ("coordination.k8s.io", "Lease") => &LEASE,
        ("storage.k8s.io", "StorageClass") => &STORAGE_CLASS,
        ("scheduling.k8s.io", "PriorityClass") => &PRIORITY_CLASS,
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration")
        | ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => &WEBHOOKS,
        _ => &DEFAULT,
    }
}

/// `rest.NewDefaultTableConvertor`: kinds without a printer.
static DEFAULT: Printer = Printer {
    columns: &[
        NAME,
        col("Created At", "date", D_OBJECT_META_CREATION_TIMESTAMP),
    ],
    row: |o, _| vec![name(o).into(), created_at(o)],
};

static POD: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        col(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
        ),
        col(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        wide("IP", "string", D_POD_STATUS_POD_IP),
        wide("Node", "string", D_POD_SPEC_NODE_NAME),
        wide("Nominated Node", "string", D_POD_STATUS_NOMINATED_NODE_NAME),
        wide("Readiness Gates", "string", D_POD_SPEC_READINESS_GATES),
    ],
    row: pod_row,
};

fn pod_row(pod: &Value, now: Timestamp) -> Vec<Value> {
    let spec = get(pod, &["spec"]);
    let status = get(pod, &["status"]);
    let init_containers = arr(spec, &["initContainers"]);
    let restartable = |name: &str| {
        init_containers
            .iter()
            .rev()
            .find(|c| s(c, &["name"]) == name)
            .is_some_and(|c| s(c, &["restartPolicy"]) == "Always")
    };
    let total = arr(spec, &["containers"]).len()
        + init_containers
            .iter()
            .filter(|c| s(c, &["restartPolicy"]) == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut restartable_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_restartable_restart: Option<Timestamp> = None;
    let phase = s(status, &["phase"]);
    let status_reason = s(status, &["reason"]);
    let mut reason = if status_reason.is_empty() {
        phase
    } else {
        status_reason
    }
    .to_owned();
    let conditions = arr(status, &["conditions"]);
    if conditions
        .iter()
        .any(|c| s(c, &["type"]) == "PodScheduled" && s(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let finished = |cs: &Value| time_of(get(cs, &["lastState", "terminated", "finishedAt"]));

    let mut initializing = false;
    let init_statuses = arr(status, &["initContainerStatuses"]);
    for (i, cs) in init_statuses.iter().enumerate() {
        let count = int(cs, &["restartCount"]);
        restarts = restarts.saturating_add(count);
        last_restart = later(last_restart, finished(cs));
        let is_restartable = restartable(s(cs, &["name"]));
        if is_restartable {
            restartable_restarts = restartable_restarts.saturating_add(count);
            last_restartable_restart = later(last_restartable_restart, finished(cs));
        }
        let terminated = get(cs, &["state", "terminated"]);
        let exit_code = int(terminated, &["exitCode"]);
        let waiting_reason = s(cs, &["state", "waiting", "reason"]);
        if terminated.is_object() && exit_code == 0 {
            continue;
        }
        if is_restartable && get(cs, &["started"]).as_bool() == Some(true) {
            if get(cs, &["ready"]).as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            let r = s(terminated, &["reason"]);
            let signal = int(terminated, &["signal"]);
            if !r.is_empty() {
                format!("Init:{r}")
            } else if signal != 0 {
                format!("Init:Signal:{signal}")
            } else {
                format!("Init:ExitCode:{exit_code}")
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .find(|c| s(c, &["type"]) == "Initialized")
        .is_some_and(|c| s(c, &["status"]) == "True");
    if !initializing || initialized {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for cs in arr(status, &["containerStatuses"]).iter().rev() {
            restarts = restarts.saturating_add(int(cs, &["restartCount"]));
            last_restart = later(last_restart, finished(cs));
            let waiting_reason = s(cs, &["state", "waiting", "reason"]);
            let terminated = get(cs, &["state", "terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.into();
            } else if terminated.is_object() {
                let r = s(terminated, &["reason"]);
                let signal = int(terminated, &["signal"]);
                reason = if !r.is_empty() {
                    r.into()
                } else if signal != 0 {
                    format!("Signal:{signal}")
                } else {
                    format!("ExitCode:{}", int(terminated, &["exitCode"]))
                };
            } else if get(cs, &["ready"]).as_bool() == Some(true)
                && get(cs, &["state", "running"]).is_object()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| s(c, &["type"]) == "Ready" && s(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    if is_deleting(pod) && status_reason == "NodeLost" {
        reason = "Unknown".into();
    } else if is_deleting(pod) && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".into();
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(t, now)),
        _ => restarts.to_string(),
    };
    let mut pod_ip = arr(status, &["podIPs"])
        .first()
        .map_or("", |ip| s(ip, &["ip"]));
    if pod_ip.is_empty() {
        pod_ip = s(status, &["podIP"]);
    }
    let gates = arr(spec, &["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passed = gates
            .iter()
            .filter(|g| {
                let t = s(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| s(c, &["type"]) == t)
                    .is_some_and(|c| s(c, &["status"]) == "True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };
    vec![
        name(pod).into(),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_text.into(),
        age(pod, now),
        or_none(pod_ip).into(),
        or_none(s(spec, &["nodeName"])).into(),
        or_none(s(status, &["nominatedNodeName"])).into(),
        readiness_gates.into(),
    ]
}

static POD_TEMPLATE: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Containers",
            "string",
            "Names of each container in the template.",
        ),
        col(
            "Images",
            "string",
            "Images referenced by each container in the template.",
        ),
        col("Pod Labels", "string", "The labels for the pod template."),
    ],
    row: |o, _| {
        let (names, images) = container_cells(get(o, &["template", "spec"]));
        vec![
            name(o).into(),
            names,
            images,
            format_labels(get(o, &["template", "metadata", "labels"])).into(),
        ]
    },
};

static PDB: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Min Available",
            "string",
            "The minimum number of pods that must be available.",
        ),
        col(
            "Max Unavailable",
            "string",
            "The maximum number of pods that may be unavailable.",
        ),
        col(
            "Allowed Disruptions",
            "integer",
            "Calculated number of pods that may be disrupted at this time.",
        ),
        AGE,
    ],
    row: |o, now| {
        let int_or_string = |key: &str| match get(o, &["spec", key]) {
            Value::Null => "N/A".to_owned(),
            v => scalar_text(v),
        };
        vec![
            name(o).into(),
            int_or_string("minAvailable").into(),
            int_or_string("maxUnavailable").into(),
            int(o, &["status", "disruptionsAllowed"]).into(),
            age(o, now),
        ]
    },
};

static REPLICATION_CONTROLLER: Printer = Printer {
    columns: &[
        NAME,
        col("Desired", "integer", D_REPLICATION_CONTROLLER_SPEC_REPLICAS),
        col(
            "Current",
            "integer",
            D_REPLICATION_CONTROLLER_STATUS_REPLICAS,
        ),
        col(
            "Ready",
            "integer",
            D_REPLICATION_CONTROLLER_STATUS_READY_REPLICAS,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", D_REPLICATION_CONTROLLER_SPEC_SELECTOR),
    ],
    row: |o, now| {
        let (names, images) = container_cells(get(o, &["spec", "template", "spec"]));
        vec![
            name(o).into(),
            int_or(o, &["spec", "replicas"], 1).into(),
            int(o, &["status", "replicas"]).into(),
            int(o, &["status", "readyReplicas"]).into(),
            age(o, now),
            names,
            images,
            format_labels(get(o, &["spec", "selector"])).into(),
        ]
    },
};

static REPLICA_SET: Printer = Printer {
    columns: &[
        NAME,
        col("Desired", "integer", D_REPLICA_SET_SPEC_REPLICAS),
        col("Current", "integer", D_REPLICA_SET_STATUS_REPLICAS),
        col("Ready", "integer", D_REPLICA_SET_STATUS_READY_REPLICAS),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", D_REPLICA_SET_SPEC_SELECTOR),
    ],
    row: |o, now| {
        let (names, images) = container_cells(get(o, &["spec", "template", "spec"]));
        vec![
            name(o).into(),
            int_or(o, &["spec", "replicas"], 1).into(),
            int(o, &["status", "replicas"]).into(),
            int(o, &["status", "readyReplicas"]).into(),
            age(o, now),
            names,
            images,
            format_label_selector(get(o, &["spec", "selector"])).into(),
        ]
    },
};

static DAEMON_SET: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Desired",
            "integer",
            D_DAEMON_SET_STATUS_DESIRED_NUMBER_SCHEDULED,
        ),
        col(
            "Current",
            "integer",
            D_DAEMON_SET_STATUS_CURRENT_NUMBER_SCHEDULED,
        ),
        col("Ready", "integer", D_DAEMON_SET_STATUS_NUMBER_READY),
        col(
            "Up-to-date",
            "integer",
            D_DAEMON_SET_STATUS_UPDATED_NUMBER_SCHEDULED,
        ),
        col("Available", "integer", D_DAEMON_SET_STATUS_NUMBER_AVAILABLE),
        col("Node Selector", "string", D_POD_SPEC_NODE_SELECTOR),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", D_DAEMON_SET_SPEC_SELECTOR),
    ],
    row: |o, now| {
        let pod_spec = get(o, &["spec", "template", "spec"]);
        let (names, images) = container_cells(pod_spec);
        vec![
            name(o).into(),
            int(o, &["status", "desiredNumberScheduled"]).into(),
            int(o, &["status", "currentNumberScheduled"]).into(),
            int(o, &["status", "numberReady"]).into(),
            int(o, &["status", "updatedNumberScheduled"]).into(),
            int(o, &["status", "numberAvailable"]).into(),
            format_labels(get(pod_spec, &["nodeSelector"])).into(),
            age(o, now),
            names,
            images,
            format_label_selector(get(o, &["spec", "selector"])).into(),
        ]
    },
};

static JOB: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "Status of the job."),
        col("Completions", "string", D_JOB_STATUS_SUCCEEDED),
        col("Duration", "string", "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", D_JOB_SPEC_SELECTOR),
    ],
    row: job_row,
};

fn job_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int(o, &["status", "succeeded"]);
    let completions = match int_of(get(o, &["spec", "completions"])) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(o, &["spec", "parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = time_of(get(o, &["status", "startTime"]));
    let completion = time_of(get(o, &["status", "completionTime"]));
    let duration = match (start, completion) {
        (None, _) => String::new(),
        (Some(s), None) => since(s, now),
        (Some(s), Some(c)) => since(s, c),
    };
    let conditions = arr(o, &["status", "conditions"]);
    let status = if cond_true(conditions, "Complete") {
        "Complete"
    } else if cond_true(conditions, "Failed") {
        "Failed"
    } else if is_deleting(o) {
        "Terminating"
    } else if cond_true(conditions, "Suspended") {
        "Suspended"
    } else if cond_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(get(o, &["spec", "template", "spec"]));
    vec![
        name(o).into(),
        status.into(),
        completions.into(),
        duration.into(),
        age(o, now),
        names,
        images,
        format_label_selector(get(o, &["spec", "selector"])).into(),
    ]
}

static CRON_JOB: Printer = Printer {
    columns: &[
        NAME,
        col("Schedule", "string", D_CRON_JOB_SPEC_SCHEDULE),
        col("Timezone", "string", D_CRON_JOB_SPEC_TIME_ZONE),
        col("Suspend", "boolean", D_CRON_JOB_SPEC_SUSPEND),
        col("Active", "integer", D_CRON_JOB_STATUS_ACTIVE),
        col(
            "Last Schedule",
            "string",
            D_CRON_JOB_STATUS_LAST_SCHEDULE_TIME,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", D_JOB_SPEC_SELECTOR),
    ],
    row: |o, now| {
        let last = match time_of(get(o, &["status", "lastScheduleTime"])) {
            Some(t) => since(t, now),
            None => "<none>".into(),
        };
        let suspend = match get(o, &["spec", "suspend"]).as_bool() {
            Some(true) => "True",
            _ => "False",
        };
        let job_spec = get(o, &["spec", "jobTemplate", "spec"]);
        let (names, images) = container_cells(get(job_spec, &["template", "spec"]));
        vec![
            name(o).into(),
            s(o, &["spec", "schedule"]).into(),
            or_none(s(o, &["spec", "timeZone"])).into(),
            suspend.into(),
            len_of(o, &["status", "active"]).into(),
            last.into(),
            age(o, now),
            names,
            images,
            format_label_selector(get(job_spec, &["selector"])).into(),
        ]
    },
};

static SERVICE: Printer = Printer {
    columns: &[
        NAME,
        col("Type", "string", D_SERVICE_SPEC_TYPE),
        col("Cluster-IP", "string", D_SERVICE_SPEC_CLUSTER_IP),
        col("External-IP", "string", D_SERVICE_SPEC_EXTERNAL_IPS),
        col("Port(s)", "string", D_SERVICE_SPEC_PORTS),
        AGE,
        wide("Selector", "string", D_SERVICE_SPEC_SELECTOR),
    ],
    row: service_row,
};

fn service_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let spec = get(o, &["spec"]);
    let type_ = match s(spec, &["type"]) {
        "" => "ClusterIP",
        t => t,
    };
    let mut cluster_ip = arr(spec, &["clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or("");
    if cluster_ip.is_empty() {
        cluster_ip = s(spec, &["clusterIP"]);
    }
    let external_ips: Vec<&str> = arr(spec, &["externalIPs"])
        .iter()
        .map(|v| v.as_str().unwrap_or(""))
        .collect();
    let external = match type_ {
        "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".into(),
        "LoadBalancer" => {
            let lb = load_balancer_addresses(get(o, &["status", "loadBalancer"]));
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = Vec::new();
                if !lb.is_empty() {
                    all.extend(lb.split(','));
                }
                all.extend(external_ips.iter().copied());
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".into()
            }
        }
        "ExternalName" => s(spec, &["externalName"]).into(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = arr(spec, &["ports"])
        .iter()
        .map(|p| {
            let protocol = match s(p, &["protocol"]) {
                "" => "TCP",
                x => x,
            };
            let port = int(p, &["port"]);
            match int(p, &["nodePort"]) {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    vec![
        name(o).into(),
        type_.into(),
        or_none(cluster_ip).into(),
        external.into(),
        or_none(&ports.join(",")).into(),
        age(o, now),
        format_labels(get(spec, &["selector"])).into(),
    ]
}

static INGRESS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Class",
            "string",
            "The name of the IngressClass resource that should be used for additional configuration",
        ),
        col(
            "Hosts",
            "string",
            "Hosts that incoming requests are matched against before the ingress rule",
        ),
        col(
            "Address",
            "string",
            "Address is a list containing ingress points for the load-balancer",
        ),
        col("Ports", "string", "Ports of TLS configurations that open"),
        AGE,
    ],
    row: |o, now| {
        let rules = arr(o, &["spec", "rules"]);
        let mut hosts: Vec<&str> = Vec::new();
        let mut more = false;
        for rule in rules {
            if hosts.len() == 3 {
                more = true;
            }
            let host = s(rule, &["host"]);
            if !more && !host.is_empty() {
                hosts.push(host);
            }
        }
        let hosts = if hosts.is_empty() {
            "*".to_owned()
        } else if more {
            format!("{} + {} more...", hosts.join(","), rules.len() - 3)
        } else {
            hosts.join(",")
        };
        let ports = if arr(o, &["spec", "tls"]).is_empty() {
            "80"
        } else {
            "80, 443"
        };
        vec![
            name(o).into(),
            or_none(s(o, &["spec", "ingressClassName"])).into(),
            hosts.into(),
            load_balancer_addresses(get(o, &["status", "loadBalancer"])).into(),
            ports.into(),
            age(o, now),
        ]
    },
};

static INGRESS_CLASS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Controller",
            "string",
            "Controller that is responsible for handling this class",
        ),
        col(
            "Parameters",
            "string",
            "A reference to a resource with additional parameters",
        ),
        AGE,
    ],
    row: |o, now| {
        let p = get(o, &["spec", "parameters"]);
        let parameters = if p.is_object() {
            let mut text = s(p, &["kind"]).to_owned();
            if let Some(group) = get(p, &["apiGroup"]).as_str() {
                text = format!("{text}.{group}");
            }
            format!("{text}/{}", s(p, &["name"]))
        } else {
            "<none>".into()
        };
        vec![
            name(o).into(),
            s(o, &["spec", "controller"]).into(),
            parameters.into(),
            age(o, now),
        ]
    },
};

static STATEFUL_SET: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", "Number of the pod with ready state"),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    row: |o, now| {
        let (names, images) = container_cells(get(o, &["spec", "template", "spec"]));
        let ready = int(o, &["status", "readyReplicas"]);
        let desired = int_or(o, &["spec", "replicas"], 1);
        vec![
            name(o).into(),
            format!("{ready}/{desired}").into(),
            age(o, now),
            names,
            images,
        ]
    },
};

static ENDPOINTS: Printer = Printer {
    columns: &[NAME, col("Endpoints", "string", D_ENDPOINTS_SUBSETS), AGE],
    row: |o, now| vec![name(o).into(), format_endpoints(o).into(), age(o, now)],
};

/// `formatEndpoints` with all ports.
fn format_endpoints(o: &Value) -> String {
    let subsets = arr(o, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addresses = arr(ss, &["addresses"]);
        let ports = arr(ss, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(s(a, &["ip"]).into());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(s(a, &["ip"]), int(port, &["port"])));
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - MAX)
    } else {
        ret
    }
}

static ENDPOINT_SLICE: Printer = Printer {
    columns: &[
        NAME,
        col("AddressType", "string", D_ENDPOINT_SLICE_ADDRESS_TYPE),
        col("Ports", "string", D_ENDPOINT_SLICE_PORTS),
        col("Endpoints", "string", D_ENDPOINT_SLICE_ENDPOINTS),
        AGE,
    ],
    row: |o, now| {
        const MAX: usize = 3;
        let ports = arr(o, &["ports"]);
        let port_list: Vec<String> = ports
            .iter()
            .take(MAX)
            .map(|p| match (get(p, &["port"]), get(p, &["name"])) {
                (n, _) if !n.is_null() => int_of(n).unwrap_or(0).to_string(),
                (_, Value::String(name)) => name.clone(),
                _ => "*".into(),
            })
            .collect();
        let addresses: Vec<String> = arr(o, &["endpoints"])
            .iter()
            .flat_map(|e| arr(e, &["addresses"]))
            .map(|a| a.as_str().unwrap_or("").to_owned())
            .collect();
        let shown: Vec<String> = addresses.iter().take(MAX).cloned().collect();
        vec![
            name(o).into(),
            s(o, &["addressType"]).into(),
            list_with_more(&port_list, ports.len(), MAX).into(),
            list_with_more(&shown, addresses.len(), MAX).into(),
            age(o, now),
        ]
    },
};

static NODE: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "The status of the node"),
        col("Roles", "string", "The roles of the node"),
        AGE,
        col("Version", "string", D_NODE_SYSTEM_INFO_KUBELET_VERSION),
        wide("Internal-IP", "string", D_NODE_STATUS_ADDRESSES),
        wide("External-IP", "string", D_NODE_STATUS_ADDRESSES),
        wide("OS-Image", "string", D_NODE_SYSTEM_INFO_OS_IMAGE),
        wide(
            "Kernel-Version",
            "string",
            D_NODE_SYSTEM_INFO_KERNEL_VERSION,
        ),
        wide(
            "Container-Runtime",
            "string",
            D_NODE_SYSTEM_INFO_CONTAINER_RUNTIME_VERSION,
        ),
    ],
    row: |o, now| {
        let ready = arr(o, &["status", "conditions"])
            .iter()
            .rev()
            .find(|c| s(c, &["type"]) == "Ready");
        let mut status = vec![match ready {
            Some(c) if s(c, &["status"]) == "True" => "Ready",
            Some(_) => "NotReady",
            None => "Unknown",
        }];
        if get(o, &["spec", "unschedulable"]).as_bool() == Some(true) {
            status.push("SchedulingDisabled");
        }
        let mut roles: Vec<&str> = get(o, &["metadata", "labels"])
            .as_object()
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| {
                        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                            (!role.is_empty()).then_some(role)
                        } else if k == "kubernetes.io/role" {
                            v.as_str().filter(|r| !r.is_empty())
                        } else {
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        roles.sort_unstable();
        roles.dedup();
        let address = |t: &str| {
            arr(o, &["status", "addresses"])
                .iter()
                .find(|a| s(a, &["type"]) == t)
                .map_or("<none>", |a| s(a, &["address"]))
                .to_owned()
        };
        let info = get(o, &["status", "nodeInfo"]);
        let unknown = |k: &str| match s(info, &[k]) {
            "" => "<unknown>".to_owned(),
            v => v.to_owned(),
        };
        vec![
            name(o).into(),
            status.join(",").into(),
            or_none(&roles.join(",")).into(),
            age(o, now),
            s(info, &["kubeletVersion"]).into(),
            address("InternalIP").into(),
            address("ExternalIP").into(),
            unknown("osImage").into(),
            unknown("kernelVersion").into(),
            unknown("containerRuntimeVersion").into(),
        ]
    },
};

static EVENT: Printer = Printer {
    columns: &[
        col("Last Seen", "string", D_EVENT_LAST_TIMESTAMP),
        col("Type", "string", D_EVENT_TYPE),
        col("Reason", "string", D_EVENT_REASON),
        col("Object", "string", D_EVENT_INVOLVED_OBJECT),
        wide("Subobject", "string", D_OBJECT_REFERENCE_FIELD_PATH),
        wide("Source", "string", D_EVENT_SOURCE),
        col("Message", "string", D_EVENT_MESSAGE),
        wide("First Seen", "string", D_EVENT_FIRST_TIMESTAMP),
        wide("Count", "string", D_EVENT_COUNT),
        Spec {
            name: "Name",
            type_: "string",
            format: "name",
            priority: 1,
            description: D_OBJECT_META_NAME,
        },
    ],
    row: event_row,
};

/// One printer for both Event shapes: core/v1 field names and their events.k8s.io/v1 names
/// (`regarding`, `note`, `deprecated*`) do not overlap, so either is read.
fn event_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let either = |a: &str, b: &str| match get(o, &[a]) {
        Value::Null => get(o, &[b]),
        v => v,
    };
    let involved = either("involvedObject", "regarding");
    let source = either("source", "deprecatedSource");
    let micro = |v: &Value| translate_since(v, now);
    let first_time = either("firstTimestamp", "deprecatedFirstTimestamp");
    let first = if time_of(first_time).is_some() {
        translate_since(first_time, now)
    } else {
        micro(get(o, &["eventTime"]))
    };
    let last_time = either("lastTimestamp", "deprecatedLastTimestamp");
    let mut last = if time_of(last_time).is_some() {
        translate_since(last_time, now)
    } else {
        first.clone()
    };
    let mut count = int_of(either("count", "deprecatedCount")).unwrap_or(0);
    let series = get(o, &["series"]);
    if series.is_object() {
        last = micro(get(series, &["lastObservedTime"]));
        count = int(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }
    let kind = s(involved, &["kind"]).to_lowercase();
    let involved_name = s(involved, &["name"]);
    let target = if involved_name.is_empty() {
        kind
    } else {
        format!("{kind}/{involved_name}")
    };
    let first_non_empty = |a: &str, b: &str| if a.is_empty() { b } else { a }.to_owned();
    let component = first_non_empty(s(source, &["component"]), s(o, &["reportingController"]));
    let host = first_non_empty(s(source, &["host"]), s(o, &["reportingInstance"]));
    let source_text = if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    };
    let message = match get(o, &["message"]) {
        Value::String(m) => m.as_str(),
        _ => s(o, &["note"]),
    };
    vec![
        last.into(),
        s(o, &["type"]).into(),
        s(o, &["reason"]).into(),
        target.into(),
        s(involved, &["fieldPath"]).into(),
        source_text.into(),
        message.trim().into(),
        first.into(),
        count.into(),
        name(o).into(),
    ]
}

static NAMESPACE: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "The status of the namespace"),
        AGE,
    ],
    row: |o, now| {
        vec![
            name(o).into(),
            s(o, &["status", "phase"]).into(),
            age(o, now),
        ]
    },
};

static SECRET: Printer = Printer {
    columns: &[
        NAME,
        col("Type", "string", D_SECRET_TYPE),
        col("Data", "string", D_SECRET_DATA),
        AGE,
    ],
    row: |o, now| {
        vec![
            name(o).into(),
            s(o, &["type"]).into(),
            len_of(o, &["data"]).into(),
            age(o, now),
        ]
    },
};

static SERVICE_ACCOUNT: Printer = Printer {
    columns: &[
        NAME,
        col("Secrets", "string", D_SERVICE_ACCOUNT_SECRETS),
        AGE,
    ],
    row: |o, now| vec![name(o).into(), len_of(o, &["secrets"]).into(), age(o, now)],
};

static CONFIG_MAP: Printer = Printer {
    columns: &[NAME, col("Data", "string", D_CONFIG_MAP_DATA), AGE],
    row: |o, now| {
        let n = len_of(o, &["data"]) + len_of(o, &["binaryData"]);
        vec![name(o).into(), n.into(), age(o, now)]
    },
};

static PERSISTENT_VOLUME: Printer = Printer {
    columns: &[
        NAME,
        col("Capacity", "string", D_PERSISTENT_VOLUME_SPEC_CAPACITY),
        col(
            "Access Modes",
            "string",
            D_PERSISTENT_VOLUME_SPEC_ACCESS_MODES,
        ),
        col(
            "Reclaim Policy",
            "string",
            D_PERSISTENT_VOLUME_SPEC_PERSISTENT_VOLUME_RECLAIM_POLICY,
        ),
        col("Status", "string", D_PERSISTENT_VOLUME_STATUS_PHASE),
        col("Claim", "string", D_PERSISTENT_VOLUME_SPEC_CLAIM_REF),
        col("StorageClass", "string", "StorageClass of the pv"),
        col(
            "VolumeAttributesClass",
            "string",
            "VolumeAttributesClass of the pv",
        ),
        col("Reason", "string", D_PERSISTENT_VOLUME_STATUS_REASON),
        AGE,
        wide("VolumeMode", "string", D_PERSISTENT_VOLUME_SPEC_VOLUME_MODE),
    ],
    row: |o, now| {
        let spec = get(o, &["spec"]);
        let claim = get(spec, &["claimRef"]);
        let claim = if claim.is_object() {
            format!("{}/{}", s(claim, &["namespace"]), s(claim, &["name"]))
        } else {
            String::new()
        };
        let phase = if is_deleting(o) {
            "Terminating"
        } else {
            s(o, &["status", "phase"])
        };
        let unset = |k: &str| match get(spec, &[k]).as_str() {
            Some(v) => v.to_owned(),
            None => "<unset>".to_owned(),
        };
        vec![
            name(o).into(),
            scalar_text(get(spec, &["capacity", "storage"])).into(),
            access_modes(arr(spec, &["accessModes"])).into(),
            s(spec, &["persistentVolumeReclaimPolicy"]).into(),
            phase.into(),
            claim.into(),
            storage_class_of(o).into(),
            unset("volumeAttributesClassName").into(),
            s(o, &["status", "reason"]).into(),
            age(o, now),
            unset("volumeMode").into(),
        ]
    },
};

static PERSISTENT_VOLUME_CLAIM: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", D_PERSISTENT_VOLUME_CLAIM_STATUS_PHASE),
        col(
            "Volume",
            "string",
            D_PERSISTENT_VOLUME_CLAIM_SPEC_VOLUME_NAME,
        ),
        col(
            "Capacity",
            "string",
            D_PERSISTENT_VOLUME_CLAIM_STATUS_CAPACITY,
        ),
        col(
            "Access Modes",
            "string",
            D_PERSISTENT_VOLUME_CLAIM_STATUS_ACCESS_MODES,
        ),
        col("StorageClass", "string", "StorageClass of the pvc"),
        col(
            "VolumeAttributesClass",
            "string",
            "VolumeAttributesClass of the pvc",
        ),
        AGE,
        wide(
            "VolumeMode",
            "string",
            D_PERSISTENT_VOLUME_CLAIM_SPEC_VOLUME_MODE,
        ),
    ],
    row: |o, now| {
        let spec = get(o, &["spec"]);
        let volume = s(spec, &["volumeName"]);
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                scalar_text(get(o, &["status", "capacity", "storage"])),
                access_modes(arr(o, &["status", "accessModes"])),
            )
        };
        let phase = if is_deleting(o) {
            "Terminating"
        } else {
            s(o, &["status", "phase"])
        };
        let unset = |k: &str| match get(spec, &[k]).as_str() {
            Some(v) => v.to_owned(),
            None => "<unset>".to_owned(),
        };
        vec![
            name(o).into(),
            phase.into(),
            volume.into(),
            capacity.into(),
            modes.into(),
            storage_class_of(o).into(),
            unset("volumeAttributesClassName").into(),
            age(o, now),
            unset("volumeMode").into(),
        ]
    },
};

static DEPLOYMENT: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", "Number of the pod with ready state"),
        col("Up-to-date", "string", D_DEPLOYMENT_STATUS_UPDATED_REPLICAS),
        col(
            "Available",
            "string",
            D_DEPLOYMENT_STATUS_AVAILABLE_REPLICAS,
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", D_DEPLOYMENT_SPEC_SELECTOR),
    ],
    row: |o, now| {
        let (names, images) = container_cells(get(o, &["spec", "template", "spec"]));
        let ready = int(o, &["status", "readyReplicas"]);
        let desired = int_or(o, &["spec", "replicas"], 1);
        let selector =
            selector_string(get(o, &["spec", "selector"])).unwrap_or_else(|()| "<invalid>".into());
        vec![
            name(o).into(),
            format!("{ready}/{desired}").into(),
            int(o, &["status", "updatedReplicas"]).into(),
            int(o, &["status", "availableReplicas"]).into(),
            age(o, now),
            names,
            images,
            selector.into(),
        ]
    },
};

static HPA: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Reference",
            "string",
            D_HORIZONTAL_POD_AUTOSCALER_SPEC_SCALE_TARGET_REF,
        ),
        col(
            "Targets",
            "string",
            D_HORIZONTAL_POD_AUTOSCALER_SPEC_METRICS,
        ),
        col(
            "MinPods",
            "string",
            D_HORIZONTAL_POD_AUTOSCALER_SPEC_MIN_REPLICAS,
        ),
        col(
            "MaxPods",
            "string",
            D_HORIZONTAL_POD_AUTOSCALER_SPEC_MAX_REPLICAS,
        ),
        col(
            "Replicas",
            "string",
            D_HORIZONTAL_POD_AUTOSCALER_STATUS_CURRENT_REPLICAS,
        ),
        AGE,
    ],
    row: |o, now| {
        let spec = get(o, &["spec"]);
        let target = get(spec, &["scaleTargetRef"]);
        let min = match int_of(get(spec, &["minReplicas"])) {
            Some(m) => m.to_string(),
            None => "<unset>".into(),
        };
        vec![
            name(o).into(),
            format!("{}/{}", s(target, &["kind"]), s(target, &["name"])).into(),
            hpa_targets(o).into(),
            min.into(),
            int(spec, &["maxReplicas"]).into(),
            int(o, &["status", "currentReplicas"]).into(),
            age(o, now),
        ]
    },
};

/// `formatHPAMetrics` over autoscaling/v2 metrics (autoscaling/v1's CPU target is read as a
/// CPU utilisation metric; no metrics means the apiserver's default, CPU at 80%).
fn hpa_targets(o: &Value) -> String {
    let spec = get(o, &["spec"]);
    let v1_cpu = get(spec, &["targetCPUUtilizationPercentage"]);
    let mut specs: Vec<Value> = arr(spec, &["metrics"]).to_vec();
    let mut statuses: Vec<Value> = arr(o, &["status", "currentMetrics"]).to_vec();
    if specs.is_empty() {
        let utilization = int_of(v1_cpu).unwrap_or(80);
        specs.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}}}));
        if let Some(current) = int_of(get(o, &["status", "currentCPUUtilizationPercentage"])) {
            statuses = vec![
                json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}),
            ];
        }
    }
    const MAX: usize = 2;
    let mut list: Vec<String> = Vec::new();
    for (i, m) in specs.iter().enumerate() {
        let status = statuses.get(i).unwrap_or(&NULL);
        let q = |v: &Value| scalar_text(v);
        let text = match s(m, &["type"]) {
            kind @ ("External" | "Object") => {
                let key = if kind == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = get(m, &[key, "target"]);
                let st = get(status, &[key]);
                if present(target, &["averageValue"]) {
                    let current = match get(st, &["current", "averageValue"]) {
                        v if st.is_object() && !v.is_null() => q(v),
                        _ => "<unknown>".into(),
                    };
                    format!("{current}/{} (avg)", q(get(target, &["averageValue"])))
                } else {
                    let current = if st.is_object() {
                        q(get(st, &["current", "value"]))
                    } else {
                        "<unknown>".into()
                    };
                    format!("{current}/{}", q(get(target, &["value"])))
                }
            }
            "Pods" => {
                let st = get(status, &["pods"]);
                let current = if st.is_object() {
                    q(get(st, &["current", "averageValue"]))
                } else {
                    "<unknown>".into()
                };
                format!(
                    "{current}/{}",
                    q(get(m, &["pods", "target", "averageValue"]))
                )
            }
            kind @ ("Resource" | "ContainerResource") => {
                let key = if kind == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let source = get(m, &[key]);
                let target = get(source, &["target"]);
                let st = get(status, &[key]);
                let resource = s(source, &["name"]);
                if present(target, &["averageValue"]) {
                    let current = if st.is_object() {
                        q(get(st, &["current", "averageValue"]))
                    } else {
                        "<unknown>".into()
                    };
                    format!(
                        "{resource}: {current}/{}",
                        q(get(target, &["averageValue"]))
                    )
                } else {
                    let current = match int_of(get(st, &["current", "averageUtilization"])) {
                        Some(u) => format!("{u}%"),
                        None => "<unknown>".into(),
                    };
                    let goal = match int_of(get(target, &["averageUtilization"])) {
                        Some(u) => format!("{u}%"),
                        None => "<auto>".into(),
                    };
                    format!("{resource}: {current}/{goal}")
                }
            }
            _ => "<unknown type>".into(),
        };
        list.push(text);
    }
    let count = list.len();
    if count > MAX {
        list.truncate(MAX);
        format!("{} + {} more...", list.join(", "), count - MAX)
    } else {
        list.join(", ")
    }
}

static NETWORK_POLICY: Printer = Printer {
    columns: &[
        NAME,
        col("Pod-Selector", "string", D_NETWORK_POLICY_SPEC_POD_SELECTOR),
        AGE,
    ],
    row: |o, now| {
        vec![
            name(o).into(),
            format_label_selector(get(o, &["spec", "podSelector"])).into(),
            age(o, now),
        ]
    },
};

static ROLE_BINDING: Printer = Printer {
    columns: &[
        NAME,
        col("Role", "string", D_ROLE_BINDING_ROLE_REF),
        AGE,
        wide("Users", "string", "Users in the roleBinding"),
        wide("Groups", "string", "Groups in the roleBinding"),
        wide(
            "ServiceAccounts",
            "string",
            "ServiceAccounts in the roleBinding",
        ),
    ],
    row: binding_row,
};

static CLUSTER_ROLE_BINDING: Printer = Printer {
    columns: &[
        NAME,
        col("Role", "string", D_CLUSTER_ROLE_BINDING_ROLE_REF),
        AGE,
        wide("Users", "string", "Users in the clusterRoleBinding"),
        wide("Groups", "string", "Groups in the clusterRoleBinding"),
        wide(
            "ServiceAccounts",
            "string",
            "ServiceAccounts in the clusterRoleBinding",
        ),
    ],
    row: binding_row,
};

fn binding_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for subject in arr(o, &["subjects"]) {
        let n = s(subject, &["name"]).to_owned();
        match s(subject, &["kind"]) {
            "ServiceAccount" => sas.push(format!("{}/{n}", s(subject, &["namespace"]))),
            "User" => users.push(n),
            "Group" => groups.push(n),
            _ => {}
        }
    }
    vec![
        name(o).into(),
        format!(
            "{}/{}",
            s(o, &["roleRef", "kind"]),
            s(o, &["roleRef", "name"])
        )
        .into(),
        age(o, now),
        users.join(", ").into(),
        groups.join(", ").into(),
        sas.join(", ").into(),
    ]
}

static LEASE: Printer = Printer {
    columns: &[
        NAME,
        col("Holder", "string", D_LEASE_SPEC_HOLDER_IDENTITY),
        AGE,
    ],
    row: |o, now| {
        vec![
            name(o).into(),
            s(o, &["spec", "holderIdentity"]).into(),
            age(o, now),
        ]
    },
};

static STORAGE_CLASS: Printer = Printer {
    columns: &[
        NAME,
        col("Provisioner", "string", D_STORAGE_CLASS_PROVISIONER),
        col("ReclaimPolicy", "string", D_STORAGE_CLASS_RECLAIM_POLICY),
        col(
            "VolumeBindingMode",
            "string",
            D_STORAGE_CLASS_VOLUME_BINDING_MODE,
        ),
        col(
            "AllowVolumeExpansion",
            "string",
            D_STORAGE_CLASS_ALLOW_VOLUME_EXPANSION,
        ),
        AGE,
    ],
    row: |o, now| {
        let annotations = get(o, &["metadata", "annotations"]);
        let is_default = [
            "storageclass.kubernetes.io/is-default-class",
            "storageclass.beta.kubernetes.io/is-default-class",
        ]
        .iter()
        .any(|k| get(annotations, &[k]).as_str() == Some("true"));
        let mut display = name(o).to_owned();
        if is_default {
            display.push_str(" (default)");
        }
        let or = |k: &str, d: &str| match s(o, &[k]) {
            "" => d.to_owned(),
            v => v.to_owned(),
        };
        vec![
            display.into(),
            s(o, &["provisioner"]).into(),
            or("reclaimPolicy", "Delete").into(),
            or("volumeBindingMode", "Immediate").into(),
            get(o, &["allowVolumeExpansion"])
                .as_bool()
                .unwrap_or(false)
                .into(),
            age(o, now),
        ]
    },
};

static CONTROLLER_REVISION: Printer = Printer {
    columns: &[
        NAME,
        col("Controller", "string", "Controller of the object"),
        col("Revision", "string", D_CONTROLLER_REVISION_REVISION),
        AGE,
    ],
    row: |o, now| {
        let controller = arr(o, &["metadata", "ownerReferences"])
            .iter()
            .find(|r| get(r, &["controller"]).as_bool() == Some(true))
            .map_or_else(
                || "<none>".to_owned(),
                |r| {
                    let kind = s(r, &["kind"]);
                    let api_version = s(r, &["apiVersion"]);
                    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                    let n = s(r, &["name"]);
                    match (kind, group) {
                        ("", "") => n.to_owned(),
                        (k, "") => format!("{}/{n}", k.to_lowercase()),
                        (k, g) => format!("{}.{}/{n}", k.to_lowercase(), g.to_lowercase()),
                    }
                },
            );
        vec![
            name(o).into(),
            controller.into(),
            int(o, &["revision"]).into(),
            age(o, now),
        ]
    },
};

static RESOURCE_QUOTA: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Request",
            "string",
            "Request represents a minimum amount of cpu/memory that a container may consume.",
        ),
        col(
            "Limit",
            "string",
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        ),
        AGE,
    ],
    row: |o, now| {
        let hard = get(o, &["status", "hard"]);
        let mut resources: Vec<&String> = hard
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        resources.sort();
        let (mut requests, mut limits) = (Vec::new(), Vec::new());
        for r in resources {
            let used = scalar_text(get(o, &["status", "used", r]));
            let entry = format!("{r}: {used}/{}", scalar_text(get(hard, &[r])));
            let pieces: Vec<&str> = r.split('.').collect();
            if pieces.len() > 1 && pieces[0] == "limits" {
                limits.push(entry);
            } else {
                requests.push(entry);
            }
        }
        vec![
            name(o).into(),
            requests.join(", ").into(),
            limits.join(", ").into(),
            age(o, now),
        ]
    },
};

static PRIORITY_CLASS: Printer = Printer {
    columns: &[
        NAME,
        col("Value", "integer", D_PRIORITY_CLASS_VALUE),
        col("Global-Default", "boolean", D_PRIORITY_CLASS_GLOBAL_DEFAULT),
        AGE,
        col(
            "PreemptionPolicy",
            "string",
            D_PRIORITY_CLASS_PREEMPTION_POLICY,
        ),
    ],
    row: |o, now| {
        vec![
            name(o).into(),
            int(o, &["value"]).into(),
            get(o, &["globalDefault"]).as_bool().unwrap_or(false).into(),
            age(o, now),
            s(o, &["preemptionPolicy"]).into(),
        ]
    },
};

static WEBHOOKS: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Webhooks",
            "integer",
            "Webhooks indicates the number of webhooks registered in this configuration",
        ),
        AGE,
    ],
    row: |o, now| vec![name(o).into(), len_of(o, &["webhooks"]).into(), age(o, now)],
};

// ---------------------------------------------------------------------------------------------
// Column descriptions: the Go `SwaggerDoc()` texts the printers reference (GA API versions).

const D_OBJECT_META_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const D_OBJECT_META_CREATION_TIMESTAMP: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const D_POD_STATUS_POD_IP: &str = "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";
const D_POD_SPEC_NODE_NAME: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";
const D_POD_STATUS_NOMINATED_NODE_NAME: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
const D_POD_SPEC_READINESS_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";
const D_POD_SPEC_NODE_SELECTOR: &str = "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/";
const D_REPLICATION_CONTROLLER_SPEC_REPLICAS: &str = "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller";
const D_REPLICATION_CONTROLLER_STATUS_REPLICAS: &str = "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller";
const D_REPLICATION_CONTROLLER_STATUS_READY_REPLICAS: &str =
    "The number of ready replicas for this replication controller.";
const D_REPLICATION_CONTROLLER_SPEC_SELECTOR: &str = "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
const D_REPLICA_SET_SPEC_REPLICAS: &str = "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
const D_REPLICA_SET_STATUS_REPLICAS: &str = "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
const D_REPLICA_SET_STATUS_READY_REPLICAS: &str =
    "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.";
const D_REPLICA_SET_SPEC_SELECTOR: &str = "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
const D_DAEMON_SET_STATUS_DESIRED_NUMBER_SCHEDULED: &str = "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const D_DAEMON_SET_STATUS_CURRENT_NUMBER_SCHEDULED: &str = "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const D_DAEMON_SET_STATUS_NUMBER_READY: &str = "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.";
const D_DAEMON_SET_STATUS_UPDATED_NUMBER_SCHEDULED: &str =
    "The total number of nodes that are running updated daemon pod";
const D_DAEMON_SET_STATUS_NUMBER_AVAILABLE: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)";
const D_DAEMON_SET_SPEC_SELECTOR: &str = "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
const D_JOB_STATUS_SUCCEEDED: &str = "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.";
const D_JOB_SPEC_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
const D_CRON_JOB_SPEC_SCHEDULE: &str =
    "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.";
const D_CRON_JOB_SPEC_TIME_ZONE: &str = "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones";
const D_CRON_JOB_SPEC_SUSPEND: &str = "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.";
const D_CRON_JOB_STATUS_ACTIVE: &str = "A list of pointers to currently running jobs.";
const D_CRON_JOB_STATUS_LAST_SCHEDULE_TIME: &str =
    "Information when was the last time the job was successfully scheduled.";
const D_SERVICE_SPEC_TYPE: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
const D_SERVICE_SPEC_CLUSTER_IP: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const D_SERVICE_SPEC_EXTERNAL_IPS: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
const D_SERVICE_SPEC_PORTS: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const D_SERVICE_SPEC_SELECTOR: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";
const D_ENDPOINTS_SUBSETS: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";
const D_NODE_SYSTEM_INFO_KUBELET_VERSION: &str = "Kubelet Version reported by the node.";
const D_NODE_STATUS_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
const D_NODE_SYSTEM_INFO_OS_IMAGE: &str =
    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).";
const D_NODE_SYSTEM_INFO_KERNEL_VERSION: &str =
    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).";
const D_NODE_SYSTEM_INFO_CONTAINER_RUNTIME_VERSION: &str = "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).";
const D_EVENT_LAST_TIMESTAMP: &str =
    "The time at which the most recent occurrence of this event was recorded.";
const D_EVENT_TYPE: &str =
    "Type of this event (Normal, Warning), new types could be added in the future";
const D_EVENT_REASON: &str = "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.";
const D_EVENT_INVOLVED_OBJECT: &str = "The object that this event is about.";
const D_OBJECT_REFERENCE_FIELD_PATH: &str = "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.";
const D_EVENT_SOURCE: &str =
    "The component reporting this event. Should be a short machine understandable string.";
const D_EVENT_MESSAGE: &str = "A human-readable description of the status of this operation.";
const D_EVENT_FIRST_TIMESTAMP: &str =
    "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)";
const D_EVENT_COUNT: &str = "The number of times this event has occurred.";
const D_SECRET_TYPE: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";
const D_SECRET_DATA: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";
const D_SERVICE_ACCOUNT_SECRETS: &str = "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret";
const D_PERSISTENT_VOLUME_SPEC_CAPACITY: &str = "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity";
const D_PERSISTENT_VOLUME_SPEC_ACCESS_MODES: &str = "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes";
const D_PERSISTENT_VOLUME_SPEC_PERSISTENT_VOLUME_RECLAIM_POLICY: &str = "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming";
const D_PERSISTENT_VOLUME_STATUS_PHASE: &str = "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase";
const D_PERSISTENT_VOLUME_SPEC_CLAIM_REF: &str = "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding";
const D_PERSISTENT_VOLUME_STATUS_REASON: &str = "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.";
const D_PERSISTENT_VOLUME_SPEC_VOLUME_MODE: &str = "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.";
const D_PERSISTENT_VOLUME_CLAIM_STATUS_PHASE: &str =
    "phase represents the current phase of PersistentVolumeClaim.";
const D_PERSISTENT_VOLUME_CLAIM_SPEC_VOLUME_NAME: &str =
    "volumeName is the binding reference to the PersistentVolume backing this claim.";
const D_PERSISTENT_VOLUME_CLAIM_STATUS_CAPACITY: &str =
    "capacity represents the actual resources of the underlying volume.";
const D_PERSISTENT_VOLUME_CLAIM_STATUS_ACCESS_MODES: &str = "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1";
const D_PERSISTENT_VOLUME_CLAIM_SPEC_VOLUME_MODE: &str = "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.";
const D_DEPLOYMENT_STATUS_UPDATED_REPLICAS: &str = "Total number of non-terminating pods targeted by this deployment that have the desired template spec.";
const D_DEPLOYMENT_STATUS_AVAILABLE_REPLICAS: &str = "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.";
const D_DEPLOYMENT_SPEC_SELECTOR: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";
const D_HORIZONTAL_POD_AUTOSCALER_SPEC_SCALE_TARGET_REF: &str = "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.";
const D_HORIZONTAL_POD_AUTOSCALER_SPEC_METRICS: &str = "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond. If not set, the default metric will be set to 80% average CPU utilization.";
const D_HORIZONTAL_POD_AUTOSCALER_SPEC_MIN_REPLICAS: &str = "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available.";
const D_HORIZONTAL_POD_AUTOSCALER_SPEC_MAX_REPLICAS: &str = "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.";
const D_HORIZONTAL_POD_AUTOSCALER_STATUS_CURRENT_REPLICAS: &str = "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.";
const D_CONFIG_MAP_DATA: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";
const D_NETWORK_POLICY_SPEC_POD_SELECTOR: &str = "podSelector selects the pods to which this NetworkPolicy object applies. The array of rules is applied to any pods selected by this field. An empty selector matches all pods in the policy's namespace. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is optional. If it is not specified, it defaults to an empty selector.";
const D_ROLE_BINDING_ROLE_REF: &str = "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.";
const D_CLUSTER_ROLE_BINDING_ROLE_REF: &str = "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.";
const D_LEASE_SPEC_HOLDER_IDENTITY: &str = "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.";
const D_STORAGE_CLASS_PROVISIONER: &str = "provisioner indicates the type of the provisioner.";
const D_STORAGE_CLASS_RECLAIM_POLICY: &str = "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.";
const D_STORAGE_CLASS_VOLUME_BINDING_MODE: &str = "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.";
const D_STORAGE_CLASS_ALLOW_VOLUME_EXPANSION: &str =
    "allowVolumeExpansion shows whether the storage class allow volume expand.";
const D_CONTROLLER_REVISION_REVISION: &str =
    "Revision indicates the revision of the state represented by Data.";
const D_PRIORITY_CLASS_VALUE: &str = "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.";
const D_PRIORITY_CLASS_GLOBAL_DEFAULT: &str = "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.";
const D_PRIORITY_CLASS_PREEMPTION_POLICY: &str = "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.";
const D_ENDPOINT_SLICE_ADDRESS_TYPE: &str = "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type.";
const D_ENDPOINT_SLICE_PORTS: &str = "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list.";
const D_ENDPOINT_SLICE_ENDPOINTS: &str = "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.";

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    /// An RFC 3339 time `secs` seconds before [`now`].
    fn ago(secs: i64) -> String {
        let t = now() - jiff::SignedDuration::from_secs(secs);
        t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    fn names(cols: &[Column]) -> Vec<&str> {
        cols.iter().map(|c| c.name.as_str()).collect()
    }

    fn wide_names(cols: &[Column]) -> Vec<&str> {
        cols.iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name.as_str())
            .collect()
    }

    fn row(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
        cells(&builtin_columns(group, kind), group, kind, obj, now())
    }

    fn route_crd_columns() -> Value {
        json!([
            {"name": "From", "type": "string", "jsonPath": ".spec.from",
             "description": "The URL (or ssh:// name) this route serves"},
            {"name": "To", "type": "string", "jsonPath": ".spec.to",
             "description": "Where requests are sent"},
            {"name": "Ready", "type": "string",
             "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status",
             "description": "Whether the route is being served"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ])
    }

    fn route(status: Value) -> Value {
        json!({
            "apiVersion": "portcullis.dev/v1alpha1",
            "kind": "Route",
            "metadata": {"name": "web", "namespace": "apps", "creationTimestamp": ago(300)},
            "spec": {
                "from": "https://web.example.com",
                "to": [{"service": {"port": 80, "name": "web"}, "weight": 1}]
            },
            "status": status
        })
    }

    #[test]
    fn human_duration_matches_apimachinery() {
        let s = |secs: u64| human_duration(Duration::from_secs(secs));
        let h = 3600;
        assert_eq!(s(0), "0s");
        assert_eq!(human_duration(Duration::from_millis(999)), "0s");
        assert_eq!(s(1), "1s");
        assert_eq!(s(5), "5s");
        assert_eq!(s(70), "70s");
        assert_eq!(human_duration(Duration::from_millis(119_999)), "119s");
        assert_eq!(s(120), "2m");
        assert_eq!(s(121), "2m1s");
        assert_eq!(s(182), "3m2s");
        assert_eq!(s(190), "3m10s");
        assert_eq!(human_duration(Duration::from_millis(599_999)), "9m59s");
        assert_eq!(s(600), "10m");
        assert_eq!(s(601), "10m");
        assert_eq!(s(70 * 60), "70m");
        assert_eq!(
            human_duration(Duration::from_millis(3 * h * 1000 - 1)),
            "179m"
        );
        assert_eq!(s(3 * h), "3h");
        assert_eq!(s(3 * h + 60), "3h1m");
        assert_eq!(s(5 * h), "5h");
        assert_eq!(
            human_duration(Duration::from_millis(8 * h * 1000 - 1)),
            "7h59m"
        );
        assert_eq!(s(8 * h), "8h");
        assert_eq!(s(8 * h + 59 * 60), "8h");
        assert_eq!(s(47 * h), "47h");
        assert_eq!(s(48 * h), "2d");
        assert_eq!(s(49 * h), "2d1h");
        assert_eq!(s(76 * h), "3d4h");
        assert_eq!(
            human_duration(Duration::from_millis(8 * 24 * h * 1000 - 1)),
            "7d23h"
        );
        assert_eq!(s(8 * 24 * h), "8d");
        assert_eq!(s((8 * 24 + 23) * h), "8d");
        assert_eq!(s(367 * 24 * h), "367d");
        assert_eq!(
            human_duration(Duration::from_millis(2 * 365 * 24 * h * 1000 - 1)),
            "729d"
        );
        assert_eq!(s(2 * 365 * 24 * h), "2y");
        assert_eq!(s((365 * 2 * 24 + 25) * h), "2y1d");
        assert_eq!(s((2 * 365 + 1) * 24 * h), "2y1d");
        assert_eq!(
            human_duration(Duration::from_millis(8 * 365 * 24 * h * 1000 - 1)),
            "7y364d"
        );
        assert_eq!(s(8 * 365 * 24 * h), "8y");
        assert_eq!(s(9 * 365 * 24 * h), "9y");
        assert_eq!(s(3 * 365 * 24 * h), "3y");
        assert_eq!(s((2 * 365 * 24 + 23) * h), "2y");
        assert_eq!(s(8 * 365 * 24 * h + 364 * 24 * h), "8y");
        // Beyond what a Go Duration holds: clamped, no overflow.
        assert_eq!(human_duration(Duration::MAX), "292y");
        // Signed (future timestamps).
        assert_eq!(human_duration_nanos(-2_000_000_000), "<invalid>");
        assert_eq!(human_duration_nanos(-2_000_000_000 + 1), "0s");
        assert_eq!(human_duration_nanos(-1), "0s");
        assert_eq!(human_duration_nanos(i64::MIN), "<invalid>");
    }

    #[test]
    fn route_crd_columns_and_cells() {
        let cols = custom_columns(&route_crd_columns()).unwrap();
        assert_eq!(names(&cols), ["Name", "From", "To", "Ready", "Age"]);
        assert_eq!(
            cols[0].definition(),
            json!({"name": "Name", "type": "string", "format": "name",
                   "description": D_OBJECT_META_NAME, "priority": 0})
        );
        assert_eq!(
            cols[1].description,
            "The URL (or ssh:// name) this route serves"
        );
        assert_eq!(
            cols[4].description,
            "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp"
        );
        assert_eq!(cols[4].type_, "date");
        assert!(cols.iter().all(|c| c.priority == 0));

        let ready = route(json!({"conditions": [
            {"type": "Accepted", "status": "True"},
            {"type": "Ready", "status": "True", "reason": "Serving"}
        ]}));
        let group = "portcullis.dev";
        assert_eq!(
            cells(&cols, group, "Route", &ready, now()),
            [
                json!("web"),
                json!("https://web.example.com"),
                json!(r#"[{"service":{"name":"web","port":80},"weight":1}]"#),
                json!("True"),
                json!("5m"),
            ]
        );
        // No status yet: the filter finds nothing, the cell is null (kubectl prints it blank).
        let fresh = route(Value::Null);
        let c = cells(&cols, group, "Route", &fresh, now());
        assert_eq!(c[3], Value::Null);
        assert_eq!(c[4], json!("5m"));
        // Several matches: the first value is shown.
        let twice = route(json!({"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "Ready", "status": "True"}
        ]}));
        assert_eq!(
            cells(&cols, group, "Route", &twice, now())[3],
            json!("False")
        );
    }

    #[test]
    fn crd_without_columns_gets_name_and_age() {
        for declared in [Value::Null, json!([])] {
            let cols = custom_columns(&declared).unwrap();
            assert_eq!(names(&cols), ["Name", "Age"]);
            assert_eq!(cols[1].type_, "date");
            assert_eq!(cols[1].description, D_OBJECT_META_CREATION_TIMESTAMP);
            let obj =
                json!({"metadata": {"name": "x", "creationTimestamp": ago(3 * 86400 + 4 * 3600)}});
            assert_eq!(
                cells(&cols, "example.com", "Thing", &obj, now()),
                [json!("x"), json!("3d4h")]
            );
        }
    }

    #[test]
    fn crd_cell_types_follow_the_convertor() {
        let declared = json!([
            {"name": "Int", "type": "integer", "jsonPath": ".spec.n"},
            {"name": "Num", "type": "number", "jsonPath": ".spec.n"},
            {"name": "Bool", "type": "boolean", "jsonPath": ".spec.n"},
            {"name": "Str", "type": "string", "jsonPath": ".spec.n"},
            {"name": "When", "type": "date", "jsonPath": ".spec.n", "priority": 1, "format": "date-time"}
        ]);
        let cols = custom_columns(&declared).unwrap();
        assert_eq!(cols[5].priority, 1);
        assert_eq!(cols[5].format, "date-time");
        let cell =
            |n: Value| cells(&cols, "x.io", "T", &json!({"spec": {"n": n}}), now())[1..].to_vec();
        assert_eq!(
            cell(json!(42)),
            [json!(42), json!(42), Value::Null, json!("42"), Value::Null]
        );
        assert_eq!(
            cell(json!(3.7)),
            [json!(3), json!(3.7), Value::Null, json!("3.7"), Value::Null]
        );
        assert_eq!(
            cell(json!(true)),
            [
                Value::Null,
                Value::Null,
                json!(true),
                json!("true"),
                Value::Null
            ]
        );
        assert_eq!(
            cell(json!(null)),
            [
                Value::Null,
                Value::Null,
                Value::Null,
                json!("<no value>"),
                Value::Null
            ]
        );
        assert_eq!(
            cell(json!({"b": 1, "a": "<"})),
            [
                Value::Null,
                Value::Null,
                Value::Null,
                json!(r#"{"a":"\u003c","b":1}"#),
                Value::Null
            ]
        );
        assert_eq!(cell(json!(ago(90)))[4], json!("90s"));
        assert_eq!(cell(json!(""))[4], json!("<unknown>"));
        assert_eq!(cell(json!("0001-01-01T00:00:00Z"))[4], json!("<unknown>"));
        assert_eq!(cell(json!("yesterday"))[4], json!("<invalid>"));
        assert_eq!(cell(json!("2024-05-01T12:00:01Z"))[4], json!("0s"));
        assert_eq!(cell(json!("2024-05-02T00:00:00Z"))[4], json!("<invalid>"));
        // Missing → null in every type.
        let empty = cells(&cols, "x.io", "T", &json!({}), now());
        assert_eq!(
            empty,
            [
                json!(""),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null
            ]
        );
        // An evaluation error (index out of range) is a null cell too.
        let cols =
            custom_columns(&json!([{"name": "X", "type": "string", "jsonPath": ".a[3]"}])).unwrap();
        assert_eq!(
            cells(&cols, "x.io", "T", &json!({"a": [1]}), now())[1],
            Value::Null
        );
    }

    #[test]
    fn invalid_crd_columns_are_refused() {
        let err = |cols: Value| custom_columns(&cols).unwrap_err().to_string();
        assert_eq!(
            err(json!({"name": "x"})),
            "additionalPrinterColumns: Invalid value: must be a list of column definitions"
        );
        assert_eq!(
            err(json!([{"type": "string", "jsonPath": ".a"}])),
            "additionalPrinterColumns[0].name: Required value"
        );
        assert_eq!(
            err(
                json!([{"name": "A", "type": "string", "jsonPath": ".a"}, {"name": "B", "type": "int", "jsonPath": ".b"}])
            ),
            "additionalPrinterColumns[1].type: Invalid value: \"int\": must be one of boolean,date,integer,number,string"
        );
        assert_eq!(
            err(json!([{"name": "A", "jsonPath": ".a"}])),
            "additionalPrinterColumns[0].type: Required value: must be one of boolean,date,integer,number,string"
        );
        assert!(
            err(json!([{"name": "A", "type": "string", "format": "uuid", "jsonPath": ".a"}]))
                .starts_with("additionalPrinterColumns[0].format: Invalid value: \"uuid\"")
        );
        assert_eq!(
            err(json!([{"name": "A", "type": "string"}])),
            "additionalPrinterColumns[0].JSONPath: Required value"
        );
        assert_eq!(
            err(json!([{"name": "A", "type": "string", "jsonPath": "spec.a"}])),
            "additionalPrinterColumns[0].JSONPath: Invalid value: \"spec.a\": must be a simple json path starting with ."
        );
        assert_eq!(
            err(json!([{"name": "A", "type": "string", "jsonPath": ".a[?(@.x==1"}])),
            "additionalPrinterColumns[0].JSONPath: Invalid value: \".a[?(@.x==1\": unterminated filter"
        );
        assert!(
            err(json!([{"name": "A", "type": "string", "jsonPath": ".a", "priority": "high"}]))
                .contains(".priority")
        );
        assert!(err(json!([{"name": 5, "type": "string", "jsonPath": ".a"}])).contains(".name"));
        assert!(err(json!(["x"])).starts_with("additionalPrinterColumns[0]:"));
    }

    #[test]
    fn builtin_column_sets() {
        let cols = |g: &str, k: &str| builtin_columns(g, k);
        assert_eq!(names(&cols("", "ConfigMap")), ["Name", "Data", "Age"]);
        assert_eq!(names(&cols("", "Secret")), ["Name", "Type", "Data", "Age"]);
        assert_eq!(names(&cols("", "Namespace")), ["Name", "Status", "Age"]);
        assert_eq!(
            names(&cols("", "ServiceAccount")),
            ["Name", "Secrets", "Age"]
        );
        assert_eq!(
            names(&cols("", "Service")),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
        assert_eq!(wide_names(&cols("", "Service")), ["Selector"]);
        let deploy = cols("apps", "Deployment");
        assert_eq!(
            names(&deploy),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(wide_names(&deploy), ["Containers", "Images", "Selector"]);
        let pod = cols("", "Pod");
        assert_eq!(
            names(&pod),
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(
            wide_names(&pod),
            ["IP", "Node", "Nominated Node", "Readiness Gates"]
        );
        let event = cols("", "Event");
        assert_eq!(
            names(&event),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(
            wide_names(&event),
            ["Subobject", "Source", "First Seen", "Count", "Name"]
        );
        assert_eq!(event[9].format, "name");
        assert_eq!(names(&cols("events.k8s.io", "Event")), names(&event));
        assert_eq!(
            names(&cols("networking.k8s.io", "Ingress")),
            ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
        );
        assert_eq!(
            names(&cols("networking.k8s.io", "IngressClass")),
            ["Name", "Controller", "Parameters", "Age"]
        );
        assert_eq!(
            names(&cols("coordination.k8s.io", "Lease")),
            ["Name", "Holder", "Age"]
        );
        assert_eq!(
            names(&cols("batch", "Job")),
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            names(&cols("batch", "CronJob"))[..7],
            [
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age"
            ]
        );
        assert_eq!(
            names(&cols("discovery.k8s.io", "EndpointSlice")),
            ["Name", "AddressType", "Ports", "Endpoints", "Age"]
        );
        assert_eq!(names(&cols("", "Endpoints")), ["Name", "Endpoints", "Age"]);
        assert_eq!(
            names(&cols("policy", "PodDisruptionBudget")),
            [
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age"
            ]
        );
        assert_eq!(
            names(&cols("rbac.authorization.k8s.io", "RoleBinding"))[..3],
            ["Name", "Role", "Age"]
        );
        assert_eq!(
            names(&cols("apps", "StatefulSet"))[..3],
            ["Name", "Ready", "Age"]
        );
        // Kinds without a printer: the default convertor.
        for (g, k) in [
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
            ("", "LimitRange"),
            ("example.com", "Unknown"),
        ] {
            let c = cols(g, k);
            assert_eq!(names(&c), ["Name", "Created At"], "{g}/{k}");
            assert_eq!(c[1].type_, "date");
        }
        assert!(
            builtin_columns("", "ConfigMap")
                .iter()
                .all(|c| c.json_path.is_none())
        );
    }

    #[test]
    fn simple_kinds() {
        let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": ago(10)},
                        "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            row("", "ConfigMap", &cm),
            [json!("cfg"), json!(3), json!("10s")]
        );
        let secret = json!({"metadata": {"name": "s", "creationTimestamp": ago(7200)},
                            "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            row("", "Secret", &secret),
            [
                json!("s"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("120m")
            ]
        );
        let ns = json!({"metadata": {"name": "apps", "creationTimestamp": ago(86400 * 40)}, "status": {"phase": "Active"}});
        assert_eq!(
            row("", "Namespace", &ns),
            [json!("apps"), json!("Active"), json!("40d")]
        );
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(
            row("", "ServiceAccount", &sa),
            [json!("default"), json!(0), json!("<unknown>")]
        );
        let role = json!({"metadata": {"name": "r", "creationTimestamp": "2024-04-30T10:20:30Z"}});
        assert_eq!(
            row("rbac.authorization.k8s.io", "Role", &role),
            [json!("r"), json!("2024-04-30T10:20:30Z")]
        );
        let crd = json!({"metadata": {"name": "routes.portcullis.dev", "creationTimestamp": "2024-04-30T10:20:30.5+02:00"}});
        assert_eq!(
            row("apiextensions.k8s.io", "CustomResourceDefinition", &crd)[1],
            json!("2024-04-30T08:20:30Z")
        );
        assert_eq!(
            row("", "LimitRange", &json!({}))[1],
            json!("0001-01-01T00:00:00Z")
        );
        let zero = json!({"metadata": {"creationTimestamp": "0001-01-01T00:00:00Z"}});
        assert_eq!(
            row("", "LimitRange", &zero)[1],
            json!("0001-01-01T00:00:00Z")
        );
        assert_eq!(row("", "LimitRange", &zero)[0], json!(""));
        assert_eq!(row("", "ConfigMap", &zero)[2], json!("<unknown>"));
        let lease =
            json!({"metadata": {"name": "portcullis-leader"}, "spec": {"holderIdentity": "pod-a"}});
        assert_eq!(
            row("coordination.k8s.io", "Lease", &lease)[1],
            json!("pod-a")
        );
        let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
                        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "apps"},
                                     {"kind": "Group", "name": "devs"}, {"kind": "User", "name": "bob"}]});
        assert_eq!(
            row("rbac.authorization.k8s.io", "RoleBinding", &rb),
            [
                json!("rb"),
                json!("ClusterRole/view"),
                json!("<unknown>"),
                json!("alice, bob"),
                json!("devs"),
                json!("apps/sa")
            ]
        );
    }

    #[test]
    fn deployment_cells() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(3600 * 5 + 60 * 7)},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"},
                             "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]},
                                                  {"key": "canary", "operator": "DoesNotExist"}]},
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}}
            },
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            row("apps", "Deployment", &d),
            [
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("5h7m"),
                json!("web,log"),
                json!("nginx:1,busybox"),
                json!("app=web,!canary,tier in (a,b)")
            ]
        );
        // Unset replicas defaults to 1, no status counts as zero.
        let bare = json!({"metadata": {"name": "x"}, "spec": {"selector": {"matchExpressions": [{"key": "k", "operator": "Bogus"}]}}});
        let r = row("apps", "Deployment", &bare);
        assert_eq!(r[1], json!("0/1"));
        assert_eq!(r[2], json!(0));
        assert_eq!(r[7], json!("<invalid>"));
        let rs = json!({"metadata": {"name": "x"}, "spec": {"selector": {}}});
        assert_eq!(row("apps", "ReplicaSet", &rs)[7], json!("<none>"));
    }

    #[test]
    fn service_cells() {
        let svc = |spec: Value, status: Value| json!({"metadata": {"name": "web", "creationTimestamp": ago(65)}, "spec": spec, "status": status});
        let plain = svc(
            json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "selector": {"app": "web", "a": "b"},
                   "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443}, {"port": 53, "protocol": "UDP"}]}),
            json!({}),
        );
        assert_eq!(
            row("", "Service", &plain),
            [
                json!("web"),
                json!("ClusterIP"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80/TCP,443:30443/TCP,53/UDP"),
                json!("65s"),
                json!("a=b,app=web")
            ]
        );
        let lb_pending = svc(json!({"type": "LoadBalancer", "ports": []}), json!({}));
        let r = row("", "Service", &lb_pending);
        assert_eq!(
            (&r[2], &r[3], &r[4], &r[6]),
            (
                &json!("<none>"),
                &json!("<pending>"),
                &json!("<none>"),
                &json!("<none>")
            )
        );
        let lb = svc(
            json!({"type": "LoadBalancer", "externalIPs": ["1.2.3.4"]}),
            json!({"loadBalancer": {"ingress": [{"ip": "9.9.9.9"}, {"hostname": "lb.example.com"}, {"ip": "9.9.9.9"}]}}),
        );
        assert_eq!(
            row("", "Service", &lb)[3],
            json!("9.9.9.9,lb.example.com,1.2.3.4")
        );
        let ext = svc(
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
        );
        assert_eq!(row("", "Service", &ext)[3], json!("db.example.com"));
        let node_port = svc(
            json!({"type": "NodePort", "externalIPs": ["1.1.1.1", "2.2.2.2"]}),
            json!({}),
        );
        assert_eq!(row("", "Service", &node_port)[3], json!("1.1.1.1,2.2.2.2"));
    }

    #[test]
    fn event_cells_for_both_apis() {
        let core = json!({
            "metadata": {"name": "web.17a", "namespace": "apps"},
            "involvedObject": {"kind": "Route", "name": "web", "fieldPath": "spec.to[0]"},
            "reason": "Accepted", "type": "Normal", "message": "  route compiled\n",
            "source": {"component": "portcullis"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 4
        });
        assert_eq!(
            row("", "Event", &core),
            [
                json!("30s"),
                json!("Normal"),
                json!("Accepted"),
                json!("route/web"),
                json!("spec.to[0]"),
                json!("portcullis"),
                json!("route compiled"),
                json!("10m"),
                json!(4),
                json!("web.17a")
            ]
        );
        let new_api = json!({
            "metadata": {"name": "web.17b"},
            "regarding": {"kind": "Pod", "name": "web-1"},
            "reason": "Failed", "type": "Warning", "note": "boom",
            "reportingController": "kubelet", "reportingInstance": "node-1",
            "eventTime": "2024-05-01T11:59:00.000000Z"
        });
        assert_eq!(
            row("events.k8s.io", "Event", &new_api),
            [
                json!("60s"),
                json!("Warning"),
                json!("Failed"),
                json!("pod/web-1"),
                json!(""),
                json!("kubelet, node-1"),
                json!("boom"),
                json!("60s"),
                json!(1),
                json!("web.17b")
            ]
        );
        let series = json!({
            "metadata": {"name": "e"}, "involvedObject": {"kind": "Node"},
            "eventTime": ago(3600), "series": {"count": 9, "lastObservedTime": ago(5)}
        });
        let r = row("", "Event", &series);
        assert_eq!(
            (&r[0], &r[3], &r[7], &r[8]),
            (&json!("5s"), &json!("node"), &json!("60m"), &json!(9))
        );
        assert_eq!(row("", "Event", &json!({}))[0], json!("<unknown>"));
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "web-1", "creationTimestamp": ago(3600)}, "spec": spec, "status": status})
    }

    #[test]
    fn pod_cells() {
        let two = json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node-1"});
        let running = pod(
            two.clone(),
            json!({"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}], "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [
                       {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                       {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
        );
        assert_eq!(
            row("", "Pod", &running),
            [
                json!("web-1"),
                json!("2/2"),
                json!("Running"),
                json!("0"),
                json!("60m"),
                json!("10.0.0.7"),
                json!("node-1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let crashing = pod(
            two.clone(),
            json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 1, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(3000)}}},
                {"name": "b", "ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}}]}),
        );
        let r = row("", "Pod", &crashing);
        assert_eq!(
            (&r[1], &r[2], &r[3]),
            (
                &json!("1/2"),
                &json!("CrashLoopBackOff"),
                &json!("3 (5m ago)")
            )
        );
        let init = pod(
            json!({"initContainers": [{"name": "setup"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "setup", "state": {"running": {}}}]}),
        );
        assert_eq!(row("", "Pod", &init)[2], json!("Init:0/1"));
        let sidecar = pod(
            json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                   "initContainerStatuses": [{"name": "proxy", "started": true, "ready": true, "restartCount": 1, "state": {"running": {}}}],
                   "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}),
        );
        let r = row("", "Pod", &sidecar);
        assert_eq!(
            (&r[1], &r[2], &r[3]),
            (&json!("2/2"), &json!("Running"), &json!("1"))
        );
        let failed_init = pod(
            json!({"initContainers": [{"name": "setup"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "setup", "state": {"terminated": {"exitCode": 3}}}]}),
        );
        assert_eq!(row("", "Pod", &failed_init)[2], json!("Init:ExitCode:3"));
        let mut deleting = running.clone();
        deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(row("", "Pod", &deleting)[2], json!("Terminating"));
        let done = pod(
            json!({"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x/ready"}]}),
            json!({"phase": "Succeeded", "conditions": [{"type": "x/ready", "status": "False"}],
                   "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        );
        let r = row("", "Pod", &done);
        assert_eq!(
            (&r[1], &r[2], &r[8]),
            (&json!("0/1"), &json!("Completed"), &json!("0/1"))
        );
        let t = table(
            &builtin_columns("", "Pod"),
            "",
            "Pod",
            &[&done, &running],
            IncludeObject::None,
            json!({}),
            now(),
        );
        assert_eq!(
            t["rows"][0]["conditions"],
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])
        );
        assert!(t["rows"][1].get("conditions").is_none());
        let gated = pod(
            json!({}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(row("", "Pod", &gated)[2], json!("SchedulingGated"));
    }

    #[test]
    fn workload_and_network_cells() {
        let job = json!({
            "metadata": {"name": "j", "creationTimestamp": ago(600)},
            "spec": {"completions": 3, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"succeeded": 3, "startTime": ago(500), "completionTime": ago(380),
                       "conditions": [{"type": "Complete", "status": "True"}]}
        });
        assert_eq!(
            row("batch", "Job", &job)[..5],
            [
                json!("j"),
                json!("Complete"),
                json!("3/3"),
                json!("2m"),
                json!("10m")
            ]
        );
        let running = json!({"metadata": {"name": "j"}, "spec": {"parallelism": 2}, "status": {"startTime": ago(30)}});
        assert_eq!(
            row("batch", "Job", &running)[1..4],
            [json!("Running"), json!("0/1 of 2"), json!("30s")]
        );
        let cron = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *"}, "status": {"active": [{}]}});
        assert_eq!(
            row("batch", "CronJob", &cron)[1..6],
            [
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("<none>")
            ]
        );
        let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 1}});
        assert_eq!(row("apps", "StatefulSet", &sts)[1], json!("1/3"));
        let ing = json!({
            "metadata": {"name": "i"},
            "spec": {"ingressClassName": "portcullis", "tls": [{}],
                     "rules": [{"host": "a.example.com"}, {}, {"host": "b.example.com"}, {"host": "c.example.com"}, {"host": "d.example.com"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
        });
        assert_eq!(
            row("networking.k8s.io", "Ingress", &ing)[..5],
            [
                json!("i"),
                json!("portcullis"),
                json!("a.example.com,b.example.com,c.example.com + 2 more..."),
                json!("127.0.0.1"),
                json!("80, 443")
            ]
        );
        assert_eq!(
            row("networking.k8s.io", "Ingress", &json!({}))[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
        let class = json!({"metadata": {"name": "portcullis"}, "spec": {"controller": "portcullis.dev/ingress",
                           "parameters": {"kind": "Config", "apiGroup": "portcullis.dev", "name": "default"}}});
        assert_eq!(
            row("networking.k8s.io", "IngressClass", &class)[1..3],
            [
                json!("portcullis.dev/ingress"),
                json!("Config.portcullis.dev/default")
            ]
        );
        let eps = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            row("", "Endpoints", &eps)[1],
            json!("10.0.0.1:80,[fd00::1]:80,10.0.0.1:443 + 1 more...")
        );
        assert_eq!(row("", "Endpoints", &json!({}))[1], json!("<none>"));
        let slice = json!({"addressType": "IPv4", "ports": [{"port": 80}, {"name": "http"}, {}],
                           "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3", "10.0.0.4"]}]});
        assert_eq!(
            row("discovery.k8s.io", "EndpointSlice", &slice)[1..4],
            [
                json!("IPv4"),
                json!("80,http,*"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")
            ]
        );
        assert_eq!(
            row("discovery.k8s.io", "EndpointSlice", &json!({}))[2],
            json!("<unset>")
        );
        let pdb = json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            row("policy", "PodDisruptionBudget", &pdb)[1..4],
            [json!("50%"), json!("N/A"), json!(1)]
        );
        let hpa = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                         "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]},
                         "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 35}}}]}});
        assert_eq!(
            row("autoscaling", "HorizontalPodAutoscaler", &hpa)[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 35%/70%"),
                json!("<unset>"),
                json!(5),
                json!(2)
            ]
        );
        let node = json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}},
                          "spec": {"unschedulable": true},
                          "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.35.0"},
                                     "addresses": [{"type": "InternalIP", "address": "10.1.1.1"}]}});
        assert_eq!(
            row("", "Node", &node)[..10],
            [
                json!("n"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,edge"),
                json!("<unknown>"),
                json!("v1.35.0"),
                json!("10.1.1.1"),
                json!("<none>"),
                json!("<unknown>"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
        let sc = json!({"metadata": {"name": "std", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "x"});
        assert_eq!(
            row("storage.k8s.io", "StorageClass", &sc)[..5],
            [
                json!("std (default)"),
                json!("x"),
                json!("Delete"),
                json!("Immediate"),
                json!(false)
            ]
        );
        let cr = json!({"metadata": {"name": "web-5d", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]}, "revision": 2});
        assert_eq!(
            row("apps", "ControllerRevision", &cr)[1..3],
            [json!("statefulset.apps/web"), json!(2)]
        );
        let quota = json!({"status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1"}, "used": {"pods": "3"}}});
        assert_eq!(
            row("", "ResourceQuota", &quota)[1..3],
            [
                json!("pods: 3/10, requests.cpu: 0/1"),
                json!("limits.cpu: 0/2")
            ]
        );
        let hook = json!({"webhooks": [{}, {}]});
        assert_eq!(
            row(
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
                &hook
            )[1],
            json!(2)
        );
        let np = json!({"spec": {"podSelector": {}}});
        assert_eq!(
            row("networking.k8s.io", "NetworkPolicy", &np)[1],
            json!("<none>")
        );
        let pvc = json!({"spec": {"volumeName": "pv-1", "storageClassName": "std"}, "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteOnce"]}});
        assert_eq!(
            row("", "PersistentVolumeClaim", &pvc)[1..7],
            [
                json!("Bound"),
                json!("pv-1"),
                json!("1Gi"),
                json!("RWO,ROX"),
                json!("std"),
                json!("<unset>")
            ]
        );
    }

    #[test]
    fn odd_objects_never_panic() {
        let kinds = [
            ("", "Pod"),
            ("", "PodTemplate"),
            ("", "ReplicationController"),
            ("", "Service"),
            ("", "Endpoints"),
            ("", "Node"),
            ("", "Event"),
            ("events.k8s.io", "Event"),
            ("", "Namespace"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("", "PersistentVolume"),
            ("", "PersistentVolumeClaim"),
            ("", "ConfigMap"),
            ("", "ResourceQuota"),
            ("", "LimitRange"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("apps", "ControllerRevision"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("autoscaling", "HorizontalPodAutoscaler"),
            ("policy", "PodDisruptionBudget"),
            ("networking.k8s.io", "Ingress"),
            ("networking.k8s.io", "IngressClass"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("coordination.k8s.io", "Lease"),
            ("storage.k8s.io", "StorageClass"),
            ("scheduling.k8s.io", "PriorityClass"),
            (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
            ),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ];
        let odd = [
            json!(null),
            json!(42),
            json!("text"),
            json!([]),
            json!({}),
            json!({"metadata": 5, "spec": "x", "status": [], "data": 3}),
            json!({"metadata": {"name": 7, "creationTimestamp": "not a time", "labels": [1], "ownerReferences": {"a": 1}},
                   "spec": {"replicas": "three", "containers": {"a": 1}, "initContainers": [1, null], "ports": [null, {"port": "x"}],
                            "selector": {"matchLabels": [1], "matchExpressions": [null, {"operator": "In"}]},
                            "template": {"spec": null}, "metrics": [{"type": "Pods"}, {"type": "External", "external": {"target": {"averageValue": 1}}}, null],
                            "rules": [null], "tls": 5, "type": 3, "clusterIPs": [null]},
                   "status": {"phase": 1, "conditions": [null, {"type": 5}], "containerStatuses": [null, {"state": 5}],
                              "initContainerStatuses": [{"state": {"terminated": {"exitCode": 2.5}}}], "podIPs": [5],
                              "loadBalancer": {"ingress": [5]}, "hard": {"cpu": null}},
                   "series": 5, "involvedObject": "x", "subsets": [{"addresses": [null], "ports": [null]}],
                   "endpoints": [{"addresses": [1]}], "webhooks": {}, "roleRef": [], "subjects": [5]}),
            json!({"status": {"containerStatuses": [{"restartCount": i64::MAX}, {"restartCount": i64::MAX,
                   "lastState": {"terminated": {"finishedAt": "9999-12-31T23:59:59Z"}}}], "succeeded": i64::MIN},
                   "metadata": {"creationTimestamp": "-009999-01-01T00:00:00Z", "deletionTimestamp": 1},
                   "count": -5, "firstTimestamp": "1970-01-01T00:00:00Z", "series": {"count": u64::MAX}}),
        ];
        for (g, k) in kinds {
            let cols = builtin_columns(g, k);
            for obj in &odd {
                let c = cells(&cols, g, k, obj, now());
                assert_eq!(c.len(), cols.len(), "{g}/{k}");
                let t = table(
                    &cols,
                    g,
                    k,
                    &[obj],
                    IncludeObject::Metadata,
                    Value::Null,
                    now(),
                );
                assert_eq!(t["rows"].as_array().map(Vec::len), Some(1));
            }
        }
        let cols = custom_columns(&route_crd_columns()).unwrap();
        for obj in &odd {
            assert_eq!(cells(&cols, "portcullis.dev", "Route", obj, now()).len(), 5);
        }
    }

    #[test]
    fn whole_table_and_include_modes() {
        let cols = builtin_columns("", "ConfigMap");
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "a", "namespace": "default", "resourceVersion": "7", "creationTimestamp": ago(5)},
                       "data": {"k": "v"}});
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}});
        let meta = json!({"resourceVersion": "12", "continue": "", "remainingItemCount": 3, "selfLink": "/x"});
        let t = table(
            &cols,
            "",
            "ConfigMap",
            &[&a, &b],
            IncludeObject::Metadata,
            meta,
            now(),
        );
        let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "kind",
                "apiVersion",
                "metadata",
                "columnDefinitions",
                "rows"
            ]
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion": "12", "remainingItemCount": 3})
        );
        assert_eq!(
            t["columnDefinitions"][1],
            json!({"name": "Data", "type": "string", "format": "", "description": D_CONFIG_MAP_DATA, "priority": 0})
        );
        assert_eq!(t["rows"][0]["cells"], json!(["a", 1, "5s"]));
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "a", "namespace": "default", "resourceVersion": "7", "creationTimestamp": ago(5)}})
        );
        assert_eq!(
            t["rows"][1]["object"]["metadata"],
            json!({"name": "b", "creationTimestamp": null})
        );
        let full = table(
            &cols,
            "",
            "ConfigMap",
            &[&a],
            IncludeObject::Object,
            json!({}),
            now(),
        );
        assert_eq!(full["rows"][0]["object"], a);
        assert_eq!(full["metadata"], json!({}));
        let none = table(
            &cols,
            "",
            "ConfigMap",
            &[&a],
            IncludeObject::None,
            json!({}),
            now(),
        );
        assert_eq!(
            none["rows"][0],
            json!({"cells": ["a", 1, "5s"], "object": null})
        );
        let empty = table(
            &cols,
            "",
            "ConfigMap",
            &[],
            IncludeObject::Metadata,
            json!({"resourceVersion": "3"}),
            now(),
        );
        assert_eq!(empty["rows"], json!([]));
        assert_eq!(IncludeObject::from_query(""), Some(IncludeObject::Metadata));
        assert_eq!(IncludeObject::from_query("None"), Some(IncludeObject::None));
        assert_eq!(
            IncludeObject::from_query("Object"),
            Some(IncludeObject::Object)
        );
        assert_eq!(IncludeObject::from_query("object"), None);
        assert_eq!(IncludeObject::default(), IncludeObject::Metadata);
    }

    #[test]
    fn column_subsets_and_custom_resource_tables() {
        // A caller may pass a subset or reorder: cells follow the given columns.
        let all = builtin_columns("apps", "Deployment");
        let picked = vec![all[4].clone(), all[0].clone(), all[1].clone()];
        let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(1)}, "spec": {"replicas": 2}});
        assert_eq!(
            cells(&picked, "apps", "Deployment", &d, now()),
            [json!("1s"), json!("web"), json!("0/2")]
        );
        let cols = custom_columns(&route_crd_columns()).unwrap();
        let r = route(Value::Null);
        let t = table(
            &cols,
            "portcullis.dev",
            "Route",
            &[&r],
            IncludeObject::Metadata,
            json!({"resourceVersion": "9"}),
            now(),
        );
        assert_eq!(t["columnDefinitions"].as_array().map(Vec::len), Some(5));
        assert_eq!(t["rows"][0]["cells"][0], "web");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "apps");
    }
}
