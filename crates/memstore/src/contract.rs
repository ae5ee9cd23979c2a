//! The store contract: the behaviour every [`ItemStore`] shares, written once and run against
//! each implementation (`MemStore` here, `PgStore` in `items-repository` with a fresh database
//! per test) through [`store_contract_tests!`](crate::store_contract_tests):
//!
//! ```ignore
//! async fn fresh() -> PgStore { /* a store over an empty database */ }
//! items_memstore::store_contract_tests!(fresh);
//! ```
//!
//! Each case takes a fresh, empty store and panics on a breach. Cases never assume particular
//! ids, only their order.

use futures_util::future::join_all;
use items_domain::{
    Description, ETag, IdempotencyKey, Item, ItemId, ItemName, ItemPatch, ItemStore, NewItem,
    PageRequest, PageSize, Precondition, StoreError,
};

/// One `#[tokio::test]` per case of the contract, each over `$fresh().await` (an `async fn`
/// returning an empty store). A case added here runs against every store.
#[macro_export]
macro_rules! store_contract_tests {
    ($fresh:path) => {
        $crate::store_contract_tests!(@cases $fresh;
            create_then_get,
            keyed_create_replays_the_first_answer,
            key_reused_with_another_request_conflicts,
            if_match_preconditions,
            empty_patch_changes_nothing,
            patch_sets_and_clears_fields,
            delete_then_not_found,
            keyset_pagination,
            concurrent_duplicate_creates_leave_one_item,
            concurrent_creates_get_distinct_ids,
            ready_when_up,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::contract::$case($fresh().await).await;
            }
        )*
    };
}

fn new_item(name: &str, description: Option<&str>) -> NewItem {
    NewItem {
        name: ItemName::parse(name).expect("a valid name"),
        description: description.map(|d| Description::parse(d).expect("a valid description")),
    }
}

fn key(k: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::parse(k).expect("a valid key"))
}

fn rename(name: &str) -> ItemPatch {
    ItemPatch {
        name: Some(ItemName::parse(name).expect("a valid name")),
        description: None,
    }
}

fn page(after: Option<ItemId>, size: &str) -> PageRequest {
    PageRequest {
        after,
        size: PageSize::parse(size).expect("a valid page size"),
    }
}

async fn create(store: &impl ItemStore, name: &str) -> Item {
    let outcome = store
        .create(new_item(name, Some("d")), None)
        .await
        .expect("create");
    assert!(!outcome.replayed);
    outcome.item
}

async fn all_ids(store: &impl ItemStore) -> Vec<ItemId> {
    let page = store.list(page(None, "100")).await.expect("list");
    page.items.iter().map(|i| i.id).collect()
}

/// The ids of one page and where the next starts.
async fn ids_page(
    store: &impl ItemStore,
    after: Option<ItemId>,
    size: &str,
) -> (Vec<ItemId>, Option<ItemId>) {
    let page = store.list(page(after, size)).await.expect("list");
    (page.items.iter().map(|i| i.id).collect(), page.next_after)
}

fn missing() -> ItemId {
    ItemId::new(i64::MAX).expect("a valid id")
}

/// A create answers version 1 with equal timestamps; get returns the same item; a missing id is
/// `NotFound`; later items get greater ids.
pub async fn create_then_get(store: impl ItemStore) {
    let first = create(&store, "first").await;
    assert_eq!(first.version, 1);
    assert_eq!(first.etag(), ETag(1));
    assert_eq!(first.created_at, first.updated_at);
    assert_eq!(first.name.as_str(), "first");
    assert_eq!(
        first.description.as_ref().map(Description::as_str),
        Some("d")
    );
    assert_eq!(store.get(first.id).await.expect("get"), first);
    let second = create(&store, "second").await;
    assert!(second.id > first.id);
    assert!(matches!(
        store.get(missing()).await,
        Err(StoreError::NotFound)
    ));
}

/// The same request under the same key replays the first answer, even after the item changed or
/// was deleted; another key creates another item.
pub async fn keyed_create_replays_the_first_answer(store: impl ItemStore) {
    let request = new_item("keyed", Some("d"));
    let first = store
        .create(request.clone(), key("k1"))
        .await
        .expect("create");
    assert!(!first.replayed);
    let replay = store
        .create(request.clone(), key("k1"))
        .await
        .expect("replay");
    assert!(replay.replayed);
    assert_eq!(replay.item, first.item);

    let changed = store
        .update(first.item.id, rename("changed"), Precondition::None)
        .await
        .expect("update");
    assert_eq!(changed.version, 2);
    let replay = store
        .create(request.clone(), key("k1"))
        .await
        .expect("replay");
    assert_eq!(
        replay.item, first.item,
        "the first answer, not the current item"
    );
    store.delete(first.item.id).await.expect("delete");
    let replay = store
        .create(request.clone(), key("k1"))
        .await
        .expect("replay");
    assert!(replay.replayed);
    assert_eq!(replay.item, first.item);

    let other = store.create(request, key("k2")).await.expect("create");
    assert!(!other.replayed);
    assert!(other.item.id > first.item.id);
    assert_eq!(all_ids(&store).await, [other.item.id]);
}

/// A key used with another body (name or description, absent and empty differ) is a conflict and
/// creates nothing.
pub async fn key_reused_with_another_request_conflicts(store: impl ItemStore) {
    let first = store
        .create(new_item("a", None), key("k"))
        .await
        .expect("create");
    for other in [
        new_item("b", None),
        new_item("a", Some("")),
        new_item("a", Some("x")),
    ] {
        let result = store.create(other, key("k")).await;
        assert!(
            matches!(result, Err(StoreError::IdempotencyConflict)),
            "{result:?}"
        );
    }
    assert_eq!(all_ids(&store).await, [first.item.id]);
}

/// `If-Match`: one of the tags must be current (412 otherwise, nothing changed); `*` and no
/// precondition need the item to exist; a missing item is `NotFound` under every precondition.
pub async fn if_match_preconditions(store: impl ItemStore) {
    let item = create(&store, "v1").await;
    let one_of = |tags: &[i64]| Precondition::OneOf(tags.iter().copied().map(ETag).collect());
    let v2 = store
        .update(item.id, rename("v2"), one_of(&[1]))
        .await
        .expect("a current tag");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.etag(), ETag(2));
    // A stale tag, and no tag at all (`If-Match` of weak or unparsable tags only): 412.
    for tags in [&[1][..], &[]] {
        let stale = store.update(item.id, rename("lost"), one_of(tags)).await;
        assert!(
            matches!(stale, Err(StoreError::PreconditionFailed)),
            "{stale:?}"
        );
    }
    assert_eq!(store.get(item.id).await.expect("get"), v2);
    let v3 = store
        .update(item.id, rename("v3"), one_of(&[7, 2]))
        .await
        .expect("one current tag of several");
    assert_eq!(v3.version, 3);
    let v4 = store
        .update(item.id, rename("v4"), Precondition::Exists)
        .await
        .expect("*");
    assert_eq!(v4.version, 4);
    let v5 = store
        .update(item.id, rename("v5"), Precondition::None)
        .await
        .expect("no precondition");
    assert_eq!(v5.version, 5);
    assert_eq!(v5.created_at, item.created_at);
    for precondition in [Precondition::None, Precondition::Exists, one_of(&[1])] {
        let result = store.update(missing(), rename("x"), precondition).await;
        assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    }
}

/// An empty patch returns the item unchanged (same version), still checks the precondition and
/// still needs the item.
pub async fn empty_patch_changes_nothing(store: impl ItemStore) {
    let item = create(&store, "same").await;
    let empty = ItemPatch::default();
    let same = store
        .update(item.id, empty.clone(), Precondition::OneOf(vec![ETag(1)]))
        .await
        .expect("empty patch");
    assert_eq!(same, item);
    let stale = store
        .update(item.id, empty.clone(), Precondition::OneOf(vec![ETag(9)]))
        .await;
    assert!(
        matches!(stale, Err(StoreError::PreconditionFailed)),
        "{stale:?}"
    );
    let result = store.update(missing(), empty, Precondition::None).await;
    assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
}

/// A merge patch replaces the fields it names and leaves the others; `Some(None)` clears the
/// description.
pub async fn patch_sets_and_clears_fields(store: impl ItemStore) {
    let item = create(&store, "before").await;
    let renamed = store
        .update(item.id, rename("after"), Precondition::None)
        .await
        .expect("rename");
    assert_eq!(renamed.name.as_str(), "after");
    assert_eq!(renamed.description, item.description);
    assert!(renamed.updated_at >= item.updated_at);
    let described = store
        .update(
            item.id,
            ItemPatch {
                name: None,
                description: Some(Some(Description::parse("new").expect("valid"))),
            },
            Precondition::None,
        )
        .await
        .expect("describe");
    assert_eq!(
        described.description.as_ref().map(Description::as_str),
        Some("new")
    );
    assert_eq!(described.name.as_str(), "after");
    let cleared = store
        .update(
            item.id,
            ItemPatch {
                name: None,
                description: Some(None),
            },
            Precondition::None,
        )
        .await
        .expect("clear");
    assert_eq!(cleared.description, None);
    assert_eq!(cleared.version, 4);
    assert_eq!(store.get(item.id).await.expect("get"), cleared);
}

/// A deleted item is gone for get, update and delete; its id is never given out again.
pub async fn delete_then_not_found(store: impl ItemStore) {
    let item = create(&store, "doomed").await;
    store.delete(item.id).await.expect("delete");
    assert!(matches!(
        store.get(item.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete(item.id).await,
        Err(StoreError::NotFound)
    ));
    let update = store
        .update(item.id, rename("x"), Precondition::Exists)
        .await;
    assert!(matches!(update, Err(StoreError::NotFound)), "{update:?}");
    let next = create(&store, "next").await;
    assert!(next.id > item.id);
    assert_eq!(all_ids(&store).await, [next.id]);
}

/// Pages are ordered by id and start after `after` (which need not exist any more); `next_after`
/// is the last id of a full page followed by more items, `None` on the last page.
pub async fn keyset_pagination(store: impl ItemStore) {
    assert_eq!(ids_page(&store, None, "2").await, (vec![], None));
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(create(&store, &format!("item {n}")).await.id);
    }
    let first = ids_page(&store, None, "2").await;
    assert_eq!(first, (ids[..2].to_vec(), Some(ids[1])));
    let second = ids_page(&store, first.1, "2").await;
    assert_eq!(second, (ids[2..4].to_vec(), Some(ids[3])));
    let last = ids_page(&store, second.1, "2").await;
    assert_eq!(last, (ids[4..].to_vec(), None));

    let exact = store.list(page(None, "5")).await.expect("exactly one page");
    assert_eq!(exact.items.len(), 5);
    assert_eq!(exact.next_after, None, "no empty page after an exact fit");
    assert_eq!(exact.items[0], store.get(ids[0]).await.expect("get"));

    store.delete(ids[1]).await.expect("delete");
    let after_deleted = ids_page(&store, Some(ids[1]), "2").await;
    assert_eq!(after_deleted, (ids[2..4].to_vec(), Some(ids[3])));
    assert_eq!(ids_page(&store, Some(ids[4]), "2").await, (vec![], None));
}

/// 16 concurrent creates with one key and one body: one creates, 15 replay its answer, one item.
pub async fn concurrent_duplicate_creates_leave_one_item(store: impl ItemStore) {
    let request = new_item("same", Some("d"));
    let creates = (0..16).map(|_| store.create(request.clone(), key("race")));
    let outcomes: Vec<_> = join_all(creates)
        .await
        .into_iter()
        .map(|r| r.expect("create"))
        .collect();
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    assert!(outcomes.iter().all(|o| o.item == outcomes[0].item));
    assert_eq!(all_ids(&store).await, [outcomes[0].item.id]);
}

/// 16 concurrent creates without a key: 16 items with distinct ids.
pub async fn concurrent_creates_get_distinct_ids(store: impl ItemStore) {
    let creates = (0..16).map(|n| store.create(new_item(&format!("n{n}"), None), None));
    let mut ids: Vec<ItemId> = join_all(creates)
        .await
        .into_iter()
        .map(|r| r.expect("create").item.id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 16);
    assert_eq!(all_ids(&store).await, ids);
}

/// A store that is up is ready.
pub async fn ready_when_up(store: impl ItemStore) {
    store.ready().await.expect("ready");
}
