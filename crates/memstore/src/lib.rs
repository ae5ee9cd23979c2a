//! Test support, never linked into the service: [`MemStore`], an in-memory
//! [`ItemStore`](items_domain::ItemStore) with the semantics of `items_repository::PgStore`, and
//! [`contract`], the one suite of store behaviour that both implementations pass.
//!
//! `items-http`'s handler tests run over `MemStore`, so they need no database. The contract suite
//! keeps the two stores honest: this crate's unit tests run it against `MemStore`,
//! `crates/repository/tests/store.rs` against `PgStore` with a fresh database per test.

pub mod contract;
mod store;

pub use store::MemStore;

#[cfg(test)]
mod tests {
    use super::MemStore;

    mod contract {
        async fn fresh() -> super::MemStore {
            super::MemStore::new()
        }

        crate::store_contract_tests!(fresh);
    }

    #[tokio::test]
    async fn a_down_store_is_unavailable_until_up_again() {
        use items_domain::{ItemId, ItemStore as _, StoreError};
        let store = MemStore::new();
        store.set_down(true);
        assert!(matches!(
            store.ready().await,
            Err(StoreError::Unavailable(_))
        ));
        let id = ItemId::new(1).expect("id");
        assert!(matches!(
            store.get(id).await,
            Err(StoreError::Unavailable(_))
        ));
        store.set_down(false);
        assert!(store.ready().await.is_ok());
    }
}
