//! Running a script as root on an engine's host, through the engine: a short-lived container
//! with the host's root filesystem at /host and the host's PID namespace, which `chroot`s there.
//! Membership of the `docker` group is root on the host anyway; this spends it deliberately,
//! so a login user without sudo (fleet's own servers) still gets host-level setup done.

use super::{Engine, Events};
use crate::error::{Error, Result};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptions,
};
use futures_util::StreamExt;

/// An image with `chroot` and `sh`: a registry's busybox unless `FLEET_HELPER_IMAGE` names
/// another (copied from this machine when the server cannot pull it).
pub fn helper_image() -> String {
    std::env::var("FLEET_HELPER_IMAGE").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "busybox:stable".into())
}

impl Engine {
    /// Runs `script` with the host's `/bin/sh` as root; its output, or an error naming `what` and
    /// the output when it exits non-zero.
    pub async fn run_as_host_root(&self, what: &str, script: &str, events: &Events) -> Result<String> {
        let image = helper_image();
        if self.docker.inspect_image(&image).await.is_err() {
            self.pull_or_copy(&image, events).await?;
        }
        let name = format!("fleetflow-host-helper-{}-{}", std::process::id(), fastrand::u32(..));
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: Some(vec!["chroot".into(), "/host".into(), "/bin/sh".into(), "-c".into(), script.into()]),
            labels: Some([("io.fleetflow.helper".to_string(), "true".to_string())].into()),
            host_config: Some(HostConfig {
                binds: Some(vec!["/:/host".into()]),
                pid_mode: Some("host".into()),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| Error::engine(format!("{what}: creating the helper container from {image}"), e))?;
        let result = self.run_helper(&name, what).await;
        let rm = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = self.docker.remove_container(&name, Some(rm)).await;
        result
    }

    async fn run_helper(&self, name: &str, what: &str) -> Result<String> {
        self.docker
            .start_container(name, None)
            .await
            .map_err(|e| Error::engine(format!("{what}: starting the helper"), e))?;
        let mut wait = self.docker.wait_container(name, None::<WaitContainerOptions>);
        // A non-zero exit arrives as an error from bollard; the logs say why either way.
        let code = match wait.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(Error::engine(format!("{what}: waiting for the helper"), e)),
            None => -1,
        };
        let opts = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
        let mut out = String::new();
        let mut logs = self.docker.logs(name, Some(opts));
        while let Some(Ok(chunk)) = logs.next().await {
            out.push_str(&chunk.to_string());
        }
        if code != 0 {
            return Err(Error::failed(format!("{}: {what} failed (exit {code}): {}", self.endpoint, out.trim())));
        }
        Ok(out)
    }
}
