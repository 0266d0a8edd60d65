//! Leader election: which replica may write Secrets, status and Events. It owns one
//! `coordination.k8s.io/v1` Lease in Portcullis's own namespace and the [`Leadership`] handle
//! that writers consult; `app` starts it, and every writer calls [`Leadership::is_leader`] right
//! before it writes.
//!
//! ```text
//! elector ── kube-lease-manager (acquire, renew, release) ──► Lease ◄── watch ── observer
//!    │ held: the manager says we hold it                                   │ until: local deadline
//!    └──────────────────────────────► Leadership ◄─────────────────────────┘
//!                       is_leader() = held && now < until && not stopped
//! ```
//!
//! Acquiring, renewing and releasing are done by `kube-lease-manager`, driven through its manual
//! `changed()`/`release()` API. That API reports only changes of holdership: renewals happen
//! inside `changed()`, and when the API server stops answering, `changed()` neither returns nor
//! notices that the lease is running out (kube clients have no read timeout by default). So the
//! guarantee that a replica stops writing before its lease can expire is kept here, apart from
//! the crate: an observer watches the Lease and, whenever the stored object names us, sets a
//! local deadline of `renewTime + leaseDurationSeconds - margin` (mapped from our wall clock to a
//! monotonic [`Instant`]; `renewTime` is stamped before the write is sent, so the deadline errs
//! early). [`Leadership::is_leader`] compares that deadline with [`Instant::now`] on every call;
//! a timer only updates what [`Leadership::subscribe`] reports. The margin is a third of the lease
//! duration and also bounds the clock skew between replicas that is tolerated.
//!
//! The watch also tells a waiting replica at once when the holder releases the lease (the crate
//! itself would only look again when the old lease expires), so a clean shutdown hands over
//! within a round trip. On shutdown the replica stops being leader first and then releases the
//! lease, bounded by a timeout. RBAC: `get`, `create`, `patch`, `list` and `watch` on leases in
//! Portcullis's namespace.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::utils::Backoff as WatchBackoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseParams};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The Lease name unless configured otherwise.
pub const DEFAULT_LEASE_NAME: &str = "portcullis-leader";
/// How long a lease lasts after its last renewal unless configured otherwise.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long before expiry the holder renews unless configured otherwise (so every 5 s).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The first pause after a failed API call unless configured otherwise.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Upper bound on releasing the lease at shutdown.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// Kubernetes refuses field managers longer than this.
const MAX_FIELD_MANAGER_LEN: usize = 128;
/// The crate names its field manager `kube-lease-manager-<identity>`.
const FIELD_MANAGER_PREFIX_LEN: usize = "kube-lease-manager-".len();

/// Errors starting leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// A setting is out of range.
    #[error("leader election setting {field}: {reason}")]
    InvalidConfig {
        /// The field of [`LeaderConfig`].
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Settings of leader election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Portcullis's own namespace, which holds the Lease.
    pub namespace: String,
    /// The Lease's name.
    pub lease_name: String,
    /// This replica's identity in `holderIdentity`; unique per process (see [`default_identity`]).
    pub identity: String,
    /// How long the lease lasts after the last renewal (whole seconds, at least 2 s).
    pub lease_duration: Duration,
    /// The crate's grace: the holder renews this long before the lease would expire (whole
    /// seconds, more than [`LeaderConfig::safety_margin`] and less than `lease_duration`).
    pub grace: Duration,
    /// The first pause after a failed API call; pauses double up to the renewal interval.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Settings with the default Lease name and timings.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: DEFAULT_LEASE_NAME.to_string(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            grace: DEFAULT_GRACE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// How long before the lease could expire a holder stops acting as leader: a third of
    /// `lease_duration`.
    pub fn safety_margin(&self) -> Duration {
        self.lease_duration / 3
    }

    /// Check the settings; [`Leadership::start`] does this too.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let bad = |field, reason: &str| {
            Err(LeaderError::InvalidConfig {
                field,
                reason: reason.to_string(),
            })
        };
        if self.namespace.is_empty() {
            return bad("namespace", "must not be empty");
        }
        if self.lease_name.is_empty() {
            return bad("lease_name", "must not be empty");
        }
        if self.identity.is_empty() {
            return bad("identity", "must not be empty");
        }
        if self.identity.len() + FIELD_MANAGER_PREFIX_LEN > MAX_FIELD_MANAGER_LEN {
            return bad("identity", "must be at most 109 bytes");
        }
        if self.lease_duration.subsec_nanos() != 0 || self.lease_duration < Duration::from_secs(2) {
            return bad("lease_duration", "must be whole seconds, at least 2s");
        }
        if self.lease_duration.as_secs() > i32::MAX as u64 {
            return bad("lease_duration", "is too long");
        }
        if self.grace.subsec_nanos() != 0
            || self.grace <= self.safety_margin()
            || self.grace >= self.lease_duration
        {
            return bad(
                "grace",
                "must be whole seconds, more than a third of lease_duration and less than it",
            );
        }
        if self.retry_period.is_zero() {
            return bad("retry_period", "must be positive");
        }
        Ok(())
    }

    fn renew_interval(&self) -> Duration {
        self.lease_duration.saturating_sub(self.grace)
    }
}

/// An identity unique to this process: `POD_NAME` when set (the Downward API), otherwise
/// `<HOSTNAME>-<pid>-<random>`.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "portcullis".to_string());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Whether this replica may write. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Leadership {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("identity", &self.shared.identity)
            .field("is_leader", &self.is_leader())
            .finish()
    }
}

impl Leadership {
    /// Validate `cfg` and spawn the election task. Leadership starts as "not leader"; the task
    /// keeps trying to acquire the lease, renews it while held, and on `shutdown` (the value
    /// turning `true`, or its sender going away) steps down and releases the lease. The handle
    /// finishes once the lease is released. Call inside a Tokio runtime.
    pub fn start(
        client: Client,
        cfg: LeaderConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Self, JoinHandle<()>), LeaderError> {
        cfg.validate()?;
        let (tx, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            identity: cfg.identity.clone(),
            lease: cfg.lease_name.clone(),
            always: false,
            state: Mutex::new(State::default()),
            tx,
        });
        let task = tokio::spawn(run(shared.clone(), client, cfg, shutdown));
        Ok((Self { shared }, task))
    }

    /// A leadership that always leads: single-process mode without election.
    pub fn always() -> Self {
        let (tx, _) = watch::channel(true);
        Self {
            shared: Arc::new(Shared {
                identity: String::new(),
                lease: String::new(),
                always: true,
                state: Mutex::new(State::default()),
                tx,
            }),
        }
    }

    /// True only while this replica holds the lease and its local deadline (the last renewal
    /// the API server stored, plus the lease duration, minus the safety margin) lies ahead.
    pub fn is_leader(&self) -> bool {
        self.shared.always || self.shared.state().leads(Instant::now())
    }

    /// A receiver whose value changes when leadership is gained or lost, for starting and
    /// stopping leader-only work. It may trail [`Leadership::is_leader`] by a scheduler tick, so
    /// writers still check `is_leader` right before each write.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.shared.tx.subscribe()
    }

    /// This replica's identity (empty for [`Leadership::always`]).
    pub fn identity(&self) -> &str {
        &self.shared.identity
    }
}

struct Shared {
    identity: String,
    lease: String,
    always: bool,
    state: Mutex<State>,
    tx: watch::Sender<bool>,
}

/// What the last stored Lease said about us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Observed {
    /// Nothing seen yet.
    #[default]
    Unknown,
    /// Someone else or nobody holds it.
    NotUs,
    /// We hold it; act as leader until this instant.
    Us(Instant),
}

#[derive(Debug, Default)]
struct State {
    /// The lease manager last reported that we hold the lease.
    held: bool,
    observed: Observed,
    stopped: bool,
}

impl State {
    fn leads(&self, now: Instant) -> bool {
        !self.stopped && self.held && matches!(self.observed, Observed::Us(until) if now < until)
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain data assigned in one step, so a poisoned lock still holds a whole value.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, reason: &str, f: impl FnOnce(&mut State)) {
        let leads = {
            let mut state = self.state();
            f(&mut state);
            state.leads(Instant::now())
        };
        let changed = self.tx.send_if_modified(|v| {
            let changed = *v != leads;
            *v = leads;
            changed
        });
        if changed && leads {
            tracing::info!(identity = %self.identity, lease = %self.lease, reason, "became leader");
        } else if changed {
            tracing::info!(identity = %self.identity, lease = %self.lease, reason, "stopped being leader");
        }
    }

    fn held(&self) -> bool {
        self.state().held
    }

    /// The instant the observer must wake at to report a lapse, if one lies ahead.
    fn pending_deadline(&self) -> Option<Instant> {
        match self.state().observed {
            Observed::Us(until) if until > Instant::now() => Some(until),
            _ => None,
        }
    }

    /// Whether releasing at shutdown is called for: the server last named us, or, before the
    /// first observation, the lease manager said we hold it.
    fn should_release(&self) -> bool {
        let state = self.state();
        match state.observed {
            Observed::Us(_) => true,
            Observed::NotUs => false,
            Observed::Unknown => state.held,
        }
    }

    fn stop(&self) {
        self.update("shutting down", |s| s.stopped = true);
    }
}

/// What a stored Lease says about `identity`, as of `now` on the monotonic clock and `wall_now`
/// on the wall clock (the clock `renewTime` was stamped with).
fn observe_spec(
    spec: Option<&LeaseSpec>,
    cfg: &LeaderConfig,
    now: Instant,
    wall_now: Timestamp,
) -> Observed {
    let Some(spec) = spec else {
        return Observed::NotUs;
    };
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Observed::NotUs;
    }
    let (Some(renewed), Some(secs)) = (spec.renew_time.as_ref(), spec.lease_duration_seconds)
    else {
        return Observed::Us(now);
    };
    let stored = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    let keep = stored
        .min(cfg.lease_duration)
        .saturating_sub(cfg.safety_margin());
    // A renewTime ahead of our clock counts as "just now": the write cannot be later than this
    // observation, so nothing lasts beyond `now + keep`.
    let age = wall_now.duration_since(renewed.0);
    let age = if age.is_negative() {
        Duration::ZERO
    } else {
        age.unsigned_abs()
    };
    Observed::Us(now + keep.saturating_sub(age))
}

async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop: nobody could ever ask us to release otherwise.
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Sleeps `d`; true when shutdown came first.
async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = stopping(shutdown) => true,
        () = tokio::time::sleep(d) => false,
    }
}

async fn run(
    shared: Arc<Shared>,
    client: Client,
    cfg: LeaderConfig,
    shutdown: watch::Receiver<bool>,
) {
    let nudge = Notify::new();
    let (manager, ()) = tokio::join!(
        elect(&shared, client.clone(), &cfg, &nudge, shutdown.clone()),
        observe(&shared, client, &cfg, &nudge, shutdown),
    );
    shared.stop();
    let Some(manager) = manager else { return };
    if !shared.should_release() {
        return;
    }
    let limit = RELEASE_TIMEOUT.min(cfg.lease_duration);
    match tokio::time::timeout(limit, manager.release()).await {
        Ok(Ok(())) => {
            tracing::info!(identity = %cfg.identity, lease = %cfg.lease_name, "released the lease")
        }
        Ok(Err(e)) => {
            tracing::warn!(identity = %cfg.identity, lease = %cfg.lease_name, error = %e, "releasing the lease failed; it expires on its own")
        }
        Err(_) => {
            tracing::warn!(identity = %cfg.identity, lease = %cfg.lease_name, "releasing the lease timed out; it expires on its own")
        }
    }
}

/// Drives the lease manager until shutdown; returns it for the release.
async fn elect(
    shared: &Shared,
    client: Client,
    cfg: &LeaderConfig,
    nudge: &Notify,
    mut shutdown: watch::Receiver<bool>,
) -> Option<LeaseManager> {
    let params = LeaseParams::new(
        cfg.identity.clone(),
        cfg.lease_duration.as_secs(),
        cfg.grace.as_secs(),
    );
    let mut backoff = Backoff::new(cfg.retry_period, cfg.renew_interval());
    loop {
        let built = tokio::select! {
            () = stopping(&mut shutdown) => return None,
            built = LeaseManager::new(
                client.clone(),
                cfg.lease_name.clone(),
                cfg.namespace.clone(),
                params.clone(),
                LeaseCreateMode::AutoCreate,
            ) => built,
        };
        let manager = match built {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(identity = %cfg.identity, lease = %cfg.lease_name, error = %e, "leader election: reading or creating the lease failed; retrying");
                if pause(backoff.step(), &mut shutdown).await {
                    return None;
                }
                continue;
            }
        };
        loop {
            let held = shared.held();
            tokio::select! {
                () = stopping(&mut shutdown) => return Some(manager),
                // A fresh manager re-reads the lease; the old one would wait for the expiry it last saw.
                () = nudge.notified(), if !held => {
                    tracing::debug!(identity = %cfg.identity, lease = %cfg.lease_name, "lease released by its holder; trying to acquire it");
                    break;
                }
                changed = manager.changed() => match changed {
                    Ok(held) => {
                        backoff.reset();
                        let reason = if held { "lease acquired" } else { "lease held by another replica" };
                        shared.update(reason, |s| s.held = held);
                    }
                    Err(e) => {
                        tracing::warn!(identity = %cfg.identity, lease = %cfg.lease_name, error = %e, "leader election: lease API call failed; retrying");
                        if pause(backoff.step(), &mut shutdown).await {
                            return Some(manager);
                        }
                    }
                },
            }
        }
    }
}

/// Watches the Lease and keeps the local deadline; wakes at the deadline to report a lapse.
async fn observe(
    shared: &Shared,
    client: Client,
    cfg: &LeaderConfig,
    nudge: &Notify,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let selector = format!("metadata.name={}", cfg.lease_name);
    let backoff = Backoff::new(cfg.retry_period, cfg.renew_interval());
    let mut events = watcher(api, watcher::Config::default().fields(&selector))
        .backoff(backoff)
        .boxed();
    let mut listed = false;
    let mut last_holder: Option<String> = None;
    let mut seen = |lease: Option<&Lease>| {
        let spec = lease.and_then(|l| l.spec.as_ref());
        let holder = spec
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
        if holder.is_none() && last_holder.as_ref().is_some_and(|h| *h != cfg.identity) {
            nudge.notify_one();
        }
        let observed = observe_spec(spec, cfg, Instant::now(), Timestamp::now());
        let reason = match observed {
            Observed::Us(_) => "lease stored with us as holder",
            _ if holder.is_some() => "lease held by another replica",
            _ => "lease not held",
        };
        shared.update(reason, |s| s.observed = observed);
        last_holder = holder;
    };
    loop {
        let deadline = shared.pending_deadline();
        tokio::select! {
            () = stopping(&mut shutdown) => return,
            () = sleep_until(deadline) => shared.update("lease renewal overdue", |_| {}),
            event = events.next() => match event {
                Some(Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease))) => {
                    listed = true;
                    seen(Some(&lease));
                }
                Some(Ok(watcher::Event::Delete(_))) => seen(None),
                Some(Ok(watcher::Event::Init)) => listed = false,
                Some(Ok(watcher::Event::InitDone)) => {
                    if !listed {
                        seen(None);
                    }
                }
                Some(Err(e)) => tracing::warn!(identity = %cfg.identity, lease = %cfg.lease_name, error = %e, "leader election: watching the lease failed; retrying"),
                // The watcher retries forever; an end is treated like the lease vanishing.
                None => {
                    seen(None);
                    stopping(&mut shutdown).await;
                    return;
                }
            },
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Exponential backoff with ±20% jitter, from `first` doubling up to `max`.
#[derive(Debug, Clone)]
struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Self {
        let max = max.max(first);
        Self {
            first,
            max,
            next: first,
        }
    }

    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d.mul_f64(rand::random_range(0.8..=1.2))
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.step())
    }
}

impl WatchBackoff for Backoff {
    fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn cfg() -> LeaderConfig {
        LeaderConfig::new("portcullis-system", "me")
    }

    fn spec(holder: &str, renewed: Timestamp, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        cfg().validate().unwrap();
        let field = |c: LeaderConfig| match c.validate() {
            Err(LeaderError::InvalidConfig { field, .. }) => field,
            Ok(()) => "none",
        };
        assert_eq!(
            field(LeaderConfig {
                identity: String::new(),
                ..cfg()
            }),
            "identity"
        );
        assert_eq!(
            field(LeaderConfig {
                lease_duration: Duration::from_millis(2500),
                ..cfg()
            }),
            "lease_duration"
        );
        // Renewing only when the local deadline has already passed would flap.
        assert_eq!(
            field(LeaderConfig {
                grace: Duration::from_secs(5),
                ..cfg()
            }),
            "grace"
        );
        assert_eq!(
            field(LeaderConfig {
                grace: Duration::from_secs(15),
                ..cfg()
            }),
            "grace"
        );
        assert_eq!(
            field(LeaderConfig {
                retry_period: Duration::ZERO,
                ..cfg()
            }),
            "retry_period"
        );
    }

    #[test]
    fn deadline_is_renewal_plus_duration_minus_margin() {
        let now = Instant::now();
        let wall = Timestamp::now();
        let renewed = wall - k8s_openapi::jiff::SignedDuration::from_secs(4);
        let got = observe_spec(Some(&spec("me", renewed, 15)), &cfg(), now, wall);
        assert_eq!(got, Observed::Us(now + Duration::from_secs(6)));
        // Long past: held by us on paper, but already lapsed.
        let old = wall - k8s_openapi::jiff::SignedDuration::from_secs(60);
        assert_eq!(
            observe_spec(Some(&spec("me", old, 15)), &cfg(), now, wall),
            Observed::Us(now)
        );
    }

    #[test]
    fn future_renewals_and_long_stored_durations_are_capped() {
        let now = Instant::now();
        let wall = Timestamp::now();
        let ahead = wall + k8s_openapi::jiff::SignedDuration::from_secs(3600);
        assert_eq!(
            observe_spec(Some(&spec("me", ahead, 3600)), &cfg(), now, wall),
            Observed::Us(now + Duration::from_secs(10))
        );
    }

    #[test]
    fn other_holders_and_empty_leases_are_not_us() {
        let now = Instant::now();
        let wall = Timestamp::now();
        assert_eq!(
            observe_spec(Some(&spec("other", wall, 15)), &cfg(), now, wall),
            Observed::NotUs
        );
        assert_eq!(
            observe_spec(Some(&LeaseSpec::default()), &cfg(), now, wall),
            Observed::NotUs
        );
        assert_eq!(observe_spec(None, &cfg(), now, wall), Observed::NotUs);
    }

    #[test]
    fn leading_needs_the_manager_the_deadline_and_no_shutdown() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let mut s = State {
            held: true,
            observed: Observed::Us(later),
            stopped: false,
        };
        assert!(s.leads(now));
        assert!(!s.leads(later));
        s.held = false;
        assert!(!s.leads(now));
        s.held = true;
        s.stopped = true;
        assert!(!s.leads(now));
    }

    #[test]
    fn always_leads() {
        let l = Leadership::always();
        assert!(l.is_leader());
        assert!(*l.subscribe().borrow());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let steps: Vec<Duration> = (0..4).map(|_| b.step()).collect();
        assert!(steps[0] >= Duration::from_millis(800) && steps[0] <= Duration::from_millis(1200));
        assert!(steps[3] >= Duration::from_millis(3200) && steps[3] <= Duration::from_millis(4800));
        WatchBackoff::reset(&mut b);
        assert!(b.step() <= Duration::from_millis(1200));
    }
}
