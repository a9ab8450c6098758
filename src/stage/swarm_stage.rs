//! Swarm stages (`orchestrator "swarm"`): the stage's servers form one Docker Swarm and each
//! fleet service is one swarm service. The servers layer (create, boot, SSH, engine, images'
//! sources) is `remote_stage`'s; this module takes the reached engines from there and owns the
//! swarm layer: membership, node labels, the overlay network, services and their rollouts.
//!
//! Observed, not remembered: whose swarm it is comes from the swarm's labels, which server a node
//! is from each engine's own `/info`, what a service was made from from its labels.

use super::UpOptions;
use super::down_plan::{Line, SeenMember, SeenService, SeenSwarm};
use super::swarm_plan::{
    Members, SeenCopy, SeenNode, SwarmPlan, SwarmStep, SwarmView, check_members, node_labels, plan_swarm,
};
use crate::engine::swarm::{MemberState, Membership, NodeView, ObservedService, TaskView, service_name};
use crate::engine::{Engine, Event, labels};
use crate::error::{Error, Result};
use crate::infra::{InfraEvent, Progress};
use crate::model::{Server, StageSpec};
use crate::plan::{Action, InfraAction, ObservedContainer, Plan, RunState};
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

/// Each reached node's membership, and the swarm's labels from an active manager among them.
/// I/O only: `swarm_plan::check_members` decides whether fleet may act on it.
async fn observe_members(nodes: &[Node<'_>]) -> Result<Members> {
    let members = futures_util::future::try_join_all(nodes.iter().map(|n| n.engine.swarm_membership())).await?;
    let manager = members.iter().position(|m| m.state == MemberState::Active && m.manager);
    let swarm_labels = match manager {
        Some(i) => nodes[i].engine.swarm_inspect().await?.0,
        None => HashMap::new(),
    };
    let nodes = nodes.iter().zip(members).map(|(n, member)| SeenNode { server: n.server.name.clone(), member });
    Ok(Members { nodes: nodes.collect(), manager, swarm_labels })
}

/// The membership of a swarm fleet may act on (what `status`, `ps` and `down` read from).
async fn observe(spec: &StageSpec, nodes: &[Node<'_>]) -> Result<Members> {
    let members = observe_members(nodes).await?;
    check_members(spec, &members)?;
    Ok(members)
}

/// `up`'s view of a swarm stage: membership, then from a manager the nodes, the overlay and the
/// services, then each node's images. Images are resolved by the engines' own rule, as the
/// local stage's observation does: a run fetches what a node lacks (pulled, or sent from this
/// machine) so that the config hashes name the image really run; a dry run lists what it would send.
async fn observe_view(
    spec: &StageSpec,
    nodes: &[Node<'_>],
    unreached: &[&Server],
    opts: &UpOptions,
    ui: &Ui,
) -> Result<SwarmView> {
    // Checked before anything more is read from a swarm that may not be the stage's.
    let members = observe(spec, nodes).await?;
    let (listed, network_missing, services) = match members.manager {
        Some(m) => {
            let engine = nodes[m].engine;
            let (listed, network, services) =
                tokio::join!(engine.swarm_nodes(), engine.network_to_create(spec), engine.swarm_services(spec));
            (listed?, network?, services?)
        }
        None => (Vec::new(), true, Vec::new()),
    };
    let events = ui.events();
    let mut image_ids: BTreeMap<String, String> = BTreeMap::new();
    let mut copies = Vec::new();
    for node in nodes {
        let sub = spec.placeable_on(node.server);
        let resolved = node.engine.resolve_images(&sub, opts.pull, opts.dry_run, &events).await?;
        copies.extend(resolved.copies.into_iter().map(|c| SeenCopy {
            server: node.server.name.clone(),
            image: c.image,
            bytes: c.bytes,
            pull_first: c.pull_first,
        }));
        for (image, id) in resolved.ids.into_iter().filter(|(_, id)| !id.is_empty()) {
            image_ids.entry(image).or_insert(id);
        }
    }
    let unreached = unreached.iter().map(|s| s.name.clone()).collect();
    Ok(SwarmView { members, unreached, listed, network_missing, services, image_ids, copies })
}

/// `up`'s swarm layer: observe (membership, nodes, services, images) → plan (pure,
/// `swarm_plan::plan_swarm`) → the dry run prints that plan, the run executes it.
/// `unreached` are servers still to be created or booted (a dry run plans as far as it can).
pub(super) async fn converge(
    spec: &StageSpec,
    nodes: &[Node<'_>],
    unreached: &[&Server],
    opts: &UpOptions,
    progress: &Progress,
    ui: &Ui,
    hold: &(dyn Fn(&Plan) -> Result<()> + Sync),
) -> Result<Plan> {
    let view = observe_view(spec, nodes, unreached, opts, ui).await?;
    let plan = plan_swarm(spec, &view, opts.remove_orphans)?;
    for orphan in &plan.kept_orphans {
        ui.warn(format!(
            "service {orphan} runs in stage {} but is no longer in the file; `up --remove-orphans` removes it",
            spec.name
        ));
    }
    match (opts.dry_run, opts.format) {
        (true, Format::Text) => plan.lines().into_iter().for_each(|line| match line {
            Line::Action(a) => ui.line(crate::ui::action_line(&a)),
            Line::Infra(a) => ui.line(crate::ui::infra_line(&a)),
            Line::Note(n) => ui.line(n),
        }),
        (true, Format::Json) => {}
        (false, _) => {
            // A gated run (`mcp apply`) executes only the plan its gate passed.
            hold(&plan.to_plan())?;
            // A volume whose restore was interrupted is incomplete (its services were scaled to
            // 0 for it): nothing is scaled back or started until it is restored.
            for node in nodes {
                crate::ops::refuse_interrupted_restore(node.engine, spec).await?;
            }
            Executor::new(nodes, &view.members, progress, ui).run(spec, &plan).await?
        }
    }
    Ok(plan.to_plan())
}

/// The one executor of a `SwarmPlan`: it walks the steps in order, each level of services
/// together, and reports each step as the typed value the dry run printed. It keeps what the
/// run changes: which node manages, each node's membership, the join tokens once read.
struct Executor<'a, 'n> {
    nodes: &'a [Node<'n>],
    members: Vec<Membership>,
    manager: Option<usize>,
    /// Worker and manager join tokens, read from the manager at the first join.
    tokens: Option<(String, String)>,
    progress: &'a Progress,
    ui: &'a Ui,
}

impl<'a, 'n> Executor<'a, 'n> {
    fn new(nodes: &'a [Node<'n>], members: &Members, progress: &'a Progress, ui: &'a Ui) -> Self {
        let current = members.nodes.iter().map(|n| n.member.clone()).collect();
        Self { nodes, members: current, manager: members.manager, tokens: None, progress, ui }
    }

    async fn run(mut self, spec: &StageSpec, plan: &SwarmPlan) -> Result<()> {
        let mut steps = plan.steps.iter().peekable();
        while let Some(step) = steps.next() {
            let SwarmStep::Service { level, .. } = step else {
                self.step(spec, plan, step).await?;
                continue;
            };
            let mut batch = vec![step];
            while let Some(next) = steps.next_if(|s| matches!(s, SwarmStep::Service { level: l, .. } if l == level)) {
                batch.push(next);
            }
            self.services(spec, &batch).await?;
        }
        Ok(())
    }

    fn announce(&self, step: &SwarmStep) {
        if let Some(Line::Infra(action)) = step.line() {
            (self.progress)(InfraEvent::Action(action));
        }
    }

    /// The reached node of a server; a step for a server that is not reached cannot be run.
    fn at(&self, server: &str) -> Result<usize> {
        self.nodes.iter().position(|n| n.server.name == server).ok_or_else(|| {
            Error::failed(format!("server {server} is not running, so fleet cannot change its swarm membership yet"))
        })
    }

    fn manager(&self) -> Result<&'n Engine> {
        let m = self.manager.filter(|&m| self.members[m].state == MemberState::Active);
        m.map(|m| self.nodes[m].engine)
            .ok_or_else(|| Error::failed("no manager of the swarm answers; it cannot be changed".to_string()))
    }

    async fn step(&mut self, spec: &StageSpec, plan: &SwarmPlan, step: &SwarmStep) -> Result<()> {
        match step {
            SwarmStep::Form { server } => {
                let i = self.at(server)?;
                self.announce(step);
                self.nodes[i].engine.swarm_init(spec, &self.nodes[i].address).await?;
                self.members[i] = self.nodes[i].engine.swarm_membership().await?;
                self.manager = Some(i);
            }
            SwarmStep::Join { server, manager, rejoin } => self.join(step, server, *manager, *rejoin).await?,
            SwarmStep::JoinWhenUp { server, .. } => {
                return Err(Error::failed(format!("server {server} is not running, so it cannot join the swarm yet")));
            }
            SwarmStep::NodesReady => wait_ready(spec, self.manager()?, self.nodes, &self.members).await?,
            SwarmStep::SetNode { server, labels, promote, .. } => {
                let id = self.members[self.at(server)?].node_id.clone();
                self.announce(step);
                self.manager()?.swarm_set_node(&id, labels, promote.then_some(true), false).await?;
            }
            SwarmStep::DrainRemove { server, node } => {
                self.announce(step);
                drain_and_remove(self.manager()?, node).await?;
                self.ui.note(format!(
                    "server {server} is no longer in stage {}: it left the swarm, and the server itself still runs (and is billed); delete it yourself if it is no longer needed",
                    spec.name
                ));
            }
            SwarmStep::CopyImage { server, image, .. } => {
                let i = self.at(server)?;
                self.announce(step);
                self.nodes[i].engine.pull_or_copy(image, &self.ui.events()).await?;
            }
            SwarmStep::Network => {
                let action = plan.network.clone().unwrap_or(Action::CreateNetwork { name: spec.network_name() });
                self.ui.events()(Event::Applying(action));
                self.manager()?.ensure_overlay(spec).await?;
            }
            SwarmStep::RemoveOrphan { id, .. } => {
                self.announce(step);
                self.manager()?.swarm_remove_service(id).await?;
            }
            SwarmStep::Service { .. } => self.services(spec, &[step]).await?,
        }
        Ok(())
    }

    /// A node joins the swarm in its role. One that reported Pending first gets a short wait to
    /// catch up on its own; if it does not, it leaves, joins again and gets its labels back.
    async fn join(&mut self, step: &SwarmStep, server: &str, manager: bool, rejoin: bool) -> Result<()> {
        let i = self.at(server)?;
        let node = &self.nodes[i];
        if rejoin {
            if wait_active(node).await? {
                self.members[i] = node.engine.swarm_membership().await?;
                return Ok(());
            }
            node.engine.swarm_leave(true).await?;
        }
        self.announce(step);
        let m = self.manager.ok_or_else(|| Error::failed(format!("server {server}: no manager to join")))?;
        if self.tokens.is_none() {
            let (_, worker, manager_token) = self.nodes[m].engine.swarm_inspect().await?;
            self.tokens = Some((worker, manager_token));
        }
        let (worker, manager_token) = self.tokens.as_ref().expect("read just above");
        let token = if manager { manager_token } else { worker };
        node.engine.swarm_join(&self.nodes[m].address, &node.address, token).await?;
        self.members[i] = node.engine.swarm_membership().await?;
        if rejoin {
            let labels = node_labels(node.server);
            let relabel = SwarmStep::SetNode {
                server: server.to_string(),
                labels: labels.clone(),
                promote: false,
                change: "labels restored after its rejoin".into(),
            };
            self.announce(&relabel);
            self.manager()?.swarm_set_node(&self.members[i].node_id, &labels, None, false).await?;
        }
        Ok(())
    }

    /// One level of services: each create or update sent, then all their rollouts awaited.
    async fn services(&self, spec: &StageSpec, batch: &[&SwarmStep]) -> Result<()> {
        let manager = self.manager()?;
        let mut jobs = Vec::new();
        for step in batch {
            let SwarmStep::Service { service, id, body, action, .. } = step else { continue };
            self.announce(step);
            jobs.push(rollout(manager, spec, service.clone(), id.clone(), (**body).clone(), action.clone(), self.ui));
        }
        futures_util::future::try_join_all(jobs).await?;
        Ok(())
    }
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
        members: view
            .nodes
            .iter()
            .map(|n| SeenMember {
                server: n.server.clone(),
                manager: n.member.manager,
                in_swarm: n.member.state != MemberState::Inactive,
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
pub(super) async fn status_rows(
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
