//! End-to-end: a remote `down` is one plan value. Its dry run (JSON: typed fields) is exactly what
//! the run then does and says, for a brought host and for a cloud server.

mod support;

use serde_json::{Value, json};
use support::Project;
use support::remote::{Sim, Sshd, sakura_project};

fn plan_json(p: &Project, args: &[&str]) -> Value {
    let mut dry: Vec<&str> = args.to_vec();
    dry.extend(["--dry-run", "--format", "json"]);
    let out = p.fleet(&dry);
    assert!(matches!(out.code, 0 | 2), "a dry run exits 0 or 2: {out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// The plan-style lines of an output, in order.
fn action_lines(out: &str) -> Vec<String> {
    out.lines().filter(|l| ["+ ", "~ ", "-/+ ", "- "].iter().any(|p| l.starts_with(p))).map(String::from).collect()
}

#[test]
fn a_brought_host_s_destroy_is_planned_as_data_and_the_machine_stays() {
    let sshd = Sshd::start("");
    let kdl = format!(
        r#"
project "{{project}}"
service "db" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL" }}
service "web" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL"; depends_on "db" }}
stage "pre" {{
    server "box-1" {{
        provider "host"
        address "127.0.0.1"
        ssh user="root" port={port} identity="{identity}"
    }}
    service "db"
    service "web"
}}
"#,
        port = sshd.port,
        identity = sshd.identity().display(),
    );
    let p = Project::new("downplan-host", &kdl);
    p.ok(&["up", "pre"]);
    let network = format!("{}-pre", p.name);

    let stop = plan_json(&p, &["down", "pre"]);
    assert_eq!(
        stop["actions"],
        json!([{"action": "stop_container", "service": "web"}, {"action": "stop_container", "service": "db"}]),
        "dependents first"
    );
    assert_eq!(stop["infrastructure"], json!([]), "a brought host is never powered off");

    let destroy = plan_json(&p, &["down", "pre", "--destroy", "--yes"]);
    assert_eq!(
        destroy["actions"],
        json!([
            {"action": "remove_container", "service": "web", "orphan": false},
            {"action": "remove_container", "service": "db", "orphan": false},
            {"action": "remove_network", "name": network},
        ])
    );
    assert_eq!(destroy["infrastructure"], json!([]), "nor deleted");
    assert_eq!(destroy["summary"]["destroy"], 3);
    let dry = p.fleet(&["down", "pre", "--destroy", "--yes", "--dry-run"]);
    let run = p.ok(&["down", "pre", "--destroy", "--yes"]);
    assert_eq!(action_lines(&dry.stdout), action_lines(&run.stdout), "the run does the plan it printed");
    assert_eq!(
        run.stdout.lines().last(),
        Some("Stage pre is destroyed, except: server box-1 (a brought host) keeps running."),
        "{}",
        run.stdout
    );
    assert!(p.containers().is_empty(), "{:?}", p.containers());
}

#[test]
fn a_cloud_server_s_suspend_and_destroy_are_planned_as_data() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("downplan-cloud", &sim, &sshd);
    p.ok(&["up", "dev"]);

    let suspend = plan_json(&p, &["down", "dev", "--suspend"]);
    assert_eq!(
        suspend["actions"],
        json!([{"action": "stop_container", "service": "api"}, {"action": "stop_container", "service": "db"}])
    );
    assert_eq!(suspend["infrastructure"], json!([{"action": "power_off", "server": "creo-dev-01"}]));
    assert_eq!((suspend["summary"]["change"].as_u64(), suspend["summary"]["destroy"].as_u64()), (Some(3), Some(0)));

    let destroy = plan_json(&p, &["down", "dev", "--destroy", "--yes"]);
    assert_eq!(
        destroy["infrastructure"],
        json!([
            {"action": "power_off", "server": "creo-dev-01"},
            {"action": "delete_server", "server": "creo-dev-01", "provider": "sakura-cloud tk1a", "disks": 1},
        ])
    );
    assert_eq!(sim.state()["servers"].as_array().map(Vec::len), Some(1), "a dry run changes nothing");
    let run = p.ok(&["down", "dev", "--destroy", "--yes"]);
    assert_eq!(
        action_lines(&run.stdout)[action_lines(&run.stdout).len() - 2..],
        ["~ server creo-dev-01: power off", "- server creo-dev-01 (sakura-cloud tk1a) with 1 disk(s)"]
    );
    assert_eq!(run.stdout.lines().last(), Some("Stage dev is destroyed."), "{}", run.stdout);
    assert!(sim.state()["servers"].as_array().is_some_and(Vec::is_empty));
}

#[test]
fn a_server_deleted_elsewhere_between_plan_and_power_off_stops_the_run_with_its_name() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let mut p = two_servers("downplan-vanish", &sim, &sshd);
    // db-1 ignores its shutdown for a while (forced after 4 s): a window after the plan.
    p.env.retain(|(k, _)| k != "FLEET_SHUTDOWN_FORCE_AFTER_MS");
    p.env.push(("FLEET_SHUTDOWN_FORCE_AFTER_MS".into(), "4000".into()));
    p.ok(&["up", "dev"]);
    sim.fault(r#"{"ignore_shutdown": true}"#);

    let mut child = p.cmd(&["down", "dev", "--suspend"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    // Planned and under way (db-1 goes first, web-1 holds the lock and goes last): someone else
    // deletes web-1 meanwhile.
    while !seen.contains("~ server db-1: power off") {
        assert_ne!(stdout.read_line(&mut seen).unwrap(), 0, "down ended before powering off: {seen}");
    }
    delete_elsewhere(&sim, "web-1");
    stdout.read_to_string(&mut seen).unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();

    assert_eq!(status.code(), Some(1), "stdout:\n{seen}\nstderr:\n{stderr}");
    assert!(stderr.contains("server web-1") && stderr.contains("no longer exists"), "{stderr}");
    assert!(!seen.contains("is suspended"), "no success line for a power-off that was not done: {seen}");
    assert!(server(&sim, "db-1").is_some_and(|s| s["power"] == "Down"), "the step before it was done");
    // The lock stayed on web-1, which is gone; on this rig it is a directory of this machine.
    let home = std::env::var("HOME").expect("HOME");
    let _ = std::fs::remove_dir_all(std::path::Path::new(&home).join(format!(".fleetflow/locks/{}@dev", p.name)));
}

#[test]
fn a_destroy_that_waited_for_the_lock_plans_the_server_the_other_run_created() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = two_servers("downplan-waited", &sim, &sshd);
    p.ok(&["up", "dev"]);
    // db-1 does not exist yet when this machine's destroy looks...
    delete_elsewhere(&sim, "db-1");
    let web1 = server(&sim, "web-1").expect("web-1");
    // ...because another machine's run holds the stage (its lock on web-1, the first server).
    let home = std::env::var("HOME").expect("HOME");
    let lock = std::path::Path::new(&home).join(format!(".fleetflow/locks/{}@dev", p.name));
    std::fs::create_dir_all(&lock).unwrap();
    std::fs::write(lock.join("holder"), "another machine's up\n").unwrap();
    let gets = || sim.requests().get("GET /server").copied().unwrap_or(0);
    let before = gets();
    let child = p
        .cmd(&["down", "dev", "--destroy", "--yes", "--lock-wait", "1m"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while gets() == before {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    // That run creates db-1, then gives the stage back.
    let tags: Vec<String> = web1["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str().map(|t| t.replace("web-1", "db-1")))
        .collect();
    let body = json!({"Server": {"Name": "db-1", "Tags": tags, "ServerPlan": {"CPU": 1, "MemoryMB": 1024},
        "ConnectedSwitches": [{"Scope": "shared"}]}});
    sim.sakura_in("tk1a", "POST", "server", &body.to_string());
    assert!(server(&sim, "db-1").is_some());
    std::fs::remove_dir_all(&lock).unwrap();

    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("- server db-1"), "{stdout}");
    assert!(server(&sim, "db-1").is_none(), "no server of the stage is left: {:#}", sim.state()["servers"]);
    assert!(server(&sim, "web-1").is_none());
}

/// A stage `dev` on two Sakura servers whose SSH leads to `sshd`: web-1 (api, the lock holder)
/// and db-1 (db).
fn two_servers(test: &str, sim: &Sim, sshd: &Sshd) -> Project {
    let kdl = format!(
        r#"
project "{{project}}"
providers {{ sakura-cloud zone="tk1a" }}
service "db" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL" }}
service "api" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL" }}
stage "dev" {{
    server "web-1" {{ provider "sakura-cloud"; ssh-key "{key}"; ssh user="root" port={port} identity="{id}"; services "api" }}
    server "db-1" {{ provider "sakura-cloud"; ssh-key "{key}"; ssh user="root" port={port} identity="{id}"; services "db" }}
    service "db" "api"
}}
"#,
        key = sshd.public_key().display(),
        port = sim.ssh_port,
        id = sshd.identity().display(),
    );
    let mut p = Project::new(test, &kdl);
    p.env = support::remote::sim_env(sim);
    p
}

fn server(sim: &Sim, name: &str) -> Option<Value> {
    sim.state()["servers"].as_array().and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
}

/// Deletes a server through the API, as another tool would (forced off first).
fn delete_elsewhere(sim: &Sim, name: &str) {
    let id = server(sim, name).and_then(|s| s["id"].as_u64()).expect("the server exists");
    sim.sakura_in("tk1a", "DELETE", &format!("server/{id}/power"), r#"{"Force": true}"#);
    while server(sim, name).is_some_and(|s| s["power"] != "Down") {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sim.sakura_in("tk1a", "DELETE", &format!("server/{id}"), "{}");
}
