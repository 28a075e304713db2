//! spindle-lab: the classic threading-model experiments, run live on this machine.
//!
//! `spindle-lab report` runs every experiment and writes `report/` (report.md,
//! results.json and one SVG plot per experiment); `spindle-lab bench NAME` runs one, with
//! `--model`, `--n` and `--json`; `spindle-lab demo NAME` shows one behaviour in a few
//! lines (`fork`, `dump`).
//!
//! `kill -QUIT` (or Ctrl-\\ in a terminal) makes a running lab write a dump of every
//! spindle thread to stderr and go on (`spindle::debug::install_dump_signal`).

mod bench;
mod cli;
mod demo;
mod figures;
mod machine;
mod plots;
mod report;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(command) => command,
        Err(e) => {
            eprintln!("spindle-lab: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = spindle::debug::install_dump_signal(libc::SIGQUIT) {
        eprintln!("spindle-lab: no thread dump on SIGQUIT: {e}");
    }
    let outcome = match command {
        Command::Report { quick, out } => report::run(quick, &out),
        Command::Bench {
            name,
            model,
            n,
            json,
        } => bench::run_one(name, model, n, json),
        Command::Demo { name } => demo::run(name),
        Command::Help(_) => unreachable!("help returned above"),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spindle-lab: {e}");
            ExitCode::FAILURE
        }
    }
}
