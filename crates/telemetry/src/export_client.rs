//! The HTTP client of every OTLP export (spans, ours or the library's, and metrics): reqwest on
//! the service's Tokio runtime, the configured headers and compression, and Google credentials
//! for the `gcp` exporter.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

use crate::{Compression, Error, Exporter, PlatformIdentity, TelemetrySettings};

/// The exporters' HTTP client: reqwest on the service's runtime, with Google credentials for the
/// `gcp` exporter.
#[derive(Debug, Clone)]
pub(crate) struct ExportClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    google: Option<Arc<GoogleAuth>>,
    /// `telemetry.otlp_headers`: the only extra headers sent (see [`ExportClient::send`]).
    headers: Arc<http::HeaderMap>,
    compression: Compression,
}

#[derive(Debug)]
struct GoogleAuth {
    credentials: google_cloud_auth::credentials::Credentials,
    user_project: http::HeaderValue,
}

impl ExportClient {
    pub(crate) fn new(
        settings: &TelemetrySettings,
        identity: &PlatformIdentity,
    ) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "telemetry must be started inside the Tokio runtime")?;
        let google = if settings.exporter == Exporter::Gcp {
            let project = identity.project_id.as_deref().ok_or(
                "telemetry.exporter = \"gcp\" needs a project: set telemetry.project_id or \
                 GOOGLE_CLOUD_PROJECT (on Cloud Run the metadata server gives it)",
            )?;
            let credentials = google_cloud_auth::credentials::Builder::default()
                .with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
                .build()
                .map_err(|e| format!("Google credentials for the gcp exporter: {e}"))?;
            Some(Arc::new(GoogleAuth {
                credentials,
                user_project: http::HeaderValue::from_str(project)?,
            }))
        } else {
            None
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.export_timeout_ms))
            .build()?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in crate::env::parse_key_values(&settings.otlp_headers.0)? {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("telemetry.otlp_headers: {name:?}: {e}"))?;
            let value = http::HeaderValue::from_str(&value)
                .map_err(|e| format!("telemetry.otlp_headers: value of {name}: {e}"))?;
            headers.append(name, value);
        }
        Ok(Self {
            http,
            runtime,
            google,
            headers: Arc::new(headers),
            compression: settings.otlp_compression,
        })
    }

    /// Sends one export request (spans or metrics) as the settings say. Its headers are the
    /// body's `Content-Type`/`Content-Encoding` plus `telemetry.otlp_headers`, nothing else:
    /// `opentelemetry-otlp` also adds `OTEL_EXPORTER_OTLP_*HEADERS` from the environment by
    /// itself, which our settings already resolved (an `APP__…` value winning). The body is
    /// gzipped here when `telemetry.otlp_compression = "gzip"`; for the same reason as the
    /// headers, a body the library gzipped on its own (`OTEL_EXPORTER_OTLP_COMPRESSION`) is
    /// inflated again when the settings say `none`.
    async fn send(self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, mut body) = request.into_parts();
        let mut headers = http::HeaderMap::new();
        for name in [http::header::CONTENT_TYPE, http::header::CONTENT_ENCODING] {
            if let Some(value) = parts.headers.get(&name) {
                headers.insert(name, value.clone());
            }
        }
        if self.compression == Compression::None
            && headers
                .get(http::header::CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"))
        {
            let mut inflated = Vec::with_capacity(body.len() * 4);
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(&body[..]),
                &mut inflated,
            )?;
            body = Bytes::from(inflated);
            headers.remove(http::header::CONTENT_ENCODING);
        }
        if self.compression == Compression::Gzip
            && !headers.contains_key(http::header::CONTENT_ENCODING)
        {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 3 + 64),
                flate2::Compression::default(),
            );
            std::io::Write::write_all(&mut encoder, &body)?;
            body = Bytes::from(encoder.finish()?);
            headers.insert(
                http::header::CONTENT_ENCODING,
                http::HeaderValue::from_static("gzip"),
            );
        }
        headers.extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(google) = &self.google {
            let auth = google
                .credentials
                .headers(http::Extensions::new())
                .await
                .map_err(|e| format!("Google credentials: {e}"))?;
            if let google_cloud_auth::credentials::CacheableResource::New { data, .. } = auth {
                headers.extend(data);
            }
            headers.insert("x-goog-user-project", google.user_project.clone());
        }
        let response = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(headers)
            .body(body)
            .send()
            .await?;
        let mut builder = Response::builder().status(response.status());
        if let Some(h) = builder.headers_mut() {
            *h = response.headers().clone();
        }
        let body = response.bytes().await?;
        Ok(builder.body(body)?)
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // The SDK calls this from its own thread; the request itself runs on the runtime.
        self.runtime.spawn(self.clone().send(request)).await?
    }
}
