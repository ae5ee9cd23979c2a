//! Shared by the end-to-end tests of the local cloud: the running `cargo xtask cloud`, the
//! `cargo xtask` command line and an image pushed to the cloud's registry.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// This test's directory: the local cloud's state (`XTASK_LOCAL_CLOUD_DIR`), its deploy journal
/// and the service binary its images are built from, `target/local-cloud/test-<binary>-<pid>`.
/// Each end-to-end test runs a local cloud of its own (every address it listens on is a free
/// port), so that they run side by side with each other and the rest of the suite.
pub fn test_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let stem = exe.file_stem().unwrap().to_string_lossy();
        let name = stem.split('-').next().unwrap_or("test");
        root().join(format!(
            "target/local-cloud/test-{name}-{}",
            std::process::id()
        ))
    })
}

/// The debug items-service the images are built from, or `None` (the test is skipped) when it
/// has not been built.
pub fn service_binary() -> Option<PathBuf> {
    let binary = root().join("target/debug/items-service");
    if binary.is_file() {
        Some(without_debug_info(&binary))
    } else {
        eprintln!(
            "skipped: {} does not exist (cargo build -p items-service builds it)",
            binary.display()
        );
        None
    }
}

/// A copy of `binary` without its debug info (`objcopy --strip-debug`: symbols and every other
/// section, `cargo auditable`'s included, kept) in [`test_dir`], or `binary` itself when objcopy
/// fails. The debug build was 232 MB with full debug info (94 MB with the dev profile's line tables
/// since), 49 MB without; `cargo xtask image` (a debug build itself)
/// took 57 CPU seconds per image of it, 85 % of them in gzip (miniz_oxide) and SHA-256 (perf),
/// and 19 s with the copy. Every image of these tests, the bootstrap one included, is built from
/// such a copy.
/// Each copy has a name of its own, also when threads make them at once.
pub fn without_debug_info(binary: &Path) -> PathBuf {
    static COPIES: AtomicUsize = AtomicUsize::new(0);
    let dir = test_dir().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let n = COPIES.fetch_add(1, Ordering::SeqCst);
    let copy = dir.join(format!("items-service-{n}"));
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(&copy)
        .status();
    if stripped.is_ok_and(|s| s.success()) {
        copy
    } else {
        eprintln!("objcopy --strip-debug failed: the images carry the debug build as it is");
        binary.to_path_buf()
    }
}

/// `cargo xtask …` with this test's local cloud (its state directory and deploy journal) and
/// without the caller's deploy credentials.
pub fn xtask_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask-release"));
    let dir = test_dir();
    command
        .env_remove("DEPLOY_API_KEY")
        .env_remove("DEPLOY_TOKEN")
        .env("XTASK_LOCAL_CLOUD_DIR", dir)
        .env("XTASK_DEPLOY_JOURNAL_DIR", dir.join("deploy-journal"));
    command
}

/// `cargo xtask ARGS`, its output echoed to stderr.
pub fn xtask(args: &[&str]) -> Output {
    let out = xtask_command().args(args).output().unwrap();
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
    /// Set when its standard output closed: it exited (or closed it), and prints nothing more.
    closed: Arc<AtomicBool>,
    /// Its state directory (`XTASK_LOCAL_CLOUD_DIR`).
    pub dir: PathBuf,
}

impl Cloud {
    /// `cargo xtask cloud` with this test's state directory ([`test_dir`]).
    pub fn start(binary: &Path) -> Self {
        let dir = test_dir().to_path_buf();
        let mut child = xtask_command()
            .args(["cloud", "--binary"])
            .arg(binary)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let eof = closed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
            eof.store(true, Ordering::SeqCst);
        });
        Self {
            child,
            lines,
            closed,
            dir,
        }
    }

    pub fn wait_for(&self, what: impl Fn(&str) -> bool, within: Duration) -> Option<String> {
        let started = Instant::now();
        while started.elapsed() < within {
            // Read before the lines: a line printed before the output closed is still found.
            let closed = self.closed.load(Ordering::SeqCst);
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| what(l)) {
                return Some(l.clone());
            }
            // Its error went to the test's stderr (inherited), shown with the failure.
            assert!(!closed, "cargo xtask cloud exited (its error is above)");
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
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("local.json")).unwrap()).unwrap();
        state["registry"].as_str().unwrap().to_owned()
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `cargo xtask image` of `binary` with revision label `label` (each label gives another
/// digest), pushed to the local project's repository as `tag`: its `ref@digest`. Images built at
/// once (threads) need a `layout` directory each.
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

/// The wall time of a test's steps: each [`Marks::mark`] prints `timing: <step>: N.N s` (since
/// the previous mark) and the total, so that a run's output says where its minutes went.
pub struct Marks {
    started: Instant,
    last: Instant,
}

impl Default for Marks {
    fn default() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
        }
    }
}

impl Marks {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn mark(&mut self, step: &str) {
        let now = Instant::now();
        eprintln!(
            "timing: {step}: {:.1} s (total {:.1} s)",
            (now - self.last).as_secs_f64(),
            (now - self.started).as_secs_f64()
        );
        self.last = now;
    }
}
