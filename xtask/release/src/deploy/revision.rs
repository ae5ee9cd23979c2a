//! Creating a region's new revision: the service's template as it is (Terraform's fields), with
//! deploy's own fields set (docs/deploy.md, "Who owns which field"): the app container's image, a
//! new deploy id annotation, no revision name, and the client. Traffic is sent pinned as it is,
//! so the revision starts with none. Cloud Run names the revision
//! (`RevisionTemplate.revision`: "If this field is omitted, it will be automatically generated
//! based on the Service name"), and the service the operation returns says which it is
//! (`Service.latest_created_revision`: "Name of the last created revision").

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::ensure;
use google_cloud_run_v2::model::Service;

use super::cloud::Cloud;
use super::plan::configuration::{DEPLOY_ID_ANNOTATION, app_index};
use super::traffic::{self, Split};

/// `Service.client` of every service deploy updates ("Arbitrary identifier for the API client").
pub(crate) const CLIENT: &str = "cargo-xtask-deploy";

/// An id no other revision created by deploy has: the time in nanoseconds and the process id.
fn deploy_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", std::process::id())
}

/// `service` to send so that Cloud Run creates a revision running `image`, tagged with `id`, with
/// no traffic moving.
pub(crate) fn new_revision_body(service: &Service, image: &str, id: &str) -> Service {
    let mut body = service.clone();
    let template = body.template.get_or_insert_with(Default::default);
    // Cloud Run names it; a name deploy sent once would refuse any later change of the template
    // by another client with 409 (hashicorp/terraform-provider-google#14569).
    template.revision.clear();
    template
        .annotations
        .insert(DEPLOY_ID_ANNOTATION.to_owned(), id.to_owned());
    if template.containers.is_empty() {
        template.containers.push(Default::default());
    }
    let app = app_index(&template.containers);
    template.containers[app].image = image.to_owned();
    // "latest" resolved to the revision it means now: the new one must not take traffic when it
    // becomes ready.
    body.traffic = traffic::pinned(service)
        .iter()
        .map(Split::to_target)
        .collect();
    CLIENT.clone_into(&mut body.client);
    env!("CARGO_PKG_VERSION").clone_into(&mut body.client_version);
    body
}

/// Creates a revision of `service` running `image` and waits until it is ready. The service as
/// updated and the new revision's short name.
pub(crate) async fn create(
    cloud: &Cloud,
    service: &Service,
    image: &str,
    what: &str,
) -> anyhow::Result<(Service, String)> {
    let before = service.latest_created_revision.clone();
    let body = new_revision_body(service, image, &deploy_id());
    let updated = cloud.update_service(body, what).await?;
    let created = &updated.latest_created_revision;
    ensure!(
        !created.is_empty() && *created != before,
        "Cloud Run reports no new revision of {} (latest created: {})",
        service.name,
        if created.is_empty() { "none" } else { created }
    );
    let name = traffic::short_revision(created);
    Ok((updated, name))
}

#[cfg(test)]
mod tests {
    use google_cloud_run_v2::model::{Container, TrafficTarget, TrafficTargetAllocationType};

    use super::*;

    #[test]
    fn the_body_sets_only_deploys_fields_and_pins_the_traffic() {
        let mut service = Service::default();
        service.name = "projects/p/locations/r/services/items".into();
        service.latest_ready_revision = format!("{}/revisions/items-00001-abc", service.name);
        let mut latest = TrafficTarget::default();
        latest.r#type = TrafficTargetAllocationType::Latest;
        latest.percent = 100;
        service.traffic = vec![latest];
        let mut template = google_cloud_run_v2::model::RevisionTemplate::default();
        template.revision = "items-aaaaaaaaaaaa".into();
        let (mut collector, mut app) = (Container::default(), Container::default());
        collector.name = "collector".into();
        collector.image = "otel".into();
        app.name = "app".into();
        app.image = "old".into();
        template.containers = vec![collector, app];
        template.labels.insert("team".into(), "items".into());
        service.template = Some(template);

        let body = new_revision_body(&service, "r/i@sha256:bbbb", "id-1");
        let sent = body.template.clone().expect("template");
        assert_eq!(sent.revision, "");
        assert_eq!(sent.containers[1].image, "r/i@sha256:bbbb");
        assert_eq!(sent.containers[0].image, "otel");
        assert_eq!(sent.annotations[DEPLOY_ID_ANNOTATION], "id-1");
        assert_eq!(sent.labels["team"], "items");
        assert_eq!(body.traffic.len(), 1);
        assert_eq!(body.traffic[0].revision, "items-00001-abc");
        assert_eq!(
            body.traffic[0].r#type,
            TrafficTargetAllocationType::Revision
        );
        assert_eq!(body.client, CLIENT);
        assert_ne!(deploy_id(), "");
    }
}
