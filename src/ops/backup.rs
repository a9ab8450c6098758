//! `fleet backup`: the stage's named volumes into one verified file on this machine (remote
//! volumes stream over the stage's SSH connection), and the backup `down --destroy` takes first.

use super::archive::{self, Manifest, VolumeRecord, Writer};
use super::restart::start_services;
use super::swarm::Swarm;
use super::volume::{self, Helper};
use super::{Site, Sites, mounting, select_volumes};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::local_lock::StageLock;
use crate::model::StageSpec;
use crate::plan::{Action, Plan};
use crate::ui::{Ui, human_bytes};
use bytes::Bytes;
use futures_util::StreamExt;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// `--volume`: only these (short names); all the stage's named volumes when empty.
    pub volumes: Vec<String>,
    /// `-o`: default `<project>-<stage>-<UTC time>.backup.tar` here.
    pub output: Option<PathBuf>,
    /// `--stop`: stop the services that mount a volume while it is copied.
    pub stop: bool,
}

pub async fn backup(config: &Config, spec: &StageSpec, opts: &BackupOptions, ui: &Ui) -> Result<PathBuf> {
    let volumes = select_volumes(spec, &opts.volumes)?;
    if volumes.is_empty() {
        return Err(Error::usage(format!("stage `{}` declares no named volume; nothing to back up", spec.name)));
    }
    let path = opts.output.clone().unwrap_or_else(|| default_file(spec));
    if path.exists() {
        return Err(Error::usage_help(
            format!("{} exists; nothing was written", path.display()),
            "choose another file with -o",
        ));
    }
    let manifest = {
        let _lock = StageLock::acquire(&config.project, &spec.name, &format!("backup {}", spec.name), None).await?;
        let sites = Sites::connect_locked(config, spec, "backup", ui).await?;
        // Ctrl-C cuts the copy short, not the start of what `--stop` stopped (`backup_on`).
        let _cleanup = opts.stop.then(crate::signal::CleanupScope::enter);
        let result = backup_on(&sites, spec, &volumes, &path, opts.stop, ui).await;
        sites.close().await;
        if result.is_err() {
            let _ = std::fs::remove_file(archive::partial_path(&path));
        }
        result?
    };
    let total: u64 = manifest.volumes.iter().map(|v| v.compressed_bytes).sum();
    ui.line(format!(
        "Backed up {} volume(s) of stage {} to {} ({}).",
        manifest.volumes.len(),
        spec.name,
        path.display(),
        human_bytes(total)
    ));
    Ok(path)
}

/// `down --destroy --backup FILE`: every named volume, copied with its services stopped (and
/// started again), then the file read back and verified; only then may the destroy go on.
pub async fn backup_before_destroy(config: &Config, spec: &StageSpec, file: &Path, ui: &Ui) -> Result<()> {
    let opts = BackupOptions { volumes: Vec::new(), output: Some(file.to_path_buf()), stop: true };
    let path = backup(config, spec, &opts, ui).await?;
    let checked = super::restore::verify_file(&path, ui).await?;
    ui.line(format!(
        "Verified {}: {} volume(s), checksums match; destroying stage {}.",
        path.display(),
        checked.manifest.volumes.len(),
        spec.name
    ));
    Ok(())
}

fn default_file(spec: &StageSpec) -> PathBuf {
    let when = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    PathBuf::from(format!("{}-{}-{when}.backup.tar", spec.project, spec.name))
}

/// The one site whose services mount the volume.
pub(crate) fn site_of<'a>(sites: &'a Sites, spec: &StageSpec, volume: &str) -> Result<&'a Site> {
    let holders: Vec<&Site> = sites.sites.iter().filter(|s| !mounting(&s.spec, volume).is_empty()).collect();
    match holders.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::failed(format!("volume {volume} of stage {} is mounted by no placed service", spec.name))),
        _ => Err(Error::failed(format!(
            "volume {volume} of stage {} is mounted on several servers (each has its own): not implemented yet",
            spec.name
        ))),
    }
}

/// What `--stop` stopped, to start again once the copy ended (done, failed or cut short).
enum Stopped<'a> {
    Containers(Vec<String>),
    Swarm(Swarm<'a>, Vec<super::swarm::Scaled>),
}

/// Each volume to copy: (short name, its engine, helper image).
type Targets<'a> = Vec<(String, &'a Site, String)>;

/// Finding the volumes and stopping their users (`--stop`), then the copy (Ctrl-C cuts each
/// volume's stream short, and its helper is removed), then (whatever the copy's end) the stopped services started again, so an interrupted
/// `backup --stop` does not leave them down.
async fn backup_on(
    sites: &Sites,
    spec: &StageSpec,
    volumes: &[String],
    path: &Path,
    stop: bool,
    ui: &Ui,
) -> Result<Manifest> {
    let (targets, stopped) = crate::signal::interruptible(prepare(sites, spec, volumes, stop, ui)).await?;
    let copied = copy_all(&targets, path, spec, ui).await;
    match stopped {
        Stopped::Containers(names) if !names.is_empty() => start_services(sites, spec, &names, ui).await?,
        Stopped::Containers(_) => {}
        Stopped::Swarm(swarm, scaled) => swarm.start_again(spec, &scaled, ui).await?,
    }
    copied
}

async fn prepare<'a>(
    sites: &'a Sites,
    spec: &StageSpec,
    volumes: &[String],
    stop: bool,
    ui: &Ui,
) -> Result<(Targets<'a>, Stopped<'a>)> {
    for site in &sites.sites {
        volume::remove_stale_helpers(&site.engine, &site.spec).await?;
        volume::refuse_interrupted_restore(&site.engine, &site.spec).await?;
    }
    if spec.is_swarm() {
        return prepare_swarm(sites, spec, volumes, stop, ui).await;
    }
    let mut targets = Vec::new();
    for v in volumes {
        let site = site_of(sites, spec, v)?;
        let full = site.spec.volume_name(v);
        if !site.engine.volume_is_ours(&site.spec, &full).await? {
            return Err(Error::failed_help(
                format!("volume {full} does not exist on {}; nothing was written", site.label()),
                format!("run `fleet up {}` first, or leave it out with --volume", spec.name),
            ));
        }
        targets.push((v.clone(), site, volume::helper_image(site, v).await?));
    }
    let stopped = if stop { stop_users(sites, spec, volumes, ui).await? } else { Vec::new() };
    Ok((targets, Stopped::Containers(stopped)))
}

/// A swarm stage: each volume from the node that holds it (refused when several hold data);
/// `--stop` scales the services that mount them to 0 (and `backup_on` back).
async fn prepare_swarm<'a>(
    sites: &'a Sites,
    spec: &StageSpec,
    volumes: &[String],
    stop: bool,
    ui: &Ui,
) -> Result<(Targets<'a>, Stopped<'a>)> {
    let swarm = Swarm::of(sites, spec).await?;
    let mut targets = Vec::new();
    for v in volumes {
        let site = swarm.locate(spec, v, false).await?.site;
        targets.push((v.clone(), site, volume::helper_image(site, v).await?));
    }
    let scaled = if stop { swarm.stop_mounting(spec, volumes, ui).await? } else { Vec::new() };
    Ok((targets, Stopped::Swarm(swarm, scaled)))
}

async fn copy_all(targets: &[(String, &Site, String)], path: &Path, spec: &StageSpec, ui: &Ui) -> Result<Manifest> {
    let mut writer = Writer::create(path)?;
    let mut records = Vec::new();
    for (v, site, image) in targets {
        let (w, record) = copy_volume(site, v, image, writer, ui).await?;
        writer = w;
        records.push(record);
    }
    let manifest = Manifest {
        format: archive::FORMAT.into(),
        version: archive::VERSION,
        project: spec.project.clone(),
        stage: spec.name.clone(),
        fleet_version: env!("CARGO_PKG_VERSION").into(),
        created: jiff::Timestamp::now().to_string(),
        volumes: records,
    };
    let m = manifest.clone();
    tokio::task::spawn_blocking(move || writer.finish(&m))
        .await
        .map_err(|e| Error::failed(format!("internal: {e}")))??;
    Ok(manifest)
}

/// Stops the running services that mount any of the volumes; returns their names.
async fn stop_users(sites: &Sites, spec: &StageSpec, volumes: &[String], ui: &Ui) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for site in &sites.sites {
        let observed = site.engine.observe(&site.spec).await?;
        let mut actions = Vec::new();
        for v in volumes {
            for svc in mounting(&site.spec, v) {
                if observed.container(&svc.name).is_some_and(|c| c.state.is_running()) && !names.contains(&svc.name) {
                    names.push(svc.name.clone());
                    actions.push(Action::StopContainer { service: svc.name.clone() });
                }
            }
        }
        let plan = Plan { stage: spec.name.clone(), actions, ..Plan::default() };
        crate::engine::apply_down(&site.engine, &site.spec, &plan, &observed, ui.events()).await?;
    }
    Ok(names)
}

async fn copy_volume(site: &Site, v: &str, image: &str, writer: Writer, ui: &Ui) -> Result<(Writer, VolumeRecord)> {
    let full = site.spec.volume_name(v);
    let helper = volume::create_helper(&site.engine, &site.spec, image, &full, "backup").await?;
    // Ctrl-C ends the stream; the helper (it mounts the volume) is removed all the same.
    let result = crate::signal::interruptible(stream_into(site, &helper, v, writer, ui)).await;
    let removed = volume::remove_container(&site.engine, &helper.id).await;
    let (writer, mut record) = result?;
    removed?;
    record.server = site.server.clone();
    Ok((writer, record))
}

/// The volume's tar stream → zstd → the file, compressed on a blocking thread while the next
/// chunks arrive.
async fn stream_into(site: &Site, helper: &Helper, v: &str, writer: Writer, ui: &Ui) -> Result<(Writer, VolumeRecord)> {
    const IN_FLIGHT: usize = 32;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(IN_FLIGHT);
    let name = v.to_string();
    let task = tokio::task::spawn_blocking(move || -> Result<(Writer, VolumeRecord)> {
        let mut member = writer.volume(&name)?;
        while let Some(chunk) = rx.blocking_recv() {
            member.write_all(&chunk).map_err(|e| Error::io(format!("compressing volume {name}"), e))?;
        }
        member.finish()
    });
    let mut transfer = ui.transfer(format!("volume {v} ({})", site.label()), None);
    let mut stream = Box::pin(volume::download(&site.engine, helper));
    let mut failed = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                transfer.add(c.len() as u64);
                if tx.send(c).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = task.await.map_err(|e| Error::failed(format!("internal: {e}")))?;
    if let Some(e) = failed {
        return Err(Error::engine(format!("reading volume {} on {}", site.spec.volume_name(v), site.label()), e));
    }
    let written = written?;
    transfer.finish();
    Ok(written)
}
