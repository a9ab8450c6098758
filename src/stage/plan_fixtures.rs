//! Stages, servers and observations for the pure remote planners' unit tests.

use crate::infra::{Machine, Power};
use crate::model::{Orchestrator, Server, ServerProvider, Service, SshKey, SshSettings, StageSpec};
use crate::plan::{ObservedContainer, ObservedStage, RunState};

pub fn sakura(name: &str, services: &[&str]) -> Server {
    Server {
        name: name.into(),
        provider: ServerProvider::SakuraCloud {
            zone: "tk1a".into(),
            core: 2,
            memory_gb: 4,
            disk_gb: 40,
            os: "ubuntu-24.04".into(),
            ssh_key: SshKey::Account("laptop".into()),
            tags: vec![],
            startup_scripts: vec![],
        },
        ssh: SshSettings { user: "ubuntu".into(), port: 22, identity: None },
        services: services.iter().map(|s| s.to_string()).collect(),
        dns: None,
        manager: false,
        deploy_path: "/srv".into(),
    }
}

pub fn host(name: &str, services: &[&str]) -> Server {
    Server { provider: ServerProvider::Host { address: "10.0.0.9".into() }, ..sakura(name, services) }
}

pub fn svc(name: &str, deps: &[&str]) -> Service {
    Service {
        name: name.into(),
        image: "busybox:latest".into(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

/// A stage `dev` of project `p` with `api` depending on `db`.
pub fn stage(servers: Vec<Server>) -> StageSpec {
    StageSpec {
        project: "p".into(),
        name: "dev".into(),
        services: vec![svc("db", &[]), svc("api", &["db"])],
        servers,
        ..Default::default()
    }
}

pub fn swarm(mut spec: StageSpec) -> StageSpec {
    spec.orchestrator = Orchestrator::Swarm;
    spec
}

pub fn machine(power: Power) -> Machine {
    Machine {
        id: Some("113000000001".into()),
        power,
        ip: Some("192.0.2.10".into()),
        cpu: Some(2),
        memory_gb: Some(4),
        disks: vec!["113000000002".into()],
        created: None,
        new_this_run: false,
        booted_this_run: false,
        duplicates: 0,
    }
}

pub fn container(spec: &StageSpec, service: &str, state: RunState) -> ObservedContainer {
    ObservedContainer {
        id: format!("id-{service}"),
        name: spec.container_name(service),
        stage: spec.name.clone(),
        service: service.into(),
        state,
        health: None,
        config_hash: None,
        field_hashes: Default::default(),
        image_id: None,
        created: 0,
        status_text: String::new(),
        ports: vec![],
        environment: None,
    }
}

/// An engine holding these services' containers, all running, and the stage's network.
pub fn running(spec: &StageSpec, services: &[&str]) -> ObservedStage {
    ObservedStage {
        network_exists: true,
        volumes: Default::default(),
        containers: services.iter().map(|s| container(spec, s, RunState::Running)).collect(),
    }
}
