//! Shipping your own code: `build`, the builds `up` runs first, `releases`, `rollback`, and
//! pruning old releases. Composed from `build` (this machine's engine) and the stage's engines.

use crate::build::{self, BuildEvents, BuildJob, PROJECT_LABEL, RELEASE_LABEL, SERVICE_LABEL};
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::StageSpec;
use crate::report::{ReleaseRow, ReleasesReport};
use crate::ui::{Format, Ui};
use bollard::query_parameters::{ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveImageOptions};
use std::collections::{BTreeMap, HashMap};

/// Releases of each service a server keeps; `up` removes older ones.
pub const KEEP_RELEASES: usize = 5;

/// The stage with each built service's image named by its release version (the content hash
/// of its build input) and the version labelled on its container.
pub fn resolve(project: &str, mut spec: StageSpec) -> Result<StageSpec> {
    for svc in &mut spec.services {
        if let Some(job) = build::job(project, svc)? {
            svc.image = job.image;
            svc.labels.insert(RELEASE_LABEL.into(), job.version);
        }
    }
    Ok(spec)
}

/// The builds of a resolved stage (no hashing again), optionally only these services.
pub fn jobs(spec: &StageSpec, only: &[String]) -> Result<Vec<BuildJob>> {
    for name in only {
        match spec.service(name) {
            Some(s) if s.build.is_some() => {}
            Some(_) => return Err(Error::usage(format!("service `{name}` has no `build` in stage `{}`", spec.name))),
            None => return Err(Error::usage(format!("stage `{}` has no service `{name}`", spec.name))),
        }
    }
    Ok(spec
        .services
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.name))
        .filter_map(|s| {
            Some(BuildJob {
                service: s.name.clone(),
                spec: s.build.clone()?,
                version: s.labels.get(RELEASE_LABEL).cloned().unwrap_or_default(),
                image: s.image.clone(),
            })
        })
        .collect())
}

/// Builds on this machine what is not built yet (everything with `no_cache`). Every build runs
/// to its end; any failure fails the whole, before anything reaches a server.
pub async fn build_all(project: &str, jobs: &[BuildJob], no_cache: bool, events: &BuildEvents) -> Result<usize> {
    if jobs.is_empty() {
        return Ok(0);
    }
    let engine = Engine::connect_local().await?;
    let mut built = 0;
    let mut failures = Vec::new();
    for job in jobs {
        if !no_cache && build::present(&engine, &job.image).await? {
            events(build::BuildEvent::Present { service: job.service.clone(), image: job.image.clone() });
            continue;
        }
        match build::build(&engine, project, job, no_cache, events).await {
            Ok(()) => built += 1,
            Err(e) => failures.push(e),
        }
    }
    match failures.len() {
        0 => Ok(built),
        1 => Err(failures.remove(0)),
        _ => Err(Error::failed(failures.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))),
    }
}

/// Builds of an `up`, started now and awaited before any container changes: a remote `up`
/// creates and boots its servers meanwhile.
pub struct PendingBuilds(tokio::task::JoinHandle<Result<usize>>);

impl PendingBuilds {
    /// Starts the missing builds of `spec` (none for a dry run: it only says what it would build).
    pub async fn start(spec: &StageSpec, dry_run: bool, ui: &Ui) -> Result<Option<Self>> {
        let jobs = jobs(spec, &[])?;
        if jobs.is_empty() {
            return Ok(None);
        }
        if dry_run {
            // What would be built, said beside the plan (a note: the plan's JSON stays one document).
            let engine = Engine::connect_local().await?;
            for job in &jobs {
                match build::present(&engine, &job.image).await? {
                    false => ui.note(format!("up would build service {} ({})", job.service, job.image)),
                    true => ui.detail(format!("service {}: {} is built already", job.service, job.image)),
                }
            }
            return Ok(None);
        }
        let (project, events) = (spec.project.clone(), ui.build_events());
        Ok(Some(Self(tokio::spawn(async move { build_all(&project, &jobs, false, &events).await }))))
    }

    pub async fn wait(self) -> Result<usize> {
        self.0.await.map_err(|e| Error::failed(format!("internal build task failed: {e}")))?
    }
}

/// One engine's images of a project's releases, by service: (version, image id, created, repo tags).
async fn releases_on(engine: &Engine, project: &str) -> Result<BTreeMap<String, Vec<Release>>> {
    let label = format!("{PROJECT_LABEL}={project}");
    let filters = HashMap::from([("label", vec![label.as_str()])]);
    let opts = ListImagesOptionsBuilder::new().filters(&filters).build();
    let images = engine
        .docker
        .list_images(Some(opts))
        .await
        .map_err(|e| Error::engine(format!("listing releases on {}", engine.endpoint), e))?;
    // The list says seconds; builds from a warm cache come faster than that: order by the
    // engine's nanosecond creation time.
    let created = futures_util::future::join_all(images.iter().map(|i| engine.docker.inspect_image(&i.id))).await;
    let mut out: BTreeMap<String, Vec<Release>> = BTreeMap::new();
    for (i, inspected) in images.into_iter().zip(created) {
        let (Some(service), Some(version)) = (i.labels.get(SERVICE_LABEL), i.labels.get(RELEASE_LABEL)) else {
            continue;
        };
        let when = inspected.ok().and_then(|x| x.created).unwrap_or_default();
        let nanos = when.parse::<jiff::Timestamp>().map_or(i.created as i128 * 1_000_000_000, |t| t.as_nanosecond());
        out.entry(service.clone()).or_default().push(Release {
            version: version.clone(),
            image_id: i.id.clone(),
            created: nanos,
            tags: i.repo_tags.clone(),
        });
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| b.created.cmp(&a.created).then(b.version.cmp(&a.version)));
    }
    Ok(out)
}

#[derive(Debug, Clone)]
struct Release {
    version: String,
    image_id: String,
    /// Unix nanoseconds.
    created: i128,
    tags: Vec<String>,
}

/// The release each service's container of the stage runs on this engine (by its label).
async fn running_releases(engine: &Engine, spec: &StageSpec) -> Result<BTreeMap<String, String>> {
    let filters = HashMap::from([(
        "label",
        vec![format!("{PROJECT_LABEL}={}", spec.project), format!("fleetflow.stage={}", spec.name)],
    )]);
    let filters: HashMap<&str, Vec<&str>> =
        filters.iter().map(|(k, v)| (*k, v.iter().map(String::as_str).collect())).collect();
    let opts = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let list = engine
        .docker
        .list_containers(Some(opts))
        .await
        .map_err(|e| Error::engine(format!("listing containers on {}", engine.endpoint), e))?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels?;
            Some((labels.get(SERVICE_LABEL)?.clone(), labels.get(RELEASE_LABEL)?.clone()))
        })
        .collect())
}

/// Removes all but the newest `KEEP_RELEASES` releases of each built service of `spec` from
/// one engine. A release a container still uses is kept (the engine refuses, we say nothing).
pub async fn prune(engine: &Engine, spec: &StageSpec, ui: &Ui) -> Result<()> {
    let built: Vec<&str> = spec.services.iter().filter(|s| s.build.is_some()).map(|s| s.name.as_str()).collect();
    if built.is_empty() {
        return Ok(());
    }
    let running = running_releases(engine, spec).await?;
    for (service, releases) in releases_on(engine, &spec.project).await? {
        if !built.contains(&service.as_str()) {
            continue;
        }
        let keep_file = spec.service(&service).and_then(|s| s.labels.get(RELEASE_LABEL));
        for old in releases.iter().skip(KEEP_RELEASES) {
            if Some(&old.version) == running.get(&service) || Some(&old.version) == keep_file {
                continue;
            }
            let refs = if old.tags.is_empty() { vec![old.image_id.clone()] } else { old.tags.clone() };
            for r in refs {
                match engine.docker.remove_image(&r, None::<RemoveImageOptions>, None).await {
                    Ok(_) => {
                        ui.detail(format!("pruned release {} of {service} ({r}) on {}", old.version, engine.endpoint))
                    }
                    Err(e) => {
                        ui.detail(format!("release {} of {service} kept on {}: {e}", old.version, engine.endpoint))
                    }
                }
            }
        }
    }
    Ok(())
}

/// The releases of the stage's built services on these engines (one per server, or this
/// machine's for a local stage), newest first, the running one marked current.
pub async fn releases_report(
    spec: &StageSpec,
    engines: &[(String, &Engine)],
    only: Option<&str>,
) -> Result<ReleasesReport> {
    let mut rows: Vec<ReleaseRow> = Vec::new();
    for (server, engine) in engines {
        let running = running_releases(engine, spec).await?;
        for (service, releases) in releases_on(engine, &spec.project).await? {
            let in_stage = spec.service(&service).is_some_and(|s| s.build.is_some());
            if !in_stage || only.is_some_and(|o| o != service) {
                continue;
            }
            for r in releases {
                match rows.iter_mut().find(|row| row.service == service && row.version == r.version) {
                    Some(row) => {
                        row.servers.push(server.clone());
                        row.current |= running.get(&service) == Some(&r.version);
                    }
                    None => rows.push(ReleaseRow {
                        service: service.clone(),
                        version: r.version.clone(),
                        created: jiff::Timestamp::from_nanosecond(r.created)
                            .map(|t| t.round(jiff::Unit::Second).map_or_else(|_| t.to_string(), |t| t.to_string()))
                            .unwrap_or_default(),
                        created_unix: r.created,
                        current: running.get(&service) == Some(&r.version),
                        in_file: spec.service(&service).and_then(|s| s.labels.get(RELEASE_LABEL)) == Some(&r.version),
                        servers: vec![server.clone()],
                    }),
                }
            }
        }
    }
    rows.sort_by(|a, b| a.service.cmp(&b.service).then(b.created_unix.cmp(&a.created_unix)));
    Ok(ReleasesReport { schema: crate::report::SCHEMA, stage: spec.name.clone(), releases: rows })
}

/// Services whose container runs a release other than the file's: (service, running, file).
pub async fn drift(engine: &Engine, spec: &StageSpec) -> Result<Vec<(String, String, String)>> {
    let running = running_releases(engine, spec).await?;
    Ok(spec
        .services
        .iter()
        .filter_map(|s| {
            let file = s.labels.get(RELEASE_LABEL)?;
            let now = running.get(&s.name)?;
            (now != file).then(|| (s.name.clone(), now.clone(), file.clone()))
        })
        .collect())
}

/// The stage as it should run after a rollback: each chosen service on its target release, with
/// no build (the image must already be on every server that runs it).
pub fn rolled_back(
    spec: &StageSpec,
    report: &ReleasesReport,
    services: &[String],
    to: Option<&str>,
) -> Result<StageSpec> {
    let chosen: Vec<String> = match services.is_empty() {
        true => spec.services.iter().filter(|s| s.build.is_some()).map(|s| s.name.clone()).collect(),
        false => services.to_vec(),
    };
    jobs(spec, &chosen)?;
    if chosen.is_empty() {
        return Err(Error::usage(format!("stage `{}` has no service with `build`: nothing to roll back", spec.name)));
    }
    let mut out = spec.clone();
    for name in &chosen {
        let list: Vec<&ReleaseRow> = report.releases.iter().filter(|r| &r.service == name).collect();
        let target = match to {
            Some(v) => list.iter().find(|r| r.version == v || r.version.starts_with(v)).copied(),
            None => {
                let current = list.iter().position(|r| r.current);
                current.and_then(|i| list.get(i + 1)).copied()
            }
        };
        let Some(target) = target else {
            let known: Vec<&str> = list.iter().map(|r| r.version.as_str()).collect();
            return Err(Error::usage_help(
                match to {
                    Some(v) => format!("service {name}: no release {v} on the stage's servers"),
                    None => format!("service {name}: no release older than the running one on the stage's servers"),
                },
                format!("releases there: {}", if known.is_empty() { "none".into() } else { known.join(", ") }),
            ));
        };
        let svc = out.services.iter_mut().find(|s| &s.name == name).ok_or_else(|| Error::usage(name.clone()))?;
        let repo = svc.image.rsplit_once(':').map_or(svc.image.clone(), |(r, _)| r.to_string());
        svc.image = format!("{repo}:{}", target.version);
        svc.labels.insert(RELEASE_LABEL.into(), target.version.clone());
        svc.build = None;
    }
    Ok(out)
}

/// `fleet releases`: the report, as text or one JSON document.
pub fn print_releases(report: &ReleasesReport, format: Format, ui: &Ui) {
    ui.releases(report, format);
}

/// `fleet build <stage> [SERVICE...]`.
pub async fn build_command(
    config: &Config,
    spec: &StageSpec,
    services: &[String],
    no_cache: bool,
    ui: &Ui,
) -> Result<()> {
    let jobs = jobs(spec, services)?;
    if jobs.is_empty() {
        ui.line(format!("Stage {} has no service with `build`; nothing to build.", spec.name));
        return Ok(());
    }
    let built = build_all(&config.project, &jobs, no_cache, &ui.build_events()).await?;
    ui.line(format!("Built {built} image(s) for stage {}; {} already present.", spec.name, jobs.len() - built));
    Ok(())
}

/// After `status`: a service running a release other than the file's says so (a rollback).
pub fn warn_drift(spec: &StageSpec, drifted: &[(String, String, String)], ui: &Ui) {
    for (service, running, file) in drifted {
        ui.warn(format!(
            "service {service} runs release {running}, not the file's {file} (rolled back?); `fleet up {}` converges back to the file",
            spec.name
        ));
    }
}

/// The stage's engines: this machine's for a local stage, each running server's otherwise.
async fn with_engines<T>(
    config: &Config,
    spec: &StageSpec,
    ui: &Ui,
    f: impl AsyncFnOnce(&[(String, &Engine)]) -> Result<T>,
) -> Result<T> {
    if spec.is_local() {
        let engine = Engine::connect_local().await?;
        return f(&[("local".to_string(), &engine)]).await;
    }
    let held = super::remote_stage::server_engines(config, spec, ui).await?;
    let engines: Vec<(String, &Engine)> = held.iter().map(|(name, _, e)| (name.clone(), e)).collect();
    let result = f(&engines).await;
    for (_, host, _) in held {
        host.close().await;
    }
    result
}

/// `fleet releases <stage> [SERVICE]`.
pub async fn releases(config: &Config, spec: &StageSpec, only: Option<&str>, format: Format, ui: &Ui) -> Result<()> {
    if let Some(name) = only {
        jobs(spec, &[name.to_string()])?;
    }
    let report = with_engines(config, spec, ui, async |engines| releases_report(spec, engines, only).await).await?;
    print_releases(&report, format, ui);
    Ok(())
}

/// `fleet rollback <stage> [SERVICE...] [--to VERSION]`: the chosen services run an older
/// release that their servers still hold, through the same convergence as `up` (no build, and
/// nothing to send since the image is there). The file stays the truth: the next `up` returns.
pub async fn rollback(
    config: &Config,
    spec: &StageSpec,
    services: &[String],
    to: Option<&str>,
    yes: bool,
    lock_wait: Option<std::time::Duration>,
    ui: &Ui,
) -> Result<()> {
    let report = with_engines(config, spec, ui, async |engines| releases_report(spec, engines, None).await).await?;
    let target = rolled_back(spec, &report, services, to)?;
    let moves: Vec<String> = spec
        .services
        .iter()
        .zip(&target.services)
        .filter(|(a, b)| a.image != b.image)
        .map(|(a, b)| {
            let from = report.releases.iter().find(|r| r.service == a.name && r.current).map(|r| r.version.as_str());
            format!(
                "{}: {} -> {}",
                a.name,
                from.unwrap_or("(not running)"),
                b.labels.get(RELEASE_LABEL).map_or("", String::as_str)
            )
        })
        .collect();
    if !yes {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return Err(Error::usage_help(
                format!("refusing to roll back stage `{}` without confirmation", spec.name),
                "run it in a terminal to confirm, or pass -y",
            ));
        }
        ui.line(format!("Roll back stage {}:", spec.name));
        moves.iter().for_each(|m| ui.line(format!("  {m}")));
        if !ui.confirm("Roll back?").map_err(|e| Error::io("reading confirmation", e))? {
            return Err(Error::failed("rollback cancelled; nothing was changed"));
        }
    }
    let opts = super::UpOptions {
        pull: crate::engine::PullPolicy::Missing,
        dry_run: false,
        remove_orphans: false,
        force_recreate: false,
        format: Format::Text,
        lock_wait,
        plan_gate: None,
    };
    super::up(config, &target, &opts, ui).await?;
    for m in moves {
        ui.line(format!("Rolled back {m}"));
    }
    Ok(())
}
