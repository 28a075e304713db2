//! Go as a peer of the switch, pingpong and spawn experiments, when a `go` toolchain is on
//! `PATH` (it is optional: without one the figures say "skipped" and why).
//!
//! A small Go program, embedded below, is built once per lab run into a temporary
//! directory and run as a child process per measurement, with `GOMAXPROCS=1` so that its
//! goroutines share one kernel thread like spindle many-to-one's green threads. It times
//! `n` operations itself and prints nanoseconds per operation, which the lab reads; the
//! median of a few runs counts, as for the other subjects.

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Go program: `prog yield|pingpong|spawn N` prints ns per operation.
const PROGRAM: &str = r#"package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

func main() {
	runtime.GOMAXPROCS(1)
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		panic(err)
	}
	var ops int
	start := time.Now()
	switch os.Args[1] {
	case "yield":
		var wg sync.WaitGroup
		wg.Add(2)
		for i := 0; i < 2; i++ {
			go func() {
				for j := 0; j < n; j++ {
					runtime.Gosched()
				}
				wg.Done()
			}()
		}
		wg.Wait()
		ops = 2 * n
	case "pingpong":
		to, from := make(chan int, 1), make(chan int, 1)
		go func() {
			for v := range to {
				from <- v
			}
		}()
		for i := 0; i < n; i++ {
			to <- i
			if <-from != i {
				panic("wrong echo")
			}
		}
		close(to)
		ops = n
	case "spawn":
		for i := 0; i < n; i++ {
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { wg.Done() }()
			wg.Wait()
		}
		ops = n
	default:
		panic("unknown operation " + os.Args[1])
	}
	fmt.Println(float64(time.Since(start).Nanoseconds()) / float64(ops))
}
"#;

/// How long one run may take before the lab kills it.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// The built program, or why there is none (no toolchain, or the build failed).
fn program() -> Result<&'static PathBuf, &'static str> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if Command::new("go").arg("version").output().is_err() {
                return Err("no `go` toolchain on PATH".into());
            }
            let dir = std::env::temp_dir().join(format!("spindle-lab-go-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {dir:?}: {e}"))?;
            std::fs::write(dir.join("main.go"), PROGRAM)
                .map_err(|e| format!("cannot write the Go program: {e}"))?;
            let out = Command::new("go")
                .args(["build", "-o", "peer", "main.go"])
                .current_dir(&dir)
                .env("GO111MODULE", "off")
                .env("GOCACHE", dir.join("cache"))
                .output()
                .map_err(|e| format!("cannot run go build: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "go build failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(dir.join("peer"))
        })
        .as_ref()
        .map_err(String::as_str)
}

/// Why Go cannot be measured here, if it cannot.
pub fn unavailable() -> Option<&'static str> {
    program().err()
}

/// One run of `operation` (`yield`, `pingpong` or `spawn`) over `n` operations: ns per
/// operation, as the program measured it.
pub fn ns_per_op(operation: &str, n: u64) -> io::Result<f64> {
    let prog = program().map_err(io::Error::other)?;
    let mut child = Command::new(prog)
        .args([operation, &n.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let give_up = Instant::now() + RUN_DEADLINE;
    while child.try_wait()?.is_none() {
        if Instant::now() > give_up {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "the Go peer failed on {operation} ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    text.trim().parse().map_err(|_| {
        io::Error::other(format!(
            "the Go peer printed {text:?}, not ns per operation"
        ))
    })
}

/// The median of `runs` runs of `operation`.
pub fn median_ns(operation: &str, n: u64, runs: usize) -> io::Result<f64> {
    let mut samples = (0..runs)
        .map(|_| ns_per_op(operation, n))
        .collect::<io::Result<Vec<f64>>>()?;
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}
