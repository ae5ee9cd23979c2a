//! An image: its config and layers bound by a manifest, whose digest is the image's identity.

use anyhow::Context as _;
use oci_spec::image::MediaType;

use super::blob::{Blob, canonical_json};

/// A complete image: config, layers and the manifest that binds them.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) config: Blob,
    pub(crate) layers: Vec<Blob>,
    pub(crate) manifest: Blob,
}

impl Image {
    pub(crate) fn new(config: Blob, layers: Vec<Blob>) -> anyhow::Result<Self> {
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2_u32)
            .media_type(MediaType::ImageManifest)
            .config(config.descriptor()?)
            .layers(
                layers
                    .iter()
                    .map(Blob::descriptor)
                    .collect::<anyhow::Result<Vec<_>>>()?,
            )
            .build()
            .context("building the image manifest")?;
        let manifest = Blob::new(MediaType::ImageManifest, canonical_json(&manifest)?);
        Ok(Self {
            config,
            layers,
            manifest,
        })
    }

    /// An artifact (OCI image spec 1.1, "Guidelines for Artifact Usage"): a manifest with
    /// `artifactType`, the empty config `{}`, `blobs` as its layers and `subject` the image it
    /// describes, so that registries with the referrers API list it under that image.
    pub(crate) fn artifact(
        artifact_type: &str,
        blobs: Vec<Blob>,
        subject: &Image,
    ) -> anyhow::Result<Self> {
        let config = Blob::new(MediaType::EmptyJSON, b"{}".to_vec());
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2_u32)
            .media_type(MediaType::ImageManifest)
            .artifact_type(MediaType::Other(artifact_type.to_owned()))
            .config(config.descriptor()?)
            .layers(
                blobs
                    .iter()
                    .map(Blob::descriptor)
                    .collect::<anyhow::Result<Vec<_>>>()?,
            )
            .subject(subject.manifest.descriptor()?)
            .build()
            .context("building the artifact manifest")?;
        let manifest = Blob::new(MediaType::ImageManifest, canonical_json(&manifest)?);
        Ok(Self {
            config,
            layers: blobs,
            manifest,
        })
    }

    /// The manifest digest: the image's identity.
    pub(crate) fn digest(&self) -> &str {
        &self.manifest.digest
    }

    pub(super) fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.layers.iter().chain([&self.config, &self.manifest])
    }
}
