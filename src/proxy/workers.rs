//! The proxy's worker threads: each drives its own tokio current-thread runtime, and every
//! connection of the http and https listeners runs on one of them from its first byte to its
//! last, with the upstream connections it uses (one pool per worker, see
//! [`super::upstream::Upstreams`]).
//!
//! Started by `app` next to the listeners ([`Workers::start`]); [`super::listener::serve`]
//! hands each accepted connection to the next worker in turn ([`Workers::next`]). Nothing moves
//! between workers afterwards, so a request and its upstream connection stay on one thread,
//! scheduled by tokio's current-thread scheduler without the work-stealing one's cross-thread
//! bookkeeping (12–31% less CPU per request in docs/benchmarks.md, "Fourth pass"). The control
//! plane (controller, embedded API, admin) stays on the process's main runtime.
//!
//! A worker stops once every [`Workers`] clone is gone (the listeners have drained or were
//! dropped): it drops what is left on its runtime (idle pooled connections, WebSocket tunnels)
//! and its thread ends; [`Stopped`] resolves when all have. A panic in a connection's task ends
//! that task only.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How long a stopping worker waits for its blocking tasks (name resolution) to end.
const BLOCKING_WAIT: Duration = Duration::from_secs(1);

thread_local! {
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker running on this thread (`0..count`), `None` off the workers.
pub fn current() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// How many workers to run: `TOKIO_WORKER_THREADS` when it is a positive number (the variable
/// that sizes a tokio runtime, so benchmarks and deployments set it as they would for nginx's
/// `worker_processes`), else the parallelism available to the process.
pub fn count() -> usize {
    count_from(std::env::var("TOKIO_WORKER_THREADS").ok().as_deref())
}

fn count_from(setting: Option<&str>) -> usize {
    setting
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
}

/// The running workers; clones share them. The workers stop when the last clone is dropped.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

struct Inner {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Dropping these tells each worker to stop.
    _stop: Vec<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("count", &self.inner.handles.len())
            .finish_non_exhaustive()
    }
}

/// Resolves once every worker thread has ended.
#[derive(Debug)]
pub struct Stopped {
    done: Vec<oneshot::Receiver<()>>,
}

impl Stopped {
    /// Waits for every worker to stop (after the last [`Workers`] clone is dropped).
    pub async fn wait(self) {
        for done in self.done {
            let _ = done.await;
        }
    }
}

impl Workers {
    /// Starts `count` workers (at least one), threads `proxy-worker-<i>`, logging to the
    /// `tracing` subscriber current here. Fails when a thread or a runtime cannot be created;
    /// the workers started so far then stop.
    pub fn start(count: usize) -> std::io::Result<(Self, Stopped)> {
        let count = count.max(1);
        let mut handles = Vec::with_capacity(count);
        let mut stop = Vec::with_capacity(count);
        let mut done = Vec::with_capacity(count);
        // Workers log where their starter logs (the global subscriber, or a test's own).
        let log = tracing::dispatcher::get_default(Clone::clone);
        for index in 0..count {
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
            let log = log.clone();
            std::thread::Builder::new()
                .name(format!("proxy-worker-{index}"))
                .spawn(move || {
                    let _log = tracing::dispatcher::set_default(&log);
                    run(index, &ready_tx, stop_rx, done_tx);
                })?;
            let handle = ready_rx.recv().map_err(|_| {
                std::io::Error::other("a proxy worker ended before its runtime started")
            })??;
            handles.push(handle);
            stop.push(stop_tx);
            done.push(done_rx);
        }
        let workers = Self {
            inner: Arc::new(Inner {
                handles,
                next: AtomicUsize::new(0),
                _stop: stop,
            }),
        };
        Ok((workers, Stopped { done }))
    }

    /// How many workers run.
    pub fn count(&self) -> usize {
        self.inner.handles.len()
    }

    /// The runtime of the next worker, round-robin.
    pub fn next(&self) -> &Handle {
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        &self.inner.handles[n % self.inner.handles.len()]
    }
}

/// One worker thread: its runtime serves what is spawned on it until told to stop.
fn run(
    index: usize,
    ready: &std::sync::mpsc::SyncSender<std::io::Result<Handle>>,
    stop: oneshot::Receiver<()>,
    done: oneshot::Sender<()>,
) {
    INDEX.with(|i| i.set(Some(index)));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(format!("proxy-blocking-{index}"))
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let _ = ready.send(Ok(runtime.handle().clone()));
    // Spawned tasks run while this waits; a panicking task is caught by tokio and ends alone.
    runtime.block_on(async {
        let _ = stop.await;
    });
    runtime.shutdown_timeout(BLOCKING_WAIT);
    drop(done);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_round_robin_and_stay_on_their_worker() {
        let (workers, stopped) = Workers::start(2).unwrap();
        assert_eq!(workers.count(), 2);
        assert_eq!(current(), None);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let task = workers.next().spawn(async {
                let before = (current(), std::thread::current().id());
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
                let after = (current(), std::thread::current().id());
                (before, after)
            });
            let (before, after) = task.await.unwrap();
            assert_eq!(before, after);
            seen.push(before.0);
        }
        assert_eq!(seen, [Some(0), Some(1), Some(0), Some(1)]);
        drop(workers);
        tokio::time::timeout(Duration::from_secs(5), stopped.wait())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_panicking_task_leaves_its_worker_running() {
        let (workers, stopped) = Workers::start(1).unwrap();
        let panicked = workers
            .next()
            .spawn(async { panic!("a connection task panics") });
        assert!(panicked.await.unwrap_err().is_panic());
        let after = workers.next().spawn(async { current() }).await.unwrap();
        assert_eq!(after, Some(0));
        drop(workers);
        tokio::time::timeout(Duration::from_secs(5), stopped.wait())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn stopping_drops_what_is_left_and_ends_the_threads() {
        let (workers, stopped) = Workers::start(2).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        // A task that never ends on its own, like an open tunnel: the sender is dropped with it.
        workers.next().spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        let clone = workers.clone();
        drop(workers);
        // A clone keeps the workers running.
        clone.next().spawn(async {}).await.unwrap();
        drop(clone);
        tokio::time::timeout(Duration::from_secs(5), stopped.wait())
            .await
            .unwrap();
        assert!(rx.await.is_err());
    }

    #[test]
    fn the_count_is_the_setting_else_the_parallelism() {
        let parallelism = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(count_from(Some("3")), 3);
        assert_eq!(count_from(Some(" 1 ")), 1);
        assert_eq!(count_from(Some("0")), parallelism);
        assert_eq!(count_from(Some("many")), parallelism);
        assert_eq!(count_from(None), parallelism);
    }
}
