//! Service → Docker create body. Pure, so the mapping is unit-tested without an engine.

use super::labels;
use crate::model::{Service, StageSpec, VolumeSource};
use crate::plan::ConfigHash;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkingConfig, PortBinding,
    RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};
use std::collections::HashMap;

const NANOS_PER_MS: i64 = 1_000_000;

/// A service's health check in the engine's units (nanoseconds); containers and swarm tasks alike.
pub(crate) fn health_config(h: &crate::model::Healthcheck) -> HealthConfig {
    HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(h.interval_ms as i64 * NANOS_PER_MS),
        timeout: Some(h.timeout_ms as i64 * NANOS_PER_MS),
        retries: Some(i64::from(h.retries)),
        start_period: Some(h.start_period_ms as i64 * NANOS_PER_MS),
        start_interval: None,
    }
}

pub fn create_body(spec: &StageSpec, svc: &Service, hash: &ConfigHash) -> ContainerCreateBody {
    let network = spec.network_name();
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = Vec::new();
    for p in &svc.ports {
        let key = format!("{}/{}", p.container, p.protocol.as_str());
        exposed.push(key.clone());
        port_bindings.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(PortBinding {
            host_ip: p.host_ip.clone(),
            host_port: Some(p.host.map(|h| h.to_string()).unwrap_or_default()),
        });
    }
    let binds: Vec<String> = svc
        .volumes
        .iter()
        .map(|v| {
            let source = match &v.source {
                VolumeSource::Bind { path } => path.display().to_string(),
                VolumeSource::Named { name } => spec.volume_name(name),
            };
            let mode = if v.read_only { ":ro" } else { "" };
            format!("{source}:{}{mode}", v.target)
        })
        .collect();
    let restart = svc.restart.map(|r| DockerRestart {
        name: Some(match r {
            crate::model::RestartPolicy::No => RestartPolicyNameEnum::NO,
            crate::model::RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
            crate::model::RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
            crate::model::RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
        }),
        maximum_retry_count: None,
    });
    let healthcheck = svc.healthcheck.as_ref().map(health_config);
    ContainerCreateBody {
        image: Some(svc.image.clone()),
        cmd: svc.command.clone(),
        entrypoint: svc.entrypoint.clone(),
        env: Some(svc.environment.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels::container(spec, svc, hash)),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        stop_signal: svc.stop_signal.clone(),
        stop_timeout: svc.stop_timeout.map(i64::from),
        host_config: Some(HostConfig {
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            binds: (!binds.is_empty()).then_some(binds),
            restart_policy: restart,
            network_mode: Some(network.clone()),
            extra_hosts: (!svc.peer_hosts.is_empty())
                .then(|| svc.peer_hosts.iter().map(|(name, ip)| format!("{name}:{ip}")).collect()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network,
                EndpointSettings { aliases: Some(vec![svc.name.clone()]), ..Default::default() },
            )])),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Healthcheck, Port, Protocol, Volume};

    #[test]
    fn maps_ports_volumes_health_and_network() {
        let spec = StageSpec {
            project: "p".into(),
            name: "local".into(),
            services: vec![],
            servers: vec![],
            protect: false,
            auto_suspend: None,
            ..Default::default()
        };
        let svc = Service {
            name: "db".into(),
            image: "postgres:16".into(),
            ports: vec![Port {
                host: Some(5433),
                container: 5432,
                protocol: Protocol::Tcp,
                host_ip: Some("127.0.0.1".into()),
                mode: Default::default(),
            }],
            volumes: vec![
                Volume {
                    source: VolumeSource::Named { name: "data".into() },
                    target: "/data".into(),
                    read_only: false,
                },
                Volume {
                    source: VolumeSource::Bind { path: "/srv/conf".into() },
                    target: "/conf".into(),
                    read_only: true,
                },
            ],
            healthcheck: Some(Healthcheck {
                test: vec!["CMD".into(), "true".into()],
                interval_ms: 500,
                timeout_ms: 1000,
                retries: 2,
                start_period_ms: 0,
            }),
            ..Default::default()
        };
        let body = create_body(&spec, &svc, &ConfigHash::of(&svc, "sha256:x"));
        let host = body.host_config.unwrap();
        assert_eq!(host.binds.unwrap(), vec!["p-local-data:/data", "/srv/conf:/conf:ro"]);
        let binding = &host.port_bindings.unwrap()["5432/tcp"].clone().unwrap()[0];
        assert_eq!(binding.host_port.as_deref(), Some("5433"));
        assert_eq!(host.network_mode.as_deref(), Some("p-local"));
        assert_eq!(body.healthcheck.unwrap().interval, Some(500_000_000));
        let labels = body.labels.unwrap();
        assert_eq!(labels[labels::SERVICE], "db");
        assert_eq!(labels[labels::COMPOSE_PROJECT], "p-local");
        let aliases = body.networking_config.unwrap().endpoints_config.unwrap()["p-local"].aliases.clone();
        assert_eq!(aliases, Some(vec!["db".to_string()]));
    }
}
