//! path_rewrite (esp-v2 `http/path_rewrite/filter.cc`), on routes with a translation: the path
//! the backend gets.

use super::reply::Refusal;
use crate::path;
use crate::path::Translation;
use crate::spec::Backend;

/// esp-v2 `path_rewrite/filter.cc` `PathMaxSize`.
const PATH_MAX: usize = 8192;

/// The request's path on its way to the backend.
pub(super) struct Paths {
    /// The path and query the backend gets.
    pub(super) upstream: String,
    /// The client's path and query, when the path was rewritten (`x-envoy-original-path`).
    pub(super) original: Option<String>,
}

/// The paths for `backend`, from the request's normalised path and query, and the template's
/// variables.
pub(super) fn rewrite(
    backend: &Backend,
    normalized: String,
    query: Option<&str>,
    bindings: &[(String, String)],
) -> Result<Paths, Refusal> {
    let original = match query {
        Some(q) => format!("{normalized}?{q}"),
        None => normalized,
    };
    let address_path = backend.address_path();
    let rewrites = backend.translation == Translation::ConstantAddress || !address_path.is_empty();
    if !rewrites {
        return Ok(Paths {
            upstream: original,
            original: None,
        });
    }
    if original.len() > PATH_MAX {
        return Err(Refusal::new(
            "path_rewrite_bad_request",
            400,
            format!("Path is too long, max allowed size is {PATH_MAX}."),
        ));
    }
    // Unreachable in practice: the HTTP parser drops a fragment before this code sees the path
    // (kept for the day the raw target is available).
    if original.contains('#') {
        return Err(Refusal::new(
            "path_rewrite_bad_request",
            400,
            "Path cannot contain fragment identifier (#)",
        ));
    }
    Ok(Paths {
        upstream: path::translate(backend.translation, address_path, &original, bindings),
        original: Some(original),
    })
}
