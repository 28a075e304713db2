//! `spindle-lab report`: every experiment, a table each, and a folder with the results.

use std::io;
use std::path::Path;

use serde::Serialize;

use crate::bench::{Experiment, Subject};
use crate::figures::{table, Figure};
use crate::machine::Machine;

#[derive(Serialize)]
struct ExperimentResult {
    name: &'static str,
    summary: &'static str,
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

pub fn run(quick: bool, out: &Path) -> io::Result<()> {
    let machine = Machine::probe();
    println!("spindle-lab report{}", if quick { " (quick)" } else { "" });
    println!("machine: {}\n", machine.describe());
    let mut results = Vec::new();
    let total = Experiment::ALL.len();
    for (i, e) in Experiment::ALL.into_iter().enumerate() {
        eprintln!("[{}/{total}] running {} ...", i + 1, e.name());
        let mut figures = e.run(None, e.default_n(quick), quick)?;
        if e.ratios_in_report() {
            let r = ratios(&figures);
            figures.extend(r);
        }
        println!("## {}\n\n{}\n\n{}", e.name(), e.summary(), table(&figures));
        results.push(ExperimentResult {
            name: e.name(),
            summary: e.summary(),
            figures,
        });
    }
    std::fs::create_dir_all(out)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", out.display())))?;
    let mut md = format!(
        "# spindle lab report\n\nMeasured on: {}.\n\nEvery figure below was measured in this one \
         run; compare them as ratios, since absolute times drift on a shared machine.\n\n",
        machine.describe()
    );
    for r in &results {
        md.push_str(&format!(
            "## {}\n\n{}\n\n{}\n",
            r.name,
            r.summary,
            table(&r.figures)
        ));
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
        "wrote {}/report.md and {}/results.json",
        out.display(),
        out.display()
    );
    Ok(())
}
