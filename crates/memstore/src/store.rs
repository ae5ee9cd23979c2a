//! The in-memory store.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use items_domain::{
    CreateOutcome, IdempotencyKey, Item, ItemId, ItemPatch, ItemStore, NewItem, Page, PageRequest,
    Precondition, StoreError,
};
use time::OffsetDateTime;

/// An [`ItemStore`] in memory, with `PgStore`'s semantics: ids from 1, never reused; version 1 on
/// create, +1 on every change (an empty patch changes nothing); `If-Match` preconditions; keyset
/// pages ordered by id; an `Idempotency-Key` remembers the request and the first answer, which a
/// repeat replays even after the item changed or was deleted. Every operation runs under one
/// lock, so concurrent creates with one key leave one item. Cheap to clone (shared state).
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct State {
    last_id: i64,
    items: BTreeMap<ItemId, Item>,
    /// Key → the request that claimed it and the item it created.
    keys: HashMap<IdempotencyKey, (NewItem, Item)>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// While down, every operation fails with [`StoreError::Unavailable`] (the database
    /// unreachable, the pool exhausted), as a 503 test needs.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the in-memory store is down".into(),
            ));
        }
        Ok(self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Now, at PostgreSQL's `timestamptz` precision (microseconds).
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

impl State {
    fn insert(&mut self, new: NewItem) -> Result<Item, StoreError> {
        self.last_id += 1;
        let id = ItemId::new(self.last_id).map_err(|e| StoreError::Other(Box::new(e)))?;
        let at = now();
        let item = Item {
            id,
            name: new.name,
            description: new.description,
            created_at: at,
            updated_at: at,
            version: 1,
        };
        self.items.insert(id, item.clone());
        Ok(item)
    }
}

impl ItemStore for MemStore {
    async fn get(&self, id: ItemId) -> Result<Item, StoreError> {
        self.state()?
            .items
            .get(&id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn list(&self, page: PageRequest) -> Result<Page, StoreError> {
        let state = self.state()?;
        let after = page.after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut rest = state
            .items
            .range((after, Bound::Unbounded))
            .map(|(_, item)| item);
        let items: Vec<Item> = rest
            .by_ref()
            .take(usize::from(page.size.get()))
            .cloned()
            .collect();
        // Keyset: a next page exists when an item follows the last one of this page.
        let next_after = rest.next().and(items.last().map(|i| i.id));
        Ok(Page { items, next_after })
    }

    async fn create(
        &self,
        item: NewItem,
        key: Option<IdempotencyKey>,
    ) -> Result<CreateOutcome, StoreError> {
        let mut state = self.state()?;
        if let Some((request, first)) = key.as_ref().and_then(|k| state.keys.get(k)) {
            if *request != item {
                return Err(StoreError::IdempotencyConflict);
            }
            return Ok(CreateOutcome {
                item: first.clone(),
                replayed: true,
            });
        }
        let created = state.insert(item.clone())?;
        if let Some(key) = key {
            state.keys.insert(key, (item, created.clone()));
        }
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
        let mut state = self.state()?;
        let item = state.items.get_mut(&id).ok_or(StoreError::NotFound)?;
        if let Precondition::OneOf(tags) = &precondition
            && !tags.contains(&item.etag())
        {
            return Err(StoreError::PreconditionFailed);
        }
        if patch.is_empty() {
            return Ok(item.clone());
        }
        if let Some(name) = patch.name {
            item.name = name;
        }
        if let Some(description) = patch.description {
            item.description = description;
        }
        item.updated_at = now();
        item.version += 1;
        Ok(item.clone())
    }

    async fn delete(&self, id: ItemId) -> Result<(), StoreError> {
        self.state()?
            .items
            .remove(&id)
            .map(drop)
            .ok_or(StoreError::NotFound)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.state().map(drop)
    }
}
