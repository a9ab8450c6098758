//! `up` of a remote stage, in two rounds, each observe → plan (pure) → apply → report:
//! 1. infra: the servers as the providers report them (one request per zone) → `infra_plan` →
//!    each created, powered on or adopted, the first one reached and locked before any other is
//!    created or booted;
//! 2. workload, once the servers run: each engine (and this run's builds) → `up_plan` (containers,
//!    image copies, proxy steps, idle timers) → applied on every server at once over one readiness
//!    board; then the stage's records, decided whole before any is written.
//!
//! The dry run prints the `UpPlan` these rounds plan; the run executes that value, and reports the
//! steps it really took. A gated run (`mcp apply`) first plans as its dry run and checks the hash.

use super::auto_suspend;
use super::dns::{Zones, blocked_error};
use super::down_plan::Line;
use super::infra_plan::{self, ServerPlan, ServerStep};
use super::remote_stage::{self, Connected, Held, Reach, lock, reach, tag, tagged};
use super::up_plan::{self, ContainerIntent, SeenEngine, SeenPart, ServerWork, UpPlan, Workload};
use super::{UpOptions, gate, print_plan, proxy_stage, report_up, server_lock, ship, swarm_stage};
use crate::config::Config;
use crate::engine::{self, Readiness};
use crate::error::{Error, Result};
use crate::infra::{InfraEvent, Machine, Power, Progress, Providers};
use crate::model::{Server, ServerProvider, StageSpec};
use crate::plan::gate::PlanIntent;
use crate::plan::{Monthly, Plan, PlanSummary, ServerCost};
use crate::signal;
use crate::ssh::{self, known_hosts_file};
use crate::ui::{Format, Ui};

/// One `up` run: what it works on and with.
struct Up<'a> {
    config: &'a Config,
    spec: &'a StageSpec,
    providers: &'a Providers,
    zones: &'a Zones,
    opts: &'a UpOptions,
    ui: &'a Ui,
    progress: Progress,
    /// A dry run reads the price list for the servers it creates (not the gate's own pass).
    prices: bool,
}

impl Up<'_> {
    fn reach_mode(&self) -> Reach {
        if self.opts.dry_run { Reach::Plan } else { Reach::Converge }
    }

    /// Lines go to the terminal in a text dry run only; a run reports each step as it takes it.
    fn shows(&self) -> bool {
        self.opts.dry_run && self.opts.format == Format::Text
    }
}

/// A remote stage's `up`: both rounds under the locks, then the dry run's summary or the run's
/// closing line, from the one plan value.
pub async fn up_remote_stage(config: &Config, spec: &StageSpec, opts: &UpOptions, ui: &Ui) -> Result<Plan> {
    let _lock = lock(config, spec, "up", opts.dry_run, opts.lock_wait).await?;
    let providers = Providers::for_servers(&spec.servers, &ui.infra_progress())?;
    let zones = Zones::connect(spec).await?;
    let progress = ui.infra_progress();
    let u = Up { config, spec, providers: &providers, zones: &zones, opts, ui, progress, prices: true };
    // From here a lock on the first server may be held: Ctrl-C ends the work, then it is released.
    let _cleanup = signal::CleanupScope::enter();
    // Builds run on this machine while servers are created and booted; awaited before containers.
    let mut held = Held { builds: ship::PendingBuilds::start(spec, opts.dry_run, ui).await?, ..Held::default() };
    let result = signal::interruptible(rounds(&u, &mut held)).await;
    held.release(config, spec).await;
    let plan = result?;
    let total = plan.to_plan();
    match (opts.dry_run, opts.format) {
        (true, Format::Json) => print_plan(&total, opts.format, ui),
        (true, Format::Text) if total.is_empty() => {
            ui.line(format!("Stage {} is up to date; nothing to do.", spec.name))
        }
        (true, Format::Text) => ui.line(PlanSummary::of(&total).to_string()),
        // The run's plan holds the steps it really took (a server another run created meanwhile).
        (false, _) => report_up(spec, &total, ui),
    }
    Ok(total)
}

/// Both rounds; the plan that comes back is what was printed (dry run) or done (run).
async fn rounds(u: &Up<'_>, held: &mut Held) -> Result<UpPlan> {
    let (mut plan, machines, gated) = infra_round(u, held).await?;
    workload_round(u, &mut plan, &machines, held, gated.as_ref()).await?;
    records(u, &mut plan, &machines, gated.as_ref()).await?;
    Ok(plan)
}

/// Round 1. Observe: the stage's servers, one request per zone (a converged `up` makes no other
/// cloud request). Plan: `infra_plan`. Apply (not a dry run): one server at a time, since power
/// calls go one at a time. Returns the machines as they are now, one per server in file order.
/// A gated run also returns the plan its gate passed, which round 2 is held to.
async fn infra_round(u: &Up<'_>, held: &mut Held) -> Result<(UpPlan, Vec<Option<Machine>>, Option<UpPlan>)> {
    let found = u.providers.observe_stage(&tagged(u.config, u.spec)).await?;
    let infra = infra_plan::plan_servers(u.spec, &found);
    let mut plan = UpPlan { stage: u.spec.name.clone(), infra, ..UpPlan::default() };
    if u.opts.dry_run {
        print_infra(u, &mut plan).await;
        return Ok((plan, found, None));
    }
    let gated = check_gate(u, &plan.infra, held).await?;
    let machines = apply_infra(u, &mut plan.infra, held).await?;
    Ok((plan, machines, gated))
}

/// A gated run (`mcp apply`) goes on only if the stage, before any server changes, plans as the
/// dry run whose hash it was given: the first server, when it runs, is locked first; then the dry
/// run's own rounds observe and plan the whole stage (what a round 2 cannot see before round 1
/// runs is planned as the dry run plans it), and that plan value is held to the hash. It is
/// returned: round 2 plans again, and is held to it (`hold_to_gate`) before it changes anything.
async fn check_gate(u: &Up<'_>, infra: &[ServerPlan], held: &mut Held) -> Result<Option<UpPlan>> {
    let Some(gate) = u.opts.plan_gate.as_ref() else { return Ok(None) };
    let first = infra.iter().find(|s| s.index == 0).and_then(|s| s.found.as_ref());
    if let Some(m) = first.filter(|m| m.power == Power::Up) {
        // Reached as its dry run reaches it: an engine that does not answer fails the run
        // before its gate, never installed (an install is no step of any plan).
        reach_first(u, m, held, Reach::Plan).await?;
    }
    let opts = UpOptions { dry_run: true, format: Format::Json, plan_gate: None, ..u.opts.clone() };
    // Its notes were said by the run already; the plan is all this pass is for.
    let quiet = Ui { quiet: true, verbose: false };
    let dry = Up { opts: &opts, ui: &quiet, progress: quiet.infra_progress(), prices: false, ..*u };
    let mut dry_held = Held::default();
    let planned = Box::pin(rounds(&dry, &mut dry_held)).await;
    dry_held.release(u.config, u.spec).await;
    let planned = planned?;
    gate::check(Some(gate), u.spec, PlanIntent::Up, &planned.to_plan())?;
    Ok(Some(planned))
}

/// A gated run's round 2, planned again on what the engines hold now: refused unless, on every
/// server the gate's pass reached, it is the plan that was hashed (`up_plan::held_to`). Nothing
/// of round 2 has changed yet (the planned image copies aside).
/// Round 1 ran by then (`done`): the refusal says which of its steps stay taken.
fn hold_to_gate(u: &Up<'_>, gated: Option<&UpPlan>, now: &Workload, done: &[ServerPlan]) -> Result<()> {
    let (Some(gate), Some(gated)) = (u.opts.plan_gate.as_ref(), gated) else { return Ok(()) };
    let held = gate::check(Some(gate), u.spec, PlanIntent::Up, &up_plan::held_to(gated, now).to_plan());
    if held.is_err() {
        for action in done.iter().flat_map(|s| &s.actions) {
            u.ui.warn(format!(
                "round 1 of this up ran before its containers were refused: {}",
                crate::ui::infra_line(action).trim()
            ));
        }
    }
    held
}

/// The dry run of round 1: which machine each server adopts, its steps, and what a new one costs
/// (into the plan, `UpPlan::costs`, and its line from there).
async fn print_infra(u: &Up<'_>, plan: &mut UpPlan) {
    for step in &plan.infra {
        let server = &u.spec.servers[step.index];
        if let Some(m) = &step.found {
            note_adoption(u, server, m);
        }
        let cost = match (step.step == ServerStep::Create && u.prices).then_some(server) {
            Some(server) => cost_of(u, server).await,
            None => None,
        };
        if u.shows() {
            step.actions.iter().for_each(|a| u.ui.line(crate::ui::infra_line(a)));
            cost.iter().for_each(|c| u.ui.line(crate::ui::cost_line(c)));
        }
        plan.costs.extend(cost);
    }
}

/// What a server to be created adds to the bill (list prices; read when a dry run plans it).
async fn cost_of(u: &Up<'_>, server: &Server) -> Option<ServerCost> {
    let monthly = match u.providers.costs(&[(server, None)]).await.pop().flatten()? {
        Ok(c) => Monthly::Known { running_yen: c.running, suspended_yen: c.suspended },
        Err(e) => Monthly::Unknown { error: e.to_string() },
    };
    Some(ServerCost { server: server.name.clone(), monthly })
}

/// Adoption is by tag: a plan says which existing machine `up` would use, so a wrong match shows.
fn note_adoption(u: &Up<'_>, server: &Server, m: &Machine) {
    if matches!(server.provider, ServerProvider::SakuraCloud { .. }) {
        u.ui.note(format!(
            "server {}: uses existing server {} (tag {}, created {})",
            server.name,
            m.id.as_deref().unwrap_or("?"),
            tag(u.config, u.spec, server),
            m.created.as_deref().unwrap_or("at an unknown time")
        ));
    }
}

/// Round 1 applied, step by step in the plan's order; each step's `actions` become what the
/// provider really did. The first server is reached and locked as soon as it runs.
async fn apply_infra(u: &Up<'_>, infra: &mut [ServerPlan], held: &mut Held) -> Result<Vec<Option<Machine>>> {
    let mut machines = vec![None; u.spec.servers.len()];
    for step in infra.iter_mut() {
        let server = &u.spec.servers[step.index];
        let machine = match step.calls_provider() {
            true => {
                let ensured = u.providers.ensure_up(server, &tag(u.config, u.spec, server), &u.progress).await?;
                step.actions = ensured.done;
                Some(ensured.machine)
            }
            false => step.found.clone(),
        };
        if let Some(m) = machine.as_ref().filter(|m| m.power == Power::Up) {
            // Cloud IPs are reused: a key recorded for this address belonged to an earlier machine.
            if let (true, Some(ip)) = (m.new_this_run, &m.ip) {
                ssh::forget_host(&known_hosts_file(&u.config.project), ip, server.ssh.port);
            }
            // (A gated run reached it already, to check the gate under its lock.)
            if step.index == 0 && held.conn(&server.name).is_none() {
                reach_first(u, m, held, u.reach_mode()).await?;
            }
        }
        machines[step.index] = machine;
    }
    Ok(machines)
}

/// The first server, reached; a run takes the stage lock on it as soon as SSH answers, while
/// the engine's socket is forwarded and its API version negotiated (reads: nothing is planned or
/// changed before the lock is held). `mode`: a gated run reaches it as its dry run does.
async fn reach_first(u: &Up<'_>, machine: &Machine, held: &mut Held, mode: Reach) -> Result<()> {
    let server = &u.spec.servers[0];
    let name = server_lock::lock_name(&u.config.project, &u.spec.name);
    if !u.opts.dry_run {
        let mut host = remote_stage::connect(u.config, server, machine, mode).await?;
        let (locked, answered) = tokio::join!(take_lock(u, &host), host.api_answers());
        if let Ok(true) = answered {
            if let Err(e) = locked {
                host.close().await;
                return Err(e);
            }
            // The engine answered: its handle is at hand, so the lock is in `held` at once.
            match remote_stage::reach_engine(u.config, server, machine, u.ui, mode, &mut host).await {
                Ok(engine) => {
                    held.conns.push(Connected { server: server.name.clone(), host, engine });
                    held.locked = true;
                    return Ok(());
                }
                Err(e) => {
                    let _ = host.unlock(&name).await;
                    host.close().await;
                    return Err(e);
                }
            }
        }
        // No engine answered: it may take an install (minutes), which an interrupt may cut
        // short before `held` records the lock, so the lock (when taken) is given back and taken
        // after it; what keeps the engine from answering is said first, as it was before.
        if locked.is_ok() {
            let _ = host.unlock(&name).await;
        }
        host.close().await;
        answered?;
    }
    held.conns.push(reach(u.config, server, machine, u.ui, mode).await?);
    if u.opts.dry_run {
        return Ok(());
    }
    take_lock(u, &held.conns[held.conns.len() - 1].host).await?;
    held.locked = true;
    Ok(())
}

/// The stage lock, on the first server.
async fn take_lock(u: &Up<'_>, host: &ssh::RemoteHost) -> Result<()> {
    let (server, purpose) = (&u.spec.servers[0].name, format!("up {}", u.spec.name));
    server_lock::acquire(host, server, &u.config.project, &u.spec.name, &purpose, u.opts.lock_wait).await
}

/// The other running servers, reached together (each may wait out a boot and an engine
/// bootstrap); every reach runs to its end, then the first failure is returned.
async fn reach_rest(u: &Up<'_>, infra: &[ServerPlan], machines: &[Option<Machine>], held: &mut Held) -> Result<()> {
    let running = |i: usize| machines[i].as_ref().filter(|m| m.power == Power::Up);
    let todo: Vec<usize> = infra.iter().map(|s| s.index).filter(|&i| i != 0 && running(i).is_some()).collect();
    let reached = futures_util::future::join_all(
        todo.iter().filter_map(|&i| Some(reach(u.config, &u.spec.servers[i], running(i)?, u.ui, u.reach_mode()))),
    )
    .await;
    let mut first_error = None;
    for result in reached {
        match result {
            Ok(conn) => held.conns.push(conn),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Round 2 (containers or the swarm), once round 1's servers run.
async fn workload_round(
    u: &Up<'_>,
    plan: &mut UpPlan,
    machines: &[Option<Machine>],
    held: &mut Held,
    gated: Option<&UpPlan>,
) -> Result<()> {
    // A run reached the first server in round 1, to lock it; a dry run reaches it now.
    if let (true, Some(Some(m))) = (u.opts.dry_run, machines.first())
        && m.power == Power::Up
    {
        reach_first(u, m, held, u.reach_mode()).await?;
    }
    // A converged swarm is seen whole from its manager: the other nodes are not reached.
    let swarm_converged = u.spec.is_swarm() && swarm_converged_here(u, plan, machines, held).await?;
    if !swarm_converged {
        reach_rest(u, &plan.infra, machines, held).await?;
    }
    // A failed build stops the run here: no container on any server has been touched.
    if let Some(builds) = held.builds.take() {
        builds.wait().await?;
    }
    match (u.spec.is_swarm(), swarm_converged) {
        // Nothing to plan on the swarm: its manager showed it as the file declares it.
        (true, true) => {
            plan.workload = Workload::Swarm(Plan::default());
            hold_to_gate(u, gated, &plan.workload, &plan.infra)?;
        }
        (true, false) => plan.workload = Workload::Swarm(converge_swarm(u, machines, held, gated, &plan.infra).await?),
        (false, _) => container_workload(u, plan, machines, held, gated).await?,
    }
    if !u.opts.dry_run {
        for conn in &held.conns {
            ship::prune(&conn.engine, u.spec, u.ui).await?;
        }
    }
    Ok(())
}

/// Round 2 of a container stage: every engine observed → `up_plan::plan_workload` → printed, or
/// applied (containers on every server at once, then the idle timers, whose ports they watch).
async fn container_workload(
    u: &Up<'_>,
    plan: &mut UpPlan,
    machines: &[Option<Machine>],
    held: &Held,
    gated: Option<&UpPlan>,
) -> Result<()> {
    let parts = observe_parts(u, machines, held).await?;
    let intent = ContainerIntent { remove_orphans: u.opts.remove_orphans, force_recreate: u.opts.force_recreate };
    plan.workload = up_plan::plan_workload(u.spec, parts, intent);
    plan.container_plans().into_iter().for_each(|p| u.ui.orphan_warnings(p));
    if u.opts.dry_run {
        print_lines(u, plan.workload_lines());
        return Ok(());
    }
    hold_to_gate(u, gated, &plan.workload, &plan.infra)?;
    let Workload::Containers { servers, idle } = &plan.workload else { return Ok(()) };
    apply_containers(u, servers, held).await?;
    for step in idle {
        let (Some(change), Some(conn)) = (&step.change, held.conn(&step.server)) else {
            return Err(not_reached(&step.server));
        };
        let check_every = u.spec.auto_suspend.map_or(0, |a| a.check_every_secs());
        auto_suspend::apply(&conn.engine, change, check_every, &u.ui.events()).await?;
        (u.progress)(InfraEvent::Action(step.action.clone()));
    }
    Ok(())
}

/// Each server's part of the stage and what its engine holds, every server at once. A server
/// not reached is new or off (a dry run: round 1 did not create or boot it).
async fn observe_parts(u: &Up<'_>, machines: &[Option<Machine>], held: &Held) -> Result<Vec<(StageSpec, SeenPart)>> {
    let jobs = u.spec.servers.iter().zip(machines).map(|(server, machine)| {
        let part = up_plan::part_of(u.spec, server, machines);
        let conn = held.conn(&server.name);
        async move {
            let seen = match (conn, machine) {
                (Some(conn), _) => SeenPart::Reached(Box::new(observe_engine(u, conn, &part).await?)),
                (None, None) => SeenPart::New,
                (None, Some(_)) => SeenPart::Off,
            };
            Ok::<_, Error>((part, seen))
        }
    });
    futures_util::future::join_all(jobs).await.into_iter().collect()
}

/// One engine, for the workload plan: containers, images, the proxy and the idle timer.
async fn observe_engine(u: &Up<'_>, conn: &Connected, part: &StageSpec) -> Result<SeenEngine> {
    // Two containers an interrupted replacement left of a routed service, found in the same
    // container list: a run removes the one that does not serve; a dry run plans as if it were gone.
    let super::UpView { observed, resolved, side, leftovers } =
        super::observe_up(&conn.engine, part, u.opts, u.ui, true).await?;
    if !u.opts.dry_run {
        crate::proxy::remove_leftovers(&conn.engine, &leftovers, &u.ui.events()).await?;
    }
    let proxy = crate::proxy::observe_beside(&conn.engine, &side).await;
    let idle = conn.host.auto_suspend_view().await?;
    if let Some(line) = auto_suspend::suspended_itself(&idle) {
        u.ui.note(format!("server {} had suspended itself: {line}", conn.server));
    }
    Ok(SeenEngine { observed, images: resolved.ids, copies: resolved.copies, proxy, idle, leftovers })
}

/// Every server's containers at once, over one readiness board so the dependency graph spans
/// servers. Every server runs to its end (a failure on one does not cut another off mid-change).
async fn apply_containers(u: &Up<'_>, servers: &[ServerWork], held: &Held) -> Result<()> {
    let readiness = Readiness::for_stage(u.spec);
    let jobs = servers.iter().map(|work| {
        let readiness = &readiness;
        async move {
            let result = apply_part(u, work, held, readiness).await;
            // A server whose converge stopped early must not leave dependents elsewhere waiting.
            let on = u.spec.servers.iter().find(|s| s.name == work.server());
            readiness.fail_unset(on.into_iter().flat_map(|s| u.spec.services_on(s)).map(|s| s.name.as_str()));
            result
        }
    });
    let results = futures_util::future::join_all(jobs).await;
    results.into_iter().collect()
}

/// One server's container plan, on the containers and proxy observed when it was made.
async fn apply_part(u: &Up<'_>, work: &ServerWork, held: &Held, readiness: &Readiness) -> Result<()> {
    let ServerWork::Reached { server, part, seen, plan } = work else { return Err(not_reached(work.server())) };
    let conn = held.conn(server).ok_or_else(|| not_reached(server))?;
    let engine = &conn.engine;
    // A volume whose restore was interrupted is incomplete: nothing starts on it.
    crate::ops::refuse_interrupted_restore(engine, part).await?;
    let proxy = proxy_stage::handle(engine, part, seen.proxy.clone(), &seen.observed);
    proxy_stage::retire(engine, part, &proxy, &u.ui.events()).await?;
    // Even with nothing to do here, kept services must say they are ready to other servers.
    let events = u.ui.events();
    engine::apply_up_with_proxy(engine, part, plan, &seen.observed, &seen.images, readiness, events, proxy.serve).await
}

/// A step the run cannot take: round 1 left its server unreached (it never should).
fn not_reached(server: &str) -> Error {
    Error::failed(format!("server {server}: its engine was not reached, so its containers were not converged"))
}

/// The swarm layer, through its own observe-plan-apply pass (it prints its steps in a dry run).
async fn converge_swarm(
    u: &Up<'_>,
    machines: &[Option<Machine>],
    held: &Held,
    gated: Option<&UpPlan>,
    done: &[ServerPlan],
) -> Result<Plan> {
    let nodes = swarm_nodes(u.spec, machines, held);
    let unreached: Vec<&Server> = u.spec.servers.iter().filter(|s| held.conn(&s.name).is_none()).collect();
    // A gated run's swarm plan is held to the gated one before its executor runs.
    let hold = |now: &Plan| hold_to_gate(u, gated, &Workload::Swarm(now.clone()), done);
    swarm_stage::converge(u.spec, &nodes, &unreached, u.opts, &u.progress, u.ui, &hold).await
}

/// The first server answered and every other one runs with nothing done to it in round 1: when
/// the first is the swarm's manager and reports the swarm converged, `up` needs no other node.
async fn swarm_converged_here(u: &Up<'_>, plan: &UpPlan, machines: &[Option<Machine>], held: &Held) -> Result<bool> {
    let all_up = machines.iter().all(|m| m.as_ref().is_some_and(|m| m.power == Power::Up && m.duplicates == 0));
    let quiet = plan.infra.iter().all(|s| s.actions.is_empty());
    let first = &u.spec.servers[0];
    let (Some(conn), Some(Some(machine))) = (held.conn(&first.name), machines.first()) else { return Ok(false) };
    if !all_up || !quiet {
        return Ok(false);
    }
    let node =
        swarm_stage::Node { server: first, address: machine.ip.clone().unwrap_or_default(), engine: &conn.engine };
    super::swarm_converged::is_converged(u.spec, &node, u.opts).await
}

/// The reached servers of a swarm stage, as nodes for the swarm layer.
fn swarm_nodes<'a>(spec: &'a StageSpec, machines: &[Option<Machine>], held: &'a Held) -> Vec<swarm_stage::Node<'a>> {
    spec.servers
        .iter()
        .zip(machines)
        .filter_map(|(server, machine)| {
            let address = machine.as_ref()?.ip.clone()?;
            Some(swarm_stage::Node { server, address, engine: &held.conn(&server.name)?.engine })
        })
        .collect()
}

/// The records, last in round 2: observed at every placed server's names, decided whole
/// (`up_plan::plan_records`), then printed, or written zone by zone; one blocked by a record
/// fleet does not own fails `up` with nothing written, and so do records a gated run finds
/// other than the plan its gate passed (`up_plan::records_held_to`).
async fn records(u: &Up<'_>, plan: &mut UpPlan, machines: &[Option<Machine>], gated: Option<&UpPlan>) -> Result<()> {
    let placed: Vec<(&Server, &str)> =
        u.spec.servers.iter().zip(machines).filter_map(|(s, m)| Some((s, m.as_ref()?.ip.as_deref()?))).collect();
    let seen = u.zones.observe(&u.config.project, &u.spec.name, &placed).await?;
    plan.records = up_plan::plan_records(&u.config.project, u.spec, machines, &seen);
    if !u.opts.dry_run {
        if let Some(gated) = gated {
            up_plan::records_held_to(&gated.records, u.spec, machines, &plan.records).map_err(|moved| {
                Error::failed_help(
                    moved.to_string(),
                    format!(
                        "plan again (`fleet up {} --dry-run`, or mcp's plan) and run the new plan; \
                         the servers and containers this run converged stay as they are",
                        u.spec.name
                    ),
                )
            })?;
        }
        blocked_error(&plan.records.plan.blocked)?;
        return u.zones.apply(&plan.records.plan, &u.progress).await;
    }
    plan.records.plan.blocked.iter().for_each(|b| u.ui.warn(b));
    print_lines(u, plan.record_actions().into_iter().map(Line::Infra).collect());
    Ok(())
}

/// A dry run's lines: steps in a text dry run only, notes always (they go to stderr).
fn print_lines(u: &Up<'_>, lines: Vec<Line>) {
    for line in lines {
        match line {
            Line::Action(a) if u.shows() => u.ui.line(crate::ui::action_line(&a)),
            Line::Infra(a) if u.shows() => u.ui.line(crate::ui::infra_line(&a)),
            Line::Note(n) => u.ui.note(n),
            Line::Action(_) | Line::Infra(_) => {}
        }
    }
}
