//! Opaque, tamper-evident page tokens: `base64url(version ‖ last id ‖ HMAC-SHA256[..16])`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use items_domain::{DomainError, ItemId};
use sha2::Sha256;

const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
const TOKEN_LEN: usize = 1 + 8 + MAC_LEN;
/// Binds the MAC to this listing, so a token minted for something else never verifies here.
const CONTEXT: &[u8] = b"items.list.v1";

/// Encodes and verifies page tokens with a key shared by every instance of the service.
///
/// Rotation: the current key signs; earlier keys given to [`PageTokenCodec::with_previous`] still
/// verify, so a client paging through a listing when the key changes is not cut off.
#[derive(Clone)]
pub struct PageTokenCodec {
    key: Vec<u8>,
    previous: Vec<Vec<u8>>,
}

impl std::fmt::Debug for PageTokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokenCodec { key: [redacted] }")
    }
}

impl PageTokenCodec {
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: key.to_vec(),
            previous: Vec::new(),
        }
    }

    /// Tokens signed with any of `previous` (earlier keys) still verify; new ones are signed with
    /// the current key only.
    pub fn with_previous<'a>(mut self, previous: impl IntoIterator<Item = &'a [u8]>) -> Self {
        self.previous = previous.into_iter().map(<[u8]>::to_vec).collect();
        self
    }

    fn mac(key: &[u8], body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(CONTEXT);
        mac.update(body);
        mac
    }

    pub fn encode(&self, after: ItemId) -> String {
        let mut token = Vec::with_capacity(TOKEN_LEN);
        token.push(VERSION);
        token.extend_from_slice(&after.get().to_be_bytes());
        let tag = Self::mac(&self.key, &token).finalize().into_bytes();
        token.extend_from_slice(&tag[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(token)
    }

    pub fn decode(&self, token: &str) -> Result<ItemId, DomainError> {
        let invalid = || DomainError::new("page_token", "is not a page token issued by this API");
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() != TOKEN_LEN || bytes[0] != VERSION {
            return Err(invalid());
        }
        let (body, tag) = bytes.split_at(1 + 8);
        let verified = std::iter::once(&self.key)
            .chain(&self.previous)
            .any(|key| Self::mac(key, body).verify_truncated_left(tag).is_ok());
        if !verified {
            return Err(invalid());
        }
        let id = i64::from_be_bytes(body[1..].try_into().map_err(|_| invalid())?);
        ItemId::new(id).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let codec = PageTokenCodec::new(b"k1");
        let id = ItemId::new(1234).unwrap();
        let token = codec.encode(id);
        assert_eq!(codec.decode(&token).unwrap(), id);

        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[8] ^= 1; // change the id
        assert!(codec.decode(&URL_SAFE_NO_PAD.encode(&bytes)).is_err());
        assert!(PageTokenCodec::new(b"other key").decode(&token).is_err());
        for junk in ["", "abc", "!!!", &"A".repeat(34)] {
            assert!(codec.decode(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn rotation_signs_with_the_new_key_and_still_verifies_the_old_ones() {
        let id = ItemId::new(99).unwrap();
        let before = PageTokenCodec::new(b"old key");
        let old_token = before.encode(id);
        let after = PageTokenCodec::new(b"new key").with_previous([&b"old key"[..]]);
        // A client paging when the key changed keeps going.
        assert_eq!(after.decode(&old_token).unwrap(), id);
        // New tokens are signed with the new key: the old codec cannot verify them.
        let new_token = after.encode(id);
        assert_ne!(new_token, old_token);
        assert!(before.decode(&new_token).is_err());
        assert_eq!(
            PageTokenCodec::new(b"new key").decode(&new_token).unwrap(),
            id
        );
        // A key dropped from the list no longer verifies.
        assert!(PageTokenCodec::new(b"new key").decode(&old_token).is_err());
    }
}
