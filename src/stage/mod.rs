//! The stage orchestrator: `up`, `down`, `status`, `ps`, `logs` composed from the layers.
//! Local stages run here; a remote stage goes to `remote_up::up_remote_stage`,
//! `remote_down::down_remote_stage` and `remote_status::gather`, which add servers and SSH around
//! the same steps (`remote_stage.rs` holds what they share).

mod auto_suspend;
mod dns;
mod down_plan;
pub(crate) mod gate;
mod infra_plan;
#[cfg(test)]
mod plan_fixtures;
mod proxy_stage;
mod remote_down;
mod remote_stage;
mod remote_status;
mod remote_up;
mod server_lock;
pub mod ship;
mod swarm_converged;
mod swarm_plan;
mod swarm_stage;
mod up_plan;

pub(crate) use remote_stage::reach_servers;
/// `ops` (backup, restore, restart) take the same lock on the first server as `up` and `down`.
pub(crate) use server_lock::{acquire as acquire_server_lock, lock_name as server_lock_name};

use crate::config::Config;
use crate::engine::{self, Engine, LogOptions, PullPolicy};
use crate::error::{Error, Result};
use crate::local_lock::StageLock;
use crate::model::StageSpec;
use crate::plan::gate::{PlanGate, PlanIntent};
use crate::plan::{self, Action, ConfigHash, Desired, DownMode, Plan, PlanSummary};
use crate::report::{PsReport, PsRow, ServerStatus, ServiceState, ServiceStatus, StageState, StatusReport};
use crate::ui::{self, Format, Ui};
use futures_util::StreamExt;
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub pull: PullPolicy,
    pub dry_run: bool,
    pub remove_orphans: bool,
    pub force_recreate: bool,
    pub format: Format,
    pub lock_wait: Option<Duration>,
    /// Run only the plan with this hash (`fleet mcp` apply): checked by `gate::check` once the
    /// stage is observed under its lock, before anything changes.
    pub plan_gate: Option<PlanGate>,
}

#[derive(Debug, Clone)]
pub struct DownOptions {
    pub suspend: bool,
    pub destroy: bool,
    pub volumes: bool,
    pub yes: bool,
    pub dry_run: bool,
    pub format: Format,
    pub lock_wait: Option<Duration>,
    /// `--destroy --backup FILE`: the volumes are backed up and verified before anything is destroyed.
    pub backup: Option<std::path::PathBuf>,
    /// As `UpOptions::plan_gate`, for `down`, `--suspend` and `--destroy`.
    pub plan_gate: Option<PlanGate>,
}

/// `fleet stage unlock`: a local stage's OS lock cannot be left behind; a remote one can.
pub async fn unlock(config: &Config, spec: &StageSpec, ui: &Ui) -> Result<()> {
    if spec.is_local() {
        ui.line(format!(
            "Stage {} is local: its lock is an OS file lock, released when its holder exits; nothing to unlock.",
            spec.name
        ));
        return Ok(());
    }
    remote_stage::unlock(config, spec, ui).await
}

/// Takes the stage lock (not for a dry run, which changes nothing) and connects to the engine.
async fn lock_and_connect(
    config: &Config,
    spec: &StageSpec,
    verb: &str,
    dry_run: bool,
    lock_wait: Option<Duration>,
) -> Result<(Option<StageLock>, Engine)> {
    let purpose = format!("{verb} {}", spec.name);
    let lock = match dry_run {
        true => None,
        false => Some(StageLock::acquire(&config.project, &spec.name, &purpose, lock_wait).await?),
    };
    Ok((lock, Engine::connect_local().await?))
}

/// One engine's part of a stage, observed and planned by `observe_and_plan_up` (the proxy's
/// steps aside).
pub struct PlannedStage {
    pub plan: Plan,
    pub observed: plan::ObservedStage,
    pub images: std::collections::BTreeMap<String, String>,
    /// The stage's other containers (proxy, restore markers), from the same container list.
    pub side: Vec<engine::SideContainer>,
}

/// Observes one engine's part of a stage and plans its `up` with the pure `plan::plan_up`; with
/// `tidy`, as if the leftovers of routed services were gone (`observe_up`), so the dry run and
/// the run plan the same stage (`run`'s dependencies plan without: it tidies nothing). No
/// container changes; a run pulls or copies the images the
/// engine lacks (so the ids are final), a dry run lists those copies.
pub async fn observe_and_plan_up(
    engine: &Engine,
    spec: &StageSpec,
    opts: &UpOptions,
    ui: &Ui,
    tidy: bool,
) -> Result<PlannedStage> {
    let UpView { observed, resolved, side, leftovers } = observe_up(engine, spec, opts, ui, tidy).await?;
    let images = resolved.ids;
    let mut plan = plan::plan_up(spec, &desired(spec, &images), &observed, opts.remove_orphans, opts.force_recreate);
    plan.leftovers = leftovers;
    // Only a remote part of a stage has an image source; its spec names its one server.
    if let Some(server) = spec.servers.first() {
        plan.infra.extend(resolved.copies.into_iter().map(|c| plan::InfraAction::CopyImage {
            server: server.name.clone(),
            image: c.image,
            bytes: c.bytes,
            pull_first: c.pull_first,
        }));
    }
    Ok(PlannedStage { plan, observed, images, side })
}

/// Each service with the hash its container must carry, given the image ids the engine resolved.
pub(crate) fn desired<'a>(
    spec: &'a StageSpec,
    images: &std::collections::BTreeMap<String, String>,
) -> Vec<Desired<'a>> {
    spec.services
        .iter()
        .map(|s| Desired { service: s, hash: ConfigHash::of(s, images.get(&s.image).map_or("", String::as_str)) })
        .collect()
}

/// What `up` plans against on one engine (`observe_up`): one container list for all of it.
pub(crate) struct UpView {
    pub observed: plan::ObservedStage,
    pub resolved: engine::ResolvedImages,
    /// The stage's other containers (proxy, restore markers), from the same container list.
    pub side: Vec<engine::SideContainer>,
    /// Containers an interrupted replacement left of routed services, taken out of `observed`:
    /// the run removes them after its gate.
    pub leftovers: Vec<plan::Leftover>,
}

/// What `up` plans against on one engine: its containers, networks and volumes, and the image
/// each service runs (a run pulls or copies what is missing first, so the ids are final; a dry
/// run lists the copies it would make). With `tidy`, the leftovers of routed services are found
/// in the same container list (`proxy::leftovers`; a dry run warns of them) and taken out of the
/// observation. I/O only.
pub(crate) async fn observe_up(
    engine: &Engine,
    spec: &StageSpec,
    opts: &UpOptions,
    ui: &Ui,
    tidy: bool,
) -> Result<UpView> {
    let events = ui.events();
    // One container list serves the services, the leftovers, the proxy and the restore markers.
    let (resolved, view) = futures_util::try_join!(
        engine.resolve_images(spec, opts.pull, opts.dry_run, &events),
        engine.observe_with_side(spec)
    )?;
    let leftovers = match tidy {
        true => proxy_stage::leftovers(engine, spec, &view, opts.dry_run, &events).await,
        false => Vec::new(),
    };
    let engine::StageView { mut observed, side } = view;
    observed.containers.retain(|c| !leftovers.iter().any(|l| l.id == c.id));
    let desired = desired(spec, &resolved.ids);
    // Only a container whose environment changed is inspected, so the reason can name the variable.
    let env_changed: Vec<usize> = observed
        .containers
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            desired.iter().any(|d| {
                d.service.name == c.service && c.field_hashes.get("environment") != d.hash.fields.get("environment")
            })
        })
        .map(|(i, _)| i)
        .collect();
    for i in env_changed {
        engine.fill_environment(&mut observed.containers[i]).await?;
    }
    ui.detail(format!(
        "{}: {} container(s), network {}, {} volume(s) observed for stage {}",
        engine.endpoint,
        observed.containers.len(),
        if observed.network_exists { "present" } else { "missing" },
        observed.volumes.len(),
        spec.name
    ));
    Ok(UpView { observed, resolved, side, leftovers })
}

pub async fn up(config: &Config, spec: &StageSpec, opts: &UpOptions, ui: &Ui) -> Result<Plan> {
    if !spec.is_local() {
        // The plan gate is checked in round 1, before any server changes.
        return remote_up::up_remote_stage(config, spec, opts, ui).await;
    }
    let (_lock, engine) = lock_and_connect(config, spec, "up", opts.dry_run, opts.lock_wait).await?;
    if let Some(builds) = ship::PendingBuilds::start(spec, opts.dry_run, ui).await? {
        builds.wait().await?;
    }
    let planned = observe_and_plan_on(&engine, spec, opts, ui).await?;
    gate::check(opts.plan_gate.as_ref(), spec, PlanIntent::Up, &planned.plan)?;
    let plan = apply_on(&engine, spec, opts, ui, &engine::Readiness::for_stage(spec), planned).await?;
    if !opts.dry_run {
        ship::prune(&engine, spec, ui).await?;
    }
    if opts.dry_run {
        print_plan(&plan, opts.format, ui);
    } else {
        report_up(spec, &plan, ui);
    }
    Ok(plan)
}

/// One engine's part of an `up`, planned: the plan and what its apply needs. Planning and
/// applying are apart so a gate (`gate::check`) can stand between them.
pub(crate) struct PlannedUp {
    pub(crate) plan: Plan,
    pub(crate) observed: plan::ObservedStage,
    pub(crate) images: std::collections::BTreeMap<String, String>,
    pub(crate) proxy: proxy_stage::ProxyUp,
    /// The stage's other containers (proxy, restore markers), from the same container list.
    pub(crate) side: Vec<engine::SideContainer>,
}

/// Observes one engine's part of a stage and plans it, proxy steps included. Changes nothing,
/// so a gate between this and `apply_on` sees the stage as it was.
pub(crate) async fn observe_and_plan_on(
    engine: &Engine,
    spec: &StageSpec,
    opts: &UpOptions,
    ui: &Ui,
) -> Result<PlannedUp> {
    let PlannedStage { mut plan, observed, images, side } = observe_and_plan_up(engine, spec, opts, ui, true).await?;
    let proxy = proxy_stage::observe_and_plan_proxy_up(engine, spec, &mut plan, &observed, &side).await?;
    ui.orphan_warnings(&plan);
    Ok(PlannedUp { plan, observed, images, proxy, side })
}

/// Applies a planned part (unless a dry run) and returns its plan.
async fn apply_on(
    engine: &Engine,
    spec: &StageSpec,
    opts: &UpOptions,
    ui: &Ui,
    readiness: &engine::Readiness,
    planned: PlannedUp,
) -> Result<Plan> {
    let PlannedUp { plan, observed, images, proxy, side } = planned;
    if !opts.dry_run {
        // Containers an interrupted replacement left: planned as gone, removed first.
        crate::proxy::remove_leftovers(engine, &plan.leftovers, &ui.events()).await?;
        // A volume whose restore was interrupted is incomplete: nothing starts on it.
        // The markers were listed with the containers (a restore holds the stage lock, as we do).
        crate::ops::refuse_restore_marks(spec, &side)?;
        proxy_stage::retire(engine, spec, &proxy, &ui.events()).await?;
        // Even with nothing to do here, kept services must say they are ready to other servers.
        let proxy = proxy.serve;
        engine::apply_up_with_proxy(engine, spec, &plan, &observed, &images, readiness, ui.events(), proxy).await?;
    }
    Ok(plan)
}

/// The closing line of an `up`: what was done, servers and records included.
pub(crate) fn report_up(spec: &StageSpec, plan: &Plan, ui: &Ui) {
    let s = PlanSummary::of(plan);
    if s == PlanSummary::default() {
        ui.line(format!("Stage {} is up to date; nothing to do.", spec.name));
        return;
    }
    ui.line(format!(
        "Stage {} is up: {} added, {} changed, {} replaced, {} destroyed.",
        spec.name, s.add, s.change, s.replace, s.destroy
    ));
}

pub(crate) fn print_plan(plan: &Plan, format: Format, ui: &Ui) {
    ui.plan_report(plan, format);
}

pub async fn down(config: &Config, spec: &StageSpec, opts: &DownOptions, ui: &Ui) -> Result<Plan> {
    if opts.suspend && spec.is_local() {
        return Err(Error::usage_help(
            format!("--suspend powers servers off, and stage `{}` has no servers", spec.name),
            format!("use `fleet down {}` to stop its containers, or --destroy to remove them", spec.name),
        ));
    }
    if opts.destroy && spec.protect {
        return Err(Error::usage_help(
            format!("stage `{}` is protected: `down --destroy` is refused", spec.name),
            format!("remove `protect` from stage \"{}\" in {} to allow it", spec.name, config.source.name),
        ));
    }
    if let Some(file) = opts.backup.as_deref().filter(|_| opts.destroy && !opts.dry_run) {
        if !opts.yes && !std::io::stdin().is_terminal() {
            return Err(Error::usage_help(
                format!("refusing to destroy stage `{}` without confirmation; no backup was written", spec.name),
                "run it in a terminal to confirm, or pass --yes",
            ));
        }
        crate::ops::backup_before_destroy(config, spec, file, ui).await?;
    }
    if !spec.is_local() {
        return remote_down::down_remote_stage(config, spec, opts, ui).await;
    }
    let (_lock, engine) = lock_and_connect(config, spec, "down", opts.dry_run, opts.lock_wait).await?;
    let observed = engine.observe(spec).await?;
    let mut plan = plan::plan_down(spec, &observed, down_mode(opts));
    let proxy = proxy_stage::observe_and_plan_proxy_down(&engine, spec, opts.destroy, &mut plan).await?;
    gate::check(opts.plan_gate.as_ref(), spec, PlanIntent::of_down(opts.suspend, opts.destroy), &plan)?;
    if opts.dry_run {
        print_plan(&plan, opts.format, ui);
        return Ok(plan);
    }
    if plan.is_empty() {
        ui.line(format!("Stage {} is already down; nothing to do.", spec.name));
        return Ok(plan);
    }
    if opts.destroy && !opts.yes {
        let mut lines = removals(&plan);
        crate::ops::with_volume_sizes(&engine, spec, &plan, &mut lines).await;
        confirm_destroy(spec, &lines, ui)?;
    }
    proxy_stage::apply_down(&engine, spec, proxy.as_ref(), &plan, &ui.events()).await?;
    engine::apply_down(&engine, spec, &plan, &observed, ui.events()).await?;
    let verb = if opts.destroy { "destroyed" } else { "down" };
    ui.line(format!("Stage {} is {verb}.", spec.name));
    Ok(plan)
}

pub(crate) fn down_mode(opts: &DownOptions) -> DownMode {
    if opts.destroy { DownMode::Destroy { volumes: opts.volumes } } else { DownMode::Stop }
}

/// The lines of a plan that delete something, for the destroy confirmation.
pub(crate) fn removals(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::RemoveContainer { .. }
                    | Action::RemoveNetwork { .. }
                    | Action::RemoveVolume { .. }
                    | Action::RemoveProxy
            )
        })
        .map(ui::action_line)
        .collect()
}

/// Lists exactly what will be deleted; refuses without a terminal (pass --yes).
pub(crate) fn confirm_destroy(spec: &StageSpec, deletions: &[String], ui: &Ui) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::usage_help(
            format!("refusing to destroy stage `{}` without confirmation", spec.name),
            "run it in a terminal to confirm, or pass --yes",
        ));
    }
    ui.line(format!("This will delete from stage {}:", spec.name));
    for line in &crate::ops::with_disk_sizes(spec, deletions) {
        ui.line(format!("  {line}"));
    }
    match ui.confirm("Destroy these?") {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::failed("destroy cancelled; nothing was changed")),
        Err(e) => Err(Error::io("reading confirmation", e)),
    }
}

/// Each service of `spec` as one engine reports it.
pub(crate) async fn service_rows(engine: &Engine, spec: &StageSpec) -> Result<Vec<ServiceStatus>> {
    let observed = engine.observe(spec).await?;
    let now = jiff::Timestamp::now().as_second();
    let rows = spec.services.iter().map(|svc| {
        let c = observed.container(&svc.name).cloned();
        async move {
            let uptime = match &c {
                Some(c) if c.state.is_running() => engine
                    .started_at(&c.id)
                    .await?
                    .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                    .map(|t| now - t.as_second()),
                _ => None,
            };
            Ok::<_, Error>(ServiceStatus::of(&svc.name, svc.oneshot, c.as_ref(), ServiceState::NotCreated, uptime))
        }
    });
    futures_util::future::try_join_all(rows).await
}

/// Rows for services whose server cannot be asked (powered off or not created).
pub(crate) fn unknown_rows(spec: &StageSpec, why: ServiceState) -> Vec<ServiceStatus> {
    spec.services.iter().map(|s| ServiceStatus::of(&s.name, s.oneshot, None, why.clone(), None)).collect()
}

/// The report `status` prints.
pub(crate) fn status_report(
    spec: &StageSpec,
    status: StageState,
    servers: Vec<ServerStatus>,
    rows: Vec<ServiceStatus>,
) -> StatusReport {
    StatusReport {
        schema: crate::report::SCHEMA,
        stage: spec.name.clone(),
        kind: if spec.is_local() { "local" } else { "remote" },
        status,
        auto_suspend: spec.auto_suspend.as_ref().map(auto_suspend::window),
        servers,
        services: rows,
        cost: None,
        routes: Vec::new(),
    }
}

pub async fn status(config: &Config, spec: &StageSpec, format: Format, ui: &Ui) -> Result<()> {
    if !spec.is_local() {
        let (report, drifted) = remote_status::gather(config, spec, ui).await?;
        ui.status(&report, format);
        ship::warn_drift(spec, &drifted, ui);
        return Ok(());
    }
    let engine = Engine::connect_local().await?;
    let rows = service_rows(&engine, spec).await?;
    let mut report = status_report(spec, StageState::of_services(&rows), Vec::new(), rows);
    report.routes = proxy_stage::route_rows(&engine, spec).await?;
    ui.status(&report, format);
    ship::warn_drift(spec, &ship::drift(&engine, spec).await?, ui);
    Ok(())
}

/// `ps` for one stage, or for every stage of the project (remote ones through their servers).
pub async fn ps(config: &Config, stage: Option<&StageSpec>, format: Format, ui: &Ui) -> Result<()> {
    let stages: Vec<StageSpec> = match stage {
        Some(s) => vec![s.clone()],
        None => config
            .stage_names()
            .iter()
            .filter_map(|name| match config.stage(name) {
                Ok(s) => Some(s),
                Err(e) => {
                    ui.note(format!("stage {name} skipped: {e}"));
                    None
                }
            })
            .collect(),
    };
    let mut containers = Vec::new();
    let local: Vec<&str> = stages.iter().filter(|s| s.is_local()).map(|s| s.name.as_str()).collect();
    if !local.is_empty() {
        let engine = Engine::connect_local().await?;
        let filter = if stage.is_some() { Some(local[0]) } else { None };
        let mut found = engine.containers(&config.project, filter).await?;
        // A remote stage's containers are reported by its servers, not by this machine.
        found.retain(|c| local.contains(&c.stage.as_str()) || stages.iter().all(|s| s.name != c.stage));
        containers.extend(found);
    }
    let mut rows: Vec<PsRow> = containers.iter().map(PsRow::of).collect();
    for spec in stages.iter().filter(|s| !s.is_local()) {
        let several = spec.servers.len() > 1;
        for (server, c) in remote_stage::containers(config, spec, ui).await? {
            // The server is named where the stage has several; one server says nothing new.
            rows.push(PsRow { server: several.then_some(server), ..PsRow::of(&c) });
        }
    }
    let report = PsReport { schema: crate::report::SCHEMA, project: config.project.clone(), containers: rows };
    ui.ps(&report, format);
    Ok(())
}

pub async fn logs(config: &Config, spec: &StageSpec, services: &[String], opts: &LogOptions, ui: &Ui) -> Result<()> {
    for s in services {
        if spec.service(s).is_none() {
            let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::usage_help(
                format!("stage `{}` has no service `{s}`", spec.name),
                format!("services: {}", names.join(", ")),
            ));
        }
    }
    if !spec.is_local() {
        return remote_stage::logs(config, spec, services, opts, ui).await;
    }
    let engine = Engine::connect_local().await?;
    let selected = log_targets(&engine, spec, services).await?;
    if selected.is_empty() {
        return Err(no_containers(spec));
    }
    print_logs(spec, vec![engine::stream_logs(&engine, &selected, opts)], ui).await
}

pub(crate) fn no_containers(spec: &StageSpec) -> Error {
    Error::failed_help(
        format!("stage `{}` has no containers", spec.name),
        format!("run `fleet up {}` first", spec.name),
    )
}

/// (service, container id) of the selected services that have a container on this engine.
pub(crate) async fn log_targets(
    engine: &Engine,
    spec: &StageSpec,
    services: &[String],
) -> Result<Vec<(String, String)>> {
    let observed = engine.observe(spec).await?;
    Ok(spec
        .services
        .iter()
        .filter(|s| services.is_empty() || services.contains(&s.name))
        .filter_map(|s| observed.container(&s.name).map(|c| (s.name.clone(), c.id.clone())))
        .collect())
}

/// Prints merged log streams until they end (or forever with --follow).
pub(crate) async fn print_logs(spec: &StageSpec, streams: Vec<engine::LogStream>, ui: &Ui) -> Result<()> {
    let mut merged = futures_util::stream::select_all(streams);
    let width = spec.services.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let colour: std::collections::HashMap<&str, usize> =
        spec.services.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    // `fleet logs -f | head`: once the reader is gone, stop following (the caller closes SSH).
    let gone = ui::stdout_gone();
    tokio::pin!(gone);
    loop {
        let line = tokio::select! {
            line = merged.next() => line,
            _ = &mut gone => break,
        };
        let Some(line) = line else { break };
        let line = line?;
        ui.log_line(&line, width, colour.get(line.service.as_str()).copied().unwrap_or(0));
        if ui::stdout_closed() {
            break;
        }
    }
    Ok(())
}
