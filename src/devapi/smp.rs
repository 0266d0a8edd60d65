//! Strategic merge patch (`application/strategic-merge-patch+json`) for built-in kinds.
//!
//! A port of the apply half of `k8s.io/apimachinery/pkg/util/strategicpatch`
//! (`StrategicMergePatch(original, patch, schema)`), driven by the OpenAPI metadata in
//! [`super::builtin_schema`] (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`)
//! instead of Go struct tags. It is the strategic-merge branch of the PATCH handler for built-in
//! kinds; custom resources take JSON merge patch instead, as upstream.
//!
//! What it does, as upstream does it:
//!
//! * maps merge recursively and `null` deletes a key;
//! * lists whose strategy is `merge` merge by their merge key (matching elements merge, new ones
//!   are added) or, for primitives, as a union; every other list is replaced;
//! * the order of a merged list is: patch order for the patch's elements, live order for the
//!   server-only ones, interleaved as upstream's `normalizeElementOrder`; `$setElementOrder/<f>`
//!   overrides the patch order;
//! * directives: `$patch: replace|delete` on maps and in lists, `$retainKeys`,
//!   `$deleteFromPrimitiveList/<f>`, `$setElementOrder/<f>`; `$patch: merge` is rejected with
//!   upstream's error (the apiserver rejects it too);
//! * a field the schema does not describe (preserve-unknown-fields, `RawExtension`, unknown
//!   fields) merges like JSON merge patch: maps merge, lists are replaced.
//!
//! Where it deliberately differs: no directive key from the patch ever reaches the result (the
//! apiserver relies on decoding into Go structs to drop leftovers such as a `$retainKeys` inside
//! a newly added map; stored JSON has no such filter); a `$patch: replace` map set on a field the
//! object does not have yet keeps its content (upstream drops the field); a
//! `$deleteFromPrimitiveList` value must be a list of primitives; a field unknown to the schema
//! merges instead of failing with "unable to find api field" (field validation reports it);
//! keys are visited in patch order with deletion lists last, where Go's map order is random.
//! Recursion is bounded ([`MAX_DEPTH`]) and list matching is hashed, so hostile patches can
//! neither exhaust the stack nor go quadratic.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::builtin_schema::Definitions;

const DIRECTIVE_MARKER: &str = "$patch";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Deepest nesting of maps and lists a patch may reach (serde_json's own parse limit).
pub const MAX_DEPTH: usize = 128;

/// Longest rendering of a value inside an error message.
const MAX_MESSAGE_VALUE: usize = 1024;

/// Go's `%v` of the types upstream names in `expected a X, but received a Y`.
const GO_MAP: &str = "map[string]interface {}";
const GO_LIST: &str = "[]interface {}";

/// Why a strategic merge patch could not be applied. Messages are upstream's
/// (`k8s.io/apimachinery/pkg/util/mergepatch` and `strategicpatch`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmpError {
    /// The original or the patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// A list whose elements are lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A malformed `$deleteFromPrimitiveList` key or value.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveListFormat,
    /// A malformed `$retainKeys`, or a patch key missing from it.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeysFormat,
    /// A malformed `$setElementOrder` key.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrderFormat,
    /// An element of a merging list lacks the merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The element, rendered as Go's `%v` does.
        map: String,
        /// The merge key it lacks.
        key: String,
    },
    /// A `$patch` value other than `replace` or `delete` (in a list: or `merge`).
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType {
        /// The `$patch` value.
        directive: String,
        /// The map carrying it.
        map: String,
    },
    /// `$patch: merge` inside a list.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// A value of the wrong JSON type where a map or list is required.
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        /// Go's name of the expected type.
        expected: &'static str,
        /// Go's name of the type received.
        actual: &'static str,
    },
    /// A list mixing maps, lists and primitives.
    #[error("list element types are not identical: {0}")]
    MixedListElements(String),
    /// A list of maps whose schema says `merge` but names no merge key.
    #[error("cannot merge lists without merge key for {0}")]
    MergeKeyUndeclared(String),
    /// The patch list and its `$setElementOrder` list disagree.
    #[error("the order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}")]
    SetElementOrderMismatch {
        /// The patch list.
        patch: String,
        /// The `$setElementOrder` list.
        order: String,
    },
    /// The schema's `x-kubernetes-patch-strategy` is not one upstream knows.
    #[error("unexpected patch strategy: {0}")]
    UnexpectedPatchStrategy(String),
    /// The patch nests deeper than [`MAX_DEPTH`].
    #[error("patch nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

impl SmpError {
    /// The HTTP status the apiserver answers with: 400 for malformed directives, 422 for lists
    /// of lists, and 500 (an unclassified `Status`) for the rest, as upstream's
    /// `interpretStrategicMergePatchError` leaves them.
    pub fn status_code(&self) -> u16 {
        match self {
            SmpError::BadJsonDoc
            | SmpError::BadPrimitiveListFormat
            | SmpError::BadRetainKeysFormat
            | SmpError::BadSetElementOrderFormat
            | SmpError::TooDeep => 400,
            SmpError::ListOfLists => 422,
            _ => 500,
        }
    }
}

/// Apply `patch` to `original` for the kind whose schema root is `schema`, resolving children
/// through `defs`.
///
/// Both documents must be JSON objects (`null` counts as `{}`, as upstream). Neither is
/// modified; the patched object is returned.
pub fn apply(
    defs: &Definitions,
    schema: &Value,
    original: &Value,
    patch: &Value,
) -> Result<Value, SmpError> {
    let as_map = |v: &Value| match v {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(Map::new()),
        _ => Err(SmpError::BadJsonDoc),
    };
    let (original, patch) = (as_map(original)?, as_map(patch)?);
    let merger = Merger { defs };
    merger
        .merge_map(original, patch, Some(schema), 0)
        .map(Value::Object)
}

/// A schema position: `None` when the schema does not describe the value.
type Schema<'d> = Option<&'d Value>;

/// What the schema says about one field.
struct FieldMeta<'d> {
    schema: Schema<'d>,
    /// The patch strategy without `retainKeys`: "", "merge" or "replace".
    strategy: &'d str,
    merge_key: &'d str,
}

impl FieldMeta<'_> {
    fn unknown() -> Self {
        FieldMeta {
            schema: None,
            strategy: "",
            merge_key: "",
        }
    }
}

/// Whether a list holds maps (merged by key) or primitives (merged by value).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Map,
    Primitive,
}

struct Merger<'d> {
    defs: &'d Definitions,
}

/// A merged list, and for a list of maps merged by key the live order upstream's
/// `$setElementOrder` step really sees (see [`LiveView`]).
struct Merged {
    list: Vec<Value>,
    live_view: Option<Vec<Option<String>>>,
}

/// The merge keys of the original list as upstream's `mergePatchIntoOriginal` sees them after
/// `mergeSlice`: Go deletes elements in place (`append(s[:i], s[i+1:]...)`) and appends new
/// ones into the freed tail of the same array, so the "live order" used to place server-only
/// elements is the original array's first `len` slots after those writes. Upstream's own
/// tests (e.g. "add map and delete map from merging list with conflict") depend on it.
struct LiveView {
    original: Vec<Option<String>>,
    /// Occurrences of each key among the original elements.
    counts: HashMap<String, usize>,
    deleted: HashSet<String>,
    /// Stale slot contents left behind the shrinking list.
    tail: Vec<Option<String>>,
    /// Length of the live list in the shared array.
    len: usize,
    /// One past the last original element not yet deleted.
    last: usize,
    appended: Vec<String>,
    /// After `$patch: replace` upstream appends to a new array.
    detached: bool,
}

impl LiveView {
    fn new(original: &[Value], merge_key: &str) -> LiveView {
        let original: Vec<Option<String>> = original
            .iter()
            .map(|v| key_of(v, Some(merge_key)))
            .collect();
        let mut counts = HashMap::new();
        for key in original.iter().flatten() {
            *counts.entry(key.clone()).or_insert(0) += 1;
        }
        let len = original.len();
        LiveView {
            tail: vec![None; len],
            original,
            counts,
            deleted: HashSet::new(),
            len,
            last: len,
            appended: Vec::new(),
            detached: false,
        }
    }

    /// `deleteMatchingEntries`: every removal shifts the rest left and leaves the list's last
    /// element in the freed slot.
    fn delete(&mut self, key: String) {
        if self.deleted.contains(&key) {
            return;
        }
        let removed = self.counts.get(&key).copied().unwrap_or(0);
        if removed == 0 {
            return;
        }
        while self.last > 0
            && self.original[self.last - 1]
                .as_ref()
                .is_some_and(|k| self.deleted.contains(k))
        {
            self.last -= 1;
        }
        let stale = self
            .last
            .checked_sub(1)
            .and_then(|i| self.original[i].clone());
        for slot in self.len.saturating_sub(removed)..self.len {
            self.tail[slot] = stale.clone();
        }
        self.len = self.len.saturating_sub(removed);
        self.deleted.insert(key);
    }

    fn append(&mut self, key: String) {
        if !self.detached {
            self.appended.push(key);
        }
    }

    fn detach(&mut self) {
        self.detached = true;
    }

    fn finish(self) -> Vec<Option<String>> {
        let size = self.original.len();
        let mut view: Vec<Option<String>> = self
            .original
            .into_iter()
            .filter(|k| k.as_ref().is_none_or(|k| !self.deleted.contains(k)))
            .collect();
        let live = view.len();
        view.extend(self.tail.into_iter().skip(live));
        for (slot, key) in (live..size).zip(self.appended) {
            view[slot] = Some(key);
        }
        view
    }
}

fn descend(depth: usize) -> Result<usize, SmpError> {
    if depth >= MAX_DEPTH {
        Err(SmpError::TooDeep)
    } else {
        Ok(depth + 1)
    }
}

impl<'d> Merger<'d> {
    /// Upstream's `LookupPatchMetadataForStruct`: the schema and patch metadata of `key`.
    fn field(&self, parent: Schema<'d>, key: &str) -> Result<FieldMeta<'d>, SmpError> {
        let Some(prop) = parent.and_then(|p| self.defs.child(p, Some(key))) else {
            return Ok(FieldMeta::unknown());
        };
        let resolved = self.defs.resolve(prop);
        let ext = |name: &str| {
            prop.get(name)
                .or_else(|| resolved.get(name))
                .and_then(Value::as_str)
        };
        Ok(FieldMeta {
            schema: Some(prop),
            strategy: strategy_without_retain_keys(
                ext("x-kubernetes-patch-strategy").unwrap_or(""),
            )?,
            merge_key: ext("x-kubernetes-patch-merge-key").unwrap_or(""),
        })
    }

    /// The schema of a list's elements. A field that is not an array (upstream's
    /// `mergeItemPtr` case) lends its own schema to its elements.
    fn items(&self, field: Schema<'d>) -> Schema<'d> {
        let field = field?;
        if let Some(items) = self.defs.child(field, None) {
            return Some(items);
        }
        let is_array =
            self.defs.resolve(field).get("type").and_then(Value::as_str) == Some("array");
        if is_array { None } else { Some(field) }
    }

    /// Upstream's `mergeMap`.
    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        schema: Schema<'d>,
        depth: usize,
    ) -> Result<Map<String, Value>, SmpError> {
        let depth = descend(depth)?;
        if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
            return match directive.as_str() {
                Some("replace") => {
                    patch.shift_remove(DIRECTIVE_MARKER);
                    // Upstream returns the rest of the patch as is; merging it into nothing
                    // gives the same object with any nested directives applied.
                    self.merge_map(Map::new(), patch, schema, depth)
                }
                Some("delete") => Ok(Map::new()),
                _ => Err(bad_patch_type(directive, &patch)),
            };
        }

        apply_retain_keys(&mut original, &mut patch)?;
        self.merge_set_element_order(&mut original, &mut patch, schema, depth)?;

        // Upstream visits keys in Go's random map order; deletion lists go last here so a
        // value both added and deleted ends up deleted, deterministically.
        let mut deletions = Vec::new();
        for (key, value) in patch {
            if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
                deletions.push((key, value));
            } else {
                self.merge_field(&mut original, key, value, false, schema, depth)?;
            }
        }
        for (key, value) in deletions {
            let field = extract_key(&key, DELETE_FROM_PRIMITIVE_LIST)
                .ok_or(SmpError::BadPrimitiveListFormat)?;
            self.merge_field(&mut original, field.to_owned(), value, true, schema, depth)?;
        }
        Ok(original)
    }

    /// One iteration of upstream's `mergeMap` loop.
    fn merge_field(
        &self,
        original: &mut Map<String, Value>,
        key: String,
        value: Value,
        is_delete_list: bool,
        schema: Schema<'d>,
        depth: usize,
    ) -> Result<(), SmpError> {
        if value.is_null() {
            original.shift_remove(&key);
            return Ok(());
        }
        if is_delete_list && !value.is_array() {
            return Err(SmpError::BadPrimitiveListFormat);
        }
        let same_kind = match original.get(&key) {
            None => false,
            Some(current) => json_kind(current) == json_kind(&value),
        };
        if !same_kind {
            // Absent, or a different type: the patch value replaces it (a deletion list has
            // nothing to delete from).
            if !is_delete_list {
                let meta = self.field(schema, &key)?;
                match self.fresh(value, meta.schema, depth)? {
                    Some(v) => {
                        original.insert(key, v);
                    }
                    None => {
                        original.shift_remove(&key);
                    }
                }
            }
            return Ok(());
        }
        let Some(slot) = original.get_mut(&key) else {
            return Ok(());
        };
        match (slot, value) {
            (Value::Object(current), Value::Object(patch)) => {
                let meta = self.field(schema, &key)?;
                let taken = std::mem::take(current);
                *current = if meta.strategy == "replace" {
                    self.merge_map(Map::new(), patch, meta.schema, depth)?
                } else {
                    self.merge_map(taken, patch, meta.schema, depth)?
                };
            }
            (Value::Array(current), Value::Array(patch)) => {
                let meta = self.field(schema, &key)?;
                let taken = std::mem::take(current);
                *current = self
                    .merge_slice_handler(taken, patch, &key, &meta, is_delete_list, depth)?
                    .list;
            }
            (slot, value) => *slot = value,
        }
        Ok(())
    }

    /// A patch value placed where the original has nothing to merge with: directives are
    /// applied against an empty value, `null`s inside maps are dropped (upstream's
    /// `discardNullValuesFromPatch`), and a `$patch: delete` map means "leave it absent".
    fn fresh(
        &self,
        value: Value,
        schema: Schema<'d>,
        depth: usize,
    ) -> Result<Option<Value>, SmpError> {
        match value {
            Value::Object(map) => {
                if map.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some("delete") {
                    return Ok(None);
                }
                Ok(Some(Value::Object(self.merge_map(
                    Map::new(),
                    map,
                    schema,
                    depth,
                )?)))
            }
            Value::Array(list) => Ok(Some(Value::Array(self.fresh_list(
                list,
                self.items(schema),
                depth,
            )?))),
            other => Ok(Some(other)),
        }
    }

    /// Upstream's `removeDirectives` for a list: elements carrying `$patch` are dropped, maps
    /// are cleaned as in [`Merger::fresh`].
    fn fresh_list(
        &self,
        list: Vec<Value>,
        items: Schema<'d>,
        depth: usize,
    ) -> Result<Vec<Value>, SmpError> {
        let depth = descend(depth)?;
        let mut out = Vec::with_capacity(list.len());
        for element in list {
            match element {
                Value::Object(map) if map.contains_key(DIRECTIVE_MARKER) => {}
                Value::Object(map) => {
                    out.push(Value::Object(self.merge_map(
                        Map::new(),
                        map,
                        items,
                        depth,
                    )?));
                }
                Value::Array(inner) => {
                    out.push(Value::Array(self.fresh_list(inner, None, depth)?));
                }
                other => out.push(other),
            }
        }
        Ok(out)
    }

    /// Upstream's `mergeSliceHandler`.
    fn merge_slice_handler(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        field: &str,
        meta: &FieldMeta<'d>,
        is_delete_list: bool,
        depth: usize,
    ) -> Result<Merged, SmpError> {
        // Deletion lists apply whatever the field's strategy is.
        if meta.strategy == "merge" || is_delete_list {
            self.merge_slice(original, patch, field, meta, is_delete_list, depth)
        } else {
            Ok(Merged {
                list: self.fresh_list(patch, self.items(meta.schema), depth)?,
                live_view: None,
            })
        }
    }

    /// Upstream's `mergeSlice`.
    fn merge_slice(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        field: &str,
        meta: &FieldMeta<'d>,
        is_delete_list: bool,
        depth: usize,
    ) -> Result<Merged, SmpError> {
        let depth = descend(depth)?;
        let (items, merge_key) = (self.items(meta.schema), meta.merge_key);
        let Some(kind) = element_kind(&original, &patch)? else {
            return Ok(Merged {
                list: original,
                live_view: None,
            });
        };

        if kind == ElementKind::Primitive {
            if is_delete_list {
                let doomed: HashSet<String> = patch.iter().map(canon).collect();
                let list = original
                    .into_iter()
                    .filter(|v| !doomed.contains(&canon(v)))
                    .collect();
                return Ok(Merged {
                    list,
                    live_view: None,
                });
            }
            let mut seen = HashSet::new();
            let merged: Vec<Value> = original
                .iter()
                .chain(patch.iter())
                .filter(|v| seen.insert(canon(v)))
                .cloned()
                .collect();
            let patch_order = Order::of(&patch, None);
            let server_order = Order::of(&original, None);
            let (in_patch, server_only) = merged.into_iter().partition(|v| patch_order.contains(v));
            let list =
                normalize_element_order(in_patch, server_only, &patch_order, &server_order, None);
            return Ok(Merged {
                list,
                live_view: None,
            });
        }

        if is_delete_list {
            // Upstream would merge the "deleted" maps in; that is never what a client means.
            return Err(SmpError::BadPrimitiveListFormat);
        }
        if merge_key.is_empty() {
            return Err(SmpError::MergeKeyUndeclared(field.to_owned()));
        }

        // mergeSliceWithSpecialElements: `$patch` elements delete by key or replace the list.
        let mut view = LiveView::new(&original, merge_key);
        let mut doomed = HashSet::new();
        let mut replace = false;
        let mut plain = Vec::with_capacity(patch.len());
        for element in patch {
            let map = match element {
                Value::Object(map) => map,
                other => return Err(bad_arg_type(GO_MAP, &other)),
            };
            let Some(directive) = map.get(DIRECTIVE_MARKER) else {
                plain.push(map);
                continue;
            };
            match directive.as_str() {
                Some("delete") => match map.get(merge_key) {
                    Some(key) => {
                        view.delete(canon(key));
                        doomed.insert(canon(key));
                    }
                    None => return Err(no_merge_key(&map, merge_key)),
                },
                Some("replace") => replace = true,
                Some("merge") => return Err(SmpError::MergeDirectiveInList),
                _ => return Err(bad_patch_type(directive, &map)),
            }
        }
        let mut original: Vec<Value> = original
            .into_iter()
            .filter(|v| v.get(merge_key).is_none_or(|k| !doomed.contains(&canon(k))))
            .collect();
        if replace {
            view.detach();
            let mut replacement = Vec::with_capacity(plain.len());
            for map in plain.drain(..) {
                replacement.push(Value::Object(self.merge_map(
                    Map::new(),
                    map,
                    items,
                    depth,
                )?));
            }
            original = replacement;
        }
        for element in &original {
            require_merge_key(element, merge_key)?;
        }
        let server_order = Order::of(&original, Some(merge_key));

        // mergeSliceWithoutSpecialElements: merge into the first element with the same key,
        // or append.
        let mut position: HashMap<String, usize> = HashMap::new();
        for (i, element) in original.iter().enumerate() {
            if let Some(key) = element.get(merge_key) {
                position.entry(canon(key)).or_insert(i);
            }
        }
        let mut patch_keys = Vec::with_capacity(plain.len());
        let mut merged = original;
        for map in plain {
            let Some(key) = map.get(merge_key) else {
                return Err(no_merge_key(&map, merge_key));
            };
            let key = canon(key);
            patch_keys.push(key.clone());
            match position.get(&key) {
                Some(&i) => {
                    let current = match std::mem::take(&mut merged[i]) {
                        Value::Object(current) => current,
                        _ => Map::new(),
                    };
                    merged[i] = Value::Object(self.merge_map(current, map, items, depth)?);
                }
                None => {
                    let added = self.merge_map(Map::new(), map, items, depth)?;
                    view.append(key.clone());
                    position.insert(key, merged.len());
                    merged.push(Value::Object(added));
                }
            }
        }

        let patch_order = Order::from_keys(patch_keys.into_iter().map(Some));
        let mut in_patch = Vec::new();
        let mut server_only = Vec::new();
        for element in merged {
            require_merge_key(&element, merge_key)?;
            if element
                .get(merge_key)
                .is_some_and(|k| patch_order.contains(k))
            {
                in_patch.push(element);
            } else {
                server_only.push(element);
            }
        }
        let list = normalize_element_order(
            in_patch,
            server_only,
            &patch_order,
            &server_order,
            Some(merge_key),
        );
        Ok(Merged {
            list,
            live_view: Some(view.finish()),
        })
    }

    /// Upstream's `mergePatchIntoOriginal`: every `$setElementOrder/<field>` merges `<field>`
    /// and then orders it.
    fn merge_set_element_order(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        schema: Schema<'d>,
        depth: usize,
    ) -> Result<(), SmpError> {
        let directives: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for directive in directives {
            let Some(order) = patch.shift_remove(&directive) else {
                continue;
            };
            let order = match order {
                Value::Array(order) => order,
                other => return Err(bad_arg_type(GO_LIST, &other)),
            };
            let field = extract_key(&directive, SET_ELEMENT_ORDER)
                .ok_or(SmpError::BadSetElementOrderFormat)?
                .to_owned();
            let current = match original.get_mut(&field) {
                None => None,
                Some(Value::Array(list)) => Some(std::mem::take(list)),
                Some(other) => return Err(bad_arg_type(GO_LIST, other)),
            };
            let patch_list = match patch.shift_remove(&field) {
                None => None,
                Some(Value::Array(list)) => Some(list),
                Some(other) => return Err(bad_arg_type(GO_LIST, &other)),
            };
            let meta = self.field(schema, &field)?;
            let merge_key = (!meta.merge_key.is_empty()).then_some(meta.merge_key);
            validate_patch_with_set_order_list(
                patch_list.as_deref().unwrap_or_default(),
                &order,
                merge_key,
            )?;

            let kind = element_kind(
                current.as_deref().unwrap_or_default(),
                patch_list.as_deref().unwrap_or_default(),
            )?;
            let mut server_order = Order::of(current.as_deref().unwrap_or_default(), merge_key);
            let merged = match (current, patch_list) {
                (Some(current), None) => current,
                (None, Some(list)) => self.fresh_list(list, self.items(meta.schema), depth)?,
                (Some(current), Some(list)) => {
                    let merged =
                        self.merge_slice_handler(current, list, &field, &meta, false, depth)?;
                    if let Some(view) = merged.live_view {
                        server_order = Order::from_keys(view);
                    }
                    merged.list
                }
                (None, None) => continue,
            };
            let Some(kind) = kind else {
                original.insert(field, Value::Array(merged));
                continue;
            };

            let key_of = match (kind, merge_key) {
                (ElementKind::Map, Some(key)) => Some(key),
                _ => None,
            };
            if let Some(key) = key_of {
                for entry in &order {
                    require_merge_key(entry, key)?;
                }
            }
            let order = Order::of(&order, key_of);
            let mut in_order = Vec::new();
            let mut server_only = Vec::new();
            for element in merged {
                let listed = match key_of {
                    Some(key) => {
                        require_merge_key(&element, key)?;
                        element.get(key).is_some_and(|k| order.contains(k))
                    }
                    None => order.contains(&element),
                };
                if listed {
                    in_order.push(element);
                } else {
                    server_only.push(element);
                }
            }
            let ordered =
                normalize_element_order(in_order, server_only, &order, &server_order, key_of);
            original.insert(field, Value::Array(ordered));
        }
        Ok(())
    }
}

/// Upstream's `extractRetainKeysPatchStrategy`, on the comma-separated extension value.
fn strategy_without_retain_keys(raw: &str) -> Result<&str, SmpError> {
    let parts: Vec<&str> = raw.split(',').collect();
    match parts.as_slice() {
        [single] if *single == "retainKeys" => Ok(""),
        [single] => Ok(single),
        [a, b] if *a == "retainKeys" => Ok(b),
        [a, b] if *b == "retainKeys" => Ok(a),
        _ => Err(SmpError::UnexpectedPatchStrategy(format!(
            "[{}]",
            parts.join(" ")
        ))),
    }
}

/// Upstream's `applyRetainKeysDirective` (server side: the list is enforced, then dropped).
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), SmpError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(SmpError::BadRetainKeysFormat);
    };
    let keep: HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !keep.contains(key.as_str()) {
            return Err(SmpError::BadRetainKeysFormat);
        }
    }
    original.retain(|key, _| keep.contains(key.as_str()));
    Ok(())
}

/// Upstream's `validatePatchWithSetOrderList`: the patch list must be a subsequence of the
/// `$setElementOrder` list (deletions and directive elements aside).
fn validate_patch_with_set_order_list(
    patch: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), SmpError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(patch.len());
    for element in patch {
        if merge_key.is_some() {
            let Value::Object(map) = element else {
                return Err(bad_arg_type(GO_MAP, element));
            };
            if map.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        kept.push(element);
    }
    let (mut p, mut s) = (0, 0);
    while p < kept.len() && s < order.len() {
        if kept[p].get(DIRECTIVE_MARKER).is_some() {
            p += 1;
            continue;
        }
        if merge_key_value_equal(kept[p], &order[s], merge_key)? {
            p += 1;
        }
        s += 1;
    }
    if p < kept.len() && s >= order.len() {
        return Err(SmpError::SetElementOrderMismatch {
            patch: go_fmt_list(patch),
            order: go_fmt_list(order),
        });
    }
    Ok(())
}

/// Upstream's `mergeKeyValueEqual`.
fn merge_key_value_equal(
    left: &Value,
    right: &Value,
    merge_key: Option<&str>,
) -> Result<bool, SmpError> {
    let Some(key) = merge_key else {
        return Ok(left == right);
    };
    let (Value::Object(l), Value::Object(r)) = (left, right) else {
        let odd = if left.is_object() { right } else { left };
        return Err(bad_arg_type(GO_MAP, odd));
    };
    let Some(lk) = l.get(key) else {
        return Err(no_merge_key(l, key));
    };
    let Some(rk) = r.get(key) else {
        return Err(no_merge_key(r, key));
    };
    Ok(lk == rk)
}

/// Upstream's `sliceElementType`: `None` for no elements, an error for lists of lists or mixed
/// element types.
fn element_kind(a: &[Value], b: &[Value]) -> Result<Option<ElementKind>, SmpError> {
    let mut first: Option<u8> = None;
    for v in a.iter().chain(b) {
        let kind = json_kind(v);
        match first {
            None if v.is_array() => return Err(SmpError::ListOfLists),
            None => first = Some(kind),
            Some(k) if k != kind => {
                return Err(SmpError::MixedListElements(format!(
                    "[{} {}]",
                    go_fmt_list(a),
                    go_fmt_list(b)
                )));
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|k| {
        if k == KIND_OBJECT {
            ElementKind::Map
        } else {
            ElementKind::Primitive
        }
    }))
}

/// [`json_kind`] of a map.
const KIND_OBJECT: u8 = 5;

/// The JSON type of a value, numbers being one type.
fn json_kind(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => KIND_OBJECT,
    }
}

/// The first position of each key (a merge key value, or a primitive itself) in a list.
struct Order {
    first: HashMap<String, usize>,
}

impl Order {
    fn of(list: &[Value], merge_key: Option<&str>) -> Order {
        Order::from_keys(list.iter().map(|v| key_of(v, merge_key)))
    }

    /// Positions of keys; `None` holds a position without a key (an element lacking the
    /// merge key).
    fn from_keys(keys: impl IntoIterator<Item = Option<String>>) -> Order {
        let mut first = HashMap::new();
        for (i, key) in keys.into_iter().enumerate() {
            if let Some(key) = key {
                first.entry(key).or_insert(i);
            }
        }
        Order { first }
    }

    fn index(&self, key: &str) -> Option<usize> {
        self.first.get(key).copied()
    }

    fn contains(&self, key: &Value) -> bool {
        self.first.contains_key(&canon(key))
    }
}

/// Upstream's `normalizeElementOrder`: sort the patch's elements by the patch (or
/// `$setElementOrder`) order and the server-only ones by the live order, then interleave them
/// (`mergeSortedSlice`): a server-only element goes first only when the live order puts it
/// before the next patch element.
fn normalize_element_order(
    in_patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &Order,
    server_order: &Order,
    merge_key: Option<&str>,
) -> Vec<Value> {
    // Elements an order does not list sort last (upstream's comparator leaves them wherever
    // Go's sort happens to put them).
    let sorted = |list: Vec<Value>, order: &Order| -> Vec<(Option<usize>, Value)> {
        let mut keyed: Vec<(usize, Option<usize>, Value)> = list
            .into_iter()
            .map(|v| {
                let key = key_of(&v, merge_key);
                let by = key.as_deref().and_then(|k| order.index(k));
                let live = key.as_deref().and_then(|k| server_order.index(k));
                (by.unwrap_or(usize::MAX), live, v)
            })
            .collect();
        keyed.sort_by_key(|(by, _, _)| *by);
        keyed.into_iter().map(|(_, live, v)| (live, v)).collect()
    };
    let left = sorted(server_only, server_order);
    let right = sorted(in_patch, patch_order);

    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((Some(l), _)), Some((Some(r), _))) => l < r,
            _ => false,
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((_, v)) = next {
            out.push(v);
        }
    }
    out
}

/// Splits `<prefix>/<field>`; `None` when the key does not have that shape.
fn extract_key<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    match key.split_once('/') {
        Some((head, field)) if head == prefix => Some(field),
        _ => None,
    }
}

/// The key an element is ordered by: its merge key value, or the element itself.
fn key_of(v: &Value, merge_key: Option<&str>) -> Option<String> {
    match merge_key {
        Some(key) => v.get(key).map(canon),
        None => Some(canon(v)),
    }
}

fn require_merge_key(element: &Value, merge_key: &str) -> Result<(), SmpError> {
    match element {
        Value::Object(map) if map.contains_key(merge_key) => Ok(()),
        Value::Object(map) => Err(no_merge_key(map, merge_key)),
        other => Err(bad_arg_type(GO_MAP, other)),
    }
}

/// A hashable, exact rendering of a value (merge keys and primitives are matched by it).
fn canon(v: &Value) -> String {
    v.to_string()
}

fn no_merge_key(map: &Map<String, Value>, key: &str) -> SmpError {
    let mut s = String::new();
    go_fmt_map(map, &mut s, 0);
    SmpError::NoMergeKey {
        map: s,
        key: key.to_owned(),
    }
}

fn bad_patch_type(directive: &Value, map: &Map<String, Value>) -> SmpError {
    let mut m = String::new();
    go_fmt_map(map, &mut m, 0);
    SmpError::BadPatchType {
        directive: go_fmt(directive),
        map: m,
    }
}

fn bad_arg_type(expected: &'static str, actual: &Value) -> SmpError {
    SmpError::BadArgType {
        expected,
        actual: go_type_name(actual),
    }
}

/// Go's name for the dynamic type `encoding/json` (via apimachinery's `util/json`) decodes to.
fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "%!s(<nil>)",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => GO_LIST,
        Value::Object(_) => GO_MAP,
    }
}

/// A value rendered like Go's `%v` of the decoded value, truncated for error messages.
fn go_fmt(v: &Value) -> String {
    let mut s = String::new();
    go_fmt_into(v, &mut s, 0);
    s
}

fn go_fmt_list(list: &[Value]) -> String {
    let mut s = String::from("[");
    for (i, v) in list.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        go_fmt_into(v, &mut s, 1);
        if s.len() > MAX_MESSAGE_VALUE {
            s.push_str("...");
            return s;
        }
    }
    s.push(']');
    s
}

fn go_fmt_into(v: &Value, out: &mut String, depth: usize) {
    if out.len() > MAX_MESSAGE_VALUE || depth > 32 {
        out.push_str("...");
        return;
    }
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(s),
        Value::Array(list) => {
            out.push('[');
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_fmt_into(item, out, depth + 1);
                if out.len() > MAX_MESSAGE_VALUE {
                    break;
                }
            }
            out.push(']');
        }
        Value::Object(map) => go_fmt_map(map, out, depth),
    }
}

fn go_fmt_map(map: &Map<String, Value>, out: &mut String, depth: usize) {
    // Go prints map keys sorted.
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push_str("map[");
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push(':');
        if let Some(v) = map.get(key) {
            go_fmt_into(v, out, depth + 1);
        }
        if out.len() > MAX_MESSAGE_VALUE {
            out.push_str("...");
            break;
        }
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Upstream's `testdata/swagger-merge-item-v3.json`, in this module's data format.
    const MERGE_ITEM: &str = r#"{"definitions":{
"mergeItem":{"type":"object","properties":{
  "name":{"type":"string"},"value":{"type":"string"},"other":{"type":"string"},
  "mergingList":{"type":"array","items":{"$ref":"mergeItem"},
    "x-kubernetes-patch-merge-key":"name","x-kubernetes-patch-strategy":"merge"},
  "nonMergingList":{"type":"array","items":{"$ref":"mergeItem"}},
  "mergingIntList":{"type":"array","items":{"type":"integer"},"x-kubernetes-patch-strategy":"merge"},
  "nonMergingIntList":{"type":"array","items":{"type":"integer"}},
  "mergeItemPtr":{"allOf":[{"$ref":"mergeItem"}],
    "x-kubernetes-patch-merge-key":"name","x-kubernetes-patch-strategy":"merge"},
  "simpleMap":{"type":"object","additionalProperties":{"type":"string"}},
  "replacingItem":{"$ref":"io.k8s.apimachinery.pkg.runtime.RawExtension","x-kubernetes-patch-strategy":"replace"},
  "retainKeysMap":{"$ref":"retainKeysMergeItem","x-kubernetes-patch-strategy":"retainKeys"},
  "retainKeysMergingList":{"type":"array","items":{"$ref":"mergeItem"},
    "x-kubernetes-patch-merge-key":"name","x-kubernetes-patch-strategy":"merge,retainKeys"}}},
"retainKeysMergeItem":{"type":"object","properties":{
  "name":{"type":"string"},"value":{"type":"string"},"other":{"type":"string"},
  "simpleMap":{"type":"object","additionalProperties":{"type":"string"}},
  "mergingList":{"type":"array","items":{"$ref":"mergeItem"},
    "x-kubernetes-patch-merge-key":"name","x-kubernetes-patch-strategy":"merge"},
  "nonMergingList":{"type":"array","items":{"$ref":"mergeItem"}},
  "mergingIntList":{"type":"array","items":{"type":"integer"},"x-kubernetes-patch-strategy":"merge"}}},
"io.k8s.apimachinery.pkg.runtime.RawExtension":{"type":"object"}
}}"#;

    fn merge_item() -> (Definitions, Value) {
        let defs = Definitions::parse(MERGE_ITEM.as_bytes()).unwrap();
        let root = defs.get("mergeItem").unwrap().clone();
        (defs, root)
    }

    fn run(original: &Value, patch: &Value) -> Result<Value, SmpError> {
        let (defs, root) = merge_item();
        apply(&defs, &root, original, patch)
    }

    /// Asserts that no directive key survived anywhere in `v`.
    fn assert_no_directives(v: &Value, context: &str) {
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    assert!(
                        key != DIRECTIVE_MARKER
                            && key != RETAIN_KEYS_DIRECTIVE
                            && !key.starts_with(SET_ELEMENT_ORDER)
                            && !key.starts_with(DELETE_FROM_PRIMITIVE_LIST),
                        "{context}: directive {key} leaked into {v}"
                    );
                    assert_no_directives(value, context);
                }
            }
            Value::Array(list) => list.iter().for_each(|x| assert_no_directives(x, context)),
            _ => {}
        }
    }

    /// One application from upstream's table: `patch` on `original` must give `expected`
    /// (list order included; map key order is irrelevant, as in Go).
    struct Case {
        name: &'static str,
        original: Value,
        patch: Value,
        expected: Value,
    }

    fn check(cases: Vec<Case>) {
        for c in cases {
            let got = match run(&c.original, &c.patch) {
                Ok(v) => v,
                Err(e) => panic!("{}: unexpected error {e}", c.name),
            };
            assert_eq!(got, c.expected, "{}", c.name);
            assert_no_directives(&got, c.name);
        }
    }

    fn case(name: &'static str, original: Value, patch: Value, expected: Value) -> Case {
        Case {
            name,
            original,
            patch,
            expected,
        }
    }

    #[test]
    fn upstream_custom_cases() {
        check(vec![
            case(
                "unique scalars when merging lists",
                json!({"mergingIntList": [1, 2]}),
                json!({"mergingIntList": [2, 3]}),
                json!({"mergingIntList": [1, 2, 3]}),
            ),
            case(
                "delete map from nested map",
                json!({"simpleMap": {"key1": "1", "key2": "1"}}),
                json!({"simpleMap": {"$patch": "delete"}}),
                json!({"simpleMap": {}}),
            ),
            case(
                "delete all items from merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2}]}),
                json!({"mergingList": [{"$patch": "replace"}]}),
                json!({"mergingList": []}),
            ),
            case(
                "merge empty merging lists",
                json!({"mergingList": []}),
                json!({"mergingList": []}),
                json!({"mergingList": []}),
            ),
            case(
                "delete all keys from map",
                json!({"name": 1, "value": 1}),
                json!({"$patch": "replace"}),
                json!({}),
            ),
            case(
                "add key and delete all keys from map",
                json!({"name": 1, "value": 1}),
                json!({"other": "a", "$patch": "replace"}),
                json!({"other": "a"}),
            ),
            case(
                "delete all duplicate entries in a merging list",
                json!({"mergingList": [{"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}]}),
                json!({"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}]}),
                json!({"mergingList": [{"name": 2, "value": "a"}]}),
            ),
            case(
                "retainKeys map can add a field when no retainKeys directive present",
                json!({"retainKeysMap": {"name": "foo"}}),
                json!({"retainKeysMap": {"value": "bar"}}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            ),
            case(
                "retainKeys map can delete a field when no retainKeys directive present",
                json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
                json!({"retainKeysMap": {"value": null}}),
                json!({"retainKeysMap": {"name": "foo"}}),
            ),
            case(
                "retainKeys list can change a field when no retainKeys directive present",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
                json!({"retainKeysMergingList": [{"name": "foo", "value": "b"}]}),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "b"}]}),
            ),
            case(
                "preserve the order from the patch in a merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
                json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}]}),
                json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "value": "b", "other": "x"}]}),
            ),
            case(
                "preserve the order from the patch in a merging list 2",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
                json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
                json!({"mergingList": [{"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
            ),
            case(
                "preserve the order from the patch in a merging int list",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"mergingIntList": [3, 1, 2]}),
                json!({"mergingIntList": [3, 1, 2]}),
            ),
            case(
                "preserve the order from the patch in a merging int list 2",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"mergingIntList": [3, 1]}),
                json!({"mergingIntList": [2, 3, 1]}),
            ),
            case(
                "$setElementOrder contains item that is not present in the list to be merged",
                json!({"mergingList": [{"name": 1}, {"name": 3}]}),
                json!({"$setElementOrder/mergingList": [{"name": 3}, {"name": 2}, {"name": 1}],
                       "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
                json!({"mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
            ),
            case(
                "$setElementOrder contains item that is not present in the int list to be merged",
                json!({"mergingIntList": [1, 3]}),
                json!({"$setElementOrder/mergingIntList": [3, 2, 1]}),
                json!({"mergingIntList": [3, 1]}),
            ),
            case(
                "$deleteFromPrimitiveList of nonexistent item in primitive list should not add the item to the list",
                json!({"mergingIntList": [1, 2]}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2]}),
            ),
            case(
                "$deleteFromPrimitiveList on empty primitive list should not add the item to the list",
                json!({"mergingIntList": null}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": null}),
            ),
            case(
                "$deleteFromPrimitiveList on nonexistent primitive list should not add the primitive list",
                json!({"foo": ["bar"]}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"foo": ["bar"]}),
            ),
            case(
                "$deleteFromPrimitiveList should delete item from a list without merge patch strategy",
                json!({"nonMergingIntList": [1, 2, 3]}),
                json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]}),
                json!({"nonMergingIntList": [1, 3]}),
            ),
        ]);
    }

    #[test]
    fn upstream_custom_error_cases() {
        let cases = [
            (
                "should check if order in $setElementOrder and patch list match",
                json!({"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]}),
                json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                       "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
                "doesn't match",
            ),
            (
                "should check if order in $setElementOrder and patch int list match",
                json!({"mergingIntList": [1, 3, 2]}),
                json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]}),
                "doesn't match",
            ),
            (
                "missing merge key should error out",
                json!({"mergingList": [{"name": 1, "value": "a"}]}),
                json!({"mergingList": [{"value": "b"}]}),
                "map: map[value:b] does not contain declared merge key: name",
            ),
        ];
        for (name, original, patch, want) in cases {
            match run(&original, &patch) {
                Ok(v) => panic!("{name}: expected an error, got {v}"),
                Err(e) => assert!(e.to_string().contains(want), "{name}: {e}"),
            }
        }
    }

    /// `strategicMergePatchRawTestCases`: each gives a two-way application (original → modified)
    /// and a three-way one (current → result).
    #[test]
    fn upstream_raw_cases() {
        check(vec![
            case(
                "delete items in lists of scalars (two-way)",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2]}),
            ),
            case(
                "delete items in lists of scalars (three-way)",
                json!({"mergingIntList": [1, 2, 3, 4]}),
                json!({"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2, 4]}),
            ),
            case(
                "delete all duplicate items in lists of scalars",
                json!({"mergingIntList": [1, 2, 3, 3, 4]}),
                json!({"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2, 4]}),
            ),
            case(
                "add and delete items in lists of scalars",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"$setElementOrder/mergingIntList": [1, 2, 4], "$deleteFromPrimitiveList/mergingIntList": [3], "mergingIntList": [4]}),
                json!({"mergingIntList": [1, 2, 4]}),
            ),
            case(
                "merge lists of maps (two-way)",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": 2}]}),
                json!({"$setElementOrder/mergingList": [{"name": 4}, {"name": 1}, {"name": 2}, {"name": 3}],
                       "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}]}),
                json!({"mergingList": [{"name": 4, "value": 4}, {"name": 1}, {"name": 2, "value": 2}, {"name": 3, "value": 3}]}),
            ),
            case(
                "merge lists of maps (three-way)",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 4}, {"name": 1}, {"name": 2}, {"name": 3}],
                       "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}]}),
                json!({"mergingList": [{"name": 4, "value": 4}, {"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3}]}),
            ),
            case(
                "add field to map in merging list with conflict (three-way)",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 3, "value": 2, "other": "b"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                       "mergingList": [{"name": 1, "value": 1}, {"name": 2, "value": 2}]}),
                json!({"mergingList": [{"name": 1, "value": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 3, "value": 2, "other": "b"}]}),
            ),
            case(
                "de-duplicate field in merging list",
                json!({"mergingList": [{"name": 1}, {"name": 1}]}),
                json!({"$setElementOrder/mergingList": [{"name": 1}], "mergingList": [{"$patch": "delete", "name": 1}]}),
                json!({"mergingList": []}),
            ),
            case(
                "delete duplicate field in merging list (a map replaces the list)",
                json!({"mergingList": [{"name": 1}, {"name": 1}]}),
                json!({"mergingList": {}}),
                json!({"mergingList": {}}),
            ),
            case(
                "delete map from merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2, "other": "b"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}], "mergingList": [{"name": 1, "$patch": "delete"}]}),
                json!({"mergingList": [{"name": 2, "other": "b"}]}),
            ),
            case(
                "delete missing map from merging list with conflict (three-way)",
                json!({"mergingList": [{"name": 3, "other": "a"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}],
                       "mergingList": [{"name": 2}, {"name": 1, "$patch": "delete"}]}),
                json!({"mergingList": [{"name": 2}, {"name": 3, "other": "a"}]}),
            ),
            case(
                "add map and delete map from merging list (three-way)",
                json!({"mergingList": [{"name": 1}, {"name": 2, "other": "b"}, {"name": 4, "other": "c"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 3}],
                       "mergingList": [{"name": 3}, {"name": 1, "$patch": "delete"}]}),
                json!({"mergingList": [{"name": 2, "other": "b"}, {"name": 4, "other": "c"}, {"name": 3}]}),
            ),
            case(
                "add map and delete map from merging list with conflict (three-way)",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 4, "other": "c"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 3}],
                       "mergingList": [{"name": 2}, {"name": 3}, {"name": 1, "$patch": "delete"}]}),
                json!({"mergingList": [{"name": 4, "other": "c"}, {"name": 2}, {"name": 3}]}),
            ),
            case(
                "delete field from map in merging list (three-way)",
                json!({"mergingList": [{"name": 1, "value": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}], "mergingList": [{"name": 1, "value": null}]}),
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
            ),
            case(
                "replace non merging list nested in merging list (three-way)",
                json!({"mergingList": [{"name": 1, "other": "a", "nonMergingList": [{"name": 1}, {"name": 2, "value": 2}]}, {"name": 2, "other": "b"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                       "mergingList": [{"name": 1, "nonMergingList": [{"name": 1, "value": 1}]}]}),
                json!({"mergingList": [{"name": 1, "other": "a", "nonMergingList": [{"name": 1, "value": 1}]}, {"name": 2, "other": "b"}]}),
            ),
            case(
                "add field to map in merging list nested in merging list with deletion conflict",
                json!({"mergingList": [{"name": 1, "other": "a", "mergingList": [{"name": 2, "value": 2, "other": "d"}]}, {"name": 2, "other": "b"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                       "mergingList": [{"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}], "name": 1,
                                        "mergingList": [{"name": 1, "value": 1}]}]}),
                json!({"mergingList": [{"name": 1, "other": "a", "mergingList": [{"name": 2, "value": 2, "other": "d"}, {"name": 1, "value": 1}]}, {"name": 2, "other": "b"}]}),
            ),
            case(
                "add field to map in merging list nested in merging list with value conflict",
                json!({"mergingList": [{"name": 1, "other": "a", "mergingList": [{"name": 1, "value": "a", "other": "c"}, {"name": 2, "value": "b", "other": "d"}]}, {"name": 2, "other": "b"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}],
                       "mergingList": [{"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}], "name": 1,
                                        "mergingList": [{"name": 1, "value": 1}, {"name": 2, "value": 2}]}]}),
                json!({"mergingList": [{"name": 1, "other": "a", "mergingList": [{"name": 1, "value": 1, "other": "c"}, {"name": 2, "value": 2, "other": "d"}]}, {"name": 2, "other": "b"}]}),
            ),
            case(
                "add map to merging list by pointer (three-way)",
                json!({"mergeItemPtr": [{"name": 1, "other": "a"}, {"name": 3}]}),
                json!({"$setElementOrder/mergeItemPtr": [{"name": 1}, {"name": 2}], "mergeItemPtr": [{"name": 2}]}),
                json!({"mergeItemPtr": [{"name": 1, "other": "a"}, {"name": 2}, {"name": 3}]}),
            ),
            case(
                "merge lists of scalars (three-way)",
                json!({"mergingIntList": [1, 2, 4]}),
                json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2, 3, 4]}),
            ),
            case(
                "add an item in a list of primitives and preserve order (three-way)",
                json!({"mergingIntList": [1, 4, 2]}),
                json!({"$setElementOrder/mergingIntList": [3, 1, 2], "mergingIntList": [3]}),
                json!({"mergingIntList": [3, 1, 4, 2]}),
            ),
            case(
                "delete an item in a list of primitives and preserve order",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"$setElementOrder/mergingIntList": [2, 1], "$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": [2, 1]}),
            ),
            case(
                "add multiple items in a list and preserve order (three-way)",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 4}, {"name": 2}, {"name": 3}],
                       "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}]}),
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 4, "value": 4}, {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3}]}),
            ),
            case(
                "delete an item in a list and preserve order (three-way)",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3}]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}], "mergingList": [{"name": 3, "$patch": "delete"}]}),
                json!({"mergingList": [{"name": 2, "value": 2, "other": "b"}, {"name": 1, "other": "a"}]}),
            ),
            case(
                "change an item in a list and preserve order (three-way)",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3}]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 3}, {"name": 1}], "mergingList": [{"name": 3, "value": "x"}]}),
                json!({"mergingList": [{"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": "x"}, {"name": 1, "other": "a"}]}),
            ),
            case(
                "add and delete an item in a list and preserve order (three-way)",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3}]}),
                json!({"$setElementOrder/mergingList": [{"name": 4}, {"name": 2}, {"name": 1}],
                       "mergingList": [{"name": 4, "value": 4}, {"name": 3, "$patch": "delete"}]}),
                json!({"mergingList": [{"name": 4, "value": 4}, {"name": 2, "value": 2, "other": "b"}, {"name": 1, "other": "a"}]}),
            ),
            case(
                "set elements order in a list with server-only items",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 3, "value": 3}, {"name": 4, "value": 4}, {"name": 2, "value": 2}, {"name": 9}]}),
                json!({"$setElementOrder/mergingList": [{"name": 4}, {"name": 2}, {"name": 3}, {"name": 1}]}),
                json!({"mergingList": [{"name": 4, "value": 4}, {"name": 2, "value": 2}, {"name": 3, "value": 3}, {"name": 1, "other": "a"}, {"name": 9}]}),
            ),
            case(
                "set elements order in a list with server-only items 2",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 9}, {"name": 3, "value": 3}, {"name": 4, "value": 4}]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}]}),
                json!({"mergingList": [{"name": 2, "value": 2}, {"name": 1, "other": "a"}, {"name": 9}, {"name": 4, "value": 4}, {"name": 3, "value": 3}]}),
            ),
            case(
                "set elements order in a list with server-only items 3",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2}, {"name": 7}, {"name": 9}, {"name": 8}, {"name": 3, "value": 3}, {"name": 4, "value": 4}]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}]}),
                json!({"mergingList": [{"name": 2, "value": 2}, {"name": 1, "other": "a"}, {"name": 7}, {"name": 9}, {"name": 8}, {"name": 4, "value": 4}, {"name": 3, "value": 3}]}),
            ),
            case(
                "set elements order in a int list with server-only items 3",
                json!({"mergingIntList": [1, 2, 7, 9, 8, 3, 4]}),
                json!({"$setElementOrder/mergingIntList": [2, 1, 4, 3]}),
                json!({"mergingIntList": [2, 1, 7, 9, 8, 4, 3]}),
            ),
            case(
                "add and delete an item in a int list and preserve order",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"$setElementOrder/mergingIntList": [4, 2, 1], "mergingIntList": [4], "$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": [4, 2, 1]}),
            ),
            case(
                "behavior of set element order for a merging list with duplicate",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "dup1"}, {"name": 3}, {"name": 2, "value": "dup2"}, {"name": 4}]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}, {"name": 2}]}),
                json!({"mergingList": [{"name": 2, "value": "dup1"}, {"name": 2, "value": "dup2"}, {"name": 1}, {"name": 4}, {"name": 3}]}),
            ),
            case(
                "behavior of set element order for a merging int list with duplicate",
                json!({"mergingIntList": [1, 2, 3, 2, 4]}),
                json!({"$setElementOrder/mergingIntList": [2, 1, 4, 3, 2]}),
                json!({"mergingIntList": [2, 2, 1, 4, 3]}),
            ),
            case(
                "retainKeys map should clear defaulted field (three-way)",
                json!({"retainKeysMap": {"value": "foo"}}),
                json!({"retainKeysMap": {"$retainKeys": ["other"], "other": "bar"}}),
                json!({"retainKeysMap": {"other": "bar"}}),
            ),
            case(
                "retainKeys map should clear defaulted field with conflict (discriminated union)",
                json!({"retainKeysMap": {"name": "type1", "value": "foo"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name", "other"], "name": "type2", "other": "bar"}}),
                json!({"retainKeysMap": {"name": "type2", "other": "bar"}}),
            ),
            case(
                "retainKeys map deletes a field and clears a field (three-way)",
                json!({"retainKeysMap": {"name": "foo", "value": "bar", "other": "a"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name"], "value": null}}),
                json!({"retainKeysMap": {"name": "foo"}}),
            ),
            case(
                "retainKeys map nested merging int list with no change (three-way)",
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2, 3]}}),
                json!({"retainKeysMap": {"$retainKeys": ["mergingIntList", "name", "value"],
                                         "$setElementOrder/mergingIntList": [1, 2], "value": "bar"}}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar", "mergingIntList": [1, 2, 3]}}),
            ),
            case(
                "retainKeys map adds an item and deletes an item in nested merging int list (three-way)",
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2, 3, 4]}}),
                json!({"retainKeysMap": {"$retainKeys": ["mergingIntList", "name"], "mergingIntList": [5],
                                         "$deleteFromPrimitiveList/mergingIntList": [2],
                                         "$setElementOrder/mergingIntList": [1, 3, 5]}}),
                json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 3, 5, 4]}}),
            ),
            case(
                "retainKeys map deletes an item in nested merging list (three-way)",
                json!({"retainKeysMap": {"name": "foo", "mergingList": [{"name": "a"}, {"name": "b"}, {"name": "x"}]}}),
                json!({"retainKeysMap": {"$retainKeys": ["mergingList", "name"],
                                         "$setElementOrder/mergingList": [{"name": "a"}],
                                         "mergingList": [{"name": "b", "$patch": "delete"}]}}),
                json!({"retainKeysMap": {"name": "foo", "mergingList": [{"name": "a"}, {"name": "x"}]}}),
            ),
            case(
                "retainKeys list of maps clears a field (three-way)",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a", "other": "x"}]}),
                json!({"$setElementOrder/retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}],
                       "retainKeysMergingList": [{"$retainKeys": ["name", "value"], "name": "foo"}]}),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
            ),
            case(
                "retainKeys list of maps deletes a field and clear a field (three-way)",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a", "other": "x"}]}),
                json!({"$setElementOrder/retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}],
                       "retainKeysMergingList": [{"$retainKeys": ["name"], "name": "foo", "value": null}]}),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}]}),
            ),
            case(
                "delete and reorder in one list, reorder in another",
                json!({"mergingList": [{"name": "a", "value": "a"}, {"name": "b", "value": "b"}],
                       "mergeItemPtr": [{"name": "c", "value": "c"}, {"name": "d", "value": "d"}]}),
                json!({"$setElementOrder/mergingList": [{"name": "b"}],
                       "$setElementOrder/mergeItemPtr": [{"name": "d"}, {"name": "c"}],
                       "mergingList": [{"$patch": "delete", "name": "a"}]}),
                json!({"mergingList": [{"name": "b", "value": "b"}],
                       "mergeItemPtr": [{"name": "d", "value": "d"}, {"name": "c", "value": "c"}]}),
            ),
            case(
                "replace RawExtension field and merge list (three-way)",
                json!({"name": "my-object", "mergingList": [{"name": 1}, {"name": 3}],
                       "replacingItem": {"Some": "Generic", "Yaml": "Inside", "The": "RawExtension", "Field": "Period"}}),
                json!({"$setElementOrder/mergingList": [{"name": 1}, {"name": 2}], "mergingList": [{"name": 2}],
                       "replacingItem": {"Newly": "Modified", "Yaml": "Inside", "The": "RawExtension"}}),
                json!({"name": "my-object", "mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                       "replacingItem": {"Newly": "Modified", "Yaml": "Inside", "The": "RawExtension"}}),
            ),
        ]);
    }

    /// Upstream's `TestUnknownField` (apply half): fields the schema does not know merge like
    /// JSON merge patch, and nulls in newly added maps are dropped.
    #[test]
    fn upstream_unknown_field_and_null_cases() {
        check(vec![
            case(
                "removed only",
                json!({"name": "foo", "scalar": true, "complex": {"nested": true}, "array": [1, 2, 3]}),
                json!({"complex": null, "scalar": null}),
                json!({"array": [1, 2, 3], "name": "foo"}),
            ),
            case(
                "no diff even if modified null",
                json!({"name": "foo"}),
                json!({"complex_nullable": {"key": null}}),
                json!({"name": "foo", "complex_nullable": {}}),
            ),
            case(
                "discard nulls in nested and adds not nulls",
                json!({}),
                json!({"complex_nullable": {"key": {"keynotnull": "value", "keynull": null}}}),
                json!({"complex_nullable": {"key": {"keynotnull": "value"}}}),
            ),
            case(
                "filter nulls from nested slices",
                json!({}),
                json!({"complex_nullable": [{"inner_one": {"key_one": "foo", "key_two": null}}]}),
                json!({"complex_nullable": [{"inner_one": {"key_one": "foo"}}]}),
            ),
            case(
                "not filter nulls from non-associative slice",
                json!({}),
                json!({"complex_nullable": ["key1", null, "key2"]}),
                json!({"complex_nullable": ["key1", null, "key2"]}),
            ),
            case(
                "nested null values in original are preserved",
                json!({"complex": {"key": null}, "thing": null}),
                json!({"nested": {"value": 5}}),
                json!({"complex": {"key": null}, "nested": {"value": 5}, "thing": null}),
            ),
            case(
                "unknown nested map merges, unknown list is replaced",
                json!({"jsonItem": {"nested": {"a": 1, "list": [1, 2]}}}),
                json!({"jsonItem": {"nested": {"b": 2, "list": [3]}}}),
                json!({"jsonItem": {"nested": {"a": 1, "b": 2, "list": [3]}}}),
            ),
        ]);
    }

    #[test]
    fn directives_never_leak() {
        check(vec![
            case(
                "$retainKeys in a map added by the patch",
                json!({}),
                json!({"retainKeysMap": {"$retainKeys": ["name"], "name": "x"}}),
                json!({"retainKeysMap": {"name": "x"}}),
            ),
            case(
                "$setElementOrder inside a new element of a merging list",
                json!({"mergingList": [{"name": 1}]}),
                json!({"mergingList": [{"name": 2, "$setElementOrder/mergingList": [{"name": "b"}, {"name": "a"}],
                                        "mergingList": [{"name": "b"}, {"name": "a", "value": null}]}]}),
                json!({"mergingList": [{"name": 2, "mergingList": [{"name": "b"}, {"name": "a"}]}, {"name": 1}]}),
            ),
            case(
                "$patch elements in a replaced (non-merging) list",
                json!({"nonMergingList": [{"name": 1}]}),
                json!({"nonMergingList": [{"$patch": "replace"}, {"name": 2, "mergingList": [{"name": 3, "$patch": "delete"}]}]}),
                json!({"nonMergingList": [{"name": 2, "mergingList": []}]}),
            ),
            case(
                "$patch: replace map on a field the object does not have yet keeps its content",
                json!({}),
                json!({"simpleMap": {"$patch": "replace", "a": "b"}}),
                json!({"simpleMap": {"a": "b"}}),
            ),
            case(
                "$patch: delete map on a field the object does not have stays absent",
                json!({"name": "x"}),
                json!({"simpleMap": {"$patch": "delete"}}),
                json!({"name": "x"}),
            ),
            case(
                "replace strategy field with nested directives",
                json!({"replacingItem": {"a": 1}}),
                json!({"replacingItem": {"b": {"$patch": "delete"}, "c": 2}}),
                json!({"replacingItem": {"c": 2}}),
            ),
            case(
                "$deleteFromPrimitiveList inside a new map",
                json!({}),
                json!({"retainKeysMap": {"$deleteFromPrimitiveList/mergingIntList": [1], "mergingIntList": [1, 2]}}),
                json!({"retainKeysMap": {"mergingIntList": [2]}}),
            ),
        ]);
    }

    #[test]
    fn malformed_directives_are_errors() {
        let cases = [
            (
                json!({"$patch": "merge"}),
                json!({}),
                "unknown patch type: merge in map: map[$patch:merge]",
            ),
            (json!({"$patch": 7}), json!({}), "unknown patch type: 7"),
            (
                json!({"mergingList": [{"name": 1, "$patch": "merge"}]}),
                json!({"mergingList": [{"name": 1}]}),
                "merging lists cannot yet be specified in the patch",
            ),
            (
                json!({"mergingList": [{"$patch": "delete"}]}),
                json!({"mergingList": [{"name": 1}]}),
                "does not contain declared merge key: name",
            ),
            (
                json!({"$retainKeys": "name"}),
                json!({}),
                "invalid patch format of retainKeys",
            ),
            (
                json!({"$retainKeys": ["name"], "value": "x"}),
                json!({}),
                "invalid patch format of retainKeys",
            ),
            (
                json!({"$setElementOrder/mergingList": {"name": 1}}),
                json!({"mergingList": [{"name": 1}]}),
                "expected a []interface {}, but received a map[string]interface {}",
            ),
            (
                json!({"$setElementOrderX/mergingList": []}),
                json!({}),
                "invalid patch format of setElementOrder list",
            ),
            (
                json!({"$deleteFromPrimitiveList": [1]}),
                json!({}),
                "invalid patch format of primitive list",
            ),
            (
                json!({"$deleteFromPrimitiveList/mergingIntList": 1}),
                json!({"mergingIntList": [1]}),
                "invalid patch format of primitive list",
            ),
            (
                json!({"mergingIntList": [[1]]}),
                json!({"mergingIntList": [1]}),
                "list element types are not identical",
            ),
            (
                json!({"mergingIntList": [[1]]}),
                json!({"mergingIntList": []}),
                "lists of lists are not supported",
            ),
            (
                json!({"mergingList": [{"name": 1}]}),
                json!({"mergingList": [{"value": 1}]}),
                "map: map[value:1] does not contain declared merge key: name",
            ),
        ];
        for (patch, original, want) in cases {
            match run(&original, &patch) {
                Ok(v) => panic!("patch {patch} on {original}: expected an error, got {v}"),
                Err(e) => assert!(e.to_string().contains(want), "patch {patch}: got {e}"),
            }
        }
        assert_eq!(run(&json!([]), &json!({})), Err(SmpError::BadJsonDoc));
        assert_eq!(run(&json!({}), &json!("x")), Err(SmpError::BadJsonDoc));
        assert_eq!(SmpError::BadRetainKeysFormat.status_code(), 400);
        assert_eq!(SmpError::ListOfLists.status_code(), 422);
        assert_eq!(SmpError::MergeDirectiveInList.status_code(), 500);
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut patch = json!({"leaf": 1});
        for _ in 0..(MAX_DEPTH + 10) {
            patch = json!({ "nested": patch });
        }
        assert_eq!(run(&json!({}), &patch), Err(SmpError::TooDeep));

        let mut list = json!([1]);
        for _ in 0..(MAX_DEPTH + 10) {
            list = json!([{ "mergingList": list, "name": 1 }]);
        }
        let patch = json!({ "mergingList": list });
        assert!(run(&json!({"mergingList": [{"name": 1}]}), &patch).is_err());
    }

    /// Random patches built from directive-heavy pieces: no panic, and when the patch applies,
    /// no directive reaches the result.
    #[test]
    fn hostile_patches_never_panic_or_leak() {
        struct Rng(u64);
        impl Rng {
            fn next(&mut self, n: usize) -> usize {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 % n as u64) as usize
            }
        }
        const KEYS: &[&str] = &[
            "name",
            "value",
            "mergingList",
            "nonMergingList",
            "mergingIntList",
            "mergeItemPtr",
            "simpleMap",
            "replacingItem",
            "retainKeysMap",
            "retainKeysMergingList",
            "$patch",
            "$retainKeys",
            "$setElementOrder/mergingList",
            "$setElementOrder/mergingIntList",
            "$deleteFromPrimitiveList/mergingIntList",
            "$deleteFromPrimitiveList/mergingList",
        ];
        fn random_value(rng: &mut Rng, depth: usize) -> Value {
            let pick = if depth > 4 { rng.next(6) } else { rng.next(9) };
            match pick {
                0 => Value::Null,
                1 => json!(rng.next(3)),
                2 => json!(["a", "b", "delete", "replace", "merge"][rng.next(5)]),
                3 => json!(true),
                4 | 5 => json!(["replace", "delete", "merge"][rng.next(3)]),
                6 | 7 => {
                    let mut m = Map::new();
                    for _ in 0..rng.next(4) {
                        m.insert(
                            KEYS[rng.next(KEYS.len())].to_owned(),
                            random_value(rng, depth + 1),
                        );
                    }
                    if rng.next(2) == 0 {
                        m.insert("name".into(), json!(rng.next(3)));
                    }
                    Value::Object(m)
                }
                _ => Value::Array(
                    (0..rng.next(4))
                        .map(|_| random_value(rng, depth + 1))
                        .collect(),
                ),
            }
        }
        let (defs, root) = merge_item();
        let pod = match definitions_for_tests() {
            Some(d) => d,
            None => return,
        };
        let pod_root = pod
            .get("io.k8s.api.core.v1.Pod")
            .cloned()
            .unwrap_or_default();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut applied = 0;
        fn random_object(rng: &mut Rng) -> Value {
            let mut m = Map::new();
            for _ in 0..=rng.next(4) {
                m.insert(KEYS[rng.next(KEYS.len())].to_owned(), random_value(rng, 1));
            }
            Value::Object(m)
        }
        for _ in 0..5000 {
            let original = strip(random_object(&mut rng));
            let patch = random_object(&mut rng);
            if let Ok(v) = apply(&defs, &root, &original, &patch) {
                applied += 1;
                assert_no_directives(&v, &format!("patch {patch} on {original}"));
            }
            let _ = apply(pod, &pod_root, &original, &patch);
        }
        assert!(applied > 1000, "only {applied} random patches applied");
    }

    /// The generator's originals must not contain directives themselves.
    fn strip(v: Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .filter(|(k, _)| !k.starts_with('$'))
                    .map(|(k, v)| (k, strip(v)))
                    .collect(),
            ),
            Value::Array(l) => Value::Array(l.into_iter().map(strip).collect()),
            other => other,
        }
    }

    fn definitions_for_tests() -> Option<&'static Definitions> {
        super::super::builtin_schema::definitions().ok()
    }

    // ---- Real-client shaped patches against the built-in schemas. ----

    fn builtin(group: &str, version: &str, kind: &str) -> (&'static Definitions, Value) {
        let defs = super::super::builtin_schema::definitions().unwrap();
        let name = defs.for_kind(group, version, kind).unwrap();
        (defs, defs.get(name).unwrap().clone())
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"},
                         "finalizers": ["a.example/x"]},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "app", "image": "example/app:v1",
                             "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                            {"name": "sidecar", "image": "example/proxy:v3", "args": ["--port", "9000"]}
                        ],
                        "volumes": [{"name": "cfg", "configMap": {"name": "web-config"}}]
                    }
                }
            }
        })
    }

    #[test]
    fn kubectl_apply_changes_one_container_image() {
        let (defs, root) = builtin("apps", "v1", "Deployment");
        // What `kubectl apply` sends after the image of `app` changed in the manifest.
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
                "containers": [{"image": "example/app:v2", "name": "app"}]
            }}}
        });
        let got = apply(defs, &root, &deployment(), &patch).unwrap();
        let mut want = deployment();
        want["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{...}"});
        want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("example/app:v2");
        assert_eq!(got, want);
        assert_no_directives(&got, "deployment");
    }

    #[test]
    fn kubectl_apply_reorders_and_removes_containers() {
        let (defs, root) = builtin("apps", "v1", "Deployment");
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "$setElementOrder/env": [{"name": "B"}],
                            "env": [{"name": "A", "$patch": "delete"}]}]
        }}}});
        let got = apply(defs, &root, &deployment(), &patch).unwrap();
        let containers = &got["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["name"], "sidecar");
        assert_eq!(containers[1]["name"], "app");
        assert_eq!(containers[1]["env"], json!([{"name": "B", "value": "2"}]));
        assert_eq!(
            containers[1]["ports"],
            deployment()["spec"]["template"]["spec"]["containers"][0]["ports"]
        );
    }

    #[test]
    fn deployment_strategy_switch_uses_retain_keys() {
        let (defs, root) = builtin("apps", "v1", "Deployment");
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let got = apply(defs, &root, &deployment(), &patch).unwrap();
        assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));

        // Without the directive the old rollingUpdate stays (plain merge).
        let patch = json!({"spec": {"strategy": {"type": "Recreate"}}});
        let got = apply(defs, &root, &deployment(), &patch).unwrap();
        assert_eq!(got["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    }

    #[test]
    fn volume_source_switch_uses_retain_keys_in_list() {
        let (defs, root) = builtin("apps", "v1", "Deployment");
        let patch = json!({"spec": {"template": {"spec": {"volumes": [
            {"name": "cfg", "$retainKeys": ["name", "secret"], "secret": {"secretName": "web-secret"}}
        ]}}}});
        let got = apply(defs, &root, &deployment(), &patch).unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "cfg", "secret": {"secretName": "web-secret"}}])
        );
    }

    #[test]
    fn label_removed_with_null_and_finalizers_merge_as_a_set() {
        let (defs, root) = builtin("apps", "v1", "Deployment");
        let patch = json!({"metadata": {"labels": {"tier": null}, "finalizers": ["b.example/y", "a.example/x"]}});
        let got = apply(defs, &root, &deployment(), &patch).unwrap();
        assert_eq!(got["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            got["metadata"]["finalizers"],
            json!(["b.example/y", "a.example/x"])
        );

        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example/x"]}});
        let got = apply(defs, &root, &deployment(), &patch).unwrap();
        assert_eq!(got["metadata"]["finalizers"], json!([]));
    }

    #[test]
    fn env_list_replaced_with_directive() {
        let (defs, root) = builtin("apps", "v1", "Deployment");
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"$patch": "replace"}, {"name": "C", "value": "3"}]}
        ]}}}});
        let got = apply(defs, &root, &deployment(), &patch).unwrap();
        let app = &got["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(app["env"], json!([{"name": "C", "value": "3"}]));
        assert_eq!(app["image"], "example/app:v1");
        // Container args have no strategy: replaced wholesale.
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "args": ["--port", "9001"]}
        ]}}}});
        let got = apply(defs, &root, &deployment(), &patch).unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["containers"][1]["args"],
            json!(["--port", "9001"])
        );
    }

    #[test]
    fn configmap_data_change() {
        let (defs, root) = builtin("", "v1", "ConfigMap");
        let original = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "1"}},
            "data": {"keep": "k", "change": "old", "drop": "d"}});
        let patch = json!({"data": {"change": "new", "drop": null, "add": "x"}});
        let got = apply(defs, &root, &original, &patch).unwrap();
        assert_eq!(
            got["data"],
            json!({"keep": "k", "change": "new", "add": "x"})
        );
        assert_eq!(got["metadata"], original["metadata"]);
    }

    #[test]
    fn service_port_changed_by_port_merge_key() {
        let (defs, root) = builtin("", "v1", "Service");
        let original = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/ports": [{"port": 80}, {"port": 443}],
            "ports": [{"port": 80, "targetPort": 9090}]}});
        let got = apply(defs, &root, &original, &patch).unwrap();
        assert_eq!(
            got["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
            ])
        );

        // Without `$setElementOrder`, upstream puts added elements before the server-only ones.
        let patch = json!({"spec": {"ports": [{"port": 443, "$patch": "delete"}, {"port": 8081, "name": "alt"}]}});
        let got = apply(defs, &root, &original, &patch).unwrap();
        assert_eq!(
            got["spec"]["ports"],
            json!([
                {"port": 8081, "name": "alt"},
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
            ])
        );
    }

    #[test]
    fn pdb_selector_has_replace_strategy() {
        let (defs, root) = builtin("policy", "v1", "PodDisruptionBudget");
        let original =
            json!({"spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "1"}}}});
        let patch = json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}});
        let got = apply(defs, &root, &original, &patch).unwrap();
        assert_eq!(
            got["spec"],
            json!({"minAvailable": 1, "selector": {"matchLabels": {"b": "2"}}})
        );
    }

    #[test]
    fn raw_extension_content_merges_like_json_merge_patch() {
        let (defs, root) = builtin("apps", "v1", "ControllerRevision");
        let original = json!({"revision": 1, "data": {"keep": 1, "list": [1, 2],
            "spec": {"template": {"$patch": "replace", "x": 1}}}});
        let patch = json!({"data": {"list": [3], "new": {"a": null, "b": 1}}});
        let got = apply(defs, &root, &original, &patch).unwrap();
        // A directive already stored in the original (controller revisions hold patches) is
        // left alone; only the patch's directives are interpreted.
        assert_eq!(
            got["data"],
            json!({"keep": 1, "list": [3], "new": {"b": 1},
                   "spec": {"template": {"$patch": "replace", "x": 1}}})
        );
    }
}
