use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use items_domain::{
    CreateOutcome, Description, IdempotencyKey, Item, ItemId, ItemName, ItemPatch, ItemStore,
    NewItem, Page, PageRequest, Precondition, StoreError,
};
use sha2::{Digest as _, Sha256};
use tokio_postgres::{NoTls, Row};

use crate::{DatabaseSettings, DbError};

use self::instruments::{Instruments, Query};

const ITEM_COLUMNS: &str = "id, name, description, created_at, updated_at, version";

/// The PostgreSQL-backed item store. Cheap to clone (the pool is reference-counted).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: Pool,
    backoff: ExponentialBuilder,
    instruments: Instruments,
}

impl PgStore {
    /// Builds the pool; no connection is opened until the first request.
    pub fn new(settings: &DatabaseSettings) -> Result<Self, DbError> {
        let pg_config = settings.pg_config()?;
        let manager = Manager::from_config(
            pg_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let ms = Duration::from_millis;
        let pool = Pool::builder(manager)
            .max_size(settings.pool.max_size)
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
        })
    }

    /// Registers the pool gauges (`db.client.connection.count` by `state` idle/used,
    /// `db.client.connection.max`, `db.client.connection.pending_requests`) with the global
    /// meter provider; they read `Pool::status()` at each collection.
    pub fn register_pool_metrics(&self) {
        self.instruments.register_pool_gauges(&self.pool);
    }

    /// The pool, for metrics (size, idle, waiting) and shutdown.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Forgets `Idempotency-Key`s older than `ttl`; returns how many were removed.
    pub async fn prune_idempotency_keys(&self, ttl: Duration) -> Result<u64, DbError> {
        let client = self.connection().await?;
        let stmt = client
            .prepare_cached(
                "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
            )
            .await?;
        Ok(client.execute(&stmt, &[&ttl.as_secs_f64()]).await?)
    }

    /// Closes the pool: waiting and later requests fail fast.
    pub fn close(&self) {
        self.pool.close();
    }

    /// A connection; set-up failures are retried with backoff, pool timeouts are not.
    async fn connection(&self) -> Result<Object, DbError> {
        (|| async { self.acquire().await })
            .retry(self.backoff)
            .when(DbError::is_transient)
            .await
    }

    /// Runs a read, retrying it whole (connection included) on transient errors.
    async fn read<T, F, Fut>(&self, op: F) -> Result<T, DbError>
    where
        F: Fn(Object) -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        (|| async {
            let client = self.acquire().await?;
            op(client).await
        })
        .retry(self.backoff)
        .when(DbError::is_transient)
        .await
    }

    /// `INSERT INTO items … RETURNING` on a connection or inside a transaction.
    async fn insert_item(
        &self,
        client: &impl GenericClient,
        item: &NewItem,
    ) -> Result<Item, DbError> {
        let name = item.name.as_str();
        let description = item.description.as_ref().map(Description::as_str);
        let row = self
            .traced(&Query::INSERT_ITEMS, async {
                let insert = client
                    .prepare_cached(&format!(
                        "INSERT INTO items (name, description) VALUES ($1, $2) \
                         RETURNING {ITEM_COLUMNS}"
                    ))
                    .await?;
                client.query_one(&insert, &[&name, &description]).await
            })
            .await?;
        item_from_row(&row)
    }

    /// One pool checkout, as a span.
    async fn acquire(&self) -> Result<Object, DbError> {
        self.instruments
            .traced(&Query::ACQUIRE, async {
                self.pool.get().await.map_err(DbError::from)
            })
            .await
    }

    /// One statement (prepare and run), as a span and a `db.client.operation.duration` sample.
    async fn traced<T, E>(
        &self,
        query: &Query,
        statement: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.instruments.traced(query, statement).await
    }
}

fn item_from_row(row: &Row) -> Result<Item, DbError> {
    item_from_columns(row, 0)
}

/// An item from `ITEM_COLUMNS`-ordered columns starting at `first`.
fn item_from_columns(row: &Row, first: usize) -> Result<Item, DbError> {
    let description: Option<String> = row.try_get(first + 2)?;
    Ok(Item {
        id: ItemId::new(row.try_get(first)?)?,
        name: ItemName::parse(row.try_get(first + 1)?)?,
        description: description.as_deref().map(Description::parse).transpose()?,
        created_at: row.try_get(first + 3)?,
        updated_at: row.try_get(first + 4)?,
        version: row.try_get(first + 5)?,
    })
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
                self.traced(&Query::SELECT_ITEMS, async {
                    let stmt = client
                        .prepare_cached(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1"))
                        .await?;
                    Ok(client.query_opt(&stmt, &[&id.get()]).await?)
                })
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
                self.traced(&Query::SELECT_ITEMS, async {
                    let stmt = client
                        .prepare_cached(&format!(
                            "SELECT {ITEM_COLUMNS} FROM items WHERE id > $1 ORDER BY id LIMIT $2"
                        ))
                        .await?;
                    Ok(client.query(&stmt, &[&after, &limit]).await?)
                })
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
            let created = self.insert_item(&client, &item).await?;
            return Ok(CreateOutcome {
                item: created,
                replayed: false,
            });
        };
        let tx = self
            .traced(&Query::BEGIN, client.transaction())
            .await
            .map_err(DbError::from)?;
        let hash = request_hash(&item);
        // Concurrent requests with the same key block here until the first commits.
        let claimed = self
            .traced(&Query::INSERT_KEYS, async {
                let claim = tx
                    .prepare_cached(
                        "INSERT INTO idempotency_keys (key, request_hash) VALUES ($1, $2) \
                         ON CONFLICT (key) DO NOTHING",
                    )
                    .await?;
                tx.execute(&claim, &[&key.as_str(), &hash]).await
            })
            .await
            .map_err(DbError::from)?;
        if claimed == 0 {
            let row = self
                .traced(&Query::SELECT_KEYS, async {
                    let stmt = tx
                        .prepare_cached(
                            "SELECT request_hash, item_id, item_name, item_description, \
                             item_created_at, item_updated_at, item_version \
                             FROM idempotency_keys WHERE key = $1",
                        )
                        .await?;
                    tx.query_one(&stmt, &[&key.as_str()]).await
                })
                .await
                .map_err(DbError::from)?;
            let stored_hash: Vec<u8> = row.try_get(0).map_err(DbError::from)?;
            if stored_hash != hash {
                return Err(StoreError::IdempotencyConflict);
            }
            // Columns 1.. hold the first response's item, in ITEM_COLUMNS order.
            return Ok(CreateOutcome {
                item: item_from_columns(&row, 1)?,
                replayed: true,
            });
        }

        let created = self.insert_item(&tx, &item).await?;
        self.traced(&Query::UPDATE_KEYS, async {
            let record = tx
                .prepare_cached(
                    "UPDATE idempotency_keys SET item_id = $2, item_name = $3, \
                     item_description = $4, item_created_at = $5, item_updated_at = $6, \
                     item_version = $7 WHERE key = $1",
                )
                .await?;
            tx.execute(
                &record,
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
            .await
        })
        .await
        .map_err(DbError::from)?;
        self.traced(&Query::COMMIT, tx.commit())
            .await
            .map_err(DbError::from)?;
        Ok(CreateOutcome {
            item: created,
            replayed: false,
        })
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
        if patch.is_empty() {
            let row = self
                .traced(&Query::SELECT_ITEMS, async {
                    let stmt = client
                        .prepare_cached(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1"))
                        .await?;
                    client.query_opt(&stmt, &[&id.get()]).await
                })
                .await
                .map_err(DbError::from)?
                .ok_or(StoreError::NotFound)?;
            let item = item_from_row(&row)?;
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
        let row = self
            .traced(&Query::UPDATE_ITEMS, async {
                let stmt = client
                    .prepare_cached(&format!(
                        "UPDATE items SET name = COALESCE($2, name), \
                         description = CASE WHEN $3 THEN $4 ELSE description END, \
                         updated_at = now(), version = version + 1 \
                         WHERE id = $1 AND ($5::bigint[] IS NULL OR version = ANY($5)) \
                         RETURNING {ITEM_COLUMNS}"
                    ))
                    .await?;
                client
                    .query_opt(
                        &stmt,
                        &[&id.get(), &name, &set_description, &description, &versions],
                    )
                    .await
            })
            .await
            .map_err(DbError::from)?;
        if let Some(row) = row {
            return Ok(item_from_row(&row)?);
        }
        // Nothing updated: tell a missing item from a stale tag.
        let exists = self
            .traced(&Query::SELECT_ITEMS, async {
                let exists = client
                    .prepare_cached("SELECT 1 FROM items WHERE id = $1")
                    .await?;
                client.query_opt(&exists, &[&id.get()]).await
            })
            .await
            .map_err(DbError::from)?;
        match exists {
            Some(_) => Err(StoreError::PreconditionFailed),
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, id: ItemId) -> Result<(), StoreError> {
        let client = self.connection().await?;
        let deleted = self
            .traced(&Query::DELETE_ITEMS, async {
                let stmt = client
                    .prepare_cached("DELETE FROM items WHERE id = $1")
                    .await?;
                client.execute(&stmt, &[&id.get()]).await
            })
            .await
            .map_err(DbError::from)?;
        match deleted {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let client = self.acquire().await?;
        self.traced(&Query::PING, client.simple_query("SELECT 1"))
            .await
            .map_err(DbError::from)?;
        Ok(())
    }
}

/// Spans and metrics of the store, following the database client semantic conventions:
/// `db.system.name`, `db.operation.name`, `db.collection.name`; never statement parameters.
mod instruments {
    use std::sync::Arc;
    use std::time::Instant;

    use deadpool_postgres::Pool;
    use opentelemetry::global::BoxedTracer;
    use opentelemetry::metrics::{Histogram, ObservableGauge};
    use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
    use opentelemetry::{Context, KeyValue};

    /// One kind of statement: the span name and its attributes.
    pub(super) struct Query {
        name: &'static str,
        operation: Option<&'static str>,
        table: Option<&'static str>,
    }

    impl Query {
        const fn new(name: &'static str, operation: &'static str, table: &'static str) -> Self {
            Self {
                name,
                operation: Some(operation),
                table: Some(table),
            }
        }
        pub(super) const ACQUIRE: Query = Query {
            name: "acquire connection",
            operation: None,
            table: None,
        };
        pub(super) const PING: Query = Query {
            name: "SELECT",
            operation: Some("SELECT"),
            table: None,
        };
        pub(super) const BEGIN: Query = Query {
            name: "BEGIN",
            operation: Some("BEGIN"),
            table: None,
        };
        pub(super) const COMMIT: Query = Query {
            name: "COMMIT",
            operation: Some("COMMIT"),
            table: None,
        };
        pub(super) const SELECT_ITEMS: Query = Query::new("SELECT items", "SELECT", "items");
        pub(super) const INSERT_ITEMS: Query = Query::new("INSERT items", "INSERT", "items");
        pub(super) const UPDATE_ITEMS: Query = Query::new("UPDATE items", "UPDATE", "items");
        pub(super) const DELETE_ITEMS: Query = Query::new("DELETE items", "DELETE", "items");
        pub(super) const INSERT_KEYS: Query =
            Query::new("INSERT idempotency_keys", "INSERT", "idempotency_keys");
        pub(super) const SELECT_KEYS: Query =
            Query::new("SELECT idempotency_keys", "SELECT", "idempotency_keys");
        pub(super) const UPDATE_KEYS: Query =
            Query::new("UPDATE idempotency_keys", "UPDATE", "idempotency_keys");

        fn attributes(&self) -> Vec<KeyValue> {
            let mut attributes = vec![KeyValue::new("db.system.name", "postgresql")];
            if let Some(operation) = self.operation {
                attributes.push(KeyValue::new("db.operation.name", operation));
            }
            if let Some(table) = self.table {
                attributes.push(KeyValue::new("db.collection.name", table));
            }
            attributes
        }
    }

    #[derive(Clone)]
    pub(super) struct Instruments(Arc<Inner>);

    struct Inner {
        tracer: BoxedTracer,
        query_duration: Histogram<f64>,
        gauges: std::sync::Mutex<Vec<ObservableGauge<u64>>>,
    }

    impl std::fmt::Debug for Instruments {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Instruments")
        }
    }

    impl Instruments {
        /// Instruments of the global tracer and meter providers (set by telemetry start-up).
        pub(super) fn from_global() -> Self {
            let meter = opentelemetry::global::meter("items-repository");
            let query_duration = meter
                .f64_histogram("db.client.operation.duration")
                .with_unit("s")
                .with_description("Duration of database client operations.")
                .with_boundaries(vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
                ])
                .build();
            Self(Arc::new(Inner {
                tracer: opentelemetry::global::tracer("items-repository"),
                query_duration,
                gauges: std::sync::Mutex::new(Vec::new()),
            }))
        }

        pub(super) async fn traced<T, E>(
            &self,
            query: &Query,
            statement: impl Future<Output = Result<T, E>>,
        ) -> Result<T, E> {
            let tracer = &self.0.tracer;
            let parent = Context::current();
            let span = tracer
                .span_builder(query.name)
                .with_kind(SpanKind::Client)
                .start_with_context(tracer, &parent);
            let cx = parent.with_span(span);
            let started = Instant::now();
            let result = statement.await;
            let elapsed = started.elapsed().as_secs_f64();
            let span = cx.span();
            let recording = span.is_recording();
            if recording || query.operation.is_some() {
                let mut attributes = query.attributes();
                if result.is_err() {
                    attributes.push(KeyValue::new("error.type", "db_error"));
                }
                if query.operation.is_some() {
                    self.0.query_duration.record(elapsed, &attributes);
                }
                if recording {
                    span.set_attributes(attributes);
                    if result.is_err() {
                        span.set_status(Status::error("database error"));
                    }
                }
            }
            span.end();
            result
        }

        pub(super) fn register_pool_gauges(&self, pool: &Pool) {
            let meter = opentelemetry::global::meter("items-repository");
            let name = || KeyValue::new("db.client.connection.pool.name", "items");
            let p = pool.clone();
            let count = meter
                .u64_observable_gauge("db.client.connection.count")
                .with_unit("{connection}")
                .with_description("Connections in the pool, by state (idle, used).")
                .with_callback(move |o| {
                    let s = p.status();
                    o.observe(
                        s.available as u64,
                        &[name(), KeyValue::new("db.client.connection.state", "idle")],
                    );
                    o.observe(
                        s.size.saturating_sub(s.available) as u64,
                        &[name(), KeyValue::new("db.client.connection.state", "used")],
                    );
                })
                .build();
            let p = pool.clone();
            let max = meter
                .u64_observable_gauge("db.client.connection.max")
                .with_unit("{connection}")
                .with_description("The pool's maximum size.")
                .with_callback(move |o| o.observe(p.status().max_size as u64, &[name()]))
                .build();
            let p = pool.clone();
            let waiting = meter
                .u64_observable_gauge("db.client.connection.pending_requests")
                .with_unit("{request}")
                .with_description("Requests waiting for a connection.")
                .with_callback(move |o| o.observe(p.status().waiting as u64, &[name()]))
                .build();
            if let Ok(mut gauges) = self.0.gauges.lock() {
                gauges.extend([count, max, waiting]);
            }
        }
    }
}
