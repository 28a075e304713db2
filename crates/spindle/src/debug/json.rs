//! The JSON dump, for tools. Written by hand (it is one fixed shape, and the library has no
//! serialization dependency); strings are escaped as RFC 8259 asks.
//!
//! ```text
//! { "taken_at_unix_ms": 1764633600123,
//!   "runtimes": [ { "id": 1, "model": "many-to-one", "io_backend": "io_uring",
//!                   "unlisted_unstarted": 0,
//!                   "workers": [ { "index": 0, "answered": true, "running": null } ] } ],
//!   "threads": [ { "id": 3, "name": "waiter", "green": true, "runtime": 1, "worker": 0,
//!                  "state": "parked", "wait_reason": "channel recv", "fd": null,
//!                  "deadline_in_ns": null, "spawned_ago_ns": 1200000, "cpu_time_ns": 0,
//!                  "switches": 3, "stack_size": 65536, "stack_resident": 8192,
//!                  "backtrace": [ { "ip": "0x55d0c0a1b2c3",
//!                                   "symbols": [ { "name": "...", "file": "...",
//!                                                  "line": 12 } ] } ] } ] }
//! ```
//!
//! `state` is one of `running`, `runnable`, `parked`, `sleeping`, `io`, `unblock`;
//! `deadline_in_ns` is the time left to a wait's deadline; `backtrace` is null for a
//! thread without one. Times are relative to the dump, since a process's monotonic clock
//! means nothing outside it.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::{Instant, UNIX_EPOCH};

use crate::debug::info::{Backtrace, Frame, Snapshot, ThreadInfo, ThreadState};

/// Writes `s` out.
pub(crate) fn render(s: &Snapshot) -> String {
    let now = Instant::now();
    let mut out = String::with_capacity(256 + s.threads.len() * 300);
    let ms = s
        .taken_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let _ = write!(out, "{{\"taken_at_unix_ms\":{ms},\"runtimes\":[");
    for (i, rt) in s.runtimes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"id\":{},\"model\":", rt.id);
        string(&mut out, &rt.model.to_string());
        out.push_str(",\"io_backend\":");
        match rt.io_backend {
            Some(b) => string(&mut out, &b.to_string()),
            None => out.push_str("null"),
        }
        let _ = write!(
            out,
            ",\"unlisted_unstarted\":{},\"workers\":[",
            rt.unlisted_unstarted
        );
        for (j, w) in rt.workers.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"index\":{},\"answered\":{},\"running\":",
                w.index, w.answered
            );
            match w.running {
                Some(t) => {
                    let _ = write!(out, "{t}");
                }
                None => out.push_str("null"),
            }
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push_str("],\"threads\":[");
    let mut formatted: HashMap<*const Frame, String> = HashMap::new();
    for (i, t) in s.threads.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        thread(&mut out, t, now);
        out.push_str(",\"backtrace\":");
        match &t.backtrace {
            Some(b) => out.push_str(
                formatted
                    .entry(b.frames().as_ptr())
                    .or_insert_with(|| backtrace(b)),
            ),
            None => out.push_str("null"),
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// A thread's fields, without the closing brace.
fn thread(out: &mut String, t: &ThreadInfo, now: Instant) {
    let _ = write!(out, "{{\"id\":{},\"name\":", t.id);
    match &t.name {
        Some(n) => string(out, n),
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"green\":{},\"runtime\":{},\"worker\":",
        t.green, t.runtime
    );
    option(out, t.worker);
    let (state, fd, until) = match t.state {
        ThreadState::Running => ("running", None, None),
        ThreadState::Runnable { .. } => ("runnable", None, None),
        ThreadState::Parked { until, .. } => ("parked", None, until),
        ThreadState::Sleeping { until } => ("sleeping", None, Some(until)),
        ThreadState::Io { fd, until, .. } => ("io", Some(fd), until),
        ThreadState::Unblock => ("unblock", None, None),
    };
    let _ = write!(out, ",\"state\":\"{state}\",\"wait_reason\":");
    match t.state.wait_reason() {
        Some(r) => string(out, r.as_str()),
        None => out.push_str("null"),
    }
    out.push_str(",\"fd\":");
    option(out, fd);
    out.push_str(",\"deadline_in_ns\":");
    option(
        out,
        until.map(|u| u.saturating_duration_since(now).as_nanos()),
    );
    let _ = write!(
        out,
        ",\"spawned_ago_ns\":{},\"cpu_time_ns\":{},\"switches\":{},\"stack_size\":{},\"stack_resident\":{}",
        now.saturating_duration_since(t.spawned_at).as_nanos(),
        t.cpu_time.as_nanos(),
        t.switches,
        t.stack_size,
        t.stack_resident
    );
}

fn backtrace(b: &Backtrace) -> String {
    let mut out = String::from("[");
    for (i, f) in b.frames().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"ip\":\"{:#x}\",\"symbols\":[", f.ip);
        for (j, s) in f.symbols.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            match &s.name {
                Some(n) => string(&mut out, n),
                None => out.push_str("null"),
            }
            out.push_str(",\"file\":");
            match &s.file {
                Some(p) => string(&mut out, &p.to_string_lossy()),
                None => out.push_str("null"),
            }
            out.push_str(",\"line\":");
            option(&mut out, s.line);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

fn option<T: std::fmt::Display>(out: &mut String, v: Option<T>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

/// `s` as a JSON string literal.
pub(crate) fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        super::string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }
}
