//! Shared by the end-to-end tests of the local cloud: the running `cargo xtask cloud`, the
//! `cargo xtask` command line and an image pushed to the cloud's registry.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The debug items-service the images are built from, or `None` (the test is skipped) when it
/// has not been built.
pub fn service_binary() -> Option<PathBuf> {
    let binary = root().join("target/debug/items-service");
    if binary.is_file() {
        Some(binary)
    } else {
        eprintln!(
            "skipped: {} does not exist (cargo build -p items-service builds it)",
            binary.display()
        );
        None
    }
}

/// `cargo xtask ARGS`, its output echoed to stderr.
pub fn xtask(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask-release"))
        .args(args)
        .env_remove("DEPLOY_API_KEY")
        .env_remove("DEPLOY_TOKEN")
        .output()
        .unwrap();
    eprintln!(
        "--- xtask {args:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The running `cargo xtask cloud` and every line it printed.
pub struct Cloud {
    child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Cloud {
    pub fn start(binary: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask-release"))
            .args(["cloud", "--binary"])
            .arg(binary)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    pub fn wait_for(&self, what: impl Fn(&str) -> bool, within: Duration) -> Option<String> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| what(l)) {
                return Some(l.clone());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    pub fn value(&self, prefix: &str) -> String {
        let line = self
            .wait_for(|l| l.starts_with(prefix), Duration::from_secs(300))
            .unwrap_or_else(|| panic!("no line {prefix:?}"));
        line[prefix.len()..].trim().to_owned()
    }

    /// (region, gateway URL) of each `gateway <region>: URL` line.
    pub fn gateways(&self) -> Vec<(String, String)> {
        self.value("api key:");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("gateway "))
            .filter_map(|l| l.split_once(": "))
            .map(|(r, u)| (r.to_owned(), u.trim().to_owned()))
            .collect()
    }

    /// The registry host the cloud pushed its bootstrap image to.
    pub fn registry(&self) -> String {
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root().join("target/local-cloud/local.json")).unwrap(),
        )
        .unwrap();
        state["registry"].as_str().unwrap().to_owned()
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = self.child.wait();
    }
}

/// `cargo xtask image` of `binary` with revision label `label` (each label gives another
/// digest), pushed to the local project's repository as `tag`: its `ref@digest`.
pub fn push_image(registry: &str, binary: &Path, label: &str, tag: &str, layout: &Path) -> String {
    let pushed = xtask(&[
        "image",
        "--binary",
        binary.to_str().unwrap(),
        "--revision",
        label,
        "--output",
        layout.to_str().unwrap(),
        "--push",
        &format!("{registry}/items-local-0001/items/items-service:{tag}"),
    ]);
    assert!(pushed.status.success());
    String::from_utf8_lossy(&pushed.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pushed: "))
        .unwrap()
        .to_owned()
}

/// The Cloud Run revision `deploy` creates for `image`.
pub fn revision_of(image: &str) -> String {
    format!("items-{}", &image.rsplit(':').next().unwrap()[..12])
}

/// A JWT the local gateways accept (what `cargo xtask token --env local` prints).
pub fn token() -> String {
    xtask::token::first_provider_token("local").unwrap()
}
