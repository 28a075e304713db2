//! The command line: `report`, `bench NAME` and `demo NAME`, parsed with `lexopt`.
//!
//! A hand-written front over a minimal parser rather than clap: clap and its derive were a
//! sixth of the CPU time of a fresh build, and the README's main command builds the lab
//! before it runs the report, which has three minutes in all.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::bench::{Experiment, Subject};
use crate::demo::Demo;

/// A value chosen by name on the command line (an experiment, a subject, a demo).
pub trait Choice: Copy + 'static {
    /// Every value, in the order help lists them.
    const ALL: &'static [Self];
    /// What the value is called on the command line.
    fn cli_name(self) -> &'static str;
    /// One line of help.
    fn help(self) -> &'static str;
}

/// What the command line asked for.
pub enum Command {
    /// Run every experiment and write a report folder.
    Report { quick: bool, out: PathBuf },
    /// Run one experiment and print its figures.
    Bench {
        name: Experiment,
        model: Option<Subject>,
        n: Option<u64>,
        json: bool,
    },
    /// Show one behaviour of spindle.
    Demo { name: Demo },
    /// Print `text` (help) and exit successfully.
    Help(String),
}

/// The usage text, with every choice listed.
pub fn usage() -> String {
    let mut text = String::from(
        "spindle-lab: threading-model experiments, measured live\n\n\
         usage:\n  \
         spindle-lab report [--quick] [--out DIR]\n      \
         Run every experiment and write DIR (default: report) with report.md, results.json\n      \
         and a plot per experiment. --quick: small sizes, for a smoke test.\n  \
         spindle-lab bench NAME [--model SUBJECT] [--n N] [--json]\n      \
         Run one experiment and print its figures (--json: as JSON).\n      \
         --model: only this subject (default: the experiment's usual subjects); skynet\n      \
         measures one-to-one only when asked, on a smaller tree; blocking runs every case\n      \
         of the model.\n      \
         --n: operations (or threads) per measurement; skynet: leaves; parallel: matrix\n      \
         size; blocking: milliseconds the blocking call lasts; creation: the most threads\n      \
         (kernel threads: at most 50,000); latency: the most CPU-bound threads; sync: lock +\n      \
         unlock pairs and messages per measurement; http: seconds of load per server.\n  \
         spindle-lab demo NAME\n      \
         Show one behaviour of spindle in a few lines of output.\n",
    );
    list_choices::<Experiment>(&mut text, "experiments (bench NAME)");
    list_choices::<Subject>(&mut text, "subjects (--model)");
    list_choices::<Demo>(&mut text, "demos (demo NAME)");
    text
}

fn list_choices<T: Choice>(text: &mut String, title: &str) {
    let _ = write!(text, "\n{title}:\n");
    for c in T::ALL {
        let _ = writeln!(text, "  {:22} {}", c.cli_name(), c.help());
    }
}

/// Parses a choice by its command-line name; the error names `what` and lists the names.
pub fn parse_choice<T: Choice>(what: &str, value: &str) -> Result<T, String> {
    T::ALL
        .iter()
        .copied()
        .find(|c| c.cli_name() == value)
        .ok_or_else(|| {
            let names: Vec<&str> = T::ALL.iter().map(|c| c.cli_name()).collect();
            format!(
                "unknown {what} '{value}'; it is one of: {}",
                names.join(", ")
            )
        })
}

/// Parses the command line (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let command = match parser.next().map_err(|e| e.to_string())? {
        Some(Value(v)) => string(v)?,
        Some(Short('h') | Long("help")) | None => return Ok(Command::Help(usage())),
        Some(other) => return Err(other.unexpected().to_string()),
    };
    let mut name: Option<String> = None;
    let (mut quick, mut out, mut model, mut n, mut json) =
        (false, PathBuf::from("report"), None, None, false);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match (command.as_str(), arg) {
            (_, Short('h') | Long("help")) => return Ok(Command::Help(usage())),
            ("report", Long("quick")) => quick = true,
            ("report", Long("out")) => out = parser.value().map_err(|e| e.to_string())?.into(),
            ("bench", Long("model")) => {
                let value = string(parser.value().map_err(|e| e.to_string())?)?;
                model = Some(parse_choice("subject", &value)?);
            }
            ("bench", Long("n")) => {
                let value = string(parser.value().map_err(|e| e.to_string())?)?;
                n = Some(
                    value
                        .parse::<u64>()
                        .map_err(|e| format!("--n takes a whole number, not '{value}': {e}"))?,
                );
            }
            ("bench", Long("json")) => json = true,
            ("bench" | "demo", Value(v)) if name.is_none() => name = Some(string(v)?),
            ("report" | "bench" | "demo", other) => {
                return Err(format!(
                    "{} (for {command}); see spindle-lab --help",
                    other.unexpected()
                ))
            }
            (_, _) => break,
        }
    }
    let needs_name = |what: &str| -> Result<String, String> {
        name.clone()
            .ok_or_else(|| format!("{command} needs the name of {what}; see spindle-lab --help"))
    };
    match command.as_str() {
        "report" => Ok(Command::Report { quick, out }),
        "bench" => Ok(Command::Bench {
            name: parse_choice("experiment", &needs_name("an experiment")?)?,
            model,
            n,
            json,
        }),
        "demo" => Ok(Command::Demo {
            name: parse_choice("demo", &needs_name("a demo")?)?,
        }),
        other => Err(format!(
            "unknown command '{other}'; it is one of: report, bench, demo (see spindle-lab --help)"
        )),
    }
}

fn string(v: OsString) -> Result<String, String> {
    v.into_string()
        .map_err(|v| format!("not valid UTF-8: {}", v.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, String> {
        parse(line.split_whitespace().map(OsString::from))
    }

    #[test]
    fn the_three_commands_parse_with_their_options() {
        match parse_str("report --quick --out /tmp/x").unwrap() {
            Command::Report { quick, out } => {
                assert!(quick);
                assert_eq!(out, PathBuf::from("/tmp/x"));
            }
            _ => panic!("not a report"),
        }
        match parse_str("bench skynet --model many-to-one --n 1000 --json").unwrap() {
            Command::Bench {
                name,
                model,
                n,
                json,
            } => {
                assert_eq!(name, Experiment::Skynet);
                assert_eq!(model, Some(Subject::ManyToOne));
                assert_eq!(n, Some(1000));
                assert!(json);
            }
            _ => panic!("not a bench"),
        }
        match parse_str("bench --n=5 switch").unwrap() {
            Command::Bench { name, n, .. } => {
                assert_eq!(name, Experiment::Switch);
                assert_eq!(n, Some(5));
            }
            _ => panic!("not a bench"),
        }
        assert!(matches!(
            parse_str("demo fork").unwrap(),
            Command::Demo { name: Demo::Fork }
        ));
    }

    #[test]
    fn bad_input_is_named() {
        let err = |line| match parse_str(line) {
            Err(e) => e,
            Ok(_) => panic!("'{line}' parsed"),
        };
        assert!(err("bench nosuch").contains("unknown experiment 'nosuch'"));
        assert!(err("bench nosuch").contains("switch, spawn"));
        assert!(err("bench switch --model fibers").contains("unknown subject 'fibers'"));
        assert!(err("bench switch --n many").contains("--n takes a whole number, not 'many'"));
        assert!(err("bench").contains("bench needs the name of an experiment"));
        assert!(err("report --json").contains("--json"));
        assert!(err("frobnicate").contains("unknown command 'frobnicate'"));
    }

    #[test]
    fn every_choice_round_trips_and_help_lists_it() {
        fn check<T: Choice + PartialEq + std::fmt::Debug>(what: &str, help: &str) {
            for &c in T::ALL {
                assert_eq!(parse_choice::<T>(what, c.cli_name()), Ok(c));
                assert!(
                    help.contains(c.cli_name()),
                    "{} missing from help",
                    c.cli_name()
                );
            }
        }
        let help = match parse_str("--help").unwrap() {
            Command::Help(text) => text,
            _ => panic!("not help"),
        };
        check::<Experiment>("experiment", &help);
        check::<Subject>("subject", &help);
        check::<Demo>("demo", &help);
    }
}
