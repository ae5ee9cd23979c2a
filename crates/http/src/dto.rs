//! Wire shapes (JSON) and their conversion to and from domain types.

use items_domain::{Description, Item, ItemName, ItemPatch, NewItem};
use serde::{Deserialize, Deserializer, Serialize};
use time::format_description::well_known::Rfc3339;

use crate::ApiError;

/// An item as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemResponse {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&Item> for ItemResponse {
    fn from(item: &Item) -> Self {
        let rfc3339 = |t: time::OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        Self {
            id: item.id.get(),
            name: item.name.as_str().to_owned(),
            description: item.description.as_ref().map(|d| d.as_str().to_owned()),
            created_at: rfc3339(item.created_at),
            updated_at: rfc3339(item.updated_at),
        }
    }
}

/// One page of items.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemList {
    pub items: Vec<ItemResponse>,
    /// Pass as `page_token` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Body of `POST /items`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateItemRequest {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

impl TryFrom<CreateItemRequest> for NewItem {
    type Error = ApiError;

    fn try_from(body: CreateItemRequest) -> Result<Self, ApiError> {
        Ok(NewItem {
            name: ItemName::parse(&body.name).map_err(ApiError::invalid)?,
            description: body
                .description
                .as_deref()
                .map(Description::parse)
                .transpose()
                .map_err(ApiError::invalid)?,
        })
    }
}

/// Body of `PATCH /items/{id}`: a JSON merge patch (RFC 7396). A member set to `null` removes it;
/// an absent member is left alone.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchItemRequest {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
}

/// Tells `"field": null` (`Some(None)`) from an absent field (`None`, via `default`).
fn present<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

impl TryFrom<PatchItemRequest> for ItemPatch {
    type Error = ApiError;

    fn try_from(body: PatchItemRequest) -> Result<Self, ApiError> {
        let name = match body.name {
            None => None,
            Some(None) => {
                return Err(ApiError::invalid(items_domain::DomainError::new(
                    "name",
                    "cannot be removed (null); an item always has a name",
                )));
            }
            Some(Some(n)) => Some(ItemName::parse(&n).map_err(ApiError::invalid)?),
        };
        let description = match body.description {
            None => None,
            Some(None) => Some(None),
            Some(Some(d)) => Some(Some(Description::parse(&d).map_err(ApiError::invalid)?)),
        };
        Ok(ItemPatch { name, description })
    }
}
