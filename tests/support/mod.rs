//! A small builder for end-to-end tests: a temp project, the real `fleet` binary, the real engine.
#![allow(dead_code)]

pub mod machines;
pub mod remote;
pub mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const IMAGE: &str = "fleetflow-test/busybox:latest";

/// Builds the local busybox image once per test process (never pulled).
pub fn ensure_image() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-busybox-image.sh");
        let status = Command::new("bash").arg(script).status().expect("run image build script");
        assert!(status.success(), "building {IMAGE} failed");
    });
}

/// A throw-away project with its own name; everything it made is removed on drop.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub name: String,
    /// Extra environment for every `fleet` run (credentials, API root, test timings).
    pub env: Vec<(String, String)>,
}

impl Project {
    /// `kdl` may use `{project}` and `{image}` placeholders.
    pub fn new(test: &str, kdl: &str) -> Self {
        ensure_image();
        let name = format!("t{}-{}", std::process::id(), test.replace('_', "-"));
        let name: String = name.chars().take(50).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Self { dir, name, env: Vec::new() };
        p.write(kdl);
        p
    }

    pub fn write(&self, kdl: &str) {
        let text = kdl.replace("{project}", &self.name).replace("{image}", IMAGE);
        std::fs::write(self.path().join("fleet.kdl"), text).expect("write fleet.kdl");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fleet"));
        c.args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("FLEET_LOCK_DIR", self.path().join(".locks"))
            .env_remove("FLEET_STAGE")
            .env("FLEET_STATE_DIR", self.path().join(".state"))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn fleet(&self, args: &[&str]) -> Run {
        let out = self.cmd(args).output().expect("run fleet");
        Run::from(out, args)
    }

    /// Runs and asserts exit 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.fleet(args);
        assert_eq!(r.code, 0, "fleet {args:?} failed\nstdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        r
    }

    pub fn container(&self, stage: &str, service: &str) -> String {
        format!("{}-{stage}-{service}", self.name)
    }

    /// `docker inspect -f TEMPLATE` of a stage's service container; None when it does not exist.
    pub fn inspect(&self, stage: &str, service: &str, template: &str) -> Option<String> {
        docker_inspect(&self.container(stage, service), template)
    }

    /// Container names of this project, sorted.
    pub fn containers(&self) -> Vec<String> {
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=fleetflow.project={}", self.name),
            "--format",
            "{{.Names}}",
        ]);
        let mut v: Vec<String> = out.lines().map(String::from).filter(|l| !l.is_empty()).collect();
        v.sort();
        v
    }

    pub fn network_exists(&self, stage: &str) -> bool {
        docker(&["network", "ls", "--format", "{{.Name}}"]).lines().any(|l| l == format!("{}-{stage}", self.name))
    }

    pub fn volume_exists(&self, name: &str) -> bool {
        docker(&["volume", "ls", "--format", "{{.Name}}"]).lines().any(|l| l == name)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let label = format!("label=fleetflow.project={}", self.name);
        let ids = docker(&["ps", "-aq", "--filter", &label]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            docker(&args);
        }
        for kind in ["network", "volume"] {
            let names = docker(&[kind, "ls", "-q", "--filter", &label]);
            for n in names.split_whitespace() {
                docker(&[kind, "rm", n]);
            }
        }
    }
}

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn docker_inspect(name: &str, template: &str) -> Option<String> {
    let out = Command::new("docker").args(["inspect", "-f", template, name]).output().expect("docker CLI");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A finished `fleet` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output, _args: &[&str]) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code and that stderr says each of `needles`.
    pub fn fails_with(&self, code: i32, needles: &[&str]) {
        assert_eq!(self.code, code, "{self:?}");
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}:\n{}", self.stderr);
        }
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// RFC 3339 nanosecond timestamps from Docker → comparable nanoseconds.
pub fn nanos(ts: &str) -> i128 {
    ts.parse::<jiff::Timestamp>().expect("docker timestamp").as_nanosecond()
}
