//! `Plan::new` on hand-made region states: the steps a roll-out takes.

use google_cloud_run_v2::model::Service;

use super::*;

const REVISION: &str = "items-aaaaaaaaaaaa";
const TAG: &str = "deploy-aaaaaaaaaaaa";

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

fn region(name: &str, serving: &str, gateway_config: &str, config: &str) -> Region {
    Region {
        name: name.to_owned(),
        service_name: format!("projects/p/locations/{name}/services/items"),
        service: Service::default(),
        previous: vec![split(serving, 100, "")],
        revision_exists: serving == REVISION,
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
        image: Image::Given(format!("r/items-service@sha256:{}", "a".repeat(64))),
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
    assert_eq!((plan.revision.as_str(), plan.tag.as_str()), (REVISION, TAG));
    let staged = vec![split("items-old", 100, ""), split(REVISION, 0, TAG)];
    let canary = vec![split(REVISION, 10, TAG), split("items-old", 90, "")];
    let full = vec![split(REVISION, 100, TAG)];
    let mut expected = Vec::new();
    for region in [0, 1] {
        expected.push(Step::StageRevision {
            region,
            create: true,
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
            Step::RevisionServing { region: 0 },
            Step::StageRevision {
                region: 1,
                create: true,
                splits: vec![split("items-old", 100, ""), split(REVISION, 0, TAG)],
            },
            Step::CheckRevision {
                region: 1,
                canary: false
            },
            Step::FullTraffic {
                region: 1,
                splits: vec![split(REVISION, 100, TAG)],
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
    // Without the digest the revision cannot be looked up, so none counts as existing.
    let mut r1 = region("r1", REVISION, "x", "x");
    r1.revision_exists = false;
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
        matches!(plan.steps[0], Step::StageRevision { create: true, .. }),
        "{:?}",
        plan.steps
    );
}
