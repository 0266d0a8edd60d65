//! The conformance suite every [`Store`] backend passes (as Pomerium does for its storage
//! backends). Each check takes two handles `a` and `b` on one shared state — the same memory
//! store twice, or two Kubernetes stores on one API — and returns what went wrong instead of
//! panicking, so the suite can live in the library: the memory backend's unit tests and
//! `tests/store.rs` (Kubernetes) run every name in [`CHECKS`].
//!
//! Checks use their own random ids, never read the clock (times are fixed around [`NOW`]), and
//! wait for the other handle by polling with a generous deadline ([`PATIENCE`]); the promise is
//! "within a second" but a loaded test machine must not make them flaky.
#![doc(hidden)]

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::broadcast;

use super::{Binding, ORPHAN_GRACE, Secret, Session, Store, StoreEvent};

/// The names of every check, in order; the test harnesses compare their lists against it.
pub const CHECKS: &[&str] = &[
    "sessions_put_get_replace_delete",
    "bindings_put_get_replace_delete",
    "expiry_hides_and_garbage_collection_removes",
    "listings_filter_and_order",
    "deleting_a_session_deletes_its_bindings",
    "revoke_is_single_use",
    "revocation_reaches_the_other_handle",
    "writes_and_deletions_reach_the_other_handle",
    "events_reach_subscribers",
    "ready_resolves",
    "debug_shows_no_secret",
];

/// The "current time" of the checks (unix seconds).
pub const NOW: i64 = 1_700_000_000;

/// How long a check waits for the other handle or an event before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// What a failed check reports.
pub type Outcome = std::result::Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Turns a store error into a failure naming the call.
fn ok<T>(what: &str, r: super::Result<T>) -> std::result::Result<T, String> {
    r.map_err(|e| format!("{what}: {}", crate::error_chain(&e)))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A session of `subject` created at `created`, expiring at `expires`, with secret IdP tokens.
pub fn session(subject: &str, created: i64, expires: i64) -> Session {
    let mut claims = serde_json::Map::new();
    claims.insert("email".into(), format!("{subject}@example.com").into());
    claims.insert("groups".into(), serde_json::json!(["staff"]));
    Session {
        id: unique("sid"),
        subject: subject.into(),
        issuer: "https://idp.example.com".into(),
        created_at: created,
        expires_at: expires,
        refreshed_at: created,
        claims,
        idp_refresh_token: Some(Secret::new(unique("refresh-token"))),
        idp_id_token: Some(Secret::new(unique("id-token"))),
    }
}

/// A binding of `session`'s subject created at `created`, expiring at `expires`.
pub fn binding(session: &Session, created: i64, expires: i64) -> Binding {
    Binding {
        id: unique("bid"),
        session_id: session.id.clone(),
        subject: session.subject.clone(),
        client: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into(),
        route: "team-a/db".into(),
        created_at: created,
        expires_at: expires,
        remember: false,
        details: BTreeMap::from([("sourceIP".to_string(), "192.0.2.7".to_string())]),
    }
}

/// Polls `f` until it holds or [`PATIENCE`] runs out.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) -> Outcome {
    let start = tokio::time::Instant::now();
    loop {
        if f() {
            return Ok(());
        }
        if start.elapsed() > PATIENCE {
            return Err(format!("timed out after {PATIENCE:?} waiting until {what}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Receives until every event of `expected` was seen (others are skipped), or fails.
async fn expect_events(
    rx: &mut broadcast::Receiver<StoreEvent>,
    mut expected: Vec<StoreEvent>,
    what: &str,
) -> Outcome {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !expected.is_empty() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) => expected.retain(|x| *x != e),
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                return Err(format!("{what}: the subscriber lagged by {n}"));
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                return Err(format!("{what}: the event channel closed"));
            }
            Err(_) => return Err(format!("{what}: never received {expected:?}")),
        }
    }
    Ok(())
}

fn ids<T>(items: &[std::sync::Arc<T>], id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|x| id(x).to_string()).collect()
}

/// Put, read (on the writer at once, on the other handle soon), replace from the other handle,
/// delete, delete again.
pub async fn sessions_put_get_replace_delete(a: &dyn Store, b: &dyn Store) -> Outcome {
    let s = session("alice", NOW, NOW + 3600);
    ensure!(
        a.session(&s.id, NOW).is_none(),
        "an unknown session is None"
    );
    ok("put_session", a.put_session(&s).await)?;
    ensure!(
        a.session(&s.id, NOW).as_deref() == Some(&s),
        "the writer reads its own write at once"
    );
    ensure!(
        ok("load_session", b.load_session(&s.id, NOW).await)?.as_deref() == Some(&s),
        "the other handle loads it at once"
    );
    ensure!(
        ok(
            "load_session (unknown)",
            b.load_session("no-such-session", NOW).await
        )?
        .is_none(),
        "loading an unknown session gives None"
    );
    eventually("b reads the session", || {
        b.session(&s.id, NOW).as_deref() == Some(&s)
    })
    .await?;

    let mut s2 = s.clone();
    s2.refreshed_at = NOW + 60;
    s2.idp_refresh_token = Some(Secret::new(unique("rotated-refresh-token")));
    s2.idp_id_token = None;
    s2.claims.insert("name".into(), "Alice".into());
    ok("put_session (replace)", b.put_session(&s2).await)?;
    ensure!(
        b.session(&s.id, NOW).as_deref() == Some(&s2),
        "the replacing handle reads the replacement at once"
    );
    eventually("a reads the replacement", || {
        a.session(&s.id, NOW).as_deref() == Some(&s2)
    })
    .await?;
    ensure!(
        a.sessions_of("alice", NOW).len() == 1,
        "a replaced session is listed once"
    );

    ensure!(
        ok("delete_session", a.delete_session(&s.id).await)?,
        "deleting an existing session returns true"
    );
    ensure!(
        a.session(&s.id, NOW).is_none(),
        "the deleter no longer reads it"
    );
    ensure!(
        !ok("delete_session (again)", a.delete_session(&s.id).await)?,
        "deleting it again returns false"
    );
    eventually("b no longer reads the session", || {
        b.session(&s.id, NOW).is_none()
    })
    .await?;
    ensure!(
        !ok(
            "delete_session (unknown)",
            b.delete_session("no-such-session").await
        )?,
        "deleting an unknown session returns false"
    );
    Ok(())
}

/// The same for bindings.
pub async fn bindings_put_get_replace_delete(a: &dyn Store, b: &dyn Store) -> Outcome {
    let s = session("bob", NOW, NOW + 3600);
    ok("put_session", a.put_session(&s).await)?;
    let bd = binding(&s, NOW, NOW + 600);
    ensure!(
        a.binding(&bd.id, NOW).is_none(),
        "an unknown binding is None"
    );
    ok("put_binding", a.put_binding(&bd).await)?;
    ensure!(
        a.binding(&bd.id, NOW).as_deref() == Some(&bd),
        "the writer reads its own binding at once"
    );
    eventually("b reads the binding", || {
        b.binding(&bd.id, NOW).as_deref() == Some(&bd)
    })
    .await?;

    let mut bd2 = bd.clone();
    bd2.remember = true;
    bd2.expires_at = s.expires_at;
    bd2.details.insert("userAgent".into(), "OpenSSH_9.6".into());
    ok("put_binding (replace)", b.put_binding(&bd2).await)?;
    ensure!(
        b.binding(&bd.id, NOW).as_deref() == Some(&bd2),
        "the replacing handle reads the replacement at once"
    );
    eventually("a reads the replaced binding", || {
        a.binding(&bd.id, NOW).as_deref() == Some(&bd2)
    })
    .await?;

    ensure!(
        ok("delete_binding", a.delete_binding(&bd.id).await)?,
        "deleting an existing binding returns true"
    );
    ensure!(
        a.binding(&bd.id, NOW).is_none(),
        "the deleter no longer reads it"
    );
    ensure!(
        !ok("delete_binding (again)", a.delete_binding(&bd.id).await)?,
        "deleting it again returns false"
    );
    eventually("b no longer reads the binding", || {
        b.binding(&bd.id, NOW).is_none()
    })
    .await?;
    ensure!(
        a.session(&s.id, NOW).is_some(),
        "deleting a binding leaves its session"
    );
    Ok(())
}

/// Entries vanish from reads at their expiry; garbage collection deletes them (and old
/// bindings whose session is gone), on any handle, counting only what it deleted.
pub async fn expiry_hides_and_garbage_collection_removes(a: &dyn Store, b: &dyn Store) -> Outcome {
    let s = session("carol", NOW, NOW + 10);
    let short = binding(&s, NOW, NOW + 5);
    let mut remembered = binding(&s, NOW, NOW + 10);
    remembered.remember = true;
    let revoked = unique("jti");
    ok("put_session", a.put_session(&s).await)?;
    ok("put_binding", a.put_binding(&short).await)?;
    ok("put_binding", a.put_binding(&remembered).await)?;
    ensure!(
        ok("revoke", a.revoke(&revoked, NOW + 5).await)?,
        "a fresh id is revoked first"
    );

    ensure!(
        a.binding(&short.id, NOW + 4).is_some(),
        "visible before expiry"
    );
    ensure!(
        a.binding(&short.id, NOW + 5).is_none(),
        "a binding is invisible at its expiry"
    );
    ensure!(
        a.binding(&remembered.id, NOW + 5).is_some(),
        "the other binding lives on"
    );
    ensure!(
        a.session(&s.id, NOW + 9).is_some() && a.session(&s.id, NOW + 10).is_none(),
        "a session is invisible at its expiry"
    );
    ensure!(
        a.sessions_of("carol", NOW + 10).is_empty(),
        "an expired session is not listed"
    );
    ensure!(
        a.bindings_of("carol", NOW + 10).is_empty(),
        "bindings of an expired session are not listed"
    );
    ensure!(
        a.is_revoked(&revoked),
        "an expired revocation counts until it is collected"
    );

    eventually("b has every entry", || {
        b.session(&s.id, NOW).is_some()
            && b.binding(&short.id, NOW).is_some()
            && b.binding(&remembered.id, NOW).is_some()
            && b.is_revoked(&revoked)
    })
    .await?;
    ensure!(
        ok("collect_garbage", a.collect_garbage(NOW).await)? == 0,
        "nothing has expired yet"
    );
    let n = ok("collect_garbage", a.collect_garbage(NOW + 5).await)?;
    ensure!(
        n == 2,
        "collects the short binding and the revocation, got {n}"
    );
    ensure!(!a.is_revoked(&revoked), "a collected revocation is gone");
    eventually("b sees the collection", || {
        !b.is_revoked(&revoked) && b.bindings_of_session(&s.id, NOW).len() == 1
    })
    .await?;

    let n = ok("collect_garbage", b.collect_garbage(NOW + 10).await)?;
    ensure!(n == 2, "collects the session and its binding, got {n}");
    ensure!(
        ok("collect_garbage (again)", a.collect_garbage(NOW + 10).await)? == 0,
        "what another handle collected is not counted twice"
    );
    eventually("a sees the session collected", || {
        a.sessions_of("carol", NOW).is_empty()
    })
    .await?;
    ensure!(
        ok(
            "revoke (after collection)",
            a.revoke(&revoked, NOW + 3600).await
        )?,
        "a collected id can be revoked again"
    );
    eventually("b sees the new revocation", || b.is_revoked(&revoked)).await?;

    // A binding whose session never was (or is gone) is left alone for a while: its session
    // may just not have arrived yet.
    let ghost = session("carol", NOW, NOW + 3600);
    let orphan = binding(&ghost, NOW, NOW + 3600);
    ok("put_binding (orphan)", a.put_binding(&orphan).await)?;
    ensure!(
        a.binding(&orphan.id, NOW).is_none(),
        "a binding without its session is invisible"
    );
    ensure!(
        ok("collect_garbage", a.collect_garbage(NOW + 1).await)? == 0,
        "a young orphan is kept"
    );
    ensure!(
        ok(
            "collect_garbage",
            a.collect_garbage(NOW + ORPHAN_GRACE).await
        )? == 1,
        "an old orphan is collected"
    );
    Ok(())
}

/// `sessions_of`, `bindings_of` and `bindings_of_session` return only the subject's (or the
/// session's) visible entries, oldest first, on both handles.
pub async fn listings_filter_and_order(a: &dyn Store, b: &dyn Store) -> Outcome {
    let subject = unique("dave");
    let other = unique("erin");
    let newer = session(&subject, NOW + 2, NOW + 3600);
    let older = session(&subject, NOW + 1, NOW + 3600);
    let expired = session(&subject, NOW - 100, NOW - 1);
    let others = session(&other, NOW, NOW + 3600);
    for s in [&newer, &older, &expired, &others] {
        ok("put_session", a.put_session(s).await)?;
    }
    let b_late = binding(&older, NOW + 3, NOW + 600);
    let b_early = binding(&newer, NOW + 1, NOW + 600);
    let b_other = binding(&others, NOW, NOW + 600);
    let b_dead_session = binding(&expired, NOW, NOW + 600);
    let b_expired = binding(&older, NOW, NOW - 1);
    for bd in [&b_late, &b_early, &b_other, &b_dead_session, &b_expired] {
        ok("put_binding", a.put_binding(bd).await)?;
    }

    let expect_sessions = vec![older.id.clone(), newer.id.clone()];
    let expect_bindings = vec![b_early.id.clone(), b_late.id.clone()];
    for (name, store) in [("a", a), ("b", b)] {
        eventually(&format!("{name} lists the subject's entries"), || {
            ids(&store.sessions_of(&subject, NOW), |s| &s.id) == expect_sessions
                && ids(&store.bindings_of(&subject, NOW), |b| &b.id) == expect_bindings
        })
        .await?;
        ensure!(
            ids(&store.bindings_of_session(&older.id, NOW), |b| &b.id) == vec![b_late.id.clone()],
            "{name}: bindings_of_session lists the session's visible bindings"
        );
        ensure!(
            ids(&store.sessions_of(&other, NOW), |s| &s.id) == vec![others.id.clone()]
                && ids(&store.bindings_of(&other, NOW), |b| &b.id) == vec![b_other.id.clone()],
            "{name}: another subject's entries are listed under that subject only"
        );
        ensure!(
            store.sessions_of("nobody", NOW).is_empty()
                && store.bindings_of("nobody", NOW).is_empty(),
            "{name}: an unknown subject has nothing"
        );
        ensure!(
            store.binding(&b_dead_session.id, NOW).is_none(),
            "{name}: a binding of an expired session is invisible"
        );
        ensure!(
            store.bindings_of_session(&expired.id, NOW).is_empty(),
            "{name}: an expired session lists no bindings"
        );
    }
    Ok(())
}

/// Deleting a session deletes its bindings (and no others) and both handles hear of every
/// deletion.
pub async fn deleting_a_session_deletes_its_bindings(a: &dyn Store, b: &dyn Store) -> Outcome {
    let mut rx_a = a.subscribe();
    let mut rx_b = b.subscribe();
    let s = session("frank", NOW, NOW + 3600);
    let t = session("frank", NOW, NOW + 3600);
    ok("put_session", a.put_session(&s).await)?;
    ok("put_session", a.put_session(&t).await)?;
    let b1 = binding(&s, NOW, NOW + 600);
    let b2 = binding(&s, NOW + 1, NOW + 600);
    let kept = binding(&t, NOW, NOW + 600);
    for bd in [&b1, &b2, &kept] {
        ok("put_binding", a.put_binding(bd).await)?;
    }
    eventually("b has the bindings", || {
        b.bindings_of("frank", NOW).len() == 3
    })
    .await?;

    ensure!(
        ok("delete_session", a.delete_session(&s.id).await)?,
        "deleting the session returns true"
    );
    ensure!(
        a.binding(&b1.id, NOW).is_none() && a.binding(&b2.id, NOW).is_none(),
        "its bindings are gone at once on the deleter"
    );
    ensure!(
        a.bindings_of_session(&s.id, NOW).is_empty(),
        "the deleted session lists no bindings"
    );
    ensure!(
        a.binding(&kept.id, NOW).is_some(),
        "another session's binding stays"
    );
    let expected = vec![
        StoreEvent::SessionDeleted { id: s.id.clone() },
        StoreEvent::BindingDeleted {
            id: b1.id.clone(),
            session_id: s.id.clone(),
        },
        StoreEvent::BindingDeleted {
            id: b2.id.clone(),
            session_id: s.id.clone(),
        },
    ];
    expect_events(&mut rx_a, expected.clone(), "a's subscriber").await?;
    expect_events(&mut rx_b, expected, "b's subscriber").await?;
    eventually("b no longer has the bindings", || {
        b.binding(&b1.id, NOW).is_none()
            && b.binding(&b2.id, NOW).is_none()
            && b.bindings_of("frank", NOW).len() == 1
    })
    .await?;
    // Collection finds nothing left of the deleted session, even once its grace is over.
    ensure!(
        ok(
            "collect_garbage",
            a.collect_garbage(NOW + ORPHAN_GRACE).await
        )? == 0,
        "no binding of the deleted session was left behind"
    );
    Ok(())
}

/// Two concurrent revocations of one id, one on each handle: exactly one is first.
pub async fn revoke_is_single_use(a: &dyn Store, b: &dyn Store) -> Outcome {
    for round in 0..8 {
        let id = unique("state");
        let (ra, rb) = tokio::join!(a.revoke(&id, NOW + 300), b.revoke(&id, NOW + 300));
        let (ra, rb) = (ok("revoke on a", ra)?, ok("revoke on b", rb)?);
        ensure!(
            ra != rb,
            "round {round}: exactly one revocation is first (a: {ra}, b: {rb})"
        );
        ensure!(
            !ok("revoke (again)", a.revoke(&id, NOW + 300).await)?
                && !ok("revoke (again)", b.revoke(&id, NOW + 300).await)?,
            "round {round}: a used id stays used"
        );
        eventually("both handles see the revocation", || {
            a.is_revoked(&id) && b.is_revoked(&id)
        })
        .await?;
    }
    Ok(())
}

/// A revocation on `a` is visible on `b` soon (the promise is within a second).
pub async fn revocation_reaches_the_other_handle(a: &dyn Store, b: &dyn Store) -> Outcome {
    let id = format!("session:{}", unique("sid"));
    ensure!(
        !a.is_revoked(&id) && !b.is_revoked(&id),
        "nothing is revoked yet"
    );
    ensure!(
        ok("revoke", a.revoke(&id, NOW + 3600).await)?,
        "the first revocation returns true"
    );
    ensure!(a.is_revoked(&id), "the revoker sees it at once");
    eventually("b sees the revocation", || b.is_revoked(&id)).await?;
    ensure!(
        !b.is_revoked(&format!("{id}x")),
        "another id is not revoked"
    );
    Ok(())
}

/// Writes and deletions on either handle reach the other.
pub async fn writes_and_deletions_reach_the_other_handle(a: &dyn Store, b: &dyn Store) -> Outcome {
    let s = session("grace", NOW, NOW + 3600);
    ok("put_session", b.put_session(&s).await)?;
    let bd = binding(&s, NOW, NOW + 600);
    ok("put_binding", b.put_binding(&bd).await)?;
    eventually("a sees b's writes", || {
        a.session(&s.id, NOW).is_some() && a.binding(&bd.id, NOW).is_some()
    })
    .await?;
    ensure!(
        ok("delete_binding", a.delete_binding(&bd.id).await)?,
        "a deletes b's binding"
    );
    eventually("b sees the binding deleted", || {
        b.binding(&bd.id, NOW).is_none()
    })
    .await?;
    ensure!(
        ok("delete_session", a.delete_session(&s.id).await)?,
        "a deletes b's session"
    );
    eventually("b sees the session deleted", || {
        b.session(&s.id, NOW).is_none()
    })
    .await?;
    Ok(())
}

/// Subscribers of both handles hear of revocations, deletions and collections, whichever
/// handle made them.
pub async fn events_reach_subscribers(a: &dyn Store, b: &dyn Store) -> Outcome {
    let mut rx_a = a.subscribe();
    let mut rx_b = b.subscribe();
    let id = unique("jti");
    ok("revoke", a.revoke(&id, NOW + 60).await)?;
    let revoked = vec![StoreEvent::Revoked { id: id.clone() }];
    expect_events(&mut rx_a, revoked.clone(), "a hears a's revocation").await?;
    expect_events(&mut rx_b, revoked, "b hears a's revocation").await?;

    let s = session("heidi", NOW, NOW + 20);
    ok("put_session", b.put_session(&s).await)?;
    let bd = binding(&s, NOW, NOW + 10);
    ok("put_binding", b.put_binding(&bd).await)?;
    eventually("a sees b's writes", || a.binding(&bd.id, NOW).is_some()).await?;
    ok("delete_binding", b.delete_binding(&bd.id).await)?;
    let deleted = vec![StoreEvent::BindingDeleted {
        id: bd.id.clone(),
        session_id: s.id.clone(),
    }];
    expect_events(&mut rx_a, deleted.clone(), "a hears b's deletion").await?;
    expect_events(&mut rx_b, deleted, "b hears b's deletion").await?;

    ok("collect_garbage", a.collect_garbage(NOW + 20).await)?;
    let collected = vec![StoreEvent::SessionDeleted { id: s.id.clone() }];
    expect_events(&mut rx_a, collected.clone(), "a hears a's collection").await?;
    expect_events(&mut rx_b, collected, "b hears a's collection").await?;
    Ok(())
}

/// `ready` resolves on both handles.
pub async fn ready_resolves(a: &dyn Store, b: &dyn Store) -> Outcome {
    for (name, store) in [("a", a), ("b", b)] {
        tokio::time::timeout(PATIENCE, store.ready())
            .await
            .map_err(|_| format!("{name}: ready() did not resolve"))?;
    }
    Ok(())
}

/// Neither the IdP tokens nor the session id show in `Debug` of sessions, bindings, events or
/// the store.
pub async fn debug_shows_no_secret(a: &dyn Store, b: &dyn Store) -> Outcome {
    let mut rx = b.subscribe();
    let s = session("ivan", NOW, NOW + 3600);
    ok("put_session", a.put_session(&s).await)?;
    let bd = binding(&s, NOW, NOW + 600);
    ok("put_binding", a.put_binding(&bd).await)?;
    let revoked = format!("session:{}", s.id);
    ok("revoke", a.revoke(&revoked, NOW + 3600).await)?;
    ok("delete_session", a.delete_session(&s.id).await)?;
    let mut shown = format!("{s:?} {bd:?} {a:?} {b:?}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = 0;
    while seen < 3 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) => {
                shown.push_str(&format!(" {e:?}"));
                seen += 1;
            }
            _ => return Err(format!("only {seen} of 3 events arrived")),
        }
    }
    let secrets = [
        s.id.as_str(),
        s.idp_refresh_token.as_ref().map_or("", Secret::expose),
        s.idp_id_token.as_ref().map_or("", Secret::expose),
    ];
    for secret in secrets {
        ensure!(
            !secret.is_empty() && !shown.contains(secret),
            "Debug output shows a secret: {shown}"
        );
    }
    ensure!(
        shown.contains("ivan") && shown.contains(&bd.id),
        "Debug output still names what is not secret: {shown}"
    );
    Ok(())
}
