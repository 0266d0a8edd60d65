//! The publisher: the single writer of the live table. It waits for the watchers to report a
//! change, lets a burst of changes settle (debounce), compiles the whole snapshot off the async
//! runtime with the cache the last compile returned, swaps the result into the [`LiveTable`] in
//! one store, and hands the reports to the status writer. When a compile fails (a panic caught at
//! the task boundary) the last good table stays live and the next compile starts without a cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::compile::{Cache, CompileContext, Compiled, Report, compile_with};
use super::watch::Watchers;
use crate::metrics::Metrics;
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
    pub reports: std::collections::BTreeMap<super::compile::ObjectKey, Arc<Report>>,
}

/// Runs until `shutdown`: compile and publish after every settled burst of changes.
/// `context` is called before each compile (it supplies the current time); each published
/// table is recorded in `metrics`.
pub async fn run(
    watchers: Arc<Watchers>,
    changed: Arc<Notify>,
    live: LiveTable,
    context: impl Fn() -> CompileContext + Send + Sync + 'static,
    reports: watch::Sender<Arc<Published>>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        ready = watchers.ready() => if !ready { return },
        _ = shutdown.wait_for(|s| *s) => return,
    }
    // The first compile runs without waiting for a change.
    changed.notify_one();
    // What each compile hands to the next (per-object results of unchanged objects).
    let mut cache = Cache::default();
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
        let last = std::mem::take(&mut cache);
        let compiled =
            tokio::task::spawn_blocking(move || compile_with(&snapshot, &ctx, last)).await;
        // A failed compile took the cache with it: the next one starts afresh.
        let compiled = compiled.map(|mut c| {
            cache = std::mem::take(&mut c.cache);
            c
        });
        if let Some(generation) = publish(&live, &reports, compiled, now) {
            let elapsed = started.elapsed();
            metrics.table_published(generation, live.peek().routes.len(), elapsed);
            tracing::debug!(
                generation,
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                "routing table published"
            );
        }
    }
}

/// Publishes a compile result: the table goes live and the reports go to the status writer.
/// A failed compile (the compile task panicked) publishes nothing: the last good table stays.
fn publish(
    live: &LiveTable,
    reports: &watch::Sender<Arc<Published>>,
    compiled: Result<Compiled, tokio::task::JoinError>,
    compiled_at: i64,
) -> Option<u64> {
    match compiled {
        Ok(compiled) => {
            let (generation, old) = live.publish(compiled.table);
            // The last reader of the old table may be a request still in flight; whoever holds
            // the last reference frees it. Ours is freed off the runtime.
            tokio::task::spawn_blocking(move || drop(old));
            reports.send_replace(Arc::new(Published {
                generation,
                compiled_at,
                reports: compiled.reports,
            }));
            Some(generation)
        }
        Err(e) => {
            tracing::error!(
                error = %e,
                generation = live.generation(),
                "compiling the routing table failed; the last good table stays live"
            );
            None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_compile_keeps_the_last_good_table() {
        let live = LiveTable::new();
        let (tx, rx) = watch::channel(Arc::new(Published::default()));
        let good = tokio::task::spawn_blocking(Compiled::default).await;
        assert_eq!(publish(&live, &tx, good, 10), Some(1));
        let before = live.load();
        assert_eq!(rx.borrow().generation, 1);

        let failed = tokio::task::spawn_blocking(|| -> Compiled { panic!("compile bug") }).await;
        assert!(failed.is_err());
        assert_eq!(publish(&live, &tx, failed, 20), None);
        assert_eq!(live.generation(), 1);
        assert!(
            Arc::ptr_eq(&before, &live.load()),
            "the same table stays live"
        );
        assert_eq!(
            rx.borrow().compiled_at,
            10,
            "no reports for a failed compile"
        );
    }
}
