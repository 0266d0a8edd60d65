//! The memory backend: one [`View`] behind a lock in this process, for `portcullis dev` and
//! tests. Every write is visible at once and nothing survives a restart. Built by
//! [`super::build`] when `store.backend` is `memory`.

use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::broadcast;

use super::view::View;
use super::{Binding, EVENT_CAPACITY, Result, Session, Store, StoreEvent};

/// Sessions, bindings and revocations of this process.
pub struct MemoryStore {
    view: RwLock<View>,
    events: broadcast::Sender<StoreEvent>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            view: RwLock::new(View::default()),
            events: broadcast::channel(EVENT_CAPACITY).0,
        }
    }

    // A panic while holding the lock leaves a consistent map (every change is one insert or
    // remove), so a poisoned lock is used as it is.
    fn read(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, events: Vec<StoreEvent>) {
        for e in events {
            // No subscriber is not an error.
            let _ = self.events.send(e);
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sessions, bindings, revocations) = self.read().counts();
        f.debug_struct("MemoryStore")
            .field("sessions", &sessions)
            .field("bindings", &bindings)
            .field("revocations", &revocations)
            .finish()
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn put_session(&self, session: &Session) -> Result<()> {
        self.write().insert_session(Arc::new(session.clone()));
        Ok(())
    }

    fn session(&self, id: &str, now: i64) -> Option<Arc<Session>> {
        self.read().session(id, now)
    }

    fn sessions_of(&self, subject: &str, now: i64) -> Vec<Arc<Session>> {
        self.read().sessions_of(subject, now)
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        let events: Vec<StoreEvent> = {
            let mut view = self.write();
            let mut events: Vec<StoreEvent> = view.remove_session(id).into_iter().collect();
            for b in view.binding_ids_of_session(id) {
                events.extend(view.remove_binding(&b));
            }
            events
        };
        let deleted = !events.is_empty();
        self.send(events);
        Ok(deleted)
    }

    async fn put_binding(&self, binding: &Binding) -> Result<()> {
        self.write().insert_binding(Arc::new(binding.clone()));
        Ok(())
    }

    fn binding(&self, id: &str, now: i64) -> Option<Arc<Binding>> {
        self.read().binding(id, now)
    }

    fn bindings_of(&self, subject: &str, now: i64) -> Vec<Arc<Binding>> {
        self.read().bindings_of(subject, now)
    }

    fn bindings_of_session(&self, session_id: &str, now: i64) -> Vec<Arc<Binding>> {
        self.read().bindings_of_session(session_id, now)
    }

    async fn delete_binding(&self, id: &str) -> Result<bool> {
        let event = self.write().remove_binding(id);
        let deleted = event.is_some();
        self.send(event.into_iter().collect());
        Ok(deleted)
    }

    async fn revoke(&self, id: &str, expires_at: i64) -> Result<bool> {
        let event = self.write().insert_revocation(id, expires_at);
        let first = event.is_some();
        self.send(event.into_iter().collect());
        Ok(first)
    }

    fn is_revoked(&self, id: &str) -> bool {
        self.read().is_revoked(id)
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    async fn collect_garbage(&self, now: i64) -> Result<usize> {
        let (count, events) = {
            let mut view = self.write();
            let garbage = view.garbage(now);
            let events: Vec<StoreEvent> = garbage
                .iter()
                .filter_map(|(kind, id)| view.remove(*kind, id))
                .collect();
            (garbage.len(), events)
        };
        self.send(events);
        Ok(count)
    }

    async fn ready(&self) {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use super::*;
    use crate::store::conformance;

    /// One store seen through two handles, as the conformance suite wants.
    fn pair() -> (Arc<dyn Store>, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        (Arc::clone(&store), store)
    }

    macro_rules! conformance_tests {
        ($($name:ident),* $(,)?) => {
            $(
                #[tokio::test]
                async fn $name() {
                    let (a, b) = pair();
                    conformance::$name(&*a, &*b).await.unwrap();
                }
            )*

            #[test]
            fn every_conformance_check_runs() {
                assert_eq!(&[$(stringify!($name)),*], conformance::CHECKS);
            }
        };
    }

    conformance_tests!(
        sessions_put_get_replace_delete,
        bindings_put_get_replace_delete,
        expiry_hides_and_garbage_collection_removes,
        listings_filter_and_order,
        deleting_a_session_deletes_its_bindings,
        revoke_is_single_use,
        revocation_reaches_the_other_handle,
        writes_and_deletions_reach_the_other_handle,
        events_reach_subscribers,
        ready_resolves,
        debug_shows_no_secret,
    );

    #[tokio::test]
    async fn revocation_is_a_plain_lookup_until_collected() {
        let s = MemoryStore::new();
        assert!(!s.is_revoked("jti:1"));
        assert!(s.revoke("jti:1", 10).await.unwrap());
        assert!(s.is_revoked("jti:1"));
        // Expired but not yet collected: still revoked, and still used.
        assert!(!s.revoke("jti:1", 50).await.unwrap());
        assert_eq!(s.collect_garbage(10).await.unwrap(), 1);
        assert!(!s.is_revoked("jti:1"));
        assert!(s.revoke("jti:1", 50).await.unwrap());
    }

    #[tokio::test]
    async fn debug_counts_entries() {
        let s = MemoryStore::new();
        s.revoke("state:x", 10).await.unwrap();
        assert_eq!(
            format!("{s:?}"),
            "MemoryStore { sessions: 0, bindings: 0, revocations: 1 }"
        );
    }
}
