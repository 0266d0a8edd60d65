//! The publisher: the single writer of the live table. It waits for the watchers to report a
//! change, lets a burst of changes settle (debounce), compiles the whole snapshot off the async
//! runtime, swaps the result into the [`LiveTable`] in one store, and hands the reports to the
//! status writer. When a compile fails (a panic caught at the task boundary) the last good
//! table stays live.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::compile::{CompileContext, Report, compile};
use super::watch::Watchers;
use crate::routing::live::LiveTable;

/// Quiet time after a change before compiling: a burst of events (a `kubectl apply -f dir`)
/// compiles once.
pub const DEBOUNCE_QUIET: Duration = Duration::from_millis(5);
/// Longest a compile waits for quiet under a steady stream of changes.
pub const DEBOUNCE_MAX: Duration = Duration::from_millis(100);

/// The reports of one published generation.
#[derive(Debug, Default)]
pub struct Published {
    /// The table generation these reports describe (0 before the first compile).
    pub generation: u64,
    /// When it was compiled, as a Kubernetes timestamp source (seconds since the epoch).
    pub compiled_at: i64,
    /// One per Route and Ingress of our class.
    pub reports: std::collections::BTreeMap<super::compile::ObjectKey, Report>,
}

/// Runs until `shutdown`: compile and publish after every settled burst of changes.
/// `context` is called before each compile (it supplies the current time).
pub async fn run(
    watchers: Arc<Watchers>,
    changed: Arc<Notify>,
    live: LiveTable,
    context: impl Fn() -> CompileContext + Send + Sync + 'static,
    reports: watch::Sender<Arc<Published>>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        ready = watchers.ready() => if !ready { return },
        _ = shutdown.wait_for(|s| *s) => return,
    }
    // The first compile runs without waiting for a change.
    changed.notify_one();
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        settle(&changed).await;
        let snapshot = watchers.snapshot();
        let ctx = context();
        let now = ctx.now;
        let started = Instant::now();
        let compiled = tokio::task::spawn_blocking(move || compile(&snapshot, &ctx)).await;
        match compiled {
            Ok(compiled) => {
                let routes = compiled.table.routes.len();
                let generation = live.publish(compiled.table);
                let problems: usize = compiled.reports.values().map(|r| r.problems.len()).sum();
                tracing::debug!(
                    generation,
                    routes,
                    problems,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "routing table published"
                );
                reports.send_replace(Arc::new(Published {
                    generation,
                    compiled_at: now,
                    reports: compiled.reports,
                }));
            }
            Err(e) => tracing::error!(
                error = %e,
                generation = live.generation(),
                "compiling the routing table failed; the last good table stays live"
            ),
        }
    }
}

/// Returns once no change arrived for [`DEBOUNCE_QUIET`], or after [`DEBOUNCE_MAX`].
async fn settle(changed: &Notify) {
    let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
    loop {
        let quiet = tokio::time::sleep(DEBOUNCE_QUIET);
        tokio::select! {
            _ = quiet => return,
            _ = tokio::time::sleep_until(deadline) => return,
            _ = changed.notified() => {}
        }
    }
}
