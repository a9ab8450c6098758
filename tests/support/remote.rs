//! The remote rig: a real OpenSSH server on loopback standing in for the booted machine (it
//! reaches this machine's Docker engine), and `fleet-sim` standing in for Sakura Cloud.

use super::Project;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A new ed25519 key pair at `path` (and `path.pub`), no passphrase.
pub fn keypair(path: &Path) {
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path));
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// `sshd` on 127.0.0.1 with its own host key and one authorized client key.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Sshd {
    /// `extra` lines are appended to sshd_config (e.g. to hide docker from the PATH).
    pub fn start(extra: &str) -> Self {
        Self::start_on(free_port(), extra)
    }

    /// On a given port: a second sshd on the same address plays a rebuilt machine.
    pub fn start_on(port: u16, extra: &str) -> Self {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd is needed for remote tests: apt-get install openssh-server (scripts/test.sh does it)");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keypair(&d.join("host_key"));
        keypair(&d.join("id"));
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").ok();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile {pid}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nUsePAM no\nAllowStreamLocalForwarding yes\nAllowTcpForwarding yes\nMaxStartups 50\n{extra}\n",
            hk = d.join("host_key").display(),
            ak = d.join("authorized_keys").display(),
            pid = d.join("sshd.pid").display(),
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        wait_for_port(port);
        Self { child, port, dir }
    }

    pub fn identity(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    pub fn public_key(&self) -> PathBuf {
        self.dir.path().join("id.pub")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `fleet-sim` with each booted server's SSH proxied to `ssh_target`.
pub struct Sim {
    child: Child,
    pub url: String,
    /// The port every simulated server answers SSH on (on its own 127.0.0.x address).
    pub ssh_port: u16,
}

impl Sim {
    pub fn start(ssh_target_port: u16) -> Self {
        Self::start_with(ssh_target_port, &[])
    }

    /// With extra fleet-sim flags (e.g. `--latency-ms 150`).
    pub fn start_with(ssh_target_port: u16, extra: &[&str]) -> Self {
        let ssh_port = free_port();
        let target = format!("127.0.0.1:{ssh_target_port}");
        let port = ssh_port.to_string();
        let mut args = vec!["--boot-ms", "300", "--shutdown-ms", "200", "--disk-copy-ms", "300"];
        args.extend(extra);
        args.extend(["--ssh-target", &target, "--ssh-port", &port]);
        let mut sim = Self::start_args(&args);
        sim.ssh_port = ssh_port;
        sim
    }

    /// fleet-sim with exactly these flags (plus where to listen and the credentials).
    pub fn start_args(args: &[&str]) -> Self {
        let ssh_port = 22;
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleet-sim"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("SAKURACLOUD_ACCESS_TOKEN", "sim-token")
            .env("SAKURACLOUD_ACCESS_TOKEN_SECRET", "sim-secret")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fleet-sim");
        let mut first = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut first).unwrap();
        // Keep draining: a closed pipe would kill the sim on its next write.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = first.trim().strip_prefix("listening on ").expect("sim prints its address").to_string();
        Self { child, url: addr, ssh_port }
    }

    pub fn api_root(&self) -> String {
        format!("{}/cloud/zone", self.url)
    }

    /// A plain HTTP/1.1 request to the sim's control endpoints (no client library needed).
    fn http(&self, method: &str, path: &str, body: &str) -> String {
        self.request(method, path, "", body)
    }

    /// The same, as a Cloudflare API client would send it.
    fn http_auth(&self, method: &str, path: &str, body: &str) -> String {
        self.request(method, path, "Authorization: Bearer sim-cf-token\r\nContent-Type: application/json\r\n", body)
    }

    fn request(&self, method: &str, path: &str, headers: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let host = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(host).expect("connect to fleet-sim");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 2"), "{method} {path}: {response}");
        response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
    }

    fn get(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.http("GET", path, "")).unwrap_or_default()
    }

    /// Request counts by `METHOD /path/:id`.
    pub fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        serde_json::from_value(self.get("/_sim/requests")).unwrap_or_default()
    }

    /// TCP connections the simulated servers' SSH ports accepted so far.
    pub fn ssh_connections(&self) -> u64 {
        self.get("/_sim/ssh-connections").as_u64().expect("fleet-sim answers a count")
    }

    /// Requests that change something (everything but GET).
    pub fn mutating_requests(&self) -> u64 {
        self.requests().iter().filter(|(k, _)| !k.starts_with("GET ")).map(|(_, v)| v).sum()
    }

    pub fn state(&self) -> serde_json::Value {
        self.get("/_sim/state")
    }

    /// Seeds a DNS record fleet does not own.
    pub fn seed_record(&self, kind: &str, name: &str, content: &str) {
        let body =
            serde_json::json!({"zone": "example.com", "type": kind, "name": name, "content": content}).to_string();
        self.http("POST", "/_sim/cloudflare/records", &body);
    }

    /// DNS records in the simulated zone: (name, type, content, comment).
    pub fn records(&self) -> Vec<(String, String, String, Option<String>)> {
        self.state()["dns"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (f("name"), f("type"), f("content"), r["comment"].as_str().map(String::from))
            })
            .collect()
    }

    /// Points one record somewhere else through the Cloudflare API, as drift would.
    pub fn drift_record(&self, name: &str, content: &str) {
        let zones: serde_json::Value =
            serde_json::from_str(&self.http_auth("GET", "/client/v4/zones?name=example.com", "")).unwrap();
        let zone = zones["result"][0]["id"].as_str().unwrap().to_string();
        let list: serde_json::Value = serde_json::from_str(&self.http_auth(
            "GET",
            &format!("/client/v4/zones/{zone}/dns_records?name={name}"),
            "",
        ))
        .unwrap();
        let id = list["result"][0]["id"].as_str().expect("record exists").to_string();
        let body = serde_json::json!({"content": content}).to_string();
        self.http_auth("PATCH", &format!("/client/v4/zones/{zone}/dns_records/{id}"), &body);
    }

    /// A Sakura Cloud API call as a human's tool would make it (basic auth), returning the body.
    pub fn sakura(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        self.sakura_in("is1a", method, path, body)
    }

    /// The same in a given zone.
    pub fn sakura_in(&self, zone: &str, method: &str, path: &str, body: &str) -> serde_json::Value {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode("sim-token:sim-secret");
        let headers = format!("Authorization: Basic {auth}\r\nContent-Type: application/json\r\n");
        serde_json::from_str(&self.request(method, &format!("/cloud/zone/{zone}/api/cloud/1.1/{path}"), &headers, body))
            .unwrap_or_default()
    }

    pub fn fault(&self, json: &str) {
        self.http("POST", "/_sim/faults", json);
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A remote stage on one Sakura server `creo-dev-01` whose SSH leads to `sshd`: `db` and `api`
/// (api depends on db).
pub fn sakura_project(test: &str, sim: &Sim, sshd: &Sshd) -> Project {
    let kdl = format!(
        r#"
project "{{project}}"
providers {{ sakura-cloud zone="tk1a" }}
service "db" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL" }}
service "api" {{ image "{{image}}"; command "sleep 100000"; depends_on "db"; stop_signal "SIGKILL" }}
stage "dev" {{
    server "creo-dev-01" {{
        provider "sakura-cloud"
        plan core=4 memory=4
        disk size=100 os="ubuntu-24.04"
        ssh-key "{pubkey}"
        ssh user="root" port={port} identity="{identity}"
    }}
    service "db" "api"
}}
"#,
        pubkey = sshd.public_key().display(),
        port = sim.ssh_port,
        identity = sshd.identity().display(),
    );
    let mut p = Project::new(test, &kdl);
    p.env = sim_env(sim);
    p
}

/// Credentials and short timings for `fleet` against this sim.
pub fn sim_env(sim: &Sim) -> Vec<(String, String)> {
    [
        ("SAKURACLOUD_ACCESS_TOKEN", "sim-token".to_string()),
        ("SAKURACLOUD_ACCESS_TOKEN_SECRET", "sim-secret".to_string()),
        ("SAKURACLOUD_API_ROOT_URL", sim.api_root()),
        ("FLEET_SAKURA_POLL_MS", "100".into()),
        ("FLEET_SAKURA_BACKOFF_MS", "20".into()),
        ("FLEET_SHUTDOWN_RESEND_MS", "500".into()),
        ("FLEET_SHUTDOWN_FORCE_AFTER_MS", "1500".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A brought host at 127.0.0.1 reached through `sshd`.
pub fn host_project(test: &str, sshd: &Sshd) -> Project {
    let kdl = format!(
        r#"
project "{{project}}"
service "web" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL" }}
stage "pre" {{
    server "box-1" {{
        provider "host"
        address "127.0.0.1"
        ssh user="root" port={port} identity="{identity}"
    }}
    service "web"
}}
"#,
        port = sshd.port,
        identity = sshd.identity().display(),
    );
    Project::new(test, &kdl)
}
