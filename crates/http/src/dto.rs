//! Wire shapes (JSON) and their conversion to and from domain types.

use items_domain::{Description, Item, ItemName, ItemPatch, NewItem};
use serde::ser::{SerializeStruct as _, Serializer};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
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

/// The JSON of an [`ItemResponse`], written straight from the domain's [`Item`]: no owned copy
/// of the name and description, the timestamps formatted on the stack. The same bytes as
/// serialising `ItemResponse::from(item)` (tests below). With the body sized up front and the rows
/// read by index: a page of 50 380.4k -> 331.6k instructions, GET /items/{id} 52.0k -> 50.4k
/// (`callgrind`, docs/performance.md).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ItemJson<'a>(pub(crate) &'a Item);

impl Serialize for ItemJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let item = self.0;
        let mut s = serializer.serialize_struct("ItemResponse", 5)?;
        s.serialize_field("id", &item.id.get())?;
        s.serialize_field("name", item.name.as_str())?;
        s.serialize_field(
            "description",
            &item.description.as_ref().map(Description::as_str),
        )?;
        s.serialize_field("created_at", &Rfc3339Json(item.created_at))?;
        s.serialize_field("updated_at", &Rfc3339Json(item.updated_at))?;
        s.end()
    }
}

/// A timestamp as an RFC 3339 JSON string, formatted by `time` into a stack buffer (empty, as
/// `ItemResponse` has it, should `time` refuse to format it).
struct Rfc3339Json(OffsetDateTime);

impl Serialize for Rfc3339Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `-9999-12-31T23:59:59.999999999+23:59` is 36 bytes, the longest `time` writes.
        let mut buffer = [0_u8; 40];
        let mut out = &mut buffer[..];
        // What was written is what the writer moved past: the count `format_into` returns leaves
        // out the fraction of a second (time 0.3.55; the test below caught it).
        let written = match self.0.format_into(&mut out, &Rfc3339) {
            Ok(_) => 40 - out.len(),
            Err(_) => 0,
        };
        serializer.serialize_str(std::str::from_utf8(&buffer[..written]).unwrap_or_default())
    }
}

/// The JSON of an [`ItemList`], written straight from the domain's items (see [`ItemJson`]).
#[derive(Debug, Serialize)]
pub(crate) struct ItemListJson<'a> {
    #[serde(serialize_with = "items_json")]
    pub(crate) items: &'a [Item],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_page_token: Option<String>,
}

fn items_json<S: Serializer>(items: &&[Item], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(items.iter().map(ItemJson))
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

#[cfg(test)]
mod tests {
    use items_domain::{ItemId, ItemName};
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    fn item(name: &str, description: Option<&str>, created_at: OffsetDateTime) -> Item {
        Item {
            id: ItemId::new(42).unwrap(),
            name: ItemName::parse(name).unwrap(),
            description: description.map(|d| Description::parse(d).unwrap()),
            created_at,
            updated_at: created_at
                .checked_add(time::Duration::nanoseconds(1_500))
                .unwrap_or(created_at),
            version: 3,
        }
    }

    /// The bytes the API wrote before `ItemJson`: serde_json of `ItemResponse::from`.
    fn as_before(item: &Item) -> String {
        serde_json::to_string(&ItemResponse::from(item)).unwrap()
    }

    #[test]
    fn item_json_writes_the_bytes_of_item_response() {
        let items = [
            item("plain", None, datetime!(2024-02-29 23:59:59 UTC)),
            item(
                "quote \" backslash \\ 🦀 שלום",
                Some("tab\tand\r\nlines, ünïcödé"),
                datetime!(1999-12-31 00:00:00.123456 UTC),
            ),
            item("x", Some(""), datetime!(2026-12-05 09:46:40.000001 +02:00)),
        ];
        for item in &items {
            assert_eq!(
                serde_json::to_string(&ItemJson(item)).unwrap(),
                as_before(item)
            );
        }
        let list = ItemListJson {
            items: &items,
            next_page_token: Some("token".to_owned()),
        };
        let before = ItemList {
            items: items.iter().map(ItemResponse::from).collect(),
            next_page_token: Some("token".to_owned()),
        };
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            serde_json::to_string(&before).unwrap()
        );
        let last = ItemListJson {
            items: &items[..1],
            next_page_token: None,
        };
        assert_eq!(
            serde_json::to_string(&last).unwrap(),
            format!("{{\"items\":[{}]}}", as_before(&items[0]))
        );
    }

    proptest! {
        #[test]
        fn any_timestamp_is_written_as_before(
            micros in -62_135_596_800_000_000_i64..253_402_300_799_999_999,
            offset_minutes in -1439_i32..=1439,
        ) {
            let offset = time::UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap();
            let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
                .map(|t| t.checked_to_offset(offset)) else { return Ok(()) };
            let Some(at) = at else { return Ok(()) };
            let item = item("t", None, at);
            prop_assert_eq!(serde_json::to_string(&ItemJson(&item)).unwrap(), as_before(&item));
        }
    }
}
