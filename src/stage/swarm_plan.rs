//! `up` of a swarm stage as data: what the nodes and their manager report (`SwarmView`, filled by
//! `swarm_stage::observe_view`), and the pure `plan_swarm` that turns it into the `SwarmPlan` the
//! executor (`swarm_stage::Executor`, run by `swarm_stage::converge`) runs and `--dry-run`
//! prints. No I/O here: every branch is unit-tested without Docker or SSH (`swarm_plan_tests.rs`).

use super::down_plan::Line;
use crate::engine::swarm::{MemberState, Membership, NODE_RUNS, NODE_SERVER, NodeView, ObservedService, service_spec};
use crate::error::{Error, Result};
use crate::model::{Server, Service, StageSpec};
use crate::plan::{Action, ConfigHash, InfraAction, Made, Plan, change_reason, graph};
use bollard::models::ServiceSpec;
use std::collections::{BTreeMap, HashMap};

/// One reached server of the stage and its engine's place in a swarm.
#[derive(Debug, Clone)]
pub struct SeenNode {
    pub server: String,
    pub member: Membership,
}

/// Each reached node's membership, and the swarm's labels when one of them is an active manager.
#[derive(Debug, Clone, Default)]
pub struct Members {
    /// The reached servers, in the file's order.
    pub nodes: Vec<SeenNode>,
    /// Index into `nodes` of a reachable, active manager.
    pub manager: Option<usize>,
    /// The swarm's own labels as that manager reports them (whose swarm it is).
    pub swarm_labels: HashMap<String, String>,
}

/// Everything `up` needs to know about a swarm stage, observed before anything changes.
#[derive(Debug, Clone, Default)]
pub struct SwarmView {
    pub members: Members,
    /// Servers still to be created or booted (a dry run plans as far as it can).
    pub unreached: Vec<String>,
    /// The nodes as the manager lists them (empty without a manager).
    pub listed: Vec<NodeView>,
    /// The stage's overlay network must be created (true without a manager).
    pub network_missing: bool,
    /// The stage's swarm services as the manager reports them (empty without a manager).
    pub services: Vec<ObservedService>,
    /// The image id each service's image has on the nodes (empty: not there yet).
    pub image_ids: BTreeMap<String, String>,
    /// Images a node lacks that this machine would send it (found by a dry run's observation).
    pub copies: Vec<SeenCopy>,
}

/// An image a reached node lacks and this machine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCopy {
    pub server: String,
    pub image: String,
    pub bytes: u64,
    /// It came from a registry: the node may pull it itself.
    pub pull_first: bool,
}

/// One step of a swarm stage's `up`, carrying what its apply needs, in the order it is taken.
#[derive(Debug, Clone)]
pub enum SwarmStep {
    /// The first designated manager forms the swarm, labelled as the stage's own.
    Form { server: String },
    /// A reached node joins with the role the file gives it. `rejoin`: it reported Pending (cut
    /// off from the managers it knew), so it first gets a short wait to catch up on its own;
    /// one that must leave and join again gets its labels back right after.
    Join { server: String, manager: bool, rejoin: bool },
    /// A server still to be created or booted joins once it runs (shown by a dry run only: a
    /// run reaches every server before this round).
    JoinWhenUp { server: String, manager: bool },
    /// Every reached node Ready in the manager's view (agents take a few seconds after a boot).
    NodesReady,
    /// fleet's labels on a node (its server, the services pinned to it), a promotion, or its
    /// return from drain. The node is found by its server: one that joins in this plan has an
    /// id only once it has.
    SetNode { server: String, labels: HashMap<String, String>, promote: bool, change: String },
    /// A node fleet labelled for a server no longer in the file: drained, then removed from the
    /// swarm. The server itself is kept (only `down --destroy` deletes servers).
    DrainRemove { server: String, node: NodeView },
    /// An image a node lacks, sent from this machine (or pulled there first when it can be).
    CopyImage { server: String, image: String, bytes: u64, pull_first: bool },
    /// The stage's overlay network, on the manager.
    Network,
    /// A service no longer in the file (`--remove-orphans`).
    RemoveOrphan { id: String, service: String },
    /// One service created, updated or scaled; services of one `level` roll out together, and
    /// each level waits for the one before.
    Service { level: usize, service: String, id: Option<String>, body: Box<ServiceSpec>, action: InfraAction },
}

fn role(manager: bool) -> &'static str {
    if manager { "manager" } else { "worker" }
}

impl SwarmStep {
    /// What the step shows: the line the dry run prints and the run reports.
    pub fn line(&self) -> Option<Line> {
        let infra = |a: InfraAction| Some(Line::Infra(a));
        match self {
            Self::Form { server } => infra(InfraAction::FormSwarm { manager: server.clone() }),
            Self::Join { server, manager, .. } | Self::JoinWhenUp { server, manager } => {
                infra(InfraAction::JoinSwarm { server: server.clone(), role: role(*manager).into() })
            }
            Self::NodesReady => None,
            Self::SetNode { server, change, .. } => {
                infra(InfraAction::SetNode { server: server.clone(), change: change.clone() })
            }
            Self::DrainRemove { server, .. } => infra(InfraAction::LeaveSwarm { server: server.clone() }),
            Self::CopyImage { server, image, bytes, pull_first } => infra(InfraAction::CopyImage {
                server: server.clone(),
                image: image.clone(),
                bytes: *bytes,
                pull_first: *pull_first,
            }),
            Self::Network => None,
            Self::RemoveOrphan { service, .. } => {
                infra(InfraAction::RemoveService { service: service.clone(), orphan: true })
            }
            Self::Service { action, .. } => infra(action.clone()),
        }
    }
}

/// A swarm stage's `up`, whole: the dry run prints it, the run executes it.
#[derive(Debug, Clone)]
pub struct SwarmPlan {
    pub stage: String,
    pub steps: Vec<SwarmStep>,
    /// The overlay network to create (its line is a container-kind action).
    pub network: Option<Action>,
    /// Services that run but left the file, kept (no `--remove-orphans`): warned about.
    pub kept_orphans: Vec<String>,
}

impl SwarmPlan {
    /// The lines in the order the run takes them.
    pub fn lines(&self) -> Vec<Line> {
        let network = self.network.clone().map(Line::Action);
        self.steps
            .iter()
            .filter_map(|s| match s {
                SwarmStep::Network => network.clone(),
                _ => s.line(),
            })
            .collect()
    }

    /// The plan as the summary and JSON see it: container-kind actions and the rest.
    pub fn to_plan(&self) -> Plan {
        let mut out = Plan { stage: self.stage.clone(), ..Plan::default() };
        for line in self.lines() {
            match line {
                Line::Action(a) => out.actions.push(a),
                Line::Infra(a) => out.infra.push(a),
                Line::Note(_) => {}
            }
        }
        out
    }
}

/// The pure planner: spec + observation → the steps `up` takes, or a refusal when the swarm is
/// not one fleet may act on.
pub fn plan_swarm(spec: &StageSpec, view: &SwarmView, remove_orphans: bool) -> Result<SwarmPlan> {
    check_members(spec, &view.members)?;
    let mut steps = membership_steps(spec, view);
    steps.extend(node_steps(spec, view));
    steps.extend(view.copies.iter().map(|c| SwarmStep::CopyImage {
        server: c.server.clone(),
        image: c.image.clone(),
        bytes: c.bytes,
        pull_first: c.pull_first,
    }));
    let network = view.network_missing.then(|| Action::CreateNetwork { name: spec.network_name() });
    if network.is_some() {
        steps.push(SwarmStep::Network);
    }
    let orphans: Vec<&ObservedService> = view.services.iter().filter(|o| spec.service(&o.service).is_none()).collect();
    let kept_orphans = match remove_orphans {
        true => Vec::new(),
        false => orphans.iter().map(|o| o.service.clone()).collect(),
    };
    if remove_orphans {
        steps.extend(orphans.iter().map(|o| SwarmStep::RemoveOrphan { id: o.id.clone(), service: o.service.clone() }));
    }
    steps.extend(service_steps(spec, view));
    Ok(SwarmPlan { stage: spec.name.clone(), steps, network, kept_orphans })
}

/// Refuses a swarm fleet must not touch: a locked or failed node, servers in different swarms, a
/// swarm another stage (or nobody) formed, or a node in a swarm whose managers do not run (out of
/// sequence: the managers boot first).
pub fn check_members(spec: &StageSpec, members: &Members) -> Result<()> {
    for n in &members.nodes {
        if matches!(n.member.state, MemberState::Error | MemberState::Locked) {
            return Err(Error::failed_help(
                format!(
                    "server {}: its engine's swarm state is {:?}{}",
                    n.server,
                    n.member.state,
                    n.member.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                ),
                "fleet does not repair a locked or failed swarm node: on that server, `docker swarm leave --force`, then run up again",
            ));
        }
    }
    let mut clusters: Vec<(&str, &str)> =
        members.nodes.iter().filter_map(|n| Some((n.member.cluster_id.as_deref()?, n.server.as_str()))).collect();
    clusters.sort();
    clusters.dedup_by(|a, b| a.0 == b.0);
    if clusters.len() > 1 {
        let names: Vec<String> = clusters.iter().map(|(id, s)| format!("{s} (swarm {id})")).collect();
        return Err(Error::failed_help(
            format!("stage {}: its servers are in different swarms: {}", spec.name, names.join(", ")),
            "fleet joins servers into one swarm only: make the extra ones leave (`docker swarm leave --force` on them)",
        ));
    }
    match members.manager {
        Some(i) => check_owner(spec, &members.nodes[i].server, &members.swarm_labels),
        None => match members.nodes.iter().find(|n| n.member.state == MemberState::Active) {
            Some(n) => Err(Error::failed_help(
                format!(
                    "server {} is in a swarm, and no manager of it is among the running servers of stage {}",
                    n.server, spec.name
                ),
                "boot the stage's managers (`fleet up` boots every server), or make that server leave its swarm",
            )),
            None => Ok(()),
        },
    }
}

fn check_owner(spec: &StageSpec, manager: &str, labels: &HashMap<String, String>) -> Result<()> {
    use crate::engine::labels::{PROJECT, STAGE};
    if labels.get(PROJECT) == Some(&spec.project) && labels.get(STAGE) == Some(&spec.name) {
        return Ok(());
    }
    let owner = match (labels.get(PROJECT), labels.get(STAGE)) {
        (Some(p), Some(s)) => format!("project `{p}` stage `{s}`"),
        _ => "no fleet stage".into(),
    };
    Err(Error::failed_help(
        format!(
            "server {manager} is a manager of a swarm that belongs to {owner}, not to project `{}` stage `{}`",
            spec.project, spec.name
        ),
        "fleet never takes over a swarm it did not form: use other servers, or remove that swarm yourself",
    ))
}

/// The server that forms the swarm when none runs: the first designated manager.
fn former(spec: &StageSpec) -> Option<String> {
    spec.managers().first().map(|s| s.name.clone())
}

/// A manager to talk to (the first designated manager forms the swarm when none runs), then the
/// reached nodes not yet in it join, and the servers still to boot will.
fn membership_steps(spec: &StageSpec, view: &SwarmView) -> Vec<SwarmStep> {
    let members = &view.members;
    let mut steps = Vec::new();
    let manager = match members.manager {
        Some(i) => Some(members.nodes[i].server.clone()),
        None => {
            let first = former(spec).unwrap_or_default();
            steps.push(SwarmStep::Form { server: first.clone() });
            members.nodes.iter().any(|n| n.server == first).then_some(first)
        }
    };
    for n in &members.nodes {
        if Some(&n.server) == manager.as_ref() || n.member.state == MemberState::Active {
            continue;
        }
        let as_manager = spec.servers.iter().any(|s| s.name == n.server && spec.is_manager(s));
        let rejoin = n.member.state == MemberState::Pending;
        steps.push(SwarmStep::Join { server: n.server.clone(), manager: as_manager, rejoin });
    }
    let forms = members.manager.is_none() && manager.is_none();
    for server in spec.servers.iter().filter(|s| view.unreached.contains(&s.name)) {
        if !(forms && former(spec).as_ref() == Some(&server.name)) {
            steps.push(SwarmStep::JoinWhenUp { server: server.name.clone(), manager: spec.is_manager(server) });
        }
    }
    steps
}

/// fleet's labels on a server's node: its name, and the services pinned to it.
pub(super) fn node_labels(server: &Server) -> HashMap<String, String> {
    let mut l = HashMap::from([(NODE_SERVER.to_string(), server.name.clone())]);
    for svc in &server.services {
        l.insert(format!("{NODE_RUNS}{svc}"), "true".into());
    }
    l
}

/// fleet's own labels among a node's labels.
pub(super) fn fleet_labels(node: &NodeView) -> HashMap<String, String> {
    node.labels
        .iter()
        .filter(|(k, _)| *k == NODE_SERVER || k.starts_with(NODE_RUNS))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Once a manager runs: every reached node Ready, labelled, in its role and active; then nodes
/// labelled for servers no longer in the file drained and removed.
fn node_steps(spec: &StageSpec, view: &SwarmView) -> Vec<SwarmStep> {
    let reachable_manager =
        view.members.manager.is_some() || view.members.nodes.iter().any(|n| former(spec).as_ref() == Some(&n.server));
    if !reachable_manager {
        return Vec::new();
    }
    let mut steps = vec![SwarmStep::NodesReady];
    for n in &view.members.nodes {
        let Some(server) = spec.servers.iter().find(|s| s.name == n.server) else { continue };
        // A node not in the manager's list is one that joins in this plan: it starts with no
        // labels, in the role its join gives it. (A Pending one that must join again instead of
        // catching up is labelled by its rejoin.)
        let listed = matches!(n.member.state, MemberState::Active | MemberState::Pending);
        let found = view.listed.iter().find(|l| listed && l.id == n.member.node_id);
        if let Some(step) = set_node(spec, server, found) {
            steps.push(step);
        }
    }
    let manager_id = view.members.manager.map(|m| view.members.nodes[m].member.node_id.as_str());
    for gone in &view.listed {
        let Some(name) = gone.server() else { continue };
        if spec.servers.iter().any(|s| s.name == name) || Some(gone.id.as_str()) == manager_id {
            continue;
        }
        steps.push(SwarmStep::DrainRemove { server: name.to_string(), node: gone.clone() });
    }
    steps
}

/// What one node needs: labels, a promotion (never a demotion: that could take the last
/// manager, and swarm refuses it anyway), or its return from drain.
fn set_node(spec: &StageSpec, server: &Server, found: Option<&NodeView>) -> Option<SwarmStep> {
    let want = node_labels(server);
    let have = found.map(fleet_labels).unwrap_or_default();
    let promote = spec.is_manager(server) && found.is_some_and(|f| !f.manager);
    let mut changes = Vec::new();
    if have != want {
        let mut shown: Vec<String> = want.iter().map(|(k, v)| format!("{k}={v}")).collect();
        shown.sort();
        changes.push(format!("labels {}", shown.join(", ")));
    }
    if promote {
        changes.push("promoted to manager".into());
    }
    if found.is_some_and(|f| f.availability == "drain") {
        changes.push("active again (was drained)".into());
    }
    (!changes.is_empty()).then(|| SwarmStep::SetNode {
        server: server.name.clone(),
        labels: want,
        promote,
        change: changes.join(", "),
    })
}

/// Level by level of the dependency graph: what each service needs, with the spec to send.
fn service_steps(spec: &StageSpec, view: &SwarmView) -> Vec<SwarmStep> {
    let mut steps = Vec::new();
    for (level, names) in graph::levels(&spec.services).into_iter().enumerate() {
        for name in &names {
            let Some(svc) = spec.service(name) else { continue };
            let hash = ConfigHash::of(svc, view.image_ids.get(&svc.image).map_or("", String::as_str));
            let have = view.services.iter().find(|o| &o.service == name);
            let Some(action) = decide(svc, &hash, have) else { continue };
            let body = Box::new(service_spec(spec, svc, &hash, spec.is_pinned(name)));
            let id = have.map(|h| h.id.clone());
            steps.push(SwarmStep::Service { level, service: name.clone(), id, body, action });
        }
    }
    steps
}

/// What a service needs: nothing, a create, a rolling update, or only its replica count.
pub(super) fn decide(svc: &Service, hash: &ConfigHash, have: Option<&ObservedService>) -> Option<InfraAction> {
    let Some(have) = have else {
        return Some(InfraAction::CreateService { service: svc.name.clone(), replicas: svc.replicas });
    };
    if have.config_hash.as_deref() != Some(hash.hash.as_str()) {
        let env = have_environment(have);
        let made = Made {
            hash: have.config_hash.as_deref(),
            fields: &have.field_hashes,
            image_id: have.image_id.as_deref(),
            environment: Some(&env),
        };
        return Some(InfraAction::UpdateService {
            service: svc.name.clone(),
            reason: change_reason(svc, hash, &made),
            order: svc.update.clone().unwrap_or_default().order,
            replicas: svc.replicas,
        });
    }
    (have.replicas != u64::from(svc.replicas)).then(|| InfraAction::ScaleService {
        service: svc.name.clone(),
        from: have.replicas,
        to: svc.replicas,
    })
}

fn have_environment(have: &ObservedService) -> BTreeMap<String, String> {
    have.spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

#[cfg(test)]
#[path = "swarm_plan_tests.rs"]
mod tests;
