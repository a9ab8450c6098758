//! Every command fleet runs on a server, as a pure argument vector (Kamal's `commands/`):
//! user-given values travel as positional arguments of `sh -c`, never spliced into a script,
//! so a stage or project name can never become shell syntax. Run by `RemoteHost::run`.

/// An argument vector.
pub type Argv = Vec<String>;

fn argv(words: &[&str]) -> Argv {
    words.iter().map(|w| w.to_string()).collect()
}

/// `argv` as the one line ssh hands the login shell: each word single-quoted, so none is syntax.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter().map(|w| format!("'{}'", w.replace('\'', r"'\''"))).collect::<Vec<_>>().join(" ")
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

/// Takes lock `name` for `holder` and holds on: prints `held`, then waits for a line on its
/// input and removes the lock (the release); an end of input (fleet killed, the connection
/// lost) leaves the lock, as a dead holder's. Exits 1 at once, printing nothing, when the lock
/// is someone else's.
pub fn lock_hold(name: &str, holder: &str) -> Argv {
    script(
        &format!(
            "d=\"$HOME/{LOCK_DIR}\"; mkdir -p \"$d\" && mkdir \"$d/$1\" 2>/dev/null && printf '%s\\n' \"$2\" > \"$d/$1/holder\" || exit 1; echo held; read -r _ && rm -rf \"$d/$1\""
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
        let take = lock_hold(hostile, "{\"pid\":1}");
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

    #[test]
    fn a_shell_line_gives_the_shell_back_each_word_unchanged() {
        let words = argv(&["printf", "%s|", "it's", "a b", "$HOME", "`id`", "\\n", ""]);
        let out = std::process::Command::new("sh").arg("-c").arg(shell_line(&words)).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "it's|a b|$HOME|`id`|\\n||");
    }

    /// The held lock's script, run by a local `sh` as ssh runs it on the server.
    fn hold(home: &std::path::Path, name: &str) -> std::process::Child {
        use std::process::{Command, Stdio};
        let argv = lock_hold(name, "{\"pid\":1}");
        Command::new(&argv[0])
            .args(&argv[1..])
            .env("HOME", home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn first_line(child: &mut std::process::Child) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        line
    }

    #[test]
    fn a_held_lock_goes_on_a_line_stays_on_an_end_of_input_and_refuses_a_second_holder() {
        use std::io::Write;
        let home = tempfile::tempdir().unwrap();
        let lock = home.path().join(LOCK_DIR).join("p@s");
        let mut first = hold(home.path(), "p@s");
        assert_eq!(first_line(&mut first), "held\n");
        assert_eq!(std::fs::read_to_string(lock.join("holder")).unwrap(), "{\"pid\":1}\n");
        let mut second = hold(home.path(), "p@s");
        assert_eq!(first_line(&mut second), "", "a taken lock prints nothing");
        assert_eq!(second.wait().unwrap().code(), Some(1));
        first.stdin.take().unwrap().write_all(b"\n").unwrap();
        assert!(first.wait().unwrap().success());
        assert!(!lock.exists(), "a line releases the lock");
        // Its holder gone without a word (stdin closed): the lock stays, for a dead holder's breaking.
        let mut dead = hold(home.path(), "p@s");
        assert_eq!(first_line(&mut dead), "held\n");
        drop(dead.stdin.take());
        assert!(!dead.wait().unwrap().success());
        assert!(lock.join("holder").exists());
    }
}
