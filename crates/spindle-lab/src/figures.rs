//! Figures: one measured number with its unit, and how to print a set of them.

use serde::{Deserialize, Deserializer, Serialize};

/// One measured value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Figure {
    /// The experiment it belongs to ("switch", "spawn", ...).
    pub experiment: String,
    /// What was measured: a model, std threads, or a baseline.
    pub subject: String,
    /// The quantity ("ns per yield", ...).
    pub metric: String,
    /// The value.
    #[serde(deserialize_with = "nan_if_null")]
    pub value: f64,
    /// Its unit ("ns", "KiB", "x", ...).
    pub unit: String,
    /// The size of the run (operations or threads).
    pub n: u64,
    /// Why the subject could not be measured, if it could not (`value` is then NaN, which
    /// JSON shows as `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// A remark in words that goes with the value (printed under the table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Reads back a value that JSON shows as `null` (a NaN: not measured).
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl Figure {
    pub fn new(
        experiment: &str,
        subject: &str,
        metric: &str,
        value: f64,
        unit: &str,
        n: u64,
    ) -> Self {
        Figure {
            experiment: experiment.into(),
            subject: subject.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
            n,
            skipped: None,
            note: None,
        }
    }

    /// The figure with a remark in words, printed under the table.
    pub fn with_note(self, note: String) -> Self {
        Figure {
            note: Some(note),
            ..self
        }
    }

    /// A subject that could not be measured, and why (for example its runtime failed to
    /// build).
    pub fn skipped(experiment: &str, subject: &str, metric: &str, why: &str, n: u64) -> Self {
        Figure {
            skipped: Some(why.into()),
            ..Figure::new(experiment, subject, metric, f64::NAN, "", n)
        }
    }

    /// Whether the figure holds a measured value.
    pub fn measured(&self) -> bool {
        self.skipped.is_none()
    }
}

/// Formats figures as an aligned text table (also valid Markdown), followed by the
/// reasons of skipped figures (numbered, each reason once: they are long, and in a cell
/// they would widen every row) and the figures' notes, if any, as a list.
pub fn table(figures: &[Figure]) -> String {
    let mut reasons: Vec<&str> = Vec::new();
    let rows: Vec<[String; 4]> = figures
        .iter()
        .map(|f| match &f.skipped {
            Some(why) => {
                let number = match reasons.iter().position(|r| *r == why.as_str()) {
                    Some(i) => i + 1,
                    None => {
                        reasons.push(why);
                        reasons.len()
                    }
                };
                [
                    f.subject.clone(),
                    f.metric.clone(),
                    "skipped".into(),
                    format!("why: [{number}]"),
                ]
            }
            None => [
                f.subject.clone(),
                f.metric.clone(),
                format_value(f.value),
                format!("{} (n = {})", f.unit, f.n),
            ],
        })
        .collect();
    let header = ["subject", "metric", "value", "unit"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[String; 4]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 2 {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for r in &rows {
        out.push_str(&line(r));
    }
    let notes: Vec<String> = reasons
        .iter()
        .enumerate()
        .map(|(i, why)| format!("- [{}] {why}\n", i + 1))
        .chain(
            figures
                .iter()
                .filter_map(|f| Some(format!("- {}: {}\n", f.subject, f.note.as_ref()?))),
        )
        .collect();
    if !notes.is_empty() {
        // A blank line ends the Markdown table.
        out.push('\n');
        out.push_str(&notes.concat());
    }
    out
}

/// A value with as many decimals as it deserves.
pub fn format_value(v: f64) -> String {
    // Counts (and any other whole number) without decimals.
    if v >= 100.0 || (v.fract() == 0.0 && v.abs() < 1e15) {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_are_numbered_once_below_the_table() {
        let long = "stopped at 15111 of 20000 threads: a reason long enough to widen every row";
        let figures = [
            Figure::new("e", "a", "time", 1.5, "ns", 10),
            Figure::skipped("e", "b", "time", long, 10),
            Figure::skipped("e", "c", "time", "no toolchain", 10),
            Figure::skipped("e", "d", "time", long, 10),
        ];
        let text = table(&figures);
        let lines: Vec<&str> = text.lines().collect();
        let why = |line: &str| line.rsplit('|').nth(1).map(|c| c.trim().to_string());
        assert!(lines[3].contains("skipped"));
        assert_eq!(why(lines[3]).as_deref(), Some("why: [1]"));
        assert_eq!(why(lines[4]).as_deref(), Some("why: [2]"));
        assert_eq!(
            why(lines[5]).as_deref(),
            Some("why: [1]"),
            "the same reason keeps its number"
        );
        assert!(
            lines[..6].iter().all(|l| !l.contains(long)),
            "reasons stay out of rows"
        );
        assert_eq!(text.matches(long).count(), 1);
        assert!(text.contains(&format!("- [1] {long}\n- [2] no toolchain\n")));
    }
}
