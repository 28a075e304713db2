//! The cure half of the blocking experiment: the same 500 ms wait made through spindle
//! instead of a raw system call, in many-to-one, with a 1 ms ticker on the same (only)
//! worker.
//!
//! Three waits, one run each: `spindle::sleep`, a read of an empty pipe through spindle
//! (non-blocking, waiting with `spindle::io::wait_readable`; a kernel thread writes the
//! byte after the wait), and `spindle::unblock` of a `std::thread::sleep`, which runs the
//! blocking call on a helper thread. The figure of each is the ticker's longest gap while
//! the wait lasted. The baseline, measured in the same run: a plain kernel thread sleeping
//! 1 ms at a time for as long (`std::thread::sleep`), whose longest gap is the machine's
//! timer noise. Target: no gap over 10 ms in any of the three.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Subject;
use crate::figures::Figure;

const EXPERIMENT: &str = "blocking";

/// The start of the cure figures' metric.
pub const CURE_METRIC: &str = "longest gap between ticks while waiting through spindle";

/// The ticker's sleep.
const TICK: Duration = Duration::from_millis(1);

/// The three waits.
#[derive(Clone, Copy)]
enum Wait {
    Sleep,
    PipeRead,
    Unblock,
}

impl Wait {
    fn name(self) -> &'static str {
        match self {
            Wait::Sleep => "spindle::sleep",
            Wait::PipeRead => "pipe read through spindle::io::wait_readable",
            Wait::Unblock => "spindle::unblock of a std::thread::sleep",
        }
    }

    /// Waits `block` this way, on a green thread.
    fn wait(self, block: Duration) -> io::Result<()> {
        match self {
            Wait::Sleep => spindle::sleep(block),
            Wait::PipeRead => {
                let (reader, writer) = super::blocking::pipe()?;
                rustix::io::ioctl_fionbio(reader.as_fd(), true)?;
                let (mut reader, mut writer) = (File::from(reader), File::from(writer));
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(block);
                    writer.write_all(b"x")
                });
                let mut byte = [0u8; 1];
                loop {
                    match reader.read(&mut byte) {
                        Ok(1) => break,
                        Ok(_) => return Err(io::Error::other("the pipe closed early")),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            spindle::io::wait_readable(&reader)?
                        }
                        Err(e) => return Err(e),
                    }
                }
                writer
                    .join()
                    .map_err(|_| io::Error::other("the pipe writer panicked"))??;
            }
            Wait::Unblock => spindle::unblock(move || std::thread::sleep(block)),
        }
        Ok(())
    }
}

/// The longest time between consecutive instants inside `[from, to]`, counting the edges.
fn longest_gap(ticks: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut points = vec![from];
    points.extend(ticks.iter().copied().filter(|&t| t > from && t < to));
    points.push(to);
    points
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap_or_default()
}

/// One wait with the ticker beside it: the ticker's longest gap during the wait.
fn measure(wait: Wait, block: Duration) -> io::Result<Duration> {
    let rt = spindle::Runtime::builder().build()?;
    rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let stop = stop.clone();
            spindle::spawn(move || {
                let mut ticks = Vec::with_capacity(4096);
                while !stop.load(Ordering::Relaxed) {
                    spindle::sleep(TICK);
                    ticks.push(Instant::now());
                }
                ticks
            })
        };
        // Let the ticker tick a few times first, so that it is running when the wait starts.
        spindle::sleep(5 * TICK);
        let start = Instant::now();
        wait.wait(block)?;
        let end = Instant::now();
        stop.store(true, Ordering::Relaxed);
        let ticks = ticker
            .join()
            .map_err(|_| io::Error::other("the ticker panicked"))?;
        Ok(longest_gap(&ticks, start, end))
    })
}

/// The baseline: a kernel thread sleeping `TICK` at a time for `block`.
fn kernel_thread_noise(block: Duration) -> Duration {
    let start = Instant::now();
    let mut ticks = Vec::new();
    while start.elapsed() < block {
        std::thread::sleep(TICK);
        ticks.push(Instant::now());
    }
    longest_gap(&ticks, start, Instant::now())
}

/// The cure figures, for a wait of `block` (`n` ms).
pub fn figures(block: Duration, n: u64) -> io::Result<Vec<Figure>> {
    let mut out = Vec::new();
    for wait in [Wait::Sleep, Wait::PipeRead, Wait::Unblock] {
        let gap = measure(wait, block)?;
        out.push(Figure::new(
            EXPERIMENT,
            Subject::ManyToOne.name(),
            &format!(
                "{CURE_METRIC}, {} ms in {} (target: at most 10 ms)",
                block.as_millis(),
                wait.name()
            ),
            gap.as_secs_f64() * 1e3,
            "ms",
            n,
        ));
    }
    out.push(Figure::new(
        EXPERIMENT,
        Subject::Std.name(),
        &format!(
            "{CURE_METRIC}: baseline, a kernel thread sleeping 1 ms at a time for {} ms",
            block.as_millis()
        ),
        kernel_thread_noise(block).as_secs_f64() * 1e3,
        "ms",
        n,
    ));
    Ok(out)
}
