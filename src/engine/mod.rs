//! The container engine: Docker Engine API through bollard, for local and (tunnelled) remote hosts.

mod container_spec;
mod converge;
mod helper_image;
mod host_root;
pub mod labels;
mod logs;
pub mod swarm;
#[cfg(test)]
mod wire_tests;

pub use container_spec::create_body;
pub(crate) use converge::remove as remove_container;
pub use converge::{
    Event, Events, ImageCopy, PullPolicy, Readiness, ResolvedImages, apply_down, apply_up, apply_up_with_proxy,
};
pub(crate) use converge::{ServiceJob, stop as stop_container};
pub use helper_image::HELPER_IMAGE;
pub use logs::{LogLine, LogOptions, LogStream, stream_logs};

use crate::error::{Error, Result};
use crate::model::StageSpec;
use crate::plan::{ObservedContainer, ObservedStage, RunState};
use bollard::Docker;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// Long enough for the slowest call we make: a stop that waits out a service's grace period.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A connected engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    /// Where it is, for messages: `unix:///var/run/docker.sock`.
    pub endpoint: String,
    /// Where an image this engine cannot pull is copied from (this machine's engine, for a server).
    pub(crate) image_source: Option<Box<Engine>>,
}

impl Engine {
    /// This machine's engine; `DOCKER_HOST` is honoured.
    pub async fn connect_local() -> Result<Self> {
        let endpoint = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(&endpoint, e))?;
        Self::handshake(docker, endpoint).await
    }

    /// An engine behind a unix socket (e.g. an SSH-forwarded remote socket).
    pub async fn connect_unix(path: &std::path::Path, endpoint: String) -> Result<Self> {
        let docker =
            Docker::connect_with_unix(&path.to_string_lossy(), CLIENT_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)
                .map_err(|e| unreachable(&endpoint, e))?;
        Self::handshake(docker, endpoint).await
    }

    /// One `GET /_ping`: the engine is there and answers. No version negotiation: bollard sends
    /// every path unversioned (`/containers/json`, not `/v1.41/…`), so each engine answers in its
    /// own API version and the client's version never reaches the wire (engine/wire_tests.rs pins
    /// this). Negotiating cost a `GET /version`, the engine's slowest read: it asks containerd and
    /// runc for their versions (10-20 ms here under load, against under 1 ms for `/_ping`).
    async fn handshake(docker: Docker, endpoint: String) -> Result<Self> {
        let docker = docker.with_timeout(CLIENT_TIMEOUT);
        docker.ping().await.map_err(|e| unreachable(&endpoint, e))?;
        Ok(Self { docker, endpoint, image_source: None })
    }

    /// Images this engine lacks and cannot pull are copied from `source` (most small teams have
    /// no registry: the image exists only on the laptop).
    pub fn with_image_source(mut self, source: Engine) -> Self {
        self.image_source = Some(Box::new(source));
        self
    }

    /// Containers, network and volumes of one stage.
    pub async fn observe(&self, spec: &StageSpec) -> Result<ObservedStage> {
        Ok(self.observe_with_side(spec).await?.observed)
    }

    /// The stage as `observe` sees it, plus the containers fleet keeps beside its services,
    /// from the same container list: `up` reads the proxy and the restore markers from it
    /// instead of asking the engine twice more.
    pub async fn observe_with_side(&self, spec: &StageSpec) -> Result<StageView> {
        let (list, network_exists, volumes) = futures_util::try_join!(
            self.list_containers(&spec.project, Some(&spec.name)),
            self.network_id(spec),
            self.volumes(spec),
        )?;
        let (services, side): (Vec<_>, Vec<_>) =
            list.into_iter().partition(|c| c.labels.as_ref().is_some_and(|l| l.contains_key(labels::SERVICE)));
        let observed = ObservedStage {
            network_exists: network_exists.is_some(),
            volumes,
            containers: sorted(services.into_iter().filter_map(observed_from_summary).collect()),
        };
        Ok(StageView { observed, side: side.into_iter().map(SideContainer::from).collect() })
    }

    /// Every container of the project (all stages when `stage` is None).
    pub async fn containers(&self, project: &str, stage: Option<&str>) -> Result<Vec<ObservedContainer>> {
        let list = self.list_containers(project, stage).await?;
        Ok(sorted(list.into_iter().filter_map(observed_from_summary).collect()))
    }

    /// Every container with the project's (and stage's) labels, newest first as the engine lists them.
    async fn list_containers(
        &self,
        project: &str,
        stage: Option<&str>,
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let opts = ListContainersOptionsBuilder::new().all(true).filters(&labels::filter(project, stage)).build();
        self.docker.list_containers(Some(opts)).await.map_err(|e| Error::engine("listing containers", e))
    }

    /// The network at the stage network's name. Matched by exact name: a name filter also matches
    /// substrings, and engines before API 1.44 allow two networks of one name (the seed's bug).
    async fn network_by_name(&self, spec: &StageSpec) -> Result<NetworkByName> {
        let name = spec.network_name();
        let opts = ListNetworksOptionsBuilder::new()
            .filters(&std::collections::HashMap::from([("name", vec![name.as_str()])]))
            .build();
        let nets = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(|e| Error::engine(format!("listing network {name}"), e))?;
        let same_name: Vec<_> = nets.into_iter().filter(|n| n.name.as_deref() == Some(name.as_str())).collect();
        // Names are built with `-`, so `a-b`/`c` and `a`/`b-c` meet at one name: only a network
        // whose labels say it is this project's and this stage's is ours (observed, removed).
        if let Some(ours) = same_name.iter().find(|n| owned_by(n.labels.as_ref(), spec)) {
            return Ok(NetworkByName::Ours(ours.id.clone().unwrap_or_default()));
        }
        Ok(match same_name.into_iter().next() {
            Some(other) => NetworkByName::Foreign(other.labels.unwrap_or_default()),
            None => NetworkByName::Missing,
        })
    }

    /// The stage network's id, when the network is ours.
    pub async fn network_id(&self, spec: &StageSpec) -> Result<Option<String>> {
        Ok(match self.network_by_name(spec).await? {
            NetworkByName::Ours(id) => Some(id),
            _ => None,
        })
    }

    /// The id of a local image, None when this engine does not have it (nothing is pulled).
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::engine(format!("image {image}"), e)),
        }
    }

    /// Before a create: our network (nothing to do), none (create it), or someone else's (error).
    pub async fn network_to_create(&self, spec: &StageSpec) -> Result<bool> {
        match self.network_by_name(spec).await? {
            NetworkByName::Ours(_) => Ok(false),
            NetworkByName::Missing => Ok(true),
            NetworkByName::Foreign(labels) => Err(foreign(spec, "network", &spec.network_name(), Some(&labels))),
        }
    }

    /// A named volume this stage may create or use: missing (create it), ours, or an error when
    /// another project's (or nobody's) volume already has the name, since sharing it would mix data.
    pub async fn volume_is_ours(&self, spec: &StageSpec, name: &str) -> Result<bool> {
        match self.docker.inspect_volume(name).await {
            Ok(v) if owned_by(Some(&v.labels), spec) => Ok(true),
            Ok(v) => Err(foreign(spec, "volume", name, Some(&v.labels))),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(Error::engine(format!("inspecting volume {name}"), e)),
        }
    }

    /// Named volumes owned by the stage.
    pub async fn volumes(&self, spec: &StageSpec) -> Result<BTreeSet<String>> {
        let opts = ListVolumesOptionsBuilder::new().filters(&labels::filter(&spec.project, Some(&spec.name))).build();
        let resp = self.docker.list_volumes(Some(opts)).await.map_err(|e| Error::engine("listing volumes", e))?;
        Ok(resp.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect())
    }

    /// Reads a container's environment, for a recreate reason that names the variable.
    pub async fn fill_environment(&self, c: &mut ObservedContainer) -> Result<()> {
        let inspect = self
            .docker
            .inspect_container(&c.id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| Error::engine(format!("container {}", c.name), e))?;
        let env = inspect.config.and_then(|c| c.env).unwrap_or_default();
        c.environment = Some(
            env.into_iter().filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect(),
        );
        Ok(())
    }

    /// When the container last started, as an RFC 3339 string.
    pub async fn started_at(&self, id: &str) -> Result<Option<String>> {
        let inspect = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| Error::engine(format!("container {id}"), e))?;
        Ok(inspect.state.and_then(|s| s.started_at))
    }

    /// The exit code of a finished exec. The engine closes the attach stream a moment before it
    /// records the exit (more so through an SSH tunnel), so an inspect right after the stream
    /// ends may still say "running" with no code: wait for the record instead of guessing one.
    pub async fn exec_exit_code(&self, exec_id: &str) -> std::result::Result<i64, bollard::errors::Error> {
        recorded_exit(|| async {
            let inspect = self.docker.inspect_exec(exec_id).await?;
            Ok((inspect.running, inspect.exit_code))
        })
        .await
    }

    /// A stopped container's exit code as the engine recorded it, for when the wait's own answer
    /// was lost (its connection through the SSH forward closed under load, which read as 1).
    pub async fn container_exit_code(&self, id: &str) -> std::result::Result<i64, bollard::errors::Error> {
        recorded_exit(|| async {
            let state = self.docker.inspect_container(id, None).await?.state.unwrap_or_default();
            Ok((state.running, state.exit_code))
        })
        .await
    }
}

/// Polls `look` (running, exit code) until the engine no longer says running and has a code.
async fn recorded_exit<F, Fut>(mut look: F) -> std::result::Result<i64, bollard::errors::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(Option<bool>, Option<i64>), bollard::errors::Error>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (running, code) = look().await?;
        if running != Some(true)
            && let Some(code) = code
        {
            return Ok(code);
        }
        if std::time::Instant::now() >= deadline {
            // Still running after the output ended: the command is gone as far as we can tell.
            return Ok(code.unwrap_or(-1));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// One look at a stage on one engine: what its services run in, and what fleet keeps beside them.
#[derive(Debug, Clone, Default)]
pub struct StageView {
    pub observed: ObservedStage,
    /// The stage's containers that run none of its services (no `fleetflow.service` label):
    /// its proxy, restore markers, helpers a killed backup left.
    pub side: Vec<SideContainer>,
}

/// A container with the stage's labels that runs none of its services.
#[derive(Debug, Clone, Default)]
pub struct SideContainer {
    pub id: String,
    pub running: bool,
    pub labels: std::collections::HashMap<String, String>,
}

impl SideContainer {
    /// The value of `label`, when the container carries it.
    pub fn label(&self, label: &str) -> Option<&str> {
        self.labels.get(label).map(String::as_str)
    }
}

impl From<bollard::models::ContainerSummary> for SideContainer {
    fn from(c: bollard::models::ContainerSummary) -> Self {
        Self {
            id: c.id.unwrap_or_default(),
            running: c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
            labels: c.labels.unwrap_or_default(),
        }
    }
}

/// Stage, then service: the order `ps` and the plan show.
fn sorted(mut containers: Vec<ObservedContainer>) -> Vec<ObservedContainer> {
    containers.sort_by(|a, b| (&a.stage, &a.service).cmp(&(&b.stage, &b.service)));
    containers
}

enum NetworkByName {
    Ours(String),
    Foreign(std::collections::HashMap<String, String>),
    Missing,
}

fn owned_by(labels: Option<&std::collections::HashMap<String, String>>, spec: &StageSpec) -> bool {
    labels.is_some_and(|l| l.get(labels::PROJECT) == Some(&spec.project) && l.get(labels::STAGE) == Some(&spec.name))
}

fn foreign(
    spec: &StageSpec,
    kind: &str,
    name: &str,
    labels: Option<&std::collections::HashMap<String, String>>,
) -> Error {
    let owner = labels
        .and_then(|l| Some(format!("project `{}` stage `{}`", l.get(labels::PROJECT)?, l.get(labels::STAGE)?)))
        .unwrap_or_else(|| "no fleet stage".into());
    Error::failed_help(
        format!(
            "{kind} {name} already exists and belongs to {owner}, not to project `{}` stage `{}`",
            spec.project, spec.name
        ),
        "fleet never uses or deletes what another stage owns: rename this project or stage (`project \"…\"`), or remove that one yourself",
    )
}

fn unreachable(endpoint: &str, e: bollard::errors::Error) -> Error {
    Error::failed_help(
        format!("cannot reach the Docker engine at {endpoint}: {e}"),
        "start Docker, or point DOCKER_HOST at a running engine",
    )
}

fn observed_from_summary(c: bollard::models::ContainerSummary) -> Option<ObservedContainer> {
    use bollard::models::ContainerSummaryStateEnum as S;
    let labels = c.labels.unwrap_or_default();
    let service = labels.get(labels::SERVICE)?.clone();
    let status_text = c.status.unwrap_or_default();
    let state = match c.state {
        Some(S::RUNNING) => RunState::Running,
        Some(S::CREATED) => RunState::Created,
        Some(S::RESTARTING) => RunState::Restarting,
        Some(S::PAUSED) => RunState::Paused,
        Some(S::DEAD) => RunState::Dead,
        Some(S::EXITED) => RunState::Exited(exit_code(&status_text)),
        _ => RunState::Other,
    };
    let health = ["(healthy)", "(unhealthy)", "(health: starting)"]
        .iter()
        .find(|h| status_text.contains(*h))
        .map(|h| h.trim_matches(['(', ')']).trim_start_matches("health: ").to_string());
    let mut ports: Vec<String> = c
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let proto = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
            let public = p.public_port?;
            let ip = p.ip.filter(|ip| ip != "0.0.0.0" && ip != "::").map(|ip| format!("{ip}:")).unwrap_or_default();
            Some(format!("{ip}{public}->{}/{proto}", p.private_port))
        })
        .collect();
    ports.sort();
    ports.dedup();
    Some(ObservedContainer {
        id: c.id.unwrap_or_default(),
        name: c.names.and_then(|n| n.first().cloned()).unwrap_or_default().trim_start_matches('/').to_string(),
        stage: labels.get(labels::STAGE).cloned().unwrap_or_default(),
        service,
        state,
        health,
        config_hash: labels.get(labels::CONFIG_HASH).cloned(),
        field_hashes: labels
            .get(labels::FIELD_HASHES)
            .map(|l| crate::plan::ConfigHash::parse_fields_label(l))
            .unwrap_or_default(),
        image_id: labels.get(labels::IMAGE_ID).cloned(),
        created: c.created.unwrap_or_default(),
        status_text,
        ports,
        environment: None,
    })
}

/// `Exited (137) 5 minutes ago` → 137.
fn exit_code(status: &str) -> i64 {
    status
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(code, _)| code.parse().ok())
        .unwrap_or(-1)
}

pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

pub(crate) fn is_not_modified(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 304, .. })
}

#[cfg(test)]
mod tests {
    #[test]
    fn exit_code_from_status_text() {
        assert_eq!(super::exit_code("Exited (137) 5 minutes ago"), 137);
        assert_eq!(super::exit_code("Exited (0) Less than a second ago"), 0);
        assert_eq!(super::exit_code("Created"), -1);
    }
}
