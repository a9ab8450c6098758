//! The simulated cloud: servers, disks, archives and their state machines.

use crate::machines::{DiskConfig, Machines};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

pub struct Settings {
    pub sakura_dns_zones: Vec<String>,
    pub cf_token: String,
    pub cf_zones: Vec<String>,
    pub token: String,
    pub secret: String,
    pub ssh_target: Option<SocketAddr>,
    pub ssh_port: u16,
    pub boot: Duration,
    pub shutdown: Duration,
    pub disk_copy: Duration,
    pub latency: Duration,
    /// Machine mode: servers are system containers (see machines.rs); None: SSH proxies.
    pub machines: Option<Machines>,
}

/// What random mode does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomFault {
    /// 503 `busy`, nothing done.
    Busy,
    /// 429 with `Retry-After: 1`, nothing done.
    RateLimited,
    /// 200 with an HTML page, nothing done.
    Html,
    /// The write is done, then the answer is cut off mid-body.
    LostAfterWrite,
}

/// Faults a test asks for; each counter is used up as it fires.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// The next N mutating requests answer 503 `busy` without doing anything.
    pub busy: u32,
    /// The next `POST /server` creates the server, then answers this late (a lost response).
    pub slow_create_ms: u64,
    /// Graceful shutdowns are ignored (the guest has no ACPI handler); `Force` still works.
    pub ignore_shutdown: bool,
    /// The next disk copy ends `failed`.
    pub fail_disk_copy: bool,
    /// The next N Cloudflare requests answer 429 with `Retry-After: 1`.
    pub cf_rate_limited: u32,
    /// The next N Cloudflare requests answer 500.
    pub cf_errors: u32,
    /// The next N Cloudflare requests answer 200 with an HTML page instead of the envelope.
    pub cf_garbled: u32,
    /// The next N Cloudflare DELETEs answer 500 (a destroy whose DNS step fails).
    pub cf_delete_errors: u32,
    /// Random mode: every Sakura request fails with this probability (0 = off), drawn from
    /// `random_seed` so a failing walk can be replayed: 503 busy, 429 with Retry-After, a 200
    /// HTML page, and for writes an answer lost after the write took effect.
    pub random_rate: f64,
    pub random_seed: u64,
    /// The next N Sakura reads (GET) answer 200 with an HTML page instead of the API's JSON,
    /// as a captive proxy or a maintenance page would.
    pub garbled_reads: u32,
    /// The price list answers 503 (`prices_down`) or 200 with an HTML page (`prices_garbled`).
    pub prices_down: bool,
    pub prices_garbled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Power {
    Down,
    Booting(Instant),
    Up,
    Cleaning(Instant),
}

struct Server {
    id: u64,
    name: String,
    description: String,
    tags: Vec<String>,
    host_name: String,
    zone: String,
    cpu: u64,
    memory_mb: u64,
    power: Power,
    changed_at: String,
    created_at: String,
    disks: Vec<u64>,
    ip: Option<Ipv4Addr>,
    interface_id: u64,
    /// What the disk edit asked for; applied at the first boot in machine mode.
    disk_config: DiskConfig,
}

/// A key registered in the account (`POST /sshkey`), global like notes.
struct AccountKey {
    id: u64,
    name: String,
    public_key: String,
}

/// A startup script.
struct Note {
    id: u64,
    name: String,
    class: String,
    content: String,
    tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DiskState {
    Migrating(Instant, bool),
    Available,
    Failed,
}

struct Disk {
    id: u64,
    name: String,
    tags: Vec<String>,
    zone: String,
    size_mb: u64,
    server: Option<u64>,
    archive: u64,
    state: DiskState,
}

/// A Sakura DNS zone (`commonserviceitem` with `Provider.Class = dns`): records are replaced whole.
struct DnsZone {
    id: u64,
    name: String,
    tags: Vec<String>,
    records: Vec<Value>,
    /// Changes with every write; a write naming an older hash is refused (409 conflict).
    settings_hash: u64,
}

struct Archive {
    id: u64,
    name: String,
    tags: Vec<String>,
    zone: String,
}

pub struct World {
    pub settings: Settings,
    pub faults: Faults,
    rng: Option<fastrand::Rng>,
    /// `METHOD /path/:id` → count, for tests that assert what an operation costs.
    pub counts: BTreeMap<String, u64>,
    next_id: u64,
    next_ip: u8,
    servers: BTreeMap<u64, Server>,
    disks: BTreeMap<u64, Disk>,
    archives: Vec<Archive>,
    dns_zones: Vec<DnsZone>,
    /// Running SSH proxies of booted servers.
    proxies: HashMap<u64, tokio::task::JoinHandle<()>>,
    /// TCP connections accepted by those proxies (`GET /_sim/ssh-connections`).
    pub ssh_connections: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Startup scripts (`POST /note`), global like Sakura's.
    notes: BTreeMap<u64, Note>,
    ssh_keys: BTreeMap<u64, AccountKey>,
    /// Machine mode asks the engine about guests at most this often.
    last_machine_check: Instant,
    pub cloudflare: crate::cloudflare::Cloudflare,
}

const ZONES: [&str; 6] = ["tk1a", "tk1b", "is1a", "is1b", "is1c", "tk1v"];
/// Public archives seeded per zone: (name, tags).
const ARCHIVES: [(&str, &[&str]); 3] = [
    (
        "Ubuntu Server 24.04 LTS 64bit",
        &["arch-64bit", "current-stable", "distro-ubuntu", "distro-ver-24.04", "os-linux", "ubuntu-24.04-latest"],
    ),
    (
        "Ubuntu Server 22.04 LTS 64bit",
        &["arch-64bit", "distro-ubuntu", "distro-ver-22.04", "os-linux", "ubuntu-22.04-latest"],
    ),
    ("Debian GNU/Linux 12 64bit", &["arch-64bit", "current-stable", "distro-debian", "os-linux", "debian-12-latest"]),
];

type Reply = (StatusCode, Value);

fn error(status: StatusCode, code: &str, msg: &str) -> Reply {
    let text = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    (status, json!({"is_fatal": true, "serial": "sim", "status": text, "error_code": code, "error_msg": msg}))
}

/// How often machine mode asks the engine whether each guest still runs (a docker call each).
const MACHINE_CHECK_EVERY: Duration = Duration::from_millis(300);

fn now_text() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

impl World {
    pub fn new(settings: Settings) -> Self {
        let cloudflare = crate::cloudflare::Cloudflare::new(settings.cf_token.clone(), &settings.cf_zones);
        let mut w = Self {
            cloudflare,
            settings,
            faults: Faults::default(),
            rng: None,
            counts: BTreeMap::new(),
            ssh_connections: Default::default(),
            next_id: 113_600_000_000,
            next_ip: 10,
            servers: BTreeMap::new(),
            disks: BTreeMap::new(),
            archives: Vec::new(),
            dns_zones: Vec::new(),
            proxies: HashMap::new(),
            notes: BTreeMap::new(),
            ssh_keys: BTreeMap::new(),
            last_machine_check: Instant::now(),
        };
        for name in w.settings.sakura_dns_zones.clone() {
            let id = w.id();
            w.dns_zones.push(DnsZone { id, name, tags: Vec::new(), records: Vec::new(), settings_hash: 1 });
        }
        for zone in ZONES {
            for (name, tags) in ARCHIVES {
                let id = w.id();
                w.archives.push(Archive {
                    id,
                    name: name.into(),
                    tags: tags.iter().map(|t| t.to_string()).collect(),
                    zone: zone.into(),
                });
            }
        }
        w
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Advances every state machine; opens and closes SSH proxies with the power state.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let mut booted = Vec::new();
        let mut stopped = Vec::new();
        // In machine mode the guest is the truth: a machine that is no longer running is down,
        // whether fleet asked (a shutdown finishing) or the guest powered itself off.
        let machines = self.settings.machines.is_some();
        let look = machines && now.duration_since(self.last_machine_check) >= MACHINE_CHECK_EVERY;
        if look {
            self.last_machine_check = now;
        }
        let rig = self.settings.machines.clone();
        for s in self.servers.values_mut() {
            let gone = || rig.as_ref().is_some_and(|m| !m.running(s.id));
            if look && matches!(s.power, Power::Up | Power::Cleaning(_)) && gone() {
                s.power = Power::Down;
                s.changed_at = now_text();
                continue;
            }
            match s.power {
                Power::Cleaning(_) if machines => {}
                Power::Booting(at) if now >= at => {
                    s.power = Power::Up;
                    s.changed_at = now_text();
                    booted.push((s.id, s.ip));
                }
                Power::Cleaning(at) if now >= at => {
                    s.power = Power::Down;
                    s.changed_at = now_text();
                    stopped.push(s.id);
                }
                _ => {}
            }
        }
        for d in self.disks.values_mut() {
            if let DiskState::Migrating(at, fail) = d.state
                && now >= at
            {
                d.state = if fail { DiskState::Failed } else { DiskState::Available };
            }
        }
        for (id, ip) in booted {
            self.open_proxy(id, ip);
        }
        for id in stopped {
            if let Some(h) = self.proxies.remove(&id) {
                h.abort();
            }
        }
    }

    fn open_proxy(&mut self, id: u64, ip: Option<Ipv4Addr>) {
        let (Some(target), Some(ip)) = (self.settings.ssh_target, ip) else {
            return;
        };
        let addr = SocketAddr::new(IpAddr::V4(ip), self.settings.ssh_port);
        let accepted = self.ssh_connections.clone();
        let handle = tokio::spawn(async move {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("fleet-sim: cannot open ssh proxy on {addr}: {e}");
                    return;
                }
            };
            // Connections live in this set, so aborting the proxy also cuts open sessions.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.proxies.insert(id, handle);
    }

    /// New faults; random mode starts from its seed.
    pub fn set_faults(&mut self, faults: Faults) {
        self.rng = (faults.random_rate > 0.0).then(|| fastrand::Rng::with_seed(faults.random_seed));
        self.faults = faults;
    }

    /// The random fault this Sakura request gets, if any.
    pub fn random_fault(&mut self, method: &Method) -> Option<RandomFault> {
        let rate = self.faults.random_rate;
        let rng = self.rng.as_mut()?;
        if rng.f64() >= rate {
            return None;
        }
        let kinds: &[RandomFault] = if *method == Method::GET {
            &[RandomFault::Busy, RandomFault::RateLimited, RandomFault::Html]
        } else {
            &[RandomFault::Busy, RandomFault::RateLimited, RandomFault::Html, RandomFault::LostAfterWrite]
        };
        let kind = kinds[rng.usize(..kinds.len())];
        *self.counts.entry(format!("random fault {kind:?}")).or_default() += 1;
        Some(kind)
    }

    /// True when this Cloudflare request gets the garbled-200 fault (and uses one up).
    pub fn take_cf_garbled(&mut self) -> bool {
        let hit = self.faults.cf_garbled > 0;
        self.faults.cf_garbled = self.faults.cf_garbled.saturating_sub(1);
        hit
    }

    /// True when this Sakura request gets the garbled-200 fault (and uses one up).
    pub fn take_garbled(&mut self, method: &Method) -> bool {
        let hit = *method == Method::GET && self.faults.garbled_reads > 0;
        if hit {
            self.faults.garbled_reads -= 1;
        }
        hit
    }

    /// How long to hold back this response (the lost-create fault).
    pub fn take_response_delay(&mut self, method: &Method, path: &str) -> Duration {
        if method == Method::POST && path.ends_with("/server") && self.faults.slow_create_ms > 0 {
            let ms = std::mem::take(&mut self.faults.slow_create_ms);
            return Duration::from_millis(ms);
        }
        Duration::ZERO
    }

    pub fn snapshot(&self) -> Value {
        json!({
            "servers": self.servers.values().map(|s| json!({
                "id": s.id, "name": s.name, "tags": s.tags, "power": format!("{:?}", s.power), "ip": s.ip.map(|i| i.to_string()), "disks": s.disks,
                "disk_config": {
                    "ssh_keys": s.disk_config.ssh_keys,
                    "scripts": s.disk_config.scripts.iter().map(|(name, content)| json!({"name": name, "content": content})).collect::<Vec<_>>(),
                },
            })).collect::<Vec<_>>(),
            "disks": self.disks.values().map(|d| json!({"id": d.id, "server": d.server, "state": format!("{:?}", d.state)})).collect::<Vec<_>>(),
            "dns": self.cloudflare.snapshot(),
            "sakura_dns": self.dns_zones.iter().map(|z| json!({"zone": z.name, "records": z.records, "tags": z.tags})).collect::<Vec<_>>(),
        })
    }

    /// Cloudflare's API, counted as `CF METHOD /path/:id`.
    pub fn handle_cloudflare(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> crate::cloudflare::Reply {
        let path = uri.path().trim_start_matches("/client/v4");
        let template: Vec<&str> = path
            .split('/')
            .map(|s| if s.len() == 32 && s.chars().all(|c| c.is_ascii_hexdigit()) { ":id" } else { s })
            .collect();
        *self.counts.entry(format!("CF {method} {}", template.join("/"))).or_default() += 1;
        let mut errors = self.faults.cf_errors;
        if *method == Method::DELETE && self.faults.cf_delete_errors > 0 {
            self.faults.cf_delete_errors -= 1;
            errors += 1;
        }
        let mut limited = self.faults.cf_rate_limited;
        let reply = self.cloudflare.handle(method, uri, headers, body, &mut limited, &mut errors);
        self.faults.cf_rate_limited = limited;
        self.faults.cf_errors = errors.min(self.faults.cf_errors);
        reply
    }

    pub fn handle(&mut self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Reply {
        let Some((zone, rest)) = uri.path().strip_prefix("/cloud/zone/").and_then(|p| p.split_once("/api/cloud/1.1/"))
        else {
            return error(StatusCode::NOT_FOUND, "not_found", "unknown path");
        };
        let zone = zone.to_string();
        let segments: Vec<&str> = rest.split('/').collect();
        let template: Vec<&str> =
            segments.iter().map(|s| if s.chars().all(|c| c.is_ascii_digit()) { ":id" } else { s }).collect();
        *self.counts.entry(format!("{method} /{}", template.join("/"))).or_default() += 1;

        // The price list is public: no authentication.
        if method == Method::GET && rest == "public/price" && ZONES.contains(&zone.as_str()) {
            if self.faults.prices_down {
                return error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", "price list unavailable");
            }
            if self.faults.prices_garbled {
                return (StatusCode::OK, Value::String("<html>maintenance</html>".into()));
            }
            return (StatusCode::OK, crate::prices::price_list(&zone, &now_text()));
        }
        if !self.authorized(headers) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "アクセストークンが無効です (invalid access token)",
            );
        }
        if !ZONES.contains(&zone.as_str()) {
            return error(StatusCode::NOT_FOUND, "not_found", "zone not found");
        }
        if method != Method::GET && self.faults.busy > 0 {
            self.faults.busy -= 1;
            return error(StatusCode::SERVICE_UNAVAILABLE, "busy", "サーバが混雑しています (busy, try later)");
        }
        let numbers = headers.get("x-sakura-bigint-as-int").is_some_and(|v| v == "1");
        let body: Value =
            if body.is_empty() { Value::Null } else { serde_json::from_slice(body).unwrap_or(Value::Null) };
        let query = uri.query().map(|q| percent_encoding::percent_decode_str(q).decode_utf8_lossy().to_string());
        let id = segments.get(1).and_then(|s| s.parse::<u64>().ok());
        let reply = match (method.as_str(), segments.as_slice()) {
            ("GET", ["server"]) => self.find_servers(&zone, query.as_deref(), numbers),
            ("POST", ["server"]) => self.create_server(&zone, &body, numbers),
            ("GET", ["server", _]) => self.read_server(id, &zone, numbers),
            ("DELETE", ["server", _]) => self.delete_server(id, &zone, &body),
            ("PUT", ["server", _, "power"]) => self.boot(id, &zone),
            ("DELETE", ["server", _, "power"]) => self.shutdown(id, &zone, &body),
            ("GET", ["archive"]) => self.find_archives(&zone, query.as_deref(), numbers),
            ("GET", ["product", "server"]) => {
                parse_query(query.as_deref()).map(|q| page(&q, crate::prices::server_plans(numbers), "ServerPlans"))
            }
            ("GET", ["product", "disk"]) => {
                let plans = crate::prices::disk_plans();
                Ok((StatusCode::OK, json!({"Total": 2, "From": 0, "Count": 2, "DiskPlans": plans, "is_ok": true})))
            }
            ("POST", ["disk"]) => self.create_disk(&zone, &body, numbers),
            ("POST", ["note"]) => self.create_note(&body, numbers),
            ("GET", ["note"]) => self.find_notes(query.as_deref(), numbers),
            ("GET", ["note", _]) => self.read_note(id, numbers),
            ("POST", ["sshkey"]) => self.create_ssh_key(&body, numbers),
            ("GET", ["sshkey"]) => self.find_ssh_keys(query.as_deref(), numbers),
            ("GET", ["disk", _]) => self.read_disk(id, &zone, numbers),
            ("DELETE", ["disk", _]) => self.delete_disk(id, &zone),
            ("GET", ["commonserviceitem"]) => self.find_dns(query.as_deref(), numbers),
            ("GET", ["commonserviceitem", _]) => self.read_dns(id, numbers),
            ("PUT", ["commonserviceitem", _]) => self.write_dns(id, &body, numbers),
            _ => Err(error(StatusCode::NOT_FOUND, "not_found", "this simulator does not serve that endpoint")),
        };
        reply.unwrap_or_else(|e| e)
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        use base64::Engine;
        let expected = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.settings.token, self.settings.secret));
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(format!("Basic {expected}").as_str())
    }

    fn id_value(id: u64, numbers: bool) -> Value {
        if numbers { json!(id) } else { json!(id.to_string()) }
    }

    fn server_json(&self, s: &Server, numbers: bool) -> Value {
        let status = match s.power {
            Power::Up => "up",
            Power::Cleaning(_) => "cleaning",
            Power::Down | Power::Booting(_) => "down",
        };
        let disks: Vec<Value> = s
            .disks
            .iter()
            .filter_map(|d| self.disks.get(d))
            .map(|d| json!({"ID": Self::id_value(d.id, numbers), "Name": d.name, "SizeMB": d.size_mb, "Availability": "available"}))
            .collect();
        json!({
            "ID": Self::id_value(s.id, numbers), "Name": s.name, "Description": s.description,
            "Tags": if s.tags.is_empty() { Value::Null } else { json!(s.tags) },
            "HostName": s.host_name, "Availability": "available", "CreatedAt": s.created_at,
            "ServerPlan": {"ID": Self::id_value(100_000_000 + s.memory_mb / 1024 * 1000 + s.cpu, numbers), "CPU": s.cpu, "MemoryMB": s.memory_mb, "Generation": 100, "Commitment": "standard", "ServiceClass": crate::prices::server_class(s.cpu as u32, (s.memory_mb / 1024) as u32)},
            "ServiceClass": crate::prices::server_class(s.cpu as u32, (s.memory_mb / 1024) as u32),
            "Zone": {"ID": 21001, "Name": s.zone, "IsDummy": false},
            "Instance": {"Status": status, "StatusChangedAt": s.changed_at},
            "Disks": disks,
            "Interfaces": [{
                "ID": Self::id_value(s.interface_id, numbers),
                "IPAddress": s.ip.map(|i| i.to_string()),
                "UserIPAddress": Value::Null,
                "Switch": {"Scope": "shared", "Subnet": {"DefaultRoute": "127.0.0.1", "NetworkMaskLen": 8}},
            }],
            "Icon": Value::Null,
        })
    }

    fn server_mut(&mut self, id: Option<u64>, zone: &str) -> Result<&mut Server, Reply> {
        id.and_then(|id| self.servers.get_mut(&id))
            .filter(|s| s.zone == zone)
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "not_found", "対象が見つかりません (server not found)"))
    }

    fn find_servers(&self, zone: &str, query: Option<&str>, numbers: bool) -> Result<Reply, Reply> {
        let q = parse_query(query)?;
        let all: Vec<&Server> =
            self.servers.values().filter(|s| s.zone == zone && matches(&q, &s.name, &s.tags)).collect();
        Ok(page(&q, all.into_iter().map(|s| self.server_json(s, numbers)).collect(), "Servers"))
    }

    fn find_archives(&self, zone: &str, query: Option<&str>, numbers: bool) -> Result<Reply, Reply> {
        let q = parse_query(query)?;
        let found: Vec<Value> = self
            .archives
            .iter()
            .filter(|a| a.zone == zone && matches(&q, &a.name, &a.tags))
            .map(|a| json!({"ID": Self::id_value(a.id, numbers), "Name": a.name, "Tags": a.tags, "Scope": "shared", "SizeMB": 20480, "Availability": "available"}))
            .collect();
        Ok(page(&q, found, "Archives"))
    }

    fn create_server(&mut self, zone: &str, body: &Value, numbers: bool) -> Result<Reply, Reply> {
        let s = &body["Server"];
        let name = s["Name"].as_str().filter(|n| !n.is_empty() && n.len() <= 64).ok_or_else(|| {
            error(StatusCode::BAD_REQUEST, "bad_request", "Server.Name is required (1-64 characters)")
        })?;
        let plan = &s["ServerPlan"];
        let cpu = plan["CPU"]
            .as_u64()
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "bad_request", "ServerPlan.CPU is required"))?;
        let memory_mb = plan["MemoryMB"]
            .as_u64()
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "bad_request", "ServerPlan.MemoryMB is required"))?;
        if s["ConnectedSwitches"][0]["Scope"] != "shared" {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "this simulator only connects NIC 0 to the shared segment",
            ));
        }
        let tags: Vec<String> = s["Tags"]
            .as_array()
            .map(|t| t.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let (id, interface_id) = (self.id(), self.id());
        let server = Server {
            id,
            name: name.into(),
            description: s["Description"].as_str().unwrap_or_default().into(),
            tags,
            host_name: String::new(),
            zone: zone.into(),
            cpu,
            memory_mb,
            power: Power::Down,
            changed_at: now_text(),
            created_at: now_text(),
            disks: Vec::new(),
            ip: None,
            interface_id,
            disk_config: DiskConfig::default(),
        };
        let json = self.server_json(&server, numbers);
        self.servers.insert(id, server);
        Ok((StatusCode::CREATED, json!({"Server": json, "Success": true, "is_ok": true})))
    }

    fn read_server(&mut self, id: Option<u64>, zone: &str, numbers: bool) -> Result<Reply, Reply> {
        let s = self.server_mut(id, zone)?;
        let id = s.id;
        Ok((StatusCode::OK, json!({"Server": self.server_json(&self.servers[&id], numbers), "is_ok": true})))
    }

    fn boot(&mut self, id: Option<u64>, zone: &str) -> Result<Reply, Reply> {
        let machines = self.settings.machines.clone();
        let boot = self.settings.boot;
        let disks = self.server_mut(id, zone)?.disks.clone();
        if disks.iter().any(|d| matches!(self.disks.get(d).map(|d| d.state), Some(DiskState::Migrating(..)))) {
            return Err(error(
                StatusCode::CONFLICT,
                "still_creating",
                "ディスクの作成中です (a disk is still being copied)",
            ));
        }
        if disks.is_empty() {
            return Err(error(StatusCode::CONFLICT, "conflict", "server has no disk to boot from"));
        }
        let s = self.server_mut(id, zone)?;
        if s.power != Power::Down {
            return Err(error(StatusCode::CONFLICT, "conflict", "サーバは起動しています (server is not down)"));
        }
        if let Some(m) = machines {
            let ip = s.ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
            m.power_on(s.id, ip, &s.disk_config)
                .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &format!("machine rig: {e}")))?;
        }
        s.power = Power::Booting(Instant::now() + boot);
        Ok((StatusCode::OK, json!({"Success": true, "is_ok": true})))
    }

    fn shutdown(&mut self, id: Option<u64>, zone: &str, body: &Value) -> Result<Reply, Reply> {
        let force = body["Force"].as_bool().unwrap_or(false);
        let ignore = self.faults.ignore_shutdown && !force;
        let shutdown = self.settings.shutdown;
        let rig = self.settings.machines.clone();
        let s = self.server_mut(id, zone)?;
        match s.power {
            Power::Up => {
                if !ignore {
                    s.power = Power::Cleaning(Instant::now() + if force { Duration::ZERO } else { shutdown });
                    match &rig {
                        Some(m) if force => m.force_off(s.id),
                        Some(m) => m.acpi_shutdown(s.id),
                        None => {}
                    }
                }
                Ok((StatusCode::OK, json!({"Success": true, "is_ok": true})))
            }
            // A forced power-off cuts a shutdown already under way.
            Power::Cleaning(_) if force => {
                s.power = Power::Cleaning(Instant::now());
                if let Some(m) = &rig {
                    m.force_off(s.id);
                }
                Ok((StatusCode::OK, json!({"Success": true, "is_ok": true})))
            }
            _ => Err(error(StatusCode::CONFLICT, "conflict", "サーバは停止しています (server is not up)")),
        }
    }

    fn delete_server(&mut self, id: Option<u64>, zone: &str, body: &Value) -> Result<Reply, Reply> {
        let s = self.server_mut(id, zone)?;
        if s.power != Power::Down {
            return Err(error(
                StatusCode::CONFLICT,
                "conflict",
                "起動中のサーバは削除できません (server must be down)",
            ));
        }
        let id = s.id;
        if let Some(m) = &self.settings.machines {
            m.remove(id);
        }
        let with: Vec<u64> =
            body["WithDisk"].as_array().map(|a| a.iter().filter_map(lenient_id).collect()).unwrap_or_default();
        if let Some(s) = self.servers.remove(&id) {
            for d in s.disks {
                if with.contains(&d) {
                    self.disks.remove(&d);
                } else if let Some(disk) = self.disks.get_mut(&d) {
                    disk.server = None;
                }
            }
        }
        Ok((StatusCode::OK, json!({"Success": true, "is_ok": true})))
    }

    fn create_disk(&mut self, zone: &str, body: &Value, numbers: bool) -> Result<Reply, Reply> {
        let d = &body["Disk"];
        let archive = lenient_id(&d["SourceArchive"]["ID"])
            .filter(|a| self.archives.iter().any(|x| x.id == *a && x.zone == zone));
        let Some(archive) = archive else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "SourceArchive.ID is not an archive of this zone",
            ));
        };
        let server_id = lenient_id(&d["Server"]["ID"]);
        let Some(server_id) = server_id.filter(|s| self.servers.get(s).is_some_and(|s| s.zone == zone)) else {
            return Err(error(StatusCode::CONFLICT, "conflict", "Server.ID does not name a server of this zone"));
        };
        let config = &body["Config"];
        let keys = config["SSHKeys"].as_array().map_or(0, Vec::len);
        if keys == 0 && config["Password"].is_null() {
            return Err(error(StatusCode::BAD_REQUEST, "bad_request", "disk edit needs SSHKeys or a Password"));
        }
        let size_mb = d["SizeMB"].as_u64().unwrap_or(20480);
        let id = self.id();
        let fail = std::mem::take(&mut self.faults.fail_disk_copy);
        let disk = Disk {
            id,
            name: d["Name"].as_str().unwrap_or_default().into(),
            tags: d["Tags"]
                .as_array()
                .map(|t| t.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default(),
            zone: zone.into(),
            size_mb,
            server: Some(server_id),
            archive,
            state: DiskState::Migrating(Instant::now() + self.settings.disk_copy, fail),
        };
        let disk_config = DiskConfig {
            host_name: config["HostName"].as_str().map(String::from),
            ssh_keys: self.disk_ssh_keys(config)?,
            password: config["Password"].as_str().map(String::from),
            scripts: self.disk_scripts(config)?,
        };
        let ip = match &self.settings.machines {
            Some(m) => m.address(self.next_ip),
            None => Ipv4Addr::new(127, 0, 0, self.next_ip),
        };
        self.next_ip = self.next_ip.wrapping_add(1).max(10);
        if let Some(s) = self.servers.get_mut(&server_id) {
            s.disks.push(id);
            // Disk edit configures NIC 0 on the shared segment, as on the real cloud.
            s.ip.get_or_insert(ip);
            if let Some(h) = config["HostName"].as_str() {
                s.host_name = h.into();
            }
            s.disk_config = disk_config;
        }
        let json = self.disk_json(&disk, numbers);
        self.disks.insert(id, disk);
        Ok((StatusCode::ACCEPTED, json!({"Disk": json, "Success": "Accepted", "is_ok": true})))
    }

    /// The disk edit's `SSHKeys`: each inline, or by the ID of a key registered in the account.
    fn disk_ssh_keys(&self, config: &Value) -> Result<Vec<String>, Reply> {
        let mut ssh_keys = Vec::new();
        for k in config["SSHKeys"].as_array().into_iter().flatten() {
            // `{PublicKey}` inline, or `{ID}` of a key registered in the account.
            let key = match (k["PublicKey"].as_str(), lenient_id(&k["ID"])) {
                (Some(inline), _) => inline.to_string(),
                (None, Some(id)) => match self.ssh_keys.get(&id) {
                    Some(k) => k.public_key.clone(),
                    None => {
                        return Err(error(StatusCode::BAD_REQUEST, "bad_request", "Config.SSHKeys[].ID names no key"));
                    }
                },
                (None, None) => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "Config.SSHKeys[] needs ID or PublicKey",
                    ));
                }
            };
            ssh_keys.push(key);
        }
        Ok(ssh_keys)
    }

    /// The disk edit's `Notes`: each note's script with its `Variables` filled in.
    fn disk_scripts(&self, config: &Value) -> Result<Vec<(String, String)>, Reply> {
        let mut scripts = Vec::new();
        for n in config["Notes"].as_array().into_iter().flatten() {
            let note = lenient_id(&n["ID"]).and_then(|id| self.notes.get(&id));
            let Some(note) = note else {
                return Err(error(StatusCode::BAD_REQUEST, "bad_request", "Config.Notes[].ID names no note"));
            };
            // Sakura fills `@@@NAME@@@` in the script from the disk's `Variables`.
            let mut content = note.content.clone();
            for (k, v) in n["Variables"].as_object().into_iter().flatten() {
                content = content.replace(&format!("@@@{k}@@@"), v.as_str().unwrap_or_default());
            }
            scripts.push((note.name.clone(), content));
        }
        Ok(scripts)
    }

    fn note_json(n: &Note, numbers: bool) -> Value {
        json!({"ID": Self::id_value(n.id, numbers), "Name": n.name, "Class": n.class, "Content": n.content, "Tags": n.tags, "Scope": "user"})
    }

    fn create_note(&mut self, body: &Value, numbers: bool) -> Result<Reply, Reply> {
        let n = &body["Note"];
        let (Some(name), Some(content)) = (n["Name"].as_str(), n["Content"].as_str()) else {
            return Err(error(StatusCode::BAD_REQUEST, "bad_request", "Note.Name and Note.Content are required"));
        };
        let id = self.id();
        let tags = n["Tags"]
            .as_array()
            .map(|t| t.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let note = Note {
            id,
            name: name.into(),
            class: n["Class"].as_str().unwrap_or("shell").into(),
            content: content.into(),
            tags,
        };
        let json = Self::note_json(&note, numbers);
        self.notes.insert(id, note);
        Ok((StatusCode::CREATED, json!({"Note": json, "Success": true, "is_ok": true})))
    }

    fn create_ssh_key(&mut self, body: &Value, numbers: bool) -> Result<Reply, Reply> {
        let k = &body["SSHKey"];
        let (Some(name), Some(public_key)) = (k["Name"].as_str(), k["PublicKey"].as_str()) else {
            return Err(error(StatusCode::BAD_REQUEST, "bad_request", "SSHKey.Name and SSHKey.PublicKey are required"));
        };
        if !public_key.starts_with("ssh-") && !public_key.starts_with("ecdsa-") {
            return Err(error(StatusCode::BAD_REQUEST, "bad_request", "SSHKey.PublicKey is not an OpenSSH public key"));
        }
        let id = self.id();
        let key = AccountKey { id, name: name.into(), public_key: public_key.trim().into() };
        let json = Self::ssh_key_json(&key, numbers);
        self.ssh_keys.insert(id, key);
        Ok((StatusCode::CREATED, json!({"SSHKey": json, "Success": true, "is_ok": true})))
    }

    fn find_ssh_keys(&self, query: Option<&str>, numbers: bool) -> Result<Reply, Reply> {
        let q = parse_query(query)?;
        let found = self
            .ssh_keys
            .values()
            .filter(|k| matches(&q, &k.name, &[]))
            .map(|k| Self::ssh_key_json(k, numbers))
            .collect();
        Ok(page(&q, found, "SSHKeys"))
    }

    fn ssh_key_json(k: &AccountKey, numbers: bool) -> Value {
        json!({"ID": Self::id_value(k.id, numbers), "Name": k.name, "PublicKey": k.public_key, "Fingerprint": "sim"})
    }

    fn find_notes(&self, query: Option<&str>, numbers: bool) -> Result<Reply, Reply> {
        let q = parse_query(query)?;
        let found = self
            .notes
            .values()
            .filter(|n| matches(&q, &n.name, &n.tags))
            .map(|n| Self::note_json(n, numbers))
            .collect();
        Ok(page(&q, found, "Notes"))
    }

    fn read_note(&self, id: Option<u64>, numbers: bool) -> Result<Reply, Reply> {
        let n = id
            .and_then(|id| self.notes.get(&id))
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "not_found", "no such note"))?;
        Ok((StatusCode::OK, json!({"Note": Self::note_json(n, numbers), "is_ok": true})))
    }

    fn disk_json(&self, d: &Disk, numbers: bool) -> Value {
        let availability = match d.state {
            DiskState::Migrating(..) => "migrating",
            DiskState::Available => "available",
            DiskState::Failed => "failed",
        };
        json!({
            "ID": Self::id_value(d.id, numbers), "Name": d.name, "Tags": d.tags, "SizeMB": d.size_mb,
            "Availability": availability, "SourceArchive": {"ID": Self::id_value(d.archive, numbers)},
            "Server": d.server.map(|s| json!({"ID": Self::id_value(s, numbers)})),
        })
    }

    fn read_disk(&self, id: Option<u64>, zone: &str, numbers: bool) -> Result<Reply, Reply> {
        let d = id
            .and_then(|id| self.disks.get(&id))
            .filter(|d| d.zone == zone)
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "not_found", "disk not found"))?;
        Ok((StatusCode::OK, json!({"Disk": self.disk_json(d, numbers), "is_ok": true})))
    }

    fn delete_disk(&mut self, id: Option<u64>, zone: &str) -> Result<Reply, Reply> {
        let d = id
            .and_then(|id| self.disks.get(&id))
            .filter(|d| d.zone == zone)
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "not_found", "disk not found"))?;
        if d.server.is_some_and(|s| self.servers.get(&s).is_some_and(|s| s.power != Power::Down)) {
            return Err(error(StatusCode::CONFLICT, "conflict", "disk is attached to a running server"));
        }
        let id = d.id;
        self.disks.remove(&id);
        Ok((StatusCode::OK, json!({"Success": true, "is_ok": true})))
    }
}

impl World {
    fn dns_json(z: &DnsZone, numbers: bool) -> Value {
        json!({
            "ID": Self::id_value(z.id, numbers), "Name": z.name, "Description": "", "Tags": z.tags,
            "Availability": "available", "Provider": {"Class": "dns"},
            "Settings": {"DNS": {"ResourceRecordSets": z.records}},
            "SettingsHash": z.settings_hash.to_string(),
            "Status": {"Zone": z.name, "NS": ["ns1.gslb1.sakura.ne.jp", "ns2.gslb1.sakura.ne.jp"]},
        })
    }

    fn find_dns(&self, query: Option<&str>, numbers: bool) -> Result<Reply, Reply> {
        let q = parse_query(query)?;
        if q["Filter"]["Provider.Class"] != "dns" {
            return Ok(page(&q, Vec::new(), "CommonServiceItems"));
        }
        let found: Vec<Value> = self
            .dns_zones
            .iter()
            .filter(|z| matches(&q, &z.name, &z.tags))
            .map(|z| Self::dns_json(z, numbers))
            .collect();
        Ok(page(&q, found, "CommonServiceItems"))
    }

    fn read_dns(&self, id: Option<u64>, numbers: bool) -> Result<Reply, Reply> {
        let z = id
            .and_then(|id| self.dns_zones.iter().find(|z| z.id == id))
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "not_found", "DNS zone not found"))?;
        Ok((StatusCode::OK, json!({"CommonServiceItem": Self::dns_json(z, numbers), "is_ok": true})))
    }

    /// Replaces the whole record list (and tags); a stale SettingsHash is a lost-update guard.
    fn write_dns(&mut self, id: Option<u64>, body: &Value, numbers: bool) -> Result<Reply, Reply> {
        let z = id
            .and_then(|id| self.dns_zones.iter_mut().find(|z| z.id == id))
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "not_found", "DNS zone not found"))?;
        let item = &body["CommonServiceItem"];
        if let Some(hash) = item["SettingsHash"].as_str()
            && hash != z.settings_hash.to_string()
        {
            return Err(error(
                StatusCode::CONFLICT,
                "conflict",
                "設定が更新されています (settings changed since read)",
            ));
        }
        let Some(records) = item["Settings"]["DNS"]["ResourceRecordSets"].as_array() else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Settings.DNS.ResourceRecordSets is required ([] clears the zone)",
            ));
        };
        for r in records {
            let kind = r["Type"].as_str().unwrap_or_default();
            let rdata = r["RData"].as_str().unwrap_or_default();
            if matches!(kind, "CNAME" | "NS" | "MX" | "ALIAS" | "PTR") && !rdata.ends_with('.') {
                return Err(error(StatusCode::BAD_REQUEST, "bad_request", "CNAME RData must end with a dot"));
            }
        }
        z.records = records.clone();
        if let Some(tags) = item["Tags"].as_array() {
            z.tags = tags.iter().filter_map(|t| t.as_str().map(String::from)).collect();
        }
        z.settings_hash += 1;
        let json = Self::dns_json(z, numbers);
        Ok((StatusCode::OK, json!({"CommonServiceItem": json, "Success": true, "is_ok": true})))
    }
}

/// IDs arrive as numbers or numeric strings.
fn lenient_id(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn parse_query(query: Option<&str>) -> Result<Value, Reply> {
    match query {
        None | Some("") => Ok(json!({})),
        Some(q) => serde_json::from_str(q).map_err(|e| {
            error(StatusCode::BAD_REQUEST, "bad_request", &format!("query is not JSON (send ?{{json}}): {e}"))
        }),
    }
}

/// `Filter.Name` (partial, AND of words) and `Filter["Tags.Name"]` ([[all of these]]).
fn matches(q: &Value, name: &str, tags: &[String]) -> bool {
    let f = &q["Filter"];
    let name_ok = match &f["Name"] {
        Value::String(words) => words.split_whitespace().all(|w| name.contains(w)),
        Value::Array(exact) => exact.iter().any(|v| v.as_str() == Some(name)),
        _ => true,
    };
    let tags_ok = match &f["Tags.Name"] {
        Value::Array(groups) => groups.iter().all(|g| {
            g.as_array().is_some_and(|all| all.iter().all(|t| t.as_str().is_some_and(|t| tags.iter().any(|x| x == t))))
        }),
        _ => true,
    };
    name_ok && tags_ok
}

fn page(q: &Value, all: Vec<Value>, key: &str) -> Reply {
    let total = all.len();
    let from = q["From"].as_u64().unwrap_or(0) as usize;
    let count = q["Count"].as_u64().map_or(50, |c| c.min(1000)) as usize;
    let items: Vec<Value> = all.into_iter().skip(from).take(count).collect();
    (StatusCode::OK, json!({"Total": total, "From": from, "Count": items.len(), key: items, "is_ok": true}))
}
