//! A loopback OCI registry standing in for Artifact Registry: the push and pull endpoints of the
//! OCI Distribution Specification v1.1 (opencontainers/distribution-spec `spec.md`), in memory.
//!
//! Why here and not Debian's `docker-registry`: that package is installed by `.ci/run` only after
//! the tests, and a registry the test suite depends on would have to be installed first on every
//! machine; what deploy and the data plane need is a handful of the spec's endpoints, checked by
//! the tests below and by xtask's push client, which `xtask/release/tests/image.rs` also checks against
//! the real `docker-registry`.
//!
//! Implemented: `GET /v2/`; `HEAD/GET /v2/<name>/blobs/<digest>`; `POST /v2/<name>/blobs/uploads/`
//! (a session, or monolithic with `?digest=`); `PATCH` (a chunk) and `PUT …?digest=` (the rest)
//! on the session's Location; `PUT/HEAD/GET /v2/<name>/manifests/<tag or digest>`. Digests are
//! verified (`DIGEST_INVALID`); a manifest whose blobs are missing is refused
//! (`MANIFEST_BLOB_UNKNOWN`). Not implemented: authentication, deletion, tag listing, referrers,
//! cross-repository mounts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::lock;

#[derive(Debug, Default)]
struct Store {
    /// Blobs by digest (shared by all repositories, as content-addressed stores are).
    blobs: HashMap<String, Arc<Vec<u8>>>,
    /// (repository, tag or digest) → (media type, manifest digest).
    manifests: HashMap<(String, String), (String, String)>,
    uploads: HashMap<String, Vec<u8>>,
    next_upload: u64,
}

/// The registry, listening on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Registry {
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
}

fn sha256(bytes: &[u8]) -> String {
    let mut out = String::from("sha256:");
    for byte in Sha256::digest(bytes) {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The distribution spec's error body: `{"errors":[{"code","message"}]}`.
fn oci_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"errors": [{"code": code, "message": message}]}))
}

impl Registry {
    /// Starts the registry on `port` of 127.0.0.1 (0: any), on a thread of its own.
    pub fn start(port: u16) -> anyhow::Result<Self> {
        let store = Arc::new(Mutex::new(Store::default()));
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let data = web::Data::from(store.clone());
        crate::spawn_server("local-registry", move || {
            Ok(HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .app_data(web::PayloadConfig::new(1 << 30))
                    .default_service(web::to(handle))
            })
            // Large layers are hashed while the client waits on its kept-alive connection
            // (seconds in a debug build): generous timeouts.
            .keep_alive(std::time::Duration::from_secs(300))
            .client_request_timeout(std::time::Duration::from_secs(300))
            .client_disconnect_timeout(std::time::Duration::from_secs(30))
            .workers(2)
            .disable_signals()
            .listen(listener)?
            .run())
        })?;
        Ok(Self { addr, store })
    }

    /// `127.0.0.1:PORT`: the registry part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The manifest `reference` (tag or digest) of `repository`: (media type, bytes).
    pub fn manifest(&self, repository: &str, reference: &str) -> Option<(String, Arc<Vec<u8>>)> {
        let store = lock(&self.store);
        let (media_type, digest) = store
            .manifests
            .get(&(repository.to_owned(), reference.to_owned()))?;
        Some((media_type.clone(), store.blobs.get(digest)?.clone()))
    }

    pub fn blob(&self, digest: &str) -> Option<Arc<Vec<u8>>> {
        lock(&self.store).blobs.get(digest).cloned()
    }
}

/// `<name>/<kind>/<rest>` of a `/v2/…` path, `kind` being blobs, manifests or blobs/uploads.
fn split(path: &str) -> Option<(&str, &str, &str)> {
    for kind in ["/blobs/uploads", "/blobs/", "/manifests/"] {
        if let Some(at) = path.rfind(kind) {
            let rest = path[at + kind.len()..].trim_start_matches('/');
            return Some((&path[..at], kind.trim_matches('/'), rest));
        }
    }
    None
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    store: web::Data<Mutex<Store>>,
) -> HttpResponse {
    let path = req.path();
    if path == "/v2/" || path == "/v2" {
        return HttpResponse::Ok().json(json!({}));
    }
    let Some((name, kind, rest)) = path.strip_prefix("/v2/").and_then(split) else {
        return oci_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such endpoint");
    };
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let method = req.method().as_str();
    let mut s = lock(&store);
    match (kind, method) {
        ("blobs", "GET" | "HEAD") => match s.blobs.get(rest) {
            Some(blob) => {
                let mut response = HttpResponse::Ok();
                response
                    .insert_header(("Docker-Content-Digest", rest))
                    .content_type("application/octet-stream");
                if method == "HEAD" {
                    response
                        .insert_header(("Content-Length", blob.len().to_string()))
                        .finish()
                } else {
                    response.body(blob.as_ref().clone())
                }
            }
            None => oci_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", rest),
        },
        ("blobs/uploads", "POST") => {
            if let Some(digest) = query.get("digest") {
                return put_blob(&mut s, name, digest, body.to_vec());
            }
            s.next_upload += 1;
            let id = format!("u{}", s.next_upload);
            s.uploads.insert(id.clone(), Vec::new());
            HttpResponse::Accepted()
                .insert_header(("Location", format!("/v2/{name}/blobs/uploads/{id}")))
                .insert_header(("Range", "0-0"))
                .finish()
        }
        ("blobs/uploads", "PATCH") => {
            let Some(upload) = s.uploads.get_mut(rest) else {
                return oci_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", rest);
            };
            upload.extend_from_slice(&body);
            let end = upload.len().saturating_sub(1);
            HttpResponse::Accepted()
                .insert_header(("Location", format!("/v2/{name}/blobs/uploads/{rest}")))
                .insert_header(("Range", format!("0-{end}")))
                .finish()
        }
        ("blobs/uploads", "PUT") => {
            let Some(mut bytes) = s.uploads.remove(rest) else {
                return oci_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", rest);
            };
            let Some(digest) = query.get("digest") else {
                return oci_error(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    "digest is required",
                );
            };
            bytes.extend_from_slice(&body);
            put_blob(&mut s, name, digest, bytes)
        }
        ("manifests", "PUT") => put_manifest(&mut s, &req, name, rest, &body),
        ("manifests", "GET" | "HEAD") => {
            let Some((media_type, digest)) = s.manifests.get(&(name.to_owned(), rest.to_owned()))
            else {
                return oci_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", rest);
            };
            let bytes = s.blobs.get(digest).cloned().unwrap_or_default();
            let mut response = HttpResponse::Ok();
            response
                .insert_header(("Docker-Content-Digest", digest.as_str()))
                .content_type(media_type.as_str());
            if method == "HEAD" {
                response
                    .insert_header(("Content-Length", bytes.len().to_string()))
                    .finish()
            } else {
                response.body(bytes.as_ref().clone())
            }
        }
        _ => oci_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", path),
    }
}

fn put_blob(s: &mut Store, name: &str, digest: &str, bytes: Vec<u8>) -> HttpResponse {
    let actual = sha256(&bytes);
    if actual != digest {
        return oci_error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            &format!("content has digest {actual}, not {digest}"),
        );
    }
    s.blobs.insert(actual.clone(), Arc::new(bytes));
    HttpResponse::Created()
        .insert_header(("Location", format!("/v2/{name}/blobs/{actual}")))
        .insert_header(("Docker-Content-Digest", actual))
        .finish()
}

fn put_manifest(
    s: &mut Store,
    req: &HttpRequest,
    name: &str,
    reference: &str,
    body: &[u8],
) -> HttpResponse {
    let Ok(manifest) = serde_json::from_slice::<Value>(body) else {
        return oci_error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "not JSON");
    };
    let media_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| manifest["mediaType"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let referenced = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&manifest["config"]))
        .filter_map(|d| d["digest"].as_str());
    for digest in referenced {
        if !s.blobs.contains_key(digest) {
            return oci_error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", digest);
        }
    }
    let digest = sha256(body);
    if reference.starts_with("sha256:") && reference != digest {
        return oci_error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            &format!("manifest has digest {digest}, not {reference}"),
        );
    }
    s.blobs.insert(digest.clone(), Arc::new(body.to_vec()));
    for key in [reference, digest.as_str()] {
        s.manifests.insert(
            (name.to_owned(), key.to_owned()),
            (media_type.clone(), digest.clone()),
        );
    }
    HttpResponse::Created()
        .insert_header(("Location", format!("/v2/{name}/manifests/{digest}")))
        .insert_header(("Docker-Content-Digest", digest))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pushed_image_is_pulled_by_digest_and_tag() {
        let registry = Registry::start(0).expect("registry");
        let base = format!("http://{}", registry.host());
        let client = crate::tests::client();
        let layer = b"layer bytes".to_vec();
        let layer_digest = sha256(&layer);
        // A session upload in two chunks, then a wrong digest refused.
        let started = client
            .post(format!("{base}/v2/p/items/svc/blobs/uploads/"))
            .send()
            .await
            .expect("post");
        assert_eq!(started.status(), 202);
        let location = started.headers()["location"]
            .to_str()
            .expect("loc")
            .to_owned();
        let chunk = client
            .patch(format!("{base}{location}"))
            .body(layer[..5].to_vec())
            .send()
            .await
            .expect("patch");
        assert_eq!(chunk.status(), 202);
        let bad = client
            .put(format!("{base}{location}?digest=sha256:{}", "0".repeat(64)))
            .body(layer[5..].to_vec())
            .send()
            .await
            .expect("put");
        assert_eq!(bad.status(), 400);
        assert!(bad.text().await.expect("body").contains("DIGEST_INVALID"));
        // Monolithic.
        let put = client
            .post(format!(
                "{base}/v2/p/items/svc/blobs/uploads/?digest={layer_digest}"
            ))
            .body(layer.clone())
            .send()
            .await
            .expect("post");
        assert_eq!(put.status(), 201);
        let config = b"{}".to_vec();
        let config_digest = sha256(&config);
        let manifest = json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": config_digest, "size": 2},
            "layers": [{"digest": layer_digest, "size": layer.len()}]});
        let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
        // The config blob is missing.
        let refused = client
            .put(format!("{base}/v2/p/items/svc/manifests/v1"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest_bytes.clone())
            .send()
            .await
            .expect("put");
        assert_eq!(refused.status(), 400);
        client
            .post(format!(
                "{base}/v2/p/items/svc/blobs/uploads/?digest={config_digest}"
            ))
            .body(config)
            .send()
            .await
            .expect("post");
        let stored = client
            .put(format!("{base}/v2/p/items/svc/manifests/v1"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest_bytes.clone())
            .send()
            .await
            .expect("put");
        assert_eq!(stored.status(), 201);
        let digest = sha256(&manifest_bytes);
        assert_eq!(stored.headers()["docker-content-digest"], digest.as_str());
        for reference in ["v1", digest.as_str()] {
            let got = client
                .get(format!("{base}/v2/p/items/svc/manifests/{reference}"))
                .send()
                .await
                .expect("get");
            assert_eq!(got.status(), 200);
            assert_eq!(
                got.headers()["content-type"],
                "application/vnd.oci.image.manifest.v1+json"
            );
            assert_eq!(got.bytes().await.expect("body").to_vec(), manifest_bytes);
        }
        let blob = client
            .get(format!("{base}/v2/p/items/svc/blobs/{layer_digest}"))
            .send()
            .await
            .expect("get");
        assert_eq!(blob.bytes().await.expect("body").to_vec(), layer);
        assert!(registry.manifest("p/items/svc", &digest).is_some());
        let missing = client
            .head(format!(
                "{base}/v2/p/items/svc/blobs/sha256:{}",
                "1".repeat(64)
            ))
            .send()
            .await
            .expect("head");
        assert_eq!(missing.status(), 404);
    }
}
