//! Compose-style `${VAR}` interpolation inside string values.
//!
//! Supported: `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?message}` (unset or empty is an error), and `$$` for a literal `$`.
//! A bare `$VAR` is left as it is, so passwords with a `$` survive.

use std::collections::BTreeMap;

/// Where a variable's value came from, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarSource {
    Process,
    StageEnvFile,
    EnvFile,
    StageVariables,
    Variables,
}

impl VarSource {
    /// Values from the environment or a `.env` file may be secrets: `fleet config` masks them.
    pub fn is_sensitive(self) -> bool {
        matches!(self, VarSource::Process | VarSource::StageEnvFile | VarSource::EnvFile)
    }
}

/// The merged variable scope of one stage.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    values: BTreeMap<String, (String, VarSource)>,
    /// Values of sensitive variables that interpolation used, so output can mask them wherever
    /// they ended up (an environment value, a command, a label).
    used_sensitive: std::cell::RefCell<std::collections::BTreeSet<String>>,
    /// What `fleet config` masks wherever it landed: the sensitive values but those of variables
    /// that name a place or an account (`KC_HOSTNAME`, `DB_PORT`, `POSTGRES_USER`), and the
    /// values of secret-named variables (`DB_PASSWORD`) whatever their source.
    used_secrets: std::cell::RefCell<std::collections::BTreeSet<String>>,
    /// How many times a sensitive value was used: a reader compares it around one string to
    /// know whether that string holds a secret.
    sensitive_uses: std::cell::Cell<usize>,
}

impl Vars {
    /// Adds a layer; an existing (stronger) value wins, so layers are added strongest first.
    pub fn add_layer(&mut self, layer: impl IntoIterator<Item = (String, String)>, source: VarSource) {
        for (k, v) in layer {
            self.values.entry(k).or_insert((v, source));
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|(v, _)| v.as_str())
    }

    /// Like `get`, remembering a sensitive value that is used.
    fn use_value(&self, name: &str) -> Option<&str> {
        let (value, source) = self.values.get(name)?;
        if source.is_sensitive() && !value.is_empty() {
            self.used_sensitive.borrow_mut().insert(value.clone());
            self.sensitive_uses.set(self.sensitive_uses.get() + 1);
        }
        let shown = crate::secrets::is_public_name(name) || crate::secrets::is_public_value(value);
        if !value.is_empty() && ((source.is_sensitive() && !shown) || crate::secrets::is_secret_name(name)) {
            self.used_secrets.borrow_mut().insert(value.clone());
        }
        Some(value.as_str())
    }

    /// How many sensitive values interpolation has used so far (each use counted).
    pub fn sensitive_uses(&self) -> usize {
        self.sensitive_uses.get()
    }

    /// Every sensitive value interpolation has used so far.
    pub fn used_sensitive(&self) -> std::collections::BTreeSet<String> {
        self.used_sensitive.borrow().clone()
    }

    /// Every value interpolation has used so far that `fleet config` masks.
    pub fn used_secrets(&self) -> std::collections::BTreeSet<String> {
        self.used_secrets.borrow().clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${VAR}` with no value and no default.
    Undefined { name: String },
    /// `${VAR:?message}` with no value.
    Required { name: String, message: String },
    /// `${` without its `}`, or an invalid name.
    Malformed { reason: String },
}

impl std::fmt::Display for InterpolateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Undefined { name } => write!(f, "variable `{name}` is not defined"),
            Self::Required { name, message } => {
                write!(f, "variable `{name}` is required: {message}")
            }
            Self::Malformed { reason } => write!(f, "bad variable reference: {reason}"),
        }
    }
}

/// `${A:-${B:-${C}}}` nests this deep at most; deeper is almost surely a mistake, and unbounded
/// nesting would recurse without limit.
const MAX_NESTING: usize = 8;

pub fn interpolate(input: &str, vars: &Vars) -> Result<String, InterpolateError> {
    interpolate_at(input, vars, 0)
}

fn interpolate_at(input: &str, vars: &Vars, depth: usize) -> Result<String, InterpolateError> {
    if depth > MAX_NESTING {
        return Err(InterpolateError::Malformed {
            reason: format!("defaults nest more than {MAX_NESTING} `${{…}}` levels deep"),
        });
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_start) = after.strip_prefix('{') {
            let end = closing_brace(body_start).ok_or_else(|| InterpolateError::Malformed {
                reason: format!("`${{{body_start}` has no closing `}}`"),
            })?;
            out.push_str(&expand(&body_start[..end], vars, depth)?);
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The `}` that closes a reference, allowing nested `${…}` in a default.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn expand(body: &str, vars: &Vars, depth: usize) -> Result<String, InterpolateError> {
    let name_end = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
    let (name, op) = body.split_at(name_end);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(InterpolateError::Malformed { reason: format!("`${{{body}}}` is not a variable name") });
    }
    let value = vars.use_value(name);
    let set_and_nonempty = value.is_some_and(|v| !v.is_empty());
    let (kind, arg) = if let Some(a) = op.strip_prefix(":-") {
        (":-", a)
    } else if let Some(a) = op.strip_prefix(":?") {
        (":?", a)
    } else if let Some(a) = op.strip_prefix('-') {
        ("-", a)
    } else if let Some(a) = op.strip_prefix('?') {
        ("?", a)
    } else if op.is_empty() {
        ("", "")
    } else {
        return Err(InterpolateError::Malformed { reason: format!("unknown operator in `${{{body}}}`") });
    };
    match kind {
        ":-" if !set_and_nonempty => interpolate_at(arg, vars, depth + 1),
        "-" if value.is_none() => interpolate_at(arg, vars, depth + 1),
        ":?" if !set_and_nonempty => Err(required(name, arg)),
        "?" if value.is_none() => Err(required(name, arg)),
        "" if value.is_none() => Err(InterpolateError::Undefined { name: name.into() }),
        _ => Ok(value.unwrap_or_default().to_string()),
    }
}

fn required(name: &str, message: &str) -> InterpolateError {
    let message = if message.is_empty() { "set it in the environment or a .env file".into() } else { message.into() };
    InterpolateError::Required { name: name.into(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        let mut v = Vars::default();
        v.add_layer(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())), VarSource::Variables);
        v
    }

    #[test]
    fn expands_every_form() {
        let v = vars(&[("A", "1"), ("EMPTY", "")]);
        assert_eq!(interpolate("x${A}y", &v).unwrap(), "x1y");
        assert_eq!(interpolate("${B:-def}", &v).unwrap(), "def");
        assert_eq!(interpolate("${EMPTY:-def}", &v).unwrap(), "def");
        assert_eq!(interpolate("${EMPTY-def}", &v).unwrap(), "");
        assert_eq!(interpolate("${B-${A}}", &v).unwrap(), "1");
        assert_eq!(interpolate("cost $$5 and $HOME", &v).unwrap(), "cost $5 and $HOME");
    }

    #[test]
    fn reports_missing_and_required() {
        let v = vars(&[]);
        assert_eq!(interpolate("${NOPE}", &v), Err(InterpolateError::Undefined { name: "NOPE".into() }));
        assert_eq!(
            interpolate("${DB:?set DB first}", &v),
            Err(InterpolateError::Required { name: "DB".into(), message: "set DB first".into() })
        );
        assert!(matches!(interpolate("${A", &v), Err(InterpolateError::Malformed { .. })));
        assert!(matches!(interpolate("${1A}", &v), Err(InterpolateError::Malformed { .. })));
    }

    #[test]
    fn nesting_of_defaults_is_bounded() {
        let v = vars(&[]);
        let ok = "${A:-".repeat(8) + "x" + &"}".repeat(8);
        assert_eq!(interpolate(&ok, &v).unwrap(), "x");
        let deep = "${A:-".repeat(10_000) + "x" + &"}".repeat(10_000);
        assert!(
            matches!(interpolate(&deep, &v), Err(InterpolateError::Malformed { reason }) if reason.contains("nest"))
        );
    }

    #[test]
    fn stronger_layer_wins() {
        let mut v = Vars::default();
        v.add_layer([("X".to_string(), "env".to_string())], VarSource::Process);
        v.add_layer([("X".to_string(), "file".to_string())], VarSource::EnvFile);
        assert_eq!(v.get("X"), Some("env"));
    }
}
