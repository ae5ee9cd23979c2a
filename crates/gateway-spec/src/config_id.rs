//! API config ids: `<api>-<env>-<hash of the YAML>`, so that the same config always gets the same
//! id and a changed one a new id (API Gateway configs are immutable).

use sha2::{Digest as _, Sha256};

/// Hex digits of the content hash in a config id.
pub const HASH_LEN: usize = 10;

/// `<api>-<env>-<first HASH_LEN hex digits of sha256(yaml)>`.
pub fn config_id(api_id: &str, env: &str, yaml: &str) -> String {
    let digest = Sha256::digest(yaml.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{api_id}-{env}-{}", &hex[..HASH_LEN])
}
