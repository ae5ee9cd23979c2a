//! The control-plane calls `cargo xtask deploy` makes, through Google's own clients: Cloud Run
//! Admin API v2 (services get/patch, each patch with the etag of the service it was built from;
//! revisions get) and API Gateway v1 (configs
//! create/get/list/delete, gateways get/patch), long-running operations polled with
//! `google-cloud-lro`, progress shown with `indicatif`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use google_cloud_apigateway_v1::client::ApiGatewayService;
use google_cloud_apigateway_v1::model::{ApiConfig, Gateway, api_config};
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_lro::Poller;
use google_cloud_run_v2::client::{Revisions, Services};
use google_cloud_run_v2::model::{Revision, Service};
use indicatif::{ProgressBar, ProgressStyle};

/// Where the clients send requests and with which credentials.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connection {
    /// Cloud Run Admin API endpoint (default `https://run.googleapis.com`).
    pub(crate) run_endpoint: Option<String>,
    /// API Gateway endpoint (default `https://apigateway.googleapis.com`).
    pub(crate) apigateway_endpoint: Option<String>,
    /// Anonymous credentials (a local fake) instead of Application Default Credentials.
    pub(crate) anonymous: bool,
    /// First wait between polls of a long-running operation (default: the client's, 1 s).
    pub(crate) poll_interval: Option<Duration>,
}

/// The clients.
#[derive(Debug, Clone)]
pub(crate) struct Cloud {
    services: Services,
    revisions: Revisions,
    gateway: ApiGatewayService,
    ui: Ui,
}

/// An error from Google, with the call (and so the resource) that got it, said once.
///
/// `google_cloud_gax::error::Error`'s `Display` already embeds its source, which it also returns
/// from `source()`: wrapped as an error chain, `{:#}` repeats each cause at every level. So the
/// error becomes one message: the call, the HTTP status and Google's code and message.
fn google(what: String) -> impl FnOnce(google_cloud_gax::error::Error) -> anyhow::Error {
    move |e| {
        anyhow::Error::new(GoogleError {
            message: format!("{what}: {}", describe(&e)),
            conflict: is_conflict(&e),
        })
    }
}

/// A call Google refused or failed: the call and Google's words, and whether it was refused
/// because the resource changed since it was read.
#[derive(Debug)]
struct GoogleError {
    message: String,
    conflict: bool,
}

impl std::fmt::Display for GoogleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GoogleError {}

/// Whether Google refused an update because the etag it carried is stale: `ABORTED` (HTTP 409),
/// AIP-154 "Resource freshness validation"; Cloud Run v2's `Service.etag` "May be used to detect
/// modification conflict during updates" (`google/cloud/run/v2/service.proto`). A 409
/// `ALREADY_EXISTS` (a revision name taken) is not one.
fn is_conflict(e: &google_cloud_gax::error::Error) -> bool {
    use google_cloud_gax::error::rpc::Code;
    match e.status() {
        Some(status) => status.code == Code::Aborted,
        None => e.http_status_code() == Some(409),
    }
}

/// Whether `e` (from a call of [`Cloud`]) is Google refusing a stale etag.
pub(crate) fn is_stale(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<GoogleError>().is_some_and(|g| g.conflict))
}

/// `HTTP 403, PERMISSION_DENIED: <Google's message>` for a service error, else the error's text.
pub(crate) fn describe(e: &google_cloud_gax::error::Error) -> String {
    match e.status() {
        Some(status) => {
            let http = e
                .http_status_code()
                .map(|c| format!("HTTP {c}, "))
                .unwrap_or_default();
            format!("{http}{}: {}", status.code.name(), status.message)
        }
        None => e.to_string(),
    }
}

/// Checks that Application Default Credentials exist and produce a token within `timeout`,
/// before any client is built: without this each client retries its failing token requests and
/// every error repeats the same chain. `Err` is one sentence: what is missing and the fix.
pub(crate) async fn check_credentials(timeout: Duration) -> Result<(), String> {
    crate::oci::install_crypto_provider();
    let credentials = google_cloud_auth::credentials::Builder::default()
        .build()
        .map_err(|e| {
            no_credentials(&format!(
                "Application Default Credentials could not be loaded ({})",
                first_sentence(&e.to_string())
            ))
        })?;
    match tokio::time::timeout(timeout, credentials.headers(http::Extensions::new())).await {
        Ok(Ok(_)) => Ok(()),
        // Either an ADC file whose credentials give no token, or none and no metadata server.
        // The auth library's own text only says whether retrying may help, so it is not shown.
        Ok(Err(e)) if e.is_transient() => Err(no_credentials(
            "Application Default Credentials gave no token (the metadata server or Google's token endpoint did not answer)",
        )),
        Ok(Err(_)) => Err(no_credentials(
            "Application Default Credentials gave no token (the token request was refused)",
        )),
        Err(_) => Err(no_credentials(&format!(
            "Application Default Credentials gave no token within {timeout:?}"
        ))),
    }
}

/// The one sentence `cargo xtask deploy` prints when there are no usable Google credentials:
/// `missing`, then the fix.
fn no_credentials(missing: &str) -> String {
    format!(
        "no Google credentials: {missing}; on a workstation run `gcloud auth application-default login`, \
         in CI set GOOGLE_APPLICATION_CREDENTIALS to a credentials file (a workload identity \
         federation configuration or a service-account key) or run where the metadata server \
         provides a workload identity."
    )
}

/// The text up to the first `. ` or `: ` (auth errors add sentences and nest their sources).
fn first_sentence(text: &str) -> &str {
    [". ", ": "]
        .iter()
        .filter_map(|end| text.find(end))
        .min()
        .map_or(text, |at| &text[..at])
}

/// Whether an error is Google's NOT_FOUND.
pub(crate) fn is_not_found(e: &google_cloud_gax::error::Error) -> bool {
    e.http_status_code() == Some(404)
        || e.status()
            .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::NotFound)
}

macro_rules! configure {
    ($builder:expr, $endpoint:expr, $conn:expr) => {{
        let mut builder = $builder;
        if let Some(endpoint) = $endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if $conn.anonymous {
            builder = builder.with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        if let Some(interval) = $conn.poll_interval {
            builder = builder.with_polling_backoff_policy(
                ExponentialBackoffBuilder::new()
                    .with_initial_delay(interval)
                    .with_maximum_delay(interval * 4)
                    .build()
                    .context("polling backoff")?,
            );
        }
        builder
    }};
}
pub(crate) use configure;

impl Cloud {
    pub(crate) async fn connect(conn: &Connection, ui: Ui) -> anyhow::Result<Self> {
        crate::oci::install_crypto_provider();
        let services = configure!(Services::builder(), &conn.run_endpoint, conn)
            .build()
            .await
            .context("creating the Cloud Run client (Application Default Credentials)")?;
        let revisions = configure!(Revisions::builder(), &conn.run_endpoint, conn)
            .build()
            .await
            .context("creating the Cloud Run client (Application Default Credentials)")?;
        let gateway = configure!(
            ApiGatewayService::builder(),
            &conn.apigateway_endpoint,
            conn
        )
        .build()
        .await
        .context("creating the API Gateway client (Application Default Credentials)")?;
        Ok(Self {
            services,
            revisions,
            gateway,
            ui,
        })
    }

    pub(crate) async fn get_service(&self, name: &str) -> anyhow::Result<Service> {
        self.services
            .get_service()
            .set_name(name)
            .send()
            .await
            .map_err(google(format!("services.get {name}")))
    }

    /// Replaces the service (`services.patch`) and waits for the operation.
    pub(crate) async fn update_service(
        &self,
        service: Service,
        what: &str,
    ) -> anyhow::Result<Service> {
        let name = service.name.clone();
        let call = self.services.update_service().set_service(service);
        self.tracked(what, format!("services.patch {name}"), call.poller())
            .await
    }

    /// Replaces only the service's annotations (`services.patch?updateMask=annotations`; Cloud
    /// Run v2 `UpdateServiceRequest.update_mask`: "The list of fields to be updated"), sending the
    /// etag it carries, and waits without progress output: the deploy's lease and journal
    /// (`lease.rs`). A stale etag fails it ([`is_stale`]).
    pub(crate) async fn update_annotations(&self, service: Service) -> anyhow::Result<Service> {
        let name = service.name.clone();
        self.services
            .update_service()
            .set_service(service)
            .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["annotations"]))
            .poller()
            .until_done()
            .await
            .map_err(google(format!("services.patch {name} (annotations)")))
    }

    /// Revision `name`, if it exists.
    pub(crate) async fn get_revision(&self, name: &str) -> anyhow::Result<Option<Revision>> {
        match self.revisions.get_revision().set_name(name).send().await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(google(format!("revisions.get {name}"))(e)),
        }
    }

    pub(crate) async fn get_gateway(&self, name: &str) -> anyhow::Result<Gateway> {
        self.gateway
            .get_gateway()
            .set_name(name)
            .send()
            .await
            .map_err(google(format!("gateways.get {name}")))
    }

    /// Points `gateway` at `config` (`gateways.patch?updateMask=apiConfig`) and waits.
    pub(crate) async fn set_gateway_config(
        &self,
        gateway: &str,
        config: &str,
        what: &str,
    ) -> anyhow::Result<Gateway> {
        let mut body = Gateway::default();
        body.name = gateway.to_owned();
        body.api_config = config.to_owned();
        let call = self
            .gateway
            .update_gateway()
            .set_gateway(body)
            .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["api_config"]));
        self.tracked(what, format!("gateways.patch {gateway}"), call.poller())
            .await
    }

    /// The API config `name`, if it exists.
    pub(crate) async fn get_config(&self, name: &str) -> anyhow::Result<Option<ApiConfig>> {
        match self.gateway.get_api_config().set_name(name).send().await {
            Ok(config) => Ok(Some(config)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(google(format!("apis.configs.get {name}"))(e)),
        }
    }

    /// Creates config `id` under `api` from one OpenAPI document and waits until it is ACTIVE.
    pub(crate) async fn create_config(
        &self,
        api: &str,
        id: &str,
        file_name: &str,
        yaml: &str,
        gateway_service_account: &str,
    ) -> anyhow::Result<ApiConfig> {
        let mut file = api_config::File::default();
        file.path = file_name.to_owned();
        file.contents = yaml.as_bytes().to_vec().into();
        let mut document = api_config::OpenApiDocument::default();
        document.document = Some(file);
        let mut config = ApiConfig::default();
        config.gateway_service_account = gateway_service_account.to_owned();
        config.openapi_documents = vec![document];
        let call = self
            .gateway
            .create_api_config()
            .set_parent(api)
            .set_api_config_id(id)
            .set_api_config(config);
        let config = self
            .tracked(
                &format!("creating API config {id}"),
                format!("apis.configs.create {api}/configs/{id}"),
                call.poller(),
            )
            .await?;
        anyhow::ensure!(
            config.state == api_config::State::Active,
            "API config {id} finished in state {:?}, not ACTIVE",
            config.state
        );
        Ok(config)
    }

    /// Every config of `api`.
    pub(crate) async fn list_configs(&self, api: &str) -> anyhow::Result<Vec<ApiConfig>> {
        let mut configs = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .gateway
                .list_api_configs()
                .set_parent(api)
                .set_page_token(token)
                .send()
                .await
                .map_err(google(format!("apis.configs.list {api}")))?;
            configs.extend(page.api_configs);
            if page.next_page_token.is_empty() {
                return Ok(configs);
            }
            token = page.next_page_token;
        }
    }

    pub(crate) async fn delete_config(&self, name: &str) -> anyhow::Result<()> {
        let call = self.gateway.delete_api_config().set_name(name);
        self.tracked(
            &format!("deleting API config {name}"),
            format!("apis.configs.delete {name}"),
            call.poller(),
        )
        .await
    }

    /// Polls a long-running operation to its end, with progress shown as `what`.
    async fn tracked<R, M>(
        &self,
        what: &str,
        call: String,
        poller: impl Poller<R, M>,
    ) -> anyhow::Result<R> {
        let op = self.ui.operation(what);
        let result = poller.until_done().await.map_err(google(call));
        op.finish(result.is_ok());
        result
    }
}

/// Progress output: a spinner per long operation on a terminal, one line per finished operation
/// otherwise (CI logs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ui {
    interactive: bool,
}

impl Ui {
    pub(crate) fn new() -> Self {
        use std::io::IsTerminal as _;
        Self {
            interactive: std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn operation(&self, what: &str) -> Operation {
        let bar = self.interactive.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Operation {
            what: what.to_owned(),
            bar,
            started: Instant::now(),
        }
    }

    /// A line of output that does not tear a spinner.
    pub(crate) fn say(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// One long operation in progress.
#[derive(Debug)]
pub(crate) struct Operation {
    what: String,
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Operation {
    pub(crate) fn finish(self, ok: bool) {
        let outcome = if ok { "done" } else { "FAILED" };
        let line = format!(
            "  {} {}: {outcome} in {:.1}s",
            if ok { "✓" } else { "✗" },
            self.what,
            self.started.elapsed().as_secs_f64()
        );
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{line}");
    }
}
