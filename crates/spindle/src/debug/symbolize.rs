//! Turning captured return addresses into [`Backtrace`]s.
//!
//! Threads that wait at the same place have the same addresses, so a dump of 100,000
//! parked threads may have only a few dozen distinct backtraces and a few hundred distinct
//! addresses. Each distinct address is resolved once (the first resolution also reads the
//! binary's symbol and line tables), and threads with equal address lists share one
//! `Arc` of frames.

use std::collections::HashMap;
use std::sync::Arc;

use crate::debug::info::{Backtrace, Frame, Symbol};

/// Resolves address lists, remembering what it has seen.
#[derive(Default)]
pub(crate) struct Symbolizer {
    addresses: HashMap<usize, Vec<Symbol>>,
    backtraces: HashMap<Vec<usize>, Backtrace>,
}

impl Symbolizer {
    /// The backtrace for `ips` (innermost first), shared with every earlier equal list.
    pub(crate) fn backtrace(&mut self, ips: Vec<usize>) -> Backtrace {
        if let Some(b) = self.backtraces.get(&ips) {
            return b.clone();
        }
        let frames: Arc<[Frame]> = ips
            .iter()
            .map(|&ip| Frame {
                ip,
                symbols: self
                    .addresses
                    .entry(ip)
                    .or_insert_with(|| resolve(ip))
                    .clone(),
            })
            .collect();
        let b = Backtrace { frames };
        self.backtraces.insert(ips, b.clone());
        b
    }
}

/// What `ip`, a return address, resolves to: the call's function and line, and the
/// functions inlined there, innermost first.
fn resolve(ip: usize) -> Vec<Symbol> {
    let mut symbols = Vec::new();
    // `resolve` looks up the instruction before a return address (the call), as a
    // backtrace must.
    backtrace::resolve(ip as *mut std::ffi::c_void, |s| {
        symbols.push(Symbol {
            name: s.name().map(|n| format!("{n:#}")),
            file: s.filename().map(Into::into),
            line: s.lineno(),
        });
    });
    symbols
}
