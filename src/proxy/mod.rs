//! The per-server proxy (Caddy) in front of routed services: its configuration from the stage's
//! routes (`caddy.rs`, pure), its container, and the health-gated switch between a service's old
//! and new container (`deploy.rs`).
//!
//! The proxy is a container `{project}-{stage}-proxy` on the stage network, publishing 80 and 443
//! (on 127.0.0.1 for a local stage), its certificates on the volume `{project}-{stage}-proxy-data`
//! at `/data`, so converged runs, down/up and suspend/up never re-issue. Its admin endpoint listens
//! on loopback inside the container; fleet reaches it only through the Engine API (an exec of
//! `caddy reload` in the container), never through a published port.

mod archive;
pub mod caddy;
mod certificate;
mod deploy;

pub(crate) use deploy::deploy;

use crate::engine::{Engine, Event, Events, SideContainer, StageView, labels};
use crate::error::{Error, Result};
use crate::model::{ProxySettings, ProxyTls, Route, StageSpec};
use crate::plan::{Action, Decision, Leftover, ObservedContainer, ObservedStage, Plan};
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, StopContainerOptions, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Marks the proxy container (it has no `fleetflow.service` label: it is no service of the file).
pub const PROXY_LABEL: &str = "fleetflow.proxy";
/// What the proxy container was made from (image, published ports): a change recreates it.
const SHAPE_LABEL: &str = "fleetflow.proxy-shape";
/// A just-started Caddy takes a moment before its admin endpoint answers a reload.
const RELOAD_PATIENCE: Duration = Duration::from_secs(15);
const RELOAD_RETRY: Duration = Duration::from_millis(200);

/// The proxy settings a stage runs with: its `proxy` block, else the defaults for its kind.
pub fn settings(spec: &StageSpec) -> ProxySettings {
    spec.proxy.as_deref().cloned().unwrap_or_else(|| ProxySettings::defaults(spec.is_local()))
}

/// Every route of the stage with its service, in file order.
pub fn routes(spec: &StageSpec) -> Vec<(String, Route)> {
    spec.services.iter().flat_map(|s| s.routes.iter().map(|r| (s.name.clone(), r.clone()))).collect()
}

/// Some service of this (part of the) stage is served through the proxy.
pub fn is_routed(spec: &StageSpec) -> bool {
    spec.services.iter().any(|s| !s.routes.is_empty())
}

pub fn container_name(spec: &StageSpec) -> String {
    spec.container_name("proxy")
}

pub fn volume_name(spec: &StageSpec) -> String {
    spec.volume_name("proxy-data")
}

/// The proxy container as found on one engine.
#[derive(Debug, Clone, Default)]
pub struct ObservedProxy {
    pub id: Option<String>,
    pub running: bool,
    pub shape: Option<String>,
    /// The configuration file fleet last wrote into it.
    pub config: Option<serde_json::Value>,
}

/// The image and published ports: what the container is made from.
fn shape(spec: &StageSpec, settings: &ProxySettings) -> String {
    let ip = host_ip(spec);
    let https = if settings.tls == ProxyTls::Off { 0 } else { settings.https_port };
    format!("{} {ip}:{}/{https}", settings.image, settings.http_port)
}

/// A local stage's proxy answers this machine only; a server's answers the world.
fn host_ip(spec: &StageSpec) -> &'static str {
    if spec.is_local() { "127.0.0.1" } else { "0.0.0.0" }
}

pub async fn observe(engine: &Engine, spec: &StageSpec) -> Result<ObservedProxy> {
    let filters = std::collections::HashMap::from([(
        "label",
        vec![
            format!("{}={}", labels::PROJECT, spec.project),
            format!("{}={}", labels::STAGE, spec.name),
            format!("{PROXY_LABEL}=true"),
        ],
    )]);
    let opts = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let list = engine.docker.list_containers(Some(opts)).await.map_err(|e| Error::engine("listing the proxy", e))?;
    Ok(observe_beside(engine, &list.into_iter().map(SideContainer::from).collect::<Vec<_>>()).await)
}

/// The proxy among a stage's side containers, as `Engine::observe_with_side` found them (no
/// list of its own); its configuration is read only when there is one.
pub async fn observe_beside(engine: &Engine, side: &[SideContainer]) -> ObservedProxy {
    let Some(c) = side.iter().find(|c| c.label(PROXY_LABEL) == Some("true")) else {
        return ObservedProxy::default();
    };
    ObservedProxy {
        running: c.running,
        shape: c.label(SHAPE_LABEL).map(str::to_string),
        config: read_config(engine, &c.id).await,
        id: Some(c.id.clone()),
    }
}

/// The configuration file in the proxy container; None when it cannot be read (then it is rewritten).
async fn read_config(engine: &Engine, id: &str) -> Option<serde_json::Value> {
    let opts = DownloadFromContainerOptionsBuilder::new().path(caddy::CONFIG_PATH).build();
    let mut stream = engine.docker.download_from_container(id, Some(opts));
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar.extend_from_slice(&chunk.ok()?);
    }
    serde_json::from_slice(&archive::first_file(&tar)?).ok()
}

/// The name a routed service's next container gets: the other of `{name}` and `{name}-next`, so
/// the new one starts beside the old one.
pub fn next_name(spec: &StageSpec, service: &str, current: Option<&str>) -> String {
    let base = spec.container_name(service);
    match current {
        Some(c) if c == base => format!("{base}-next"),
        _ => base,
    }
}

/// Which container each routed service will run in once the plan is applied.
fn upstreams_after(spec: &StageSpec, plan: &Plan, observed: &ObservedStage) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for svc in spec.services.iter().filter(|s| !s.routes.is_empty()) {
        let current = observed.container(&svc.name).map(|c| c.name.as_str());
        let name = match plan.decisions.get(&svc.name) {
            Some(Decision::Create) => next_name(spec, &svc.name, None),
            Some(Decision::Recreate(_)) => next_name(spec, &svc.name, current),
            _ => match current {
                Some(c) => c.to_string(),
                None => continue,
            },
        };
        out.insert(svc.name.clone(), name);
    }
    out
}

/// The proxy's steps of an `up` plan: create, recreate or start its container; load the routes.
pub fn plan(spec: &StageSpec, proxy: &ObservedProxy, plan: &Plan, observed: &ObservedStage) -> Vec<Action> {
    let settings = settings(spec);
    let mut actions = Vec::new();
    let shape = shape(spec, &settings);
    match (&proxy.id, proxy.shape.as_deref() == Some(shape.as_str()), proxy.running) {
        (None, ..) => actions.push(Action::CreateProxy { image: settings.image.clone() }),
        (Some(_), false, _) => actions.push(Action::RecreateProxy { reason: format!("now {shape}") }),
        (Some(_), true, false) => actions.push(Action::StartProxy),
        (Some(_), true, true) => {}
    }
    let targets = caddy::targets(&routes(spec), &upstreams_after(spec, plan, observed));
    let wanted = caddy::config(&settings, &targets);
    if proxy.config.as_ref() != Some(&wanted) || !actions.is_empty() {
        let routes = targets
            .iter()
            .map(|t| format!("{}{} → {}", t.route.host, t.route.path.as_deref().unwrap_or(""), t.service))
            .collect();
        actions.push(Action::ConfigureProxy { routes });
    }
    actions
}

/// The proxy of one engine's part of a stage while an `up` applies: it knows which container
/// each routed service runs in and loads the whole configuration on every change.
pub struct Proxy {
    engine: Engine,
    spec: StageSpec,
    settings: ProxySettings,
    observed: ObservedProxy,
    state: tokio::sync::Mutex<State>,
}

struct State {
    id: Option<String>,
    upstreams: BTreeMap<String, String>,
    /// The configuration the proxy runs now.
    loaded: Option<serde_json::Value>,
}

impl Proxy {
    /// Starts from what runs: each routed service's observed container.
    pub fn new(engine: &Engine, spec: &StageSpec, observed_proxy: ObservedProxy, observed: &ObservedStage) -> Self {
        let upstreams = spec
            .services
            .iter()
            .filter(|s| !s.routes.is_empty())
            .filter_map(|s| Some((s.name.clone(), observed.container(&s.name)?.name.clone())))
            .collect();
        let state = State { id: observed_proxy.id.clone(), upstreams, loaded: observed_proxy.config.clone() };
        Self {
            engine: engine.clone(),
            spec: spec.clone(),
            settings: settings(spec),
            observed: observed_proxy,
            state: tokio::sync::Mutex::new(state),
        }
    }

    pub fn spec(&self) -> &StageSpec {
        &self.spec
    }

    fn wanted(&self, upstreams: &BTreeMap<String, String>) -> serde_json::Value {
        caddy::config(&self.settings, &caddy::targets(&routes(&self.spec), upstreams))
    }

    /// The proxy container exists, runs the current shape, and serves the current routes.
    /// Runs after the stage network exists and before any routed service is touched.
    pub async fn ensure(&self, events: &Events) -> Result<()> {
        let mut state = self.state.lock().await;
        let shape = shape(&self.spec, &self.settings);
        let fresh = match (&state.id, self.observed.shape.as_deref() == Some(shape.as_str())) {
            (Some(id), false) => {
                events(Event::Applying(Action::RecreateProxy { reason: format!("now {shape}") }));
                crate::engine::remove_container(&self.engine, id, &container_name(&self.spec)).await?;
                true
            }
            (None, _) => {
                events(Event::Applying(Action::CreateProxy { image: self.settings.image.clone() }));
                true
            }
            (Some(_), true) => false,
        };
        if fresh {
            state.id = Some(self.create(&shape, events).await?);
            state.loaded = None;
        }
        let id = state.id.clone().unwrap_or_default();
        let wanted = self.wanted(&state.upstreams);
        if fresh || !self.observed.running {
            self.upload(&id, &wanted).await?;
            if !fresh {
                events(Event::Applying(Action::StartProxy));
            }
            self.engine
                .docker
                .start_container(&id, None::<bollard::query_parameters::StartContainerOptions>)
                .await
                .map_err(|e| Error::engine(format!("starting the proxy {}", container_name(&self.spec)), e))?;
            // Not marked loaded: the reload below (retried until the admin endpoint answers)
            // confirms the just-started proxy serves before `up` goes on or returns.
            state.loaded = None;
        }
        self.load_locked(&mut state, wanted).await
    }

    /// Points a service's routes at a container, in one atomic load of the whole configuration.
    pub async fn switch(&self, service: &str, container: &str) -> Result<()> {
        let mut state = self.state.lock().await;
        state.upstreams.insert(service.to_string(), container.to_string());
        let wanted = self.wanted(&state.upstreams);
        self.load_locked(&mut state, wanted).await
    }

    /// After every service: the proxy serves exactly the file's routes (a route edited in the
    /// file, with no container to replace, lands here).
    pub async fn finish(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        let wanted = self.wanted(&state.upstreams);
        self.load_locked(&mut state, wanted).await
    }

    async fn load_locked(&self, state: &mut State, wanted: serde_json::Value) -> Result<()> {
        if state.loaded.as_ref() == Some(&wanted) {
            return Ok(());
        }
        let id = state.id.clone().unwrap_or_default();
        self.upload(&id, &wanted).await?;
        let started = Instant::now();
        loop {
            let (code, output) = self.exec(&id, &["caddy", "reload", "--config", caddy::CONFIG_PATH]).await?;
            if code == 0 {
                break;
            }
            if started.elapsed() > RELOAD_PATIENCE {
                return Err(Error::failed(format!(
                    "the proxy {} refused its configuration: {}",
                    container_name(&self.spec),
                    output.trim()
                )));
            }
            tokio::time::sleep(RELOAD_RETRY).await;
        }
        state.loaded = Some(wanted);
        Ok(())
    }

    async fn create(&self, shape: &str, events: &Events) -> Result<String> {
        let name = container_name(&self.spec);
        if self.engine.docker.inspect_image(&self.settings.image).await.is_err() {
            self.engine.pull_or_copy(&self.settings.image, events).await?;
        }
        if !self.engine.volume_is_ours(&self.spec, &volume_name(&self.spec)).await? {
            let req = bollard::models::VolumeCreateRequest {
                name: Some(volume_name(&self.spec)),
                labels: Some(labels::owner(&self.spec)),
                ..Default::default()
            };
            self.engine
                .docker
                .create_volume(req)
                .await
                .map_err(|e| Error::engine(format!("creating volume {}", volume_name(&self.spec)), e))?;
        }
        let body = self.create_body(shape);
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        let id = match self.engine.docker.create_container(Some(opts), body).await {
            Ok(r) => r.id,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
                return Err(Error::failed_help(
                    format!("a container named {name} already exists and is not this stage's proxy"),
                    "fleet never removes containers it does not own: rename or remove that container yourself",
                ));
            }
            Err(e) => return Err(Error::engine(format!("creating the proxy {name}"), e)),
        };
        if let Some(root) = self.ca_root()? {
            let tar = archive::tar_of(&[("fleet-ca-root.pem", &root)]);
            self.put(&id, "/etc/caddy", tar).await?;
        }
        Ok(id)
    }

    fn ca_root(&self) -> Result<Option<Vec<u8>>> {
        let ProxyTls::Acme(acme) = &self.settings.tls else { return Ok(None) };
        let Some(path) = &acme.ca_root else { return Ok(None) };
        std::fs::read(path)
            .map(Some)
            .map_err(|e| Error::io(format!("reading the proxy's ca_root {}", path.display()), e))
    }

    fn create_body(&self, shape: &str) -> ContainerCreateBody {
        let ip = host_ip(&self.spec).to_string();
        let mut ports = vec![("80/tcp".to_string(), self.settings.http_port)];
        if self.settings.tls != ProxyTls::Off {
            ports.push(("443/tcp".to_string(), self.settings.https_port));
        }
        let bindings = ports
            .iter()
            .map(|(k, p)| {
                (k.clone(), Some(vec![PortBinding { host_ip: Some(ip.clone()), host_port: Some(p.to_string()) }]))
            })
            .collect();
        let mut container_labels = labels::owner(&self.spec);
        container_labels.insert(PROXY_LABEL.into(), "true".into());
        container_labels.insert(SHAPE_LABEL.into(), shape.to_string());
        container_labels.insert(labels::COMPOSE_PROJECT.into(), self.spec.network_name());
        container_labels.insert(labels::COMPOSE_SERVICE.into(), "proxy".into());
        ContainerCreateBody {
            image: Some(self.settings.image.clone()),
            cmd: Some(["caddy", "run", "--config", caddy::CONFIG_PATH].map(String::from).to_vec()),
            labels: Some(container_labels),
            exposed_ports: Some(ports.iter().map(|(k, _)| k.clone()).collect()),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                binds: Some(vec![format!("{}:/data", volume_name(&self.spec))]),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                network_mode: Some(self.spec.network_name()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn upload(&self, id: &str, config: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_vec_pretty(config).map_err(|e| Error::failed(format!("proxy configuration: {e}")))?;
        self.put(id, "/etc/caddy", archive::tar_of(&[("fleet.json", &text)])).await
    }

    async fn put(&self, id: &str, dir: &str, tar: Vec<u8>) -> Result<()> {
        let opts = UploadToContainerOptionsBuilder::new().path(dir).build();
        self.engine.docker.upload_to_container(id, Some(opts), bollard::body_full(tar.into())).await.map_err(|e| {
            Error::engine(format!("writing the configuration of the proxy {}", container_name(&self.spec)), e)
        })
    }

    /// Runs a command in the proxy container: its exit code and its output (stdout and stderr).
    pub(crate) async fn exec(&self, id: &str, argv: &[&str]) -> Result<(i64, String)> {
        exec(&self.engine, id, argv).await.map_err(|e| {
            Error::engine(format!("running `{}` in the proxy {}", argv.join(" "), container_name(&self.spec)), e)
        })
    }

    pub(crate) async fn id(&self) -> String {
        self.state.lock().await.id.clone().unwrap_or_default()
    }
}

async fn exec(engine: &Engine, id: &str, argv: &[&str]) -> std::result::Result<(i64, String), bollard::errors::Error> {
    let config = bollard::exec::CreateExecOptions {
        cmd: Some(argv.iter().map(|s| s.to_string()).collect::<Vec<String>>()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let created = engine.docker.create_exec(id, config).await?;
    let mut output = String::new();
    if let bollard::exec::StartExecResults::Attached { output: mut stream, .. } =
        engine.docker.start_exec(&created.id, None).await?
    {
        while let Some(chunk) = stream.next().await {
            output.push_str(&chunk?.to_string());
        }
    }
    Ok((engine.exec_exit_code(&created.id).await?, output))
}

/// Read-only, before an `up` is planned: the leftovers among the containers of the `up`'s own
/// observation (`Engine::observe_with_side`), so finding them lists nothing. The proxy's
/// configuration (its container is among `view.side`) is read only when some routed service has
/// two containers: every `up` but the one after a kill reads nothing more. The plan is made
/// without the leftovers and the run removes them only once its gate passed.
pub async fn leftovers(engine: &Engine, spec: &StageSpec, view: &StageView) -> Vec<Leftover> {
    let containers = &view.observed.containers;
    if !spec
        .services
        .iter()
        .any(|s| !s.routes.is_empty() && containers.iter().filter(|c| c.service == s.name).count() > 1)
    {
        return Vec::new();
    }
    let proxy = observe_beside(engine, &view.side).await;
    leftovers_among(spec, containers, proxy.config.as_ref())
}

/// Of two containers of one routed service, the one the proxy's `config` points at stays, the
/// other is a leftover; without a config (or one naming neither), the newest stays. Pure.
pub fn leftovers_among(
    spec: &StageSpec,
    containers: &[ObservedContainer],
    config: Option<&serde_json::Value>,
) -> Vec<Leftover> {
    let pointed = config.map(caddy::upstreams_in).unwrap_or_default();
    let mut out = Vec::new();
    for svc in spec.services.iter().filter(|s| !s.routes.is_empty()) {
        let mut mine: Vec<_> = containers.iter().filter(|c| c.service == svc.name).collect();
        if mine.len() < 2 {
            continue;
        }
        mine.sort_by_key(|c| std::cmp::Reverse(c.created));
        let keep = pointed.get(&svc.name).and_then(|p| mine.iter().find(|c| &c.name == p)).copied().unwrap_or(mine[0]);
        out.extend(mine.iter().filter(|c| c.id != keep.id).map(|c| Leftover {
            service: svc.name.clone(),
            id: c.id.clone(),
            container: c.name.clone(),
            keeps: keep.name.clone(),
        }));
    }
    out
}

/// Removes the leftovers found by [`leftovers`].
pub async fn remove_leftovers(engine: &Engine, leftovers: &[Leftover], events: &Events) -> Result<()> {
    for c in leftovers {
        events(Event::Warning(format!(
            "service {}: removing {} left by an interrupted replacement ({} serves)",
            c.service, c.container, c.keeps
        )));
        crate::engine::remove_container(engine, &c.id, &c.container).await?;
    }
    Ok(())
}

/// The proxy container as `down` and a route-less `up` see it: which one, and whether it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenProxy {
    pub id: String,
    pub running: bool,
}

impl ObservedProxy {
    /// The container, if this stage has one (found by its ownership labels only).
    pub fn seen(&self) -> Option<SeenProxy> {
        self.id.as_ref().map(|id| SeenProxy { id: id.clone(), running: self.running })
    }
}

/// `down`'s steps for the proxy (pure): it stops with its stage; `--destroy` removes it (its
/// certificate volume goes only with `--volumes`, like every volume of the stage, or with the
/// server it lives on).
pub fn plan_down(proxy: Option<&SeenProxy>, destroy: bool) -> Vec<Action> {
    match (proxy, destroy) {
        (None, _) => vec![],
        (Some(_), true) => vec![Action::RemoveProxy],
        (Some(p), false) if p.running => vec![Action::StopProxy],
        (Some(_), false) => vec![],
    }
}

/// `up` of a part of a stage that routes nothing (any more): the file is the truth, so a proxy
/// left from earlier routes goes (pure). Its certificate volume stays: routes that come back
/// reuse its certificates instead of asking the issuer again.
pub fn plan_retire(proxy: Option<&SeenProxy>) -> Vec<Action> {
    proxy.map(|_| vec![Action::RemoveProxy]).unwrap_or_default()
}

/// Applies one planned proxy step (`StopProxy` or `RemoveProxy`) to the container `id`, the
/// very one observed when the plan was made. Other actions are not the proxy's to apply here.
pub async fn apply(engine: &Engine, spec: &StageSpec, id: &str, action: &Action, events: &Events) -> Result<()> {
    let name = container_name(spec);
    match action {
        Action::RemoveProxy => {
            events(Event::Applying(Action::RemoveProxy));
            crate::engine::remove_container(engine, id, &name).await
        }
        Action::StopProxy => {
            events(Event::Applying(Action::StopProxy));
            match engine.docker.stop_container(id, None::<StopContainerOptions>).await {
                Ok(()) => Ok(()),
                Err(e) if crate::engine::is_not_found(&e) || crate::engine::is_not_modified(&e) => Ok(()),
                Err(e) => Err(Error::engine(format!("stopping the proxy {name}"), e)),
            }
        }
        other => Err(Error::failed(format!("the proxy {name}: {other:?} is not a step of down or retire"))),
    }
}

/// The running container's name of an id (for messages).
pub(crate) async fn name_of(engine: &Engine, id: &str) -> Option<String> {
    let inspect = engine.docker.inspect_container(id, None::<InspectContainerOptions>).await.ok()?;
    inspect.name.map(|n| n.trim_start_matches('/').to_string())
}

/// DNS for routes: each route host inside the zone of the server that runs its service becomes
/// one more alias of that server (a CNAME to its hostname), so the existing record layer creates,
/// shows and deletes it like any alias. A host outside the zone, the zone apex (no CNAME there)
/// and a name the server already has are left as they are. Pure; run when a stage is read.
pub fn add_route_names(spec: &mut StageSpec) {
    let wanted: Vec<(String, String)> = spec
        .services
        .iter()
        .flat_map(|s| s.routes.iter().map(move |r| (s.name.clone(), r.host.clone())))
        .filter_map(|(service, host)| Some((spec.server_of(&service)?.name.clone(), host)))
        .collect();
    for (server_name, host) in wanted {
        let Some(server) = spec.servers.iter_mut().find(|s| s.name == server_name) else { continue };
        let Some(dns) = server.dns.as_mut() else { continue };
        let Some(relative) = host.strip_suffix(&format!(".{}", dns.zone)) else { continue };
        if relative == dns.hostname || dns.aliases.iter().any(|a| a == relative) {
            continue;
        }
        dns.aliases.push(relative.to_string());
    }
}

/// `status`: each route of this engine's part of the stage, where the proxy sends it, and when
/// its certificate expires (read from the proxy's volume through the container).
pub async fn route_rows(engine: &Engine, spec: &StageSpec) -> Result<Vec<crate::report::RouteStatus>> {
    let proxy = observe(engine, spec).await?;
    let pointed = proxy.config.as_ref().map(caddy::upstreams_in).unwrap_or_default();
    let tls = settings(spec).tls != ProxyTls::Off;
    let mut rows = Vec::new();
    for (service, route) in routes(spec) {
        let certificate_expires = match (&proxy.id, tls && proxy.running) {
            (Some(id), true) => certificate_expiry(engine, id, &route.host).await,
            _ => None,
        };
        rows.push(crate::report::RouteStatus {
            route: format!("{}{}", route.host, route.path.as_deref().unwrap_or("")),
            container: pointed.get(&service).cloned(),
            service,
            certificate_expires,
        });
    }
    Ok(rows)
}

/// The expiry of the certificate the proxy keeps for `host`, whichever CA issued it.
async fn certificate_expiry(engine: &Engine, id: &str, host: &str) -> Option<String> {
    let script = r#"f=$(find /data/caddy/certificates -name "$1.crt" | head -n 1); [ -n "$f" ] && cat "$f""#;
    let (code, pem) = exec(engine, id, &["sh", "-c", script, "sh", host]).await.ok()?;
    (code == 0).then(|| certificate::expiry(&pem)).flatten()
}

#[cfg(test)]
mod tests {
    use crate::model::{DnsNames, DnsProvider, Route, Server, ServerProvider, Service, SshSettings, StageSpec};
    use std::collections::BTreeMap;

    fn server(name: &str, services: &[&str]) -> Server {
        Server {
            name: name.into(),
            provider: ServerProvider::Host { address: "10.0.0.1".into() },
            ssh: SshSettings { user: "u".into(), port: 22, identity: None },
            services: services.iter().map(|s| s.to_string()).collect(),
            dns: Some(DnsNames {
                provider: DnsProvider::Cloudflare,
                zone: "example.com".into(),
                hostname: name.into(),
                aliases: vec!["api".into()],
            }),
            manager: false,
            deploy_path: "/srv".into(),
        }
    }

    fn routed(name: &str, hosts: &[&str]) -> Service {
        let routes = hosts
            .iter()
            .map(|h| Route { host: h.to_string(), port: 80, path: None, health: "/up".into(), drain_ms: 0 })
            .collect();
        Service { name: name.into(), image: "x:1".into(), routes, ..Default::default() }
    }

    #[test]
    fn route_hosts_in_the_zone_become_aliases_of_the_server_running_the_service() {
        let mut spec = StageSpec {
            project: "p".into(),
            name: "prod".into(),
            services: vec![
                routed("web", &["shop.example.com", "example.com", "shop.other.org", "api.example.com"]),
                routed("admin", &["admin.example.com"]),
            ],
            servers: vec![server("web-1", &["web"]), server("admin-1", &["admin"])],
            ..Default::default()
        };
        super::add_route_names(&mut spec);
        let aliases = |i: usize| spec.servers[i].dns.as_ref().unwrap().aliases.clone();
        assert_eq!(aliases(0), vec!["api", "shop"]);
        assert_eq!(aliases(1), vec!["api", "admin"]);
        assert_eq!(super::next_name(&spec, "web", Some("p-prod-web")), "p-prod-web-next");
        assert_eq!(super::next_name(&spec, "web", Some("p-prod-web-next")), "p-prod-web");
        assert_eq!(super::next_name(&spec, "web", None), "p-prod-web");
    }

    fn local_stage() -> StageSpec {
        StageSpec {
            project: "p".into(),
            name: "local".into(),
            services: vec![routed("web", &["shop.test"])],
            ..Default::default()
        }
    }

    fn observed_web(name: &str) -> crate::plan::ObservedStage {
        crate::plan::ObservedStage {
            containers: vec![crate::plan::ObservedContainer {
                id: "id1".into(),
                name: name.into(),
                stage: "local".into(),
                service: "web".into(),
                state: crate::plan::RunState::Running,
                health: None,
                config_hash: None,
                field_hashes: Default::default(),
                image_id: None,
                created: 0,
                status_text: String::new(),
                ports: Vec::new(),
                environment: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn of_two_containers_of_a_routed_service_the_one_the_proxy_points_at_stays() {
        let spec = local_stage();
        let web = |id: &str, name: &str, created: i64| crate::plan::ObservedContainer {
            id: id.into(),
            name: name.into(),
            created,
            ..observed_web(name).containers.remove(0)
        };
        let old = web("old", "p-local-web", 100);
        let new = web("new", "p-local-web-next", 200);
        let leftover = |id: &str, name: &str, keeps: &str| super::Leftover {
            service: "web".into(),
            id: id.into(),
            container: name.into(),
            keeps: keeps.into(),
        };
        let both = [old.clone(), new.clone()];
        // No config (or one naming neither): the newest stays.
        assert_eq!(
            super::leftovers_among(&spec, &both, None),
            vec![leftover("old", "p-local-web", "p-local-web-next")]
        );
        // The proxy still points at the old one (the switch never happened): the new one goes.
        let settings = super::settings(&spec);
        let pointed = BTreeMap::from([("web".to_string(), "p-local-web".to_string())]);
        let config = super::caddy::config(&settings, &super::caddy::targets(&super::routes(&spec), &pointed));
        assert_eq!(
            super::leftovers_among(&spec, &both, Some(&config)),
            vec![leftover("new", "p-local-web-next", "p-local-web")]
        );
        // One container, or two of a service without routes: nothing to tidy.
        assert_eq!(super::leftovers_among(&spec, std::slice::from_ref(&old), Some(&config)), vec![]);
        let unrouted = StageSpec { services: vec![Service { name: "web".into(), ..Default::default() }], ..spec };
        assert_eq!(super::leftovers_among(&unrouted, &both, None), vec![]);
    }

    #[test]
    fn a_proxy_no_route_needs_is_removed_and_down_stops_or_removes_it() {
        use super::{SeenProxy, plan_down, plan_retire};
        use crate::plan::Action;
        let running = SeenProxy { id: "px".into(), running: true };
        let stopped = SeenProxy { id: "px".into(), running: false };
        assert_eq!(plan_retire(Some(&running)), vec![Action::RemoveProxy]);
        assert_eq!(plan_retire(Some(&stopped)), vec![Action::RemoveProxy]);
        assert_eq!(plan_retire(None), vec![]);
        assert_eq!(plan_down(Some(&running), false), vec![Action::StopProxy]);
        assert_eq!(plan_down(Some(&stopped), false), vec![]);
        assert_eq!(plan_down(Some(&stopped), true), vec![Action::RemoveProxy]);
        assert_eq!(plan_down(None, true), vec![]);
        let observed = super::ObservedProxy { id: Some("px".into()), running: true, ..Default::default() };
        assert_eq!(observed.seen(), Some(running));
        assert_eq!(super::ObservedProxy::default().seen(), None);
    }

    #[test]
    fn plan_creates_the_proxy_and_points_a_replacement_at_the_next_container() {
        use crate::plan::{Action, Decision, Plan};
        let spec = local_stage();
        let observed = observed_web("p-local-web");
        let mut plan = Plan::default();
        plan.decisions.insert("web".into(), Decision::Recreate("image updated".into()));
        let actions = super::plan(&spec, &super::ObservedProxy::default(), &plan, &observed);
        assert_eq!(
            actions,
            vec![
                Action::CreateProxy { image: "caddy:2".into() },
                Action::ConfigureProxy { routes: vec!["shop.test → web".into()] }
            ]
        );
        // The configuration it plans sends the route to the new container.
        let settings = super::settings(&spec);
        let wanted = super::upstreams_after(&spec, &plan, &observed);
        assert_eq!(wanted.get("web").map(String::as_str), Some("p-local-web-next"));
        // A running proxy of the same shape already serving that: nothing to do.
        let config = super::caddy::config(&settings, &super::caddy::targets(&super::routes(&spec), &wanted));
        let running = super::ObservedProxy {
            id: Some("px".into()),
            running: true,
            shape: Some(super::shape(&spec, &settings)),
            config: Some(config),
        };
        assert_eq!(super::plan(&spec, &running, &plan, &observed), vec![]);
        // Stopped: started (and its routes loaded); another image: recreated.
        let stopped = super::ObservedProxy { running: false, ..running.clone() };
        assert_eq!(super::plan(&spec, &stopped, &plan, &observed)[0], Action::StartProxy);
        let other = super::ObservedProxy { shape: Some("caddy:1 127.0.0.1:80/443".into()), ..running };
        assert!(matches!(super::plan(&spec, &other, &plan, &observed)[0], Action::RecreateProxy { .. }));
    }
}
