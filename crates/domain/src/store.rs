//! The storage port (`ItemStore`) and its values: page requests and pages, create outcomes,
//! preconditions.

use std::future::Future;

use crate::{ETag, IdempotencyKey, Item, ItemId, ItemPatch, NewItem, PageSize, StoreError};

/// One page of a keyset-paginated listing ordered by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Return items with an id greater than this one.
    pub after: Option<ItemId>,
    pub size: PageSize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Item>,
    /// Where the next page starts; `None` on the last page.
    pub next_after: Option<ItemId>,
}

/// The result of a create: a fresh item, or the replay of an earlier create with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOutcome {
    pub item: Item,
    pub replayed: bool,
}

/// A conditional-request precondition (`If-Match`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Precondition {
    #[default]
    None,
    /// `If-Match: *`: the item must exist.
    Exists,
    /// The item's current tag must be one of these.
    OneOf(Vec<ETag>),
}

/// The storage port. `repository` implements it on PostgreSQL; `http` uses it.
pub trait ItemStore: Send + Sync + 'static {
    fn get(&self, id: ItemId) -> impl Future<Output = Result<Item, StoreError>> + Send;

    fn list(&self, page: PageRequest) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// Creates an item. With a key, a repeat of the same request replays the first outcome and a
    /// different request under the same key fails with [`StoreError::IdempotencyConflict`].
    fn create(
        &self,
        item: NewItem,
        key: Option<IdempotencyKey>,
    ) -> impl Future<Output = Result<CreateOutcome, StoreError>> + Send;

    fn update(
        &self,
        id: ItemId,
        patch: ItemPatch,
        precondition: Precondition,
    ) -> impl Future<Output = Result<Item, StoreError>> + Send;

    fn delete(&self, id: ItemId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Readiness: succeeds when the store can answer a query now.
    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
