use clap::Parser;
use fleetflow::cli::{self, Cli, Command};
use fleetflow::error::Error;
use std::io::Write;

#[tokio::main]
async fn main() {
    let args = match Cli::try_parse() {
        Ok(args) => args,
        Err(e) => exit_on_bad_arguments(e),
    };
    // `plan` and `--dry-run` promise 0 nothing to do, 2 changes, 1 any error, so a CI job
    // never reads a config error as "changes pending".
    let plan_like = args.is_plan_like();
    let run = async move {
        match args.command {
            Command::Mcp => fleetflow::mcp::serve(args.file).await,
            _ => cli::run(args).await,
        }
    };
    let code = match fleetflow::signal::run(run).await {
        // Output that could not be written (`>/dev/full`) is no success, and no "changes pending".
        Ok(code) if fleetflow::ui::stdout_failed() && (code == 0 || plan_like) => {
            if plan_like {
                1
            } else {
                2
            }
        }
        Ok(code) => code,
        Err(e) => report(e, plan_like),
    };
    std::process::exit(code);
}

fn report(e: Error, plan_like: bool) -> i32 {
    let code = match e.exit_code() {
        2 if plan_like => 1,
        code => code,
    };
    let text = fleetflow::error_output::render(&e, fleetflow::error_output::Style::for_stderr());
    // A value from `.env` or the environment is never printed, whichever layer failed on it.
    let text = fleetflow::secrets::mask_remembered(&text);
    // After the mask: a 100 kB name is cut to its start and end, never a secret to part of it.
    let text = fleetflow::error_output::cut_long_lines(&text);
    // A stderr that cannot be written (`2>/dev/full`, a closed pipe) loses the message, not the exit code.
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes()).and_then(|_| stderr.flush());
    code
}

/// clap's own exit is 2 for bad arguments; a plan-like command keeps its promise of 1.
fn exit_on_bad_arguments(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    // `print` returns the write error (a closed pipe, a full disk) rather than panicking.
    let printed = e.print().is_ok();
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        std::process::exit(if printed { 0 } else { 2 });
    }
    // `args_os`: an argument that is not UTF-8 is clap's error to report, not a panic here.
    let plan_like = std::env::args_os().skip(1).any(|a| a == "plan" || a == "--dry-run");
    std::process::exit(if plan_like { 1 } else { e.exit_code() });
}
