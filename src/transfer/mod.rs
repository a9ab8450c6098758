//! Images to servers with no registry: only the layers a server lacks.
//!
//! Docker's own `load` (moby `image/tarexport/load.go`) skips a layer whose chain id the
//! engine's layer store already holds without reading its `layer.tar`. So the source engine's
//! `docker save` stream is sent with the `layer.tar` entries the target already has left out;
//! everything else (configs, manifest) goes as saved. The stream goes straight through the SSH
//! socket forward the stage already holds: nothing listens, nothing outlives the run. The
//! archive is read twice from this machine's engine (first only for its manifest) and never
//! held in memory.

pub mod tarstream;

use crate::engine::Engine;
use crate::error::{Error, Result};
use bollard::query_parameters::{ImportImageOptionsBuilder, ListImagesOptions};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use tarstream::TarFilter;

/// What one transfer moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    pub layers_total: usize,
    pub layers_sent: usize,
    /// Bytes of the archive that went to the server.
    pub bytes_sent: u64,
    /// Bytes of layers the server already had, left out.
    pub bytes_skipped: u64,
}

/// The chain ids of a layer stack (OCI image spec): the first is its diff id, each next one is
/// `sha256(previous + " " + diff id)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let id = match out.last() {
            None => diff.clone(),
            Some(prev) => format!("sha256:{}", hex::encode(Sha256::digest(format!("{prev} {diff}").as_bytes()))),
        };
        out.push(id);
    }
    out
}

/// `uname -m` names (what `/info` reports) as Go's architecture names (what images say).
pub fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" | "arm64v8" => "arm64",
        "armv7l" | "armhf" | "armv6l" => "arm",
        "i386" | "i686" => "386",
        other => other,
    }
}

/// Whether this machine's image is a release fleet built (it is in no registry).
pub async fn is_release(source: &Engine, image: &str) -> bool {
    source
        .docker
        .inspect_image(image)
        .await
        .ok()
        .and_then(|i| i.config?.labels)
        .is_some_and(|l| l.contains_key(crate::build::RELEASE_LABEL))
}

/// Every layer chain the engine's images are made of.
async fn chains_on(engine: &Engine) -> Result<HashSet<String>> {
    let images = engine
        .docker
        .list_images(None::<ListImagesOptions>)
        .await
        .map_err(|e| Error::engine(format!("listing images on {}", engine.endpoint), e))?;
    let inspects = images.iter().map(|i| engine.docker.inspect_image(&i.id));
    let mut chains = HashSet::new();
    for inspected in futures_util::future::join_all(inspects).await.into_iter().flatten() {
        let diffs = inspected.root_fs.and_then(|r| r.layers).unwrap_or_default();
        chains.extend(chain_ids(&diffs));
    }
    Ok(chains)
}

/// Sends `image` from `source` to `target` with only the layers `target` lacks, after checking
/// the image's platform against the target's. `server` names the target in messages.
pub async fn send_image(source: &Engine, target: &Engine, image: &str, server: &str) -> Result<Sent> {
    let local = source
        .docker
        .inspect_image(image)
        .await
        .map_err(|e| Error::engine(format!("image {image} on this machine"), e))?;
    check_platform(target, &local, image, server).await?;
    let diffs = local.root_fs.as_ref().and_then(|r| r.layers.clone()).unwrap_or_default();
    let there = chains_on(target).await?;
    let present: BTreeSet<usize> =
        chain_ids(&diffs).iter().enumerate().filter(|(_, c)| there.contains(*c)).map(|(i, _)| i).collect();
    let skip: HashSet<String> = match present.is_empty() {
        true => HashSet::new(),
        false => {
            let layers = manifest_layers(source, image).await?;
            present.iter().filter_map(|i| layers.get(*i).cloned()).collect()
        }
    };
    let sent = Arc::new(Mutex::new(Sent { layers_total: diffs.len(), ..Sent::default() }));
    let counter = sent.clone();
    let mut filter = TarFilter::new(move |name: &str| !skip.contains(name));
    let body = source.docker.export_image(image).map(move |chunk| {
        let chunk = chunk?;
        let out = filter.push(&chunk);
        let mut s = counter.lock().unwrap_or_else(|e| e.into_inner());
        s.bytes_sent += out.len() as u64;
        s.bytes_skipped = filter.dropped;
        Ok::<_, bollard::errors::Error>(bytes::Bytes::from(out))
    });
    let opts = ImportImageOptionsBuilder::default().quiet(true).build();
    let mut loading = target.docker.import_image_stream(opts, body, None);
    while let Some(step) = loading.next().await {
        let step = step.map_err(|e| Error::engine(format!("sending image {image} to server {server}"), e))?;
        if let Some(message) = step.error_detail.and_then(|d| d.message) {
            return Err(Error::failed(format!("server {server} could not load image {image}: {message}")));
        }
    }
    target
        .docker
        .inspect_image(image)
        .await
        .map_err(|e| Error::engine(format!("image {image} is not on server {server} after sending it"), e))?;
    let mut done = sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
    done.layers_sent = done.layers_total - present.len();
    Ok(done)
}

/// The image's os/architecture must be the server's: an arm64 laptop build never reaches an
/// x86_64 server to crash-loop there.
async fn check_platform(
    target: &Engine,
    local: &bollard::models::ImageInspect,
    image: &str,
    server: &str,
) -> Result<()> {
    let info =
        target.docker.info().await.map_err(|e| Error::engine(format!("reading the engine of server {server}"), e))?;
    let server_arch = normalize_arch(info.architecture.as_deref().unwrap_or("")).to_string();
    let server_os = info.os_type.unwrap_or_else(|| "linux".into());
    let image_arch = normalize_arch(local.architecture.as_deref().unwrap_or("")).to_string();
    let image_os = local.os.clone().unwrap_or_else(|| "linux".into());
    if server_arch.is_empty() || image_arch.is_empty() || (server_arch == image_arch && server_os == image_os) {
        return Ok(());
    }
    let service = local
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(crate::build::SERVICE_LABEL).cloned())
        .map_or(String::new(), |s| format!(" (service {s})"));
    Err(Error::failed_help(
        format!(
            "image {image}{service} is built for {image_os}/{image_arch}, but server {server} runs {server_os}/{server_arch}; nothing was sent"
        ),
        format!("build it for {server_os}/{server_arch} (e.g. on a machine of that architecture) and run up again"),
    ))
}

/// The `layer.tar` paths of the saved image, in the order of its diff ids (from manifest.json).
async fn manifest_layers(source: &Engine, image: &str) -> Result<Vec<String>> {
    let mut only_manifest = TarFilter::new(|name: &str| name == "manifest.json");
    let mut kept = Vec::new();
    let mut saved = source.docker.export_image(image);
    while let Some(chunk) = saved.next().await {
        let chunk = chunk.map_err(|e| Error::engine(format!("reading image {image} on this machine"), e))?;
        kept.extend(only_manifest.push(&chunk));
    }
    let mut archive = tar::Archive::new(kept.as_slice());
    let mut entries = archive.entries().map_err(|e| Error::io(format!("reading the saved image {image}"), e))?;
    let mut text = String::new();
    if let Some(Ok(mut entry)) = entries.next() {
        std::io::Read::read_to_string(&mut entry, &mut text)
            .map_err(|e| Error::io(format!("reading the manifest of image {image}"), e))?;
    }
    parse_manifest(&text).ok_or_else(|| Error::failed(format!("the saved image {image} has no readable manifest.json")))
}

fn parse_manifest(text: &str) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "Layers")]
        layers: Vec<String>,
    }
    let entries: Vec<Entry> = serde_json::from_str(text).ok()?;
    entries.into_iter().next().map(|e| e.layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let diffs = vec!["sha256:aaa".to_string(), "sha256:bbb".into()];
        let chains = chain_ids(&diffs);
        assert_eq!(chains[0], "sha256:aaa");
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(b"sha256:aaa sha256:bbb")));
        assert_eq!(chains[1], expected);
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn architectures_compare_by_go_names() {
        assert_eq!(normalize_arch("x86_64"), "amd64");
        assert_eq!(normalize_arch("aarch64"), "arm64");
        assert_eq!(normalize_arch("amd64"), "amd64");
    }

    #[test]
    fn manifest_lists_layer_paths_in_order() {
        let text = r#"[{"Config":"c.json","RepoTags":["a:1"],"Layers":["x/layer.tar","y/layer.tar"]}]"#;
        assert_eq!(parse_manifest(text).unwrap(), ["x/layer.tar", "y/layer.tar"]);
        assert!(parse_manifest("not json").is_none());
    }
}
