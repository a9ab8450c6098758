//! `fleet.kdl`: discovery, parsing (KDL 2, KDL 1 with a warning), and resolution of one stage.

// Config errors live at the crate root so `error` can wrap them without importing `config`.
use crate::diagnostic;
mod build_reader;
mod env_file;
mod fast_kdl;
mod interpolate;
mod limits;
mod proxy_reader;
mod reader;
mod server_reader;
mod unset;
mod unused;
mod validate;

pub use diagnostic::{ConfigError, ConfigErrors, SourceFile, suggest};
pub use interpolate::{InterpolateError, VarSource, Vars, interpolate};

use crate::error::{Error, Result};
use crate::model::StageSpec;
use kdl::{KdlDocument, KdlNode};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "fleet.kdl";
const HIDDEN_DIR: &str = ".fleetflow";

/// A parsed `fleet.kdl`; stages are resolved from it on demand.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    /// Relative paths in the file (binds, env_file, .env) are relative to this directory.
    pub dir: PathBuf,
    pub source: SourceFile,
    pub doc: KdlDocument,
    pub project: String,
    /// `project "…"` is in the file. A remote stage needs it: its servers are found by a tag made
    /// from the project name, and a name taken from the directory (`api`) is not unique.
    pub project_explicit: bool,
    /// Non-fatal notes, e.g. KDL 1 syntax.
    pub warnings: Vec<String>,
}

/// `-f PATH`, else `fleet.kdl` or `.fleetflow/fleet.kdl` here or in the nearest parent.
pub fn discover(explicit: Option<&Path>, cwd: &Path) -> Result<PathBuf> {
    if let Some(p) = explicit {
        let p = cwd.join(p);
        return explicit_file(p);
    }
    for dir in cwd.ancestors() {
        for candidate in [dir.join(FILE_NAME), dir.join(HIDDEN_DIR).join(FILE_NAME)] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(Error::usage_help(
        format!("no {FILE_NAME} found in {} or any parent directory", cwd.display()),
        "create one (see the README's config reference) or pass -f PATH",
    ))
}

/// `-f PATH`: a file, or an error that says what PATH is instead.
fn explicit_file(p: PathBuf) -> Result<PathBuf> {
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() => Ok(p),
        Ok(m) if m.is_dir() => {
            let inside = p.join(FILE_NAME);
            let help = if inside.is_file() {
                format!("pass the file: -f {}", inside.display())
            } else {
                "-f takes a fleet.kdl file".to_string()
            };
            Err(Error::usage_help(format!("config file {} is a directory", p.display()), help))
        }
        Ok(_) => Err(Error::usage(format!("config file {} is not a regular file", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::usage(format!("config file {} not found", p.display())))
        }
        // A symlink loop, a path through a file, no permission: the argument names no file
        // fleet can read, a usage error (2) like a missing one.
        Err(e) => Err(Error::usage(format!("config file {} cannot be read: {}", p.display(), io_reason(&e)))),
    }
}

/// The OS's words for an I/O error, without Rust's ` (os error 40)`.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::usage(format!("config file {} cannot be read: {}", path.display(), io_reason(&e))))?;
        match String::from_utf8(bytes) {
            Ok(text) => Self::from_text(path, text),
            Err(e) => Err(not_utf8(path, e)),
        }
    }

    pub fn from_text(path: &Path, text: String) -> Result<Self> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if dir.file_name().is_some_and(|n| n == HIDDEN_DIR) {
            dir.pop();
        }
        let display = display_name(&path);
        let source = SourceFile::new(display.clone(), text);
        let (doc, warnings) = parse_kdl(&source)?;
        let (project, project_explicit) = reader::project_decl(&doc, &source, &dir)?;
        let config = Self { path, dir, source, doc, project, project_explicit, warnings };
        // Unknown top-level nodes and duplicate names are checked once, for every command.
        let mut errors = reader::check_structure(&config);
        errors.extend(server_reader::check_providers(&config));
        if errors.is_empty() { Ok(config) } else { Err(config.errors(errors)) }
    }

    fn stage_nodes(&self) -> impl Iterator<Item = &KdlNode> {
        self.doc.nodes().iter().filter(|n| n.name().value() == "stage")
    }

    /// Stage names in file order.
    pub fn stage_names(&self) -> Vec<String> {
        self.stage_nodes()
            .filter_map(|n| n.entries().first().and_then(|e| e.value().as_string()).map(String::from))
            .collect()
    }

    /// Resolves one stage: variables, overrides, validation. Nothing here touches an engine.
    pub fn stage(&self, name: &str) -> Result<StageSpec> {
        if !self.stage_names().iter().any(|s| s == name) {
            let names = self.stage_names();
            let help = match suggest(name, names.iter().map(String::as_str)) {
                Some(s) => s,
                None if names.is_empty() => format!("{} declares no stage", self.source.name),
                None => format!("stages in {}: {}", self.source.name, names.join(", ")),
            };
            return Err(Error::usage_help(format!("stage `{name}` is not defined"), help));
        }
        let (spec, spans) = reader::read_stage(self, name).map_err(|errors| self.errors(errors))?;
        let errors = masked(validate::validate(self, name, &spec, &spans), &spec, &spans);
        // Whatever fails later (SSH, the engine, an API) may quote these values too.
        crate::secrets::remember(&spec.sensitive);
        if errors.is_empty() { Ok(spec) } else { Err(self.errors(errors)) }
    }

    /// Checks the whole file: its structure and every stage. Unset variables are warnings
    /// (`validated.warnings`): they are set at deploy time, which `plan` and `up` check.
    pub fn validate_all(&self) -> Result<Validated> {
        let mut errors = Vec::new();
        let mut specs = Vec::new();
        let mut unset = Vec::new();
        for name in self.stage_names() {
            let (read, unset_here) = reader::read_stage_for_validate(self, &name);
            unset.extend(unset_here);
            match read {
                Ok((spec, spans)) => {
                    errors.extend(masked(validate::validate(self, &name, &spec, &spans), &spec, &spans));
                    specs.push(spec);
                }
                Err(e) => errors.extend(e),
            }
        }
        let (unused_errors, unused_unset) = unused::check(self);
        errors.extend(unused_errors);
        unset.extend(unused_unset);
        // A value with an unset variable is not known yet: what was said about its text as
        // written (`${HOST}` is not a host name) is not a mistake in the file.
        errors.retain(|e| !unset.iter().any(|w| unset::covers(w, e)));
        // The same service read by several stages reports the same mistake once.
        let mut seen = std::collections::HashSet::new();
        errors.retain(|e| seen.insert((e.message.clone(), e.span.offset())));
        unset.retain(|e| seen.insert((e.message.clone(), e.span.offset())));
        let warnings = unset.iter().map(unset::render).collect();
        if errors.is_empty() { Ok(Validated { specs, warnings }) } else { Err(self.errors(errors)) }
    }

    fn errors(&self, errors: Vec<ConfigError>) -> Error {
        ConfigErrors { file: self.source.name.clone(), errors }.into()
    }
}

/// Bytes that are not UTF-8, pointed at by line and column like any other config error.
fn not_utf8(path: &Path, e: std::string::FromUtf8Error) -> Error {
    let at = e.utf8_error().valid_up_to();
    let byte = e.as_bytes()[at];
    let source = SourceFile::new(display_name(path), String::from_utf8_lossy(e.as_bytes()).into_owned());
    let help = match utf16_bom(e.as_bytes()) {
        Some(kind) => format!("the file is {kind} (it starts with that byte order mark); save it as UTF-8"),
        None => "fleet.kdl is UTF-8 text; save it as UTF-8".to_string(),
    };
    let error = ConfigError::new(&source, (at, 1).into(), format!("byte 0x{byte:02X} is not UTF-8 text"))
        .label("not UTF-8")
        .help(help);
    ConfigErrors { file: source.name.clone(), errors: vec![error] }.into()
}

/// `UTF-16LE` or `UTF-16BE` when `bytes` start with that byte order mark (Windows editors).
pub(crate) fn utf16_bom(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0xFF, 0xFE, ..] => Some("UTF-16LE"),
        [0xFE, 0xFF, ..] => Some("UTF-16BE"),
        _ => None,
    }
}

/// Errors with the stage's sensitive values (from `.env` and the environment) masked.
fn masked(errors: Vec<ConfigError>, spec: &StageSpec, spans: &reader::Spans) -> Vec<ConfigError> {
    errors.into_iter().map(|e| e.masked(&spec.sensitive).masked_at(&spans.secrets)).collect()
}

/// What `validate` found in a file with no error.
#[derive(Debug)]
pub struct Validated {
    pub specs: Vec<StageSpec>,
    /// One line each, `fleet.kdl:3:14: variable `TOKEN` is not set (…)`.
    pub warnings: Vec<String>,
}

/// The path as the user would type it: relative to the working directory when possible.
fn display_name(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// KDL 2 first; a file that only parses as KDL 1 is accepted with a deprecation warning.
/// Size and nesting are bounded before and inside the parsers (see `limits`).
fn parse_kdl(source: &SourceFile) -> Result<(KdlDocument, Vec<String>)> {
    let refuse = |e: ConfigError| -> Error { ConfigErrors { file: source.name.clone(), errors: vec![e] }.into() };
    limits::check_size(source).map_err(|e| refuse(*e))?;
    match fast_kdl::read(&source.text, limits::MAX_NESTING) {
        fast_kdl::Outcome::Parsed(doc) => return Ok((doc, Vec::new())),
        fast_kdl::Outcome::TooDeep { offset } => return Err(refuse(limits::too_deep(source, offset))),
        fast_kdl::Outcome::Unsupported => {}
    }
    limits::on_parser_stack(source, || {
        let (doc, warnings) = full_parse(source)?;
        match limits::first_too_deep(&doc) {
            // The deep document is dropped here, on the parser's stack: dropping recurses too.
            Some(offset) => Err(refuse(limits::too_deep(source, offset))),
            None => Ok((doc, warnings)),
        }
    })
}

/// The official parsers: KDL 2, then KDL 1; their errors point into the file.
fn full_parse(source: &SourceFile) -> Result<(KdlDocument, Vec<String>)> {
    let v2_error = match KdlDocument::parse_v2(&source.text) {
        Ok(doc) => return Ok((doc, Vec::new())),
        Err(e) => e,
    };
    if let Ok(v1) = source.text.parse::<kdlv1::KdlDocument>() {
        // Checked before kdl 6 converts it: the conversion clones each subtree once per level.
        if let Some(offset) = limits::first_too_deep_v1(&v1) {
            return Err(
                ConfigErrors { file: source.name.clone(), errors: vec![limits::too_deep(source, offset)] }.into()
            );
        }
        let doc = KdlDocument::from(v1);
        let warning = format!(
            "{} uses KDL 1 syntax, which is deprecated: write booleans as #true / #false and null as #null (KDL 2)",
            source.name
        );
        return Ok((doc, vec![warning]));
    }
    let errors = v2_error
        .diagnostics
        .iter()
        .map(|d| {
            let message = d.message.clone().unwrap_or_else(|| "invalid KDL".into());
            let mut err =
                ConfigError::new(source, d.span, message).label(d.label.clone().unwrap_or_else(|| "here".into()));
            let at = &source.text[d.span.offset().min(source.text.len())..];
            if ["true", "false", "null"].iter().any(|w| at.starts_with(w)) {
                err = err.help("in KDL 2 booleans and null are written #true, #false and #null");
            } else if let Some(h) = &d.help {
                err = err.help(h.clone());
            }
            err
        })
        .collect();
    Err(ConfigErrors { file: source.name.clone(), errors }.into())
}

#[cfg(test)]
mod tests;
