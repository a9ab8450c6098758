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

/// `fleet.kdl:12:20: variable `TOKEN` is not set (`plan` and `up` need it: …)`, one line.
pub fn render(w: &ConfigError) -> String {
    match &w.help {
        Some(help) => format!("{}: {} ({help})", w.location(), w.message),
        None => format!("{}: {}", w.location(), w.message),
    }
}
