//! The machine rig: fleet-sim in machine mode, where each server is a system container (systemd,
//! sshd, user `ubuntu`, no engine) with its own address on a network of its own.

use super::remote::Sim;
use std::process::Command;
use std::sync::OnceLock;

fn docker(args: &[&str]) -> Option<String> {
    let out = Command::new("docker").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The server image, built once per machine (scripts/build-server-image.sh caches it by recipe).
pub fn server_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-server-image.sh");
            let out = Command::new("bash").arg(script).output().expect("run build-server-image.sh");
            assert!(out.status.success(), "building the server image failed: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).lines().last().expect("the script prints the tag").to_string()
        })
        .clone()
}

/// A network with a /24 of its own, and the label of every machine made on it.
pub struct MachineRig {
    pub network: String,
    pub label: String,
}

impl MachineRig {
    pub fn new(test: &str) -> Self {
        let name = format!("fleetrig-{}-{test}", std::process::id());
        let _ = docker(&["network", "rm", &name]);
        // A free /24: another test binary may hold one already.
        for k in 20..=250u32 {
            let third = (std::process::id() + k) % 231 + 20;
            if docker(&["network", "create", "--subnet", &format!("172.30.{third}.0/24"), &name]).is_some() {
                return Self { label: format!("fleetflow.rig={name}"), network: name };
            }
        }
        panic!("no free /24 in 172.30.0.0/16 for the machine rig");
    }

    /// fleet-sim booting this rig's machines.
    pub fn sim(&self) -> Sim {
        let image = server_image();
        Sim::start_args(&[
            "--boot-ms",
            "500",
            "--shutdown-ms",
            "200",
            "--disk-copy-ms",
            "300",
            "--machine-image",
            &image,
            "--machine-network",
            &self.network,
            "--machine-label",
            &self.label,
        ])
    }

    /// The system container of the sim's server `id`.
    pub fn container(&self, id: u64) -> String {
        format!("{}-{id}", self.network)
    }
}

impl Drop for MachineRig {
    fn drop(&mut self) {
        let names = docker(&["ps", "-a", "--filter", &format!("label={}", self.label), "--format", "{{.Names}}"]);
        for name in names.unwrap_or_default().lines() {
            let _ = docker(&["rm", "-f", "-v", name]);
            let _ = docker(&["volume", "rm", "-f", &format!("{name}-docker")]);
        }
        let _ = docker(&["network", "rm", &self.network]);
    }
}

/// A key pair for `ubuntu` on the machines (dropped with the directory).
#[allow(dead_code)] // each test binary compiles support on its own; not all use this
pub fn login_key() -> (tempfile::TempDir, std::path::PathBuf) {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id");
    super::remote::keypair(&key);
    (keys, key)
}

/// Waits until sshd on `ip` says its banner: a machine someone brings is running already, and a
/// system container's sshd can take well over fleet's 20 s patience for a host to start on a
/// loaded CI machine (systemd boots first).
#[allow(dead_code)] // each test binary compiles support on its own; not all use this
pub fn wait_for_sshd(ip: &str, within: std::time::Duration) {
    use std::io::Read;
    let deadline = std::time::Instant::now() + within;
    let addr: std::net::SocketAddr = format!("{ip}:22").parse().expect("an IPv4 address");
    loop {
        let mut banner = [0u8; 4];
        let said = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).and_then(|mut s| {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
            s.read_exact(&mut banner)
        });
        if said.is_ok() && &banner == b"SSH-" {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "sshd on {ip} said no banner within {within:?}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
