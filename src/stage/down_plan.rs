//! `down` of a remote stage as data: what was observed (`DownObservation`, filled by
//! `remote_down::observe_cloud` and `remote_down::observe_engines`), and the pure `plan` that
//! turns it into the `DownPlan` the executor runs and `--dry-run` prints. No I/O here: every
//! branch is unit-tested without Docker, SSH or HTTP (`down_plan_tests.rs`).

use crate::dns::FoundRecord;
use crate::infra::{Machine, Power};
use crate::model::{ServerProvider, StageSpec};
use crate::plan::{self, Action, DownMode, InfraAction, ObservedStage, Plan, graph};
use crate::proxy::SeenProxy;
use crate::report::DownOutcome;

/// What `down` asks of the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownIntent {
    /// Containers stopped; servers keep running.
    Stop,
    /// Containers stopped, then fleet's servers powered off (graceful, forced after a deadline).
    Suspend,
    /// Containers (and with `volumes` their volumes) removed, fleet's servers and owned records deleted.
    Destroy { volumes: bool },
}

impl DownIntent {
    pub fn of(opts: &super::DownOptions) -> Self {
        match (opts.destroy, opts.suspend) {
            (true, _) => Self::Destroy { volumes: opts.volumes },
            (false, true) => Self::Suspend,
            (false, false) => Self::Stop,
        }
    }

    fn container_mode(self) -> DownMode {
        match self {
            Self::Destroy { volumes } => DownMode::Destroy { volumes },
            _ => DownMode::Stop,
        }
    }
}

/// Everything `down` needs to know, observed before anything changes.
#[derive(Debug, Clone, Default)]
pub struct DownObservation {
    /// One per server of the stage, in the file's order.
    pub servers: Vec<SeenServer>,
    /// Records fleet owns at each server's names, whether or not the server still exists.
    pub records: Vec<SeenRecord>,
    /// A swarm stage's swarm as its reachable manager reports it (None: no manager runs).
    pub swarm: Option<SeenSwarm>,
}

/// One server of the stage as the provider (and, when it runs, its engine) reports it.
#[derive(Debug, Clone)]
pub struct SeenServer {
    pub name: String,
    pub machine: Option<Machine>,
    /// The server's containers of this stage; None when its engine was not asked (not running,
    /// or a swarm stage, whose containers are the swarm's).
    pub containers: Option<ObservedStage>,
    /// The stage's proxy container on the server's engine (found by its labels, whether or not
    /// the file still routes anything); None when there is none or the engine was not asked.
    pub proxy: Option<SeenProxy>,
}

#[derive(Debug, Clone)]
pub struct SeenRecord {
    pub server: String,
    pub record: FoundRecord,
}

/// A swarm's services and members, as one manager reports them.
#[derive(Debug, Clone, Default)]
pub struct SeenSwarm {
    /// The server whose engine is the reachable manager.
    pub manager: String,
    pub services: Vec<SeenService>,
    /// The stage's overlay network exists.
    pub network: bool,
    /// Each reached node: its server, whether it is a manager, whether it is in the swarm at all.
    pub members: Vec<SeenMember>,
    /// The stage's volumes on each reached node (observed for `--destroy --volumes` only).
    pub volumes: Vec<NodeVolumes>,
}

/// The stage's volumes on one node: a swarm's volumes are local to each node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVolumes {
    pub server: String,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenService {
    pub id: String,
    /// The fleet service it runs.
    pub service: String,
    pub replicas: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenMember {
    pub server: String,
    pub manager: bool,
    pub in_swarm: bool,
}

/// One step of a remote `down`, carrying what its apply needs. Steps are in dependency order:
/// containers, the swarm's services, tasks, network, leaves and volumes, then records, then
/// servers last to first (the lock holder last).
#[derive(Debug, Clone)]
pub enum DownStep {
    /// The stage's proxy on one server stopped or removed (before its services: it serves them).
    Proxy { server: String, id: String, action: Action },
    /// Stop or remove one server's containers as `plan` says (`observed` gives their ids).
    Containers { server: String, part: StageSpec, observed: ObservedStage, plan: Plan },
    /// Scale a swarm service to 0 (spec kept) or remove it (`--destroy`), on the manager.
    SwarmService { manager: String, id: String, remove: bool, action: InfraAction },
    /// Wait until no task container runs on any node; on `--destroy` remove what is left.
    SwarmTasksGone { destroy: bool },
    /// The stage's overlay network, removed on the manager once the tasks are gone.
    SwarmNetwork { manager: String, action: Action },
    /// A node leaves the swarm (workers first, managers last).
    LeaveSwarm { server: String, manager: bool, action: InfraAction },
    /// `--destroy --volumes` of a swarm stage: the stage's volumes observed on one node, each
    /// shown (dry run, confirmation) like a container stage's volume removal.
    SwarmVolumes { server: String, names: Vec<String> },
    /// The stage lock on the first server is given back: its power-off comes next.
    ReleaseLock,
    /// Graceful shutdown, re-sent while ignored, forced after a deadline.
    PowerOff { server: String, action: InfraAction },
    /// Power off (forced if need be), then delete with its disks; `ip`'s host key is forgotten.
    DeleteServer { server: String, ip: Option<String>, power_off: Option<InfraAction>, action: InfraAction },
    /// A brought host on `--destroy`: its containers go, the machine stays.
    KeepHost { server: String },
    /// The records fleet owns for one server, deleted on `--destroy`.
    DeleteRecords { server: String, records: Vec<FoundRecord> },
}

/// A plan line of a step: a container step or a server/record step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Action(Action),
    Infra(InfraAction),
    Note(String),
}

impl DownStep {
    /// What the step shows, in the order the run does it.
    pub fn lines(&self) -> Vec<Line> {
        match self {
            Self::Containers { plan, .. } => plan.actions.iter().cloned().map(Line::Action).collect(),
            Self::SwarmVolumes { names, .. } => {
                names.iter().map(|name| Line::Action(Action::RemoveVolume { name: name.clone() })).collect()
            }
            Self::SwarmService { action, .. } | Self::LeaveSwarm { action, .. } | Self::PowerOff { action, .. } => {
                vec![Line::Infra(action.clone())]
            }
            Self::SwarmNetwork { action, .. } | Self::Proxy { action, .. } => vec![Line::Action(action.clone())],
            Self::DeleteServer { power_off, action, .. } => {
                power_off.iter().chain([action]).cloned().map(Line::Infra).collect()
            }
            Self::KeepHost { server } => {
                vec![Line::Note(format!("server {server} is a brought host: its containers go, the machine stays"))]
            }
            Self::DeleteRecords { records, .. } => {
                records.iter().map(|r| Line::Infra(super::dns::delete_record(r))).collect()
            }
            Self::SwarmTasksGone { .. } | Self::ReleaseLock => Vec::new(),
        }
    }
}

/// A remote stage's `down`, whole: the dry run prints it, the run executes it.
#[derive(Debug, Clone)]
pub struct DownPlan {
    pub stage: String,
    pub intent: DownIntent,
    pub steps: Vec<DownStep>,
}

impl DownPlan {
    /// The plan as the summary, JSON and confirmation see it: container steps and the rest.
    pub fn to_plan(&self) -> Plan {
        let mut out = Plan { stage: self.stage.clone(), ..Plan::default() };
        for line in self.steps.iter().flat_map(DownStep::lines) {
            match line {
                Line::Action(a) => out.actions.push(a),
                Line::Infra(a) => out.infra.push(a),
                Line::Note(_) => {}
            }
        }
        out
    }

    /// Brought hosts that keep running after a `--destroy`.
    pub fn kept_hosts(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                DownStep::KeepHost { server } => Some(server.as_str()),
                _ => None,
            })
            .collect()
    }

    /// What the stage is once this plan ran, for the report.
    pub fn outcome(&self) -> DownOutcome {
        match self.intent {
            DownIntent::Stop => DownOutcome::Down,
            DownIntent::Suspend => DownOutcome::Suspended,
            DownIntent::Destroy { .. } => {
                DownOutcome::Destroyed { kept_hosts: self.kept_hosts().into_iter().map(String::from).collect() }
            }
        }
    }
}

/// The pure planner: spec + observation → the steps `down` takes, in the order it takes them.
pub fn plan(spec: &StageSpec, seen: &DownObservation, intent: DownIntent) -> DownPlan {
    let mut steps = container_steps(spec, seen, intent);
    if let Some(swarm) = &seen.swarm {
        steps.extend(swarm_steps(spec, swarm, intent));
    }
    // Records before servers: a delete that fails or is interrupted must never leave a name
    // pointing at an address the provider has already handed back (someone else's next).
    if matches!(intent, DownIntent::Destroy { .. }) {
        steps.extend(record_steps(spec, seen));
    }
    steps.extend(server_steps(spec, seen, intent));
    DownPlan { stage: spec.name.clone(), intent, steps }
}

/// Each reached server's proxy, then its containers (not a swarm's: those are its services').
fn container_steps(spec: &StageSpec, seen: &DownObservation, intent: DownIntent) -> Vec<DownStep> {
    let mut steps = Vec::new();
    for (server, s) in spec.servers.iter().zip(&seen.servers) {
        let Some(observed) = s.containers.as_ref().filter(|_| !spec.is_swarm()) else { continue };
        let destroy = matches!(intent, DownIntent::Destroy { .. });
        for action in crate::proxy::plan_down(s.proxy.as_ref(), destroy) {
            let id = s.proxy.as_ref().map(|p| p.id.clone()).unwrap_or_default();
            steps.push(DownStep::Proxy { server: s.name.clone(), id, action });
        }
        let part = spec.for_server(server);
        let plan = plan::plan_down(&part, observed, intent.container_mode());
        if !plan.is_empty() {
            steps.push(DownStep::Containers { server: s.name.clone(), part, observed: observed.clone(), plan });
        }
    }
    steps
}

/// A swarm's services (dependents first), then its tasks, network, members and volumes.
fn swarm_steps(spec: &StageSpec, swarm: &SeenSwarm, intent: DownIntent) -> Vec<DownStep> {
    let destroy = matches!(intent, DownIntent::Destroy { .. });
    let order: Vec<String> = graph::levels(&spec.services).into_iter().rev().flatten().collect();
    let mut services: Vec<&SeenService> = swarm.services.iter().collect();
    // Orphans first (nothing depends on them any more), then dependents before what they use.
    services.sort_by_key(|s| order.iter().position(|n| *n == s.service).map_or(0, |p| p + 1));
    let mut steps = Vec::new();
    for s in services {
        let action = match destroy {
            true => {
                InfraAction::RemoveService { service: s.service.clone(), orphan: spec.service(&s.service).is_none() }
            }
            false if s.replicas > 0 => {
                InfraAction::ScaleService { service: s.service.clone(), from: s.replicas, to: 0 }
            }
            false => continue,
        };
        steps.push(DownStep::SwarmService {
            manager: swarm.manager.clone(),
            id: s.id.clone(),
            remove: destroy,
            action,
        });
    }
    steps.push(DownStep::SwarmTasksGone { destroy });
    if !destroy {
        return steps;
    }
    if swarm.network {
        let action = Action::RemoveNetwork { name: spec.network_name() };
        steps.push(DownStep::SwarmNetwork { manager: swarm.manager.clone(), action });
    }
    // Workers first: a manager leaving last keeps the others' leave orderly.
    let mut leaving: Vec<&SeenMember> = swarm.members.iter().filter(|m| m.in_swarm).collect();
    leaving.sort_by_key(|m| m.manager);
    for m in leaving {
        let action = InfraAction::LeaveSwarm { server: m.server.clone() };
        steps.push(DownStep::LeaveSwarm { server: m.server.clone(), manager: m.manager, action });
    }
    if intent == (DownIntent::Destroy { volumes: true }) {
        for v in swarm.volumes.iter().filter(|v| !v.names.is_empty()) {
            steps.push(DownStep::SwarmVolumes { server: v.server.clone(), names: v.names.clone() });
        }
    }
    steps
}

/// Servers last to first (a swarm's workers before its managers), so the first, which holds the
/// lock, goes last; a brought host is never powered off or deleted.
fn server_steps(spec: &StageSpec, seen: &DownObservation, intent: DownIntent) -> Vec<DownStep> {
    let mut order: Vec<usize> = (0..seen.servers.len().min(spec.servers.len())).rev().collect();
    if spec.is_swarm() {
        order.sort_by_key(|&i| spec.is_manager(&spec.servers[i]));
    }
    let mut steps = Vec::new();
    for i in order {
        let (server, Some(m)) = (&spec.servers[i], &seen.servers[i].machine) else { continue };
        let power_off = (m.power != Power::Down).then(|| InfraAction::PowerOff { server: server.name.clone() });
        let step = match (&server.provider, intent) {
            (ServerProvider::Host { .. }, DownIntent::Destroy { .. }) => {
                steps.push(DownStep::KeepHost { server: server.name.clone() });
                continue;
            }
            (ServerProvider::Host { .. }, _) | (_, DownIntent::Stop) => continue,
            (_, DownIntent::Suspend) => match power_off {
                Some(action) => DownStep::PowerOff { server: server.name.clone(), action },
                None => continue,
            },
            (_, DownIntent::Destroy { .. }) => DownStep::DeleteServer {
                server: server.name.clone(),
                ip: m.ip.clone(),
                power_off,
                action: crate::infra::sakura_servers::delete_action(server, m.disks.len()),
            },
        };
        if i == 0 {
            steps.push(DownStep::ReleaseLock);
        }
        steps.push(step);
    }
    steps
}

/// The records fleet owns, server by server in the file's order.
fn record_steps(spec: &StageSpec, seen: &DownObservation) -> Vec<DownStep> {
    spec.servers
        .iter()
        .filter_map(|server| {
            let records: Vec<FoundRecord> =
                seen.records.iter().filter(|r| r.server == server.name).map(|r| r.record.clone()).collect();
            (!records.is_empty()).then(|| DownStep::DeleteRecords { server: server.name.clone(), records })
        })
        .collect()
}

#[cfg(test)]
#[path = "down_plan_tests.rs"]
mod tests;
