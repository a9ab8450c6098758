//! A stage's named volumes through the Engine API, without any image the stage does not already
//! have: a helper container is created (never started) from the image of a service that mounts
//! the volume, and the volume is read and written through its archive endpoint.
//!
//! An interrupted restore is marked by a container of its own (label `fleetflow.restoring`),
//! created before the volume is touched and removed only once the volume is whole again; `up`,
//! `restart` and `run` refuse to start anything while one exists.

use super::{Site, mounting};
use crate::engine::{Engine, is_not_found, labels};
use crate::error::{Error, Result};
use crate::model::StageSpec;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::collections::HashMap;

/// Where the helper mounts the volume; its archive's entries start with `fleetflow-volume/`.
pub const MOUNT: &str = "/fleetflow-volume";
/// Helper containers (value: what for), removed when their operation ends.
pub const HELPER_LABEL: &str = "fleetflow.ops-helper";
/// The marker of a restore in progress (value: the volume's short name).
pub const RESTORING_LABEL: &str = "fleetflow.restoring";

/// A created, never started container.
pub(crate) struct Helper {
    pub id: String,
}

/// The image of a service that mounts the volume and that this engine has.
pub(crate) async fn helper_image(site: &Site, volume: &str) -> Result<String> {
    let candidates = mounting(&site.spec, volume);
    for svc in &candidates {
        if site.engine.docker.inspect_image(&svc.image).await.is_ok() {
            return Ok(svc.image.clone());
        }
    }
    let images: Vec<&str> = candidates.iter().map(|s| s.image.as_str()).collect();
    Err(Error::failed_help(
        format!(
            "volume {volume}: none of the images of the services that mount it ({}) is on {}",
            images.join(", "),
            site.label()
        ),
        format!("run `fleet up {}` first; fleet uses no image the stage does not declare", site.spec.name),
    ))
}

fn helper_body(spec: &StageSpec, image: &str, role: &str, mount: Option<&str>) -> ContainerCreateBody {
    let mut l = labels::owner(spec);
    l.insert(HELPER_LABEL.into(), role.into());
    let mounts = mount.map(|full| {
        vec![Mount {
            target: Some(MOUNT.into()),
            source: Some(full.into()),
            typ: Some(MountType::VOLUME),
            volume_options: Some(MountVolumeOptions { no_copy: Some(true), ..Default::default() }),
            ..Default::default()
        }]
    });
    ContainerCreateBody {
        image: Some(image.into()),
        // Never started: the entrypoint only has to make the create valid for any image.
        entrypoint: Some(vec!["/fleetflow-helper-never-started".into()]),
        labels: Some(l),
        network_disabled: Some(true),
        host_config: Some(HostConfig { mounts, network_mode: Some("none".into()), ..Default::default() }),
        ..Default::default()
    }
}

/// A helper that mounts the volume (`full`: its engine name).
pub(crate) async fn create_helper(
    engine: &Engine,
    spec: &StageSpec,
    image: &str,
    full: &str,
    role: &str,
) -> Result<Helper> {
    let name = format!("{}-{role}-{:08x}", full, fastrand::u32(..));
    let opts = CreateContainerOptionsBuilder::new().name(&name).build();
    let created = engine
        .docker
        .create_container(Some(opts), helper_body(spec, image, role, Some(full)))
        .await
        .map_err(|e| Error::engine(format!("creating helper container for volume {full}"), e))?;
    Ok(Helper { id: created.id })
}

pub(crate) async fn remove_container(engine: &Engine, id: &str) -> Result<()> {
    let opts = RemoveContainerOptionsBuilder::new().force(true).build();
    match engine.docker.remove_container(id, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::engine(format!("removing helper container {id}"), e)),
    }
}

/// Helpers a killed backup left behind (they would keep the volume in use).
pub(crate) async fn remove_stale_helpers(engine: &Engine, spec: &StageSpec) -> Result<()> {
    for id in labelled(engine, spec, HELPER_LABEL).await?.into_keys() {
        remove_container(engine, &id).await?;
    }
    Ok(())
}

/// Containers of the stage carrying `label`: id → the label's value.
async fn labelled(engine: &Engine, spec: &StageSpec, label: &str) -> Result<HashMap<String, String>> {
    let mut filter = labels::filter(&spec.project, Some(&spec.name));
    filter.entry("label".into()).or_default().push(label.into());
    let opts = ListContainersOptionsBuilder::new().all(true).filters(&filter).build();
    let list = engine.docker.list_containers(Some(opts)).await.map_err(|e| Error::engine("listing containers", e))?;
    Ok(list
        .into_iter()
        .filter_map(|c| Some((c.id?, c.labels.and_then(|mut l| l.remove(label)).unwrap_or_default())))
        .collect())
}

/// The volume as a tar stream (entries under `fleetflow-volume/`).
pub(crate) fn download(
    engine: &Engine,
    helper: &Helper,
) -> impl Stream<Item = Result<Bytes, bollard::errors::Error>> + use<> {
    let opts = DownloadFromContainerOptionsBuilder::new().path(MOUNT).build();
    engine.docker.download_from_container(&helper.id, Some(opts))
}

/// Extracts a tar stream (entries under `fleetflow-volume/`) into the volume.
pub(crate) async fn upload(
    engine: &Engine,
    helper: &Helper,
    body: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> std::result::Result<(), bollard::errors::Error> {
    let opts = UploadToContainerOptionsBuilder::new().path("/").build();
    engine.docker.upload_to_container(&helper.id, Some(opts), bollard::body_try_stream(body)).await
}

/// Whether the volume holds anything besides its own root directory.
pub(crate) async fn holds_data(engine: &Engine, helper: &Helper) -> Result<bool> {
    const PEEK: usize = 64 * 1024;
    let mut head = Vec::new();
    let mut stream = Box::pin(download(engine, helper));
    while head.len() < PEEK {
        match stream.next().await {
            Some(chunk) => head.extend_from_slice(&chunk.map_err(|e| Error::engine("reading volume", e))?),
            None => break,
        }
    }
    let mut archive = tar::Archive::new(std::io::Cursor::new(head));
    let mut entries = 0;
    if let Ok(iter) = archive.entries() {
        for e in iter {
            if e.is_err() {
                break;
            }
            entries += 1;
            if entries > 1 {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The volume's size as its archive counts it (every file's bytes, read through once).
pub(crate) async fn measure(engine: &Engine, helper: &Helper) -> Result<u64> {
    let mut total = 0u64;
    let mut stream = Box::pin(download(engine, helper));
    while let Some(chunk) = stream.next().await {
        total += chunk.map_err(|e| Error::engine("reading volume", e))?.len() as u64;
    }
    Ok(total)
}

/// Fails while a restore of one of the stage's volumes is unfinished on this engine.
pub async fn refuse_interrupted_restore(engine: &Engine, spec: &StageSpec) -> Result<()> {
    refuse_marked(spec, labelled(engine, spec, RESTORING_LABEL).await?.into_values().collect())
}

/// `refuse_interrupted_restore` on the side containers `up` has already listed.
pub fn refuse_restore_marks(spec: &StageSpec, side: &[crate::engine::SideContainer]) -> Result<()> {
    refuse_marked(spec, side.iter().filter_map(|c| c.label(RESTORING_LABEL).map(str::to_string)).collect())
}

fn refuse_marked(spec: &StageSpec, mut volumes: Vec<String>) -> Result<()> {
    volumes.sort();
    match volumes.first() {
        None => Ok(()),
        Some(v) => Err(Error::failed_help(
            format!(
                "volume {} of stage {} is incomplete: a restore was interrupted, and its services are not started until it is restored",
                volumes.join(", "),
                spec.name
            ),
            format!("run `fleet restore {} FILE --volume {v}` again", spec.name),
        )),
    }
}

/// Whether an interrupted restore of `volume` left its marker on this engine.
pub(crate) async fn is_being_restored(engine: &Engine, spec: &StageSpec, volume: &str) -> Result<bool> {
    Ok(labelled(engine, spec, RESTORING_LABEL).await?.values().any(|v| v == volume))
}

/// Marks a restore of `volume` in progress (kept if a former interrupted one left it).
pub(crate) async fn mark_restoring(engine: &Engine, spec: &StageSpec, image: &str, volume: &str) -> Result<String> {
    if let Some((id, _)) = labelled(engine, spec, RESTORING_LABEL).await?.into_iter().find(|(_, v)| v == volume) {
        return Ok(id);
    }
    let mut body = helper_body(spec, image, "restore-marker", None);
    body.labels.get_or_insert_default().insert(RESTORING_LABEL.into(), volume.into());
    let name = format!("{}-restoring-{:08x}", spec.volume_name(volume), fastrand::u32(..));
    let opts = CreateContainerOptionsBuilder::new().name(&name).build();
    let created = engine
        .docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| Error::engine(format!("marking volume {volume} as being restored"), e))?;
    Ok(created.id)
}

/// Containers that use the volume (any state); one that is not this stage's is refused.
pub(crate) async fn users(engine: &Engine, spec: &StageSpec, full: &str) -> Result<Vec<(String, String, bool)>> {
    let filter = HashMap::from([("volume".to_string(), vec![full.to_string()])]);
    let opts = ListContainersOptionsBuilder::new().all(true).filters(&filter).build();
    let list = engine.docker.list_containers(Some(opts)).await.map_err(|e| Error::engine("listing containers", e))?;
    let mut out = Vec::new();
    for c in list {
        let l = c.labels.clone().unwrap_or_default();
        let name = c.names.and_then(|n| n.first().cloned()).unwrap_or_default().trim_start_matches('/').to_string();
        if l.get(labels::PROJECT) != Some(&spec.project) || l.get(labels::STAGE) != Some(&spec.name) {
            return Err(Error::failed_help(
                format!("volume {full} is used by container {name}, which is not stage {}'s", spec.name),
                "nothing was changed; stop and remove that container yourself first",
            ));
        }
        let running = c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
        out.push((c.id.unwrap_or_default(), name, running));
    }
    Ok(out)
}

/// Removes the volume and creates it again, empty, with the same driver, options and labels.
pub(crate) async fn recreate(engine: &Engine, full: &str) -> Result<()> {
    let old = engine.docker.inspect_volume(full).await.map_err(|e| Error::engine(format!("volume {full}"), e))?;
    engine
        .docker
        .remove_volume(full, None::<bollard::query_parameters::RemoveVolumeOptions>)
        .await
        .map_err(|e| Error::engine(format!("removing volume {full} before the restore"), e))?;
    let req = bollard::models::VolumeCreateRequest {
        name: Some(full.into()),
        driver: Some(old.driver),
        driver_opts: Some(old.options),
        labels: Some(old.labels),
        ..Default::default()
    };
    engine.docker.create_volume(req).await.map_err(|e| Error::engine(format!("creating volume {full}"), e))?;
    Ok(())
}
