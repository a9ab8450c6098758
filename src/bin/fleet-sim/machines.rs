//! Machine mode: each simulated server is a real machine, a system container on this machine's
//! Docker (systemd as PID 1, sshd, a login user `ubuntu`, no container engine) booted from the
//! image `scripts/build-server-image.sh` builds. It has its own address on a dedicated network
//! (kept across power cycles, like Sakura's shared IP) and its own disk (the container's
//! filesystem plus a volume at /var/lib/docker). Power on starts it, an ACPI shutdown runs
//! `systemctl poweroff` inside, a forced one kills it, and a guest that powers itself off is seen
//! as down. Disk configuration does what Sakura's does, before the first boot: the SSH keys of
//! `ubuntu`, the host name, the password, and the startup scripts (notes), which the image runs
//! once as root at first boot.
//!
//! The Docker CLI does the work: the simulator is a test rig, and each call is one short command.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Flags that boot systemd in a container where `--privileged` is refused (a bounding set
/// without CAP_SYS_RESOURCE): every capability but that one, no seccomp or AppArmor profile,
/// tmpfs for /run, the host's cgroup tree, and the stop signal systemd expects.
const SYSTEM_CONTAINER_FLAGS: &[&str] = &[
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--stop-signal",
    "SIGRTMIN+3",
    "-e",
    "container=docker",
];

/// What a disk edit asked for, applied before the server's first boot.
#[derive(Debug, Clone, Default)]
pub struct DiskConfig {
    pub host_name: Option<String>,
    pub ssh_keys: Vec<String>,
    pub password: Option<String>,
    /// (note name, script) in the order the disk lists them.
    pub scripts: Vec<(String, String)>,
}

/// The rig: which image, which network.
#[derive(Debug, Clone)]
pub struct Machines {
    pub image: String,
    pub network: String,
    /// The first three octets of the network's /24.
    pub prefix: [u8; 3],
    /// Labels every container and volume, so a test run removes what its simulator made.
    pub label: String,
}

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker").args(args).stdin(Stdio::null()).output().map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Machines {
    /// `<network>-<server id>`: two simulators number their servers alike, their networks differ.
    pub fn container(&self, id: u64) -> String {
        format!("{}-{id}", self.network)
    }

    fn volume(&self, id: u64) -> String {
        format!("{}-docker", self.container(id))
    }

    /// The address of the n-th machine on the rig's network.
    pub fn address(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], n)
    }

    fn exists(&self, id: u64) -> bool {
        docker(&["container", "inspect", "-f", "{{.Id}}", &self.container(id)]).is_ok()
    }

    /// Running, as the engine says; a machine that powered itself off has exited.
    pub fn running(&self, id: u64) -> bool {
        docker(&["container", "inspect", "-f", "{{.State.Running}}", &self.container(id)]).is_ok_and(|s| s == "true")
    }

    /// Powers the machine on; on its first boot it is made from the image with the disk config.
    pub fn power_on(&self, id: u64, ip: Ipv4Addr, config: &DiskConfig) -> Result<(), String> {
        if !self.exists(id) {
            self.create(id, ip, config)?;
        }
        docker(&["start", &self.container(id)]).map(|_| ())
    }

    fn create(&self, id: u64, ip: Ipv4Addr, config: &DiskConfig) -> Result<(), String> {
        let name = self.container(id);
        let host = config.host_name.clone().unwrap_or_else(|| name.clone());
        let ip = ip.to_string();
        let volume = format!("{}:/var/lib/docker", self.volume(id));
        let mut args = vec!["create", "--name", &name, "--hostname", &host, "--network", &self.network, "--ip", &ip];
        args.extend(["--label", &self.label, "-v", &volume]);
        args.extend(SYSTEM_CONTAINER_FLAGS);
        args.push(&self.image);
        docker(&args)?;
        let staged = std::env::temp_dir().join(format!("fleetsim-{}-{id}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staged);
        let result = self.stage_disk(&name, &staged, config);
        let _ = std::fs::remove_dir_all(&staged);
        result
    }

    fn stage_disk(&self, name: &str, root: &std::path::Path, config: &DiskConfig) -> Result<(), String> {
        // The user's files, owned by ubuntu (uid 1000 in the image).
        let ssh = root.join("user/home/ubuntu/.ssh");
        std::fs::create_dir_all(&ssh).map_err(|e| e.to_string())?;
        std::fs::write(ssh.join("authorized_keys"), config.ssh_keys.join("\n") + "\n").map_err(|e| e.to_string())?;
        set_mode(&ssh, 0o700)?;
        set_mode(&ssh.join("authorized_keys"), 0o600)?;
        copy_in(name, &root.join("user"), "home/ubuntu/.ssh", 1000)?;
        // Root's: the startup scripts, numbered in the disk's order, and the password.
        let startup = root.join("root/var/lib/fleetflow-sim/startup");
        std::fs::create_dir_all(&startup).map_err(|e| e.to_string())?;
        let mut scripts = config.scripts.clone();
        if let Some(pw) = &config.password {
            scripts.insert(0, ("password".into(), format!("echo 'ubuntu:{}' | chpasswd\n", pw.replace('\'', ""))));
        }
        for (i, (note, script)) in scripts.iter().enumerate() {
            let file = startup.join(format!("{i:02}-{}.sh", sanitize(note)));
            std::fs::write(&file, script).map_err(|e| e.to_string())?;
            set_mode(&file, 0o700)?;
        }
        copy_in(name, &root.join("root"), "var/lib/fleetflow-sim/startup", 0)
    }

    /// ACPI: the guest shuts itself down, unless it ignores the button.
    pub fn acpi_shutdown(&self, id: u64) {
        // Not waited for: a real shutdown takes its time, and `running` tells when it is over.
        let _ = Command::new("docker")
            .args(["exec", &self.container(id), "systemctl", "poweroff"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    pub fn force_off(&self, id: u64) {
        let _ = docker(&["kill", &self.container(id)]);
    }

    /// The server and its disks are deleted: the container and its volume go.
    pub fn remove(&self, id: u64) {
        let _ = docker(&["rm", "-f", "-v", &self.container(id)]);
        let _ = docker(&["volume", "rm", "-f", &self.volume(id)]);
    }
}

/// Copies `path` (a directory of the staged tree) into the created, not yet started container,
/// owned by `uid`. Only that directory is archived, never its parents, so the image's own
/// directories keep their owners and modes.
fn copy_in(container: &str, dir: &std::path::Path, path: &str, uid: u32) -> Result<(), String> {
    let owner = uid.to_string();
    let tar = Command::new("tar")
        .args(["--numeric-owner", "--owner", &owner, "--group", &owner, "-C"])
        .arg(dir)
        .args(["-c", path])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("tar: {e}"))?;
    let status = Command::new("docker")
        .args(["cp", "-", &format!("{container}:/")])
        .stdin(tar.stdout.ok_or("tar has no stdout")?)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("docker cp: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("docker cp into {container} failed")) }
}

fn set_mode(path: &std::path::Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}
