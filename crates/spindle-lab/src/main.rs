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
mod demo;
mod figures;
mod machine;
mod plots;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bench::{Experiment, Subject};

#[derive(Parser)]
#[command(
    name = "spindle-lab",
    about = "Threading-model experiments, measured live"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every experiment and write a report folder.
    Report {
        /// Small sizes, for a smoke test.
        #[arg(long)]
        quick: bool,
        /// Where to write report.md, results.json and the plots.
        #[arg(long, default_value = "report")]
        out: PathBuf,
    },
    /// Run one experiment and print its figures.
    Bench {
        /// The experiment.
        #[arg(value_enum)]
        name: Experiment,
        /// Run only this subject (default: the experiment's usual subjects). skynet measures
        /// one-to-one only when asked, on a smaller tree, with its baselines at that size;
        /// blocking runs every case of the model (with and without migration, ticker on
        /// the same or the other worker).
        #[arg(long)]
        model: Option<Subject>,
        /// Operations (or threads) per measurement; skynet: leaves; parallel: matrix size;
        /// blocking: milliseconds the blocking call lasts; creation: the most threads (kernel
        /// threads: at most 50,000); latency: the most CPU-bound threads; sync: lock + unlock
        /// pairs and messages per measurement.
        #[arg(long)]
        n: Option<u64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one behaviour of spindle in a few lines of output.
    Demo {
        /// The demonstration.
        #[arg(value_enum)]
        name: demo::Demo,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = spindle::debug::install_dump_signal(libc::SIGQUIT) {
        eprintln!("spindle-lab: no thread dump on SIGQUIT: {e}");
    }
    let outcome = match cli.command {
        Command::Report { quick, out } => report::run(quick, &out),
        Command::Bench {
            name,
            model,
            n,
            json,
        } => bench::run_one(name, model, n, json),
        Command::Demo { name } => demo::run(name),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spindle-lab: {e}");
            ExitCode::FAILURE
        }
    }
}
