//! The `drp` command: parse the command line, run the command, map the outcome to an exit
//! status (0 success, 1 failure, 2 usage, 3 integrity: see `drp --help`).

mod backup;
mod cli;
mod demo;
mod drill;
mod keys;
mod notify;
mod output;
mod plan;
mod probe;
mod recover;
mod report;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::init_logging(cli.verbose);
    match run(cli.command) {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("drp: error: {error}");
            ExitCode::from(error.exit_status())
        }
    }
}

/// Runs a command; `Ok` holds the exit status (`drp probe` exits 1 when unhealthy).
fn run(command: cli::Command) -> Result<u8, output::CommandError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| output::CommandError::message(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        match command {
            cli::Command::Keys(command) => keys::run(command).map(|()| drp_core::exit::SUCCESS),
            cli::Command::Backup(command) => backup::run(*command)
                .await
                .map(|()| drp_core::exit::SUCCESS),
            cli::Command::Probe(args) => probe::run(*args).await,
            cli::Command::Notify(command) => notify::run(command).await,
            cli::Command::Plan(command) => plan::run(command).await,
            cli::Command::Recover(args) => recover::run(args).await,
            cli::Command::Report(args) => report::run(args).await,
            cli::Command::Runs(command) => report::run_runs(command).await,
            cli::Command::Drill(command) => drill::run(command).await,
            cli::Command::Demo(args) => demo::run(args).await,
        }
    })
}
