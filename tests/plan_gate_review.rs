//! End-to-end: what a gated run (`--plan-hash`, as `fleet mcp` apply runs it) may do before its
//! gate is checked — nothing — and that the dry run and the gated run plan alike when an
//! interrupted replacement left a second container of a routed service.

mod support;

use fleetflow::plan::gate::{PlanIntent, plan_hash};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use support::{Project, docker, docker_inspect};

const ROUTED: &str = r#"
project "{project}"
service "web" {
    image "{image}"
    command "sh" "-c" "mkdir -p /w && echo v1 > /w/index.html && echo ok > /w/up && exec httpd -f -p 8080 -h /w"
    route "shop.test" port=8080 drain="1s"
    stop_signal "SIGKILL"
}
stage "local" {
    service "web"
    proxy {
        image "fleetflow-test/caddy:2"
        tls #false
        http_port {http_port}
    }
}
"#;

fn ensure_caddy_image() {
    if docker_inspect("fleetflow-test/caddy:2", "{{.Id}}").is_some() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-caddy-image.sh");
    assert!(Command::new("bash").arg(script).status().expect("run the caddy build script").success());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The hash `fleet mcp` hands out for `up local`: the dry run's JSON and the resolved stage.
fn up_hash(p: &Project) -> String {
    let plan = p.fleet(&["up", "local", "--dry-run", "--format", "json"]);
    assert!(matches!(plan.code, 0 | 2), "{plan:?}");
    let config = p.ok(&["config", "--format", "json", "--show-secrets", "local"]);
    let (plan, config): (Value, Value) =
        (serde_json::from_str(&plan.stdout).unwrap(), serde_json::from_str(&config.stdout).unwrap());
    plan_hash("local", PlanIntent::Up, &plan, &config)
}

/// A second, never-started container of `web` with its labels: what a kill -9 between "new
/// container created" and "proxy switched" leaves.
fn leave_a_second_web(p: &Project) -> String {
    let labels: Value =
        serde_json::from_str(&docker(&["inspect", "-f", "{{json .Config.Labels}}", &p.container("local", "web")]))
            .unwrap();
    let name = format!("{}-leftover", p.container("local", "web"));
    let mut args = vec!["create".to_string(), "--name".into(), name.clone()];
    for (k, v) in labels.as_object().unwrap() {
        args.extend(["--label".into(), format!("{k}={}", v.as_str().unwrap())]);
    }
    args.extend([support::IMAGE.to_string(), "sleep".into(), "1000".into()]);
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(docker_inspect(&name, "{{.Id}}").is_some(), "the leftover was not created");
    name
}

#[test]
fn a_gated_up_removes_nothing_before_its_gate_and_plans_as_its_dry_run() {
    ensure_caddy_image();
    let p = Project::new("gate-leftover", &ROUTED.replace("{http_port}", &free_port().to_string()));
    p.ok(&["up", "local"]);
    let leftover = leave_a_second_web(&p);

    // A hash for another world: refused, and the refusal changed nothing (the leftover stays).
    p.fleet(&["up", "local", "--plan-hash", &"0".repeat(64)]).fails_with(1, &["nothing was changed"]);
    assert!(docker_inspect(&leftover, "{{.Id}}").is_some(), "a refused gated run removed a container");

    // The dry run and the run plan the same stage: the leftover is tidied, not started.
    let dry = p.fleet(&["up", "local", "--dry-run", "--format", "json"]);
    let plan: Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(plan["actions"], serde_json::json!([]), "{}", dry.stdout);
    let said = serde_json::json!([{"service": "web", "container": leftover, "keeps": p.container("local", "web")}]);
    assert_eq!(plan["leftovers"], said, "the plan holds what its warning says: {}", dry.stdout);
    assert!(dry.stderr.contains("left by an interrupted replacement"), "the dry run says so: {}", dry.stderr);
    let run = p.fleet(&["up", "local", "--plan-hash", &up_hash(&p)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(docker_inspect(&leftover, "{{.Id}}").is_none(), "the leftover was tidied after the gate");
    assert_eq!(p.inspect("local", "web", "{{.State.Running}}").as_deref(), Some("true"));
}
