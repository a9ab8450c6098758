//! Day-2 operations on a running stage: `exec`, one-off `run`, `restart`, and volume `backup` /
//! `restore` (one verified file per stage). Local and remote stages alike: a remote server's
//! engine is reached through the stage's SSH tunnel, so every call below is the Engine API.

mod archive;
mod backup;
mod exec;
mod restart;
mod restore;
mod run;
mod swarm;
mod volume;

pub use archive::{Manifest, VolumeRecord};
pub use backup::{BackupOptions, backup, backup_before_destroy};
pub use exec::{ExecOptions, exec};
pub use restart::restart;
pub use restore::{RestoreOptions, restore};
pub use run::{RunOptions, run};
pub use volume::{refuse_interrupted_restore, refuse_restore_marks};

use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{Service, StageSpec, VolumeSource};
use crate::signal::CleanupScope;
use crate::ssh::RemoteHost;
use crate::ui::Ui;

/// One engine of a stage and the part of the stage it runs.
pub(crate) struct Site {
    /// None for a local stage.
    pub server: Option<String>,
    pub engine: Engine,
    /// The stage narrowed to the services placed on this engine.
    pub spec: StageSpec,
}

impl Site {
    /// `server web-1` or `this machine`, for messages.
    pub fn label(&self) -> String {
        match &self.server {
            Some(s) => format!("server {s}"),
            None => "this machine".into(),
        }
    }
}

/// Every engine of a stage, with the SSH connections that carry the remote ones.
pub(crate) struct Sites {
    pub sites: Vec<Site>,
    hosts: Vec<RemoteHost>,
    /// The stage lock's name on the first server, once this run holds it (given back by `close`).
    locked: Option<String>,
    /// While the server lock is held, Ctrl-C ends the work and `close` still runs.
    _cleanup: Option<CleanupScope>,
}

impl Sites {
    /// This machine's engine for a local stage; each server's engine (read-only reach) for a
    /// remote one. A swarm stage's sites are all its nodes, each with the whole stage: tasks go
    /// anywhere the placement allows.
    pub async fn connect(config: &Config, spec: &StageSpec, ui: &Ui) -> Result<Sites> {
        if spec.is_local() {
            let engine = Engine::connect_local().await?;
            let sites = vec![Site { server: None, engine, spec: spec.clone() }];
            return Ok(Sites { sites, hosts: Vec::new(), locked: None, _cleanup: None });
        }
        let reached = crate::stage::reach_servers(config, spec, ui).await?;
        let mut sites = Vec::new();
        let mut hosts = Vec::new();
        for (server, host, engine) in reached {
            let part = if spec.is_swarm() { spec.clone() } else { spec.for_server(&server) };
            sites.push(Site { server: Some(server.name.clone()), engine, spec: part });
            hosts.push(host);
        }
        Ok(Sites { sites, hosts, locked: None, _cleanup: None })
    }

    /// `connect`, then (remote stages) the stage lock on the first server, the one `up` and
    /// `down` take, so that no `up` from another machine runs meanwhile. Run the work inside
    /// `signal::interruptible` and `close` after it: Ctrl-C then still gives the lock back.
    pub async fn connect_locked(config: &Config, spec: &StageSpec, verb: &str, ui: &Ui) -> Result<Sites> {
        let mut sites = Self::connect(config, spec, ui).await?;
        let (Some(host), Some(server)) = (sites.hosts.first(), sites.sites.first().and_then(|s| s.server.clone()))
        else {
            return Ok(sites);
        };
        sites._cleanup = Some(CleanupScope::enter());
        let purpose = format!("{verb} {}", spec.name);
        match crate::stage::acquire_server_lock(host, &server, &config.project, &spec.name, &purpose, None).await {
            Ok(()) => {
                sites.locked = Some(crate::stage::server_lock_name(&config.project, &spec.name));
                Ok(sites)
            }
            Err(e) => {
                sites.close().await;
                Err(e)
            }
        }
    }

    /// The engine that runs a service.
    pub fn of_service(&self, service: &str) -> Result<&Site> {
        self.sites.iter().find(|s| s.spec.service(service).is_some()).ok_or_else(|| {
            Error::failed(format!(
                "service {service} is placed on no server of the stage; check `services` of its servers"
            ))
        })
    }

    /// Gives the server lock back (when held) and closes every SSH connection.
    pub async fn close(self) {
        drop(self.sites);
        if let (Some(name), Some(first)) = (&self.locked, self.hosts.first()) {
            let _ = first.unlock(name).await;
        }
        for host in self.hosts {
            host.close().await;
        }
    }
}

/// The service of that name, or a usage error listing the stage's services.
pub(crate) fn require_service<'a>(spec: &'a StageSpec, name: &str) -> Result<&'a Service> {
    spec.service(name).ok_or_else(|| {
        let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
        Error::usage_help(
            format!("stage `{}` has no service `{name}`", spec.name),
            format!("services: {}", names.join(", ")),
        )
    })
}

/// The named volumes the stage's services declare (short names, file order, no repeats).
pub(crate) fn declared_volumes(spec: &StageSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for svc in &spec.services {
        for v in &svc.volumes {
            if let VolumeSource::Named { name } = &v.source
                && !out.contains(name)
            {
                out.push(name.clone());
            }
        }
    }
    out
}

/// The services that mount a named volume.
pub(crate) fn mounting<'a>(spec: &'a StageSpec, volume: &str) -> Vec<&'a Service> {
    spec.services
        .iter()
        .filter(|s| s.volumes.iter().any(|v| matches!(&v.source, VolumeSource::Named { name } if name == volume)))
        .collect()
}

/// `--volume` names checked against the stage (all declared volumes when none are given).
pub(crate) fn select_volumes(spec: &StageSpec, wanted: &[String]) -> Result<Vec<String>> {
    let declared = declared_volumes(spec);
    if wanted.is_empty() {
        return Ok(declared);
    }
    for w in wanted {
        if !declared.contains(w) {
            return Err(Error::usage_help(
                format!("stage `{}` has no named volume `{w}`", spec.name),
                format!(
                    "named volumes: {}",
                    if declared.is_empty() { "(none)".to_string() } else { declared.join(", ") }
                ),
            ));
        }
    }
    Ok(declared.into_iter().filter(|d| wanted.contains(d)).collect())
}

/// A destroy's confirmation lines with the size of each volume it deletes (read through once;
/// `size unknown` when no image of the stage is there to read it with).
pub async fn with_volume_sizes(engine: &Engine, spec: &StageSpec, plan: &crate::plan::Plan, lines: &mut [String]) {
    let site = Site { server: None, engine: engine.clone(), spec: spec.clone() };
    for action in &plan.actions {
        let crate::plan::Action::RemoveVolume { name } = action else { continue };
        let size = match declared_volumes(spec).into_iter().find(|v| &spec.volume_name(v) == name) {
            Some(short) => volume_size(&site, &short).await.ok(),
            None => None,
        };
        let size = size.map_or_else(|| "size unknown".to_string(), crate::ui::human_bytes);
        if let Some(line) = lines.iter_mut().find(|l| l.contains(name.as_str())) {
            line.push_str(&format!(" ({size})"));
        }
    }
}

async fn volume_size(site: &Site, short: &str) -> Result<u64> {
    let image = volume::helper_image(site, short).await?;
    let full = site.spec.volume_name(short);
    let helper = volume::create_helper(&site.engine, &site.spec, &image, &full, "size").await?;
    let size = volume::measure(&site.engine, &helper).await;
    volume::remove_container(&site.engine, &helper.id).await?;
    size
}

/// A destroy's confirmation lines with the size of each deleted server's disk: the stage's
/// volumes live there and go with it.
pub fn with_disk_sizes(spec: &StageSpec, lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            let disk = spec.servers.iter().find_map(|s| match &s.provider {
                crate::model::ServerProvider::SakuraCloud { disk_gb, .. }
                    if line.contains(&format!("server {} (", s.name)) =>
                {
                    Some(*disk_gb)
                }
                _ => None,
            });
            match disk {
                Some(gb) => format!("{line}: its {gb} GB disk and every volume on it"),
                None => line.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Volume;

    fn svc(name: &str, vols: &[&str]) -> Service {
        Service {
            name: name.into(),
            volumes: vols
                .iter()
                .map(|v| Volume {
                    source: VolumeSource::Named { name: (*v).into() },
                    target: "/d".into(),
                    read_only: false,
                })
                .collect(),
            ..Service::default()
        }
    }

    #[test]
    fn volumes_are_selected_in_file_order_and_unknown_ones_refused() {
        let spec = StageSpec {
            name: "local".into(),
            services: vec![svc("db", &["pg", "logs"]), svc("api", &["logs"])],
            ..StageSpec::default()
        };
        assert_eq!(select_volumes(&spec, &[]).unwrap(), ["pg", "logs"]);
        assert_eq!(select_volumes(&spec, &["logs".into()]).unwrap(), ["logs"]);
        let e = select_volumes(&spec, &["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("no named volume `nope`"), "{e}");
        assert_eq!(mounting(&spec, "logs").iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["db", "api"]);
    }

    #[test]
    fn a_deleted_server_line_names_its_disk_size() {
        use crate::model::{Server, ServerProvider, SshKey, SshSettings};
        let server = Server {
            name: "m1".into(),
            provider: ServerProvider::SakuraCloud {
                zone: "tk1a".into(),
                core: 1,
                memory_gb: 1,
                disk_gb: 40,
                os: "ubuntu".into(),
                ssh_key: SshKey::Account("k".into()),
                tags: vec![],
                startup_scripts: vec![],
            },
            ssh: SshSettings { user: "u".into(), port: 22, identity: None },
            services: vec![],
            dns: None,
            manager: false,
            deploy_path: String::new(),
        };
        let spec = StageSpec { servers: vec![server], ..StageSpec::default() };
        let lines = with_disk_sizes(
            &spec,
            &["- server m1 (sakura-cloud tk1a) with 1 disk(s)".into(), "- container web".into()],
        );
        assert_eq!(lines[0], "- server m1 (sakura-cloud tk1a) with 1 disk(s): its 40 GB disk and every volume on it");
        assert_eq!(lines[1], "- container web");
    }
}
