//! `fleet import compose [FILE]`: a docker-compose.yml → an equivalent `fleet.kdl`.
//!
//! The YAML is read as a document (serde_yaml_ng, `<<` merges applied), not through a typed
//! compose model: typed crates validate ports and image names before interpolation, so the
//! `${VAR}` references this import must keep (as fleet variables) would not parse. Every key is
//! either mapped or reported as a warning with its path; nothing is dropped silently.

use crate::error::{Error, Result};
use serde_yaml_ng::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

/// The KDL text and what could not be carried over.
#[derive(Debug, Default)]
pub struct Imported {
    pub kdl: String,
    /// `services.web.privileged: not mapped by fleet`.
    pub warnings: Vec<String>,
    pub services: usize,
}

/// A healthcheck compose turns off (`disable: true`, `test: ["NONE"]`).
const DISABLED: &str = "a disabled healthcheck is not mapped: fleet writes none, so a healthcheck the \
                        image itself defines still runs in the container (fleet does not wait on it)";

/// A KDL string, quoted and escaped.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `NAME`: what `${…}` can name.
fn is_var_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A key (an environment variable, a label) as a KDL node name: bare where KDL reads it as a
/// name, quoted where it would read a number or a keyword (`1PASSWORD_TOKEN`, `8080.expose`,
/// `true`, `-9x`).
fn kdl_key(key: &str) -> String {
    let bare = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !["true", "false", "null", "inf", "nan"].contains(&key);
    if bare { key.to_string() } else { q(key) }
}

/// Compose's `$VAR` becomes fleet's `${VAR}` (fleet leaves a bare `$VAR` alone); `${…}` and `$$`
/// mean the same in both. Returns the text and the variables it needs without a default.
fn vars(text: &str, needed: &mut BTreeSet<String>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push_str("$$");
                i += 2;
            }
            Some('{') => {
                let end = chars[i..].iter().position(|c| *c == '}').map(|p| i + p);
                let Some(end) = end else {
                    out.extend(&chars[i..]);
                    break;
                };
                let inner: String = chars[i + 2..end].iter().collect();
                let name: String = inner.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name.len() == inner.len() {
                    needed.insert(name);
                }
                out.push_str("${");
                out.push_str(&inner);
                out.push('}');
                i = end + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let name: String =
                    chars[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').collect();
                i += 1 + name.len();
                needed.insert(name.clone());
                let _ = write!(out, "${{{name}}}");
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    out
}

/// `a:${B:-1}:c` → `a`, `${B:-1}`, `c`: colons inside `${…}` are not separators.
fn split_outside_braces(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `8000-8001`: a `-` outside `${…}` (inside, it is a default: `${PORT:-8000}`).
fn is_range(text: &str) -> bool {
    let mut depth = 0usize;
    text.chars().any(|c| {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        c == '-' && depth == 0
    })
}

/// A scalar as text (compose allows numbers and booleans where strings are meant).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `1m30s`, `10s`, `500ms` → seconds as compose reads them.
fn duration_secs(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest.chars().all(|c| c.is_ascii_digit() || c == '.') && rest != "0" {
        return None; // Go's time.ParseDuration, which compose uses, needs a unit
    }
    while !rest.is_empty() {
        num.clear();
        while let Some(c) = rest.chars().next().filter(|c| c.is_ascii_digit() || *c == '.') {
            num.push(c);
            rest = &rest[1..];
        }
        let value: f64 = num.parse().ok()?;
        let unit: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        rest = &rest[unit.len()..];
        total += value
            * match unit.as_str() {
                "h" => 3600.0,
                "m" => 60.0,
                "s" | "" => 1.0,
                "ms" => 0.001,
                "us" => 0.000_001,
                _ => return None,
            };
    }
    Some(total)
}

/// Reads a compose file and turns it into fleet.kdl text.
pub fn import(path: &Path, project_dir: &Path) -> Result<Imported> {
    let text = crate::compose_limits::read(path)?;
    let name = path.display().to_string();
    crate::compose_limits::check(&text, &name)?;
    crate::compose_limits::check_work(&text, &name)?;
    // The YAML parser's passes over the text (and the conversion) run within a time budget.
    let dir = project_dir.to_path_buf();
    crate::compose_limits::in_time(&text, &name.clone(), move |t| {
        crate::compose_limits::check_expansion(t, &name)?;
        convert(t, &name, &dir)
    })?
}

/// The compose YAML with its merges (<<) applied: a mapping at the top.
fn parse(text: &str, name: &str) -> Result<serde_yaml_ng::Mapping> {
    let mut doc: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let at = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        Error::usage_help(
            format!("{name}{at}: not a YAML compose file: {e}"),
            "fix the YAML, or name the file: fleet import compose path/to/compose.yml",
        )
    })?;
    crate::compose_merge::apply(&mut doc)
        .map_err(|e| Error::usage(format!("{name}: a YAML merge (<<) cannot be applied: {e}")))?;
    let services = doc.get("services").and_then(Value::as_mapping).map_or(0, serde_yaml_ng::Mapping::len);
    if services > crate::compose_limits::MAX_SERVICES {
        return Err(Error::usage(format!(
            "{name} defines {services} services; fleet imports up to {} (a stage of that many is not one project)",
            crate::compose_limits::MAX_SERVICES
        )));
    }
    match doc {
        Value::Mapping(top) => Ok(top),
        _ => Err(Error::usage(format!("{name}: a compose file is a mapping with `services`"))),
    }
}

/// The project: compose's `name`, else the directory's, in the characters a project name takes.
fn project_name(top: &serde_yaml_ng::Mapping, project_dir: &Path) -> String {
    let from_dir =
        || project_dir.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_else(|| "app".into());
    // A name given by a variable, or one with no letter or digit, is not one fleet can write.
    let project = match top.get("name").and_then(scalar) {
        Some(n) if !n.contains('$') && n.chars().any(|c| c.is_ascii_alphanumeric()) => n,
        _ => from_dir(),
    };
    let project: String = project
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' { ch.to_ascii_lowercase() } else { '-' })
        .collect();
    project
}

pub fn convert(text: &str, name: &str, project_dir: &Path) -> Result<Imported> {
    let top = parse(text, name)?;
    let mut c = Converter {
        warnings: Vec::new(),
        needed: BTreeSet::new(),
        oneshot: BTreeSet::new(),
        healthy_waits: Vec::new(),
        typed: BTreeSet::new(),
        dir: project_dir.to_path_buf(),
    };
    let project = project_name(&top, project_dir);
    let mut services_kdl = Vec::new();
    let mut names = Vec::new();
    for (key, value) in &top {
        let key = scalar(key).unwrap_or_default();
        match key.as_str() {
            "name" => {}
            "services" => {
                let Value::Mapping(services) = value else {
                    return Err(Error::usage(format!("{name}: `services` is not a mapping")));
                };
                for (svc, def) in services {
                    let svc = scalar(svc).unwrap_or_default();
                    names.push(svc.clone());
                    services_kdl.push((svc.clone(), c.service(&svc, def)));
                }
            }
            "volumes" => c.top_volumes(value),
            "version" => c.warn("version", "obsolete in the compose spec; not needed"),
            k if k.starts_with("x-") => {
                c.warn(k, "extension field: not configuration (its YAML merges were applied where used)")
            }
            k => c.warn(
                k,
                "not mapped: fleet runs one network per stage and has no top-level networks, configs or secrets",
            ),
        }
    }
    if names.is_empty() {
        return Err(Error::usage(format!("{name}: no services to import")));
    }
    // Dependencies that must complete are one-shot jobs in fleet.
    let mut kdl = format!("// Imported from {name} by `fleet import compose`.\nproject {}\n", q(&project));
    // A variable in a port or a duration gets no empty default: "" is no port, so it must be set
    // (`validate` warns, `up` refuses), as compose fails at `up` on a blank published port.
    let needed: Vec<&String> = c.needed.difference(&c.typed).collect();
    if !needed.is_empty() {
        kdl.push_str("\n// Unset in compose means empty; the environment and .env still win.\nvariables {\n");
        for v in needed {
            let _ = writeln!(kdl, "    {} \"\"", kdl_key(v));
        }
        kdl.push_str("}\n");
    }
    for (svc, mut body) in services_kdl {
        if c.oneshot.contains(&svc) {
            body.push("oneshot".into());
        }
        let _ = writeln!(kdl, "\nservice {} {{", q(&svc));
        for line in body {
            let _ = writeln!(kdl, "    {line}");
        }
        kdl.push_str("}\n");
    }
    c.warn_unchecked_healthy_waits(&top);
    let list: Vec<String> = names.iter().map(|n| q(n)).collect();
    let _ = writeln!(kdl, "\nstage \"local\" {{\n    service {}\n}}", list.join(" "));
    Ok(Imported { kdl, warnings: c.warnings, services: names.len() })
}

impl Converter {
    /// A `service_healthy` wait on a service without a healthcheck waits only until it runs.
    fn warn_unchecked_healthy_waits(&mut self, top: &serde_yaml_ng::Mapping) {
        for (svc, dep) in &self.healthy_waits {
            let has_check =
                top.get("services").and_then(|s| s.get(dep.as_str())).and_then(|d| d.get("healthcheck")).is_some_and(
                    |h| {
                        // fleet waits on a healthcheck it writes: one with a `test` that is not NONE.
                        let test = h.get("test").filter(|t| !t.is_null());
                        let none = test.and_then(|t| t.get(0).or(Some(t))).is_some_and(|w| w == "NONE");
                        test.is_some() && !none && h.get("disable") != Some(&Value::Bool(true))
                    },
                );
            if !has_check {
                self.warnings.push(format!(
                    "services.{svc}.depends_on.{dep}: service_healthy, but {dep} has no healthcheck: fleet waits only until it runs"
                ));
            }
        }
    }
}

struct Converter {
    warnings: Vec<String>,
    needed: BTreeSet<String>,
    /// Services something waits on with `service_completed_successfully`.
    oneshot: BTreeSet<String>,
    /// (service, dependency) with `service_healthy`.
    healthy_waits: Vec<(String, String)>,
    /// Variables used in typed fields (ports, durations).
    typed: BTreeSet<String>,
    /// The compose file's directory, which relative paths start from.
    dir: std::path::PathBuf,
}

impl Converter {
    fn warn(&mut self, path: &str, why: &str) {
        self.warnings.push(format!("{path}: {why}"));
    }

    fn s(&mut self, text: &str) -> String {
        q(&vars(text, &mut self.needed))
    }

    fn top_volumes(&mut self, value: &Value) {
        // Named volumes are made on use; only their options cannot be carried.
        if let Value::Mapping(vols) = value {
            for (name, opts) in vols {
                let name = scalar(name).unwrap_or_default();
                if let Value::Mapping(m) = opts {
                    for (k, _) in m {
                        let k = scalar(k).unwrap_or_default();
                        self.warn(
                            &format!("volumes.{name}.{k}"),
                            "volume options are not mapped: fleet makes plain local volumes",
                        );
                    }
                }
            }
        }
    }

    fn service(&mut self, svc: &str, def: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let Value::Mapping(def) = def else {
            self.warn(&format!("services.{svc}"), "not a mapping; skipped");
            return out;
        };
        let path = |k: &str| format!("services.{svc}.{k}");
        if def.get("image").is_none() && def.get("build").is_none() {
            out.push(format!("image {}", q(svc)));
            self.warn(&path("image"), "missing: fleet uses the service name as the image; build it first");
        }
        for (key, value) in def {
            let key = scalar(key).unwrap_or_default();
            match key.as_str() {
                "image" => match scalar(value) {
                    Some(i) => out.push(format!("image {}", self.s(&i))),
                    None => self.warn(&path("image"), "not a string"),
                },
                "command" | "entrypoint" => match self.argv(value) {
                    Some(words) => out.push(format!("{key} {words}")),
                    None => self.warn(&path(&key), "neither a string nor a list of strings"),
                },
                "environment" => self.environment(svc, value, &mut out),
                "env_file" => self.env_file(svc, value, &mut out),
                "ports" => self.ports(svc, value, &mut out),
                "volumes" => self.volumes(svc, value, &mut out),
                "depends_on" => self.depends_on(svc, value, &mut out),
                "healthcheck" => self.healthcheck(svc, value, &mut out),
                "restart" => match scalar(value).as_deref() {
                    Some(r @ ("no" | "always" | "unless-stopped" | "on-failure")) => {
                        out.push(format!("restart {}", q(r)))
                    }
                    Some(r) if r.starts_with("on-failure:") => {
                        out.push("restart \"on-failure\"".into());
                        self.warn(&path("restart"), "the retry count of on-failure is not mapped");
                    }
                    // Checked when fleet reads the file, as compose checks it at `up`.
                    Some(r) if r.contains('$') => out.push(format!("restart {}", self.typed_var(r))),
                    _ => self.warn(&path("restart"), "unknown restart policy"),
                },
                "labels" => {
                    let pairs = self.pairs(svc, "labels", value);
                    if !pairs.is_empty() {
                        out.push(format!("labels {{ {} }}", pairs.join("; ")));
                    }
                }
                "stop_signal" => match scalar(value) {
                    Some(sig) => out.push(format!("stop_signal {}", q(&sig))),
                    None => self.warn(&path(&key), "not a string"),
                },
                "stop_grace_period" => match scalar(value) {
                    Some(d) if let Some(secs) = duration_secs(&d) => {
                        out.push(format!("stop_timeout {}", secs.ceil() as u64))
                    }
                    Some(d) if d.contains('$') => self.warn(
                        &path(&key),
                        &format!("`{d}` is not mapped: fleet's stop_timeout is whole seconds, not a duration variable; write `stop_timeout N` by hand"),
                    ),
                    _ => self.warn(&path(&key), "not a duration"),
                },
                k if k.starts_with("x-") => self.warn(&path(k), "extension field: not configuration"),
                "container_name" => self.warn(&path(&key), "fleet names containers <project>-<stage>-<service>"),
                "build" if !self.build_input_is_here(svc, value, def.get("image").is_some(), &mut out) => {}
                "build" => self.build(svc, value, &mut out),
                "network_mode" => self.network_mode(svc, value),
                "networks" => self.warn(
                    &path(&key),
                    "fleet puts every service of a stage on one network, where they reach each other by name",
                ),
                k => self.warn(&path(k), "not mapped by fleet"),
            }
        }
        out
    }

    /// Whether the build context and its Dockerfile are there, as fleet needs them to read the
    /// file (compose looks only when it builds). When they are not, the build is left out with a
    /// warning and the service runs its image (the service's name when it names none).
    fn build_input_is_here(&mut self, svc: &str, value: &Value, has_image: bool, out: &mut Vec<String>) -> bool {
        let (context, dockerfile) = match value {
            Value::Mapping(m) => (
                m.get("context").and_then(scalar).unwrap_or(".".into()),
                m.get("dockerfile").and_then(scalar).unwrap_or("Dockerfile".into()),
            ),
            other => (scalar(other).unwrap_or(".".into()), "Dockerfile".into()),
        };
        if context.contains('$') || dockerfile.contains('$') {
            return true; // resolved when fleet reads the file
        }
        let dir = self.dir.join(&context);
        let missing = if !dir.is_dir() {
            format!("the build context {context} is not here")
        } else if !dir.join(&dockerfile).is_file() {
            format!("the build context {context} has no {dockerfile}")
        } else {
            return true;
        };
        if !has_image {
            out.push(format!("image {}", q(svc)));
        }
        let image = if has_image { "its `image`".to_string() } else { format!("the image {svc}") };
        self.warn(
            &format!("services.{svc}.build"),
            &format!(
                "{missing}, so the build is not imported: fleet runs {image}; add `build` when the context is in place"
            ),
        );
        false
    }

    /// `build: ./api`, or its long form (context, dockerfile, target, args) as a `build` block.
    fn build(&mut self, svc: &str, value: &Value, out: &mut Vec<String>) {
        let at = |k: &str| format!("services.{svc}.build.{k}");
        let map = match value {
            Value::Mapping(m) => m,
            other => match scalar(other) {
                Some(context) => return out.push(format!("build {}", self.s(&context))),
                None => return self.warn(&format!("services.{svc}.build"), "neither a path nor a mapping"),
            },
        };
        let mut lines = vec![format!("context {}", self.s(&map.get("context").and_then(scalar).unwrap_or(".".into())))];
        for (key, value) in map {
            let key = scalar(key).unwrap_or_default();
            match (key.as_str(), scalar(value)) {
                ("context", _) => {}
                ("dockerfile" | "target", Some(v)) => lines.push(format!("{key} {}", self.s(&v))),
                ("args", _) => {
                    let pairs = self.pairs(svc, "build.args", value);
                    if !pairs.is_empty() {
                        lines.push(format!("args {{ {} }}", pairs.join("; ")));
                    }
                }
                (k, _) => self.warn(&at(k), "not mapped by fleet's build"),
            }
        }
        out.push(format!("build {{ {} }}", lines.join("; ")));
    }

    /// `"a b"` → `"a" "b"` split like compose (shell words, no shell); a list as it is.
    fn argv(&mut self, value: &Value) -> Option<String> {
        let words: Vec<String> = match value {
            Value::String(s) => shell_words::split(s).ok()?,
            Value::Sequence(items) => items.iter().map(scalar).collect::<Option<Vec<_>>>()?,
            _ => return None,
        };
        Some(words.iter().map(|w| self.s(w)).collect::<Vec<_>>().join(" "))
    }

    /// `KEY "value"` pairs from compose's list (`KEY=value`) or map form.
    fn pairs(&mut self, svc: &str, key: &str, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |me: &mut Self, k: &str, v: Option<String>| {
            if k.is_empty() || k.chars().any(|c| c.is_control() || c == '=') {
                me.warn(
                    &format!("services.{svc}.{key}.{k}"),
                    "an empty name, or one holding `=` or a control character, is not a variable or label name",
                );
                return;
            }
            // In `environment`, `KEY` without a value passes the variable through from the
            // environment; a label without one (`com.example.flag`) is a label with an empty value.
            let v = match v {
                Some(v) => v,
                None if key == "labels" => String::new(),
                None if is_var_name(k) => format!("${{{k}}}"),
                None => {
                    let why = "no value, and not a variable name the environment could pass through; skipped";
                    return me.warn(&format!("services.{svc}.{key}.{k}"), why);
                }
            };
            out.push(format!("{} {}", kdl_key(k), me.s(&v)));
        };
        match value {
            Value::Sequence(items) => {
                for item in items {
                    let Some(text) = scalar(item) else { continue };
                    match text.split_once('=') {
                        Some((k, v)) => push(self, k, Some(v.to_string())),
                        None => push(self, &text, None),
                    }
                }
            }
            Value::Mapping(m) => {
                for (k, v) in m {
                    let k = scalar(k).unwrap_or_default();
                    push(self, &k, if v.is_null() { None } else { scalar(v) });
                }
            }
            _ => self.warn(&format!("services.{svc}.{key}"), "neither a list nor a mapping"),
        }
        out
    }

    fn environment(&mut self, svc: &str, value: &Value, out: &mut Vec<String>) {
        let pairs = self.pairs(svc, "environment", value);
        if !pairs.is_empty() {
            out.push(format!("environment {{ {} }}", pairs.join("; ")));
        }
    }

    fn env_file(&mut self, svc: &str, value: &Value, out: &mut Vec<String>) {
        let items: Vec<Value> = match value {
            Value::Sequence(s) => s.clone(),
            other => vec![other.clone()],
        };
        let mut files = Vec::new();
        for item in items {
            match (&item, scalar(&item)) {
                (_, Some(p)) => files.push(self.s(&p)),
                (Value::Mapping(m), None) => {
                    let path = m.get("path").and_then(scalar);
                    let optional = m.get("required") == Some(&Value::Bool(false));
                    match path {
                        // Compose skips an optional file that is not there: so does the import.
                        Some(p) if optional && !p.contains('$') && !self.dir.join(&p).is_file() => self.warn(
                            &format!("services.{svc}.env_file"),
                            &format!("{p} (required: false) does not exist, so it is not listed: fleet needs every file it lists; add it when it exists"),
                        ),
                        Some(p) => {
                            files.push(self.s(&p));
                            if optional {
                                self.warn(&format!("services.{svc}.env_file"), &format!("{p}: required: false is not mapped: fleet needs the file"));
                            }
                        }
                        None => self.warn(&format!("services.{svc}.env_file"), "no `path`"),
                    }
                }
                _ => self.warn(&format!("services.{svc}.env_file"), "not a path"),
            }
        }
        if !files.is_empty() {
            out.push(format!("env_file {}", files.join(" ")));
        }
    }

    /// A port number as KDL: `8080`, or a string that fleet resolves when it reads the file
    /// (`"${WEB_PORT:-8080}"`), so the variable is checked at `up` as compose does.
    fn port_number(&mut self, at: &str, text: &str) -> Option<String> {
        if let Ok(n) = text.trim().parse::<u16>() {
            return Some(n.to_string());
        }
        if text.contains('$') {
            return Some(self.typed_var(text));
        }
        self.warn(at, &format!("`{text}` is not a port number fleet can write; skipped"));
        None
    }

    /// A typed value (a port, a duration, a count) given by variables, as a KDL string.
    fn typed_var(&mut self, text: &str) -> String {
        let mut names = BTreeSet::new();
        let out = vars(text, &mut names);
        self.needed.extend(names.iter().cloned());
        self.typed.extend(names);
        q(&out)
    }

    /// `network_mode`: fleet runs every service on its stage's network; say what that changes.
    fn network_mode(&mut self, svc: &str, value: &Value) {
        let at = format!("services.{svc}.network_mode");
        match scalar(value).as_deref() {
            Some("host") => self.warn(
                &at,
                "`host` is not mapped: under compose the service used the host's network, so every port it \
                 listens on was reachable without `ports` and it reached the host's services on localhost; \
                 in fleet it runs on the stage's network and publishes nothing: add `ports` for what must be \
                 reached from outside, and reach other services by their name",
            ),
            Some(mode) if mode.starts_with("service:") || mode.starts_with("container:") => {
                let other = mode.split_once(':').map_or(mode, |(_, o)| o);
                self.warn(
                    &at,
                    &format!(
                        "`{mode}` is not mapped: under compose the service shared {other}'s network stack (its \
                         traffic left through {other}, e.g. a VPN, and {other} published its ports); in fleet it \
                         has its own address on the stage's network: its traffic no longer passes through {other}, \
                         and it reaches {other} by name"
                    ),
                )
            }
            Some(mode) => {
                self.warn(&at, &format!("`{mode}` is not mapped: fleet puts every service of a stage on one network"))
            }
            None => self.warn(&at, "not a string"),
        }
    }

    /// A port in long syntax as (host_ip, published, target, protocol); None when it has no target.
    #[allow(clippy::type_complexity)]
    fn long_port(
        &mut self,
        at: &str,
        m: &serde_yaml_ng::Mapping,
    ) -> Option<(Option<String>, Option<String>, String, Option<String>)> {
        let Some(target) = m.get("target").and_then(scalar) else {
            self.warn(at, "long syntax without `target`; skipped");
            return None;
        };
        if m.get("mode").and_then(scalar).is_some_and(|mode| mode != "ingress" && mode != "host") {
            self.warn(&format!("{at}.mode"), "not mapped");
        }
        for k in m.keys().filter_map(scalar) {
            if !["target", "published", "host_ip", "protocol", "mode"].contains(&k.as_str()) {
                self.warn(&format!("{at}.{k}"), "not mapped");
            }
        }
        Some((
            m.get("host_ip").and_then(scalar),
            m.get("published").and_then(scalar),
            target,
            m.get("protocol").and_then(scalar),
        ))
    }

    fn ports(&mut self, svc: &str, value: &Value, out: &mut Vec<String>) {
        let Value::Sequence(items) = value else {
            self.warn(&format!("services.{svc}.ports"), "not a list");
            return;
        };
        let mut lines = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("services.{svc}.ports[{i}]");
            let (host_ip, host, container, protocol) = match item {
                Value::Mapping(m) => match self.long_port(&at, m) {
                    Some(parts) => parts,
                    None => continue,
                },
                other => {
                    let Some(text) = scalar(other) else { continue };
                    let (spec, protocol) = match text.rsplit_once('/') {
                        Some((s, p)) => (s.to_string(), Some(p.to_string())),
                        None => (text.clone(), None),
                    };
                    // ip:host:container, host:container, container (an IPv6 ip is in brackets).
                    let parts: Vec<&str> = if let Some(rest) = spec.strip_prefix('[') {
                        let (ip, tail) = rest.split_once("]:").unwrap_or((rest, ""));
                        std::iter::once(ip).chain(tail.split(':')).collect()
                    } else {
                        split_outside_braces(&spec)
                    };
                    match parts.as_slice() {
                        [c] => (None, None, c.to_string(), protocol),
                        [h, c] => (None, Some(h.to_string()), c.to_string(), protocol),
                        [ip, h, c] => {
                            (Some(ip.to_string()), (!h.is_empty()).then(|| h.to_string()), c.to_string(), protocol)
                        }
                        _ => {
                            self.warn(&at, &format!("`{text}` is not a port mapping fleet reads; skipped"));
                            continue;
                        }
                    }
                }
            };
            if is_range(&container) || host.as_deref().is_some_and(is_range) {
                self.warn(&at, "port ranges are not mapped; skipped");
                continue;
            }
            if let Some(p) = protocol.as_deref().filter(|p| !p.contains('$') && !["tcp", "udp"].contains(p)) {
                self.warn(&at, &format!("protocol `{p}` is not mapped (fleet publishes tcp and udp); skipped"));
                continue;
            }
            let Some(container) = self.port_number(&at, &container) else { continue };
            let host = match host {
                Some(h) => match self.port_number(&at, &h) {
                    Some(n) => Some(n),
                    None => continue,
                },
                None => None,
            };
            let mut line = String::from("port");
            if let Some(h) = host {
                let _ = write!(line, " host={h}");
            }
            let _ = write!(line, " container={container}");
            if let Some(p) = protocol.filter(|p| p != "tcp") {
                let _ = write!(line, " protocol={}", q(&p));
            }
            if let Some(ip) = host_ip.filter(|ip| !ip.is_empty()) {
                let _ = write!(line, " host_ip={}", q(&ip));
            }
            lines.push(line);
        }
        if !lines.is_empty() {
            out.push(format!("ports {{ {} }}", lines.join("; ")));
        }
    }

    fn volumes(&mut self, svc: &str, value: &Value, out: &mut Vec<String>) {
        let Value::Sequence(items) = value else {
            self.warn(&format!("services.{svc}.volumes"), "not a list");
            return;
        };
        let mut lines = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("services.{svc}.volumes[{i}]");
            let (source, target, read_only) = match item {
                Value::Mapping(m) => {
                    let kind = m.get("type").and_then(scalar).unwrap_or_else(|| "volume".into());
                    if kind != "volume" && kind != "bind" {
                        self.warn(&at, &format!("type {kind} is not mapped; skipped"));
                        continue;
                    }
                    for (k, _) in m {
                        let k = scalar(k).unwrap_or_default();
                        if !["type", "source", "target", "read_only"].contains(&k.as_str()) {
                            self.warn(&format!("{at}.{k}"), "not mapped");
                        }
                    }
                    let ro = m.get("read_only") == Some(&Value::Bool(true));
                    (m.get("source").and_then(scalar), m.get("target").and_then(scalar), ro)
                }
                other => {
                    let Some(text) = scalar(other) else { continue };
                    let parts = split_outside_braces(&text);
                    match parts.as_slice() {
                        [t] => (None, Some(t.to_string()), false),
                        [s, t] => (Some(s.to_string()), Some(t.to_string()), false),
                        [s, t, mode] => {
                            let modes: Vec<&str> = mode.split(',').collect();
                            for m in &modes {
                                if !["ro", "rw"].contains(m) {
                                    self.warn(&at, &format!("mode `{m}` is not mapped"));
                                }
                            }
                            (Some(s.to_string()), Some(t.to_string()), modes.contains(&"ro"))
                        }
                        _ => {
                            self.warn(&at, &format!("`{text}` is not a volume fleet reads; skipped"));
                            continue;
                        }
                    }
                }
            };
            let (Some(source), Some(target)) = (source, target) else {
                self.warn(&at, "an anonymous volume (no source) is not mapped; name it (data:/path) to keep its data");
                continue;
            };
            let mut line = format!("volume {} {}", self.s(&source), self.s(&target));
            if read_only {
                line.push_str(" read_only=#true");
            }
            lines.push(line);
        }
        if !lines.is_empty() {
            out.push(format!("volumes {{ {} }}", lines.join("; ")));
        }
    }

    fn depends_on(&mut self, svc: &str, value: &Value, out: &mut Vec<String>) {
        let deps: Vec<String> = match value {
            Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
            Value::Mapping(m) => {
                let mut deps = Vec::new();
                for (dep, opts) in m {
                    let dep = scalar(dep).unwrap_or_default();
                    let at = format!("services.{svc}.depends_on.{dep}");
                    match opts.get("condition").and_then(scalar).as_deref() {
                        None | Some("service_started") => {}
                        Some("service_healthy") => self.healthy_waits.push((svc.to_string(), dep.clone())),
                        Some("service_completed_successfully") => {
                            self.oneshot.insert(dep.clone());
                        }
                        Some(other) => self.warn(&format!("{at}.condition"), &format!("`{other}` is not mapped")),
                    }
                    if let Value::Mapping(o) = opts {
                        for (k, v) in o {
                            let k = scalar(k).unwrap_or_default();
                            let default = (k == "required" && v == &Value::Bool(true))
                                || (k == "restart" && v == &Value::Bool(false));
                            if k != "condition" && !default {
                                self.warn(&format!("{at}.{k}"), "not mapped");
                            }
                        }
                    }
                    deps.push(dep);
                }
                deps
            }
            _ => {
                self.warn(&format!("services.{svc}.depends_on"), "neither a list nor a mapping");
                return;
            }
        };
        if !deps.is_empty() {
            out.push(format!("depends_on {}", deps.iter().map(|d| q(d)).collect::<Vec<_>>().join(" ")));
        }
    }

    fn healthcheck(&mut self, svc: &str, value: &Value, out: &mut Vec<String>) {
        let at = format!("services.{svc}.healthcheck");
        let Value::Mapping(m) = value else {
            self.warn(&at, "not a mapping");
            return;
        };
        if m.get("disable") == Some(&Value::Bool(true)) {
            return self.warn(&format!("{at}.disable"), DISABLED);
        }
        let mut parts = Vec::new();
        for (k, v) in m {
            let k = scalar(k).unwrap_or_default();
            match k.as_str() {
                "test" => {
                    let words: Vec<String> = match v {
                        Value::String(s) => vec!["CMD-SHELL".into(), s.clone()],
                        Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
                        _ => Vec::new(),
                    };
                    if words.first().is_some_and(|w| w == "NONE") {
                        return self.warn(&format!("{at}.test"), DISABLED);
                    }
                    if words.is_empty() {
                        self.warn(&format!("{at}.test"), "not a command");
                        return;
                    }
                    parts.push(format!("test {}", words.iter().map(|w| self.s(w)).collect::<Vec<_>>().join(" ")));
                }
                "interval" | "timeout" | "start_period" => match scalar(v) {
                    Some(d) if duration_secs(&d).is_some() => parts.push(format!("{k} {}", q(&d))),
                    Some(d) if d.contains('$') => parts.push(format!("{k} {}", self.typed_var(&d))),
                    _ => self.warn(&format!("{at}.{k}"), "not a duration"),
                },
                "retries" => match scalar(v) {
                    Some(r) if r.parse::<u32>().is_ok() => parts.push(format!("retries {r}")),
                    Some(r) if r.contains('$') => parts.push(format!("retries {}", self.typed_var(&r))),
                    _ => self.warn(&format!("{at}.{k}"), "not a number"),
                },
                "disable" => {}
                other => self.warn(&format!("{at}.{other}"), "not mapped"),
            }
        }
        if parts.iter().any(|p| p.starts_with("test ")) {
            out.push(format!("healthcheck {{ {} }}", parts.join("; ")));
        } else {
            self.warn(
                &at,
                "no `test`: the image's own healthcheck (if it has one) still runs, but fleet knows no test, \
                 so nothing waits for it to pass before starting what depends on this service",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imported(yaml: &str) -> Imported {
        convert(yaml, "compose.yml", Path::new("/work/shop")).unwrap()
    }

    #[test]
    fn maps_short_and_long_syntax_and_keeps_variables() {
        let out = imported(
            r#"
x-common: &common
  restart: unless-stopped
  labels: { team: web }
services:
  web:
    <<: *common
    image: "nginx:${TAG:-1.27}"
    command: ["nginx", "-g", "daemon off;"]
    ports: ["8080:80", "127.0.0.1:8443:443/tcp", {target: 53, published: 5353, protocol: udp}]
    environment: [API=http://api:$PORT, DEBUG]
    volumes: ["./site:/usr/share/nginx/html:ro", {type: volume, source: cache, target: /cache}, "${LOGS:-./logs}:/logs"]
    depends_on:
      db: { condition: service_healthy }
      migrate: { condition: service_completed_successfully }
    stop_grace_period: 1m30s
    container_name: web1
  db:
    image: postgres:16
    healthcheck: { test: "pg_isready", interval: 2s, retries: 5 }
  migrate:
    image: app
    command: migrate up
"#,
        );
        let k = &out.kdl;
        assert!(k.contains("project \"shop\""), "{k}");
        assert!(k.contains("image \"nginx:${TAG:-1.27}\""), "{k}");
        assert!(k.contains("command \"nginx\" \"-g\" \"daemon off;\""), "{k}");
        assert!(k.contains("ports { port host=8080 container=80; port host=8443 container=443 host_ip=\"127.0.0.1\"; port host=5353 container=53 protocol=\"udp\" }"), "{k}");
        assert!(k.contains("environment { API \"http://api:${PORT}\"; DEBUG \"${DEBUG}\" }"), "{k}");
        assert!(
            k.contains("volume \"./site\" \"/usr/share/nginx/html\" read_only=#true; volume \"cache\" \"/cache\""),
            "{k}"
        );
        assert!(k.contains("depends_on \"db\" \"migrate\""), "{k}");
        assert!(k.contains("restart \"unless-stopped\""), "merged from x-common: {k}");
        assert!(k.contains("labels { team \"web\" }"), "{k}");
        assert!(k.contains("stop_timeout 90"), "{k}");
        assert!(k.contains("healthcheck { test \"CMD-SHELL\" \"pg_isready\"; interval \"2s\"; retries 5 }"), "{k}");
        assert!(
            k.contains("command \"migrate\" \"up\"\n    oneshot"),
            "a dependency that must complete is a oneshot: {k}"
        );
        assert!(k.contains("variables {\n    DEBUG \"\"\n    PORT \"\"\n}"), "{k}");
        let w = out.warnings.join("\n");
        assert!(w.contains("services.web.container_name: fleet names containers"), "{w}");
        assert!(w.contains("x-common: extension field"), "{w}");
        assert_eq!(out.warnings.len(), 2, "{w}");
    }

    #[test]
    fn every_unmapped_key_is_a_warning_with_its_path() {
        let out = imported(
            "version: '3.8'\nservices:\n  a:\n    image: x\n    privileged: true\n    ports: ['${P}:80', '8000-8001:8000-8001', '${WEB_PORT:-8080}:80']\n    volumes: ['/anon', {type: tmpfs, target: /t}]\n    x-meta: 1\nnetworks: { front: {} }\n",
        );
        let w = out.warnings.join("\n");
        assert!(
            out.kdl.contains("ports { port host=\"${P}\" container=80; port host=\"${WEB_PORT:-8080}\" container=80 }"),
            "variables in ports are kept, checked when fleet reads the file: {}",
            out.kdl
        );
        assert!(!out.kdl.contains("variables {"), "no empty default for a port: {}", out.kdl);
        assert!(!w.contains("ports[0]") && !w.contains("ports[2]"), "{w}");
        for expected in [
            "version: obsolete",
            "services.a.privileged: not mapped by fleet",
            "services.a.ports[1]: port ranges are not mapped",
            "services.a.volumes[0]: an anonymous volume",
            "services.a.volumes[1]: type tmpfs is not mapped",
            "services.a.x-meta: extension field",
            "networks: not mapped",
        ] {
            assert!(w.contains(expected), "missing `{expected}` in:\n{w}");
        }
    }

    #[test]
    fn bad_yaml_names_the_file_line_and_column() {
        let err = convert("services:\n  a: [\n", "compose.yml", Path::new("/x")).unwrap_err().to_string();
        assert!(err.starts_with("compose.yml:"), "{err}");
        assert!(convert("- a\n", "c.yml", Path::new("/x")).is_err());
        assert!(convert("services: {}\n", "c.yml", Path::new("/x")).unwrap_err().to_string().contains("no services"));
    }

    #[test]
    fn build_maps_in_short_and_long_form() {
        let dir = std::env::temp_dir().join(format!("fleet-import-build-{}", std::process::id()));
        for path in ["api/Dockerfile", "web/Dockerfile.prod"] {
            std::fs::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
            std::fs::write(dir.join(path), "FROM scratch\n").unwrap();
        }
        let out = convert(
            "services:\n  api:\n    build: ./api\n  web:\n    image: shop/web\n    build:\n      context: ./web\n      dockerfile: Dockerfile.prod\n      target: runtime\n      args: [VERSION=2]\n      cache_from: [x]\n",
            "compose.yml",
            &dir,
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(out.kdl.contains("build \"./api\""), "{}", out.kdl);
        assert!(
            out.kdl.contains(
                "build { context \"./web\"; dockerfile \"Dockerfile.prod\"; target \"runtime\"; args { VERSION \"2\" } }"
            ),
            "{}",
            out.kdl
        );
        assert!(out.kdl.contains("image \"shop/web\""), "{}", out.kdl);
        assert!(!out.kdl.contains("image \"api\""), "a built service needs no image: {}", out.kdl);
        let w = out.warnings.join("\n");
        assert!(w.contains("services.web.build.cache_from: not mapped"), "{w}");
        assert_eq!(out.warnings.len(), 1, "{w}");
    }

    #[test]
    fn a_shared_network_stack_and_a_disabled_healthcheck_are_explained() {
        let out = imported(
            "services:\n  vpn: {image: gluetun}\n  torrent: {image: qb, network_mode: 'service:vpn', healthcheck: {disable: true}}\n  web: {image: w, healthcheck: {test: [NONE]}, depends_on: {torrent: {condition: service_healthy}, ml: {condition: service_healthy}}}\n  ml: {image: m, healthcheck: {disable: false}}\n",
        );
        let w = out.warnings.join("\n");
        assert!(w.contains("services.torrent.network_mode: `service:vpn` is not mapped: under compose the service shared vpn's network stack"), "{w}");
        assert!(w.contains("no longer passes through vpn"), "{w}");
        assert!(w.contains("services.torrent.healthcheck.disable: a disabled healthcheck is not mapped"), "{w}");
        assert!(w.contains("services.web.healthcheck.test: a disabled healthcheck is not mapped"), "{w}");
        assert!(!out.kdl.contains("healthcheck"), "{}", out.kdl);
        for dep in ["torrent", "ml"] {
            assert!(
                w.contains(&format!("services.web.depends_on.{dep}: service_healthy, but {dep} has no healthcheck")),
                "{w}"
            );
        }
    }

    #[test]
    fn more_services_than_a_project_holds_are_refused() {
        let many: String = (0..1001).map(|i| format!("  s{i}: {{image: x}}\n")).collect();
        let err = convert(&format!("services:\n{many}"), "c.yml", Path::new("/x")).unwrap_err().to_string();
        assert!(err.contains("defines 1001 services; fleet imports up to 1000"), "{err}");
        let ok: String = (0..1000).map(|i| format!("  s{i}: {{image: x}}\n")).collect();
        assert_eq!(imported(&format!("services:\n{ok}")).services, 1000);
    }

    #[test]
    fn keys_kdl_would_read_as_numbers_or_keywords_are_quoted() {
        let out = imported(
            "services:\n  a:\n    image: x\n    environment: {1PASSWORD_CONNECT: 'y', 'true': t, -9X: m, .5: d, inf: i, OK_1: o}\n    labels: ['8080.expose=true', 'app.kubernetes.io/name=web']\n",
        );
        assert!(
            out.kdl.contains(
                r#"environment { "1PASSWORD_CONNECT" "y"; "true" "t"; "-9X" "m"; "0.5" "d"; "inf" "i"; OK_1 "o" }"#
            ),
            "{}",
            out.kdl
        );
        assert!(out.kdl.contains(r#"labels { "8080.expose" "true"; "app.kubernetes.io/name" "web" }"#), "{}", out.kdl);
        let config = crate::config::Config::from_text(Path::new("/work/shop/fleet.kdl"), out.kdl.clone()).unwrap();
        let spec = config.stage("local").unwrap();
        assert_eq!(spec.services[0].environment["1PASSWORD_CONNECT"], "y");
        assert_eq!(spec.services[0].labels["8080.expose"], "true");
        assert_eq!(spec.services[0].labels["app.kubernetes.io/name"], "web");
    }

    #[test]
    fn a_variable_restart_policy_is_kept_and_a_variable_grace_period_explained() {
        let out = imported(
            "services:\n  a:\n    image: x\n    restart: ${RESTART_POLICY:-unless-stopped}\n    stop_grace_period: ${STOP:-30s}\n",
        );
        assert!(out.kdl.contains(r#"restart "${RESTART_POLICY:-unless-stopped}""#), "{}", out.kdl);
        let w = out.warnings.join("\n");
        assert!(
            w.contains(
                "services.a.stop_grace_period: `${STOP:-30s}` is not mapped: fleet's stop_timeout is whole seconds"
            ),
            "{w}"
        );
        let config = crate::config::Config::from_text(Path::new("/work/shop/fleet.kdl"), out.kdl).unwrap();
        assert_eq!(
            config.stage("local").unwrap().services[0].restart,
            Some(crate::model::RestartPolicy::UnlessStopped)
        );
    }

    #[test]
    fn an_optional_env_file_that_is_not_there_is_left_out() {
        let dir = std::env::temp_dir().join(format!("fleet-import-envfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("present.env"), "A=1\n").unwrap();
        let yaml = "services:\n  a:\n    image: x\n    env_file:\n      - path: ./missing.env\n        required: false\n      - path: ./present.env\n        required: false\n";
        let out = convert(yaml, "compose.yml", &dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(out.kdl.contains("env_file \"./present.env\"\n"), "{}", out.kdl);
        let w = out.warnings.join("\n");
        assert!(w.contains("./missing.env (required: false) does not exist, so it is not listed"), "{w}");
        assert!(w.contains("./present.env: required: false is not mapped"), "{w}");
    }

    #[test]
    fn a_build_whose_context_is_not_here_is_left_out_and_the_image_runs() {
        let out = imported(
            "services:\n  web:\n    image: shop/web\n    build: ./web\n  api:\n    build: {context: ./api, dockerfile: Dockerfile.dev}\n",
        );
        assert!(!out.kdl.contains("build"), "{}", out.kdl);
        assert!(out.kdl.contains("image \"shop/web\"") && out.kdl.contains("image \"api\""), "{}", out.kdl);
        let w = out.warnings.join("\n");
        assert!(w.contains("services.web.build: the build context ./web is not here, so the build is not imported: fleet runs its `image`"), "{w}");
        assert!(w.contains("services.api.build: the build context ./api is not here, so the build is not imported: fleet runs the image api"), "{w}");
        crate::config::Config::from_text(Path::new("/work/shop/fleet.kdl"), out.kdl).unwrap().validate_all().unwrap();
    }

    #[test]
    fn other_protocols_and_unmapped_long_port_keys_are_warnings() {
        let out = imported(
            "services:\n  a:\n    image: x\n    ports: ['9999:99/sctp', {target: 81, published: 8181, app_protocol: http, name: web}]\n",
        );
        assert!(out.kdl.contains("ports { port host=8181 container=81 }"), "{}", out.kdl);
        let w = out.warnings.join("\n");
        assert!(w.contains("services.a.ports[0]: protocol `sctp` is not mapped"), "{w}");
        assert!(
            w.contains("services.a.ports[1].app_protocol: not mapped")
                && w.contains("services.a.ports[1].name: not mapped"),
            "{w}"
        );
    }

    #[test]
    fn odd_names_are_written_or_said_never_a_file_fleet_cannot_read() {
        let out = imported(
            "name: ${PROJECT}\nservices:\n  a:\n    image: x\n    command: [$null, $true]\n    environment: ['${V:-d}', 'a b', OK]\n    healthcheck: {test: [CMD, 'true'], interval: 5}\n",
        );
        assert!(out.kdl.contains("project \"shop\""), "{}", out.kdl);
        assert!(out.kdl.contains("    \"null\" \"\"\n") && out.kdl.contains("    \"true\" \"\"\n"), "{}", out.kdl);
        assert!(out.kdl.contains("environment { OK \"${OK}\" }"), "{}", out.kdl);
        let w = out.warnings.join("\n");
        assert!(w.contains("services.a.environment.a b: no value, and not a variable name"), "{w}");
        assert!(w.contains("services.a.healthcheck.interval: not a duration"), "{w}");
        crate::config::Config::from_text(Path::new("/work/shop/fleet.kdl"), out.kdl).unwrap().validate_all().unwrap();
    }

    #[test]
    fn kdl_strings_are_escaped() {
        assert_eq!(q("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
