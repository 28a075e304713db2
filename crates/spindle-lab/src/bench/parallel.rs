//! parallel: an N x N f64 matrix product C = A * B split by rows over T threads, each
//! thread computing one block of rows. It shows which models give parallelism: many-to-one
//! runs every block on its one kernel thread, so more threads cannot make it faster.
//!
//! Every subject runs the same kernel (the i-k-j loop, tiled for the cache: the inner loop
//! walks a row of B and a row of C, both contiguous) on the same inputs, borrowed through a scope
//! (`spindle::scope`, `std::thread::scope`). A row's arithmetic does not depend on which
//! thread computes it, so every product must equal, bit for bit, a reference computed once
//! on the calling thread; the reference is itself checked against direct dot products.

use std::io;
use std::time::{Duration, Instant};

use super::{build_runtime, Subject};
use crate::figures::Figure;

const EXPERIMENT: &str = "parallel";

/// Thread counts measured.
const THREADS: [usize; 5] = [1, 2, 4, 8, 16];

/// Thread counts measured under `--quick`.
const QUICK_THREADS: [usize; 2] = [1, 2];

/// Timed products per subject and thread count; the best counts. Three, not more: the
/// experiment is the report's longest (a 1000 x 1000 product is about 0.3 s on one core),
/// and the speedups it shows (1.0x against about the number of cores) need no finer
/// resolution than best-of-three gives on a noisy machine.
const RUNS: usize = 3;

/// The two inputs, row-major.
struct Inputs {
    n: usize,
    a: Vec<f64>,
    b: Vec<f64>,
}

impl Inputs {
    /// Deterministic inputs with values in [-0.5, 0.5).
    fn new(n: usize) -> Inputs {
        let fill = |mul_row: usize, mul_col: usize, modulus: usize| -> Vec<f64> {
            (0..n * n)
                .map(|x| {
                    let (r, c) = (x / n, x % n);
                    ((r * mul_row + c * mul_col) % modulus) as f64 / modulus as f64 - 0.5
                })
                .collect()
        };
        Inputs {
            n,
            a: fill(31, 17, 101),
            b: fill(13, 7, 89),
        }
    }

    /// Entry (i, j) of A * B as a plain dot product, summed in the same order as the kernel.
    fn dot(&self, i: usize, j: usize) -> f64 {
        let n = self.n;
        (0..n).fold(0.0, |sum, k| sum + self.a[i * n + k] * self.b[k * n + j])
    }
}

/// Columns of C (and of B) in a tile.
const TILE_COLUMNS: usize = 256;

/// Rows of B in a tile: a 128 x 256 tile of B is 256 KiB and stays in the L2 cache while
/// every row of the block uses it.
const TILE_DEPTH: usize = 128;

/// Adds rows `first_row..` of A * B into `c_rows` (whole rows, zeroed by the caller): the
/// i-k-j loop (the inner loop walks a row of B and a row of C, both contiguous), tiled over
/// the columns and the depth so that a tile of B is reused from the cache by every row of
/// the block, where the plain loop streams all of B (8 MB at N = 1000) from memory once per
/// row. Each entry still sums its products in increasing k, so the result does not depend
/// on the tiling or on how rows are split among threads.
fn multiply_rows(inputs: &Inputs, first_row: usize, c_rows: &mut [f64]) {
    let n = inputs.n;
    for j0 in (0..n).step_by(TILE_COLUMNS) {
        let j1 = (j0 + TILE_COLUMNS).min(n);
        for k0 in (0..n).step_by(TILE_DEPTH) {
            let k1 = (k0 + TILE_DEPTH).min(n);
            for (r, c_row) in c_rows.chunks_exact_mut(n).enumerate() {
                let a_row = &inputs.a[(first_row + r) * n..][..n];
                let c_part = &mut c_row[j0..j1];
                for (k, &a_ik) in a_row.iter().enumerate().take(k1).skip(k0) {
                    let b_part = &inputs.b[k * n + j0..k * n + j1];
                    for (c, &b_kj) in c_part.iter_mut().zip(b_part) {
                        *c += a_ik * b_kj;
                    }
                }
            }
        }
    }
}

/// Splits C into `threads` blocks of consecutive rows, sizes differing by at most one row:
/// each block with the index of its first row.
fn blocks(c: &mut [f64], n: usize, threads: usize) -> Vec<(usize, &mut [f64])> {
    let mut rest = c;
    let mut out = Vec::with_capacity(threads);
    for t in 0..threads {
        let (first, end) = (n * t / threads, n * (t + 1) / threads);
        let (block, tail) = std::mem::take(&mut rest).split_at_mut((end - first) * n);
        out.push((first, block));
        rest = tail;
    }
    out
}

/// One product on spindle threads of the calling runtime (call it on a green thread, or in
/// a one-to-one runtime).
fn spindle_product(inputs: &Inputs, c: &mut [f64], threads: usize) {
    spindle::scope(|s| {
        for (first, block) in blocks(c, inputs.n, threads) {
            s.spawn(move || multiply_rows(inputs, first, block));
        }
    });
}

/// One product on std threads.
fn std_product(inputs: &Inputs, c: &mut [f64], threads: usize) {
    std::thread::scope(|s| {
        for (first, block) in blocks(c, inputs.n, threads) {
            s.spawn(move || multiply_rows(inputs, first, block));
        }
    });
}

/// The reference product, on the calling thread, checked against direct dot products at
/// the corners and at a spread of other entries.
fn reference(inputs: &Inputs) -> io::Result<Vec<f64>> {
    let n = inputs.n;
    let mut c = vec![0.0; n * n];
    multiply_rows(inputs, 0, &mut c);
    let mut points = vec![(0, 0), (0, n - 1), (n - 1, 0), (n - 1, n - 1)];
    points.extend((1..=16).map(|k| (k * 7919 % n, k * 104_729 % n)));
    for (i, j) in points {
        let direct = inputs.dot(i, j);
        let got = c[i * n + j];
        if (got - direct).abs() > 1e-9 * direct.abs().max(1.0) {
            return Err(io::Error::other(format!(
                "parallel: the reference product has C[{i}][{j}] = {got}, but the dot product \
                 of row {i} and column {j} is {direct}"
            )));
        }
    }
    Ok(c)
}

/// How `subject` appears in the figures: many-to-many says how many workers it has.
fn label(subject: Subject, workers: usize) -> String {
    match subject {
        Subject::ManyToMany => format!("{} ({workers} workers)", subject.name()),
        _ => subject.name().to_string(),
    }
}

/// The time figure's name for `threads` threads.
fn time_metric(threads: usize) -> String {
    format!(
        "time per product (best of {RUNS}), {threads} thread{}",
        plural(threads)
    )
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// Measures one subject at every thread count, computing into `c`: its time figures (best
/// of `runs`), or one skipped figure if its runtime cannot be built. Fails if a product is
/// wrong.
fn measure(
    subject: Subject,
    inputs: &Inputs,
    expected: &[f64],
    c: &mut [f64],
    thread_counts: &[usize],
    runs: usize,
    workers: usize,
) -> io::Result<Vec<Figure>> {
    let label = label(subject, workers);
    let n = inputs.n;
    // Times `runs` products with `product` at each thread count, checking each result.
    let mut time_all = |product: &dyn Fn(&mut [f64], usize)| -> io::Result<Vec<Figure>> {
        let mut figures = Vec::new();
        for &threads in thread_counts {
            let mut best = Duration::MAX;
            for _ in 0..runs {
                c.fill(0.0);
                let start = Instant::now();
                product(c, threads);
                best = best.min(start.elapsed());
                if let Some(at) = c.iter().zip(expected).position(|(x, y)| x != y) {
                    return Err(io::Error::other(format!(
                        "parallel on {label} with {threads} threads: C[{}][{}] = {}, expected \
                         {} (the block of rows holding it was computed wrong or not at all)",
                        at / n,
                        at % n,
                        c[at],
                        expected[at]
                    )));
                }
            }
            figures.push(Figure::new(
                EXPERIMENT,
                &label,
                &time_metric(threads),
                best.as_secs_f64() * 1000.0,
                "ms",
                n as u64,
            ));
        }
        Ok(figures)
    };
    let model = match subject {
        Subject::Std => return time_all(&|c, threads| std_product(inputs, c, threads)),
        Subject::ManyToOne => spindle::Model::ManyToOne,
        Subject::ManyToMany => spindle::Model::ManyToMany { workers },
        Subject::OneToOne => spindle::Model::OneToOne,
        Subject::Corosensei
        | Subject::TokioCurrentThread
        | Subject::TokioMultiThread
        | Subject::May
        | Subject::Go => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the parallel experiment does not measure {}",
                    subject.name()
                ),
            ))
        }
    };
    match build_runtime(model, None) {
        Ok(rt) => rt.block_on(|| time_all(&|c, threads| spindle_product(inputs, c, threads))),
        Err(e) => Ok(vec![Figure::skipped(
            EXPERIMENT,
            &label,
            "time per product",
            &format!("runtime failed to build: {e}"),
            n as u64,
        )]),
    }
}

/// Measures `subjects` on N x N matrices, then the speedups: each time against the same
/// subject's time on 1 thread, and against many-to-one's time on 1 thread.
pub fn run(subjects: &[Subject], n: u64, quick: bool) -> io::Result<Vec<Figure>> {
    let thread_counts: &[usize] = if quick { &QUICK_THREADS } else { &THREADS };
    let most = thread_counts.iter().copied().max().unwrap_or(1);
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n >= most)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "parallel: --n is the matrix size and must be at least {most}, so that \
                     each of {most} threads gets a row; got {n}"
                ),
            )
        })?;
    let workers = std::thread::available_parallelism().map_or(1, |p| p.get());
    let inputs = Inputs::new(n);
    let expected = reference(&inputs)?;
    // One output buffer for every subject: the same addresses (and so the same cache and
    // alignment behaviour) for all of them, and its pages are faulted in before any timing.
    let mut c = vec![0.0; n * n];
    let mut times = Vec::new();
    for &subject in subjects {
        times.extend(measure(
            subject,
            &inputs,
            &expected,
            &mut c,
            thread_counts,
            RUNS,
            workers,
        )?);
    }
    let one_thread = time_metric(1);
    let time_of = |subject: &str, metric: &str| {
        times
            .iter()
            .find(|f| f.subject == subject && f.metric == metric && f.measured())
            .map(|f| f.value)
    };
    let many_to_one = Subject::ManyToOne.name();
    let many_to_one_base = time_of(many_to_one, &one_thread);
    let mut speedups = Vec::new();
    for f in times.iter().filter(|f| f.measured()) {
        let threads = thread_counts
            .iter()
            .copied()
            .find(|&t| f.metric == time_metric(t))
            .expect("a time figure made above");
        if let Some(own) = time_of(&f.subject, &one_thread).filter(|_| threads > 1) {
            speedups.push(Figure::new(
                EXPERIMENT,
                &f.subject,
                &format!("speedup, {threads} threads over its 1 thread"),
                own / f.value,
                "x",
                f.n,
            ));
        }
        if let Some(base) = many_to_one_base.filter(|_| f.subject != many_to_one) {
            speedups.push(Figure::new(
                EXPERIMENT,
                &f.subject,
                &format!(
                    "speedup, {threads} thread{} over many-to-one's 1 thread",
                    plural(threads)
                ),
                base / f.value,
                "x",
                f.n,
            ));
        }
    }
    times.extend(speedups);
    Ok(times)
}
