//! End-to-end: `fleet mcp` driven by a real MCP client (rmcp's, over the child's stdio) against
//! a local stage on the real Docker engine: initialize, list the tools, plan, apply with a stale
//! hash (refused), apply with the right one, and no destroy without a matching plan. Then the
//! plan gate itself: a world that moves after the plan (or while the run waits for the lock)
//! is refused by the run, nothing changed, and the new plan returned; on a remote stage too.

mod support;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::{Value, json};
use support::Project;

const STACK: &str = r#"
project "{project}"
service "db" { image "{image}"; command "sh -c 'echo db says hello; sleep 100000'"; stop_signal "SIGKILL"; }
service "api" { image "{image}"; command "sleep 100000"; depends_on "db"; stop_signal "SIGKILL"; }
stage "local" { service "db" "api"; }
"#;

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

async fn connect(p: &Project) -> Client {
    let transport = TokioChildProcess::new(tokio::process::Command::new(env!("CARGO_BIN_EXE_fleet")).configure(|c| {
        c.arg("mcp")
            .current_dir(p.path())
            .env("NO_COLOR", "1")
            .env("FLEET_LOCK_DIR", p.path().join(".locks"))
            .env("FLEET_STATE_DIR", p.path().join(".state"))
            .envs(p.env.iter().map(|(k, v)| (k, v)))
            .env_remove("FLEET_STAGE");
    }))
    .expect("spawn fleet mcp");
    ().serve(transport).await.expect("initialize")
}

async fn call(client: &Client, tool: &'static str, args: Value) -> (bool, String) {
    let mut params = CallToolRequestParams::new(tool);
    if let Value::Object(m) = args {
        params = params.with_arguments(m);
    }
    let result: CallToolResult = client.call_tool(params).await.expect("the call is answered");
    let text: String = result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
    (result.is_error == Some(true), text)
}

async fn plan(client: &Client, stage: &str, action: &str) -> Value {
    let (error, text) = call(client, "plan", json!({"stage": stage, "action": action})).await;
    assert!(!error, "plan failed: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("plan is not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_plans_and_applies_and_cannot_apply_a_stale_plan() {
    let p = Project::new("mcp", STACK);
    let client = connect(&p).await;

    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(names, ["apply", "list_stages", "logs", "plan", "ps", "status", "validate"]);
    let tool = |n: &str| tools.iter().find(|t| t.name == n).unwrap().annotations.clone().unwrap();
    assert_eq!(tool("plan").read_only_hint, Some(true));
    assert_eq!(tool("apply").destructive_hint, Some(true));

    let (_, stages) = call(&client, "list_stages", json!({})).await;
    let stages: Value = serde_json::from_str(&stages).unwrap();
    assert_eq!(stages["stages"][0]["name"], "local");
    assert_eq!(stages["stages"][0]["type"], "local");

    // A plan changes nothing.
    let up = plan(&client, "local", "up").await;
    let hash = up["plan_hash"].as_str().unwrap().to_string();
    assert_eq!(up["action"], "up");
    assert_eq!(up["summary"]["add"], 3, "network and two containers: {up}");
    assert!(p.containers().is_empty(), "plan created nothing");
    assert_eq!(plan(&client, "local", "up").await["plan_hash"], hash.as_str(), "the same state plans the same hash");

    // The file changes after the plan: the old hash is refused, with the new plan.
    p.write(&STACK.replace("command \"sleep 100000\"; depends_on", "command \"sleep 99999\"; depends_on"));
    let (error, text) = call(&client, "apply", json!({"stage": "local", "plan_hash": hash})).await;
    assert!(error, "a stale plan is refused: {text}");
    assert!(text.contains("refused: the stage changed since that plan"), "{text}");
    let new_plan: Value = serde_json::from_str(text.split_once(":\n").unwrap().1).unwrap();
    assert_ne!(new_plan["plan_hash"], hash.as_str());
    assert!(p.containers().is_empty(), "nothing was applied");

    // A hash this server never returned is refused too.
    let (error, text) = call(&client, "apply", json!({"stage": "local", "plan_hash": "0".repeat(64)})).await;
    assert!(error && text.contains("call plan first"), "{text}");

    // The right hash applies.
    let (error, text) =
        call(&client, "apply", json!({"stage": "local", "plan_hash": new_plan["plan_hash"].clone()})).await;
    assert!(!error, "{text}");
    assert_eq!(p.inspect("local", "api", "{{.State.Running}}").as_deref(), Some("true"));
    assert_eq!(p.inspect("local", "api", "{{.Config.Cmd}}").as_deref(), Some("[sleep 99999]"));
    assert_eq!(plan(&client, "local", "up").await["summary"]["add"], 0, "converged");

    // The read-only tools.
    let (error, status) = call(&client, "status", json!({"stage": "local"})).await;
    assert!(!error, "{status}");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["services"].as_array().unwrap().len(), 2);
    let (_, ps) = call(&client, "ps", json!({"stage": "local"})).await;
    assert!(ps.contains(&p.container("local", "api")), "{ps}");
    let (_, logs) = call(&client, "logs", json!({"stage": "local", "service": "db", "tail": 5})).await;
    assert!(logs.contains("db says hello"), "{logs}");
    let (_, valid) = call(&client, "validate", json!({})).await;
    assert!(valid.contains("is valid"), "{valid}");

    // Destroy only through its own plan; `protect` holds as on the command line.
    p.write(&STACK.replace(
        "stage \"local\" { service \"db\" \"api\"; }",
        "stage \"local\" { service \"db\" \"api\"; protect; }",
    ));
    let (error, text) = call(&client, "plan", json!({"stage": "local", "action": "destroy"})).await;
    let refused = error || {
        let h = serde_json::from_str::<Value>(&text).unwrap()["plan_hash"].clone();
        call(&client, "apply", json!({"stage": "local", "plan_hash": h})).await.0
    };
    assert!(refused, "a protected stage is not destroyed: {text}");
    assert!(!p.containers().is_empty());
    p.write(&STACK.replace("sleep 100000\"; depends_on", "sleep 99999\"; depends_on"));
    let destroy = plan(&client, "local", "destroy").await;
    assert!(destroy["summary"]["destroy"].as_u64().unwrap() >= 3, "{destroy}");
    let (error, text) =
        call(&client, "apply", json!({"stage": "local", "plan_hash": destroy["plan_hash"].clone()})).await;
    assert!(!error, "{text}");
    assert!(p.containers().is_empty(), "destroyed");
    client.cancel().await.unwrap();
}

/// The text of a refusal: the run's own words, then the new plan.
fn refused_plan(text: &str) -> Value {
    assert!(text.starts_with("refused: the stage changed since that plan; nothing was applied"), "{text}");
    serde_json::from_str(text.split_once(":\n").unwrap().1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroy_planned_before_the_world_moved_is_refused_and_the_new_plan_applies() {
    let p = Project::new("mcp-moved", STACK);
    p.ok(&["up", "local"]);
    let client = connect(&p).await;
    let destroy = plan(&client, "local", "destroy").await;
    assert_eq!(destroy["summary"]["destroy"], 3, "two containers and the network: {destroy}");

    // Someone removes `api` after the plan: the plan the agent read no longer describes the stage.
    support::docker(&["rm", "-f", &p.container("local", "api")]);
    let (error, text) = call(&client, "apply", json!({"stage": "local", "plan_hash": destroy["plan_hash"]})).await;
    assert!(error, "{text}");
    let fresh = refused_plan(&text);
    assert_eq!(
        fresh["actions"],
        json!([
            {"action": "remove_container", "service": "db", "orphan": false},
            {"action": "remove_network", "name": format!("{}-local", p.name)},
        ])
    );
    assert_eq!(fresh["action"], "destroy");
    assert_eq!(p.containers(), [p.container("local", "db")], "nothing was destroyed");
    assert!(p.network_exists("local"));

    // The returned plan is one this server knows: applying it destroys exactly that.
    let (error, text) = call(&client, "apply", json!({"stage": "local", "plan_hash": fresh["plan_hash"]})).await;
    assert!(!error, "{text}");
    assert!(text.contains("- container db"), "{text}");
    assert!(p.containers().is_empty() && !p.network_exists("local"));
    client.cancel().await.unwrap();
}

/// The hash `fleet mcp` hands out for a plan, made here from the command line's own JSON: the
/// dry run's plan and `config --show-secrets` (which the run computes in-process).
fn cli_plan_hash(p: &Project, intent: fleetflow::plan::gate::PlanIntent, args: &[&str]) -> String {
    let mut dry = args.to_vec();
    dry.extend(["--dry-run", "--format", "json"]);
    let plan = p.fleet(&dry);
    assert!(matches!(plan.code, 0 | 2), "{plan:?}");
    let config = p.ok(&["config", "--format", "json", "--show-secrets", "local"]);
    let (plan, config) = (serde_json::from_str(&plan.stdout).unwrap(), serde_json::from_str(&config.stdout).unwrap());
    fleetflow::plan::gate::plan_hash("local", intent, &plan, &config)
}

/// Whether process `pid` has `path` open.
fn has_open(pid: u32, path: &std::path::Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path)))
        .unwrap_or(false)
}

#[test]
fn a_gated_run_checks_the_plan_it_observes_under_the_lock_it_waited_for() {
    use fleetflow::plan::gate::PlanIntent;
    use std::process::{Command, Stdio};
    let p = Project::new("mcp-gate-lock", STACK);
    p.ok(&["up", "local"]);
    let stop = cli_plan_hash(&p, PlanIntent::Down, &["down", "local"]);
    p.fleet(&["down", "local", "--dry-run", "--plan-hash", &stop]).fails_with(1, &["cannot be used with"]);

    // Another holder has the stage lock; the gated run waits for it.
    let lock = p.path().join(".locks").join(format!("{}@local.lock", p.name));
    let mut holder = Command::new("flock").arg(&lock).arg("cat").stdin(Stdio::piped()).spawn().unwrap();
    while Command::new("flock").args(["-n"]).arg(&lock).arg("true").status().unwrap().success() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let run = p
        .cmd(&["down", "local", "--plan-hash", &stop, "--lock-wait", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !has_open(run.id(), &lock) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // While it waits, `api` stops: the plan it was given (stop api, stop db) is not the stage's.
    support::docker(&["stop", &p.container("local", "api")]);
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stage `local` changed since plan"), "{stderr}");
    assert!(stderr.contains("`down` now plans 0 to add, 1 to change"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(p.inspect("local", "db", "{{.State.Running}}").as_deref(), Some("true"), "db was not stopped");

    // A hash is for one rung: the down's hash lets no destroy through.
    let stop = cli_plan_hash(&p, PlanIntent::Down, &["down", "local"]);
    p.fleet(&["down", "local", "--destroy", "--yes", "--plan-hash", &stop]).fails_with(1, &["nothing was changed"]);
    assert_eq!(p.containers().len(), 2);
    let run = p.ok(&["down", "local", "--plan-hash", &stop]);
    assert!(run.stdout.contains("~ container db: stop"), "{}", run.stdout);
    assert_eq!(p.inspect("local", "db", "{{.State.Running}}").as_deref(), Some("false"));
    // And an up runs its own plan too.
    let up = cli_plan_hash(&p, PlanIntent::Up, &["up", "local"]);
    p.ok(&["up", "local", "--plan-hash", &up]);
    assert_eq!(p.inspect("local", "api", "{{.State.Running}}").as_deref(), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_up_suspend_and_destroy_run_only_their_plans() {
    use support::remote::{Sim, Sshd, sakura_project};
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("mcp-remote", &sim, &sshd);
    p.ok(&["up", "dev"]);
    let client = connect(&p).await;
    let power = || sim.state()["servers"][0]["power"].clone();

    // A remote `up` runs only its plan: `api` stopped after the plan makes it another plan.
    let up = plan(&client, "dev", "up").await;
    assert_eq!(up["summary"]["add"], 0, "converged: {up}");
    support::docker(&["stop", &p.container("dev", "api")]);
    let (error, text) = call(&client, "apply", json!({"stage": "dev", "plan_hash": up["plan_hash"]})).await;
    assert!(error, "{text}");
    let fresh = refused_plan(&text);
    assert_eq!(fresh["actions"], json!([{"action": "start_container", "service": "api"}]), "{fresh}");
    assert_eq!(p.inspect("dev", "api", "{{.State.Running}}").as_deref(), Some("false"), "nothing was started");
    let (error, text) = call(&client, "apply", json!({"stage": "dev", "plan_hash": fresh["plan_hash"]})).await;
    assert!(!error, "{text}");
    assert_eq!(p.inspect("dev", "api", "{{.State.Running}}").as_deref(), Some("true"));

    let suspend = plan(&client, "dev", "suspend").await;
    assert_eq!(suspend["summary"]["change"], 3, "two stops and the power-off: {suspend}");
    support::docker(&["stop", &p.container("dev", "api")]);
    let (error, text) = call(&client, "apply", json!({"stage": "dev", "plan_hash": suspend["plan_hash"]})).await;
    assert!(error, "{text}");
    let fresh = refused_plan(&text);
    assert_eq!(fresh["actions"], json!([{"action": "stop_container", "service": "db"}]));
    assert_eq!(fresh["infrastructure"], json!([{"action": "power_off", "server": "creo-dev-01"}]));
    assert_eq!(power(), "Up", "the server was not powered off");
    assert_eq!(p.inspect("dev", "db", "{{.State.Running}}").as_deref(), Some("true"));

    let (error, text) = call(&client, "apply", json!({"stage": "dev", "plan_hash": fresh["plan_hash"]})).await;
    assert!(!error, "{text}");
    assert_eq!(power(), "Down");

    let destroy = plan(&client, "dev", "destroy").await;
    let (error, text) = call(&client, "apply", json!({"stage": "dev", "plan_hash": destroy["plan_hash"]})).await;
    assert!(!error, "{text}");
    assert!(text.contains("- server creo-dev-01 (sakura-cloud tk1a) with 1 disk(s)"), "{text}");
    assert!(sim.state()["servers"].as_array().is_some_and(Vec::is_empty));
    // Nothing left: still a plan (empty), not a sentence where the JSON belongs.
    let gone = plan(&client, "dev", "destroy").await;
    assert_eq!((gone["actions"].clone(), gone["infrastructure"].clone()), (json!([]), json!([])), "{gone}");
    client.cancel().await.unwrap();
}
