//! Variables that are unset when the file is only checked (`fleet validate`): deploy-time values
//! such as an API token that CI does not have. `validate` warns and goes on, like
//! `terraform validate`; `plan` and `up` still refuse them.

use super::diagnostic::ConfigError;
use super::interpolate::InterpolateError;
use super::reader::Reader;
use kdl::KdlEntry;

impl InterpolateError {
    /// No value: `${VAR}` unset, or `${VAR:?…}` unset or empty. Fixed by setting it, not by
    /// editing the file.
    pub fn is_unset(&self) -> bool {
        matches!(self, Self::Undefined { .. } | Self::Required { .. })
    }
}

impl Reader<'_> {
    pub(super) fn warn_unset(&mut self, entry: &KdlEntry, e: &InterpolateError) {
        let name = match e {
            InterpolateError::Undefined { name } | InterpolateError::Required { name, .. } => name.as_str(),
            InterpolateError::Malformed { .. } => return,
        };
        let warning = ConfigError::new(self.src, entry.span(), format!("variable `{name}` is not set"))
            .label("unset")
            .help(format!("`plan` and `up` need it: set {name} in the environment, .env, or a `variables` block"));
        if let Some(list) = &mut self.unset {
            list.push(warning);
        }
    }

    /// A string for a typed field (a number, a duration): None, with no error, when `validate`
    /// found one of its variables unset, since the text as written is not a value to check.
    pub(super) fn typed_string(&mut self, entry: &KdlEntry) -> Option<String> {
        let before = self.unset.as_ref().map_or(0, Vec::len);
        let s = self.string(entry)?;
        let after = self.unset.as_ref().map_or(0, Vec::len);
        (after == before).then_some(s)
    }
}

/// The error is about the value the unset-variable `warning` points at, so it judged the text as
/// written (`${HOST}`), not a value: its place lies inside that value's, or it quotes that text
/// (`deploy-path \`${DIR}\` must be absolute`, said of the whole line).
pub fn covers(warning: &ConfigError, error: &ConfigError) -> bool {
    let (w, e) = (warning.span, error.span);
    if e.offset() >= w.offset() && e.offset() + e.len() <= w.offset() + w.len() {
        return true;
    }
    // The entry as written, `"${DIR}"` or `port="${PORT}"`: its string is between the quotes.
    let text = warning.src.inner();
    let entry = text.get(w.offset()..w.offset() + w.len()).unwrap_or_default();
    let written = match (entry.find('"'), entry.rfind('"')) {
        (Some(open), Some(close)) if close > open + 1 => &entry[open + 1..close],
        _ => return false,
    };
    [&error.message, &error.label].iter().any(|t| t.contains(written))
        || error.help.as_deref().is_some_and(|h| h.contains(written))
}

/// `fleet.kdl:12:20: variable `TOKEN` is not set (`plan` and `up` need it: …)`, one line.
pub fn render(w: &ConfigError) -> String {
    match &w.help {
        Some(help) => format!("{}: {} ({help})", w.location(), w.message),
        None => format!("{}: {}", w.location(), w.message),
    }
}
