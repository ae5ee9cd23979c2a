//! OCI images without a container engine: reproducible layers, the image layout on disk, and a
//! push through the OCI distribution API.
//!
//! Same inputs, same digest: tar entries are sorted, owned by a fixed uid/gid, stamped with one
//! fixed mtime; gzip headers carry no time or name; JSON documents are written with sorted keys.
//!
//! One submodule per job: [`blob`] (digests and canonical JSON), [`layer`] (tar+gzip layers),
//! [`manifest`] (config and layers bound into an image), [`layout`] (the image layout on disk),
//! [`reference`] (`<registry>/<repository>:<tag>`) and [`registry`] (the push and its
//! authentication).

use std::path::PathBuf;

mod blob;
mod layer;
mod layout;
mod manifest;
mod reference;
mod registry;

pub(crate) use blob::{Blob, canonical_json};
pub(crate) use layer::{Entry, Layer, gzip_layer};
pub(crate) use manifest::Image;
pub(crate) use reference::Reference;
pub(crate) use registry::{RegistryAuth, push};
pub(crate) use xtask::util::install_crypto_provider;

/// Where `cargo xtask image` writes its layout by default.
pub(crate) fn default_layout_dir() -> PathBuf {
    crate::util::project_root()
        .join("target")
        .join("oci")
        .join(crate::util::SERVICE)
}
