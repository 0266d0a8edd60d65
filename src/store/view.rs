//! The local view both backends read from: sessions, bindings and revocations by id, with
//! indexes by subject and by session, and the visibility rules (expiry, a binding lives only
//! while its session does). Plain data with no I/O and no lock: each backend keeps one behind
//! its own lock and turns changes into [`StoreEvent`]s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Binding, ORPHAN_GRACE, Session, StoreEvent};

/// Sessions, bindings and revocations, indexed.
#[derive(Default, Clone)]
pub(crate) struct View {
    sessions: HashMap<String, Arc<Session>>,
    bindings: HashMap<String, Arc<Binding>>,
    /// Revoked id → expiry (unix seconds).
    revocations: HashMap<String, i64>,
    sessions_by_subject: HashMap<String, HashSet<String>>,
    bindings_by_subject: HashMap<String, HashSet<String>>,
    bindings_by_session: HashMap<String, HashSet<String>>,
}

/// What a view holds, by kind (for garbage collection and diffs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Session,
    Binding,
    Revocation,
}

impl Kind {
    /// The name used in labels, Secret types and log fields.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Binding => "binding",
            Kind::Revocation => "revocation",
        }
    }
}

fn index_add(index: &mut HashMap<String, HashSet<String>>, key: &str, id: &str) {
    index
        .entry(key.to_string())
        .or_default()
        .insert(id.to_string());
}

fn index_remove(index: &mut HashMap<String, HashSet<String>>, key: &str, id: &str) {
    if let Some(set) = index.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

impl View {
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (
            self.sessions.len(),
            self.bindings.len(),
            self.revocations.len(),
        )
    }

    pub(crate) fn insert_session(&mut self, session: Arc<Session>) {
        if let Some(old) = self.sessions.get(&session.id)
            && old.subject != session.subject
        {
            let (subject, id) = (old.subject.clone(), old.id.clone());
            index_remove(&mut self.sessions_by_subject, &subject, &id);
        }
        index_add(&mut self.sessions_by_subject, &session.subject, &session.id);
        self.sessions.insert(session.id.clone(), session);
    }

    /// Removes a session (not its bindings); the event when it was there.
    pub(crate) fn remove_session(&mut self, id: &str) -> Option<StoreEvent> {
        let old = self.sessions.remove(id)?;
        index_remove(&mut self.sessions_by_subject, &old.subject, id);
        Some(StoreEvent::SessionDeleted { id: old.id.clone() })
    }

    pub(crate) fn insert_binding(&mut self, binding: Arc<Binding>) {
        if let Some(old) = self.bindings.get(&binding.id).cloned() {
            if old.subject != binding.subject {
                index_remove(&mut self.bindings_by_subject, &old.subject, &old.id);
            }
            if old.session_id != binding.session_id {
                index_remove(&mut self.bindings_by_session, &old.session_id, &old.id);
            }
        }
        index_add(&mut self.bindings_by_subject, &binding.subject, &binding.id);
        index_add(
            &mut self.bindings_by_session,
            &binding.session_id,
            &binding.id,
        );
        self.bindings.insert(binding.id.clone(), binding);
    }

    /// Removes a binding; the event when it was there.
    pub(crate) fn remove_binding(&mut self, id: &str) -> Option<StoreEvent> {
        let old = self.bindings.remove(id)?;
        index_remove(&mut self.bindings_by_subject, &old.subject, id);
        index_remove(&mut self.bindings_by_session, &old.session_id, id);
        Some(StoreEvent::BindingDeleted {
            id: old.id.clone(),
            session_id: old.session_id.clone(),
        })
    }

    /// Records a revocation; the event when `id` was not revoked yet (an existing revocation
    /// keeps its expiry).
    pub(crate) fn insert_revocation(&mut self, id: &str, expires_at: i64) -> Option<StoreEvent> {
        if self.revocations.contains_key(id) {
            return None;
        }
        self.revocations.insert(id.to_string(), expires_at);
        Some(StoreEvent::Revoked { id: id.to_string() })
    }

    /// Records a revocation as the API has it now, replacing its expiry.
    pub(crate) fn set_revocation(&mut self, id: &str, expires_at: i64) -> Option<StoreEvent> {
        let new = self
            .revocations
            .insert(id.to_string(), expires_at)
            .is_none();
        new.then(|| StoreEvent::Revoked { id: id.to_string() })
    }

    pub(crate) fn remove_revocation(&mut self, id: &str) -> bool {
        self.revocations.remove(id).is_some()
    }

    pub(crate) fn remove(&mut self, kind: Kind, id: &str) -> Option<StoreEvent> {
        match kind {
            Kind::Session => self.remove_session(id),
            Kind::Binding => self.remove_binding(id),
            Kind::Revocation => {
                self.remove_revocation(id);
                None
            }
        }
    }

    pub(crate) fn session(&self, id: &str, now: i64) -> Option<Arc<Session>> {
        self.sessions
            .get(id)
            .filter(|s| s.expires_at > now)
            .cloned()
    }

    pub(crate) fn sessions_of(&self, subject: &str, now: i64) -> Vec<Arc<Session>> {
        let mut out: Vec<Arc<Session>> = self
            .sessions_by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .filter_map(|id| self.session(id, now))
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        out
    }

    fn visible(&self, binding: &Binding, now: i64) -> bool {
        binding.expires_at > now && self.session(&binding.session_id, now).is_some()
    }

    pub(crate) fn binding(&self, id: &str, now: i64) -> Option<Arc<Binding>> {
        self.bindings
            .get(id)
            .filter(|b| self.visible(b, now))
            .cloned()
    }

    fn bindings_in(&self, ids: Option<&HashSet<String>>, now: i64) -> Vec<Arc<Binding>> {
        let mut out: Vec<Arc<Binding>> = ids
            .into_iter()
            .flatten()
            .filter_map(|id| self.binding(id, now))
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        out
    }

    pub(crate) fn bindings_of(&self, subject: &str, now: i64) -> Vec<Arc<Binding>> {
        self.bindings_in(self.bindings_by_subject.get(subject), now)
    }

    pub(crate) fn bindings_of_session(&self, session_id: &str, now: i64) -> Vec<Arc<Binding>> {
        self.bindings_in(self.bindings_by_session.get(session_id), now)
    }

    /// Every binding id of a session, visible or not.
    pub(crate) fn binding_ids_of_session(&self, session_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .bindings_by_session
            .get(session_id)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    pub(crate) fn is_revoked(&self, id: &str) -> bool {
        self.revocations.contains_key(id)
    }

    /// What garbage collection at `now` removes: expired entries, and bindings whose session
    /// is gone (from the view) and that are older than [`ORPHAN_GRACE`].
    pub(crate) fn garbage(&self, now: i64) -> Vec<(Kind, String)> {
        let mut out: Vec<(Kind, String)> = Vec::new();
        out.extend(
            self.sessions
                .values()
                .filter(|s| s.expires_at <= now)
                .map(|s| (Kind::Session, s.id.clone())),
        );
        out.extend(
            self.bindings
                .values()
                .filter(|b| {
                    b.expires_at <= now
                        || (!self.sessions.contains_key(&b.session_id)
                            && b.created_at + ORPHAN_GRACE <= now)
                })
                .map(|b| (Kind::Binding, b.id.clone())),
        );
        out.extend(
            self.revocations
                .iter()
                .filter(|(_, exp)| **exp <= now)
                .map(|(id, _)| (Kind::Revocation, id.clone())),
        );
        out.sort();
        out
    }

    /// The events that turn `self` into `next`: deletions of what `next` lacks, revocations
    /// `self` lacked.
    pub(crate) fn diff(&self, next: &View) -> Vec<StoreEvent> {
        let mut events = Vec::new();
        let mut gone: Vec<&Arc<Session>> = self
            .sessions
            .values()
            .filter(|s| !next.sessions.contains_key(&s.id))
            .collect();
        gone.sort_by(|a, b| a.id.cmp(&b.id));
        events.extend(
            gone.into_iter()
                .map(|s| StoreEvent::SessionDeleted { id: s.id.clone() }),
        );
        let mut gone: Vec<&Arc<Binding>> = self
            .bindings
            .values()
            .filter(|b| !next.bindings.contains_key(&b.id))
            .collect();
        gone.sort_by(|a, b| a.id.cmp(&b.id));
        events.extend(gone.into_iter().map(|b| StoreEvent::BindingDeleted {
            id: b.id.clone(),
            session_id: b.session_id.clone(),
        }));
        let mut revoked: Vec<&String> = next
            .revocations
            .keys()
            .filter(|id| !self.revocations.contains_key(*id))
            .collect();
        revoked.sort();
        events.extend(
            revoked
                .into_iter()
                .map(|id| StoreEvent::Revoked { id: id.clone() }),
        );
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, subject: &str, created: i64, expires: i64) -> Arc<Session> {
        Arc::new(Session {
            id: id.into(),
            subject: subject.into(),
            issuer: "https://idp".into(),
            created_at: created,
            expires_at: expires,
            refreshed_at: created,
            claims: Default::default(),
            idp_refresh_token: None,
            idp_id_token: None,
        })
    }

    fn binding(id: &str, session: &str, subject: &str, created: i64, expires: i64) -> Arc<Binding> {
        Arc::new(Binding {
            id: id.into(),
            session_id: session.into(),
            subject: subject.into(),
            client: "SHA256:x".into(),
            route: "team-a/db".into(),
            created_at: created,
            expires_at: expires,
            remember: false,
            details: Default::default(),
        })
    }

    #[test]
    fn replacing_moves_index_entries() {
        let mut v = View::default();
        v.insert_session(session("s1", "alice", 1, 100));
        v.insert_session(session("s1", "bob", 1, 100));
        assert!(v.sessions_of("alice", 0).is_empty());
        assert_eq!(v.sessions_of("bob", 0).len(), 1);
        v.insert_session(session("s2", "bob", 1, 100));
        v.insert_binding(binding("b1", "s1", "bob", 1, 100));
        v.insert_binding(binding("b1", "s2", "carol", 1, 100));
        assert!(v.bindings_of("bob", 0).is_empty());
        assert!(v.bindings_of_session("s1", 0).is_empty());
        assert_eq!(v.bindings_of_session("s2", 0).len(), 1);
        assert_eq!(v.bindings_of("carol", 0).len(), 1);
        assert!(v.remove_binding("b1").is_some());
        assert!(v.bindings_by_subject.is_empty() && v.bindings_by_session.is_empty());
        assert!(v.remove_session("s1").is_some());
        assert!(v.remove_session("s1").is_none());
    }

    #[test]
    fn garbage_includes_old_orphans_only() {
        let mut v = View::default();
        v.insert_binding(binding("young", "gone", "a", 100, 1000));
        v.insert_binding(binding("old", "gone", "a", 10, 1000));
        v.insert_session(session("s", "a", 10, 1000));
        v.insert_binding(binding("kept", "s", "a", 10, 1000));
        assert_eq!(v.garbage(100), vec![(Kind::Binding, "old".to_string())]);
    }

    #[test]
    fn diff_reports_deletions_and_new_revocations() {
        let mut old = View::default();
        old.insert_session(session("s", "a", 1, 100));
        old.insert_binding(binding("b", "s", "a", 1, 100));
        old.insert_revocation("jti:1", 100);
        let mut next = View::default();
        next.insert_revocation("jti:1", 100);
        next.insert_revocation("jti:2", 100);
        assert_eq!(
            old.diff(&next),
            vec![
                StoreEvent::SessionDeleted { id: "s".into() },
                StoreEvent::BindingDeleted {
                    id: "b".into(),
                    session_id: "s".into()
                },
                StoreEvent::Revoked { id: "jti:2".into() },
            ]
        );
    }
}
