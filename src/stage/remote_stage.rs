//! Remote stages: the same container steps as a local stage, on each server's own engine,
//! reached over SSH, with the servers created, powered and deleted around them.

use super::auto_suspend;
use super::dns::{Zones, blocked_error, planned_actions};
use super::server_lock;
use super::swarm_stage;
use super::{DownOptions, UpOptions, converge_on, log_targets, no_containers, print_logs, print_plan, report_up};
use crate::config::Config;
use crate::engine::{self, Engine, LogOptions};
use crate::error::{Error, Result};
use crate::infra::{InfraEvent, Machine, Power, Progress, Providers, owner_tag};
use crate::local_lock::StageLock;
use crate::model::{Server, ServerProvider, StageSpec};
use crate::plan::{self, ConfigHash, Desired, InfraAction, ObservedContainer, ObservedStage, Plan, PlanSummary};
use crate::signal;
use crate::ssh::{self, RemoteHost, known_hosts_file};
use crate::ui::{Format, Ui};
use std::sync::{Arc, Mutex};

/// An SSH connection and the engine behind it; the engine lives only as long as the host.
pub(super) struct Connected {
    /// The server's name in the stage.
    pub server: String,
    pub host: RemoteHost,
    pub engine: Engine,
}

/// Whether reaching a server may change it: only `up` installs an engine; every read-only
/// command (plan, --dry-run, status, ps, logs, unlock, down) reports a missing one instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    /// Read-only: a server that is already up answers within a short wait.
    Observe,
    /// `up --dry-run`: read-only, and this machine's images are looked at (never sent) so the
    /// plan can say which would be copied.
    Plan,
    /// `up`: the server may have just been created or powered on (a cloud server's boot time),
    /// and a missing engine is installed.
    Converge,
}

/// SSH to a server and its engine.
pub(super) async fn reach(
    config: &Config,
    server: &Server,
    machine: &Machine,
    ui: &Ui,
    mode: Reach,
) -> Result<Connected> {
    let booting = mode == Reach::Converge;
    let address = machine
        .ip
        .as_deref()
        .ok_or_else(|| Error::failed(format!("server {}: the provider reports no IP address", server.name)))?;
    let fresh = booting && matches!(server.provider, ServerProvider::SakuraCloud { .. });
    let known_hosts = known_hosts_file(&config.project);
    let mut host = ssh::connect(server, address, &known_hosts, fresh).await?;
    // Only `up` installs an engine; a plan reports its absence like status does.
    if mode != Reach::Converge {
        if let Err(e) = host.check_docker(server).await {
            host.close().await;
            return Err(e);
        }
    } else if host.ensure_docker(server, machine.new_this_run, &|n| ui.note(n)).await? {
        ui.line(format!("~ server {}: Docker installed", server.name));
        // A new docker group membership only applies to a new login.
        host.close().await;
        host = ssh::connect(server, address, &known_hosts, fresh).await?;
    }
    let mut engine = host.engine().await?;
    // Images only this machine has (no registry, a private or locally built image) are copied;
    // only `up` copies, so read-only commands do not touch this machine's engine.
    if mode != Reach::Observe
        && let Ok(local) = Engine::connect_local().await
    {
        engine = engine.with_image_source(local);
    }
    ui.detail(format!("server {}: engine at {}", server.name, host.endpoint));
    Ok(Connected { server: server.name.clone(), host, engine })
}

/// Provider progress for the terminal that also keeps the steps really done, for the summary.
fn recording(ui: &Ui) -> (Progress, Arc<Mutex<Vec<InfraAction>>>) {
    let inner = ui.infra_progress();
    let done = Arc::new(Mutex::new(Vec::new()));
    let d = done.clone();
    let progress: Progress = Arc::new(move |event: InfraEvent| {
        if let InfraEvent::Action(action) = &event {
            d.lock().unwrap_or_else(|e| e.into_inner()).push(action.clone());
        }
        inner(event)
    });
    (progress, done)
}

pub(super) fn tag(config: &Config, spec: &StageSpec, server: &Server) -> String {
    owner_tag(&config.project, &spec.name, &server.name)
}

/// Every server of the stage with its ownership tag, for one find.
pub(super) fn tagged<'a>(config: &Config, spec: &'a StageSpec) -> Vec<(&'a Server, String)> {
    spec.servers.iter().map(|s| (s, tag(config, spec, s))).collect()
}

pub(super) async fn lock(
    config: &Config,
    spec: &StageSpec,
    verb: &str,
    dry_run: bool,
    wait: Option<std::time::Duration>,
) -> Result<Option<StageLock>> {
    if dry_run {
        return Ok(None);
    }
    StageLock::acquire(&config.project, &spec.name, &format!("{verb} {}", spec.name), wait).await.map(Some)
}

/// `up` and its dry run, one pass: servers, then containers, then records (see `converge_stage`).
pub async fn up(config: &Config, spec: &StageSpec, opts: &UpOptions, ui: &Ui) -> Result<Plan> {
    let _lock = lock(config, spec, "up", opts.dry_run, opts.lock_wait).await?;
    let providers = Providers::for_servers(&spec.servers, &ui.infra_progress())?;
    let zones = Zones::connect(spec).await?;
    let (progress, done) = recording(ui);
    // From here a lock on the first server may be held: Ctrl-C ends the work, then it is released.
    let _cleanup = signal::CleanupScope::enter();
    // Builds run on this machine while servers are created and booted; awaited before containers.
    let mut held = Held { builds: super::ship::PendingBuilds::start(spec, opts.dry_run, ui).await?, ..Held::default() };
    let result =
        signal::interruptible(converge_stage(config, spec, &providers, &zones, opts, &progress, ui, &mut held)).await;
    held.release(config, spec).await;
    let mut total = result?;
    if !opts.dry_run {
        // The run reports what it did, which can differ from what it planned (a server that
        // another machine created meanwhile).
        total.infra = std::mem::take(&mut *done.lock().unwrap_or_else(|e| e.into_inner()));
    }
    match (opts.dry_run, opts.format) {
        (true, Format::Json) => print_plan(&total, opts.format, ui),
        (true, Format::Text) if total.is_empty() => {
            ui.line(format!("Stage {} is up to date; nothing to do.", spec.name))
        }
        (true, Format::Text) => ui.line(PlanSummary::of(&total).to_string()),
        (false, _) => report_up(spec, &total, ui),
    }
    Ok(total)
}

/// The connections a run holds, the first one carrying the stage lock once `locked`.
#[derive(Default)]
pub(super) struct Held {
    pub conns: Vec<Connected>,
    pub locked: bool,
    /// This run's image builds, still running while servers boot.
    pub builds: Option<super::ship::PendingBuilds>,
}

impl Held {
    /// Gives the lock back (when taken) and closes every connection: on every exit path.
    pub async fn release(self, config: &Config, spec: &StageSpec) {
        let mut conns = self.conns.into_iter();
        if let Some(first) = conns.next() {
            if self.locked {
                let _ = first.host.unlock(&server_lock::lock_name(&config.project, &spec.name)).await;
            }
            first.host.close().await;
        }
        for conn in conns {
            conn.host.close().await;
        }
    }
}

/// One pass for `up` and for its dry run. Each layer is observed, planned and (unless a dry run)
/// applied before the next is observed: servers (found by tag; created, booted), then each
/// running server's containers, all servers at once over one readiness board so the dependency
/// graph spans servers, then the stage's records, all decided before any is written. A layer that
/// cannot be observed yet (the engine of a server that is off or missing) is planned as far as it
/// can be. A dry run prints the same typed steps the run reports as it applies them.
#[allow(clippy::too_many_arguments)]
async fn converge_stage(
    config: &Config,
    spec: &StageSpec,
    providers: &Providers,
    zones: &Zones,
    opts: &UpOptions,
    progress: &Progress,
    ui: &Ui,
    held: &mut Held,
) -> Result<Plan> {
    let apply = !opts.dry_run;
    let show = opts.dry_run && opts.format == Format::Text;
    let mut total = Plan { stage: spec.name.clone(), ..Plan::default() };

    // Servers, one at a time (power calls go one at a time); the first one's lock right after it answers.
    let mut machines: Vec<Option<Machine>> = vec![None; spec.servers.len()];
    let mut conns: Vec<Option<usize>> = vec![None; spec.servers.len()];
    let mut observed = providers.observe_stage(&tagged(config, spec)).await?;
    // Power calls go one at a time; the first server is reached (and locked) before any other is
    // created or booted, the others are reached together once all of them run.
    let mut to_reach = Vec::new();
    for step in super::infra_plan::plan_servers(spec, &observed) {
        let i = step.index;
        let (server, found) = (&spec.servers[i], observed[i].take());
        let tag = tag(config, spec, server);
        if let (false, Some(m)) = (apply, found.as_ref()) {
            note_adoption(config, spec, server, m, ui);
        }
        let machine = match (apply, step.calls_provider()) {
            (false, _) | (true, false) => found,
            (true, true) => Some(providers.ensure_up(server, &tag, progress).await?),
        };
        let steps = step.actions;
        if show {
            steps.iter().for_each(|a| ui.line(crate::ui::infra_line(a)));
            if steps.iter().any(|a| matches!(a, InfraAction::CreateServer { .. })) {
                ui.line(match providers.costs(&[(server, None)]).await.pop().flatten() {
                    Some(Ok(c)) => format!(
                        "    adds {}/month while running, {}/month suspended (list prices before discounts)",
                        crate::ui::yen(c.running),
                        crate::ui::yen(c.suspended)
                    ),
                    Some(Err(e)) => {
                        format!("    adds an unknown amount per month (the price list could not be read: {e})")
                    }
                    None => String::new(),
                });
            }
        }
        total.infra.extend(steps);
        if let Some(m) = machine.as_ref().filter(|m| m.power == Power::Up) {
            // Cloud IPs are reused: a key recorded for this address belonged to an earlier machine.
            if let (true, Some(ip)) = (m.new_this_run, &m.ip) {
                ssh::forget_host(&known_hosts_file(&config.project), ip, server.ssh.port);
            }
            if i == 0 {
                let mode = if apply { Reach::Converge } else { Reach::Plan };
                held.conns.push(reach(config, server, m, ui, mode).await?);
                conns[0] = Some(held.conns.len() - 1);
                if apply {
                    let purpose = format!("up {}", spec.name);
                    let host = &held.conns[0].host;
                    server_lock::acquire(host, &server.name, &config.project, &spec.name, &purpose, opts.lock_wait)
                        .await?;
                    held.locked = true;
                }
            } else {
                to_reach.push(i);
            }
        }
        machines[i] = machine;
    }
    // A converged swarm is seen whole from its manager: the other nodes are not reached.
    let swarm_converged = spec.is_swarm() && swarm_converged_here(spec, opts, &conns, &machines, held, &total).await?;
    if swarm_converged {
        to_reach.clear();
    }
    // Each reach may wait out a boot and an engine bootstrap: together, not one after another.
    let mode = if apply { Reach::Converge } else { Reach::Plan };
    let reached = futures_util::future::join_all(to_reach.iter().map(|&i| {
        let machine = machines[i].as_ref().expect("a running server");
        reach(config, &spec.servers[i], machine, ui, mode)
    }))
    .await;
    let mut first_error = None;
    for (i, result) in to_reach.into_iter().zip(reached) {
        match result {
            Ok(conn) => {
                held.conns.push(conn);
                conns[i] = Some(held.conns.len() - 1);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }

    // A failed build stops the run here: no container on any server has been touched.
    if let Some(builds) = held.builds.take() {
        builds.wait().await?;
    }
    if swarm_converged {
        // Nothing to plan on the swarm: its manager showed it as the file declares it.
    } else if spec.is_swarm() {
        let nodes = swarm_nodes(&conns, &machines, spec, held);
        let unreached: Vec<&Server> =
            spec.servers.iter().zip(&conns).filter(|(_, c)| c.is_none()).map(|(s, _)| s).collect();
        let plan = swarm_stage::converge(spec, &nodes, &unreached, opts, progress, ui).await?;
        total.infra.extend(plan.infra);
        total.actions.extend(plan.actions);
    } else {
        converge_containers(spec, opts, ui, &conns, &machines, held, &mut total).await?;
        converge_auto_suspend(spec, opts, ui, &conns, held, progress, &mut total).await?;
    }
    if apply {
        for conn in &held.conns {
            super::ship::prune(&conn.engine, spec, ui).await?;
        }
    }

    // Records: decided for the whole stage before any is written.
    let placed: Vec<(&Server, &str)> =
        spec.servers.iter().zip(&machines).filter_map(|(s, m)| Some((s, m.as_ref()?.ip.as_deref()?))).collect();
    let records = zones.plan(&config.project, &spec.name, &placed).await?;
    let mut record_steps: Vec<InfraAction> = records.changes.iter().map(|c| c.action.clone()).collect();
    // A server without an address yet gets its records once it has one.
    for (server, m) in spec.servers.iter().zip(&machines) {
        if m.as_ref().and_then(|m| m.ip.as_ref()).is_none() {
            record_steps.extend(planned_actions(server));
        }
    }
    if apply {
        blocked_error(&records.blocked)?;
        zones.apply(&records, progress).await?;
    } else {
        records.blocked.iter().for_each(|b| ui.warn(b));
        if show {
            record_steps.iter().for_each(|a| ui.line(crate::ui::infra_line(a)));
        }
    }
    total.infra.extend(record_steps);
    Ok(total)
}

/// Each service of `sub` gets host entries for the services on the stage's other servers.
fn with_peer_hosts(spec: &StageSpec, mut sub: StageSpec, machines: &[Option<Machine>]) -> StageSpec {
    if spec.servers.len() < 2 {
        return sub;
    }
    let here = sub.servers.first().map(|s| s.name.clone());
    let mut peers = std::collections::BTreeMap::new();
    for (server, machine) in spec.servers.iter().zip(machines) {
        let Some(ip) = machine.as_ref().and_then(|m| m.ip.clone()) else { continue };
        if Some(&server.name) != here.as_ref() {
            for svc in spec.services_on(server) {
                peers.insert(svc.name.clone(), ip.clone());
            }
        }
    }
    for svc in &mut sub.services {
        svc.peer_hosts = peers.clone();
    }
    sub
}

/// Adoption is by tag: a plan says which existing machine `up` would use, so a wrong match shows.
fn note_adoption(config: &Config, spec: &StageSpec, server: &Server, m: &Machine, ui: &Ui) {
    if matches!(server.provider, ServerProvider::SakuraCloud { .. }) {
        ui.note(format!(
            "server {}: uses existing server {} (tag {}, created {})",
            server.name,
            m.id.as_deref().unwrap_or("?"),
            tag(config, spec, server),
            m.created.as_deref().unwrap_or("at an unknown time")
        ));
    }
}

/// What a server that does not exist yet will need: every container from nothing.
fn plan_on_new_server(sub: &StageSpec) -> Plan {
    let desired: Vec<Desired> =
        sub.services.iter().map(|s| Desired { service: s, hash: ConfigHash::of(s, "") }).collect();
    plan::plan_up(sub, &desired, &ObservedStage::default(), false, false)
}

/// `fleet stage unlock`: breaks a remote lock left behind by a run that is gone.
pub async fn unlock(config: &Config, spec: &StageSpec, ui: &Ui) -> Result<()> {
    let providers = Providers::for_servers(&spec.servers, &ui.infra_progress())?;
    let Some(server) = spec.servers.first() else { return Ok(()) };
    match providers.observe(server, &tag(config, spec, server)).await? {
        Some(m) if m.power == Power::Up => {
            let conn = reach(config, server, &m, ui, Reach::Observe).await?;
            conn.host.unlock(&server_lock::lock_name(&config.project, &spec.name)).await?;
            conn.host.close().await;
            ui.line(format!("Stage {} is unlocked (lock on server {} removed).", spec.name, server.name));
        }
        _ => ui.line(format!("Server {} is not running, so it holds no lock; nothing to do.", server.name)),
    }
    Ok(())
}

/// `down`: observe → plan → apply → report, in `remote_down`.
pub async fn down(config: &Config, spec: &StageSpec, opts: &DownOptions, ui: &Ui) -> Result<Plan> {
    super::remote_down::down(config, spec, opts, ui).await
}

/// Containers of a remote stage with the server each runs on, server by server; a powered-off
/// server is skipped with a note.
pub async fn containers(config: &Config, spec: &StageSpec, ui: &Ui) -> Result<Vec<(String, ObservedContainer)>> {
    let providers = Providers::for_servers(&spec.servers, &ui.infra_progress())?;
    let mut out = Vec::new();
    let observed = providers.observe_stage(&tagged(config, spec)).await?;
    if spec.is_swarm() {
        return swarm_tasks(config, spec, observed, ui).await;
    }
    for (server, machine) in spec.servers.iter().zip(observed) {
        match machine {
            Some(m) if m.power == Power::Up => {
                let conn = reach(config, server, &m, ui, Reach::Observe).await?;
                let names: Vec<String> = spec.services_on(server).iter().map(|s| s.name.clone()).collect();
                let found = conn.engine.containers(&config.project, Some(&spec.name)).await?;
                out.extend(found.into_iter().filter(|c| names.contains(&c.service)).map(|c| (server.name.clone(), c)));
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
    let providers = Providers::for_servers(&spec.servers, &ui.infra_progress())?;
    let mut hosts = Vec::new();
    let mut streams = Vec::new();
    for server in &spec.servers {
        let Some(m) = providers.observe(server, &tag(config, spec, server)).await?.filter(|m| m.power == Power::Up)
        else {
            ui.note(format!("server {} is not running; its logs are not available", server.name));
            continue;
        };
        let conn = reach(config, server, &m, ui, Reach::Observe).await?;
        let targets = match spec.is_swarm() {
            true => {
                let node = swarm_stage::Node { server, address: String::new(), engine: &conn.engine };
                swarm_stage::log_targets(spec, &node, services).await?
            }
            false => log_targets(&conn.engine, &spec.for_server(server), services).await?,
        };
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

/// Each running server's containers, every server at once over one readiness board so the
/// dependency graph spans servers.
async fn converge_containers(
    spec: &StageSpec,
    opts: &UpOptions,
    ui: &Ui,
    conns: &[Option<usize>],
    machines: &[Option<Machine>],
    held: &Held,
    total: &mut Plan,
) -> Result<()> {
    let show = opts.dry_run && opts.format == Format::Text;
    let readiness = engine::Readiness::for_stage(spec);
    let per_server = spec.servers.iter().zip(conns).zip(machines).map(|((server, conn), machine)| {
        let sub = with_peer_hosts(spec, spec.for_server(server), machines);
        let readiness = &readiness;
        let engine = conn.map(|c| &held.conns[c].engine);
        async move {
            let result = match engine {
                Some(engine) => converge_on(engine, &sub, opts, ui, readiness).await,
                // A server to be created holds nothing: the pure plan against an empty engine.
                None if machine.is_none() => Ok(plan_on_new_server(&sub)),
                None => {
                    ui.note(format!(
                        "containers on {} are planned once it runs (its engine cannot be asked while it is off)",
                        server.name
                    ));
                    Ok(Plan::default())
                }
            };
            readiness.fail_unset(sub.services.iter().map(|s| s.name.as_str()));
            result
        }
    });
    // Every server runs to its end (a failure on one does not cut another off mid-change).
    let mut failures = Vec::new();
    for result in futures_util::future::join_all(per_server).await {
        match result {
            Ok(plan) => {
                if show {
                    plan.infra.iter().for_each(|a| ui.line(crate::ui::infra_line(a)));
                    plan.actions.iter().for_each(|a| ui.line(crate::ui::action_line(a)));
                }
                total.infra.extend(plan.infra);
                total.actions.extend(plan.actions);
                total.orphans.extend(plan.orphans);
            }
            Err(e) => failures.push(e),
        }
    }
    if let Some(e) = failures.into_iter().next() {
        return Err(e);
    }

    Ok(())
}

/// The idle timer, on each server that runs (after its containers, whose ports it watches).
async fn converge_auto_suspend(
    spec: &StageSpec,
    opts: &UpOptions,
    ui: &Ui,
    conns: &[Option<usize>],
    held: &Held,
    progress: &Progress,
    total: &mut Plan,
) -> Result<()> {
    let apply = !opts.dry_run;
    let show = opts.dry_run && opts.format == Format::Text;
    for (server, conn) in spec.servers.iter().zip(conns) {
        let Some(c) = conn else {
            // A server still to be created or booted gets it when `up` reaches it.
            if let (false, Some(a)) = (apply, &spec.auto_suspend) {
                let step = InfraAction::SetAutoSuspend {
                    server: server.name.clone(),
                    setting: Some(auto_suspend::setting(a)),
                };
                if show {
                    ui.line(crate::ui::infra_line(&step));
                }
                total.infra.push(step);
            }
            continue;
        };
        let conn = &held.conns[*c];
        let view = conn.host.auto_suspend_view().await?;
        if let Some(line) = auto_suspend::suspended_itself(&view) {
            ui.note(format!("server {} had suspended itself: {line}", server.name));
        }
        let ports = auto_suspend::published_ports(&spec.for_server(server));
        let Some(change) = auto_suspend::decide(spec.auto_suspend.as_ref(), &ports, &view) else { continue };
        let step = InfraAction::SetAutoSuspend {
            server: server.name.clone(),
            setting: match change {
                auto_suspend::Change::Install(_) => spec.auto_suspend.as_ref().map(auto_suspend::setting),
                auto_suspend::Change::Remove => None,
            },
        };
        if show {
            ui.line(crate::ui::infra_line(&step));
        }
        if apply {
            let check_every = spec.auto_suspend.map_or(0, |a| a.check_every_secs());
            auto_suspend::apply(&conn.engine, &change, check_every, &ui.events()).await?;
            progress(InfraEvent::Action(step.clone()));
        }
        total.infra.push(step);
    }

    Ok(())
}

/// The first server answered and every other one runs with nothing to create or boot: when the
/// first is the swarm's manager and reports the swarm converged, `up` needs no other node.
async fn swarm_converged_here(
    spec: &StageSpec,
    opts: &UpOptions,
    conns: &[Option<usize>],
    machines: &[Option<Machine>],
    held: &Held,
    total: &Plan,
) -> Result<bool> {
    let all_up = machines.iter().all(|m| m.as_ref().is_some_and(|m| m.power == Power::Up && m.duplicates == 0));
    let (Some(first), Some(Some(machine))) = (conns.first().copied().flatten(), machines.first()) else {
        return Ok(false);
    };
    if !all_up || !total.infra.is_empty() {
        return Ok(false);
    }
    let node = swarm_stage::Node {
        server: &spec.servers[0],
        address: machine.ip.clone().unwrap_or_default(),
        engine: &held.conns[first].engine,
    };
    super::swarm_converged::is_converged(spec, &node, opts).await
}

/// The reached servers of a swarm stage, as nodes for the swarm layer.
fn swarm_nodes<'a>(
    conns: &[Option<usize>],
    machines: &[Option<Machine>],
    spec: &'a StageSpec,
    held: &'a Held,
) -> Vec<swarm_stage::Node<'a>> {
    spec.servers
        .iter()
        .zip(conns.iter().zip(machines))
        .filter_map(|(server, (conn, machine))| {
            Some(swarm_stage::Node {
                server,
                address: machine.as_ref()?.ip.clone()?,
                engine: &held.conns[(*conn)?].engine,
            })
        })
        .collect()
}

/// `ps` of a swarm stage: the tasks, as the first running manager reports them.
async fn swarm_tasks(
    config: &Config,
    spec: &StageSpec,
    observed: Vec<Option<Machine>>,
    ui: &Ui,
) -> Result<Vec<(String, ObservedContainer)>> {
    let mut running: Vec<(usize, Machine)> = observed
        .into_iter()
        .enumerate()
        .filter_map(|(i, m)| m.filter(|m| m.power == Power::Up).map(|m| (i, m)))
        .collect();
    running.sort_by_key(|(i, _)| !spec.is_manager(&spec.servers[*i]));
    let mut conns = Vec::new();
    for (i, m) in &running {
        conns.push((
            *i,
            m.ip.clone().unwrap_or_default(),
            reach(config, &spec.servers[*i], m, ui, Reach::Observe).await?,
        ));
    }
    let nodes: Vec<swarm_stage::Node> = conns
        .iter()
        .map(|(i, ip, c)| swarm_stage::Node { server: &spec.servers[*i], address: ip.clone(), engine: &c.engine })
        .collect();
    let result = swarm_stage::tasks(spec, &nodes).await;
    drop(nodes);
    for (_, _, c) in conns {
        c.host.close().await;
    }
    if running.is_empty() {
        ui.note(format!("stage {}: no server of its swarm is running; no tasks are listed", spec.name));
    }
    result
}

/// Day-2 operations (`ops`): every server of the stage reached read-only, with its engine. A
/// server that is off or not created is an error naming it: an operation needs all of them.
pub(crate) async fn reach_servers(
    config: &Config,
    spec: &StageSpec,
    ui: &Ui,
) -> Result<Vec<(Server, ssh::RemoteHost, Engine)>> {
    let providers = Providers::for_servers(&spec.servers, &ui.infra_progress())?;
    let observed = providers.observe_stage(&tagged(config, spec)).await?;
    let mut out = Vec::new();
    for (server, machine) in spec.servers.iter().zip(observed) {
        let reached = match machine {
            Some(m) if m.power == Power::Up => reach(config, server, &m, ui, Reach::Observe).await,
            Some(_) => Err(Error::failed_help(
                format!("server {} of stage {} is powered off", server.name, spec.name),
                format!("run `fleet up {}` first", spec.name),
            )),
            None => Err(Error::failed_help(
                format!("server {} of stage {} does not exist", server.name, spec.name),
                format!("run `fleet up {}` first", spec.name),
            )),
        };
        match reached {
            Ok(c) => out.push((server.clone(), c.host, c.engine)),
            Err(e) => {
                for (_, host, _) in out {
                    host.close().await;
                }
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// The engines of the stage's running servers, reached read-only (`fleet releases`, `rollback`):
/// (server name, SSH host to close after, engine).
pub(super) async fn server_engines(
    config: &Config,
    spec: &StageSpec,
    ui: &Ui,
) -> Result<Vec<(String, RemoteHost, Engine)>> {
    let providers = Providers::for_servers(&spec.servers, &ui.infra_progress())?;
    let observed = providers.observe_stage(&tagged(config, spec)).await?;
    let mut out = Vec::new();
    for (server, machine) in spec.servers.iter().zip(observed) {
        match machine {
            Some(m) if m.power == Power::Up => {
                let Connected { host, engine, .. } = reach(config, server, &m, ui, Reach::Observe).await?;
                out.push((server.name.clone(), host, engine));
            }
            _ => ui.note(format!("server {} is not running; its releases are not listed", server.name)),
        }
    }
    Ok(out)
}
