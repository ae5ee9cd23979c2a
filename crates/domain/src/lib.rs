//! The items domain.
//!
//! Everything here is plain Rust: validated newtypes ("parse, don't validate"), the
//! [`Item`] entity, the [`DomainError`] enum and the [`ItemStore`] port that the
//! `repository` crate implements. No web framework, no database driver, no async runtime.

mod error;
mod item;
mod store;

pub use error::{DomainError, StoreError};
pub use item::{
    Description, ETag, IdempotencyKey, Item, ItemId, ItemName, ItemPatch, NewItem, PageSize,
};
pub use store::{CreateOutcome, ItemStore, Page, PageRequest, Precondition};
