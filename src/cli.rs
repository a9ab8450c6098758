//! Command-line surface: parsing and dispatch only.

use crate::config::{self, Config};
use crate::engine::{LogOptions, PullPolicy};
use crate::error::{Error, Result};
use crate::model::StageSpec;
use crate::ops;
use crate::plan::gate::PlanGate;
use crate::stage::{self, DownOptions, UpOptions};
use crate::ui::{Format, Ui};
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "fleet", version, about = "Converge a whole stage (servers, containers, DNS) from one fleet.kdl")]
pub struct Cli {
    /// Config file (default: fleet.kdl or .fleetflow/fleet.kdl here or in a parent directory).
    /// Given before the command, like `docker compose -f`: `fleet -f app.kdl logs -f dev`
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Print only errors and requested data
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more detail
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `plan`, `up --dry-run` and `down --dry-run`: their exit code says whether changes are pending.
    pub fn is_plan_like(&self) -> bool {
        match &self.command {
            Command::Stage(c) | Command::Direct(c) => match c {
                StageCommand::Plan(_) => true,
                StageCommand::Up(a) => a.dry_run,
                StageCommand::Down(a) => a.dry_run,
                _ => false,
            },
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work on one stage (an environment: local, dev, pre, prod)
    #[command(subcommand)]
    Stage(StageCommand),
    /// The stage verbs also work without `stage`: `fleet up dev` is `fleet stage up dev`
    #[command(flatten)]
    Direct(StageCommand),
    /// Print the resolved config of a stage (secrets masked)
    Config(ConfigArgs),
    /// Check fleet.kdl and every stage in it; touches nothing
    Validate,
    /// Print a shell completion script
    Completions { shell: clap_complete::Shell },
    /// Serve MCP on stdio for coding agents: plan/apply, status, ps, logs, validate
    Mcp,
    /// Start a fleet project from another tool's file
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Write fleet.kdl from a docker-compose.yml; lists every key it cannot map
    Compose {
        /// The compose file (default: compose.yaml, compose.yml, docker-compose.yaml or docker-compose.yml here)
        file: Option<PathBuf>,
        /// Overwrite an existing fleet.kdl
        #[arg(long)]
        force: bool,
        /// Where to write (default: fleet.kdl beside the compose file)
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StageCommand {
    /// Converge the stage: create, start or recreate what differs from fleet.kdl
    Up(UpArgs),
    /// Stop the stage (--destroy removes it)
    Down(DownArgs),
    /// Infrastructure and services of the stage, with state, health and uptime
    Status(StatusArgs),
    /// Containers of one stage, or of every stage when none is given
    Ps(PsArgs),
    /// Logs of the stage's services, merged
    Logs(LogsArgs),
    /// Show what `up` would do; exit 0 when nothing, 2 when there are changes, 1 on error
    Plan(PlanArgs),
    /// Break the lock a killed run left on a remote stage's first server
    Unlock(StatusArgs),
    /// Run a command in a service's running container; exits with its exit code
    Exec(ExecArgs),
    /// Run a one-off container of a service (its image, environment, volumes, network), removed after
    Run(RunArgs),
    /// Restart services without recreating them, in dependency order, waiting for health
    Restart(RestartArgs),
    /// Copy the stage's named volumes into one verified file on this machine
    Backup(BackupArgs),
    /// Put a stage's volumes back from a backup file (verified whole first)
    Restore(RestoreArgs),
    /// Build the images of the stage's services that have `build` (what is not built yet)
    Build(BuildArgs),
    /// Releases of the stage's built services on its servers, newest first
    Releases(ReleasesArgs),
    /// Run the previous (or --to) release of built services again: no build, no transfer
    Rollback(RollbackArgs),
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Stage name
    pub stage: String,
    /// The service whose running container runs the command
    pub service: String,
    /// The command and its arguments, passed untouched (`--` before it is optional)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Never allocate a TTY (one is allocated when stdin and stdout are terminals)
    #[arg(short = 'T')]
    pub no_tty: bool,
    /// Swarm stages: which task of the service (1-based)
    #[arg(long, value_name = "N")]
    pub index: Option<u32>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stage name
    pub stage: String,
    /// The service whose image, environment, volumes and network the container gets
    pub service: String,
    /// The command and its arguments (default: the service's command)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Do not start the service's dependencies first
    #[arg(long)]
    pub no_deps: bool,
    /// Never allocate a TTY
    #[arg(short = 'T')]
    pub no_tty: bool,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Stage name
    pub stage: String,
    /// Only these services (default: the whole stage)
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Stage name
    pub stage: String,
    /// Only this named volume (repeatable; default: every named volume of the stage)
    #[arg(long = "volume", value_name = "NAME")]
    pub volumes: Vec<String>,
    /// The file to write (default: <project>-<stage>-<UTC time>.backup.tar here)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Stop the services that mount a volume while it is copied, then start them again
    #[arg(long)]
    pub stop: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Stage name
    pub stage: String,
    /// A file written by `fleet backup`
    pub file: PathBuf,
    /// Only this volume of the file (repeatable)
    #[arg(long = "volume", value_name = "NAME")]
    pub volumes: Vec<String>,
    /// Replace volumes that hold data without asking
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub stage: StageArg,
    /// Only these services
    pub services: Vec<String>,
    /// Build every step again, ignoring the engine's cache
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Args)]
pub struct ReleasesArgs {
    #[command(flatten)]
    pub stage: StageArg,
    /// Only this service
    pub service: Option<String>,
    /// One JSON document
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub stage: StageArg,
    /// Only these services (default: every built service)
    pub services: Vec<String>,
    /// The release to run (a version from `fleet releases`; a unique prefix is enough)
    #[arg(long)]
    pub to: Option<String>,
    /// Skip the confirmation
    #[arg(short, long)]
    pub yes: bool,
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lock_wait: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct StageArg {
    /// Stage name (or FLEET_STAGE)
    #[arg(env = "FLEET_STAGE")]
    pub stage: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub stage: StageArg,
    /// Pull every image even when present, and recreate what changed
    #[arg(long)]
    pub pull: bool,
    /// Print the plan and change nothing; exit 0 when nothing, 2 when there are changes, 1 on error
    #[arg(long)]
    pub dry_run: bool,
    /// Remove containers of services no longer in the stage
    #[arg(long)]
    pub remove_orphans: bool,
    /// Recreate every container even when unchanged
    #[arg(long)]
    pub force_recreate: bool,
    /// Skip confirmations
    #[arg(short, long)]
    pub yes: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Wait this long for another run's lock (e.g. 30s, 5m)
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lock_wait: Option<Duration>,
    /// Run only the plan with this hash, else refuse and change nothing (`fleet mcp` apply)
    #[arg(long = "plan-hash", hide = true, value_name = "HASH", conflicts_with = "dry_run")]
    pub plan_gate: Option<PlanGate>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub stage: StageArg,
    /// Also power the servers off (disk-only billing); remote stages only
    #[arg(long, conflicts_with = "destroy")]
    pub suspend: bool,
    /// Delete containers and networks (and servers and DNS records of remote stages)
    #[arg(long)]
    pub destroy: bool,
    /// With --destroy: also delete the stage's named volumes
    #[arg(long, requires = "destroy")]
    pub volumes: bool,
    /// Skip the confirmation --destroy asks for
    #[arg(short, long)]
    pub yes: bool,
    /// Print the plan and change nothing; exit 0 when nothing, 2 when there are changes, 1 on error
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lock_wait: Option<Duration>,
    /// With --destroy: first back the stage's named volumes up to FILE, and destroy only once
    /// that file is complete and verified
    #[arg(long, requires = "destroy", value_name = "FILE")]
    pub backup: Option<PathBuf>,
    /// Run only the plan with this hash, else refuse and change nothing (`fleet mcp` apply)
    #[arg(long = "plan-hash", hide = true, value_name = "HASH", conflicts_with = "dry_run")]
    pub plan_gate: Option<PlanGate>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub stage: StageArg,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub stage: StageArg,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub stage: StageArg,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub stage: StageArg,
    /// Only this service (repeatable)
    #[arg(short, long = "service")]
    pub service: Vec<String>,
    /// Keep following every selected service
    #[arg(short, long)]
    pub follow: bool,
    /// Lines from the end of each log
    #[arg(short = 'n', long)]
    pub tail: Option<u64>,
    /// Only lines newer than this: a duration (10m) or an RFC 3339 time
    #[arg(long)]
    pub since: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub stage: StageArg,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Print secrets instead of masking them (values from .env files or the environment, secret-looking keys, URL passwords)
    #[arg(long)]
    pub show_secrets: bool,
}

/// Parses, runs, and returns the exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let ui = Ui { quiet: cli.quiet, verbose: cli.verbose };
    let load = || load_config(cli.file.as_deref(), &ui);
    match cli.command {
        Command::Stage(c) | Command::Direct(c) => {
            let cfg = load()?;
            run_stage(&cfg, c, &ui).await
        }
        Command::Validate => validate(&load()?, &ui),
        Command::Config(a) => {
            let cfg = load()?;
            let spec = resolve(&cfg, &a.stage)?;
            print_config(&spec, a.format, a.show_secrets, &ui);
            Ok(0)
        }
        // `main` serves `fleet mcp` (the server drives `run`), so `cli` and `mcp` do not import each other.
        Command::Mcp => Err(Error::usage("`fleet mcp` is served by the fleet binary, not from inside a command")),
        Command::Import(ImportCommand::Compose { file, force, output }) => import_compose(file, force, output, &ui),
        Command::Completions { shell } => Ok(completions(shell)),
    }
}

/// fleet.kdl found from `--file` or the current directory, loaded, its warnings shown.
fn load_config(file: Option<&std::path::Path>, ui: &Ui) -> Result<Config> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?;
    let path = config::discover(file, &cwd)?;
    let cfg = Config::load(&path)?;
    for w in &cfg.warnings {
        ui.warn(w);
    }
    Ok(cfg)
}

/// `fleet validate`: every stage checked, nothing touched.
fn validate(cfg: &Config, ui: &Ui) -> Result<i32> {
    let valid = cfg.validate_all()?;
    for w in &valid.warnings {
        ui.warn(w);
    }
    ui.line(format!("{} is valid: project {}, {} stage(s)", cfg.source.name, cfg.project, valid.specs.len()));
    Ok(0)
}

/// `fleet completions`: the script for one shell on stdout; 2 when stdout cannot take it.
fn completions(shell: clap_complete::Shell) -> i32 {
    // Generated into memory: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "fleet", &mut script);
    let written = std::io::Write::write_all(&mut std::io::stdout().lock(), &script);
    if written.is_ok() { 0 } else { 2 }
}

/// One stage verb on the loaded config. The families in order: converge (up, plan, down), look
/// (unlock, status, ps, logs), operate on what runs (exec, run, restart, backup, restore) and
/// releases (build, releases, rollback).
async fn run_stage(cfg: &Config, command: StageCommand, ui: &Ui) -> Result<i32> {
    match command {
        StageCommand::Up(a) => up(cfg, a, ui).await,
        StageCommand::Plan(a) => plan(cfg, a, ui).await,
        StageCommand::Down(a) => down(cfg, a, ui).await,
        StageCommand::Unlock(a) => {
            let spec = resolve(cfg, &a.stage)?;
            stage::unlock(cfg, &spec, ui).await.map(|()| 0)
        }
        StageCommand::Status(a) => {
            let spec = resolve(cfg, &a.stage)?;
            stage::status(cfg, &spec, a.format, ui).await.map(|()| 0)
        }
        StageCommand::Ps(a) => {
            let spec = match &a.stage.stage {
                Some(_) => Some(resolve(cfg, &a.stage)?),
                None => None,
            };
            stage::ps(cfg, spec.as_ref(), a.format, ui).await.map(|()| 0)
        }
        StageCommand::Logs(a) => logs(cfg, a, ui).await,
        StageCommand::Exec(a) => {
            let spec = cfg.stage(&a.stage)?;
            let opts = ops::ExecOptions { service: a.service, command: a.command, no_tty: a.no_tty, index: a.index };
            ops::exec(cfg, &spec, &opts, ui).await
        }
        StageCommand::Run(a) => {
            let spec = cfg.stage(&a.stage)?;
            let opts = ops::RunOptions { service: a.service, command: a.command, no_deps: a.no_deps, no_tty: a.no_tty };
            ops::run(cfg, &spec, &opts, ui).await
        }
        StageCommand::Restart(a) => {
            let spec = cfg.stage(&a.stage)?;
            ops::restart(cfg, &spec, &a.services, ui).await.map(|()| 0)
        }
        StageCommand::Backup(a) => {
            let spec = cfg.stage(&a.stage)?;
            let opts = ops::BackupOptions { volumes: a.volumes, output: a.output, stop: a.stop };
            ops::backup(cfg, &spec, &opts, ui).await.map(|_written| 0)
        }
        StageCommand::Restore(a) => {
            let spec = cfg.stage(&a.stage)?;
            let opts = ops::RestoreOptions { file: a.file, volumes: a.volumes, yes: a.yes };
            ops::restore(cfg, &spec, &opts, ui).await.map(|()| 0)
        }
        StageCommand::Build(a) => {
            let spec = resolve(cfg, &a.stage)?;
            stage::ship::build_command(cfg, &spec, &a.services, a.no_cache, ui).await.map(|()| 0)
        }
        StageCommand::Releases(a) => {
            let spec = resolve(cfg, &a.stage)?;
            let format = if a.json { Format::Json } else { Format::Text };
            stage::ship::releases(cfg, &spec, a.service.as_deref(), format, ui).await.map(|()| 0)
        }
        StageCommand::Rollback(a) => {
            let spec = resolve(cfg, &a.stage)?;
            stage::ship::rollback(cfg, &spec, &a.services, a.to.as_deref(), a.yes, a.lock_wait, ui).await.map(|()| 0)
        }
    }
}

/// `fleet up`: converge; a dry run exits 2 when changes are pending.
async fn up(cfg: &Config, a: UpArgs, ui: &Ui) -> Result<i32> {
    let spec = resolve(cfg, &a.stage)?;
    let opts = UpOptions {
        pull: if a.pull { PullPolicy::Always } else { PullPolicy::Missing },
        dry_run: a.dry_run,
        remove_orphans: a.remove_orphans,
        force_recreate: a.force_recreate,
        format: a.format,
        lock_wait: a.lock_wait,
        plan_gate: a.plan_gate,
    };
    let plan = stage::up(cfg, &spec, &opts, ui).await?;
    Ok(pending(a.dry_run, &plan))
}

/// `fleet plan`: `up`'s dry run; exits 2 when changes are pending.
async fn plan(cfg: &Config, a: PlanArgs, ui: &Ui) -> Result<i32> {
    let spec = resolve(cfg, &a.stage)?;
    let opts = UpOptions {
        pull: PullPolicy::Missing,
        dry_run: true,
        remove_orphans: false,
        force_recreate: false,
        format: a.format,
        lock_wait: None,
        plan_gate: None,
    };
    let plan = stage::up(cfg, &spec, &opts, ui).await?;
    Ok(if plan.is_empty() { 0 } else { 2 })
}

/// `fleet down`: stop, suspend or destroy; a dry run exits 2 when changes are pending.
async fn down(cfg: &Config, a: DownArgs, ui: &Ui) -> Result<i32> {
    let spec = resolve(cfg, &a.stage)?;
    let opts = DownOptions {
        suspend: a.suspend,
        destroy: a.destroy,
        volumes: a.volumes,
        yes: a.yes,
        dry_run: a.dry_run,
        format: a.format,
        lock_wait: a.lock_wait,
        backup: a.backup,
        plan_gate: a.plan_gate,
    };
    let plan = stage::down(cfg, &spec, &opts, ui).await?;
    Ok(pending(a.dry_run, &plan))
}

/// `fleet logs`: one service's lines, optionally followed.
async fn logs(cfg: &Config, a: LogsArgs, ui: &Ui) -> Result<i32> {
    let spec = resolve(cfg, &a.stage)?;
    let opts = LogOptions {
        follow: a.follow,
        tail: a.tail,
        since: a.since.as_deref().map(parse_since).transpose()?,
        timestamps: a.timestamps,
    };
    stage::logs(cfg, &spec, &a.service, &opts, ui).await.map(|()| 0)
}

/// A dry run's exit code says whether changes are pending (2) or not (0), like `plan`.
fn pending(dry_run: bool, plan: &crate::plan::Plan) -> i32 {
    if dry_run && !plan.is_empty() { 2 } else { 0 }
}

fn resolve(cfg: &Config, arg: &StageArg) -> Result<StageSpec> {
    match &arg.stage {
        // Built services run the release their source hashes to.
        Some(name) => stage::ship::resolve(&cfg.project, cfg.stage(name)?),
        None => {
            let names = cfg.stage_names();
            Err(Error::usage_help(
                "no stage given",
                format!("name one (or set FLEET_STAGE); stages in {}: {}", cfg.source.name, names.join(", ")),
            ))
        }
    }
}

/// `10m` ago, or an absolute RFC 3339 time (offsets allowed), as unix seconds.
fn parse_since(s: &str) -> Result<i64> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(jiff::Timestamp::now().as_second() - d.as_secs() as i64);
    }
    s.parse::<jiff::Timestamp>().map(|t| t.as_second()).map_err(|_| {
        Error::usage(format!("--since {s}: expected a duration like 10m or a time like 2026-11-28T09:00:00+09:00"))
    })
}

/// `fleet import compose`: writes only a file that validates, and never over one without `--force`.
fn import_compose(file: Option<PathBuf>, force: bool, output: Option<PathBuf>, ui: &Ui) -> Result<i32> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?;
    let file = match file {
        Some(f) => f,
        None => ["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"]
            .iter()
            .map(|n| cwd.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::usage_help(
                    format!("no compose file in {}", cwd.display()),
                    "name it: fleet import compose path/to/docker-compose.yml",
                )
            })?,
    };
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).map_or(cwd.clone(), PathBuf::from);
    let dir = if dir.is_absolute() { dir } else { cwd.join(dir) };
    let out = output.unwrap_or_else(|| dir.join("fleet.kdl"));
    if out.exists() && !force {
        return Err(Error::usage_help(
            format!("{} exists; nothing was written", out.display()),
            "pass --force to overwrite it, or -o to write elsewhere",
        ));
    }
    let imported = crate::compose_import::import(&file, &dir)?;
    // What fleet would not read is not written.
    let valid = Config::from_text(&out, imported.kdl.clone()).and_then(|c| c.validate_all()).map_err(|e| match e {
        // The text was never written: the errors must not point into a file that does not exist.
        Error::Config(errs) => Error::Config(Box::new(errs.renamed(&format!(
            "fleet.kdl as imported from {} (not written)",
            file.file_name().map_or(file.display(), |n| std::path::Path::new(n).display())
        )))),
        other => other,
    })?;
    for w in &imported.warnings {
        ui.warn(format!("not imported: {w}"));
    }
    for w in &valid.warnings {
        ui.warn(w);
    }
    std::fs::write(&out, &imported.kdl).map_err(|e| Error::io(format!("writing {}", out.display()), e))?;
    ui.line(format!(
        "wrote {}: {} service(s) in stage local, {} key(s) not imported (listed above)",
        out.display(),
        imported.services,
        imported.warnings.len()
    ));
    Ok(0)
}

fn print_config(spec: &StageSpec, format: Format, show_secrets: bool, ui: &Ui) {
    ui.config(&crate::report::ConfigReport::of(spec, show_secrets), format);
}
