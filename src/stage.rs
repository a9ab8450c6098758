//! The stage orchestrator: `up`, `down`, `status`, `ps`, `logs` composed from the layers.

use crate::config::Config;
use crate::engine::{self, Engine, LogOptions, PullPolicy};
use crate::error::{Error, Result};
use crate::lock::StageLock;
use crate::model::StageSpec;
use crate::plan::{self, Action, ConfigHash, Desired, DownMode, Plan, PlanSummary};
use crate::ui::{self, Format, Ui};
use futures_util::StreamExt;
use serde_json::json;
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
}

/// A remote stage must never fall back to this machine's engine.
fn require_local(spec: &StageSpec, verb: &str) -> Result<()> {
    if spec.is_local() {
        return Ok(());
    }
    Err(Error::failed_help(
        format!(
            "stage `{}` runs on servers ({}); `{verb}` of remote stages is not implemented in this version",
            spec.name,
            spec.servers
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "nothing was changed; remote stages (Sakura Cloud, SSH hosts) are on the roadmap in the README",
    ))
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
        false => Some(StageLock::acquire(
            &config.project,
            &spec.name,
            &purpose,
            lock_wait,
        )?),
    };
    Ok((lock, Engine::connect_local().await?))
}

/// Observes and plans `up`. Nothing is changed (images are not pulled).
pub async fn plan_up(
    engine: &Engine,
    spec: &StageSpec,
    opts: &UpOptions,
    ui: &Ui,
) -> Result<(
    Plan,
    plan::ObservedStage,
    std::collections::BTreeMap<String, String>,
)> {
    let events = ui.events();
    let (images, mut observed) = futures_util::try_join!(
        engine.resolve_images(spec, opts.pull, opts.dry_run, &events),
        engine.observe(spec)
    )?;
    let desired: Vec<Desired> = spec
        .services
        .iter()
        .map(|s| Desired {
            service: s,
            hash: ConfigHash::of(s, images.get(&s.image).map_or("", String::as_str)),
        })
        .collect();
    // Only a container whose environment changed is inspected, so the reason can name the variable.
    let env_changed: Vec<usize> = observed
        .containers
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            desired.iter().any(|d| {
                d.service.name == c.service
                    && c.field_hashes.get("environment") != d.hash.fields.get("environment")
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
        if observed.network_exists {
            "present"
        } else {
            "missing"
        },
        observed.volumes.len(),
        spec.name
    ));
    let plan = plan::plan_up(
        spec,
        &desired,
        &observed,
        opts.remove_orphans,
        opts.force_recreate,
    );
    Ok((plan, observed, images))
}

pub async fn up(config: &Config, spec: &StageSpec, opts: &UpOptions, ui: &Ui) -> Result<Plan> {
    require_local(spec, "up")?;
    let (_lock, engine) =
        lock_and_connect(config, spec, "up", opts.dry_run, opts.lock_wait).await?;
    let (plan, observed, images) = plan_up(&engine, spec, opts, ui).await?;
    ui.orphan_warnings(&plan);
    if opts.dry_run {
        print_plan(&plan, opts.format, ui);
        return Ok(plan);
    }
    if plan.is_empty() {
        ui.line(format!("Stage {} is up to date; nothing to do.", spec.name));
        return Ok(plan);
    }
    engine::up(&engine, spec, &plan, &observed, &images, ui.events()).await?;
    let s = PlanSummary::of(&plan);
    ui.line(format!(
        "Stage {} is up: {} added, {} changed, {} replaced, {} destroyed.",
        spec.name, s.add, s.change, s.replace, s.destroy
    ));
    Ok(plan)
}

fn print_plan(plan: &Plan, format: Format, ui: &Ui) {
    match format {
        Format::Json => ui.json(&json!({
            "schema": 1,
            "stage": plan.stage,
            "actions": plan.actions,
            "orphans": plan.orphans,
            "summary": PlanSummary::of(plan),
        })),
        Format::Text => ui.plan(plan),
    }
}

pub async fn down(config: &Config, spec: &StageSpec, opts: &DownOptions, ui: &Ui) -> Result<Plan> {
    if opts.suspend && spec.is_local() {
        return Err(Error::usage_help(
            format!(
                "--suspend powers servers off, and stage `{}` has no servers",
                spec.name
            ),
            format!(
                "use `fleet down {}` to stop its containers, or --destroy to remove them",
                spec.name
            ),
        ));
    }
    if opts.destroy && spec.protect {
        return Err(Error::usage_help(
            format!(
                "stage `{}` is protected: `down --destroy` is refused",
                spec.name
            ),
            format!(
                "remove `protect` from stage \"{}\" in {} to allow it",
                spec.name, config.source.name
            ),
        ));
    }
    require_local(spec, "down")?;
    let (_lock, engine) =
        lock_and_connect(config, spec, "down", opts.dry_run, opts.lock_wait).await?;
    let observed = engine.observe(spec).await?;
    let mode = if opts.destroy {
        DownMode::Destroy {
            volumes: opts.volumes,
        }
    } else {
        DownMode::Stop
    };
    let plan = plan::plan_down(spec, &observed, mode);
    if opts.dry_run {
        print_plan(&plan, opts.format, ui);
        return Ok(plan);
    }
    if plan.is_empty() {
        ui.line(format!(
            "Stage {} is already down; nothing to do.",
            spec.name
        ));
        return Ok(plan);
    }
    if opts.destroy && !opts.yes {
        confirm_destroy(spec, &plan, ui)?;
    }
    engine::down(&engine, spec, &plan, &observed, ui.events()).await?;
    let verb = if opts.destroy { "destroyed" } else { "down" };
    ui.line(format!("Stage {} is {verb}.", spec.name));
    Ok(plan)
}

/// Lists exactly what will be deleted; refuses without a terminal (pass --yes).
fn confirm_destroy(spec: &StageSpec, plan: &Plan, ui: &Ui) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::usage_help(
            format!(
                "refusing to destroy stage `{}` without confirmation",
                spec.name
            ),
            "run it in a terminal to confirm, or pass --yes",
        ));
    }
    ui.line(format!("This will delete from stage {}:", spec.name));
    for a in plan.actions.iter().filter(|a| {
        matches!(
            a,
            Action::RemoveContainer { .. }
                | Action::RemoveNetwork { .. }
                | Action::RemoveVolume { .. }
        )
    }) {
        ui.line(format!("  {}", ui::action_line(a)));
    }
    match ui.confirm("Destroy these?") {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::failed("destroy cancelled; nothing was changed")),
        Err(e) => Err(Error::io("reading confirmation", e)),
    }
}

/// The stage's overall state from its services'.
fn overall(spec: &StageSpec, observed: &plan::ObservedStage) -> &'static str {
    let containers: Vec<_> = spec
        .services
        .iter()
        .map(|s| (s, observed.container(&s.name)))
        .collect();
    if containers.iter().all(|(_, c)| c.is_none()) {
        return "not created";
    }
    let ok = |(s, c): &(&crate::model::Service, Option<&plan::ObservedContainer>)| {
        c.is_some_and(|c| {
            (c.state.is_running() && c.health.as_deref() != Some("unhealthy"))
                || (s.oneshot && c.state == plan::RunState::Exited(0))
        })
    };
    if containers.iter().all(ok) {
        "running"
    } else if containers
        .iter()
        .any(|(_, c)| c.is_some_and(|c| c.state.is_running()))
    {
        "degraded"
    } else {
        "stopped"
    }
}

pub async fn status(spec: &StageSpec, format: Format, ui: &Ui) -> Result<()> {
    require_local(spec, "status")?;
    let engine = Engine::connect_local().await?;
    let observed = engine.observe(spec).await?;
    let now = jiff::Timestamp::now();
    let mut rows = Vec::new();
    for svc in &spec.services {
        let c = observed.container(&svc.name);
        let uptime = match c {
            Some(c) if c.state.is_running() => engine
                .started_at(&c.id)
                .await?
                .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                .map(|t| now.as_second() - t.as_second()),
            _ => None,
        };
        rows.push((svc, c, uptime));
    }
    let status = overall(spec, &observed);
    if format == Format::Json {
        let services: Vec<_> = rows
            .iter()
            .map(|(s, c, up)| {
                json!({
                    "service": s.name,
                    "state": c.map_or("not created".to_string(), |c| c.state.label()),
                    "health": c.and_then(|c| c.health.clone()),
                    "uptime_seconds": up,
                    "container": c.map(|c| c.name.clone()),
                })
            })
            .collect();
        ui.json(&json!({"schema": 1, "stage": spec.name, "type": "local", "status": status, "services": services}));
        return Ok(());
    }
    ui.line(format!("Stage: {}", spec.name));
    ui.line("Type: local");
    ui.line(format!("Status: {status}"));
    ui.line("Services:");
    let width = spec
        .services
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for (svc, c, up) in rows {
        let state = match c {
            None => "not created".to_string(),
            Some(c) => match &c.health {
                Some(h) => format!("{}, {h}", c.state.label()),
                None => c.state.label(),
            },
        };
        let uptime = up
            .map(|s| format!("  (up {})", ui::human_duration(s)))
            .unwrap_or_default();
        ui.line(format!(
            "  {} {:width$}  {state}{uptime}",
            ui::status_mark(c, svc.oneshot),
            svc.name
        ));
    }
    Ok(())
}

/// `ps` for one stage, or every local stage of the project.
pub async fn ps(config: &Config, stage: Option<&StageSpec>, format: Format, ui: &Ui) -> Result<()> {
    if let Some(spec) = stage {
        require_local(spec, "ps")?;
    }
    let engine = Engine::connect_local().await?;
    let containers = engine
        .containers(&config.project, stage.map(|s| s.name.as_str()))
        .await?;
    let now = jiff::Timestamp::now().as_second();
    if format == Format::Json {
        let list: Vec<_> = containers
            .iter()
            .map(|c| {
                json!({
                    "stage": c.stage, "service": c.service, "name": c.name, "state": c.state,
                    "health": c.health, "status": c.status_text, "ports": c.ports, "created": c.created,
                })
            })
            .collect();
        ui.json(&json!({"schema": 1, "project": config.project, "containers": list}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            vec![
                c.stage.clone(),
                c.service.clone(),
                c.status_text.clone(),
                c.ports.join(", "),
                format!("{} ago", ui::human_duration(now - c.created)),
            ]
        })
        .collect();
    ui.line(ui::table(
        &["STAGE", "SERVICE", "STATUS", "PORTS", "CREATED"],
        &rows,
    ));
    Ok(())
}

pub async fn logs(spec: &StageSpec, services: &[String], opts: &LogOptions, ui: &Ui) -> Result<()> {
    require_local(spec, "logs")?;
    for s in services {
        if spec.service(s).is_none() {
            let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::usage_help(
                format!("stage `{}` has no service `{s}`", spec.name),
                format!("services: {}", names.join(", ")),
            ));
        }
    }
    let engine = Engine::connect_local().await?;
    let observed = engine.observe(spec).await?;
    let selected: Vec<(String, String)> = spec
        .services
        .iter()
        .filter(|s| services.is_empty() || services.contains(&s.name))
        .filter_map(|s| {
            observed
                .container(&s.name)
                .map(|c| (s.name.clone(), c.id.clone()))
        })
        .collect();
    if selected.is_empty() {
        return Err(Error::failed_help(
            format!("stage `{}` has no containers", spec.name),
            format!("run `fleet up {}` first", spec.name),
        ));
    }
    let width = selected.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    let colour: std::collections::HashMap<String, usize> = spec
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), i))
        .collect();
    let mut stream = engine::stream_logs(&engine, &selected, opts);
    while let Some(line) = stream.next().await {
        let line = line?;
        ui.log_line(&line, width, colour[&line.service]);
    }
    Ok(())
}
