//! Status and Events: turns the reports of each published table into Route status
//! (`Accepted`, `ResolvedRefs`, `Ready`, `observedGeneration`, `url`) and into one Warning Event
//! per new problem on any object. Only the leader writes, it checks leadership right before each
//! write, and it writes nothing when the status is already what it would write.
//!
//! [`desired_status`] is pure (time comes in as a parameter); [`run`] is the loop around it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as K8sCondition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use tokio::sync::watch;

use k8s_openapi::api::networking::v1::{
    Ingress, IngressLoadBalancerIngress, IngressLoadBalancerStatus,
};

use super::compile::{Condition, Kind, ObjectKey, Problem, Report};
use super::leader::Leadership;
use super::publisher::Published;
use super::snapshot::StoredRoute;
use super::watch::Watchers;
use crate::api::RouteStatus;
use crate::metrics::{self, Metrics};

/// The field manager and Event reporter name of the controller.
pub const MANAGER: &str = "portcullis-controller";

/// How many status writes run at once.
const WRITE_CONCURRENCY: usize = 16;

/// What the status writer needs of a Route's current status, as the store keeps it: whether a
/// new status differs from it ([`status_differs`]) and since when each condition has had its
/// status. The whole status (three conditions, their messages) was ~1 KB a Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenStatus {
    /// A hash of what [`status_differs`] compares.
    digest: u64,
    /// Each condition's `(type, status)` hash and `lastTransitionTime`.
    transitions: Box<[(u64, Time)]>,
}

impl SeenStatus {
    /// What the status writer needs of `status`.
    pub fn of(status: &RouteStatus) -> SeenStatus {
        SeenStatus {
            digest: digest(status),
            transitions: status
                .conditions
                .iter()
                .flatten()
                .map(|c| {
                    (
                        condition_id(&c.type_, &c.status),
                        c.last_transition_time.clone(),
                    )
                })
                .collect(),
        }
    }
}

/// A fixed hasher (not randomly keyed): a digest is compared with digests made by the same
/// process only.
fn hasher() -> std::hash::DefaultHasher {
    std::hash::DefaultHasher::new()
}

fn condition_id(type_: &str, status: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = hasher();
    (type_, status).hash(&mut h);
    h.finish()
}

/// The hash of a status without its condition timestamps: what [`conditions_key`] keeps of each
/// condition, hashed in place (every watch event of a Route makes one).
fn digest(status: &RouteStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = hasher();
    status.url.hash(&mut h);
    status.observed_generation.hash(&mut h);
    let conditions = status.conditions.as_deref().unwrap_or_default();
    conditions.len().hash(&mut h);
    for c in conditions {
        (
            &c.type_,
            &c.status,
            &c.reason,
            &c.message,
            c.observed_generation,
        )
            .hash(&mut h);
    }
    h.finish()
}

/// The conditions a new one takes its `lastTransitionTime` from, when its type and status are
/// the same: a status's conditions, or what [`SeenStatus`] kept of them.
pub trait PriorConditions {
    /// When the condition of `type_` last turned `status`, if it has it now.
    fn transitioned(&self, type_: &str, status: &str) -> Option<Time>;
}

impl PriorConditions for [K8sCondition] {
    fn transitioned(&self, type_: &str, status: &str) -> Option<Time> {
        self.iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
    }
}

impl<T: PriorConditions + ?Sized> PriorConditions for Option<&T> {
    fn transitioned(&self, type_: &str, status: &str) -> Option<Time> {
        self.and_then(|p| p.transitioned(type_, status))
    }
}

impl PriorConditions for SeenStatus {
    fn transitioned(&self, type_: &str, status: &str) -> Option<Time> {
        let id = condition_id(type_, status);
        self.transitions
            .iter()
            .find(|(c, _)| *c == id)
            .map(|(_, t)| t.clone())
    }
}

/// The status a Route should have for `report`. Conditions keep their `lastTransitionTime` from
/// `prior` when their status did not change; `now` stamps the ones that did.
pub fn desired_status(report: &Report, prior: Option<&SeenStatus>, now: &Time) -> RouteStatus {
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        condition(&prior, type_, ok, reason, message, report.generation, now)
    };
    let verdict = |c: Condition, ok_reason: &'static str, ok_message: &str| {
        let problems: Vec<&Problem> = report
            .problems
            .iter()
            .filter(|p| p.condition == c)
            .collect();
        match problems.first() {
            None => (true, ok_reason, ok_message.to_owned()),
            Some(first) => {
                let message = problems
                    .iter()
                    .map(|p| p.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                (false, first.reason, message)
            }
        }
    };
    let (accepted, a_reason, a_message) = verdict(
        Condition::Accepted,
        "Accepted",
        "the route is valid and its host and path are its own",
    );
    let (resolved, r_reason, r_message) = verdict(
        Condition::ResolvedRefs,
        "ResolvedRefs",
        "every reference resolved",
    );
    let served = accepted && report.served > 0;
    let (ready, ready_reason, ready_message) = if !served {
        (false, "NotAccepted", "the route is not served".to_owned())
    } else if report.no_endpoints {
        (
            false,
            "NoReadyEndpoints",
            "the route is served, but no backend has a ready endpoint (requests get 503)"
                .to_owned(),
        )
    } else if !resolved {
        (
            true,
            "ReadyWithUnresolvedRefs",
            "the route is served; some references did not resolve (see ResolvedRefs)".to_owned(),
        )
    } else {
        (true, "Ready", "the route is served".to_owned())
    };
    RouteStatus {
        url: report.url.as_deref().filter(|_| served).map(str::to_owned),
        observed_generation: report.generation,
        conditions: Some(vec![
            condition("Accepted", accepted, a_reason, a_message),
            condition("ResolvedRefs", resolved, r_reason, r_message),
            condition("Ready", ready, ready_reason, ready_message),
        ]),
    }
}

/// A condition of `type_`, keeping its `lastTransitionTime` from `prior` when its status did
/// not change and stamping `now` when it did.
pub fn condition(
    prior: &(impl PriorConditions + ?Sized),
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> K8sCondition {
    let status = if ok { "True" } else { "False" };
    let last = prior
        .transitioned(type_, status)
        .unwrap_or_else(|| now.clone());
    K8sCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: last,
    }
}

/// Conditions without their timestamps, for comparing statuses.
pub fn conditions_key(
    conditions: Option<&Vec<K8sCondition>>,
) -> Vec<(String, String, String, String, Option<i64>)> {
    conditions
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
                c.observed_generation,
            )
        })
        .collect()
}

/// Whether a new status differs from the one seen in anything but condition timestamps.
pub fn status_differs(seen: Option<&SeenStatus>, new: &RouteStatus) -> bool {
    seen.is_none_or(|seen| seen.digest != digest(new))
}

/// Runs until `shutdown`: after each published table (and on gaining leadership), bring status
/// and Events in line with the reports. Failed writes are counted in `metrics`.
pub async fn run(
    client: Client,
    watchers: Arc<Watchers>,
    mut published: watch::Receiver<Arc<Published>>,
    leadership: Leadership,
    publish_address: Option<String>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let load_balancer = publish_address.as_deref().map(load_balancer_status);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: Some(leadership.identity().to_owned()).filter(|i| !i.is_empty()),
        },
    );
    let mut leader_rx = leadership.subscribe();
    let mut sent: Option<EventMemory> = None;
    loop {
        tokio::select! {
            r = published.changed() => if r.is_err() { return },
            r = leader_rx.changed() => if r.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if !leadership.is_leader() {
            sent = None;
            continue;
        }
        // A new leader starts from the Events already recorded (by any replica), so a
        // failover does not repeat them.
        if sent.is_none() {
            sent = Some(EventMemory::recorded(&client, &metrics).await);
        }
        let Some(memory) = sent.as_mut() else {
            continue;
        };
        let current = published.borrow_and_update().clone();
        let ctx = SyncContext {
            client: &client,
            recorder: &recorder,
            watchers: &watchers,
            leadership: &leadership,
            load_balancer: load_balancer.as_ref(),
            metrics: &metrics,
        };
        sync(&ctx, &current, memory).await;
    }
}

/// Problems already sent as Events, per object uid, so a problem is reported once and again
/// only after it went away and came back; and what the last sync left right, so the next one
/// skips it.
#[derive(Default)]
struct EventMemory {
    sent: HashMap<Arc<str>, BTreeSet<(String, String)>>,
    /// The reports the last sync worked from.
    last: Option<Arc<Published>>,
    /// Objects whose status needed no write for their report in `last`, as the store held them
    /// then. While neither the report nor the object changes, there is nothing to do for them:
    /// with 10k Routes, computing every status again after each table costs more than the
    /// compile.
    settled: HashMap<ObjectKey, Stored>,
}

/// An object as the store held it.
enum Stored {
    Route(Arc<StoredRoute>),
    Ingress(Arc<Ingress>),
}

impl EventMemory {
    /// The Warning Events this controller already recorded, by object uid. On an error the
    /// memory starts empty (at worst an Event is repeated).
    async fn recorded(client: &Client, metrics: &Metrics) -> Self {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
        let params = kube::api::ListParams::default()
            .fields(&format!("reportingController={MANAGER},type=Warning"));
        let mut memory = EventMemory::default();
        match api.list(&params).await {
            Ok(list) => {
                for e in list.items {
                    let uid = e.regarding.and_then(|r| r.uid);
                    if let (Some(uid), Some(reason), Some(note)) = (uid, e.reason, e.note) {
                        memory
                            .sent
                            .entry(uid.into())
                            .or_default()
                            .insert((reason, note));
                    }
                }
            }
            Err(e) => {
                metrics.reconcile_error(metrics::STATUS);
                tracing::warn!(
                    error = %crate::error_chain(&e),
                    "listing recorded Events failed; current problems will be recorded again"
                )
            }
        }
        memory
    }
}

/// For an object whose report and stored version did not change: its Events are the ones sent
/// for it last time.
fn carry_over(
    sent: &mut EventMemory,
    seen: &mut HashMap<Arc<str>, BTreeSet<(String, String)>>,
    uid: Arc<str>,
) {
    let problems = sent.sent.remove(&uid).unwrap_or_default();
    seen.insert(uid, problems);
}

/// `status.loadBalancer` of an Ingress served at `address` (an IP, else a host name).
pub fn load_balancer_status(address: &str) -> IngressLoadBalancerStatus {
    let mut entry = IngressLoadBalancerIngress::default();
    if address.parse::<std::net::IpAddr>().is_ok() {
        entry.ip = Some(address.to_owned());
    } else {
        entry.hostname = Some(address.to_owned());
    }
    IngressLoadBalancerStatus {
        ingress: Some(vec![entry]),
    }
}

struct SyncContext<'a> {
    client: &'a Client,
    recorder: &'a Recorder,
    watchers: &'a Watchers,
    leadership: &'a Leadership,
    load_balancer: Option<&'a IngressLoadBalancerStatus>,
    metrics: &'a Metrics,
}

async fn sync(ctx: &SyncContext<'_>, published: &Arc<Published>, sent: &mut EventMemory) {
    let SyncContext {
        client,
        recorder,
        watchers,
        leadership,
        load_balancer,
        metrics,
    } = *ctx;
    let now = Time(jiff::Timestamp::from_second(published.compiled_at).unwrap_or_default());
    let mut writes: Vec<(ObjectKey, serde_json::Value)> = Vec::new();
    let mut events = Vec::new();
    let mut seen = HashMap::new();
    let mut settled = HashMap::new();
    let last = sent.last.replace(Arc::clone(published));
    for report in published.reports.values() {
        let Some(uid) = report.uid.clone() else {
            continue;
        };
        let unchanged = last.as_ref().and_then(|l| l.reports.get(&report.key)) == Some(report);
        let (reference, stored) = match report.key.kind {
            Kind::Route => {
                let Some(obj) = watchers.route(&report.key.namespace, &report.key.name) else {
                    continue;
                };
                // The object changed identity since it was compiled: the next table covers it.
                if obj.meta.id.uid.as_deref() != Some(&*uid) {
                    continue;
                }
                if unchanged
                    && let Some((key, Stored::Route(was))) = sent.settled.remove_entry(&report.key)
                    && Arc::ptr_eq(&was, &obj)
                {
                    carry_over(sent, &mut seen, uid);
                    settled.insert(key, Stored::Route(was));
                    continue;
                }
                let desired = desired_status(report, obj.seen.as_ref(), &now);
                if status_differs(obj.seen.as_ref(), &desired) {
                    writes.push((report.key.clone(), serde_json::json!({ "status": desired })));
                }
                (obj.object_ref(), Stored::Route(obj))
            }
            Kind::Ingress => {
                let Some(obj) = watchers.ingress(&report.key.namespace, &report.key.name) else {
                    continue;
                };
                if obj.metadata.uid.as_deref() != Some(&*uid) {
                    continue;
                }
                if unchanged
                    && let Some((key, Stored::Ingress(was))) =
                        sent.settled.remove_entry(&report.key)
                    && Arc::ptr_eq(&was, &obj)
                {
                    carry_over(sent, &mut seen, uid);
                    settled.insert(key, Stored::Ingress(was));
                    continue;
                }
                let current = obj.status.as_ref().and_then(|s| s.load_balancer.as_ref());
                if let Some(lb) = load_balancer
                    && current != Some(lb)
                {
                    let patch = serde_json::json!({"status": {"loadBalancer": lb}});
                    writes.push((report.key.clone(), patch));
                }
                (obj.object_ref(&()), Stored::Ingress(obj))
            }
        };
        // Settled only when nothing is to be written: a failed write is tried again next time.
        if writes.last().is_none_or(|(k, _)| *k != report.key) {
            settled.insert(report.key.clone(), stored);
        }
        let now_problems: BTreeSet<(String, String)> = report
            .problems
            .iter()
            .map(|p| (p.reason.to_owned(), p.message.clone()))
            .collect();
        let before = sent.sent.get(&uid);
        for p in &now_problems {
            if before.is_none_or(|b| !b.contains(p)) {
                events.push((reference.clone(), p.clone()));
            }
        }
        seen.insert(uid, now_problems);
    }
    sent.sent = seen;
    sent.settled = settled;

    let writes = futures::stream::iter(writes.into_iter().map(|(key, body)| async move {
        if !leadership.is_leader() {
            return;
        }
        let patch = Patch::Merge(body);
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        let written = match key.kind {
            Kind::Route => Api::<crate::api::Route>::namespaced(client.clone(), &key.namespace)
                .patch_status(&key.name, &params, &patch)
                .await
                .map(drop),
            Kind::Ingress => Api::<Ingress>::namespaced(client.clone(), &key.namespace)
                .patch_status(&key.name, &params, &patch)
                .await
                .map(drop),
        };
        if let Err(e) = written {
            metrics.reconcile_error(metrics::STATUS);
            tracing::warn!(object = %key, error = %crate::error_chain(&e), "writing status failed");
        }
    }))
    .buffer_unordered(WRITE_CONCURRENCY);
    writes.collect::<()>().await;

    for (reference, (reason, message)) in events {
        if !leadership.is_leader() {
            return;
        }
        tracing::warn!(
            object = %format!("{} {}/{}", reference.kind.as_deref().unwrap_or_default(), reference.namespace.as_deref().unwrap_or_default(), reference.name.as_deref().unwrap_or_default()),
            reason,
            message = %message,
            replica = leadership.identity(),
            "object refused or degraded"
        );
        let event = Event {
            type_: EventType::Warning,
            reason,
            note: Some(message),
            action: "Compile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            metrics.reconcile_error(metrics::STATUS);
            tracing::warn!(error = %crate::error_chain(&e), "recording an Event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(problems: Vec<Problem>, served: usize) -> Report {
        Report {
            key: ObjectKey {
                kind: Kind::Route,
                namespace: "a".into(),
                name: "r".into(),
            },
            uid: Some("u".into()),
            generation: Some(3),
            url: Some("https://r.example.com".into()),
            problems,
            served,
            no_endpoints: false,
        }
    }

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn cond<'a>(s: &'a RouteStatus, t: &str) -> &'a K8sCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn a_served_route_is_accepted_resolved_and_ready() {
        let s = desired_status(&report(vec![], 1), None, &at(100));
        assert_eq!(s.url.as_deref(), Some("https://r.example.com"));
        assert_eq!(s.observed_generation, Some(3));
        for t in ["Accepted", "ResolvedRefs", "Ready"] {
            assert_eq!(cond(&s, t).status, "True", "{t}");
            assert_eq!(cond(&s, t).observed_generation, Some(3));
            assert_eq!(cond(&s, t).last_transition_time, at(100));
        }
    }

    #[test]
    fn problems_turn_their_condition_false_with_every_message() {
        let problems = vec![
            Problem {
                condition: Condition::ResolvedRefs,
                reason: "BackendNotFound",
                message: "Service a/x not found".into(),
            },
            Problem {
                condition: Condition::ResolvedRefs,
                reason: "SecretNotFound",
                message: "Secret a/tls not found".into(),
            },
        ];
        let s = desired_status(&report(problems, 1), None, &at(100));
        let refs = cond(&s, "ResolvedRefs");
        assert_eq!(
            (refs.status.as_str(), refs.reason.as_str()),
            ("False", "BackendNotFound")
        );
        assert_eq!(
            refs.message,
            "Service a/x not found; Secret a/tls not found"
        );
        assert_eq!(cond(&s, "Accepted").status, "True");
        assert_eq!(cond(&s, "Ready").reason, "ReadyWithUnresolvedRefs");

        let conflict = vec![Problem {
            condition: Condition::Accepted,
            reason: "Conflict",
            message: "taken".into(),
        }];
        let s = desired_status(&report(conflict, 0), None, &at(100));
        assert_eq!(cond(&s, "Accepted").reason, "Conflict");
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Ready").reason, "NotAccepted");
        assert_eq!(s.url, None);
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time_and_need_no_write() {
        let first = desired_status(&report(vec![], 1), None, &at(100));
        let seen = SeenStatus::of(&first);
        let again = desired_status(&report(vec![], 1), Some(&seen), &at(200));
        assert_eq!(cond(&again, "Ready").last_transition_time, at(100));
        assert!(!status_differs(Some(&seen), &again));

        let mut degraded = report(vec![], 1);
        degraded.no_endpoints = true;
        let next = desired_status(&degraded, Some(&seen), &at(300));
        assert!(status_differs(Some(&seen), &next));
        assert_eq!(cond(&next, "Ready").reason, "NoReadyEndpoints");
        assert_eq!(cond(&next, "Ready").last_transition_time, at(300));
        assert_eq!(cond(&next, "Accepted").last_transition_time, at(100));
        assert!(status_differs(None, &next));
    }

    /// What the store keeps of a status tells every change but the condition timestamps.
    #[test]
    fn a_seen_status_tells_changes_but_not_timestamps() {
        let first = desired_status(&report(vec![], 1), None, &at(100));
        let seen = SeenStatus::of(&first);
        let mut later = first.clone();
        for c in later.conditions.iter_mut().flatten() {
            c.last_transition_time = at(500);
        }
        assert!(!status_differs(Some(&seen), &later));
        let changes: [fn(&mut RouteStatus); 5] = [
            |s| s.url = None,
            |s| s.observed_generation = Some(4),
            |s| s.conditions.as_mut().unwrap()[1].message.push('.'),
            |s| s.conditions.as_mut().unwrap()[2].reason = "Other".into(),
            |s| {
                s.conditions
                    .as_mut()
                    .unwrap()
                    .pop()
                    .map(drop)
                    .unwrap_or_default()
            },
        ];
        for (i, change) in changes.into_iter().enumerate() {
            let mut changed = first.clone();
            change(&mut changed);
            assert!(status_differs(Some(&seen), &changed), "change {i}");
        }
        assert_eq!(seen.transitioned("Ready", "True"), Some(at(100)));
        assert_eq!(seen.transitioned("Ready", "False"), None);
        assert_eq!(seen.transitioned("Other", "True"), None);
    }
}
