//! End-to-end, from review 2 of the two-round remote `up`: what a gated run (`--plan-hash`, as
//! `fleet mcp` apply runs it) may do that its hashed plan did not say.

mod support;

use fleetflow::plan::gate::{PlanIntent, plan_hash};
use serde_json::Value;
use support::Project;
use support::machines::MachineRig;
use support::remote::{Sshd, host_project, sim_env};

/// The hash `fleet mcp` hands out for `up STAGE EXTRA…`: the dry run's JSON and the resolved stage.
fn up_hash(p: &Project, stage: &str, extra: &[&str]) -> String {
    let mut args = vec!["up", stage, "--dry-run", "--format", "json"];
    args.extend(extra);
    let plan = p.fleet(&args);
    assert!(matches!(plan.code, 0 | 2), "{plan:?}");
    let config = p.ok(&["config", "--format", "json", "--show-secrets", stage]);
    let (plan, config): (Value, Value) =
        (serde_json::from_str(&plan.stdout).unwrap(), serde_json::from_str(&config.stdout).unwrap());
    plan_hash(stage, PlanIntent::Up, &plan, &config)
}

#[test]
fn a_gated_up_never_installs_an_engine_before_its_gate() {
    // No docker CLI, no socket through SSH, no apt-get: a run would try to install an engine.
    let sshd = Sshd::start("SetEnv PATH=/nonexistent\nMatch all\n    AllowStreamLocalForwarding no");
    let p = host_project("review2-gate-noengine", &sshd);
    p.fleet(&["up", "pre"]).fails_with(1, &["without apt-get fleet cannot install it"]);
    // A gated run reaches the server as its dry run does: the engine's absence is reported, and
    // no install is tried before the plan is checked (an install is no step of any plan).
    let gated = p.fleet(&["up", "pre", "--plan-hash", &"0".repeat(64)]);
    gated.fails_with(1, &["no container engine answers there"]);
    assert!(!gated.stderr.contains("install it"), "a gated run went for an install first: {}", gated.stderr);
}

/// `docker …` inside the machine, as root (the machine's own engine).
fn inside(rig: &MachineRig, id: u64, args: &[&str]) -> String {
    let out =
        std::process::Command::new("docker").args(["exec", &rig.container(id), "docker"]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the tag when the test ends, passed or not.
struct Tag(String);

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

fn build_here(tag: &str, label: &str) {
    let dockerfile = format!("FROM {}\nLABEL review2={label}\n", support::IMAGE);
    let mut child = std::process::Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), dockerfile.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "building {tag}");
}

#[test]
fn a_gated_up_whose_round_two_plans_other_steps_than_were_hashed_is_refused() {
    let rig = MachineRig::new("review2-gate");
    let sim = rig.sim();
    let (_keys, key) = support::machines::login_key();
    let tag = Tag(format!("fleetflow-test/busybox:review2-{}", std::process::id()));
    build_here(&tag.0, "one");
    let kdl = format!(
        r#"
project "{{project}}"
providers {{ sakura-cloud zone="tk1a" }}
service "web" {{ image "{image}"; command "sleep 100000"; stop_signal "SIGKILL" }}
stage "dev" {{
    server "m1" {{
        provider "sakura-cloud"
        ssh-key "{key}.pub"
        ssh user="ubuntu" port=22 identity="{key}"
    }}
    service "web"
}}
"#,
        image = tag.0,
        key = key.display()
    );
    let mut p = Project::new("review2-gate-round2", &kdl);
    p.env = sim_env(&sim);
    p.ok(&["up", "dev"]);
    let id = sim.state()["servers"][0]["id"].as_u64().expect("one server");
    let container = p.container("dev", "web");
    let before = inside(&rig, id, &["inspect", "-f", "{{.Id}}", &container]);
    assert!(!before.is_empty(), "web runs on the machine");

    // The image is rebuilt here. The dry run of `up --pull` pulls nothing: it plans nothing,
    // and that empty plan is what the hash is for.
    build_here(&tag.0, "two");
    let hash = up_hash(&p, "dev", &["--pull"]);
    let (code, plan) = p.plan_json(&["up", "dev", "--pull"]);
    assert_eq!((code, &plan["actions"]), (0, &serde_json::json!([])), "{plan}");

    // The gated run passes its gate in round 1, then in round 2 fetches the new image and would
    // replace web: a step the hashed plan did not hold. Refused before web is touched.
    let gated = p.fleet(&["up", "dev", "--pull", "--plan-hash", &hash]);
    gated.fails_with(1, &["changed since plan", "1 to replace"]);
    assert_eq!(inside(&rig, id, &["inspect", "-f", "{{.Id}}", &container]), before, "web was replaced");

    // The plan the refusal names is what a new hash runs.
    let again = up_hash(&p, "dev", &["--pull"]);
    let run = p.fleet(&["up", "dev", "--pull", "--plan-hash", &again]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_ne!(inside(&rig, id, &["inspect", "-f", "{{.Id}}", &container]), before, "web runs the new image");
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn an_engine_the_login_may_not_use_is_never_installed_over() {
    // The engine runs, but this login is not in its group: the CLI says "permission denied",
    // and the socket is not forwarded to it. apt-get is there (a fake that records its calls).
    let bin = tempfile::tempdir().unwrap();
    let calls = bin.path().join("apt-calls");
    let fake = |name: &str, body: &str| {
        let path = bin.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    let docker_calls = bin.path().join("docker-calls");
    fake(
        "docker",
        &format!(
            "echo \"$@\" >> {}; echo 'permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock' >&2; exit 1",
            docker_calls.display()
        ),
    );
    fake("apt-get", &format!("echo \"$@\" >> {}; exit 1", calls.display()));
    let sshd = Sshd::start(&format!(
        "SetEnv PATH={}:/usr/bin:/bin\nMatch all\n    AllowStreamLocalForwarding no",
        bin.path().display()
    ));
    let p = host_project("review2-engine-denied", &sshd);
    p.fleet(&["up", "pre"]).fails_with(1, &["an engine runs there", "may not use its socket", "usermod -aG docker"]);
    assert!(!calls.exists(), "apt-get ran: {}", std::fs::read_to_string(&calls).unwrap_or_default());
    // The engine check's `docker version` is the one the refusal goes by: it is not asked twice.
    let asked = std::fs::read_to_string(&docker_calls).unwrap_or_default();
    assert_eq!(asked.lines().filter(|l| l.starts_with("version")).count(), 1, "{asked}");
}

/// `db` writes 300 MB of noise into its volume once, then says so.
const BIG_VOLUME: &str = r#"
project "{project}"
service "db" {
    image "{image}"
    command "sh" "-c" "[ -f /data/ready ] || { head -c 300000000 /dev/urandom > /data/blob; touch /data/ready; }; exec sleep 100000"
    volumes { volume "data" "/data" }
    stop_signal "SIGKILL"
}
stage "local" { service "db" }
"#;

#[test]
fn ctrl_c_during_a_backup_with_stop_starts_the_stopped_services_again() {
    let p = Project::new("review2-backup-int", BIG_VOLUME);
    p.ok(&["up", "local"]);
    let ready = std::time::Instant::now();
    while p.fleet(&["exec", "-T", "local", "db", "test", "-f", "/data/ready"]).code != 0 {
        assert!(ready.elapsed() < std::time::Duration::from_secs(120), "db never filled its volume");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let file = p.path().join("b.tar");
    let child = p
        .cmd(&["backup", "local", "--stop", "-o", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once --stop stopped db, the copy runs: Ctrl-C then.
    let stopped = std::time::Instant::now();
    while p.inspect("local", "db", "{{.State.Running}}").as_deref() == Some("true") {
        assert!(stopped.elapsed() < std::time::Duration::from_secs(60), "backup --stop never stopped db");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(!file.exists(), "an interrupted backup left a file");
    assert_eq!(
        p.inspect("local", "db", "{{.State.Running}}").as_deref(),
        Some("true"),
        "the interrupted backup left db stopped: {stderr}"
    );
    let down = p.fleet(&["down", "local", "--destroy", "--volumes", "--yes"]);
    assert_eq!(down.code, 0, "{down:?}");
}
