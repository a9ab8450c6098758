//! Observed state + declared state → the actions that converge one onto the other. Pure.

pub mod gate;
pub mod graph;
pub mod hash;
mod render;

pub use hash::ConfigHash;
pub use render::{PlanSummary, render_action, render_infra, render_leftover};

use crate::model::{Service, StageSpec, VolumeSource};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A container's run state as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "exit_code")]
pub enum RunState {
    Created,
    Running,
    Restarting,
    Paused,
    Exited(i64),
    Dead,
    Other,
}

impl RunState {
    pub fn is_running(&self) -> bool {
        matches!(self, RunState::Running | RunState::Restarting)
    }

    pub fn label(&self) -> String {
        match self {
            RunState::Created => "created".into(),
            RunState::Running => "running".into(),
            RunState::Restarting => "restarting".into(),
            RunState::Paused => "paused".into(),
            RunState::Exited(c) => format!("exited ({c})"),
            RunState::Dead => "dead".into(),
            RunState::Other => "unknown".into(),
        }
    }
}

/// One of our containers as found on the engine.
#[derive(Debug, Clone, Serialize)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub stage: String,
    pub service: String,
    pub state: RunState,
    /// `healthy`, `unhealthy`, `starting`, or None without a healthcheck.
    pub health: Option<String>,
    pub config_hash: Option<String>,
    pub field_hashes: BTreeMap<String, String>,
    pub image_id: Option<String>,
    /// Unix seconds.
    pub created: i64,
    /// `Up 2 hours`-style text from the engine.
    pub status_text: String,
    pub ports: Vec<String>,
    /// Filled only when a recreate needs to say which variables changed.
    pub environment: Option<BTreeMap<String, String>>,
}

/// Everything of one stage on one engine.
#[derive(Debug, Clone, Default)]
pub struct ObservedStage {
    pub network_exists: bool,
    pub volumes: BTreeSet<String>,
    pub containers: Vec<ObservedContainer>,
}

impl ObservedStage {
    pub fn container(&self, service: &str) -> Option<&ObservedContainer> {
        self.containers.iter().find(|c| c.service == service)
    }
}

/// What `up` does to one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "reason", rename_all = "lowercase")]
pub enum Decision {
    Create,
    Recreate(String),
    Start,
    Keep,
}

/// One step of a plan, in the order it will run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    CreateNetwork { name: String },
    CreateVolume { name: String },
    CreateContainer { service: String },
    RecreateContainer { service: String, reason: String },
    StartContainer { service: String },
    StopContainer { service: String },
    RemoveContainer { service: String, orphan: bool },
    RemoveNetwork { name: String },
    RemoveVolume { name: String },
    // The stage's proxy (routed services): its container, and the routes it serves
    // (`host/path → service` for each, loaded in one atomic configuration change).
    CreateProxy { image: String },
    RecreateProxy { reason: String },
    StartProxy,
    StopProxy,
    RemoveProxy,
    ConfigureProxy { routes: Vec<String> },
}

/// One step on servers or DNS records, typed like container actions: the providers emit the very
/// values the plan shows, and one renderer (`render.rs`) turns both into plan lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum InfraAction {
    CreateServer {
        server: String,
        /// `sakura-cloud tk1a`.
        provider: String,
        core: u32,
        memory_gb: u32,
        disk_gb: u32,
        os: String,
    },
    PowerOn {
        server: String,
    },
    PowerOff {
        server: String,
    },
    DeleteServer {
        server: String,
        provider: String,
        disks: usize,
    },
    CreateRecord {
        name: String,
        kind: String,
        content: String,
    },
    UpdateRecord {
        name: String,
        kind: String,
        content: String,
        from: String,
    },
    DeleteRecord {
        name: String,
        kind: String,
    },
    /// An image the server lacks and this machine has: `up` pulls it there when `pull_first`
    /// (it came from a registry), and copies it over SSH otherwise or when the pull fails.
    CopyImage {
        server: String,
        image: String,
        bytes: u64,
        pull_first: bool,
    },
    /// The idle timer on a server: installed or changed (`setting`), or removed (None).
    SetAutoSuspend {
        server: String,
        setting: Option<String>,
    },
    /// Swarm stages: a new swarm with this server its first manager.
    FormSwarm {
        manager: String,
    },
    JoinSwarm {
        server: String,
        /// `manager` or `worker`.
        role: String,
    },
    /// fleet's node labels (which server, which pinned services) or the node's role.
    SetNode {
        server: String,
        change: String,
    },
    CreateService {
        service: String,
        replicas: u32,
    },
    /// A rolling update of the service's tasks.
    UpdateService {
        service: String,
        reason: String,
        order: String,
        replicas: u32,
    },
    /// Only the replica count: `down` scales to 0 and keeps the spec, `up` scales back.
    ScaleService {
        service: String,
        from: u64,
        to: u32,
    },
    RemoveService {
        service: String,
        orphan: bool,
    },
    /// The node leaves the swarm (`down --destroy`, or a server no longer in the stage).
    LeaveSwarm {
        server: String,
    },
}

/// What a plan step does, for the summary and the colour of its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Add,
    Change,
    Replace,
    Destroy,
}

impl InfraAction {
    pub fn kind(&self) -> ChangeKind {
        match self {
            InfraAction::CreateServer { .. }
            | InfraAction::CreateRecord { .. }
            | InfraAction::CopyImage { .. }
            | InfraAction::FormSwarm { .. }
            | InfraAction::JoinSwarm { .. }
            | InfraAction::CreateService { .. } => ChangeKind::Add,
            InfraAction::PowerOn { .. }
            | InfraAction::PowerOff { .. }
            | InfraAction::UpdateRecord { .. }
            | InfraAction::SetAutoSuspend { .. }
            | InfraAction::SetNode { .. }
            | InfraAction::UpdateService { .. }
            | InfraAction::ScaleService { .. } => ChangeKind::Change,
            InfraAction::DeleteServer { .. }
            | InfraAction::DeleteRecord { .. }
            | InfraAction::RemoveService { .. }
            | InfraAction::LeaveSwarm { .. } => ChangeKind::Destroy,
        }
    }
}

impl Action {
    pub fn kind(&self) -> ChangeKind {
        match self {
            Action::CreateNetwork { .. } | Action::CreateVolume { .. } | Action::CreateContainer { .. } => {
                ChangeKind::Add
            }
            Action::CreateProxy { .. } => ChangeKind::Add,
            Action::StartProxy | Action::StopProxy | Action::ConfigureProxy { .. } => ChangeKind::Change,
            Action::RecreateProxy { .. } => ChangeKind::Replace,
            Action::RemoveProxy => ChangeKind::Destroy,
            Action::StartContainer { .. } | Action::StopContainer { .. } => ChangeKind::Change,
            Action::RecreateContainer { .. } => ChangeKind::Replace,
            Action::RemoveContainer { .. } | Action::RemoveNetwork { .. } | Action::RemoveVolume { .. } => {
                ChangeKind::Destroy
            }
        }
    }
}

/// The ordered actions, plus what was looked at and left alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub stage: String,
    pub actions: Vec<Action>,
    /// Per service, in dependency order: what `up` does to it.
    #[serde(skip)]
    pub decisions: BTreeMap<String, Decision>,
    /// Containers with our labels whose service left the stage.
    pub orphans: Vec<String>,
    /// Server and DNS steps, counted in the summary.
    pub infra: Vec<InfraAction>,
    /// Containers an interrupted replacement left, which the plan is made without and the run
    /// removes first. Said, not counted, and not hashed by a plan gate (`gate::plan_hash`).
    pub leftovers: Vec<Leftover>,
    /// What each server this plan creates adds to the monthly bill, read from the price list
    /// when the plan is made. Informational: not hashed by a plan gate.
    pub costs: Vec<ServerCost>,
}

/// A container of a routed service an interrupted replacement left beside the one that serves:
/// it never took traffic, or it was the old one draining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    pub service: String,
    /// Its engine id, for the removal (the plan names it by `container`).
    #[serde(skip)]
    pub id: String,
    pub container: String,
    /// The container of the service that stays.
    pub keeps: String,
}

/// What a server to be created costs per month at list prices, or why it is not known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerCost {
    pub server: String,
    #[serde(flatten)]
    pub monthly: Monthly,
}

/// A monthly price in yen, as the price list gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Monthly {
    Known {
        running_yen: u64,
        suspended_yen: u64,
    },
    /// The price list could not be read, or lacks this server's plan.
    Unknown {
        error: String,
    },
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.infra.is_empty()
    }
}

/// Desired state for one service: its spec and the hash it must carry.
pub struct Desired<'a> {
    pub service: &'a Service,
    pub hash: ConfigHash,
}

/// `up`: create what is missing, recreate what drifted, start what is stopped.
pub fn plan_up(
    spec: &StageSpec,
    desired: &[Desired],
    observed: &ObservedStage,
    remove_orphans: bool,
    force_recreate: bool,
) -> Plan {
    let mut plan = Plan { stage: spec.name.clone(), ..Plan::default() };
    if !observed.network_exists {
        plan.actions.push(Action::CreateNetwork { name: spec.network_name() });
    }
    let mut volumes = BTreeSet::new();
    for svc in &spec.services {
        for v in &svc.volumes {
            if let VolumeSource::Named { name } = &v.source {
                volumes.insert(spec.volume_name(name));
            }
        }
    }
    for name in volumes.difference(&observed.volumes) {
        plan.actions.push(Action::CreateVolume { name: name.clone() });
    }

    for c in &observed.containers {
        if spec.service(&c.service).is_none() {
            plan.orphans.push(c.service.clone());
            if remove_orphans {
                plan.actions.push(Action::RemoveContainer { service: c.service.clone(), orphan: true });
            }
        }
    }

    for level in graph::levels(&spec.services) {
        for name in level {
            let Some(want) = desired.iter().find(|d| d.service.name == name) else {
                continue;
            };
            let decision = decide(want, observed.container(&name), force_recreate);
            let action = match &decision {
                Decision::Create => Some(Action::CreateContainer { service: name.clone() }),
                Decision::Recreate(reason) => {
                    Some(Action::RecreateContainer { service: name.clone(), reason: reason.clone() })
                }
                Decision::Start => Some(Action::StartContainer { service: name.clone() }),
                Decision::Keep => None,
            };
            plan.actions.extend(action);
            plan.decisions.insert(name, decision);
        }
    }
    plan
}

fn decide(want: &Desired, have: Option<&ObservedContainer>, force_recreate: bool) -> Decision {
    let Some(have) = have else {
        return Decision::Create;
    };
    if force_recreate {
        return Decision::Recreate("--force-recreate".into());
    }
    if have.config_hash.as_deref() != Some(want.hash.hash.as_str()) {
        return Decision::Recreate(recreate_reason(want, have));
    }
    match &have.state {
        RunState::Running | RunState::Restarting | RunState::Paused => Decision::Keep,
        RunState::Exited(0) if want.service.oneshot => Decision::Keep,
        _ => Decision::Start,
    }
}

/// Which fields changed, or that the image behind the same reference moved.
fn recreate_reason(want: &Desired, have: &ObservedContainer) -> String {
    let was = Made {
        hash: have.config_hash.as_deref(),
        fields: &have.field_hashes,
        image_id: have.image_id.as_deref(),
        environment: have.environment.as_ref(),
    };
    change_reason(want.service, &want.hash, &was)
}

/// What a running thing (a container, a swarm service) was made from, as its labels say.
pub struct Made<'a> {
    pub hash: Option<&'a str>,
    pub fields: &'a BTreeMap<String, String>,
    pub image_id: Option<&'a str>,
    /// When read: names the variables that changed.
    pub environment: Option<&'a BTreeMap<String, String>>,
}

/// Why `want` differs from what `was` was made from, for a plan line.
pub fn change_reason(service: &Service, want: &ConfigHash, was: &Made) -> String {
    if was.hash.is_none() {
        return "not created by this version of fleet".into();
    }
    let changed: Vec<&str> =
        want.fields.iter().filter(|(k, v)| was.fields.get(*k) != Some(v)).map(|(k, _)| k.as_str()).collect();
    if changed.is_empty() {
        return if was.image_id != Some(want.image_id.as_str()) {
            "image updated".into()
        } else {
            "configuration changed".into()
        };
    }
    let mut parts = Vec::new();
    for field in changed {
        if field == "environment"
            && let Some(env) = was.environment
        {
            let keys: Vec<&str> =
                service.environment.iter().filter(|(k, v)| env.get(*k) != Some(v)).map(|(k, _)| k.as_str()).collect();
            if !keys.is_empty() {
                parts.push(format!("environment changed ({})", keys.join(", ")));
                continue;
            }
        }
        parts.push(format!("{field} changed"));
    }
    parts.join(", ")
}

/// How far `down` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownMode {
    Stop,
    Destroy { volumes: bool },
}

/// `down`: stop in reverse dependency order; `--destroy` also removes containers and network.
pub fn plan_down(spec: &StageSpec, observed: &ObservedStage, mode: DownMode) -> Plan {
    let mut plan = Plan { stage: spec.name.clone(), ..Plan::default() };
    let mut ordered: Vec<&ObservedContainer> = Vec::new();
    for level in graph::levels(&spec.services).iter().rev() {
        for name in level {
            ordered.extend(observed.container(name));
        }
    }
    let orphans: Vec<&ObservedContainer> =
        observed.containers.iter().filter(|c| spec.service(&c.service).is_none()).collect();
    plan.orphans = orphans.iter().map(|c| c.service.clone()).collect();
    // Orphans first: nothing in the stage depends on them any more.
    let all: Vec<&ObservedContainer> = orphans.into_iter().chain(ordered).collect();
    for c in &all {
        if matches!(mode, DownMode::Stop) && c.state.is_running() {
            plan.actions.push(Action::StopContainer { service: c.service.clone() });
        }
    }
    if let DownMode::Destroy { volumes } = mode {
        for c in &all {
            let orphan = spec.service(&c.service).is_none();
            plan.actions.push(Action::RemoveContainer { service: c.service.clone(), orphan });
        }
        if observed.network_exists {
            plan.actions.push(Action::RemoveNetwork { name: spec.network_name() });
        }
        if volumes {
            for v in &observed.volumes {
                plan.actions.push(Action::RemoveVolume { name: v.clone() });
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests;
