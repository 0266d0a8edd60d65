//! Kubernetes protobuf request bodies → the JSON the dev API stores.
//!
//! client-go's typed clients (kubectl's `create` generators, `kubectl create token`, `kubectl auth
//! can-i`, helm's release Secrets, ...) send built-in kinds as `application/vnd.kubernetes.protobuf`:
//! the bytes `k8s\0`, then a `runtime.Unknown` envelope {typeMeta{apiVersion, kind}, raw,
//! contentEncoding, contentType} whose `raw` is the object's message. The request reader calls
//! [`decode`] and carries on as if the client had sent JSON.
//!
//! The result is the JSON that Kubernetes' Go types marshal for the same object, not a
//! field-by-field transcription: gogo-protobuf writes every non-pointer field, zero or not, so
//! the decoder needs Go's view of each field (pointer or value, `omitempty`, `omitzero`,
//! `,inline`) to drop `namespace: ""` yet keep `replicas: 0`. That view, the field numbers and the
//! JSON names are in `data/builtin-protobuf-v1.35.json` (written by
//! `scripts/gen-builtin-protobuf.py`). The Go types with a JSON form of their own (`Time`,
//! `MicroTime`, `Duration`, `Quantity`, `IntOrString`, `RawExtension`/`FieldsV1`/`JSON`, the
//! `JSONSchemaPropsOr*` unions, named slices such as `ExtraValue`) are rendered here.
//!
//! The wire format is decoded by hand (no protobuf runtime: it would need the generated types
//! that the table replaces). Messages nest at most [`MAX_DEPTH`] deep and the output is charged
//! against a budget proportional to the input, so a small body cannot become a large allocation.
//! Unknown fields are skipped, as protobuf readers do, and counted ([`unknown_fields_skipped`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// How deep messages may nest (JSONSchemaProps is recursive).
pub const MAX_DEPTH: usize = 64;

const PREFIX: &[u8] = b"k8s\0";
/// Output budget: this much, plus [`BUDGET_PER_INPUT_BYTE`] per input byte (approximate JSON
/// bytes, each value and key also costing [`NODE_COST`]). Real objects come to 1-3× their
/// protobuf size; only zero-valued structs rendered from 2-byte fields expand further.
const BUDGET_BASE: usize = 1 << 20;
const BUDGET_PER_INPUT_BYTE: usize = 12;
const NODE_COST: usize = 32;

static DATA: &[u8] = include_bytes!("data/builtin-protobuf-v1.35.json");
static TABLES: LazyLock<Result<Tables, String>> = LazyLock::new(|| Tables::load(DATA));
static UNKNOWN_FIELDS: AtomicU64 = AtomicU64::new(0);

/// Why a protobuf body could not be decoded. Messages fit after "the body of the request could
/// not be decoded: " and never quote field values.
#[derive(Debug, thiserror::Error)]
pub enum PbError {
    #[error("not a Kubernetes protobuf message (it must start with \"k8s\\x00\")")]
    MissingPrefix,
    #[error("the protobuf envelope names no kind or apiVersion")]
    MissingKind,
    #[error("{api_version} {kind} has no built-in protobuf decoding; send it as JSON")]
    UnknownKind { api_version: String, kind: String },
    #[error("content encoding {0:?} inside the protobuf envelope is not supported")]
    ContentEncoding(String),
    #[error("content type {0:?} inside the protobuf envelope is not supported")]
    ContentType(String),
    #[error("malformed protobuf at {path}: {reason}")]
    Malformed { path: String, reason: &'static str },
    #[error("invalid value at {path}: {reason}")]
    InvalidValue { path: String, reason: &'static str },
    #[error("protobuf messages nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the decoded object would exceed {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the built-in protobuf tables could not be loaded: {0}")]
    Tables(String),
}

/// Decode a Kubernetes protobuf request body (`k8s\x00` + runtime.Unknown{typeMeta{apiVersion,
/// kind}, raw, contentEncoding, contentType}) into the JSON object, with `apiVersion` and `kind`
/// set from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, PbError> {
    let limit = BUDGET_BASE.saturating_add(body.len().saturating_mul(BUDGET_PER_INPUT_BYTE));
    decode_with_limit(body, limit)
}

/// How many unknown protobuf fields [`decode`] has skipped since the process started.
pub fn unknown_fields_skipped() -> u64 {
    UNKNOWN_FIELDS.load(Ordering::Relaxed)
}

fn decode_with_limit(body: &[u8], limit: usize) -> Result<Value, PbError> {
    let tables = TABLES.as_ref().map_err(|e| PbError::Tables(e.clone()))?;
    let envelope = body.strip_prefix(PREFIX).ok_or(PbError::MissingPrefix)?;
    let unknown = Envelope::parse(envelope)?;
    if unknown.kind.is_empty() || unknown.api_version.is_empty() {
        return Err(PbError::MissingKind);
    }
    if !unknown.content_encoding.is_empty() {
        return Err(PbError::ContentEncoding(short(unknown.content_encoding)));
    }
    if !unknown.content_type.is_empty() && unknown.content_type != CONTENT_TYPE {
        return Err(PbError::ContentType(short(unknown.content_type)));
    }
    let msg = tables
        .kinds
        .get(&format!("{}/{}", unknown.api_version, unknown.kind))
        .copied()
        .ok_or_else(|| PbError::UnknownKind {
            api_version: short(unknown.api_version),
            kind: short(unknown.kind),
        })?;

    let mut decoder = Decoder {
        tables,
        used: 0,
        limit,
        path: Vec::new(),
        unknown: 0,
    };
    let mut object = Map::new();
    // Go's TypeMeta is embedded first: kind, then apiVersion.
    decoder.charge(2 * NODE_COST + unknown.kind.len() + unknown.api_version.len())?;
    object.insert("kind".into(), Value::String(unknown.kind.to_owned()));
    object.insert(
        "apiVersion".into(),
        Value::String(unknown.api_version.to_owned()),
    );
    let result = decoder.fields_into(msg, &[unknown.raw], &mut object, 0);
    UNKNOWN_FIELDS.fetch_add(decoder.unknown, Ordering::Relaxed);
    result.map(|()| Value::Object(object))
}

/// A client-supplied string shortened for an error message.
fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

// ---------------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Len(&'a [u8]),
    Fixed32([u8; 4]),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err("varint overflows 64 bits");
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("varint overflows 64 bits")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        let end = end.ok_or("length beyond the end of the message")?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, &'static str> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3)
            .ok()
            .filter(|&t| t != 0 && t <= 0x1fff_ffff)
            .ok_or("invalid field number")?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(self.take(8)?.try_into().map_err(|_| "truncated fixed64")?),
            2 => {
                let n = usize::try_from(self.varint()?)
                    .map_err(|_| "length beyond the end of the message")?;
                Wire::Len(self.take(n)?)
            }
            5 => Wire::Fixed32(self.take(4)?.try_into().map_err(|_| "truncated fixed32")?),
            3 | 4 => return Err("protobuf groups are not supported"),
            _ => return Err("invalid wire type"),
        };
        Ok(Some((tag, wire)))
    }
}

/// `runtime.Unknown`, the envelope after the `k8s\0` prefix.
struct Envelope<'a> {
    api_version: &'a str,
    kind: &'a str,
    raw: &'a [u8],
    content_encoding: &'a str,
    content_type: &'a str,
}

impl<'a> Envelope<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, PbError> {
        let bad = |reason| PbError::Malformed {
            path: "the envelope".into(),
            reason,
        };
        let text = |wire: Wire<'a>| match wire {
            Wire::Len(b) => {
                std::str::from_utf8(b).map_err(|_| bad("envelope strings must be UTF-8"))
            }
            _ => Err(bad("wrong wire type in the envelope")),
        };
        let mut env = Envelope {
            api_version: "",
            kind: "",
            raw: &[],
            content_encoding: "",
            content_type: "",
        };
        let mut r = Reader::new(buf);
        while let Some((tag, wire)) = r.field().map_err(bad)? {
            match tag {
                1 => {
                    let Wire::Len(type_meta) = wire else {
                        return Err(bad("wrong wire type in the envelope"));
                    };
                    let mut t = Reader::new(type_meta);
                    while let Some((tag, wire)) = t.field().map_err(bad)? {
                        match tag {
                            1 => env.api_version = text(wire)?,
                            2 => env.kind = text(wire)?,
                            _ => {}
                        }
                    }
                }
                2 => match wire {
                    Wire::Len(raw) => env.raw = raw,
                    _ => return Err(bad("wrong wire type in the envelope")),
                },
                3 => env.content_encoding = text(wire)?,
                4 => env.content_type = text(wire)?,
                _ => {}
            }
        }
        Ok(env)
    }
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct RawData {
    kinds: BTreeMap<String, String>,
    messages: BTreeMap<String, RawMessage>,
}

#[derive(Deserialize)]
struct RawMessage {
    fields: Vec<RawField>,
    #[serde(default)]
    special: Option<String>,
}

#[derive(Deserialize)]
struct RawField {
    tag: u32,
    #[serde(default)]
    json: Option<String>,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    repeated: bool,
    #[serde(default)]
    map: Option<String>,
    #[serde(default)]
    inline: bool,
    #[serde(default)]
    ptr: bool,
    #[serde(default)]
    omit: Option<String>,
}

struct Tables {
    messages: Vec<Message>,
    /// `<apiVersion>/<kind>` → message index.
    kinds: HashMap<String, usize>,
}

struct Message {
    special: Option<Special>,
    /// In Go declaration order, which is the JSON key order.
    fields: Vec<Field>,
    by_tag: HashMap<u32, usize>,
}

struct Field {
    tag: u32,
    /// Empty for inline fields and for the fields of special messages.
    json: String,
    ty: Ty,
    shape: Shape,
    inline: bool,
    /// A Go pointer: on the wire exactly when set. Value fields are always written by Go.
    ptr: bool,
    omit: Omit,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ty {
    Scalar(Scalar),
    Message(usize),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    Single,
    Repeated,
    /// Protobuf map with string keys (the only key type Kubernetes uses).
    Map,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Omit {
    Never,
    Empty,
    Zero,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Double,
    Float,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Special {
    Time,
    MicroTime,
    Duration,
    Quantity,
    IntOrString,
    RawJson,
    SchemaOrArray,
    SchemaOrBool,
    SchemaOrStringArray,
    Items,
}

impl Scalar {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Scalar::String,
            "bytes" => Scalar::Bytes,
            "bool" => Scalar::Bool,
            "int32" => Scalar::Int32,
            "int64" => Scalar::Int64,
            "uint32" => Scalar::Uint32,
            "uint64" => Scalar::Uint64,
            "sint32" => Scalar::Sint32,
            "sint64" => Scalar::Sint64,
            "fixed32" => Scalar::Fixed32,
            "fixed64" => Scalar::Fixed64,
            "sfixed32" => Scalar::Sfixed32,
            "sfixed64" => Scalar::Sfixed64,
            "double" => Scalar::Double,
            "float" => Scalar::Float,
            _ => return None,
        })
    }
}

impl Special {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "time" => Special::Time,
            "microtime" => Special::MicroTime,
            "duration" => Special::Duration,
            "quantity" => Special::Quantity,
            "intorstring" => Special::IntOrString,
            "rawjson" => Special::RawJson,
            "schemaorarray" => Special::SchemaOrArray,
            "schemaorbool" => Special::SchemaOrBool,
            "schemaorstringarray" => Special::SchemaOrStringArray,
            "items" => Special::Items,
            _ => return None,
        })
    }

    /// The (tag, type, repeated) fields the renderer below reads; `None` stands for a message.
    fn layout(self) -> &'static [(u32, Option<Scalar>, bool)] {
        match self {
            Special::Time | Special::MicroTime => &[
                (1, Some(Scalar::Int64), false),
                (2, Some(Scalar::Int32), false),
            ],
            Special::Duration => &[(1, Some(Scalar::Int64), false)],
            Special::Quantity => &[(1, Some(Scalar::String), false)],
            Special::IntOrString => &[
                (1, Some(Scalar::Int64), false),
                (2, Some(Scalar::Int32), false),
                (3, Some(Scalar::String), false),
            ],
            Special::RawJson => &[(1, Some(Scalar::Bytes), false)],
            Special::SchemaOrArray => &[(1, None, false), (2, None, true)],
            Special::SchemaOrBool => &[(1, Some(Scalar::Bool), false), (2, None, false)],
            Special::SchemaOrStringArray => &[(1, None, false), (2, Some(Scalar::String), true)],
            Special::Items => &[],
        }
    }
}

impl Tables {
    fn load(data: &[u8]) -> Result<Self, String> {
        let raw: RawData = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        let index: HashMap<&str, usize> = raw
            .messages
            .keys()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut messages = Vec::with_capacity(raw.messages.len());
        for (name, m) in &raw.messages {
            let special = match &m.special {
                Some(s) => Some(
                    Special::parse(s).ok_or_else(|| format!("{name}: unknown special {s:?}"))?,
                ),
                None => None,
            };
            let mut fields = Vec::with_capacity(m.fields.len());
            let mut by_tag = HashMap::with_capacity(m.fields.len());
            for f in &m.fields {
                let ty = match Scalar::parse(&f.ty) {
                    Some(s) => Ty::Scalar(s),
                    None => Ty::Message(
                        *index
                            .get(f.ty.as_str())
                            .ok_or_else(|| format!("{name}.{}: unknown type {}", f.tag, f.ty))?,
                    ),
                };
                let shape = match (&f.map, f.repeated) {
                    (Some(k), _) if k == "string" => Shape::Map,
                    (Some(k), _) => {
                        return Err(format!(
                            "{name}.{}: map key type {k} is not supported",
                            f.tag
                        ));
                    }
                    (None, true) => Shape::Repeated,
                    (None, false) => Shape::Single,
                };
                let omit = match f.omit.as_deref() {
                    None => Omit::Never,
                    Some("empty") => Omit::Empty,
                    Some("zero") => Omit::Zero,
                    Some(o) => return Err(format!("{name}.{}: unknown omit rule {o:?}", f.tag)),
                };
                let json = f.json.clone().unwrap_or_default();
                if special.is_none() && json.is_empty() != f.inline {
                    return Err(format!(
                        "{name}.{}: a field needs a JSON name unless it is inline",
                        f.tag
                    ));
                }
                if f.inline && (shape != Shape::Single || f.ptr || !matches!(ty, Ty::Message(_))) {
                    return Err(format!(
                        "{name}.{}: only an embedded struct value can be inline",
                        f.tag
                    ));
                }
                if by_tag.insert(f.tag, fields.len()).is_some() {
                    return Err(format!("{name}: tag {} appears twice", f.tag));
                }
                fields.push(Field {
                    tag: f.tag,
                    json,
                    ty,
                    shape,
                    inline: f.inline,
                    ptr: f.ptr,
                    omit,
                });
            }
            messages.push(Message {
                special,
                fields,
                by_tag,
            });
        }
        for (name, m) in raw.messages.keys().zip(&messages) {
            check_special(name, m, &messages)?;
        }
        let mut kinds = HashMap::with_capacity(raw.kinds.len());
        for (kind, message) in &raw.kinds {
            let i = *index
                .get(message.as_str())
                .ok_or_else(|| format!("kind {kind}: unknown message {message}"))?;
            if messages[i].special.is_some() {
                return Err(format!("kind {kind}: {message} is not an object"));
            }
            kinds.insert(kind.clone(), i);
        }
        Ok(Tables { messages, kinds })
    }
}

/// The special renderers read fields by tag; make sure the table agrees with them.
fn check_special(name: &str, m: &Message, messages: &[Message]) -> Result<(), String> {
    let Some(special) = m.special else {
        return Ok(());
    };
    let bad = || {
        Err(format!(
            "{name}: fields do not match the {special:?} layout"
        ))
    };
    if special == Special::Items {
        return match m.fields.as_slice() {
            [f] if f.tag == 1 && f.shape == Shape::Repeated && matches!(f.ty, Ty::Scalar(_)) => {
                Ok(())
            }
            _ => bad(),
        };
    }
    let layout = special.layout();
    if m.fields.len() != layout.len() {
        return bad();
    }
    for &(tag, scalar, repeated) in layout {
        let Some(f) = m.by_tag.get(&tag).map(|&i| &m.fields[i]) else {
            return bad();
        };
        let shape_ok = f.shape
            == if repeated {
                Shape::Repeated
            } else {
                Shape::Single
            };
        let ty_ok = match (scalar, f.ty) {
            (Some(s), Ty::Scalar(t)) => s == t,
            (None, Ty::Message(i)) => messages[i].special.is_none(),
            _ => false,
        };
        if !shape_ok || !ty_ok {
            return bad();
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

enum Seg<'t> {
    Field(&'t str),
    Index(usize),
    MapValue,
}

struct Occurrence<'a> {
    field: usize,
    wire: Wire<'a>,
}

struct Decoder<'t> {
    tables: &'t Tables,
    used: usize,
    limit: usize,
    path: Vec<Seg<'t>>,
    unknown: u64,
}

impl<'t> Decoder<'t> {
    fn charge(&mut self, n: usize) -> Result<(), PbError> {
        self.used = self.used.saturating_add(n);
        if self.used > self.limit {
            return Err(PbError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    fn path(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Field("") => {}
                Seg::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
                Seg::MapValue => out.push_str("[*]"),
            }
        }
        if out.is_empty() {
            "the top level".into()
        } else {
            out
        }
    }

    fn malformed(&self, reason: &'static str) -> PbError {
        PbError::Malformed {
            path: self.path(),
            reason,
        }
    }

    fn invalid(&self, reason: &'static str) -> PbError {
        PbError::InvalidValue {
            path: self.path(),
            reason,
        }
    }

    /// Every known field of `msg` found in `chunks` (one message split over several occurrences
    /// merges, as protobuf requires), grouped by field in declaration order.
    fn scan<'a>(
        &mut self,
        msg: &Message,
        chunks: &[&'a [u8]],
    ) -> Result<Vec<Occurrence<'a>>, PbError> {
        let mut found = Vec::new();
        for chunk in chunks {
            let mut r = Reader::new(chunk);
            while let Some((tag, wire)) = r.field().map_err(|e| self.malformed(e))? {
                match msg.by_tag.get(&tag) {
                    Some(&field) => found.push(Occurrence { field, wire }),
                    None => self.unknown += 1,
                }
            }
        }
        found.sort_by_key(|o| o.field);
        Ok(found)
    }

    /// Render the fields of message `m` into `out`, following Go's encoding/json rules.
    fn fields_into(
        &mut self,
        m: usize,
        chunks: &[&[u8]],
        out: &mut Map<String, Value>,
        depth: usize,
    ) -> Result<(), PbError> {
        if depth > MAX_DEPTH {
            return Err(PbError::TooDeep);
        }
        let tables = self.tables;
        let msg = &tables.messages[m];
        let found = self.scan(msg, chunks)?;
        let mut next = 0;
        for (i, field) in msg.fields.iter().enumerate() {
            let start = next;
            while next < found.len() && found[next].field == i {
                next += 1;
            }
            self.path.push(Seg::Field(&field.json));
            let value = self.field(field, &found[start..next], depth)?;
            self.path.pop();
            match value {
                None => {}
                // An embedded struct (`json:",inline"`): its fields join the parent object.
                Some(Value::Object(inner)) if field.inline => out.extend(inner),
                Some(_) if field.inline => {}
                Some(v) => {
                    self.charge(NODE_COST + field.json.len())?;
                    out.insert(field.json.clone(), v);
                }
            }
        }
        Ok(())
    }

    /// One field's JSON value, or `None` when Go would leave it out.
    fn field(
        &mut self,
        f: &'t Field,
        found: &[Occurrence<'_>],
        depth: usize,
    ) -> Result<Option<Value>, PbError> {
        // A nil slice or map is omitted with omitempty/omitzero and `null` otherwise.
        let nil = || {
            if f.omit == Omit::Never {
                Some(Value::Null)
            } else {
                None
            }
        };
        match f.shape {
            Shape::Repeated => {
                let mut items = Vec::new();
                for o in found {
                    self.path.push(Seg::Index(items.len()));
                    match f.ty {
                        Ty::Scalar(s) => self.repeated_scalar(s, o.wire, &mut items)?,
                        Ty::Message(m) => {
                            let chunk = self.len(o.wire)?;
                            items.push(self.message(m, &[chunk], depth + 1)?);
                        }
                    }
                    self.path.pop();
                }
                self.charge(NODE_COST)?;
                Ok(if items.is_empty() {
                    nil()
                } else {
                    Some(Value::Array(items))
                })
            }
            Shape::Map => {
                let mut entries = BTreeMap::new();
                self.path.push(Seg::MapValue);
                for o in found {
                    let entry = self.len(o.wire)?;
                    let (key, value) = self.map_entry(f.ty, entry, depth)?;
                    self.charge(NODE_COST + key.len())?;
                    entries.insert(key, value);
                }
                self.path.pop();
                self.charge(NODE_COST)?;
                // Go's encoding/json writes map keys sorted.
                Ok(if entries.is_empty() {
                    nil()
                } else {
                    Some(Value::Object(entries.into_iter().collect()))
                })
            }
            Shape::Single if f.ptr && found.is_empty() => Ok(nil()),
            Shape::Single => match f.ty {
                Ty::Scalar(s) => {
                    let value = match found.last() {
                        Some(o) => self.scalar(s, o.wire)?,
                        None if s == Scalar::Bytes => Value::Null, // a nil []byte
                        None => zero_scalar(s),
                    };
                    let empty = match &value {
                        Value::Null => true,
                        Value::Bool(b) => !b,
                        Value::String(s) => s.is_empty(),
                        Value::Number(n) => n.as_f64() == Some(0.0),
                        _ => false,
                    };
                    Ok(if empty && !f.ptr && f.omit != Omit::Never {
                        None
                    } else {
                        Some(value)
                    })
                }
                Ty::Message(m) => {
                    let mut chunks = Vec::with_capacity(found.len());
                    for o in found {
                        chunks.push(self.len(o.wire)?);
                    }
                    let value = self.message(m, &chunks, depth + 1)?;
                    // omitempty never drops a struct; omitzero drops a zero one (Time's IsZero).
                    if f.omit == Omit::Zero && !f.ptr && self.is_zero(m, &value, depth)? {
                        return Ok(None);
                    }
                    Ok(Some(value))
                }
            },
        }
    }

    fn is_zero(&mut self, m: usize, value: &Value, depth: usize) -> Result<bool, PbError> {
        match self.tables.messages[m].special {
            Some(Special::Time | Special::MicroTime) => Ok(value.is_null()),
            _ => Ok(*value == self.message(m, &[], depth + 1)?),
        }
    }

    fn len<'a>(&self, wire: Wire<'a>) -> Result<&'a [u8], PbError> {
        match wire {
            Wire::Len(b) => Ok(b),
            _ => Err(self.malformed("wrong wire type (expected length-delimited)")),
        }
    }

    fn map_entry(
        &mut self,
        ty: Ty,
        entry: &[u8],
        depth: usize,
    ) -> Result<(String, Value), PbError> {
        let mut key = String::new();
        let mut value = None;
        let mut chunks = Vec::new();
        let mut r = Reader::new(entry);
        while let Some((tag, wire)) = r.field().map_err(|e| self.malformed(e))? {
            match (tag, ty) {
                (1, _) => key = self.string(self.len(wire)?)?,
                (2, Ty::Scalar(s)) => value = Some(self.scalar(s, wire)?),
                (2, Ty::Message(_)) => chunks.push(self.len(wire)?),
                _ => self.unknown += 1,
            }
        }
        let value = match (ty, value) {
            (Ty::Scalar(_), Some(v)) => v,
            (Ty::Scalar(Scalar::Bytes), None) => Value::String(String::new()), // gogo makes it []byte{}
            (Ty::Scalar(s), None) => zero_scalar(s),
            (Ty::Message(m), _) => self.message(m, &chunks, depth + 1)?,
        };
        Ok((key, value))
    }

    fn message(&mut self, m: usize, chunks: &[&[u8]], depth: usize) -> Result<Value, PbError> {
        if depth > MAX_DEPTH {
            return Err(PbError::TooDeep);
        }
        self.charge(NODE_COST)?;
        match self.tables.messages[m].special {
            None => {
                let mut out = Map::new();
                self.fields_into(m, chunks, &mut out, depth)?;
                Ok(Value::Object(out))
            }
            Some(special) => self.special(special, m, chunks, depth),
        }
    }

    fn string(&mut self, bytes: &[u8]) -> Result<String, PbError> {
        self.charge(bytes.len())?;
        // Go's encoding/json replaces invalid UTF-8 with U+FFFD rather than failing.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn scalar(&mut self, s: Scalar, wire: Wire<'_>) -> Result<Value, PbError> {
        let value = match (s, wire) {
            (Scalar::String, Wire::Len(b)) => Value::String(self.string(b)?),
            (Scalar::Bytes, Wire::Len(b)) => {
                self.charge(b.len().div_ceil(3) * 4)?;
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            (Scalar::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
            (Scalar::Int32, Wire::Varint(v)) => Value::from(v as i32),
            (Scalar::Int64, Wire::Varint(v)) => Value::from(v as i64),
            (Scalar::Uint32, Wire::Varint(v)) => Value::from(v as u32),
            (Scalar::Uint64, Wire::Varint(v)) => Value::from(v),
            (Scalar::Sint32, Wire::Varint(v)) => {
                Value::from(((v as u32) >> 1) as i32 ^ -((v & 1) as i32))
            }
            (Scalar::Sint64, Wire::Varint(v)) => Value::from((v >> 1) as i64 ^ -((v & 1) as i64)),
            (Scalar::Fixed32, Wire::Fixed32(b)) => Value::from(u32::from_le_bytes(b)),
            (Scalar::Sfixed32, Wire::Fixed32(b)) => Value::from(i32::from_le_bytes(b)),
            (Scalar::Float, Wire::Fixed32(b)) => self.float(f64::from(f32::from_le_bytes(b)))?,
            (Scalar::Fixed64, Wire::Fixed64(b)) => Value::from(u64::from_le_bytes(b)),
            (Scalar::Sfixed64, Wire::Fixed64(b)) => Value::from(i64::from_le_bytes(b)),
            (Scalar::Double, Wire::Fixed64(b)) => self.float(f64::from_le_bytes(b))?,
            _ => return Err(self.malformed("wrong wire type")),
        };
        self.charge(NODE_COST)?;
        Ok(value)
    }

    /// Elements of a repeated scalar field: one per occurrence, or packed in one.
    fn repeated_scalar(
        &mut self,
        s: Scalar,
        wire: Wire<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), PbError> {
        let packed = match (s, wire) {
            (Scalar::String | Scalar::Bytes, _)
            | (_, Wire::Varint(_) | Wire::Fixed32(_) | Wire::Fixed64(_)) => None,
            (_, Wire::Len(b)) => Some(b),
        };
        let Some(bytes) = packed else {
            out.push(self.scalar(s, wire)?);
            return Ok(());
        };
        let mut r = Reader::new(bytes);
        while r.pos < bytes.len() {
            let element = match s {
                Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float => r.take(4).map(|b| {
                    let mut a = [0; 4];
                    a.copy_from_slice(b);
                    Wire::Fixed32(a)
                }),
                Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double => r.take(8).map(|b| {
                    let mut a = [0; 8];
                    a.copy_from_slice(b);
                    Wire::Fixed64(a)
                }),
                _ => r.varint().map(Wire::Varint),
            };
            let element = element.map_err(|e| self.malformed(e))?;
            out.push(self.scalar(s, element)?);
        }
        Ok(())
    }

    fn float(&self, f: f64) -> Result<Value, PbError> {
        if !f.is_finite() {
            return Err(self.invalid("NaN and infinite numbers have no JSON form"));
        }
        // Go prints integral floats without a fraction (`1`, not `1.0`).
        if f.fract() == 0.0 && f.abs() < 1e15 {
            return Ok(Value::from(f as i64));
        }
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| self.invalid("number has no JSON form"))
    }

    fn special(
        &mut self,
        special: Special,
        m: usize,
        chunks: &[&[u8]],
        depth: usize,
    ) -> Result<Value, PbError> {
        let tables = self.tables;
        let msg = &tables.messages[m];
        let chunks = match special {
            // Time's own Unmarshal replaces the value; no bytes at all is the zero time (null).
            Special::Time | Special::MicroTime => match chunks.last() {
                Some(chunk) if !chunk.is_empty() => std::slice::from_ref(chunk),
                _ => return Ok(Value::Null),
            },
            _ => chunks,
        };
        let found = self.scan(msg, chunks)?;
        let tag = |o: &Occurrence<'_>| msg.fields[o.field].tag;
        // The last occurrence of a singular field wins.
        let last = |t: u32| found.iter().rev().find(|o| tag(o) == t).map(|o| o.wire);
        let varint = |d: &Self, t: u32| match last(t) {
            None => Ok(0),
            Some(Wire::Varint(v)) => Ok(v),
            Some(_) => Err(d.malformed("wrong wire type")),
        };
        match special {
            Special::Time | Special::MicroTime => {
                let seconds = varint(self, 1)? as i64;
                let nanos = i64::from(varint(self, 2)? as i32);
                let text = format_time(seconds, nanos, special == Special::MicroTime)
                    .ok_or_else(|| self.invalid("time outside the years 0000-9999"))?;
                self.charge(text.as_ref().map_or(0, String::len))?;
                Ok(text.map_or(Value::Null, Value::String))
            }
            Special::Duration => {
                let text = go_duration(varint(self, 1)? as i64);
                self.charge(text.len())?;
                Ok(Value::String(text))
            }
            Special::Quantity => match last(1) {
                None => Ok(Value::String("0".into())),
                Some(wire) => {
                    let text = self.string(self.len(wire)?)?;
                    let ok = !text.is_empty()
                        && text.len() <= 128
                        && text
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
                    if !ok {
                        return Err(self.invalid("not a quantity"));
                    }
                    Ok(Value::String(text))
                }
            },
            Special::IntOrString => match varint(self, 1)? {
                0 => Ok(Value::from(varint(self, 2)? as i32)),
                1 => match last(3) {
                    None => Ok(Value::String(String::new())),
                    Some(wire) => Ok(Value::String(self.string(self.len(wire)?)?)),
                },
                _ => Err(self.invalid("IntOrString type must be 0 (int) or 1 (string)")),
            },
            Special::RawJson => match last(1) {
                None => Ok(Value::Null),
                Some(wire) => {
                    let raw = self.len(wire)?;
                    if raw.is_empty() {
                        return Ok(Value::Null);
                    }
                    // serde_json's Value costs a few times the text; charge for it up front.
                    self.charge(raw.len().saturating_mul(4))?;
                    serde_json::from_slice(raw)
                        .map_err(|_| self.invalid("embedded JSON is not valid JSON"))
                }
            },
            Special::SchemaOrArray => {
                let (schema, list) = (self.special_field(msg, 1)?, self.special_field(msg, 2)?);
                let list_found: Vec<_> = found.iter().filter(|o| tag(o) == 2).collect();
                if !list_found.is_empty() {
                    let Ty::Message(item) = list.ty else {
                        return Err(PbError::Tables("bad JSONSchemaPropsOrArray".into()));
                    };
                    let mut items = Vec::with_capacity(list_found.len());
                    for o in list_found {
                        self.path.push(Seg::Index(items.len()));
                        let chunk = self.len(o.wire)?;
                        items.push(self.message(item, &[chunk], depth + 1)?);
                        self.path.pop();
                    }
                    return Ok(Value::Array(items));
                }
                let chunks = self.chunks(&found, |o| tag(o) == 1)?;
                self.optional_schema(schema, &chunks, depth)
            }
            Special::SchemaOrBool => {
                let schema = self.special_field(msg, 2)?;
                let chunks = self.chunks(&found, |o| tag(o) == 2)?;
                if !chunks.is_empty() {
                    return self.optional_schema(schema, &chunks, depth);
                }
                Ok(Value::Bool(varint(self, 1)? != 0))
            }
            Special::SchemaOrStringArray => {
                let schema = self.special_field(msg, 1)?;
                let mut property = Vec::new();
                for o in found.iter().filter(|o| tag(o) == 2) {
                    self.repeated_scalar(Scalar::String, o.wire, &mut property)?;
                }
                if !property.is_empty() {
                    return Ok(Value::Array(property));
                }
                let chunks = self.chunks(&found, |o| tag(o) == 1)?;
                self.optional_schema(schema, &chunks, depth)
            }
            Special::Items => {
                let Ty::Scalar(s) = self.special_field(msg, 1)?.ty else {
                    return Err(PbError::Tables("bad named slice".into()));
                };
                let mut items = Vec::new();
                for o in &found {
                    self.repeated_scalar(s, o.wire, &mut items)?;
                }
                // A named Go slice (ExtraValue, Verbs): nil marshals as null.
                Ok(if items.is_empty() {
                    Value::Null
                } else {
                    Value::Array(items)
                })
            }
        }
    }

    /// A field of a special message; [`check_special`] made sure it exists when loading.
    fn special_field<'m>(&self, msg: &'m Message, tag: u32) -> Result<&'m Field, PbError> {
        let field = msg.by_tag.get(&tag).and_then(|&i| msg.fields.get(i));
        field.ok_or_else(|| PbError::Tables(format!("special message without field {tag}")))
    }

    fn chunks<'a>(
        &self,
        found: &[Occurrence<'a>],
        pick: impl Fn(&Occurrence<'a>) -> bool,
    ) -> Result<Vec<&'a [u8]>, PbError> {
        found
            .iter()
            .filter(|o| pick(o))
            .map(|o| self.len(o.wire))
            .collect()
    }

    /// The `*JSONSchemaProps` half of a JSONSchemaPropsOr* union: the schema, or null when unset.
    fn optional_schema(
        &mut self,
        schema: &Field,
        chunks: &[&[u8]],
        depth: usize,
    ) -> Result<Value, PbError> {
        let Ty::Message(m) = schema.ty else {
            return Err(PbError::Tables("bad JSONSchemaPropsOr*".into()));
        };
        if chunks.is_empty() {
            return Ok(Value::Null);
        }
        self.message(m, chunks, depth + 1)
    }
}

fn zero_scalar(s: Scalar) -> Value {
    match s {
        Scalar::String | Scalar::Bytes => Value::String(String::new()),
        Scalar::Bool => Value::Bool(false),
        _ => Value::from(0),
    }
}

/// metav1.Time / MicroTime as Go marshals them: RFC 3339 in UTC, whole seconds or exactly six
/// fractional digits. `Some(None)` is Go's zero time (null); `None` a year outside 0000-9999.
fn format_time(seconds: i64, nanos: i64, micro: bool) -> Option<Option<String>> {
    // time.Unix normalises nanoseconds outside [0, 1e9).
    let seconds = seconds.checked_add(nanos.div_euclid(1_000_000_000))?;
    let nanos = nanos.rem_euclid(1_000_000_000);
    const GO_ZERO_TIME: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    if seconds == GO_ZERO_TIME && nanos == 0 {
        return Some(None);
    }
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    Some(Some(if micro {
        format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z",
            nanos / 1000
        )
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Go's `time.Duration.String()`: `1h30m0s`, `1.5s`, `100ms`, `250µs`, `0s`.
fn go_duration(d: i64) -> String {
    let mut u = d.unsigned_abs();
    let mut buf: Vec<u8> = Vec::with_capacity(32); // built backwards
    buf.push(b's');
    if u < 1_000_000_000 {
        let prec = match u {
            0 => return "0s".into(),
            1..=999 => {
                buf.push(b'n');
                0
            }
            1000..=999_999 => {
                buf.extend_from_slice(&[0xb5, 0xc2]); // "µ" (U+00B5), backwards
                3
            }
            _ => {
                buf.push(b'm');
                6
            }
        };
        u = frac_backwards(&mut buf, u, prec);
        int_backwards(&mut buf, u);
    } else {
        u = frac_backwards(&mut buf, u, 9);
        int_backwards(&mut buf, u % 60);
        u /= 60;
        if u > 0 {
            buf.push(b'm');
            int_backwards(&mut buf, u % 60);
            u /= 60;
            if u > 0 {
                buf.push(b'h');
                int_backwards(&mut buf, u);
            }
        }
    }
    if d < 0 {
        buf.push(b'-');
    }
    buf.reverse();
    String::from_utf8_lossy(&buf).into_owned()
}

/// The fraction `v / 10^prec` without trailing zeros (and no point when it is zero); returns
/// the integer part.
fn frac_backwards(buf: &mut Vec<u8>, mut v: u64, prec: usize) -> u64 {
    let mut print = false;
    for _ in 0..prec {
        let digit = (v % 10) as u8;
        print = print || digit != 0;
        if print {
            buf.push(b'0' + digit);
        }
        v /= 10;
    }
    if print {
        buf.push(b'.');
    }
    v
}

fn int_backwards(buf: &mut Vec<u8>, mut v: u64) {
    loop {
        buf.push(b'0' + (v % 10) as u8);
        v /= 10;
        if v == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny protobuf writer, enough to build bodies the way Go's gogo marshaling does.
    #[derive(Default, Clone)]
    struct Enc(Vec<u8>);

    impl Enc {
        fn new() -> Self {
            Enc::default()
        }
        fn raw_varint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
        }
        fn key(&mut self, tag: u32, wire: u8) {
            self.raw_varint((u64::from(tag) << 3) | u64::from(wire));
        }
        fn varint(mut self, tag: u32, v: u64) -> Self {
            self.key(tag, 0);
            self.raw_varint(v);
            self
        }
        fn int(self, tag: u32, v: i64) -> Self {
            self.varint(tag, v as u64)
        }
        fn bool(self, tag: u32, b: bool) -> Self {
            self.varint(tag, u64::from(b))
        }
        fn bytes(mut self, tag: u32, b: &[u8]) -> Self {
            self.key(tag, 2);
            self.raw_varint(b.len() as u64);
            self.0.extend_from_slice(b);
            self
        }
        fn str(self, tag: u32, s: &str) -> Self {
            self.bytes(tag, s.as_bytes())
        }
        fn msg(self, tag: u32, m: Enc) -> Self {
            self.bytes(tag, &m.0)
        }
        fn double(mut self, tag: u32, f: f64) -> Self {
            self.key(tag, 1);
            self.0.extend_from_slice(&f.to_le_bytes());
            self
        }
        fn entry(self, tag: u32, k: &str, v: &str) -> Self {
            self.msg(tag, Enc::new().str(1, k).str(2, v))
        }
        fn entry_bytes(self, tag: u32, k: &str, v: &[u8]) -> Self {
            self.msg(tag, Enc::new().str(1, k).bytes(2, v))
        }
        fn entry_msg(self, tag: u32, k: &str, v: Enc) -> Self {
            self.msg(tag, Enc::new().str(1, k).msg(2, v))
        }
    }

    fn envelope(api_version: &str, kind: &str, raw: Enc) -> Vec<u8> {
        let type_meta = Enc::new().str(1, api_version).str(2, kind);
        let unknown = Enc::new()
            .msg(1, type_meta)
            .msg(2, raw)
            .str(3, "")
            .str(4, "");
        [PREFIX, &unknown.0].concat()
    }

    /// ObjectMeta as Go writes it: every value field, zero or not; creationTimestamp empty.
    fn meta(name: &str, namespace: &str) -> Enc {
        Enc::new()
            .str(1, name)
            .str(2, "")
            .str(3, namespace)
            .str(4, "")
            .str(5, "")
            .str(6, "")
            .int(7, 0)
            .bytes(8, b"")
    }

    fn time(seconds: i64, nanos: i32) -> Enc {
        Enc::new().int(1, seconds).int(2, i64::from(nanos))
    }

    fn int_or_string_int(v: i32) -> Enc {
        Enc::new().int(1, 0).int(2, i64::from(v)).str(3, "")
    }

    fn int_or_string_str(s: &str) -> Enc {
        Enc::new().int(1, 1).int(2, 0).str(3, s)
    }

    fn quantity(s: &str) -> Enc {
        Enc::new().str(1, s)
    }

    #[track_caller]
    fn assert_json(body: &[u8], expected: &str) {
        let got = match decode(body) {
            Ok(v) => v,
            Err(e) => panic!("decode failed: {e}"),
        };
        // Compare text, not values: key order is part of "the JSON Go would send".
        assert_eq!(serde_json::to_string(&got).unwrap_or_default(), expected);
    }

    #[test]
    fn tables_load_and_cover_the_built_in_kinds() {
        let tables = TABLES
            .as_ref()
            .map_err(Clone::clone)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(tables.kinds.len() > 250, "{} kinds", tables.kinds.len());
        for kind in [
            "v1/Secret",
            "v1/ConfigMap",
            "apps/v1/Deployment",
            "v1/Service",
            "v1/Event",
            "events.k8s.io/v1/Event",
            "apiextensions.k8s.io/v1/CustomResourceDefinition",
            "coordination.k8s.io/v1/Lease",
            "authentication.k8s.io/v1/TokenRequest",
            "policy/v1/Eviction",
            "apps/v1/DeleteOptions",
            "apiregistration.k8s.io/v1/APIService",
        ] {
            assert!(tables.kinds.contains_key(kind), "{kind}");
        }
    }

    #[test]
    fn secret_with_bytes_labels_annotations_and_creation_timestamp() {
        let metadata = Enc::new()
            .str(1, "s1")
            .str(2, "")
            .str(3, "default")
            .str(4, "")
            .str(5, "")
            .str(6, "")
            .int(7, 0)
            .msg(8, time(1_767_323_045, 999))
            .entry(11, "b", "2")
            .entry(11, "a", "1")
            .entry(12, "note", "x");
        let secret = Enc::new()
            .msg(1, metadata)
            .entry_bytes(2, "txt", b"hello")
            .entry_bytes(2, "bin", &[0, 255, 1, 2])
            .str(3, "Opaque")
            .entry(4, "k", "v")
            .bool(5, false);
        assert_json(
            &envelope("v1", "Secret", secret),
            r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s1","namespace":"default","creationTimestamp":"2026-01-02T03:04:05Z","labels":{"a":"1","b":"2"},"annotations":{"note":"x"}},"immutable":false,"data":{"bin":"AP8BAg==","txt":"aGVsbG8="},"stringData":{"k":"v"},"type":"Opaque"}"#,
        );
    }

    #[test]
    fn config_map_omits_what_go_omits() {
        let cm = Enc::new()
            .msg(1, meta("cm", ""))
            .entry(2, "a", "")
            .entry_bytes(3, "raw", b"\x00\x01");
        assert_json(
            &envelope("v1", "ConfigMap", cm),
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm"},"data":{"a":""},"binaryData":{"raw":"AAE="}}"#,
        );
        // No raw message at all: Go's zero ConfigMap.
        assert_json(
            &envelope("v1", "ConfigMap", Enc::new()),
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{}}"#,
        );
    }

    #[test]
    fn deployment_with_zero_replicas_ports_quantities_and_probes() {
        let labels = || Enc::new().entry(1, "app", "web");
        let container = Enc::new()
            .str(1, "web")
            .str(2, "nginx:1.27")
            .str(5, "")
            .msg(
                6,
                Enc::new()
                    .str(1, "http")
                    .int(2, 0)
                    .int(3, 8080)
                    .str(4, "TCP")
                    .str(5, ""),
            )
            .msg(
                8,
                Enc::new()
                    .entry_msg(1, "memory", quantity("128Mi"))
                    .entry_msg(1, "cpu", quantity("500m"))
                    .entry_msg(2, "cpu", quantity("100m")),
            )
            .msg(
                10,
                Enc::new()
                    .msg(
                        1,
                        Enc::new().msg(
                            2,
                            Enc::new()
                                .str(1, "/healthz")
                                .msg(2, int_or_string_str("http"))
                                .str(3, "")
                                .str(4, ""),
                        ),
                    )
                    .int(2, 0)
                    .int(3, 0)
                    .int(4, 10)
                    .int(5, 0)
                    .int(6, 0),
            )
            .msg(
                11,
                Enc::new()
                    .msg(
                        1,
                        Enc::new().msg(3, Enc::new().msg(1, int_or_string_int(8080)).str(2, "")),
                    )
                    .int(6, 3),
            )
            .str(13, "")
            .str(14, "")
            .bool(16, false)
            .bool(17, false)
            .bool(18, false);
        let pod_spec = Enc::new()
            .msg(2, container)
            .str(3, "")
            .str(6, "")
            .str(8, "")
            .bool(11, false)
            .str(19, "");
        let template = Enc::new()
            .msg(1, meta("", "").entry(11, "app", "web"))
            .msg(2, pod_spec);
        let strategy = Enc::new().str(1, "RollingUpdate").msg(
            2,
            Enc::new()
                .msg(1, int_or_string_int(0))
                .msg(2, int_or_string_str("25%")),
        );
        let spec = Enc::new()
            .int(1, 0)
            .msg(2, labels())
            .msg(3, template)
            .msg(4, strategy)
            .int(5, 0)
            .int(6, 10)
            .bool(7, false);
        let deployment = Enc::new()
            .msg(1, meta("web", "default"))
            .msg(2, spec)
            .msg(3, Enc::new());
        assert_json(
            &envelope("apps/v1", "Deployment", deployment),
            concat!(
                r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":0,"#,
                r#""selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"#,
                r#""name":"web","image":"nginx:1.27","ports":[{"name":"http","containerPort":8080,"protocol":"TCP"}],"#,
                r#""resources":{"limits":{"cpu":"500m","memory":"128Mi"},"requests":{"cpu":"100m"}},"#,
                r#""livenessProbe":{"httpGet":{"path":"/healthz","port":"http"},"periodSeconds":10},"#,
                r#""readinessProbe":{"tcpSocket":{"port":8080},"failureThreshold":3}}]}},"#,
                r#""strategy":{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":0,"maxSurge":"25%"}},"#,
                r#""revisionHistoryLimit":10},"status":{}}"#
            ),
        );
    }

    #[test]
    fn service_ports_with_int_and_named_target_ports() {
        let port = |name: &str, port: i64, target: Enc| {
            Enc::new()
                .str(1, name)
                .str(2, "TCP")
                .int(3, port)
                .msg(4, target)
                .int(5, 0)
        };
        let spec = Enc::new()
            .msg(1, port("http", 80, int_or_string_int(8080)))
            .msg(1, port("metrics", 9090, int_or_string_str("metrics")))
            .entry(2, "app", "web")
            .str(3, "")
            .str(4, "ClusterIP")
            .str(7, "None")
            .str(8, "")
            .str(10, "")
            .str(11, "")
            .int(12, 0)
            .bool(13, false)
            .str(19, "IPv4")
            .str(17, "SingleStack")
            .str(22, "Cluster");
        let service = Enc::new()
            .msg(1, meta("web", ""))
            .msg(2, spec)
            .msg(3, Enc::new().msg(1, Enc::new()));
        assert_json(
            &envelope("v1", "Service", service),
            concat!(
                r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"web"},"spec":{"ports":["#,
                r#"{"name":"http","protocol":"TCP","port":80,"targetPort":8080},"#,
                r#"{"name":"metrics","protocol":"TCP","port":9090,"targetPort":"metrics"}],"#,
                r#""selector":{"app":"web"},"type":"ClusterIP","sessionAffinity":"None","ipFamilies":["IPv4"],"#,
                r#""ipFamilyPolicy":"SingleStack","internalTrafficPolicy":"Cluster"},"status":{"loadBalancer":{}}}"#
            ),
        );
    }

    #[test]
    fn core_event_with_micro_time_and_zero_times() {
        let involved = Enc::new()
            .str(1, "Pod")
            .str(2, "default")
            .str(3, "web-1")
            .str(4, "u1")
            .str(5, "v1")
            .str(6, "")
            .str(7, "");
        let event = Enc::new()
            .msg(1, meta("x.1", "default"))
            .msg(2, involved)
            .str(3, "Started")
            .str(4, "ok")
            .msg(5, Enc::new().str(1, "kubelet").str(2, ""))
            .msg(6, time(1_767_323_045, 0))
            .bytes(7, b"")
            .int(8, 1)
            .str(9, "Normal")
            .msg(10, time(1_767_323_045, 123_456_789))
            .str(12, "")
            .str(14, "")
            .str(15, "");
        assert_json(
            &envelope("v1", "Event", event),
            concat!(
                r#"{"kind":"Event","apiVersion":"v1","metadata":{"name":"x.1","namespace":"default"},"#,
                r#""involvedObject":{"kind":"Pod","namespace":"default","name":"web-1","uid":"u1","apiVersion":"v1"},"#,
                r#""reason":"Started","message":"ok","source":{"component":"kubelet"},"#,
                r#""firstTimestamp":"2026-01-02T03:04:05Z","lastTimestamp":null,"count":1,"type":"Normal","#,
                r#""eventTime":"2026-01-02T03:04:05.123456Z","reportingComponent":"","reportingInstance":""}"#
            ),
        );
    }

    #[test]
    fn events_k8s_io_event() {
        let event = Enc::new()
            .msg(1, meta("e", ""))
            .msg(2, time(1_767_323_045, 5_000))
            .str(4, "c")
            .str(5, "i")
            .str(6, "Act")
            .str(7, "R")
            .msg(8, Enc::new().str(1, "Pod").str(3, "p"))
            .str(10, "n")
            .str(11, "Normal")
            .msg(12, Enc::new())
            .bytes(13, b"")
            .bytes(14, b"")
            .int(15, 0);
        assert_json(
            &envelope("events.k8s.io/v1", "Event", event),
            concat!(
                r#"{"kind":"Event","apiVersion":"events.k8s.io/v1","metadata":{"name":"e"},"#,
                r#""eventTime":"2026-01-02T03:04:05.000005Z","reportingController":"c","reportingInstance":"i","#,
                r#""action":"Act","reason":"R","regarding":{"kind":"Pod","name":"p"},"note":"n","type":"Normal","#,
                r#""deprecatedSource":{},"deprecatedFirstTimestamp":null,"deprecatedLastTimestamp":null}"#
            ),
        );
    }

    /// JSONSchemaProps as Go writes it: every value field present.
    fn schema(ty: &str) -> Enc {
        Enc::new()
            .str(1, "")
            .str(2, "")
            .str(4, "")
            .str(5, ty)
            .str(6, "")
            .str(7, "")
            .bool(10, false)
            .bool(12, false)
            .str(15, "")
            .bool(18, false)
            .bool(37, false)
            .bool(39, false)
            .bool(40, false)
    }

    fn raw_json(s: &str) -> Enc {
        Enc::new().str(1, s)
    }

    #[test]
    fn custom_resource_definition_with_a_schema() {
        let props = schema("object")
            .entry_msg(
                29,
                "size",
                schema("integer")
                    .msg(8, raw_json("3"))
                    .double(9, 10.0)
                    .double(11, 1.0),
            )
            .entry_msg(
                29,
                "color",
                schema("string")
                    .msg(20, raw_json("\"red\""))
                    .msg(20, raw_json("\"blue\""))
                    .msg(36, raw_json("\"red\"")),
            )
            .entry_msg(
                29,
                "tags",
                schema("array").msg(24, Enc::new().msg(1, schema("string"))),
            )
            .entry_msg(
                29,
                "tuple",
                schema("").msg(
                    24,
                    Enc::new()
                        .msg(2, schema("string"))
                        .msg(2, schema("integer")),
                ),
            )
            .entry_msg(
                29,
                "extra",
                schema("object").msg(30, Enc::new().bool(1, true).msg(2, schema("string"))),
            )
            .entry_msg(
                29,
                "closed",
                schema("object").msg(30, Enc::new().bool(1, false)),
            )
            .entry_msg(29, "ratio", schema("number").double(19, 0.5))
            .entry_msg(
                29,
                "obj",
                schema("object").msg(8, raw_json(r#"{"b":1,"a":[true,null]}"#)),
            )
            .entry_msg(
                29,
                "dep",
                schema("").entry_msg(32, "a", Enc::new().str(2, "b").str(2, "c")),
            );
        let spec_schema = props.bool(38, true).msg(
            44,
            Enc::new()
                .str(1, "self.size <= 10")
                .str(2, "too big")
                .str(3, "")
                .str(5, ""),
        );
        let root = schema("object")
            .str(23, "spec")
            .entry_msg(29, "spec", spec_schema);
        let version = Enc::new()
            .str(1, "v1")
            .bool(2, true)
            .bool(3, true)
            .msg(4, Enc::new().msg(1, root))
            .msg(5, Enc::new().msg(1, Enc::new()))
            .bool(7, false);
        let names = |plural: &str, singular: &str, kind: &str, list: &str| {
            Enc::new()
                .str(1, plural)
                .str(2, singular)
                .str(4, kind)
                .str(5, list)
        };
        let spec = Enc::new()
            .str(1, "example.com")
            .msg(3, names("widgets", "widget", "Widget", "WidgetList"))
            .str(4, "Namespaced")
            .msg(7, version)
            .bool(10, false);
        let status = Enc::new().msg(2, names("", "", "", "")).int(4, 0);
        let crd = Enc::new()
            .msg(1, meta("widgets.example.com", ""))
            .msg(2, spec)
            .msg(3, status);
        assert_json(
            &envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd),
            concat!(
                r#"{"kind":"CustomResourceDefinition","apiVersion":"apiextensions.k8s.io/v1","#,
                r#""metadata":{"name":"widgets.example.com"},"spec":{"group":"example.com","#,
                r#""names":{"plural":"widgets","singular":"widget","kind":"Widget","listKind":"WidgetList"},"#,
                r#""scope":"Namespaced","versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":"#,
                r#"{"type":"object","required":["spec"],"properties":{"spec":{"type":"object","properties":{"#,
                r#""closed":{"type":"object","additionalProperties":false},"#,
                r#""color":{"type":"string","enum":["red","blue"],"example":"red"},"#,
                r#""dep":{"dependencies":{"a":["b","c"]}},"#,
                r#""extra":{"type":"object","additionalProperties":{"type":"string"}},"#,
                r#""obj":{"type":"object","default":{"b":1,"a":[true,null]}},"#,
                r#""ratio":{"type":"number","multipleOf":0.5},"#,
                r#""size":{"type":"integer","default":3,"maximum":10,"minimum":1},"#,
                r#""tags":{"type":"array","items":{"type":"string"}},"#,
                r#""tuple":{"items":[{"type":"string"},{"type":"integer"}]}},"#,
                r#""x-kubernetes-preserve-unknown-fields":true,"#,
                r#""x-kubernetes-validations":[{"rule":"self.size <= 10","message":"too big"}]}}}},"#,
                r#""subresources":{"status":{}}}]},"#,
                r#""status":{"conditions":null,"acceptedNames":{"plural":"","kind":""},"storedVersions":null}}"#
            ),
        );
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (100_000, "100µs"),
            (1_500_000, "1.5ms"),
            (999_999_999, "999.999999ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (90 * 60 * 1_000_000_000, "1h30m0s"),
            (-2_000_000_000, "-2s"),
            (3_661_000_000_001, "1h1m1.000000001s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(go_duration(nanos), text, "{nanos}");
        }
    }

    #[test]
    fn times_print_like_go() {
        assert_eq!(
            format_time(0, 0, false),
            Some(Some("1970-01-01T00:00:00Z".into()))
        );
        assert_eq!(
            format_time(-1, 0, false),
            Some(Some("1969-12-31T23:59:59Z".into()))
        );
        assert_eq!(
            format_time(1_767_323_045, 999_999_999, false),
            Some(Some("2026-01-02T03:04:05Z".into()))
        );
        assert_eq!(
            format_time(1_767_323_045, 1_999, true),
            Some(Some("2026-01-02T03:04:05.000001Z".into()))
        );
        // time.Unix normalises nanoseconds outside [0, 1e9).
        assert_eq!(
            format_time(10, -1, true),
            Some(Some("1970-01-01T00:00:09.999999Z".into()))
        );
        assert_eq!(
            format_time(951_782_400, 0, false),
            Some(Some("2000-02-29T00:00:00Z".into()))
        );
        assert_eq!(
            format_time(253_402_300_799, 0, false),
            Some(Some("9999-12-31T23:59:59Z".into()))
        );
        assert_eq!(
            format_time(-62_135_596_800, 0, false),
            Some(None),
            "Go's zero time"
        );
        assert_eq!(format_time(253_402_300_800, 0, false), None);
        assert_eq!(format_time(i64::MAX, 0, false), None);
        assert_eq!(format_time(i64::MAX, 1_000_000_000, false), None);
    }

    #[test]
    fn golden_bodies_from_kubectl_and_helm() {
        for (name, body, expected) in GOLDEN {
            let body = base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap_or_default();
            let got = decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                serde_json::to_string(&got).unwrap_or_default(),
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn mangled_bodies_fail_cleanly() {
        // Every truncation and a spread of byte flips of the real bodies: errors, never panics.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for (_, body, _) in GOLDEN {
            let body = base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap_or_default();
            for end in 0..body.len() {
                let _ = decode(&body[..end]);
            }
            for _ in 0..400 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let mut mangled = body.clone();
                let i = (state as usize) % mangled.len();
                mangled[i] ^= (state >> 32) as u8 | 1;
                let _ = decode(&mangled);
            }
        }
    }

    #[test]
    fn unknown_fields_are_skipped_and_counted() {
        let plain = Enc::new().msg(1, meta("cm", "")).entry(2, "a", "b");
        let extra = Enc::new()
            .msg(1, meta("cm", "").str(99, "future"))
            .entry(2, "a", "b")
            .int(77, 5)
            .double(78, 1.0);
        let before = unknown_fields_skipped();
        let a = decode(&envelope("v1", "ConfigMap", plain)).ok();
        let b = decode(&envelope("v1", "ConfigMap", extra)).ok();
        assert!(a.is_some());
        assert_eq!(a, b);
        assert!(unknown_fields_skipped() >= before + 3);
    }

    #[test]
    fn a_message_split_over_several_occurrences_is_merged() {
        let cm = Enc::new()
            .msg(1, Enc::new().str(1, "first"))
            .msg(1, Enc::new().str(3, "ns").entry(11, "x", "y"))
            .msg(1, Enc::new().str(1, "cm"));
        assert_json(
            &envelope("v1", "ConfigMap", cm),
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm","namespace":"ns","labels":{"x":"y"}}}"#,
        );
    }

    #[test]
    fn packed_and_unpacked_repeated_numbers_agree() {
        let unpacked = Enc::new().int(4, 1000).int(4, 2000);
        let mut packed_list = Enc::new();
        packed_list.raw_varint(1000);
        packed_list.raw_varint(2000);
        let packed = Enc::new().bytes(4, &packed_list.0);
        for security in [unpacked, packed] {
            let pod = Enc::new()
                .msg(1, meta("p", ""))
                .msg(2, Enc::new().msg(14, security));
            assert_json(
                &envelope("v1", "Pod", pod),
                r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"spec":{"containers":null,"securityContext":{"supplementalGroups":[1000,2000]}},"status":{}}"#,
            );
        }
    }

    #[test]
    fn pointers_keep_zero_values_and_values_drop_them() {
        // automountServiceAccountToken: false must survive (a *bool), hostNetwork: false must not.
        let spec = Enc::new()
            .bool(21, false)
            .bool(11, false)
            .str(8, "")
            .int(4, 0);
        let pod = Enc::new().msg(1, meta("p", "")).msg(2, spec);
        assert_json(
            &envelope("v1", "Pod", pod),
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"spec":{"containers":null,"terminationGracePeriodSeconds":0,"automountServiceAccountToken":false},"status":{}}"#,
        );
        // A pointer to a zero Time is kept as null (deletionTimestamp), a zero value Time
        // with omitzero is dropped (creationTimestamp).
        let cm = Enc::new().msg(1, meta("cm", "").bytes(9, b""));
        assert_json(
            &envelope("v1", "ConfigMap", cm),
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm","deletionTimestamp":null}}"#,
        );
    }

    #[test]
    fn named_slices_durations_and_raw_extensions() {
        // UserInfo.extra is map[string]ExtraValue, ExtraValue a []string wrapped in a message.
        let user = Enc::new()
            .str(1, "alice")
            .entry_msg(4, "scopes", Enc::new().str(1, "a").str(1, "b"))
            .entry_msg(4, "none", Enc::new());
        let review = Enc::new()
            .msg(1, meta("", ""))
            .msg(2, Enc::new().msg(1, user));
        assert_json(
            &envelope("authentication.k8s.io/v1", "SelfSubjectReview", review),
            r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{},"status":{"userInfo":{"username":"alice","extra":{"none":null,"scopes":["a","b"]}}}}"#,
        );
        // ControllerRevision.data is a RawExtension holding JSON.
        let revision = Enc::new()
            .msg(1, meta("r", ""))
            .msg(2, raw_json(r#"{"spec":{"x":1}}"#))
            .int(3, 2);
        assert_json(
            &envelope("apps/v1", "ControllerRevision", revision),
            r#"{"kind":"ControllerRevision","apiVersion":"apps/v1","metadata":{"name":"r"},"data":{"spec":{"x":1}},"revision":2}"#,
        );
        let revision = Enc::new().msg(1, meta("r", "")).int(3, 1);
        assert_json(
            &envelope("apps/v1", "ControllerRevision", revision),
            r#"{"kind":"ControllerRevision","apiVersion":"apps/v1","metadata":{"name":"r"},"data":null,"revision":1}"#,
        );
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        let ok_cm = Enc::new().msg(1, meta("cm", ""));
        let err = |body: &[u8]| {
            decode(body)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };

        assert!(matches!(
            decode(b"{\"kind\":\"ConfigMap\"}"),
            Err(PbError::MissingPrefix)
        ));
        assert!(matches!(decode(b"k8s\0"), Err(PbError::MissingKind)));
        assert!(matches!(
            decode(&envelope("", "ConfigMap", ok_cm.clone())),
            Err(PbError::MissingKind)
        ));
        assert!(matches!(
            decode(&envelope("example.com/v1", "Widget", ok_cm.clone())),
            Err(PbError::UnknownKind { .. })
        ));
        assert!(matches!(
            decode(&envelope(
                "authentication.k8s.io/v1beta1",
                "SelfSubjectReview",
                ok_cm.clone()
            )),
            Err(PbError::UnknownKind { .. })
        ));

        // A length running past the end of the buffer, a truncated varint, a group.
        let mut body = envelope("v1", "ConfigMap", ok_cm.clone());
        body.truncate(body.len() - 6);
        assert!(
            err(&body).contains("length beyond the end"),
            "{}",
            err(&body)
        );
        let mut truncated = Enc::new();
        truncated.key(1, 2);
        truncated.0.push(0x80);
        assert!(matches!(
            decode(&[PREFIX, &truncated.0].concat()),
            Err(PbError::Malformed { .. })
        ));
        let mut group = Enc::new().msg(1, meta("cm", ""));
        group.key(5, 3);
        assert!(err(&envelope("v1", "ConfigMap", group)).contains("groups"));

        // Wrong wire type for a known field names the field, not its value.
        let secret = Enc::new()
            .msg(1, meta("s", ""))
            .msg(2, Enc::new().str(1, "token").int(2, 7));
        let e = err(&envelope("v1", "Secret", secret));
        assert!(
            e.contains("data[*]") && e.contains("wrong wire type"),
            "{e}"
        );
        assert!(!e.contains("token"), "{e}");

        // Values Go would refuse to marshal.
        let bad_json = Enc::new()
            .msg(1, meta("r", ""))
            .msg(2, raw_json("{not json"));
        assert!(err(&envelope("apps/v1", "ControllerRevision", bad_json)).contains("data"));
        let bad_int_or_string = Enc::new().msg(
            2,
            Enc::new()
                .msg(2, Enc::new().entry(1, "app", "x"))
                .msg(3, Enc::new().int(1, 2)),
        );
        assert!(matches!(
            decode(&envelope(
                "policy/v1",
                "PodDisruptionBudget",
                bad_int_or_string
            )),
            Err(PbError::InvalidValue { .. })
        ));
        let nan = schema("number").double(9, f64::NAN);
        let crd = Enc::new().msg(
            2,
            Enc::new().msg(7, Enc::new().str(1, "v1").msg(4, Enc::new().msg(1, nan))),
        );
        assert!(matches!(
            decode(&envelope(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                crd
            )),
            Err(PbError::InvalidValue { .. })
        ));
        let bad_quantity = Enc::new().msg(2, Enc::new().entry_msg(1, "cpu", quantity("")));
        assert!(matches!(
            decode(&envelope("v1", "ResourceQuota", bad_quantity)),
            Err(PbError::InvalidValue { .. })
        ));

        // Envelope options client-go never sets.
        let unknown = Enc::new()
            .msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap"))
            .msg(2, ok_cm.clone())
            .str(3, "gzip");
        assert!(matches!(
            decode(&[PREFIX, &unknown.0].concat()),
            Err(PbError::ContentEncoding(_))
        ));
        let unknown = Enc::new()
            .msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap"))
            .msg(2, ok_cm)
            .str(4, "application/json");
        assert!(matches!(
            decode(&[PREFIX, &unknown.0].concat()),
            Err(PbError::ContentType(_))
        ));
    }

    #[test]
    fn deep_nesting_is_refused() {
        // JSONSchemaProps.not, 200 deep.
        let mut s = schema("string");
        for _ in 0..200 {
            s = schema("").msg(28, s);
        }
        let crd = Enc::new().msg(
            2,
            Enc::new().msg(7, Enc::new().str(1, "v1").msg(4, Enc::new().msg(1, s))),
        );
        assert!(matches!(
            decode(&envelope(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                crd
            )),
            Err(PbError::TooDeep)
        ));
        // 40 deep is fine.
        let mut s = schema("string");
        for _ in 0..40 {
            s = schema("").msg(28, s);
        }
        let crd = Enc::new().msg(
            2,
            Enc::new().msg(7, Enc::new().str(1, "v1").msg(4, Enc::new().msg(1, s))),
        );
        assert!(
            decode(&envelope(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                crd
            ))
            .is_ok()
        );
    }

    #[test]
    fn output_is_bounded_by_the_input() {
        // Empty ContainerStatus entries: 2 bytes each on the wire, ~90 bytes of JSON each.
        let mut status = Enc::new();
        for _ in 0..10_000 {
            status = status.msg(8, Enc::new());
        }
        let pod = envelope("v1", "Pod", Enc::new().msg(3, status));
        let ok = decode_with_limit(&pod, 10 << 20);
        assert!(ok.is_ok());
        assert!(matches!(
            decode_with_limit(&pod, 100_000),
            Err(PbError::TooLarge { .. })
        ));
        // The default budget: BUDGET_BASE plus BUDGET_PER_INPUT_BYTE per input byte.
        let mut status = Enc::new();
        for _ in 0..200_000 {
            status = status.msg(8, Enc::new());
        }
        let pod = envelope("v1", "Pod", Enc::new().msg(3, status));
        assert!(matches!(decode(&pod), Err(PbError::TooLarge { .. })));
    }

    /// Real request bodies: `kubectl create configmap|secret generic|secret docker-registry|
    /// deployment --replicas=0|service clusterip|service nodeport|job|cronjob|role|clusterrole|
    /// rolebinding|quota|poddisruptionbudget|ingress|priorityclass|namespace|serviceaccount|token`,
    /// `kubectl auth can-i`, `kubectl auth whoami` (kubectl 1.32.4 and 1.35.2 sent identical
    /// bytes) and `helm install` (4.1.4, its release Secret), recorded by a proxy in front of
    /// `portcullis dev`. The expected JSON is what kubectl 1.35 prints for the same command with
    /// `--dry-run=client -o json`; for token, auth and helm, which cannot print, it is written
    /// from Go's encoding rules. (name, body as base64, expected JSON)
    const GOLDEN: &[(&str, &str, &str)] = &[
        (
            "configmap",
            "azhzAAoPCgJ2MRIJQ29uZmlnTWFwEiUKEwoDY20xEgAaACIAKgAyADgAQgASBgoBYRIBYhIGCgFjEgFkGgAiAA==",
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm1"},"data":{"a":"b","c":"d"}}"#,
        ),
        (
            "configmap_from_files",
            "azhzAAoPCgJ2MRIJQ29uZmlnTWFwEncKFQoFZmlsZXMSABoAIgAqADIAOABCABIRCgd0eHQuZGF0EgZoZWxsbwoaSwoHYmluLmRhdBJAX+60lDS2m9vMQfCqvgO0RW6BUj1qqD/yJZUwF3N4qZklmQzdsMgyG+CshbivjEZu78qYNnsSX/xWkVBgaNlr/hoAIgA=",
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"files"},"data":{"txt.dat":"hello\n"},"binaryData":{"bin.dat":"X+60lDS2m9vMQfCqvgO0RW6BUj1qqD/yJZUwF3N4qZklmQzdsMgyG+CshbivjEZu78qYNnsSX/xWkVBgaNlr/g=="}}"#,
        ),
        (
            "secret",
            "azhzAAoMCgJ2MRIGU2VjcmV0EjoKEgoCczESABoAIgAqADIAOABCABITCghwYXNzd29yZBIHaHVudGVyMhINCgR1c2VyEgVhZG1pbhoAGgAiAA==",
            r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s1"},"data":{"password":"aHVudGVyMg==","user":"YWRtaW4="}}"#,
        ),
        (
            "secrettls",
            "azhzAAoMCgJ2MRIGU2VjcmV0EpIBChQKBHJlZzESABoAIgAqADIAOABCABJaChEuZG9ja2VyY29uZmlnanNvbhJFeyJhdXRocyI6eyJyLmV4YW1wbGUiOnsidXNlcm5hbWUiOiJ1IiwicGFzc3dvcmQiOiJwIiwiYXV0aCI6ImRUcHcifX19Gh5rdWJlcm5ldGVzLmlvL2RvY2tlcmNvbmZpZ2pzb24aACIA",
            r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"reg1"},"data":{".dockerconfigjson":"eyJhdXRocyI6eyJyLmV4YW1wbGUiOnsidXNlcm5hbWUiOiJ1IiwicGFzc3dvcmQiOiJwIiwiYXV0aCI6ImRUcHcifX19"},"type":"kubernetes.io/dockerconfigjson"}"#,
        ),
        (
            "deployment",
            "azhzAAoVCgdhcHBzL3YxEgpEZXBsb3ltZW50ErkBCh0KAmQxEgAaACIAKgAyADgAQgBaCQoDYXBwEgJkMRKJAQgAEgsKCQoDYXBwEgJkMRpwChsKABIAGgAiACoAMgA4AEIAWgkKA2FwcBICZDESURIzCgVuZ2lueBIKbmdpbng6MS4yNyoAMgoKABAAGFAiACoAQgBqAHIAgAEAiAEAkAEAogEAGgAyAEIASgBSAFgAYABoAIIBAIoBAJoBAMIBACICCgAoADgAGgwIABAAGAAgACgAOAAaACIA",
            r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"d1","labels":{"app":"d1"}},"spec":{"replicas":0,"selector":{"matchLabels":{"app":"d1"}},"template":{"metadata":{"labels":{"app":"d1"}},"spec":{"containers":[{"name":"nginx","image":"nginx:1.27","ports":[{"containerPort":80}],"resources":{}}]}},"strategy":{}},"status":{}}"#,
        ),
        (
            "service",
            "azhzAAoNCgJ2MRIHU2VydmljZRKLAQohCgRzdmMxEgAaACIAKgAyADgAQgBaCwoDYXBwEgRzdmMxEmIKGwoHODAtODA4MBIDVENQGFAiBwgAEJA/GgAoAAodCgg0NDMtODQ0MxIDVENQGLsDIgcIABD7QRoAKAASCwoDYXBwEgRzdmMxGgAiCUNsdXN0ZXJJUDoAQgBSAFoAYABoABoCCgAaACIA",
            r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"svc1","labels":{"app":"svc1"}},"spec":{"ports":[{"name":"80-8080","protocol":"TCP","port":80,"targetPort":8080},{"name":"443-8443","protocol":"TCP","port":443,"targetPort":8443}],"selector":{"app":"svc1"},"type":"ClusterIP"},"status":{"loadBalancer":{}}}"#,
        ),
        (
            "nodeport",
            "azhzAAoNCgJ2MRIHU2VydmljZRJqCh8KA25wMRIAGgAiACoAMgA4AEIAWgoKA2FwcBIDbnAxEkMKHQoHODAtODA4MBIDVENQGFAiBwgAEJA/GgAogOsBEgoKA2FwcBIDbnAxGgAiCE5vZGVQb3J0OgBCAFIAWgBgAGgAGgIKABoAIgA=",
            r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"np1","labels":{"app":"np1"}},"spec":{"ports":[{"name":"80-8080","protocol":"TCP","port":80,"targetPort":8080,"nodePort":30080}],"selector":{"app":"np1"},"type":"NodePort"},"status":{"loadBalancer":{}}}"#,
        ),
        (
            "job",
            "azhzAAoPCghiYXRjaC92MRIDSm9iEoQBChIKAmoxEgAaACIAKgAyADgAQgASZDJiChAKABIAGgAiACoAMgA4AEIAEk4SKwoCajESB2J1c3lib3gaBGVjaG8aAmhpKgBCAGoAcgCAAQCIAQCQAQCiAQAaBU5ldmVyMgBCAEoAUgBYAGAAaACCAQCKAQCaAQDCAQAaCCAAKAAwADoAGgAiAA==",
            r#"{"kind":"Job","apiVersion":"batch/v1","metadata":{"name":"j1"},"spec":{"template":{"metadata":{},"spec":{"containers":[{"name":"j1","image":"busybox","command":["echo","hi"],"resources":{}}],"restartPolicy":"Never"}}},"status":{}}"#,
        ),
        (
            "role",
            "azhzAAokChxyYmFjLmF1dGhvcml6YXRpb24uazhzLmlvL3YxEgRSb2xlEjgKEgoCcjESABoAIgAqADIAOABCABIiCgNnZXQKBGxpc3QSABoEcG9kcxoKY29uZmlnbWFwcyIBeBoAIgA=",
            r#"{"kind":"Role","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"r1"},"rules":[{"verbs":["get","list"],"apiGroups":[""],"resources":["pods","configmaps"],"resourceNames":["x"]}]}"#,
        ),
        (
            "clusterrole",
            "azhzAAorChxyYmFjLmF1dGhvcml6YXRpb24uazhzLmlvL3YxEgtDbHVzdGVyUm9sZRImChMKA2NyMRIAGgAiACoAMgA4AEIAEg8KA2dldCoIL2hlYWx0aHoaACIA",
            r#"{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"cr1"},"rules":[{"verbs":["get"],"nonResourceURLs":["/healthz"]}]}"#,
        ),
        (
            "rolebinding",
            "azhzAAorChxyYmFjLmF1dGhvcml6YXRpb24uazhzLmlvL3YxEgtSb2xlQmluZGluZxKKAQoTCgNyYjESABoAIgAqADIAOABCABIqCgRVc2VyEhlyYmFjLmF1dGhvcml6YXRpb24uazhzLmlvGgVhbGljZSIAEiAKDlNlcnZpY2VBY2NvdW50EgAaA3NhMSIHZGVmYXVsdBolChlyYmFjLmF1dGhvcml6YXRpb24uazhzLmlvEgRSb2xlGgJyMRoAIgA=",
            r#"{"kind":"RoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"rb1"},"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"alice"},{"kind":"ServiceAccount","name":"sa1","namespace":"default"}],"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"r1"}}"#,
        ),
        (
            "quota",
            "azhzAAoTCgJ2MRINUmVzb3VyY2VRdW90YRJPChIKAnExEgAaACIAKgAyADgAQgASNwoKCgNjcHUSAwoBMQoPCgZtZW1vcnkSBQoDMUdpCgwKBHBvZHMSBAoCMTASCkJlc3RFZmZvcnQaABoAIgA=",
            r#"{"kind":"ResourceQuota","apiVersion":"v1","metadata":{"name":"q1"},"spec":{"hard":{"cpu":"1","memory":"1Gi","pods":"10"},"scopes":["BestEffort"]},"status":{}}"#,
        ),
        (
            "pdb",
            "azhzAAogCglwb2xpY3kvdjESE1BvZERpc3J1cHRpb25CdWRnZXQSOwoUCgRwZGIxEgAaACIAKgAyADgAQgASFwoJCAEQABoDNTAlEgoKCAoDYXBwEgF4GgoIABgAIAAoADAAGgAiAA==",
            r#"{"kind":"PodDisruptionBudget","apiVersion":"policy/v1","metadata":{"name":"pdb1"},"spec":{"minAvailable":"50%","selector":{"matchLabels":{"app":"x"}}},"status":{"disruptionsAllowed":0,"currentHealthy":0,"desiredHealthy":0,"expectedPods":0}}"#,
        ),
        (
            "pdb2",
            "azhzAAogCglwb2xpY3kvdjESE1BvZERpc3J1cHRpb25CdWRnZXQSOAoUCgRwZGIyEgAaACIAKgAyADgAQgASFBIKCggKA2FwcBIBeBoGCAAQARoAGgoIABgAIAAoADAAGgAiAA==",
            r#"{"kind":"PodDisruptionBudget","apiVersion":"policy/v1","metadata":{"name":"pdb2"},"spec":{"selector":{"matchLabels":{"app":"x"}},"maxUnavailable":1},"status":{"disruptionsAllowed":0,"currentHealthy":0,"desiredHealthy":0,"expectedPods":0}}"#,
        ),
        (
            "ingress",
            "azhzAAofChRuZXR3b3JraW5nLms4cy5pby92MRIHSW5ncmVzcxJ3ChwKBGluZzESABoAIgAqADIAOABCAGIGCgFhEgFiElMSFgoLZm9vLmV4YW1wbGUSB215LWNlcnQaMgoLZm9vLmV4YW1wbGUSIwohCh8KBC9iYXISDyINCgRzdmMxEgUKABCQPxoGUHJlZml4IgVuZ2lueBoCCgAaACIA",
            r#"{"kind":"Ingress","apiVersion":"networking.k8s.io/v1","metadata":{"name":"ing1","annotations":{"a":"b"}},"spec":{"ingressClassName":"nginx","tls":[{"hosts":["foo.example"],"secretName":"my-cert"}],"rules":[{"host":"foo.example","http":{"paths":[{"path":"/bar","pathType":"Prefix","backend":{"service":{"name":"svc1","port":{"number":8080}}}}]}}]},"status":{"loadBalancer":{}}}"#,
        ),
        (
            "priorityclass",
            "azhzAAolChRzY2hlZHVsaW5nLms4cy5pby92MRINUHJpb3JpdHlDbGFzcxInChMKA3BjMRIAGgAiACoAMgA4AEIAEOgHGAAiBGhpZ2gqBU5ldmVyGgAiAA==",
            r#"{"kind":"PriorityClass","apiVersion":"scheduling.k8s.io/v1","metadata":{"name":"pc1"},"value":1000,"description":"high","preemptionPolicy":"Never"}"#,
        ),
        (
            "namespace",
            "azhzAAoPCgJ2MRIJTmFtZXNwYWNlEhsKEwoDbnMxEgAaACIAKgAyADgAQgASABoCCgAaACIA",
            r#"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"ns1"},"spec":{},"status":{}}"#,
        ),
        (
            "serviceaccount",
            "azhzAAoUCgJ2MRIOU2VydmljZUFjY291bnQSFQoTCgNzYTESABoAIgAqADIAOABCABoAIgA=",
            r#"{"kind":"ServiceAccount","apiVersion":"v1","metadata":{"name":"sa1"}}"#,
        ),
        (
            "token",
            "azhzAAooChhhdXRoZW50aWNhdGlvbi5rOHMuaW8vdjESDFRva2VuUmVxdWVzdBIhChAKABIAGgAiACoAMgA4AEIAEgcKAmExINgEGgQKABIAGgAiAA==",
            r#"{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{},"spec":{"audiences":["a1"],"expirationSeconds":600,"boundObjectRef":null},"status":{"token":"","expirationTimestamp":null}}"#,
        ),
        (
            "cronjob",
            "azhzAAoTCghiYXRjaC92MRIHQ3JvbkpvYhKnAQoTCgNjajESABoAIgAqADIAOABCABKNAQoLKi81ICogKiAqICoaACp8ChMKA2NqMRIAGgAiACoAMgA4AEIAEmUyYwoQCgASABoAIgAqADIAOABCABJPEigKA2NqMRIHYnVzeWJveBoEZGF0ZSoAQgBqAHIAgAEAiAEAkAEAogEAGglPbkZhaWx1cmUyAEIASgBSAFgAYABoAIIBAIoBAJoBAMIBABoAGgAiAA==",
            r#"{"kind":"CronJob","apiVersion":"batch/v1","metadata":{"name":"cj1"},"spec":{"schedule":"*/5 * * * *","jobTemplate":{"metadata":{"name":"cj1"},"spec":{"template":{"metadata":{},"spec":{"containers":[{"name":"cj1","image":"busybox","command":["date"],"resources":{}}],"restartPolicy":"OnFailure"}}}}},"status":{}}"#,
        ),
        (
            "helm_release_secret",
            "azhzAAoMCgJ2MRIGU2VjcmV0EpMNCokBChpzaC5oZWxtLnJlbGVhc2UudjEucmVsMS52MRIAGgAiACoAMgA4AEIAWhcKCWNyZWF0ZWRBdBIKMTc5NTQ4NTk3OFoMCgRuYW1lEgRyZWwxWg0KBW93bmVyEgRoZWxtWhkKBnN0YXR1cxIPcGVuZGluZy1pbnN0YWxsWgwKB3ZlcnNpb24SATES8AsKB3JlbGVhc2US5AtINHNJQUFBQUFBQUMvNVJWMzIvaXVoTCtWNUR2SyswNlNhRWswajZRYlBPREZycFFHaWUrdlZvNWRnaWh0cE5MRW1peTJ2Lzl5RUM3NVd5UHFpUHhnR2ZHTTkvM1pUenpFMGdpVW1DQmJjbzEwQWU1WEJYQStnbFcrYmFxZjdDMDVFV2JNbUFCSGVyREMwMjcwSytXVUxmZzBOSkdsN3BwRGpYTnVNS2dEemo1ZC9Fc3JlZzJMK3U4a01BQ2djenJuUEJlTHF1YWNONXJKRXUzZTlLQ1BxaHFVamNWc0VDWlNwYkw3T0lVQTM3MUFWMlRiYTNnaXJRbWpOUkUvVDhST3ZnVXBWMjZyWTVWNEtWMkNVRWZrRElQMzR3N1hXWGlCWDBHbG13NDc0TTZGU1VuZFZvQjY3OXY2ZDZNWDZpNGJJbmdpc09oSW9nanV3eEYyRktkNzVKTmtiSE56UzNSZVlPL0ZkbGNOeHNzdUZ3aWQrOElqVFBQZlk2anhmbytLN0xBRzZ3VDlEZ012UFVtbVpmdjdOVXc4T05iMEFlaVlIVitxUCtubm9OTDdkcUVWOE9ya1liQnIvLzF3WTd3Um9FK3Nxam9PaFhrL1BRN0hZUlF1emo4bGhCYWg1LzZLcXVjbjlPbVcxWjlvVnYyQ1dWMXh0RWFZalRvQ0RJYjJnNjI5LzYwSVdpME81UERDRHZtbWZXakNMdkVDTnRZRDI4d3dtVWlPRlQzL2xFaW41WFlZNXo1MHdaSDYzVVMyUlYrR0d3U0hkNVN3K1p4Vjl3R2ppMnBNRFg2cmNqK0hoTTRkaE1qamRPdXlGSzlMaE14SHdidUthZXp6Nmozb2xIaFZ2ZTViUkMwa0RoYWRIZU8zUkUwa0F5OXJLbjZyRHAveG5vSTd4eTdJdEVNUHB3NGhTZjcwdU1kOHcrMXVsZzM5M2haWkV2aDFqaWE3V00wNDNoY1pJR1BPWld6TXRFSDNZR2ZBN05FeFN5UGJSTTQ0eXp3WjV4S3pGVnU1azgwUEZkeDQ0d2FpeDBWcmp6RXZyZnJzd0lqN2FpWHV1L1lPK3FGelR5MEorRm10b3oxTlUvUXpkREp4eWYvT0dNK1ArQkw5TW4vTVpyQjl6N3FUOVQ5bG5sYzZYWDdhajloMjJNMFBjdDF0QzhHMUZPdGJPWkVoQnMyTHM3OWpuMTFoMm90Rm1HYmlCRGlhRnBUZjhLcEhyWk1QTllNRGJhSk1JMGsxd1JCWVlYOTZURHdGeTFEaitmMVA4TjNyTldScU9UM3VYMzl5cE9nQWNTSWNacnZNK3lGSW83Q2luMHJzbW03enhMRUc0STBMVmtXMmZSQm5kMnJ0L1BTTnYvZzZveXpXRGVyeEFpR2dWL0ROTEpWclk3NWt6SVJ0QXE4c0dFSURnTzNiakdhVjRFM3FSZ0syWjFqODlSemErcTlxUGdXbzhXSHVabm55a09mR3ErYXVpMFY3dURPc1V2bWhmV1p6NTlCS25pRERlM0RYT3BOVW5Iekh1Y3VGaVdQRFlYTGZjYmU4ZDNGNkdWT2hibkgwUVFTRkhidnRhUEdvbFh2WUJYQmo3UnU0MmhSSm1kNEIxcUNKZ2V0RTZXengvZUpGMzdIbXlLYk9sZmFhdjU1YnpEaFZnUXQxc3pqdTBSKzBHOE96S2dNSzRVdmtET2VlSEZEZFQ3RUQrUFI5NGZ4eTlRSlBzS3EzbUlYSTZaMGdJayt5bUxCcFpOOS9mcjVxQjBaMTZacGpLNlBvL2F6dVR3YUdSQWFPbGFyUlJDWnI5S3FCaGE0dUxoNGt2L3BQUlRObHFaVzc3aWl2dnl4V3A3azd3MWw5WGJhazN6T0piTjZUaUZYZVRZbDVaTjhYWGpXayt6MTFLeTJlbXNxbnVTYjdkbnE3WjdrKy9XbjlROUR2U29KVmNCWnVpSU5ydy9yc09UdEQ1SFc2MEp0YmxvUjhPdXZBQUFBLy85OXNydkRHQWdBQUE9PRoSaGVsbS5zaC9yZWxlYXNlLnYxGgAiAA==",
            r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"sh.helm.release.v1.rel1.v1","labels":{"createdAt":"1795485978","name":"rel1","owner":"helm","status":"pending-install","version":"1"}},"data":{"release":"SDRzSUFBQUFBQUFDLzVSVjMyL2l1aEwrVjVEdksrMDZTYUVrMGo2UWJQT0RGcnBRR2llK3ZWbzVkZ2lodHBOTEVtaXkydi85eUVDNzVXeVBxaVB4Z0dmR005LzNaVHp6RTBnaVVtQ0JiY28xMEFlNVhCWEErZ2xXK2JhcWY3QzA1RVdiTW1BQkhlckRDMDI3MEsrV1VMZmcwTkpHbDdwcERqWE51TUtnRHpqNWQvRXNyZWcyTCt1OGtNQUNnY3pyblBCZUxxdWFjTjVySkV1M2U5S0NQcWhxVWpjVnNFQ1pTcGJMN09JVUEzNzFBVjJUYmEzZ2lyUW1qTlJFL1Q4Uk92Z1VwVjI2clk1VjRLVjJDVUVma0RJUDM0dzdYV1hpQlgwR2xtdzQ3NE02RlNVbmRWb0I2Nzl2NmQ2TVg2aTRiSW5naXNPaElvZ2p1d3hGMkZLZDc1Sk5rYkhOelMzUmVZTy9GZGxjTnhzc3VGd2lkKzhJalRQUGZZNmp4Zm8rSzdMQUc2d1Q5RGdNdlBVbW1aZnY3TlV3OE9OYjBBZWlZSFYrcVArbm5vTkw3ZHFFVjhPcmtZYkJyLy8xd1k3d1JvRStzcWpvT2hYay9QUTdIWVJRdXpqOGxoQmFoNS82S3F1Y245T21XMVo5b1Z2MkNXVjF4dEVhWWpUb0NESWIyZzYyOS82MElXaTBPNVBEQ0R2bW1mV2pDTHZFQ050WUQyOHd3bVVpT0ZUMy9sRWluNVhZWTV6NTB3Wkg2M1VTMlJWK0dHd1NIZDVTdytaeFY5d0dqaTJwTURYNnJjaitIaE00ZGhNampkT3V5Rks5TGhNeEh3YnVLYWV6ejZqM29sSGhWdmU1YlJDMGtEaGFkSGVPM1JFMGtBeTlyS242ckRwL3hub0k3eHk3SXRFTVBwdzRoU2Y3MHVNZDh3KzF1bGczOTNoWlpFdmgxamlhN1dNMDQzaGNaSUdQT1pXek10RUgzWUdmQTdORXhTeVBiUk00NHl6d1o1eEt6RlZ1NWs4MFBGZHg0NHdhaXgwVnJqekV2cmZyc3dJajdhaVh1dS9ZTytxRnpUeTBKK0ZtdG96MU5VL1F6ZERKeHlmL09HTStQK0JMOU1uL01ackI5ejdxVDlUOWxubGM2WFg3YWo5aDIyTTBQY3QxdEM4RzFGT3RiT1pFaEJzMkxzNzlqbjExaDJvdEZtR2JpQkRpYUZwVGY4S3BIclpNUE5ZTURiYUpNSTBrMXdSQllZWDk2VER3RnkxRGorZjFQOE4zck5XUnFPVDN1WDM5eXBPZ0FjU0ljWnJ2TSt5RklvN0NpbjByc21tN3p4TEVHNEkwTFZrVzJmUkJuZDJydC9QU052L2c2b3l6V0RlcnhBaUdnVi9ETkxKVnJZNzVreklSdEFxOHNHRUlEZ08zYmpHYVY0RTNxUmdLMloxajg5UnphK3E5cVBnV284V0h1Wm5ueWtPZkdxK2F1aTBWN3VET3NVdm1oZldaejU5QktuaUREZTNEWE9wTlVuSHpIdWN1RmlXUERZWExmY2JlOGQzRjZHVk9oYm5IMFFRU0ZIYnZ0YVBHb2xYdllCWEJqN1J1NDJoUkptZDRCMXFDSmdldEU2V3p4L2VKRjM3SG15S2JPbGZhYXY1NWJ6RGhWZ1F0MXN6anUwUiswRzhPektnTUs0VXZrRE9lZUhGRGRUN0VEK1BSOTRmeHk5UUpQc0txM21JWEk2WjBnSWsreW1MQnBaTjkvZnI1cUIwWjE2WnBqSzZQby9henVUd2FHUkFhT2xhclJSQ1pyOUtxQmhhNHVMaDRrdi9wUFJUTmxxWlc3N2lpdnZ5eFdwN2s3dzFsOVhiYWszek9KYk42VGlGWGVUWWw1Wk44WFhqV2srejExS3kyZW1zcW51U2I3ZG5xN1o3aysvV245UTlEdlNvSlZjQlp1aUlOcncvcnNPVHRENUhXNjBKdGJsb1I4T3V2QUFBQS8vOTlzcnZER0FnQUFBPT0="},"type":"helm.sh/release.v1"}"#,
        ),
        (
            "ssar",
            "azhzAAoyChdhdXRob3JpemF0aW9uLms4cy5pby92MRIXU2VsZlN1YmplY3RBY2Nlc3NSZXZpZXcSPQoQCgASABoAIgAqADIAOABCABIfCh0KB2RlZmF1bHQSBGxpc3QaACIAKgRwb2RzMgA6ABoICAASABoAIAAaACIA",
            r#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{},"spec":{"resourceAttributes":{"namespace":"default","verb":"list","resource":"pods"}},"status":{"allowed":false}}"#,
        ),
        (
            "selfsubjectreview",
            "azhzAAotChhhdXRoZW50aWNhdGlvbi5rOHMuaW8vdjESEVNlbGZTdWJqZWN0UmV2aWV3EhoKEAoAEgAaACIAKgAyADgAQgASBgoECgASABoAIgA=",
            r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{},"status":{"userInfo":{}}}"#,
        ),
    ];
}
