//! Whether a region's serving revision is what a roll-out would create, decided from the image
//! (by digest) and the configuration, never from a revision name; and when it is not, why, in
//! words for the plan.
//!
//! The configuration is every field of the service's template that Terraform owns: the template
//! minus the fields deploy sets (docs/deploy.md, "Who owns which field": the app container's
//! image, the template's annotations, which carry deploy's id, and the revision name, which
//! nobody sets). A revision is compared through the template it was created from: Cloud Run
//! copies the template's fields into the revision ("Manage revisions": a revision is an immutable
//! snapshot of the configuration; the v2 `Revision` message has the same fields as
//! `RevisionTemplate`).

use std::collections::BTreeSet;

use google_cloud_run_v2::model::{Container, Revision, RevisionTemplate};
use serde_json::Value;

use super::super::state::Region;
use super::super::traffic;

/// The annotation deploy puts on every template it sends, a new value for each revision it
/// creates. Cloud Run creates a revision only when the template changes (Google's own sample
/// "Update a Cloud Run service and create a tagged revision": "image or tag must be different from
/// previous revision"; google-github-actions/deploy-cloudrun#491), so without it a re-run after a
/// failed revision would send the failed revision's template again and get no new revision.
pub(crate) const DEPLOY_ID_ANNOTATION: &str = "deploy.xtask.items/id";

/// Label and annotation prefixes Google's systems set on resources; not configuration anyone
/// here owns.
const SYSTEM_PREFIXES: [&str; 6] = [
    "run.googleapis.com/",
    "cloud.googleapis.com/",
    "serving.knative.dev/",
    "autoscaling.knative.dev/",
    "client.knative.dev/",
    "goog-",
];

/// The container whose image deploy sets: the one named `app` (modules/cloudrun), else the
/// ingress container (the one with ports), else the first.
pub(crate) fn app_index(containers: &[Container]) -> usize {
    containers
        .iter()
        .position(|c| c.name == "app")
        .or_else(|| containers.iter().position(|c| !c.ports.is_empty()))
        .unwrap_or(0)
}

/// Why the region needs a new revision for `image` (its reference by digest; `None` while it is
/// not built yet), or `None` when the revision serving all its traffic runs that image with the
/// service's current configuration.
pub(crate) fn why_roll(region: &Region, image: Option<&str>) -> Option<String> {
    let Some(image) = image else {
        return Some("a new image".to_owned());
    };
    let Some(serving) = &region.serving else {
        return Some(match traffic::serving_all(&region.previous) {
            // The revision is gone (deleted, or beyond Cloud Run's 1000 per service).
            Some(name) => format!("revision {name} serves all traffic but could not be read"),
            None => format!(
                "no single revision serves all traffic ({})",
                traffic::describe(&region.previous)
            ),
        });
    };
    let name = traffic::short_revision(&serving.name);
    let runs = app_image(&serving.containers);
    if !same_image(runs, image) {
        return Some(format!(
            "revision {name} runs another image ({})",
            short_image(runs)
        ));
    }
    let template = region.service.template.clone().unwrap_or_default();
    let changed = differences(&template, &template_of(serving));
    if changed.is_empty() {
        None
    } else {
        Some(format!(
            "configuration changed since revision {name}: {}",
            changed.join(", ")
        ))
    }
}

fn app_image(containers: &[Container]) -> &str {
    containers
        .get(app_index(containers))
        .map_or("", |c| c.image.as_str())
}

/// Images are the same when their digests are (a revision may name the repository differently,
/// e.g. through a registry mirror); without a digest, when the references are.
fn same_image(a: &str, b: &str) -> bool {
    match (digest(a), digest(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn digest(image: &str) -> Option<&str> {
    image.rsplit_once("@sha256:").map(|(_, hex)| hex)
}

/// `sha256:<first 12 hex digits>`, or the reference when it has no digest.
fn short_image(image: &str) -> String {
    match digest(image) {
        Some(hex) => format!("sha256:{}", hex.get(..12).unwrap_or(hex)),
        None if image.is_empty() => "no image".to_owned(),
        None => image.to_owned(),
    }
}

/// The template `revision` was created from, as far as the revision shows it.
pub(crate) fn template_of(revision: &Revision) -> RevisionTemplate {
    let mut t = RevisionTemplate::default();
    t.labels.clone_from(&revision.labels);
    t.annotations.clone_from(&revision.annotations);
    t.scaling.clone_from(&revision.scaling);
    t.vpc_access.clone_from(&revision.vpc_access);
    t.timeout.clone_from(&revision.timeout);
    t.service_account.clone_from(&revision.service_account);
    t.containers.clone_from(&revision.containers);
    t.volumes.clone_from(&revision.volumes);
    t.execution_environment = revision.execution_environment.clone();
    t.encryption_key.clone_from(&revision.encryption_key);
    t.max_instance_request_concurrency = revision.max_instance_request_concurrency;
    t.service_mesh.clone_from(&revision.service_mesh);
    t.encryption_key_revocation_action = revision.encryption_key_revocation_action.clone();
    t.encryption_key_shutdown_duration
        .clone_from(&revision.encryption_key_shutdown_duration);
    t.session_affinity = revision.session_affinity;
    t.node_selector.clone_from(&revision.node_selector);
    t.gpu_zonal_redundancy_disabled = revision.gpu_zonal_redundancy_disabled;
    t
}

/// The Terraform-owned part of `template` as JSON: deploy's fields cleared, system labels
/// dropped, and `health_check_disabled` (which a `Revision` does not report) left out.
fn owned_by_terraform(template: &RevisionTemplate) -> Value {
    let mut t = template.clone();
    t.revision.clear();
    t.annotations.clear();
    t.labels
        .retain(|k, _| !SYSTEM_PREFIXES.iter().any(|p| k.starts_with(p)));
    t.health_check_disabled = false;
    let app = app_index(&t.containers);
    if let Some(c) = t.containers.get_mut(app) {
        c.image.clear();
    }
    serde_json::to_value(&t).unwrap_or(Value::Null)
}

/// What differs between two templates in the fields Terraform owns, named for people:
/// `env APP__FOO`, `volume page-token`, `resources of container app`, `scaling` …
pub(crate) fn differences(now: &RevisionTemplate, then: &RevisionTemplate) -> Vec<String> {
    let (now, then) = (owned_by_terraform(now), owned_by_terraform(then));
    let mut out = Vec::new();
    for key in keys(&now, &then) {
        let (a, b) = (&now[&key], &then[&key]);
        if a == b {
            continue;
        }
        match key.as_str() {
            "containers" => {
                for (name, x, y) in by_name(a, b) {
                    out.extend(container_differences(&name, x, y));
                }
            }
            "volumes" => out.extend(
                by_name(a, b)
                    .into_iter()
                    .filter(|(_, x, y)| x != y)
                    .map(|(name, _, _)| format!("volume {name}")),
            ),
            _ => out.push(key),
        }
    }
    out
}

fn container_differences(name: &str, now: &Value, then: &Value) -> Vec<String> {
    if now.is_null() || then.is_null() {
        let what = if now.is_null() { "removed" } else { "added" };
        return vec![format!("container {name} {what}")];
    }
    let mut out = Vec::new();
    for key in keys(now, then) {
        let (a, b) = (&now[&key], &then[&key]);
        if a == b {
            continue;
        }
        match key.as_str() {
            "env" => out.extend(by_name(a, b).into_iter().filter(|(_, x, y)| x != y).map(
                |(var, _, _)| {
                    if name == "app" {
                        format!("env {var}")
                    } else {
                        format!("env {var} of container {name}")
                    }
                },
            )),
            _ => out.push(format!("{key} of container {name}")),
        }
    }
    out
}

/// The keys of two JSON objects, sorted.
fn keys(a: &Value, b: &Value) -> BTreeSet<String> {
    [a, b]
        .iter()
        .filter_map(|v| v.as_object())
        .flat_map(|o| o.keys().cloned())
        .collect()
}

/// Two JSON arrays of named objects (containers, env variables, volumes) matched by `name` (by
/// position where there is none): each name with its entry on either side (`Null` when absent).
fn by_name<'a>(a: &'a Value, b: &'a Value) -> Vec<(String, &'a Value, &'a Value)> {
    const ABSENT: &Value = &Value::Null;
    let named = |v: &'a Value| -> Vec<(String, &'a Value)> {
        v.as_array()
            .map(|items| {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let name = item["name"]
                            .as_str()
                            .map_or_else(|| format!("#{i}"), str::to_owned);
                        (name, item)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (a, b) = (named(a), named(b));
    let mut out: Vec<(String, &Value, &Value)> = a
        .iter()
        .map(|(name, x)| {
            let y = b
                .iter()
                .find(|(n, _)| n == name)
                .map_or(ABSENT, |(_, y)| *y);
            (name.clone(), *x, y)
        })
        .collect();
    for (name, y) in &b {
        if !a.iter().any(|(n, _)| n == name) {
            out.push((name.clone(), ABSENT, *y));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use google_cloud_run_v2::model::{EnvVar, SecretVolumeSource, VersionToPath, Volume};

    use super::*;

    fn container(name: &str, image: &str, env: &[(&str, &str)]) -> Container {
        let mut c = Container::default();
        c.name = name.to_owned();
        c.image = image.to_owned();
        c.env = env
            .iter()
            .map(|(k, v)| {
                let mut e = EnvVar::default();
                e.name = (*k).to_owned();
                e.values = Some(google_cloud_run_v2::model::env_var::Values::Value(
                    (*v).to_owned(),
                ));
                e
            })
            .collect();
        c
    }

    fn secret_volume(name: &str, version: &str) -> Volume {
        let mut item = VersionToPath::default();
        item.version = version.to_owned();
        item.path = "current".to_owned();
        let mut secret = SecretVolumeSource::default();
        secret.secret = format!("{name}-secret");
        secret.items = vec![item];
        let mut v = Volume::default();
        v.name = name.to_owned();
        v.volume_type = Some(google_cloud_run_v2::model::volume::VolumeType::Secret(
            Box::new(secret),
        ));
        v
    }

    fn template(image: &str, foo: &str, version: &str) -> RevisionTemplate {
        let mut t = RevisionTemplate::default();
        t.containers = vec![
            container(
                "app",
                image,
                &[("APP_ENVIRONMENT", "dev"), ("APP__FOO", foo)],
            ),
            container("collector", "otel", &[]),
        ];
        t.volumes = vec![secret_volume("page-token", version)];
        t.labels.insert("team".into(), "items".into());
        t
    }

    #[test]
    fn deploys_own_fields_are_not_configuration() {
        let mut then = template("r/i@sha256:aaaa", "1", "latest");
        then.revision = "items-00002-abc".into();
        then.annotations
            .insert(DEPLOY_ID_ANNOTATION.into(), "one".into());
        then.labels.insert(
            "run.googleapis.com/startupProbeType".into(),
            "Custom".into(),
        );
        let mut now = template("r/i@sha256:bbbb", "1", "latest");
        now.annotations
            .insert(DEPLOY_ID_ANNOTATION.into(), "two".into());
        assert_eq!(differences(&now, &then), Vec::<String>::new());
    }

    #[test]
    fn terraform_changes_are_named() {
        let then = template("i", "1", "latest");
        let mut now = template("i", "2", "3");
        now.max_instance_request_concurrency = 40;
        now.containers[1].args = vec!["--config=x".into()];
        assert_eq!(
            differences(&now, &then),
            [
                "env APP__FOO",
                "args of container collector",
                "maxInstanceRequestConcurrency",
                "volume page-token",
            ]
        );
        let mut added = template("i", "1", "latest");
        added.containers[0]
            .env
            .push(container("x", "", &[("APP__NEW", "v")]).env[0].clone());
        assert_eq!(differences(&added, &then), ["env APP__NEW"]);
    }

    #[test]
    fn a_revision_compares_through_its_template() {
        let t = template("r/i@sha256:aaaa", "1", "latest");
        let mut revision = Revision::default();
        revision.name = "projects/p/locations/r/services/items/revisions/items-00002-abc".into();
        revision.containers = t.containers.clone();
        revision.volumes = t.volumes.clone();
        revision.labels = t.labels.clone();
        revision.uid = "ignored".into();
        assert_eq!(
            differences(&t, &template_of(&revision)),
            Vec::<String>::new()
        );
        assert!(same_image("a/b@sha256:aaaa", "c/d@sha256:aaaa"));
        assert!(!same_image("a/b@sha256:aaaa", "a/b@sha256:bbbb"));
        assert_eq!(
            short_image(&format!("r@sha256:{}", "c".repeat(64))),
            "sha256:cccccccccccc"
        );
    }
}
