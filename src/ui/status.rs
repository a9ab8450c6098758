//! `status` as text: the seed's layout (stage, status, infrastructure for remote stages,
//! services, routes), every sentence made here from the report's fields.

use super::{Format, Ui, human_duration, to_json, yen};
use crate::report::{
    Health, IdleTimer, IdleWindow, NodeRole, NodeStatus, RecordState, RecordStatus, RouteStatus, RungCosts,
    ServerPower, ServerStatus, ServiceState, ServiceStatus, StageCost, StageState, StatusReport, Unobserved,
};
use owo_colors::OwoColorize;

impl Ui {
    pub fn status(&self, r: &StatusReport, format: Format) {
        if format == Format::Json {
            return self.json(&to_json(r));
        }
        for line in status_lines(r) {
            self.line(line);
        }
    }
}

/// Every line `status` prints for this report.
pub fn status_lines(r: &StatusReport) -> Vec<String> {
    let mut out = vec![format!("Stage: {}", r.stage)];
    if r.kind == "local" {
        out.push("Type: local".into());
    }
    out.push(format!("Status: {}", stage_state(r.status)));
    if !r.servers.is_empty() {
        out.push("Infrastructure:".into());
        for s in &r.servers {
            out.extend(server_lines(s, r.auto_suspend.as_ref()));
        }
    }
    out.extend(r.cost.as_ref().and_then(stage_cost_line));
    out.push("Services:".into());
    let width = r.services.iter().map(|s| s.service.len()).max().unwrap_or(0);
    out.extend(r.services.iter().map(|s| service_line(s, width)));
    if !r.routes.is_empty() {
        out.push("Routes:".into());
        out.extend(r.routes.iter().map(|route| format!("  {}", route_line(route))));
    }
    out
}

fn stage_state(s: StageState) -> &'static str {
    match s {
        StageState::NotCreated => "not created",
        StageState::Running => "running",
        StageState::Degraded => "degraded",
        StageState::Stopped => "stopped",
        StageState::Suspended => "suspended (servers powered off; only disks are billed)",
    }
}

fn server_lines(s: &ServerStatus, idle: Option<&IdleWindow>) -> Vec<String> {
    let mut out = vec![
        format!("  Server: {}", s.name),
        format!("    Provider: {}", s.provider),
        format!("    Status: {}", power(&s.power, idle.is_some())),
    ];
    out.extend(s.ip.as_ref().map(|ip| format!("    IP: {ip}")));
    out.extend(s.cpu.map(|cpu| format!("    CPU: {cpu} cores")));
    out.extend(s.memory_gb.map(|m| format!("    Memory: {m} GB")));
    out.extend(s.records.iter().map(|r| format!("    DNS: {}", record(r))));
    out.extend(s.cost.as_ref().map(|c| format!("    Cost: {}", rung_line(c))));
    if let (Some(timer), Some(window)) = (&s.auto_suspend, idle) {
        out.push(format!("    Auto-suspend: idle {}; {}", idle_window(window), idle_timer(timer)));
    }
    out.extend(s.node.as_ref().map(|n| format!("    Swarm node: {}", node(n))));
    out
}

/// A stage with auto-suspend says a powered-off server may have suspended itself.
fn power(p: &ServerPower, auto_suspend: bool) -> String {
    match p {
        ServerPower::NotCreated => "not created".into(),
        ServerPower::Running => "running".into(),
        ServerPower::Off if auto_suspend => {
            "suspended (powered off, by itself when idle or by down --suspend; only its disk is billed)".into()
        }
        ServerPower::Off => "stopped (only its disk is billed)".into(),
        ServerPower::Changing { provider_state } => provider_state.clone(),
    }
}

/// `dev.example.com A → 163.43.1.2 ✓`.
fn record(r: &RecordStatus) -> String {
    let (name, kind) = (&r.name, &r.kind);
    let content = r.content.as_deref().unwrap_or_default();
    match r.state {
        RecordState::Missing => format!("{name} {kind}: missing"),
        RecordState::InSync => format!("{name} {kind} → {content} ✓"),
        RecordState::Unchecked => format!("{name} {kind} → {content}"),
        RecordState::Differs => {
            format!("{name} {kind} → {content} (should be {})", r.expected.as_deref().unwrap_or_default())
        }
        RecordState::Duplicated { count } => format!("{name} {kind}: {count} records"),
    }
}

/// `1h (after boot 10m, checked every 10m)`.
pub fn idle_window(w: &IdleWindow) -> String {
    format!(
        "{} (after boot {}, checked every {})",
        short_duration(w.idle_seconds),
        short_duration(w.after_boot_seconds),
        short_duration(w.check_every_seconds)
    )
}

fn idle_timer(t: &IdleTimer) -> String {
    match t {
        IdleTimer::NotInstalled => "not installed yet (fleet up installs it)".into(),
        IdleTimer::PoweringOff { in_seconds } => format!(
            "powering off in {} (idle; log in or touch /run/fleetflow/no-auto-suspend to keep it)",
            short_duration(*in_seconds)
        ),
        IdleTimer::Busy { reason } => format!("not idle: {reason}"),
        IdleTimer::Idle { idle_for_seconds, suspends_in_seconds } => format!(
            "idle for {}, suspends itself in about {}",
            short_duration(*idle_for_seconds),
            short_duration(*suspends_in_seconds)
        ),
        IdleTimer::NoCheckYet => "no check yet since the last boot".into(),
    }
}

/// `manager (leader), active, Ready`.
fn node(n: &NodeStatus) -> String {
    let role = match (n.role, n.leader) {
        (NodeRole::Manager, true) => "manager (leader)",
        (NodeRole::Manager, false) => "manager",
        (NodeRole::Worker, _) => "worker",
    };
    format!("{role}, {}, {}", n.availability, if n.ready { "Ready" } else { "Down" })
}

fn stage_cost_line(cost: &StageCost) -> Option<String> {
    match (&cost.total, &cost.error) {
        (Some(t), _) => Some(format!(
            "Cost: {} (now {}/month; {}{})",
            rung_line(t),
            yen(t.now_monthly),
            cost.basis,
            cost.price_list_at.as_ref().map(|at| format!(", price list of {at}")).unwrap_or_default()
        )),
        (None, Some(e)) => Some(format!("Cost: unknown (the price list could not be read: {e})")),
        (None, None) => None,
    }
}

/// `  ✓ db  running, healthy  (up 2 days)`.
fn service_line(s: &ServiceStatus, width: usize) -> String {
    let state = match &s.health {
        Some(h) => format!("{}, {h}", service_state(&s.state)),
        None => service_state(&s.state),
    };
    let uptime = s.uptime_seconds.map(|t| format!("  (up {})", human_duration(t))).unwrap_or_default();
    format!("  {} {:width$}  {state}{uptime}", status_mark(s.mark), s.service)
}

/// `running`, `exited (1)`, `unknown (server powered off)`, `running 2/3 replicas`.
pub fn service_state(s: &ServiceState) -> String {
    match s {
        ServiceState::Created => "created".into(),
        ServiceState::Running => "running".into(),
        ServiceState::Restarting => "restarting".into(),
        ServiceState::Paused => "paused".into(),
        ServiceState::Exited { exit_code } => format!("exited ({exit_code})"),
        ServiceState::Dead => "dead".into(),
        ServiceState::Unknown => "unknown".into(),
        ServiceState::NotCreated => "not created".into(),
        ServiceState::NoSwarm => "not created (no swarm)".into(),
        ServiceState::Unobserved { reason } => format!(
            "unknown ({})",
            match reason {
                Unobserved::ServerPoweredOff => "server powered off",
                Unobserved::ServerUnreachable => "server does not answer SSH",
                Unobserved::NoSwarmNode => "no node of the swarm runs",
            }
        ),
        ServiceState::Replicated { running, desired, update } => {
            let state = match desired {
                0 => "scaled to 0 (down)".to_string(),
                _ => format!("running {running}/{desired} replicas"),
            };
            match update {
                Some(u) => format!("{state}, update {u}"),
                None => state,
            }
        }
    }
}

/// The mark of one service line of `status`: `✓ db  running, healthy  (up 2 days)`.
pub fn status_mark(mark: Health) -> String {
    match mark {
        Health::Absent => "○".dimmed().to_string(),
        Health::Ok => "✓".green().to_string(),
        Health::Stopped => "■".yellow().to_string(),
        Health::Failed => "✗".red().to_string(),
    }
}

fn rung_line(c: &RungCosts) -> String {
    let mark = |rung: &str| if c.rung == Some(rung) { " (now)" } else { "" };
    format!(
        "running {}/month{} · suspended {}/month (disks){} · destroyed ¥0{}",
        yen(c.running_monthly),
        mark("running"),
        yen(c.suspended_monthly),
        mark("suspended"),
        mark("destroyed")
    )
}

/// `shop.example.com → web (p-prod-web-next), certificate until 2027-03-04`.
fn route_line(r: &RouteStatus) -> String {
    let target = match &r.container {
        Some(c) => format!("{} ({c})", r.service),
        None => format!("{} (not served yet)", r.service),
    };
    let cert = match &r.certificate_expires {
        Some(at) => format!(", certificate until {at}"),
        None => String::new(),
    };
    format!("{} → {target}{cert}", r.route)
}

/// `1h`, `1h30m`, `10m`, `2m5s`, `45s`: the short form the idle timer's settings are written in.
pub fn short_duration(secs: u64) -> String {
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ServerStatus, StatusReport};

    fn server(power: ServerPower) -> ServerStatus {
        ServerStatus {
            name: "web-1".into(),
            provider: "sakura-cloud (tk1a)".into(),
            power,
            ip: Some("163.43.1.2".into()),
            cpu: Some(2),
            memory_gb: Some(4),
            records: vec![
                RecordStatus {
                    name: "dev.example.com".into(),
                    kind: "A".into(),
                    content: Some("163.43.1.2".into()),
                    expected: Some("163.43.1.2".into()),
                    state: RecordState::InSync,
                },
                RecordStatus {
                    name: "www.example.com".into(),
                    kind: "CNAME".into(),
                    content: Some("old.example.com".into()),
                    expected: Some("dev.example.com".into()),
                    state: RecordState::Differs,
                },
                RecordStatus {
                    name: "api.example.com".into(),
                    kind: "CNAME".into(),
                    content: None,
                    expected: Some("dev.example.com".into()),
                    state: RecordState::Missing,
                },
            ],
            cost: None,
            auto_suspend: Some(IdleTimer::Idle { idle_for_seconds: 600, suspends_in_seconds: 3060 }),
            node: Some(NodeStatus {
                role: NodeRole::Manager,
                leader: true,
                availability: "active".into(),
                ready: true,
            }),
        }
    }

    /// The whole text of a remote stage's status, exactly: every sentence comes from fields.
    #[test]
    fn a_remote_status_reads_as_before() {
        let window = IdleWindow { idle_seconds: 3600, after_boot_seconds: 600, check_every_seconds: 600 };
        let report = StatusReport {
            schema: 3,
            stage: "dev".into(),
            kind: "remote",
            status: StageState::Degraded,
            auto_suspend: Some(window),
            servers: vec![
                server(ServerPower::Running),
                ServerStatus { name: "web-2".into(), ..server(ServerPower::Off) },
            ],
            services: vec![
                ServiceStatus {
                    service: "db".into(),
                    state: ServiceState::Replicated { running: 1, desired: 2, update: Some("paused".into()) },
                    health: None,
                    uptime_seconds: None,
                    container: None,
                    mark: Health::Failed,
                },
                ServiceStatus {
                    service: "api".into(),
                    state: ServiceState::Unobserved { reason: Unobserved::ServerPoweredOff },
                    health: None,
                    uptime_seconds: None,
                    container: None,
                    mark: Health::Absent,
                },
            ],
            cost: None,
            routes: Vec::new(),
        };
        let text = status_lines(&report).join("\n");
        let text = anstream::adapter::strip_str(&text).to_string();
        let web1 = "  Server: web-1
    Provider: sakura-cloud (tk1a)
    Status: {power}
    IP: 163.43.1.2
    CPU: 2 cores
    Memory: 4 GB
    DNS: dev.example.com A → 163.43.1.2 ✓
    DNS: www.example.com CNAME → old.example.com (should be dev.example.com)
    DNS: api.example.com CNAME: missing
    Auto-suspend: idle 1h (after boot 10m, checked every 10m); idle for 10m, suspends itself in about 51m
    Swarm node: manager (leader), active, Ready";
        let off = "suspended (powered off, by itself when idle or by down --suspend; only its disk is billed)";
        let expected = format!(
            "Stage: dev\nStatus: degraded\nInfrastructure:\n{}\n{}\nServices:\n  ✗ db   running 1/2 replicas, update paused\n  ○ api  unknown (server powered off)",
            web1.replace("{power}", "running"),
            web1.replace("web-1", "web-2").replace("{power}", off),
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn timers_say_how_long_until_the_server_suspends() {
        assert_eq!(
            idle_timer(&IdleTimer::PoweringOff { in_seconds: 50 }),
            "powering off in 50s (idle; log in or touch /run/fleetflow/no-auto-suspend to keep it)"
        );
        assert_eq!(
            idle_timer(&IdleTimer::Busy { reason: "1 SSH login session(s)".into() }),
            "not idle: 1 SSH login session(s)"
        );
        assert_eq!(idle_timer(&IdleTimer::NotInstalled), "not installed yet (fleet up installs it)");
        assert_eq!(short_duration(5400), "1h30m");
        assert_eq!(short_duration(125), "2m5s");
    }

    #[test]
    fn records_and_states_read_as_before() {
        let r = |content: Option<&str>, state| RecordStatus {
            name: "a.example.com".into(),
            kind: "A".into(),
            content: content.map(String::from),
            expected: None,
            state,
        };
        assert_eq!(record(&r(Some("1.2.3.4"), RecordState::Unchecked)), "a.example.com A → 1.2.3.4");
        assert_eq!(record(&r(None, RecordState::Duplicated { count: 2 })), "a.example.com A: 2 records");
        assert_eq!(service_state(&ServiceState::Exited { exit_code: 1 }), "exited (1)");
        assert_eq!(
            service_state(&ServiceState::Replicated { running: 0, desired: 0, update: None }),
            "scaled to 0 (down)"
        );
        assert_eq!(service_state(&ServiceState::NoSwarm), "not created (no swarm)");
        assert_eq!(power(&ServerPower::Off, false), "stopped (only its disk is billed)");
    }
}
