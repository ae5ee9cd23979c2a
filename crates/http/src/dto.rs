//! Wire shapes (JSON) and their conversion to and from domain types.

use items_domain::{Description, Item, ItemName, ItemPatch, NewItem};
use serde::{Deserialize, Deserializer, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::ApiError;

/// An item as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ItemResponse {
    #[schema(minimum = 1, example = 42)]
    pub id: i64,
    #[schema(min_length = 1, max_length = 200, example = "first item")]
    pub name: String,
    /// `null` when the item has none.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ItemList {
    pub items: Vec<ItemResponse>,
    /// Pass as `page_token` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_page_token: Option<String>,
}

/// Body of `POST /items`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateItemRequest {
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$",
        example = "first item"
    )]
    pub name: String,
    /// Up to 2000 characters; line breaks and tabs allowed, other control characters not.
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$",
        example = "hello"
    )]
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
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchItemRequest {
    /// A new name (1 to 200 characters after trimming); cannot be `null`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, required = false, min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$")]
    pub name: Option<Option<String>>,
    /// A new description, or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = false, max_length = 2000, pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$")]
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
