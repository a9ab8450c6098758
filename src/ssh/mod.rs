//! SSH to a stage's servers with the system `ssh` (so ~/.ssh/config, agents and ProxyJump
//! work): wait until a fresh server answers, make sure a container engine runs there, and
//! forward its socket so the local engine code drives it unchanged.

pub mod commands;

use crate::engine::Engine;
use crate::error::{Error, Result, SshFailure};
use crate::model::{Server, SshSettings};
use openssh::{KnownHosts, Session, SessionBuilder};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A new cloud server takes minutes to answer SSH; a brought host should answer at once.
const SSH_PATIENCE_CLOUD: Duration = Duration::from_secs(10 * 60);
const SSH_PATIENCE_HOST: Duration = Duration::from_secs(20);
const TCP_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
const SSH_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// Right after boot the key may not be installed yet: a few refusals are expected.
const PERMISSION_DENIED_RETRIES: u32 = 5;
const REMOTE_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// A remote command that is not an install (the lock, the engine's first answer): seconds at most, so a
/// minute means the server or its engine is wedged.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// `apt-get update` / `install docker.io` on a slow mirror.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The startup script's whole run at first boot (apt update and the engine install).
const BOOTSTRAP_PATIENCE: Duration = Duration::from_secs(15 * 60);
/// A new server whose script has not even started after this long has none (created by an older fleet).
const BOOTSTRAP_START_PATIENCE: Duration = Duration::from_secs(3 * 60);
const BOOTSTRAP_POLL: Duration = Duration::from_secs(2);

fn env_ms(var: &str) -> Option<Duration> {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).map(Duration::from_millis)
}

/// How long a remote command (or the engine's first answer) may take.
fn command_deadline() -> Duration {
    env_ms("FLEET_SSH_COMMAND_TIMEOUT_MS").unwrap_or(COMMAND_TIMEOUT)
}

/// Where fleet keeps the host keys of a project's servers (cloud IPs are reused, so
/// they are kept apart from ~/.ssh/known_hosts and forgotten when a server is destroyed).
pub fn known_hosts_file(project: &str) -> PathBuf {
    crate::runtime_dir::state_dir().join(format!("{project}.known_hosts"))
}

/// What the engine check found on a server (`RemoteHost::docker_answers`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum EngineAnswer {
    /// The API answered through the forwarded socket.
    Answers,
    /// It did not; `docker version` over SSH said why.
    Not(Unanswered),
}

/// Why no engine answered the forwarded socket, as `docker version` over SSH told it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unanswered {
    /// No engine there (or no CLI to say so): an install may go ahead.
    Missing,
    /// An engine runs, but tells the login user "permission denied" (its line, trimmed and cut
    /// short: whatever else the login's shell printed on stderr is not repeated).
    Denied(String),
}

impl Unanswered {
    /// From `docker version`'s exit status and stderr; None when it succeeded (the engine runs
    /// and the login may use it, so only the forward is refused). Pure.
    fn of(success: bool, stderr: &str) -> Option<Self> {
        const SAID_MAX: usize = 300;
        let denied = stderr.lines().find(|l| l.to_lowercase().contains("permission denied"));
        match (success, denied) {
            (true, _) => None,
            (false, Some(line)) => Some(Self::Denied(line.trim().chars().take(SAID_MAX).collect())),
            (false, None) => Some(Self::Missing),
        }
    }
}

/// An engine that tells the login user "permission denied" is there: installing one over it
/// (apt's docker.io replaces a docker-ce) would stop every container on the host. Decided on
/// the engine check's own `docker version` answer (`why`), not on a second one. Pure.
fn refuse_install_over_an_engine(server: &Server, why: &Unanswered) -> Result<()> {
    let Unanswered::Denied(said) = why else { return Ok(()) };
    let user = &server.ssh.user;
    Err(Error::failed_help(
        format!(
            "server {}: an engine runs there, but {user} may not use its socket {REMOTE_DOCKER_SOCKET} ({said}); nothing was installed",
            server.name,
        ),
        format!("on the server run: sudo usermod -aG docker {user}; then run the command again"),
    ))
}

/// An open SSH connection to one server, and the directory of its forwarded socket.
pub struct RemoteHost {
    session: Option<Session>,
    socket_dir: SocketDir,
    pub endpoint: String,
    /// The engine behind the forwarded socket, once it answered: the engine check and the
    /// engine the run uses are one forward and one version negotiation, not a `docker version`
    /// process over a second SSH round trip.
    engine: tokio::sync::Mutex<Forwarded>,
    /// The stage lock this connection holds (its name) and the remote command holding it, which
    /// removes it when it reads a line (`commands::lock_hold`).
    held_lock: std::sync::Mutex<Option<(String, tokio::process::Child)>>,
}

/// How far the engine socket's forward got.
#[derive(Default)]
struct Forwarded {
    requested: bool,
    engine: Option<Engine>,
}

/// A private directory for the control master and the forwarded socket, removed on drop
/// (also when connecting fails).
struct SocketDir(PathBuf);

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits until the server answers SSH (TCP, handshake, login) and returns the session.
/// `booting`: this run created or powered it on, so each try is a cheap TCP probe first; a
/// server found running is tried with `ssh` at once (a probe would cost a connection and the
/// server's sshd a fork on every command), and probed only after that try failed.
pub async fn connect(
    server: &Server,
    address: &str,
    known_hosts: &Path,
    fresh_cloud_server: bool,
    booting: bool,
) -> Result<RemoteHost> {
    let ssh = &server.ssh;
    let endpoint = format!("ssh://{}@{address}:{}", ssh.user, ssh.port);
    let patience =
        env_ms("FLEET_SSH_WAIT_MS").unwrap_or(if fresh_cloud_server { SSH_PATIENCE_CLOUD } else { SSH_PATIENCE_HOST });
    let deadline = Instant::now() + patience;
    if let Some(dir) = known_hosts.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let socket_dir = socket_dir()?;
    let mut denied = 0;
    let mut probe = booting;
    loop {
        // Whether the port answered a probe this try: only then is an SSH failure past the
        // deadline SSH's own. An unprobed first try that fails is followed by a probe, so a
        // server that answers nothing is `Unreachable` (status reports it and goes on).
        let probed = probe;
        // Every later try probes first: this one failed, so the server may be booting after all.
        probe = true;
        if probed && !port_answers(address, ssh.port).await {
            if Instant::now() > deadline {
                return Err(Error::Unreachable {
                    message: format!(
                        "server {}: nothing answers SSH at {address}:{} after {}s",
                        server.name,
                        ssh.port,
                        patience.as_secs()
                    ),
                    help: Some("check that the server is running and that a firewall lets the SSH port through".into()),
                });
            }
            tokio::time::sleep(RETRY_INTERVAL).await;
            continue;
        }
        match builder(ssh, known_hosts, &socket_dir.0).connect(address).await {
            Ok(session) => {
                let (engine, held_lock) = Default::default();
                return Ok(RemoteHost { session: Some(session), socket_dir, endpoint, engine, held_lock });
            }
            Err(e) => {
                let past = probed && Instant::now() > deadline;
                let refused = Refused { server, address, endpoint: &endpoint, known_hosts };
                if let Some(e) = refused.final_error(&error_text(&e), &mut denied, past) {
                    return Err(e);
                }
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
        }
    }
}

/// Whether the SSH port accepts a TCP connection within a probe's timeout.
async fn port_answers(address: &str, port: u16) -> bool {
    let reached = tokio::time::timeout(TCP_ATTEMPT_TIMEOUT, tokio::net::TcpStream::connect((address, port))).await;
    matches!(reached, Ok(Ok(_)))
}

/// A failed SSH try, and where it went.
struct Refused<'a> {
    server: &'a Server,
    address: &'a str,
    endpoint: &'a str,
    known_hosts: &'a Path,
}

impl Refused<'_> {
    /// The error to stop on after ssh said `text`, or None to try again: a changed host key at
    /// once, a refused key after a few refusals (`denied` counts them), anything else once `past`
    /// the deadline with the port answering.
    fn final_error(&self, text: &str, denied: &mut u32, past: bool) -> Option<Error> {
        let (name, address, endpoint) = (&self.server.name, self.address, self.endpoint);
        match SshFailure::of(text) {
            kind @ SshFailure::HostKeyChanged => Some(Error::ssh(
                kind,
                format!("server {name}: the SSH host key of {address} is not the one fleet recorded ({text})"),
                format!(
                    "if the server was rebuilt, remove its line from {}; otherwise someone may be intercepting the connection",
                    self.known_hosts.display()
                ),
            )),
            kind @ SshFailure::AuthRefused => {
                *denied += 1;
                (*denied > PERMISSION_DENIED_RETRIES).then(|| {
                    Error::ssh(
                        kind,
                        format!("server {name}: {endpoint} refused our SSH key ({text})"),
                        "check `ssh user=… identity=…` in the server block, and that the key's public half is installed there",
                    )
                })
            }
            SshFailure::Other => {
                past.then(|| Error::failed(format!("server {name}: SSH to {endpoint} failed: {text}")))
            }
        }
    }
}

fn builder(ssh: &SshSettings, known_hosts: &Path, control_dir: &Path) -> SessionBuilder {
    let mut b = SessionBuilder::default();
    b.control_directory(control_dir)
        .user(ssh.user.clone())
        .port(ssh.port)
        .known_hosts_check(KnownHosts::Add)
        .user_known_hosts_file(known_hosts)
        .connect_timeout(SSH_CONNECT_TIMEOUT)
        .server_alive_interval(Duration::from_secs(15));
    if let Some(identity) = &ssh.identity {
        b.keyfile(identity);
    }
    b
}

fn error_text(e: &openssh::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The control master's directory: fresh and private in this user's runtime directory.
fn socket_dir() -> Result<SocketDir> {
    crate::runtime_dir::fresh("ssh").map(SocketDir)
}

impl RemoteHost {
    /// A remote command that did not finish within its deadline, named in the error.
    fn past_deadline(&self, argv: &[String], deadline: Duration) -> Error {
        Error::failed_help(
            format!(
                "{}: `{}` did not finish within {}",
                self.endpoint,
                argv.join(" "),
                humantime::format_duration(deadline)
            ),
            "the server or its engine may be wedged: look at it over SSH, then run the command again",
        )
    }

    /// An `ssh` that talks to this connection's control master (never a new login), for what
    /// the crate's process-mux session does not offer as fleet needs it.
    fn through_master(&self) -> tokio::process::Command {
        let mut ssh = tokio::process::Command::new("ssh");
        ssh.arg("-S").arg(self.session().control_socket()).args(["-o", "BatchMode=yes"]);
        ssh
    }

    fn session(&self) -> &Session {
        self.session.as_ref().expect("session lives as long as the host")
    }

    /// Runs a command given as an argument vector (each word quoted, never spliced into a shell
    /// string), within the usual deadline.
    async fn run(&self, argv: &[String]) -> Result<std::process::Output> {
        self.run_within(argv, command_deadline()).await
    }

    /// The one executor of `commands`: an argument vector, with a deadline named in its error.
    async fn run_within(&self, argv: &[String], deadline: Duration) -> Result<std::process::Output> {
        use std::os::unix::process::ExitStatusExt;
        let (program, args) = argv.split_first().expect("a command");
        let mut command = self.session().command(program);
        command.args(args);
        match tokio::time::timeout(deadline, command.output()).await {
            Ok(Ok(out)) => Ok(out),
            // A program missing on the server is an answer (exit 127), not a broken connection.
            Ok(Err(openssh::Error::Remote(e))) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(std::process::Output {
                    status: std::process::ExitStatus::from_raw(127 << 8),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                })
            }
            Ok(Err(e)) => Err(Error::failed(format!("{}: running {program}: {}", self.endpoint, error_text(&e)))),
            Err(_) => Err(self.past_deadline(argv, deadline)),
        }
    }

    /// Whether an engine answers the login user on the server's socket: the API's version
    /// negotiation through the forwarded socket (a missing engine, or a socket the user may not
    /// open, refuses the forwarded connection). The engine that answered is kept for `engine`.
    /// When it does not answer, the one `docker version` run over SSH says why (`Unanswered`),
    /// and an install goes by that answer instead of asking again.
    async fn docker_answers(&self) -> Result<EngineAnswer> {
        if self.api_answers().await? {
            return Ok(EngineAnswer::Answers);
        }
        // The socket did not answer: the CLI tells a missing engine (install it) from one this
        // login cannot reach through a forward (never a reason to install anything).
        let out = self.run(&commands::docker_version()).await?;
        match Unanswered::of(out.status.success(), &String::from_utf8_lossy(&out.stderr)) {
            Some(why) => Ok(EngineAnswer::Not(why)),
            None => Err(Error::failed_help(
                format!(
                    "{}: the engine runs, but its socket {REMOTE_DOCKER_SOCKET} does not answer through SSH",
                    self.endpoint
                ),
                "fleet drives the engine through a forwarded socket: allow it in the server's sshd (AllowStreamLocalForwarding yes)",
            )),
        }
    }

    /// The engine's API answered through the forwarded socket (kept for `engine`); a read, so it
    /// may run while the stage lock is taken.
    pub async fn api_answers(&self) -> Result<bool> {
        let mut forwarded = self.engine.lock().await;
        if forwarded.engine.is_some() {
            return Ok(true);
        }
        let local = self.socket_dir.0.join("docker.sock");
        if !forwarded.requested {
            self.forward_socket(&local).await?;
            forwarded.requested = true;
        }
        let endpoint = format!("{}{REMOTE_DOCKER_SOCKET}", self.endpoint);
        let deadline = command_deadline();
        match tokio::time::timeout(deadline, Engine::connect_unix(&local, endpoint)).await {
            Ok(Ok(engine)) => {
                forwarded.engine = Some(engine);
                Ok(true)
            }
            Ok(Err(_)) => Ok(false),
            Err(_) => Err(Error::failed_help(
                format!("{}: the engine did not answer within {}", self.endpoint, humantime::format_duration(deadline)),
                "the server or its engine may be wedged: look at it over SSH, then run the command again",
            )),
        }
    }

    /// Read-only commands never install: a missing engine is reported, nothing is changed.
    pub async fn check_docker(&self, server: &Server) -> Result<()> {
        if self.docker_answers().await? == EngineAnswer::Answers {
            return Ok(());
        }
        Err(Error::failed_help(
            format!(
                "server {}: no container engine answers there (its socket {REMOTE_DOCKER_SOCKET} does not)",
                server.name
            ),
            "`fleet up` installs one; this command changes nothing",
        ))
    }

    /// Docker must answer on the server. A cloud server fleet created installs it itself at
    /// first boot (the startup script, as root): wait for that, with `note` saying so. Otherwise
    /// (a brought host, a server from before the script) install over SSH with `sudo -n`, or
    /// fail naming the commands to run; never over an engine the login may not use, which the
    /// check's one `docker version` already told. Returns whether an engine was installed (the
    /// login user then needs a new session for its docker group).
    pub async fn ensure_docker(
        &self,
        server: &Server,
        new_server: bool,
        note: &(dyn Fn(String) + Sync),
    ) -> Result<bool> {
        let why = match self.docker_answers().await? {
            EngineAnswer::Answers => return Ok(false),
            EngineAnswer::Not(why) => why,
        };
        // Only a script that is there (or may yet start, on a server just created) is waited for;
        // an answer that is none of its states (no shell, no log) means there is none.
        let started = matches!(self.bootstrap_state().await?.as_str(), "running" | "done" | "failed");
        if (new_server || started) && self.wait_for_bootstrap(server, new_server, note).await? {
            return Ok(true);
        }
        refuse_install_over_an_engine(server, &why)?;
        self.install_docker(server).await
    }

    async fn bootstrap_state(&self) -> Result<String> {
        let out = self.run(&commands::bootstrap_state()).await?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// True once the startup script is done; an error when it failed or took too long; false
    /// when it never started (the server has no such script), so the SSH install is tried.
    async fn wait_for_bootstrap(
        &self,
        server: &Server,
        new_server: bool,
        note: &(dyn Fn(String) + Sync),
    ) -> Result<bool> {
        let started = Instant::now();
        let patience = env_ms("FLEET_BOOTSTRAP_WAIT_MS").unwrap_or(BOOTSTRAP_PATIENCE);
        let mut said = false;
        loop {
            match self.bootstrap_state().await?.as_str() {
                "done" => return Ok(true),
                "failed" => return Err(self.bootstrap_error(server, "failed").await),
                "running" => {}
                // Not started (yet): a server just created gets a moment for its first boot.
                _ if !new_server || started.elapsed() > BOOTSTRAP_START_PATIENCE => return Ok(false),
                _ => {}
            }
            if !said {
                note(format!(
                    "server {}: waiting for the container engine its startup script installs (first boot; a few minutes)",
                    server.name
                ));
                said = true;
            }
            if started.elapsed() > patience {
                return Err(self
                    .bootstrap_error(server, &format!("did not finish within {}", humantime::format_duration(patience)))
                    .await);
            }
            tokio::time::sleep(BOOTSTRAP_POLL).await;
        }
    }

    async fn bootstrap_error(&self, server: &Server, what: &str) -> Error {
        let tail = match self.run(&commands::bootstrap_log_tail()).await {
            Ok(out) => {
                String::from_utf8_lossy(&out.stdout).lines().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
            }
            Err(e) => format!("  (its log could not be read: {e})"),
        };
        Error::failed_help(
            format!(
                "server {}: the engine startup script {what}; the end of {}:\n{tail}",
                server.name,
                commands::BOOTSTRAP_LOG
            ),
            "fix the cause on the server (or install docker.io yourself), then run up again",
        )
    }

    /// The SSH install: as root, or with `sudo -n`; never waits for a password prompt.
    async fn install_docker(&self, server: &Server) -> Result<bool> {
        let has_apt = self.run(&commands::has_apt()).await?.status.success();
        if !has_apt {
            return Err(Error::failed_help(
                format!(
                    "server {}: Docker does not answer there, and without apt-get fleet cannot install it",
                    server.name
                ),
                "install Docker on the server (and let the SSH user use /var/run/docker.sock), then run up again",
            ));
        }
        let user = &server.ssh.user;
        if user != "root" && !self.run(&commands::sudo_works()).await?.status.success() {
            return Err(Error::failed_help(
                format!(
                    "server {}: no container engine answers there, and {user} cannot use sudo without a password, so fleet cannot install one",
                    server.name
                ),
                format!(
                    "on the server run: sudo apt-get install -y docker.io && sudo usermod -aG docker {user}; then fleet up again"
                ),
            ));
        }
        for argv in commands::install_docker(user != "root") {
            let out = self.run_within(&argv, INSTALL_TIMEOUT).await?;
            if !out.status.success() {
                return Err(Error::failed(format!(
                    "server {}: installing Docker failed at `{}`: {}",
                    server.name,
                    argv.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        if server.ssh.user != "root" {
            let out = self.run(&commands::add_to_docker_group(&server.ssh.user)).await?;
            if !out.status.success() {
                return Err(Error::failed(format!(
                    "server {}: adding {} to the docker group failed",
                    server.name, server.ssh.user
                )));
            }
        }
        Ok(true)
    }

    /// The server's engine, through a unix socket forwarded over this SSH connection (the one
    /// the engine check already reached, when it did).
    pub async fn engine(&self) -> Result<Engine> {
        if let Some(engine) = self.engine.lock().await.engine.clone() {
            return Ok(engine);
        }
        let local = self.socket_dir.0.join("docker.sock");
        let mut forwarded = self.engine.lock().await;
        if !forwarded.requested {
            self.forward_socket(&local).await?;
            forwarded.requested = true;
        }
        let engine = Engine::connect_unix(&local, format!("{}{REMOTE_DOCKER_SOCKET}", self.endpoint)).await?;
        forwarded.engine = Some(engine.clone());
        Ok(engine)
    }

    /// Asks the control master to forward `local` to the server's engine socket: `ssh -O
    /// forward` is a message to the master, answered once it listens. (The crate's
    /// `request_port_forward` runs `ssh -fNT -L` through the master, which opens a login session
    /// on the server for it: PAM, motd, about a hundred milliseconds of the server's time.)
    async fn forward_socket(&self, local: &Path) -> Result<()> {
        let mut forward = std::ffi::OsString::from(local);
        forward.push(":");
        forward.push(REMOTE_DOCKER_SOCKET);
        let asked = self
            .through_master()
            .args(["-O", "forward", "-L"])
            .arg(&forward)
            .arg("none")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let deadline = command_deadline();
        let failed = |why: String| Error::failed(format!("{}: forwarding the Docker socket: {why}", self.endpoint));
        match tokio::time::timeout(deadline, asked).await {
            Err(_) => Err(failed(format!(
                "the SSH connection did not answer within {}",
                humantime::format_duration(deadline)
            ))),
            Ok(Err(e)) => Err(failed(format!("running ssh: {e}"))),
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => {
                Err(failed(String::from_utf8_lossy(&out.stderr).split_whitespace().collect::<Vec<_>>().join(" ")))
            }
        }
    }

    pub async fn close(mut self) {
        // A lock still held is left as a dead holder's (its command ends with the connection).
        drop(self.held_lock.get_mut().map(Option::take));
        if let Some(s) = self.session.take() {
            let _ = s.close().await;
        }
    }
}

/// Asks the command holding a lock to remove it: true once it did.
async fn let_go(child: &mut tokio::process::Child) -> bool {
    use tokio::io::AsyncWriteExt;
    let Some(mut input) = child.stdin.take() else { return false };
    if input.write_all(b"\n").await.is_err() {
        return false;
    }
    drop(input);
    matches!(tokio::time::timeout(command_deadline(), child.wait()).await, Ok(Ok(s)) if s.success())
}

/// Forgets a destroyed server's host key: its IP will be someone else's next.
pub fn forget_host(known_hosts: &Path, address: &str, port: u16) {
    if !known_hosts.exists() {
        return;
    }
    let host = if port == 22 { address.to_string() } else { format!("[{address}]:{port}") };
    let _ = std::process::Command::new("ssh-keygen")
        .args(["-R", &host, "-f"])
        .arg(known_hosts)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_file(known_hosts.with_extension("known_hosts.old"));
}

/// What `commands::auto_suspend_read` found, split into its parts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AutoSuspendView {
    /// The installed settings file; None when auto-suspend is not installed.
    pub conf: Option<String>,
    /// `key=value` lines of the last check; empty before the first check after a boot.
    pub state: std::collections::BTreeMap<String, String>,
    /// The server's clock (Unix seconds), so times left do not depend on this machine's clock.
    pub now: i64,
    pub last_log: String,
}

impl AutoSuspendView {
    /// Parses the four `---`-separated parts; anything else is an error naming the server.
    pub fn parse(text: &str, endpoint: &str) -> Result<Self> {
        let parts: Vec<&str> = text.split("---\n").collect();
        let [conf, state, now, log] = parts.as_slice() else {
            return Err(Error::failed(format!("{endpoint}: unexpected answer reading auto-suspend: {text:?}")));
        };
        let now = now.trim().parse().map_err(|_| {
            Error::failed(format!("{endpoint}: the server's clock reads {:?}, not Unix seconds", now.trim()))
        })?;
        let state =
            state.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Ok(Self {
            conf: (!conf.trim().is_empty()).then(|| conf.to_string()),
            state,
            now,
            last_log: log.trim().to_string(),
        })
    }
}

impl RemoteHost {
    /// Reads auto-suspend's settings, last check and log from the server (one command).
    pub async fn auto_suspend_view(&self) -> Result<AutoSuspendView> {
        let out = self.run(&commands::auto_suspend_read()).await?;
        AutoSuspendView::parse(&String::from_utf8_lossy(&out.stdout), &self.endpoint)
    }

    /// Takes the stage lock on this server. `Ok(None)`: taken; `Ok(Some(holder))`: someone has it.
    pub async fn try_lock(&self, name: &str, holder: &str) -> Result<Option<String>> {
        if self.hold_lock(name, holder).await? {
            return Ok(None);
        }
        let out = self.run(&commands::lock_read(name)).await?;
        Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }

    /// Takes lock `name` by a remote command that stays on to give it back (`unlock`): the
    /// release is a line written to it, not a second command. False: the lock is taken.
    async fn hold_lock(&self, name: &str, holder: &str) -> Result<bool> {
        use tokio::io::AsyncBufReadExt;
        // What `Session::command` runs (process-mux): the master's socket, never a new login.
        let argv = commands::lock_hold(name, holder);
        let mut child = self
            .through_master()
            .args(["-T", "-p", "9", "none", "--"])
            .arg(commands::shell_line(&argv))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::io("running ssh", e))?;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        // Its `held` line, after whatever the login shell's startup files may print; none: taken.
        let held = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "held" {
                    return true;
                }
            }
            false
        };
        let deadline = command_deadline();
        match tokio::time::timeout(deadline, held).await {
            Ok(true) => {
                *self.held_lock.lock().expect("lock state") = Some((name.to_string(), child));
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(_) => Err(self.past_deadline(&argv, deadline)),
        }
    }

    /// Releases (or breaks) the stage lock on this server: the command holding it, when this
    /// connection took it, is told to let go; otherwise (or if it cannot) it is removed.
    pub async fn unlock(&self, name: &str) -> Result<()> {
        let held = self.held_lock.lock().expect("lock state").take_if(|(n, _)| n == name);
        if let Some((_, mut child)) = held
            && let_go(&mut child).await
        {
            return Ok(());
        }
        self.checked(&commands::lock_release(name), "removing the lock").await
    }

    /// Breaks the lock only if it still records `holder`: a run that took it meanwhile keeps it.
    pub async fn break_lock_if(&self, name: &str, holder: &str) -> Result<()> {
        self.checked(&commands::lock_break_if(name, holder), "breaking a dead run's lock").await
    }

    async fn checked(&self, argv: &[String], what: &str) -> Result<()> {
        let out = self.run(argv).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::failed(format!(
                "{}: {what} failed: {}",
                self.endpoint,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Unanswered, refuse_install_over_an_engine};
    use crate::model::{Server, ServerProvider, SshSettings};

    #[test]
    fn the_engine_checks_docker_version_decides_whether_an_install_may_go_ahead() {
        let denied = "permission denied while trying to connect to the Docker daemon socket\n";
        assert_eq!(Unanswered::of(true, ""), None, "the engine runs: only the forward is refused");
        assert_eq!(Unanswered::of(false, "docker: command not found"), Some(Unanswered::Missing));
        let why = Unanswered::of(false, denied).unwrap();
        assert_eq!(why, Unanswered::Denied(denied.trim().into()));
        let chatty = format!("{}\n{denied}more noise\n", "motd line\n".repeat(500));
        assert_eq!(Unanswered::of(false, &chatty), Some(why.clone()), "only the denial is said");
        let server = Server {
            name: "web-1".into(),
            provider: ServerProvider::Host { address: "10.0.0.1".into() },
            ssh: SshSettings { user: "deploy".into(), port: 22, identity: None },
            services: Vec::new(),
            dns: None,
            manager: false,
            deploy_path: "/srv".into(),
        };
        let err = refuse_install_over_an_engine(&server, &why).unwrap_err().to_string();
        assert!(err.contains("an engine runs there, but deploy may not use its socket"), "{err}");
        assert!(refuse_install_over_an_engine(&server, &Unanswered::Missing).is_ok());
    }
}
