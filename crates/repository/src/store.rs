use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use items_domain::{
    CreateOutcome, Description, IdempotencyKey, Item, ItemId, ItemName, ItemPatch, ItemStore,
    NewItem, Page, PageRequest, Precondition, StoreError,
};
use sha2::{Digest as _, Sha256};
use tokio_postgres::{NoTls, Row};

use crate::{DatabaseSettings, DbError};

const ITEM_COLUMNS: &str = "id, name, description, created_at, updated_at, version";

/// The PostgreSQL-backed item store. Cheap to clone (the pool is reference-counted).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: Pool,
    backoff: ExponentialBuilder,
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
        Ok(Self { pool, backoff })
    }

    /// The pool, for metrics (size, idle, waiting) and shutdown.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Closes the pool: waiting and later requests fail fast.
    pub fn close(&self) {
        self.pool.close();
    }

    /// A connection; set-up failures are retried with backoff, pool timeouts are not.
    async fn connection(&self) -> Result<Object, DbError> {
        (|| async { self.pool.get().await.map_err(DbError::from) })
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
            let client = self.pool.get().await?;
            op(client).await
        })
        .retry(self.backoff)
        .when(DbError::is_transient)
        .await
    }
}

fn item_from_row(row: &Row) -> Result<Item, DbError> {
    let description: Option<String> = row.try_get(2)?;
    Ok(Item {
        id: ItemId::new(row.try_get(0)?)?,
        name: ItemName::parse(row.try_get(1)?)?,
        description: description.as_deref().map(Description::parse).transpose()?,
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
        version: row.try_get(5)?,
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
                let stmt = client
                    .prepare_cached(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1"))
                    .await?;
                Ok(client.query_opt(&stmt, &[&id.get()]).await?)
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
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {ITEM_COLUMNS} FROM items WHERE id > $1 ORDER BY id LIMIT $2"
                    ))
                    .await?;
                Ok(client.query(&stmt, &[&after, &limit]).await?)
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
        let tx = client.transaction().await.map_err(DbError::from)?;
        let name = item.name.as_str();
        let description = item.description.as_ref().map(Description::as_str);

        if let Some(key) = &key {
            let hash = request_hash(&item);
            // Concurrent requests with the same key block here until the first commits.
            let claim = tx
                .prepare_cached(
                    "INSERT INTO idempotency_keys (key, request_hash) VALUES ($1, $2) \
                     ON CONFLICT (key) DO NOTHING",
                )
                .await
                .map_err(DbError::from)?;
            let claimed = tx
                .execute(&claim, &[&key.as_str(), &hash])
                .await
                .map_err(DbError::from)?;
            if claimed == 0 {
                let stmt = tx
                    .prepare_cached(
                        "SELECT request_hash, item_id, item_name, item_description, \
                         item_created_at, item_updated_at, item_version \
                         FROM idempotency_keys WHERE key = $1",
                    )
                    .await
                    .map_err(DbError::from)?;
                let row = tx
                    .query_one(&stmt, &[&key.as_str()])
                    .await
                    .map_err(DbError::from)?;
                let stored_hash: Vec<u8> = row.try_get(0).map_err(DbError::from)?;
                if stored_hash != hash {
                    return Err(StoreError::IdempotencyConflict);
                }
                let replay = Item {
                    id: ItemId::new(row.try_get(1).map_err(DbError::from)?)
                        .map_err(DbError::from)?,
                    name: ItemName::parse(row.try_get(2).map_err(DbError::from)?)
                        .map_err(DbError::from)?,
                    description: row
                        .try_get::<_, Option<&str>>(3)
                        .map_err(DbError::from)?
                        .map(Description::parse)
                        .transpose()
                        .map_err(DbError::from)?,
                    created_at: row.try_get(4).map_err(DbError::from)?,
                    updated_at: row.try_get(5).map_err(DbError::from)?,
                    version: row.try_get(6).map_err(DbError::from)?,
                };
                return Ok(CreateOutcome {
                    item: replay,
                    replayed: true,
                });
            }
        }

        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO items (name, description) VALUES ($1, $2) RETURNING {ITEM_COLUMNS}"
            ))
            .await
            .map_err(DbError::from)?;
        let row = tx
            .query_one(&insert, &[&name, &description])
            .await
            .map_err(DbError::from)?;
        let created = item_from_row(&row)?;

        if let Some(key) = &key {
            let record = tx
                .prepare_cached(
                    "UPDATE idempotency_keys SET item_id = $2, item_name = $3, \
                     item_description = $4, item_created_at = $5, item_updated_at = $6, \
                     item_version = $7 WHERE key = $1",
                )
                .await
                .map_err(DbError::from)?;
            tx.execute(
                &record,
                &[
                    &key.as_str(),
                    &created.id.get(),
                    &name,
                    &description,
                    &created.created_at,
                    &created.updated_at,
                    &created.version,
                ],
            )
            .await
            .map_err(DbError::from)?;
        }
        tx.commit().await.map_err(DbError::from)?;
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
            let stmt = client
                .prepare_cached(&format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1"))
                .await
                .map_err(DbError::from)?;
            let row = client
                .query_opt(&stmt, &[&id.get()])
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
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE items SET name = COALESCE($2, name), \
                 description = CASE WHEN $3 THEN $4 ELSE description END, \
                 updated_at = now(), version = version + 1 \
                 WHERE id = $1 AND ($5::bigint[] IS NULL OR version = ANY($5)) \
                 RETURNING {ITEM_COLUMNS}"
            ))
            .await
            .map_err(DbError::from)?;
        let row = client
            .query_opt(
                &stmt,
                &[&id.get(), &name, &set_description, &description, &versions],
            )
            .await
            .map_err(DbError::from)?;
        if let Some(row) = row {
            return Ok(item_from_row(&row)?);
        }
        // Nothing updated: tell a missing item from a stale tag.
        let exists = client
            .prepare_cached("SELECT 1 FROM items WHERE id = $1")
            .await
            .map_err(DbError::from)?;
        match client
            .query_opt(&exists, &[&id.get()])
            .await
            .map_err(DbError::from)?
        {
            Some(_) => Err(StoreError::PreconditionFailed),
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, id: ItemId) -> Result<(), StoreError> {
        let client = self.connection().await?;
        let stmt = client
            .prepare_cached("DELETE FROM items WHERE id = $1")
            .await
            .map_err(DbError::from)?;
        match client
            .execute(&stmt, &[&id.get()])
            .await
            .map_err(DbError::from)?
        {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(DbError::from)?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(DbError::from)?;
        Ok(())
    }
}
