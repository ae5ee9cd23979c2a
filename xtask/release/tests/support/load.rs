//! A client load through the local cloud's gateways, counted per phase of a test: tasks that page
//! through `GET /items` (following `next_page_token` to the last page, then from the start again)
//! and tasks that read one item, each about 20 requests a second.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Requests through the gateways (round robin over the regions), with the API key and a token.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub gateways: Arc<Vec<String>>,
    pub key: String,
    pub token: String,
}

impl Client {
    pub fn new(gateways: Vec<String>, key: &str, token: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            gateways: Arc::new(gateways),
            key: key.to_owned(),
            token: token.to_owned(),
        }
    }

    pub fn request(
        &self,
        n: usize,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let base = &self.gateways[n % self.gateways.len()];
        let sep = if path.contains('?') { '&' } else { '?' };
        self.http
            .request(method, format!("{base}{path}{sep}key={}", self.key))
            .bearer_auth(&self.token)
    }

    /// `POST /items` with an Idempotency-Key; the new item's id.
    pub async fn create(&self, n: usize, name: &str) -> String {
        let response = self
            .request(n, reqwest::Method::POST, "/items")
            .header("idempotency-key", format!("load-{name}"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "creating {name}");
        let body: serde_json::Value = response.json().await.unwrap();
        match &body["id"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// One request's phase and outcome (status, or the transport error).
struct Record {
    phase: usize,
    paging: bool,
    outcome: Result<u16, String>,
}

/// A phase's figures: requests sent, of which page requests with a token, 2xx, and the other
/// answers counted by status or error.
#[derive(Debug, Default)]
pub struct Figures {
    pub sent: usize,
    pub next_pages: usize,
    pub ok: usize,
    pub other: BTreeMap<String, usize>,
}

/// The running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    records: Arc<Mutex<Vec<Record>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    /// `pagers` tasks paging with `page_size`, `readers` tasks reading item `item`.
    pub fn start(
        client: Client,
        pagers: usize,
        page_size: usize,
        readers: usize,
        item: String,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let records = Arc::new(Mutex::new(Vec::new()));
        let (s, p, r) = (stop.clone(), phase.clone(), records.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for task in 0..pagers + readers {
                    let (client, item) = (client.clone(), item.clone());
                    let (stop, phase, records) = (s.clone(), p.clone(), r.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_millis(50));
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        let mut n = task;
                        let mut token: Option<String> = None;
                        while !stop.load(Ordering::SeqCst) {
                            tick.tick().await;
                            n += 1;
                            let now = phase.load(Ordering::SeqCst);
                            let paging = task < pagers;
                            let path = if paging {
                                match &token {
                                    Some(t) => {
                                        format!("/items?page_size={page_size}&page_token={t}")
                                    }
                                    None => format!("/items?page_size={page_size}"),
                                }
                            } else {
                                format!("/items/{item}")
                            };
                            let next_page = token.is_some();
                            let outcome =
                                match client.request(n, reqwest::Method::GET, &path).send().await {
                                    Ok(response) => {
                                        let status = response.status().as_u16();
                                        if paging {
                                            let body: serde_json::Value =
                                                response.json().await.unwrap_or_default();
                                            // The next page, or the first again after the last or
                                            // a refused token.
                                            token =
                                                body["next_page_token"].as_str().map(str::to_owned);
                                        }
                                        Ok(status)
                                    }
                                    Err(e) => {
                                        token = None;
                                        Err(e.to_string())
                                    }
                                };
                            records.lock().unwrap().push(Record {
                                phase: now,
                                paging: paging && next_page,
                                outcome,
                            });
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            });
        });
        Self {
            stop,
            phase,
            records,
            thread,
        }
    }

    pub fn enter(&self, phase: usize) {
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// Stops the load; the figures of phases `0..phases`.
    pub fn finish(self, phases: usize) -> Vec<Figures> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        let records = std::mem::take(&mut *self.records.lock().unwrap());
        let mut out: Vec<Figures> = (0..phases).map(|_| Figures::default()).collect();
        for r in records {
            let Some(f) = out.get_mut(r.phase) else {
                continue;
            };
            f.sent += 1;
            f.next_pages += usize::from(r.paging);
            match r.outcome {
                Ok(s) if (200..300).contains(&s) => f.ok += 1,
                Ok(s) => *f.other.entry(s.to_string()).or_insert(0) += 1,
                Err(e) => {
                    let what = if e.starts_with("error sending request") {
                        "not sent (connection refused or reset)".to_owned()
                    } else {
                        e
                    };
                    *f.other.entry(what).or_insert(0) += 1;
                }
            }
        }
        out
    }
}
