//! What `status`, `ps`, `plan` and `config` report: plain serializable data with one schema
//! number. `stage` and `cli` build them; `ui` renders them as text or JSON, and nothing else does.

use crate::model::StageSpec;
use crate::plan::{Action, InfraAction, ObservedContainer, Plan, PlanSummary, RunState};
use serde::Serialize;

mod status;
pub use status::*;

/// Version of every JSON document fleet prints. 2: typed plan steps, the state word in `ps`.
/// 3: `status` carries fields (server power, records, idle timer, swarm node, service and stage
/// states as words) instead of sentences.
pub const SCHEMA: u32 = 3;

/// One container row of `ps`.
#[derive(Debug, Clone, Serialize)]
pub struct PsRow {
    pub stage: String,
    pub service: String,
    /// The server it runs on, for a stage with several servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub name: String,
    /// The seed's STATUS: the state word, with health (`running (healthy)`, `exited (1)`).
    pub status: String,
    pub state: RunState,
    pub health: Option<String>,
    pub ports: Vec<String>,
    /// Unix seconds.
    pub created: i64,
}

impl PsRow {
    pub fn of(c: &ObservedContainer) -> Self {
        let status = match &c.health {
            Some(h) => format!("{} ({h})", c.state.label()),
            None => c.state.label(),
        };
        Self {
            stage: c.stage.clone(),
            service: c.service.clone(),
            server: None,
            name: c.name.clone(),
            status,
            state: c.state.clone(),
            health: c.health.clone(),
            ports: c.ports.clone(),
            created: c.created,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PsReport {
    pub schema: u32,
    pub project: String,
    pub containers: Vec<PsRow>,
}

/// A plan as JSON: typed steps, the orphans, and the summary.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport<'a> {
    pub schema: u32,
    pub stage: &'a str,
    pub infrastructure: &'a [InfraAction],
    pub actions: &'a [Action],
    pub orphans: &'a [String],
    pub summary: PlanSummary,
    /// Said only when there are any (so plans without them print as before).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub leftovers: &'a [crate::plan::Leftover],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub costs: &'a [crate::plan::ServerCost],
}

impl<'a> PlanReport<'a> {
    /// The plan as `--dry-run --format json` prints it, as a value: what a plan hash covers.
    pub fn json(plan: &Plan) -> serde_json::Value {
        serde_json::to_value(PlanReport::of(plan)).unwrap_or_default()
    }

    pub fn of(plan: &'a Plan) -> Self {
        Self {
            schema: SCHEMA,
            stage: &plan.stage,
            infrastructure: &plan.infra,
            actions: &plan.actions,
            orphans: &plan.orphans,
            summary: PlanSummary::of(plan),
            leftovers: &plan.leftovers,
            costs: &plan.costs,
        }
    }
}

/// `fleet config`: the resolved stage (project, name, services, servers…), secrets masked.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub schema: u32,
    /// `local` or `remote`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(flatten)]
    pub spec: serde_json::Value,
}

impl ConfigReport {
    /// `fleet config` of a resolved stage; `show_secrets: false` masks its sensitive values.
    pub fn of(spec: &StageSpec, show_secrets: bool) -> Self {
        let mut value = serde_json::to_value(spec).unwrap_or_default();
        if !show_secrets {
            crate::secrets::mask_json(&mut value, &spec.secrets);
        }
        let kind = if spec.is_local() { "local" } else { "remote" };
        Self { schema: SCHEMA, kind, spec: value }
    }

    /// `config --format json --show-secrets` as a value: the resolved stage a plan hash covers.
    /// It holds secrets: hash it, never show it.
    pub fn resolved_json(spec: &StageSpec) -> serde_json::Value {
        serde_json::to_value(Self::of(spec, true)).unwrap_or_default()
    }
}

/// What a remote stage is after `down`: the closing line is rendered from these fields by `ui`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DownOutcome {
    /// Containers stopped; servers keep running.
    Down,
    /// Servers powered off; only their disks are billed.
    Suspended,
    /// Everything deleted but brought hosts, which keep running (with their containers gone).
    Destroyed { kept_hosts: Vec<String> },
}

/// One release of a built service on a stage's servers (`fleet releases`).
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseRow {
    pub service: String,
    /// The content hash of the build input.
    pub version: String,
    /// RFC 3339.
    pub created: String,
    #[serde(skip)]
    pub created_unix: i128,
    /// The release the service's container runs now.
    pub current: bool,
    /// The release the file builds today.
    pub in_file: bool,
    /// Servers holding it (`local` for a local stage).
    pub servers: Vec<String>,
}

/// `fleet releases`: per service, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct ReleasesReport {
    pub schema: u32,
    pub stage: String,
    pub releases: Vec<ReleaseRow>,
}
