//! Checks across services of one resolved stage: dependencies, cycles, port clashes.

use super::Config;
use super::diagnostic::ConfigError;
use super::reader::Spans;
use crate::model::{Orchestrator, PortMode, StageSpec};
use crate::plan::graph;
use std::collections::HashMap;

/// With several servers each service names its server; one server takes every service.
fn check_placement(config: &Config, stage: &str, spec: &StageSpec, spans: &Spans, errors: &mut Vec<ConfigError>) {
    let src = &config.source;
    if spec.servers.is_empty() || (spec.servers.len() == 1 && spec.servers[0].services.is_empty()) {
        return;
    }
    for server in &spec.servers {
        for name in &server.services {
            if spec.service(name).is_none() {
                let span = spec
                    .services
                    .first()
                    .and_then(|s| spans.service_ref.get(&s.name))
                    .copied()
                    .unwrap_or((0, 0).into());
                errors.push(
                    ConfigError::new(
                        src,
                        span,
                        format!("server `{}` lists service `{name}`, which is not in stage `{stage}`", server.name),
                    )
                    .help(format!("add `service \"{name}\"` to the stage or remove it from the server's `services`")),
                );
            }
        }
    }
    for svc in &spec.services {
        let hosts: Vec<&str> =
            spec.servers.iter().filter(|s| s.services.contains(&svc.name)).map(|s| s.name.as_str()).collect();
        let span = spans.service_ref[&svc.name];
        match hosts.as_slice() {
            [_] => {}
            [] => errors.push(
                ConfigError::new(
                    src,
                    span,
                    format!("service `{}` is placed on no server of stage `{stage}`", svc.name),
                )
                .label("placed nowhere")
                .help("list it in one server's `services`"),
            ),
            many => errors.push(
                ConfigError::new(
                    src,
                    span,
                    format!("service `{}` is placed on several servers: {}", svc.name, many.join(", ")),
                )
                .label("placed twice")
                .help("list each service in exactly one server's `services`"),
            ),
        }
    }
}

/// A stage of fleet's own containers: no service sets a swarm-only field or a port mode.
fn check_swarm_only(config: &Config, stage: &str, spec: &StageSpec, spans: &Spans, errors: &mut Vec<ConfigError>) {
    let src = &config.source;
    for svc in &spec.services {
        for field in ["replicas", "endpoint_mode", "update"] {
            let Some(span) = spans.swarm_only.get(&(svc.name.clone(), field)) else { continue };
            if field == "replicas" && svc.replicas == 1 {
                continue;
            }
            errors.push(
                ConfigError::new(src, *span, format!("`{field}` of service `{}` needs a swarm stage", svc.name))
                    .label(format!("stage `{stage}` runs one container per service"))
                    .help(format!(
                        "add `orchestrator \"swarm\"` to stage `{stage}`, or set it only in the swarm stage's override: stage \"prod\" {{ service \"{}\" {{ {field} … }} }}",
                        svc.name
                    )),
            );
        }
        for (i, port) in svc.ports.iter().enumerate() {
            if port.mode != PortMode::Ingress {
                errors.push(
                    ConfigError::new(src, spans.ports[&(svc.name.clone(), i)], "port `mode` needs a swarm stage")
                        .help("a container's port is published on its own server; leave `mode` out"),
                );
            }
        }
    }
}

/// Swarm fields only in swarm stages; a swarm needs servers and an odd number of managers.
fn check_swarm(config: &Config, stage: &str, spec: &StageSpec, spans: &Spans, errors: &mut Vec<ConfigError>) {
    let src = &config.source;
    if spec.orchestrator != Orchestrator::Swarm {
        check_swarm_only(config, stage, spec, spans, errors);
        return;
    }
    let stage_span = config
        .doc
        .nodes()
        .iter()
        .find(|n| n.name().value() == "stage" && n.entries().first().and_then(|e| e.value().as_string()) == Some(stage))
        .map_or((0, 0).into(), |n| n.span());
    if spec.servers.is_empty() {
        errors.push(ConfigError::new(src, stage_span, format!("swarm stage `{stage}` has no servers")).help(
            "add the servers that become its nodes: server \"node-1\" { provider \"sakura-cloud\"; role \"manager\" }",
        ));
        return;
    }
    for svc in &spec.services {
        for (i, port) in svc.ports.iter().enumerate() {
            if svc.endpoint_mode == crate::model::EndpointMode::Dnsrr && port.mode == PortMode::Ingress {
                errors.push(
                    ConfigError::new(
                        src,
                        spans.ports[&(svc.name.clone(), i)],
                        format!("service `{}` uses endpoint_mode \"dnsrr\" with an ingress port", svc.name),
                    )
                    .label("the routing mesh needs a virtual IP")
                    .help(
                        "publish it on the node that runs the task: port … mode=\"host\", or use endpoint_mode \"vip\"",
                    ),
                );
            }
        }
    }
    if spec.auto_suspend.is_some() {
        errors.push(
            ConfigError::new(src, stage_span, format!("swarm stage `{stage}` cannot auto-suspend"))
                .label("a node that powers itself off takes its replicas (and a manager, the quorum) with it")
                .help(format!(
                    "remove `auto_suspend`, and use `fleet down {stage} --suspend` to power the whole swarm off"
                )),
        );
    }
    let managers = spec.servers.iter().filter(|s| s.manager).count();
    if managers % 2 == 0 && managers > 0 {
        errors.push(
            ConfigError::new(src, stage_span, format!("swarm stage `{stage}` has {managers} managers"))
                .label("an even number")
                .help("a swarm keeps quorum with an odd number of managers: mark 1 or 3 servers role \"manager\""),
        );
    }
    for server in &spec.servers {
        for name in &server.services {
            if spec.service(name).is_none() {
                errors.push(ConfigError::new(
                    src,
                    stage_span,
                    format!("server `{}` lists service `{name}`, which is not in stage `{stage}`", server.name),
                ));
            }
        }
    }
}

pub fn validate(config: &Config, stage: &str, spec: &StageSpec, spans: &Spans) -> Vec<ConfigError> {
    let src = &config.source;
    let mut errors = Vec::new();

    let swarm = spec.orchestrator == Orchestrator::Swarm;
    check_swarm(config, stage, spec, spans, &mut errors);
    check_cross_server_deps(config, spec, spans, &mut errors);
    check_project_named(config, stage, spec, &mut errors);
    check_dependencies_exist(config, stage, spec, spans, &mut errors);

    if let Some(cycle) = graph::find_cycle(&spec.services) {
        let span = spans.depends_on[&(cycle[0].clone(), cycle[1].clone())];
        errors.push(
            ConfigError::new(src, span, format!("dependency cycle: {}", cycle.join(" → ")))
                .label("this dependency closes the cycle")
                .help("remove one of these depends_on entries"),
        );
    }

    if !swarm {
        check_placement(config, stage, spec, spans, &mut errors);
    }

    check_host_ports(config, stage, spec, spans, &mut errors);
    errors
}

/// A dependency on another server is reached through its server's address, so it must publish a
/// port there; containers on one server keep reaching each other on the network. (A swarm's
/// overlay network reaches every node.)
fn check_cross_server_deps(config: &Config, spec: &StageSpec, spans: &Spans, errors: &mut Vec<ConfigError>) {
    let src = &config.source;
    if spec.servers.len() > 1 && spec.orchestrator != Orchestrator::Swarm {
        for svc in &spec.services {
            for dep in &svc.depends_on {
                let (Some(here), Some(there), Some(target)) =
                    (spec.server_of(&svc.name), spec.server_of(dep), spec.service(dep))
                else {
                    continue;
                };
                if here.name != there.name && target.ports.iter().all(|p| p.host.is_none()) {
                    let span = spans.depends_on[&(svc.name.clone(), dep.clone())];
                    errors.push(
                        ConfigError::new(
                            src,
                            span,
                            format!(
                                "service `{}` on server `{}` depends on `{dep}` on server `{}`, which publishes no port",
                                svc.name, here.name, there.name
                            ),
                        )
                        .label("on another server")
                        .help(format!(
                            "`{dep}` is reached from `{}` at its server's address: publish the port it serves, e.g. ports {{ port host=5432 container=5432 }}",
                            here.name
                        )),
                    );
                }
            }
        }
    }
}

/// A stage with servers finds them by the project's name, so the file must write it.
fn check_project_named(config: &Config, stage: &str, spec: &StageSpec, errors: &mut Vec<ConfigError>) {
    let src = &config.source;
    if !spec.is_local() && !config.project_explicit {
        let span = config
            .doc
            .nodes()
            .iter()
            .find(|n| {
                n.name().value() == "stage" && n.entries().first().and_then(|e| e.value().as_string()) == Some(stage)
            })
            .map_or((0, 0).into(), |n| n.span());
        errors.push(
            ConfigError::new(src, span, format!("stage `{stage}` has servers, so the file must name its project"))
                .label("remote stage")
                .help(format!(
                    "add `project \"{}\"` at the top: servers are found by the tag fleetflow:<project>:{stage}:<server>, and a name taken from the directory could match another checkout's servers in the same account",
                    config.project
                )),
        );
    }
}

/// Every `depends_on` names a service of the stage (or says it is defined elsewhere).
fn check_dependencies_exist(
    config: &Config,
    stage: &str,
    spec: &StageSpec,
    spans: &Spans,
    errors: &mut Vec<ConfigError>,
) {
    let src = &config.source;
    // A set, not `spec.service` per dependency: a chain of 100,000 services took minutes.
    let in_stage: std::collections::HashSet<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    let defined: std::collections::HashSet<&str> = config
        .doc
        .nodes()
        .iter()
        .filter(|n| n.name().value() == "service")
        .filter_map(|n| n.entries().first().and_then(|e| e.value().as_string()))
        .collect();
    for svc in &spec.services {
        for dep in &svc.depends_on {
            if !in_stage.contains(dep.as_str()) {
                let span = spans.depends_on[&(svc.name.clone(), dep.clone())];
                let err = if defined.contains(dep.as_str()) {
                    ConfigError::new(
                        src,
                        span,
                        format!("service `{}` depends on `{dep}`, which is not in stage `{stage}`", svc.name),
                    )
                    .label("not in this stage")
                    .help(format!("add `service \"{dep}\"` to stage `{stage}`"))
                } else {
                    ConfigError::new(
                        src,
                        span,
                        format!("service `{}` depends on `{dep}`, which is not defined", svc.name),
                    )
                    .label("undefined service")
                };
                errors.push(err);
            }
        }
    }
}

/// A host port (per address and protocol) is published by one service only.
fn check_host_ports(config: &Config, stage: &str, spec: &StageSpec, spans: &Spans, errors: &mut Vec<ConfigError>) {
    let src = &config.source;
    let mut used: HashMap<(String, u16, &str), String> = HashMap::new();
    for svc in &spec.services {
        for (i, port) in svc.ports.iter().enumerate() {
            let Some(host) = port.host else { continue };
            let ip = port.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into());
            let key = (ip, host, port.protocol.as_str());
            if let Some(other) = used.get(&key) {
                errors.push(
                    ConfigError::new(
                        src,
                        spans.ports[&(svc.name.clone(), i)],
                        format!("host port {host}/{} is used twice in stage `{stage}`", port.protocol.as_str()),
                    )
                    .label(format!("also published by `{other}`"))
                    .help("give each service its own host port"),
                );
            } else {
                used.insert(key, svc.name.clone());
            }
        }
    }
}
