//! Demonstrations: small programs that show one behaviour of spindle in a few lines of
//! output (`spindle-lab demo NAME`), unlike the experiments, which measure.

mod dump;
mod fork;

use std::io;

/// A demonstration the lab can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demo {
    /// fork() with runtimes alive: a child that uses an inherited runtime fails fast, a
    /// child that builds its own runtime works, and Command starts 100 children without
    /// forking while a ticker ticks.
    Fork,
    /// debug::dump_text() of a program whose green threads wait in a dozen ways, and the
    /// time to dump 100,000 parked green threads with their backtraces.
    Dump,
}

impl crate::cli::Choice for Demo {
    const ALL: &'static [Demo] = &[Demo::Fork, Demo::Dump];

    fn cli_name(self) -> &'static str {
        match self {
            Demo::Fork => "fork",
            Demo::Dump => "dump",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Demo::Fork => "fork() with runtimes alive, and Command without forking",
            Demo::Dump => "debug::dump_text() of threads waiting in a dozen ways",
        }
    }
}

/// Shows `demo` on stdout.
pub fn run(demo: Demo) -> io::Result<()> {
    match demo {
        Demo::Fork => fork::run(),
        Demo::Dump => dump::run(),
    }
}
