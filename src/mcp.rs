//! `fleet mcp`: a stdio MCP server (the official SDK, rmcp) through which coding agents drive
//! stages by plan and apply.
//!
//! Every tool runs the command line's own path (`cli::run`) with its output captured, so
//! `protect`, the stage lock and the confirmation rules are exactly the command line's. Nothing
//! changes a stage without a plan: `plan` returns the typed plan with a `plan_hash`
//! (`plan::gate::plan_hash`); `apply` runs the command with that hash as its plan gate
//! (`--plan-hash`), so the run observes under the stage lock, plans, and executes that plan only
//! if it has the same hash (its action included), else refuses, changing nothing, with the new
//! plan. stdout carries only JSON-RPC.

use crate::cli::{self, Cli};
use crate::error::{Error, Result};
use crate::plan::gate::{self, PlanIntent};
use clap::Parser;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What a plan is for: the rung of the ladder it climbs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "lowercase")]
pub enum PlanAction {
    Up,
    Down,
    Suspend,
    Destroy,
}

impl PlanAction {
    fn intent(self) -> PlanIntent {
        match self {
            PlanAction::Up => PlanIntent::Up,
            PlanAction::Down => PlanIntent::Down,
            PlanAction::Suspend => PlanIntent::Suspend,
            PlanAction::Destroy => PlanIntent::Destroy,
        }
    }

    fn name(self) -> &'static str {
        self.intent().name()
    }

    /// The command line that plans it (no hash: `--dry-run`) or runs exactly the plan with
    /// `plan_hash` (its gate).
    fn argv(self, stage: &str, plan_hash: Option<&str>) -> Vec<String> {
        let mut v: Vec<&str> = match self {
            PlanAction::Up => vec!["up"],
            PlanAction::Down => vec!["down"],
            PlanAction::Suspend => vec!["down", "--suspend"],
            PlanAction::Destroy => vec!["down", "--destroy"],
        };
        match plan_hash {
            None => v.extend(["--dry-run", "--format", "json"]),
            // The gated plan is the confirmation the command line asks a human for.
            Some(hash) if self == PlanAction::Destroy => v.extend(["--yes", "--plan-hash", hash]),
            Some(hash) => v.extend(["--plan-hash", hash]),
        }
        // `--` keeps a stage name from ever being read as a flag.
        v.extend(["--", stage]);
        v.into_iter().map(String::from).collect()
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct StageParams {
    /// The stage, e.g. `dev`.
    pub stage: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct PlanParams {
    /// The stage, e.g. `dev`.
    pub stage: String,
    /// `up`, `down`, `suspend` or `destroy`.
    pub action: PlanAction,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ApplyParams {
    /// The stage the plan was made for.
    pub stage: String,
    /// `plan_hash` of a plan this server returned.
    pub plan_hash: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct LogsParams {
    /// The stage, e.g. `dev`.
    pub stage: String,
    /// Only this service.
    pub service: Option<String>,
    /// Lines from the end of each log (default 100).
    pub tail: Option<u64>,
}

#[derive(Clone)]
pub struct FleetMcp {
    /// `-f FILE` as given to `fleet mcp`.
    file: Option<PathBuf>,
    /// plan_hash → (stage, action) of the plans this server returned.
    plans: Arc<Mutex<HashMap<String, (String, PlanAction)>>>,
    /// One command at a time: output capture is process-wide, and a stage has one writer anyway.
    gate: Arc<tokio::sync::Mutex<()>>,
    tool_router: ToolRouter<Self>,
}

/// A command's exit code and what it printed.
struct Outcome {
    result: Result<i32>,
    stdout: String,
}

fn text(s: impl Into<String>) -> Vec<ContentBlock> {
    vec![ContentBlock::text(s.into())]
}

/// An error as the command line shows it: the message and its help, without terminal graphics.
fn error_text(e: &Error) -> String {
    use miette::Diagnostic;
    match e.help() {
        Some(help) => format!("{e}\nhelp: {help}"),
        None => e.to_string(),
    }
}

impl FleetMcp {
    pub fn new(file: Option<PathBuf>) -> Self {
        Self { file, plans: Arc::default(), gate: Arc::default(), tool_router: Self::tool_router() }
    }

    /// Runs `fleet [-f FILE] ARGS…` in this process with its output captured.
    async fn run(&self, args: Vec<String>) -> Outcome {
        let mut argv = vec!["fleet".to_string()];
        if let Some(f) = &self.file {
            argv.extend(["-f".to_string(), f.display().to_string()]);
        }
        argv.extend(args);
        let parsed = match Cli::try_parse_from(&argv) {
            Ok(c) => c,
            Err(e) => return Outcome { result: Err(Error::usage(e.to_string())), stdout: String::new() },
        };
        let _one_at_a_time = self.gate.lock().await;
        crate::ui::capture_start();
        let result = Box::pin(cli::run(parsed)).await;
        Outcome { result, stdout: crate::ui::capture_take() }
    }

    /// A fresh plan as JSON with `action` and `plan_hash`, remembered for `apply`.
    async fn fresh_plan(&self, stage: &str, action: PlanAction) -> std::result::Result<Value, String> {
        let out = self.run(action.argv(stage, None)).await;
        match out.result {
            // 0: nothing to do, 2: changes pending; both are plans.
            Ok(0 | 2) => {}
            Ok(code) => return Err(format!("planning exited {code}: {}", out.stdout.trim())),
            Err(e) => return Err(error_text(&e)),
        }
        let plan: Value = serde_json::from_str(&out.stdout)
            .map_err(|e| format!("the plan is not JSON ({e}): {}", out.stdout.trim()))?;
        // The resolved stage with its secrets goes into the hash only, never to the client.
        let resolved = self.resolved(stage).map_err(|e| error_text(&e))?;
        Ok(self.remember(stage, action, gate::hashed(stage, action.intent(), plan, &resolved)))
    }

    /// The resolved stage as `config --format json --show-secrets` prints it, computed here as
    /// the gated run computes it (`ConfigReport::resolved_json`).
    fn resolved(&self, stage: &str) -> Result<Value> {
        let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?;
        let cfg = crate::config::Config::load(&crate::config::discover(self.file.as_deref(), &cwd)?)?;
        let spec = crate::stage::ship::resolve(&cfg.project, cfg.stage(stage)?)?;
        Ok(crate::report::ConfigReport::resolved_json(&spec))
    }

    /// A handed-out plan (with its `plan_hash`), kept so `apply` knows what the hash is for.
    fn remember(&self, stage: &str, action: PlanAction, plan: Value) -> Value {
        if let Some(hash) = plan["plan_hash"].as_str() {
            let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
            plans.insert(hash.to_string(), (stage.to_string(), action));
        }
        plan
    }

    /// A read-only command's output as the tool result.
    async fn read_only(&self, args: Vec<String>) -> CallToolResult {
        let out = self.run(args).await;
        match out.result {
            Ok(0) => CallToolResult::success(text(out.stdout)),
            Ok(code) => CallToolResult::error(text(format!("exit {code}\n{}", out.stdout))),
            Err(e) => CallToolResult::error(text(error_text(&e))),
        }
    }
}

#[tool_router(router = tool_router)]
impl FleetMcp {
    /// The project's stages: name, local or remote, and servers.
    #[tool(annotations(read_only_hint = true))]
    async fn list_stages(&self) -> CallToolResult {
        let found = (|| -> Result<Value> {
            let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?;
            let cfg = crate::config::Config::load(&crate::config::discover(self.file.as_deref(), &cwd)?)?;
            let mut stages = Vec::new();
            for name in cfg.stage_names() {
                let entry = match cfg.stage(&name) {
                    Ok(spec) => json!({
                        "name": name,
                        "type": if spec.is_local() { "local" } else { "remote" },
                        "servers": spec.servers.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
                        "services": spec.services.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
                        "protect": spec.protect,
                    }),
                    Err(e) => json!({"name": name, "error": error_text(&e)}),
                };
                stages.push(entry);
            }
            Ok(json!({"project": cfg.project, "file": cfg.source.name, "stages": stages}))
        })();
        match found {
            Ok(v) => CallToolResult::success(text(v.to_string())),
            Err(e) => CallToolResult::error(text(error_text(&e))),
        }
    }

    /// What `up`, `down`, `suspend` or `destroy` would change, as a typed JSON plan with a
    /// `plan_hash` to pass to `apply`. Changes nothing.
    #[tool(annotations(read_only_hint = true))]
    async fn plan(&self, Parameters(p): Parameters<PlanParams>) -> CallToolResult {
        match self.fresh_plan(&p.stage, p.action).await {
            Ok(plan) => CallToolResult::success(text(plan.to_string())),
            Err(e) => CallToolResult::error(text(e)),
        }
    }

    /// Applies a plan returned by `plan`: the run observes the stage under its lock and executes
    /// the plan only if it has the same `plan_hash`; otherwise it refuses, changes nothing, and
    /// returns the new plan. `protect`, the stage lock and every rule of the command line hold.
    #[tool(annotations(destructive_hint = true, read_only_hint = false))]
    async fn apply(&self, Parameters(p): Parameters<ApplyParams>) -> CallToolResult {
        let known = self.plans.lock().unwrap_or_else(|e| e.into_inner()).get(&p.plan_hash).cloned();
        let Some((stage, action)) = known.filter(|(stage, _)| *stage == p.stage) else {
            return CallToolResult::error(text(format!(
                "no plan with hash {} for stage {} was made by this server: call plan first",
                p.plan_hash, p.stage
            )));
        };
        let out = self.run(action.argv(&stage, Some(&p.plan_hash))).await;
        match out.result {
            Ok(0) => {
                CallToolResult::success(text(format!("applied {} to stage {stage}\n{}", action.name(), out.stdout)))
            }
            Ok(code) => CallToolResult::error(text(format!("exit {code}\n{}", out.stdout))),
            Err(Error::PlanChanged(changed)) => {
                let fresh = self.remember(&stage, action, changed.plan);
                CallToolResult::error(text(format!(
                    "refused: the stage changed since that plan; nothing was applied. The new plan (apply its plan_hash if it is what you want):\n{fresh}"
                )))
            }
            Err(e) => CallToolResult::error(text(format!("{}\n{}", error_text(&e), out.stdout))),
        }
    }

    /// Infrastructure and services of a stage, with state, health, uptime and cost (JSON).
    #[tool(annotations(read_only_hint = true))]
    async fn status(&self, Parameters(p): Parameters<StageParams>) -> CallToolResult {
        self.read_only(vec!["status".into(), "--format".into(), "json".into(), "--".into(), p.stage]).await
    }

    /// The stage's containers (JSON).
    #[tool(annotations(read_only_hint = true))]
    async fn ps(&self, Parameters(p): Parameters<StageParams>) -> CallToolResult {
        self.read_only(vec!["ps".into(), "--format".into(), "json".into(), "--".into(), p.stage]).await
    }

    /// The last lines of the stage's logs, merged (never follows).
    #[tool(annotations(read_only_hint = true))]
    async fn logs(&self, Parameters(p): Parameters<LogsParams>) -> CallToolResult {
        let mut args = vec!["logs".to_string(), "--tail".into(), p.tail.unwrap_or(100).to_string()];
        if let Some(s) = p.service {
            args.extend(["--service".into(), s]);
        }
        args.extend(["--".into(), p.stage]);
        self.read_only(args).await
    }

    /// Checks the whole file: every stage, with locations for every mistake.
    #[tool(annotations(read_only_hint = true))]
    async fn validate(&self) -> CallToolResult {
        self.read_only(vec!["validate".into()]).await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FleetMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("fleet", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Drive fleet stages by plan and apply: call plan {stage, action}, read the plan, then apply {stage, plan_hash}. \
                 apply refuses when the stage changed since the plan and returns the new plan.",
            )
    }
}

/// Serves MCP on stdin/stdout until the client closes the connection. A line-level JSON-RPC
/// guard (`mcp_wire`) stands between stdio and rmcp.
pub async fn serve(file: Option<PathBuf>) -> Result<i32> {
    crate::ui::reserve_stdout();
    let mcp = FleetMcp::new(file);
    let guard = crate::mcp_wire::Guard::new(required_arguments(&mcp.tool_router));
    let (rmcp_side, guard_side) = tokio::io::duplex(1 << 16);
    let (rmcp_in, rmcp_out) = tokio::io::split(rmcp_side);
    let (from_rmcp, to_rmcp) = tokio::io::split(guard_side);
    let pump = tokio::spawn(crate::mcp_wire::pump(guard, to_rmcp, from_rmcp));
    let ended = match mcp.serve((rmcp_in, rmcp_out)).await {
        Ok(service) => service.waiting().await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    // The guard's last replies are written before the process exits.
    let input_ended = tokio::time::timeout(PUMP_DRAIN, pump).await.is_ok();
    match ended {
        Ok(()) => Ok(0),
        // The client left before initializing: nothing was asked, nothing failed.
        Err(_) if input_ended => Ok(0),
        Err(e) => Err(Error::failed(format!("MCP: the session ended with an error: {e}"))),
    }
}

/// How long the end of a session waits for the guard's last replies to be written.
const PUMP_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Tool name → the arguments its input schema requires.
fn required_arguments(router: &ToolRouter<FleetMcp>) -> HashMap<String, Vec<String>> {
    router
        .list_all()
        .into_iter()
        .map(|tool| {
            let required = tool.input_schema.get("required").and_then(Value::as_array);
            let names = required.into_iter().flatten().filter_map(Value::as_str).map(String::from).collect();
            (tool.name.to_string(), names)
        })
        .collect()
}
