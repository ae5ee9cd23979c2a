//! `/docs` in a real browser: Debian's Chromium, headless, driven through chromedriver with
//! thirtyfour. The page must render every operation of the served spec with no
//! Content-Security-Policy violation (and an inline script added afterwards is blocked, so the
//! policy is enforced and the recorder works), and "Try it out" on `GET /items` shows the live 200.
//! Opened as `/docs?key=…` (how API Gateway users open it), the page sends the key as the
//! `x-api-key` header of the spec request and of "Try it out", never in their URLs.
//! A screenshot goes to `target/screenshots/docs.png`.
//!
//! Skipped, with the reason printed, only when chromium or chromedriver is not installed
//! (`.ci/run` installs both).

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use serde_json::{Value, json};
use thirtyfour::prelude::*;

use crate::support::spawn_app;

const CHROMIUM: &str = "/usr/bin/chromium";

/// What the page script sees of CSP violations, installed before any page script runs.
const RECORD_VIOLATIONS: &str = "window.__csp = []; document.addEventListener(\
    'securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));";

/// Every `fetch` the page makes (Swagger UI's spec request and "Try it out"): its URL and its
/// `x-api-key` header, installed before any page script runs.
const RECORD_FETCHES: &str = "window.__fetches = []; const pageFetch = window.fetch; \
    window.fetch = function (input, init) { \
      const request = new Request(input, init); \
      window.__fetches.push({ url: request.url, key: request.headers.get('x-api-key') }); \
      return pageFetch.apply(this, arguments); };";

/// The API key the page is opened with.
const PAGE_KEY: &str = "docs-page-test-key";

fn find(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_chromedriver(program: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/status", driver.url)).await
            && r.status().is_success()
        {
            return driver;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The workspace's `target/`, without `..` (chromedriver cannot find Chromium's DevTools port in
/// a profile path that has one).
fn target_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    std::fs::create_dir_all(&dir).expect("target dir");
    dir.canonicalize().expect("target dir")
}

/// Polls `check` until it returns `Some` or `timeout` passes.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn docs_page_renders_every_operation_and_tries_out_list_items() {
    let Some(chromedriver) = find("chromedriver") else {
        println!("skipped: chromedriver is not installed (apt-get install chromium-driver)");
        return;
    };
    if !Path::new(CHROMIUM).is_file() {
        println!("skipped: {CHROMIUM} is not installed (apt-get install chromium)");
        return;
    }
    let app = spawn_app().await;
    let item = app.create("seen through the docs page").await;
    let spec: Value = app.get_json("/openapi.json").await;
    let mut operations: Vec<(String, String)> = spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .filter(|(m, _)| m.as_str() != "parameters")
                .map(|(m, _)| (m.to_uppercase(), path.clone()))
        })
        .collect();
    operations.sort();

    let driver_process = start_chromedriver(&chromedriver).await;
    let profile = target_dir().join(format!("chromium-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).expect("profile dir");
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(CHROMIUM).expect("binary");
    for arg in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,2400",
    ] {
        caps.add_arg(arg).expect("arg");
    }
    caps.add_arg(&format!("--user-data-dir={}", profile.display()))
        .expect("arg");
    let driver = WebDriver::new(driver_process.url.clone(), caps)
        .await
        .expect("a Chromium session");
    // A failed assertion must still close Chromium (killing chromedriver would orphan it).
    let outcome = AssertUnwindSafe(drive(&driver, &app.address, &operations, &item))
        .catch_unwind()
        .await;
    let _ = driver.quit().await;
    drop(driver_process);
    let _ = std::fs::remove_dir_all(&profile);
    match outcome {
        Ok(result) => result.expect("the docs page works"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn drive(
    driver: &WebDriver,
    address: &str,
    operations: &[(String, String)],
    item: &Value,
) -> WebDriverResult<()> {
    driver
        .cdp()
        .send_raw(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": format!("{RECORD_VIOLATIONS}\n{RECORD_FETCHES}") }),
        )
        .await?;
    driver
        .goto(format!("{address}/docs?key={PAGE_KEY}"))
        .await?;

    // Every operation of the spec, as Swagger UI lists them (method and path).
    let rendered = wait_for("every operation", Duration::from_secs(60), || async {
        let blocks = driver.find_all(By::Css(".opblock-summary")).await.ok()?;
        if blocks.len() < operations.len() {
            return None;
        }
        let mut seen = Vec::new();
        for block in blocks {
            let method = block
                .find(By::Css(".opblock-summary-method"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let path = block
                .find(By::Css(".opblock-summary-path"))
                .await
                .ok()?
                .attr("data-path")
                .await
                .ok()??;
            seen.push((method.to_uppercase(), path));
        }
        seen.sort();
        Some(seen)
    })
    .await;
    assert_eq!(rendered, operations, "operations on the page");

    // Try it out: GET /items.
    let list = driver.find(By::Id("operations-items-list_items")).await?;
    list.find(By::Css(".opblock-summary"))
        .await?
        .click()
        .await?;
    let try_out = wait_for("the Try it out button", Duration::from_secs(30), || async {
        list.find(By::Css(".try-out__btn")).await.ok()
    })
    .await;
    try_out.click().await?;
    list.find(By::Css(".execute")).await?.click().await?;
    let (status, body) = wait_for("the live response", Duration::from_secs(60), || async {
        let row = list
            .find(By::Css(".live-responses-table .response"))
            .await
            .ok()?;
        let status = row
            .find(By::Css(".response-col_status"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let body = row
            .find(By::Css(".response-col_description pre"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (!body.is_empty()).then_some((status, body))
    })
    .await;
    assert_eq!(status.trim(), "200", "live response: {body}");
    let name = item["name"].as_str().unwrap_or_default();
    assert!(body.contains(name), "the live body lists the item: {body}");

    // The key went as a header, never in a URL: the spec request and "Try it out" both.
    let fetches = driver.execute("return window.__fetches;", vec![]).await?;
    let fetches = fetches.json().as_array().cloned().unwrap_or_default();
    let paths: Vec<&str> = fetches
        .iter()
        .filter_map(|f| f["url"].as_str()?.strip_prefix(address))
        .collect();
    assert!(
        paths.iter().any(|p| p.starts_with("/openapi.json"))
            && paths.iter().any(|p| p.starts_with("/items")),
        "the spec request and Try it out: {fetches:?}"
    );
    for fetch in &fetches {
        assert_eq!(fetch["key"], PAGE_KEY, "{fetch}");
        assert!(!fetch["url"].as_str().unwrap().contains("key="), "{fetch}");
    }

    let dir = target_dir().join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    list.scroll_into_view().await?;
    driver.screenshot(&dir.join("docs.png")).await?;
    println!("screenshot: {}", dir.join("docs.png").display());

    let violations = driver.execute("return window.__csp || [];", vec![]).await?;
    assert_eq!(
        violations.json(),
        &json!([]),
        "Content-Security-Policy violations"
    );

    // The policy is enforced and the recorder sees it: an inline script added now is blocked.
    driver
        .execute(
            "const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; \
             document.body.appendChild(s);",
            vec![],
        )
        .await?;
    let blocked = wait_for(
        "the blocked inline script",
        Duration::from_secs(10),
        || async {
            let v = driver
                .execute(
                    "return [window.__inline === undefined, window.__csp];",
                    vec![],
                )
                .await
                .ok()?;
            let v = v.json().clone();
            (v[1].as_array().is_some_and(|a| !a.is_empty())).then_some(v)
        },
    )
    .await;
    assert_eq!(blocked[0], json!(true), "the inline script ran: {blocked}");
    assert!(
        blocked[1][0]
            .as_str()
            .is_some_and(|d| d.starts_with("script-src")),
        "{blocked}"
    );
    Ok(())
}
