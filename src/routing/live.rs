//! The live table: the single `ArcSwap<Table>` the publisher writes and the proxy reads, plus a
//! generation counter that readiness probes and tests can wait on.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::route::Table;

/// The one live [`Table`]. Cheap to clone (shared state).
#[derive(Clone)]
pub struct LiveTable {
    inner: Arc<Inner>,
}

struct Inner {
    table: ArcSwap<Table>,
    generation: watch::Sender<u64>,
}

impl Default for LiveTable {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveTable {
    /// The empty table, generation 0.
    pub fn new() -> Self {
        let (generation, _) = watch::channel(0);
        LiveTable {
            inner: Arc::new(Inner {
                table: ArcSwap::from_pointee(Table::default()),
                generation,
            }),
        }
    }

    /// The current table, held for as long as the caller needs it (one request).
    pub fn load(&self) -> Arc<Table> {
        self.inner.table.load_full()
    }

    /// A cheap guard for sync callbacks (the TLS resolver); do not hold it across `.await`.
    pub fn peek(&self) -> arc_swap::Guard<Arc<Table>> {
        self.inner.table.load()
    }

    /// Publishes `table` as the next generation and returns that generation with the table it
    /// replaced. Only the publisher calls this; it drops the old table off the async runtime
    /// (freeing 10k routes takes tens of milliseconds).
    pub fn publish(&self, mut table: Table) -> (u64, Arc<Table>) {
        let generation = *self.inner.generation.borrow() + 1;
        table.generation = generation;
        let old = self.inner.table.swap(Arc::new(table));
        self.inner.generation.send_replace(generation);
        (generation, old)
    }

    /// The generation of the current table.
    pub fn generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }

    /// A receiver that sees every new generation.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Waits until the live generation is at least `generation`, or `timeout` passes. Returns
    /// the generation reached.
    pub async fn wait_for(&self, generation: u64, timeout: Duration) -> Option<u64> {
        let mut rx = self.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|g| *g >= generation)).await;
        match reached {
            Ok(Ok(g)) => Some(*g),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publish_bumps_the_generation_and_swaps_the_table() {
        let live = LiveTable::new();
        assert_eq!(live.generation(), 0);
        let before = live.load();
        assert_eq!(before.generation, 0);
        let waiter = {
            let live = live.clone();
            tokio::spawn(async move { live.wait_for(2, Duration::from_secs(5)).await })
        };
        assert_eq!(live.publish(Table::default()).0, 1);
        let (generation, old) = live.publish(Table::default());
        assert_eq!((generation, old.generation), (2, 1));
        assert_eq!(waiter.await.unwrap(), Some(2));
        assert_eq!(live.load().generation, 2);
        // A reader holding the old table still sees it whole.
        assert_eq!(before.generation, 0);
        assert_eq!(live.wait_for(3, Duration::from_millis(20)).await, None);
    }
}
