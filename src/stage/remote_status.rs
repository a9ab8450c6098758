//! `status` of a remote stage: the servers as their provider reports them, each running
//! server's engine (containers, routes, drift, idle timer) or the swarm through a manager, the
//! records and the prices, gathered into one `StatusReport` of fields (`gather`); `stage::status`
//! prints it, and `ui` writes the sentences.

use super::auto_suspend;
use super::dns::Zones;
use super::remote_stage::{Connected, Reach, reach, tagged};
use super::swarm_stage;
use super::{service_rows, status_report, unknown_rows};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::infra::{Machine, Power, PriceError, Providers, ServerCost};
use crate::model::{Server, StageSpec};
use crate::report::{
    RecordStatus, RouteStatus, RungCosts, ServerPower, ServerStatus, ServiceState, ServiceStatus, StageCost,
    StageState, StatusReport, Unobserved,
};
use crate::ui::Ui;

/// What the servers' engines (or the swarm) report for the whole stage.
#[derive(Default)]
struct EngineView {
    rows: Vec<ServiceStatus>,
    routes: Vec<RouteStatus>,
    drifted: Drift,
}

/// Drift as `ship::drift` reports it: (service, running release, the file's release).
pub(super) type Drift = Vec<(String, String, String)>;

/// A remote stage's `status`, gathered: the report, and the drift `stage::status` warns about
/// after printing it. Reads only.
pub(super) async fn gather(config: &Config, spec: &StageSpec, ui: &Ui) -> Result<(StatusReport, Drift)> {
    let providers = Providers::for_servers(&spec.servers, &ui.infra_progress())?;
    let zones = Zones::connect(spec).await?;
    let machines = providers.observe_stage(&tagged(config, spec)).await?;
    let mut servers = Vec::new();
    for (server, machine) in spec.servers.iter().zip(&machines) {
        let ip = machine.as_ref().and_then(|m| m.ip.as_deref());
        let records = zones.status(&config.project, &spec.name, server, ip).await?;
        servers.push(server_status(server, machine.as_ref(), records));
    }
    let seen = match spec.is_swarm() {
        true => observe_swarm(config, spec, &machines, &mut servers, ui).await?,
        false => observe_engines(config, spec, &machines, &mut servers, ui).await?,
    };
    let placed: Vec<(&Server, Option<&Machine>)> =
        spec.servers.iter().zip(&machines).map(|(s, m)| (s, m.as_ref())).collect();
    let stage_cost = price_servers(&mut servers, &machines, providers.costs(&placed).await);
    let mut report = status_report(spec, stage_state(&machines, &seen.rows), servers, seen.rows);
    report.cost = stage_cost;
    report.routes = seen.routes;
    Ok((report, seen.drifted))
}

/// One server as its provider reports it, with its records; the engine's part comes later.
fn server_status(server: &Server, machine: Option<&Machine>, records: Vec<RecordStatus>) -> ServerStatus {
    ServerStatus {
        name: server.name.clone(),
        provider: server.provider.label(),
        power: match machine.map(|m| &m.power) {
            None => ServerPower::NotCreated,
            Some(Power::Up) => ServerPower::Running,
            Some(Power::Down) => ServerPower::Off,
            Some(Power::Changing(s)) => ServerPower::Changing { provider_state: s.clone() },
        },
        ip: machine.and_then(|m| m.ip.clone()),
        cpu: machine.and_then(|m| m.cpu),
        memory_gb: machine.and_then(|m| m.memory_gb),
        records,
        cost: None,
        auto_suspend: None,
        node: None,
    }
}

/// Each server's own engine. Status reports what it can: a server the cloud calls up that does
/// not answer (a guest shutting itself down, a firewall) makes its services unknown, not the
/// command fail.
async fn observe_engines(
    config: &Config,
    spec: &StageSpec,
    machines: &[Option<Machine>],
    servers: &mut [ServerStatus],
    ui: &Ui,
) -> Result<EngineView> {
    let mut seen = EngineView::default();
    for ((server, machine), status) in spec.servers.iter().zip(machines).zip(servers.iter_mut()) {
        let sub = spec.for_server(server);
        let Some(m) = machine.as_ref().filter(|m| m.power == Power::Up) else {
            let why = match machine {
                Some(_) => ServiceState::Unobserved { reason: Unobserved::ServerPoweredOff },
                None => ServiceState::NotCreated,
            };
            seen.rows.extend(unknown_rows(&sub, why));
            continue;
        };
        match reach(config, server, m, ui, Reach::Observe).await {
            Ok(conn) => {
                let read = read_engine(spec, &sub, &conn, status, &mut seen).await;
                conn.host.close().await;
                read?;
            }
            Err(e @ Error::Unreachable { .. }) => {
                ui.warn(format!("{e}"));
                let why = ServiceState::Unobserved { reason: Unobserved::ServerUnreachable };
                seen.rows.extend(unknown_rows(&sub, why));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(seen)
}

/// One reached server's part of the stage: its services, routes, drift and idle timer.
async fn read_engine(
    spec: &StageSpec,
    sub: &StageSpec,
    conn: &Connected,
    status: &mut ServerStatus,
    seen: &mut EngineView,
) -> Result<()> {
    seen.rows.extend(service_rows(&conn.engine, sub).await?);
    seen.routes.extend(super::proxy_stage::route_rows(&conn.engine, sub).await?);
    seen.drifted.extend(super::ship::drift(&conn.engine, sub).await?);
    if let Some(a) = &spec.auto_suspend {
        status.auto_suspend = Some(auto_suspend::timer(a, &conn.host.auto_suspend_view().await?));
    }
    Ok(())
}

/// A swarm stage: every running node reached, then the swarm asked through a manager.
async fn observe_swarm(
    config: &Config,
    spec: &StageSpec,
    machines: &[Option<Machine>],
    servers: &mut [ServerStatus],
    ui: &Ui,
) -> Result<EngineView> {
    let mut conns: Vec<(&Server, String, Connected)> = Vec::new();
    for (server, machine) in spec.servers.iter().zip(machines) {
        let Some(m) = machine.as_ref().filter(|m| m.power == Power::Up) else { continue };
        match reach(config, server, m, ui, Reach::Observe).await {
            Ok(conn) => conns.push((server, m.ip.clone().unwrap_or_default(), conn)),
            Err(e @ Error::Unreachable { .. }) => ui.warn(format!("{e}")),
            Err(e) => {
                close_all(conns).await;
                return Err(e);
            }
        }
    }
    let nodes: Vec<swarm_stage::Node> = conns
        .iter()
        .map(|(server, ip, c)| swarm_stage::Node { server, address: ip.clone(), engine: &c.engine })
        .collect();
    let result = match nodes.is_empty() {
        true => {
            Ok((Default::default(), unknown_rows(spec, ServiceState::Unobserved { reason: Unobserved::NoSwarmNode })))
        }
        false => swarm_stage::status_rows(spec, &nodes).await,
    };
    drop(nodes);
    close_all(conns).await;
    let (mut node_rows, rows) = result?;
    for s in servers.iter_mut() {
        s.node = node_rows.remove(&s.name);
    }
    Ok(EngineView { rows, ..EngineView::default() })
}

async fn close_all(conns: Vec<(&Server, String, Connected)>) {
    for (_, _, c) in conns {
        c.host.close().await;
    }
}

/// The stage in one word: its servers' power first, then its services.
fn stage_state(machines: &[Option<Machine>], rows: &[ServiceStatus]) -> StageState {
    if machines.iter().all(Option::is_none) {
        StageState::NotCreated
    } else if machines.iter().flatten().all(|m| m.power == Power::Down) {
        StageState::Suspended
    } else {
        StageState::of_services(rows)
    }
}

/// Puts each server's rung costs on its status and sums the stage's; a price list that
/// cannot be read is said, not guessed.
fn price_servers(
    servers: &mut [ServerStatus],
    machines: &[Option<Machine>],
    costs: Vec<Option<std::result::Result<ServerCost, PriceError>>>,
) -> Option<StageCost> {
    let mut total = RungCosts::default();
    let (mut error, mut price_list_at, mut billed) = (None, None, false);
    for ((status, machine), cost) in servers.iter_mut().zip(machines).zip(costs) {
        let Some(cost) = cost else { continue };
        billed = true;
        let cost = match cost {
            Ok(c) => c,
            Err(e) => {
                error.get_or_insert(e.to_string());
                continue;
            }
        };
        let (rung, now) = match machine.as_ref().map(|m| &m.power) {
            None => ("destroyed", 0),
            Some(Power::Down) => ("suspended", cost.suspended),
            Some(_) => ("running", cost.running),
        };
        total.now_monthly += now;
        total.running_monthly += cost.running;
        total.suspended_monthly += cost.suspended;
        price_list_at.get_or_insert(cost.price_list_at);
        status.cost = Some(RungCosts {
            rung: Some(rung),
            now_monthly: now,
            running_monthly: cost.running,
            suspended_monthly: cost.suspended,
            destroyed_monthly: 0,
        });
    }
    billed.then(|| StageCost {
        currency: "JPY",
        basis: "list prices before discounts",
        price_list_at,
        total: if error.is_none() { Some(total) } else { None },
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(power: Power) -> Machine {
        Machine {
            id: Some("1".into()),
            power,
            ip: Some("163.43.1.2".into()),
            cpu: Some(2),
            memory_gb: Some(4),
            disks: Vec::new(),
            created: None,
            new_this_run: false,
            booted_this_run: false,
            duplicates: 0,
        }
    }

    fn server(name: &str) -> Server {
        super::super::plan_fixtures::host(name, &[])
    }

    #[test]
    fn a_server_reports_its_power_as_a_field() {
        let s = server("web-1");
        assert_eq!(server_status(&s, None, Vec::new()).power, ServerPower::NotCreated);
        let off = server_status(&s, Some(&machine(Power::Down)), Vec::new());
        assert_eq!((off.power, off.ip.as_deref(), off.cpu), (ServerPower::Off, Some("163.43.1.2"), Some(2)));
        let booting = server_status(&s, Some(&machine(Power::Changing("migrating".into()))), Vec::new());
        assert_eq!(booting.power, ServerPower::Changing { provider_state: "migrating".into() });
    }

    #[test]
    fn the_stage_is_suspended_when_every_server_is_off() {
        let none: Vec<ServiceStatus> = Vec::new();
        assert_eq!(stage_state(&[None, None], &none), StageState::NotCreated);
        assert_eq!(stage_state(&[Some(machine(Power::Down)), None], &none), StageState::Suspended);
        let rows = unknown_rows_for(ServiceState::Running);
        assert_eq!(stage_state(&[Some(machine(Power::Down)), Some(machine(Power::Up))], &rows), StageState::Degraded);
    }

    fn unknown_rows_for(state: ServiceState) -> Vec<ServiceStatus> {
        let absent = ServiceStatus::of("db", false, None, ServiceState::NotCreated, None);
        vec![
            absent,
            ServiceStatus {
                state,
                mark: crate::report::Health::Ok,
                ..ServiceStatus::of("api", false, None, ServiceState::NotCreated, None)
            },
        ]
    }

    #[test]
    fn prices_land_on_each_server_and_sum_per_rung() {
        let cost = |running, suspended| Some(Ok(ServerCost { running, suspended, price_list_at: "2026-12-01".into() }));
        let machines = [Some(machine(Power::Up)), Some(machine(Power::Down)), None];
        let mut servers: Vec<ServerStatus> =
            machines.iter().map(|m| server_status(&server("s"), m.as_ref(), Vec::new())).collect();
        let stage = price_servers(&mut servers, &machines, vec![cost(4000, 1000), cost(3000, 800), cost(2000, 500)]);
        let total = stage.as_ref().and_then(|s| s.total).unwrap();
        assert_eq!((total.now_monthly, total.running_monthly, total.suspended_monthly), (4800, 9000, 2300));
        let rungs: Vec<_> = servers.iter().map(|s| s.cost.and_then(|c| c.rung)).collect();
        assert_eq!(rungs, [Some("running"), Some("suspended"), Some("destroyed")]);
        assert_eq!(stage.unwrap().price_list_at.as_deref(), Some("2026-12-01"));

        let failed = Some(Err(PriceError::Timeout { secs: 5 }));
        let stage = price_servers(&mut servers, &machines, vec![cost(4000, 1000), failed, None]).unwrap();
        assert_eq!((stage.total, stage.error.as_deref()), (None, Some("no answer within 5 s")), "said, not guessed");
        let unbilled = price_servers(&mut servers, &machines, vec![None, None, None]);
        assert!(unbilled.is_none(), "brought hosts cost nothing fleet knows");
    }
}
