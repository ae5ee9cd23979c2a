//! Content-addressed blobs: the sha256 digest every OCI document is named by, and JSON written the
//! same way every time so that the same document has the same digest.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use anyhow::Context as _;
use oci_spec::image::{Descriptor, Digest, MediaType};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `bytes`.
pub(super) fn sha256_digest(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in Sha256::digest(bytes) {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A blob ready to be written or pushed.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub(crate) media_type: MediaType,
    pub(crate) digest: String,
    pub(crate) bytes: Vec<u8>,
}

impl Blob {
    pub(crate) fn new(media_type: MediaType, bytes: Vec<u8>) -> Self {
        Self {
            media_type,
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    pub(crate) fn descriptor(&self) -> anyhow::Result<Descriptor> {
        Ok(Descriptor::new(
            self.media_type.clone(),
            self.bytes.len() as u64,
            Digest::from_str(&self.digest).context("a sha256 digest")?,
        ))
    }
}

/// JSON with object keys sorted at every level (whatever map type serde_json was built with), so
/// that documents holding hash maps serialise the same way every time.
pub(crate) fn canonical_json<T: serde::Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    fn sort(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<String, Value> =
                    map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    let value = sort(serde_json::to_value(value).context("serialising JSON")?);
    serde_json::to_vec(&value).context("serialising JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys() {
        let map: std::collections::HashMap<&str, u8> = [("b", 1), ("a", 2), ("c", 3)].into();
        assert_eq!(canonical_json(&map).unwrap(), br#"{"a":2,"b":1,"c":3}"#);
    }
}
