//! Every command fleet runs on a server, as a pure argument vector (Kamal's `commands/`):
//! user-given values travel as positional arguments of `sh -c`, never spliced into a script,
//! so a stage or project name can never become shell syntax. Run by `RemoteHost::run`.

/// An argument vector.
pub type Argv = Vec<String>;

fn argv(words: &[&str]) -> Argv {
    words.iter().map(|w| w.to_string()).collect()
}

/// `sh -c SCRIPT sh ARG…`: inside the script the arguments are `$1`, `$2`, ….
fn script(body: &str, args: &[&str]) -> Argv {
    let mut v = argv(&["sh", "-c", body, "sh"]);
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

/// Where a stage's lock lives on its first server: a directory, since `mkdir` is atomic.
const LOCK_DIR: &str = ".fleetflow/locks";

/// Asked only when the engine's socket does not answer: is there an engine at all?
pub fn docker_version() -> Argv {
    argv(&["docker", "version", "--format", "{{.Server.Version}}"])
}

pub fn has_apt() -> Argv {
    script("command -v apt-get", &[])
}

/// The engine install steps for Debian and Ubuntu; `sudo` for a login user that is not root
/// (`-n`: never wait for a password prompt that nobody will answer).
pub fn install_docker(sudo: bool) -> Vec<Argv> {
    let steps: [&[&str]; 3] = [
        &["apt-get", "update", "-qq"],
        &["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "docker.io"],
        &["systemctl", "enable", "--now", "docker"],
    ];
    steps.iter().map(|step| with_sudo(sudo, step)).collect()
}

pub fn add_to_docker_group(user: &str) -> Argv {
    with_sudo(true, &["usermod", "-aG", "docker", user])
}

fn with_sudo(sudo: bool, step: &[&str]) -> Argv {
    let prefix: &[&str] = if sudo { &["sudo", "-n"] } else { &[] };
    prefix.iter().chain(step).map(|w| w.to_string()).collect()
}

/// Where the engine startup script logs (it writes the file itself, on any platform).
pub const BOOTSTRAP_LOG: &str = "/var/log/fleetflow-bootstrap.log";

/// Prints `none`, `running`, `done` or `failed`: how far the engine startup script got.
pub fn bootstrap_state() -> Argv {
    script(
        "f=$1; [ -e \"$f\" ] || { echo none; exit 0; }; grep -q 'bootstrap failed' \"$f\" && { echo failed; exit 0; }; grep -q 'bootstrap done' \"$f\" && { echo done; exit 0; }; echo running",
        &[BOOTSTRAP_LOG],
    )
}

/// The end of the startup script's log, for an error.
pub fn bootstrap_log_tail() -> Argv {
    argv(&["tail", "-n", "15", BOOTSTRAP_LOG])
}

/// Whether the login user may use sudo without a password.
pub fn sudo_works() -> Argv {
    argv(&["sudo", "-n", "true"])
}

/// Takes the lock `name`, recording `holder`; exits non-zero when it is held already.
pub fn lock_take(name: &str, holder: &str) -> Argv {
    script(
        &format!(
            "mkdir -p \"$HOME/{LOCK_DIR}\" && mkdir \"$HOME/{LOCK_DIR}/$1\" 2>/dev/null && printf '%s\\n' \"$2\" > \"$HOME/{LOCK_DIR}/$1/holder\""
        ),
        &[name, holder],
    )
}

/// Prints the holder of lock `name`.
pub fn lock_read(name: &str) -> Argv {
    script(&format!("cat \"$HOME/{LOCK_DIR}/$1/holder\" 2>/dev/null || echo 'an unknown holder'"), &[name])
}

/// Removes lock `name` (release, or `fleet stage unlock`).
pub fn lock_release(name: &str) -> Argv {
    script(&format!("rm -rf \"$HOME/{LOCK_DIR}/$1\""), &[name])
}

/// Removes lock `name` only while it still records `holder`.
pub fn lock_break_if(name: &str, holder: &str) -> Argv {
    script(
        &format!(
            "d=\"$HOME/{LOCK_DIR}/$1\"; [ \"$(cat \"$d/holder\" 2>/dev/null)\" = \"$2\" ] && rm -rf \"$d\"; exit 0"
        ),
        &[name, holder.trim()],
    )
}

/// Auto-suspend's files on a server (see `stage::auto_suspend`).
pub const AUTO_SUSPEND_CONF: &str = "/etc/fleetflow/auto-suspend.conf";
pub const AUTO_SUSPEND_STATE: &str = "/run/fleetflow/auto-suspend.state";
pub const AUTO_SUSPEND_LOG: &str = "/var/log/fleetflow-auto-suspend.log";

/// Auto-suspend as the server sees it, in one command: its settings, its last check, the
/// server's clock and the last log line, separated by `---` lines.
pub fn auto_suspend_read() -> Argv {
    script(
        "cat \"$1\" 2>/dev/null; echo ---; cat \"$2\" 2>/dev/null; echo ---; date +%s; echo ---; tail -n 1 \"$3\" 2>/dev/null; true",
        &[AUTO_SUSPEND_CONF, AUTO_SUSPEND_STATE, AUTO_SUSPEND_LOG],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_travel_as_arguments_never_as_script() {
        let hostile = "x; rm -rf / #";
        let take = lock_take(hostile, "{\"pid\":1}");
        assert_eq!(take[..2], ["sh", "-c"]);
        assert!(!take[2].contains(hostile), "the script never contains the name");
        assert_eq!(take[3..], ["sh", hostile, "{\"pid\":1}"]);
        for cmd in [lock_read(hostile), lock_release(hostile), lock_break_if(hostile, "h")] {
            assert!(!cmd[2].contains(hostile));
            assert_eq!(cmd[4], hostile);
        }
    }

    #[test]
    fn install_uses_non_interactive_sudo_only_for_a_non_root_user() {
        let as_user = install_docker(true);
        assert!(as_user.iter().all(|s| s[..2] == ["sudo", "-n"]), "{as_user:?}");
        assert_eq!(
            as_user[1][2..],
            ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "docker.io"]
        );
        assert!(install_docker(false).iter().all(|s| s[0] != "sudo"));
        assert_eq!(add_to_docker_group("ubuntu"), ["sudo", "-n", "usermod", "-aG", "docker", "ubuntu"]);
    }
}
