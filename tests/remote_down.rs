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
