//! Items and the validated requests that create and patch them.

use std::fmt;

use time::OffsetDateTime;

use crate::DomainError;

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: ItemId,
    pub name: ItemName,
    pub description: Option<Description>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Incremented by every change; the source of the item's [`ETag`].
    pub version: i64,
}

impl Item {
    pub fn etag(&self) -> ETag {
        ETag(self.version)
    }
}

/// A validated request to create an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub name: ItemName,
    pub description: Option<Description>,
}

/// A validated JSON merge patch: `None` leaves a field alone, `Some(None)` clears the description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemPatch {
    pub name: Option<ItemName>,
    pub description: Option<Option<Description>>,
}

impl ItemPatch {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.description.is_none()
    }
}

/// A positive 64-bit item id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemId(i64);

impl ItemId {
    /// Parses the decimal form used in URLs: ASCII digits only, 1..=i64::MAX.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::new("id", "must be a positive decimal integer"));
        }
        let value: i64 = s
            .parse()
            .map_err(|_| DomainError::new("id", "must not exceed 9223372036854775807"))?;
        Self::new(value)
    }

    pub fn new(value: i64) -> Result<Self, DomainError> {
        if value <= 0 {
            return Err(DomainError::new("id", "must be a positive integer"));
        }
        Ok(Self(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether `s` holds a control character (`char::is_control`: U+0000–U+001F and U+007F–U+009F),
/// tab and line breaks allowed when `allow_whitespace_controls`. Read as bytes, not chars: C0
/// controls and DEL are single bytes in UTF-8, C1 controls are 0xC2 then 0x80–0x9F, and no
/// other character's encoding holds those byte values (lead bytes are 0xC2 and up, continuation
/// bytes follow a lead byte). Names and descriptions are checked again when read from the
/// database: for a page of 50, `Description::parse` 40.7k -> 33.8k and `ItemName::parse` 14.1k ->
/// 12.9k instructions against the char by char check (`callgrind`, docs/performance.md); a test
/// holds it to `char::is_control`.
fn has_forbidden_control(s: &str, allow_whitespace_controls: bool) -> bool {
    // Printable ASCII throughout (most names and descriptions): one pass without a branch per
    // byte, which the compiler vectorises. A page of 50: `Description::parse` 33.8k -> 9.2k,
    // `ItemName::parse` 12.9k -> 10.6k instructions (`callgrind`).
    if s.bytes()
        .fold(true, |printable, b| printable & (0x20..0x7f).contains(&b))
    {
        return false;
    }
    let mut previous = 0_u8;
    for &b in s.as_bytes() {
        let c0 = b < 0x20 && !(allow_whitespace_controls && matches!(b, b'\n' | b'\r' | b'\t'));
        if c0 || b == 0x7f || (previous == 0xc2 && (0x80..=0x9f).contains(&b)) {
            return true;
        }
        previous = b;
    }
    false
}

/// How many chars `s` has, when that could exceed `max` (a string of at most `max` bytes has at
/// most `max` chars, so most are never counted).
fn chars_beyond(s: &str, max: usize) -> Option<usize> {
    if s.len() <= max {
        return None;
    }
    let chars = s.chars().count();
    (chars > max).then_some(chars)
}

/// An item name: trimmed, 1..=200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemName(String);

impl ItemName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(DomainError::new("name", "must not be empty or blank"));
        }
        if let Some(chars) = chars_beyond(trimmed, Self::MAX_CHARS) {
            return Err(DomainError::new(
                "name",
                format!(
                    "must be at most {} characters, got {chars}",
                    Self::MAX_CHARS
                ),
            ));
        }
        if has_forbidden_control(trimmed, false) {
            return Err(DomainError::new(
                "name",
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ItemName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An item description: at most 2000 characters; tabs and line breaks allowed, other control
/// characters (NUL included, which PostgreSQL cannot store) rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 2000;

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if let Some(chars) = chars_beyond(s, Self::MAX_CHARS) {
            return Err(DomainError::new(
                "description",
                format!(
                    "must be at most {} characters, got {chars}",
                    Self::MAX_CHARS
                ),
            ));
        }
        if has_forbidden_control(s, true) {
            return Err(DomainError::new(
                "description",
                "must not contain control characters other than tab and line breaks",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Description {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Number of items per page: 1..=100, default 50.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u8);

impl PageSize {
    pub const MAX: u8 = 100;
    pub const DEFAULT: PageSize = PageSize(50);

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let n: u64 = s
            .parse()
            .map_err(|_| DomainError::new("page_size", "must be an integer from 1 to 100"))?;
        match u8::try_from(n) {
            Ok(n @ 1..=Self::MAX) => Ok(Self(n)),
            _ => Err(DomainError::new(
                "page_size",
                "must be an integer from 1 to 100",
            )),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for PageSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A client-chosen `Idempotency-Key`: 1..=255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DomainError::new(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An entity tag derived from an item's version: `"<version>"` (strong).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ETag(pub i64);

impl ETag {
    /// Parses one entity tag for the weak comparison of RFC 9110 §8.8.3.2 (`If-None-Match`):
    /// a weak tag (`W/"…"`) compares by its opaque part.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::parse_strong(s.strip_prefix("W/").unwrap_or(s))
    }

    /// Parses one entity tag for the strong comparison (`If-Match`, RFC 9110 §13.1.1): a weak
    /// tag never matches, so it parses to `None`.
    pub fn parse_strong(s: &str) -> Option<Self> {
        let s = s.trim();
        let inner = s.strip_prefix('"')?.strip_suffix('"')?;
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        inner.parse().ok().map(ETag)
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn item_id_rejects_bad_forms() {
        for bad in [
            "",
            "0",
            "-1",
            "abc",
            "1.5",
            "+1",
            " 1",
            "9223372036854775808",
            "1e3",
        ] {
            assert!(ItemId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            ItemId::parse("9223372036854775807").unwrap().get(),
            i64::MAX
        );
        assert_eq!(ItemId::parse("42").unwrap().get(), 42);
    }

    #[test]
    fn name_rules() {
        assert!(ItemName::parse("").is_err());
        assert!(ItemName::parse("   \t ").is_err());
        assert!(ItemName::parse(&"a".repeat(201)).is_err());
        assert!(ItemName::parse("bell\u{7}").is_err());
        assert!(ItemName::parse("line\nbreak").is_err());
        assert_eq!(
            ItemName::parse(&"é".repeat(200))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            200
        );
        assert_eq!(ItemName::parse("  padded  ").unwrap().as_str(), "padded");
        let tricky = "Robert'); DROP TABLE items;-- 100% \"quoted\" 🦀 שלום";
        assert_eq!(ItemName::parse(tricky).unwrap().as_str(), tricky);
    }

    #[test]
    fn description_rules() {
        assert!(Description::parse(&"x".repeat(2001)).is_err());
        assert!(Description::parse("nul\0byte").is_err());
        assert!(Description::parse("tab\tand\r\nlines").is_ok());
        assert!(Description::parse("").is_ok());
    }

    #[test]
    fn page_size_rules() {
        for bad in ["0", "101", "abc", "-1", "", "256", "99999999999999999999"] {
            assert!(PageSize::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(PageSize::parse("1").unwrap().get(), 1);
        assert_eq!(PageSize::parse("100").unwrap().get(), 100);
        assert_eq!(PageSize::default().get(), 50);
    }

    #[test]
    fn etag_round_trip() {
        assert_eq!(ETag::parse("\"7\""), Some(ETag(7)));
        assert_eq!(ETag::parse("W/\"7\""), Some(ETag(7)));
        assert_eq!(ETag::parse_strong("\"7\""), Some(ETag(7)));
        assert_eq!(ETag::parse_strong(" \"7\" "), Some(ETag(7)));
        assert_eq!(
            ETag::parse_strong("W/\"7\""),
            None,
            "If-Match uses the strong comparison"
        );
        assert_eq!(ETag::parse("7"), None);
        assert_eq!(ETag::parse("\"x\""), None);
        assert_eq!(ETag(7).to_string(), "\"7\"");
    }

    #[test]
    fn idempotency_key_rules() {
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("0b9f6c1e-key").is_ok());
    }

    proptest! {
        #[test]
        fn the_byte_check_finds_the_control_characters_char_is_control_finds(
            s in "(\\PC|\\p{Cc}|\\p{Cf}|[\\x00-\\xff]){0,40}",
            allow in any::<bool>(),
        ) {
            let by_chars = s
                .chars()
                .any(|c| c.is_control() && !(allow && matches!(c, '\n' | '\r' | '\t')));
            prop_assert_eq!(has_forbidden_control(&s, allow), by_chars, "{:?}", s);
        }

        #[test]
        fn chars_beyond_counts_as_chars_count(s in "\\PC{0,30}", max in 0_usize..40) {
            let n = s.chars().count();
            prop_assert_eq!(chars_beyond(&s, max), (n > max).then_some(n));
        }

        #[test]
        fn any_positive_i64_round_trips(n in 1i64..=i64::MAX) {
            prop_assert_eq!(ItemId::parse(&n.to_string()).unwrap().get(), n);
        }

        #[test]
        fn non_positive_ids_rejected(n in i64::MIN..=0) {
            prop_assert!(ItemId::parse(&n.to_string()).is_err());
        }

        #[test]
        fn valid_names_are_trimmed_and_bounded(s in "\\PC{0,250}") {
            match ItemName::parse(&s) {
                Ok(name) => {
                    let n = name.as_str().chars().count();
                    prop_assert!((1..=200).contains(&n));
                    prop_assert_eq!(name.as_str(), s.trim());
                    prop_assert!(!name.as_str().chars().any(char::is_control));
                }
                Err(e) => prop_assert_eq!(e.field, "name"),
            }
        }

        #[test]
        fn page_size_accepts_exactly_1_to_100(n in 0u32..1000) {
            prop_assert_eq!(PageSize::parse(&n.to_string()).is_ok(), (1..=100).contains(&n));
        }
    }
}
