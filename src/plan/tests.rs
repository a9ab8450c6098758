use super::*;
use crate::model::{Service, StageSpec, Volume, VolumeSource};

fn stage(services: Vec<Service>) -> StageSpec {
    StageSpec {
        project: "p".into(),
        name: "local".into(),
        services,
        servers: vec![],
        protect: false,
        auto_suspend: None,
        ..Default::default()
    }
}

fn svc(name: &str, deps: &[&str]) -> Service {
    Service {
        name: name.into(),
        image: "busybox:latest".into(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

fn observed(spec: &StageSpec, svc: &Service, state: RunState) -> ObservedContainer {
    let hash = ConfigHash::of(svc, "img");
    ObservedContainer {
        id: format!("id-{}", svc.name),
        name: spec.container_name(&svc.name),
        stage: spec.name.clone(),
        service: svc.name.clone(),
        state,
        health: None,
        config_hash: Some(hash.hash.clone()),
        field_hashes: hash.fields.clone(),
        image_id: Some("img".into()),
        created: 0,
        status_text: String::new(),
        ports: vec![],
        environment: None,
    }
}

fn desired(spec: &StageSpec) -> Vec<Desired<'_>> {
    spec.services.iter().map(|s| Desired { service: s, hash: ConfigHash::of(s, "img") }).collect()
}

#[test]
fn fresh_stage_creates_network_volume_and_containers_in_dependency_order() {
    let mut db = svc("db", &[]);
    db.volumes.push(Volume {
        source: VolumeSource::Named { name: "data".into() },
        target: "/data".into(),
        read_only: false,
    });
    let spec = stage(vec![svc("web", &["db"]), db]);
    let plan = plan_up(&spec, &desired(&spec), &ObservedStage::default(), false, false);
    let lines: Vec<String> = plan.actions.iter().map(render_action).collect();
    assert_eq!(lines, vec!["+ network p-local", "+ volume p-local-data", "+ container db", "+ container web"]);
    assert_eq!(PlanSummary::of(&plan).to_string(), "Plan: 4 to add, 0 to change, 0 to replace, 0 to destroy.");
}

#[test]
fn converged_stage_plans_nothing() {
    let spec = stage(vec![svc("web", &["db"]), svc("db", &[])]);
    let obs = ObservedStage {
        network_exists: true,
        volumes: Default::default(),
        containers: spec.services.iter().map(|s| observed(&spec, s, RunState::Running)).collect(),
    };
    let plan = plan_up(&spec, &desired(&spec), &obs, false, false);
    assert!(plan.is_empty(), "{:?}", plan.actions);
    assert!(plan.decisions.values().all(|d| *d == Decision::Keep));
}

#[test]
fn changed_environment_recreates_only_that_service_and_names_the_key() {
    let spec = stage(vec![svc("web", &[]), svc("db", &[])]);
    let mut obs = ObservedStage {
        network_exists: true,
        volumes: Default::default(),
        containers: spec.services.iter().map(|s| observed(&spec, s, RunState::Running)).collect(),
    };
    let mut changed = spec.clone();
    changed.services[0].environment.insert("LOG_LEVEL".into(), "debug".into());
    obs.containers[0].environment = Some(Default::default());
    let plan = plan_up(&changed, &desired(&changed), &obs, false, false);
    assert_eq!(
        plan.actions,
        vec![Action::RecreateContainer { service: "web".into(), reason: "environment changed (LOG_LEVEL)".into() }]
    );
}

#[test]
fn new_image_behind_same_reference_says_image_updated() {
    let spec = stage(vec![svc("web", &[])]);
    let obs = ObservedStage {
        network_exists: true,
        volumes: Default::default(),
        containers: vec![observed(&spec, &spec.services[0], RunState::Running)],
    };
    let want = vec![Desired { service: &spec.services[0], hash: ConfigHash::of(&spec.services[0], "img2") }];
    let plan = plan_up(&spec, &want, &obs, false, false);
    assert_eq!(plan.actions, vec![Action::RecreateContainer { service: "web".into(), reason: "image updated".into() }]);
}

#[test]
fn stopped_container_is_started_and_completed_oneshot_is_left_alone() {
    let mut migrate = svc("migrate", &[]);
    migrate.oneshot = true;
    let spec = stage(vec![svc("web", &[]), migrate]);
    let obs = ObservedStage {
        network_exists: true,
        volumes: Default::default(),
        containers: vec![
            observed(&spec, &spec.services[0], RunState::Exited(137)),
            observed(&spec, &spec.services[1], RunState::Exited(0)),
        ],
    };
    let plan = plan_up(&spec, &desired(&spec), &obs, false, false);
    assert_eq!(plan.actions, vec![Action::StartContainer { service: "web".into() }]);
}

#[test]
fn orphans_are_listed_and_removed_only_when_asked() {
    let spec = stage(vec![svc("web", &[])]);
    let old = svc("old", &[]);
    let obs = ObservedStage {
        network_exists: true,
        volumes: Default::default(),
        containers: vec![
            observed(&spec, &spec.services[0], RunState::Running),
            observed(&spec, &old, RunState::Running),
        ],
    };
    let keep = plan_up(&spec, &desired(&spec), &obs, false, false);
    assert_eq!(keep.orphans, vec!["old"]);
    assert!(keep.actions.is_empty());
    let remove = plan_up(&spec, &desired(&spec), &obs, true, false);
    assert_eq!(remove.actions, vec![Action::RemoveContainer { service: "old".into(), orphan: true }]);
}

#[test]
fn down_stops_in_reverse_dependency_order_and_destroy_removes() {
    let spec = stage(vec![svc("web", &["api"]), svc("api", &["db"]), svc("db", &[])]);
    let obs = ObservedStage {
        network_exists: true,
        volumes: ["p-local-data".to_string()].into(),
        containers: spec.services.iter().map(|s| observed(&spec, s, RunState::Running)).collect(),
    };
    let stop = plan_down(&spec, &obs, DownMode::Stop);
    let lines: Vec<String> = stop.actions.iter().map(render_action).collect();
    assert_eq!(lines, vec!["~ container web: stop", "~ container api: stop", "~ container db: stop"]);
    let destroy = plan_down(&spec, &obs, DownMode::Destroy { volumes: false });
    assert_eq!(destroy.actions.len(), 4);
    assert_eq!(destroy.actions[3], Action::RemoveNetwork { name: "p-local".into() });
    let with_volumes = plan_down(&spec, &obs, DownMode::Destroy { volumes: true });
    assert_eq!(with_volumes.actions.last(), Some(&Action::RemoveVolume { name: "p-local-data".into() }));
}
