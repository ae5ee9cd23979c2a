//! One pool per actix worker.
//!
//! A tokio-postgres connection is a client plus a task that drives its socket, and both belong to
//! the runtime that opened the connection. actix-web runs each worker on a runtime of its own and,
//! at a graceful stop, ends idle workers first. With one pool shared by all workers, a connection
//! that an idle worker had opened died with that worker under a request another, busy, worker
//! was still serving: a 503 ("connection closed") after SIGTERM
//! (`e2e api::shutdown::sigterm_spares_a_connection_that_an_idle_worker_opened`). Driving every
//! connection on the long-lived main runtime instead also fixes it, but costs a cross-thread
//! wake-up per statement: `cargo xtask bench`, GET /items/{id} with one worker, 15.5k req/s
//! against 22.8k without (same session). So each worker gets a pool of its own and uses only the
//! connections it opened; a worker that stops takes only its own connections with it.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Connector, DbError, PgStore};

/// `n` stores, one per worker, each with its own pool; `database.pool.max_size` is split evenly
/// between them (at least one connection each).
#[derive(Debug)]
pub struct WorkerStores {
    stores: Vec<PgStore>,
    handed_out: AtomicUsize,
}

impl WorkerStores {
    /// Builds the pools; no connection is opened until a worker's first request. They all open
    /// connections through `connector` (one password file, one token cache for the process).
    pub fn new(connector: &Connector, workers: usize) -> Result<Self, DbError> {
        let workers = workers.max(1);
        let each = (connector.settings().pool.max_size / workers).max(1);
        let stores = (0..workers)
            .map(|_| PgStore::with_max_size(connector, each))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            stores,
            handed_out: AtomicUsize::new(0),
        })
    }

    /// The store for the worker that asks (call it from the worker's app factory): each call
    /// hands out the next pool, in turn, so a worker started again after a crash reuses one.
    pub fn for_worker(&self) -> PgStore {
        self.stores[self.next_index()].clone()
    }

    fn next_index(&self) -> usize {
        self.handed_out.fetch_add(1, Ordering::Relaxed) % self.stores.len()
    }

    /// A store for work outside the workers (the hourly key pruning).
    pub fn any(&self) -> &PgStore {
        &self.stores[0]
    }

    /// The pool gauges of [`PgStore::register_pool_metrics`], summed over every worker's pool.
    pub fn register_pool_metrics(&self) {
        PgStore::register_pool_metrics_of(&self.stores);
    }

    /// Closes every pool: waiting and later requests fail fast.
    pub fn close(&self) {
        self.stores.iter().for_each(PgStore::close);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_size: usize) -> Connector {
        let mut settings = crate::DatabaseSettings::from_url("postgres://u@127.0.0.1:1/d");
        settings.pool.max_size = max_size;
        Connector::new(&settings).unwrap()
    }

    #[test]
    fn the_pool_size_is_split_between_workers_with_one_connection_at_least() {
        let sizes = |max, workers| {
            let stores = WorkerStores::new(&settings(max), workers).unwrap();
            stores
                .stores
                .iter()
                .map(|s| s.pool_status().max_size)
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(16, 2), [8, 8]);
        assert_eq!(sizes(16, 3), [5, 5, 5]);
        assert_eq!(sizes(1, 2), [1, 1]);
        assert_eq!(sizes(16, 0), [16]);
    }

    #[test]
    fn workers_get_the_pools_in_turn() {
        let stores = WorkerStores::new(&settings(4), 2).unwrap();
        let turns: Vec<_> = (0..5).map(|_| stores.next_index()).collect();
        assert_eq!(turns, [0, 1, 0, 1, 0]);
    }
}
