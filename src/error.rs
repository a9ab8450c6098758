//! The one error type the CLI reports, and the exit code each kind maps to.

use crate::diagnostic::ConfigErrors;
use crate::plan::gate::PlanChanged;
use miette::Diagnostic;
use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error, Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] Box<ConfigErrors>),

    /// Wrong flags or a request the file cannot satisfy (unknown stage, no config found).
    #[error("{message}")]
    #[diagnostic(code(fleet::usage))]
    Usage {
        message: String,
        #[help]
        help: Option<String>,
    },

    /// The container engine refused or failed; `context` names the resource.
    #[error("{context}: {source}")]
    #[diagnostic(code(fleet::engine))]
    Engine {
        context: String,
        #[source]
        source: bollard::errors::Error,
    },

    /// An operation ran and did not reach its goal (a container crashed, a health check failed).
    #[error("{message}")]
    #[diagnostic(code(fleet::failed))]
    Failed {
        message: String,
        #[help]
        help: Option<String>,
    },

    /// A provider's HTTP API refused or failed. The status and the API's own error codes are
    /// kept, so callers decide on codes (`has_api_code`), never on message text.
    #[error("{context}: {detail}")]
    #[diagnostic(code(fleet::api))]
    Api {
        context: String,
        status: Option<u16>,
        /// Sakura's `error_code`, Cloudflare's numeric `errors[].code`.
        codes: Vec<String>,
        detail: String,
    },

    #[error("{context}: {source}")]
    #[diagnostic(code(fleet::io))]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// Nothing answers at a server's address (off, booting, shutting down, firewalled). A read
    /// like `status` reports it and goes on; anything else about SSH (a changed host key, a
    /// refused key, a wedged command) stays an error.
    #[error("{message}")]
    #[diagnostic(code(fleet::unreachable))]
    Unreachable {
        message: String,
        #[help]
        help: Option<String>,
    },

    /// SSH reached the server and the connection was refused for a reason that waiting does not
    /// fix: `kind` says which, so callers decide on it (`is_host_key_mismatch`, `is_auth_refused`).
    #[error("{message}")]
    #[diagnostic(code(fleet::ssh))]
    Ssh {
        kind: SshFailure,
        message: String,
        #[help]
        help: Option<String>,
    },

    /// A gated run (`fleet mcp` apply) found a plan other than the one it was given: it carries
    /// the fresh plan, and nothing was changed.
    #[error("{0}")]
    #[diagnostic(
        code(fleet::plan_changed),
        help("look at the new plan; with `fleet mcp`, apply its plan_hash if it is what you want")
    )]
    PlanChanged(Box<PlanChanged>),

    #[error("interrupted; run the same command again to converge")]
    #[diagnostic(code(fleet::interrupted))]
    Interrupted,
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage { message: message.into(), help: None }
    }

    pub fn usage_help(message: impl Into<String>, help: impl Into<String>) -> Self {
        Self::Usage { message: message.into(), help: Some(help.into()) }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed { message: message.into(), help: None }
    }

    pub fn failed_help(message: impl Into<String>, help: impl Into<String>) -> Self {
        Self::Failed { message: message.into(), help: Some(help.into()) }
    }

    pub fn engine(context: impl Into<String>, source: bollard::errors::Error) -> Self {
        Self::Engine { context: context.into(), source }
    }

    pub fn api(context: impl Into<String>, status: Option<u16>, codes: Vec<String>, detail: impl Into<String>) -> Self {
        Self::Api { context: context.into(), status, codes, detail: detail.into() }
    }

    /// The API answered with this error code (e.g. Cloudflare `81058`, Sakura `still_creating`).
    pub fn has_api_code(&self, code: &str) -> bool {
        matches!(self, Error::Api { codes, .. } if codes.iter().any(|c| c == code))
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    pub fn ssh(kind: SshFailure, message: impl Into<String>, help: impl Into<String>) -> Self {
        Self::Ssh { kind, message: message.into(), help: Some(help.into()) }
    }

    /// The server's SSH host key is not the one recorded for its address.
    pub fn is_host_key_mismatch(&self) -> bool {
        matches!(self, Error::Ssh { kind: SshFailure::HostKeyChanged, .. })
    }

    /// The server refused our SSH key (or user).
    pub fn is_auth_refused(&self) -> bool {
        matches!(self, Error::Ssh { kind: SshFailure::AuthRefused, .. })
    }

    /// The refusal of a gated run, with the plan it found instead.
    pub fn plan_changed(&self) -> Option<&PlanChanged> {
        match self {
            Error::PlanChanged(c) => Some(c),
            _ => None,
        }
    }

    /// 0 success, 1 operation failed, 2 usage or config error, 130 interrupted.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Usage { .. } => 2,
            Error::Interrupted => 130,
            _ => 1,
        }
    }
}

/// Why an SSH connection failed, read once from the system ssh's report (it gives no code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshFailure {
    /// The host key is not the recorded one: a rebuilt server, or someone in the middle.
    HostKeyChanged,
    /// The server answered and refused our key (it may not be installed yet on a fresh server).
    AuthRefused,
    /// Anything else (connection refused, reset, timed out): worth another try until a deadline.
    Other,
}

impl SshFailure {
    /// The one place ssh's own words are read; everything else decides on the kind.
    pub fn of(report: &str) -> Self {
        if report.contains("Host key verification failed") || report.contains("IDENTIFICATION HAS CHANGED") {
            Self::HostKeyChanged
        } else if report.contains("Permission denied") {
            Self::AuthRefused
        } else {
            Self::Other
        }
    }
}

impl From<ConfigErrors> for Error {
    fn from(e: ConfigErrors) -> Self {
        Error::Config(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_reports_are_classified_once_into_kinds() {
        let changed = "ssh: WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! Host key verification failed.";
        assert_eq!(SshFailure::of(changed), SshFailure::HostKeyChanged);
        assert_eq!(SshFailure::of("ubuntu@10.0.0.2: Permission denied (publickey)."), SshFailure::AuthRefused);
        assert_eq!(SshFailure::of("connect to host 10.0.0.2 port 22: Connection refused"), SshFailure::Other);
        let e = Error::ssh(SshFailure::of(changed), "server a: host key", "remove its line");
        assert!(e.is_host_key_mismatch() && !e.is_auth_refused());
        assert_eq!(e.exit_code(), 1);
        assert!(!Error::failed("Permission denied").is_auth_refused(), "decided on the kind, never the text");
    }
}
