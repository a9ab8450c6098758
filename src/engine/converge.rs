//! Applying a plan: dependency-ordered, parallel where independent, health-gated.
//!
//! The walk is generic (each service waits for its own dependencies, not for a whole level);
//! what happens to one service is `ServiceJob::run`. Same split as Compose's graph walk.

use super::{Engine, create_body, is_not_found, is_not_modified};
use crate::error::{Error, Result};
use crate::model::{Service, StageSpec};
use crate::plan::{Action, ConfigHash, Decision, ObservedStage, Plan, graph};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptions,
};
use futures_util::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often a health or completion wait looks again: short, it is one local API call.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// A container that dies this soon after its start fails `up` (a wrong command, a missing
/// file). The window runs beside the dependents' starts, so it costs one window per `up`,
/// not one per dependency level.
const SETTLE: Duration = Duration::from_millis(300);
/// How long a one-shot (a migration, a seed job) may run before `up` gives up on it.
const ONESHOT_PATIENCE: Duration = Duration::from_secs(30 * 60);
/// Log lines shown when a container dies after start.
const FAILURE_LOG_LINES: &str = "20";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull only images the engine does not have.
    Missing,
    /// `--pull`: pull every image, then recreate what moved.
    Always,
}

/// What the engine layer tells the UI while it works.
#[derive(Debug, Clone)]
pub enum Event {
    Pulling {
        image: String,
    },
    Pulled {
        image: String,
    },
    /// An image the engine could not pull is copied from this machine's engine.
    Copying {
        image: String,
        bytes: i64,
        to: String,
    },
    Copied {
        image: String,
    },
    /// What a copy moved: only the layers the engine lacked.
    Sent {
        image: String,
        to: String,
        layers_sent: usize,
        layers_total: usize,
        bytes: u64,
    },
    /// About to apply this action.
    Applying(Action),
    Waiting {
        service: String,
        until: &'static str,
    },
    /// A wait announced by `Waiting` is over.
    Ready {
        service: String,
    },
    Warning(String),
}

pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// What `resolve_images` found: the id per image, and (dry runs) what would be copied.
#[derive(Debug, Default)]
pub struct ResolvedImages {
    pub ids: BTreeMap<String, String>,
    pub copies: Vec<ImageCopy>,
}

/// An image this engine lacks that its image source has.
#[derive(Debug, Clone)]
pub struct ImageCopy {
    pub image: String,
    pub bytes: u64,
    /// It came from a registry (it has a digest): the server may pull it itself.
    pub pull_first: bool,
}

impl Engine {
    /// The image id each service runs, pulling where policy says. With `dry_run` nothing is pulled
    /// and a missing image maps to an empty id (the plan then shows a create or a recreate), and
    /// the images the image source would supply are listed with their sizes.
    pub async fn resolve_images(
        &self,
        spec: &StageSpec,
        pull: PullPolicy,
        dry_run: bool,
        events: &Events,
    ) -> Result<ResolvedImages> {
        let mut images: Vec<&str> = spec.services.iter().map(|s| s.image.as_str()).collect();
        images.sort();
        images.dedup();
        let lookups = images.into_iter().map(|image| async move {
            if pull == PullPolicy::Always && !dry_run {
                self.pull_or_copy(image, events).await?;
            }
            match self.docker.inspect_image(image).await {
                Ok(i) => Ok((image.to_string(), i.id.unwrap_or_default(), None)),
                Err(e) if is_not_found(&e) && dry_run => {
                    let copy = match &self.image_source {
                        Some(source) => source.docker.inspect_image(image).await.ok().map(|local| ImageCopy {
                            image: image.to_string(),
                            bytes: local.size.unwrap_or(0).max(0) as u64,
                            pull_first: local.repo_digests.is_some_and(|d| !d.is_empty()),
                        }),
                        None => None,
                    };
                    Ok((image.to_string(), String::new(), copy))
                }
                Err(e) if is_not_found(&e) => {
                    self.pull_or_copy(image, events).await?;
                    let i = self
                        .docker
                        .inspect_image(image)
                        .await
                        .map_err(|e| Error::engine(format!("image {image}"), e))?;
                    Ok((image.to_string(), i.id.unwrap_or_default(), None))
                }
                Err(e) => Err(Error::engine(format!("image {image}"), e)),
            }
        });
        let found = futures_util::future::try_join_all(lookups).await?;
        let mut resolved = ResolvedImages::default();
        for (image, id, copy) in found {
            resolved.ids.insert(image, id);
            resolved.copies.extend(copy);
        }
        Ok(resolved)
    }

    /// A pull, and when that fails, a copy from the image source when it has the image. An
    /// image built here (a release) is never looked for in a registry: it is sent at once.
    pub(crate) async fn pull_or_copy(&self, image: &str, events: &Events) -> Result<()> {
        let built_here = match &self.image_source {
            Some(source) => crate::transfer::is_release(source, image).await,
            None => false,
        };
        let pulled = match built_here {
            true => Err(Error::failed(format!("image {image} was built on this machine"))),
            false => self.pull(image, events).await,
        };
        let (Err(pull_error), Some(source)) = (&pulled, &self.image_source) else { return pulled };
        let Ok(local) = source.docker.inspect_image(image).await else { return pulled };
        let _ = pull_error;
        events(Event::Copying { image: image.to_string(), bytes: local.size.unwrap_or(0), to: self.endpoint.clone() });
        self.copy_from(source, image, events).await?;
        events(Event::Copied { image: image.to_string() });
        Ok(())
    }

    /// Only the layers this engine lacks, streamed (never the whole image in memory).
    async fn copy_from(&self, source: &Engine, image: &str, events: &Events) -> Result<()> {
        let sent = crate::transfer::send_image(source, self, image, &self.endpoint).await?;
        events(Event::Sent {
            image: image.to_string(),
            to: self.endpoint.clone(),
            layers_sent: sent.layers_sent,
            layers_total: sent.layers_total,
            bytes: sent.bytes_sent,
        });
        Ok(())
    }

    async fn pull(&self, image: &str, events: &Events) -> Result<()> {
        events(Event::Pulling { image: image.to_string() });
        let opts = CreateImageOptionsBuilder::new().from_image(image).build();
        self.docker.create_image(Some(opts), None, None).try_collect::<Vec<_>>().await.map_err(|e| {
            Error::failed_help(
                format!("image {image} is not on {} and could not be pulled: {e}", self.endpoint),
                "check the image name and registry access, or build/load the image on that engine first",
            )
        })?;
        events(Event::Pulled { image: image.to_string() });
        Ok(())
    }
}

/// The readiness of every service of a stage, shared by the engines of all its servers, so a
/// service on one server waits for its dependency on another (`None` not yet, then ready or not).
#[derive(Clone)]
pub struct Readiness {
    services: Arc<HashMap<String, watch::Sender<Option<bool>>>>,
    /// Services something depends on: "started" is not enough for them, they must be ready.
    waited_on: Arc<std::collections::HashSet<String>>,
}

impl Readiness {
    /// One signal per service of the whole stage (every server's services).
    pub fn for_stage(spec: &StageSpec) -> Self {
        let services = spec.services.iter().map(|s| (s.name.clone(), watch::channel(None).0)).collect();
        let waited_on = spec.services.iter().flat_map(|s| s.depends_on.iter().cloned()).collect();
        Self { services: Arc::new(services), waited_on: Arc::new(waited_on) }
    }

    fn signal(&self, service: &str) -> Result<&watch::Sender<Option<bool>>> {
        self.services.get(service).ok_or_else(|| {
            Error::failed(format!(
                "service {service} is not part of the stage being converged (a dependency placed nowhere?)"
            ))
        })
    }

    /// Marks these services failed unless they already said: a server whose converge stopped
    /// early must not leave dependents on other servers waiting forever.
    pub fn fail_unset<'a>(&self, services: impl IntoIterator<Item = &'a str>) {
        for name in services {
            if let Some(tx) = self.services.get(name) {
                tx.send_if_modified(|v| v.is_none().then(|| *v = Some(false)).is_some());
            }
        }
    }
}

/// Applies an `up` plan. Returns when every service is running (healthy where it has a
/// healthcheck, completed where it is a one-shot). Dependencies may live on other servers:
/// `readiness` is the stage's shared board.
pub async fn apply_up(
    engine: &Engine,
    spec: &StageSpec,
    plan: &Plan,
    observed: &ObservedStage,
    images: &BTreeMap<String, String>,
    readiness: &Readiness,
    events: Events,
) -> Result<()> {
    apply_up_with_proxy(engine, spec, plan, observed, images, readiness, events, None).await
}

/// `apply_up` where routed services are replaced through the stage's proxy (start-before-stop).
#[allow(clippy::too_many_arguments)]
pub async fn apply_up_with_proxy(
    engine: &Engine,
    spec: &StageSpec,
    plan: &Plan,
    observed: &ObservedStage,
    images: &BTreeMap<String, String>,
    readiness: &Readiness,
    events: Events,
    proxy: Option<Arc<crate::proxy::Proxy>>,
) -> Result<()> {
    create_shared(engine, spec, plan, observed, &events).await?;
    if let Some(proxy) = &proxy {
        proxy.ensure(&events).await?;
    }

    let mut tasks = tokio::task::JoinSet::new();
    for svc in &spec.services {
        let deps: Vec<watch::Receiver<Option<bool>>> =
            svc.depends_on.iter().map(|d| readiness.signal(d).map(watch::Sender::subscribe)).collect::<Result<_>>()?;
        let done = readiness.signal(&svc.name)?.clone();
        let job = ServiceJob {
            engine: engine.clone(),
            spec: spec.clone(),
            service: svc.clone(),
            decision: plan.decisions.get(&svc.name).cloned().unwrap_or(Decision::Keep),
            hash: ConfigHash::of(svc, images.get(&svc.image).map_or("", String::as_str)),
            existing: observed.container(&svc.name).map(|c| (c.id.clone(), c.health.clone())),
            waited_on: readiness.waited_on.contains(&svc.name),
            events: events.clone(),
            proxy: proxy.clone(),
        };
        tasks.spawn(async move {
            for mut rx in deps {
                let ok = rx.wait_for(Option::is_some).await.map(|v| *v == Some(true)).unwrap_or(false);
                if !ok {
                    done.send_replace(Some(false));
                    return Err(Skipped);
                }
            }
            let result = job.run(&done).await;
            // Ready may already have been signalled before a failed settle check.
            done.send_if_modified(|v| {
                let unset = v.is_none();
                if unset {
                    *v = Some(result.is_ok());
                }
                unset
            });
            result.map_err(Failed)
        });
    }
    let mut failures = join_failures(tasks).await;
    if let (Some(proxy), true) = (&proxy, failures.is_empty()) {
        proxy.finish().await?;
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        _ => Err(Error::failed(failures.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))),
    }
}

/// The stage's network and volumes made, and orphans removed, before any service starts.
async fn create_shared(
    engine: &Engine,
    spec: &StageSpec,
    plan: &Plan,
    observed: &ObservedStage,
    events: &Events,
) -> Result<()> {
    // Two servers of a stage may be one engine (a host given twice): networks and volumes are
    // looked up again and made one run at a time, so the engine never holds two of a name.
    static PRELUDE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = PRELUDE.lock().await;
    for action in &plan.actions {
        match action {
            Action::CreateNetwork { .. } if !engine.network_to_create(spec).await? => {}
            Action::CreateVolume { name } if engine.volume_is_ours(spec, name).await? => {}
            Action::CreateNetwork { name } => {
                events(Event::Applying(action.clone()));
                let req = bollard::models::NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(super::labels::owner(spec)),
                    ..Default::default()
                };
                engine
                    .docker
                    .create_network(req)
                    .await
                    .map_err(|e| Error::engine(format!("creating network {name}"), e))?;
            }
            Action::CreateVolume { name } => {
                events(Event::Applying(action.clone()));
                let req = bollard::models::VolumeCreateRequest {
                    name: Some(name.clone()),
                    labels: Some(super::labels::owner(spec)),
                    ..Default::default()
                };
                engine
                    .docker
                    .create_volume(req)
                    .await
                    .map_err(|e| Error::engine(format!("creating volume {name}"), e))?;
            }
            Action::RemoveContainer { service, orphan: true } => {
                events(Event::Applying(action.clone()));
                if let Some(c) = observed.containers.iter().find(|c| &c.service == service) {
                    remove(engine, &c.id, &c.name).await?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every service task joined: the errors of those that failed (a skipped one is not a failure).
async fn join_failures(mut tasks: tokio::task::JoinSet<std::result::Result<(), TaskEnd>>) -> Vec<Error> {
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) | Ok(Err(Skipped)) => {}
            Ok(Err(Failed(e))) => failures.push(e),
            Err(e) => failures.push(Error::failed(format!("internal task failed: {e}"))),
        }
    }
    failures
}

/// Why a service task ended without success.
enum TaskEnd {
    Skipped,
    Failed(Error),
}
use TaskEnd::{Failed, Skipped};

pub(crate) struct ServiceJob {
    pub(crate) engine: Engine,
    pub(crate) spec: StageSpec,
    pub(crate) service: Service,
    pub(crate) decision: Decision,
    hash: ConfigHash,
    /// Current container id and health, when one exists.
    pub(crate) existing: Option<(String, Option<String>)>,
    /// Someone depends on it, so "started" is not enough for them: wait for ready.
    pub(crate) waited_on: bool,
    pub(crate) events: Events,
    /// A routed service is replaced through the proxy: start-before-stop, health-gated.
    proxy: Option<Arc<crate::proxy::Proxy>>,
}

impl ServiceJob {
    fn context(&self) -> String {
        format!("service {} ({})", self.service.name, self.spec.container_name(&self.service.name))
    }

    async fn run(&self, ready: &watch::Sender<Option<bool>>) -> Result<()> {
        if let Some(proxy) = self.proxy.as_ref().filter(|_| !self.service.routes.is_empty()) {
            return crate::proxy::deploy(self, proxy, ready).await;
        }
        let name = self.service.name.clone();
        let container = self.spec.container_name(&name);
        let (id, start_took) = match &self.decision {
            Decision::Keep => {
                let (id, health) = self.existing.clone().expect("keep implies a container");
                // Already up: only a dependent's wait may need its health to settle.
                if self.service.healthcheck.is_some() && health.as_deref() != Some("healthy") && self.waited_on {
                    self.wait_ready(&id, None).await?;
                }
                return Ok(());
            }
            Decision::Create => {
                (self.events)(Event::Applying(Action::CreateContainer { service: name.clone() }));
                let id = self.create(&container).await?;
                let took = self.timed_start(&id).await?;
                (id, took)
            }
            Decision::Recreate(reason) => {
                (self.events)(Event::Applying(Action::RecreateContainer {
                    service: name.clone(),
                    reason: reason.clone(),
                }));
                if let Some((old, _)) = &self.existing {
                    stop(&self.engine, old, &container).await?;
                    remove(&self.engine, old, &container).await?;
                }
                let id = self.create(&container).await?;
                let took = self.timed_start(&id).await?;
                (id, took)
            }
            Decision::Start => {
                (self.events)(Event::Applying(Action::StartContainer { service: name.clone() }));
                let (id, _) = self.existing.clone().expect("start implies a container");
                let took = self.timed_start(&id).await?;
                (id, took)
            }
        };
        let started = Instant::now();
        let restarts = self.wait_ready(&id, None).await?;
        // Dependents go ahead now; this service still has to stay up through the settle window:
        // at least as long as the engine took to start it, since a loaded engine also tells of
        // an exit that late (a crash loop must never pass for a start).
        ready.send_replace(Some(true));
        if !self.service.oneshot {
            tokio::time::sleep(SETTLE.max(start_took).saturating_sub(started.elapsed())).await;
            self.wait_ready(&id, Some(restarts)).await?;
        }
        Ok(())
    }

    /// `start`, and how long the engine took to answer it.
    async fn timed_start(&self, id: &str) -> Result<Duration> {
        let asked = Instant::now();
        self.start(id).await?;
        Ok(asked.elapsed())
    }

    pub(crate) async fn create(&self, container: &str) -> Result<String> {
        let body = create_body(&self.spec, &self.service, &self.hash);
        let opts = CreateContainerOptionsBuilder::new().name(container).build();
        match self.engine.docker.create_container(Some(opts), body).await {
            Ok(r) => Ok(r.id),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => Err(Error::failed_help(
                format!(
                    "{}: a container named {container} already exists and was not created by fleet for this stage",
                    self.context()
                ),
                "fleet never removes containers it does not own: rename or remove that container yourself",
            )),
            Err(e) => Err(Error::engine(format!("creating {}", self.context()), e)),
        }
    }

    pub(crate) async fn start(&self, id: &str) -> Result<()> {
        match self.engine.docker.start_container(id, None::<StartContainerOptions>).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_modified(&e) => Ok(()),
            Err(e) => Err(Error::engine(format!("starting {}", self.context()), e)),
        }
    }

    /// Running (healthy with a healthcheck), or exited 0 for a one-shot. Fails with the
    /// container's last log lines otherwise, so a crash right after start is never "success";
    /// under a restart policy a crash shows as a restart, so a restart count above
    /// `restarts_before` (or a container caught restarting) is a crash too.
    /// Returns the restart count seen when ready.
    pub(crate) async fn wait_ready(&self, id: &str, restarts_before: Option<i64>) -> Result<i64> {
        let started = Instant::now();
        let patience = if self.service.oneshot {
            ONESHOT_PATIENCE
        } else {
            Duration::from_millis(self.service.healthcheck.as_ref().map_or(0, |h| h.patience_ms()))
        };
        let mut announced = false;
        loop {
            let inspect = self
                .engine
                .docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
                .map_err(|e| Error::engine(self.context(), e))?;
            let state = inspect.state.unwrap_or_default();
            let running = state.running.unwrap_or(false);
            let exit = state.exit_code.unwrap_or(0);
            let restarts = inspect.restart_count.unwrap_or(0);
            let restarted = state.restarting.unwrap_or(false) || restarts > restarts_before.unwrap_or(restarts);
            if restarted {
                let logs = self.last_logs(id).await;
                return Err(Error::failed_help(
                    format!(
                        "service {} keeps restarting: it exited with code {exit} after start\n{logs}",
                        self.service.name
                    ),
                    format!("see the whole output with `fleet logs {} -s {}`", self.spec.name, self.service.name),
                ));
            }
            if !running {
                if self.service.oneshot && exit == 0 {
                    if announced {
                        (self.events)(Event::Ready { service: self.service.name.clone() });
                    }
                    return Ok(restarts);
                }
                let logs = self.last_logs(id).await;
                let what = if self.service.oneshot { "one-shot service" } else { "service" };
                return Err(Error::failed_help(
                    format!("{what} {} exited with code {exit} after start\n{logs}", self.service.name),
                    format!("see the whole output with `fleet logs {} -s {}`", self.spec.name, self.service.name),
                ));
            }
            let health = state.health.as_ref().and_then(|h| h.status).map(|s| s.to_string());
            match (self.service.oneshot, self.service.healthcheck.is_some(), health.as_deref()) {
                (false, false, _) => return Ok(restarts),
                (false, true, Some("healthy")) => {
                    if announced {
                        (self.events)(Event::Ready { service: self.service.name.clone() });
                    }
                    return Ok(restarts);
                }
                (false, true, Some("unhealthy")) => {
                    let last = last_health_output(&state);
                    return Err(Error::failed_help(
                        format!("service {} is unhealthy; last health check said: {last}", self.service.name),
                        "fix the service or its healthcheck test, then run up again",
                    ));
                }
                _ => {}
            }
            if !announced {
                let until = if self.service.oneshot { "completed" } else { "healthy" };
                (self.events)(Event::Waiting { service: self.service.name.clone(), until });
                announced = true;
            }
            if started.elapsed() > patience {
                let last = last_health_output(&state);
                let what = if self.service.oneshot { "to complete" } else { "to become healthy" };
                return Err(Error::failed(format!(
                    "service {} did not get {what} within {}s; last health check said: {last}",
                    self.service.name,
                    patience.as_secs()
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn last_logs(&self, id: &str) -> String {
        let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).tail(FAILURE_LOG_LINES).build();
        let lines: Vec<String> = self
            .engine
            .docker
            .logs(id, Some(opts))
            .filter_map(|r| async move { r.ok().map(|l| l.to_string()) })
            .collect()
            .await;
        let text = lines.concat();
        if text.trim().is_empty() {
            "(no output)".into()
        } else {
            text.lines().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
        }
    }
}

fn last_health_output(state: &bollard::models::ContainerState) -> String {
    state
        .health
        .as_ref()
        .and_then(|h| h.log.as_ref())
        .and_then(|l| l.last())
        .map(|r| format!("exit {} {}", r.exit_code.unwrap_or(-1), r.output.clone().unwrap_or_default().trim()))
        .unwrap_or_else(|| "(no health check has run yet)".into())
}

pub(crate) async fn stop(engine: &Engine, id: &str, name: &str) -> Result<()> {
    // No `t`: the engine uses the container's own StopTimeout, set from `stop_timeout`.
    match engine.docker.stop_container(id, None::<StopContainerOptions>).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_modified(&e) || is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::engine(format!("stopping container {name}"), e)),
    }
}

pub(crate) async fn remove(engine: &Engine, id: &str, name: &str) -> Result<()> {
    let opts = RemoveContainerOptionsBuilder::new().force(true).build();
    match engine.docker.remove_container(id, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::engine(format!("removing container {name}"), e)),
    }
}

/// Applies a `down` plan: stops level by level in reverse dependency order, in parallel
/// within a level, so the wall time is bounded by depth × grace period, not by service count.
pub async fn apply_down(
    engine: &Engine,
    spec: &StageSpec,
    plan: &Plan,
    observed: &ObservedStage,
    events: Events,
) -> Result<()> {
    let removing = plan.actions.iter().any(|a| matches!(a, Action::RemoveContainer { .. }));
    let orphans: Vec<String> = plan.orphans.clone();
    let levels = std::iter::once(orphans).chain(graph::levels(&spec.services).into_iter().rev());
    for level in levels {
        let stops = level.iter().filter_map(|service| {
            let c = observed.container(service)?;
            let planned_stop = plan.actions.contains(&Action::StopContainer { service: service.clone() });
            if !(planned_stop || (removing && c.state.is_running())) {
                return None;
            }
            if planned_stop {
                events(Event::Applying(Action::StopContainer { service: service.clone() }));
            }
            Some(stop(engine, &c.id, &c.name))
        });
        futures_util::future::try_join_all(stops).await?;
    }
    let removals = plan.actions.iter().filter_map(|a| match a {
        Action::RemoveContainer { service, .. } => {
            let c = observed.container(service)?;
            events(Event::Applying(a.clone()));
            Some(remove(engine, &c.id, &c.name))
        }
        _ => None,
    });
    futures_util::future::try_join_all(removals).await?;
    for action in &plan.actions {
        match action {
            Action::RemoveNetwork { name } => {
                events(Event::Applying(action.clone()));
                match engine.docker.remove_network(name).await {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    // Someone else's container is still attached: keep the network, say so.
                    Err(bollard::errors::Error::DockerResponseServerError { status_code: 403 | 409, message }) => {
                        events(Event::Warning(format!("network {name} kept: {message}")));
                    }
                    Err(e) => return Err(Error::engine(format!("removing network {name}"), e)),
                }
            }
            Action::RemoveVolume { name } => {
                events(Event::Applying(action.clone()));
                match engine.docker.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>).await {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(Error::engine(format!("removing volume {name}"), e)),
                }
            }
            _ => {}
        }
    }
    Ok(())
}
