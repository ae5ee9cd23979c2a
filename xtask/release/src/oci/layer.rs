//! Filesystem layers as reproducible tar streams, compressed the same way every time.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use flate2::{Compression, GzBuilder};
use oci_spec::image::MediaType;

use super::blob::{Blob, sha256_digest};

/// One regular file, directory or symbolic link of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Dir { mode: u32, uid: u64, gid: u64 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

/// A filesystem layer: absolute paths (without the leading `/`) to entries. Parent directories
/// are added with mode 0755 when missing.
#[derive(Debug, Default, Clone)]
pub(crate) struct Layer {
    entries: BTreeMap<String, Entry>,
}

impl Layer {
    /// The entry at `path` (absolute or not), if any.
    pub(crate) fn get(&self, path: &str) -> Option<&Entry> {
        self.entries
            .get(path.trim_start_matches('/').trim_end_matches('/'))
    }

    /// Every path (without the leading `/`) and its entry, in path order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries
            .iter()
            .map(|(path, entry)| (path.as_str(), entry))
    }

    pub(crate) fn add(&mut self, path: &str, entry: Entry) {
        let path = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_owned();
        let mut parent = Path::new(&path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            self.entries
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Entry::Dir {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                });
            parent = dir.parent();
        }
        self.entries.insert(path, entry);
    }

    /// The uncompressed tar stream: entries in path order, fixed owner and mtime.
    pub(crate) fn tar(&self, mtime: u64) -> anyhow::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_ustar();
            header.set_mtime(mtime);
            header.set_uid(0);
            header.set_gid(0);
            let (name, data): (String, &[u8]) = match entry {
                Entry::Dir { mode, uid, gid } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_uid(*uid);
                    header.set_gid(*gid);
                    (format!("{path}/"), &[])
                }
                Entry::File { mode, data } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    (path.clone(), data)
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder
                        .append_link(&mut header, path, target)
                        .with_context(|| format!("adding {path} to a layer"))?;
                    continue;
                }
            };
            header.set_size(data.len() as u64);
            builder
                .append_data(&mut header, &name, data)
                .with_context(|| format!("adding {name} to a layer"))?;
        }
        builder.into_inner().context("finishing a layer")
    }
}

/// A layer compressed for an image: the blob (tar+gzip) and its diff id (digest of the tar).
pub(crate) fn gzip_layer(tar: &[u8]) -> anyhow::Result<(Blob, String)> {
    let diff_id = sha256_digest(tar);
    // No file name, mtime 0, OS "unknown": the bytes depend on the tar only.
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(6));
    gz.write_all(tar).context("compressing a layer")?;
    let bytes = gz.finish().context("compressing a layer")?;
    Ok((Blob::new(MediaType::ImageLayerGzip, bytes), diff_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_reproducible_and_sorted() {
        let mut a = Layer::default();
        a.add(
            "/usr/local/bin/x",
            Entry::File {
                mode: 0o755,
                data: b"x".to_vec(),
            },
        );
        a.add(
            "/etc/passwd",
            Entry::File {
                mode: 0o644,
                data: b"p".to_vec(),
            },
        );
        let mut b = Layer::default();
        b.add(
            "/etc/passwd",
            Entry::File {
                mode: 0o644,
                data: b"p".to_vec(),
            },
        );
        b.add(
            "/usr/local/bin/x",
            Entry::File {
                mode: 0o755,
                data: b"x".to_vec(),
            },
        );
        let (ta, tb) = (a.tar(7).unwrap(), b.tar(7).unwrap());
        assert_eq!(ta, tb);
        let names: Vec<String> = tar::Archive::new(ta.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/passwd",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/x"
            ]
        );
        assert_eq!(
            gzip_layer(&ta).unwrap().0.digest,
            gzip_layer(&tb).unwrap().0.digest
        );
    }
}
