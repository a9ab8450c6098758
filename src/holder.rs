//! Who holds a stage lock: the same record for the local file lock and the remote lock.

use serde::{Deserialize, Serialize};

/// A running `fleet` that holds (or held) a stage lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The OS host name (`gethostname`), so it works where `/etc/hostname` does not exist (macOS).
    pub host: String,
    pub user: String,
    /// `fleet up dev`.
    pub command: String,
    /// RFC 3339.
    pub since: String,
}

impl Holder {
    /// This process, about to do `purpose` (e.g. `up dev`).
    pub fn me(purpose: &str) -> Self {
        Self {
            pid: std::process::id(),
            host: this_host(),
            user: std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into()),
            command: format!("fleet {purpose}"),
            since: jiff::Timestamp::now().to_string(),
        }
    }

    /// One line, as stored in the lock.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Option<Self> {
        serde_json::from_str(text.trim()).ok()
    }

    /// Only a holder on this very host can be judged dead, and only by asking its kernel.
    /// Another machine's pid says nothing here, so its lock is never broken automatically.
    pub fn is_dead(&self) -> bool {
        self.host == this_host() && self.pid != std::process::id() && !process_exists(self.pid)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({}@{}, `{}`) since {}", self.pid, self.user, self.host, self.command, self.since)
    }
}

/// The machine's host name as the OS reports it.
pub fn this_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `kill(pid, 0)`: exists unless the kernel says no such process (EPERM means it exists).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_round_trips_and_reads_like_a_sentence() {
        let h = Holder::me("up dev");
        assert_eq!(Holder::decode(&h.encode()), Some(h.clone()));
        assert!(h.to_string().contains("`fleet up dev`"), "{h}");
        assert_eq!(Holder::decode("garbage"), None);
    }

    #[test]
    fn only_a_local_holder_whose_process_is_gone_is_dead() {
        let mut h = Holder::me("up dev");
        assert!(!h.is_dead(), "we are alive");
        h.pid = 999_999_999;
        assert!(h.is_dead(), "no such process on this host");
        h.host = "another-machine".into();
        assert!(!h.is_dead(), "another machine's pid tells nothing");
        let mut init = Holder::me("up dev");
        init.pid = 1;
        assert!(!init.is_dead(), "pid 1 exists (EPERM counts as alive)");
    }
}
