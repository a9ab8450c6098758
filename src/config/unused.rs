//! `validate` checks every definition, not only those a stage uses: a service or server no stage
//! names yet is read as if a stage named it, so its unknown nodes, out-of-range ports and
//! `depends_on` targets that do not exist are reported the same way.

use super::Config;
use super::diagnostic::{ConfigError, suggest};
use kdl::{KdlDocument, KdlEntry, KdlNode};
use std::collections::BTreeSet;

/// The name of the stage the unused definitions are read in; no `.env.<stage>` file has it.
const SYNTHETIC_STAGE: &str = "(definitions no stage uses)";

/// Errors inside top-level `service` and `server` definitions that no stage names.
/// Returned beside them: the unset variables found there (warnings, as in a stage).
pub fn check(config: &Config) -> (Vec<ConfigError>, Vec<ConfigError>) {
    let services = unused(config, "service");
    let servers = unused(config, "server");
    if services.is_empty() && servers.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mut errors = dependency_errors(config, &services);
    errors.extend(cycle_error(config, &services));
    let names = |defs: &[&KdlNode]| defs.iter().filter_map(|n| name_of(n).map(String::from)).collect::<Vec<_>>();
    let synthetic = synthetic_config(config, &names(&services), &names(&servers));
    // As for `validate`'s stages, an unset variable is not an error here (it is set at deploy time).
    let (read, unset) = super::reader::read_stage_for_validate(&synthetic, SYNTHETIC_STAGE);
    // Only what lies inside an unused definition: the synthetic stage itself is not in the file.
    let ranges: Vec<(usize, usize)> =
        services.iter().chain(&servers).map(|n| (n.span().offset(), n.span().offset() + n.span().len())).collect();
    let inside = |e: &ConfigError| {
        let (start, end) = (e.span.offset(), e.span.offset() + e.span.len());
        ranges.iter().any(|&(s, t)| start >= s && end <= t)
    };
    if let Err(found) = read {
        errors.extend(found.into_iter().filter(|e| inside(e)));
    }
    errors.sort_by_key(|e| e.span.offset());
    (errors, unset.into_iter().filter(|e| inside(e)).collect())
}

fn name_of(node: &KdlNode) -> Option<&str> {
    node.entries().first().filter(|e| e.name().is_none())?.value().as_string()
}

/// Top-level definitions of `kind` that no stage names (by `service "x"` / `server "x"` in it).
fn unused<'a>(config: &'a Config, kind: &str) -> Vec<&'a KdlNode> {
    let mut used = BTreeSet::new();
    for stage in config.doc.nodes().iter().filter(|n| n.name().value() == "stage") {
        for child in super::reader::children(stage).filter(|c| c.name().value() == kind) {
            used.extend(child.entries().iter().filter(|e| e.name().is_none()).filter_map(|e| e.value().as_string()));
        }
    }
    config
        .doc
        .nodes()
        .iter()
        .filter(|n| n.name().value() == kind && name_of(n).is_some_and(|name| !used.contains(name)))
        .collect()
}

/// `depends_on` targets of unused services must at least be defined (no stage says more).
fn dependency_errors(config: &Config, services: &[&KdlNode]) -> Vec<ConfigError> {
    let defined: Vec<&str> =
        config.doc.nodes().iter().filter(|n| n.name().value() == "service").filter_map(name_of).collect();
    let mut errors = Vec::new();
    for svc in services {
        let name = name_of(svc).unwrap_or_default();
        for node in super::reader::children(svc).filter(|c| c.name().value() == "depends_on") {
            for entry in node.entries().iter().filter(|e| e.name().is_none()) {
                let Some(dep) = entry.value().as_string() else { continue };
                if defined.contains(&dep) {
                    continue;
                }
                let mut err = ConfigError::new(
                    &config.source,
                    entry.span(),
                    format!("service `{name}` depends on `{dep}`, which is not defined"),
                )
                .label("undefined service");
                if let Some(s) = suggest(dep, defined.iter().copied()) {
                    err = err.help(s);
                }
                errors.push(err);
            }
        }
    }
    errors
}

/// A `depends_on` cycle among unused services: a stage naming one must name the others it
/// depends on, so it would meet the cycle whichever it names.
fn cycle_error(config: &Config, services: &[&KdlNode]) -> Option<ConfigError> {
    let graph: Vec<crate::model::Service> = services
        .iter()
        .map(|svc| crate::model::Service {
            name: name_of(svc).unwrap_or_default().to_string(),
            depends_on: deps(svc).into_iter().map(|(d, _)| d).collect(),
            ..Default::default()
        })
        .collect();
    let cycle = crate::plan::graph::find_cycle(&graph)?;
    let from = services.iter().find(|s| name_of(s) == Some(cycle[0].as_str()))?;
    let (_, entry) = deps(from).into_iter().find(|(d, _)| *d == cycle[1])?;
    Some(
        ConfigError::new(&config.source, entry.span(), format!("dependency cycle: {}", cycle.join(" → ")))
            .label("this dependency closes the cycle")
            .help("remove one of these depends_on entries"),
    )
}

/// A service definition's `depends_on` names, each with where it is written.
fn deps(svc: &KdlNode) -> Vec<(String, &KdlEntry)> {
    super::reader::children(svc)
        .filter(|c| c.name().value() == "depends_on")
        .flat_map(|n| n.entries().iter().filter(|e| e.name().is_none()))
        .filter_map(|e| Some((e.value().as_string()?.to_string(), e)))
        .collect()
}

/// The file plus one stage naming every unused definition, its spans past the end of the text.
fn synthetic_config(config: &Config, services: &[String], servers: &[String]) -> Config {
    let outside = (config.source.text.len() + 1, 0);
    let reference = |kind: &str, name: &str| {
        let mut node = KdlNode::new(kind);
        let mut entry = KdlEntry::new(name);
        entry.set_span(outside);
        node.entries_mut().push(entry);
        node.set_span(outside);
        node
    };
    let mut children = KdlDocument::new();
    children.nodes_mut().extend(services.iter().map(|s| reference("service", s)));
    children.nodes_mut().extend(servers.iter().map(|s| reference("server", s)));
    let mut stage = reference("stage", SYNTHETIC_STAGE);
    stage.set_children(children);
    let mut doc = config.doc.clone();
    doc.nodes_mut().push(stage);
    Config {
        path: config.path.clone(),
        dir: config.dir.clone(),
        source: config.source.clone(),
        doc,
        project: config.project.clone(),
        project_explicit: config.project_explicit,
        warnings: Vec::new(),
    }
}
