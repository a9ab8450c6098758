//! `fleet restore`: the whole file verified first; then, volume by volume, a restore marker,
//! the containers that use the volume removed (fleet's own, recreated by `up`), the volume made
//! again empty, filled from the file, and the marker removed. A kill -9 in between leaves the
//! marker, and `up`, `restart` and `run` refuse the stage until a restore completes.

use super::archive::{self, Verified};
use super::backup::site_of;
use super::swarm::Swarm;
use super::volume::{self, Helper};
use super::{Site, Sites, select_volumes};
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::local_lock::StageLock;
use crate::model::StageSpec;
use crate::stage::UpOptions;
use crate::ui::{Ui, human_bytes};
use bytes::Bytes;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub file: PathBuf,
    /// `--volume`: only these; every volume of the file (that the stage declares) when empty.
    pub volumes: Vec<String>,
    /// `--yes`: replace volumes that hold data without asking.
    pub yes: bool,
}

/// Reads the whole file and checks every member against the manifest (progress on a terminal).
pub(crate) async fn verify_file(path: &Path, ui: &Ui) -> Result<Verified> {
    let total = std::fs::metadata(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?.len();
    let (path, ui) = (path.to_path_buf(), *ui);
    tokio::task::spawn_blocking(move || {
        let mut progress = ui.transfer(format!("verifying {}", path.display()), Some(total));
        let verified = archive::verify(&path, &mut |n| progress.add(n));
        progress.finish();
        verified
    })
    .await
    .map_err(|e| Error::failed(format!("internal: {e}")))?
}

pub async fn restore(config: &Config, spec: &StageSpec, opts: &RestoreOptions, ui: &Ui) -> Result<()> {
    select_volumes(spec, &opts.volumes)?;
    let verified = Arc::new(verify_file(&opts.file, ui).await?);
    let m = &verified.manifest;
    if m.project != spec.project || m.stage != spec.name {
        return Err(Error::failed_help(
            format!(
                "{} is a backup of project `{}` stage `{}`, not of project `{}` stage `{}`; nothing was changed",
                opts.file.display(),
                m.project,
                m.stage,
                spec.project,
                spec.name
            ),
            "restore it into the stage it was taken from",
        ));
    }
    let volumes = volumes_to_restore(spec, &verified, &opts.volumes, ui)?;
    let after = {
        let _lock = StageLock::acquire(&config.project, &spec.name, &format!("restore {}", spec.name), None).await?;
        let sites = Sites::connect_locked(config, spec, "restore", ui).await?;
        let result = crate::signal::interruptible(restore_on(&sites, spec, &verified, &volumes, opts.yes, ui)).await;
        sites.close().await;
        result?
    };
    ui.line(format!("Restored {} into stage {}.", volumes.join(", "), spec.name));
    if after == After::Started {
        return Ok(());
    }
    if after == After::Up {
        let opts = UpOptions {
            pull: crate::engine::PullPolicy::Missing,
            dry_run: false,
            remove_orphans: false,
            force_recreate: false,
            format: crate::ui::Format::Text,
            lock_wait: None,
            plan_gate: None,
        };
        crate::stage::up(config, spec, &opts, ui).await?;
    } else {
        ui.note(format!("its services were not running; `fleet up {}` starts them", spec.name));
    }
    Ok(())
}

/// The volumes of the file to restore: the ones asked for, else every one the stage declares.
fn volumes_to_restore(spec: &StageSpec, verified: &Verified, wanted: &[String], ui: &Ui) -> Result<Vec<String>> {
    let in_file: Vec<&str> = verified.manifest.volumes.iter().map(|v| v.name.as_str()).collect();
    for w in wanted {
        if !in_file.contains(&w.as_str()) {
            return Err(Error::usage_help(
                format!("the backup holds no volume `{w}`; nothing was changed"),
                format!("it holds: {}", in_file.join(", ")),
            ));
        }
    }
    let declared = super::declared_volumes(spec);
    let mut out = Vec::new();
    for v in in_file {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == v) {
            continue;
        }
        if declared.iter().any(|d| d == v) {
            out.push(v.to_string());
        } else {
            ui.warn(format!("volume {v} of the backup is no longer declared in stage {}; skipped", spec.name));
        }
    }
    if out.is_empty() {
        return Err(Error::usage("nothing to restore: no volume of the backup is declared in the stage"));
    }
    Ok(out)
}

/// What a restore leaves for its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Containers that used a volume were running: `up` recreates them.
    Up,
    /// A swarm's services were scaled back already.
    Started,
    /// Nothing that used the volumes was running.
    WereStopped,
}

/// One volume to restore and where.
struct Target<'a> {
    volume: &'a str,
    site: &'a Site,
    image: String,
    exists: bool,
    /// Known already (a swarm's volume is probed to find its node).
    holds_data: Option<bool>,
}

async fn restore_on(
    sites: &Sites,
    spec: &StageSpec,
    verified: &Arc<Verified>,
    volumes: &[String],
    yes: bool,
    ui: &Ui,
) -> Result<After> {
    for site in &sites.sites {
        volume::remove_stale_helpers(&site.engine, &site.spec).await?;
    }
    let swarm = match spec.is_swarm() {
        true => Some(Swarm::of(sites, spec).await?),
        false => None,
    };
    let targets = locate_all(sites, swarm.as_ref(), spec, volumes).await?;
    let mut holding = Vec::new();
    for t in &targets {
        let holds = match t.holds_data {
            Some(h) => h,
            None => t.exists && holds_data(t.site, &t.image, t.volume).await?,
        };
        if holds {
            holding.push(format!("volume {} on {}", t.volume, t.site.label()));
        }
    }
    if !holding.is_empty() && !yes {
        confirm_overwrite(spec, &holding, ui)?;
    }
    let scaled = match &swarm {
        Some(sw) => sw.stop_mounting(spec, volumes, ui).await?,
        None => Vec::new(),
    };
    let mut restarted = false;
    for t in &targets {
        restarted |= restore_volume(t.site, verified, t.volume, &t.image, t.exists, ui).await?;
    }
    let Some(sw) = swarm else { return Ok(if restarted { After::Up } else { After::WereStopped }) };
    if scaled.is_empty() {
        return Ok(After::WereStopped);
    }
    sw.start_again(spec, &scaled, ui).await?;
    for t in &targets {
        sw.warn_if_moved(spec, t.volume, t.site, ui).await?;
    }
    Ok(After::Started)
}

/// Each volume's engine: the server whose services mount it, or a swarm's node that holds it.
async fn locate_all<'a>(
    sites: &'a Sites,
    swarm: Option<&Swarm<'a>>,
    spec: &StageSpec,
    volumes: &'a [String],
) -> Result<Vec<Target<'a>>> {
    let mut targets = Vec::new();
    for v in volumes {
        let (site, exists, holds_data) = match swarm {
            Some(sw) => {
                let l = sw.locate(spec, v, true).await?;
                (l.site, l.exists, Some(l.holds_data))
            }
            None => {
                let site = site_of(sites, spec, v)?;
                (site, site.engine.volume_is_ours(&site.spec, &site.spec.volume_name(v)).await?, None)
            }
        };
        let image = volume::helper_image(site, v).await?;
        targets.push(Target { volume: v, site, image, exists, holds_data });
    }
    Ok(targets)
}

pub(crate) async fn holds_data(site: &Site, image: &str, v: &str) -> Result<bool> {
    let full = site.spec.volume_name(v);
    let probe = volume::create_helper(&site.engine, &site.spec, image, &full, "probe").await?;
    let result = volume::holds_data(&site.engine, &probe).await;
    volume::remove_container(&site.engine, &probe.id).await?;
    result
}

fn confirm_overwrite(spec: &StageSpec, holding: &[String], ui: &Ui) -> Result<()> {
    let listed = holding.join(", ");
    if !std::io::stdin().is_terminal() {
        return Err(Error::usage_help(
            format!("refusing to replace data in stage {}: {listed} holds data; nothing was changed", spec.name),
            "run it in a terminal to confirm, or pass --yes",
        ));
    }
    ui.line(format!("This replaces what these hold now in stage {}: {listed}", spec.name));
    match ui.confirm("Replace them?") {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::failed("restore cancelled; nothing was changed")),
        Err(e) => Err(Error::io("reading confirmation", e)),
    }
}

/// One volume: marker, users removed, volume emptied, filled, marker removed.
async fn restore_volume(
    site: &Site,
    verified: &Arc<Verified>,
    v: &str,
    image: &str,
    exists: bool,
    ui: &Ui,
) -> Result<bool> {
    let engine = &site.engine;
    let full = site.spec.volume_name(v);
    let users = if exists { volume::users(engine, &site.spec, &full).await? } else { Vec::new() };
    let marker = volume::mark_restoring(engine, &site.spec, image, v).await?;
    let mut was_running = false;
    for (id, _, running) in &users {
        was_running |= *running;
        volume::remove_container(engine, id).await?;
    }
    if exists {
        volume::recreate(engine, &full).await?;
    } else {
        create_volume(engine, &site.spec, &full).await?;
    }
    let helper = volume::create_helper(engine, &site.spec, image, &full, "restore").await?;
    let total = verified.manifest.volumes.iter().find(|r| r.name == v).map_or(0, |r| r.bytes);
    let filled = fill(engine, &helper, verified, v, total, &format!("volume {v} ({})", site.label()), ui).await;
    volume::remove_container(engine, &helper.id).await?;
    filled?;
    // Only a whole volume loses its marker.
    volume::remove_container(engine, &marker).await?;
    ui.line(format!("~ volume {full} restored on {} ({})", site.label(), human_bytes(total)));
    Ok(was_running)
}

async fn create_volume(engine: &Engine, spec: &StageSpec, full: &str) -> Result<()> {
    let req = bollard::models::VolumeCreateRequest {
        name: Some(full.into()),
        labels: Some(crate::engine::labels::owner(spec)),
        ..Default::default()
    };
    engine.docker.create_volume(req).await.map_err(|e| Error::engine(format!("creating volume {full}"), e))?;
    Ok(())
}

/// The member, decompressed on a blocking thread, streamed into the volume.
async fn fill(
    engine: &Engine,
    helper: &Helper,
    verified: &Arc<Verified>,
    v: &str,
    total: u64,
    label: &str,
    ui: &Ui,
) -> Result<()> {
    const IN_FLIGHT: usize = 16;
    const CHUNK: usize = 1 << 20;
    let mut reader = verified.volume_reader(v)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(IN_FLIGHT);
    let mut progress = ui.transfer(label.to_string(), Some(total));
    let feeder = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let item = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    progress.add(n as u64);
                    Ok(Bytes::copy_from_slice(&buf[..n]))
                }
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                break;
            }
        }
        progress
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let uploaded = volume::upload(engine, helper, body).await;
    let progress = feeder.await.map_err(|e| Error::failed(format!("internal: {e}")))?;
    uploaded.map_err(|e| Error::engine(format!("writing volume {v}"), e))?;
    progress.finish();
    Ok(())
}
