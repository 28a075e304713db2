//! `spindle-lab report`: every experiment, a table and a plot each, and a folder with the
//! results.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::bench::{Experiment, Subject};
use crate::figures::{table, Figure};
use crate::machine::Machine;
use crate::plots;

#[derive(Serialize)]
struct ExperimentResult {
    name: &'static str,
    summary: &'static str,
    /// The plot's file, beside results.json.
    #[serde(skip_serializing_if = "Option::is_none")]
    plot: Option<String>,
    figures: Vec<Figure>,
}

#[derive(Serialize)]
struct Results {
    machine: Machine,
    quick: bool,
    experiments: Vec<ExperimentResult>,
}

/// Ratios against spindle many-to-one, so figures can be compared across the same run.
fn ratios(figures: &[Figure]) -> Vec<Figure> {
    let Some(base) = figures
        .iter()
        .find(|f| f.subject == Subject::ManyToOne.name() && f.measured())
    else {
        return Vec::new();
    };
    figures
        .iter()
        .filter(|f| {
            f.measured() && f.subject != base.subject && f.unit == base.unit && base.value > 0.0
        })
        .map(|f| {
            let (metric, value) = if f.subject == Subject::Corosensei.name() {
                (
                    format!("many-to-one {} / this {}", base.metric, f.metric),
                    base.value / f.value,
                )
            } else {
                (
                    format!("this {} / many-to-one {}", f.metric, base.metric),
                    f.value / base.value,
                )
            };
            Figure::new(&f.experiment, &f.subject, &metric, value, "x", f.n)
        })
        .collect()
}

/// A spinner on stderr while experiment `i` of `total` runs; drawn only when stderr is a
/// terminal, so logs stay clean.
fn spinner(e: Experiment, i: usize, total: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner:.cyan} [{prefix}] {msg} {elapsed:.dim}")
            .expect("a valid progress template")
            .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "✓"]),
    );
    bar.set_prefix(format!("{i}/{total}"));
    bar.set_message(format!("running {}", e.name()));
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

pub fn run(quick: bool, out: &Path) -> io::Result<()> {
    let report_started = Instant::now();
    let machine = Machine::probe();
    std::fs::create_dir_all(out)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", out.display())))?;
    println!("spindle-lab report{}", if quick { " (quick)" } else { "" });
    println!("machine:\n{}", machine.markdown());
    let mut results = Vec::new();
    let total = Experiment::ALL.len();
    for (i, e) in Experiment::ALL.into_iter().enumerate() {
        let bar = spinner(e, i + 1, total);
        let started = Instant::now();
        let outcome = e.run(None, e.default_n(quick), quick);
        let mut figures = match outcome {
            Ok(f) => f,
            Err(err) => {
                bar.abandon_with_message(format!("{}: failed", e.name()));
                return Err(err);
            }
        };
        if e.ratios_in_report() {
            let r = ratios(&figures);
            figures.extend(r);
        }
        let plot = plots::write(e, &figures, out)?;
        bar.finish_with_message(format!(
            "{}: done in {:.1} s",
            e.name(),
            started.elapsed().as_secs_f64()
        ));
        println!(
            "## {}\n\n{}\n\n{}\n(measured in {:.1} s)",
            e.name(),
            e.summary(),
            table(&figures),
            started.elapsed().as_secs_f64()
        );
        if let Some(file) = &plot {
            println!("plot: {}\n", out.join(file).display());
        }
        results.push(ExperimentResult {
            name: e.name(),
            summary: e.summary(),
            plot,
            figures,
        });
    }
    let mut md = format!(
        "# spindle lab report\n\n## The machine\n\n{}\nEvery figure below was measured in \
         this one run{}; compare them as ratios, since absolute times drift on a shared \
         machine. `results.json` beside this file lists every figure of every table, with its \
         unit and the size it was measured at.\n\n## What each experiment shows\n\n",
        machine.markdown(),
        if quick { " (--quick: small sizes)" } else { "" }
    );
    for r in &results {
        md.push_str(&format!(
            "- [{}](#{}): {}\n",
            r.name,
            r.name,
            first_sentence(r.summary)
        ));
    }
    md.push('\n');
    for r in &results {
        md.push_str(&format!("## {}\n\n{}\n\n", r.name, r.summary));
        if let Some(file) = &r.plot {
            md.push_str(&format!("![{} plot]({file})\n\n", r.name));
        }
        md.push_str(&table(&r.figures));
        md.push('\n');
    }
    let results = Results {
        machine,
        quick,
        experiments: results,
    };
    let json = serde_json::to_string_pretty(&results).map_err(io::Error::other)?;
    std::fs::write(out.join("report.md"), md)?;
    std::fs::write(out.join("results.json"), json)?;
    println!(
        "wrote {}/report.md, {}/results.json and a plot per experiment, in {:.0} s",
        out.display(),
        out.display(),
        report_started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The first sentence of a summary, for the list at the top of the report.
fn first_sentence(text: &str) -> &str {
    match text.find(". ") {
        Some(end) => &text[..=end],
        None => text,
    }
}
