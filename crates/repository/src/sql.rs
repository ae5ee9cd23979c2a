//! Every statement of the store, the one place that prepares, traces and maps the errors of
//! statements ([`On`]), and the row → [`Item`] decoding.
//!
//! A column added to `items` is added to the migration, to [`item_columns!`] and to
//! [`item_from_row`] (and, to be replayed, to `idempotency_keys` and [`RECORD_KEY`]).

use std::future::Future;

use deadpool_postgres::GenericClient;
use items_domain::{Description, Item, ItemId, ItemName};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::DbError;
use crate::instruments::{Instruments, Query};

/// The columns an item is read from, in `SELECT` and `RETURNING` lists.
macro_rules! item_columns {
    () => {
        "id, name, description, created_at, updated_at, version"
    };
}

/// One statement: its text and the span (and duration sample) it is recorded as.
pub(crate) struct Sql {
    pub(crate) text: &'static str,
    query: Query,
}

impl Sql {
    /// The statement's text (`statements.rs` lists them for the release-compatibility check).
    pub(crate) const fn text(&self) -> &'static str {
        self.text
    }
}

pub(crate) const SELECT_ITEM: Sql = Sql {
    text: concat!("SELECT ", item_columns!(), " FROM items WHERE id = $1"),
    query: Query::SELECT_ITEMS,
};

pub(crate) const ITEM_EXISTS: Sql = Sql {
    text: "SELECT 1 FROM items WHERE id = $1",
    query: Query::SELECT_ITEMS,
};

pub(crate) const LIST_ITEMS: Sql = Sql {
    text: concat!(
        "SELECT ",
        item_columns!(),
        " FROM items WHERE id > $1 ORDER BY id LIMIT $2"
    ),
    query: Query::SELECT_ITEMS,
};

pub(crate) const INSERT_ITEM: Sql = Sql {
    text: concat!(
        "INSERT INTO items (name, description) VALUES ($1, $2) RETURNING ",
        item_columns!()
    ),
    query: Query::INSERT_ITEMS,
};

/// `$1` id, `$2` name or null (kept), `$3` whether to set the description, `$4` the description,
/// `$5` the versions `If-Match` allows (null: any).
pub(crate) const UPDATE_ITEM: Sql = Sql {
    text: concat!(
        "UPDATE items SET name = COALESCE($2, name), ",
        "description = CASE WHEN $3 THEN $4 ELSE description END, ",
        "updated_at = now(), version = version + 1 ",
        "WHERE id = $1 AND ($5::bigint[] IS NULL OR version = ANY($5)) ",
        "RETURNING ",
        item_columns!()
    ),
    query: Query::UPDATE_ITEMS,
};

pub(crate) const DELETE_ITEM: Sql = Sql {
    text: "DELETE FROM items WHERE id = $1",
    query: Query::DELETE_ITEMS,
};

/// Claims a key; concurrent claims of the same key wait here until the first commits.
pub(crate) const CLAIM_KEY: Sql = Sql {
    text: "INSERT INTO idempotency_keys (key, request_hash) VALUES ($1, $2) \
           ON CONFLICT (key) DO NOTHING",
    query: Query::INSERT_KEYS,
};

/// The request hash and the first answer's item of a key, the item under `item_columns!` names.
pub(crate) const SELECT_KEY: Sql = Sql {
    text: "SELECT request_hash, item_id AS id, item_name AS name, item_description AS description, \
           item_created_at AS created_at, item_updated_at AS updated_at, item_version AS version \
           FROM idempotency_keys WHERE key = $1",
    query: Query::SELECT_KEYS,
};

/// Records the created item as the key's answer: `$1` key, `$2`… the item's columns.
pub(crate) const RECORD_KEY: Sql = Sql {
    text: "UPDATE idempotency_keys SET item_id = $2, item_name = $3, item_description = $4, \
           item_created_at = $5, item_updated_at = $6, item_version = $7 WHERE key = $1",
    query: Query::UPDATE_KEYS,
};

pub(crate) const PRUNE_KEYS: Sql = Sql {
    text: "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
    query: Query::DELETE_KEYS,
};

/// Statement parameters.
pub(crate) type Params<'p> = [&'p (dyn ToSql + Sync)];

/// A pooled connection or a transaction, with the store's instruments: each statement is
/// prepared (cached per connection), run as a span and its error mapped to [`DbError`] here.
pub(crate) struct On<'a, C> {
    pub(crate) client: &'a C,
    pub(crate) instruments: &'a Instruments,
}

impl<'a, C: GenericClient> On<'a, C> {
    pub(crate) async fn query_opt(
        &self,
        sql: &Sql,
        params: &Params<'_>,
    ) -> Result<Option<Row>, DbError> {
        self.run(sql, |c, s| async move { c.query_opt(&s, params).await })
            .await
    }

    pub(crate) async fn query_one(&self, sql: &Sql, params: &Params<'_>) -> Result<Row, DbError> {
        self.run(sql, |c, s| async move { c.query_one(&s, params).await })
            .await
    }

    pub(crate) async fn query(&self, sql: &Sql, params: &Params<'_>) -> Result<Vec<Row>, DbError> {
        self.run(sql, |c, s| async move { c.query(&s, params).await })
            .await
    }

    pub(crate) async fn execute(&self, sql: &Sql, params: &Params<'_>) -> Result<u64, DbError> {
        self.run(sql, |c, s| async move { c.execute(&s, params).await })
            .await
    }

    /// Prepare and run one statement as a span.
    async fn run<T, F, Fut>(&self, sql: &Sql, exec: F) -> Result<T, DbError>
    where
        F: FnOnce(&'a C, Statement) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let client = self.client;
        traced(self.instruments, &sql.query, async move {
            let statement = client.prepare_cached(sql.text).await?;
            exec(client, statement).await
        })
        .await
    }
}

/// One step that is not a prepared statement (checkout, `BEGIN`, `COMMIT`, ping) as a span, its
/// error mapped to [`DbError`].
pub(crate) async fn traced<T, E: Into<DbError>>(
    instruments: &Instruments,
    query: &Query,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, DbError> {
    instruments.traced(query, step).await.map_err(Into::into)
}

/// An item from a row whose first columns are `item_columns!`, in that order.
pub(crate) fn item_from_row(row: &Row) -> Result<Item, DbError> {
    item_from_columns(row, 0)
}

/// An item from the `item_columns!` of a row, `first` being the index of its `id`. Read by
/// index, not by name: a look-up by name compares the name with every column's (`callgrind`,
/// a page of 50 spent 12% of its instructions looking up columns and decoding timestamps; item
/// decoding 120.7k -> 104.7k instructions per page with the text copied once);
/// debug builds check the names. Text is borrowed from the row and copied once, by the
/// domain's parser.
pub(crate) fn item_from_columns(row: &Row, first: usize) -> Result<Item, DbError> {
    debug_assert!(
        row.columns()[first..first + 6]
            .iter()
            .map(tokio_postgres::Column::name)
            .eq([
                "id",
                "name",
                "description",
                "created_at",
                "updated_at",
                "version"
            ]),
        "{:?}",
        row.columns()
    );
    let description: Option<&str> = row.try_get(first + 2)?;
    Ok(Item {
        id: ItemId::new(row.try_get(first)?)?,
        name: ItemName::parse(row.try_get(first + 1)?)?,
        description: description.map(Description::parse).transpose()?,
        created_at: row.try_get(first + 3)?,
        updated_at: row.try_get(first + 4)?,
        version: row.try_get(first + 5)?,
    })
}
