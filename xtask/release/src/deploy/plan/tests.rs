//! `Plan::new` on hand-made region states: the steps a roll-out takes.

use google_cloud_run_v2::model::{Container, EnvVar, Revision, RevisionTemplate, Service};

use super::*;

/// The revision serving the image of [`inputs`] in the regions that run it.
const REVISION: &str = "items-00002-abc";
const NEW: &str = NEW_REVISION;
const TAG: &str = "deploy-aaaaaaaaaaaa";

fn image(fill: char) -> String {
    format!("r/items-service@sha256:{}", fill.to_string().repeat(64))
}

fn app(image: &str, foo: &str) -> Container {
    let mut c = Container::default();
    c.name = "app".to_owned();
    c.image = image.to_owned();
    let mut e = EnvVar::default();
    e.name = "APP__FOO".to_owned();
    e.values = Some(google_cloud_run_v2::model::env_var::Values::Value(
        foo.to_owned(),
    ));
    c.env = vec![e];
    c
}

fn env() -> Environment {
    let root = crate::util::project_root();
    Environment::load(&root.join("deploy/environments/dev.toml")).expect("dev.toml")
}

fn split(revision: &str, percent: i32, tag: &str) -> Split {
    Split {
        revision: revision.to_owned(),
        percent,
        tag: tag.to_owned(),
    }
}

/// A region whose `serving` revision has all traffic: [`REVISION`] runs image `a` (and was
/// tagged by the deploy that made it), any other an older image; the service's template is image
/// `a`'s with `APP__FOO=1`.
fn region(name: &str, serving: &str, gateway_config: &str, config: &str) -> Region {
    let service_name = format!("projects/p/locations/{name}/services/items");
    let mut service = Service::default();
    let mut template = RevisionTemplate::default();
    template.containers = vec![app(&image('a'), "1")];
    service.template = Some(template);
    let mut revision = Revision::default();
    revision.name = format!("{service_name}/revisions/{serving}");
    let runs = if serving == REVISION { 'a' } else { '0' };
    revision.containers = vec![app(&image(runs), "1")];
    let tag = if serving == REVISION { TAG } else { "" };
    Region {
        name: name.to_owned(),
        service_name,
        service,
        previous: vec![split(serving, 100, tag)],
        serving: Some(revision),
        gateway_name: format!("projects/p/locations/{name}/gateways/gw-{name}"),
        gateway_config: format!("apis/items-api/configs/{gateway_config}"),
        gateway_hostname: format!("gw-{name}.example"),
        config_id: config.to_owned(),
        config_name: format!("apis/items-api/configs/{config}"),
        config_file: format!("{config}.yaml"),
        yaml: String::new(),
        config_exists: false,
    }
}

fn inputs(canary: Option<i32>) -> Inputs {
    Inputs {
        image: Image::Given(image('a')),
        canary,
        canary_wait: 60,
        keep_api_configs: 10,
        gate: None,
    }
}

fn state(regions: Vec<Region>) -> State {
    State {
        regions,
        configs: vec!["apis/items-api/configs/old".to_owned()],
        served_elsewhere: Vec::new(),
    }
}

#[test]
fn pruning_skips_the_newest_and_those_in_use() {
    let names: Vec<String> = ["e", "d", "c", "b", "a"].map(String::from).to_vec();
    assert_eq!(prune_selection(&names, 2, &["a".to_owned()]), ["c", "b"]);
    assert_eq!(prune_selection(&names, 9, &[]), Vec::<String>::new());
}

#[test]
fn the_canary_moves_every_region_before_the_hold_and_the_checks() {
    let regions = vec![
        region("r1", "items-old", "old", "new1"),
        region("r2", "items-old", "old", "new2"),
    ];
    let plan = Plan::new(&env(), state(regions), inputs(Some(10)));
    assert_eq!(plan.tag, TAG);
    let staged = vec![split("items-old", 100, ""), split(NEW, 0, TAG)];
    let canary = vec![split(NEW, 10, TAG), split("items-old", 90, "")];
    let full = vec![split(NEW, 100, TAG)];
    // The migrations first, before any revision.
    let mut expected = vec![Step::Migrate {
        job: "projects/items-dev-4821/locations/europe-west1/jobs/items-migrate".to_owned(),
    }];
    for region in [0, 1] {
        expected.push(Step::StageRevision {
            region,
            why: "revision items-old runs another image (sha256:000000000000)".to_owned(),
            splits: staged.clone(),
        });
        expected.push(Step::CheckRevision {
            region,
            canary: false,
        });
    }
    for region in [0, 1] {
        expected.push(Step::Canary {
            region,
            percent: 10,
            splits: canary.clone(),
        });
    }
    expected.push(Step::HoldCanary { seconds: 60 });
    for region in [0, 1] {
        expected.push(Step::CheckRevision {
            region,
            canary: true,
        });
    }
    for region in [0, 1] {
        expected.push(Step::FullTraffic {
            region,
            splits: full.clone(),
        });
    }
    for region in [0, 1] {
        expected.extend([
            Step::CreateApiConfig { region },
            Step::PointGateway { region },
            Step::CheckGateway { region },
        ]);
    }
    assert_eq!(plan.steps, expected);
    assert!(plan.changes_anything());
}

#[test]
fn a_region_already_serving_is_left_alone() {
    let regions = vec![
        region("r1", REVISION, "new1", "new1"),
        region("r2", "items-old", "old", "new2"),
    ];
    let mut r2_state = state(regions);
    r2_state.regions[1].config_exists = true;
    let plan = Plan::new(&env(), r2_state, inputs(None));
    assert_eq!(
        plan.steps,
        [
            Step::Migrate {
                job: "projects/items-dev-4821/locations/europe-west1/jobs/items-migrate".to_owned()
            },
            Step::RevisionServing { region: 0 },
            Step::StageRevision {
                region: 1,
                why: "revision items-old runs another image (sha256:000000000000)".to_owned(),
                splits: vec![split("items-old", 100, ""), split(NEW, 0, TAG)],
            },
            Step::CheckRevision {
                region: 1,
                canary: false
            },
            Step::FullTraffic {
                region: 1,
                splits: vec![split(NEW, 100, TAG)],
            },
            Step::GatewayServing { region: 0 },
            Step::ReuseApiConfig { region: 1 },
            Step::PointGateway { region: 1 },
            Step::CheckGateway { region: 1 },
        ]
    );
}

#[test]
fn nothing_changes_when_every_region_serves_the_revision_and_config() {
    let regions = vec![region("r1", REVISION, "new1", "new1")];
    let mut state = state(regions);
    // Eleven configs, the served one the newest: the oldest goes.
    state.configs = std::iter::once("apis/items-api/configs/new1".to_owned())
        .chain((0..10).rev().map(|n| format!("c{n}")))
        .collect();
    let plan = Plan::new(&env(), state, inputs(Some(10)));
    assert!(!plan.changes_anything());
    assert_eq!(
        plan.steps,
        [
            Step::RevisionServing { region: 0 },
            Step::GatewayServing { region: 0 },
            Step::DeleteApiConfig {
                name: "c0".to_owned()
            },
        ]
    );
}

#[test]
fn two_regions_rendering_one_config_create_it_once() {
    let regions = vec![
        region("r1", REVISION, "old", "same"),
        region("r2", REVISION, "old", "same"),
    ];
    let plan = Plan::new(&env(), state(regions), inputs(None));
    let configs: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s,
                Step::CreateApiConfig { .. } | Step::ReuseApiConfig { .. }
            )
        })
        .collect();
    assert_eq!(
        configs,
        [
            &Step::CreateApiConfig { region: 0 },
            &Step::ReuseApiConfig { region: 1 }
        ]
    );
}

#[test]
fn without_an_image_the_plan_names_placeholders_and_stages_every_region() {
    let mut inputs = inputs(None);
    inputs.image = Image::ToBuild("r/items-service:git-abc".to_owned());
    // Without the digest nothing can be serving it.
    let r1 = region("r1", REVISION, "x", "x");
    let plan = Plan::new(&env(), state(vec![r1]), inputs);
    let text = plan.render();
    assert!(
        text.contains(
            "1. image: build the release binary and the OCI image, push r/items-service:git-abc"
        ),
        "{text}"
    );
    assert!(text.contains("tag deploy-<digest prefix>"), "{text}");
    assert!(
        matches!(&plan.steps[1], Step::StageRevision { why, .. } if why == "a new image"),
        "{:?}",
        plan.steps
    );
}

#[test]
fn a_configuration_change_rolls_the_same_image_and_moves_its_tag() {
    let mut r1 = region("r1", REVISION, "new1", "new1");
    // Terraform changed an env value since the revision was created.
    if let Some(t) = r1.service.template.as_mut() {
        t.containers[0] = app(&image('a'), "2");
    }
    let plan = Plan::new(&env(), state(vec![r1]), inputs(None));
    assert!(plan.changes_anything());
    assert_eq!(
        plan.steps[1],
        Step::StageRevision {
            region: 0,
            why: format!("configuration changed since revision {REVISION}: env APP__FOO"),
            // The tag leaves the revision serving now (a tag names one revision).
            splits: vec![split(REVISION, 100, ""), split(NEW, 0, TAG)],
        }
    );
    let text = plan.render();
    assert!(
        text.contains(&format!(
            "r1: create a revision on projects/p/locations/r1/services/items (configuration changed since revision {REVISION}: env APP__FOO; serving now: {REVISION} 100% (tag {TAG})) → {REVISION} 100%, {NEW} 0% (tag {TAG})"
        )),
        "{text}"
    );
    assert!(text.contains(" 2. migrations, then revisions"), "{text}");
    assert!(
        text.contains("migrations: point job projects/items-dev-4821/locations/europe-west1/jobs/items-migrate at the image, run it"),
        "{text}"
    );
}

#[test]
fn split_traffic_or_an_unreadable_revision_rolls() {
    let mut split_region = region("r1", REVISION, "new1", "new1");
    split_region.previous = vec![split(REVISION, 90, TAG), split("items-old", 10, "")];
    split_region.serving = None;
    let mut gone = region("r2", REVISION, "new2", "new2");
    gone.serving = None;
    let plan = Plan::new(&env(), state(vec![split_region, gone]), inputs(None));
    let why: Vec<&str> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::StageRevision { why, .. } => Some(why.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        why,
        [
            format!(
                "no single revision serves all traffic ({REVISION} 90% (tag {TAG}), items-old 10%)"
            ),
            format!("revision {REVISION} serves all traffic but could not be read"),
        ]
    );
}

#[test]
fn resolving_names_the_new_revision() {
    assert_eq!(
        resolve(
            &[split("old", 90, ""), split(NEW, 10, TAG)],
            "items-00003-xyz"
        ),
        [split("old", 90, ""), split("items-00003-xyz", 10, TAG)]
    );
}
