//! End-to-end: local stages on the real Docker engine, with locally built images.

mod support;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::report::{find, steps, without_uptimes};
use support::{Project, nanos};

/// db → api → web, all long-running; stop at once (SIGKILL) so tests stay fast.
const STACK: &str = r#"
project "{project}"
service "db" {
    image "{image}"
    command "sh -c 'echo db up; sleep 100000'"
    volumes { volume "data" "/data" }
    stop_signal "SIGKILL"
}
service "api" {
    image "{image}"
    command "sh -c 'echo api up; sleep 100000'"
    environment { LOG_LEVEL "info" }
    depends_on "db"
    stop_signal "SIGKILL"
}
service "web" {
    image "{image}"
    command "sleep" "100000"
    depends_on "api"
    stop_signal "SIGKILL"
}
stage "local" { service "db" "api" "web" }
"#;

fn ids_and_starts(p: &Project) -> Vec<(String, String)> {
    ["db", "api", "web"]
        .iter()
        .map(|s| (p.inspect("local", s, "{{.Id}}").unwrap(), p.inspect("local", s, "{{.State.StartedAt}}").unwrap()))
        .collect()
}

#[test]
fn up_creates_everything_and_second_up_changes_nothing() {
    let p = Project::new("idempotent", STACK);
    let first = p.ok(&["up", "local"]);
    assert_eq!(
        first.lines()[..5],
        ["+ network {n}-local", "+ volume {n}-local-data", "+ container db", "+ container api", "+ container web"]
            .map(|l| l.replace("{n}", &p.name))
    );
    assert!(first.stdout.contains("Stage local is up: 5 added"));
    for s in ["db", "api", "web"] {
        assert_eq!(p.inspect("local", s, "{{.State.Running}}").as_deref(), Some("true"), "{s} not running");
    }
    let before = ids_and_starts(&p);

    let second = p.ok(&["stage", "up", "local"]);
    assert_eq!(second.stdout.trim(), "Stage local is up to date; nothing to do.");
    assert_eq!(ids_and_starts(&p), before, "second up touched a container");
    // Exactly one network of that name: the Docker < 25 duplicate-network bug stays fixed.
    let nets =
        support::docker(&["network", "ls", "--filter", &format!("name={}-local", p.name), "--format", "{{.Name}}"]);
    assert_eq!(nets.lines().count(), 1);
}

#[test]
fn changed_field_recreates_exactly_that_service_and_says_why() {
    let p = Project::new("recreate", STACK);
    p.ok(&["up", "local"]);
    let before = ids_and_starts(&p);
    p.write(&STACK.replace("LOG_LEVEL \"info\"", "LOG_LEVEL \"debug\""));

    let (code, plan) = p.plan_json(&["plan", "local"]);
    assert_eq!(code, 2, "plan exits 2 when there are changes: {plan:#}");
    let recreate =
        json!({"action": "recreate_container", "service": "api", "reason": "environment changed (LOG_LEVEL)"});
    assert_eq!(steps(&plan, "actions"), [recreate], "api alone, saying why");

    let up = p.ok(&["up", "local"]);
    assert!(up.stdout.contains("-/+ container api: environment changed (LOG_LEVEL)"), "{}", up.stdout);
    let after = ids_and_starts(&p);
    assert_eq!(after[0], before[0], "db must be left alone");
    assert_eq!(after[2], before[2], "web must be left alone");
    assert_ne!(after[1].0, before[1].0, "api must be a new container");
    let env = p.inspect("local", "api", "{{range .Config.Env}}{{println .}}{{end}}").unwrap();
    assert!(env.lines().any(|l| l == "LOG_LEVEL=debug"), "{env}");

    let converged = p.fleet(&["plan", "local"]);
    assert_eq!(converged.code, 0, "{converged:?}");
}

#[test]
fn dependent_waits_for_dependency_to_be_healthy() {
    let p = Project::new(
        "health",
        r#"
project "{project}"
service "db" {
    image "{image}"
    command "sh -c 'sleep 2; touch /tmp/ready; sleep 100000'"
    healthcheck { test "CMD" "test" "-f" "/tmp/ready"; interval "300ms"; timeout 2; retries 30 }
    stop_signal "SIGKILL"
}
service "api" { image "{image}"; command "sleep 100000"; depends_on "db"; stop_signal "SIGKILL" }
service "cache" { image "{image}"; command "sleep 100000"; stop_signal "SIGKILL" }
stage "local" { service "api" "db" "cache" }
"#,
    );
    let up = p.ok(&["up", "local"]);
    assert!(up.stderr.contains("waiting for db to be healthy"), "{}", up.stderr);
    let db = nanos(&p.inspect("local", "db", "{{.State.StartedAt}}").unwrap());
    let api = nanos(&p.inspect("local", "api", "{{.State.StartedAt}}").unwrap());
    let cache = nanos(&p.inspect("local", "cache", "{{.State.StartedAt}}").unwrap());
    assert!(api - db >= 2_000_000_000, "api started {} ms after db; it must wait for health", (api - db) / 1_000_000);
    // Independent services start in parallel, not after the health wait.
    assert!(cache - db < 1_500_000_000, "cache waited for db without depending on it");
    assert_eq!(p.inspect("local", "db", "{{.State.Health.Status}}").as_deref(), Some("healthy"));
}

#[test]
fn unhealthy_dependency_fails_naming_the_service_and_leaves_dependent_uncreated() {
    let p = Project::new(
        "unhealthy",
        r#"
project "{project}"
service "db" {
    image "{image}"
    command "sleep 100000"
    healthcheck { test "CMD-SHELL" "echo not ready yet; exit 1"; interval "200ms"; timeout 1; retries 2 }
    stop_signal "SIGKILL"
}
service "api" { image "{image}"; command "sleep 100000"; depends_on "db"; stop_signal "SIGKILL" }
stage "local" { service "db" "api" }
"#,
    );
    // The last health output is part of the message.
    p.fleet(&["up", "local"]).fails_with(1, &["service db is unhealthy", "not ready yet"]);
    assert_eq!(p.inspect("local", "api", "{{.Id}}"), None, "api must not start after its dependency failed");
}

#[test]
fn container_that_exits_after_start_fails_with_its_logs() {
    let p = Project::new(
        "crash",
        r#"
project "{project}"
service "api" { image "{image}"; command "sh -c 'echo boom: missing DATABASE_URL; exit 3'" }
stage "local" { service "api" }
"#,
    );
    p.fleet(&["up", "local"]).fails_with(1, &["service api exited with code 3", "boom: missing DATABASE_URL"]);
}

#[test]
fn oneshot_completes_and_dependents_wait_for_it_and_it_is_not_rerun() {
    let p = Project::new(
        "oneshot",
        r#"
project "{project}"
service "migrate" { image "{image}"; command "sh -c 'sleep 1; echo migrated'"; oneshot }
service "api" { image "{image}"; command "sleep 100000"; depends_on "migrate"; stop_signal "SIGKILL" }
stage "local" { service "migrate" "api" }
"#,
    );
    p.ok(&["up", "local"]);
    assert_eq!(p.inspect("local", "migrate", "{{.State.ExitCode}}").as_deref(), Some("0"));
    let finished = nanos(&p.inspect("local", "migrate", "{{.State.FinishedAt}}").unwrap());
    let api = nanos(&p.inspect("local", "api", "{{.State.StartedAt}}").unwrap());
    assert!(api >= finished, "api started before migrate completed");
    let again = p.ok(&["up", "local"]);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    assert_eq!(
        nanos(&p.inspect("local", "migrate", "{{.State.FinishedAt}}").unwrap()),
        finished,
        "one-shot was re-run"
    );
}

#[test]
fn orphans_are_reported_and_removed_only_with_remove_orphans() {
    let p = Project::new("orphans", STACK);
    p.ok(&["up", "local"]);
    p.write(
        &STACK.replace(
            "stage \"local\" { service \"db\" \"api\" \"web\" }",
            "stage \"local\" { service \"db\" \"api\" }",
        ),
    );
    let (code, plan) = p.plan_json(&["up", "local"]);
    assert_eq!(
        (code, plan["orphans"].clone(), steps(&plan, "actions")),
        (0, json!(["web"]), vec![]),
        "reported, not removed"
    );
    let (code, plan) = p.plan_json(&["up", "local", "--remove-orphans"]);
    let remove = json!({"action": "remove_container", "service": "web", "orphan": true});
    assert_eq!((code, steps(&plan, "actions")), (2, vec![remove]));
    let up = p.ok(&["up", "local"]);
    assert!(up.stderr.contains("service `web` is an orphan"), "{}", up.stderr);
    assert!(p.inspect("local", "web", "{{.Id}}").is_some(), "orphan removed without being asked");
    let rm = p.ok(&["up", "local", "--remove-orphans"]);
    assert!(rm.stdout.contains("- container web (orphan)"), "{}", rm.stdout);
    assert_eq!(p.inspect("local", "web", "{{.Id}}"), None);
}

#[test]
fn down_stops_destroy_removes_and_volumes_stay_unless_asked() {
    let p = Project::new("down", STACK);
    p.ok(&["up", "local"]);
    let down = p.ok(&["down", "local"]);
    assert_eq!(down.lines()[..3], ["~ container web: stop", "~ container api: stop", "~ container db: stop"]);
    assert_eq!(p.containers().len(), 3, "down keeps containers");
    for s in ["db", "api", "web"] {
        assert_eq!(p.inspect("local", s, "{{.State.Running}}").as_deref(), Some("false"));
    }
    let again = p.ok(&["down", "local"]);
    assert!(again.stdout.contains("already down"), "{}", again.stdout);

    // Back up from the first rung: same containers, started again.
    let id = p.inspect("local", "api", "{{.Id}}");
    let up = p.ok(&["up", "local"]);
    assert!(up.stdout.contains("~ container api: start"), "{}", up.stdout);
    assert_eq!(p.inspect("local", "api", "{{.Id}}"), id);

    let volume = format!("{}-local-data", p.name);
    p.ok(&["down", "local", "--destroy", "--yes"]);
    assert!(p.containers().is_empty());
    assert!(!p.network_exists("local"));
    assert!(p.volume_exists(&volume), "named volume must survive --destroy without --volumes");

    p.ok(&["up", "local"]);
    p.ok(&["down", "local", "--destroy", "--volumes", "-y"]);
    assert!(!p.volume_exists(&volume));
}

#[test]
fn destroy_without_terminal_or_yes_refuses_and_deletes_nothing() {
    let p = Project::new("refuse", STACK);
    p.ok(&["up", "local"]);
    let r = p.fleet(&["down", "local", "--destroy"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("refusing to destroy stage `local` without confirmation"), "{}", r.stderr);
    assert_eq!(p.containers().len(), 3);
    assert_eq!(p.inspect("local", "db", "{{.State.Running}}").as_deref(), Some("true"));
}

#[test]
fn protected_stage_refuses_destroy() {
    let p = Project::new(
        "protect",
        &STACK.replace(
            "stage \"local\" { service \"db\" \"api\" \"web\" }",
            "stage \"local\" { service \"db\"; protect }",
        ),
    );
    p.ok(&["up", "local"]);
    let r = p.fleet(&["down", "local", "--destroy", "--yes"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("stage `local` is protected"), "{}", r.stderr);
    assert_eq!(p.containers().len(), 1);
}

#[test]
fn suspend_on_a_local_stage_is_refused() {
    let p = Project::new("suspend", STACK);
    let r = p.fleet(&["down", "local", "--suspend"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--suspend powers servers off, and stage `local` has no servers"), "{}", r.stderr);
}

#[test]
fn config_error_touches_nothing() {
    let p = Project::new("badconfig", &STACK.replace("depends_on \"api\"", "depends_on \"apii\""));
    let r = p.fleet(&["up", "local"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("service `web` depends on `apii`, which is not defined"), "{}", r.stderr);
    assert!(r.stderr.contains("fleet.kdl:"), "error names the file: {}", r.stderr);
    assert!(p.containers().is_empty());
    assert!(!p.network_exists("local"));
}

#[test]
fn status_ps_and_json() {
    let p = Project::new("status", &(STACK.to_string() + "\nstage \"other\" { service \"db\" }\n"));
    let before = p.status_json("local");
    assert_eq!(before["status"], "not_created");
    for svc in ["db", "api", "web"] {
        let row = find(&before["services"], "service", svc);
        assert_eq!((row["state"].as_str(), row["mark"].as_str()), (Some("not_created"), Some("absent")), "{row}");
    }
    p.ok(&["up", "local"]);
    p.ok(&["up", "other"]);
    // The human text, exactly (uptimes aside): the one snapshot of a local stage's status.
    let st = p.ok(&["stage", "status", "local"]);
    let expected = "Stage: local\nType: local\nStatus: running\nServices:\n  ✓ db   running  (up …)\n  ✓ api  running  (up …)\n  ✓ web  running  (up …)";
    assert_eq!(without_uptimes(st.stdout.trim_end()), expected);

    let ps = p.ok(&["ps"]);
    let header = ps.lines()[0].split_whitespace().collect::<Vec<_>>();
    assert_eq!(header, ["STAGE", "SERVICE", "STATUS", "PORTS", "CREATED"]);
    let all = p.json(&["ps"]);
    let mut rows: Vec<(String, String)> = all["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["stage"].as_str().unwrap().to_string(), c["service"].as_str().unwrap().to_string()))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [("local", "api"), ("local", "db"), ("local", "web"), ("other", "db")].map(|(a, b)| (a.into(), b.into()))
    );

    let json = p.json(&["ps", "local"]);
    assert_eq!(json["containers"].as_array().unwrap().len(), 3);
    let st = p.status_json("local");
    assert_eq!((st["status"].as_str(), st["type"].as_str()), (Some("running"), Some("local")));
    for svc in ["db", "api", "web"] {
        let row = find(&st["services"], "service", svc);
        assert_eq!((row["state"].as_str(), row["mark"].as_str()), (Some("running"), Some("ok")), "{row}");
        assert_eq!(row["container"], p.container("local", svc));
        assert!(row["uptime_seconds"].as_i64().is_some_and(|t| t >= 0), "{row}");
    }

    p.ok(&["down", "local"]);
    let stopped = p.status_json("local");
    assert_eq!(stopped["status"], "stopped");
    // SIGKILL: exited 137, a failure mark.
    let db = find(&stopped["services"], "service", "db");
    assert_eq!((db["state"].as_str(), db["exit_code"].as_i64()), (Some("exited"), Some(137)), "{db}");
}

#[test]
fn logs_filter_tail_and_follow_across_services() {
    let p = Project::new(
        "logs",
        r#"
project "{project}"
service "a" { image "{image}"; command "sh -c 'echo a-first; echo a-second; while true; do echo a-tick; sleep 0.3; done'"; stop_signal "SIGKILL" }
service "b" { image "{image}"; command "sh -c 'echo b-first; while true; do echo b-tick; sleep 0.3; done'"; stop_signal "SIGKILL" }
stage "local" { service "a" "b" }
"#,
    );
    p.ok(&["up", "local"]);
    std::thread::sleep(Duration::from_millis(500));
    let only_b = p.ok(&["logs", "local", "-s", "b"]);
    assert!(only_b.stdout.lines().all(|l| l.starts_with("b |")), "{}", only_b.stdout);
    assert!(only_b.stdout.contains("b | b-first"));
    let tail = p.ok(&["logs", "local", "-s", "a", "-n", "1"]);
    assert_eq!(tail.stdout.lines().count(), 1, "{}", tail.stdout);

    let mut child = p.cmd(&["logs", "local", "-f", "-n", "0"]).stdout(Stdio::piped()).spawn().unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    let (mut saw_a, mut saw_b) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    for line in reader.lines() {
        let line = line.unwrap();
        saw_a |= line.starts_with("a | a-tick");
        saw_b |= line.starts_with("b | b-tick");
        if (saw_a && saw_b) || Instant::now() > deadline {
            break;
        }
    }
    child.kill().ok();
    child.wait().ok();
    assert!(saw_a && saw_b, "follow must stream every service (a: {saw_a}, b: {saw_b})");
}

#[test]
fn dry_run_prints_plan_and_changes_nothing() {
    let p = Project::new("dryrun", STACK);
    let r = p.fleet(&["up", "local", "--dry-run"]);
    assert_eq!(r.code, 2, "changes pending");
    // The human text, exactly: the one snapshot of a dry-run plan.
    let text = r.stdout.replace(&p.name, "{project}");
    let expected = "+ network {project}-local\n+ volume {project}-local-data\n+ container db\n+ container api\n+ container web\nPlan: 5 to add, 0 to change, 0 to replace, 0 to destroy.";
    assert_eq!(text.trim_end(), expected);
    assert!(p.containers().is_empty());
    assert!(!p.network_exists("local"));
    let (code, plan) = p.plan_json(&["up", "local"]);
    assert_eq!(code, 2);
    let n = &p.name;
    assert_eq!(
        steps(&plan, "actions"),
        [
            json!({"action": "create_network", "name": format!("{n}-local")}),
            json!({"action": "create_volume", "name": format!("{n}-local-data")}),
            json!({"action": "create_container", "service": "db"}),
            json!({"action": "create_container", "service": "api"}),
            json!({"action": "create_container", "service": "web"}),
        ]
    );
    assert_eq!(plan["summary"], json!({"add": 5, "change": 0, "replace": 0, "destroy": 0}));
    p.ok(&["up", "local"]);
    assert_eq!(p.fleet(&["up", "local", "--dry-run"]).code, 0, "converged: nothing pending");
    let (code, down) = p.plan_json(&["down", "local", "--destroy"]);
    assert_eq!(code, 2);
    let removed: Vec<Value> = ["web", "api", "db"]
        .iter()
        .map(|s| json!({"action": "remove_container", "service": s, "orphan": false}))
        .chain([json!({"action": "remove_network", "name": format!("{n}-local")})])
        .collect();
    assert_eq!(steps(&down, "actions"), removed, "dependents first, then the network; the volume stays");
    assert_eq!(p.containers().len(), 3, "dry-run destroyed something");
}

#[test]
fn remote_stage_never_runs_on_the_local_engine() {
    let p = Project::new(
        "remote",
        // Port 9 on loopback: nothing answers, so the server is unreachable.
        &(STACK.to_string()
            + "\nstage \"dev\" {\n  server \"box-1\" { provider \"host\"; address \"127.0.0.1\"; ssh port=9 }\n  service \"db\"\n}\n"),
    );
    let out = p.cmd(&["up", "dev"]).env("FLEET_SSH_WAIT_MS", "1000").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("server box-1: nothing answers SSH at 127.0.0.1:9"), "{stderr}");
    assert!(p.containers().is_empty(), "a remote stage started containers locally");
}

#[test]
fn a_running_server_that_answers_nothing_is_reported_unreachable_even_past_its_wait() {
    // A host found running is tried with ssh at once; when that try fails past the wait (here
    // no wait at all; for a user, a firewall that drops packets and ssh's ConnectionAttempts),
    // it is still "nothing answers SSH", which status reports as a row, not a failed command.
    let p = Project::new(
        "remote-nowait",
        &(STACK.to_string()
            + "\nstage \"dev\" {\n  server \"box-1\" { provider \"host\"; address \"127.0.0.1\"; ssh port=9 }\n  service \"db\"\n}\n"),
    );
    let out = p.cmd(&["status", "dev"]).env("FLEET_SSH_WAIT_MS", "0").output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("server box-1: nothing answers SSH at 127.0.0.1:9"), "{stderr}");
    assert!(stdout.contains("server does not answer SSH"), "{stdout}");
}

#[test]
fn unreachable_engine_is_a_clear_error() {
    let p = Project::new("nodocker", STACK);
    let r = p.cmd(&["up", "local"]).env("DOCKER_HOST", "unix:///nonexistent/docker.sock").output().unwrap();
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"), "{err}");
}

/// db with a slow healthcheck keeps `up` busy for a while.
const SLOW: &str = r#"
project "{project}"
service "db" {
    image "{image}"
    command "sh -c 'sleep 4; touch /tmp/ok; sleep 100000'"
    healthcheck { test "CMD" "test" "-f" "/tmp/ok"; interval "200ms"; retries 100 }
    stop_signal "SIGKILL"
}
service "api" { image "{image}"; command "sleep 100000"; depends_on "db"; stop_signal "SIGKILL" }
stage "local" { service "db" "api" }
"#;

/// Starts `up` of the SLOW stage in the background and returns once it is inside (db exists).
fn start_slow_up(p: &Project) -> std::process::Child {
    let child = p.cmd(&["up", "local"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.inspect("local", "db", "{{.Id}}").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn second_concurrent_up_fails_naming_the_lock_holder() {
    let p = Project::new("lock", SLOW);
    let mut first = start_slow_up(&p);
    let second = p.fleet(&["up", "local"]);
    assert_eq!(second.code, 1, "{second:?}");
    assert!(second.stderr.contains("stage `local` of project"), "{}", second.stderr);
    assert!(second.stderr.contains("is locked by pid"), "{}", second.stderr);
    assert!(first.wait().unwrap().success());
    // With --lock-wait the second run would have waited; once free it converges at once.
    let third = p.ok(&["up", "local", "--lock-wait", "10s"]);
    assert!(third.stdout.contains("up to date"), "{}", third.stdout);
}

#[test]
fn interrupted_up_converges_on_the_next_run() {
    let p = Project::new("interrupt", SLOW);
    let child = start_slow_up(&p);
    std::thread::sleep(Duration::from_millis(300));
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert_eq!(p.inspect("local", "api", "{{.Id}}"), None, "api must not have started yet");

    let db_id = p.inspect("local", "db", "{{.Id}}");
    p.ok(&["up", "local"]);
    assert_eq!(p.inspect("local", "db", "{{.Id}}"), db_id, "no duplicate or recreated db");
    assert_eq!(p.inspect("local", "api", "{{.State.Running}}").as_deref(), Some("true"));
    assert_eq!(p.containers().len(), 2);
}

#[test]
fn missing_image_that_cannot_be_pulled_is_a_clear_error_and_creates_no_container() {
    let p = Project::new(
        "noimage",
        r#"
project "{project}"
service "api" { image "fleetflow-test/does-not-exist:1"; command "sleep 1" }
stage "local" { service "api" }
"#,
    );
    let r = p.fleet(&["up", "local"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("image fleetflow-test/does-not-exist:1 is not on unix://"), "{}", r.stderr);
    assert!(r.stderr.contains("could not be pulled"), "{}", r.stderr);
    assert!(p.containers().is_empty());
}

#[test]
fn crash_loop_under_a_restart_policy_is_a_failure_not_success() {
    let p = Project::new(
        "crashloop",
        r#"
project "{project}"
service "api" { image "{image}"; command "sh -c 'echo crash-loop-output; exit 2'"; restart "always" }
stage "local" { service "api" }
"#,
    );
    p.fleet(&["up", "local"]).fails_with(1, &["service api", "restart", "crash-loop-output"]);
}

#[test]
fn ctrl_c_ends_a_lock_wait_at_once_with_130() {
    let p = Project::new("lockwait-int", SLOW);
    let mut first = start_slow_up(&p);
    let mut waiting =
        p.cmd(&["up", "local", "--lock-wait", "5m"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(waiting.try_wait().unwrap().is_none(), "the second run waits for the lock");
    let sent = Instant::now();
    std::process::Command::new("kill").args(["-INT", &waiting.id().to_string()]).status().unwrap();
    let status = loop {
        if let Some(s) = waiting.try_wait().unwrap() {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(3), "Ctrl-C did not end the lock wait");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    assert!(sent.elapsed() < Duration::from_secs(1), "ended within a second: {:?}", sent.elapsed());
    assert!(first.wait().unwrap().success());
}

#[test]
fn ps_status_is_the_state_word_with_health() {
    let p = Project::new(
        "psstatus",
        r#"
project "{project}"
service "plain" { image "{image}"; command "sleep 100000"; stop_signal "SIGKILL" }
service "checked" {
    image "{image}"; command "sleep 100000"; stop_signal "SIGKILL"
    healthcheck { test "CMD" "true"; interval "200ms"; retries 3 }
}
service "job" { image "{image}"; command "sh -c 'exit 3'"; restart "no" }
stage "local" { service "plain" "checked" }
stage "jobs" { service "job" }
"#,
    );
    p.ok(&["up", "local"]);
    let ps = p.ok(&["ps", "local"]);
    assert!(!ps.stdout.contains("Up "), "Docker's uptime text stays out of STATUS: {}", ps.stdout);
    // The report as JSON, with the schema every document carries: STATUS is the state word with health.
    let json = p.json(&["ps", "local"]);
    assert_eq!(json["schema"], 3);
    let plain = find(&json["containers"], "service", "plain");
    assert_eq!(
        (plain["status"].as_str(), plain["state"]["state"].as_str()),
        (Some("running"), Some("running")),
        "{plain}"
    );
    assert_eq!(plain["health"], Value::Null);
    let checked = find(&json["containers"], "service", "checked");
    assert_eq!((checked["status"].as_str(), checked["health"].as_str()), (Some("running (healthy)"), Some("healthy")));
    let status = p.status_json("local");
    assert_eq!((status["schema"].as_u64(), status["type"].as_str()), (Some(3), Some("local")));
    assert_eq!(find(&status["services"], "service", "checked")["health"], "healthy");
    let config = p.json(&["config", "local"]);
    assert_eq!((config["schema"].as_u64(), config["name"].as_str()), (Some(3), Some("local")));
    p.fleet(&["up", "jobs"]);
    let job = find(&p.json(&["ps", "jobs"])["containers"], "service", "job").clone();
    assert_eq!(
        (job["status"].as_str(), job["state"]["state"].as_str(), job["state"]["exit_code"].as_i64()),
        (Some("exited (3)"), Some("exited"), Some(3))
    );
    assert_eq!(find(&p.status_json("jobs")["services"], "service", "job")["mark"], "failed");
}

#[test]
fn a_closed_pipe_ends_quietly_without_a_panic() {
    let p = Project::new("epipe", SLOW);
    p.ok(&["up", "local"]);
    for args in [&["ps", "--format", "json"][..], &["ps"], &["logs", "local", "-f"], &["status", "local"]] {
        // The reader is gone before fleet writes a byte: every write meets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = p.cmd(args).stdout(writer).stderr(Stdio::piped()).spawn().unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "fleet {args:?} kept running after its reader left");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(!err.contains("panicked"), "fleet {args:?}: {err}");
        assert_eq!(status.code(), Some(0), "fleet {args:?}: {err}");
    }
}

#[test]
fn names_that_meet_at_a_dash_never_share_a_volume_or_a_network() {
    // Project `X-b` stage `c` and project `X` stage `b-c` build the same names.
    let kdl = |project: &str, stage: &str| {
        format!(
            "project \"{project}\"\nservice \"db\" {{ image \"{{image}}\"; command \"sleep 100000\"; stop_signal \"SIGKILL\"; volumes {{ volume \"data\" \"/data\" }} }}\nstage \"{stage}\" {{ service \"db\" }}\n"
        )
    };
    let first = Project::new("dash-b", &kdl("{project}", "c"));
    let x = first.name.strip_suffix("-b").expect("named …-b").to_string();
    let second = Project::new("dash-other", &kdl(&x, "b-c"));
    first.ok(&["up", "c"]);
    let volume = format!("{}-c-data", first.name);
    assert!(first.volume_exists(&volume));
    second.fleet(&["up", "b-c"]).fails_with(1, &[&format!("belongs to project `{}` stage `c`", first.name)]);
    second.fleet(&["down", "b-c", "--destroy", "--volumes", "--yes"]);
    assert!(first.volume_exists(&volume), "the other project's data survives");
    assert!(first.network_exists("c"), "and so does its network");
    // The volume check holds on its own too: the network gone, the volume is still refused.
    first.ok(&["down", "c", "--destroy", "--yes"]);
    second
        .fleet(&["up", "b-c"])
        .fails_with(1, &[&format!("volume {volume} already exists and belongs to project `{}` stage `c`", first.name)]);
    second.fleet(&["down", "b-c", "--destroy", "--volumes", "--yes"]);
    assert!(first.volume_exists(&volume), "the other project's data survives");
    first.ok(&["up", "c"]);
    first.ok(&["down", "c", "--destroy", "--volumes", "--yes"]);
    assert!(!first.volume_exists(&volume));
}
