//! Remote stages: the same container steps as a local stage, on each server's own engine,
//! reached over SSH, with the servers created, powered and deleted around them. What `up`
//! (`remote_up`) and `down` (`remote_down`) share lives here: reaching a server, the locks, the
//! connections a run holds.

use super::server_lock;
use super::swarm_stage;
use super::{log_targets, no_containers, print_logs};
use crate::config::Config;
use crate::engine::{self, Engine, LogOptions};
use crate::error::{Error, Result};
use crate::infra::{Machine, Power, Providers, owner_tag};
use crate::local_lock::StageLock;
use crate::model::{Server, ServerProvider, StageSpec};
use crate::plan::ObservedContainer;
use crate::ssh::{self, RemoteHost, known_hosts_file};
use crate::ui::Ui;

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
    let mut host = connect(config, server, machine, mode).await?;
    match reach_engine(config, server, machine, ui, mode, &mut host).await {
        Ok(engine) => Ok(Connected { server: server.name.clone(), host, engine }),
        Err(e) => {
            host.close().await;
            Err(e)
        }
    }
}

/// The SSH connection alone (its engine is `reach_engine`'s): a run that locks the server
/// takes the lock while the engine answers.
pub(super) async fn connect(config: &Config, server: &Server, machine: &Machine, mode: Reach) -> Result<RemoteHost> {
    let address = machine
        .ip
        .as_deref()
        .ok_or_else(|| Error::failed(format!("server {}: the provider reports no IP address", server.name)))?;
    let fresh = mode == Reach::Converge && matches!(server.provider, ServerProvider::SakuraCloud { .. });
    ssh::connect(server, address, &known_hosts_file(&config.project), fresh, machine.booted_this_run).await
}

/// The engine behind `host` (installed first by `up` when missing; `host` is then a new login).
pub(super) async fn reach_engine(
    config: &Config,
    server: &Server,
    machine: &Machine,
    ui: &Ui,
    mode: Reach,
    host: &mut RemoteHost,
) -> Result<Engine> {
    // Only `up` installs an engine; a plan reports its absence like status does.
    if mode != Reach::Converge {
        host.check_docker(server).await?;
    } else if host.ensure_docker(server, machine.new_this_run, &|n| ui.note(n)).await? {
        ui.line(format!("~ server {}: Docker installed", server.name));
        // A new docker group membership only applies to a new login.
        let fresh = connect(config, server, machine, mode).await?;
        std::mem::replace(host, fresh).close().await;
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
    Ok(engine)
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

/// The connections a run holds, the first one carrying the stage lock once `locked`.
#[derive(Default)]
pub(super) struct Held {
    pub conns: Vec<Connected>,
    pub locked: bool,
    /// This run's image builds, still running while servers boot.
    pub builds: Option<super::ship::PendingBuilds>,
}

impl Held {
    /// The connection to this server, when it was reached.
    pub fn conn(&self, server: &str) -> Option<&Connected> {
        self.conns.iter().find(|c| c.server == server)
    }

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
