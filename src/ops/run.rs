//! `fleet run`: a one-off container with a service's image, environment, volumes and network
//! (it reaches the other services by name), attached to this terminal, removed afterwards.

use super::exec::{forward_stdin, pump_output};
use super::{Site, Sites, require_service, volume::refuse_interrupted_restore};
use crate::config::Config;
use crate::engine::{self, Readiness, labels};
use crate::error::{Error, Result};
use crate::local_lock::StageLock;
use crate::model::{Service, StageSpec};
use crate::plan::ConfigHash;
use crate::stage::UpOptions;
use crate::ui::{self, Ui};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::BTreeSet;

/// The label that marks a one-off container (its value: the service it was run from).
pub const RUN_LABEL: &str = "fleetflow.run";

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub service: String,
    /// Empty: the service's own command.
    pub command: Vec<String>,
    /// `--no-deps`: do not start the service's dependencies first.
    pub no_deps: bool,
    pub no_tty: bool,
}

/// Runs the one-off container and returns its exit code.
pub async fn run(config: &Config, spec: &StageSpec, opts: &RunOptions, ui: &Ui) -> Result<i32> {
    require_service(spec, &opts.service)?;
    let sites = Sites::connect(config, spec, ui).await?;
    let result = run_on(config, &sites, spec, opts, ui).await;
    sites.close().await;
    result
}

async fn run_on(config: &Config, sites: &Sites, spec: &StageSpec, opts: &RunOptions, ui: &Ui) -> Result<i32> {
    let site = match spec.is_swarm() {
        true => swarm_site(sites, spec, opts).await?,
        false => sites.of_service(&opts.service)?,
    };
    refuse_interrupted_restore(&site.engine, &site.spec).await?;
    if !opts.no_deps && !spec.is_swarm() {
        // Dependencies are converged like `up` does, under the stage lock, released before the run.
        let _lock = StageLock::acquire(&config.project, &spec.name, &format!("run {}", spec.name), None).await?;
        start_dependencies(sites, site, spec, &opts.service, ui).await?;
    }
    let svc = site.spec.service(&opts.service).cloned().ok_or_else(|| Error::failed("service left its server"))?;
    ensure_volumes(site, &svc).await?;
    let tty = !opts.no_tty && ui::interactive();
    let name = format!("{}-run-{:08x}", spec.container_name(&svc.name), fastrand::u32(..));
    let body = one_off_body(&site.spec, &svc, &opts.command, tty);
    let docker = &site.engine.docker;
    let create = CreateContainerOptionsBuilder::new().name(&name).build();
    let id = docker
        .create_container(Some(create), body)
        .await
        .map_err(|e| Error::engine(format!("creating one-off container {name}"), e))?
        .id;
    let result =
        attach_and_wait(site, &id, tty).await.map_err(|e| Error::engine(format!("one-off container {name}"), e));
    let rm = RemoveContainerOptionsBuilder::new().force(true).build();
    let _ = docker.remove_container(&id, Some(rm)).await;
    result
}

/// A swarm stage's one-off runs beside the service's task (its volumes are on that node), on the
/// stage's attachable overlay network, so it reaches the services by name like a task does. Its
/// dependencies must run already: swarm starts services, `fleet up` scales them.
async fn swarm_site<'a>(sites: &'a Sites, spec: &StageSpec, opts: &RunOptions) -> Result<&'a Site> {
    let swarm = super::swarm::Swarm::of(sites, spec).await?;
    if !opts.no_deps {
        let deps: Vec<String> = dependencies(spec, &opts.service).into_iter().collect();
        swarm.require_running(spec, &opts.service, &deps).await?;
    }
    swarm.run_site(spec, &opts.service).await
}

/// The service's named volumes, made as `up` makes them (owned by the stage) when missing: the
/// engine would otherwise create them unlabelled on the one-off's create, and the next `up`
/// would refuse them as someone else's.
async fn ensure_volumes(site: &Site, svc: &Service) -> Result<()> {
    for v in &svc.volumes {
        let crate::model::VolumeSource::Named { name } = &v.source else { continue };
        let full = site.spec.volume_name(name);
        if !site.engine.volume_is_ours(&site.spec, &full).await? {
            let req = bollard::models::VolumeCreateRequest {
                name: Some(full.clone()),
                labels: Some(labels::owner(&site.spec)),
                ..Default::default()
            };
            site.engine
                .docker
                .create_volume(req)
                .await
                .map_err(|e| Error::engine(format!("creating volume {full}"), e))?;
        }
    }
    Ok(())
}

async fn attach_and_wait(site: &Site, id: &str, tty: bool) -> std::result::Result<i32, bollard::errors::Error> {
    let docker = &site.engine.docker;
    let attach = AttachContainerOptionsBuilder::new().stream(true).stdin(true).stdout(true).stderr(true).build();
    let attached = docker.attach_container(id, Some(attach)).await?;
    docker.start_container(id, None::<StartContainerOptions>).await?;
    let _raw = if tty { ui::RawMode::enter().ok() } else { None };
    if tty && let Some((w, h)) = ui::terminal_size() {
        let size =
            bollard::query_parameters::ResizeContainerTTYOptionsBuilder::default().w(w.into()).h(h.into()).build();
        let _ = docker.resize_container_tty(id, size).await;
    }
    let feeding = tokio::spawn(forward_stdin(attached.input));
    let pumped = pump_output(attached.output).await;
    feeding.abort();
    pumped?;
    let wait = WaitContainerOptionsBuilder::new().condition("not-running").build();
    let code = match docker.wait_container(id, Some(wait)).next().await {
        Some(Ok(r)) => r.status_code,
        // An error in the wait's answer, or no answer: the engine's record says how it exited.
        _ => site.engine.container_exit_code(id).await?,
    };
    Ok(code as i32)
}

/// The service's create body, as a one-off: its command replaced, no published ports, no
/// restart policy, no name alias on the network (the service's name stays the service's), and
/// not labelled as the service's container, so `up` never mistakes it for one.
fn one_off_body(spec: &StageSpec, svc: &Service, command: &[String], tty: bool) -> ContainerCreateBody {
    let mut body = engine::create_body(spec, svc, &ConfigHash::of(svc, ""));
    if !command.is_empty() {
        body.cmd = Some(command.to_vec());
    }
    let mut owner = labels::owner(spec);
    owner.insert(RUN_LABEL.into(), svc.name.clone());
    body.labels = Some(owner);
    body.exposed_ports = None;
    body.healthcheck = None;
    if let Some(host) = body.host_config.as_mut() {
        host.port_bindings = None;
        host.restart_policy = None;
    }
    body.networking_config = None;
    body.tty = Some(tty);
    body.open_stdin = Some(true);
    body.stdin_once = Some(true);
    body.attach_stdin = Some(true);
    body.attach_stdout = Some(true);
    body.attach_stderr = Some(true);
    body
}

/// Every service `service` depends on, directly or not.
fn dependencies(spec: &StageSpec, service: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![service.to_string()];
    while let Some(name) = todo.pop() {
        for d in spec.service(&name).map(|s| s.depends_on.clone()).unwrap_or_default() {
            if out.insert(d.clone()) {
                todo.push(d);
            }
        }
    }
    out
}

/// Converges the service's dependencies on its own engine (as `up` would); a dependency placed
/// on another server must already run there.
async fn start_dependencies(sites: &Sites, site: &Site, spec: &StageSpec, service: &str, ui: &Ui) -> Result<()> {
    let deps = dependencies(spec, service);
    if deps.is_empty() {
        return Ok(());
    }
    for dep in deps.iter().filter(|d| site.spec.service(d).is_none()) {
        let other = sites.of_service(dep)?;
        super::exec::running_container(&other.engine, &other.spec, dep, &other.label()).await.map_err(|e| {
            Error::failed_help(
                format!("dependency {dep} of {service} is not running: {e}"),
                format!("run `fleet up {}`, or pass --no-deps", spec.name),
            )
        })?;
    }
    let mut part = site.spec.clone();
    part.services.retain(|s| deps.contains(&s.name));
    for s in &mut part.services {
        s.depends_on.retain(|d| part_has(&site.spec, &deps, d));
    }
    let opts = UpOptions {
        pull: engine::PullPolicy::Missing,
        dry_run: false,
        remove_orphans: false,
        force_recreate: false,
        format: ui::Format::Text,
        lock_wait: None,
        plan_gate: None,
    };
    let crate::stage::PlannedStage { plan, observed, images, .. } =
        crate::stage::observe_and_plan_up(&site.engine, &part, &opts, ui, false).await?;
    // stdout is the one-off's own output: what fleet does first goes to stderr.
    let base = ui.events();
    let (ui, readiness) = (*ui, Readiness::for_stage(&part));
    let events: engine::Events = std::sync::Arc::new(move |event| match event {
        engine::Event::Applying(action) => ui.note(ui::action_line(&action)),
        other => base(other),
    });
    engine::apply_up(&site.engine, &part, &plan, &observed, &images, &readiness, events).await
}

fn part_has(site: &StageSpec, deps: &BTreeSet<String>, name: &str) -> bool {
    deps.contains(name) && site.service(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_off_keeps_image_env_and_volumes_but_not_ports_or_the_service_label() {
        let svc = Service {
            name: "api".into(),
            image: "img:1".into(),
            environment: [("A".to_string(), "1".to_string())].into(),
            ports: vec![crate::model::Port {
                host: Some(8080),
                container: 80,
                protocol: crate::model::Protocol::Tcp,
                host_ip: None,
                mode: Default::default(),
            }],
            depends_on: vec!["db".into()],
            ..Service::default()
        };
        let spec =
            StageSpec { project: "p".into(), name: "dev".into(), services: vec![svc.clone()], ..StageSpec::default() };
        let body = one_off_body(&spec, &svc, &["migrate".into(), "--up".into()], false);
        assert_eq!(body.cmd, Some(vec!["migrate".to_string(), "--up".to_string()]));
        assert_eq!(body.image.as_deref(), Some("img:1"));
        assert_eq!(body.env, Some(vec!["A=1".to_string()]));
        let labels = body.labels.unwrap();
        assert!(!labels.contains_key(labels::SERVICE));
        assert_eq!(labels.get(RUN_LABEL).map(String::as_str), Some("api"));
        let host = body.host_config.unwrap();
        assert!(host.port_bindings.is_none());
        assert_eq!(host.network_mode.as_deref(), Some("p-dev"));
    }

    #[test]
    fn dependencies_are_transitive() {
        let s = |n: &str, d: &[&str]| Service {
            name: n.into(),
            depends_on: d.iter().map(|x| x.to_string()).collect(),
            ..Service::default()
        };
        let spec = StageSpec {
            services: vec![s("db", &[]), s("cache", &["db"]), s("api", &["cache"])],
            ..StageSpec::default()
        };
        assert_eq!(dependencies(&spec, "api").into_iter().collect::<Vec<_>>(), ["cache", "db"]);
    }
}
