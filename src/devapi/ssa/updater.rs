//! Ownership bookkeeping for one write: `merge.Updater` of structured-merge-diff.
//!
//! [`Updater::update`] records a non-apply write, [`Updater::apply`] merges an apply
//! configuration, prunes what the applier stopped applying, and detects conflicts. All
//! managers are treated as one API version: the dev server stores one version per kind, so
//! upstream's per-version conversion has nothing to convert.

use std::collections::BTreeMap;

use serde_json::Value;

use super::fieldpath::{Path, Set, values_equal};
use super::typed::{Comparison, Typed, TypedError};

/// The fields one manager owns, at the API version it last used.
#[derive(Clone, Debug)]
pub(crate) struct VersionedSet {
    pub(crate) set: Set,
    pub(crate) api_version: String,
    pub(crate) applied: bool,
}

/// Managers by identifier (see [`super::managed::manager_id`]).
pub(crate) type Managers = BTreeMap<String, VersionedSet>;

/// Why an update or apply failed.
#[derive(Debug)]
pub(crate) enum UpdateError {
    Typed(TypedError),
    /// Fields another manager owns with a different value: (manager identifier, its API
    /// version, path), ordered by manager then path.
    Conflicts(Vec<(String, String, Path)>),
}

impl From<TypedError> for UpdateError {
    fn from(e: TypedError) -> Self {
        UpdateError::Typed(e)
    }
}

/// `merge.Updater` bound to one kind's schema and the fields the request may not own.
pub(crate) struct Updater<'a> {
    pub(crate) typed: Typed<'a>,
    /// Fields reset by the strategy (`IgnoredFields`): never owned, never conflicting.
    pub(crate) ignored: Set,
    pub(crate) version: String,
}

impl Updater<'_> {
    /// Takes the fields `new` changed away from every manager but `workflow`; with `force`
    /// false, fails instead when any of them is owned by someone else.
    fn update_managers(
        &self,
        old: &Value,
        new: &Value,
        managers: &mut Managers,
        workflow: &str,
        force: bool,
    ) -> Result<Comparison, UpdateError> {
        let mut cmp = self.typed.compare(old, new)?;
        cmp.added = cmp.added.recursive_difference(&self.ignored);
        cmp.modified = cmp.modified.recursive_difference(&self.ignored);
        cmp.removed = cmp.removed.recursive_difference(&self.ignored);
        let changed = cmp.modified.union(&cmp.added);

        let mut conflicts = Vec::new();
        let mut taken: Vec<(String, Set)> = Vec::new();
        for (manager, vs) in managers.iter() {
            if manager == workflow {
                continue;
            }
            let conflict = vs.set.intersection(&changed);
            if !conflict.is_empty() {
                for path in conflict.paths() {
                    conflicts.push((manager.clone(), vs.api_version.clone(), path));
                }
                taken.push((manager.clone(), conflict));
            }
        }
        if !force && !conflicts.is_empty() {
            return Err(UpdateError::Conflicts(conflicts));
        }
        for (manager, conflict) in taken {
            if let Some(vs) = managers.get_mut(&manager) {
                vs.set = vs.set.difference(&conflict);
            }
        }
        if !cmp.removed.is_empty() {
            for (manager, vs) in managers.iter_mut() {
                if manager != workflow {
                    vs.set = vs.set.difference(&cmp.removed);
                }
            }
        }
        managers.retain(|_, vs| !vs.set.is_empty());
        Ok(cmp)
    }

    /// `Updater.Update`: `manager` now owns what changed from `live` to `new`.
    pub(crate) fn update(
        &self,
        live: &Value,
        new: &Value,
        managers: &mut Managers,
        manager: &str,
    ) -> Result<(), UpdateError> {
        let cmp = self.update_managers(live, new, managers, manager, true)?;
        let previous = managers
            .get(manager)
            .map(|vs| vs.set.clone())
            .unwrap_or_default();
        let set = previous
            .difference(&cmp.removed)
            .union(&cmp.modified)
            .union(&cmp.added)
            .recursive_difference(&self.ignored);
        if set.is_empty() {
            managers.remove(manager);
        } else {
            managers.insert(
                manager.to_owned(),
                VersionedSet {
                    set,
                    api_version: self.version.clone(),
                    applied: false,
                },
            );
        }
        Ok(())
    }

    /// `Updater.Apply`: the merged object, or `None` when it equals `live`.
    pub(crate) fn apply(
        &self,
        live: &Value,
        config: &Value,
        managers: &mut Managers,
        manager: &str,
        force: bool,
    ) -> Result<Option<Value>, UpdateError> {
        let merged = self.typed.merge(live, config)?;
        let last = managers.get(manager).cloned();
        let set = self
            .typed
            .to_field_set(config, true)?
            .recursive_difference(&self.ignored);
        // Work on a copy so a conflict leaves the caller's managers untouched.
        let mut work = managers.clone();
        work.insert(
            manager.to_owned(),
            VersionedSet {
                set,
                api_version: self.version.clone(),
                applied: true,
            },
        );
        let new = self.prune(merged, &work, last.as_ref())?;
        self.update_managers(live, &new, &mut work, manager, force)?;
        *managers = work;
        Ok((!values_equal(live, &new)).then_some(new))
    }

    /// Removes what the applier applied last time and not this time, unless another manager
    /// (or this configuration) still owns it (`prune`, `addBackOwnedItems`,
    /// `addBackDanglingItems`).
    fn prune(
        &self,
        merged: Value,
        managers: &Managers,
        last: Option<&VersionedSet>,
    ) -> Result<Value, TypedError> {
        let Some(last) = last.filter(|l| !l.set.is_empty()) else {
            return Ok(merged);
        };
        let t = &self.typed;
        let last_named = t.ensure_named_fields_are_members(&last.set);
        let pruned = t.remove_items(&merged, &last_named)?;

        let managed = managers
            .values()
            .fold(Set::default(), |acc, vs| acc.union(&vs.set));
        let merged_set = t.ensure_named_fields_are_members(&t.to_field_set(&merged, false)?);
        let pruned_set = t.ensure_named_fields_are_members(&t.to_field_set(&pruned, false)?);
        let owned = pruned_set.union(&t.ensure_named_fields_are_members(&managed));
        let pruned = t.remove_items(&merged, &merged_set.difference(&owned))?;

        let pruned_set = t.ensure_named_fields_are_members(&t.to_field_set(&pruned, false)?);
        let dangling = merged_set.difference(&pruned_set).intersection(&last_named);
        t.remove_items(&merged, &dangling)
    }
}
