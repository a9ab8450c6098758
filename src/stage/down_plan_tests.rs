use super::*;
use crate::infra::Power;
use crate::plan::{render_action, render_infra};
use crate::stage::plan_fixtures::{host, machine, running, sakura, stage, swarm};

fn server(spec: &StageSpec, i: usize, power: Option<Power>, engine: bool) -> SeenServer {
    SeenServer {
        name: spec.servers[i].name.clone(),
        machine: power.map(machine),
        containers: engine.then(|| running(&spec.for_server(&spec.servers[i]), &["db", "api"])),
        proxy: None,
    }
}

fn record(server: &str, name: &str) -> SeenRecord {
    SeenRecord {
        server: server.into(),
        record: FoundRecord {
            id: format!("rec-{name}"),
            name: name.into(),
            kind: "A".into(),
            content: "192.0.2.10".into(),
            comment: Some("fleetflow:p:dev".into()),
        },
    }
}

/// Every step as the lines it prints, plus a marker for the silent ones.
fn lines(plan: &DownPlan) -> Vec<String> {
    plan.steps
        .iter()
        .flat_map(|s| {
            let shown: Vec<String> = s
                .lines()
                .into_iter()
                .map(|l| match l {
                    Line::Action(a) => render_action(&a),
                    Line::Infra(a) => render_infra(&a),
                    Line::Note(n) => format!("note: {n}"),
                })
                .collect();
            match s {
                DownStep::ReleaseLock => vec!["(release lock)".to_string()],
                DownStep::SwarmTasksGone { destroy } => vec![format!("(wait for tasks, destroy={destroy})")],
                _ => shown,
            }
        })
        .collect()
}

fn one_server(power: Power) -> (StageSpec, DownObservation) {
    let spec = stage(vec![sakura("web-1", &[])]);
    let seen = DownObservation {
        servers: vec![server(&spec, 0, Some(power.clone()), power == Power::Up)],
        ..Default::default()
    };
    (spec, seen)
}

#[test]
fn stop_stops_containers_dependents_first_and_keeps_servers_running() {
    let (spec, seen) = one_server(Power::Up);
    let plan = plan(&spec, &seen, DownIntent::Stop);
    assert_eq!(lines(&plan), ["~ container api: stop", "~ container db: stop"]);
    assert!(plan.kept_hosts().is_empty());
}

#[test]
fn suspend_powers_the_server_off_after_its_containers_and_gives_the_lock_back_first() {
    let (spec, seen) = one_server(Power::Up);
    let plan = plan(&spec, &seen, DownIntent::Suspend);
    assert_eq!(
        lines(&plan),
        ["~ container api: stop", "~ container db: stop", "(release lock)", "~ server web-1: power off"]
    );
    assert!(
        matches!(&plan.steps[2], DownStep::PowerOff { server, .. } if server == "web-1"),
        "the step names the server the provider powers off: {:?}",
        plan.steps[2]
    );
}

#[test]
fn suspend_of_a_server_still_shutting_down_sends_the_power_off_again_so_it_can_be_forced() {
    // A guest that ignored an earlier shutdown shows as changing: the step is kept, and the
    // provider resends and then forces it after its deadline.
    let (spec, seen) = one_server(Power::Changing("cleaning".into()));
    let plan = plan(&spec, &seen, DownIntent::Suspend);
    assert_eq!(lines(&plan), ["(release lock)", "~ server web-1: power off"]);
}

#[test]
fn destroy_of_a_server_still_shutting_down_powers_it_off_first_so_the_delete_can_force_it() {
    // The delete needs the server off: the step carries the power-off, which the provider
    // forces after its deadline (`shutdown_call`), then the delete with its disks.
    let (spec, seen) = one_server(Power::Changing("cleaning".into()));
    let plan = plan(&spec, &seen, DownIntent::Destroy { volumes: false });
    assert_eq!(
        lines(&plan),
        ["(release lock)", "~ server web-1: power off", "- server web-1 (sakura-cloud tk1a) with 1 disk(s)"]
    );
    let DownStep::DeleteServer { server, power_off, .. } = &plan.steps[1] else { panic!("{:?}", plan.steps[1]) };
    assert_eq!(server, "web-1");
    assert_eq!(power_off, &Some(InfraAction::PowerOff { server: "web-1".into() }));
}

#[test]
fn stop_and_suspend_keep_the_records_of_a_running_server() {
    // The IP survives a power-off: only `--destroy` deletes records, even when they were observed.
    let (spec, mut seen) = one_server(Power::Up);
    seen.records = vec![record("web-1", "dev.example.com")];
    for intent in [DownIntent::Stop, DownIntent::Suspend] {
        let plan = plan(&spec, &seen, intent);
        assert!(
            !plan.steps.iter().any(|s| matches!(s, DownStep::DeleteRecords { .. })),
            "{intent:?}: {:?}",
            plan.steps
        );
        assert!(!plan.to_plan().infra.iter().any(|a| matches!(a, InfraAction::DeleteRecord { .. })), "{intent:?}");
    }
}

#[test]
fn suspend_of_a_server_already_off_is_empty() {
    let (spec, seen) = one_server(Power::Down);
    let plan = plan(&spec, &seen, DownIntent::Suspend);
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
    assert!(plan.to_plan().is_empty());
}

#[test]
fn destroy_removes_containers_network_and_volumes_then_its_records_then_the_server() {
    let (spec, mut seen) = one_server(Power::Up);
    if let Some(c) = seen.servers[0].containers.as_mut() {
        c.volumes.insert("p-dev-data".into());
    }
    seen.records = vec![record("web-1", "dev.example.com"), record("web-1", "api.example.com")];
    let plan = plan(&spec, &seen, DownIntent::Destroy { volumes: true });
    assert_eq!(
        lines(&plan),
        [
            "- container api",
            "- container db",
            "- network p-dev",
            "- volume p-dev-data",
            "- dns dev.example.com A",
            "- dns api.example.com A",
            "(release lock)",
            "~ server web-1: power off",
            "- server web-1 (sakura-cloud tk1a) with 1 disk(s)",
        ]
    );
    let DownStep::DeleteServer { ip, .. } = &plan.steps[3] else { panic!("{:?}", plan.steps[3]) };
    assert_eq!(ip.as_deref(), Some("192.0.2.10"), "the host key of this address is forgotten after the delete");
    let DownStep::DeleteRecords { records, .. } = &plan.steps[1] else { panic!("{:?}", plan.steps[1]) };
    assert_eq!(records[0].id, "rec-dev.example.com", "the executor deletes the very records observed");
    let summary = crate::plan::PlanSummary::of(&plan.to_plan());
    assert_eq!((summary.destroy, summary.change), (7, 1), "{summary:?}");
}

#[test]
fn destroy_of_a_suspended_server_deletes_it_without_a_power_off() {
    let (spec, seen) = one_server(Power::Down);
    let plan = plan(&spec, &seen, DownIntent::Destroy { volumes: false });
    assert_eq!(lines(&plan), ["(release lock)", "- server web-1 (sakura-cloud tk1a) with 1 disk(s)"]);
}

#[test]
fn records_are_deleted_even_when_their_server_is_already_gone() {
    let spec = stage(vec![sakura("web-1", &[])]);
    let seen = DownObservation {
        servers: vec![server(&spec, 0, None, false)],
        records: vec![record("web-1", "dev.example.com")],
        swarm: None,
    };
    assert_eq!(lines(&plan(&spec, &seen, DownIntent::Destroy { volumes: false })), ["- dns dev.example.com A"]);
    assert!(plan(&spec, &seen, DownIntent::Suspend).steps.is_empty(), "records stay unless destroyed");
}

#[test]
fn brought_hosts_are_never_powered_off_or_deleted() {
    let spec = stage(vec![host("box", &["db", "api"]), sakura("web-1", &[])]);
    let seen = DownObservation {
        servers: vec![server(&spec, 0, Some(Power::Up), true), server(&spec, 1, Some(Power::Up), true)],
        ..Default::default()
    };
    let destroy = plan(&spec, &seen, DownIntent::Destroy { volumes: false });
    let shown = lines(&destroy);
    assert_eq!(
        shown[shown.len() - 3..],
        [
            "~ server web-1: power off",
            "- server web-1 (sakura-cloud tk1a) with 1 disk(s)",
            "note: server box is a brought host: its containers go, the machine stays",
        ]
    );
    assert!(shown.contains(&"- container db".to_string()), "a host's containers go: {shown:?}");
    assert!(!shown.contains(&"(release lock)".to_string()), "the host keeps running, so the lock goes at the end");
    assert_eq!(destroy.kept_hosts(), ["box"]);
    assert_eq!(destroy.outcome(), DownOutcome::Destroyed { kept_hosts: vec!["box".into()] });
    let stop = lines(&plan(&spec, &seen, DownIntent::Stop));
    assert!(stop.iter().all(|l| !l.contains("server")), "{stop:?}");
}

#[test]
fn several_servers_go_last_to_first_so_the_lock_holder_is_last() {
    let spec = stage(vec![sakura("a", &["db"]), sakura("b", &["api"]), sakura("c", &[])]);
    let seen = DownObservation {
        servers: (0..3).map(|i| server(&spec, i, Some(Power::Up), false)).collect(),
        ..Default::default()
    };
    let shown = lines(&plan(&spec, &seen, DownIntent::Suspend));
    assert_eq!(shown, ["~ server c: power off", "~ server b: power off", "(release lock)", "~ server a: power off"]);
}

#[test]
fn containers_are_planned_per_server_against_that_server_s_part() {
    let spec = stage(vec![sakura("a", &["db"]), sakura("b", &["api"])]);
    let mut seen = DownObservation {
        servers: vec![server(&spec, 0, Some(Power::Up), true), server(&spec, 1, Some(Power::Up), true)],
        ..Default::default()
    };
    seen.servers[0].containers = Some(running(&spec, &["db"]));
    seen.servers[1].containers = Some(running(&spec, &["api"]));
    let plan = plan(&spec, &seen, DownIntent::Stop);
    let per_server: Vec<(String, Vec<String>)> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            DownStep::Containers { server, plan, observed, part } => {
                assert_eq!(observed.containers[0].id, format!("id-{}", part.services[0].name), "observed ids travel");
                Some((server.clone(), plan.actions.iter().map(render_action).collect()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        per_server,
        [("a".into(), vec!["~ container db: stop".into()]), ("b".into(), vec!["~ container api: stop".into()])]
    );
}

fn swarm_seen(spec: &StageSpec) -> DownObservation {
    DownObservation {
        servers: (0..spec.servers.len()).map(|i| server(spec, i, Some(Power::Up), false)).collect(),
        records: vec![],
        swarm: Some(SeenSwarm {
            manager: "m1".into(),
            services: vec![
                SeenService { id: "s-db".into(), service: "db".into(), replicas: 1 },
                SeenService { id: "s-api".into(), service: "api".into(), replicas: 3 },
                SeenService { id: "s-old".into(), service: "old".into(), replicas: 0 },
            ],
            network: true,
            members: vec![
                SeenMember { server: "m1".into(), manager: true, in_swarm: true },
                SeenMember { server: "w1".into(), manager: false, in_swarm: true },
                SeenMember { server: "w2".into(), manager: false, in_swarm: false },
            ],
            volumes: vec![
                NodeVolumes { server: "m1".into(), names: vec!["p-dev-data".into()] },
                NodeVolumes { server: "w1".into(), names: vec!["p-dev-data".into(), "p-dev-cache".into()] },
                NodeVolumes { server: "w2".into(), names: vec![] },
            ],
        }),
    }
}

fn swarm_stage() -> StageSpec {
    let mut m1 = sakura("m1", &[]);
    m1.manager = true;
    swarm(stage(vec![m1, sakura("w1", &[]), sakura("w2", &[])]))
}

#[test]
fn swarm_down_scales_running_services_to_zero_dependents_first_and_keeps_them() {
    let spec = swarm_stage();
    let plan = plan(&spec, &swarm_seen(&spec), DownIntent::Stop);
    assert_eq!(
        lines(&plan),
        [
            "~ service api: scale 3 → 0 replicas",
            "~ service db: scale 1 → 0 replicas",
            "(wait for tasks, destroy=false)"
        ]
    );
    let ids: Vec<&str> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            DownStep::SwarmService { id, remove: false, manager, .. } if manager == "m1" => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["s-api", "s-db"], "each step carries the service id the manager knows");
}

#[test]
fn swarm_destroy_removes_services_network_then_workers_leave_before_managers_then_servers() {
    let spec = swarm_stage();
    let plan = plan(&spec, &swarm_seen(&spec), DownIntent::Destroy { volumes: true });
    assert_eq!(
        lines(&plan),
        [
            "- service old (orphan)",
            "- service api",
            "- service db",
            "(wait for tasks, destroy=true)",
            "- network p-dev",
            "- node w1: leaves the swarm",
            "- node m1: leaves the swarm",
            "- volume p-dev-data",
            "- volume p-dev-data",
            "- volume p-dev-cache",
            "~ server w2: power off",
            "- server w2 (sakura-cloud tk1a) with 1 disk(s)",
            "~ server w1: power off",
            "- server w1 (sakura-cloud tk1a) with 1 disk(s)",
            "(release lock)",
            "~ server m1: power off",
            "- server m1 (sakura-cloud tk1a) with 1 disk(s)",
        ]
    );
    let leaves: Vec<(String, bool)> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            DownStep::LeaveSwarm { server, manager, .. } => Some((server.clone(), *manager)),
            _ => None,
        })
        .collect();
    assert_eq!(leaves, [("w1".to_string(), false), ("m1".to_string(), true)], "a manager leaves with force");
}

#[test]
fn swarm_suspend_powers_workers_off_before_managers() {
    let mut spec = swarm_stage();
    // The first server is a worker here: its lock goes back before its own power-off.
    spec.servers.swap(0, 1);
    let seen = swarm_seen(&spec);
    let shown = lines(&plan(&spec, &seen, DownIntent::Suspend));
    assert_eq!(
        shown[shown.len() - 4..],
        ["~ server w2: power off", "(release lock)", "~ server w1: power off", "~ server m1: power off"]
    );
}

#[test]
fn a_swarm_with_no_manager_running_plans_only_its_servers() {
    let spec = swarm_stage();
    let mut seen = swarm_seen(&spec);
    seen.swarm = None;
    let shown = lines(&plan(&spec, &seen, DownIntent::Suspend));
    assert_eq!(shown, ["~ server w2: power off", "~ server w1: power off", "(release lock)", "~ server m1: power off"]);
}

#[test]
fn down_never_touches_idle_timers() {
    // Suspend keeps the timer for the next boot; destroy deletes it with the server's disk.
    let mut spec = stage(vec![sakura("web-1", &[])]);
    spec.auto_suspend = Some(crate::model::AutoSuspend { idle_secs: 3600, after_boot_secs: 600 });
    let seen = one_server(Power::Up).1;
    for intent in [DownIntent::Stop, DownIntent::Suspend, DownIntent::Destroy { volumes: false }] {
        let infra = plan(&spec, &seen, intent).to_plan().infra;
        assert!(!infra.iter().any(|a| matches!(a, InfraAction::SetAutoSuspend { .. })), "{intent:?}: {infra:?}");
    }
}

#[test]
fn swarm_destroy_names_every_volume_it_removes_node_by_node_and_only_with_volumes() {
    // The dry run and the confirmation list what the run removes: each node's volumes, observed.
    let spec = swarm_stage();
    let seen = swarm_seen(&spec);
    let with = plan(&spec, &seen, DownIntent::Destroy { volumes: true });
    let per_node: Vec<(String, Vec<String>)> = with
        .steps
        .iter()
        .filter_map(|s| match s {
            DownStep::SwarmVolumes { server, names } => Some((server.clone(), names.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        per_node,
        [
            ("m1".to_string(), vec!["p-dev-data".to_string()]),
            ("w1".to_string(), vec!["p-dev-data".to_string(), "p-dev-cache".to_string()]),
        ],
        "a node without volumes has no step"
    );
    let removed =
        |p: &DownPlan| p.to_plan().actions.iter().filter(|a| matches!(a, Action::RemoveVolume { .. })).count();
    assert_eq!(removed(&with), 3, "the confirmation lists every removal");
    assert_eq!(removed(&plan(&spec, &seen, DownIntent::Destroy { volumes: false })), 0);
    assert_eq!(removed(&plan(&spec, &seen, DownIntent::Stop)), 0);
}

#[test]
fn destroy_deletes_records_before_any_server_gives_its_address_back() {
    // A destroy stopped between the two (an error, Ctrl-C) must not leave a name pointing at an
    // address the provider may hand to someone else; the rerun deletes the server.
    let spec = stage(vec![sakura("a", &[]), sakura("b", &[])]);
    let seen = DownObservation {
        servers: (0..2).map(|i| server(&spec, i, Some(Power::Up), false)).collect(),
        records: vec![record("a", "a.example.com"), record("b", "b.example.com")],
        swarm: None,
    };
    let shown = lines(&plan(&spec, &seen, DownIntent::Destroy { volumes: false }));
    let first_server = shown.iter().position(|l| l.contains("server")).unwrap_or(usize::MAX);
    let last_record = shown.iter().rposition(|l| l.starts_with("- dns")).unwrap_or(usize::MAX);
    assert!(last_record < first_server, "{shown:?}");
}

/// One server up, its stage's proxy container seen on its engine (running or stopped).
fn with_proxy(running: bool) -> (StageSpec, DownObservation) {
    let (spec, mut seen) = one_server(Power::Up);
    seen.servers[0].proxy = Some(SeenProxy { id: "proxy-id".into(), running });
    (spec, seen)
}

#[test]
fn down_stops_the_proxy_first_and_the_step_carries_the_container_observed() {
    let (spec, seen) = with_proxy(true);
    let plan = plan(&spec, &seen, DownIntent::Stop);
    assert_eq!(lines(&plan), ["~ proxy: stop", "~ container api: stop", "~ container db: stop"]);
    let DownStep::Proxy { server, id, action } = &plan.steps[0] else { panic!("{:?}", plan.steps[0]) };
    assert_eq!((server.as_str(), id.as_str(), action), ("web-1", "proxy-id", &Action::StopProxy));
    // The dry run's summary and JSON count it like every other change.
    assert_eq!(crate::plan::PlanSummary::of(&plan.to_plan()).change, 3);
    assert_eq!(plan.to_plan().actions[0], Action::StopProxy);
    // Already stopped: nothing to do for it.
    let (spec, seen) = with_proxy(false);
    assert_eq!(lines(&super::plan(&spec, &seen, DownIntent::Stop)), ["~ container api: stop", "~ container db: stop"]);
}

#[test]
fn suspend_stops_the_proxy_before_the_power_off() {
    let (spec, seen) = with_proxy(true);
    let plan = plan(&spec, &seen, DownIntent::Suspend);
    assert_eq!(
        lines(&plan),
        [
            "~ proxy: stop",
            "~ container api: stop",
            "~ container db: stop",
            "(release lock)",
            "~ server web-1: power off"
        ]
    );
}

#[test]
fn destroy_removes_the_proxy_stopped_or_not_before_the_containers_and_the_server() {
    for running in [true, false] {
        let (spec, seen) = with_proxy(running);
        let plan = plan(&spec, &seen, DownIntent::Destroy { volumes: false });
        assert_eq!(
            lines(&plan),
            [
                "- proxy",
                "- container api",
                "- container db",
                "- network p-dev",
                "(release lock)",
                "~ server web-1: power off",
                "- server web-1 (sakura-cloud tk1a) with 1 disk(s)",
            ]
        );
        assert!(crate::stage::removals(&plan.to_plan())[0].contains("- proxy"), "the confirmation lists it");
    }
}

#[test]
fn a_proxy_on_an_engine_that_was_not_asked_is_not_planned() {
    // A swarm stage's engines are not asked for containers: no proxy step either.
    let spec = swarm_stage();
    let mut seen = swarm_seen(&spec);
    seen.servers[0].proxy = Some(SeenProxy { id: "proxy-id".into(), running: true });
    let plan = plan(&spec, &seen, DownIntent::Stop);
    assert!(!plan.steps.iter().any(|s| matches!(s, DownStep::Proxy { .. })), "{:?}", plan.steps);
}
