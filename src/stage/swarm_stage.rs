//! Swarm stages (`orchestrator "swarm"`): the stage's servers form one Docker Swarm and each
//! fleet service is one swarm service. The servers layer (create, boot, SSH, engine, images'
//! sources) is `remote_stage`'s; this module takes the reached engines from there and owns the
//! swarm layer: membership, node labels, the overlay network, services and their rollouts.
//!
//! Observed, not remembered: whose swarm it is comes from the swarm's labels, which server a node
//! is from each engine's own `/info`, what a service was made from from its labels.

use super::UpOptions;
use super::down_plan::{SeenMember, SeenService, SeenSwarm};
use crate::engine::swarm::{
    MemberState, Membership, NODE_RUNS, NODE_SERVER, NodeView, ObservedService, TaskView, service_name,
};
use crate::engine::{Engine, Event, labels};
use crate::error::{Error, Result};
use crate::infra::{InfraEvent, Progress};
use crate::model::{Server, StageSpec};
use crate::plan::{Action, ConfigHash, InfraAction, Made, ObservedContainer, Plan, RunState, change_reason, graph};
use crate::report::{Health, NodeRole, NodeStatus, ServiceState, ServiceStatus};
use crate::ui::{Format, Ui};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How often a rollout or a node is looked at again.
const POLL: Duration = Duration::from_millis(500);
/// How long nodes get to report Ready after a join or a boot.
const NODES_READY: Duration = Duration::from_secs(180);
/// Failed tasks of a new service before `up` stops waiting (swarm itself retries forever).
const FAILED_TASKS: usize = 3;
/// Beyond the rollout's own delays and monitors: image start and health checks.
const ROLLOUT_SLACK: Duration = Duration::from_secs(300);
/// How long `down` waits for the tasks' containers to go.
const TASKS_GONE: Duration = Duration::from_secs(120);
/// A stopped task container still there after this is one swarm forgot: `--destroy` removes it.
const FORGOTTEN_TASK: Duration = Duration::from_secs(10);
/// Tries (one per POLL) to remove the overlay while its endpoints are being released.
const NETWORK_TRIES: u32 = 20;

/// A running server of the stage, reached over SSH.
pub(super) struct Node<'a> {
    pub server: &'a Server,
    /// The server's own address: swarm traffic and advertise address.
    pub address: String,
    pub engine: &'a Engine,
}

/// The stage's swarm as its nodes report it.
struct SwarmView {
    members: Vec<Membership>,
    /// Index (into the nodes) of a reachable manager.
    manager: Option<usize>,
}

async fn observe(spec: &StageSpec, nodes: &[Node<'_>]) -> Result<SwarmView> {
    let members = futures_util::future::try_join_all(nodes.iter().map(|n| n.engine.swarm_membership())).await?;
    for (node, m) in nodes.iter().zip(&members) {
        if matches!(m.state, MemberState::Error | MemberState::Locked) {
            return Err(Error::failed_help(
                format!(
                    "server {}: its engine's swarm state is {:?}{}",
                    node.server.name,
                    m.state,
                    m.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                ),
                "fleet does not repair a locked or failed swarm node: on that server, `docker swarm leave --force`, then run up again",
            ));
        }
    }
    let mut clusters: Vec<(&str, &str)> = nodes
        .iter()
        .zip(&members)
        .filter_map(|(n, m)| Some((m.cluster_id.as_deref()?, n.server.name.as_str())))
        .collect();
    clusters.sort();
    clusters.dedup_by(|a, b| a.0 == b.0);
    if clusters.len() > 1 {
        let names: Vec<String> = clusters.iter().map(|(id, s)| format!("{s} (swarm {id})")).collect();
        return Err(Error::failed_help(
            format!("stage {}: its servers are in different swarms: {}", spec.name, names.join(", ")),
            "fleet joins servers into one swarm only: make the extra ones leave (`docker swarm leave --force` on them)",
        ));
    }
    let manager = members.iter().position(|m| m.state == MemberState::Active && m.manager);
    if let Some(i) = manager {
        let (labels, _, _) = nodes[i].engine.swarm_inspect().await?;
        if labels.get(labels::PROJECT) != Some(&spec.project) || labels.get(labels::STAGE) != Some(&spec.name) {
            let owner = match (labels.get(labels::PROJECT), labels.get(labels::STAGE)) {
                (Some(p), Some(s)) => format!("project `{p}` stage `{s}`"),
                _ => "no fleet stage".into(),
            };
            return Err(Error::failed_help(
                format!(
                    "server {} is a manager of a swarm that belongs to {owner}, not to project `{}` stage `{}`",
                    nodes[i].server.name, spec.project, spec.name
                ),
                "fleet never takes over a swarm it did not form: use other servers, or remove that swarm yourself",
            ));
        }
    } else if let Some((node, _)) = nodes.iter().zip(&members).find(|(_, m)| m.state == MemberState::Active) {
        return Err(Error::failed_help(
            format!(
                "server {} is in a swarm, and no manager of it is among the running servers of stage {}",
                node.server.name, spec.name
            ),
            "boot the stage's managers (`fleet up` boots every server), or make that server leave its swarm",
        ));
    }
    Ok(SwarmView { members, manager })
}

/// Where one step goes: printed (a dry run) or reported as done (a run), and kept for the plan.
struct Steps<'a> {
    apply: bool,
    show: bool,
    progress: &'a Progress,
    ui: &'a Ui,
    plan: Plan,
}

impl Steps<'_> {
    fn push(&mut self, step: InfraAction) {
        announce(self.apply, self.show, self.progress, self.ui, &step);
        self.plan.infra.push(step);
    }
}

fn announce(apply: bool, show: bool, progress: &Progress, ui: &Ui, step: &InfraAction) {
    if apply {
        progress(InfraEvent::Action(step.clone()));
    } else if show {
        ui.line(crate::ui::infra_line(step));
    }
}

fn role(manager: bool) -> &'static str {
    if manager { "manager" } else { "worker" }
}

/// fleet's labels on a server's node: its name, and the services pinned to it.
pub(super) fn node_labels(server: &Server) -> HashMap<String, String> {
    let mut l = HashMap::from([(NODE_SERVER.to_string(), server.name.clone())]);
    for svc in &server.services {
        l.insert(format!("{NODE_RUNS}{svc}"), "true".into());
    }
    l
}

/// `up`'s swarm layer: form or repair the swarm, label the nodes, get images to every node that
/// may run them, then create or update services level by level of the dependency graph.
/// `unreached` are servers still to be created or booted (a dry run plans as far as it can).
pub(super) async fn converge(
    spec: &StageSpec,
    nodes: &[Node<'_>],
    unreached: &[&Server],
    opts: &UpOptions,
    progress: &Progress,
    ui: &Ui,
) -> Result<Plan> {
    let apply = !opts.dry_run;
    let show = opts.dry_run && opts.format == Format::Text;
    let mut steps = Steps { apply, show, progress, ui, plan: Plan { stage: spec.name.clone(), ..Plan::default() } };
    let view = observe(spec, nodes).await?;
    let mut members = view.members.clone();

    // Membership: a manager to talk to (the first designated manager forms the swarm), then joins.
    let manager = match view.manager {
        Some(i) => Some(i),
        None => {
            let first = spec.managers().first().map(|s| s.name.clone()).unwrap_or_default();
            steps.push(InfraAction::FormSwarm { manager: first.clone() });
            let at = nodes.iter().position(|n| n.server.name == first);
            if let (true, Some(i)) = (apply, at) {
                nodes[i].engine.swarm_init(spec, &nodes[i].address).await?;
                members[i] = nodes[i].engine.swarm_membership().await?;
            }
            at
        }
    };
    // Join tokens only when some node must join: a converged `up` asks nothing more.
    let must_join =
        nodes.iter().enumerate().any(|(i, _)| Some(i) != manager && members[i].state != MemberState::Active);
    let tokens = match (apply && must_join, manager) {
        (true, Some(i)) => Some(nodes[i].engine.swarm_inspect().await?),
        _ => None,
    };
    for (i, node) in nodes.iter().enumerate() {
        if Some(i) == manager || members[i].state == MemberState::Active {
            continue;
        }
        let as_manager = spec.is_manager(node.server);
        if members[i].state == MemberState::Pending {
            // Joining, or cut off from the managers it knew: it catches up on its own when
            // they are back; a node that never does is rejoined.
            if apply && wait_active(node).await? {
                members[i] = node.engine.swarm_membership().await?;
                continue;
            }
            if apply {
                node.engine.swarm_leave(true).await?;
            }
        }
        steps.push(InfraAction::JoinSwarm { server: node.server.name.clone(), role: role(as_manager).into() });
        if let (Some((_, worker, manager_token)), Some(m)) = (&tokens, manager) {
            let token = if as_manager { manager_token } else { worker };
            node.engine.swarm_join(&nodes[m].address, &node.address, token).await?;
            members[i] = node.engine.swarm_membership().await?;
        }
    }
    // A server still to be created or booted joins once it runs, unless it is the one that forms it.
    let forms = view.manager.is_none() && manager.is_none();
    for server in unreached {
        if !(forms && spec.managers().first().map(|m| &m.name) == Some(&server.name)) {
            steps.push(InfraAction::JoinSwarm {
                server: server.name.clone(),
                role: role(spec.is_manager(server)).into(),
            });
        }
    }

    // Nodes: Ready, labelled with their server's name and pinned services, in their role.
    if let Some(m) = manager.filter(|&m| members[m].state == MemberState::Active) {
        let manager_engine = nodes[m].engine;
        if apply {
            wait_ready(spec, manager_engine, nodes, &members).await?;
        }
        let listed = manager_engine.swarm_nodes().await?;
        for (node, member) in nodes.iter().zip(&members) {
            let Some(found) = listed.iter().find(|n| n.id == member.node_id) else { continue };
            let want = node_labels(node.server);
            let have: HashMap<String, String> = found
                .labels
                .iter()
                .filter(|(k, _)| *k == NODE_SERVER || k.starts_with(NODE_RUNS))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let want_manager = spec.is_manager(node.server);
            let mut changes = Vec::new();
            if have != want {
                let mut shown: Vec<String> = want.iter().map(|(k, v)| format!("{k}={v}")).collect();
                shown.sort();
                changes.push(format!("labels {}", shown.join(", ")));
            }
            // Only promotions: a demotion could take the last manager (swarm refuses it anyway).
            if want_manager && !found.manager {
                changes.push("promoted to manager".into());
            }
            if found.availability == "drain" {
                changes.push("active again (was drained)".into());
            }
            if changes.is_empty() {
                continue;
            }
            steps.push(InfraAction::SetNode { server: node.server.name.clone(), change: changes.join(", ") });
            if apply {
                let role = (want_manager && !found.manager).then_some(true);
                manager_engine.swarm_set_node(&found.id, &want, role, false).await?;
            }
        }
    }

    // A node fleet labelled for a server no longer in the file: drained (its tasks move to the
    // other nodes), then out of the swarm. The server itself is kept: only `down --destroy`
    // deletes servers.
    if let Some(m) = manager.filter(|&m| members[m].state == MemberState::Active) {
        let manager_engine = nodes[m].engine;
        for gone in manager_engine.swarm_nodes().await? {
            let Some(name) = gone.server() else { continue };
            if spec.servers.iter().any(|s| s.name == name) || gone.id == members[m].node_id {
                continue;
            }
            steps.push(InfraAction::LeaveSwarm { server: name.to_string() });
            if apply {
                drain_and_remove(manager_engine, &gone).await?;
                ui.note(format!(
                    "server {name} is no longer in stage {}: it left the swarm, and the server itself still runs (and is billed); delete it yourself if it is no longer needed",
                    spec.name
                ));
            }
        }
    }

    // Images: every node gets those of the services that may run on it (copied when it cannot pull).
    let events = ui.events();
    let mut image_ids: BTreeMap<String, String> = BTreeMap::new();
    for node in nodes {
        let sub = spec.placeable_on(node.server);
        let resolved = node.engine.resolve_images(&sub, opts.pull, opts.dry_run, &events).await?;
        for copy in resolved.copies {
            steps.push(InfraAction::CopyImage {
                server: node.server.name.clone(),
                image: copy.image,
                bytes: copy.bytes,
                pull_first: copy.pull_first,
            });
        }
        for (image, id) in resolved.ids {
            if !id.is_empty() {
                image_ids.entry(image).or_insert(id);
            }
        }
    }

    // The overlay network and the services, on the manager (all planned as new without one).
    let Some(m) = manager.filter(|&m| members[m].state == MemberState::Active) else {
        steps.plan.actions.push(Action::CreateNetwork { name: spec.network_name() });
        if show {
            ui.line(crate::ui::action_line(&Action::CreateNetwork { name: spec.network_name() }));
        }
        for svc in &spec.services {
            steps.push(InfraAction::CreateService { service: svc.name.clone(), replicas: svc.replicas });
        }
        return Ok(steps.plan);
    };
    let manager_engine = nodes[m].engine;
    if manager_engine.network_to_create(spec).await? {
        let action = Action::CreateNetwork { name: spec.network_name() };
        if apply {
            events(Event::Applying(action.clone()));
            manager_engine.ensure_overlay(spec).await?;
        } else if show {
            ui.line(crate::ui::action_line(&action));
        }
        steps.plan.actions.push(action);
    }
    let observed = manager_engine.swarm_services(spec).await?;
    for have in observed.iter().filter(|o| spec.service(&o.service).is_none()) {
        if opts.remove_orphans {
            steps.push(InfraAction::RemoveService { service: have.service.clone(), orphan: true });
            if apply {
                manager_engine.swarm_remove_service(&have.id).await?;
            }
        } else {
            ui.warn(format!(
                "service {} runs in stage {} but is no longer in the file; `up --remove-orphans` removes it",
                have.service, spec.name
            ));
        }
    }
    // Level by level: a level's services are created or updated together and must be running
    // (healthy, where they have a health check) before the next level's start.
    for level in graph::levels(&spec.services) {
        let mut jobs = Vec::new();
        for name in &level {
            let Some(svc) = spec.service(name) else { continue };
            let hash = ConfigHash::of(svc, image_ids.get(&svc.image).map_or("", String::as_str));
            let have = observed.iter().find(|o| &o.service == name);
            let Some(step) = decide(svc, &hash, have) else { continue };
            announce(apply, show, progress, ui, &step);
            steps.plan.infra.push(step.clone());
            if apply {
                let body = crate::engine::swarm::service_spec(spec, svc, &hash, spec.is_pinned(name));
                jobs.push(rollout(manager_engine, spec, svc.name.clone(), have.map(|h| h.id.clone()), body, step, ui));
            }
        }
        futures_util::future::try_join_all(jobs).await?;
    }
    Ok(steps.plan)
}

/// What a service needs: nothing, a create, a rolling update, or only its replica count.
pub(super) fn decide(
    svc: &crate::model::Service,
    hash: &ConfigHash,
    have: Option<&ObservedService>,
) -> Option<InfraAction> {
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

/// Sends one create or update and waits until the service's tasks run the new spec: a failed
/// rollout (rolled back, or paused) fails `up` with the task's error.
async fn rollout(
    engine: &Engine,
    spec: &StageSpec,
    service: String,
    id: Option<String>,
    body: bollard::models::ServiceSpec,
    step: InfraAction,
    ui: &Ui,
) -> Result<()> {
    let hash = body.labels.as_ref().and_then(|l| l.get(labels::CONFIG_HASH)).cloned().unwrap_or_default();
    let replicas = body.mode.as_ref().and_then(|m| m.replicated.as_ref()).and_then(|r| r.replicas).unwrap_or(0);
    let id = match id {
        Some(id) => {
            engine.swarm_update_service(&id, &body).await?;
            id
        }
        None => engine.swarm_create_service(body.clone()).await?,
    };
    let update = body.update_config.clone().unwrap_or_default();
    let per_batch = Duration::from_nanos((update.delay.unwrap_or(0) + update.monitor.unwrap_or(0)).max(0) as u64);
    let deadline = Instant::now() + per_batch * (replicas.max(1) as u32) + ROLLOUT_SLACK;
    let updating = matches!(step, InfraAction::UpdateService { .. });
    ui.events()(Event::Waiting { service: service.clone(), until: "its tasks run the new spec" });
    loop {
        let now = engine
            .swarm_service(&id)
            .await?
            .ok_or_else(|| Error::failed(format!("service {service} vanished during its rollout")))?;
        let tasks = engine.swarm_tasks(&id).await?;
        let current: Vec<&TaskView> = tasks.iter().filter(|t| task_hash(t, &hash)).collect();
        let running = current.iter().filter(|t| t.is_running() && t.desired == "running").count() as i64;
        // Replaced means gone: an old task told to shut down can still be running on its node
        // for a moment (start-first stops it only after its successor runs).
        let stale = tasks.iter().any(|t| !task_hash(t, &hash) && (t.desired == "running" || t.is_running()));
        if let Some((state, message)) = now.update.as_ref().filter(|_| updating) {
            match state.as_str() {
                "rollback_started" | "rollback_completed" | "rollback_paused" => {
                    return Err(rollout_failed(spec, &service, &tasks, &hash, message, true));
                }
                "paused" => return Err(rollout_failed(spec, &service, &tasks, &hash, message, false)),
                _ => {}
            }
        }
        if running == replicas && !stale {
            ui.events()(Event::Ready { service: service.clone() });
            return Ok(());
        }
        let failed = current.iter().filter(|t| t.is_failed()).count();
        if !updating && failed >= FAILED_TASKS {
            return Err(rollout_failed(spec, &service, &tasks, &hash, "", false));
        }
        if Instant::now() > deadline {
            return Err(Error::failed_help(
                format!(
                    "service {service}: {running} of {replicas} tasks run the new spec after waiting{}",
                    last_error(&tasks, &hash).map(|e| format!("; last task error: {e}")).unwrap_or_default()
                ),
                format!("see `fleet ps {}` and `fleet logs {} {service}`", spec.name, spec.name),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether a task was made from the spec with this config hash (labels ride on the task spec).
fn task_hash(task: &TaskView, hash: &str) -> bool {
    task.config_hash.as_deref() == Some(hash)
}

fn last_error(tasks: &[TaskView], hash: &str) -> Option<String> {
    tasks
        .iter()
        .filter(|t| t.config_hash.as_deref() == Some(hash))
        .find_map(|t| t.error.clone().or_else(|| t.is_failed().then(|| t.message.clone())))
}

fn rollout_failed(
    spec: &StageSpec,
    service: &str,
    tasks: &[TaskView],
    hash: &str,
    message: &str,
    rolled_back: bool,
) -> Error {
    let task = last_error(tasks, hash).unwrap_or_else(|| "no task error was reported".into());
    let swarm = if message.is_empty() { String::new() } else { format!(" (swarm: {message})") };
    if rolled_back {
        Error::failed_help(
            format!(
                "service {service}: the update failed and was rolled back: {task}{swarm}; the previous version is serving"
            ),
            format!(
                "fix the service and run `fleet up {}` again; `fleet logs {} {service}` shows the tasks' output",
                spec.name, spec.name
            ),
        )
    } else {
        Error::failed_help(
            format!("service {service}: its new tasks fail: {task}{swarm}"),
            format!(
                "fix the service and run `fleet up {}` again; `fleet logs {} {service}` shows the tasks' output",
                spec.name, spec.name
            ),
        )
    }
}

/// Drains a node (swarm moves its tasks), waits until none runs there, then removes it.
async fn drain_and_remove(manager: &Engine, node: &crate::engine::swarm::NodeView) -> Result<()> {
    if node.manager {
        manager.swarm_set_node(&node.id, &node.labels, Some(false), true).await?;
    } else {
        manager.swarm_set_node(&node.id, &node.labels, None, true).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while node.ready && Instant::now() < deadline {
        let filters =
            std::collections::HashMap::from([("node", vec![node.id.as_str()]), ("desired-state", vec!["running"])]);
        if manager.swarm_tasks_where(&filters).await?.iter().all(|t| !t.is_running()) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    manager.swarm_remove_node(&node.id).await
}

/// A node that reported Pending: true once it is an active member again (within a short wait).
async fn wait_active(node: &Node<'_>) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if node.engine.swarm_membership().await?.state == MemberState::Active {
            return Ok(true);
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(false)
}

/// Every reached node Ready in the manager's view (after a boot, agents take a few seconds).
async fn wait_ready(spec: &StageSpec, manager: &Engine, nodes: &[Node<'_>], members: &[Membership]) -> Result<()> {
    let deadline = Instant::now() + NODES_READY;
    loop {
        let listed = manager.swarm_nodes().await?;
        let waiting: Vec<&str> = nodes
            .iter()
            .zip(members)
            .filter(|(_, m)| !listed.iter().any(|n| n.id == m.node_id && n.ready))
            .map(|(n, _)| n.server.name.as_str())
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::failed_help(
                format!("stage {}: swarm nodes not Ready: {}", spec.name, waiting.join(", ")),
                "the nodes reach their manager on TCP 2377, 7946 (and UDP 7946, 4789): check the servers' firewall",
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `down`'s view of the swarm: its services, network and members as a reachable manager reports
/// them (None: no manager of it runs). I/O only; `down_plan` decides.
pub(super) async fn observe_down(spec: &StageSpec, nodes: &[Node<'_>]) -> Result<Option<SeenSwarm>> {
    let view = observe(spec, nodes).await?;
    let Some(m) = view.manager else { return Ok(None) };
    let manager = nodes[m].engine;
    let services = manager.swarm_services(spec).await?;
    Ok(Some(SeenSwarm {
        manager: nodes[m].server.name.clone(),
        services: services
            .into_iter()
            .map(|s| SeenService { id: s.id, service: s.service, replicas: s.replicas })
            .collect(),
        network: manager.network_id(spec).await?.is_some(),
        members: nodes
            .iter()
            .zip(&view.members)
            .map(|(n, m)| SeenMember {
                server: n.server.name.clone(),
                manager: m.manager,
                in_swarm: m.state != MemberState::Inactive,
            })
            .collect(),
        volumes: Vec::new(),
    }))
}

/// Scales a service to 0 replicas and keeps its spec (`up` scales it back).
pub(super) async fn scale_to_zero(manager: &Engine, id: &str) -> Result<()> {
    let Some(mut have) = manager.swarm_service(id).await? else { return Ok(()) };
    if let Some(mode) = have.spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
        mode.replicas = Some(0);
    }
    manager.swarm_update_service(id, &have.spec).await
}

/// Waits until no task container of the stage runs on any node. Swarm removes those of the tasks
/// it still knows; a stopped one whose task was forgotten (a node that was powered off while the
/// service scaled down) stays, so `--destroy` removes what is left of the stage.
pub(super) async fn wait_tasks_gone(spec: &StageSpec, nodes: &[Node<'_>], destroy: bool) -> Result<()> {
    let started = Instant::now();
    let deadline = started + TASKS_GONE;
    loop {
        let mut left = 0;
        for node in nodes {
            for c in node.engine.containers(&spec.project, Some(&spec.name)).await? {
                if c.state.is_running() {
                    left += 1;
                } else if destroy && started.elapsed() > FORGOTTEN_TASK {
                    crate::engine::remove_container(node.engine, &c.id, &c.name).await?;
                } else if destroy {
                    left += 1;
                }
            }
        }
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::failed(format!(
                "stage {}: {left} task container(s) still there after {} s",
                spec.name,
                TASKS_GONE.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Removes the overlay network; its endpoints on the nodes are released a moment after the
/// containers go, so a refusal is retried for a while.
pub(super) async fn remove_network(manager: &Engine, spec: &StageSpec) -> Result<()> {
    let mut tries = 0;
    loop {
        match manager.remove_network(spec).await {
            Ok(_) => return Ok(()),
            Err(_) if tries < NETWORK_TRIES => tries += 1,
            Err(e) => return Err(e),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `status`: the swarm's nodes by server name (role, availability, Ready) and one line per
/// service with running/desired replicas.
pub(super) async fn status(
    spec: &StageSpec,
    nodes: &[Node<'_>],
) -> Result<(BTreeMap<String, NodeStatus>, Vec<ServiceStatus>)> {
    let view = observe(spec, nodes).await?;
    let Some(m) = view.manager else {
        let rows = spec
            .services
            .iter()
            .map(|s| ServiceStatus::of(&s.name, s.oneshot, None, ServiceState::NoSwarm, None))
            .collect();
        return Ok((BTreeMap::new(), rows));
    };
    let engine = nodes[m].engine;
    let node_rows = engine
        .swarm_nodes()
        .await?
        .iter()
        .map(|n| (n.server().unwrap_or(&n.hostname).to_string(), node_status(n)))
        .collect();
    let services = engine.swarm_services(spec).await?;
    let rows = spec
        .services
        .iter()
        .map(|svc| match services.iter().find(|s| s.service == svc.name) {
            None => ServiceStatus::of(&svc.name, svc.oneshot, None, ServiceState::NotCreated, None),
            Some(s) => service_row(svc, s),
        })
        .collect();
    Ok((node_rows, rows))
}

fn node_status(n: &NodeView) -> NodeStatus {
    NodeStatus {
        role: if n.manager { NodeRole::Manager } else { NodeRole::Worker },
        leader: n.leader,
        availability: n.availability.clone(),
        ready: n.ready,
    }
}

fn service_row(svc: &crate::model::Service, s: &ObservedService) -> ServiceStatus {
    let mark = match (s.replicas, s.running) {
        (0, _) => Health::Stopped,
        (want, have) if have >= want => Health::Ok,
        _ => Health::Failed,
    };
    let update = s.update.as_ref().map(|(state, _)| state.clone()).filter(|u| u != "completed");
    ServiceStatus {
        service: svc.name.clone(),
        state: ServiceState::Replicated { running: s.running, desired: s.replicas, update },
        health: None,
        uptime_seconds: None,
        container: s.spec.name.clone(),
        mark,
    }
}

/// `ps`: one row per task that should be running (or is), with the server it is on.
pub(super) async fn tasks(spec: &StageSpec, nodes: &[Node<'_>]) -> Result<Vec<(String, ObservedContainer)>> {
    let view = observe(spec, nodes).await?;
    let Some(m) = view.manager else { return Ok(Vec::new()) };
    let engine = nodes[m].engine;
    let by_node: HashMap<String, String> = engine
        .swarm_nodes()
        .await?
        .into_iter()
        .map(|n| (n.id.clone(), n.server().unwrap_or(&n.hostname).to_string()))
        .collect();
    let mut out = Vec::new();
    for s in engine.swarm_services(spec).await? {
        for t in engine.swarm_tasks(&s.id).await? {
            if t.desired != "running" && !t.is_running() {
                continue;
            }
            let state = match t.state.as_str() {
                "running" => RunState::Running,
                "failed" | "rejected" => RunState::Exited(1),
                "complete" => RunState::Exited(0),
                _ => RunState::Other,
            };
            let created = t.created.parse::<jiff::Timestamp>().map(|t| t.as_second()).unwrap_or(0);
            out.push((
                by_node.get(&t.node_id).cloned().unwrap_or_else(|| "(unassigned)".into()),
                ObservedContainer {
                    id: t.container_id.clone().unwrap_or_default(),
                    name: format!("{}.{}", service_name(spec, &s.service), t.slot),
                    stage: spec.name.clone(),
                    service: s.service.clone(),
                    state,
                    health: None,
                    config_hash: t.config_hash.clone(),
                    field_hashes: BTreeMap::new(),
                    image_id: None,
                    created,
                    status_text: if t.state == "running" { t.message.clone() } else { t.state.clone() },
                    ports: s.ports.clone(),
                    environment: None,
                },
            ));
        }
    }
    out.sort_by(|a, b| (&a.1.service, &a.1.name).cmp(&(&b.1.service, &b.1.name)));
    Ok(out)
}

/// `logs`: the running task containers of the selected services on one node, each named
/// `service@server` (with the slot when one server runs several replicas of it).
pub(super) async fn log_targets(
    spec: &StageSpec,
    node: &Node<'_>,
    services: &[String],
) -> Result<Vec<(String, String)>> {
    let found = node.engine.containers(&spec.project, Some(&spec.name)).await?;
    let selected: Vec<&ObservedContainer> = found
        .iter()
        .filter(|c| services.is_empty() || services.contains(&c.service))
        .filter(|c| c.state.is_running())
        .collect();
    let count = |svc: &str| selected.iter().filter(|c| c.service == svc).count();
    Ok(selected
        .iter()
        .map(|c| {
            let label = if count(&c.service) > 1 {
                // Task containers are named `<swarm service>.<slot>.<task id>`.
                let slot = c.name.rsplit('.').nth(1).unwrap_or("?");
                format!("{}.{slot}@{}", c.service, node.server.name)
            } else {
                format!("{}@{}", c.service, node.server.name)
            };
            (label, c.id.clone())
        })
        .collect())
}
