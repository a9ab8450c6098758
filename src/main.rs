use clap::Parser;
use fleetflow::cli::{self, Cli};
use fleetflow::error::Error;

#[tokio::main]
async fn main() {
    let args = Cli::parse();
    // Piped output (CI logs, grep) keeps each message on one line.
    let wrap = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = miette::set_hook(Box::new(move |_| Box::new(miette::MietteHandlerOpts::new().wrap_lines(wrap).build())));
    // Ctrl-C drops the running command: its tasks are aborted and the lock is released.
    // Work already done is visible on the engine, so the next `up` converges from there.
    let code = tokio::select! {
        result = cli::run(args) => match result {
            Ok(code) => code,
            Err(e) => report(e),
        },
        _ = tokio::signal::ctrl_c() => report(Error::Interrupted),
    };
    std::process::exit(code);
}

fn report(e: Error) -> i32 {
    let code = e.exit_code();
    eprintln!("{:?}", miette::Report::new(e));
    code
}
