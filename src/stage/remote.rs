//! Remote stages: the same container steps as a local stage, on each server's own engine,
//! reached over SSH, with the servers created, powered and deleted around them.

use super::dns::{Zones, blocked_error, planned};
use super::remote_lock;
use super::{
    DownOptions, ServerRow, UpOptions, confirm_destroy, converge_containers, down_mode, log_targets, no_containers,
    overall, print_logs, print_plan, print_status, removals, report_up, service_rows, unknown_rows,
};
use crate::config::Config;
use crate::engine::{self, Engine, LogOptions};
use crate::error::{Error, Result};
use crate::infra::{InfraEvent, Machine, Power, Progress, Providers, owner_tag};
use crate::lock::StageLock;
use crate::model::{Server, ServerProvider, StageSpec};
use crate::plan::{self, ConfigHash, Desired, ObservedContainer, ObservedStage, Plan, PlanSummary};
use crate::remote::{self, RemoteHost, known_hosts_file};
use crate::ui::{Format, Ui};
use std::sync::{Arc, Mutex};

/// An SSH connection and the engine behind it; the engine lives only as long as the host.
struct Connected {
    host: RemoteHost,
    engine: Engine,
}

/// SSH to a server and its engine. `booting`: the server may have just been created or powered on,
/// so SSH gets a cloud server's boot time to answer; otherwise a short wait.
async fn reach(config: &Config, server: &Server, machine: &Machine, ui: &Ui, booting: bool) -> Result<Connected> {
    let address = machine
        .ip
        .as_deref()
        .ok_or_else(|| Error::failed(format!("server {}: the provider reports no IP address", server.name)))?;
    let fresh = booting && matches!(server.provider, ServerProvider::SakuraCloud { .. });
    let known_hosts = known_hosts_file(&config.project);
    let mut host = remote::connect(server, address, &known_hosts, fresh).await?;
    if host.ensure_docker(server).await? {
        ui.line(format!("~ server {}: Docker installed", server.name));
        // A new docker group membership only applies to a new login.
        host.close().await;
        host = remote::connect(server, address, &known_hosts, fresh).await?;
    }
    let engine = host.engine().await?;
    ui.detail(format!("server {}: engine at {}", server.name, host.endpoint));
    Ok(Connected { host, engine })
}

/// Provider progress that also counts the actions by kind, for the closing summary.
fn counting(ui: &Ui) -> (Progress, Arc<Mutex<PlanSummary>>) {
    let inner = ui.infra_progress();
    let count = Arc::new(Mutex::new(PlanSummary::default()));
    let c = count.clone();
    let progress: Progress = Arc::new(move |event: InfraEvent| {
        if let InfraEvent::Action(line) = &event {
            let mut s = c.lock().unwrap_or_else(|e| e.into_inner());
            match line.split(' ').next() {
                Some("+") => s.add += 1,
                Some("-") => s.destroy += 1,
                _ => s.change += 1,
            }
        }
        inner(event)
    });
    (progress, count)
}

fn tag(config: &Config, spec: &StageSpec, server: &Server) -> String {
    owner_tag(&config.project, &spec.name, &server.name)
}

fn lock(
    config: &Config,
    spec: &StageSpec,
    verb: &str,
    dry_run: bool,
    wait: Option<std::time::Duration>,
) -> Result<Option<StageLock>> {
    if dry_run {
        return Ok(None);
    }
    StageLock::acquire(&config.project, &spec.name, &format!("{verb} {}", spec.name), wait).map(Some)
}

/// Servers up (created, booted), SSH answered, Docker there, then the containers converged.
pub async fn up(config: &Config, spec: &StageSpec, opts: &UpOptions, ui: &Ui) -> Result<Plan> {
    let _lock = lock(config, spec, "up", opts.dry_run, opts.lock_wait)?;
    let providers = Providers::for_servers(&spec.servers)?;
    let zones = Zones::connect(spec).await?;
    if opts.dry_run {
        return plan_only(config, spec, &providers, &zones, opts, ui).await;
    }
    let (progress, infra) = counting(ui);
    let mut lock_holder = None;
    let result = up_servers(config, spec, &providers, &zones, opts, &progress, ui, &mut lock_holder).await;
    release(config, spec, lock_holder).await;
    let (total, blocked) = result?;
    let infra = *infra.lock().unwrap_or_else(|e| e.into_inner());
    report_up(spec, &total, infra, ui);
    blocked_error(blocked)?;
    Ok(total)
}

/// The servers one by one: up, reached, locked (the first), containers, records.
#[allow(clippy::too_many_arguments)]
async fn up_servers(
    config: &Config,
    spec: &StageSpec,
    providers: &Providers,
    zones: &Zones,
    opts: &UpOptions,
    progress: &Progress,
    ui: &Ui,
    lock_holder: &mut Option<Connected>,
) -> Result<(Plan, Vec<String>)> {
    let mut total = Plan { stage: spec.name.clone(), ..Plan::default() };
    let mut blocked = Vec::new();
    for (i, server) in spec.servers.iter().enumerate() {
        let machine = providers.ensure_up(server, &tag(config, spec, server), progress).await?;
        let conn = reach(config, server, &machine, ui, true).await?;
        if i == 0 {
            let purpose = format!("up {}", spec.name);
            remote_lock::acquire(&conn.host, &server.name, &config.project, &spec.name, &purpose, opts.lock_wait)
                .await?;
        }
        let plan = converge_containers(&conn.engine, &spec.for_server(server), opts, ui).await?;
        total.actions.extend(plan.actions);
        total.orphans.extend(plan.orphans);
        if i == 0 {
            *lock_holder = Some(conn);
        } else {
            conn.host.close().await;
        }
        let ip = machine.ip.as_deref().unwrap_or_default();
        blocked.extend(zones.converge(&config.project, &spec.name, server, ip, progress, true).await?);
    }
    Ok((total, blocked))
}

/// Releases the remote lock held over `conn`, and closes it.
async fn release(config: &Config, spec: &StageSpec, conn: Option<Connected>) {
    if let Some(conn) = conn {
        let _ = conn.host.unlock(&remote_lock::lock_name(&config.project, &spec.name)).await;
        conn.host.close().await;
    }
}

/// `fleet stage unlock`: breaks a remote lock left behind by a run that is gone.
pub async fn unlock(config: &Config, spec: &StageSpec, ui: &Ui) -> Result<()> {
    let providers = Providers::for_servers(&spec.servers)?;
    let Some(server) = spec.servers.first() else { return Ok(()) };
    match providers.observe(server, &tag(config, spec, server)).await? {
        Some(m) if m.power == Power::Up => {
            let conn = reach(config, server, &m, ui, false).await?;
            conn.host.unlock(&remote_lock::lock_name(&config.project, &spec.name)).await?;
            conn.host.close().await;
            ui.line(format!("Stage {} is unlocked (lock on server {} removed).", spec.name, server.name));
        }
        _ => ui.line(format!("Server {} is not running, so it holds no lock; nothing to do.", server.name)),
    }
    Ok(())
}

/// `up --dry-run`: the servers, their containers and their records, in the order the run does
/// them and with the same lines. Nothing is changed.
async fn plan_only(
    config: &Config,
    spec: &StageSpec,
    providers: &Providers,
    zones: &Zones,
    opts: &UpOptions,
    ui: &Ui,
) -> Result<Plan> {
    let mut total = Plan { stage: spec.name.clone(), ..Plan::default() };
    let text = opts.format == Format::Text;
    for server in &spec.servers {
        let sub = spec.for_server(server);
        let found = providers.observe(server, &tag(config, spec, server)).await?;
        let mut infra = Vec::new();
        let mut actions = Vec::new();
        match &found {
            Some(m) if m.power == Power::Up => {
                let conn = reach(config, server, m, ui, false).await?;
                let plan = converge_containers(&conn.engine, &sub, opts, ui).await?;
                actions = plan.actions;
                total.orphans.extend(plan.orphans);
                conn.host.close().await;
            }
            None => {
                if let ServerProvider::SakuraCloud { zone, core, memory_gb, disk_gb, os, .. } = &server.provider {
                    infra.push(format!(
                        "+ server {} (sakura-cloud {zone}, {core} cores, {memory_gb} GB, {disk_gb} GB ssd, {os})",
                        server.name
                    ));
                }
                infra.push(format!("~ server {}: power on", server.name));
                // A new server's engine holds nothing: the pure plan against an empty engine.
                let desired: Vec<Desired> =
                    sub.services.iter().map(|s| Desired { service: s, hash: ConfigHash::of(s, "") }).collect();
                actions = plan::plan_up(&sub, &desired, &ObservedStage::default(), false, false).actions;
            }
            Some(_) => {
                infra.push(format!("~ server {}: power on", server.name));
                ui.note(format!(
                    "containers on {} are planned once it runs (its engine cannot be asked while it is off)",
                    server.name
                ));
            }
        }
        let dns_lines = match found.as_ref().and_then(|m| m.ip.as_deref()) {
            Some(ip) => {
                let (collect, lines) = collecting();
                for b in zones.converge(&config.project, &spec.name, server, ip, &collect, false).await? {
                    ui.warn(b);
                }
                lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
            }
            None => {
                planned(server).into_iter().map(|r| format!("+ dns {} {} → {}", r.name, r.kind, r.content)).collect()
            }
        };
        if text {
            infra.iter().for_each(|l| ui.line(crate::ui::colour_plan_line(l.clone())));
            actions.iter().for_each(|a| ui.line(crate::ui::action_line(a)));
            dns_lines.iter().for_each(|l| ui.line(crate::ui::colour_plan_line(l.clone())));
        }
        total.infra.extend(infra);
        total.infra.extend(dns_lines);
        total.actions.extend(actions);
    }
    match (text, total.is_empty()) {
        (true, true) => ui.line(format!("Stage {} is up to date; nothing to do.", spec.name)),
        (true, false) => ui.line(PlanSummary::of(&total).to_string()),
        (false, _) => print_plan(&total, opts.format, ui),
    }
    Ok(total)
}

/// Progress that only collects the action lines (a dry run prints them itself).
fn collecting() -> (Progress, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let progress: Progress = Arc::new(move |event: InfraEvent| {
        if let InfraEvent::Action(line) = event {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    (progress, lines)
}

pub async fn down(config: &Config, spec: &StageSpec, opts: &DownOptions, ui: &Ui) -> Result<Plan> {
    if opts.suspend
        && let Some(host) = spec.servers.iter().find(|s| matches!(s.provider, ServerProvider::Host { .. }))
    {
        return Err(Error::usage_help(
            format!(
                "server {} is a host you brought (provider \"host\"): fleet does not power it off, so --suspend is refused",
                host.name
            ),
            format!("use `fleet down {}` to stop its containers", spec.name),
        ));
    }
    let _lock = lock(config, spec, "down", opts.dry_run, opts.lock_wait)?;
    let providers = Providers::for_servers(&spec.servers)?;
    // Records go only with --destroy; down and suspend keep them (the IP survives a power-off).
    let zones = if opts.destroy { Some(Zones::connect(spec).await?) } else { None };
    let progress = ui.infra_progress();
    let mut found = Vec::new();
    for server in &spec.servers {
        found.push((server, providers.observe(server, &tag(config, spec, server)).await?));
    }
    if found.iter().all(|(_, m)| m.is_none()) {
        ui.line(format!("Stage {} has no servers; nothing to do.", spec.name));
        return Ok(Plan { stage: spec.name.clone(), ..Plan::default() });
    }
    // Containers first, on every running server: what is stopped or removed, and how.
    let mut connections = Vec::new();
    let mut total = Plan { stage: spec.name.clone(), ..Plan::default() };
    for (i, (server, machine)) in found.iter().enumerate() {
        let Some(m) = machine.as_ref().filter(|m| m.power == Power::Up) else {
            continue;
        };
        let conn = reach(config, server, m, ui, false).await?;
        if i == 0 && !opts.dry_run {
            let purpose = format!("down {}", spec.name);
            remote_lock::acquire(&conn.host, &server.name, &config.project, &spec.name, &purpose, opts.lock_wait)
                .await?;
        }
        let sub = spec.for_server(server);
        let observed = conn.engine.observe(&sub).await?;
        let plan = plan::plan_down(&sub, &observed, down_mode(opts));
        total.actions.extend(plan.actions.iter().cloned());
        connections.push((conn, sub, observed, plan));
    }
    // Then each server, with the very lines the run prints while it does them.
    for (server, machine) in &found {
        let Some(m) = machine else { continue };
        match &server.provider {
            ServerProvider::SakuraCloud { zone, .. } if opts.destroy || opts.suspend => {
                if m.power != Power::Down {
                    total.infra.push(format!("~ server {}: power off", server.name));
                }
                if opts.destroy {
                    total.infra.push(format!(
                        "- server {} (sakura-cloud {zone}) with {} disk(s)",
                        server.name,
                        m.disks.len()
                    ));
                    if let Some(zones) = &zones {
                        for r in zones.owned(&config.project, &spec.name, server).await? {
                            total.infra.push(format!("- dns {} {}", r.name, r.kind));
                        }
                    }
                }
            }
            ServerProvider::Host { .. } if opts.destroy => {
                ui.note(format!("server {} is a brought host: its containers go, the machine stays", server.name))
            }
            _ => {}
        }
    }
    if opts.dry_run {
        match opts.format {
            Format::Json => print_plan(&total, opts.format, ui),
            Format::Text => {
                total.actions.iter().for_each(|a| ui.line(crate::ui::action_line(a)));
                total.infra.iter().for_each(|l| ui.line(crate::ui::colour_plan_line(l.clone())));
                ui.line(PlanSummary::of(&total).to_string());
            }
        }
        return Ok(total);
    }
    let mut deletions = removals(&total);
    deletions
        .extend(total.infra.iter().filter(|l| l.starts_with("- ")).map(|l| crate::ui::colour_plan_line(l.clone())));
    // The lock was taken over the first connection when the first server runs; it is given back
    // once the containers are handled, before any power change cuts the connection.
    let locked = found.first().is_some_and(|(_, m)| m.as_ref().is_some_and(|m| m.power == Power::Up));
    let confirmed = if opts.destroy && !opts.yes { confirm_destroy(spec, &deletions, ui) } else { Ok(()) };
    let mut result = confirmed;
    for (j, (conn, sub, observed, plan)) in connections.into_iter().enumerate() {
        if result.is_ok() {
            result = engine::down(&conn.engine, &sub, &plan, &observed, ui.events()).await;
        }
        if j == 0 && locked {
            let _ = conn.host.unlock(&remote_lock::lock_name(&config.project, &spec.name)).await;
        }
        conn.host.close().await;
    }
    result?;
    for (server, machine) in &found {
        let (Some(m), ServerProvider::SakuraCloud { .. }) = (machine, &server.provider) else {
            continue;
        };
        let tag = tag(config, spec, server);
        if opts.destroy {
            providers.destroy(server, &tag, &progress).await?;
            if let Some(ip) = &m.ip {
                remote::forget_host(&known_hosts_file(&config.project), ip, server.ssh.port);
            }
            if let Some(zones) = &zones {
                zones.remove(&config.project, &spec.name, server, &progress).await?;
            }
        } else if opts.suspend {
            providers.power_off(server, &tag, &progress).await?;
        }
    }
    let done = if opts.destroy {
        "destroyed".to_string()
    } else if opts.suspend {
        "suspended: servers are powered off and only their disks are billed".to_string()
    } else {
        "down (servers keep running)".to_string()
    };
    ui.line(format!("Stage {} is {done}.", spec.name));
    Ok(total)
}

pub async fn status(config: &Config, spec: &StageSpec, format: Format, ui: &Ui) -> Result<()> {
    let providers = Providers::for_servers(&spec.servers)?;
    let zones = Zones::connect(spec).await?;
    let mut servers = Vec::new();
    let mut rows = Vec::new();
    let mut machines = Vec::new();
    for server in &spec.servers {
        let machine = providers.observe(server, &tag(config, spec, server)).await?;
        let sub = spec.for_server(server);
        servers.push(ServerRow {
            name: server.name.clone(),
            provider: server.provider.label(),
            status: match machine.as_ref().map(|m| &m.power) {
                None => "not created".into(),
                Some(Power::Up) => "running".into(),
                Some(Power::Down) => "stopped (only its disk is billed)".into(),
                Some(Power::Changing(s)) => s.clone(),
            },
            ip: machine.as_ref().and_then(|m| m.ip.clone()),
            cpu: machine.as_ref().and_then(|m| m.cpu),
            memory_gb: machine.as_ref().and_then(|m| m.memory_gb),
            dns: zones
                .describe(&config.project, &spec.name, server, machine.as_ref().and_then(|m| m.ip.as_deref()))
                .await?,
        });
        match machine.as_ref().filter(|m| m.power == Power::Up) {
            Some(m) => {
                let conn = reach(config, server, m, ui, false).await?;
                rows.extend(service_rows(&conn.engine, &sub).await?);
                conn.host.close().await;
            }
            None => {
                let why = if machine.is_some() { "unknown (server powered off)" } else { "not created" };
                rows.extend(unknown_rows(&sub, why));
            }
        }
        machines.push(machine);
    }
    let status = if machines.iter().all(Option::is_none) {
        "not created"
    } else if machines.iter().flatten().all(|m| m.power == Power::Down) {
        "suspended (servers powered off; only disks are billed)"
    } else {
        overall(&rows)
    };
    print_status(spec, status, &servers, &rows, format, ui);
    Ok(())
}

/// Containers of a remote stage, server by server; a powered-off server is skipped with a note.
pub async fn containers(config: &Config, spec: &StageSpec, ui: &Ui) -> Result<Vec<ObservedContainer>> {
    let providers = Providers::for_servers(&spec.servers)?;
    let mut out = Vec::new();
    for server in &spec.servers {
        match providers.observe(server, &tag(config, spec, server)).await? {
            Some(m) if m.power == Power::Up => {
                let conn = reach(config, server, &m, ui, false).await?;
                let names: Vec<String> = spec.services_on(server).iter().map(|s| s.name.clone()).collect();
                let found = conn.engine.containers(&config.project, Some(&spec.name)).await?;
                out.extend(found.into_iter().filter(|c| names.contains(&c.service)));
                conn.host.close().await;
            }
            Some(_) => ui.note(format!(
                "stage {}: server {} is powered off; its containers are not listed",
                spec.name, server.name
            )),
            None => {}
        }
    }
    Ok(out)
}

pub async fn logs(config: &Config, spec: &StageSpec, services: &[String], opts: &LogOptions, ui: &Ui) -> Result<()> {
    let providers = Providers::for_servers(&spec.servers)?;
    let mut hosts = Vec::new();
    let mut streams = Vec::new();
    for server in &spec.servers {
        let Some(m) = providers.observe(server, &tag(config, spec, server)).await?.filter(|m| m.power == Power::Up)
        else {
            ui.note(format!("server {} is not running; its logs are not available", server.name));
            continue;
        };
        let conn = reach(config, server, &m, ui, false).await?;
        let targets = log_targets(&conn.engine, &spec.for_server(server), services).await?;
        if !targets.is_empty() {
            streams.push(engine::stream_logs(&conn.engine, &targets, opts));
        }
        // The streams run over this SSH connection: keep it open until they end.
        hosts.push(conn);
    }
    if streams.is_empty() {
        return Err(no_containers(spec));
    }
    let result = print_logs(spec, streams, ui).await;
    for conn in hosts {
        conn.host.close().await;
    }
    result
}
