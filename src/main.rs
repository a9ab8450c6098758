use clap::Parser;
use fleetflow::cli::{self, Cli, Command};
use fleetflow::error::Error;

#[tokio::main]
async fn main() {
    let args = match Cli::try_parse() {
        Ok(args) => args,
        Err(e) => exit_on_bad_arguments(e),
    };
    // `plan` and `--dry-run` promise 0 nothing to do, 2 changes, 1 any error, so a CI job
    // never reads a config error as "changes pending".
    let plan_like = args.is_plan_like();
    // Piped output (CI logs, grep) keeps each message on one line.
    let wrap = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = miette::set_hook(Box::new(move |_| Box::new(miette::MietteHandlerOpts::new().wrap_lines(wrap).build())));
    let run = async move {
        match args.command {
            Command::Mcp => fleetflow::mcp::serve(args.file).await,
            _ => cli::run(args).await,
        }
    };
    let code = match fleetflow::signal::run(run).await {
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
    eprintln!("{:?}", miette::Report::new(e));
    code
}

/// clap's own exit is 2 for bad arguments; a plan-like command keeps its promise of 1.
fn exit_on_bad_arguments(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let plan_like = std::env::args().skip(1).any(|a| a == "plan" || a == "--dry-run");
    let _ = e.print();
    std::process::exit(if plan_like { 1 } else { e.exit_code() });
}
