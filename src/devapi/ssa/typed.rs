//! Schema-aware walks over objects: field sets, comparison, merge and removal.
//!
//! A port of `sigs.k8s.io/structured-merge-diff/v6/typed` (`tofieldset.go`, `compare.go`,
//! `merge.go`, `remove.go`, `helpers.go`) and of `Set.EnsureNamedFieldsAreMembers`, reading
//! the schema from OpenAPI JSON the way kube-openapi's `schemaconv` turns it into an SMD
//! schema:
//!
//! * `type: array`: `x-kubernetes-list-type` `atomic` | `set` | `map` (keyed by
//!   `x-kubernetes-list-map-keys`); without a list type, `x-kubernetes-patch-strategy: merge`
//!   makes an associative list keyed by `x-kubernetes-patch-merge-key` (a set when there is
//!   no merge key); otherwise atomic.
//! * `type: object` (or properties without a type): a map, atomic when
//!   `x-kubernetes-map-type: atomic`; `properties` are its named fields, other keys take the
//!   `additionalProperties` schema, or are "deduced" when there is none.
//! * no schema, or a type-less schema without properties: "deduced" from the value, as SMD
//!   does for unstructured data: maps granular, lists atomic, everything else a scalar.
//!
//! Used by [`super::updater`].

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::SchemaLookup;
use super::fieldpath::{Path, PathElement, Set, path_string, values_equal};

/// Why a walk failed.
#[derive(Debug)]
pub(crate) enum TypedError {
    /// The value nests deeper than [`super::MAX_DEPTH`].
    TooDeep,
    /// The value does not fit its schema (SMD's validation errors), already prefixed with
    /// the path, e.g. `.spec.containers: duplicate entries for key [name="a"]`.
    Invalid(String),
}

type Result<T, E = TypedError> = std::result::Result<T, E>;

fn invalid(path: &[PathElement], msg: impl std::fmt::Display) -> TypedError {
    if path.is_empty() {
        TypedError::Invalid(msg.to_string())
    } else {
        TypedError::Invalid(format!("{}: {msg}", path_string(path)))
    }
}

/// ObjectMeta as the built-in OpenAPI describes it, used for `metadata` when a custom
/// resource schema leaves it untyped (the apiserver always types it for CRDs).
static OBJECT_META: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(OBJECT_META_JSON).unwrap_or(Value::Null));

const OBJECT_META_JSON: &str = r#"{
  "type": "object",
  "properties": {
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    "creationTimestamp": {"type": "string", "format": "date-time"},
    "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
    "deletionTimestamp": {"type": "string", "format": "date-time"},
    "finalizers": {"type": "array", "items": {"type": "string"},
      "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"},
    "generateName": {"type": "string"},
    "generation": {"type": "integer", "format": "int64"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "managedFields": {"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "atomic"},
    "name": {"type": "string"},
    "namespace": {"type": "string"},
    "ownerReferences": {"type": "array",
      "items": {"type": "object", "x-kubernetes-map-type": "atomic",
        "required": ["apiVersion", "kind", "name", "uid"],
        "properties": {
          "apiVersion": {"type": "string"}, "blockOwnerDeletion": {"type": "boolean"},
          "controller": {"type": "boolean"}, "kind": {"type": "string"},
          "name": {"type": "string"}, "uid": {"type": "string"}}},
      "x-kubernetes-list-map-keys": ["uid"], "x-kubernetes-list-type": "map",
      "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"},
    "resourceVersion": {"type": "string"},
    "selfLink": {"type": "string"},
    "uid": {"type": "string"}
  }
}"#;

/// A position in the schema: the schema node as written in its parent (extensions next to a
/// `$ref` stay visible), or `None` when unknown.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    raw: Option<&'a Value>,
    root: bool,
}

/// How a list relates its items.
#[derive(Clone, Debug, PartialEq)]
enum ListType<'a> {
    Atomic,
    Set,
    Map(Vec<&'a str>),
}

/// How a value at a schema position is walked (SMD's atom after `deduceAtom`).
#[derive(Clone, Debug, PartialEq)]
enum Kind<'a> {
    Scalar,
    /// A map; without a schema its keys are not named fields and its values are deduced.
    Map {
        atomic: bool,
    },
    List(ListType<'a>),
}

/// The schema of one kind, read through the server's [`SchemaLookup`].
pub(crate) struct Typed<'a> {
    lookup: &'a dyn SchemaLookup,
    root: &'a Value,
}

/// `Compare` output: fields added, modified and removed between two objects.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub(crate) added: Set,
    pub(crate) modified: Set,
    pub(crate) removed: Set,
}

impl<'a> Typed<'a> {
    pub(crate) fn new(lookup: &'a dyn SchemaLookup, root: &'a Value) -> Self {
        Typed { lookup, root }
    }

    fn root_node(&self) -> Node<'a> {
        Node {
            raw: Some(self.root),
            root: true,
        }
    }

    fn ext(&self, node: Node<'a>, name: &str) -> Option<&'a Value> {
        let raw = node.raw?;
        raw.get(name).or_else(|| self.lookup.resolve(raw).get(name))
    }

    /// The schema kind at `node`; `None` when it is unknown or type-less (deduced).
    fn schema_kind(&self, node: Node<'a>) -> Option<Kind<'a>> {
        let raw = node.raw?;
        let res = self.lookup.resolve(raw);
        let ty = res
            .get("type")
            .or_else(|| raw.get("type"))
            .and_then(Value::as_str);
        let map = || Kind::Map {
            atomic: self
                .ext(node, "x-kubernetes-map-type")
                .and_then(Value::as_str)
                == Some("atomic"),
        };
        match ty {
            Some("array") => Some(Kind::List(self.list_type(node))),
            Some("object") => Some(map()),
            Some("string" | "integer" | "number" | "boolean") => Some(Kind::Scalar),
            Some(_) => None,
            None => {
                let has_props = res
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty());
                if has_props || res.get("additionalProperties").is_some() {
                    Some(map())
                } else if res.get("items").is_some() {
                    Some(Kind::List(self.list_type(node)))
                } else if self
                    .ext(node, "x-kubernetes-int-or-string")
                    .and_then(Value::as_bool)
                    == Some(true)
                {
                    Some(Kind::Scalar)
                } else {
                    None
                }
            }
        }
    }

    fn list_type(&self, node: Node<'a>) -> ListType<'a> {
        let str_of = |name: &str| self.ext(node, name).and_then(Value::as_str);
        match str_of("x-kubernetes-list-type") {
            Some("atomic") => ListType::Atomic,
            Some("set") => ListType::Set,
            Some("map") => match self
                .ext(node, "x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
            {
                Some(keys) => {
                    let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
                    if keys.is_empty() {
                        ListType::Set
                    } else {
                        ListType::Map(keys)
                    }
                }
                None => ListType::Atomic,
            },
            Some(_) => ListType::Atomic,
            None => match str_of("x-kubernetes-patch-strategy") {
                Some("merge" | "merge,retainKeys") => {
                    match str_of("x-kubernetes-patch-merge-key") {
                        Some(key) => ListType::Map(vec![key]),
                        None => ListType::Set,
                    }
                }
                _ => ListType::Atomic,
            },
        }
    }

    /// The kind used to walk `value` at `node` (SMD's `deduceAtom` + `handleAtom`).
    fn kind(&self, node: Node<'a>, value: Option<&Value>) -> Kind<'a> {
        match self.schema_kind(node) {
            Some(kind) => kind,
            None => match value {
                Some(Value::Array(_)) => Kind::List(ListType::Atomic),
                Some(Value::Object(_) | Value::Null) | None => Kind::Map { atomic: false },
                Some(_) => Kind::Scalar,
            },
        }
    }

    /// The schema of field `name` of the map at `node`.
    fn field(&self, node: Node<'a>, name: &str) -> Node<'a> {
        let Some(raw) = node.raw else {
            return Node {
                raw: None,
                root: false,
            };
        };
        let child = self.lookup.child(raw, Some(name));
        if node.root && name == "metadata" {
            // CRD schemas describe at most name/generateName; the apiserver types metadata
            // as ObjectMeta for every kind.
            let full = child.is_some_and(|c| {
                self.lookup
                    .resolve(c)
                    .get("properties")
                    .and_then(|p| p.get("ownerReferences"))
                    .is_some()
            });
            if !full && OBJECT_META.is_object() {
                return Node {
                    raw: Some(&OBJECT_META),
                    root: false,
                };
            }
        }
        Node {
            raw: child,
            root: false,
        }
    }

    /// Whether `name` is a named field (a property) of the map at `node`, as opposed to a
    /// key of a map-typed field.
    fn is_named(&self, node: Node<'a>, name: &str) -> bool {
        node.raw.is_some_and(|raw| {
            self.lookup
                .resolve(raw)
                .get("properties")
                .and_then(|p| p.get(name))
                .is_some()
        })
    }

    fn items(&self, node: Node<'a>) -> Node<'a> {
        Node {
            raw: node.raw.and_then(|raw| self.lookup.child(raw, None)),
            root: false,
        }
    }

    /// The default of key field `key` of a map-list item, used when an item omits it.
    fn key_default(&self, item: Node<'a>, key: &str) -> Option<Value> {
        let field = self.field(item, key);
        if let Some(raw) = field.raw
            && let Some(d) = raw
                .get("default")
                .or_else(|| self.lookup.resolve(raw).get("default"))
        {
            return Some(d.clone());
        }
        // The built-in OpenAPI data the server embeds has no defaults; upstream's has
        // `default: "TCP"` on the `protocol` key of container and service ports.
        (key == "protocol" && self.is_named(item, key)).then(|| Value::String("TCP".to_owned()))
    }

    /// `listItemToPathElement`.
    fn item_element(
        &self,
        list: &ListType<'a>,
        item_node: Node<'a>,
        item: &Value,
    ) -> Result<PathElement, String> {
        match list {
            ListType::Map(keys) => {
                let Value::Object(m) = item else {
                    return Err(if item.is_null() {
                        "associative list with keys may not have a null element".to_owned()
                    } else {
                        "associative list with keys may not have non-map elements".to_owned()
                    });
                };
                let mut fields = Vec::with_capacity(keys.len());
                for key in keys {
                    match m.get(*key) {
                        Some(v) => fields.push(((*key).to_owned(), v.clone())),
                        None => match self.key_default(item_node, key) {
                            Some(d) => fields.push(((*key).to_owned(), d)),
                            None => {
                                return Err(format!(
                                    "associative list with keys has an element that omits key field {} (and doesn't have default value)",
                                    super::fieldpath::go_quote(key)
                                ));
                            }
                        },
                    }
                }
                fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                Ok(PathElement::Key(fields))
            }
            ListType::Set => match item {
                Value::Object(_) => {
                    Err("associative list without keys has an element that's a map type".to_owned())
                }
                Value::Array(_) => {
                    Err("not supported: associative list with lists as elements".to_owned())
                }
                Value::Null => Err(
                    "associative list without keys has an element that's an explicit null"
                        .to_owned(),
                ),
                v => Ok(PathElement::Value(v.clone())),
            },
            ListType::Atomic => Err("invalid indexing of non-associative list".to_owned()),
        }
    }

    /// The path elements of the items of an associative list, in order.
    fn index_items(
        &self,
        list: &ListType<'a>,
        item_node: Node<'a>,
        items: &[Value],
        path: &[PathElement],
    ) -> Result<Vec<PathElement>> {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                self.item_element(list, item_node, item)
                    .map_err(|e| invalid(path, format!("element {i}: {e}")))
            })
            .collect()
    }

    // ---------------------------------------------------------------- ToFieldSet

    /// The set of fields `value` sets (`TypedValue.ToFieldSet`). With `strict`, duplicate
    /// list items are an error (apply configurations); otherwise a duplicated item is owned
    /// as a whole, as upstream does for live objects.
    pub(crate) fn to_field_set(&self, value: &Value, strict: bool) -> Result<Set> {
        let mut set = Set::default();
        let mut path = Vec::new();
        self.to_set(self.root_node(), value, &mut path, &mut set, 0, strict)?;
        Ok(set)
    }

    fn to_set(
        &self,
        node: Node<'a>,
        value: &Value,
        path: &mut Path,
        out: &mut Set,
        depth: usize,
        strict: bool,
    ) -> Result<()> {
        if depth > super::MAX_DEPTH {
            return Err(TypedError::TooDeep);
        }
        match self.kind(node, Some(value)) {
            Kind::Scalar | Kind::Map { atomic: true, .. } | Kind::List(ListType::Atomic) => {
                out.insert(path)
            }
            Kind::Map { .. } => {
                let Some(m) = value.as_object() else {
                    return Ok(());
                };
                for (key, child) in m {
                    path.push(PathElement::Field(key.clone()));
                    self.to_set(self.field(node, key), child, path, out, depth + 1, strict)?;
                    let empty_map = child.as_object().is_some_and(Map::is_empty);
                    if child.is_null() || empty_map || !self.is_named(node, key) {
                        out.insert(path);
                    }
                    path.pop();
                }
            }
            Kind::List(list) => {
                let Some(items) = value.as_array() else {
                    return Ok(());
                };
                let item_node = self.items(node);
                let pes = self.index_items(&list, item_node, items, path)?;
                let mut seen = std::collections::BTreeSet::new();
                let mut duplicates = std::collections::BTreeSet::new();
                for pe in &pes {
                    if !seen.insert(pe) && duplicates.insert(pe) {
                        if strict {
                            return Err(invalid(path, format!("duplicate entries for key {pe}")));
                        }
                        path.push(pe.clone());
                        out.insert(path);
                        path.pop();
                    }
                }
                for (pe, item) in pes.iter().zip(items) {
                    if duplicates.contains(pe) {
                        continue;
                    }
                    path.push(pe.clone());
                    self.to_set(item_node, item, path, out, depth + 1, strict)?;
                    out.insert(path);
                    path.pop();
                }
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- Compare

    /// Fields added, modified and removed going from `lhs` to `rhs` (`TypedValue.Compare`).
    pub(crate) fn compare(&self, lhs: &Value, rhs: &Value) -> Result<Comparison> {
        let mut cmp = Comparison::default();
        let mut path = Vec::new();
        self.compare_node(
            self.root_node(),
            Some(lhs),
            Some(rhs),
            &mut path,
            &mut cmp,
            0,
        )?;
        Ok(cmp)
    }

    fn compare_node(
        &self,
        node: Node<'a>,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        path: &mut Path,
        cmp: &mut Comparison,
        depth: usize,
    ) -> Result<()> {
        if depth > super::MAX_DEPTH {
            return Err(TypedError::TooDeep);
        }
        let kl = self.kind(node, lhs);
        let kr = self.kind(node, rhs);
        let in_leaf = if rhs.is_none() {
            self.compare_kind(&kl, node, lhs, rhs, path, cmp, depth)?
        } else if lhs.is_none() || kl == kr {
            self.compare_kind(&kr, node, lhs, rhs, path, cmp, depth)?
        } else {
            // Deduced values that changed shape: walk both shapes, like upstream.
            self.compare_kind(&kl, node, lhs, rhs, path, cmp, depth)?;
            self.compare_kind(&kr, node, lhs, rhs, path, cmp, depth)?
        };
        if !in_leaf {
            if lhs.is_none() {
                cmp.added.insert(path);
            } else if rhs.is_none() {
                cmp.removed.insert(path);
            }
        }
        Ok(())
    }

    /// Walks one shape; returns whether the node was compared as a leaf.
    #[allow(clippy::too_many_arguments)]
    fn compare_kind(
        &self,
        kind: &Kind<'a>,
        node: Node<'a>,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        path: &mut Path,
        cmp: &mut Comparison,
        depth: usize,
    ) -> Result<bool> {
        let leaf = |cmp: &mut Comparison, path: &Path| {
            match (lhs, rhs) {
                (None, _) => cmp.added.insert(path),
                (_, None) => cmp.removed.insert(path),
                (Some(l), Some(r)) if !values_equal(l, r) => cmp.modified.insert(path),
                _ => {}
            }
            true
        };
        match kind {
            Kind::Scalar => Ok(leaf(cmp, path)),
            Kind::Map { atomic, .. } => {
                let lm = lhs.and_then(Value::as_object);
                let rm = rhs.and_then(Value::as_object);
                let empty = lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty);
                if *atomic || empty {
                    return Ok(leaf(cmp, path));
                }
                for key in zip_keys(lm, rm) {
                    path.push(PathElement::Field(key.to_owned()));
                    self.compare_node(
                        self.field(node, key),
                        lm.and_then(|m| m.get(key)),
                        rm.and_then(|m| m.get(key)),
                        path,
                        cmp,
                        depth + 1,
                    )?;
                    path.pop();
                }
                Ok(false)
            }
            Kind::List(list) => {
                let ll = lhs.and_then(Value::as_array);
                let rl = rhs.and_then(Value::as_array);
                let empty = ll.is_none_or(Vec::is_empty) && rl.is_none_or(Vec::is_empty);
                if *list == ListType::Atomic || empty {
                    return Ok(leaf(cmp, path));
                }
                self.compare_list_items(list, node, ll, rl, path, cmp, depth)?;
                Ok(false)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn compare_list_items(
        &self,
        list: &ListType<'a>,
        node: Node<'a>,
        lhs: Option<&Vec<Value>>,
        rhs: Option<&Vec<Value>>,
        path: &mut Path,
        cmp: &mut Comparison,
        depth: usize,
    ) -> Result<()> {
        let item_node = self.items(node);
        let empty = Vec::new();
        let lhs = lhs.unwrap_or(&empty);
        let rhs = rhs.unwrap_or(&empty);
        let lpes = self.index_items(list, item_node, lhs, path)?;
        let rpes = self.index_items(list, item_node, rhs, path)?;
        let mut all: Vec<&PathElement> = Vec::new();
        let mut lvals: BTreeMap<&PathElement, Vec<&Value>> = BTreeMap::new();
        for (pe, v) in lpes.iter().zip(lhs) {
            let entry = lvals.entry(pe).or_default();
            if entry.is_empty() {
                all.push(pe);
            }
            entry.push(v);
        }
        let mut rvals: BTreeMap<&PathElement, Vec<&Value>> = BTreeMap::new();
        for (pe, v) in rpes.iter().zip(rhs) {
            let entry = rvals.entry(pe).or_default();
            if entry.is_empty() && !lvals.contains_key(pe) {
                all.push(pe);
            }
            entry.push(v);
        }
        for pe in all {
            let l = lvals.get(pe).map(Vec::as_slice).unwrap_or_default();
            let r = rvals.get(pe).map(Vec::as_slice).unwrap_or_default();
            path.push(pe.clone());
            match (l.len(), r.len()) {
                (0, 0) => {}
                (0 | 1, 0 | 1) => {
                    self.compare_node(
                        item_node,
                        l.first().copied(),
                        r.first().copied(),
                        path,
                        cmp,
                        depth + 1,
                    )?;
                }
                (a, b) if a >= 2 && b >= 2 => {
                    let same = a == b && l.iter().zip(r).all(|(x, y)| values_equal(x, y));
                    if !same {
                        cmp.modified.insert(path);
                    }
                }
                (a, _) if a >= 2 => {
                    if let Some(first) = r.first() {
                        self.compare_node(item_node, None, Some(first), path, cmp, depth + 1)?;
                    }
                    cmp.removed.insert(path);
                }
                _ => {
                    if let Some(first) = l.first() {
                        self.compare_node(item_node, Some(first), None, path, cmp, depth + 1)?;
                    }
                    cmp.added.insert(path);
                }
            }
            path.pop();
        }
        Ok(())
    }

    // ---------------------------------------------------------------- Merge

    /// Merges the apply configuration `rhs` into the live object `lhs` (`TypedValue.Merge`
    /// with the "keep right-hand side" rule).
    pub(crate) fn merge(&self, lhs: &Value, rhs: &Value) -> Result<Value> {
        let mut path = Vec::new();
        let out = self.merge_node(self.root_node(), Some(lhs), Some(rhs), &mut path, 0)?;
        Ok(out.unwrap_or_else(|| Value::Object(Map::new())))
    }

    fn merge_node(
        &self,
        node: Node<'a>,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        path: &mut Path,
        depth: usize,
    ) -> Result<Option<Value>> {
        if depth > super::MAX_DEPTH {
            return Err(TypedError::TooDeep);
        }
        let kind = if rhs.is_none() {
            self.kind(node, lhs)
        } else {
            self.kind(node, rhs)
        };
        let keep_rhs = || rhs.or(lhs).cloned();
        match kind {
            Kind::Scalar => Ok(keep_rhs()),
            Kind::Map { atomic, .. } => {
                let lm = lhs.and_then(Value::as_object);
                let rm = rhs.and_then(Value::as_object);
                let empty = lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty);
                if atomic || empty {
                    return Ok(keep_rhs());
                }
                let mut out = Map::new();
                for key in zip_keys(lm, rm) {
                    path.push(PathElement::Field(key.to_owned()));
                    let merged = self.merge_node(
                        self.field(node, key),
                        lm.and_then(|m| m.get(key)),
                        rm.and_then(|m| m.get(key)),
                        path,
                        depth + 1,
                    )?;
                    path.pop();
                    if let Some(v) = merged {
                        out.insert(key.to_owned(), v);
                    }
                }
                Ok((!out.is_empty()).then_some(Value::Object(out)))
            }
            Kind::List(list) => {
                let ll = lhs.and_then(Value::as_array);
                let rl = rhs.and_then(Value::as_array);
                let empty = ll.is_none_or(Vec::is_empty) && rl.is_none_or(Vec::is_empty);
                if list == ListType::Atomic || empty {
                    return Ok(keep_rhs());
                }
                let out = self.merge_list_items(&list, node, ll, rl, path, depth)?;
                Ok((!out.is_empty()).then_some(Value::Array(out)))
            }
        }
    }

    /// `mergingWalker.visitListItems`: live items keep their order, applied items are placed
    /// relative to the items both sides share, new ones after the shared item before them.
    fn merge_list_items(
        &self,
        list: &ListType<'a>,
        node: Node<'a>,
        lhs: Option<&Vec<Value>>,
        rhs: Option<&Vec<Value>>,
        path: &mut Path,
        depth: usize,
    ) -> Result<Vec<Value>> {
        let item_node = self.items(node);
        let empty = Vec::new();
        let lhs = lhs.unwrap_or(&empty);
        let rhs = rhs.unwrap_or(&empty);
        let rpes = self.index_items(list, item_node, rhs, path)?;
        let mut observed_r: BTreeMap<&PathElement, &Value> = BTreeMap::new();
        for (pe, v) in rpes.iter().zip(rhs) {
            if observed_r.insert(pe, v).is_some() {
                return Err(invalid(path, format!("duplicate entries for key {pe}")));
            }
        }
        let lpes = self.index_items(list, item_node, lhs, path)?;
        let null = Value::Null;
        let mut observed_l: BTreeMap<&PathElement, &Value> = BTreeMap::new();
        for (pe, v) in lpes.iter().zip(lhs) {
            // A duplicated live item is not merged with the applied one.
            observed_l
                .entry(pe)
                .and_modify(|seen| *seen = &null)
                .or_insert(v);
        }
        let mut shared = rpes.iter().filter(|pe| observed_l.contains_key(pe));
        let mut next_shared = shared.next();
        let mut merged_r = std::collections::BTreeSet::new();
        let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
        let (mut li, mut ri) = (0, 0);
        while li < lpes.len() || ri < rpes.len() {
            if li < lpes.len() && ri < rpes.len() {
                let pe = &lpes[li];
                if *pe == rpes[ri] {
                    merged_r.insert(pe);
                    let item = self.merge_item(
                        item_node,
                        pe,
                        observed_l.get(pe).copied(),
                        observed_r.get(pe).copied(),
                        path,
                        depth,
                    )?;
                    out.extend(item);
                    li += 1;
                    ri += 1;
                    next_shared = shared.next();
                    continue;
                }
                if observed_r.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                    li += 1;
                    continue;
                }
            }
            if li < lpes.len() {
                let pe = &lpes[li];
                if !observed_r.contains_key(pe) {
                    let item = self.merge_item(item_node, pe, lhs.get(li), None, path, depth)?;
                    out.extend(item);
                    li += 1;
                    continue;
                } else if merged_r.contains(pe) {
                    li += 1;
                }
            }
            if ri < rpes.len() {
                let pe = &rpes[ri];
                merged_r.insert(pe);
                let item = self.merge_item(
                    item_node,
                    pe,
                    observed_l.get(pe).copied(),
                    observed_r.get(pe).copied(),
                    path,
                    depth,
                )?;
                out.extend(item);
                ri += 1;
                if next_shared == Some(pe) {
                    next_shared = shared.next();
                }
            }
        }
        Ok(out)
    }

    fn merge_item(
        &self,
        item_node: Node<'a>,
        pe: &PathElement,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        path: &mut Path,
        depth: usize,
    ) -> Result<Option<Value>> {
        path.push(pe.clone());
        let out = self.merge_node(item_node, lhs, rhs, path, depth + 1);
        path.pop();
        out
    }

    // ---------------------------------------------------------------- RemoveItems

    /// `value` without the fields in `to_remove` (`TypedValue.RemoveItems`): a member removes
    /// the field or list item with everything below it. A map or list whose every entry was
    /// removed becomes `null`, as upstream leaves it; a list item emptied that way is dropped
    /// rather than left as a `null` item.
    pub(crate) fn remove_items(&self, value: &Value, to_remove: &Set) -> Result<Value> {
        match self.remove_node(self.root_node(), value, to_remove, 0)? {
            Value::Null => Ok(Value::Object(Map::new())),
            out => Ok(out),
        }
    }

    fn remove_node(
        &self,
        node: Node<'a>,
        value: &Value,
        to_remove: &Set,
        depth: usize,
    ) -> Result<Value> {
        if depth > super::MAX_DEPTH {
            return Err(TypedError::TooDeep);
        }
        match self.kind(node, Some(value)) {
            Kind::Scalar | Kind::Map { atomic: true, .. } | Kind::List(ListType::Atomic) => {
                Ok(value.clone())
            }
            Kind::Map { .. } => {
                let Some(m) = value.as_object().filter(|m| !m.is_empty()) else {
                    return Ok(value.clone());
                };
                let mut out = Map::new();
                for (key, child) in m {
                    let pe = PathElement::Field(key.clone());
                    if to_remove.members.contains(&pe) {
                        continue;
                    }
                    let kept = match to_remove.with_prefix(&pe) {
                        Some(sub) => {
                            self.remove_node(self.field(node, key), child, sub, depth + 1)?
                        }
                        None => child.clone(),
                    };
                    out.insert(key.clone(), kept);
                }
                Ok(if out.is_empty() {
                    Value::Null
                } else {
                    Value::Object(out)
                })
            }
            Kind::List(list) => {
                let Some(items) = value.as_array().filter(|l| !l.is_empty()) else {
                    return Ok(value.clone());
                };
                let item_node = self.items(node);
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let Ok(pe) = self.item_element(&list, item_node, item) else {
                        out.push(item.clone());
                        continue;
                    };
                    if to_remove.members.contains(&pe) {
                        continue;
                    }
                    match to_remove.with_prefix(&pe) {
                        Some(sub) => {
                            let kept = self.remove_node(item_node, item, sub, depth + 1)?;
                            if !kept.is_null() || item.is_null() {
                                out.push(kept);
                            }
                        }
                        None => out.push(item.clone()),
                    }
                }
                Ok(if out.is_empty() {
                    Value::Null
                } else {
                    Value::Array(out)
                })
            }
        }
    }

    // ---------------------------------------------------------------- named fields

    /// `Set.EnsureNamedFieldsAreMembers`: adds as members the named fields (struct fields, not
    /// map keys) that only appear as parents of other members.
    pub(crate) fn ensure_named_fields_are_members(&self, set: &Set) -> Set {
        self.ensure_named(set, self.root_node(), 0)
    }

    fn ensure_named(&self, set: &Set, node: Node<'a>, depth: usize) -> Set {
        let mut out = Set {
            members: set.members.clone(),
            children: BTreeMap::new(),
        };
        // Sets are bounded by the objects they came from; this only guards odd input.
        if depth > super::MAX_DEPTH + 2 {
            out.children = set.children.clone();
            return out;
        }
        let is_map = matches!(self.schema_kind(node), Some(Kind::Map { .. }));
        let is_list = matches!(self.schema_kind(node), Some(Kind::List(_)));
        for (pe, child) in &set.children {
            let child_node = match pe {
                PathElement::Field(name) if is_map => {
                    if self.is_named(node, name) {
                        out.members.insert(pe.clone());
                    }
                    self.field(node, name)
                }
                PathElement::Key(_) if is_list => self.items(node),
                _ => Node {
                    raw: None,
                    root: false,
                },
            };
            out.children
                .insert(pe.clone(), self.ensure_named(child, child_node, depth + 1));
        }
        out
    }
}

/// Keys of either map: left order first, then keys only on the right.
fn zip_keys<'v>(
    lhs: Option<&'v Map<String, Value>>,
    rhs: Option<&'v Map<String, Value>>,
) -> Vec<&'v str> {
    let mut keys: Vec<&str> = lhs
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if let Some(r) = rhs {
        keys.extend(
            r.keys()
                .map(String::as_str)
                .filter(|k| lhs.is_none_or(|l| !l.contains_key(*k))),
        );
    }
    keys
}

/// How deep `value` nests (a scalar is 0).
pub(crate) fn depth_exceeds(value: &Value, limit: usize) -> bool {
    fn walk(v: &Value, depth: usize, limit: usize) -> bool {
        if depth > limit {
            return true;
        }
        match v {
            Value::Array(items) => items.iter().any(|i| walk(i, depth + 1, limit)),
            Value::Object(m) => m.values().any(|i| walk(i, depth + 1, limit)),
            _ => false,
        }
    }
    walk(value, 0, limit)
}
