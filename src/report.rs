//! What `status`, `ps`, `plan` and `config` report: plain serializable data with one schema
//! number. `stage` and `cli` build them; `ui` renders them as text or JSON, and nothing else does.

use crate::model::StageSpec;
use crate::plan::{Action, InfraAction, ObservedContainer, Plan, PlanSummary, RunState};
use serde::Serialize;

/// Version of every JSON document fleet prints. 2: typed plan steps, the state word in `ps`.
pub const SCHEMA: u32 = 2;

/// How a service line of `status` is marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Running (and not unhealthy), or a one-shot that completed.
    Ok,
    /// Stopped cleanly, or created and not started.
    Stopped,
    /// Exited with an error, dead, or unhealthy.
    Failed,
    /// No container (not created, or its server cannot be asked).
    Absent,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    /// `running`, `exited (1)`, `not created`, `unknown (server powered off)`…
    pub state: String,
    pub health: Option<String>,
    pub uptime_seconds: Option<i64>,
    pub container: Option<String>,
    pub mark: Health,
}

impl ServiceStatus {
    /// One service as its engine reports it (`container`), or `absent` saying why there is none.
    pub fn of(
        service: &str,
        oneshot: bool,
        container: Option<&ObservedContainer>,
        absent: &str,
        uptime: Option<i64>,
    ) -> Self {
        let mark = match container {
            None => Health::Absent,
            Some(c) if c.state.is_running() && c.health.as_deref() != Some("unhealthy") => Health::Ok,
            Some(c) if oneshot && c.state == RunState::Exited(0) => Health::Ok,
            Some(c) if matches!(c.state, RunState::Exited(0) | RunState::Created) => Health::Stopped,
            Some(_) => Health::Failed,
        };
        Self {
            service: service.to_string(),
            state: container.map_or_else(|| absent.to_string(), |c| c.state.label()),
            health: container.and_then(|c| c.health.clone()),
            uptime_seconds: uptime,
            container: container.map(|c| c.name.clone()),
            mark,
        }
    }
}

/// One server in the `Infrastructure:` section of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub name: String,
    pub provider: String,
    pub status: String,
    pub ip: Option<String>,
    pub cpu: Option<u32>,
    pub memory_gb: Option<u32>,
    /// Each DNS record with what the zone holds.
    pub dns: Vec<String>,
    /// What it costs now and on the other rungs; None for a server fleet does not bill.
    pub cost: Option<RungCosts>,
    /// Auto-suspend as the server reports it (a remote stage with `auto_suspend`).
    pub auto_suspend: Option<String>,
    /// Swarm stages: the node's role, availability and state, as a manager reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Monthly list prices in yen of one server or a whole stage on each rung of the ladder.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct RungCosts {
    /// `running`, `suspended` or `destroyed`: where it is now (a stage: the sum of its servers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rung: Option<&'static str>,
    pub now_monthly: u64,
    pub running_monthly: u64,
    /// Disks only.
    pub suspended_monthly: u64,
    pub destroyed_monthly: u64,
}

/// The stage's cost, with where the prices came from, or why they are unknown.
#[derive(Debug, Clone, Serialize)]
pub struct StageCost {
    pub currency: &'static str,
    /// Always list prices: contracts and discounts are not in the price list.
    pub basis: &'static str,
    pub price_list_at: Option<String>,
    #[serde(flatten)]
    pub total: Option<RungCosts>,
    /// Set when the price list could not be read; status still works.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub schema: u32,
    pub stage: String,
    /// `local` or `remote`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: String,
    pub servers: Vec<ServerStatus>,
    pub services: Vec<ServiceStatus>,
    /// Remote stages on a cloud that bills: what the stage costs per rung.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<StageCost>,
    /// Routed services: each route, where it goes, and its certificate's expiry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteStatus>,
}

/// One route as the proxy serves it.
#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    /// `shop.example.com/api`.
    pub route: String,
    pub service: String,
    /// The container the proxy sends it to; None when the proxy does not serve it (yet).
    pub container: Option<String>,
    /// RFC 3339; None without TLS or before the certificate is issued.
    pub certificate_expires: Option<String>,
}

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
            crate::secrets::mask_json(&mut value, &spec.sensitive);
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
