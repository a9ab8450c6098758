//! Running a script as root on an engine's host, through the engine: a short-lived container
//! with the host's root filesystem at /host and the host's PID namespace, which `chroot`s there.
//! Membership of the `docker` group is root on the host anyway; this spends it deliberately,
//! so a login user without sudo (fleet's own servers) still gets host-level setup done.
//! The helper runs the host's own binaries from fleet's link-only image (`helper_image`): no
//! registry and no image the user did not declare.

use super::helper_image::{CHROOT, HOST_ROOT};
use super::{Engine, Events};
use crate::error::{Error, Result};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptions,
};
use futures_util::StreamExt;

impl Engine {
    /// Runs `script` with the host's `/bin/sh` as root; its output, or an error naming `what` and
    /// the output when it exits non-zero.
    pub async fn run_as_host_root(&self, what: &str, script: &str, _events: &Events) -> Result<String> {
        let image = self.ensure_helper_image().await?;
        let name = format!("fleetflow-host-helper-{}-{}", std::process::id(), fastrand::u32(..));
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(vec![CHROOT.into(), HOST_ROOT.into(), "/bin/sh".into(), "-c".into(), script.into()]),
            labels: Some([("io.fleetflow.helper".to_string(), "true".to_string())].into()),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("/:{HOST_ROOT}")]),
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
