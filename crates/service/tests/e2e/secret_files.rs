//! Start-up reads each secret file it is given once: the settings resolve the page-token keys
//! into the codec the handlers use, and nothing reads the files again. Watched from outside the
//! process, with inotify, on the binary as Cloud Run starts it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::support;

/// Files in a directory of their own under the temp directory, removed on drop.
struct KeyFiles(PathBuf);

impl KeyFiles {
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("items-key-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Self(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for KeyFiles {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// Counts the opens of each watched file. Each open is followed by a close, so two opens are
/// never adjacent identical events, which inotify would merge into one.
struct Opens {
    inotify: Inotify,
    files: HashMap<WatchDescriptor, String>,
}

impl Opens {
    fn watch(files: &[String]) -> Self {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).unwrap();
        let files = files
            .iter()
            .map(|f| {
                let flags = AddWatchFlags::IN_OPEN | AddWatchFlags::IN_CLOSE_NOWRITE;
                (inotify.add_watch(f.as_str(), flags).unwrap(), f.clone())
            })
            .collect();
        Self { inotify, files }
    }

    fn counts(&self) -> HashMap<String, usize> {
        let mut counts: HashMap<String, usize> =
            self.files.values().map(|f| (f.clone(), 0)).collect();
        loop {
            match self.inotify.read_events() {
                Ok(events) => {
                    for event in events {
                        if event.mask.contains(AddWatchFlags::IN_OPEN) {
                            *counts.get_mut(&self.files[&event.wd]).unwrap() += 1;
                        }
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return counts,
                Err(e) => panic!("inotify: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn start_up_reads_each_page_token_key_file_once() {
    let db_url = items_testkit::fresh_database().await.unwrap();
    let keys = KeyFiles::new(&[
        ("current", "0123456789abcdef0123456789abcdef-current\n"),
        ("previous-1", "an earlier key\n"),
        ("previous-2", "the earliest key\n"),
    ]);
    let files = ["current", "previous-1", "previous-2"].map(|f| keys.path(f));
    let opens = Opens::watch(&files);
    let launch = support::launch(&db_url)
        .env("APP__API__PAGE_TOKEN_SECRET_FILE", &files[0])
        .env(
            "APP__API__PAGE_TOKEN_PREVIOUS_SECRET_FILES",
            format!("{},{}", files[1], files[2]),
        );
    let client = support::client();
    let (mut child, base) = support::spawn_binary(launch, Stdio::null(), &client).await;
    // Serving a page with a token uses the keys: still no read.
    for _ in 0..3 {
        support::create_at(&client, &base, "read once").await;
    }
    let page: serde_json::Value = client
        .get(format!("{base}/items?page_size=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = page["next_page_token"].as_str().unwrap();
    let next = client
        .get(format!("{base}/items?page_size=1&page_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
    let counts = opens.counts();
    child.kill().await.unwrap();
    for file in &files {
        assert_eq!(
            counts[file], 1,
            "{file} opened {} times: {counts:?}",
            counts[file]
        );
    }
}
