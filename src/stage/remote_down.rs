//! `down` of a remote stage (`down_remote_stage`): observe (servers, records, then each running
//! engine or the swarm) → `down_plan::plan` (pure) → print it (`--dry-run`) or execute it step by
//! step → report.
//! Everything `down` touches can be observed before anything changes, so it is one round.

use super::dns::Zones;
use super::down_plan::{
    self, DownIntent, DownObservation, DownPlan, DownStep, Line, NodeVolumes, SeenRecord, SeenServer,
};
use super::remote_stage::{Held, Reach, lock, reach, tag, tagged};
use super::{DownOptions, confirm_destroy, gate, print_plan, removals, server_lock, swarm_stage};
use crate::config::Config;
use crate::engine::{self, Engine, Event};
use crate::error::{Error, Result};
use crate::infra::{InfraEvent, Power, Progress, Providers};
use crate::model::{Server, ServerProvider, StageSpec};
use crate::plan::gate::PlanIntent;
use crate::plan::{Action, ChangeKind, Plan, PlanSummary};
use crate::signal;
use crate::ssh::{self, known_hosts_file};
use crate::ui::{Format, Ui};

/// One `down` run: what it works on and with.
struct Down<'a> {
    config: &'a Config,
    spec: &'a StageSpec,
    providers: &'a Providers,
    zones: Option<&'a Zones>,
    opts: &'a DownOptions,
    ui: &'a Ui,
}

/// A remote stage's `down`, `--suspend` or `--destroy`, in one round (`stage::down` checks the
/// rules every stage shares first).
pub async fn down_remote_stage(config: &Config, spec: &StageSpec, opts: &DownOptions, ui: &Ui) -> Result<Plan> {
    refuse_suspending_hosts(spec, opts)?;
    let _lock = lock(config, spec, "down", opts.dry_run, opts.lock_wait).await?;
    let providers = Providers::for_servers(&spec.servers, &ui.infra_progress())?;
    // Records go only with --destroy; down and suspend keep them (the IP survives a power-off).
    let zones = if opts.destroy { Some(Zones::connect(spec).await?) } else { None };
    let d = Down { config, spec, providers: &providers, zones: zones.as_ref(), opts, ui };
    let seen = observe_cloud(&d).await?;
    if seen.servers.iter().all(|s| s.machine.is_none()) && seen.records.is_empty() {
        return nothing_to_do(&d);
    }
    let _cleanup = signal::CleanupScope::enter();
    let mut held = Held::default();
    let result = signal::interruptible(plan_and_execute(&d, seen, &mut held)).await;
    held.release(config, spec).await;
    result
}

/// No server and no record: an empty plan, which a gate and a JSON dry run see as one.
fn nothing_to_do(d: &Down<'_>) -> Result<Plan> {
    let plan = Plan { stage: d.spec.name.clone(), ..Plan::default() };
    gate::check(d.opts.plan_gate.as_ref(), d.spec, intent(d.opts), &plan)?;
    match d.opts.format {
        Format::Json if d.opts.dry_run => print_plan(&plan, d.opts.format, d.ui),
        _ => d.ui.line(format!("Stage {} has no servers; nothing to do.", d.spec.name)),
    }
    Ok(plan)
}

fn intent(opts: &DownOptions) -> PlanIntent {
    PlanIntent::of_down(opts.suspend, opts.destroy)
}

/// A brought host is never powered off: `--suspend` is refused before anything is asked.
fn refuse_suspending_hosts(spec: &StageSpec, opts: &DownOptions) -> Result<()> {
    let Some(host) = spec.servers.iter().find(|s| matches!(s.provider, ServerProvider::Host { .. })) else {
        return Ok(());
    };
    if !opts.suspend {
        return Ok(());
    }
    Err(Error::usage_help(
        format!(
            "server {} is a host you brought (provider \"host\"): fleet does not power it off, so --suspend is refused",
            host.name
        ),
        format!("use `fleet down {}` to stop its containers", spec.name),
    ))
}

/// Observe the engines, plan, then print the plan (dry run) or execute it and report.
async fn plan_and_execute(d: &Down<'_>, mut seen: DownObservation, held: &mut Held) -> Result<Plan> {
    observe_engines(d, &mut seen, held).await?;
    let plan = down_plan::plan(d.spec, &seen, DownIntent::of(d.opts));
    let total = plan.to_plan();
    // Observed under the lock, nothing changed yet: a gated run goes on only with its own plan.
    gate::check(d.opts.plan_gate.as_ref(), d.spec, intent(d.opts), &total)?;
    if d.opts.dry_run {
        print_dry_run(d, &plan, &total);
        return Ok(total);
    }
    if d.opts.destroy && !d.opts.yes {
        let mut deletions = removals(&total);
        deletions.extend(total.infra.iter().filter(|a| a.kind() == ChangeKind::Destroy).map(crate::ui::infra_line));
        confirm_destroy(d.spec, &deletions, d.ui)?;
    }
    execute(d, &plan, &seen, held).await?;
    report(d, &plan);
    Ok(total)
}

/// The servers as the providers report them, and (for `--destroy`) the records fleet owns at
/// their names, found by ownership marker whether or not the server still exists: a destroy whose
/// DNS step failed leaves them to the next one.
async fn observe_cloud(d: &Down<'_>) -> Result<DownObservation> {
    let machines = d.providers.observe_stage(&tagged(d.config, d.spec)).await?;
    let servers = d
        .spec
        .servers
        .iter()
        .zip(machines)
        .map(|(s, machine)| SeenServer { name: s.name.clone(), machine, containers: None, proxy: None })
        .collect();
    let mut records = Vec::new();
    if let Some(zones) = d.zones {
        for server in &d.spec.servers {
            for record in zones.owned(&d.config.project, &d.spec.name, server).await? {
                records.push(SeenRecord { server: server.name.clone(), record });
            }
        }
    }
    Ok(DownObservation { servers, records, swarm: None })
}

/// Each running server reached (the first one locked, unless a dry run), then its containers, or
/// for a swarm stage the swarm as its manager reports it.
async fn observe_engines(d: &Down<'_>, seen: &mut DownObservation, held: &mut Held) -> Result<()> {
    for (i, server) in d.spec.servers.iter().enumerate() {
        let Some(m) = seen.servers.get(i).and_then(|s| s.machine.clone()).filter(|m| m.power == Power::Up) else {
            continue;
        };
        let conn = reach(d.config, server, &m, d.ui, Reach::Observe).await?;
        held.conns.push(conn);
        let conn = held.conns.last().ok_or_else(|| Error::failed("no connection was kept"))?;
        if i == 0 && !d.opts.dry_run {
            let purpose = format!("down {}", d.spec.name);
            let (project, stage) = (&d.config.project, &d.spec.name);
            server_lock::acquire(&conn.host, &server.name, project, stage, &purpose, d.opts.lock_wait).await?;
            held.locked = true;
            // The first look found the lock's server; another run (an `up` creating a server, say)
            // may have changed the stage before the lock was ours. Observed again under the lock,
            // the plan misses nothing that run did.
            *seen = observe_cloud(d).await?;
        }
        if let Some(s) = seen.servers.get_mut(i).filter(|_| !d.spec.is_swarm()) {
            let part = d.spec.for_server(server);
            s.containers = Some(conn.engine.observe(&part).await?);
            s.proxy = crate::proxy::observe(&conn.engine, &part).await?.seen();
        }
    }
    if d.spec.is_swarm() {
        seen.swarm = swarm_stage::observe_down(d.spec, &nodes(d.spec, seen, held)).await?;
        if let Some(swarm) = seen.swarm.as_mut().filter(|_| d.opts.destroy && d.opts.volumes) {
            swarm.volumes = swarm_volumes(d.spec, held).await?;
        }
    }
    Ok(())
}

/// The stage's volumes on each reached node, so that the dry run and the confirmation name every
/// one that `--destroy --volumes` removes.
async fn swarm_volumes(spec: &StageSpec, held: &Held) -> Result<Vec<NodeVolumes>> {
    let mut out = Vec::new();
    for c in &held.conns {
        let names = c.engine.volumes(spec).await?.into_iter().collect();
        out.push(NodeVolumes { server: c.server.clone(), names });
    }
    Ok(out)
}

/// The reached servers, as swarm nodes.
fn nodes<'a>(spec: &'a StageSpec, seen: &DownObservation, held: &'a Held) -> Vec<swarm_stage::Node<'a>> {
    held.conns
        .iter()
        .filter_map(|c| {
            let server = spec.servers.iter().find(|s| s.name == c.server)?;
            let seen = seen.servers.iter().find(|s| s.name == c.server)?;
            let address = seen.machine.as_ref()?.ip.clone().unwrap_or_default();
            Some(swarm_stage::Node { server, address, engine: &c.engine })
        })
        .collect()
}

/// The dry run: every step's lines in the order the run takes them, then the summary.
fn print_dry_run(d: &Down<'_>, plan: &DownPlan, total: &Plan) {
    if d.opts.format == Format::Json {
        return print_plan(total, d.opts.format, d.ui);
    }
    for line in plan.steps.iter().flat_map(DownStep::lines) {
        match line {
            Line::Action(a) => d.ui.line(crate::ui::action_line(&a)),
            Line::Infra(a) => d.ui.line(crate::ui::infra_line(&a)),
            Line::Note(n) => d.ui.note(n),
        }
    }
    d.ui.line(PlanSummary::of(total).to_string());
}

/// Runs the plan in its order, one step at a time. Container steps stay one server after another:
/// two servers of a stage may be one engine (a host named twice, the loopback test rig), and two
/// removals of one container at once fail.
async fn execute(d: &Down<'_>, plan: &DownPlan, seen: &DownObservation, held: &mut Held) -> Result<()> {
    let progress = d.ui.infra_progress();
    for s in &plan.steps {
        step(d, s, seen, held, &progress).await?;
    }
    Ok(())
}

/// One server's containers stopped or removed, as its step says.
async fn containers(d: &Down<'_>, step: &DownStep, held: &Held) -> Result<()> {
    let DownStep::Containers { server, part, observed, plan } = step else { return Ok(()) };
    let engine = engine_of(held, server)?;
    engine::apply_down(engine, part, plan, observed, d.ui.events()).await
}

/// One step, from the data it carries. Each is reported as it starts: by the engine (containers),
/// the providers (power and deletes, which know whether a power-off had to be forced), or here.
async fn step(
    d: &Down<'_>,
    step: &DownStep,
    seen: &DownObservation,
    held: &mut Held,
    progress: &Progress,
) -> Result<()> {
    let (config, spec) = (d.config, d.spec);
    match step {
        DownStep::Containers { .. } => containers(d, step, held).await,
        DownStep::Proxy { server, id, action } => {
            let part = spec.for_server(server_of(spec, server)?);
            crate::proxy::apply(engine_of(held, server)?, &part, id, action, &d.ui.events()).await
        }
        DownStep::SwarmService { manager, id, remove, action } => {
            progress(InfraEvent::Action(action.clone()));
            match remove {
                true => engine_of(held, manager)?.swarm_remove_service(id).await,
                false => swarm_stage::scale_to_zero(engine_of(held, manager)?, id).await,
            }
        }
        DownStep::SwarmTasksGone { destroy } => {
            swarm_stage::wait_tasks_gone(spec, &nodes(spec, seen, held), *destroy).await
        }
        DownStep::SwarmNetwork { manager, action } => {
            d.ui.events()(Event::Applying(action.clone()));
            swarm_stage::remove_network(engine_of(held, manager)?, spec).await
        }
        DownStep::LeaveSwarm { server, manager, action } => {
            progress(InfraEvent::Action(action.clone()));
            engine_of(held, server)?.swarm_leave(*manager).await
        }
        DownStep::SwarmVolumes { server, names } => {
            let engine = engine_of(held, server)?;
            for name in names {
                d.ui.events()(Event::Applying(Action::RemoveVolume { name: name.clone() }));
                engine.remove_volume(name).await?;
            }
            Ok(())
        }
        DownStep::ReleaseLock => {
            std::mem::take(held).release(config, spec).await;
            Ok(())
        }
        // The provider reports the power-off (and a forced one) as it happens.
        DownStep::PowerOff { server, .. } => {
            let server = server_of(spec, server)?;
            let found = d.providers.power_off(server, &tag(config, spec, server), progress).await?;
            found.map(drop).ok_or_else(|| vanished(spec, server, "powered off"))
        }
        DownStep::DeleteServer { server, ip, .. } => {
            let server = server_of(spec, server)?;
            let found = d.providers.destroy(server, &tag(config, spec, server), progress).await?;
            // The delete is confirmed (or someone else's was): the IP is someone else's next, so
            // its key goes now.
            if let Some(ip) = ip {
                ssh::forget_host(&known_hosts_file(&config.project), ip, server.ssh.port);
            }
            found.map(drop).ok_or_else(|| vanished(spec, server, "deleted"))
        }
        DownStep::KeepHost { .. } => {
            step.lines().into_iter().for_each(|l| {
                if let Line::Note(n) = l {
                    d.ui.note(n)
                }
            });
            Ok(())
        }
        DownStep::DeleteRecords { server, records } => {
            let zones = d.zones.ok_or_else(|| Error::failed("records to delete, and no DNS zone is connected"))?;
            zones.delete(&config.project, &spec.name, server_of(spec, server)?, records, progress).await
        }
    }
}

/// A server the plan found is gone when its step runs: deleted by someone else meanwhile. The
/// run stops there rather than report a power-off or delete it did not do.
fn vanished(spec: &StageSpec, server: &Server, verb: &str) -> Error {
    Error::failed_help(
        format!(
            "server {}: it existed when `down` planned, and no longer exists now, so fleet {verb} nothing \
             (deleted by someone else meanwhile?); the steps after it were not run",
            server.name
        ),
        format!("look at the stage with `fleet status {}`, then run `fleet down` again", spec.name),
    )
}

fn engine_of<'a>(held: &'a Held, server: &str) -> Result<&'a Engine> {
    held.conns
        .iter()
        .find(|c| c.server == server)
        .map(|c| &c.engine)
        .ok_or_else(|| Error::failed(format!("server {server}: its engine is not connected")))
}

fn server_of<'a>(spec: &'a StageSpec, name: &str) -> Result<&'a Server> {
    spec.servers
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::failed(format!("stage {}: no server {name}", spec.name)))
}

/// The closing line: what the stage is now, as fields `ui` renders.
fn report(d: &Down<'_>, plan: &DownPlan) {
    d.ui.down_done(&d.spec.name, &plan.outcome());
}
