//! The OCI image layout on disk: `oci-layout`, `index.json` and `blobs/sha256/…`.

use std::path::Path;

use anyhow::Context as _;
use oci_spec::image::MediaType;

use super::blob::canonical_json;
use super::manifest::Image;

/// The annotation naming a manifest inside an image layout's `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

impl Image {
    /// Writes an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) to `dir`,
    /// replacing what was there, with the manifest named `tag` and `artifacts` (each named by its
    /// tag) after it in `index.json`.
    pub(crate) fn write_layout(
        &self,
        dir: &Path,
        tag: &str,
        artifacts: &[(&Image, String)],
    ) -> anyhow::Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
        for blob in self
            .blobs()
            .chain(artifacts.iter().flat_map(|(a, _)| a.blobs()))
        {
            let hex = blob.digest.trim_start_matches("sha256:");
            write(&blobs.join(hex), &blob.bytes)?;
        }
        write(
            &dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let named = |image: &Image, name: &str| -> anyhow::Result<_> {
            let mut descriptor = image.manifest.descriptor()?;
            descriptor.set_annotations(Some([(REF_NAME.to_owned(), name.to_owned())].into()));
            Ok(descriptor)
        };
        let mut manifests = vec![named(self, tag)?];
        for (artifact, name) in artifacts {
            let mut descriptor = named(artifact, name)?;
            descriptor.set_artifact_type(artifact_type_of(artifact)?);
            manifests.push(descriptor);
        }
        let index = oci_spec::image::ImageIndexBuilder::default()
            .schema_version(2_u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .context("building index.json")?;
        write(&dir.join("index.json"), &canonical_json(&index)?)
    }
}

/// The `artifactType` of an artifact manifest.
fn artifact_type_of(artifact: &Image) -> anyhow::Result<Option<MediaType>> {
    let manifest: oci_spec::image::ImageManifest =
        serde_json::from_slice(&artifact.manifest.bytes).context("reading a manifest")?;
    Ok(manifest.artifact_type().clone())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
