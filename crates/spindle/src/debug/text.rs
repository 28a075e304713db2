//! The text dump: every thread with its state, then its backtrace, like Go's goroutine
//! dump. Equal backtraces (threads waiting at the same place) are formatted once.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::debug::info::{Backtrace, Frame, Snapshot, Symbol, ThreadInfo, ThreadState};
use crate::stack::Bytes;

/// The first line of every dump.
pub(crate) const HEADER: &str = "spindle dump";
/// The last line of every dump.
pub(crate) const FOOTER: &str = "end of spindle dump";

/// Writes `s` out.
pub(crate) fn render(s: &Snapshot) -> String {
    let now = Instant::now();
    let mut out = String::with_capacity(256 + s.threads.len() * 160);
    let _ = writeln!(
        out,
        "{HEADER} at {}: {} runtime{}, {} thread{}",
        utc(s.taken_at),
        s.runtimes.len(),
        plural(s.runtimes.len()),
        s.threads.len(),
        plural(s.threads.len()),
    );
    for rt in &s.runtimes {
        let _ = write!(out, "\nruntime {}: {}", rt.id, rt.model);
        if let Some(b) = rt.io_backend {
            let _ = write!(out, ", {b}");
        }
        if !rt.workers.is_empty() {
            let n = rt.workers.len();
            let _ = write!(out, ", {n} worker{}", plural(n));
        }
        out.push('\n');
        for w in rt.workers.iter().filter(|w| !w.answered) {
            let _ = write!(
                out,
                "  worker {} did not answer: its threads are not listed",
                w.index
            );
            match w.running {
                Some(t) => {
                    let _ = writeln!(out, " (green thread {t} holds it: a long computation without checkpoints, or a blocking call)");
                }
                None => out.push_str(" (shutting down)\n"),
            }
        }
        if rt.unlisted_unstarted > 0 {
            let n = rt.unlisted_unstarted;
            let _ = writeln!(
                out,
                "  {n} green thread{} not started yet, in queues other workers steal from, {} not listed",
                plural(n),
                if n == 1 { "is" } else { "are" }
            );
        }
    }
    let mut formatted: HashMap<*const Frame, String> = HashMap::new();
    for t in &s.threads {
        out.push('\n');
        thread_line(&mut out, t, now);
        if let Some(b) = &t.backtrace {
            let text = formatted
                .entry(b.frames().as_ptr())
                .or_insert_with(|| backtrace_text(b));
            out.push_str(text);
        }
    }
    let _ = writeln!(out, "\n{FOOTER}");
    out
}

/// `thread 7 "name" [channel recv]: runtime 1, worker 0, ...`
fn thread_line(out: &mut String, t: &ThreadInfo, now: Instant) {
    let _ = write!(out, "thread {}", t.id);
    if let Some(n) = &t.name {
        let _ = write!(out, " {n:?}");
    }
    let _ = write!(
        out,
        " [{}]: runtime {}",
        state_text(&t.state, now),
        t.runtime
    );
    match t.worker {
        Some(w) => {
            let _ = write!(out, ", worker {w}");
        }
        None if !t.green => out.push_str(", kernel thread"),
        None => {}
    }
    let _ = write!(
        out,
        ", spawned {} ago, cpu {}, {} switches",
        human(now.saturating_duration_since(t.spawned_at)),
        human(t.cpu_time),
        t.switches
    );
    if t.stack_size > 0 {
        let _ = write!(out, ", stack {}", Bytes(t.stack_size));
        if t.green {
            let _ = write!(out, " ({} resident)", Bytes(t.stack_resident));
        }
    }
    out.push('\n');
}

/// The bracketed state: what a thread waits for, and for how long more.
pub(crate) fn state_text(s: &ThreadState, now: Instant) -> String {
    let left = |until: Option<Instant>| match until {
        Some(u) => format!(", {} left", human(u.saturating_duration_since(now))),
        None => String::new(),
    };
    match *s {
        ThreadState::Running => "running".into(),
        ThreadState::Runnable { started: true } => "runnable".into(),
        ThreadState::Runnable { started: false } => "runnable, not started".into(),
        ThreadState::Parked { reason, until } => format!("{}{}", reason.as_str(), left(until)),
        ThreadState::Sleeping { until } => format!("sleep{}", left(Some(until))),
        ThreadState::Io { reason, fd, until } => {
            format!("{}, fd {fd}{}", reason.as_str(), left(until))
        }
        ThreadState::Unblock => "unblock (helper pool)".into(),
    }
}

/// The frames, indented, inlined functions first, with file and line where known. The
/// outermost frames, which only carry the thread from its stack's entry through std's
/// `catch_unwind` to its closure, are left out (the JSON dump keeps them).
fn backtrace_text(b: &Backtrace) -> String {
    let symbols: Vec<(&Frame, Option<&Symbol>)> = b
        .frames()
        .iter()
        .flat_map(|f| {
            let syms: Vec<Option<&Symbol>> = if f.symbols.is_empty() {
                vec![None]
            } else {
                f.symbols.iter().map(Some).collect()
            };
            syms.into_iter().map(move |s| (f, s))
        })
        .collect();
    let keep = symbols
        .iter()
        .rposition(|(_, s)| !s.is_some_and(is_entry_machinery))
        .map_or(symbols.len(), |last| last + 1);
    let mut out = String::new();
    for (f, sym) in &symbols[..keep] {
        match sym {
            None => {
                let _ = writeln!(out, "    {:#x}", f.ip);
            }
            Some(sym) => {
                let _ = writeln!(out, "    {}", sym.name.as_deref().unwrap_or("<unknown>"));
                if let (Some(file), Some(line)) = (&sym.file, sym.line) {
                    let _ = writeln!(out, "        at {}:{line}", file.display());
                }
            }
        }
    }
    out
}

/// Whether `s` is part of how every green thread starts: std's panic catching and
/// closure calls, corosensei's entry, spindle's spawn and result packet.
fn is_entry_machinery(s: &Symbol) -> bool {
    let Some(file) = s.file.as_deref() else {
        return s
            .name
            .as_deref()
            .is_none_or(|n| n == "stack_init_trampoline");
    };
    let file = file.to_string_lossy();
    const ENTRY_FILES: [&str; 4] = [
        "/library/core/src/",
        "/library/std/src/",
        "/library/alloc/src/",
        "/corosensei-",
    ];
    const SPINDLE_ENTRY: [&str; 3] = [
        "spindle/src/task/packet.rs",
        "spindle/src/sched/pool.rs",
        "spindle/src/sched/worker.rs",
    ];
    ENTRY_FILES.iter().any(|f| file.contains(f)) || SPINDLE_ENTRY.iter().any(|f| file.ends_with(f))
}

/// A duration as people read it: `350µs`, `12ms`, `3.2s`, `5m10s`.
pub(crate) fn human(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{}ms", us / 1000)
    } else if us < 60_000_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `2026-12-01 23:59:59.123 UTC`.
fn utc(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60,
        since.subsec_millis()
    )
}

/// Year, month and day of the `days`-th day after 1970-01-01 (the proleptic Gregorian
/// calendar; Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_come_out_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_788), (2026, 12, 1));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_micros(350)), "350µs");
        assert_eq!(human(Duration::from_millis(12)), "12ms");
        assert_eq!(human(Duration::from_millis(3_240)), "3.2s");
        assert_eq!(human(Duration::from_secs(310)), "5m10s");
    }
}
