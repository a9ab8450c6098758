//! End-to-end: a remote stage's proxy container in `down` (stop, `--destroy`) and in an `up`
//! whose file routes nothing: planned as typed steps, the dry run equal to the run, found by the
//! stage's labels only (another stage's proxy is never touched). A brought host on the loopback
//! sshd; the proxy is stood in for by a labelled container, so no port is published.

mod support;

use serde_json::{Value, json};
use support::remote::Sshd;
use support::{Project, docker, docker_inspect};

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

/// A running container labelled as `stage`'s proxy of the project.
fn labelled_proxy(p: &Project, stage: &str) -> String {
    let name = format!("{}-{stage}-proxy", p.name);
    let (project, stage) = (format!("fleetflow.project={}", p.name), format!("fleetflow.stage={stage}"));
    let labels = ["--label", &project, "--label", &stage, "--label", "fleetflow.proxy=true"];
    let run = [&["run", "-d", "--name", &name, "--stop-signal", "SIGKILL"][..], &labels[..]].concat();
    docker(&[&run[..], &[support::IMAGE, "sleep", "100000"]].concat());
    assert_eq!(docker_inspect(&name, "{{.State.Running}}").as_deref(), Some("true"), "{name} was not started");
    name
}

#[test]
fn a_remote_stage_s_proxy_is_planned_and_done_by_down_and_by_an_up_without_routes() {
    let sshd = Sshd::start("");
    let kdl = format!(
        r#"
project "{{project}}"
service "db" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL" }}
stage "pre" {{
    server "box-1" {{
        provider "host"
        address "127.0.0.1"
        ssh user="root" port={port} identity="{identity}"
    }}
    service "db"
}}
"#,
        port = sshd.port,
        identity = sshd.identity().display(),
    );
    let p = Project::new("remote-proxy", &kdl);
    p.ok(&["up", "pre"]);
    let proxy = labelled_proxy(&p, "pre");
    let foreign = labelled_proxy(&p, "other");

    // down: the proxy stops first, in the plan (JSON, text) and in the run.
    let stop = plan_json(&p, &["down", "pre"]);
    assert_eq!(stop["actions"], json!([{"action": "stop_proxy"}, {"action": "stop_container", "service": "db"}]));
    let dry = p.fleet(&["down", "pre", "--dry-run"]);
    let run = p.ok(&["down", "pre"]);
    assert_eq!(action_lines(&dry.stdout), ["~ proxy: stop", "~ container db: stop"], "{dry:?}");
    assert_eq!(action_lines(&dry.stdout), action_lines(&run.stdout), "the run does the plan it printed");
    assert_eq!(docker_inspect(&proxy, "{{.State.Running}}").as_deref(), Some("false"));
    assert_eq!(docker_inspect(&foreign, "{{.State.Running}}").as_deref(), Some("true"), "another stage's proxy");

    // up of a file that routes nothing: the proxy left behind goes, as a step of the plan.
    let up = plan_json(&p, &["up", "pre"]);
    assert_eq!(up["actions"].as_array().and_then(|a| a.first()), Some(&json!({"action": "remove_proxy"})), "{up}");
    let run = p.ok(&["up", "pre"]);
    assert!(action_lines(&run.stdout).contains(&"- proxy".to_string()), "{run:?}");
    assert_eq!(docker_inspect(&proxy, "{{.Id}}"), None, "the proxy outlived its routes");
    assert_eq!(docker_inspect(&foreign, "{{.State.Running}}").as_deref(), Some("true"), "another stage's proxy");

    // --destroy: the proxy is removed first, listed like every removal.
    let proxy = labelled_proxy(&p, "pre");
    let destroy = plan_json(&p, &["down", "pre", "--destroy", "--yes"]);
    assert_eq!(destroy["actions"].as_array().and_then(|a| a.first()), Some(&json!({"action": "remove_proxy"})));
    let dry = p.fleet(&["down", "pre", "--destroy", "--yes", "--dry-run"]);
    let run = p.ok(&["down", "pre", "--destroy", "--yes"]);
    assert_eq!(action_lines(&dry.stdout)[0], "- proxy", "{dry:?}");
    assert_eq!(action_lines(&dry.stdout), action_lines(&run.stdout), "the run does the plan it printed");
    assert_eq!(docker_inspect(&proxy, "{{.Id}}"), None, "the proxy outlived --destroy");
    assert_eq!(docker_inspect(&foreign, "{{.State.Running}}").as_deref(), Some("true"), "another stage's proxy");
}
