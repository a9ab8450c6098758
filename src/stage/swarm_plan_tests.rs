use super::*;
use crate::plan::{render_action, render_infra};
use crate::stage::plan_fixtures::{sakura, stage, swarm};

const IMAGE_ID: &str = "sha256:busybox";

/// A swarm stage `dev` on node-1 (manager), node-2 and node-3 (workers), `db` pinned to node-3.
fn spec() -> StageSpec {
    let mut manager = sakura("node-1", &[]);
    manager.manager = true;
    swarm(stage(vec![manager, sakura("node-2", &[]), sakura("node-3", &["db"])]))
}

fn member(state: MemberState, manager: bool, id: &str) -> Membership {
    let in_swarm = !matches!(state, MemberState::Inactive);
    Membership {
        state,
        node_id: if in_swarm { id.into() } else { String::new() },
        manager,
        cluster_id: in_swarm.then(|| "cluster-1".into()),
        error: None,
    }
}

fn seen(server: &str, m: Membership) -> SeenNode {
    SeenNode { server: server.into(), member: m }
}

/// The node a manager lists for `server`, with fleet's labels for it and the role it has.
fn listed(spec: &StageSpec, server: &str, manager: bool) -> NodeView {
    let labels = match spec.servers.iter().find(|s| s.name == server) {
        Some(s) => node_labels(s),
        None => HashMap::from([(NODE_SERVER.to_string(), server.to_string())]),
    };
    NodeView {
        id: format!("id-{server}"),
        version: 1,
        hostname: server.into(),
        labels,
        manager,
        leader: manager,
        availability: "active".into(),
        ready: true,
        addr: None,
        spec: Default::default(),
    }
}

/// A service as the manager reports it, made from the file's current spec.
fn service(spec: &StageSpec, name: &str) -> ObservedService {
    let svc = spec.service(name).expect("a service of the stage");
    let hash = ConfigHash::of(svc, IMAGE_ID);
    ObservedService {
        id: format!("svc-{name}"),
        service: name.into(),
        version: 1,
        config_hash: Some(hash.hash.clone()),
        field_hashes: hash.fields.clone(),
        image_id: Some(IMAGE_ID.into()),
        replicas: u64::from(svc.replicas),
        running: u64::from(svc.replicas),
        update: None,
        spec: Default::default(),
        created: String::new(),
        ports: vec![],
    }
}

/// A formed, converged swarm: every node active and labelled, both services running the spec.
fn converged(spec: &StageSpec) -> SwarmView {
    let nodes = vec![
        seen("node-1", member(MemberState::Active, true, "id-node-1")),
        seen("node-2", member(MemberState::Active, false, "id-node-2")),
        seen("node-3", member(MemberState::Active, false, "id-node-3")),
    ];
    SwarmView {
        members: Members { nodes, manager: Some(0), swarm_labels: crate::engine::labels::owner(spec) },
        listed: vec![listed(spec, "node-1", true), listed(spec, "node-2", false), listed(spec, "node-3", false)],
        network_missing: false,
        services: vec![service(spec, "db"), service(spec, "api")],
        image_ids: BTreeMap::from([("busybox:latest".to_string(), IMAGE_ID.to_string())]),
        ..SwarmView::default()
    }
}

/// Three reached servers in no swarm at all.
fn no_swarm() -> SwarmView {
    let nodes = ["node-1", "node-2", "node-3"].map(|s| seen(s, member(MemberState::Inactive, false, "")));
    SwarmView {
        members: Members { nodes: nodes.into(), ..Members::default() },
        network_missing: true,
        image_ids: BTreeMap::from([("busybox:latest".to_string(), IMAGE_ID.to_string())]),
        ..SwarmView::default()
    }
}

/// Every step as the line it prints, and a marker for the silent ones.
fn lines(plan: &SwarmPlan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| match s {
            SwarmStep::Network => render_action(plan.network.as_ref().expect("the network's action")),
            _ => match s.line() {
                Some(Line::Infra(a)) => render_infra(&a),
                Some(Line::Action(a)) => render_action(&a),
                Some(Line::Note(n)) => n,
                None => format!("({s:?})"),
            },
        })
        .collect()
}

fn planned(spec: &StageSpec, view: &SwarmView) -> SwarmPlan {
    plan_swarm(spec, view, false).expect("a plan")
}

#[test]
fn a_converged_swarm_plans_only_the_readiness_check() {
    let spec = spec();
    let plan = planned(&spec, &converged(&spec));
    assert_eq!(lines(&plan), ["(NodesReady)"]);
    assert!(plan.to_plan().is_empty(), "nothing to print or count");
}

#[test]
fn no_swarm_yet_forms_it_on_the_first_manager_joins_the_others_and_creates_everything() {
    let spec = spec();
    let plan = planned(&spec, &no_swarm());
    let shown = lines(&plan);
    assert_eq!(
        shown[..4],
        [
            "+ swarm on node-1 (its first manager)",
            "+ node node-2: joins the swarm as worker",
            "+ node node-3: joins the swarm as worker",
            "(NodesReady)",
        ]
    );
    // New nodes carry no labels yet: each gets its server's, node-3 also db's pin.
    assert_eq!(shown[4], "~ node node-1: labels fleetflow.server=node-1");
    assert_eq!(shown[6], "~ node node-3: labels fleetflow.runs.db=true, fleetflow.server=node-3");
    assert_eq!(shown[7], "+ network p-dev");
    // Level by level: db before api, which depends on it.
    assert!(shown[8].starts_with("+ service db"), "{shown:?}");
    assert!(shown[9].starts_with("+ service api"), "{shown:?}");
    let bodies: Vec<_> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            SwarmStep::Service { level, id, body, .. } => Some((*level, id.clone(), body.name.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(bodies, [(0, None, Some("p-dev-db".into())), (1, None, Some("p-dev-api".into()))]);
}

#[test]
fn a_new_worker_and_a_new_manager_join_in_their_roles() {
    let mut spec = spec();
    spec.servers[1].manager = true;
    let mut view = converged(&spec);
    view.members.nodes[1] = seen("node-2", member(MemberState::Inactive, false, ""));
    view.members.nodes[2] = seen("node-3", member(MemberState::Inactive, false, ""));
    view.listed.truncate(1);
    let plan = planned(&spec, &view);
    let joins: Vec<_> = plan.steps.iter().filter(|s| matches!(s, SwarmStep::Join { .. })).collect();
    assert!(matches!(joins[0], SwarmStep::Join { server, manager: true, rejoin: false } if server == "node-2"));
    assert!(matches!(joins[1], SwarmStep::Join { server, manager: false, rejoin: false } if server == "node-3"));
    assert_eq!(
        lines(&plan)[..2],
        ["+ node node-2: joins the swarm as manager", "+ node node-3: joins the swarm as worker"]
    );
}

#[test]
fn a_pending_node_is_given_the_chance_to_catch_up_before_a_rejoin() {
    let spec = spec();
    let mut view = converged(&spec);
    view.members.nodes[2].member.state = MemberState::Pending;
    let plan = planned(&spec, &view);
    assert!(matches!(&plan.steps[0], SwarmStep::Join { server, rejoin: true, .. } if server == "node-3"));
    // Still listed with its labels: no relabel is planned (a rejoin restores them itself).
    assert!(!plan.steps.iter().any(|s| matches!(s, SwarmStep::SetNode { .. })), "{:?}", lines(&plan));
}

#[test]
fn servers_still_to_boot_join_once_they_run_unless_one_forms_the_swarm() {
    let spec = spec();
    let mut view = no_swarm();
    view.members.nodes.clear();
    view.unreached = vec!["node-1".into(), "node-2".into(), "node-3".into()];
    let shown = lines(&planned(&spec, &view));
    assert_eq!(
        shown[..3],
        [
            "+ swarm on node-1 (its first manager)",
            "+ node node-2: joins the swarm as worker",
            "+ node node-3: joins the swarm as worker",
        ]
    );
    assert!(!shown.iter().any(|l| l.contains("~ node")), "no node reached, none to label: {shown:?}");
}

#[test]
fn a_node_whose_server_left_the_file_is_drained_and_removed_never_the_manager() {
    let spec = spec();
    let mut view = converged(&spec);
    view.listed.push(listed(&spec, "node-4", false));
    let plan = planned(&spec, &view);
    assert_eq!(lines(&plan), ["(NodesReady)", "- node node-4: leaves the swarm"]);
    assert!(matches!(&plan.steps[1], SwarmStep::DrainRemove { node, .. } if node.id == "id-node-4"));
}

#[test]
fn labels_promotion_and_drain_are_set_on_the_node_that_differs() {
    let mut spec = spec();
    spec.servers[1].manager = true;
    spec.servers[1].services = vec!["api".into()];
    let mut view = converged(&spec);
    view.listed[1].labels = HashMap::from([(NODE_SERVER.to_string(), "node-2".to_string())]);
    view.listed[2].availability = "drain".into();
    let plan = planned(&spec, &view);
    assert_eq!(
        lines(&plan)[1..],
        [
            "~ node node-2: labels fleetflow.runs.api=true, fleetflow.server=node-2, promoted to manager",
            "~ node node-3: active again (was drained)",
        ]
    );
    assert!(matches!(&plan.steps[1], SwarmStep::SetNode { promote: true, .. }));
}

#[test]
fn services_are_created_updated_scaled_or_left_alone_with_their_ids() {
    let mut spec = spec();
    let mut view = converged(&spec);
    view.services.retain(|s| s.service == "db");
    spec.services[0].environment.insert("MODE".into(), "fast".into());
    spec.services[1].replicas = 1;
    let plan = planned(&spec, &view);
    let services: Vec<_> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            SwarmStep::Service { service, id, action, .. } => {
                Some((service.as_str(), id.clone(), render_infra(action)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(services[0].0, "db");
    assert_eq!(services[0].1.as_deref(), Some("svc-db"), "an update names the service it sends to");
    assert!(services[0].2.starts_with("~ service db: environment changed (MODE)"), "{services:?}");
    assert_eq!(services[1], ("api", None, "+ service api (1 replica)".to_string()));

    // Only the replica count differs: a scale, not a rolling update.
    let spec = self::spec();
    let mut view = converged(&spec);
    view.services[1].replicas = 3;
    assert_eq!(lines(&planned(&spec, &view))[1..], ["~ service api: scale 3 → 1 replica"]);
}

#[test]
fn an_orphan_service_is_removed_only_when_asked() {
    let spec = spec();
    let mut view = converged(&spec);
    let mut old = service(&spec, "db");
    (old.id, old.service) = ("svc-old".into(), "old".into());
    view.services.push(old);
    let kept = planned(&spec, &view);
    assert_eq!(kept.kept_orphans, ["old"]);
    assert_eq!(lines(&kept), ["(NodesReady)"]);
    let removed = plan_swarm(&spec, &view, true).expect("a plan");
    assert!(removed.kept_orphans.is_empty());
    assert!(matches!(&removed.steps[1], SwarmStep::RemoveOrphan { id, .. } if id == "svc-old"));
    assert_eq!(lines(&removed)[1], "- service old (orphan)");
}

#[test]
fn images_a_node_lacks_are_copied_before_the_services_that_run_them() {
    let spec = spec();
    let mut view = converged(&spec);
    view.copies =
        vec![SeenCopy { server: "node-2".into(), image: "busybox:latest".into(), bytes: 1, pull_first: false }];
    let plan = planned(&spec, &view);
    assert!(matches!(&plan.steps[1], SwarmStep::CopyImage { server, .. } if server == "node-2"));
}

#[test]
fn a_node_in_a_swarm_whose_managers_do_not_run_is_refused_out_of_sequence() {
    let spec = spec();
    let mut view = converged(&spec);
    view.members.nodes.remove(0);
    view.members.manager = None;
    let err = plan_swarm(&spec, &view, false).expect_err("a worker without its manager").to_string();
    assert!(err.contains("server node-2 is in a swarm, and no manager of it is among the running servers"), "{err}");
}

#[test]
fn a_swarm_of_another_stage_split_swarms_and_locked_nodes_are_refused() {
    let spec = spec();
    let mut foreign = converged(&spec);
    foreign.members.swarm_labels = HashMap::from([
        (crate::engine::labels::PROJECT.to_string(), "other".to_string()),
        (crate::engine::labels::STAGE.to_string(), "dev".to_string()),
    ]);
    let err = plan_swarm(&spec, &foreign, false).expect_err("another project's swarm").to_string();
    assert!(err.contains("belongs to project `other` stage `dev`"), "{err}");

    let mut split = converged(&spec);
    split.members.nodes[2].member.cluster_id = Some("cluster-2".into());
    let err = plan_swarm(&spec, &split, false).expect_err("two swarms").to_string();
    assert!(err.contains("its servers are in different swarms"), "{err}");

    let mut locked = converged(&spec);
    locked.members.nodes[1].member.state = MemberState::Locked;
    let err = plan_swarm(&spec, &locked, false).expect_err("a locked node").to_string();
    assert!(err.contains("server node-2: its engine's swarm state is Locked"), "{err}");
}

#[test]
fn the_dry_run_lines_are_the_plan_the_run_reports() {
    let spec = spec();
    let plan = planned(&spec, &no_swarm());
    let summary = plan.to_plan();
    assert_eq!(summary.actions, [Action::CreateNetwork { name: "p-dev".into() }]);
    let from_steps: Vec<InfraAction> = plan
        .steps
        .iter()
        .filter_map(|s| match s.line() {
            Some(Line::Infra(a)) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(summary.infra, from_steps);
}
