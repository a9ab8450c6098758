//! End-to-end: `fleet mcp` driven by a real MCP client (rmcp's, over the child's stdio) against
//! a local stage on the real Docker engine: initialize, list the tools, plan, apply with a stale
//! hash (refused), apply with the right one, and no destroy without a matching plan.

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
