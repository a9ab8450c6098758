//! What `status` reports, as fields: the stage's state, each server (power, address, records,
//! cost, idle timer, swarm node), each service and each route. `stage` fills them from what it
//! observed; `ui` alone turns them into the text people read (or prints them as JSON).

use crate::plan::{ObservedContainer, RunState};
use serde::Serialize;

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

/// What a service is: a container's state, a swarm service's replicas, or why nothing is known.
/// JSON: `{"state": "exited", "exit_code": 1}`, `{"state": "unobserved", "reason": "server_powered_off"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServiceState {
    Created,
    Running,
    Restarting,
    Paused,
    Exited {
        exit_code: i64,
    },
    Dead,
    /// A container state the engine reports that fleet does not know.
    Unknown,
    /// No container (or swarm service) for it.
    NotCreated,
    /// A swarm stage whose swarm is not formed.
    NoSwarm,
    /// Its server cannot be asked.
    Unobserved {
        reason: Unobserved,
    },
    /// A swarm service: its tasks running, the replicas it asks for, and an unfinished update's state.
    Replicated {
        running: u64,
        desired: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        update: Option<String>,
    },
}

/// Why a service's state is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unobserved {
    ServerPoweredOff,
    ServerUnreachable,
    /// A swarm stage none of whose nodes runs.
    NoSwarmNode,
}

impl From<&RunState> for ServiceState {
    fn from(s: &RunState) -> Self {
        match s {
            RunState::Created => Self::Created,
            RunState::Running => Self::Running,
            RunState::Restarting => Self::Restarting,
            RunState::Paused => Self::Paused,
            RunState::Exited(code) => Self::Exited { exit_code: *code },
            RunState::Dead => Self::Dead,
            RunState::Other => Self::Unknown,
        }
    }
}

impl ServiceState {
    /// Something of the service runs (it may still be unhealthy or short of replicas).
    pub fn is_running(&self) -> bool {
        match self {
            Self::Running | Self::Restarting => true,
            Self::Replicated { desired, .. } => *desired > 0,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    #[serde(flatten)]
    pub state: ServiceState,
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
        absent: ServiceState,
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
            state: container.map_or(absent, |c| ServiceState::from(&c.state)),
            health: container.and_then(|c| c.health.clone()),
            uptime_seconds: uptime,
            container: container.map(|c| c.name.clone()),
            mark,
        }
    }
}

/// The whole stage in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    NotCreated,
    Running,
    /// Some services run, others do not (or are unhealthy).
    Degraded,
    Stopped,
    /// Every server is powered off; only disks are billed.
    Suspended,
}

impl StageState {
    /// The stage's state from its services'.
    pub fn of_services(rows: &[ServiceStatus]) -> Self {
        if rows.iter().all(|r| r.mark == Health::Absent) {
            Self::NotCreated
        } else if rows.iter().all(|r| r.mark == Health::Ok) {
            Self::Running
        } else if rows.iter().any(|r| r.mark == Health::Ok || r.state.is_running()) {
            Self::Degraded
        } else {
            Self::Stopped
        }
    }
}

/// A server's power as its provider reports it. JSON: `"power": "off"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "power", rename_all = "snake_case")]
pub enum ServerPower {
    NotCreated,
    Running,
    /// Powered off: only its disk is billed.
    Off,
    /// Between states, in the provider's own word (`migrating`, `shutting down`…).
    Changing {
        provider_state: String,
    },
}

/// One server in the `Infrastructure:` section of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub name: String,
    pub provider: String,
    #[serde(flatten)]
    pub power: ServerPower,
    pub ip: Option<String>,
    pub cpu: Option<u32>,
    pub memory_gb: Option<u32>,
    /// Each DNS record the server should have, with what the zone holds.
    pub records: Vec<RecordStatus>,
    /// What it costs now and on the other rungs; None for a server fleet does not bill.
    pub cost: Option<RungCosts>,
    /// The idle timer as the server reports it (a running server of a stage with `auto_suspend`).
    pub auto_suspend: Option<IdleTimer>,
    /// Swarm stages: the node as a manager reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeStatus>,
}

/// One DNS record a server should have, compared with the zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordStatus {
    pub name: String,
    /// `A`, `AAAA`, `CNAME`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What the zone holds, when it holds exactly one such record.
    pub content: Option<String>,
    /// What it should hold; None while the server has no IP (nothing to compare with).
    pub expected: Option<String>,
    #[serde(flatten)]
    pub state: RecordState,
}

/// JSON: `"state": "in_sync"`, or `{"state": "duplicated", "count": 2}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RecordState {
    InSync,
    Missing,
    /// Points somewhere else than `expected`.
    Differs,
    /// Present, but the server has no IP to compare it with.
    Unchecked,
    /// Several records of that name and type.
    Duplicated {
        count: usize,
    },
}

/// The stage's `auto_suspend` setting: the idle window and the timer's periods, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdleWindow {
    pub idle_seconds: u64,
    pub after_boot_seconds: u64,
    pub check_every_seconds: u64,
}

/// A server's idle timer as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "timer", rename_all = "snake_case")]
pub enum IdleTimer {
    /// `fleet up` installs it.
    NotInstalled,
    /// Idle long enough: the shutdown is scheduled (a login or the keep file cancels it).
    PoweringOff {
        in_seconds: u64,
    },
    /// Something keeps it awake (`1 SSH login session(s)`).
    Busy {
        reason: String,
    },
    Idle {
        idle_for_seconds: u64,
        suspends_in_seconds: u64,
    },
    /// No check has run since the last boot.
    NoCheckYet,
}

/// A swarm node as a manager reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub role: NodeRole,
    pub leader: bool,
    /// `active`, `pause`, `drain`.
    pub availability: String,
    pub ready: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Manager,
    Worker,
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
    pub status: StageState,
    /// The stage's idle window, when it has `auto_suspend`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_suspend: Option<IdleWindow>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: ServiceState, mark: Health) -> ServiceStatus {
        ServiceStatus { service: "s".into(), state, health: None, uptime_seconds: None, container: None, mark }
    }

    #[test]
    fn the_stage_state_follows_its_services() {
        let ok = || row(ServiceState::Running, Health::Ok);
        let absent = || row(ServiceState::NotCreated, Health::Absent);
        let unhealthy = || row(ServiceState::Running, Health::Failed);
        let exited = || row(ServiceState::Exited { exit_code: 1 }, Health::Failed);
        let short = || row(ServiceState::Replicated { running: 1, desired: 2, update: None }, Health::Failed);
        let scaled0 = || row(ServiceState::Replicated { running: 0, desired: 0, update: None }, Health::Stopped);
        assert_eq!(StageState::of_services(&[absent(), absent()]), StageState::NotCreated);
        assert_eq!(StageState::of_services(&[ok(), ok()]), StageState::Running);
        assert_eq!(StageState::of_services(&[ok(), absent()]), StageState::Degraded);
        assert_eq!(StageState::of_services(&[unhealthy()]), StageState::Degraded, "running but unhealthy");
        assert_eq!(StageState::of_services(&[short()]), StageState::Degraded, "short of replicas");
        assert_eq!(StageState::of_services(&[exited(), absent()]), StageState::Stopped);
        assert_eq!(StageState::of_services(&[scaled0()]), StageState::Stopped, "scaled to 0 by down");
    }

    #[test]
    fn states_serialize_as_a_word_with_their_fields() {
        let v = |s: &ServiceStatus| serde_json::to_value(s).unwrap();
        let exited = v(&row(ServiceState::Exited { exit_code: 3 }, Health::Failed));
        assert_eq!((exited["state"].as_str(), exited["exit_code"].as_i64()), (Some("exited"), Some(3)));
        let off = v(&row(ServiceState::Unobserved { reason: Unobserved::ServerPoweredOff }, Health::Absent));
        assert_eq!((off["state"].as_str(), off["reason"].as_str()), (Some("unobserved"), Some("server_powered_off")));
        let record = RecordStatus {
            name: "a.example.com".into(),
            kind: "A".into(),
            content: Some("1.2.3.4".into()),
            expected: Some("1.2.3.4".into()),
            state: RecordState::Duplicated { count: 2 },
        };
        let r = serde_json::to_value(&record).unwrap();
        assert_eq!(
            (r["type"].as_str(), r["state"].as_str(), r["count"].as_u64()),
            (Some("A"), Some("duplicated"), Some(2))
        );
        let p = serde_json::to_value(ServerPower::Changing { provider_state: "migrating".into() }).unwrap();
        assert_eq!((p["power"].as_str(), p["provider_state"].as_str()), (Some("changing"), Some("migrating")));
    }
}
