//! `PgStore`: the `ItemStore` over PostgreSQL.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Transaction,
};
use items_domain::{
    CreateOutcome, Description, IdempotencyKey, Item, ItemId, ItemName, ItemPatch, ItemStore,
    NewItem, Page, PageRequest, Precondition, StoreError,
};
use sha2::{Digest as _, Sha256};

use crate::instruments::{Instruments, Query};
use crate::sql::{self, On, item_from_columns, item_from_row, traced};
use crate::{Connector, DbError};

/// The PostgreSQL-backed item store. Cheap to clone (the pool is reference-counted).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: Pool,
    backoff: ExponentialBuilder,
    instruments: Instruments,
    reads: Arc<SharedReads>,
}

/// Reads share a pooled connection: concurrent statements on one tokio-postgres client are
/// pipelined (sent without waiting for the previous answer; PostgreSQL answers them in order), so
/// the service and PostgreSQL each handle many statements per wake-up and system call instead of
/// one. A read joins the connection other reads hold now, while fewer than
/// [`READS_PER_CONNECTION`] do; otherwise it checks one out of the pool (and holds it out for
/// the reads that follow). The last read to finish gives it back, so that an idle store holds
/// no connection and a pool with no free connection still answers 503 within its wait timeout.
///
/// Writes never share: an UPDATE waiting on a row lock, or a COMMIT waiting on its WAL flush,
/// would hold up every statement behind it on the connection; and a transaction owns its
/// connection.
#[derive(Debug, Default)]
struct SharedReads {
    current: Mutex<Weak<Object>>,
}

/// Reads pipelined on one connection at most; more open another. High enough that a store's
/// reads share one connection whenever a Cloud Run instance is within its concurrency (80
/// requests, split over its workers' stores), so one PostgreSQL backend serves them: fewer
/// processes contend for the CPUs. Below 64 in flight nothing changes. `cargo xtask bench --rounds 2`,
/// one worker, 200 connections, builds measured in the same session, the worse round (at most
/// 64 / 16 / 256 reads a connection): p99 of a page of 50 84.1 / 207.9 / 15.3 ms at 19.3k /
/// 17.9k / 22.1k req/s; GET one 7.7 / 7.3 / 5.4 ms at 61.6k / 60.8k / 65.3k; POST 27.8 / 27.7 /
/// 21.1 ms. With two workers (`--workers 2`, one round each, 64 / 256): GET p99 2,178 / 8.5 ms,
/// a page 410 / 72 ms.
const READS_PER_CONNECTION: usize = 256;

impl SharedReads {
    /// The connection reads hold now, if it is open and has room for one more.
    fn join(&self) -> Option<Arc<Object>> {
        let current = self.current.lock().ok()?.upgrade()?;
        // The count includes the clone just made.
        (!current.is_closed() && Arc::strong_count(&current) <= READS_PER_CONNECTION)
            .then_some(current)
    }

    /// A connection just checked out becomes the one later reads join.
    fn offer(&self, connection: &Arc<Object>) {
        if let Ok(mut current) = self.current.lock() {
            *current = Arc::downgrade(connection);
        }
    }
}

impl PgStore {
    /// Builds the pool; no connection is opened until the first request. Connections are
    /// opened by `connector` (TLS, the password or IAM token of the moment).
    pub fn new(connector: &Connector) -> Result<Self, DbError> {
        Self::with_max_size(connector, connector.settings().pool.max_size)
    }

    /// [`PgStore::new`] with a pool of `max_size` connections.
    pub(crate) fn with_max_size(connector: &Connector, max_size: usize) -> Result<Self, DbError> {
        let settings = connector.settings();
        let manager = Manager::from_connect(
            connector.config().clone(),
            connector.pool_connect(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let ms = Duration::from_millis;
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Some(ms(settings.pool.wait_timeout_ms)))
            .create_timeout(Some(ms(settings.pool.create_timeout_ms)))
            .recycle_timeout(Some(ms(settings.pool.recycle_timeout_ms)))
            .runtime(Runtime::Tokio1)
            .build()?;
        // A few quick retries: together they stay well inside the pool wait timeout.
        let backoff = ExponentialBuilder::default()
            .with_min_delay(ms(20))
            .with_max_delay(ms(200))
            .with_max_times(3)
            .with_jitter();
        Ok(Self {
            pool,
            backoff,
            instruments: Instruments::from_global(),
            reads: Arc::default(),
        })
    }

    /// Registers the pool gauges (`db.client.connection.count` by `state` idle/used,
    /// `db.client.connection.max`, `db.client.connection.pending_requests`) with the global
    /// meter provider; they read `Pool::status()` at each collection.
    pub fn register_pool_metrics(&self) {
        self.instruments
            .register_pool_gauges(vec![self.pool.clone()]);
    }

    /// Gauges as [`PgStore::register_pool_metrics`], summed over `stores`' pools.
    pub(crate) fn register_pool_metrics_of(stores: &[PgStore]) {
        if let Some(first) = stores.first() {
            let pools = stores.iter().map(|s| s.pool.clone()).collect();
            first.instruments.register_pool_gauges(pools);
        }
    }

    /// Forgets `Idempotency-Key`s older than `ttl`; returns how many were removed.
    pub async fn prune_idempotency_keys(&self, ttl: Duration) -> Result<u64, DbError> {
        let client = self.connection().await?;
        self.on(&client)
            .execute(&sql::PRUNE_KEYS, &[&ttl.as_secs_f64()])
            .await
    }

    /// Closes the pool: waiting and later requests fail fast.
    pub fn close(&self) {
        self.pool.close();
    }

    #[cfg(test)]
    pub(crate) fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// Statements on `client`, prepared, traced and error-mapped by [`On`].
    fn on<'a, C: GenericClient>(&'a self, client: &'a C) -> On<'a, C> {
        On {
            client,
            instruments: &self.instruments,
        }
    }

    /// A connection; set-up failures are retried with backoff, pool timeouts are not.
    async fn connection(&self) -> Result<Object, DbError> {
        (|| async { self.acquire().await })
            .retry(self.backoff)
            .when(DbError::is_transient)
            .await
    }

    /// Runs a read on a shared connection ([`SharedReads`]), retrying it whole (connection
    /// included) on transient errors.
    async fn read<T, F, Fut>(&self, op: F) -> Result<T, DbError>
    where
        F: Fn(Arc<Object>) -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        (|| async {
            let client = self.read_connection().await?;
            op(client).await
        })
        .retry(self.backoff)
        .when(DbError::is_transient)
        .await
    }

    /// One pool checkout, as a span.
    async fn acquire(&self) -> Result<Object, DbError> {
        traced(&self.instruments, &Query::ACQUIRE, self.pool.get()).await
    }

    /// The connection reads share, or a new one from the pool; as a span (the same as a checkout).
    async fn read_connection(&self) -> Result<Arc<Object>, DbError> {
        traced(&self.instruments, &Query::ACQUIRE, async {
            if let Some(shared) = self.reads.join() {
                return Ok(shared);
            }
            let fresh = Arc::new(self.pool.get().await?);
            self.reads.offer(&fresh);
            Ok::<_, DbError>(fresh)
        })
        .await
    }

    /// A create under an `Idempotency-Key`, in one transaction: claim the key, or replay its first
    /// answer; then insert the item and record it as the key's answer.
    async fn create_keyed(
        &self,
        tx: &Transaction<'_>,
        item: &NewItem,
        key: &IdempotencyKey,
    ) -> Result<CreateOutcome, StoreError> {
        let hash = request_hash(item);
        let on = self.on(tx);
        // Concurrent requests with the same key block here until the first commits.
        let claimed = on.execute(&sql::CLAIM_KEY, &[&key.as_str(), &hash]).await?;
        if claimed == 0 {
            let row = on.query_one(&sql::SELECT_KEY, &[&key.as_str()]).await?;
            let stored_hash: &[u8] = row.try_get(0).map_err(DbError::from)?;
            if stored_hash != hash.as_slice() {
                return Err(StoreError::IdempotencyConflict);
            }
            return Ok(CreateOutcome {
                // `request_hash`, then the item's columns.
                item: item_from_columns(&row, 1)?,
                replayed: true,
            });
        }
        let created = insert_item(&on, item).await?;
        on.execute(
            &sql::RECORD_KEY,
            &[
                &key.as_str(),
                &created.id.get(),
                &created.name.as_str(),
                &created.description.as_ref().map(Description::as_str),
                &created.created_at,
                &created.updated_at,
                &created.version,
            ],
        )
        .await?;
        Ok(CreateOutcome {
            item: created,
            replayed: false,
        })
    }
}

/// `INSERT INTO items … RETURNING` on a connection or inside a transaction.
async fn insert_item(on: &On<'_, impl GenericClient>, item: &NewItem) -> Result<Item, DbError> {
    let name = item.name.as_str();
    let description = item.description.as_ref().map(Description::as_str);
    let row = on
        .query_one(&sql::INSERT_ITEM, &[&name, &description])
        .await?;
    item_from_row(&row)
}

/// A stable fingerprint of a create request, to tell a retry from a different request.
fn request_hash(item: &NewItem) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(item.name.as_str().as_bytes());
    match &item.description {
        Some(d) => {
            h.update([1]);
            h.update(d.as_str().as_bytes());
        }
        None => h.update([0]),
    }
    h.finalize().to_vec()
}

impl ItemStore for PgStore {
    async fn get(&self, id: ItemId) -> Result<Item, StoreError> {
        let row = self
            .read(|client| async move {
                self.on(&*client)
                    .query_opt(&sql::SELECT_ITEM, &[&id.get()])
                    .await
            })
            .await?;
        match row {
            Some(row) => Ok(item_from_row(&row)?),
            None => Err(StoreError::NotFound),
        }
    }

    async fn list(&self, page: PageRequest) -> Result<Page, StoreError> {
        let after = page.after.map_or(0, ItemId::get);
        let limit = i64::from(page.size.get()) + 1;
        let rows = self
            .read(|client| async move {
                self.on(&*client)
                    .query(&sql::LIST_ITEMS, &[&after, &limit])
                    .await
            })
            .await?;
        let mut items = rows
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_after = if items.len() > usize::from(page.size.get()) {
            items.truncate(usize::from(page.size.get()));
            items.last().map(|i| i.id)
        } else {
            None
        };
        Ok(Page { items, next_after })
    }

    async fn create(
        &self,
        item: NewItem,
        key: Option<IdempotencyKey>,
    ) -> Result<CreateOutcome, StoreError> {
        let mut client = self.connection().await?;
        let Some(key) = key else {
            // One statement: atomic on its own, no BEGIN/COMMIT round trips.
            let created = insert_item(&self.on(&client), &item).await?;
            return Ok(CreateOutcome {
                item: created,
                replayed: false,
            });
        };
        let tx = traced(&self.instruments, &Query::BEGIN, client.transaction()).await?;
        let outcome = self.create_keyed(&tx, &item, &key).await?;
        traced(&self.instruments, &Query::COMMIT, tx.commit()).await?;
        Ok(outcome)
    }

    async fn update(
        &self,
        id: ItemId,
        patch: ItemPatch,
        precondition: Precondition,
    ) -> Result<Item, StoreError> {
        let versions: Option<Vec<i64>> = match &precondition {
            Precondition::OneOf(tags) => Some(tags.iter().map(|t| t.0).collect()),
            Precondition::None | Precondition::Exists => None,
        };
        let client = self.connection().await?;
        let on = self.on(&client);
        if patch.is_empty() {
            let row = on.query_opt(&sql::SELECT_ITEM, &[&id.get()]).await?;
            let item = item_from_row(&row.ok_or(StoreError::NotFound)?)?;
            if versions.is_some_and(|v| !v.contains(&item.version)) {
                return Err(StoreError::PreconditionFailed);
            }
            return Ok(item);
        }
        let name = patch.name.as_ref().map(ItemName::as_str);
        let set_description = patch.description.is_some();
        let description = patch
            .description
            .as_ref()
            .and_then(|d| d.as_ref().map(Description::as_str));
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&id.get(), &name, &set_description, &description, &versions];
        if let Some(row) = on.query_opt(&sql::UPDATE_ITEM, &params).await? {
            return Ok(item_from_row(&row)?);
        }
        // Nothing updated: tell a missing item from a stale tag.
        match on.query_opt(&sql::ITEM_EXISTS, &[&id.get()]).await? {
            Some(_) => Err(StoreError::PreconditionFailed),
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, id: ItemId) -> Result<(), StoreError> {
        let client = self.connection().await?;
        match self
            .on(&client)
            .execute(&sql::DELETE_ITEM, &[&id.get()])
            .await?
        {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let client = self.acquire().await?;
        traced(
            &self.instruments,
            &Query::PING,
            client.simple_query("SELECT 1"),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use items_domain::{ItemName, ItemStore as _, NewItem};

    use super::*;

    /// Concurrent reads pipeline on one connection and give it back when done. Before reads
    /// shared, the 20 reads below opened the pool's 16 connections.
    #[tokio::test]
    async fn concurrent_reads_share_a_connection_and_give_it_back() {
        let url = items_testkit::fresh_database().await.unwrap();
        let connector = Connector::new(&crate::DatabaseSettings::from_url(&url)).unwrap();
        crate::migrate(&connector).await.unwrap();
        let store = PgStore::new(&connector).unwrap();
        let item = NewItem {
            name: ItemName::parse("shared").unwrap(),
            description: None,
        };
        let id = store.create(item, None).await.unwrap().item.id;
        let reads = (0..20).map(|_| store.get(id));
        for read in futures_util::future::join_all(reads).await {
            assert_eq!(read.unwrap().id, id);
        }
        let status = store.pool_status();
        // The create's connection, taken again by the first read (a second one at most, should
        // that checkout not be ready at once).
        assert!(status.size <= 2, "{status:?}");
        assert_eq!(status.available, status.size, "{status:?}");
    }
}
