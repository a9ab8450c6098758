//! KDL nodes → model, one stage at a time, with every mistake tied to its span.

use super::diagnostic::{ConfigError, SourceFile, suggest};
use super::interpolate::{InterpolateError, VarSource, Vars, interpolate};
use super::{Config, ConfigErrors};
use crate::error::Result;
use crate::model::{Healthcheck, Port, Protocol, RestartPolicy, Service, StageSpec, Volume, VolumeSource};
use kdl::{KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

const TOP_LEVEL: &[&str] = &["project", "variables", "service", "stage", "providers", "provider", "server"];
const STAGE_NODES: &[&str] = &["service", "variables", "protect", "server", "auto_suspend", "orchestrator", "proxy"];
const SERVICE_NODES: &[&str] = &[
    "image",
    "version",
    "command",
    "entrypoint",
    "ports",
    "environment",
    "env",
    "env_file",
    "volumes",
    "depends_on",
    "healthcheck",
    "restart",
    "labels",
    "stop_signal",
    "stop_timeout",
    "oneshot",
    "replicas",
    "endpoint_mode",
    "update",
    "route",
    "build",
];
const HEALTH_NODES: &[&str] = &["test", "interval", "timeout", "retries", "start_period"];
const PORT_PROPS: &[&str] = &["host", "container", "protocol", "host_ip", "mode"];
const UPDATE_NODES: &[&str] = &["order", "parallelism", "delay", "failure_action", "monitor"];

/// Where things were written, so cross-service checks can point at them.
#[derive(Debug, Default)]
pub struct Spans {
    /// The `service "x"` entry inside the stage.
    pub service_ref: HashMap<String, SourceSpan>,
    /// (service, dependency) → the `depends_on` argument.
    pub depends_on: HashMap<(String, String), SourceSpan>,
    /// (service, index in `ports`) → the `port` node.
    pub ports: HashMap<(String, usize), SourceSpan>,
    /// (service, field) → a field only a swarm stage reads (`replicas`, `update`, …).
    pub swarm_only: HashMap<(String, &'static str), SourceSpan>,
    /// service → its first `route` node, for the checks that need the whole stage.
    pub routes: HashMap<String, SourceSpan>,
    /// Values that a variable from `.env` or the environment went into, where they are written.
    pub secrets: Vec<(SourceSpan, String)>,
}

/// `project "name"`, or the directory name made safe for Docker; and whether the file states it (`project "…"`) rather than the directory.
pub fn project_decl(doc: &kdl::KdlDocument, src: &SourceFile, dir: &Path) -> Result<(String, bool)> {
    let explicit = doc.nodes().iter().any(|n| n.name().value() == "project");
    project_from(doc, src, dir).map(|name| (name, explicit))
}

fn project_from(doc: &kdl::KdlDocument, src: &SourceFile, dir: &Path) -> Result<String> {
    if let Some(node) = doc.nodes().iter().find(|n| n.name().value() == "project") {
        let entry = node.entries().first();
        let name = entry.and_then(|e| e.value().as_string());
        let span = entry.map_or(node.span(), KdlEntry::span);
        return match name {
            Some(n) if is_docker_name(n) => Ok(n.to_string()),
            Some(n) => Err(errors(
                src,
                vec![
                    ConfigError::new(src, span, format!("project name `{n}` cannot be used in container names"))
                        .label("invalid name")
                        .help("use lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit"),
                ],
            )),
            None => Err(errors(
                src,
                vec![ConfigError::new(src, span, "`project` takes one string, e.g. `project \"myapp\"`")],
            )),
        };
    }
    let raw = dir.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' { c } else { '-' })
        .collect();
    let cleaned = cleaned.trim_start_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    Ok(if cleaned.is_empty() { "fleet".into() } else { cleaned })
}

fn is_docker_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn errors(src: &SourceFile, errors: Vec<ConfigError>) -> crate::error::Error {
    ConfigErrors { file: src.name.clone(), errors }.into()
}

/// Checks that do not depend on a stage: known top-level nodes, unique names.
pub fn check_structure(config: &Config) -> Vec<ConfigError> {
    let src = &config.source;
    let mut errs = Vec::new();
    let mut seen: HashMap<(String, String), SourceSpan> = HashMap::new();
    for node in config.doc.nodes() {
        let kind = node.name().value();
        if !TOP_LEVEL.contains(&kind) {
            errs.push(unknown_node(src, node, "at the top level", TOP_LEVEL));
            continue;
        }
        if !matches!(kind, "service" | "stage" | "server") {
            continue;
        }
        let Some(first) = node.entries().first() else {
            errs.push(ConfigError::new(src, node.span(), format!("`{kind}` needs a name, e.g. `{kind} \"web\"`")));
            continue;
        };
        let Some(name) = first.value().as_string() else {
            errs.push(ConfigError::new(src, first.span(), format!("the name of a {kind} must be a string")));
            continue;
        };
        if kind != "server" && !is_docker_name(name) {
            errs.push(
                ConfigError::new(src, first.span(), format!("{kind} name `{name}` cannot be used in container names"))
                    .help("use lowercase letters, digits, `-`, `_` and `.`"),
            );
        }
        let key = (kind.to_string(), name.to_string());
        if let Some(prev) = seen.get(&key) {
            let (line, _) = src.line_col(prev.offset());
            errs.push(
                ConfigError::new(src, first.span(), format!("{kind} `{name}` is defined twice"))
                    .label("second definition")
                    .help(format!("the first definition is on line {line}; merge them")),
            );
        } else {
            seen.insert(key, first.span());
        }
    }
    errs
}

pub(super) fn unknown_node(src: &SourceFile, node: &KdlNode, place: &str, known: &[&str]) -> ConfigError {
    let name = node.name().value();
    let err = ConfigError::new(src, node.name().span(), format!("unknown node `{name}` {place}")).label("unknown");
    match suggest(name, known.iter().copied()) {
        Some(s) => err.help(s),
        None => err.help(format!("expected one of: {}", known.join(", "))),
    }
}

/// Reads one stage with its variables resolved. Errors are collected, not thrown one by one.
pub fn read_stage(config: &Config, stage: &str) -> std::result::Result<(StageSpec, Spans), Vec<ConfigError>> {
    read_stage_with(config, stage, None).0
}

/// Like `read_stage`, for `validate`: a variable that is unset (deploy-time, e.g. a token CI does
/// not have) is a warning, returned beside the result, and its value is left as written.
pub fn read_stage_for_validate(config: &Config, stage: &str) -> (StageResult, Vec<ConfigError>) {
    let (result, unset) = read_stage_with(config, stage, Some(Vec::new()));
    (result, unset.unwrap_or_default())
}

type StageResult = std::result::Result<(StageSpec, Spans), Vec<ConfigError>>;

fn read_stage_with(
    config: &Config,
    stage: &str,
    unset: Option<Vec<ConfigError>>,
) -> (StageResult, Option<Vec<ConfigError>>) {
    let stage_node = config
        .doc
        .nodes()
        .iter()
        .find(|n| n.name().value() == "stage" && n.entries().first().and_then(|e| e.value().as_string()) == Some(stage))
        .expect("caller checked the stage exists");
    let mut r = Reader {
        src: &config.source,
        dir: &config.dir,
        vars: Vars::default(),
        errors: Vec::new(),
        env_file_values: Default::default(),
        env_file_secrets: Default::default(),
        unset,
        secrets: Vec::new(),
    };
    r.vars = r.stage_vars(config, stage_node, stage);

    let definitions = service_definitions(config);
    let mut spec = StageSpec {
        project: config.project.clone(),
        name: stage.to_string(),
        services: Vec::new(),
        servers: Vec::new(),
        protect: false,
        auto_suspend: None,
        orchestrator: Default::default(),
        proxy: None,
        sensitive: Default::default(),
        secrets: Default::default(),
    };
    let mut spans = Spans::default();
    let mut auto_suspend_at = None;
    for node in children(stage_node) {
        match node.name().value() {
            "service" => r.stage_services(node, stage, &definitions, &mut spec, &mut spans),
            "server" => {
                if let Some(server) = r.stage_server(config, node) {
                    spec.servers.push(server);
                }
            }
            "protect" => spec.protect = r.flag(node).unwrap_or(true),
            "orchestrator" => match r.one_string(node).as_deref() {
                Some("swarm") => spec.orchestrator = crate::model::Orchestrator::Swarm,
                Some("containers") | None => {}
                Some(other) => r.push(
                    ConfigError::new(r.src, node.span(), format!("unknown orchestrator `{other}`"))
                        .help("use \"swarm\", or leave it out for fleet's own containers"),
                ),
            },
            "auto_suspend" | "auto-suspend" => {
                spec.auto_suspend = r.auto_suspend(node);
                auto_suspend_at = Some(node.span());
            }
            "variables" => {}
            "proxy" => spec.proxy = r.proxy(node).map(Box::new),
            _ => r.push(unknown_node(r.src, node, &format!("in stage `{stage}`"), STAGE_NODES)),
        }
    }
    if let (Some(span), Some(_)) = (auto_suspend_at, spec.auto_suspend) {
        r.check_auto_suspend(&spec, span, stage);
    }
    r.check_routes(&spec, &spans);
    crate::proxy::add_route_names(&mut spec);
    place_relative_binds(&mut spec, &config.dir);
    finish(r, spec, spans)
}

/// The stage as read, or its errors: masked, and for `validate` without those that judged a
/// value whose variable is unset; the unset variables beside.
fn finish(mut r: Reader<'_>, mut spec: StageSpec, mut spans: Spans) -> (StageResult, Option<Vec<ConfigError>>) {
    r.hand_over_masks(&mut spec);
    spans.secrets = std::mem::take(&mut r.secrets);
    if let Some(unset) = &r.unset {
        // `validate`: what was said about a value whose variable is unset judged `${VAR}` itself.
        r.errors.retain(|e| !unset.iter().any(|w| super::unset::covers(w, e)));
    }
    let result = if r.errors.is_empty() {
        Ok((spec, spans))
    } else {
        // A value from `.env` or the environment is never echoed by an error (a secret in a port).
        Err(r.errors.into_iter().map(|e| e.masked(&spec.sensitive).masked_at(&spans.secrets)).collect())
    };
    (result, r.unset)
}

/// The top-level `service "name" { … }` definitions by name.
fn service_definitions(config: &Config) -> HashMap<&str, &KdlNode> {
    config
        .doc
        .nodes()
        .iter()
        .filter(|n| n.name().value() == "service")
        .filter_map(|n| Some((n.entries().first()?.value().as_string()?, n)))
        .collect()
}

impl Reader<'_> {
    /// `service "web" "db" { … }` in a stage: each named definition read with the block as its
    /// overlay; a name listed twice or not defined is an error.
    fn stage_services(
        &mut self,
        node: &KdlNode,
        stage: &str,
        definitions: &HashMap<&str, &KdlNode>,
        spec: &mut StageSpec,
        spans: &mut Spans,
    ) {
        let overlay = node.children().map(|_| node);
        for entry in self.args(node) {
            let Some(name) = self.plain_string(entry) else {
                continue;
            };
            if spans.service_ref.contains_key(&name) {
                self.push(ConfigError::new(
                    self.src,
                    entry.span(),
                    format!("service `{name}` is listed twice in stage `{stage}`"),
                ));
                continue;
            }
            spans.service_ref.insert(name.clone(), entry.span());
            match definitions.get(name.as_str()) {
                Some(def) => {
                    let svc = self.read_service(&name, def, overlay, spans);
                    spec.services.push(svc);
                }
                None => {
                    let mut err = ConfigError::new(
                        self.src,
                        entry.span(),
                        format!("stage `{stage}` names service `{name}`, which is not defined"),
                    )
                    .label("undefined service");
                    err = match suggest(&name, definitions.keys().copied()) {
                        Some(s) => err.help(s),
                        None => err.help(format!("define it at the top level: service \"{name}\" {{ image \"…\" }}")),
                    };
                    self.push(err);
                }
            }
        }
        if self.args(node).is_empty() {
            self.push(ConfigError::new(self.src, node.span(), "`service` in a stage needs the service's name"));
        }
    }

    /// `auto_suspend` powers servers off: a stage without servers, or with one fleet did not
    /// create (provider "host"), cannot use it.
    fn check_auto_suspend(&mut self, spec: &StageSpec, span: SourceSpan, stage: &str) {
        if spec.servers.is_empty() {
            self.error(span, format!("auto_suspend powers servers off, and stage `{stage}` has none (a local stage)"));
        }
        for server in spec.servers.iter().filter(|s| matches!(s.provider, crate::model::ServerProvider::Host { .. })) {
            self.push(
                ConfigError::new(
                    self.src,
                    span,
                    format!("auto_suspend would power off server `{}`, which uses provider \"host\"", server.name),
                )
                .help("fleet never powers off a machine you bring; use it with sakura-cloud servers"),
            );
        }
    }
}

/// On a server, `./data` means the server's deploy path, not this machine's project directory:
/// fleet copies no files, and the laptop's path means nothing there.
fn place_relative_binds(spec: &mut StageSpec, dir: &Path) {
    let project_dir = normalize(dir);
    let placement: Vec<(String, String)> = spec
        .servers
        .iter()
        .flat_map(|server| spec.services_on(server).into_iter().map(|s| (s.name.clone(), server.deploy_path.clone())))
        .collect();
    for (service, deploy_path) in placement {
        let Some(svc) = spec.services.iter_mut().find(|s| s.name == service) else { continue };
        for v in &mut svc.volumes {
            if let VolumeSource::Bind { path } = &mut v.source
                && let Ok(rel) = path.strip_prefix(&project_dir)
            {
                *path = Path::new(&deploy_path).join(rel);
            }
        }
    }
}

pub(super) fn children(node: &KdlNode) -> impl Iterator<Item = &KdlNode> {
    node.children().into_iter().flat_map(|d| d.nodes().iter())
}

/// A service being read: fields that need the whole definition before they resolve.
#[derive(Default)]
struct Draft {
    image: Option<String>,
    version: Option<String>,
    env_files: Vec<(PathBuf, SourceSpan)>,
    environment: BTreeMap<String, String>,
}

pub(super) struct Reader<'a> {
    pub(super) src: &'a SourceFile,
    pub(super) dir: &'a Path,
    pub(super) vars: Vars,
    /// Values read from a service's `env_file`: secrets as much as a `.env`'s.
    pub(super) env_file_values: std::collections::BTreeSet<String>,
    /// Those of them `fleet config` masks: all but a place's or an account's (`DB_USER`).
    pub(super) env_file_secrets: std::collections::BTreeSet<String>,
    pub(super) errors: Vec<ConfigError>,
    /// `validate` only: unset variables, as warnings (None: they are errors, as for `up`).
    pub(super) unset: Option<Vec<ConfigError>>,
    /// Strings that a sensitive variable went into, by where they are written.
    pub(super) secrets: Vec<(SourceSpan, String)>,
}

impl Reader<'_> {
    pub(super) fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    pub(super) fn error(&mut self, span: SourceSpan, message: impl Into<String>) {
        self.errors.push(ConfigError::new(self.src, span, message));
    }

    /// Process env > `.env.<stage>` > `.env` > stage `variables` > top-level `variables`.
    /// What errors mask (every value from `.env` and the environment) and what `fleet config`
    /// masks (those but a place's or an account's, and every secret-named variable's).
    fn hand_over_masks(&mut self, spec: &mut StageSpec) {
        spec.sensitive.extend(self.vars.used_sensitive());
        spec.sensitive.append(&mut self.env_file_values);
        spec.secrets.extend(self.vars.used_secrets());
        spec.secrets.append(&mut self.env_file_secrets);
    }

    fn stage_vars(&mut self, config: &Config, stage_node: &KdlNode, stage: &str) -> Vars {
        let mut vars = Vars::default();
        // `vars()` panics on a variable that is not UTF-8 (`env $'X=\xff' fleet …`): such a
        // name cannot be written as `${…}`, and such a value is read as lossy text.
        let process =
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())));
        vars.add_layer(process, VarSource::Process);
        for (file, source) in
            [(format!(".env.{stage}"), VarSource::StageEnvFile), (".env".to_string(), VarSource::EnvFile)]
        {
            let path = config.dir.join(&file);
            if path.is_file() {
                match read_env_file(&path) {
                    Ok(values) => vars.add_layer(values, source),
                    Err(msg) => self.error(stage_node.name().span(), msg),
                }
            }
        }
        let stage_vars = children(stage_node).filter(|n| n.name().value() == "variables");
        let top_vars = config.doc.nodes().iter().filter(|n| n.name().value() == "variables");
        for (nodes, source) in
            [(stage_vars.collect::<Vec<_>>(), VarSource::StageVariables), (top_vars.collect(), VarSource::Variables)]
        {
            for node in nodes {
                let values = self.key_values(node, false);
                vars.add_layer(values, source);
            }
        }
        vars
    }

    pub(super) fn args<'n>(&self, node: &'n KdlNode) -> Vec<&'n KdlEntry> {
        node.entries().iter().filter(|e| e.name().is_none()).collect()
    }

    pub(super) fn prop<'n>(&self, node: &'n KdlNode, key: &str) -> Option<&'n KdlEntry> {
        node.entries().iter().rev().find(|e| e.name().is_some_and(|n| n.value() == key))
    }

    /// Rejects properties the node does not take.
    pub(super) fn check_props(&mut self, node: &KdlNode, allowed: &[&str]) {
        for e in node.entries() {
            let Some(key) = e.name() else { continue };
            if !allowed.contains(&key.value()) {
                let mut err = ConfigError::new(
                    self.src,
                    e.span(),
                    format!("unknown property `{}` on `{}`", key.value(), node.name().value()),
                )
                .label("unknown property");
                if let Some(s) = suggest(key.value(), allowed.iter().copied()) {
                    err = err.help(s);
                } else if allowed.is_empty() {
                    err = err.help(format!("`{}` takes no properties", node.name().value()));
                }
                self.push(err);
            }
        }
    }

    /// A string value with variables resolved.
    pub(super) fn string(&mut self, entry: &KdlEntry) -> Option<String> {
        let uses_before = self.vars.sensitive_uses();
        match entry.value() {
            KdlValue::String(s) => match interpolate(s, &self.vars) {
                Ok(v) if self.vars.sensitive_uses() != uses_before => {
                    self.secrets.push((entry.span(), v.clone()));
                    Some(v)
                }
                Ok(v) => Some(v),
                Err(e) if e.is_unset() && self.unset.is_some() => {
                    self.warn_unset(entry, &e);
                    Some(s.clone())
                }
                Err(e) => {
                    let help = match &e {
                        InterpolateError::Undefined { name } => Some(format!(
                            "set {name} in the environment, .env, or a `variables` block, or write ${{{name}:-default}}"
                        )),
                        _ => None,
                    };
                    let mut err = ConfigError::new(self.src, entry.span(), e.to_string()).label("in this value");
                    if let Some(h) = help {
                        err = err.help(h);
                    }
                    self.push(err);
                    None
                }
            },
            other => {
                self.type_error(entry, "a string", other);
                None
            }
        }
    }

    /// A sensitive variable went into this entry's string.
    pub(super) fn holds_secret(&self, entry: &KdlEntry) -> bool {
        self.secrets.iter().any(|(at, _)| *at == entry.span())
    }

    /// A string taken literally (names), without interpolation.
    pub(super) fn plain_string(&mut self, entry: &KdlEntry) -> Option<String> {
        match entry.value() {
            KdlValue::String(s) => Some(s.clone()),
            other => {
                self.type_error(entry, "a string", other);
                None
            }
        }
    }

    pub(super) fn type_error(&mut self, entry: &KdlEntry, expected: &str, got: &KdlValue) {
        let got = match got {
            KdlValue::String(_) => "a string",
            KdlValue::Integer(_) => "an integer",
            KdlValue::Float(_) => "a number",
            KdlValue::Bool(_) => "a boolean",
            KdlValue::Null => "#null",
        };
        self.push(
            ConfigError::new(self.src, entry.span(), format!("expected {expected}, found {got}"))
                .label(format!("expected {expected}")),
        );
    }

    pub(super) fn one_arg<'n>(&mut self, node: &'n KdlNode) -> Option<&'n KdlEntry> {
        self.check_props(node, &[]);
        self.no_children(node);
        let args = self.args(node);
        if args.len() != 1 {
            self.error(node.span(), format!("`{}` takes exactly one value", node.name().value()));
            return None;
        }
        Some(args[0])
    }

    pub(super) fn one_string(&mut self, node: &KdlNode) -> Option<String> {
        let e = self.one_arg(node)?;
        self.string(e)
    }

    pub(super) fn no_children(&mut self, node: &KdlNode) {
        if let Some(c) = node.children() {
            self.error(c.span(), format!("`{}` takes no block", node.name().value()));
        }
    }

    /// `oneshot` or `oneshot #true`.
    pub(super) fn flag(&mut self, node: &KdlNode) -> Option<bool> {
        self.check_props(node, &[]);
        match self.args(node).as_slice() {
            [] => Some(true),
            [e] => match e.value() {
                KdlValue::Bool(b) => Some(*b),
                other => {
                    self.type_error(e, "#true or #false", other);
                    None
                }
            },
            _ => {
                self.error(node.span(), format!("`{}` takes at most one value", node.name().value()));
                None
            }
        }
    }

    pub(super) fn integer(&mut self, entry: &KdlEntry, min: i128, max: i128, what: &str) -> Option<i128> {
        // What an out-of-range message shows: the number, or for a secret the text as written.
        let mut shown = String::new();
        let value = match entry.value() {
            KdlValue::Integer(i) => *i,
            // A port may come from a variable: `host="${WEB_PORT:-8080}"`.
            KdlValue::String(_) => {
                let s = self.typed_string(entry)?;
                match s.trim().parse::<i128>() {
                    Ok(i) if self.holds_secret(entry) => {
                        shown = crate::secrets::MASK.to_string();
                        i
                    }
                    Ok(i) => i,
                    Err(_) => {
                        self.push(
                            ConfigError::new(self.src, entry.span(), format!("invalid {what} `{s}`"))
                                .label("expected an integer here"),
                        );
                        return None;
                    }
                }
            }
            other => {
                self.type_error(entry, "an integer", other);
                return None;
            }
        };
        if value < min || value > max {
            self.push(
                ConfigError::new(self.src, entry.span(), {
                    if shown.is_empty() {
                        shown = value.to_string();
                    }
                    format!("{what} {shown} is out of range")
                })
                .label(format!("must be {min}-{max}")),
            );
            return None;
        }
        Some(value)
    }

    /// `update { order "start-first"; parallelism 1; delay "5s"; failure_action "rollback"; monitor "10s" }`.
    fn update_policy(&mut self, node: &KdlNode) -> Option<crate::model::UpdatePolicy> {
        self.check_props(node, &[]);
        let mut u = crate::model::UpdatePolicy::default();
        for child in children(node) {
            let name = child.name().value();
            match name {
                "order" | "failure_action" => {
                    let allowed: &[&str] = if name == "order" {
                        &["start-first", "stop-first"]
                    } else {
                        &["rollback", "pause", "continue"]
                    };
                    let Some(v) = self.one_string(child) else { continue };
                    if !allowed.contains(&v.as_str()) {
                        self.push(
                            ConfigError::new(self.src, child.span(), format!("unknown {name} `{v}`"))
                                .help(format!("use one of: {}", allowed.join(", "))),
                        );
                    } else if name == "order" {
                        u.order = v;
                    } else {
                        u.failure_action = v;
                    }
                }
                "parallelism" => {
                    if let Some(e) = self.one_arg(child) {
                        u.parallelism = self.integer(e, 0, 1000, "parallelism").map_or(1, |v| v as u32);
                    }
                }
                "delay" | "monitor" => {
                    let Some(e) = self.one_arg(child) else { continue };
                    let Some(ms) = self.duration_ms(e) else { continue };
                    if name == "delay" {
                        u.delay_ms = ms;
                    } else {
                        u.monitor_ms = ms;
                    }
                }
                _ => self.push(unknown_node(self.src, child, "in `update`", UPDATE_NODES)),
            }
        }
        Some(u)
    }

    /// `auto_suspend idle="2h" after_boot="10m"`.
    fn auto_suspend(&mut self, node: &KdlNode) -> Option<crate::model::AutoSuspend> {
        self.check_props(node, &["idle", "after_boot"]);
        self.no_children(node);
        if let Some(e) = self.args(node).first() {
            self.error(e.span(), "auto_suspend takes properties: auto_suspend idle=\"2h\" after_boot=\"10m\"");
            return None;
        }
        let Some(idle) = self.prop(node, "idle") else {
            self.error(node.span(), "auto_suspend needs `idle`, e.g. auto_suspend idle=\"2h\"");
            return None;
        };
        let idle_secs = self.duration_ms(idle)? / 1000;
        if idle_secs < 30 {
            self.push(ConfigError::new(self.src, idle.span(), "idle window is too short").label("at least 30s"));
            return None;
        }
        let after_boot_secs = match self.prop(node, "after_boot") {
            Some(e) => self.duration_ms(e)? / 1000,
            None => 600,
        };
        Some(crate::model::AutoSuspend { idle_secs, after_boot_secs })
    }

    /// Integers are seconds; strings like "500ms" or "2s" are durations. At most a day: a
    /// health check interval or a grace period longer than that is a typo (and would overflow).
    pub(super) fn duration_ms(&mut self, entry: &KdlEntry) -> Option<u64> {
        const MAX_MS: u128 = 24 * 3600 * 1000;
        let ms: u128 = match entry.value() {
            KdlValue::Integer(i) => match u128::try_from(*i) {
                Ok(secs) => secs.saturating_mul(1000),
                Err(_) => {
                    self.push(
                        ConfigError::new(self.src, entry.span(), format!("duration {i} is negative"))
                            .label("must be 0 or more seconds"),
                    );
                    return None;
                }
            },
            // A duration may come from a variable: `interval "${HEALTH_INTERVAL:-10s}"`.
            KdlValue::String(s) => match humantime::parse_duration(&self.typed_string(entry)?) {
                Ok(d) => d.as_millis(),
                Err(e) => {
                    // The text as written: a value from .env may be a secret, and so may the
                    // parser's detail (`unknown time unit "ecret"`).
                    let detail = if self.holds_secret(entry) { String::new() } else { format!(": {e}") };
                    self.push(
                        ConfigError::new(self.src, entry.span(), format!("invalid duration `{s}`{detail}"))
                            .help("write seconds as an integer, or a string like \"500ms\", \"2s\", \"1m\""),
                    );
                    return None;
                }
            },
            other => {
                self.type_error(entry, "seconds or a duration string", other);
                return None;
            }
        };
        if ms > MAX_MS {
            self.push(
                ConfigError::new(self.src, entry.span(), "duration is out of range").label("must be at most 24h"),
            );
            return None;
        }
        Some(ms as u64)
    }

    /// `{ KEY "value" }` blocks; scalars become strings (`PORT 8080` → "8080").
    pub(super) fn key_values(&mut self, node: &KdlNode, interpolated: bool) -> Vec<(String, String)> {
        self.check_props(node, &[]);
        let mut out = Vec::new();
        for child in children(node) {
            let key = child.name().value().to_string();
            self.check_props(child, &[]);
            let args = self.args(child);
            let [entry] = args.as_slice() else {
                self.error(child.span(), format!("`{key}` takes exactly one value"));
                continue;
            };
            let value = match entry.value() {
                KdlValue::String(s) if !interpolated => Some(s.clone()),
                KdlValue::String(_) => self.string(entry),
                KdlValue::Integer(i) => Some(i.to_string()),
                KdlValue::Float(f) => Some(f.to_string()),
                KdlValue::Bool(b) => Some(b.to_string()),
                KdlValue::Null => {
                    self.type_error(entry, "a string", &KdlValue::Null);
                    None
                }
            };
            if let Some(v) = value {
                out.push((key, v));
            }
        }
        out
    }

    /// One string splits like a shell would; several strings are the argv as written.
    fn argv(&mut self, node: &KdlNode) -> Option<Vec<String>> {
        self.check_props(node, &[]);
        self.no_children(node);
        let args = self.args(node);
        let values: Vec<String> = args.iter().filter_map(|e| self.string(e)).collect();
        if values.len() != args.len() {
            return None;
        }
        match values.as_slice() {
            [] => {
                self.error(node.span(), format!("`{}` needs a value", node.name().value()));
                None
            }
            [one] => match shell_words::split(one) {
                Ok(words) => Some(words),
                Err(e) => {
                    self.push(
                        ConfigError::new(
                            self.src,
                            args[0].span(),
                            format!("cannot split `{}`: {e}", node.name().value()),
                        )
                        .help("check the quotes, or give each argument as its own string"),
                    );
                    None
                }
            },
            _ => Some(values),
        }
    }

    fn read_service(&mut self, name: &str, def: &KdlNode, overlay: Option<&KdlNode>, spans: &mut Spans) -> Service {
        let mut svc = Service { name: name.to_string(), ..Service::default() };
        let mut draft = Draft::default();
        let def_children: Vec<&KdlNode> = children(def).collect();
        let overlay_children: Vec<&KdlNode> = overlay.into_iter().flat_map(children).collect();
        for node in def_children.into_iter().chain(overlay_children) {
            self.service_field(&mut svc, &mut draft, node, spans);
        }
        svc.image = compose_image(draft.image.as_deref().unwrap_or(name), draft.version.as_deref());
        if let Some(build) = svc.build.as_mut() {
            build.repository = draft.image.clone();
        }
        for (path, span) in draft.env_files {
            match read_env_file(&path) {
                Ok(values) => {
                    for (k, v) in values {
                        if !v.is_empty() {
                            self.env_file_values.insert(v.clone());
                            let shown = crate::secrets::is_public_name(&k) || crate::secrets::is_public_value(&v);
                            if !shown || crate::secrets::is_secret_name(&k) {
                                self.env_file_secrets.insert(v.clone());
                            }
                        }
                        svc.environment.entry(k).or_insert(v);
                    }
                }
                Err(msg) => self.error(span, msg),
            }
        }
        svc.environment.extend(draft.environment);
        svc
    }

    fn service_field(&mut self, svc: &mut Service, draft: &mut Draft, node: &KdlNode, spans: &mut Spans) {
        let field = node.name().value();
        match field {
            "image" => draft.image = self.one_string(node).or(draft.image.take()),
            "version" => draft.version = self.one_string(node).or(draft.version.take()),
            "command" => svc.command = self.argv(node),
            "entrypoint" => svc.entrypoint = self.argv(node),
            "environment" | "env" => {
                let pairs = self.key_values(node, true);
                draft.environment.extend(pairs);
            }
            "labels" => {
                let pairs = self.key_values(node, true);
                svc.labels.extend(pairs);
            }
            "env_file" => {
                self.check_props(node, &[]);
                for e in self.args(node) {
                    if let Some(p) = self.string(e) {
                        draft.env_files.push((self.dir.join(p), e.span()));
                    }
                }
            }
            "depends_on" => self.depends_on(svc, node, spans),
            "restart" => self.restart(svc, node),
            "stop_signal" => svc.stop_signal = self.one_string(node),
            "stop_timeout" => {
                if let Some(e) = self.one_arg(node) {
                    svc.stop_timeout = self.integer(e, 0, 3600, "stop_timeout").map(|v| v as u32);
                }
            }
            "oneshot" => svc.oneshot = self.flag(node).unwrap_or(false),
            "replicas" => {
                if let Some(e) = self.one_arg(node) {
                    svc.replicas = self.integer(e, 0, 1000, "replicas").map_or(1, |v| v as u32);
                    spans.swarm_only.insert((svc.name.clone(), "replicas"), node.span());
                }
            }
            "endpoint_mode" => {
                self.endpoint_mode(svc, node);
                spans.swarm_only.insert((svc.name.clone(), "endpoint_mode"), node.span());
            }
            "update" => {
                svc.update = self.update_policy(node);
                spans.swarm_only.insert((svc.name.clone(), "update"), node.span());
            }
            "ports" => self.ports(svc, node, spans),
            "volumes" => self.volumes(svc, node),
            "healthcheck" => svc.healthcheck = self.healthcheck(node),
            "route" => {
                if let Some(route) = self.route(node) {
                    spans.routes.entry(svc.name.clone()).or_insert(node.span());
                    svc.routes.push(route);
                }
            }
            "build" => svc.build = self.build_spec(node),
            // FleetFlow read `variables` in a stage's service override and silently did nothing with it.
            "variables" => self.push(
                ConfigError::new(self.src, node.span(), format!("`variables` in service `{}` is not read", svc.name))
                    .label("FleetFlow ignored this block")
                    .help(
                        "FleetFlow silently ignored `variables` inside a service, so these values never reached the container; \
                         container variables are set with `environment { KEY \"value\" }`, and `variables` belongs at the \
                         top level or in a stage (it feeds ${VAR} in this file)",
                    ),
            ),
            _ => self.push(unknown_node(self.src, node, &format!("in service `{}`", svc.name), SERVICE_NODES)),
        }
    }

    /// `restart "on-failure"`: one of the restart policies.
    fn restart(&mut self, svc: &mut Service, node: &KdlNode) {
        if let Some(e) = self.one_arg(node)
            && let Some(s) = self.string(e)
        {
            match RestartPolicy::parse(&s) {
                Some(p) => svc.restart = Some(p),
                None => self.push(
                    ConfigError::new(self.src, e.span(), format!("unknown restart policy `{s}`"))
                        .help(format!("use one of: {}", RestartPolicy::NAMES.join(", "))),
                ),
            }
        }
    }

    /// `depends_on "db" "cache"`: replaces what the definition listed; each name's span kept.
    fn depends_on(&mut self, svc: &mut Service, node: &KdlNode, spans: &mut Spans) {
        self.check_props(node, &[]);
        self.no_children(node);
        svc.depends_on.clear();
        for e in self.args(node) {
            if let Some(dep) = self.plain_string(e) {
                spans.depends_on.insert((svc.name.clone(), dep.clone()), e.span());
                svc.depends_on.push(dep);
            }
        }
    }

    /// `endpoint_mode "vip"` or `"dnsrr"` (swarm only; the caller records where it was set).
    fn endpoint_mode(&mut self, svc: &mut Service, node: &KdlNode) {
        match self.one_string(node).as_deref() {
            Some("vip") => svc.endpoint_mode = crate::model::EndpointMode::Vip,
            Some("dnsrr") => svc.endpoint_mode = crate::model::EndpointMode::Dnsrr,
            Some(other) => self.push(
                ConfigError::new(self.src, node.span(), format!("unknown endpoint_mode `{other}`"))
                    .help("use \"vip\" (one virtual IP) or \"dnsrr\" (DNS round robin)"),
            ),
            None => {}
        }
    }

    /// `ports { port … }`: replaces what the definition listed; each port's span kept.
    fn ports(&mut self, svc: &mut Service, node: &KdlNode, spans: &mut Spans) {
        self.check_props(node, &[]);
        svc.ports.clear();
        for child in children(node) {
            if child.name().value() != "port" {
                self.push(unknown_node(self.src, child, "in `ports`", &["port"]));
                continue;
            }
            if let Some(port) = self.port(child) {
                spans.ports.insert((svc.name.clone(), svc.ports.len()), child.span());
                svc.ports.push(port);
            }
        }
    }

    /// `volumes { volume … }`: replaces what the definition listed.
    fn volumes(&mut self, svc: &mut Service, node: &KdlNode) {
        self.check_props(node, &[]);
        svc.volumes.clear();
        for child in children(node) {
            if child.name().value() != "volume" {
                self.push(unknown_node(self.src, child, "in `volumes`", &["volume"]));
                continue;
            }
            if let Some(v) = self.volume(child) {
                svc.volumes.push(v);
            }
        }
    }

    /// `port host=8080 container=80 protocol="udp" host_ip="127.0.0.1"` or `port 8080 80`.
    fn port(&mut self, node: &KdlNode) -> Option<Port> {
        self.check_props(node, PORT_PROPS);
        self.no_children(node);
        let args = self.args(node);
        let mut host = None;
        let mut container = None;
        match args.as_slice() {
            [] => {}
            [c] => container = self.integer(c, 1, 65535, "port"),
            [h, c] => {
                host = self.integer(h, 1, 65535, "port");
                container = self.integer(c, 1, 65535, "port");
            }
            _ => self.error(node.span(), "`port` takes at most two values: host and container"),
        }
        if let Some(e) = self.prop(node, "host") {
            host = self.integer(e, 1, 65535, "port");
        }
        if let Some(e) = self.prop(node, "container") {
            container = self.integer(e, 1, 65535, "port");
        }
        let protocol = match self.prop(node, "protocol") {
            None => Protocol::Tcp,
            Some(e) => match self.string(e).as_deref() {
                Some("tcp") => Protocol::Tcp,
                Some("udp") => Protocol::Udp,
                Some(other) => {
                    self.push(
                        ConfigError::new(self.src, e.span(), format!("unknown protocol `{other}`"))
                            .help("use \"tcp\" or \"udp\""),
                    );
                    return None;
                }
                None => return None,
            },
        };
        let host_ip = match self.prop(node, "host_ip") {
            Some(e) => Some(self.string(e)?),
            None => None,
        };
        let mode = match self.prop(node, "mode") {
            None => crate::model::PortMode::Ingress,
            Some(e) => match self.string(e).as_deref() {
                Some("ingress") => crate::model::PortMode::Ingress,
                Some("host") => crate::model::PortMode::Host,
                Some(other) => {
                    self.push(
                        ConfigError::new(self.src, e.span(), format!("unknown port mode `{other}`"))
                            .help("use \"ingress\" (the routing mesh) or \"host\" (the node running the task)"),
                    );
                    return None;
                }
                None => return None,
            },
        };
        let Some(container) = container else {
            if self.errors.iter().all(|e| e.span != node.span())
                && self.prop(node, "container").is_none()
                && args.is_empty()
            {
                self.error(node.span(), "`port` needs a container port, e.g. `port host=8080 container=80`");
            }
            return None;
        };
        Some(Port { host: host.map(|h| h as u16), container: container as u16, protocol, host_ip, mode })
    }

    /// `volume "./data" "/data" read_only=#true`; `.`/`/`/`~` sources are binds, others named volumes.
    fn volume(&mut self, node: &KdlNode) -> Option<Volume> {
        self.check_props(node, &["read_only", "read-only"]);
        self.no_children(node);
        let args = self.args(node);
        let [src_entry, target_entry] = args.as_slice() else {
            self.error(node.span(), "`volume` takes a source and a target: volume \"./data\" \"/data\"");
            return None;
        };
        let source = self.string(src_entry)?;
        let target = self.string(target_entry)?;
        if !target.starts_with('/') {
            self.push(ConfigError::new(
                self.src,
                target_entry.span(),
                format!("volume target `{target}` must be an absolute path in the container"),
            ));
            return None;
        }
        let read_only = match self.prop(node, "read_only").or(self.prop(node, "read-only")) {
            None => false,
            Some(e) => match e.value() {
                KdlValue::Bool(b) => *b,
                other => {
                    self.type_error(e, "#true or #false", other);
                    return None;
                }
            },
        };
        let source = if let Some(rest) = source.strip_prefix("~/") {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            VolumeSource::Bind { path: home.join(rest) }
        } else if source.starts_with('.') || source.starts_with('/') {
            VolumeSource::Bind { path: normalize(&self.dir.join(&source)) }
        } else if is_docker_name(&source) {
            VolumeSource::Named { name: source }
        } else {
            self.push(
                ConfigError::new(self.src, src_entry.span(), format!("`{source}` is neither a path nor a volume name"))
                    .help("start host paths with ./ or /; name volumes with lowercase letters, digits, - and _"),
            );
            return None;
        };
        Some(Volume { source, target, read_only })
    }

    fn healthcheck(&mut self, node: &KdlNode) -> Option<Healthcheck> {
        self.check_props(node, &[]);
        let mut hc = Healthcheck {
            test: Vec::new(),
            interval_ms: Healthcheck::DEFAULT_INTERVAL_MS,
            timeout_ms: Healthcheck::DEFAULT_TIMEOUT_MS,
            retries: Healthcheck::DEFAULT_RETRIES,
            start_period_ms: 0,
        };
        for child in children(node) {
            match child.name().value() {
                "test" => {
                    self.check_props(child, &[]);
                    let args = self.args(child);
                    let words: Vec<String> = args.iter().filter_map(|e| self.string(e)).collect();
                    hc.test = match words.first().map(String::as_str) {
                        Some("CMD" | "CMD-SHELL" | "NONE") => words,
                        Some(_) if words.len() == 1 => vec!["CMD-SHELL".into(), words[0].clone()],
                        Some(_) => std::iter::once("CMD".to_string()).chain(words).collect(),
                        None => {
                            self.error(child.span(), "`test` needs a command, e.g. test \"CMD\" \"pg_isready\"");
                            Vec::new()
                        }
                    };
                }
                "interval" | "timeout" | "start_period" => {
                    let Some(e) = self.one_arg(child) else {
                        continue;
                    };
                    let Some(ms) = self.duration_ms(e) else {
                        continue;
                    };
                    match child.name().value() {
                        "interval" => hc.interval_ms = ms,
                        "timeout" => hc.timeout_ms = ms,
                        _ => hc.start_period_ms = ms,
                    }
                }
                "retries" => {
                    if let Some(e) = self.one_arg(child) {
                        hc.retries = self.integer(e, 0, 1000, "retries").unwrap_or(3) as u32;
                    }
                }
                _ => self.push(unknown_node(self.src, child, "in `healthcheck`", HEALTH_NODES)),
            }
        }
        if hc.test.is_empty() {
            self.error(node.span(), "`healthcheck` needs a `test`");
            return None;
        }
        Some(hc)
    }
}

/// `postgres` + `16` → `postgres:16`; a tag or digest in the image wins; default `latest`.
pub fn compose_image(image: &str, version: Option<&str>) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:{}", version.unwrap_or("latest"))
    }
}

fn read_env_file(path: &Path) -> std::result::Result<Vec<(String, String)>, String> {
    super::env_file::read(path)
}

/// `/a/./b/../c` → `/a/c`, without touching the filesystem (the path may not exist yet).
pub(super) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
