//! `fleet restore`: the whole file verified first; then, volume by volume, a restore marker,
//! the containers that use the volume removed (fleet's own, recreated by `up`), the volume made
//! again empty, filled from the file, and the marker removed. A kill -9 in between leaves the
//! marker, and `up`, `restart` and `run` refuse the stage until a restore completes.

use super::archive::{self, Verified};
use super::backup::site_of;
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
    let restarted = {
        let _lock = StageLock::acquire(&config.project, &spec.name, &format!("restore {}", spec.name), None).await?;
        let sites = Sites::connect(config, spec, "restore", ui).await?;
        let result = restore_on(&sites, spec, &verified, &volumes, opts.yes, ui).await;
        sites.close().await;
        result?
    };
    ui.line(format!("Restored {} into stage {}.", volumes.join(", "), spec.name));
    if restarted {
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

/// Returns whether a container that used a volume was running (then `up` starts them again).
async fn restore_on(
    sites: &Sites,
    spec: &StageSpec,
    verified: &Arc<Verified>,
    volumes: &[String],
    yes: bool,
    ui: &Ui,
) -> Result<bool> {
    let mut targets = Vec::new();
    for site in &sites.sites {
        volume::remove_stale_helpers(&site.engine, &site.spec).await?;
    }
    for v in volumes {
        let site = site_of(sites, spec, v)?;
        let image = volume::helper_image(site, v).await?;
        let exists = site.engine.volume_is_ours(&site.spec, &site.spec.volume_name(v)).await?;
        targets.push((v.as_str(), site, image, exists));
    }
    let mut holding = Vec::new();
    for (v, site, image, exists) in &targets {
        if *exists && holds_data(site, image, v).await? {
            holding.push(format!("volume {v} on {}", site.label()));
        }
    }
    if !holding.is_empty() && !yes {
        confirm_overwrite(spec, &holding, ui)?;
    }
    let mut restarted = false;
    for (v, site, image, exists) in &targets {
        restarted |= restore_volume(site, verified, v, image, *exists, ui).await?;
    }
    Ok(restarted)
}

async fn holds_data(site: &Site, image: &str, v: &str) -> Result<bool> {
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
