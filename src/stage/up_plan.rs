//! `up` of a remote stage as data, in two rounds. The infra round (`infra_plan`: each server
//! created, powered on or adopted) is planned from what the providers report; the workload round
//! once the servers run, since their engines cannot be asked before: each server's containers
//! (the local planner against that server's engine, with the image copies and the proxy's
//! steps), each server's idle timer, and the stage's records. The dry run prints an `UpPlan`, the
//! run executes one. Pure: unit-tested in `up_plan_tests.rs` without Docker, SSH or HTTP.

use super::auto_suspend::{self, Change};
use super::dns::{self, RecordPlan, SeenNames};
use super::down_plan::Line;
use super::infra_plan::ServerPlan;
use crate::engine::ImageCopy;
use crate::infra::Machine;
use crate::model::{Server, StageSpec};
use crate::plan::{self, ConfigHash, Desired, InfraAction, ObservedStage, Plan};
use crate::proxy::ObservedProxy;
use crate::report::PlanReport;
use crate::ssh::AutoSuspendView;
use std::collections::BTreeMap;

/// The container options that shape the plan (from `UpOptions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerIntent {
    pub remove_orphans: bool,
    pub force_recreate: bool,
}

/// One server's engine, observed in the workload round.
#[derive(Debug, Clone, Default)]
pub struct SeenEngine {
    pub observed: ObservedStage,
    /// Image → the id the engine holds ("" when it lacks it, in a dry run).
    pub images: BTreeMap<String, String>,
    /// Images the engine lacks that this machine has (a dry run's; a run fetched them already).
    pub copies: Vec<ImageCopy>,
    /// The stage's proxy container on this engine.
    pub proxy: ObservedProxy,
    /// The idle timer as the server reports it.
    pub idle: AutoSuspendView,
    /// Containers an interrupted replacement left (observed without them; the run removes them).
    pub leftovers: Vec<plan::Leftover>,
}

/// One server as the workload round finds it.
#[derive(Debug, Clone)]
pub enum SeenPart {
    /// Its engine answered.
    Reached(Box<SeenEngine>),
    /// No such server yet (a dry run: the infra round has not created it).
    New,
    /// Off (a dry run: the infra round has not booted it).
    Off,
}

/// One server's containers in the workload round; each variant carries what its apply needs.
#[derive(Debug, Clone)]
pub enum ServerWork {
    /// `plan` for the engine observed as `seen` (the ids of what it stops or replaces).
    Reached { server: String, part: StageSpec, seen: Box<SeenEngine>, plan: Plan },
    /// A server still to be created holds nothing: every container from nothing.
    New { server: String, plan: Plan },
    /// A server still off: its containers are planned once it runs.
    Off { server: String },
}

impl ServerWork {
    fn plan(&self) -> Option<&Plan> {
        match self {
            Self::Reached { plan, .. } | Self::New { plan, .. } => Some(plan),
            Self::Off { .. } => None,
        }
    }
}

/// One server's idle timer installed, changed or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleStep {
    pub server: String,
    /// What the apply writes; None on a server not reached yet (it gets the timer once it runs).
    pub change: Option<Change>,
    pub action: InfraAction,
}

/// The workload round: containers and idle timers per server, or (swarm stages) the swarm layer.
#[derive(Debug, Clone)]
pub enum Workload {
    Containers {
        servers: Vec<ServerWork>,
        idle: Vec<IdleStep>,
    },
    /// A swarm stage's steps: the `SwarmPlan` that `swarm_stage::converge` planned (and, in a
    /// run, executed) inside round 2, as `SwarmPlan::to_plan` counts them; the dry run printed
    /// that `SwarmPlan`'s lines.
    Swarm(Plan),
}

impl Default for Workload {
    fn default() -> Self {
        Self::Containers { servers: Vec::new(), idle: Vec::new() }
    }
}

/// The stage's records: the writes decided for the servers with an address, and the records of
/// servers that have none yet (created once they do).
#[derive(Debug, Clone, Default)]
pub struct Records {
    pub plan: RecordPlan,
    pub later: Vec<InfraAction>,
    /// The servers whose records are in `later`, in the file's order.
    pub waiting: Vec<String>,
}

/// A remote stage's `up`, whole: what the dry run prints and the run executes.
#[derive(Debug, Clone, Default)]
pub struct UpPlan {
    pub stage: String,
    /// Round 1: the servers in the order `up` takes them.
    pub infra: Vec<ServerPlan>,
    /// Round 2: what runs on them.
    pub workload: Workload,
    pub records: Records,
    /// What the servers round 1 creates add to the bill (a dry run's; `Plan::costs`).
    pub costs: Vec<plan::ServerCost>,
}

impl UpPlan {
    /// The plan as the summary and the JSON see it: server and record steps, container steps.
    pub fn to_plan(&self) -> Plan {
        let mut out = Plan { stage: self.stage.clone(), ..Plan::default() };
        out.infra.extend(self.infra.iter().flat_map(|s| s.actions.iter().cloned()));
        match &self.workload {
            Workload::Containers { servers, idle } => {
                for plan in servers.iter().filter_map(ServerWork::plan) {
                    out.infra.extend(plan.infra.iter().cloned());
                    out.actions.extend(plan.actions.iter().cloned());
                    out.orphans.extend(plan.orphans.iter().cloned());
                    out.leftovers.extend(plan.leftovers.iter().cloned());
                }
                out.infra.extend(idle.iter().map(|s| s.action.clone()));
            }
            Workload::Swarm(plan) => {
                out.infra.extend(plan.infra.iter().cloned());
                out.actions.extend(plan.actions.iter().cloned());
            }
        }
        out.infra.extend(self.record_actions());
        out.costs = self.costs.clone();
        out
    }

    /// The workload round's lines, server by server in the file's order, then the idle timers.
    /// A swarm's are printed by the swarm layer as it plans them.
    pub fn workload_lines(&self) -> Vec<Line> {
        let Workload::Containers { servers, idle } = &self.workload else { return Vec::new() };
        let mut lines = Vec::new();
        for work in servers {
            match work.plan() {
                Some(plan) => {
                    lines.extend(plan.infra.iter().cloned().map(Line::Infra));
                    lines.extend(plan.actions.iter().cloned().map(Line::Action));
                }
                None => lines.push(Line::Note(format!(
                    "containers on {} are planned once it runs (its engine cannot be asked while it is off)",
                    work.server()
                ))),
            }
        }
        lines.extend(idle.iter().map(|s| Line::Infra(s.action.clone())));
        lines
    }

    /// The record steps: the decided writes, then the records of servers without an address yet.
    pub fn record_actions(&self) -> Vec<InfraAction> {
        let decided = self.records.plan.changes.iter().map(|c| c.action.clone());
        decided.chain(self.records.later.iter().cloned()).collect()
    }

    /// Each server's container plan, for the orphan warnings.
    pub fn container_plans(&self) -> Vec<&Plan> {
        match &self.workload {
            Workload::Containers { servers, .. } => servers.iter().filter_map(ServerWork::plan).collect(),
            Workload::Swarm(_) => Vec::new(),
        }
    }
}

impl ServerWork {
    pub fn server(&self) -> &str {
        match self {
            Self::Reached { server, .. } | Self::New { server, .. } | Self::Off { server } => server,
        }
    }
}

/// A gated run's round 2 held to the plan its gate passed (`gated`: the dry run's own rounds,
/// made under the lock in round 1). Each server that pass reached takes what the run plans for
/// it now (its idle timer too); the servers it could not reach (new or off: planned as the dry
/// run plans them), the infra and the records stay as gated. A swarm's plan is held to the gated
/// one when that pass reached every server. So the gate, checked again on this value before
/// round 2 changes anything, passes only if the run does there what was hashed. Image copies
/// are not compared: the run made the planned ones while it observed, and lists none.
pub fn held_to(gated: &UpPlan, run: &Workload) -> UpPlan {
    let mut out = gated.clone();
    match (&mut out.workload, run) {
        (Workload::Containers { servers, idle }, Workload::Containers { servers: now, idle: now_idle }) => {
            let reached: Vec<String> = servers
                .iter()
                .filter(|w| matches!(w, ServerWork::Reached { .. }))
                .map(|w| w.server().to_string())
                .collect();
            for (was, now) in servers.iter_mut().zip(now) {
                let same = match (was.plan(), now.plan()) {
                    (Some(a), Some(b)) => same_steps(a, b),
                    _ => false,
                };
                if reached.iter().any(|r| r == was.server()) && !same {
                    *was = now.clone();
                }
            }
            let order: Vec<String> = servers.iter().map(|w| w.server().to_string()).collect();
            let mut held = Vec::new();
            for name in &order {
                let from = if reached.contains(name) { now_idle } else { &*idle };
                held.extend(from.iter().filter(|s| &s.server == name).cloned());
            }
            *idle = held;
        }
        (Workload::Swarm(planned), Workload::Swarm(now)) => {
            let all_reached = gated.infra.iter().all(|s| s.actions.is_empty());
            if all_reached && !same_steps(planned, now) {
                *planned = now.clone();
            }
        }
        // Another kind of workload than was gated: the run's, so the check refuses it.
        (was, now) => *was = now.clone(),
    }
    out
}

/// The same steps, image copies aside.
fn same_steps(a: &Plan, b: &Plan) -> bool {
    let steps = |p: &Plan| {
        let mut p = p.clone();
        p.infra.retain(|i| !matches!(i, InfraAction::CopyImage { .. }));
        PlanReport::json(&p)
    };
    steps(a) == steps(b)
}

/// The JSON of a plan is the `--dry-run --format json` document: typed steps and the summary.
impl serde::Serialize for UpPlan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PlanReport::of(&self.to_plan()).serialize(serializer)
    }
}

/// One server's part of the stage, each service with host entries for the services on the
/// stage's other servers (at their addresses), so a stage spans servers by service name.
pub fn part_of(spec: &StageSpec, server: &Server, machines: &[Option<Machine>]) -> StageSpec {
    let mut part = spec.for_server(server);
    if spec.servers.len() < 2 {
        return part;
    }
    let mut peers = BTreeMap::new();
    for (other, machine) in spec.servers.iter().zip(machines) {
        let Some(ip) = machine.as_ref().and_then(|m| m.ip.clone()) else { continue };
        if other.name != server.name {
            for svc in spec.services_on(other) {
                peers.insert(svc.name.clone(), ip.clone());
            }
        }
    }
    for svc in &mut part.services {
        svc.peer_hosts = peers.clone();
    }
    part
}

/// The workload round of a container stage: each server's containers and idle timer.
/// `parts` are the servers in the file's order, each with its part of the stage and what was seen.
pub fn plan_workload(spec: &StageSpec, parts: Vec<(StageSpec, SeenPart)>, intent: ContainerIntent) -> Workload {
    let mut servers = Vec::new();
    let mut idle = Vec::new();
    for (server, (part, seen)) in spec.servers.iter().zip(parts) {
        let name = server.name.clone();
        idle.extend(plan_idle(spec, server, &part, &seen));
        servers.push(match seen {
            SeenPart::Reached(seen) => {
                let plan = plan_containers(&part, &seen, intent);
                ServerWork::Reached { server: name, part, seen, plan }
            }
            SeenPart::New => ServerWork::New { server: name, plan: plan_new_server(&part) },
            SeenPart::Off => ServerWork::Off { server: name },
        });
    }
    Workload::Containers { servers, idle }
}

/// One engine's containers: the local planner against what it holds, the images it must be
/// sent first, and the proxy's steps.
pub fn plan_containers(part: &StageSpec, seen: &SeenEngine, intent: ContainerIntent) -> Plan {
    let desired = super::desired(part, &seen.images);
    let mut plan = plan::plan_up(part, &desired, &seen.observed, intent.remove_orphans, intent.force_recreate);
    if let Some(server) = part.servers.first() {
        plan.infra.extend(seen.copies.iter().map(|c| InfraAction::CopyImage {
            server: server.name.clone(),
            image: c.image.clone(),
            bytes: c.bytes,
            pull_first: c.pull_first,
        }));
    }
    super::proxy_stage::join_steps(part, &seen.proxy, &mut plan, &seen.observed);
    plan.leftovers = seen.leftovers.clone();
    plan
}

/// What a server that does not exist yet will need: every container from nothing.
pub fn plan_new_server(part: &StageSpec) -> Plan {
    let desired: Vec<Desired> =
        part.services.iter().map(|s| Desired { service: s, hash: ConfigHash::of(s, "") }).collect();
    plan::plan_up(part, &desired, &ObservedStage::default(), false, false)
}

/// A server's idle timer: compared with what the server reports when it was reached; a server
/// not reached yet gets the declared one once it runs.
pub fn plan_idle(spec: &StageSpec, server: &Server, part: &StageSpec, seen: &SeenPart) -> Option<IdleStep> {
    let declared = spec.auto_suspend.as_ref();
    let SeenPart::Reached(engine) = seen else {
        let setting = Some(auto_suspend::setting(declared?));
        let action = InfraAction::SetAutoSuspend { server: server.name.clone(), setting };
        return Some(IdleStep { server: server.name.clone(), change: None, action });
    };
    let change = auto_suspend::decide(declared, &auto_suspend::published_ports(part), &engine.idle)?;
    let setting = match change {
        Change::Install(_) => declared.map(auto_suspend::setting),
        Change::Remove => None,
    };
    let action = InfraAction::SetAutoSuspend { server: server.name.clone(), setting };
    Some(IdleStep { server: server.name.clone(), change: Some(change), action })
}

/// The stage's records: decided for the servers with an address; a server without one yet gets
/// its records once it has one.
pub fn plan_records(project: &str, spec: &StageSpec, machines: &[Option<Machine>], seen: &[SeenNames]) -> Records {
    let waiting: Vec<&Server> = spec
        .servers
        .iter()
        .zip(machines)
        .filter(|(_, m)| m.as_ref().and_then(|m| m.ip.as_ref()).is_none())
        .map(|(server, _)| server)
        .collect();
    let later = waiting.iter().flat_map(|server| dns::planned_actions(server)).collect();
    let waiting = waiting.iter().map(|s| s.name.clone()).collect();
    Records { plan: dns::plan_records(project, &spec.name, seen), later, waiting }
}

/// A gated run's records held to the plan its gate passed: the record steps it is about to write
/// must be the gated plan's, step for step as the plan's JSON shows them (what the gate hashes),
/// in any order (the servers without an address when the plan was made are listed after the
/// others). A server that had no address then was planned to get its records at the address it
/// would have: those steps are held to the creates at the address it has now. `Err` lists what
/// differs, as the plan's lines: nothing may be written then.
pub fn records_held_to(
    gated: &Records,
    spec: &StageSpec,
    machines: &[Option<Machine>],
    run: &Records,
) -> Result<(), RecordsMoved> {
    let ip_now = |name: &str| {
        let at = spec.servers.iter().position(|s| s.name == name)?;
        machines.get(at)?.as_ref()?.ip.clone().map(|ip| (&spec.servers[at], ip))
    };
    let mut approved: Vec<InfraAction> = gated.plan.changes.iter().map(|c| c.action.clone()).collect();
    for name in &gated.waiting {
        match ip_now(name) {
            Some((server, ip)) => approved.extend(dns::create_actions(server, &ip)),
            None => approved.extend(spec.servers.iter().filter(|s| &s.name == name).flat_map(dns::planned_actions)),
        }
    }
    let now: Vec<InfraAction> = run.plan.changes.iter().map(|c| c.action.clone()).chain(run.later.clone()).collect();
    let json = |a: &InfraAction| serde_json::to_value(a).unwrap_or_default();
    let mut unmatched: Vec<(serde_json::Value, &InfraAction)> = approved.iter().map(|a| (json(a), a)).collect();
    let mut unapproved = Vec::new();
    for action in &now {
        let step = json(action);
        match unmatched.iter().position(|(a, _)| *a == step) {
            Some(i) => drop(unmatched.remove(i)),
            None => unapproved.push(plan::render_infra(action)),
        }
    }
    let dropped: Vec<String> = unmatched.into_iter().map(|(_, a)| plan::render_infra(a)).collect();
    if unapproved.is_empty() && dropped.is_empty() {
        return Ok(());
    }
    Err(RecordsMoved { unapproved, dropped })
}

/// The records a gated run found to write differ from the plan its gate passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsMoved {
    /// Steps the run would take that the gated plan did not show.
    pub unapproved: Vec<String>,
    /// Steps the gated plan showed that the run would not take.
    pub dropped: Vec<String>,
}

impl std::fmt::Display for RecordsMoved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the DNS records changed since the plan was made; no record was written")?;
        for line in &self.unapproved {
            write!(f, "\n  now planned, not in the plan: {}", line.trim())?;
        }
        for line in &self.dropped {
            write!(f, "\n  in the plan, no longer planned: {}", line.trim())?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "up_plan_tests.rs"]
mod tests;
