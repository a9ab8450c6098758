//! Everything fleet writes to the terminal: plan lines, status, tables, logs, prompts.
//! Colour is stripped by anstream when output is not a terminal or NO_COLOR is set.

mod stream;
pub use stream::{RawMode, Transfer, interactive, raw_stderr, raw_stdout, terminal_size};
mod ship;
mod status;
pub use status::{idle_window, short_duration, status_lines};

use crate::engine::{Event, Events, LogLine};
use crate::plan::{Action, ChangeKind, InfraAction, Plan, PlanSummary, render_action, render_infra};
use crate::report::{ConfigReport, DownOutcome, PlanReport, PsReport};
use indicatif::{ProgressBar, ProgressStyle};
use owo_colors::OwoColorize;
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Output settings shared by every command.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub quiet: bool,
    pub verbose: bool,
}

/// Plan lines coloured like Terraform's: green add, yellow change, red destroy.
pub fn action_line(action: &Action) -> String {
    colour(render_action(action), action.kind())
}

/// What a server the plan creates adds to the bill, the line under its create step.
pub fn cost_line(cost: &crate::plan::ServerCost) -> String {
    match &cost.monthly {
        crate::plan::Monthly::Known { running_yen, suspended_yen } => format!(
            "    adds {}/month while running, {}/month suspended (list prices before discounts)",
            yen(*running_yen),
            yen(*suspended_yen)
        ),
        crate::plan::Monthly::Unknown { error } => {
            format!("    adds an unknown amount per month (the price list could not be read: {error})")
        }
    }
}

/// A server or record step, coloured the same way.
pub fn infra_line(action: &InfraAction) -> String {
    colour(render_infra(action), action.kind())
}

fn colour(text: String, kind: ChangeKind) -> String {
    match kind {
        ChangeKind::Add => text.green().to_string(),
        ChangeKind::Change => text.yellow().to_string(),
        ChangeKind::Replace => text.magenta().to_string(),
        ChangeKind::Destroy => text.red().to_string(),
    }
}

/// Set once stdout is gone (`fleet ps | head`): writers stop, loops over output end, and the
/// command winds down normally so SSH connections and locks are closed.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set when a write to stdout failed for another reason (`>/dev/full`): the output the command
/// promised is lost, so it must not exit 0 (`main` makes it 2).
static STDOUT_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True once a write to stdout failed other than by its reader leaving (a full disk).
pub fn stdout_failed() -> bool {
    STDOUT_FAILED.load(std::sync::atomic::Ordering::Relaxed)
}

/// True once a write to stdout failed because its reader went away.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Resolves once stdout's reader is gone, noticed without writing, so a `logs -f` that has
/// nothing to print still ends when `head` or the terminal goes away.
pub async fn stdout_gone() {
    const CHECK_EVERY: Duration = Duration::from_millis(250);
    loop {
        if stdout_closed() || reader_gone() {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

/// A pipe whose reader closed reports POLLERR, a hung-up terminal POLLHUP; a file neither.
fn reader_gone() -> bool {
    let mut fd = libc::pollfd { fd: libc::STDOUT_FILENO, events: 0, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let rc = unsafe { libc::poll(&mut fd, 1, 0) };
    rc > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// While set, what commands print goes here instead of stdout (`fleet mcp` returns it).
static CAPTURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
/// Set by `fleet mcp`: stdout carries only JSON-RPC, so stray output goes to stderr.
static STDOUT_RESERVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on nothing but the MCP transport writes to stdout.
pub fn reserve_stdout() {
    STDOUT_RESERVED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Starts collecting what commands print (one command at a time: the caller serializes).
pub fn capture_start() {
    *CAPTURE.lock().unwrap_or_else(|e| e.into_inner()) = Some(String::new());
}

/// Stops collecting and returns what was printed.
pub fn capture_take() -> String {
    CAPTURE.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default()
}

/// Writes one line to stdout; a closed pipe is remembered instead of panicking like `println!`.
fn out(text: impl std::fmt::Display) {
    if let Some(buf) = CAPTURE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        use std::fmt::Write as _;
        // Colours are for terminals; an agent reads plain text.
        let _ = writeln!(buf, "{}", anstream::adapter::strip_str(&text.to_string()));
        return;
    }
    if STDOUT_RESERVED.load(std::sync::atomic::Ordering::Relaxed) {
        err(text);
        return;
    }
    if stdout_closed() {
        return;
    }
    let mut stdout = anstream::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}").and_then(|_| stdout.flush()) {
        // A reader that left wanted no more (`| head`); other errors (a full disk) lost output.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
        } else {
            STDOUT_FAILED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Writes one line to stderr. A stderr that cannot be written (`2>/dev/full`, a closed pipe)
/// loses the line: `eprintln!` would panic, and there is nowhere left to report it.
fn err(text: impl std::fmt::Display) {
    let mut stderr = anstream::stderr().lock();
    let _ = writeln!(stderr, "{text}").and_then(|_| stderr.flush());
}

impl Ui {
    pub fn line(&self, text: impl std::fmt::Display) {
        if !self.quiet {
            out(text);
        }
    }

    pub fn warn(&self, text: impl std::fmt::Display) {
        let text = crate::secrets::mask_remembered(&text.to_string());
        err(format!("{} {text}", "warning:".yellow().bold()));
    }

    pub fn note(&self, text: impl std::fmt::Display) {
        if !self.quiet {
            err(text.dimmed());
        }
    }

    /// Only with `-v`: what was observed and where.
    pub fn detail(&self, text: impl std::fmt::Display) {
        if self.verbose && !self.quiet {
            err(text.dimmed());
        }
    }

    pub fn json(&self, value: &serde_json::Value) {
        out(serde_json::to_string_pretty(value).unwrap_or_default());
    }

    /// Orphans an `up` plan keeps (it lists them, it removes them only with --remove-orphans).
    pub fn orphan_warnings(&self, plan: &Plan) {
        for orphan in &plan.orphans {
            let removed =
                plan.actions.iter().any(|a| matches!(a, Action::RemoveContainer { service, .. } if service == orphan));
            if !removed {
                self.warn(format!("container for service `{orphan}` is an orphan (no longer in stage `{}`); --remove-orphans removes it", plan.stage));
            }
        }
    }

    /// The plan as `--dry-run` shows it.
    pub fn plan(&self, plan: &Plan) {
        if plan.is_empty() {
            self.line(format!("Stage {} is up to date; nothing to do.", plan.stage));
            return;
        }
        for action in &plan.infra {
            self.line(infra_line(action));
        }
        for a in &plan.actions {
            self.line(action_line(a));
        }
        self.line(PlanSummary::of(plan).to_string());
    }

    /// Progress from the server providers: action lines like the plan's, and notes.
    pub fn infra_progress(&self) -> crate::infra::Progress {
        let ui = *self;
        Arc::new(move |event| match event {
            crate::infra::InfraEvent::Action(action) => ui.line(infra_line(&action)),
            crate::infra::InfraEvent::Note(text) => ui.note(text),
        })
    }

    /// Progress from the engine: the action lines as they run, spinners for long waits on a TTY.
    pub fn events(&self) -> Events {
        let ui = *self;
        let tty = std::io::stderr().is_terminal() && !ui.quiet;
        let spinners: Arc<Mutex<HashMap<String, ProgressBar>>> = Arc::default();
        Arc::new(move |event| match event {
            Event::Applying(action) => ui.line(action_line(&action)),
            Event::Pulling { image } => ui.note(format!("pulling {image}…")),
            Event::Pulled { image } => ui.note(format!("pulled {image}")),
            Event::Copying { image, bytes, to } => ui.note(format!(
                "copying image {image} ({}) from this machine to {to} (it cannot be pulled there)…",
                human_bytes(bytes.max(0) as u64)
            )),
            Event::Copied { image } => ui.note(format!("copied {image}")),
            Event::Sent { image, to, layers_sent, layers_total, bytes } => ui.note(format!(
                "sent {layers_sent} of {layers_total} layer(s) of {image} to {to} ({}; the others were there)",
                human_bytes(bytes)
            )),
            Event::Warning(w) => ui.warn(w),
            Event::Waiting { service, until } => {
                if tty {
                    let bar = ProgressBar::new_spinner().with_message(format!("waiting for {service} to be {until}"));
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.enable_steady_tick(Duration::from_millis(120));
                    spinners.lock().unwrap_or_else(|e| e.into_inner()).insert(service, bar);
                } else {
                    ui.note(format!("waiting for {service} to be {until}"));
                }
            }
            Event::Ready { service } => {
                if let Some(bar) = spinners.lock().unwrap_or_else(|e| e.into_inner()).remove(&service) {
                    bar.finish_and_clear();
                }
                ui.note(format!("{service} is ready"));
            }
        })
    }

    /// Asks on a terminal; without one the caller must have passed `--yes`.
    pub fn confirm(&self, question: &str) -> std::io::Result<bool> {
        let mut stderr = anstream::stderr().lock();
        write!(stderr, "{question} Type 'yes' to continue: ")?;
        stderr.flush()?;
        drop(stderr);
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(answer.trim() == "yes")
    }

    pub fn log_line(&self, line: &LogLine, width: usize, colour: usize) {
        const PALETTE: [owo_colors::AnsiColors; 6] = [
            owo_colors::AnsiColors::Cyan,
            owo_colors::AnsiColors::Yellow,
            owo_colors::AnsiColors::Green,
            owo_colors::AnsiColors::Magenta,
            owo_colors::AnsiColors::Blue,
            owo_colors::AnsiColors::Red,
        ];
        let prefix = format!("{:width$} |", line.service);
        let prefix = prefix.color(PALETTE[colour % PALETTE.len()]);
        for text in line.text.lines() {
            out(format!("{prefix} {text}"));
        }
    }
}

/// `2 days`, `1 hour`, `5 minutes`, `12 seconds`, like Docker's `Up …`.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (n, unit) = match secs {
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let fmt_row = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| if i == last { c } else { format!("{c:w$}", w = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = vec![fmt_row(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| fmt_row(r.clone())));
    out.join("\n")
}

fn to_json(value: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

impl Ui {
    /// The closing line of a remote stage's `down`.
    pub fn down_done(&self, stage: &str, outcome: &DownOutcome) {
        let done = match outcome {
            DownOutcome::Destroyed { kept_hosts } if kept_hosts.is_empty() => "destroyed".to_string(),
            DownOutcome::Destroyed { kept_hosts } => {
                let kept: Vec<String> =
                    kept_hosts.iter().map(|s| format!("server {s} (a brought host) keeps running")).collect();
                format!("destroyed, except: {}", kept.join("; "))
            }
            DownOutcome::Suspended => "suspended: servers are powered off and only their disks are billed".to_string(),
            DownOutcome::Down => "down (servers keep running)".to_string(),
        };
        self.line(format!("Stage {stage} is {done}."));
    }

    /// `ps`: `STAGE SERVICE STATUS PORTS CREATED`.
    pub fn ps(&self, r: &PsReport, format: Format) {
        if format == Format::Json {
            return self.json(&to_json(r));
        }
        let now = jiff::Timestamp::now().as_second();
        // SERVER only when some stage listed spans several servers.
        let servers = r.containers.iter().any(|c| c.server.is_some());
        let rows: Vec<Vec<String>> = r
            .containers
            .iter()
            .map(|c| {
                let mut row = vec![c.stage.clone(), c.service.clone()];
                if servers {
                    row.push(c.server.clone().unwrap_or_default());
                }
                row.extend([c.status.clone(), c.ports.join(", "), format!("{} ago", human_duration(now - c.created))]);
                row
            })
            .collect();
        let header: &[&str] = if servers {
            &["STAGE", "SERVICE", "SERVER", "STATUS", "PORTS", "CREATED"]
        } else {
            &["STAGE", "SERVICE", "STATUS", "PORTS", "CREATED"]
        };
        self.line(table(header, &rows));
    }

    /// A plan for `--dry-run` and `plan`: the lines, or one JSON document.
    pub fn plan_report(&self, plan: &Plan, format: Format) {
        match format {
            // The very value a plan hash covers (`PlanReport::json`).
            Format::Json => self.json(&PlanReport::json(plan)),
            Format::Text => self.plan(plan),
        }
    }

    /// `config`: the resolved stage, masked by the caller unless asked otherwise.
    pub fn config(&self, r: &ConfigReport, format: Format) {
        if format == Format::Json {
            return self.json(&to_json(r));
        }
        let name = |v: &serde_json::Value| v["name"].as_str().unwrap_or_default().to_string();
        self.line(format!(
            "project: {}\nstage: {} ({})",
            r.spec["project"].as_str().unwrap_or_default(),
            name(&r.spec),
            r.kind
        ));
        for (kind, key) in [("server", "servers"), ("service", "services")] {
            for v in r.spec[key].as_array().into_iter().flatten() {
                self.line(format!("{kind} {}:", name(v)));
                for (k, v) in v.as_object().into_iter().flatten() {
                    let empty = v.is_null()
                        || v == &serde_json::json!([])
                        || v == &serde_json::json!({})
                        || v == &serde_json::json!(false);
                    if k != "name" && !empty {
                        self.line(format!("  {k}: {v}"));
                    }
                }
            }
        }
    }
}

/// `running ¥4,180/month · suspended ¥880/month (disks) · destroyed ¥0`, the current rung marked.
/// `¥4,180`.
pub fn yen(amount: u64) -> String {
    let digits = amount.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    format!("¥{out}")
}

/// `1.9 MB`, `221.0 MB`, `1.2 GB`: decimal units, as `docker images` prints them.
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.1} kB", b as f64 / 1e3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yen_has_thousands_separators() {
        assert_eq!(yen(0), "¥0");
        assert_eq!(yen(880), "¥880");
        assert_eq!(yen(4180), "¥4,180");
        assert_eq!(yen(1_234_567), "¥1,234,567");
    }

    #[test]
    fn sizes_read_like_docker_images() {
        assert_eq!(human_bytes(1_980_000), "2.0 MB");
        assert_eq!(human_bytes(221_000_000), "221.0 MB");
        assert_eq!(human_bytes(1_234_000_000), "1.2 GB");
        assert_eq!(human_bytes(512), "0.5 kB");
    }

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(60), "1 minute");
        assert_eq!(human_duration(7200), "2 hours");
        assert_eq!(human_duration(172_800), "2 days");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     BB\nlong  x");
    }
}
