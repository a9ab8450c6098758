//! End-to-end: remote stages against fleet-sim (Sakura Cloud), a real sshd on loopback as the
//! booted machine, and the real Docker engine behind it.

mod support;

use serde_json::json;
use std::time::Duration;
use support::Project;
use support::remote::{Sim, Sshd, host_project, sakura_project, sim_env};
use support::report::find;

fn servers(sim: &Sim) -> Vec<serde_json::Value> {
    sim.state()["servers"].as_array().cloned().unwrap_or_default()
}

fn server_ip(sim: &Sim) -> String {
    servers(sim)[0]["ip"].as_str().expect("server has an IP").to_string()
}

fn ssh_reachable(sim: &Sim) -> bool {
    let addr = format!("{}:{}", server_ip(sim), sim.ssh_port);
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1)).is_ok()
}

#[test]
fn the_whole_ladder_up_down_suspend_up_destroy() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("ladder", &sim, &sshd);

    // up from nothing: server, disk, boot, SSH, containers.
    let up = p.ok(&["up", "dev"]);
    assert!(
        up.stdout.contains("Stage dev is up: 4 added, 1 changed"),
        "server, network, 2 containers; power on: {}",
        up.stdout
    );
    assert!(
        up.stdout.contains("+ server creo-dev-01 (sakura-cloud tk1a, 4 cores, 4 GB, 100 GB ssd, ubuntu-24.04)"),
        "{}",
        up.stdout
    );
    assert!(up.stdout.contains("+ container db") && up.stdout.contains("+ container api"), "{}", up.stdout);
    assert_eq!(servers(&sim).len(), 1);
    assert_eq!(servers(&sim)[0]["power"], "Up");
    assert_eq!(p.inspect("dev", "api", "{{.State.Running}}").as_deref(), Some("true"));
    let api_id = p.inspect("dev", "api", "{{.Id}}");

    // up again: nothing changes, and no mutating API call is made.
    let before = sim.requests();
    let again = p.ok(&["up", "dev"]);
    assert_eq!(again.stdout.trim(), "Stage dev is up to date; nothing to do.");
    let after = sim.requests();
    let spent: u64 = after.values().sum::<u64>() - before.values().sum::<u64>();
    assert_eq!(
        sim.mutating_requests(),
        before.iter().filter(|(k, _)| !k.starts_with("GET ")).map(|(_, v)| v).sum::<u64>()
    );
    assert_eq!(spent, 1, "a converged up costs one find-by-tag request: {after:?}");
    // A server found running is reached with one connection: `ssh` itself, no TCP probe first.
    let connections = sim.ssh_connections();
    p.ok(&["up", "dev"]);
    assert_eq!(sim.ssh_connections() - connections, 1, "a converged up opens one connection to the server");
    p.ok(&["ps", "dev"]);
    assert_eq!(sim.ssh_connections() - connections, 2, "ps opens one connection to the server");
    assert_eq!(p.inspect("dev", "api", "{{.Id}}"), api_id);

    // down: containers stop, the server keeps running.
    let down = p.ok(&["down", "dev"]);
    assert!(down.stdout.contains("~ container api: stop"), "{}", down.stdout);
    assert_eq!(p.inspect("dev", "api", "{{.State.Running}}").as_deref(), Some("false"));
    assert_eq!(servers(&sim)[0]["power"], "Up");

    // up climbs back.
    let up = p.ok(&["up", "dev"]);
    assert!(up.stdout.contains("~ container api: start"), "{}", up.stdout);

    // down --suspend: powered off, unreachable.
    let suspend = p.ok(&["down", "dev", "--suspend"]);
    assert!(suspend.stdout.contains("~ server creo-dev-01: power off"), "{}", suspend.stdout);
    assert!(suspend.stdout.contains("only their disks are billed"), "{}", suspend.stdout);
    assert_eq!(servers(&sim)[0]["power"], "Down");
    assert!(!ssh_reachable(&sim), "a powered-off server must not answer SSH");
    status_says_suspended(&p);

    // up boots it and brings the containers back.
    let up = p.ok(&["up", "dev"]);
    assert!(up.stdout.contains("~ server creo-dev-01: power on"), "{}", up.stdout);
    assert_eq!(p.inspect("dev", "api", "{{.State.Running}}").as_deref(), Some("true"));
    status_says_running(&p, &server_ip(&sim));

    // down --destroy: containers, server and disk gone.
    let destroy = p.ok(&["down", "dev", "--destroy", "--yes"]);
    assert!(destroy.stdout.contains("- server creo-dev-01 (sakura-cloud tk1a) with 1 disk(s)"), "{}", destroy.stdout);
    assert!(servers(&sim).is_empty());
    assert!(sim.state()["disks"].as_array().unwrap().is_empty());
    assert!(p.containers().is_empty(), "{:?}", p.containers());
    status_says_not_created(&p);
    let nothing = p.ok(&["down", "dev", "--destroy", "--yes"]);
    assert!(nothing.stdout.contains("nothing to do"), "{}", nothing.stdout);
}

/// `status` of the ladder's stage with its server powered off: suspended, services unknown.
fn status_says_suspended(p: &Project) {
    let status = p.status_json("dev");
    assert_eq!(status["status"], "suspended");
    let server = &status["servers"][0];
    assert_eq!((server["name"].as_str(), server["power"].as_str()), (Some("creo-dev-01"), Some("off")));
    for svc in ["db", "api"] {
        let row = find(&status["services"], "service", svc);
        assert_eq!(
            (row["state"].as_str(), row["reason"].as_str(), row["mark"].as_str()),
            (Some("unobserved"), Some("server_powered_off"), Some("absent")),
            "{row}"
        );
    }
    // How the text says it.
    let text = p.ok(&["status", "dev"]).stdout;
    assert!(text.lines().any(|l| l == "    Status: stopped (only its disk is billed)"), "{text}");
    assert!(text.lines().any(|l| l.ends_with("api  unknown (server powered off)")), "{text}");
}

/// `status` of the ladder's stage up: the server as the cloud reports it, every service running.
fn status_says_running(p: &Project, ip: &str) {
    let status = p.status_json("dev");
    assert_eq!((status["stage"].as_str(), status["type"].as_str()), (Some("dev"), Some("remote")));
    assert_eq!(status["status"], "running");
    let server = &status["servers"][0];
    assert_eq!(
        (server["name"].as_str(), server["provider"].as_str(), server["power"].as_str()),
        (Some("creo-dev-01"), Some("sakura-cloud (tk1a)"), Some("running"))
    );
    assert_eq!((server["cpu"].as_u64(), server["memory_gb"].as_u64()), (Some(4), Some(4)));
    assert_eq!(server["ip"].as_str(), Some(ip));
    assert_eq!(status["servers"].as_array().map(Vec::len), Some(1));
    for svc in ["db", "api"] {
        let row = find(&status["services"], "service", svc);
        assert_eq!((row["state"].as_str(), row["mark"].as_str()), (Some("running"), Some("ok")), "{row}");
    }
}

/// `status` of the ladder's stage after `--destroy`.
fn status_says_not_created(p: &Project) {
    let status = p.status_json("dev");
    assert_eq!(status["status"], "not_created");
    assert_eq!(status["servers"][0]["power"], "not_created");
    assert!(
        status["services"].as_array().unwrap().iter().all(|s| s["state"] == "not_created"),
        "{:#}",
        status["services"]
    );
}

fn server_count(sim: &Sim) -> usize {
    servers(sim).len()
}

#[test]
fn busy_api_is_retried_and_exactly_one_server_is_made() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("busy", &sim, &sshd);
    sim.fault(r#"{"busy": 3}"#);
    p.ok(&["up", "dev"]);
    assert_eq!(server_count(&sim), 1);
    // The disk's inputs (the engine startup script) are made before the server: the first write.
    assert_eq!(sim.requests()["POST /note"], 4, "three 503 busy answers, then the create");
    assert_eq!(sim.requests()["POST /server"], 1);
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn lost_create_response_is_followed_by_a_lookup_not_a_second_create() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let mut p = sakura_project("lostcreate", &sim, &sshd);
    p.env.push(("FLEET_SAKURA_TIMEOUT_MS".into(), "1500".into()));
    sim.fault(r#"{"slow_create_ms": 4000}"#);
    p.ok(&["up", "dev"]);
    assert_eq!(server_count(&sim), 1);
    assert_eq!(sim.requests()["POST /server"], 1, "a create whose answer was lost must never be repeated");
    assert_eq!(p.inspect("dev", "api", "{{.State.Running}}").as_deref(), Some("true"));
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn ignored_shutdown_is_resent_then_forced() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("ignored", &sim, &sshd);
    p.ok(&["up", "dev"]);
    sim.fault(r#"{"ignore_shutdown": true}"#);
    let r = p.ok(&["down", "dev", "--suspend"]);
    assert!(r.stderr.contains("ignored the shutdown; forcing power off"), "{}", r.stderr);
    assert_eq!(servers(&sim)[0]["power"], "Down");
    assert!(sim.requests()["DELETE /server/:id/power"] >= 3, "graceful, re-sent, then forced: {:?}", sim.requests());
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn failed_disk_copy_fails_clearly_and_the_next_up_converges_on_the_same_server() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("diskfail", &sim, &sshd);
    sim.fault(r#"{"fail_disk_copy": true}"#);
    p.fleet(&["up", "dev"])
        .fails_with(1, &["server creo-dev-01 (sakura-cloud tk1a): the disk copy from the OS archive failed"]);
    assert_eq!(server_count(&sim), 1);
    assert!(sim.state()["disks"].as_array().unwrap().is_empty(), "the failed disk is ours and useless: removed");
    p.ok(&["up", "dev"]);
    assert_eq!(server_count(&sim), 1, "no second server");
    assert_eq!(sim.requests()["POST /server"], 1);
    assert_eq!(p.inspect("dev", "db", "{{.State.Running}}").as_deref(), Some("true"));
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn wrong_or_missing_credentials_and_unreachable_api() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let mut p = sakura_project("creds", &sim, &sshd);
    p.env.retain(|(k, _)| k != "SAKURACLOUD_ACCESS_TOKEN_SECRET");
    p.fleet(&["up", "dev"]).fails_with(2, &["Sakura Cloud credentials are missing", "SAKURACLOUD_ACCESS_TOKEN_SECRET"]);
    assert!(sim.requests().is_empty(), "no request before the credentials are known");

    p.env.push(("SAKURACLOUD_ACCESS_TOKEN_SECRET".into(), "wrong-secret-value".into()));
    let r = p.fleet(&["up", "dev"]);
    r.fails_with(1, &["server creo-dev-01 (sakura-cloud tk1a)", "HTTP 401 unauthorized"]);
    assert!(
        !r.stderr.contains("wrong-secret-value") && !r.stdout.contains("wrong-secret-value"),
        "a secret was printed"
    );
    assert_eq!(server_count(&sim), 0);

    let mut unreachable = sakura_project("noapi", &sim, &sshd);
    for (k, v) in unreachable.env.iter_mut() {
        if k == "SAKURACLOUD_API_ROOT_URL" {
            *v = "http://127.0.0.1:9/cloud/zone".into();
        }
        if k == "FLEET_SAKURA_BACKOFF_MS" {
            *v = "5".into();
        }
    }
    unreachable.fleet(&["up", "dev"]).fails_with(1, &["server creo-dev-01 (sakura-cloud tk1a): finding by tag"]);
}

#[test]
fn ssh_key_the_server_refuses_is_a_clear_error() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let mut p = sakura_project("badkey", &sim, &sshd);
    let other = p.path().join("other_id");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(p.path().join("fleet.kdl")).unwrap();
    std::fs::write(
        p.path().join("fleet.kdl"),
        text.replace(&sshd.identity().display().to_string(), &other.display().to_string()),
    )
    .unwrap();
    p.env.push(("FLEET_SSH_WAIT_MS".into(), "20000".into()));
    p.fleet(&["up", "dev"]).fails_with(1, &["server creo-dev-01", "refused our SSH key"]);
    assert!(p.containers().is_empty());
}

#[test]
fn docker_missing_on_the_host_is_a_clear_error() {
    // No docker CLI, and no engine socket reachable through SSH: no engine there.
    let sshd = Sshd::start("SetEnv PATH=/nonexistent\nMatch all\n    AllowStreamLocalForwarding no");
    let p = host_project("nodocker-host", &sshd);
    p.fleet(&["up", "pre"])
        .fails_with(1, &["server box-1: Docker does not answer there, and without apt-get fleet cannot install it"]);
    assert!(p.containers().is_empty());
}

#[test]
fn changed_host_key_is_refused() {
    let first = Sshd::start("");
    let p = host_project("hostkey", &first);
    p.ok(&["up", "pre"]);
    let port = first.port;
    drop(first);
    let _rebuilt = Sshd::start_on(port, "");
    p.fleet(&["status", "pre"])
        .fails_with(1, &["server box-1: the SSH host key of 127.0.0.1 is not the one fleet recorded"]);
}

#[test]
fn host_provider_through_the_ladder() {
    let sshd = Sshd::start("");
    let p = host_project("hostladder", &sshd);
    let up = p.ok(&["up", "pre"]);
    assert!(up.stdout.contains("+ container web"), "{}", up.stdout);
    assert!(!up.stdout.contains("server"), "a brought host is never created or powered: {}", up.stdout);
    assert!(p.ok(&["up", "pre"]).stdout.contains("up to date"));
    let json = p.status_json("pre");
    assert_eq!((json["type"].as_str(), json["status"].as_str()), (Some("remote"), Some("running")));
    let server = &json["servers"][0];
    assert_eq!((server["name"].as_str(), server["provider"].as_str()), (Some("box-1"), Some("host")));
    assert_eq!(server["cost"], serde_json::Value::Null, "fleet does not bill a brought host");
    let web = find(&json["services"], "service", "web");
    assert_eq!((web["state"].as_str(), web["mark"].as_str()), (Some("running"), Some("ok")));
    let ps = p.json(&["ps", "pre"]);
    let row = find(&ps["containers"], "service", "web");
    assert_eq!((row["stage"].as_str(), row["name"].as_str()), (Some("pre"), Some(p.container("pre", "web").as_str())));
    assert_eq!(row["server"], serde_json::Value::Null, "one server says nothing new");
    let logs = p.ok(&["logs", "pre", "-n", "5"]);
    assert_eq!(logs.code, 0);
    p.ok(&["down", "pre"]);
    assert_eq!(p.inspect("pre", "web", "{{.State.Running}}").as_deref(), Some("false"));
    p.fleet(&["down", "pre", "--suspend"])
        .fails_with(2, &["server box-1 is a host you brought", "--suspend is refused"]);
    let destroy = p.ok(&["down", "pre", "--destroy", "--yes"]);
    assert!(destroy.stdout.contains("- container web"), "{}", destroy.stdout);
    assert!(destroy.stderr.contains("the machine stays"), "{}", destroy.stderr);
    assert!(p.containers().is_empty());
}

#[test]
fn services_are_placed_on_their_servers_and_ps_lists_local_and_remote_stages() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let kdl = format!(
        r#"
project "{{project}}"
providers {{ sakura-cloud zone="is1a" }}
service "db" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL" }}
service "api" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL" }}
stage "local" {{ service "db" }}
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
    let mut p = Project::new("placement", &kdl);
    p.env = sim_env(&sim);
    p.ok(&["up", "local"]);
    let up = p.ok(&["up", "dev"]);
    assert!(
        up.stdout.contains("+ server web-1 (sakura-cloud is1a, 1 cores, 1 GB, 20 GB ssd, ubuntu-24.04)"),
        "{}",
        up.stdout
    );
    assert!(up.stdout.contains("+ server db-1"), "{}", up.stdout);
    assert_eq!(server_count(&sim), 2);

    let ps = p.json(&["ps"]);
    let mut rows: Vec<(String, String, Option<String>)> = ps["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["stage"].as_str().unwrap().into(),
                c["service"].as_str().unwrap().into(),
                c["server"].as_str().map(String::from),
            )
        })
        .collect();
    rows.sort();
    let row =
        |stage: &str, svc: &str, server: Option<&str>| (stage.to_string(), svc.to_string(), server.map(String::from));
    assert_eq!(
        rows,
        [row("dev", "api", Some("web-1")), row("dev", "db", Some("db-1")), row("local", "db", None)],
        "each where it was placed"
    );

    p.ok(&["down", "dev", "--suspend"]);
    let ps = p.fleet(&["ps", "--format", "json"]);
    assert_eq!(ps.code, 0, "{ps:?}");
    let left = support::report::json(&ps)["containers"].clone();
    assert_eq!(left.as_array().map(Vec::len), Some(1), "only the local stage's container: {left:#}");
    assert_eq!((left[0]["stage"].as_str(), left[0]["service"].as_str()), (Some("local"), Some("db")));
    assert!(ps.stderr.contains("server web-1 is powered off; its containers are not listed"), "{}", ps.stderr);
    p.ok(&["down", "dev", "--destroy", "--yes"]);
    assert_eq!(server_count(&sim), 0);
}

/// Kills `up` (SIGKILL, no cleanup) as soon as `reached` holds, then runs `up` again.
fn kill_when(test: &str, reached: impl Fn(&Sim, &Project) -> bool) {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project(test, &sim, &sshd);
    let mut child =
        p.cmd(&["up", "dev"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !reached(&sim, &p) {
        assert!(std::time::Instant::now() < deadline, "the point to kill at was never reached");
        assert!(child.try_wait().unwrap().is_none(), "up finished before the kill point");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let again = p.ok(&["up", "dev"]);
    assert_eq!(server_count(&sim), 1, "no duplicate server: {:?}", sim.state());
    assert_eq!(sim.requests()["POST /server"], 1, "the server was created once");
    assert_eq!(sim.state()["disks"].as_array().unwrap().len(), 1, "one disk");
    assert_eq!(p.containers().len(), 2, "no duplicate containers: {:?}", p.containers());
    assert_eq!(p.inspect("dev", "api", "{{.State.Running}}").as_deref(), Some("true"), "{}", again.stdout);
    assert!(p.ok(&["up", "dev"]).stdout.contains("up to date"));
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn killed_after_the_server_was_created() {
    kill_when("kill-created", |sim, _| server_count(sim) == 1);
}

#[test]
fn killed_during_the_disk_copy() {
    kill_when("kill-disk", |sim, _| sim.state()["disks"].as_array().is_some_and(|d| !d.is_empty()));
}

#[test]
fn killed_while_booting() {
    kill_when("kill-boot", |sim, _| sim.requests().contains_key("PUT /server/:id/power"));
}

#[test]
fn killed_while_converging_containers() {
    kill_when("kill-containers", |_, p| p.inspect("dev", "db", "{{.Id}}").is_some());
}

/// The plan-style lines of an output, in order.
fn action_lines(out: &str) -> Vec<String> {
    out.lines().filter(|l| ["+ ", "~ ", "-/+ ", "- "].iter().any(|p| l.starts_with(p))).map(String::from).collect()
}

/// `args --dry-run`, then `args` for real: the plan must list exactly what the run does.
fn plan_matches_run(p: &Project, args: &[&str]) -> Vec<String> {
    let mut dry: Vec<&str> = args.to_vec();
    dry.push("--dry-run");
    let planned = p.fleet(&dry);
    assert!(matches!(planned.code, 0 | 2), "a dry run exits 0 or 2: {planned:?}");
    let planned = action_lines(&planned.stdout);
    let done = action_lines(&p.ok(args).stdout);
    assert_eq!(planned, done, "plan and run differ for {args:?}");
    done
}

#[test]
fn plans_for_every_rung_match_what_the_run_does() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("planrungs", &sim, &sshd);
    let (code, plan) = p.plan_json(&["plan", "dev"]);
    assert_eq!(code, 2, "changes pending: {plan:#}");
    assert_eq!(plan["summary"], json!({"add": 4, "change": 1, "replace": 0, "destroy": 0}));
    assert_eq!(server_count(&sim), 0, "plan changed nothing");
    let (_, json) = p.plan_json(&["up", "dev"]);
    // Fields, not display text.
    assert_eq!(json["schema"], 3);
    assert_eq!(json["summary"], plan["summary"], "plan and up --dry-run are one plan");
    let create = json!({"action": "create_server", "server": "creo-dev-01", "provider": "sakura-cloud tk1a",
        "core": 4, "memory_gb": 4, "disk_gb": 100, "os": "ubuntu-24.04"});
    let infra = json["infrastructure"].as_array().unwrap();
    assert_eq!(infra[..2], [create, json!({"action": "power_on", "server": "creo-dev-01"})]);
    let n = &p.name;
    assert_eq!(
        json["actions"],
        json!([
            {"action": "create_network", "name": format!("{n}-dev")},
            {"action": "create_container", "service": "db"},
            {"action": "create_container", "service": "api"},
        ])
    );

    let first = plan_matches_run(&p, &["up", "dev"]);
    assert_eq!(first.len(), 5, "{first:?}");
    assert_eq!(p.fleet(&["plan", "dev"]).code, 0, "converged: nothing to do");
    plan_matches_run(&p, &["down", "dev"]);
    plan_matches_run(&p, &["up", "dev"]);
    let (_, suspend) = p.plan_json(&["down", "dev", "--suspend"]);
    assert_eq!(suspend["infrastructure"], json!([{"action": "power_off", "server": "creo-dev-01"}]));
    let stop = |s: &str| json!({"action": "stop_container", "service": s});
    assert_eq!(suspend["actions"], json!([stop("api"), stop("db")]), "dependents stop first");
    let suspend = plan_matches_run(&p, &["down", "dev", "--suspend"]);
    assert!(suspend.contains(&"~ server creo-dev-01: power off".to_string()), "{suspend:?}");
    // A powered-off server's engine cannot be asked: the plan names the boot, the run then also
    // starts what it finds stopped.
    let dry = action_lines(&p.fleet(&["up", "dev", "--dry-run"]).stdout);
    assert_eq!(dry, ["~ server creo-dev-01: power on"]);
    p.ok(&["up", "dev"]);
    let (code, down) = p.plan_json(&["down", "dev", "--destroy"]);
    assert_eq!(code, 2);
    assert_eq!(
        down["infrastructure"],
        json!([
            {"action": "power_off", "server": "creo-dev-01"},
            {"action": "delete_server", "server": "creo-dev-01", "provider": "sakura-cloud tk1a", "disks": 1},
        ]),
        "a running server is powered off, then deleted with its disk"
    );
    assert_eq!(
        down["actions"],
        json!([
            {"action": "remove_container", "service": "api", "orphan": false},
            {"action": "remove_container", "service": "db", "orphan": false},
            {"action": "remove_network", "name": format!("{}-dev", p.name)},
        ])
    );
    let destroy = plan_matches_run(&p, &["down", "dev", "--destroy", "--yes"]);
    assert!(destroy.contains(&"- server creo-dev-01 (sakura-cloud tk1a) with 1 disk(s)".to_string()), "{destroy:?}");

    let mut broken = sakura_project("planerror", &sim, &sshd);
    broken.env.retain(|(k, _)| k != "SAKURACLOUD_ACCESS_TOKEN");
    broken.env.push(("SAKURACLOUD_ACCESS_TOKEN".into(), "wrong".into()));
    assert_eq!(broken.fleet(&["plan", "dev"]).code, 1, "an error is exit 1, not 'changes'");
}

#[test]
fn two_machines_cannot_run_up_at_once_and_a_foreign_stale_lock_is_broken_by_unlock() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("remotelock", &sim, &sshd);
    p.ok(&["up", "dev"]);
    // A change that keeps the next up busy (db waits for its healthcheck) while it holds the lock.
    let kdl = std::fs::read_to_string(p.path().join("fleet.kdl")).unwrap().replace(
        r#"service "db" { image "fleetflow-test/busybox:latest"; command "sleep 100000"; stop_signal "SIGKILL" }"#,
        r#"service "db" { image "fleetflow-test/busybox:latest"; command "sh -c 'sleep 3; touch /tmp/ok; sleep 100000'"; stop_signal "SIGKILL"; healthcheck { test "CMD" "test" "-f" "/tmp/ok"; interval "200ms"; retries 100 } }"#,
    );
    assert!(kdl.contains("touch /tmp/ok"), "the replacement applied");
    std::fs::write(p.path().join("fleet.kdl"), kdl).unwrap();
    let mut first =
        p.cmd(&["up", "dev"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let lock =
        std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(format!(".fleetflow/locks/{}@dev", p.name));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !lock.exists() {
        assert!(std::time::Instant::now() < deadline, "the first run never took the remote lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Another machine: its own local lock directory, the same server.
    let other = p.cmd(&["up", "dev"]).env("FLEET_LOCK_DIR", p.path().join("other-machine")).output().unwrap();
    let err = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(1), "{err}");
    assert!(err.contains("stage `dev` is locked by pid "), "{err}");
    assert!(err.contains("`fleet up dev`"), "{err}");
    assert!(err.contains("(lock on server creo-dev-01)"), "{err}");
    assert!(first.wait().unwrap().success());
    assert!(!lock.exists(), "the lock is released at the end of the run");

    // A lock left by a machine that is gone: refused until `fleet unlock`.
    std::fs::create_dir_all(&lock).unwrap();
    std::fs::write(
        lock.join("holder"),
        r#"{"pid":4242,"host":"laptop-of-someone","user":"ci","command":"fleet up dev","since":"2026-11-27T10:00:00Z"}"#,
    )
    .unwrap();
    p.fleet(&["up", "dev"])
        .fails_with(1, &["stage `dev` is locked by pid 4242 (ci@laptop-of-someone, `fleet up dev`)"]);
    let unlock = p.ok(&["stage", "unlock", "dev"]);
    assert!(unlock.stdout.contains("Stage dev is unlocked (lock on server creo-dev-01 removed)."), "{}", unlock.stdout);
    p.ok(&["up", "dev"]);
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn a_protected_remote_stage_refuses_destroy_before_touching_anything() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("protect-remote", &sim, &sshd);
    let kdl = std::fs::read_to_string(p.path().join("fleet.kdl"))
        .unwrap()
        .replace(r#"service "db" "api""#, "service \"db\" \"api\"\n    protect");
    std::fs::write(p.path().join("fleet.kdl"), kdl).unwrap();
    p.ok(&["up", "dev"]);
    let before = sim.requests();
    p.fleet(&["down", "dev", "--destroy", "--yes"]).fails_with(2, &["stage `dev` is protected", "remove `protect`"]);
    assert_eq!(sim.requests(), before, "not one API request");
    assert_eq!(server_count(&sim), 1);
    assert_eq!(p.inspect("dev", "api", "{{.State.Running}}").as_deref(), Some("true"));
    // Suspend is not a deletion: allowed.
    p.ok(&["down", "dev", "--suspend"]);
}

/// Two servers, `api` on web-1 depending on `db` on db-1 (healthy only after a second).
fn cross_server_project(test: &str, sim: &Sim, sshd: &Sshd, api_command: &str) -> Project {
    let kdl = format!(
        r#"
project "{{project}}"
providers {{ sakura-cloud zone="is1a" }}
service "db" {{
    image "{{image}}"; stop_signal "SIGKILL"
    command "sh -c 'sleep 1; touch /tmp/ready; sleep 100000'"
    healthcheck {{ test "CMD" "test" "-f" "/tmp/ready"; interval "200ms"; retries 50 }}
    ports {{ port host={db_port} container=5432 }}
}}
service "api" {{ image "{{image}}"; command "{api_command}"; depends_on "db"; stop_signal "SIGKILL" }}
stage "dev" {{
    server "web-1" {{ provider "sakura-cloud"; ssh-key "{key}"; ssh user="root" port={port} identity="{id}"; services "api" }}
    server "db-1" {{ provider "sakura-cloud"; ssh-key "{key}"; ssh user="root" port={port} identity="{id}"; services "db" }}
    service "db" "api"
}}
"#,
        key = sshd.public_key().display(),
        port = sim.ssh_port,
        id = sshd.identity().display(),
        db_port = support::remote::free_port(),
    );
    let mut p = Project::new(test, &kdl);
    p.env = sim_env(sim);
    p
}

#[test]
fn depends_on_across_servers_orders_the_whole_stage() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = cross_server_project("crossdep", &sim, &sshd, "sleep 100000");
    p.fleet(&["validate"]);
    p.ok(&["up", "dev"]);
    // api (on web-1) started only once db (on db-1) was healthy, a second after db started.
    let db = support::nanos(&p.inspect("dev", "db", "{{.State.StartedAt}}").unwrap());
    let api = support::nanos(&p.inspect("dev", "api", "{{.State.StartedAt}}").unwrap());
    assert!(api - db >= 900_000_000, "api started {} ms after db", (api - db) / 1_000_000);
    assert!(p.ok(&["up", "dev"]).stdout.contains("up to date"));
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn a_failed_up_releases_the_remote_lock() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    // api crashes right after start: up fails after it took the lock on web-1.
    let p = cross_server_project("lockleak", &sim, &sshd, "sh -c 'exit 3'");
    p.fleet(&["up", "dev"]).fails_with(1, &["service api exited with code 3 after start"]);
    let locks =
        std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(format!(".fleetflow/locks/{}@dev", p.name));
    assert!(!locks.exists(), "the lock was released on the failure path");
    // Another machine is not locked out.
    let other = p.cmd(&["status", "dev"]).env("FLEET_LOCK_DIR", p.path().join("other-machine")).output().unwrap();
    assert_eq!(other.status.code(), Some(0), "{}", String::from_utf8_lossy(&other.stderr));
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn a_garbled_success_is_never_read_as_no_servers() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("garbled", &sim, &sshd);
    // Every read answers 200 with an HTML page: nothing may be created from that.
    sim.fault(r#"{"garbled_reads": 1000}"#);
    p.fleet(&["up", "dev"])
        .fails_with(1, &["HTTP 200 with a body that is not the API's JSON (<html><body><h1>Maintenance"]);
    assert_eq!(server_count(&sim), 0, "no server was created from a garbled list");
    assert_eq!(sim.mutating_requests(), 0);
    // One garbled read is read again and the run goes on.
    sim.fault(r#"{"garbled_reads": 1}"#);
    p.ok(&["up", "dev"]);
    sim.fault(r#"{"garbled_reads": 2}"#);
    assert!(p.ok(&["up", "dev"]).stdout.contains("up to date"));
    assert_eq!(server_count(&sim), 1);
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn an_unreachable_api_fails_within_seconds_naming_the_host() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let mut p = sakura_project("unreachable", &sim, &sshd);
    let closed = support::remote::free_port();
    p.env.retain(|(k, _)| k != "SAKURACLOUD_API_ROOT_URL" && k != "FLEET_SAKURA_BACKOFF_MS");
    p.env.push(("SAKURACLOUD_API_ROOT_URL".into(), format!("http://127.0.0.1:{closed}/cloud/zone")));
    p.env.push(("FLEET_SAKURA_BACKOFF_MS".into(), "300".into()));
    let started = std::time::Instant::now();
    let r = p.fleet(&["up", "dev"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert!(r.stderr.contains("Sakura Cloud API at 127.0.0.1 unreachable"), "{}", r.stderr);
    assert!(r.stderr.contains("retrying 2/3"), "{}", r.stderr);
    assert!(r.stderr.contains("to 127.0.0.1 failed"), "{}", r.stderr);
}

#[test]
fn read_only_commands_never_install_an_engine() {
    // No docker CLI, and no engine socket reachable through SSH: no engine there.
    let sshd = Sshd::start("SetEnv PATH=/nonexistent\nMatch all\n    AllowStreamLocalForwarding no");
    let p = host_project("readonly-host", &sshd);
    for args in
        [&["status", "pre"][..], &["ps", "pre"], &["logs", "pre"], &["plan", "pre"], &["up", "pre", "--dry-run"]]
    {
        let r = p.fleet(args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(r.stderr.contains("no container engine answers there"), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("this command changes nothing"), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn two_first_ups_at_once_from_two_machines_leave_one_server() {
    let sshd = Sshd::start("");
    // Latency makes both finds answer "none" before either create lands.
    let sim = Sim::start_with(sshd.port, &["--latency-ms", "150"]);
    let p = sakura_project("twofirst", &sim, &sshd);
    let machine = |name: &str| {
        p.cmd(&["up", "dev", "--lock-wait", "2m"])
            .env("FLEET_LOCK_DIR", p.path().join(format!("{name}-locks")))
            .env("FLEET_STATE_DIR", p.path().join(format!("{name}-state")))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (machine("a"), machine("b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    assert_eq!(a.status.code(), Some(0), "machine a:\n{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "machine b:\n{}", text(&b));
    let both = text(&a) + &text(&b);
    assert_eq!(both.matches("+ server creo-dev-01").count(), 2, "both created one:\n{both}");
    assert!(both.contains("another run created it at the same moment"), "{both}");
    assert_eq!(server_count(&sim), 1, "{:#}", sim.state());
    assert_eq!(sim.state()["disks"].as_array().unwrap().len(), 1, "one disk, attached to the survivor");
    assert!(p.ok(&["up", "dev"]).stdout.contains("up to date"));
    p.ok(&["down", "dev", "--destroy", "--yes"]);
    assert_eq!(server_count(&sim), 0);
}

#[test]
fn a_stale_host_key_for_a_reused_ip_is_replaced_for_a_server_this_run_created() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("stalekey", &sim, &sshd);
    // An earlier machine at the address the next server gets (127.0.0.10) left its key behind.
    let old = tempfile::tempdir().unwrap();
    let key = old.path().join("k");
    support::remote::keypair(&key);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let state = p.path().join(".state");
    std::fs::create_dir_all(&state).unwrap();
    let known = state.join(format!("{}.known_hosts", p.name));
    std::fs::write(&known, format!("[127.0.0.10]:{} {}", sim.ssh_port, public)).unwrap();
    let up = p.ok(&["up", "dev"]);
    assert!(up.stdout.contains("+ server creo-dev-01"), "{}", up.stdout);
    assert!(!std::fs::read_to_string(&known).unwrap().contains(public.split_whitespace().nth(1).unwrap()));
    // A server fleet did not just create keeps its key checked.
    p.ok(&["status", "dev"]);
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn an_engine_whose_socket_ssh_may_not_forward_is_an_error_never_an_install() {
    let sshd = Sshd::start("Match all\n    AllowStreamLocalForwarding no");
    let p = host_project("noforward-host", &sshd);
    p.fleet(&["up", "pre"]).fails_with(1, &["the engine runs, but its socket", "AllowStreamLocalForwarding yes"]);
}

#[test]
fn a_wedged_remote_command_fails_at_its_deadline_naming_it() {
    // `mkdir` on this host hangs, as on a wedged disk: the stage lock is a remote command.
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("mkdir");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sshd = Sshd::start(&format!("SetEnv PATH={}:/usr/bin:/bin", bin.path().display()));
    let mut p = host_project("wedged", &sshd);
    p.env.push(("FLEET_SSH_COMMAND_TIMEOUT_MS".into(), "1500".into()));
    let started = std::time::Instant::now();
    p.fleet(&["up", "pre"]).fails_with(1, &["/.fleetflow/locks", "did not finish within 1s 500ms"]);
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn a_duplicate_left_by_a_run_killed_before_its_check_is_removed_by_the_next_up() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let mut p = sakura_project("abandoned", &sim, &sshd);
    p.env.push(("FLEET_DISKLESS_GRACE_MS".into(), "0".into()));
    p.ok(&["up", "dev"]);
    let survivor = servers(&sim)[0]["id"].clone();
    // What a run killed right after its create leaves: a later server with the same tags, no disk, off.
    let tag = format!("fleetflow:{}:dev:creo-dev-01", p.name);
    let body = serde_json::json!({"Server": {
        "Name": "creo-dev-01", "ServerPlan": {"CPU": 4, "MemoryMB": 4096}, "ConnectedSwitches": [{"Scope": "shared"}],
        "Tags": ["fleetflow", format!("fleetflow:{}:dev", p.name), tag],
    }});
    sim.sakura_in("tk1a", "POST", "server", &body.to_string());
    assert_eq!(server_count(&sim), 2);
    let up = p.ok(&["up", "dev"]);
    assert!(up.stderr.contains("a second server with tag"), "{}", up.stderr);
    assert_eq!(server_count(&sim), 1, "the abandoned duplicate is gone");
    assert_eq!(servers(&sim)[0]["id"], survivor, "the server in use stays");
    assert!(up.stdout.contains("up to date"), "{}", up.stdout);
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

/// FleetFlow's layout: a top-level `provider` block and server, an `ssh-key` naming a key
/// registered in the account, a `startup-script` naming a Note (with its variables), user tags.
/// A key name the account lacks stops `up` before any server exists.
#[test]
fn fleetflow_layout_uses_account_key_and_named_startup_script() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let public_key = std::fs::read_to_string(sshd.public_key()).unwrap();
    let key = serde_json::json!({"SSHKey": {"Name": "laptop.local", "PublicKey": public_key.trim()}});
    assert!(sim.sakura("POST", "sshkey", &key.to_string())["SSHKey"]["ID"].is_string());
    let note = serde_json::json!({"Note": {"Name": "team-setup", "Class": "shell", "Content": "#!/bin/sh\necho level @@@LEVEL@@@\n"}});
    assert!(sim.sakura("POST", "note", &note.to_string())["Note"]["ID"].is_string());
    let kdl = |key_name: &str| {
        format!(
            r#"
project "{{project}}"
provider "sakura-cloud" {{
    zone "tk1a"
}}
server "cp" {{
    provider "sakura-cloud"
    plan "2core-4gb"
    disk-size 40
    os "debian"
    ssh-key "{key_name}"
    tags "fleetflow:cp"
    startup-script "team-setup"
    init-script-vars {{ LEVEL "two"; }}
    ssh user="root" port={port} identity="{identity}"
}}
service "db" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL"; }}
stage "live" {{
    server "cp"
    service "db"
}}
"#,
            port = sim.ssh_port,
            identity = sshd.identity().display(),
        )
    };
    let mut p = Project::new("fflayout", &kdl("nobody.local"));
    p.env = sim_env(&sim);
    let missing = p.fleet(&["up", "live"]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("the account has no SSH key named `nobody.local`"), "{}", missing.stderr);
    assert_eq!(servers(&sim).len(), 0, "nothing is created before the disk's inputs resolve");

    p.write(&kdl("laptop.local"));
    let up = p.ok(&["up", "live"]);
    assert!(up.stdout.contains("+ server cp (sakura-cloud tk1a, 2 cores, 4 GB, 40 GB ssd, debian)"), "{}", up.stdout);
    let server = &servers(&sim)[0];
    let tags: Vec<&str> = server["tags"].as_array().unwrap().iter().filter_map(|t| t.as_str()).collect();
    assert!(tags.contains(&"fleetflow:cp"), "{tags:?}");
    assert_eq!(server["disk_config"]["ssh_keys"], serde_json::json!([public_key.trim()]));
    let scripts = server["disk_config"]["scripts"].as_array().unwrap();
    let names: Vec<&str> = scripts.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["fleetflow-engine-bootstrap", "team-setup"]);
    assert!(scripts[1]["content"].as_str().unwrap().contains("echo level two"));
    assert_eq!(p.inspect("live", "db", "{{.State.Running}}").as_deref(), Some("true"));
    p.ok(&["down", "live", "--destroy", "--yes"]);
    assert_eq!(servers(&sim).len(), 0);
}

/// `status` prices every rung from Sakura's price list (fleet-sim's fixture prices: a core
/// ¥1,100, a GB of memory ¥660, a GB of SSD ¥22 per month), the plan says what a new server adds,
/// the list is cached (a second status is one request), and an unreadable list is said, not fatal.
#[test]
fn status_and_plan_tell_what_each_rung_costs() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("cost", &sim, &sshd);
    // 4 cores + 4 GB = ¥7,040; a 100 GB SSD ¥2,200.
    let plan = p.fleet(&["up", "dev", "--dry-run"]);
    assert_eq!(plan.code, 2, "{}", plan.stderr);
    assert!(plan.stdout.contains("adds ¥9,240/month while running, ¥2,200/month suspended"), "{}", plan.stdout);
    assert_eq!(sim.requests().get("GET /public/price"), Some(&1));
    // The JSON carries the same cost, a field of the plan; a plan's hash leaves it out, so a
    // gated run (whose own pass reads no price list) runs the plan it was given.
    let (code, planned) = p.plan_json(&["up", "dev"]);
    assert_eq!(code, 2, "{planned:#}");
    assert_eq!(planned["costs"], json!([{"server": "creo-dev-01", "running_yen": 9240, "suspended_yen": 2200}]));
    let config = p.json(&["config", "--show-secrets", "dev"]);
    let hash = fleetflow::plan::gate::plan_hash("dev", fleetflow::plan::gate::PlanIntent::Up, &planned, &config);
    p.ok(&["up", "dev", "--plan-hash", &hash]);
    let before = sim.requests().values().sum::<u64>();
    let st = p.ok(&["status", "dev"]);
    assert_eq!(sim.requests().values().sum::<u64>() - before, 1, "cached prices: status is one request");
    assert!(
        st.stdout.contains("Cost: running ¥9,240/month (now) · suspended ¥2,200/month (disks) · destroyed ¥0"),
        "{}",
        st.stdout
    );
    assert!(st.stdout.contains("list prices before discounts"), "{}", st.stdout);
    let json = p.status_json("dev");
    assert_eq!(json["cost"]["now_monthly"], 9240);
    assert_eq!(json["cost"]["suspended_monthly"], 2200);
    assert_eq!(
        (json["cost"]["currency"].as_str(), json["cost"]["basis"].as_str()),
        (Some("JPY"), Some("list prices before discounts"))
    );
    assert_eq!(
        json["servers"][0]["cost"],
        json!({"rung": "running", "now_monthly": 9240, "running_monthly": 9240, "suspended_monthly": 2200, "destroyed_monthly": 0})
    );

    p.ok(&["down", "dev", "--suspend"]);
    let json = p.status_json("dev");
    assert_eq!(
        (json["cost"]["now_monthly"].as_u64(), json["servers"][0]["cost"]["rung"].as_str()),
        (Some(2200), Some("suspended"))
    );

    // The price list down (and no cache): status still reports, and says why the cost is unknown.
    std::fs::remove_file(p.path().join(".state/sakura-prices-tk1a.json")).unwrap();
    sim.fault(r#"{"prices_down": true}"#);
    let st = p.ok(&["status", "dev"]);
    assert!(st.stdout.contains("Cost: unknown (the price list could not be read"), "{}", st.stdout);
    std::fs::remove_file(p.path().join(".state/sakura-prices-tk1a.json")).ok();
    let json = p.status_json("dev");
    assert_eq!(json["status"], "suspended");
    assert!(json["cost"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{:#}", json["cost"]);
    assert_eq!(
        (json["cost"]["now_monthly"].as_u64(), json["servers"][0]["cost"].as_object()),
        (None, None),
        "no price is guessed"
    );
    sim.fault(r#"{"prices_down": false, "prices_garbled": true}"#);
    let json = p.status_json("dev");
    assert!(json["cost"]["error"].as_str().is_some(), "garbage with a 200 is no price: {:#}", json["cost"]);
    assert_eq!(json["cost"]["now_monthly"], serde_json::Value::Null);

    p.ok(&["down", "dev", "--destroy", "--yes"]);
}
