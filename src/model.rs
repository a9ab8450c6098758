//! The declared world: plain data resolved from `fleet.kdl`, no I/O.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One stage of one project, every variable resolved: what `up` converges to.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StageSpec {
    pub project: String,
    pub name: String,
    /// Services in the order the stage lists them.
    pub services: Vec<Service>,
    /// Servers the stage runs on; empty for a local stage.
    pub servers: Vec<Server>,
    /// `protect` refuses `down --destroy`.
    pub protect: bool,
    /// `auto_suspend idle="2h" after_boot="10m"`: servers power themselves off when idle.
    pub auto_suspend: Option<AutoSuspend>,
    /// `orchestrator "swarm"`: the servers form a Docker Swarm and services are swarm services.
    #[serde(skip_serializing_if = "Orchestrator::is_containers")]
    pub orchestrator: Orchestrator,
    /// `proxy { … }`: the proxy (Caddy) in front of routed services; None means the defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Box<ProxySettings>>,
    /// Values that came from the environment or a `.env`/`env_file` file: errors mask them.
    #[serde(skip)]
    pub sensitive: std::collections::BTreeSet<String>,
    /// What `fleet config` masks wherever it landed: `sensitive` but the values of variables
    /// that name a host, a port, a user or a database (`KC_HOSTNAME`, `POSTGRES_USER`), plus
    /// every secret-named variable's value (`DB_PASSWORD`).
    #[serde(skip)]
    pub secrets: std::collections::BTreeSet<String>,
}

/// Who runs a stage's services on its servers.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Orchestrator {
    /// fleet itself: each service a container on the one server that lists it.
    #[default]
    Containers,
    /// Docker Swarm: servers are nodes, services are swarm services with replicas.
    Swarm,
}

impl Orchestrator {
    pub fn is_containers(&self) -> bool {
        *self == Orchestrator::Containers
    }
}

/// How a swarm service is reached: one virtual IP, or DNS round robin over its tasks.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    #[default]
    Vip,
    Dnsrr,
}

impl EndpointMode {
    pub fn is_vip(&self) -> bool {
        *self == EndpointMode::Vip
    }
}

/// `update { order "start-first"; parallelism 1; delay "5s"; failure_action "rollback"; monitor "10s" }`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UpdatePolicy {
    /// `start-first` or `stop-first`.
    pub order: String,
    pub parallelism: u32,
    pub delay_ms: u64,
    /// `rollback`, `pause` or `continue`.
    pub failure_action: String,
    pub monitor_ms: u64,
}

impl Default for UpdatePolicy {
    /// Docker's own defaults.
    fn default() -> Self {
        Self {
            order: "stop-first".into(),
            parallelism: 1,
            delay_ms: 0,
            failure_action: "pause".into(),
            monitor_ms: 5000,
        }
    }
}

/// When an idle server of the stage powers itself off (a systemd timer on each server).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct AutoSuspend {
    pub idle_secs: u64,
    /// No suspend this soon after a boot, so a server just started by `up` is not turned off.
    pub after_boot_secs: u64,
}

impl AutoSuspend {
    /// How often the server checks: a sixth of the window, between 15 s and 10 min.
    pub fn check_every_secs(&self) -> u64 {
        (self.idle_secs / 6).clamp(15, 600)
    }
}

impl StageSpec {
    pub fn is_local(&self) -> bool {
        self.servers.is_empty()
    }

    pub fn is_swarm(&self) -> bool {
        self.orchestrator == Orchestrator::Swarm
    }

    /// A swarm's managers: the servers marked `role "manager"`, else the first.
    pub fn managers(&self) -> Vec<&Server> {
        let marked: Vec<&Server> = self.servers.iter().filter(|s| s.manager).collect();
        if marked.is_empty() { self.servers.first().into_iter().collect() } else { marked }
    }

    pub fn is_manager(&self, server: &Server) -> bool {
        self.managers().iter().any(|m| m.name == server.name)
    }

    /// Swarm stages: a service some server lists runs only there (node labels); others anywhere.
    pub fn is_pinned(&self, service: &str) -> bool {
        self.servers.iter().any(|s| s.services.iter().any(|n| n == service))
    }

    /// Swarm stages: the services whose tasks may land on this server (its images go there).
    pub fn placeable_on(&self, server: &Server) -> StageSpec {
        StageSpec {
            services: self
                .services
                .iter()
                .filter(|s| !self.is_pinned(&s.name) || server.services.contains(&s.name))
                .cloned()
                .collect(),
            servers: vec![server.clone()],
            ..self.clone()
        }
    }

    /// The services placed on one server: every service when the stage has a single server.
    pub fn services_on(&self, server: &Server) -> Vec<&Service> {
        if self.servers.len() == 1 {
            return self.services.iter().collect();
        }
        self.services.iter().filter(|s| server.services.contains(&s.name)).collect()
    }

    /// The server a service is placed on.
    pub fn server_of(&self, service: &str) -> Option<&Server> {
        if self.servers.len() == 1 {
            return self.servers.first();
        }
        self.servers.iter().find(|s| s.services.iter().any(|n| n == service))
    }

    /// The stage narrowed to one server's services, for the container engine on that server.
    pub fn for_server(&self, server: &Server) -> StageSpec {
        StageSpec {
            services: self.services_on(server).into_iter().cloned().collect(),
            servers: vec![server.clone()],
            ..self.clone()
        }
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The Docker network every service of the stage joins.
    pub fn network_name(&self) -> String {
        format!("{}-{}", self.project, self.name)
    }

    pub fn container_name(&self, service: &str) -> String {
        format!("{}-{}-{}", self.project, self.name, service)
    }

    /// Named volumes are owned by the stage, so two stages never share data by accident.
    pub fn volume_name(&self, volume: &str) -> String {
        format!("{}-{}-{}", self.project, self.name, volume)
    }
}

/// One container definition.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Service {
    pub name: String,
    /// Full reference with a tag, e.g. `postgres:16`.
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub ports: Vec<Port>,
    pub environment: BTreeMap<String, String>,
    pub volumes: Vec<Volume>,
    pub depends_on: Vec<String>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Option<RestartPolicy>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// Seconds Docker waits after the stop signal before killing.
    pub stop_timeout: Option<u32>,
    /// Runs to completion (exit 0) instead of staying up; dependents wait for it to finish.
    pub oneshot: bool,
    /// Services of the stage on other servers, by name, and the address of their server: the
    /// container's host entries, so `db` resolves on `web-1` although it runs on `db-1`. Known
    /// only once the servers' addresses are, so never from the file.
    #[serde(skip)]
    pub peer_hosts: BTreeMap<String, String>,
    /// Swarm stages: how many tasks run it.
    #[serde(skip_serializing_if = "is_one")]
    pub replicas: u32,
    #[serde(skip_serializing_if = "EndpointMode::is_vip")]
    pub endpoint_mode: EndpointMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdatePolicy>,
    /// `route "shop.example.com" port=8080`: served through the stage's proxy. Not in the config
    /// hash: a route change is a proxy change, never a container replacement.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// `build "./api"` or `build { … }`: the image is built from source on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSpec>,
}

/// `route "shop.example.com" port=8080 path="/api" health="/up" drain="30s"`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    /// The container port the proxy sends requests to.
    pub port: u16,
    /// Only requests under this path (`/api` also matches `/api/…`); None: every path.
    pub path: Option<String>,
    /// A new container takes traffic only once this path answers 2xx or 3xx.
    pub health: String,
    /// How long the old container keeps its in-flight requests after the switch.
    pub drain_ms: u64,
}

impl Route {
    pub const DEFAULT_HEALTH: &'static str = "/up";
    pub const DEFAULT_DRAIN_MS: u64 = 30_000;
}

/// `proxy { image "caddy:2"; acme email="…"; tls "internal" }`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProxySettings {
    /// Any image laid out like the official caddy image (it needs `wget`, as that one has).
    pub image: String,
    pub tls: ProxyTls,
    /// Host ports the proxy publishes: 80 and 443 unless a machine has them taken
    /// (`http_port 8080`, `https_port 8443`).
    pub http_port: u16,
    pub https_port: u16,
}

impl ProxySettings {
    pub const DEFAULT_IMAGE: &'static str = "caddy:2";

    /// No `proxy` block: Let's Encrypt on servers, Caddy's own CA on this machine.
    pub fn defaults(local: bool) -> Self {
        Self {
            image: Self::DEFAULT_IMAGE.into(),
            tls: if local { ProxyTls::Internal } else { ProxyTls::Acme(Acme::default()) },
            http_port: 80,
            https_port: 443,
        }
    }
}

/// Where the proxy's certificates come from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ProxyTls {
    /// An ACME CA (Let's Encrypt unless `ca` says otherwise).
    Acme(Acme),
    /// `tls "internal"`: Caddy's own CA (local stages).
    Internal,
    /// `tls #false`: plain HTTP, no redirect.
    Off,
}

/// `acme email="ops@example.com" ca="https://ca.internal:14000/dir" ca_root="./ca.pem"`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Acme {
    pub email: Option<String>,
    /// The ACME directory URL; None: Let's Encrypt.
    pub ca: Option<String>,
    /// The PEM that signs the CA's own HTTPS endpoint (absolute path on this machine).
    pub ca_root: Option<PathBuf>,
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl Default for Service {
    fn default() -> Self {
        Self {
            name: String::new(),
            image: String::new(),
            command: None,
            entrypoint: None,
            ports: Vec::new(),
            environment: BTreeMap::new(),
            volumes: Vec::new(),
            depends_on: Vec::new(),
            healthcheck: None,
            restart: None,
            labels: BTreeMap::new(),
            stop_signal: None,
            stop_timeout: None,
            oneshot: false,
            peer_hosts: BTreeMap::new(),
            replicas: 1,
            endpoint_mode: EndpointMode::Vip,
            update: None,
            routes: Vec::new(),
            build: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Port {
    /// None publishes on an ephemeral host port.
    pub host: Option<u16>,
    pub container: u16,
    pub protocol: Protocol,
    pub host_ip: Option<String>,
    /// Swarm stages: `mode="host"` publishes on the node that runs the task (`ingress`: the
    /// routing mesh, every node). Skipped when default, so existing config hashes stay.
    #[serde(skip_serializing_if = "PortMode::is_ingress")]
    pub mode: PortMode,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PortMode {
    #[default]
    Ingress,
    Host,
}

impl PortMode {
    pub fn is_ingress(&self) -> bool {
        *self == PortMode::Ingress
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum VolumeSource {
    /// An absolute host path (relative paths are resolved against the config's directory).
    Bind { path: PathBuf },
    /// A named volume, by its short name in the file; the engine name adds project and stage.
    Named { name: String },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Volume {
    pub source: VolumeSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Healthcheck {
    /// Docker form: `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

impl Healthcheck {
    pub const DEFAULT_INTERVAL_MS: u64 = 30_000;
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    pub const DEFAULT_RETRIES: u32 = 3;

    /// How long a healthy container may take, by Docker's own rules, plus slack.
    pub fn patience_ms(&self) -> u64 {
        const SLACK_MS: u64 = 10_000;
        self.start_period_ms + u64::from(self.retries + 1) * (self.interval_ms + self.timeout_ms) + SLACK_MS
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

impl RestartPolicy {
    pub const NAMES: [&'static str; 4] = ["no", "always", "unless-stopped", "on-failure"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "no" => Self::No,
            "always" => Self::Always,
            "unless-stopped" => Self::UnlessStopped,
            "on-failure" => Self::OnFailure,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// A machine a remote stage owns or borrows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Server {
    pub name: String,
    pub provider: ServerProvider,
    pub ssh: SshSettings,
    /// Services placed here; empty means all (a stage with one server).
    pub services: Vec<String>,
    /// Names that point at this server.
    pub dns: Option<DnsNames>,
    /// Swarm stages: `role "manager"` (else the first server manages).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub manager: bool,
    /// Where relative bind sources (`./data`) live on this server: fleet copies no files, so
    /// `./data` on a laptop is `<deploy_path>/data` here (FleetFlow's `deploy-path`).
    pub deploy_path: String,
}

/// `dns { hostname "dev"; aliases "api" }`: an A record for the hostname, CNAMEs for the aliases.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DnsNames {
    pub provider: DnsProvider,
    /// The zone, e.g. `example.com`.
    pub zone: String,
    pub hostname: String,
    pub aliases: Vec<String>,
}

impl DnsNames {
    /// `dev` in `example.com` → `dev.example.com`; `@` is the zone apex.
    pub fn fqdn(&self, name: &str) -> String {
        if name == "@" { self.zone.clone() } else { format!("{name}.{}", self.zone) }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DnsProvider {
    Cloudflare,
    SakuraDns,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "provider", rename_all = "kebab-case")]
pub enum ServerProvider {
    /// Created, powered and deleted by fleet through the Sakura Cloud API.
    SakuraCloud {
        zone: String,
        core: u32,
        memory_gb: u32,
        disk_gb: u32,
        /// e.g. `ubuntu-24.04`, resolved to the zone's public archive by tag.
        os: String,
        /// Installed for the login user on the disk at creation.
        ssh_key: SshKey,
        /// The user's own tags, added to fleet's ownership tags at creation.
        tags: Vec<String>,
        /// Startup scripts the user keeps in the account (Notes, by name), run at first boot
        /// alongside fleet's engine bootstrap.
        startup_scripts: Vec<StartupScript>,
    },
    /// A machine the user brings: never created, powered or deleted.
    Host { address: String },
}

/// The public key a new Sakura disk gets.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum SshKey {
    /// A `.pub` file on this machine, sent inline.
    File(std::path::PathBuf),
    /// A key registered in the account (`/sshkey`), by name: FleetFlow's `ssh-key "laptop"`.
    Account(String),
}

/// `startup-script "NAME"` with its `init-script-vars`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StartupScript {
    /// The Note's name in the account.
    pub name: String,
    /// Sent as the Note's `Variables` at disk creation.
    pub variables: Vec<(String, String)>,
}

impl ServerProvider {
    pub fn label(&self) -> String {
        match self {
            ServerProvider::SakuraCloud { zone, .. } => format!("sakura-cloud ({zone})"),
            ServerProvider::Host { .. } => "host".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    /// Private key; None lets ssh use its own configuration and agent.
    pub identity: Option<std::path::PathBuf>,
}

/// How a service's image is built: the input whose content hash is the release version.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct BuildSpec {
    /// The context directory, absolute.
    pub context: PathBuf,
    /// The Dockerfile, relative to the context (`Dockerfile` unless given).
    pub dockerfile: String,
    pub target: Option<String>,
    pub args: BTreeMap<String, String>,
    /// `image "shop/api"` beside `build`: the built image's repository (default `{project}-{service}`).
    pub repository: Option<String>,
}
