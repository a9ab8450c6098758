use super::*;
use crate::dns::FoundRecord;
use crate::infra::Power;
use crate::model::{AutoSuspend, DnsNames, DnsProvider};
use crate::plan::{ObservedContainer, RunState, render_action, render_infra};
use crate::stage::infra_plan::plan_servers;
use crate::stage::plan_fixtures::{container, machine, running, sakura, stage};

const PROJECT: &str = "p";

/// A container of `part`'s service carrying the hash its spec has with image id `img`.
fn converged(part: &StageSpec, service: &str, state: RunState) -> ObservedContainer {
    let svc = part.service(service).expect("a service of the part");
    let hash = ConfigHash::of(svc, "img");
    ObservedContainer {
        config_hash: Some(hash.hash),
        field_hashes: hash.fields,
        image_id: Some("img".into()),
        ..container(part, service, state)
    }
}

/// An engine holding `part`'s services converged (`db` in `db_state`), the image present.
fn engine(part: &StageSpec, db_state: RunState) -> SeenEngine {
    let mut observed = running(part, &[]);
    observed.containers = vec![converged(part, "db", db_state), converged(part, "api", RunState::Running)];
    SeenEngine {
        observed,
        images: BTreeMap::from([("busybox:latest".to_string(), "img".to_string())]),
        ..SeenEngine::default()
    }
}

/// The whole plan's lines, as the dry run prints them: round 1, round 2, records.
fn lines(plan: &UpPlan) -> Vec<String> {
    let infra = plan.infra.iter().flat_map(|s| s.actions.iter().map(render_infra));
    let work = plan.workload_lines().into_iter().map(|l| match l {
        Line::Action(a) => render_action(&a),
        Line::Infra(a) => render_infra(&a),
        Line::Note(n) => format!("note: {n}"),
    });
    infra.chain(work).chain(plan.record_actions().iter().map(render_infra)).collect()
}

fn with_dns(mut server: Server, aliases: &[&str]) -> Server {
    server.dns = Some(DnsNames {
        provider: DnsProvider::Cloudflare,
        zone: "example.com".into(),
        hostname: "dev".into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
    });
    server
}

fn record(name: &str, kind: &str, content: &str, ours: bool) -> FoundRecord {
    FoundRecord {
        id: format!("rec-{name}"),
        name: name.into(),
        kind: kind.into(),
        content: content.into(),
        comment: ours.then(|| crate::dns::owner_comment(PROJECT, "dev", "web-1")),
    }
}

fn seen_names(spec: &StageSpec, found: Vec<FoundRecord>) -> Vec<SeenNames> {
    vec![SeenNames { server: spec.servers[0].clone(), ip: "192.0.2.10".into(), found }]
}

#[test]
fn a_missing_server_is_created_then_gets_every_container_its_timer_and_its_records_once_it_has_an_address() {
    let mut spec = stage(vec![with_dns(sakura("web-1", &[]), &[])]);
    spec.auto_suspend = Some(AutoSuspend { idle_secs: 3600, after_boot_secs: 600 });
    let found = [None];
    let part = part_of(&spec, &spec.servers[0], &found);
    let plan = UpPlan {
        stage: spec.name.clone(),
        infra: plan_servers(&spec, &found),
        workload: plan_workload(&spec, vec![(part, SeenPart::New)], ContainerIntent::default()),
        records: plan_records(PROJECT, &spec, &found, &[]),
        costs: Vec::new(),
    };
    assert_eq!(
        lines(&plan),
        [
            "+ server web-1 (sakura-cloud tk1a, 2 cores, 4 GB, 40 GB ssd, ubuntu-24.04)",
            "~ server web-1: power on",
            "+ network p-dev",
            "+ container db",
            "+ container api",
            "~ server web-1: auto-suspend when idle 1h (after boot 10m, checked every 10m)",
            "+ dns dev.example.com A → (IP of server web-1)",
        ]
    );
    let Workload::Containers { idle, .. } = &plan.workload else { panic!("a container stage") };
    assert_eq!(idle[0].change, None, "the timer is written once the server runs and its engine is asked");
}

#[test]
fn a_powered_off_server_is_powered_on_and_its_containers_wait_for_its_engine() {
    let spec = stage(vec![sakura("web-1", &[])]);
    let found = [Some(machine(Power::Down))];
    let part = part_of(&spec, &spec.servers[0], &found);
    let plan = UpPlan {
        stage: spec.name.clone(),
        infra: plan_servers(&spec, &found),
        workload: plan_workload(&spec, vec![(part, SeenPart::Off)], ContainerIntent::default()),
        ..UpPlan::default()
    };
    assert_eq!(
        lines(&plan),
        [
            "~ server web-1: power on",
            "note: containers on web-1 are planned once it runs (its engine cannot be asked while it is off)"
        ]
    );
    assert_eq!(plan.infra[0].found, found[0], "the step keeps the machine it was planned from");
}

#[test]
fn a_running_converged_server_is_adopted_and_nothing_is_planned() {
    let spec = stage(vec![sakura("web-1", &[])]);
    let found = [Some(machine(Power::Up))];
    let part = part_of(&spec, &spec.servers[0], &found);
    let seen = SeenPart::Reached(Box::new(engine(&part, RunState::Running)));
    let plan = UpPlan {
        stage: spec.name.clone(),
        infra: plan_servers(&spec, &found),
        workload: plan_workload(&spec, vec![(part, seen)], ContainerIntent::default()),
        records: plan_records(PROJECT, &spec, &found, &[]),
        costs: Vec::new(),
    };
    assert!(lines(&plan).is_empty(), "{:?}", lines(&plan));
    assert!(plan.to_plan().is_empty());
}

#[test]
fn a_reached_server_s_plan_carries_the_observed_containers_copies_and_its_server_name() {
    let spec = stage(vec![sakura("web-1", &[])]);
    let found = [Some(machine(Power::Up))];
    let part = part_of(&spec, &spec.servers[0], &found);
    let mut seen = engine(&part, RunState::Exited(0));
    seen.copies = vec![ImageCopy { image: "app:1".into(), bytes: 2048, pull_first: false }];
    let workload = plan_workload(&spec, vec![(part, SeenPart::Reached(Box::new(seen)))], ContainerIntent::default());
    let plan = UpPlan { stage: spec.name.clone(), workload, ..UpPlan::default() };
    assert_eq!(lines(&plan), ["+ image app:1 on web-1: copied from this machine (2.0 kB)", "~ container db: start"]);
    let Workload::Containers { servers, .. } = &plan.workload else { panic!("a container stage") };
    let ServerWork::Reached { server, seen, .. } = &servers[0] else { panic!("reached: {:?}", servers[0]) };
    assert_eq!((server.as_str(), seen.observed.containers[0].id.as_str()), ("web-1", "id-db"));
}

#[test]
fn each_server_s_part_reaches_the_services_on_the_other_servers_by_address() {
    let spec = stage(vec![sakura("db-1", &["db"]), sakura("web-1", &["api"])]);
    let mut other = machine(Power::Up);
    other.ip = Some("192.0.2.20".into());
    let machines = [Some(machine(Power::Up)), Some(other)];
    let web = part_of(&spec, &spec.servers[1], &machines);
    assert_eq!(web.services.len(), 1);
    assert_eq!(web.services[0].peer_hosts.get("db").map(String::as_str), Some("192.0.2.10"));
    let db = part_of(&spec, &spec.servers[0], &machines);
    assert_eq!(db.services[0].peer_hosts.get("api").map(String::as_str), Some("192.0.2.20"));
}

#[test]
fn idle_timers_are_installed_changed_removed_or_left_alone_as_the_server_reports_them() {
    let a = AutoSuspend { idle_secs: 3600, after_boot_secs: 600 };
    let mut spec = stage(vec![sakura("web-1", &[])]);
    let part = part_of(&spec, &spec.servers[0], &[]);
    let reached = |conf: Option<String>| {
        let mut seen = SeenEngine::default();
        seen.idle.conf = conf;
        SeenPart::Reached(Box::new(seen))
    };
    let shown = |spec: &StageSpec, seen: &SeenPart| {
        plan_idle(spec, &spec.servers[0], &part, seen).map(|s| (render_infra(&s.action), s.change))
    };
    spec.auto_suspend = Some(a);
    let (line, change) = shown(&spec, &reached(None)).expect("installed where there is none");
    assert_eq!(line, "~ server web-1: auto-suspend when idle 1h (after boot 10m, checked every 10m)");
    assert!(matches!(change, Some(Change::Install(_))));
    let installed = auto_suspend::conf(&a, &auto_suspend::published_ports(&part));
    assert_eq!(shown(&spec, &reached(Some(installed.clone()))), None, "unchanged: no step");
    let older = auto_suspend::conf(&AutoSuspend { idle_secs: 60, after_boot_secs: 600 }, &[]);
    assert!(matches!(shown(&spec, &reached(Some(older))), Some((_, Some(Change::Install(_))))), "changed");
    spec.auto_suspend = None;
    let (line, change) = shown(&spec, &reached(Some(installed))).expect("removed when the stage drops it");
    assert_eq!((line.as_str(), change), ("~ server web-1: auto-suspend removed", Some(Change::Remove)));
    assert_eq!(shown(&spec, &reached(None)), None);
    assert_eq!(shown(&spec, &SeenPart::Off), None, "nothing declared, nothing to install later");
}

#[test]
fn records_are_created_updated_left_alone_or_blocked_by_a_record_fleet_does_not_own() {
    let spec = stage(vec![with_dns(sakura("web-1", &[]), &["www"])]);
    let machines = [Some(machine(Power::Up))];
    let decide = |found| plan_records(PROJECT, &spec, &machines, &seen_names(&spec, found));
    let shown = |r: &Records| r.plan.changes.iter().map(|c| render_infra(&c.action)).collect::<Vec<_>>();

    let created = decide(vec![]);
    assert_eq!(
        shown(&created),
        ["+ dns dev.example.com A → 192.0.2.10", "+ dns www.example.com CNAME → dev.example.com"]
    );
    let moved = decide(vec![
        record("dev.example.com", "A", "192.0.2.99", true),
        record("www.example.com", "CNAME", "dev.example.com", true),
    ]);
    assert_eq!(shown(&moved), ["~ dns dev.example.com A → 192.0.2.10 (was 192.0.2.99)"], "the alias is right");
    let unchanged = decide(vec![
        record("dev.example.com", "A", "192.0.2.10", true),
        record("www.example.com", "CNAME", "dev.example.com", true),
    ]);
    assert!(shown(&unchanged).is_empty() && unchanged.plan.blocked.is_empty() && unchanged.later.is_empty());
    let blocked = decide(vec![record("www.example.com", "A", "198.51.100.1", false)]);
    assert_eq!(shown(&blocked), ["+ dns dev.example.com A → 192.0.2.10"]);
    assert_eq!(blocked.plan.blocked.len(), 1, "{:?}", blocked.plan.blocked);
    assert!(blocked.plan.blocked[0].starts_with("dns www.example.com CNAME: a record fleet does not own"));
}

#[test]
fn a_server_without_an_address_yet_gets_its_records_planned_against_its_future_ip() {
    let spec = stage(vec![with_dns(sakura("web-1", &[]), &["www"])]);
    let mut booting = machine(Power::Changing("booting".into()));
    booting.ip = None;
    let records = plan_records(PROJECT, &spec, &[Some(booting)], &[]);
    assert!(records.plan.changes.is_empty());
    let later: Vec<String> = records.later.iter().map(render_infra).collect();
    assert_eq!(
        later,
        ["+ dns dev.example.com A → (IP of server web-1)", "+ dns www.example.com CNAME → dev.example.com"]
    );
}

#[test]
fn the_plan_s_json_is_the_dry_run_document_of_its_steps() {
    let spec = stage(vec![sakura("web-1", &[])]);
    let found = [None];
    let part = part_of(&spec, &spec.servers[0], &found);
    let plan = UpPlan {
        stage: spec.name.clone(),
        infra: plan_servers(&spec, &found),
        workload: plan_workload(&spec, vec![(part, SeenPart::New)], ContainerIntent::default()),
        ..UpPlan::default()
    };
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json, serde_json::to_value(PlanReport::of(&plan.to_plan())).unwrap());
    assert_eq!(json["infrastructure"][1], serde_json::json!({"action": "power_on", "server": "web-1"}));
    assert_eq!((json["summary"]["add"].as_u64(), json["actions"].as_array().map(Vec::len)), (Some(4), Some(3)));
}

#[test]
fn a_swarm_stage_s_workload_is_the_swarm_layer_s_plan() {
    let mut swarm = Plan::default();
    swarm.infra.push(InfraAction::FormSwarm { manager: "m1".into() });
    let plan = UpPlan { stage: "dev".into(), workload: Workload::Swarm(swarm), ..UpPlan::default() };
    assert!(plan.workload_lines().is_empty(), "the swarm layer prints its own steps");
    assert_eq!(plan.to_plan().infra, [InfraAction::FormSwarm { manager: "m1".into() }]);
}

#[test]
fn a_gated_up_goes_on_only_with_the_plan_its_dry_run_printed() {
    use crate::plan::gate::{PlanGate, PlanIntent, hashed};
    use crate::report::ConfigReport;
    let spec = stage(vec![sakura("web-1", &[])]);
    let found = [Some(machine(Power::Up))];
    let planned = |db: RunState| {
        let part = part_of(&spec, &spec.servers[0], &found);
        let seen = SeenPart::Reached(Box::new(engine(&part, db)));
        let workload = plan_workload(&spec, vec![(part, seen)], ContainerIntent::default());
        UpPlan { stage: spec.name.clone(), infra: plan_servers(&spec, &found), workload, ..UpPlan::default() }
    };
    // The hash `fleet mcp` hands out for the dry run's JSON, which is the plan's own.
    let printed = serde_json::to_value(planned(RunState::Exited(0))).unwrap();
    let doc = hashed(&spec.name, PlanIntent::Up, printed, &ConfigReport::resolved_json(&spec));
    let gate: PlanGate = doc["plan_hash"].as_str().unwrap().parse().unwrap();
    let check = |plan: &UpPlan| crate::stage::gate::check(Some(&gate), &spec, PlanIntent::Up, &plan.to_plan());
    check(&planned(RunState::Exited(0))).expect("the same world plans the same hash");
    let err = check(&planned(RunState::Running)).expect_err("db started elsewhere meanwhile: another plan");
    assert_eq!(err.plan_changed().expect("a typed refusal").plan["actions"], serde_json::json!([]));
}

#[test]
fn a_server_still_off_gets_its_declared_timer_once_it_runs_and_its_containers_wait() {
    let mut spec = stage(vec![sakura("web-1", &[]), sakura("web-2", &["api"])]);
    spec.auto_suspend = Some(AutoSuspend { idle_secs: 3600, after_boot_secs: 600 });
    let found = [Some(machine(Power::Up)), Some(machine(Power::Down))];
    let parts: Vec<(StageSpec, SeenPart)> = spec
        .servers
        .iter()
        .map(|s| part_of(&spec, s, &found))
        .zip([SeenPart::Reached(Box::default()), SeenPart::Off])
        .collect();
    let Workload::Containers { servers, idle } = plan_workload(&spec, parts, ContainerIntent::default()) else {
        panic!("a container stage")
    };
    assert!(matches!(&servers[1], ServerWork::Off { server } if server == "web-2"), "{:?}", servers[1]);
    let off = idle.iter().find(|s| s.server == "web-2").expect("the timer is planned for the server that is off");
    assert_eq!(off.change, None, "nothing is written before its engine can be asked");
    assert_eq!(
        render_infra(&off.action),
        "~ server web-2: auto-suspend when idle 1h (after boot 10m, checked every 10m)"
    );
    let reached = idle.iter().find(|s| s.server == "web-1").expect("an empty engine gets the timer now");
    assert!(matches!(reached.change, Some(Change::Install(_))), "{reached:?}");
}

/// The gate's hash for `plan`, as `fleet mcp` hands it out for the dry run's JSON.
fn gate_for(spec: &StageSpec, plan: &UpPlan) -> crate::plan::gate::PlanGate {
    use crate::plan::gate::{PlanIntent, hashed};
    let printed = serde_json::to_value(plan).unwrap();
    let doc = hashed(&spec.name, PlanIntent::Up, printed, &crate::report::ConfigReport::resolved_json(spec));
    doc["plan_hash"].as_str().unwrap().parse().unwrap()
}

fn gate_passes(gate: &crate::plan::gate::PlanGate, spec: &StageSpec, plan: &UpPlan) -> bool {
    crate::stage::gate::check(Some(gate), spec, crate::plan::gate::PlanIntent::Up, &plan.to_plan()).is_ok()
}

#[test]
fn a_gated_run_s_round_two_is_held_to_the_plan_its_gate_passed() {
    let spec = stage(vec![sakura("a", &["db", "api"]), sakura("b", &[])]);
    let found = [Some(machine(Power::Up)), Some(machine(Power::Down))];
    let infra = plan_servers(&spec, &found);
    let part_a = part_of(&spec, &spec.servers[0], &found);
    let part_b = part_of(&spec, &spec.servers[1], &found);
    let workload = |db: RunState| {
        let parts =
            vec![(part_a.clone(), SeenPart::Reached(Box::new(engine(&part_a, db)))), (part_b.clone(), SeenPart::Off)];
        plan_workload(&spec, parts, ContainerIntent::default())
    };
    // The gate's own pass: `db` stopped, so the hashed plan starts it; `b` is off.
    let gated =
        UpPlan { stage: spec.name.clone(), infra, workload: workload(RunState::Exited(0)), ..UpPlan::default() };
    let gate = gate_for(&spec, &gated);
    assert!(gate_passes(&gate, &spec, &gated));

    // Round 2 of the run sees the same engine on `a`: it goes on.
    assert!(gate_passes(&gate, &spec, &held_to(&gated, &workload(RunState::Exited(0)))));
    // `db` was started by someone else between the gate and round 2: not what was hashed.
    assert!(!gate_passes(&gate, &spec, &held_to(&gated, &workload(RunState::Running))));
    // Or removed: the run would create it, which the hashed plan did not say.
    let mut seen = engine(&part_a, RunState::Exited(0));
    seen.observed.containers.retain(|c| c.service != "db");
    let removed = plan_workload(
        &spec,
        vec![(part_a.clone(), SeenPart::Reached(Box::new(seen))), (part_b.clone(), SeenPart::Off)],
        ContainerIntent::default(),
    );
    assert!(!gate_passes(&gate, &spec, &held_to(&gated, &removed)));
    // `b`, booted in round 1, plans its containers as its engine shows them: not compared.
    let mut booted = workload(RunState::Exited(0));
    let Workload::Containers { servers, .. } = &mut booted else { unreachable!() };
    servers[1] = ServerWork::New { server: "b".into(), plan: plan_new_server(&part_b) };
    assert!(gate_passes(&gate, &spec, &held_to(&gated, &booted)));
    // But `a` found off in round 2 (no steps planned there) is not the hashed plan either.
    let mut gone = workload(RunState::Exited(0));
    let Workload::Containers { servers, .. } = &mut gone else { unreachable!() };
    servers[0] = ServerWork::Off { server: "a".into() };
    assert!(!gate_passes(&gate, &spec, &held_to(&gated, &gone)));
}

#[test]
fn image_copies_the_run_made_while_it_observed_are_not_a_changed_plan() {
    let spec = stage(vec![sakura("a", &[])]);
    let found = [Some(machine(Power::Up))];
    let part = part_of(&spec, &spec.servers[0], &found);
    let empty = |images: &str, copies: Vec<crate::engine::ImageCopy>| SeenEngine {
        observed: running(&part, &[]),
        images: BTreeMap::from([("busybox:latest".to_string(), images.to_string())]),
        copies,
        ..SeenEngine::default()
    };
    let copy = crate::engine::ImageCopy { image: "busybox:latest".into(), bytes: 10, pull_first: false };
    let plan = |seen: SeenEngine| {
        plan_workload(&spec, vec![(part.clone(), SeenPart::Reached(Box::new(seen)))], ContainerIntent::default())
    };
    let gated = UpPlan {
        stage: spec.name.clone(),
        infra: plan_servers(&spec, &found),
        workload: plan(empty("", vec![copy])),
        ..UpPlan::default()
    };
    assert!(gated.to_plan().infra.iter().any(|i| matches!(i, InfraAction::CopyImage { .. })));
    let gate = gate_for(&spec, &gated);
    // The run copied the image before planning: it has its id and lists no copy.
    assert!(gate_passes(&gate, &spec, &held_to(&gated, &plan(empty("img", Vec::new())))));
}

#[test]
fn a_swarm_plan_is_held_to_the_gated_one_when_every_server_was_reached() {
    let spec = stage(vec![sakura("m1", &[])]);
    let step = |manager: &str| {
        let mut p = Plan { stage: spec.name.clone(), ..Plan::default() };
        p.infra.push(InfraAction::FormSwarm { manager: manager.into() });
        p
    };
    let gated = UpPlan {
        stage: spec.name.clone(),
        infra: plan_servers(&spec, &[Some(machine(Power::Up))]),
        workload: Workload::Swarm(step("m1")),
        ..UpPlan::default()
    };
    let gate = gate_for(&spec, &gated);
    assert!(gate_passes(&gate, &spec, &held_to(&gated, &Workload::Swarm(step("m1")))));
    assert!(!gate_passes(&gate, &spec, &held_to(&gated, &Workload::Swarm(Plan::default()))));
    // Servers created in round 1 were not seen by the gate's pass: their swarm steps are not compared.
    let created = UpPlan { infra: plan_servers(&spec, &[None]), ..gated.clone() };
    let gate = gate_for(&spec, &created);
    assert!(gate_passes(&gate, &spec, &held_to(&created, &Workload::Swarm(Plan::default()))));
}

#[test]
fn a_gated_run_writes_only_the_records_of_the_plan_its_gate_passed() {
    let spec = stage(vec![with_dns(sakura("web-1", &[]), &["www"])]);
    let machines = [Some(machine(Power::Up))];
    let decide = |found| plan_records(PROJECT, &spec, &machines, &seen_names(&spec, found));
    let ours = |content: &str| {
        vec![record("dev.example.com", "A", content, true), record("www.example.com", "CNAME", "dev.example.com", true)]
    };
    let with_records = |records: Records| UpPlan { stage: spec.name.clone(), records, ..UpPlan::default() };
    // The gate's pass found the records right: nothing to write, and the run finds them so too.
    let gated = decide(ours("192.0.2.10"));
    let gate = gate_for(&spec, &with_records(gated.clone()));
    assert_eq!(records_held_to(&gated, &spec, &machines, &decide(ours("192.0.2.10"))), Ok(()));

    // The A record was changed by hand between the gate and the records: the correction is a
    // write the hashed plan did not show, so none is made (the gate's own measure agrees).
    let drifted = decide(ours("192.0.2.99"));
    assert!(!gate_passes(&gate, &spec, &with_records(drifted.clone())));
    let moved = records_held_to(&gated, &spec, &machines, &drifted).expect_err("another record plan");
    assert_eq!(moved.unapproved, ["~ dns dev.example.com A → 192.0.2.10 (was 192.0.2.99)"]);
    assert!(moved.dropped.is_empty());
    let said = moved.to_string();
    assert!(said.starts_with("the DNS records changed since the plan was made; no record was written"), "{said}");
    assert!(said.contains("now planned, not in the plan: ~ dns dev.example.com A → 192.0.2.10"), "{said}");

    // The plan created both; someone else's A record appeared at the alias meanwhile: the alias
    // is blocked now, so the run's plan lacks a step that was approved.
    let create = decide(vec![]);
    let blocked = decide(vec![record("www.example.com", "A", "198.51.100.1", false)]);
    let moved = records_held_to(&create, &spec, &machines, &blocked).expect_err("a step fewer");
    assert_eq!(
        (moved.unapproved.len(), moved.dropped.as_slice()),
        (0, &["+ dns www.example.com CNAME → dev.example.com".to_string()][..])
    );
    assert_eq!(records_held_to(&create, &spec, &machines, &decide(vec![])), Ok(()));
}

#[test]
fn records_planned_before_their_server_had_an_address_are_held_to_the_address_it_has_now() {
    let spec = stage(vec![with_dns(sakura("web-1", &[]), &["www"])]);
    let gated = plan_records(PROJECT, &spec, &[None], &[]);
    assert_eq!(gated.waiting, ["web-1"]);
    let machines = [Some(machine(Power::Up))];
    let run = |found| plan_records(PROJECT, &spec, &machines, &seen_names(&spec, found));
    assert_eq!(records_held_to(&gated, &spec, &machines, &run(vec![])), Ok(()), "created at its address");
    // An old record of ours at the name: the run would correct it, which the plan did not show.
    let stale = run(vec![record("dev.example.com", "A", "192.0.2.99", true)]);
    let moved = records_held_to(&gated, &spec, &machines, &stale).expect_err("an update is no create");
    assert_eq!(moved.unapproved, ["~ dns dev.example.com A → 192.0.2.10 (was 192.0.2.99)"]);
    assert_eq!(moved.dropped, ["+ dns dev.example.com A → 192.0.2.10"]);
    // Still without an address: its records still wait, as planned.
    let waiting = plan_records(PROJECT, &spec, &[None], &[]);
    assert_eq!(records_held_to(&gated, &spec, &[None], &waiting), Ok(()));
}

#[test]
fn a_leftover_and_a_cost_are_said_in_the_plan_s_json_but_not_hashed() {
    let spec = stage(vec![sakura("web-1", &[])]);
    let found = [Some(machine(Power::Up))];
    let part = part_of(&spec, &spec.servers[0], &found);
    let left = plan::Leftover {
        service: "api".into(),
        id: "c0".into(),
        container: "p-dev-api-old".into(),
        keeps: "p-dev-api".into(),
    };
    let seen = |leftovers: Vec<plan::Leftover>| SeenEngine { leftovers, ..engine(&part, RunState::Running) };
    let with = |leftovers, costs| UpPlan {
        stage: spec.name.clone(),
        infra: plan_servers(&spec, &found),
        workload: plan_workload(
            &spec,
            vec![(part.clone(), SeenPart::Reached(Box::new(seen(leftovers))))],
            ContainerIntent::default(),
        ),
        costs,
        ..UpPlan::default()
    };
    let cost = plan::ServerCost {
        server: "web-1".into(),
        monthly: plan::Monthly::Known { running_yen: 9240, suspended_yen: 2200 },
    };
    let said = with(vec![left.clone()], vec![cost]);
    let json = serde_json::to_value(&said).unwrap();
    assert_eq!(
        json["leftovers"],
        serde_json::json!([{"service": "api", "container": "p-dev-api-old", "keeps": "p-dev-api"}])
    );
    assert_eq!(json["costs"], serde_json::json!([{"server": "web-1", "running_yen": 9240, "suspended_yen": 2200}]));
    assert_eq!(
        plan::render_leftover(&left),
        "service api: p-dev-api-old was left by an interrupted replacement; `up` removes it (p-dev-api serves)"
    );
    let plain = with(Vec::new(), Vec::new());
    let json = serde_json::to_value(&plain).unwrap();
    assert!(json.get("leftovers").is_none() && json.get("costs").is_none(), "{json}");
    assert!(gate_passes(&gate_for(&spec, &said), &spec, &plain), "neither is hashed");
}
