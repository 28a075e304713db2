//! http: requests per second and tail latency of a minimal HTTP/1.1 keep-alive server,
//! loaded by wrk with 256 connections.
//!
//! spindle's server is `crates/spindle/examples/http_hello`: its `server.rs` is compiled
//! into this module as it is, so the lab loads exactly the example's code (one green thread
//! per connection, blocking-style reads and writes). tokio's server answers with the same
//! request scanner and the same response, one task per connection. Each server runs in a
//! runtime of this process on a port of its own; wrk (Debian's package, an external
//! process with two threads) loads it for the same duration, and its output gives the
//! requests per second and the latency percentiles. The machine has two cores, which wrk
//! shares with the server: the figures are comparable within a run, not absolute. The run
//! is nine rounds of every server ([`run`] says why ratios are taken within a round).
//!
//! Each server's CPU time per request is measured too: the process's user and system time
//! (`getrusage`) while wrk runs, over the requests wrk completed. Only the loaded server
//! runs then (the others' runtimes are dropped between loads, and wrk is another process);
//! the window also holds wrk's start and its 256 connections' accepts, a millisecond or so
//! against seconds. It is the CPU time charged to the server's process, not all of it the
//! server's own work: on the loopback the kernel's TCP work for a segment is mostly charged
//! to the process that sends it, so the server pays for delivering its responses into
//! wrk's sockets and wrk for delivering its requests. Requests per second are a share of
//! two cores that wrk and the server split as the kernel schedules them; the two figures
//! together show whether a server won its requests by costing less or by getting more of
//! the cores, and the notes give each ratio's range over the rounds.

use std::io;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use super::{low_high, median, process_cpu, Subject};
use crate::figures::Figure;

#[path = "../../../spindle/examples/http_hello/server.rs"]
mod server;

const EXPERIMENT: &str = "http";

/// The start of the throughput figures' metric.
pub const RPS_METRIC: &str = "requests per second";
/// The start of the latency figures' metrics.
pub const LATENCY_METRIC: &str = "latency";
/// The start of the server CPU time figures' metric.
pub const CPU_METRIC: &str = "server CPU per request";

/// wrk's open connections, and its threads.
const CONNECTIONS: u32 = 256;
const WRK_THREADS: u32 = 2;

/// Workers of the many-to-many subjects, spindle's and tokio's alike.
const WORKERS: usize = 2;

/// What wrk reported for one server, and the server's CPU time meanwhile.
struct Load {
    requests_per_sec: f64,
    /// Requests completed in the whole run.
    requests: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// wrk's "Socket errors" and "Non-2xx" lines, if any.
    errors: Option<String>,
    /// CPU time (user + system) this process spent while wrk ran: what is charged to the
    /// loaded server, the only one running then (module docs).
    server_cpu: Duration,
}

impl Load {
    /// The server's CPU time per request, in microseconds ([`wrk`] fails a run that
    /// completed none).
    fn cpu_per_request_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.requests as f64
    }
}

/// Runs wrk against `addr` for `secs` seconds.
fn wrk(addr: SocketAddr, secs: u64) -> io::Result<Load> {
    let cpu_before = process_cpu();
    let out = Command::new("wrk")
        .args([
            format!("-t{WRK_THREADS}"),
            format!("-c{CONNECTIONS}"),
            format!("-d{secs}s"),
            "--latency".into(),
            format!("http://{addr}/"),
        ])
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run wrk: {e}")))?;
    let server_cpu = process_cpu() - cpu_before;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let load = parse_wrk(&text)?;
    if load.requests == 0 {
        return Err(io::Error::other(format!(
            "wrk completed no request against {addr}:\n{text}"
        )));
    }
    Ok(Load { server_cpu, ..load })
}

/// Reads wrk's report: "Requests/sec:", the "N requests in" line, the latency
/// distribution's 50% and 99% lines, and any error lines (the server's CPU time is left at
/// zero).
fn parse_wrk(text: &str) -> io::Result<Load> {
    let bad = |what: &str| io::Error::other(format!("cannot read {what} in wrk's output:\n{text}"));
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(str::trim))
    };
    let requests_per_sec = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("Requests/sec"))?;
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok())
        .ok_or_else(|| bad("the number of requests"))?;
    let p50_ms = field("50%")
        .and_then(duration_ms)
        .ok_or_else(|| bad("the 50% latency"))?;
    let p99_ms = field("99%")
        .and_then(duration_ms)
        .ok_or_else(|| bad("the 99% latency"))?;
    let errors: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Socket errors") || l.starts_with("Non-2xx"))
        .collect();
    Ok(Load {
        requests_per_sec,
        requests,
        p50_ms,
        p99_ms,
        errors: (!errors.is_empty()).then(|| errors.join("; ")),
        server_cpu: Duration::ZERO,
    })
}

/// A wrk duration ("812.00us", "3.41ms", "1.02s", "2.00m") in milliseconds.
fn duration_ms(v: &str) -> Option<f64> {
    let unit_at = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = v.split_at(unit_at);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        _ => return None,
    })
}

/// Starts spindle's server (the example's) on a runtime of `model`.
fn start_spindle(model: spindle::Model) -> io::Result<(spindle::Runtime, SocketAddr)> {
    let rt = spindle::Runtime::builder().model(model).build()?;
    let listener = spindle::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    // Dropping the runtime at the end cancels the accept loop and every connection.
    drop(rt.spawn(move || server::serve(listener)));
    Ok((rt, addr))
}

/// One tokio connection: the same scanner and response as spindle's server.
async fn tokio_connection(mut stream: tokio::net::TcpStream) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    let mut out = Vec::with_capacity(server::RESPONSE.len() * 4);
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let requests = server::complete_requests(&buf[..filled])
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))?;
        out.clear();
        for _ in 0..requests.count {
            out.extend_from_slice(server::RESPONSE);
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if requests.close {
            return Ok(());
        }
        buf.copy_within(requests.consumed..filled, 0);
        filled -= requests.consumed;
    }
}

/// Starts tokio's server on `rt`.
fn start_tokio(rt: &tokio::runtime::Runtime) -> io::Result<SocketAddr> {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = tokio_connection(stream).await;
            });
        }
    });
    Ok(addr)
}

/// The servers, in the order they are loaded (each baseline before its spindle
/// counterpart), and their subjects.
const SERVERS: [Subject; 4] = [
    Subject::TokioCurrentThread,
    Subject::ManyToOne,
    Subject::TokioMultiThread,
    Subject::ManyToMany,
];

/// Loads one server for `secs` seconds.
fn load(subject: Subject, secs: u64) -> io::Result<Load> {
    match subject {
        Subject::ManyToOne => {
            let (_rt, addr) = start_spindle(spindle::Model::ManyToOne)?;
            wrk(addr, secs)
        }
        Subject::ManyToMany => {
            let (_rt, addr) = start_spindle(spindle::Model::ManyToMany { workers: WORKERS })?;
            wrk(addr, secs)
        }
        Subject::TokioCurrentThread | Subject::TokioMultiThread => {
            let rt = if subject == Subject::TokioCurrentThread {
                tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()?
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(WORKERS)
                    .enable_io()
                    .build()?
            };
            let addr = start_tokio(&rt)?;
            if subject == Subject::TokioCurrentThread {
                // A current-thread runtime runs only inside `block_on`: drive it there
                // for as long as wrk runs.
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                let wrk_thread = std::thread::spawn(move || {
                    let load = wrk(addr, secs);
                    let _ = done_tx.send(());
                    load
                });
                rt.block_on(async {
                    let _ = done_rx.await;
                });
                wrk_thread
                    .join()
                    .map_err(|_| io::Error::other("the wrk thread panicked"))?
            } else {
                wrk(addr, secs)
            }
        }
        _ => Err(io::Error::other(format!(
            "http does not measure {}",
            subject.name()
        ))),
    }
}

/// The subject's label: many-to-many subjects say how many workers they have.
fn label(subject: Subject) -> String {
    match subject {
        Subject::ManyToMany | Subject::TokioMultiThread => {
            format!("{} ({WORKERS} workers)", subject.name())
        }
        _ => subject.name().to_string(),
    }
}

/// A latency percentile's name, and how to read it from a load.
type Percentile = (&'static str, fn(&Load) -> f64);

/// A ratio of two servers: the metric compared, how to read the ratio, and the quantity
/// of a load it divides.
type Comparison = (&'static str, &'static str, fn(&Load) -> f64);

/// Rounds of the full run: each loads every server once. Nine: one round's ratio of two
/// servers moves by up to 15% either way on this VM (the kernel's split of two cores
/// between wrk and the server), while spindle many-to-many and tokio multi-thread differ
/// by about 6%; with five rounds the median fell below 1 in one run of nine on a day whose
/// runs averaged 1.06, and nine rounds narrow its spread by about a quarter.
const ROUNDS: usize = 9;

/// Loads each of `subjects` for `n` seconds in [`ROUNDS`] rounds (one under `--quick`),
/// and gives the medians over the rounds, then the ratios the issue sets targets for.
pub fn run(subjects: &[Subject], n: u64, quick: bool) -> io::Result<Vec<Figure>> {
    let rounds = if quick { 1 } else { ROUNDS };
    let what = format!("{CONNECTIONS} connections, {n} s, median of {rounds}");
    if Command::new("wrk").arg("--version").output().is_err() {
        return Ok(subjects
            .iter()
            .map(|&s| {
                Figure::skipped(
                    EXPERIMENT,
                    &label(s),
                    &format!("{RPS_METRIC}, {what}"),
                    "wrk is not installed (Debian: apt-get install wrk)",
                    n,
                )
            })
            .collect());
    }
    // Every round loads each server once, every other round in reverse order, so that each
    // spindle server and its tokio baseline are loaded one right after the other (in
    // either order). This shared VM drifts by 10% and more within a minute: a ratio taken
    // within a round, then the median over the rounds, compares the servers under the same
    // conditions, where the best (or the median) of each server's own rounds may compare a
    // fast phase with a slow one.
    let order: Vec<Subject> = SERVERS
        .into_iter()
        .filter(|s| subjects.contains(s))
        .collect();
    let mut loads: Vec<(Subject, Vec<Load>)> = order.iter().map(|&s| (s, Vec::new())).collect();
    for round in 0..rounds {
        let this_round: Vec<Subject> = if round % 2 == 0 {
            order.clone()
        } else {
            order.iter().rev().copied().collect()
        };
        for subject in this_round {
            let load = load(subject, n)?;
            if let Some((_, l)) = loads.iter_mut().find(|(s, _)| *s == subject) {
                l.push(load);
            }
        }
    }
    let of = |s: Subject| loads.iter().find(|(t, _)| *t == s).map(|(_, l)| l);
    let mut figures = Vec::new();
    for (subject, rounds_of) in &loads {
        let name = label(*subject);
        let each = |get: fn(&Load) -> f64| median(rounds_of.iter().map(get).collect());
        let mut f = Figure::new(
            EXPERIMENT,
            &name,
            &format!("{RPS_METRIC}, {what}"),
            each(|l| l.requests_per_sec),
            "req/s",
            u64::from(CONNECTIONS),
        );
        let errors: Vec<&str> = rounds_of
            .iter()
            .filter_map(|l| l.errors.as_deref())
            .collect();
        if !errors.is_empty() {
            f = f.with_note(format!("http, {name}: wrk reported {}", errors.join("; ")));
        }
        figures.push(f);
        let percentiles: [Percentile; 2] = [("p50", |l| l.p50_ms), ("p99", |l| l.p99_ms)];
        for (pct, get) in percentiles {
            figures.push(Figure::new(
                EXPERIMENT,
                &name,
                &format!("{LATENCY_METRIC} {pct}, {what}"),
                each(get),
                "ms",
                u64::from(CONNECTIONS),
            ));
        }
        figures.push(Figure::new(
            EXPERIMENT,
            &name,
            &format!("{CPU_METRIC}, {what}"),
            each(Load::cpu_per_request_us),
            "us",
            u64::from(CONNECTIONS),
        ));
    }
    for (this, base) in [
        (Subject::ManyToOne, Subject::TokioCurrentThread),
        (Subject::ManyToMany, Subject::TokioMultiThread),
    ] {
        let (Some(a), Some(b)) = (of(this), of(base)) else {
            continue;
        };
        let ratios = |get: fn(&Load) -> f64| -> Vec<f64> {
            a.iter().zip(b).map(|(a, b)| get(a) / get(b)).collect()
        };
        let comparisons: [Comparison; 2] = [
            (RPS_METRIC, "target: at least 1", |l| l.requests_per_sec),
            (CPU_METRIC, "below 1: less CPU", Load::cpu_per_request_us),
        ];
        for (metric, reading, get) in comparisons {
            let per_round = ratios(get);
            let (low, high) = low_high(per_round.iter().copied());
            let at_least_one = per_round.iter().filter(|&&r| r >= 1.0).count();
            let mut f = Figure::new(
                EXPERIMENT,
                &label(this),
                &format!(
                    "{metric} / {}'s, median of the rounds' ratios ({reading})",
                    label(base)
                ),
                median(per_round),
                "x",
                u64::from(CONNECTIONS),
            );
            if rounds > 1 {
                f = f.with_note(format!(
                    "http, {metric}: the {rounds} rounds' ratios to {} ran from {low:.2} to \
                     {high:.2}, {at_least_one} of them at or above 1",
                    label(base)
                ));
            }
            figures.push(f);
        }
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::{duration_ms, parse_wrk};

    #[test]
    fn reads_wrk_output() {
        let text = "Running 1s test @ http://127.0.0.1:1/\n  2 threads and 256 connections\n  \
                    Latency Distribution\n     50%    2.88ms\n     75%  812.00us\n     90%    \
                    1.20s\n     99%  109.44ms\n  85655 requests in 1.00s\nRequests/sec:  \
                    85655.82\nTransfer/sec:      7.51MB\n";
        let load = parse_wrk(text).unwrap();
        assert_eq!(load.requests_per_sec, 85655.82);
        assert_eq!(load.requests, 85655);
        assert_eq!((load.p50_ms, load.p99_ms), (2.88, 109.44));
        assert!(load.errors.is_none());
        assert_eq!(duration_ms("812.00us"), Some(0.812));
        assert_eq!(duration_ms("1.5s"), Some(1500.0));
        assert!(parse_wrk("nothing").is_err());
    }
}
